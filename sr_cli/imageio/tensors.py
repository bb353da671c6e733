"""Pixel arrays <-> the core's tensors: NCHW float in [0, 1] (``to_tensor``/``from_tensor``), and the
rounding of float pixels to the integer ones that are written (``round_to_levels``). Torch is
imported on first use, so the ONNX path, which works on numpy arrays, never loads it."""
from __future__ import annotations

import numpy as np


def to_tensor(pixels: np.ndarray):
    """H x W x C uint8/uint16 -> 1 x C x H x W float32 in [0, 1] (one float allocation)."""
    import torch

    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    maximum = 65535.0 if pixels.dtype == np.uint16 else 255.0
    planes = np.empty((pixels.shape[2], pixels.shape[0], pixels.shape[1]), np.float32)
    planes[...] = pixels.transpose(2, 0, 1)
    planes /= maximum
    return torch.from_numpy(planes)[None]


def from_tensor(rows, dtype=np.uint8) -> np.ndarray:
    """1 x C x h x W float in [0, 1] (any device; a whole image or a band of its rows) -> h x W x C
    ``dtype`` (uint8/uint16), rounded and clipped."""
    import torch

    maximum, target = (65535.0, torch.uint16) if np.dtype(dtype) == np.uint16 else (255.0, torch.uint8)
    # float32 first: fp16 cannot hold 65535 * x exactly (or at all near 1).
    values = round_to_levels(rows[0].detach().to(torch.float32).mul(maximum), maximum).to(target)
    return values.permute(1, 2, 0).contiguous().cpu().numpy()


def round_to_levels(values, maximum: float = 255.0):
    """Float pixel values on the 0..``maximum`` scale (a tensor, changed in place) -> the nearest
    integer level, still float: NaN -> 0, halves to even, clipped. The rounding of the pixels
    written out (``from_tensor``, ``to_uint8``); LR images and scored outputs round as MATLAB
    does instead (``resize.matlab_uint8``), the literature's convention."""
    return values.nan_to_num_(0.0).round_().clamp_(0.0, maximum)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """A float array in [0, 1] (any shape) -> uint8 by ``round_to_levels``."""
    import torch

    return round_to_levels(torch.from_numpy(np.multiply(img, 255.0))).to(torch.uint8).numpy()
