"""Network interpolation: the perception-distortion dial of ESRGAN (Wang et al. 2018, section 3.4).

A GAN model and the PSNR-trained model it was fine-tuned from share architecture and
shapes, so their weights can be mixed: ``(1 - strength) * parent + strength * model``.
Strength 0 is the parent's output (fidelity), 1 the GAN's (texture), and values between
move smoothly from one to the other at no cost beyond loading both files.

The parent comes from ``--parent``, else from the model (``resolve.parent_of``): our GAN files
record it in their metadata (``parent``: a model name or a file beside them), catalogue entries
in catalogue.toml. Any two weight files of one architecture and shapes mix the same way. A
tensor that a network declares zero when absent (``zero_when_absent``, name prefixes: LiteSR's
block-grid bias and residual blocks, which a parent without them computes as if they were zero)
mixes with zeros when only the model has it: a grid-aware LiteSR, or one deepened by
weights/grow.py, blends with the plain or shallower network it was fine-tuned from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def split_spec(model: str) -> tuple[str, Optional[float]]:
    """'photo@0.5' -> ('photo', 0.5); anything else (an existing file, no '@S' suffix) -> (model, None)."""
    base, sep, tail = model.rpartition("@")
    if not sep or not base or Path(model).exists():
        return model, None
    try:
        strength = float(tail)
    except ValueError:
        return model, None
    check_strength(strength)
    return base, strength


def with_strength(model: str, strength: Optional[float]) -> str:
    """The model spec for ``--strength``: 'photo' and 0.5 -> 'photo@0.5'."""
    if strength is None:
        return model
    check_strength(strength)
    return f"{model}@{strength:g}"


def check_strength(strength: Optional[float]) -> None:
    import math
    if strength is not None and not (math.isfinite(strength) and 0.0 <= strength <= 1.0):
        raise ValueError(f"strength must be between 0 and 1, got {strength}")


def blend(model, parent, strength: float):
    """An SRModel whose weights are ``(1 - strength) * parent + strength * model``."""
    import torch
    if model.arch != parent.arch:
        raise ValueError(f"cannot blend a {model.arch} model with a {parent.arch} one: same architecture needed")
    ours, theirs = model.net.state_dict(), parent.net.state_dict()
    zero_prefixes = tuple(getattr(model.net, "zero_when_absent", ()))
    for key in ours:
        if key not in theirs and key.startswith(zero_prefixes):
            theirs[key] = torch.zeros_like(ours[key])
    different = sorted(k for k in ours.keys() | theirs.keys()
                       if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape)
    if different:
        raise ValueError(f"cannot blend models of different shapes (first difference: {different[0]})")
    mixed = {}
    for key, value in ours.items():
        if value.is_floating_point():
            mixed[key] = torch.lerp(theirs[key].float(), value.float(), float(strength)).to(value.dtype)
        else:
            mixed[key] = value
    model.net.load_state_dict(mixed)
    model.name = f"{model.name or model.arch}@{strength:g}"
    return model
