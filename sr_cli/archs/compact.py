"""SRVGGNetCompact (Real-ESRGAN's compact net), parameter names as in Real-ESRGAN.

Layout: ``body.0`` conv in, then (activation, conv) pairs, a last conv to
``out_channels * scale**2``, PixelShuffle, plus the nearest-upsampled input.

Foreign layout recognised (``SRVGG_ARCH``):
  Real-ESRGAN Compact     body.N (SRVGGNetCompact: realesr-general-x4v3, animevideov3, ...)
"""
from __future__ import annotations

import math
import re
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .descriptor import ArchDescriptor, Recognised, StateDict, Unmappable, key_indices
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


def _real_esrgan_compact(state: StateDict) -> Optional[Recognised]:
    key = re.compile(r"body\.(\d+)\.(weight|bias)")
    if "body.0.weight" not in state or not all(key.fullmatch(k) for k in state):
        return None
    weights = {i: state[f"body.{i}.weight"] for i in key_indices(state, r"body\.(\d+)\.weight")}
    convs = [i for i, w in weights.items() if w.ndim == 4]
    prelus = [i for i, w in weights.items() if w.ndim == 1]
    num_conv = len(convs) - 2
    if num_conv < 0 or convs != list(range(0, 2 * num_conv + 3, 2)):
        raise Unmappable(f"a body.N layout whose convs sit at {convs}, not SRVGGNetCompact's")
    if prelus and prelus != list(range(1, 2 * num_conv + 2, 2)):
        raise Unmappable(f"a body.N layout whose PReLUs sit at {prelus}, not SRVGGNetCompact's")
    first, last = weights[0], weights[convs[-1]]
    in_ch, num_feat = int(first.shape[1]), int(first.shape[0])
    scale = math.isqrt(int(last.shape[0]) // in_ch)
    if scale < 1 or in_ch * scale * scale != last.shape[0]:
        raise Unmappable(f"an SRVGGNetCompact whose last conv has {last.shape[0]} outputs, "
                         f"not {in_ch} x scale^2")
    # ReLU and LeakyReLU have no weights to tell them apart; Real-ESRGAN's released models use PReLU.
    params = {"scale": scale, "in_channels": in_ch, "out_channels": in_ch, "num_feat": num_feat,
              "num_conv": num_conv, "act_type": "prelu" if prelus else "relu"}
    return Recognised("srvgg", params, state, "Real-ESRGAN SRVGGNetCompact")


SRVGG_ARCH = ArchDescriptor("srvgg", SRVGGNetCompact, layouts=(_real_esrgan_compact,),
                            tiny={"num_feat": 8, "num_conv": 2})
