"""Export a model for runtimes without sr: ONNX (dynamic height and width) or TorchScript.

The exported graph keeps SRModel's contract: NCHW float in [0, 1] of any size in,
``scale`` times the size out, clamped to [0, 1]. Inputs are padded (replicate)
to the model's size multiple inside the graph and the output is cropped, so a
caller needs no per-model padding. The model's arch, scale, params and size
multiple are stored with the file (ONNX metadata_props; a ``sr_cli.json`` extra
file in TorchScript).

ONNX needs the ``onnx`` package; when ``onnxruntime`` is installed the exported
file is run on a random image and must match PyTorch within ``ONNX_TOLERANCE``.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .atomic import atomic_path
from .model import SRModel

FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-4


class ContractNet(nn.Module):
    """``net`` with SRModel's padding, cropping and clamping, as traceable tensor operations."""

    def __init__(self, net: nn.Module, *, scale: int, size_multiple: int):
        super().__init__()
        self.net = net
        self.scale = scale
        self.size_multiple = size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.size_multiple
        if m > 1:
            h, w = x.shape[-2], x.shape[-1]
            x = F.pad(x, (0, (m - w % m) % m, 0, (m - h % m) % m), mode="replicate")
            y = self.net(x)[..., : h * self.scale, : w * self.scale]
        else:
            y = self.net(x)
        return y.clamp(0.0, 1.0)


def export_model(model: SRModel, output: str | Path, *, fmt: str, opset: int = ONNX_OPSET,
                 check: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Write ``model`` to ``output`` as ``fmt`` (onnx or torchscript); return a summary."""
    output = Path(output)
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} ({', '.join(FORMATS)})")
    if not isinstance(model.net, nn.Module):
        raise ValueError(f"{model.name or model.arch} is not a network (an interpolation baseline); "
                         "nothing to export")
    if model.arch.startswith("spandrel:"):
        raise ValueError(f"{model.name}: spandrel models are not exported by sr (export the original "
                         "network with its own tools)")
    if output.exists() and not overwrite:
        raise ValueError(f"{output} exists; pass --overwrite to replace it")
    info = {"arch": model.arch, "scale": str(model.scale), "params": json.dumps(model.params, sort_keys=True),
            "size_multiple": str(model.size_multiple), "in_channels": str(model.in_channels),
            "name": model.name, "range": "[0, 1]", "layout": "NCHW", "precision": "fp32",
            "receptive_radius": str(model.receptive_radius), "parameters": str(model.num_parameters)}
    net = ContractNet(model.net.float().cpu().eval(), scale=model.scale, size_multiple=model.size_multiple).eval()
    example = torch.rand(1, model.in_channels, _example_side(model.size_multiple), _example_side(model.size_multiple))
    output.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"output": str(output), "format": fmt, "arch": model.arch, "scale": model.scale,
                               "max_abs_diff": None}
    # Written and checked under a temporary name, renamed only once it passes: a failed export
    # (or check) leaves nothing behind, and never replaces a good file with a bad one.
    with atomic_path(output, replace=overwrite) as tmp:  # a per-process name; no replacing unasked
        if fmt == "torchscript":
            _export_torchscript(net, example, tmp, info)
        else:
            _export_onnx(net, example, tmp, info, opset)
        if check:
            summary["max_abs_diff"] = _check(model, tmp, fmt, shown=output)
    return summary


def _example_side(m: int) -> int:
    return 2 * max(8, m)


def _export_torchscript(net: nn.Module, example: torch.Tensor, tmp: Path, info: dict[str, str]) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        # TracerWarnings about shape checks that hold for every size; torch.jit's deprecation notice.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, example, check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files={"sr_cli.json": json.dumps(info)})


def _export_onnx(net: nn.Module, example: torch.Tensor, tmp: Path, info: dict[str, str], opset: int) -> None:
    try:
        import onnx
    except ImportError:
        raise RuntimeError("ONNX export needs the onnx package: pip install onnx") from None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated; TracerWarnings
        # dynamo=False: the TorchScript-based exporter needs only onnx (not onnxscript) and gives
        # dynamic height and width from dynamic_axes.
        torch.onnx.export(net, (example,), str(tmp), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                        "output": {0: "batch", 2: "out_height", 3: "out_width"}},
                          opset_version=opset, dynamo=False)
    proto = onnx.load(str(tmp))
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))


def _check(model: SRModel, output: Path, fmt: str, shown: Path | None = None) -> float | None:
    """Largest |exported - PyTorch| on a random image whose size is not a multiple of anything."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, model.in_channels, 13, 11, generator=generator)
    expected = model(x)
    if fmt == "torchscript":
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            got = torch.jit.load(str(output))(x)
    else:
        try:
            import onnxruntime
        except ImportError:
            return None
        session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    output = shown or output  # messages name the file asked for, not its temporary name
    if got.shape != expected.shape:
        raise RuntimeError(f"{output}: exported model gives shape {tuple(got.shape)}, PyTorch "
                           f"{tuple(expected.shape)}")
    diff = float((got - expected).abs().max())
    if diff > ONNX_TOLERANCE:
        raise RuntimeError(f"{output}: exported model differs from PyTorch by {diff:.2e} "
                           f"(tolerance {ONNX_TOLERANCE:.0e})")
    return diff
