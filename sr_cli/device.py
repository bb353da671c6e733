"""Device and dtype choice for inference and training, and the memory a job may use.

``check_device_spec`` and ``gpu_present`` import no torch, so a command can refuse a bad
``--device`` and pick its engine before loading anything heavy; ``pick_device`` and
``pick_dtype`` turn the checked spec into torch objects once torch is needed anyway.
"""
from __future__ import annotations

import ctypes
import importlib.util
import platform
import re
import sys
from pathlib import Path

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_spec(spec: str) -> str:
    """``spec`` if it names a device we can run on (syntax only); ValueError otherwise."""
    if not isinstance(spec, str) or not _DEVICE_PATTERN.match(spec):
        raise ValueError(f"unknown device {spec!r} ({DEVICE_CHOICES})")
    return spec


def gpu_present() -> bool:
    """Whether ``--device auto`` would find a GPU for torch, answered without importing torch.

    Apple silicon: MPS. Elsewhere: an installed torch built for CUDA and an NVIDIA driver
    that reports at least one device (libcuda's cuDeviceGetCount, a few milliseconds).
    """
    if sys.platform == "darwin":
        return platform.machine() == "arm64" and importlib.util.find_spec("torch") is not None
    if _torch_cuda_build() is None:
        return False
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    return False


def _torch_cuda_build():
    """torch's CUDA version string as its version.py records it (None: no torch, or a CPU build)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_file = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    try:
        text = version_file.read_text()
    except OSError:
        return None
    found = re.search(r"^cuda\s*(?::\s*[^=]+)?=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return found.group(1) if found else None


def pick_device(spec: str = "auto"):
    """The torch device for a checked spec; ValueError when it is not available here."""
    import torch
    check_device_spec(spec)
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but is not available here; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("MPS was asked for but is not available here; use --device cpu")
    return device


def pick_dtype(precision: str, device):
    """torch dtype of a float precision on ``device``; 'auto' is fp32."""
    import torch
    dtypes = {"auto": torch.float32, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision == "int8":
        raise ValueError("int8 runs on the ONNX engine (--engine onnx), not on torch")
    if precision not in dtypes:
        raise ValueError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("fp16 is not supported on the CPU; use fp32 (the fast CPU path) or bf16")
    return dtypes[precision]


def available_memory() -> int:
    """Bytes of host memory available to a new allocation (what auto-tiling and --max-pixels size
    themselves by), on Linux, macOS and Windows alike."""
    import psutil

    return int(psutil.virtual_memory().available)


def current_rss() -> int:
    """Bytes of this process's resident memory (sr bench's peak memory)."""
    import psutil

    return int(psutil.Process().memory_info().rss)
