"""Our weights format: safetensors whose metadata says what the tensors are.

Metadata keys (all strings, as safetensors requires):
  format  "sr-cli/1"
  arch    a key of sr_cli.archs.ARCHS
  scale   integer scale factor
  params  JSON of the constructor's keyword arguments (scale included)
  any others (name, psnr, training command, data...) are kept as provenance.

Loading trusts nothing in the file: the header is read first, the network is built on
PyTorch's "meta" device (no memory) and every tensor's name, shape and dtype must match
it before any weight is read, so metadata asking for an absurd network is refused at
once; weights holding NaN or infinity, or integers where the network has floats, are
refused too (they would give black or wrong images). Every refusal is one ValueError
line naming the file.
"""
from __future__ import annotations

import json
import math
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from .archs import build_arch
from .atomic import atomic_path
from .errors import first_line
from .model import SRModel

FORMAT = "sr-cli/1"
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt")
CONTAINERS = ("params_ema", "params", "state_dict", "model", "net")
PREFIXES = ("module.", "netG.")


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
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)


def read_metadata(path: str | Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # safetensors' own error type is not a ValueError
        raise ValueError(f"{path}: not a readable safetensors file ({first_line(exc, 200)})") from None


def load_model(path: str | Path, *, name: str = "") -> SRModel:
    """Load one of our safetensors files; raise ValueError (one line) if it is not one, or
    its tensors do not fit what its metadata says, or they hold NaN/infinity."""
    path = Path(path)
    try:
        handle_context = safe_open(str(path), framework="pt")
    except Exception as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({first_line(exc, 200)})") from None
    with handle_context as handle:
        metadata = dict(handle.metadata() or {})
        if "arch" not in metadata or "params" not in metadata:
            raise ValueError(f"{path}: no sr-cli metadata (arch, params); not one of our weight files")
        try:
            params = json.loads(metadata["params"])
        except ValueError:
            raise ValueError(f"{path}: its 'params' metadata is not JSON") from None
        if not isinstance(params, dict):
            raise ValueError(f"{path}: its 'params' metadata is not a JSON object")
        try:
            header = {key: (tuple(handle.get_slice(key).get_shape()), handle.get_slice(key).get_dtype())
                      for key in handle.keys()}
        except Exception as exc:
            raise ValueError(f"{path}: not a readable safetensors file ({first_line(exc, 200)})") from None
        _check_params_fit(params, header, path)
        try:
            with torch.device("meta"):  # the network's shapes, without allocating it
                skeleton = build_arch(metadata["arch"], **params)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        expected = {k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()}
        check_tensors(expected, {k: (shape, _DTYPES.get(dtype)) for k, (shape, dtype) in header.items()},
                      path, what=f"{metadata['arch']} {json.dumps(params, sort_keys=True)}")
        try:
            tensors = {key: handle.get_tensor(key) for key in header}
        except Exception as exc:
            raise ValueError(f"{path}: its tensor data cannot be read ({first_line(exc, 200)})") from None
    check_finite(tensors, path)
    net = build_arch(metadata["arch"], **params)
    net.load_state_dict(tensors, strict=True)
    return SRModel.from_net(net, metadata["arch"], params, name=name or path.stem, metadata=metadata)


def read_state_dict(path: str | Path, *, supported: str = "") -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of any weights file, unwrapped and de-prefixed, plus the containers they were
    found in ("params_ema", ...; for messages). The one reader of weight files that are not
    (necessarily) ours: foreign models, --init and --pretrained-g files, VGG19 for the perceptual loss.

    ``.safetensors`` by safetensors; ``.pth``/``.pt``/``.ckpt`` by ``torch.load(weights_only=True)``,
    which never runs code from the file: a pickle needing more than tensors is refused. The state
    dict is taken out of the usual containers (``CONTAINERS``, BasicSR's ``params_ema`` first) and a
    prefix every key has (``PREFIXES``: DistributedDataParallel's ``module.``, ``netG.``) is stripped.
    ``supported`` ends the message for a file holding no state dict.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            obj: object = load_file(str(path), device="cpu")
        except Exception as exc:
            raise ValueError(f"{path}: not a readable safetensors file ({first_line(exc, 200)})") from None
    elif suffix in TORCH_SUFFIXES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "pickle protocol 4": irrelevant to the user
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            needed = re.search(r"GLOBAL ([\w.]+)", str(exc))
            if needed:
                raise ValueError(f"{path}: refused: it needs the Python object {needed[1]} to load, and "
                                 "unpickling it could run code; convert it to .safetensors where you trust "
                                 "the file") from None
            detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
            reason = detail[1] if detail else first_line(exc, 200)
            raise ValueError(f"{path}: cannot be read as plain weights ({reason}: "
                             "a raw pickle, or a damaged file); if you trust it, convert it to "
                             ".safetensors") from None
        except Exception as exc:
            raise ValueError(f"{path}: not a readable PyTorch file ({first_line(exc, 200)})") from None
    else:
        raise ValueError(f"{path}: unsupported file type {suffix or '(none)'!r}; "
                         "model files are .safetensors, .pth, .pt or .ckpt")
    trail = []
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        key = next((k for k in CONTAINERS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj, trail = obj[key], trail + [key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state dict" + (f"; supported: {supported}" if supported else ""))
    state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    changed = True
    while changed and state:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state, "/".join(trail)


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


def check_tensors(expected: Mapping[str, tuple], found: Mapping[str, tuple], path: str | Path,
                  *, what: str) -> None:
    """Raise ValueError unless ``found`` has exactly ``expected``'s tensor names and shapes, and
    floating-point tensors where the network has them. Both map name -> (shape, dtype)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}{', ...' if len(unexpected) > 3 else ''})")
        raise ValueError(f"{path}: its tensors do not fit {what}: {'; '.join(parts)}")
    for key, (shape, dtype) in expected.items():
        got_shape, got_dtype = found[key]
        if tuple(got_shape) != tuple(shape):
            raise ValueError(f"{path}: tensor {key} has shape {tuple(got_shape)}, {what} needs {tuple(shape)}")
        if dtype is not None and dtype.is_floating_point and (got_dtype is None or not got_dtype.is_floating_point):
            name = str(got_dtype).replace("torch.", "") if got_dtype is not None else "an unknown type"
            raise ValueError(f"{path}: tensor {key} holds {name}, the network needs floating-point weights")


def check_finite(tensors: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Raise ValueError if a floating-point tensor holds NaN or infinity."""
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{path}: tensor {key} holds NaN or infinite values; the weights are broken")


def _check_params_fit(params: dict, header: Mapping[str, tuple], path: Path) -> None:
    """Refuse integer hyperparameters no tensor of the file could hold: each (a width, a block
    count, a scale) is bounded by the largest tensor dimension or the number of tensors (times
    four, and at least 1024, for integers that are not sizes). This
    stops metadata that asks for a network of absurd size before it is built, even on "meta"."""
    bound = max([len(header), *(d for shape, _ in header.values() for d in shape)], default=0)

    def ints(value):
        if isinstance(value, bool):
            return
        if isinstance(value, int):
            yield value
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from ints(item)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{path}: its params hold a non-finite number ({value})")

    limit = max(1024, 4 * bound)  # generous: non-structural ints (a range of 255, a cap of 256) pass
    for key, value in params.items():
        for number in ints(value):
            if abs(number) > limit:
                raise ValueError(f"{path}: its params ask for {key}={number}, more than any tensor in the "
                                 f"file holds (largest dimension or tensor count: {bound}); not a usable model")
