"""Upscaling: engines, tiled inference and image arrays put together.

``Upscaler`` holds one inference engine per native pass (engines/: torch, or ONNX Runtime
without torch) and runs integer HWC pixels through them tile by tile, writing each
finished rectangle straight into a preallocated output of the same dtype, so memory grows
with the output's bytes, not with a float copy of it. ``upscale_image`` is the friendly
entry point for PIL images and numpy arrays; ``upscale_tensor`` runs a torch ``SRModel``
on an NCHW float tensor (evaluation and tests). Nothing here imports torch: the engine does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np

from .registry import MAX_SCALE
from .tiling import tiled_apply

DEFAULT_OVERLAP = 16
MIN_TILE = 32
BYTES_PER_PIXEL_BUDGET = 2  # an image's peak pixel array and one more of its size (a resize or the next pass)
TileSpec = Union[int, str, None]  # pixels, "auto", or None/0 for no tiling


@dataclass
class Upscaler:
    """Everything needed to upscale by ``scale``: one engine per native pass and run settings."""

    engines: list
    scale: float
    tile: TileSpec = "auto"
    overlap: int = DEFAULT_OVERLAP
    batch_size: int = 1
    on_tile: Optional[Callable[[int, int], None]] = None  # progress within one image
    max_pixels: Optional[int] = None  # largest pixel array of one image; None: sized from free memory
    model: Optional[str] = None  # the name (or file) it was made from, for the outputs' provenance tag

    @classmethod
    def create(cls, model: str = "default", scale: float = 4, *, device: str = "auto",
               precision: str = "auto", engine: str = "auto", tile: TileSpec = "auto",
               overlap: int = DEFAULT_OVERLAP, batch_size: int = 1, max_pixels: Optional[int] = None,
               threads: Optional[int] = None, strength: Optional[float] = None,
               parent: Optional[str] = None) -> "Upscaler":
        """``model``: a name or file ('NAME@S', or ``strength``, blends it with its parent or
        ``parent``: blend.py)."""
        from .resolve import engines_for
        check_scale(scale)
        model, engines = engines_for(model, scale, strength=strength, engine=engine, device=device,
                                     precision=precision, threads=threads, parent=parent)
        return cls(engines=engines, scale=float(scale), tile=tile, overlap=overlap, batch_size=batch_size,
                   max_pixels=max_pixels, model=model)

    @property
    def device(self) -> str:
        return self.engines[0].device

    @property
    def engine(self) -> str:
        return self.engines[0].name

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return max(1, round(height * self.scale)), max(1, round(width * self.scale))

    def check_fits(self, height: int, width: int, channels: int = 3, itemsize: int = 1) -> None:
        """Raise ValueError, before any work, if this image's largest pixel array (the output, or a
        native pass's output on the way to it) is above ``max_pixels``, or, with none given, would
        not fit in the memory available."""
        native = 1
        for engine in self.engines:
            native *= engine.scale
        out_h, out_w = self.output_size(height, width)
        peak = max(out_h * out_w, height * native * width * native)
        check_pixels(out_w, out_h, peak, max_pixels=self.max_pixels, channels=channels, itemsize=itemsize)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return upscale_pixels(self, pixels)


def check_pixels(out_w: int, out_h: int, peak: Optional[int] = None, *, max_pixels: Optional[int] = None,
                 channels: int = 3, itemsize: int = 1) -> None:
    """The one pixel budget of a job (upscale, bench, eval): ValueError, before any work, when its
    largest pixel array (``peak``, default the ``out_w`` x ``out_h`` output) is above ``max_pixels``
    or, with none given, would not fit in the memory available."""
    from .device import available_memory
    peak = out_w * out_h if peak is None else peak
    if max_pixels is not None:
        if peak > max_pixels:
            raise ValueError(f"{_size(out_w, out_h)} output: {peak:,} pixels at its largest step, "
                             f"above --max-pixels {max_pixels:,}; raise it to try")
        return
    need = peak * channels * itemsize * BYTES_PER_PIXEL_BUDGET
    free = available_memory()  # the output array lives in host memory, whatever the device
    if need > free:
        raise ValueError(f"{_size(out_w, out_h)} output: {peak:,} pixels at its largest step needs "
                         f"~{need / 2**30:,.1f} GiB, {free / 2**30:,.1f} GiB available; --max-pixels "
                         f"{peak} to try anyway")


def _size(width: int, height: int) -> str:
    return f"{width}x{height}"


def check_scale(scale: float) -> None:
    """A factor is a finite number in (1, MAX_SCALE]; ValueError otherwise."""
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 1:
        raise ValueError(f"scale must be a number greater than 1, got {scale}")
    if scale > MAX_SCALE:
        raise ValueError(f"scale {scale:g} is above the largest supported, {MAX_SCALE}")


def run_tiled(engine, x, *, tile: TileSpec = "auto", overlap: int = DEFAULT_OVERLAP, batch_size: int = 1,
              sink=None, input_max: float = 1.0, on_tile=None):
    """Run one engine over ``x`` (NCHW, from ``engine.as_input`` or a float array) with tiling.

    Integer input with ``input_max`` (255, 65535) is converted tile by tile, so no float
    copy of a large input is made. An out-of-memory error (CUDA) halves the tile and starts
    again rather than failing.
    """
    height, width = x.shape[-2:]
    tile_px = engine.auto_tile(height, width) if tile == "auto" else (tile or None)
    while True:
        try:
            return tiled_apply(lambda batch: engine.run(batch, input_max), x, scale=engine.scale, tile=tile_px,
                               overlap=overlap, sink=sink, batch_size=batch_size, multiple=engine.size_multiple,
                               on_tile=on_tile)
        except Exception as exc:
            if not engine.is_out_of_memory(exc):
                raise
            current = tile_px or max(height, width)
            if isinstance(current, tuple):  # a (height, width) tile: halve both sides
                if max(current) <= MIN_TILE:
                    raise
                tile_px = tuple(max(MIN_TILE, side // 2) for side in current)
                continue
            if current <= MIN_TILE:
                raise
            tile_px = max(MIN_TILE, current // 2)


def upscale_tensor(model, x, *, tile: TileSpec = "auto", overlap: int = DEFAULT_OVERLAP,
                   device="cpu", dtype=None, batch_size: int = 1, sink=None, input_max: float = 1.0,
                   on_tile=None):
    """Run one torch ``SRModel`` over ``x`` (NCHW tensor, usually on the CPU) with tiling; the
    result comes back on x's device (None when ``sink`` takes it).

    ``x`` is float in [0, 1], or integer with ``input_max`` (255, 65535). Tiles are cut
    where the model runs: x is copied to the device once.
    """
    import torch
    from .engines.torch_engine import TorchEngine
    engine = TorchEngine(model, torch.device(device) if isinstance(device, str) else device,
                         dtype or torch.float32)
    out = run_tiled(engine, x.to(engine.torch_device), tile=tile, overlap=overlap, batch_size=batch_size,
                    sink=sink, input_max=input_max, on_tile=on_tile)
    return None if out is None else out.to(x.device)


def upscale_pixels(upscaler: Upscaler, pixels: np.ndarray) -> np.ndarray:
    """Upscale an H x W x C uint8/uint16 array (C: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA)."""
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

    for engine in upscaler.engines:
        colour = _run_native(upscaler, engine, colour)
    if colour.shape[:2] != (out_h, out_w):
        colour = _resize(colour, out_w, out_h)
    if not has_alpha:
        return colour
    # Alpha masks are upscaled with plain bicubic: models are trained on photos, not masks.
    import cv2  # only here and in _resize: OpenCV costs ~0.25 s and 40 MB to import
    alpha = _resize(pixels[:, :, channels - 1:], out_w, out_h, upscaling=cv2.INTER_CUBIC)
    return np.concatenate([colour, alpha], axis=2)


def release_free_heap() -> None:
    """Give freed heap memory back to the OS where the C library can (glibc's malloc_trim).

    Called once an image's inference is done, so the heap the tiles' activations left
    behind is not still resident while the output is encoded. Not per tile: the pages
    it hands back fault in again for the next tile (x1.5 slower on 1024x1024, fast-clean x4).
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


def _run_native(upscaler: Upscaler, engine, colour: np.ndarray) -> np.ndarray:
    """One native pass; greyscale goes through an RGB model as RGB and comes back as grey."""
    height, width, channels = colour.shape
    grey = channels == 1 and engine.in_channels == 3
    maximum = 65535.0 if colour.dtype == np.uint16 else 255.0
    out = np.empty((height * engine.scale, width * engine.scale, channels), dtype=colour.dtype)

    def write_rect(top: int, left: int, rect) -> None:
        engine.to_pixels(rect, out[top:top + rect.shape[2], left:left + rect.shape[3]], grey)

    # Integer pixels go in as they are; tiles are converted to float one at a time.
    run_tiled(engine, engine.as_input(colour, grey), tile=upscaler.tile, overlap=upscaler.overlap,
              batch_size=upscaler.batch_size, sink=write_rect, input_max=maximum, on_tile=upscaler.on_tile)
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
                  overlap: int = DEFAULT_OVERLAP, device: str = "auto", precision: str = "auto",
                  engine: str = "auto", strength: Optional[float] = None) -> Any:
    """Upscale a PIL image or a numpy array (H x W [x C], uint8/uint16); returns the same kind.

    >>> from sr_cli import upscale_image
    >>> big = upscale_image(PIL.Image.open("in.png"), scale=4)
    """
    upscaler = Upscaler.create(model, scale, device=device, precision=precision, engine=engine, tile=tile,
                               overlap=overlap, strength=strength)
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
