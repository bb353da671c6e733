"""SRResNet (Ledig et al. 2017) and EDSR (Lim et al. 2017).

Both run a residual body at LR resolution and upsample at the end with
PixelShuffle stages (``layers.Upsampler``): x2, x4 and x8 as 1, 2 and 3 stages of x2; x3 as one stage.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .layers import Upsampler, chain_radius, upsample_ops

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
