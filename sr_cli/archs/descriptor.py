"""What each architecture module declares about itself (spandrel's descriptor idea, as typed fields).

An ``ArchDescriptor`` names an architecture, holds its constructor, the foreign key layouts it
recognises, and the input size it needs. ``ARCHS`` in ``__init__.py`` lists the descriptors;
``sr_cli.foreign`` tries their layouts in that order and loads the first that claims a file.

A layout is a function ``StateDict -> Recognised | None``: None when the keys are not its own;
a ``Recognised`` (the state dict renamed onto our module names, with the hyperparameters read
from the tensor shapes) when they are; ``Unmappable`` raised when the keys are its own but the
variant cannot be expressed by our architecture (spandrel may still load such a file). Each
layout tests for keys no other layout has, so which is tried first does not matter for a real file.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
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


def any_size(params: Mapping[str, Any]) -> int:
    """The size rule of a network that takes any input height and width."""
    return 1


@dataclass(frozen=True)
class ArchDescriptor:
    """One architecture: ``name`` (the key in ``ARCHS`` and in our files' metadata),
    ``constructor`` (keyword-only hyperparameters, always including ``scale``), ``layouts`` (the
    foreign key layouts that map onto it, tried in order) and ``size_multiple``: from the complete
    hyperparameters (``hyperparameters``), the number the input height and width must be multiples
    of; the network built from them reports the same as its ``size_multiple`` attribute. No
    architecture here has a minimum input size."""

    name: str
    constructor: Callable[..., nn.Module]
    layouts: tuple[Layout, ...] = ()
    size_multiple: Callable[[Mapping[str, Any]], int] = any_size

    def hyperparameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` completed with the constructor's defaults; an unknown name raises ValueError."""
        try:
            bound = inspect.signature(self.constructor).bind(**params)
        except TypeError as exc:
            raise ValueError(f"bad parameters for {self.name}: {exc}") from None
        bound.apply_defaults()
        return dict(bound.arguments)

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
