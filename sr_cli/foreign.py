"""Community model files: read them safely, recognise their layout, load them as our models.

Files are read (``weights.read_state_dict``) without running any code: ``.safetensors`` by safetensors, and
``.pth``/``.pt``/``.ckpt`` by ``torch.load(weights_only=True)``, which refuses any
pickle that needs more than tensors and plain containers. A refused file gets
one line suggesting conversion to safetensors.

The state dict is unwrapped (``params_ema``, ``params``, ``state_dict``,
``model``, ``net``; ``params_ema`` first), ``module.``/``netG.`` prefixes are
stripped, and its layout is recognised from key names and tensor shapes alone:

  Real-ESRGAN RRDBNet     conv_first, body.N.rdbK.convJ, conv_body, conv_up1/2, conv_hr, conv_last
                          (x4plus, x4plus_anime_6B, x2plus and x1: conv_first takes in*4 / in*16)
  Real-ESRGAN Compact     body.N (SRVGGNetCompact: realesr-general-x4v3, animevideov3, ...)
  ESRGAN (original)       model.0, model.1.sub.N.RDBK.convJ.0, model.1.sub.<nb>, model.3/6/8/10 (x4; x8)
  ESRGAN (mmsr layout)    conv_first, RRDB_trunk.N.RDBK.convJ, trunk_conv, upconv1/2, HRconv, conv_last
  EDSR (EDSR-PyTorch)     head.0, body.N.body.0/2, body.<nb>, tail.0.K, tail.1, sub_mean/add_mean

Each is renamed onto one of our architectures (``sr_cli.archs``) and loaded with
``strict=True``. Anything else goes to spandrel when it is installed (optional:
its models are wrapped in our ``SRModel`` and still run through our tiling, padded
to their size requirements, and kept in float32 where spandrel says they do not
support half precision); otherwise one line names the formats we support.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from .archs import build_arch
from .model import SRModel
from .weights import read_state_dict

SUPPORTED = ("sr-cli .safetensors; Real-ESRGAN RRDBNet (x4plus, x4plus_anime_6B, x2plus, x1) and "
             "SRVGGNetCompact (realesr-general-x4v3, animevideov3); ESRGAN (original model.N and mmsr "
             "RRDB_trunk layouts, x4/x8); EDSR (EDSR-PyTorch keys); as .safetensors, .pth, .pt or .ckpt")

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

    def build(self, source: str | Path = "") -> nn.Module:
        from .weights import check_finite, check_tensors
        with torch.device("meta"):  # shapes first: nothing is allocated for a file that does not fit
            skeleton = build_arch(self.arch, **self.params)
        check_tensors({k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()},
                      {k: (tuple(v.shape), v.dtype) for k, v in self.state_dict.items()},
                      source, what=f"{self.layout} ({self.arch})")
        check_finite(self.state_dict, source)
        net = build_arch(self.arch, **self.params)
        try:
            net.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())[:300]
            raise ValueError(f"{source}: looks like {self.layout}, but its tensors do not fit: {detail}") from None
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
# layouts


def _indices(state: StateDict, pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) over the keys."""
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state if (m := regex.fullmatch(k))})


def _rrdb_params(state: StateDict, layout: str, scale: Optional[int] = None) -> Recognised:
    """Hyperparameters of a state dict already in our RRDBNet's key names."""
    first, last = state["conv_first.weight"], state["conv_last.weight"]
    num_feat, in_total = int(first.shape[0]), int(first.shape[1])
    out_ch = int(last.shape[0])
    in_ch = in_total
    if scale is None:
        scale = 8 if "conv_up3.weight" in state else 4
        # Real-ESRGAN x2/x1 pixel-unshuffle the input, so conv_first sees 4x / 16x the channels.
        if scale == 4 and in_total != out_ch:
            for factor, unshuffled_scale in ((4, 2), (16, 1)):
                if in_total == out_ch * factor:
                    scale, in_ch = unshuffled_scale, out_ch
    params = {"scale": scale, "in_channels": in_ch, "out_channels": out_ch, "num_feat": num_feat,
              "num_block": len(_indices(state, r"body\.(\d+)\.rdb1\.conv1\.weight")),
              "num_grow_ch": int(state["body.0.rdb1.conv1.weight"].shape[0])}
    return Recognised("rrdbnet", params, state, layout)


def _real_esrgan_rrdb(state: StateDict) -> Optional[Recognised]:
    need = ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight", "conv_up1.weight",
            "conv_up2.weight", "conv_hr.weight", "conv_last.weight")
    if not all(k in state for k in need):
        return None
    return _rrdb_params(state, "Real-ESRGAN RRDBNet")


def _esrgan_original(state: StateDict) -> Optional[Recognised]:
    if "model.0.weight" not in state or "model.1.sub.0.RDB1.conv1.0.weight" not in state:
        return None
    blocks = _indices(state, r"model\.1\.sub\.(\d+)\.RDB1\.conv1\.0\.weight")
    num_block = len(blocks)
    # After the trunk: (upsample, conv, lrelu) per x2 stage, then HR conv, lrelu, last conv.
    tail = [i for i in _indices(state, r"model\.(\d+)\.weight") if i > 1]
    n_up = len(tail) - 2
    if n_up < 0 or tail != [3 * (k + 1) for k in range(n_up)] + [3 * n_up + 2, 3 * n_up + 4]:
        raise Unmappable(f"an original-ESRGAN file with an unexpected tail (model.{tail})")
    if n_up not in (2, 3):
        raise Unmappable(f"an original-ESRGAN x{2 ** n_up} file: only x4 and x8 map onto our RRDBNet")
    renamed: StateDict = {}
    names = {"model.0": "conv_first", f"model.1.sub.{num_block}": "conv_body",
             f"model.{3 * n_up + 2}": "conv_hr", f"model.{3 * n_up + 4}": "conv_last"}
    names.update({f"model.{3 * (k + 1)}": f"conv_up{k + 1}" for k in range(n_up)})
    rdb = re.compile(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)")
    for key, value in state.items():
        if m := rdb.fullmatch(key):
            renamed[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
            continue
        module, _, leaf = key.rpartition(".")
        renamed[f"{names.get(module, module)}.{leaf}"] = value  # unknown keys stay, and fail strict loading
    return _rrdb_params(renamed, "ESRGAN (original layout)", scale=2 ** n_up)


def _esrgan_mmsr(state: StateDict) -> Optional[Recognised]:
    if "RRDB_trunk.0.RDB1.conv1.weight" not in state or "trunk_conv.weight" not in state:
        return None
    names = {"trunk_conv": "conv_body", "upconv1": "conv_up1", "upconv2": "conv_up2", "upconv3": "conv_up3",
             "HRconv": "conv_hr"}
    rdb = re.compile(r"RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\.(weight|bias)")
    renamed: StateDict = {}
    for key, value in state.items():
        if m := rdb.fullmatch(key):
            renamed[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
            continue
        module, _, leaf = key.rpartition(".")
        renamed[f"{names.get(module, module)}.{leaf}"] = value
    if "conv_up2.weight" not in renamed:
        raise Unmappable("an mmsr-layout ESRGAN file without upconv2: only x4 and x8 map onto our RRDBNet")
    return _rrdb_params(renamed, "ESRGAN (mmsr layout)", scale=8 if "conv_up3.weight" in renamed else 4)


def _compact(state: StateDict) -> Optional[Recognised]:
    key = re.compile(r"body\.(\d+)\.(weight|bias)")
    if "body.0.weight" not in state or not all(key.fullmatch(k) for k in state):
        return None
    weights = {i: state[f"body.{i}.weight"] for i in _indices(state, r"body\.(\d+)\.weight")}
    convs = [i for i, w in weights.items() if w.ndim == 4]
    prelus = [i for i, w in weights.items() if w.ndim == 1]
    num_conv = len(convs) - 2
    if num_conv < 0 or convs != list(range(0, 2 * num_conv + 3, 2)):
        raise Unmappable(f"a body.N layout whose convs sit at {convs}, not SRVGGNetCompact's")
    if prelus and prelus != list(range(1, 2 * num_conv + 2, 2)):
        raise Unmappable(f"a body.N layout whose PReLUs sit at {prelus}, not SRVGGNetCompact's")
    first, last = weights[0], weights[convs[-1]]
    in_ch, num_feat = int(first.shape[1]), int(first.shape[0])
    scale = math.isqrt(int(last.shape[0]) // in_ch)
    if scale < 1 or in_ch * scale * scale != last.shape[0]:
        raise Unmappable(f"an SRVGGNetCompact whose last conv has {last.shape[0]} outputs, "
                         f"not {in_ch} x scale^2")
    # ReLU and LeakyReLU have no weights to tell them apart; Real-ESRGAN's released models use PReLU.
    params = {"scale": scale, "in_channels": in_ch, "out_channels": in_ch, "num_feat": num_feat,
              "num_conv": num_conv, "act_type": "prelu" if prelus else "relu"}
    return Recognised("srvgg", params, state, "Real-ESRGAN SRVGGNetCompact")


def _edsr(state: StateDict) -> Optional[Recognised]:
    need = ("head.0.weight", "body.0.body.0.weight", "tail.0.0.weight", "tail.1.weight")
    if not all(k in state for k in need):
        return None
    from .archs.edsr import DIV2K_RGB_MEAN
    head = state["head.0.weight"]
    num_feat, in_ch = int(head.shape[0]), int(head.shape[1])
    num_blocks = len(_indices(state, r"body\.(\d+)\.body\.0\.weight"))
    stages = _indices(state, r"tail\.0\.(\d+)\.weight")
    if stages != list(range(0, 2 * len(stages), 2)):
        raise Unmappable(f"an EDSR file with upsampler convs at tail.0.{stages}")
    if len(stages) == 1:
        factor = math.isqrt(int(state["tail.0.0.weight"].shape[0]) // num_feat)
        scale = factor if factor in (2, 3) else 0
    else:
        scale = 2 ** len(stages)
    if scale not in (2, 3, 4, 8):
        raise Unmappable("an EDSR file whose upsampler is not x2, x3, x4 or x8")
    rgb_range, mean_shift = 255.0, True  # EDSR-PyTorch's defaults
    if "sub_mean.bias" in state:
        weight, bias = state["sub_mean.weight"].float(), state["sub_mean.bias"].float()
        if not torch.allclose(weight.flatten(1), torch.eye(weight.shape[0]), atol=1e-5):
            raise Unmappable("an EDSR file with a non-unit rgb_std (sub_mean weight is not the identity)")
        if torch.allclose(bias, torch.zeros_like(bias)):
            mean_shift = False
        else:
            mean = torch.tensor(DIV2K_RGB_MEAN if in_ch == 3 else [sum(DIV2K_RGB_MEAN) / 3] * in_ch)
            ratio = -bias / mean
            rgb_range = float(ratio.mean())
            if not torch.allclose(ratio, torch.full_like(ratio, rgb_range), rtol=1e-3):
                raise Unmappable("an EDSR file whose mean shift is not the DIV2K mean")
            if abs(rgb_range - round(rgb_range)) < 1e-3:
                rgb_range = float(round(rgb_range))
    # res_scale is not in the weights: EDSR-PyTorch's large model (32 x 256) used 0.1, the baseline 1.
    res_scale = 0.1 if (num_blocks, num_feat) == (32, 256) else 1.0
    renamed = {k: v for k, v in state.items() if not k.startswith(("sub_mean.", "add_mean."))}
    params = {"scale": scale, "in_channels": in_ch, "num_feat": num_feat, "num_blocks": num_blocks,
              "res_scale": res_scale, "mean_shift": mean_shift, "rgb_range": rgb_range}
    return Recognised("edsr", params, renamed, "EDSR (EDSR-PyTorch layout)")


DETECTORS: tuple[Callable[[StateDict], Optional[Recognised]], ...] = (
    _real_esrgan_rrdb, _esrgan_original, _esrgan_mmsr, _compact, _edsr,
)


def recognise(state: StateDict) -> Optional[Recognised]:
    """The first layout that claims ``state``; None when none does. Raises Unmappable for a known
    layout whose variant our architectures cannot express."""
    for detect in DETECTORS:
        found = detect(state)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------
# loading


def load_any(path: str | Path, *, name: str = "") -> SRModel:
    """Load any supported model file as an SRModel: ours, a recognised layout, or via spandrel."""
    path = Path(path)
    if is_ours(path):
        from .weights import load_model
        return load_model(path, name=name)
    state, container = read_state_dict(path, supported=SUPPORTED)
    found, reason = _recognise_file(state, path)
    metadata = {"source": path.name, "container": container}
    if found is not None:
        metadata["source_format"] = found.layout
        return SRModel.from_net(found.build(path), found.arch, found.params, name=name or path.stem,
                                metadata=metadata)
    model = _spandrel_model(state, path, name=name or path.stem, metadata=metadata, reason=reason)
    if model is not None:
        return model
    raise ValueError(_unrecognised(path, reason))


def native_scale(path: str | Path) -> int:
    """The scale a model file runs at natively, read without building the network where possible."""
    path = Path(path)
    if is_ours(path):
        from .weights import read_metadata
        metadata = read_metadata(path)
        if "scale" not in metadata:
            raise ValueError(f"{path}: no 'scale' in its metadata")
        return int(metadata["scale"])
    state, _ = read_state_dict(path, supported=SUPPORTED)
    found, _ = _recognise_file(state, path)
    if found is not None:
        return int(found.params["scale"])
    return load_any(path).scale


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


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
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
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
        net, arch, params, layout = found.build(source), found.arch, found.params, found.layout
    extra.update({"converted_from": source.name, "source_format": layout,
                  "source_sha256": _sha256(source)})
    save_model(net, destination, arch=arch, params=params, extra=extra)
    return {"source": str(source), "output": str(destination), "arch": arch, "scale": int(params["scale"]),
            "params": params, "source_format": layout,
            "parameters": sum(p.numel() for p in net.parameters())}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
