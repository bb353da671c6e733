"""MATLAB-compatible bicubic resizing, as the super-resolution literature uses it.

Follows MATLAB's ``imresize(img, scale, 'bicubic')`` (and BasicSR's
``utils/matlab_functions.py``): Keys cubic with a = -0.5; when shrinking, the kernel
is stretched by 1/scale (antialiasing); output pixel x (1-based) samples input
position u = x / scale + 0.5 * (1 - 1 / scale); borders are mirrored with the edge
pixel repeated ("symmetric"). Each axis becomes one dense (out x in) weight
matrix with the padding folded in, so resizing is two matrix products.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Union

import numpy as np
import torch

# MATLAB: Keys cubic, a = -0.5, support [-2, 2].
_KERNEL_WIDTH = 4.0
# Ignore float error in in_size * scale (10 * 0.7 = 7.000000000000001 must give 7).
_SIZE_TOLERANCE = 1e-9


def imresize(x: torch.Tensor, scale: float, *, antialias: bool = True) -> torch.Tensor:
    """Resize ``x`` by ``scale`` with MATLAB's bicubic ``imresize``.

    ``x`` is float, NCHW (or CHW / HW), any value range; the result has the same
    layout and dtype, with ceil(size * scale) pixels per axis. Values are not
    clamped: bicubic over- and undershoots near edges, and the caller decides
    whether to clamp or quantise. ``antialias`` only matters when shrinking
    (scale < 1), as in MATLAB. Computed in float64, as MATLAB does.
    """
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"imresize expects a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"expected an NCHW, CHW or HW tensor, got shape {tuple(x.shape)}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    in_h, in_w = x.shape[-2:]
    out_h, out_w = output_length(in_h, scale), output_length(in_w, scale)
    if min(in_h, in_w, out_h, out_w) == 0:
        raise ValueError(f"cannot resize a {in_h}x{in_w} image by {scale}")

    rows = weight_matrix(in_h, out_h, scale=float(scale), antialias=antialias).to(x.device)
    cols = weight_matrix(in_w, out_w, scale=float(scale), antialias=antialias).to(x.device)
    # H first, then W, as MATLAB does when both scales are equal.
    return (rows @ x.to(torch.float64) @ cols.T).to(x.dtype)


def matlab_lr(hr: torch.Tensor, scale: float) -> torch.Tensor:
    """The literature's LR image of ``hr``: MATLAB's ``imresize(hr, 1 / scale, 'bicubic')`` on uint8
    (``imresize_uint8``). The one way LR images are made: ``sr eval``, the training data and its
    validation, the degradation pipelines' clean LR."""
    return imresize_uint8(hr, 1 / scale)


def imresize_uint8(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``imresize`` as MATLAB runs it on a uint8 image: resized on the 0..255 levels in float64,
    then rounded as its uint8() (``imageio.round_half_up``). ``x`` is float in [0, 1] on the uint8
    levels (as every image read is), any layout ``imresize`` takes; the result is in ``x``'s dtype,
    on the uint8 levels in [0, 1]."""
    from .imageio import round_half_up
    levels = x.double().mul(255.0).round_()  # the exact levels back from float32 [0, 1]
    return round_half_up(imresize(levels, scale)).to(x.dtype).div_(255.0)


def output_length(length: int, scale: float) -> int:
    """MATLAB's output length: ceil(length * scale)."""
    return math.ceil(length * scale - _SIZE_TOLERANCE)


@lru_cache(maxsize=64)
def weight_matrix(in_length: int, out_length: int, *, scale: float, antialias: bool = True) -> torch.Tensor:
    """The (out_length, in_length) float64 matrix that resizes one axis (cached: do not modify).

    MATLAB's ``contributions()``: each row holds the normalised cubic weights of
    one output pixel, with taps beyond the border mirrored back onto the input.
    """
    shrinking = scale < 1 and antialias
    kernel_width = _KERNEL_WIDTH / scale if shrinking else _KERNEL_WIDTH

    x = torch.arange(1, out_length + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    # One tap more than needed at each end; its weight is zero, which is harmless here.
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)  # 1-based, as in MATLAB
    distance = u[:, None] - indices
    weights = scale * cubic(distance * scale) if shrinking else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)

    # Symmetric padding: the index sequence 1..n, n..1 repeated (handles kernels wider than the input).
    mirror = torch.cat([torch.arange(in_length), torch.arange(in_length - 1, -1, -1)])
    source = mirror[(indices.long() - 1) % (2 * in_length)]
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    return matrix.scatter_add_(1, source, weights)


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = x.abs()
    absx2, absx3 = absx**2, absx**3
    near = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2))
    return near + far


ArrayOrTensor = Union[np.ndarray, torch.Tensor]


def modcrop(img: ArrayOrTensor, scale: int) -> ArrayOrTensor:
    """Crop the bottom/right so height and width are multiples of ``scale``.

    numpy arrays are HW or HWC; tensors are (N)CHW / HW (the last two axes).
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    if torch.is_tensor(img):
        h, w = img.shape[-2:]
        return img[..., : h - h % scale, : w - w % scale]
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an HW or HWC array, got shape {img.shape}")
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale, ...]
