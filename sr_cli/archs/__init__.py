"""Generator architectures, by name.

ARCHS maps a name to its ``ArchDescriptor`` (``descriptor.py``), declared next to the network in
its module: the constructor, taking keyword-only hyperparameters (always including ``scale``),
and the foreign key layouts that map onto it. It is the one
list of architectures: ``build_arch`` builds from it and ``sr_cli.foreign`` tries its layouts in
this order. Every network built from it exposes ``scale`` and may expose ``size_multiple`` (its
input height/width must be a multiple of it) and ``receptive_radius`` (LR pixels on each side
that influence one output pixel).
"""
from __future__ import annotations

import torch.nn as nn

from .autoencoder import AUTOENCODER_ARCH, VAE_ARCH
from .compact import SRVGG_ARCH
from .descriptor import ArchDescriptor, build_from
from .discriminators import DISCRIMINATORS  # noqa: F401 (re-exported: GAN training's, by name)
from .edsr import EDSR_ARCH, SRRESNET_ARCH
from .espcn import ESPCN_ARCH
from .litesr import LITESR_ARCH
from .rrdbnet import RRDBNET_ARCH

ARCHS: dict[str, ArchDescriptor] = {arch.name: arch for arch in (
    SRVGG_ARCH, LITESR_ARCH, ESPCN_ARCH, SRRESNET_ARCH, EDSR_ARCH, RRDBNET_ARCH, AUTOENCODER_ARCH, VAE_ARCH,
)}



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
    return build_from({n: arch.constructor for n, arch in ARCHS.items()}, "architecture", name, params)
