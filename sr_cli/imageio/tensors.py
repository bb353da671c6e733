"""Pixel arrays <-> the core's tensors: NCHW float in [0, 1] (``to_tensor``/``from_tensor``), and the
two roundings of float pixels to integer ones, each on purpose: ``round_to_levels`` (halves to
even) for what is written out, ``round_half_up`` (MATLAB's uint8()) for LR images and the outputs
that are scored, as the PSNR/SSIM literature does. Torch is imported on first use, so the ONNX
path, which works on numpy arrays, never loads it."""
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


def from_tensor(rows, dtype=np.uint8, *, scored: bool = False) -> np.ndarray:
    """1 x C x h x W float in [0, 1] (any device; a whole image or a band of its rows) -> h x W x C
    ``dtype`` (uint8/uint16), rounded and clipped: by ``round_to_levels``, or with ``scored`` (uint8
    only) by ``round_half_up`` on the float64 values, as ``sr eval`` and training's validation score."""
    import torch

    if scored:
        values = round_half_up(rows[0].detach().double().mul(255.0)).to(torch.uint8)
        return values.permute(1, 2, 0).contiguous().cpu().numpy()
    maximum, target = (65535.0, torch.uint16) if np.dtype(dtype) == np.uint16 else (255.0, torch.uint8)
    # float32 first: fp16 cannot hold 65535 * x exactly (or at all near 1).
    values = round_to_levels(rows[0].detach().to(torch.float32).mul(maximum), maximum).to(target)
    return values.permute(1, 2, 0).contiguous().cpu().numpy()


def round_to_levels(values, maximum: float = 255.0):
    """Float pixel values on the 0..``maximum`` scale (a tensor, changed in place) -> the nearest
    integer level, still float: NaN -> 0, halves to even, clipped. The rounding of the pixels
    written out (``from_tensor``, ``to_uint8``)."""
    return values.nan_to_num_(0.0).round_().clamp_(0.0, maximum)


def round_half_up(values):
    """Float values on the 0..255 scale (a tensor) -> the nearest uint8 level, in float64: halves
    rounded up, clipped, as MATLAB's uint8() does. The literature's rounding: LR images
    (``resize.matlab_lr``) and the outputs that are scored (``from_tensor(scored=True)``)."""
    import torch

    return torch.floor(values.double() + 0.5).clamp_(0, 255)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """A float array in [0, 1] (any shape) -> uint8 by ``round_to_levels``."""
    import torch

    return round_to_levels(torch.from_numpy(np.multiply(img, 255.0))).to(torch.uint8).numpy()
