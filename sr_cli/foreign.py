"""Community model files: read them safely, recognise their layout, load them as our models.

Files are read (``weights.read_state_dict``) without running any code: ``.safetensors`` by safetensors, and
``.pth``/``.pt``/``.ckpt`` by ``torch.load(weights_only=True)``, which refuses any
pickle that needs more than tensors and plain containers. A refused file gets
one line suggesting conversion to safetensors.

The state dict is unwrapped (``params_ema``, ``params``, ``state_dict``,
``model``, ``net``; ``params_ema`` first), ``module.``/``netG.`` prefixes are
stripped, and its layout is recognised from key names and tensor shapes alone, by the
layouts each architecture declares next to its network, in its ``ArchDescriptor``
(``sr_cli.archs.ARCHS``, tried in that order; each module's docstring lists its keys):

  archs/compact.py        Real-ESRGAN SRVGGNetCompact (realesr-general-x4v3, animevideov3, ...)
  archs/edsr.py           EDSR (EDSR-PyTorch layout)
  archs/rrdbnet.py        Real-ESRGAN RRDBNet (x4plus, x4plus_anime_6B, x2plus, x1);
                          ESRGAN (original layout, x4/x8); ESRGAN (mmsr layout, x4/x8)

Each is renamed onto that architecture and loaded with ``strict=True``. Anything else goes to
spandrel when it is installed (optional: its models are wrapped in our ``SRModel`` and still run
through our tiling, padded to their size requirements, and kept in float32 where spandrel says
they do not support half precision); otherwise one line names the formats we support.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from .archs import ARCHS, build_arch
from .archs.descriptor import Recognised, StateDict, Unmappable
from .download import file_sha256
from .errors import first_line
from .model import SRModel
from .weights import read_state_dict

SUPPORTED = ("sr-cli .safetensors; Real-ESRGAN RRDBNet (x4plus, x4plus_anime_6B, x2plus, x1) and "
             "SRVGGNetCompact (realesr-general-x4v3, animevideov3); ESRGAN (original model.N and mmsr "
             "RRDB_trunk layouts, x4/x8); EDSR (EDSR-PyTorch keys); as .safetensors, .pth, .pt or .ckpt")


def build(found: Recognised, source: str | Path = "") -> nn.Module:
    """The network ``found`` describes, holding its weights: shapes and dtypes are checked against
    the architecture first, then every tensor is checked finite, then loaded with ``strict=True``."""
    from .weights import check_finite, check_tensors
    with torch.device("meta"):  # shapes first: nothing is allocated for a file that does not fit
        skeleton = build_arch(found.arch, **found.params)
    check_tensors({k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()},
                  {k: (tuple(v.shape), v.dtype) for k, v in found.state_dict.items()},
                  source, what=f"{found.layout} ({found.arch})")
    check_finite(found.state_dict, source)
    net = build_arch(found.arch, **found.params)
    try:
        net.load_state_dict(found.state_dict, strict=True)
    except RuntimeError as exc:
        detail = first_line(exc, 300)
        raise ValueError(f"{source}: looks like {found.layout}, but its tensors do not fit: {detail}") from None
    return net.eval()


# ---------------------------------------------------------------------------
# reading


def is_ours(path: str | Path) -> bool:
    """True for a .safetensors file carrying our metadata (arch, params): it needs no detection."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return False
    from .weights import read_metadata
    try:
        metadata = read_metadata(path)
    except Exception:  # not a readable safetensors file: weights.read_state_dict reports it in one line
        return False
    return "arch" in metadata and "params" in metadata


# ---------------------------------------------------------------------------
# recognising


def recognise(state: StateDict) -> Optional[Recognised]:
    """The first layout, over the architectures in ``ARCHS`` order, that claims ``state``; None
    when none does. Raises Unmappable for a known layout whose variant our architectures cannot
    express."""
    for arch in ARCHS.values():
        found = arch.detect(state)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------
# loading


@dataclass
class ForeignFile:
    """A community model file read once: its state dict, the layout recognised in it (or why none
    was), and its native scale; a file that only spandrel loads is loaded to learn its scale, and
    kept."""

    path: Path
    state: StateDict
    container: str
    found: Optional[Recognised]
    reason: str
    scale: int
    spandrel: Optional[SRModel] = None


def read_foreign(path: str | Path) -> ForeignFile:
    """Read and recognise a community model file; ValueError (one line) when nothing loads it."""
    path = Path(path)
    state, container = read_state_dict(path, supported=SUPPORTED)
    found, reason = _recognise_file(state, path)
    if found is not None:
        return ForeignFile(path, state, container, found, reason, int(found.params["scale"]))
    model = _spandrel_model(state, path, name=path.stem, metadata={"source": path.name, "container": container},
                            reason=reason)
    if model is None:
        raise ValueError(_unrecognised(path, reason))
    return ForeignFile(path, state, container, None, reason, model.scale, spandrel=model)


def load_foreign(file: ForeignFile, *, name: str = "") -> SRModel:
    """The SRModel of a file ``read_foreign`` read: built from its recognised layout, or spandrel's."""
    if file.spandrel is not None:
        file.spandrel.name = name or file.path.stem
        return file.spandrel
    metadata = {"source": file.path.name, "container": file.container, "source_format": file.found.layout}
    return SRModel.from_net(build(file.found, file.path), file.found.arch, file.found.params,
                            name=name or file.path.stem, metadata=metadata)


def load_any(path: str | Path, *, name: str = "") -> SRModel:
    """Load any supported model file as an SRModel: ours, a recognised layout, or via spandrel."""
    path = Path(path)
    if is_ours(path):
        from .weights import load_model
        return load_model(path, name=name)
    return load_foreign(read_foreign(path), name=name)


def _recognise_file(state: StateDict, path: Path) -> tuple[Optional[Recognised], str]:
    if not state:
        raise ValueError(f"{path}: holds no tensors; supported: {SUPPORTED}")
    try:
        return recognise(state), ""
    except Unmappable as exc:
        return None, str(exc)


def _unrecognised(path: Path, reason: str) -> str:
    what = reason or "no known key layout"
    return (f"{path}: unrecognised model ({what}); supported: {SUPPORTED}; "
            "other architectures load when spandrel is installed (pip install spandrel)")


# ---------------------------------------------------------------------------
# spandrel (optional)


class SpandrelNet(nn.Module):
    """A spandrel ImageModelDescriptor as a module: ``.to`` moves its model, the call goes through
    spandrel's own ``__call__`` (its padding to size requirements, its call function, clamping).

    Half precision is respected: ``.to(dtype=float16)`` on a model spandrel marks as not
    supporting it (``supports_half``; likewise ``supports_bfloat16``) keeps its weights in
    float32, and the call casts the input to the weights' dtype and the output back.
    The input is always copied first: some upstream models scale it in place (RCAN's
    ``x *= rgb_range``), and our tiles are views of the caller's image.
    """

    def __init__(self, descriptor: Any):
        super().__init__()
        self.model = descriptor.model
        self.descriptor = descriptor
        self.scale = int(descriptor.scale)
        self.in_channels = int(descriptor.input_channels)
        requirements = descriptor.size_requirements
        self.size_multiple = max(1, int(getattr(requirements, "multiple_of", 1) or 1))
        self.size_minimum = max(0, int(getattr(requirements, "minimum", 0) or 0))
        self.supports_half = bool(getattr(descriptor, "supports_half", False))
        self.supports_bfloat16 = bool(getattr(descriptor, "supports_bfloat16", False))

    def runs_in(self, dtype: torch.dtype) -> bool:
        """Whether spandrel says the model computes correctly in ``dtype``."""
        if dtype == torch.float16:
            return self.supports_half
        if dtype == torch.bfloat16:
            return self.supports_bfloat16
        return True

    def to(self, *args, **kwargs):  # type: ignore[override]
        dtype = kwargs.get("dtype", next((a for a in args if isinstance(a, torch.dtype)), None))
        if dtype is not None and dtype.is_floating_point and not self.runs_in(dtype):
            args = tuple(torch.float32 if isinstance(a, torch.dtype) else a for a in args)
            if "dtype" in kwargs:
                kwargs = {**kwargs, "dtype": torch.float32}
        return super().to(*args, **kwargs)

    @property
    def compute_dtype(self) -> torch.dtype:
        weight = next(self.model.parameters(), None)
        return weight.dtype if weight is not None else torch.float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.descriptor(x.to(self.compute_dtype, copy=True)).to(x.dtype)


def _spandrel_model(state: StateDict, path: Path, *, name: str, metadata: dict[str, str],
                    reason: str = "") -> Optional[SRModel]:
    """``state`` loaded by spandrel as an SRModel; None when spandrel is missing or does not know it.

    ``reason``: why our own detectors passed on a layout they know, said too if spandrel fails.
    """
    try:
        import spandrel
    except Exception:  # not installed, or it fails to import (e.g. a torchvision mismatch)
        return None
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        return None
    except Exception as exc:
        detail = first_line(exc, 300)
        ours = f"{reason}; " if reason else ""
        raise ValueError(f"{path}: {ours}spandrel recognised the file but could not load it ({detail})") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ValueError(f"{path}: a {descriptor.architecture.name} model for {descriptor.purpose}, "
                         "not an image-to-image model")
    if getattr(descriptor.size_requirements, "square", False):
        raise ValueError(f"{path}: {descriptor.architecture.name} needs square inputs, which tiling cannot give")
    net = SpandrelNet(descriptor).eval()
    arch = f"spandrel:{descriptor.architecture.id}"
    tiling = getattr(descriptor, "tiling", None)
    metadata = {**metadata, "source_format": f"spandrel {descriptor.architecture.name}",
                "tags": json.dumps(list(descriptor.tags)),
                "supports_half": json.dumps(net.supports_half),
                "supports_bfloat16": json.dumps(net.supports_bfloat16),
                "size_requirements": json.dumps({"minimum": net.size_minimum, "multiple_of": net.size_multiple}),
                "tiling": getattr(tiling, "name", "SUPPORTED").lower()}
    return SRModel(net=net, arch=arch, scale=net.scale, params={"scale": net.scale}, name=name,
                   in_channels=net.in_channels, size_multiple=net.size_multiple, metadata=metadata)


# ---------------------------------------------------------------------------
# conversion


def convert(source: str | Path, destination: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Rewrite a supported model file as our safetensors, with arch/scale/params and provenance."""
    from .weights import read_metadata, save_model
    source, destination = Path(source), Path(destination)
    if destination.suffix.lower() != ".safetensors":
        raise ValueError(f"{destination}: the output must be a .safetensors file")
    if not source.is_file():
        raise ValueError(f"{source}: no such file")
    if destination.exists() and destination.resolve() == source.resolve():
        raise ValueError(f"{destination}: the output would replace the input")
    if destination.exists() and not overwrite:
        raise ValueError(f"{destination} exists; pass --overwrite to replace it")
    extra: dict[str, Any] = {}
    if is_ours(source):
        loaded = load_any(source)
        net, arch, params, layout = loaded.net, loaded.arch, loaded.params, "sr-cli"
        extra = {k: v for k, v in read_metadata(source).items() if k not in ("format", "arch", "scale", "params")}
    else:
        state, _ = read_state_dict(source, supported=SUPPORTED)
        found, reason = _recognise_file(state, source)
        if found is None:
            if _spandrel_model(state, source, name=source.stem, metadata={}, reason=reason) is not None:
                raise ValueError(f"{source}: loads only through spandrel, which has no sr-cli architecture "
                                 "for it; run it with --model, it cannot be converted")
            raise ValueError(_unrecognised(source, reason))
        net, arch, params, layout = build(found, source), found.arch, found.params, found.layout
    extra.update({"converted_from": source.name, "source_format": layout,
                  "source_sha256": file_sha256(source)})
    save_model(net, destination, arch=arch, params=params, extra=extra)
    return {"source": str(source), "output": str(destination), "arch": arch, "scale": int(params["scale"]),
            "params": params, "source_format": layout,
            "parameters": sum(p.numel() for p in net.parameters())}
