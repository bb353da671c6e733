"""SRVGGNetCompact (Real-ESRGAN's compact net), parameter names as in Real-ESRGAN.

Layout: ``body.0`` conv in, then (activation, conv) pairs, a last conv to
``out_channels * scale**2``, PixelShuffle, plus the nearest-upsampled input.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import PixelShuffle, activation, shuffle_plus_nearest


class SRVGGNetCompact(nn.Module):
    def __init__(self, *, scale: int = 4, in_channels: int = 3, out_channels: int = 3,
                 num_feat: int = 64, num_conv: int = 16, act_type: str = "prelu"):
        super().__init__()
        self.scale = scale
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.body = nn.ModuleList([nn.Conv2d(in_channels, num_feat, 3, 1, 1)])
        for i in range(num_conv + 1):
            self.body.append(activation(act_type, num_feat, leaky_slope=0.1))
            if i < num_conv:
                self.body.append(nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.body.append(nn.Conv2d(num_feat, out_channels * scale * scale, 3, 1, 1))
        self.upsampler = PixelShuffle(scale)
        self.receptive_radius = num_conv + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        if self.out_channels == self.in_channels:  # Real-ESRGAN's sum, done at LR size
            return shuffle_plus_nearest(out, x, self.scale)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.scale, mode="nearest")

