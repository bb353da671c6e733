"""SRResNet (Ledig et al. 2017) and EDSR (Lim et al. 2017).

Both run a residual body at LR resolution and upsample at the end with
PixelShuffle stages (``layers.Upsampler``): x2, x4 and x8 as 1, 2 and 3 stages of x2; x3 as one stage.

Foreign layout recognised (``EDSR_ARCH``):
  EDSR (EDSR-PyTorch)     head.0, body.N.body.0/2, body.<nb>, tail.0.K, tail.1, sub_mean/add_mean
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn

from .descriptor import ArchDescriptor, Recognised, StateDict, Unmappable, key_indices
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


def _edsr_pytorch(state: StateDict) -> Optional[Recognised]:
    need = ("head.0.weight", "body.0.body.0.weight", "tail.0.0.weight", "tail.1.weight")
    if not all(k in state for k in need):
        return None
    head = state["head.0.weight"]
    num_feat, in_ch = int(head.shape[0]), int(head.shape[1])
    num_blocks = len(key_indices(state, r"body\.(\d+)\.body\.0\.weight"))
    stages = key_indices(state, r"tail\.0\.(\d+)\.weight")
    if stages != list(range(0, 2 * len(stages), 2)):
        raise Unmappable(f"an EDSR file with upsampler convs at tail.0.{stages}")
    if len(stages) == 1:
        factor = math.isqrt(int(state["tail.0.0.weight"].shape[0]) // num_feat)
        scale = factor if factor in (2, 3) else 0
    else:
        scale = 2 ** len(stages)
    if scale not in (2, 3, 4, 8):
        raise Unmappable("an EDSR file whose upsampler is not x2, x3, x4 or x8")
    rgb_range, mean_shift = 255.0, True  # EDSR-PyTorch's defaults
    if "sub_mean.bias" in state:
        weight, bias = state["sub_mean.weight"].float(), state["sub_mean.bias"].float()
        if not torch.allclose(weight.flatten(1), torch.eye(weight.shape[0]), atol=1e-5):
            raise Unmappable("an EDSR file with a non-unit rgb_std (sub_mean weight is not the identity)")
        if torch.allclose(bias, torch.zeros_like(bias)):
            mean_shift = False
        else:
            mean = torch.tensor(DIV2K_RGB_MEAN if in_ch == 3 else [sum(DIV2K_RGB_MEAN) / 3] * in_ch)
            ratio = -bias / mean
            rgb_range = float(ratio.mean())
            if not torch.allclose(ratio, torch.full_like(ratio, rgb_range), rtol=1e-3):
                raise Unmappable("an EDSR file whose mean shift is not the DIV2K mean")
            if abs(rgb_range - round(rgb_range)) < 1e-3:
                rgb_range = float(round(rgb_range))
    # res_scale is not in the weights: EDSR-PyTorch's large model (32 x 256) used 0.1, the baseline 1.
    res_scale = 0.1 if (num_blocks, num_feat) == (32, 256) else 1.0
    renamed = {k: v for k, v in state.items() if not k.startswith(("sub_mean.", "add_mean."))}
    params = {"scale": scale, "in_channels": in_ch, "num_feat": num_feat, "num_blocks": num_blocks,
              "res_scale": res_scale, "mean_shift": mean_shift, "rgb_range": rgb_range}
    return Recognised("edsr", params, renamed, "EDSR (EDSR-PyTorch layout)")


SRRESNET_ARCH = ArchDescriptor("srresnet", SRResNet, tiny={"num_feat": 8, "num_blocks": 1})
EDSR_ARCH = ArchDescriptor("edsr", EDSR, layouts=(_edsr_pytorch,), tiny={"num_feat": 8, "num_blocks": 1})
