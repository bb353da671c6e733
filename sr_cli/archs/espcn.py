"""ESPCN (Shi et al. 2016): the efficient sub-pixel CNN.

5x5 conv (64) -> 3x3 conv (32) -> 3x3 conv to ``in_channels * scale**2`` ->
PixelShuffle. Every conv runs at LR resolution, so it is the cheapest net here.

The paper uses tanh after the first two convs and reports it beat ReLU in their
setting; tanh is the default so the name means the paper's network. ``act_type``
may pick relu / prelu / leakyrelu, which usually train faster with Adam.
The last conv is linear; the output is not squashed (callers clamp).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .descriptor import ArchDescriptor
from .layers import PixelShuffle, activation


class ESPCN(nn.Module):
    def __init__(self, *, scale: int = 4, in_channels: int = 3, num_feat: int = 64,
                 num_feat2: int = 32, act_type: str = "tanh"):
        super().__init__()
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        self.scale = scale
        self.in_channels = in_channels
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, num_feat, 5, 1, 2), activation(act_type, num_feat, leaky_slope=0.2),
            nn.Conv2d(num_feat, num_feat2, 3, 1, 1), activation(act_type, num_feat2, leaky_slope=0.2),
            nn.Conv2d(num_feat2, in_channels * scale * scale, 3, 1, 1),
        )
        self.shuffle = PixelShuffle(scale)
        self.receptive_radius = 2 + 1 + 1  # 5x5, 3x3, 3x3 at LR; the shuffle adds none

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x))


ESPCN_ARCH = ArchDescriptor("espcn", ESPCN, tiny={"num_feat": 8, "num_feat2": 4})
