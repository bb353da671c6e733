"""Small building blocks shared by several architectures, and ``chain_radius``: a layer chain's
receptive radius (in LR pixels), which every network in this package reports."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn


def activation(kind: str, channels: int, *, leaky_slope: float = 0.1) -> nn.Module:
    """An activation by name: relu, prelu (one slope per channel), leakyrelu or tanh."""
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "prelu":
        return nn.PReLU(num_parameters=channels)
    if kind == "leakyrelu":
        return nn.LeakyReLU(negative_slope=leaky_slope, inplace=True)
    if kind == "tanh":
        return nn.Tanh()
    raise ValueError(f"unknown activation {kind!r} (relu, prelu, leakyrelu, tanh)")


def pixel_shuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``F.pixel_shuffle`` that always returns contiguous NCHW, in one copy.

    On a channels-last input (our CPU path) PyTorch's returns channels-last too: a
    3-channel HR image with its channels innermost, about twice as slow to make here
    and slower for everything done to it afterwards at HR size.
    """
    n, channels, height, width = x.shape
    out_channels = channels // (factor * factor)
    return (x.reshape(n, out_channels, factor, factor, height, width)
             .permute(0, 1, 4, 2, 5, 3)
             .reshape(n, out_channels, height * factor, width * factor))


class PixelShuffle(nn.PixelShuffle):
    """nn.PixelShuffle (same name in state dicts: it has none) returning contiguous NCHW."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle(x, self.upscale_factor)


def shuffle_plus_nearest(detail: torch.Tensor, x: torch.Tensor, factor: int) -> torch.Tensor:
    """``pixel_shuffle(detail) + nearest-upsampled x``, with the sum done at LR size, in place.

    Sub-pixel channel c*f*f + k of ``detail`` becomes output pixel k of channel c, so adding
    ``x[:, c]`` to each of those channels before the shuffle is exactly the nearest
    upsampling of ``x`` added after it, without the HR-sized temporaries.
    """
    n, channels, height, width = x.shape
    if torch.jit.is_tracing():  # export: ONNX drops an in-place add into a view; same sum out of place
        summed = detail.view(n, channels, factor * factor, height, width) + x.unsqueeze(2)
        return pixel_shuffle(summed.view(n, channels * factor * factor, height, width), factor)
    detail.view(n, channels, factor * factor, height, width).add_(x.unsqueeze(2))
    return pixel_shuffle(detail, factor)


# ---------------------------------------------------------------------------
# receptive radius

Op = tuple  # ("conv", k) | ("sconv", k, stride, pad) | ("tconv", k, stride, pad) | ("up", f) | ("down", f)


def chain_radius(ops: Sequence[Op], scale: int) -> int:
    """LR pixels on each side that can influence one output pixel of a layer chain.

    ``ops`` lists the layers from input to output: ``("conv", k)`` a same-size
    k x k conv; ``("sconv", k, s, p)`` a strided conv; ``("tconv", k, s, p)`` a
    transposed conv; ``("up", f)`` nearest upsampling or PixelShuffle by f;
    ``("down", f)`` pixel-unshuffle by f. Element-wise layers are left out. The
    dependency interval of each output pixel is walked back exactly, over one
    full period of output positions, so the result is exact for the chain
    (an upper bound for the net when side branches are shorter than the chain).
    """
    period = scale
    for op in ops:
        if op[0] in ("down", "sconv"):
            period *= op[1] if op[0] == "down" else op[2]
    radius = 0
    for y in range(period):
        lo = hi = y
        for op in reversed(ops):
            kind = op[0]
            if kind == "conv":
                lo, hi = lo - op[1] // 2, hi + op[1] // 2
            elif kind == "sconv":
                k, s, p = op[1:]
                lo, hi = lo * s - p, hi * s - p + k - 1
            elif kind == "tconv":
                k, s, p = op[1:]
                lo, hi = -((k - 1 - p - lo) // s), (hi + p) // s
            elif kind == "up":
                lo, hi = lo // op[1], hi // op[1]
            elif kind == "down":
                lo, hi = lo * op[1], hi * op[1] + op[1] - 1
            else:
                raise ValueError(f"unknown op {op!r}")
        own = y // scale
        radius = max(radius, own - lo, hi - own)
    return radius


def upsample_ops(scale: int) -> list[Op]:
    """The ``chain_radius`` ops of ``Upsampler(scale)`` (a 3x3 conv before each shuffle)."""
    return [op for f in upsample_factors(scale) for op in (("conv", 3), ("up", f))]


def upsample_factors(scale: int) -> list[int]:
    """x3 -> [3]; x2, x4, x8 -> stages of 2. Other scales raise ValueError."""
    if scale == 3:
        return [3]
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * int(math.log2(scale))
    raise ValueError(f"scale must be 2, 3, 4 or 8 (a power of 2 or 3), got {scale}")


class Upsampler(nn.Sequential):
    """conv 3x3 (nf -> nf*f^2) + PixelShuffle(f) per stage, optionally followed by PReLU.

    Without the activation the layout (``N.weight`` for the conv of stage N//2)
    is EDSR-PyTorch's, so its ``tail.0.*`` keys line up.
    """

    def __init__(self, scale: int, num_feat: int, act: bool = False):
        layers: list[nn.Module] = []
        for factor in upsample_factors(scale):
            layers.append(nn.Conv2d(num_feat, num_feat * factor * factor, 3, 1, 1))
            layers.append(PixelShuffle(factor))
            if act:
                layers.append(nn.PReLU())
        super().__init__(*layers)
