"""Our weights format: safetensors whose metadata says what the tensors are.

Metadata keys (all strings, as safetensors requires):
  format  "sr-cli/1"
  arch    a key of sr_cli.archs.ARCHS
  scale   integer scale factor
  params  JSON of the constructor's keyword arguments (scale included)
  any others (name, psnr, training command, data...) are kept as provenance.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from .archs import build_arch
from .model import SRModel

FORMAT = "sr-cli/1"


def save_model(net: nn.Module, path: str | Path, *, arch: str, params: dict[str, Any],
               extra: dict[str, Any] | None = None) -> None:
    """Save ``net``'s state dict with the metadata needed to rebuild it."""
    metadata = {"format": FORMAT, "arch": arch, "scale": str(int(params["scale"])),
                "params": json.dumps(params, sort_keys=True)}
    for key, value in (extra or {}).items():
        metadata[key] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def read_metadata(path: str | Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def load_model(path: str | Path, *, name: str = "") -> SRModel:
    """Load one of our safetensors files; raise ValueError if it lacks our metadata."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        for key in handle.keys():
            tensors[key] = handle.get_tensor(key)
    if "arch" not in metadata or "params" not in metadata:
        raise ValueError(f"{path}: no sr-cli metadata (arch, params); not one of our weight files")
    params = json.loads(metadata["params"])
    net = build_arch(metadata["arch"], **params)
    net.load_state_dict(tensors, strict=True)
    return SRModel.from_net(net, metadata["arch"], params, name=name or path.stem, metadata=metadata)
