"""SRResNet (Ledig et al. 2017) and EDSR (Lim et al. 2017), plus their shared upsampler.

Both run a residual body at LR resolution and upsample at the end with
PixelShuffle stages: x2, x4 and x8 as 1, 2 and 3 stages of x2; x3 as one stage.

``chain_radius`` also lives here: it turns a layer chain into the receptive
radius (in LR pixels) that every network in this package reports.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from .layers import PixelShuffle

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


# ---------------------------------------------------------------------------
# SRResNet


class _BNResBlock(nn.Module):
    """SRResNet block: conv-BN-PReLU-conv-BN plus identity."""

    def __init__(self, num_feat: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(num_feat)
        self.act = nn.PReLU()
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class SRResNet(nn.Module):
    """SRResNet as in the SRGAN paper: 9x9 head + PReLU, ``num_blocks`` BN residual
    blocks, conv + BN with a long skip, PixelShuffle x2 stages (x3: one stage) each
    followed by PReLU, 9x9 tail. Output is linear (no tanh); clamp when displaying.

    Batch norm makes the output of a training-mode forward depend on the batch;
    inference (and tiling) must use ``eval()``.
    """

    def __init__(self, *, scale: int = 4, in_channels: int = 3, num_feat: int = 64,
                 num_blocks: int = 16):
        super().__init__()
        self.scale = scale
        self.in_channels = in_channels
        self.head = nn.Sequential(nn.Conv2d(in_channels, num_feat, 9, 1, 4), nn.PReLU())
        self.body = nn.Sequential(*[_BNResBlock(num_feat) for _ in range(num_blocks)])
        self.body_conv = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.body_bn = nn.BatchNorm2d(num_feat)
        self.upsampler = Upsampler(scale, num_feat, act=True)
        self.tail = nn.Conv2d(num_feat, in_channels, 9, 1, 4)
        ops = [("conv", 9)] + [("conv", 3)] * (2 * num_blocks + 1) + upsample_ops(scale) + [("conv", 9)]
        self.receptive_radius = chain_radius(ops, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        feat = feat + self.body_bn(self.body_conv(self.body(feat)))
        return self.tail(self.upsampler(feat))


# ---------------------------------------------------------------------------
# EDSR

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


class _ResBlock(nn.Module):
    """EDSR block: conv-ReLU-conv, scaled by ``res_scale``, plus identity (``body.0/2`` as in EDSR-PyTorch)."""

    def __init__(self, num_feat: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class EDSR(nn.Module):
    """EDSR (defaults: EDSR-baseline, 16 blocks x 64 features, res_scale 1; the paper's
    large model is num_blocks=32, num_feat=256, res_scale=0.1).

    No batch norm. ``mean_shift`` subtracts the DIV2K RGB mean before the head and
    adds it back after the tail (a fixed, non-persistent buffer; for other channel
    counts the mean of those three values is used). ``rgb_range`` multiplies the
    [0, 1] input before the network and divides the output after it: 255 for
    weights trained the EDSR-PyTorch way. Module names follow EDSR-PyTorch
    (``head.0``, ``body.N.body.0/2``, ``body.<num_blocks>``, ``tail.0.*``, ``tail.1``).
    """

    def __init__(self, *, scale: int = 4, in_channels: int = 3, num_feat: int = 64,
                 num_blocks: int = 16, res_scale: float = 1.0, mean_shift: bool = True,
                 rgb_range: float = 1.0):
        super().__init__()
        self.scale = scale
        self.in_channels = in_channels
        self.rgb_range = rgb_range
        if in_channels == 3:
            mean = torch.tensor(DIV2K_RGB_MEAN)
        else:
            mean = torch.full((in_channels,), sum(DIV2K_RGB_MEAN) / 3)
        if not mean_shift:
            mean = torch.zeros(in_channels)
        self.register_buffer("mean", mean.view(1, -1, 1, 1) * rgb_range, persistent=False)
        self.head = nn.Sequential(nn.Conv2d(in_channels, num_feat, 3, 1, 1))
        self.body = nn.Sequential(*[_ResBlock(num_feat, res_scale) for _ in range(num_blocks)],
                                  nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.tail = nn.Sequential(Upsampler(scale, num_feat), nn.Conv2d(num_feat, in_channels, 3, 1, 1))
        ops = [("conv", 3)] * (2 * num_blocks + 2) + upsample_ops(scale) + [("conv", 3)]
        self.receptive_radius = chain_radius(ops, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.rgb_range - self.mean
        feat = self.head(x)
        feat = feat + self.body(feat)
        return (self.tail(feat) + self.mean) / self.rgb_range
