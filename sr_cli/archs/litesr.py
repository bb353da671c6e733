"""LiteSR: our small, fast default network for the CPU path.

A compact EDSR-style design: a 3x3 head, plain residual blocks (conv-ReLU-conv,
no batch norm, residual scaling), a body conv with a long skip, a sub-pixel
(PixelShuffle) tail, and an upsampled copy of the input added at the end so
the network only learns the missing detail. Everything runs at LR resolution,
which is what keeps it fast on CPUs.

``base="bilinear"`` adds a bilinear copy of the input at HR size (the default
weights). ``base="nearest"`` adds the input to each of the tail's s*s sub-pixel
channels before the shuffle, which is nearest-neighbour upsampling done at LR
size: it saves two full passes over the HR output, a large share of the time
of the small `fast` models at x3/x4.

``block_grid=8`` tells the network where the 8x8 blocks of JPEG and video codecs lie: a
learned bias per channel and position in the block is added after the head. A
fully convolutional net cannot otherwise tell a block edge from any other edge, and a
small one cannot infer the grid from the few pixels it sees. The bias depends only
on each pixel's distance to the nearest block edge across and down (symmetric under
the flips and transposes training uses, which mirror a patch's position within its
blocks), and its phase is the input's origin: the network's ``size_multiple`` is the
grid, so tiles start on it and the input's own grid (a decoded JPEG or video frame
starts with a whole block) is the one the network assumes.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .descriptor import ArchDescriptor
from .layers import PixelShuffle, shuffle_plus_nearest


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
                 num_blocks: int = 6, res_scale: float = 1.0, base: str = "bilinear",
                 block_grid: int = 0):
        super().__init__()
        if base not in ("bilinear", "nearest"):
            raise ValueError(f"base must be 'bilinear' or 'nearest', not {base!r}")
        if block_grid not in (0, 8):
            raise ValueError(f"block_grid must be 0 (none) or 8 (the JPEG/video codec block), not {block_grid}")
        self.scale = scale
        self.base = base
        self.in_channels = in_channels
        self.head = nn.Conv2d(in_channels, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlock(num_feat, res_scale) for _ in range(num_blocks)])
        self.body_conv = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.tail = nn.Conv2d(num_feat, in_channels * scale * scale, 3, 1, 1)
        self.shuffle = PixelShuffle(scale)
        self.receptive_radius = 2 * num_blocks + 4  # 2b+3 convs + bilinear base
        nn.init.zeros_(self.tail.weight)  # start as plain bilinear/nearest upscaling
        nn.init.zeros_(self.tail.bias)
        # Prefixes of tensors that a network without them computes as if they were zero (see
        # sr_cli/blend.py): a residual block at zero adds nothing, so a deepened fine-tune blends
        # with its shallower parent; likewise the grid bias below.
        self.zero_when_absent = ("body.", "grid_bias")
        self.block_grid = block_grid
        if block_grid:
            self.size_multiple = block_grid
            half = block_grid // 2
            # zeros: a network fine-tuned from one without the grid starts as that network (and
            # blends with it as if it had the bias at zero)
            self.grid_bias = nn.Parameter(torch.zeros(1, num_feat, half, half))
            distance = [min(i, block_grid - 1 - i) for i in range(block_grid)]
            self.register_buffer("grid_distance", torch.tensor(distance), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        if self.block_grid:
            feat = feat + self._grid_pattern(x.shape[-2], x.shape[-1])
        feat = feat + self.body_conv(self.body(feat))
        detail = self.tail(feat)
        if self.base == "nearest":
            return shuffle_plus_nearest(detail, x, self.scale)
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return base.add_(self.shuffle(detail))

    def _grid_pattern(self, height, width) -> torch.Tensor:
        """The grid bias over an input of ``height`` x ``width``, phase 0 at its origin."""
        g = self.block_grid
        table = self.grid_bias + self.grid_bias.transpose(-1, -2)  # same across as down
        block = table[:, :, self.grid_distance][:, :, :, self.grid_distance]  # (1, C, g, g)
        return block.repeat(1, 1, (height + g - 1) // g, (width + g - 1) // g)[..., :height, :width]


LITESR_ARCH = ArchDescriptor("litesr", LiteSR, tiny={"num_feat": 8, "num_blocks": 1})
