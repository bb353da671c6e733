"""The torch engine: any architecture, on CPU, CUDA or MPS, in fp32, fp16 or bf16."""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import torch

from ..device import available_memory
from ..model import SRModel
from ..tiling import CPU_TILE_CAP, auto_tile

CUDA_TILE_CAP = 2048


class TorchEngine:
    name = "torch"

    def __init__(self, model: SRModel, device: torch.device, dtype: torch.dtype = torch.float32):
        self.model = model
        self.torch_device = device
        self.dtype = dtype
        self.scale = model.scale
        self.in_channels = model.in_channels
        self.receptive_radius = model.receptive_radius
        self.size_multiple = model.size_multiple
        self.precision = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
        self.label = model.name or model.arch
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # tiles repeat a few shapes: tuned kernels pay off

    @property
    def device(self) -> str:
        return str(self.torch_device)

    @property
    def arch(self) -> str:
        return self.model.arch

    @property
    def num_parameters(self) -> int:
        return self.model.num_parameters

    @property
    def threads(self) -> int:
        return torch.get_num_threads()

    def set_threads(self, count: int) -> bool:
        if self.torch_device.type != "cpu":
            return False
        torch.set_num_threads(count)
        return True

    def as_input(self, pixels: np.ndarray, grey: bool = False) -> torch.Tensor:
        """H x W x C integer pixels -> 1 x C x H x W, on the device, integer values as they are:
        one host-to-device copy of the input (1/scale^2 of the output) instead of one per tile."""
        with warnings.catch_warnings():
            # A read-only input (np.asarray of a PIL image) is only read here: wrap it, do not copy it.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).unsqueeze(0)
        x = x.to(self.torch_device)
        return x.expand(1, 3, *x.shape[2:]) if grey else x

    def run(self, batch: torch.Tensor, input_max: float = 1.0) -> torch.Tensor:
        batch = batch.to(self.dtype)  # already on the device
        if input_max != 1.0:
            batch = batch.div_(input_max)
        return self.model(batch).float()

    def to_pixels(self, rect: torch.Tensor, out: np.ndarray, grey: bool = False) -> None:
        from ..imageio import from_tensor
        # A few rows at a time, so the float temporaries stay small next to the output.
        for offset in range(0, rect.shape[2], 64):
            block = rect[0, :, offset:offset + 64]
            block = block.mean(dim=0, keepdim=True) if grey else block
            out[offset:offset + block.shape[1]] = from_tensor(block[None], out.dtype)

    def auto_tile(self, height: int, width: int) -> Optional[int]:
        cuda = self.torch_device.type == "cuda"
        return auto_tile(self.scale, height, width, budget=self.free_memory() * (0.5 if cuda else 0.25),
                         cap=CUDA_TILE_CAP if cuda else CPU_TILE_CAP)

    def free_memory(self) -> int:
        if self.torch_device.type == "cuda":
            return torch.cuda.mem_get_info(self.torch_device)[0]
        return available_memory()

    def is_out_of_memory(self, exc: BaseException) -> bool:
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return True
        return False

    def synchronize(self) -> None:
        if self.torch_device.type == "cuda":
            torch.cuda.synchronize(self.torch_device)

