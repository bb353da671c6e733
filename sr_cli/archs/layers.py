"""Small building blocks shared by several architectures."""
from __future__ import annotations

import torch.nn as nn


def activation(kind: str, channels: int, *, leaky_slope: float = 0.1) -> nn.Module:
    """An activation by name: relu, prelu (one slope per channel), leakyrelu or tanh."""
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "prelu":
        return nn.PReLU(num_parameters=channels)
    if kind == "leakyrelu":
        return nn.LeakyReLU(negative_slope=leaky_slope, inplace=True)
    if kind == "tanh":
        return nn.Tanh()
    raise ValueError(f"unknown activation {kind!r} (relu, prelu, leakyrelu, tanh)")
