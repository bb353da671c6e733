"""Encoder-decoder SR networks: a plain autoencoder (``AutoencoderSR``) and its
variational form (``VAESR``).

Layout (``num_down`` = D, widths ``c_i = min(num_feat * 2**i, max_feat)``)::

    head        3x3 conv, in_channels -> c_0                       (LR)
    encoder.i   3x3 stride-2 conv c_i -> c_{i+1}, act, 3x3 conv, act  (LR / 2**(i+1))
    bottleneck  num_blocks residual blocks at LR / 2**D
    decoder.i   learned x2 upsampling (3x3 conv + PixelShuffle, or a 4x4 stride-2
                transposed conv) c_{i+1} -> c_i, act, [+ encoder feature of the
                same size when ``skips``], 3x3 conv, act        (back to LR)
    upsampler   PixelShuffle stages to ``scale`` (x2 stages; x3 one stage), tail conv

The input height and width must be multiples of ``2**num_down`` (``size_multiple``).
Activations are LeakyReLU(0.2).

``VAESR`` replaces the bottleneck's output with a Gaussian latent: a 3x3 conv
gives the mean and log-variance of ``latent_channels`` maps, a sample
``mu + sigma * eps`` is drawn in training mode (the mean is used in eval mode,
so inference is deterministic), and a 3x3 conv maps it back. Each forward sets
``last_kl``: KL(q(z|x) || N(0, I)) averaged over latent elements (so its size
does not depend on the patch size); the trainer adds ``kl_weight * net.last_kl``.
With ``skips`` on (the default) the latent carries what the skips do not, like a
conditional VAE; ``skips=False`` forces everything through the latent.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .descriptor import ArchDescriptor
from .layers import PixelShuffle, Upsampler, chain_radius, upsample_ops

_UP_MODES = ("pixelshuffle", "transpose")


def _act() -> nn.Module:
    return nn.LeakyReLU(negative_slope=0.2, inplace=True)


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.act = _act()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class AutoencoderSR(nn.Module):
    def __init__(self, *, scale: int = 4, in_channels: int = 3, num_feat: int = 32,
                 num_down: int = 2, num_blocks: int = 2, max_feat: int = 256,
                 up_mode: str = "pixelshuffle", skips: bool = True):
        super().__init__()
        if up_mode not in _UP_MODES:
            raise ValueError(f"unknown up_mode {up_mode!r} ({', '.join(_UP_MODES)})")
        if num_down < 1:
            raise ValueError(f"num_down must be >= 1, got {num_down}")
        self.scale = scale
        self.in_channels = in_channels
        self.skips = skips
        self.size_multiple = 2 ** num_down
        widths = [min(num_feat * 2 ** i, max_feat) for i in range(num_down + 1)]

        self.head = nn.Conv2d(in_channels, widths[0], 3, 1, 1)
        self.encoder = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i], widths[i + 1], 3, 2, 1), _act(),
                          nn.Conv2d(widths[i + 1], widths[i + 1], 3, 1, 1), _act())
            for i in range(num_down))
        self.bottleneck = nn.Sequential(*[_ResBlock(widths[-1]) for _ in range(num_blocks)])
        self.decoder_up = nn.ModuleList(_up2(widths[i + 1], widths[i], up_mode) for i in range(num_down))
        self.decoder_conv = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i], widths[i], 3, 1, 1), _act()) for i in range(num_down))
        self.upsampler = Upsampler(scale, widths[0])
        self.tail = nn.Conv2d(widths[0], in_channels, 3, 1, 1)

        # Main path (the skips are shorter branches of it).
        ops: list = [("conv", 3)]
        ops += [("sconv", 3, 2, 1), ("conv", 3)] * num_down
        ops += [("conv", 3)] * (2 * num_blocks) + self._latent_ops()
        up = [("conv", 3), ("up", 2)] if up_mode == "pixelshuffle" else [("tconv", 4, 2, 1)]
        ops += (up + [("conv", 3)]) * num_down
        ops += upsample_ops(scale) + [("conv", 3)]
        self.receptive_radius = chain_radius(ops, scale)

    def _latent_ops(self) -> list:
        return []

    def _latent(self, feat: torch.Tensor) -> torch.Tensor:
        return feat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.size_multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"input height and width must be multiples of {m}, got {tuple(x.shape[-2:])}")
        feats = [self.head(x)]
        for stage in self.encoder:
            feats.append(stage(feats[-1]))
        out = self._latent(self.bottleneck(feats[-1]))
        for i in reversed(range(len(self.decoder_up))):
            out = self.decoder_up[i](out)
            if self.skips:
                out = out + feats[i]
            out = self.decoder_conv[i](out)
        return self.tail(self.upsampler(out))


class VAESR(AutoencoderSR):
    def __init__(self, *, scale: int = 4, in_channels: int = 3, num_feat: int = 32,
                 num_down: int = 2, num_blocks: int = 2, max_feat: int = 256,
                 latent_channels: int = 16, up_mode: str = "pixelshuffle", skips: bool = True):
        super().__init__(scale=scale, in_channels=in_channels, num_feat=num_feat, num_down=num_down,
                         num_blocks=num_blocks, max_feat=max_feat, up_mode=up_mode, skips=skips)
        width = min(num_feat * 2 ** num_down, max_feat)
        self.latent_channels = latent_channels
        self.to_latent = nn.Conv2d(width, 2 * latent_channels, 3, 1, 1)
        self.from_latent = nn.Sequential(nn.Conv2d(latent_channels, width, 3, 1, 1), _act())
        self.last_kl: torch.Tensor | None = None

    def _latent_ops(self) -> list:
        return [("conv", 3), ("conv", 3)]

    def _latent(self, feat: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.to_latent(feat).chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        self.last_kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.from_latent(z)

    def kl_divergence(self) -> torch.Tensor:
        """The KL term of the last forward (raises if there was none)."""
        if self.last_kl is None:
            raise RuntimeError("no forward pass yet: the KL term is set by forward()")
        return self.last_kl


def _up2(c_in: int, c_out: int, mode: str) -> nn.Module:
    if mode == "pixelshuffle":
        return nn.Sequential(nn.Conv2d(c_in, c_out * 4, 3, 1, 1), PixelShuffle(2), _act())
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), _act())


AUTOENCODER_ARCH = ArchDescriptor("autoencoder", AutoencoderSR, tiny={"num_feat": 8, "num_down": 1, "num_blocks": 1})
VAE_ARCH = ArchDescriptor("vae", VAESR, tiny={"num_feat": 8, "num_down": 1, "num_blocks": 1, "latent_channels": 4})
