"""What each architecture module declares about itself (spandrel's descriptor idea, as typed fields).

An ``ArchDescriptor`` names an architecture, holds its constructor and the foreign key layouts it
recognises. What input size a network needs, it says itself (its ``size_multiple`` attribute), so
that rule is written once, beside the code that needs it. ``ARCHS`` in ``__init__.py`` lists the
descriptors; ``sr_cli.foreign`` tries their layouts in that order and loads the first that claims
a file.

A layout is a function ``StateDict -> Recognised | None``: None when the keys are not its own;
a ``Recognised`` (the state dict renamed onto our module names, with the hyperparameters read
from the tensor shapes) when they are; ``Unmappable`` raised when the keys are its own but the
variant cannot be expressed by our architecture (spandrel may still load such a file). Each
layout tests for keys no other layout has, so which is tried first does not matter for a real file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch
import torch.nn as nn

StateDict = dict[str, torch.Tensor]


class Unmappable(ValueError):
    """A layout we recognise but cannot map onto our architectures (spandrel may still load it)."""


@dataclass(frozen=True)
class Recognised:
    """A state dict renamed onto one of our architectures, with the hyperparameters read from it."""

    arch: str
    params: dict[str, Any]
    state_dict: StateDict
    layout: str


Layout = Callable[[StateDict], Optional[Recognised]]


@dataclass(frozen=True)
class ArchDescriptor:
    """One architecture: ``name`` (the key in ``ARCHS`` and in our files' metadata),
    ``constructor`` (keyword-only hyperparameters, always including ``scale``), ``layouts`` (the
    foreign key layouts that map onto it, tried in order) and ``tiny`` (the smallest hyperparameters
    that still exercise every part of it: what the tests build, shapes and a few training steps,
    never a model to use)."""

    name: str
    constructor: Callable[..., nn.Module]
    layouts: tuple[Layout, ...] = ()
    tiny: Mapping[str, Any] = field(default_factory=dict)

    def detect(self, state: StateDict) -> Optional[Recognised]:
        """The first of ``layouts`` that claims ``state``; None when none does (Unmappable passes through)."""
        for layout in self.layouts:
            found = layout(state)
            if found is not None:
                return found
        return None


def key_indices(state: StateDict, pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) over the keys."""
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state if (m := regex.fullmatch(k))})


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
