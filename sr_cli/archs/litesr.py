"""LiteSR: our small, fast default network for the CPU path.

A compact EDSR-style design: a 3x3 head, plain residual blocks (conv-ReLU-conv,
no batch norm, residual scaling), a body conv with a long skip, a sub-pixel
(PixelShuffle) tail, and a bilinear-upsampled copy of the input added at the
end so the network only learns the missing detail. Everything runs at LR
resolution, which is what keeps it fast on CPUs.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, res_scale: float):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x), inplace=True)) * self.res_scale


class LiteSR(nn.Module):
    def __init__(self, *, scale: int = 4, in_channels: int = 3, num_feat: int = 32,
                 num_blocks: int = 6, res_scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.in_channels = in_channels
        self.head = nn.Conv2d(in_channels, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlock(num_feat, res_scale) for _ in range(num_blocks)])
        self.body_conv = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.tail = nn.Conv2d(num_feat, in_channels * scale * scale, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(scale)
        self.receptive_radius = 2 * num_blocks + 4  # 2b+3 convs + bilinear base
        nn.init.zeros_(self.tail.weight)  # start as plain bilinear upscaling
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        feat = feat + self.body_conv(self.body(feat))
        detail = self.shuffle(self.tail(feat))
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return base + detail
