"""Honest speed and memory measurements of upscaling.

Every figure is measured in the same process and run: wall time over repeats
after warm-up, peak resident memory sampled while the work runs, FLOPs counted
from the model's convolutions (not guessed), and the machine's own peak for a
3x3 64->64 convolution as the yardstick.
"""
from __future__ import annotations

import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn

from .archs import set_fused_inference
from .device import current_rss
from .imageio import from_tensor, to_tensor
from .model import SRModel


@dataclass
class BenchResult:
    model: str
    arch: str
    scale: float
    size: str
    tile: Optional[int]  # pixels, None untiled
    device: str
    precision: str
    threads: int
    parameters: int
    median_s: float
    min_s: float
    max_s: float
    output_mp_per_s: float
    peak_rss_mb: float
    cuda_max_allocated_mb: Optional[float]
    flops_per_output_pixel: float
    gflops_per_s: float
    share_of_conv_peak: Optional[float]
    runner: str = "sr"
    engine: str = "torch"
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def count_conv_flops(model: Optional[SRModel], height: int, width: int) -> float:
    """FLOPs (2 per multiply-add) of all convolutions for one input of this size (0 for none)."""
    if model is None or not isinstance(model.net, nn.Module):
        return 0.0
    total = 0.0

    def hook(module: nn.Module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2.0 * output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.ConvTranspose2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2.0 * inputs[0].numel() * (module.out_channels // module.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.net.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    # Fused paths call the convolutions' kernels directly, past the hooks: count the stock forward.
    previous = set_fused_inference(model.net, False)
    try:
        param = next(model.net.parameters())
        with torch.inference_mode():
            model.net(torch.zeros(1, model.in_channels, height, width, device=param.device, dtype=param.dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, enabled in previous.items():
            module.fused_inference = enabled
    return total


def conv_peak_gflops(device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 2.0) -> float:
    """Achieved GFLOP/s of a bare 3x3 64->64 convolution on a 1x64x256x256 input,
    measured in both memory layouts; the faster one is the machine's peak."""
    return max(_conv_gflops(device, dtype, seconds / 2, layout)
               for layout in (torch.contiguous_format, torch.channels_last))


def _conv_gflops(device: torch.device, dtype: torch.dtype, seconds: float, layout) -> float:
    conv = nn.Conv2d(64, 64, 3, 1, 1).to(device, dtype).to(memory_format=layout).eval()
    x = torch.rand(1, 64, 256, 256, device=device, dtype=dtype).contiguous(memory_format=layout)
    flops = 2.0 * 64 * 64 * 9 * 256 * 256
    with torch.inference_mode():
        for _ in range(2):
            conv(x)
        _sync(device)
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or runs < 3:
            conv(x)
            runs += 1
        _sync(device)
        elapsed = time.perf_counter() - start
    return flops * runs / elapsed / 1e9


class PeakRSS:
    """Samples this process's resident memory on a thread; ``peak`` is the maximum seen."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = current_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour image: realistic enough, and needs no data files."""
    rng = np.random.default_rng(seed)
    small = rng.random((max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
    import cv2
    return np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) * 255, 0, 255).astype(np.uint8)


def time_runs(run: Callable[[], object], *, warmup: int, repeat: int, device: torch.device) -> tuple[list[float], int]:
    """Wall times of ``repeat`` runs after ``warmup``; also the peak RSS over the timed runs."""
    for _ in range(warmup):
        run()
    _sync(device)
    times = []
    with PeakRSS() as rss:
        for _ in range(repeat):
            start = time.perf_counter()
            run()
            _sync(device)
            times.append(time.perf_counter() - start)
    return times, rss.peak


def reference_tile_loop(model: SRModel, pixels: np.ndarray, *, tile: int, tile_pad: int = 10,
                        device: torch.device, dtype: torch.dtype) -> np.ndarray:
    """The common reference (Real-ESRGAN's RealESRGANer.tile_process): tiles padded by
    ``tile_pad`` px of context, pasted without blending, output kept as one float32 tensor.
    It runs a private copy of the network in the default (NCHW) layout and with the stock
    forward (no fused inference paths), as that code does."""
    import copy
    net = model.net
    if isinstance(net, nn.Module):
        net = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
        set_fused_inference(net, False)  # the stock forward, as upstream runs it
    img = to_tensor(pixels).to(device, dtype)
    _, channels, height, width = img.shape
    scale = model.scale
    output = img.new_zeros((1, channels, height * scale, width * scale))
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            x0, x1 = x, min(x + tile, width)
            y0, y1 = y, min(y + tile, height)
            px0, px1 = max(x0 - tile_pad, 0), min(x1 + tile_pad, width)
            py0, py1 = max(y0 - tile_pad, 0), min(y1 + tile_pad, height)
            with torch.no_grad():
                out_tile = net(img[:, :, py0:py1, px0:px1])
            ox0, oy0 = (x0 - px0) * scale, (y0 - py0) * scale
            output[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                out_tile[:, :, oy0:oy0 + (y1 - y0) * scale, ox0:ox0 + (x1 - x0) * scale]
    return from_tensor(output.float().clamp_(0, 1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(model_name: str, *, height: int, width: int, scale: float, tile, device: str = "auto",
              precision: str = "auto", engine: str = "auto", warmup: int = 1, repeat: int = 3,
              conv_peak: Optional[float] = None, reference: bool = False, overlap: int = 16,
              threads: Optional[int] = None) -> list[BenchResult]:
    """Benchmark one combination (and, with ``reference``, the reference loop beside it)."""
    from .upscale import Upscaler
    upscaler = Upscaler.create(model_name, scale, device=device, precision=precision, engine=engine, tile=tile,
                               overlap=overlap, threads=threads)
    pixels = synthetic_image(height, width)
    flops = 0.0
    current = (height, width)
    for runner in upscaler.engines:
        flops += count_conv_flops(_torch_model(runner, model_name), *current)
        current = (current[0] * runner.scale, current[1] * runner.scale)
    out_h, out_w = upscaler.output_size(height, width)
    first = upscaler.engines[0]
    tile_label = tile if isinstance(tile, int) else None
    if tile == "auto":
        tile_label = first.auto_tile(height, width)

    runners = [("sr", lambda: upscaler(pixels))]
    if reference:
        if len(upscaler.engines) != 1 or first.name != "torch":
            raise ValueError("--compare-reference needs a native scale (one model pass) on --engine torch")
        ref_tile = tile_label or max(height, width)
        runners.append(("reference", lambda: reference_tile_loop(
            first.model, pixels, tile=ref_tile, device=first.torch_device, dtype=first.dtype)))

    results = []
    cuda = first.device.startswith("cuda")
    for runner, run in runners:
        if cuda:
            torch.cuda.reset_peak_memory_stats(first.torch_device)
        times, peak = time_runs(run, warmup=warmup, repeat=repeat, device=torch.device(first.device))
        median = statistics.median(times)
        cuda_mb = torch.cuda.max_memory_allocated(first.torch_device) / 2**20 if cuda else None
        results.append(BenchResult(
            model=model_name, arch="+".join(e.arch for e in upscaler.engines), scale=scale,
            size=f"{width}x{height}", tile=tile_label, device=first.device, precision=first.precision,
            threads=first.threads, parameters=sum(_parameters(e, model_name) for e in upscaler.engines),
            median_s=median, min_s=min(times), max_s=max(times),
            output_mp_per_s=out_h * out_w / 1e6 / median, peak_rss_mb=peak / 2**20,
            cuda_max_allocated_mb=cuda_mb, flops_per_output_pixel=flops / (out_h * out_w),
            gflops_per_s=flops / median / 1e9,
            share_of_conv_peak=(flops / median / 1e9 / conv_peak) if conv_peak else None, runner=runner,
            engine=first.name,
        ))
    return results


def _torch_model(engine, model_name: str) -> Optional[SRModel]:
    """The torch network behind an engine, for counting its FLOPs (an ONNX engine's: the same
    model loaded by torch; a community ONNX file has none)."""
    if engine.name == "torch":
        return engine.model
    if model_name.lower().endswith(".onnx"):
        return None
    from .resolve import resolve_model
    return resolve_model(model_name, engine.scale)


def _parameters(engine, model_name: str) -> int:
    model = _torch_model(engine, model_name)
    return model.num_parameters if model is not None else engine.num_parameters
