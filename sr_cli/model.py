"""A loaded super-resolution model: network plus what callers need to know to run it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class SRModel:
    """A network with its contract: ``scale``, channels, size multiple, receptive radius.

    Calling it maps NCHW float [0, 1] to NCHW float [0, 1] at ``scale`` times the
    size, padding the input to ``size_multiple`` and cropping the result, so callers
    never hard-code per-model padding.
    """

    net: nn.Module | Callable[[torch.Tensor], torch.Tensor]
    arch: str
    scale: int
    params: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    in_channels: int = 3
    size_multiple: int = 1
    receptive_radius: int = 16
    metadata: dict[str, str] = field(default_factory=dict)
    channels_last: bool = False

    @classmethod
    def from_net(cls, net: nn.Module, arch: str, params: dict[str, Any], **extra) -> "SRModel":
        return cls(
            net=net.eval(), arch=arch, scale=int(net.scale), params=params,
            in_channels=int(getattr(net, "in_channels", 3)),
            size_multiple=int(getattr(net, "size_multiple", 1)),
            receptive_radius=int(getattr(net, "receptive_radius", 16)), **extra,
        )

    @property
    def num_parameters(self) -> int:
        if isinstance(self.net, nn.Module):
            return sum(p.numel() for p in self.net.parameters())
        return 0

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32,
           channels_last: bool = True) -> "SRModel":
        """Move the network; channels-last memory layout is ~1.3-1.8x faster for convs on CPU."""
        if isinstance(self.net, nn.Module):
            self.net.to(device=device, dtype=dtype)
            if channels_last:
                self.net.to(memory_format=torch.channels_last)
            self.channels_last = channels_last
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected an NCHW tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = self.size_multiple
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self.net(x)
            if pad_h or pad_w:
                y = y[..., : h * self.scale, : w * self.scale]
            # In place unless the network handed back (a view of) its input: one HR-sized
            # copy fewer per tile.
            if y.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
                return y.clamp(0.0, 1.0)
            return y.clamp_(0.0, 1.0)
