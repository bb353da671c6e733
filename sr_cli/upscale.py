"""Upscaling: a model, tiled inference and image arrays put together.

``upscale_tensor`` is the float core (NCHW [0, 1] in and out). ``upscale_pixels``
works on HWC uint8/uint16 arrays and writes tiles straight into a preallocated
output of the same dtype, so memory grows with the output's bytes, not with a
float copy of it. ``upscale_image`` is the friendly entry point for PIL images
and numpy arrays.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from .model import SRModel
from .imageio import from_tensor_rows
from .tiling import tiled_apply

DEFAULT_OVERLAP = 16
MIN_TILE = 32
MAX_SCALE = 64  # beyond this a factor is a typo, not a job (and would chain absurdly many passes)
BYTES_PER_PIXEL_BUDGET = 2  # an image's peak pixel array and one more of its size (a resize or the next pass)
TileSpec = Union[int, str, None]  # pixels, "auto", or None/0 for no tiling


@dataclass
class Upscaler:
    """Everything needed to upscale by ``scale``: the chain of native models and run settings."""

    models: list[SRModel]
    scale: float
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    tile: TileSpec = "auto"
    overlap: int = DEFAULT_OVERLAP
    batch_size: int = 1
    on_tile: Optional[Callable[[int, int], None]] = None  # progress within one image
    max_pixels: Optional[int] = None  # largest pixel array of one image; None: sized from free memory

    @classmethod
    def create(cls, model: str = "default", scale: float = 4, *, device: str = "auto",
               precision: str = "fp32", tile: TileSpec = "auto", overlap: int = DEFAULT_OVERLAP,
               batch_size: int = 1, max_pixels: Optional[int] = None) -> "Upscaler":
        from .registry import plan_passes, resolve_model
        check_scale(scale)
        torch_device = pick_device(device)
        dtype = pick_dtype(precision, torch_device)
        if torch_device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # tiles repeat a few shapes: tuned kernels pay off
        passes = plan_passes(model, scale)
        loaded = {s: resolve_model(model, s).to(torch_device, dtype) for s in sorted(set(passes))}  # each once
        return cls(models=[loaded[s] for s in passes], scale=float(scale), device=torch_device, dtype=dtype,
                   tile=tile, overlap=overlap, batch_size=batch_size, max_pixels=max_pixels)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return max(1, round(height * self.scale)), max(1, round(width * self.scale))

    def check_fits(self, height: int, width: int, channels: int = 3, itemsize: int = 1) -> None:
        """Raise ValueError, before any work, if this image's largest pixel array (the output, or a
        native pass's output on the way to it) is above ``max_pixels``, or, with none given, would
        not fit in the memory available."""
        native = 1
        for model in self.models:
            native *= model.scale
        out_h, out_w = self.output_size(height, width)
        peak = max(out_h * out_w, height * native * width * native)
        if self.max_pixels is not None:
            if peak > self.max_pixels:
                raise ValueError(f"{_size(out_w, out_h)} output: {peak:,} pixels at its largest step, "
                                 f"above --max-pixels {self.max_pixels:,}; raise it to try")
            return
        need = peak * channels * itemsize * BYTES_PER_PIXEL_BUDGET
        free = _free_memory(torch.device("cpu"))  # the output array lives in host memory, whatever the device
        if need > free:
            raise ValueError(f"{_size(out_w, out_h)} output: {peak:,} pixels at its largest step needs "
                             f"~{need / 2**30:,.1f} GiB, {free / 2**30:,.1f} GiB available; --max-pixels "
                             f"{peak} to try anyway")

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return upscale_pixels(self, pixels)


def _size(width: int, height: int) -> str:
    return f"{width}x{height}"


def check_scale(scale: float) -> None:
    """A factor is a finite number in (1, MAX_SCALE]; ValueError otherwise."""
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 1:
        raise ValueError(f"scale must be a number greater than 1, got {scale}")
    if scale > MAX_SCALE:
        raise ValueError(f"scale {scale:g} is above the largest supported, {MAX_SCALE}")


def pick_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"unknown device {spec!r} (auto, cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but is not available here; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("MPS was asked for but is not available here; use --device cpu")
    return device


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise ValueError(f"unknown precision {precision!r} (fp32, fp16, bf16)")
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("fp16 is not supported on the CPU; use fp32 (the fast CPU path) or bf16")
    return dtypes[precision]


def auto_tile(model: SRModel, height: int, width: int, device: torch.device) -> Optional[int]:
    """The largest tile (2048 on CUDA, 256 on CPU, halving down to 64) whose working memory
    fits in a share of free memory; None if one tile fits.

    Working memory: the tile's activations (a few feature maps at LR size plus the
    upscaled output) and the blending strip (a few output rows, the output's width). On
    CPUs 256 is the cap: smaller tiles keep the feature maps in cache, which outweighs
    their overlap (docs/benchmarks.md, "Tiling on a CPU").
    """
    free = _free_memory(device)
    budget = free * (0.5 if device.type == "cuda" else 0.25)
    cap = 2048 if device.type == "cuda" else 256
    strip = DEFAULT_OVERLAP * model.scale**2 * width * 3 * 4
    tile = cap
    while tile > 64:
        read = tile + 2 * DEFAULT_OVERLAP
        activations = read * read * 4 * (6 * 64 + 4 * 3 * model.scale**2)
        if activations + strip <= budget:
            break
        tile //= 2
    return None if tile >= max(height, width) else tile


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30  # unknown: assume a modest machine


def upscale_tensor(model: SRModel, x: torch.Tensor, *, tile: TileSpec = "auto", overlap: int = DEFAULT_OVERLAP,
                   device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
                   batch_size: int = 1, sink=None, input_max: float = 1.0, on_tile=None) -> Optional[torch.Tensor]:
    """Run one native model over ``x`` (NCHW, usually on the CPU) with tiling; the result comes back on x's device.

    ``x`` is float in [0, 1], or integer with ``input_max`` (255, 65535): integer
    input is converted tile by tile, so no float copy of a large input is made.
    A CUDA out-of-memory error halves the tile and starts again rather than failing.
    """
    device = torch.device(device) if isinstance(device, str) else device
    height, width = x.shape[-2:]
    tile_px = auto_tile(model, height, width, device) if tile == "auto" else (tile or None)
    source_device = x.device
    if x.device != device:
        # Tiles are cut where the model runs: one host-to-device copy of the input (1/scale^2
        # of the output, integer pixels as they are) instead of one per tile.
        x = x.to(device)

    def run_tile(batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(dtype)  # already on the device: x was moved there whole
        if input_max != 1.0:
            batch = batch.div_(input_max)
        return model(batch).float()

    while True:
        try:
            out = tiled_apply(run_tile, x, scale=model.scale, tile=tile_px, overlap=overlap,
                              sink=sink, batch_size=batch_size, multiple=model.size_multiple, on_tile=on_tile)
            return None if out is None else out.to(source_device)
        except torch.cuda.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            current = tile_px or max(height, width)
            if isinstance(current, tuple):  # a (height, width) tile: halve both sides
                if max(current) <= MIN_TILE:
                    raise
                tile_px = tuple(max(MIN_TILE, side // 2) for side in current)
                continue
            if current <= MIN_TILE:
                raise
            tile_px = max(MIN_TILE, current // 2)


def upscale_pixels(upscaler: Upscaler, pixels: np.ndarray) -> np.ndarray:
    """Upscale an H x W x C uint8/uint16 array (C: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA)."""
    import cv2
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.dtype not in (np.uint8, np.uint16) or pixels.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected H x W x 1-4 uint8/uint16 pixels, got {pixels.shape} {pixels.dtype}")
    height, width, channels = pixels.shape
    if height == 0 or width == 0:
        raise ValueError("the image is empty (0 pixels)")
    upscaler.check_fits(height, width, channels, pixels.itemsize)
    has_alpha = channels in (2, 4)
    colour = pixels[:, :, : channels - 1] if has_alpha else pixels
    out_h, out_w = upscaler.output_size(height, width)

    for model in upscaler.models:
        colour = _run_native(upscaler, model, colour)
    if colour.shape[:2] != (out_h, out_w):
        colour = _resize(colour, out_w, out_h)
    if not has_alpha:
        return colour
    # Alpha masks are upscaled with plain bicubic: models are trained on photos, not masks.
    alpha = _resize(pixels[:, :, channels - 1:], out_w, out_h, upscaling=cv2.INTER_CUBIC)
    return np.concatenate([colour, alpha], axis=2)


def release_free_heap() -> None:
    """Give freed heap memory back to the OS where the C library can (glibc's malloc_trim).

    Called once an image's inference is done, so the heap the tiles' activations left
    behind is not still resident while the output is encoded. Not per tile: the pages
    it hands back fault in again for the next tile (x1.5 slower on 1024x1024, fast x4).
    A no-op elsewhere.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes
            _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


def _run_native(upscaler: Upscaler, model: SRModel, colour: np.ndarray) -> np.ndarray:
    """One native pass; greyscale goes through the model as RGB and comes back as grey."""
    height, width, channels = colour.shape
    grey = channels == 1 and model.in_channels == 3
    maximum = 65535.0 if colour.dtype == np.uint16 else 255.0
    out = np.empty((height * model.scale, width * model.scale, channels), dtype=colour.dtype)
    # Integer pixels go in as they are; tiles are converted to float one at a time.
    with warnings.catch_warnings():
        # A read-only input (np.asarray of a PIL image) is only read here: wrap it, do not copy it.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.from_numpy(np.ascontiguousarray(colour)).permute(2, 0, 1).unsqueeze(0)
    if grey:
        x = x.expand(1, 3, height, width)

    def write_rect(top: int, left: int, rect: torch.Tensor) -> None:
        # A few rows at a time, so the float temporaries stay small next to the output.
        right = left + rect.shape[3]
        for offset in range(0, rect.shape[2], 64):
            block = rect[0, :, offset:offset + 64]
            block = block.mean(dim=0, keepdim=True) if grey else block
            out[top + offset:top + offset + block.shape[1], left:right] = from_tensor_rows(block[None], out.dtype)

    upscale_tensor(model, x, tile=upscaler.tile, overlap=upscaler.overlap, device=upscaler.device,
                   dtype=upscaler.dtype, batch_size=upscaler.batch_size, sink=write_rect, input_max=maximum,
                   on_tile=upscaler.on_tile)
    release_free_heap()  # the last tile's activations, before the output is encoded
    return out


def _resize(pixels: np.ndarray, width: int, height: int, upscaling: Optional[int] = None) -> np.ndarray:
    """Exact-size resize: area averaging when shrinking (antialiased), Lanczos-4 when growing."""
    import cv2
    shrinking = width < pixels.shape[1]
    method = cv2.INTER_AREA if shrinking else (upscaling if upscaling is not None else cv2.INTER_LANCZOS4)
    resized = cv2.resize(pixels, (width, height), interpolation=method)
    return resized if resized.ndim == 3 else resized[:, :, None]


def upscale_image(image: Any, *, scale: float = 4, model: str = "default", tile: TileSpec = "auto",
                  overlap: int = DEFAULT_OVERLAP, device: str = "auto", precision: str = "fp32") -> Any:
    """Upscale a PIL image or a numpy array (H x W [x C], uint8/uint16); returns the same kind.

    >>> from sr_cli import upscale_image
    >>> big = upscale_image(PIL.Image.open("in.png"), scale=4)
    """
    upscaler = Upscaler.create(model, scale, device=device, precision=precision, tile=tile, overlap=overlap)
    if isinstance(image, np.ndarray):
        squeeze = image.ndim == 2
        result = upscaler(image)
        return result[:, :, 0] if squeeze else result
    from PIL import Image as PILImage
    if not isinstance(image, PILImage.Image):
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    from .imageio import pil_to_pixels, pixels_to_pil
    pixels, mode = pil_to_pixels(image)
    return pixels_to_pil(upscaler(pixels), mode)
