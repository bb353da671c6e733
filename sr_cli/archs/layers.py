"""Small building blocks shared by several architectures."""
from __future__ import annotations

import torch
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


def pixel_shuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``F.pixel_shuffle`` that always returns contiguous NCHW, in one copy.

    On a channels-last input (our CPU path) PyTorch's returns channels-last too: a
    3-channel HR image with its channels innermost, about twice as slow to make here
    and slower for everything done to it afterwards at HR size.
    """
    n, channels, height, width = x.shape
    out_channels = channels // (factor * factor)
    return (x.reshape(n, out_channels, factor, factor, height, width)
             .permute(0, 1, 4, 2, 5, 3)
             .reshape(n, out_channels, height * factor, width * factor))


class PixelShuffle(nn.PixelShuffle):
    """nn.PixelShuffle (same name in state dicts: it has none) returning contiguous NCHW."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle(x, self.upscale_factor)


def shuffle_plus_nearest(detail: torch.Tensor, x: torch.Tensor, factor: int) -> torch.Tensor:
    """``pixel_shuffle(detail) + nearest-upsampled x``, with the sum done at LR size, in place.

    Sub-pixel channel c*f*f + k of ``detail`` becomes output pixel k of channel c, so adding
    ``x[:, c]`` to each of those channels before the shuffle is exactly the nearest
    upsampling of ``x`` added after it, without the HR-sized temporaries.
    """
    n, channels, height, width = x.shape
    if torch.jit.is_tracing():  # export: ONNX drops an in-place add into a view; same sum out of place
        summed = detail.view(n, channels, factor * factor, height, width) + x.unsqueeze(2)
        return pixel_shuffle(summed.view(n, channels * factor * factor, height, width), factor)
    detail.view(n, channels, factor * factor, height, width).add_(x.unsqueeze(2))
    return pixel_shuffle(detail, factor)
