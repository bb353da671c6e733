"""Discriminators for GAN training of the generators in ``ARCHS``.

Both take NCHW images in [0, 1] and return raw logits (no sigmoid; the losses in
``sr_cli.training.losses`` expect logits). ``forward(x, return_features=True)`` returns
``(logits, features)``, ``features`` being the activations of each block, for a
feature-matching loss.

``VGGDiscriminator``   SRGAN's (Ledig et al. 2017): 8 conv blocks (3x3; conv +
    BN + LeakyReLU 0.2; stride 2 every second block; channels 64 -> 512 doubling),
    then Dense(1024), LeakyReLU, Dense(1) -> logits of shape (N, 1). The paper's
    96x96 patches give 6x6 maps before the dense layers; an adaptive average pool
    to ``pool_size`` (default 6) lets any patch size of 16 pixels or more work
    (128 pixel patches give 8x8, pooled to 6x6).
``UNetDiscriminatorSN``   Real-ESRGAN's U-Net with spectral norm and skip
    connections; per-pixel logits (N, 1, H, W). Parameter names (``conv0`` ...
    ``conv9``, ``weight_orig``/``weight_u``/``weight_v``) match Real-ESRGAN's, so
    its ``net_d`` checkpoints load. H and W must be multiples of 8.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

from .descriptor import build_from


class VGGDiscriminator(nn.Module):
    def __init__(self, *, in_channels: int = 3, num_feat: int = 64, pool_size: int = 6,
                 dense_features: int = 1024):
        super().__init__()
        self.in_channels = in_channels
        blocks = [nn.Sequential(nn.Conv2d(in_channels, num_feat, 3, 1, 1),
                                nn.LeakyReLU(0.2, inplace=True))]  # the paper's first block has no BN
        channels = num_feat
        for i in range(1, 8):
            out_channels = num_feat * 2 ** (i // 2)
            stride = 2 if i % 2 == 1 else 1
            blocks.append(nn.Sequential(nn.Conv2d(channels, out_channels, 3, stride, 1, bias=False),
                                        nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2, inplace=True)))
            channels = out_channels
        self.features = nn.ModuleList(blocks)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Linear(channels * pool_size * pool_size, dense_features),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(dense_features, 1),
        )

    def forward(self, x: torch.Tensor, return_features: bool = False):
        feats = []
        out = x
        for block in self.features:
            out = block(out)
            feats.append(out)
        logits = self.classifier(torch.flatten(self.pool(out), 1))
        return (logits, feats) if return_features else logits


class UNetDiscriminatorSN(nn.Module):
    def __init__(self, *, in_channels: int = 3, num_feat: int = 64, skip_connection: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.skip_connection = skip_connection
        self.size_multiple = 8
        norm = spectral_norm
        self.conv0 = nn.Conv2d(in_channels, num_feat, 3, 1, 1)
        # downsample
        self.conv1 = norm(nn.Conv2d(num_feat, num_feat * 2, 4, 2, 1, bias=False))
        self.conv2 = norm(nn.Conv2d(num_feat * 2, num_feat * 4, 4, 2, 1, bias=False))
        self.conv3 = norm(nn.Conv2d(num_feat * 4, num_feat * 8, 4, 2, 1, bias=False))
        # upsample
        self.conv4 = norm(nn.Conv2d(num_feat * 8, num_feat * 4, 3, 1, 1, bias=False))
        self.conv5 = norm(nn.Conv2d(num_feat * 4, num_feat * 2, 3, 1, 1, bias=False))
        self.conv6 = norm(nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1, bias=False))
        # extra convolutions
        self.conv7 = norm(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False))
        self.conv8 = norm(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(num_feat, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(f"UNetDiscriminatorSN needs H and W multiples of 8, got {tuple(x.shape[-2:])}")
        x0 = _lrelu(self.conv0(x))
        x1 = _lrelu(self.conv1(x0))
        x2 = _lrelu(self.conv2(x1))
        x3 = _lrelu(self.conv3(x2))
        x4 = _lrelu(self.conv4(_up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = _lrelu(self.conv5(_up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = _lrelu(self.conv6(_up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        x7 = _lrelu(self.conv7(x6))
        x8 = _lrelu(self.conv8(x7))
        logits = self.conv9(x8)
        return (logits, [x0, x1, x2, x3, x4, x5, x6, x7, x8]) if return_features else logits


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope=0.2)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


# Discriminators for GAN training (no ``scale``), by name; forward(x, return_features=False).
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "vgg": VGGDiscriminator,
    "unet": UNetDiscriminatorSN,
}


def build_discriminator(name: str, **params) -> nn.Module:
    """Build a discriminator of ``DISCRIMINATORS``; unknown names/params raise."""
    return build_from(DISCRIMINATORS, "discriminator", name, params)
