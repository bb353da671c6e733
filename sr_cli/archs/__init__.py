"""Generator architectures, by name.

ARCHS maps a name to a constructor taking keyword-only hyperparameters (always
including ``scale``). Every network built from it exposes ``scale`` and may expose
``size_multiple`` (its input height/width must be a multiple of it) and
``receptive_radius`` (LR pixels on each side that influence one output pixel).
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from .autoencoder import AutoencoderSR, VAESR
from .compact import SRVGGNetCompact
from .discriminators import UNetDiscriminatorSN, VGGDiscriminator
from .edsr import EDSR, SRResNet
from .espcn import ESPCN
from .litesr import LiteSR
from .rrdbnet import RRDBNet

ARCHS: dict[str, Callable[..., nn.Module]] = {
    "srvgg": SRVGGNetCompact,
    "litesr": LiteSR,
    "espcn": ESPCN,
    "srresnet": SRResNet,
    "edsr": EDSR,
    "rrdbnet": RRDBNet,
    "autoencoder": AutoencoderSR,
    "vae": VAESR,
}

# Discriminators for GAN training (no ``scale``); forward(x, return_features=False).
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "vgg": VGGDiscriminator,
    "unet": UNetDiscriminatorSN,
}


def set_fused_inference(net: nn.Module, enabled: bool) -> dict[nn.Module, bool]:
    """Switch the CPU inference fast paths (e.g. RRDBNet's concat-free dense blocks) on or off;
    returns the previous settings, so a caller can put them back."""
    previous = {}
    for module in net.modules():
        if hasattr(module, "fused_inference"):
            previous[module] = module.fused_inference
            module.fused_inference = enabled
    return previous


def build_arch(name: str, **params) -> nn.Module:
    """Build a registered generator; unknown names and parameters raise."""
    return build_from(ARCHS, "architecture", name, params)


def build_from(registry: dict, kind: str, name: str, params: dict) -> nn.Module:
    """Build ``registry[name](**params)``; a typo in a name or a parameter must fail, not vanish."""
    try:
        constructor = registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))}") from None
    try:
        return constructor(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for {name}: {exc}") from None
