"""From a --model value to loaded engines, in one pass.

    name or path --locate()--> the file(s) behind it, each header (or a community file's state dict)
    read once --> the architecture and its parameters --> build --> load --> one engine per pass

``locate`` finds what a value names: a baseline, a shipped name (one file per native scale, and
the int8 ONNX forms beside them), a catalogue or pulled name, a file (ours, a community layout, an
ONNX file), or any of these as 'NAME@S' (blended with its parent, blend.py). What it reads stays
in the ``Located`` it returns, so the engines are opened (``open_engines``) and the networks
loaded (``resolve_model``) from it without reading a header again.

The modules below do one job each and never call back here: registry.py the names and the
catalogue, header.py a safetensors header (no torch), weights.py our files, foreign.py community
layouts, blend.py the mixing, engines/ running. Nothing is imported from torch or onnxruntime
until a network or a session is made.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from . import registry  # its WEIGHTS_DIR is read when used (tests point it elsewhere)
from .blend import check_strength, split_spec, with_strength
from .registry import (BASELINE_SCALES, BASELINES, NAMED_MODELS, NotPulled, available_names, cached_file, catalogue,
                       onnx_form)

if TYPE_CHECKING:
    from .model import SRModel

MAX_NATIVE_SCALE = 16


@dataclass
class Located:
    """What a --model value names, found once. ``kind``: "baseline", "named", "onnx", "ours" (our
    safetensors file) or "foreign" (a community file). ``files`` maps each native scale to its file
    (none for baselines); ``int8`` a shipped name's int8 ONNX forms. ``metadata`` is our file's header
    metadata, ``foreign`` a community file's tensors and recognised layout, both read once."""

    spec: str
    base: str
    strength: Optional[float]
    kind: str
    name: str
    files: dict[int, Path] = field(default_factory=dict)
    int8: dict[int, Path] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    foreign: Any = None  # foreign.ForeignFile

    @property
    def scales(self) -> list[int]:
        return list(BASELINE_SCALES) if self.kind == "baseline" else sorted(self.files)


def locate(model: str) -> Located:
    """Find what ``model`` names (see the module's docstring); ValueError (one line) if nothing."""
    base, strength = split_spec(model)
    if base in BASELINES:
        return Located(model, base, strength, "baseline", base)
    if base in NAMED_MODELS:
        folder = registry.WEIGHTS_DIR
        files = {s: folder / f for s, f in NAMED_MODELS[base].items() if (folder / f).is_file()}
        if not files:
            raise ValueError(f"model {base!r} has no weights installed in {registry.WEIGHTS_DIR}; "
                             f"available: {', '.join(available_names())}")
        int8 = {s: path for s in files if (path := onnx_form(base, s)) is not None}
        return Located(model, base, strength, "named", base, files, int8)
    path = model_file(base)
    name = base if path != Path(base) else ""
    if path.suffix.lower() == ".onnx":
        from .engines.onnx_engine import open_file
        return Located(model, base, strength, "onnx", name, {open_file(path).scale: path})
    metadata = _our_metadata(path)
    if metadata is not None:
        return Located(model, base, strength, "ours", name, {_stated_scale(path, metadata): path}, metadata=metadata)
    from .foreign import read_foreign
    found = read_foreign(path)
    return Located(model, base, strength, "foreign", name, {found.scale: path}, foreign=found)


def native_scales(model: str) -> list[int]:
    """Scales ``model`` runs natively."""
    return locate(model).scales


def plan_passes(model: str | Located, target_scale: float) -> list[int]:
    """Native scales to chain so their product reaches ``target_scale`` with the fewest passes.

    The smallest native scale that reaches the target is used; beyond the largest
    native scale, passes are chained (x8 = x4 then x2). The caller resizes the
    result to the exact target size.
    """
    if target_scale <= 1:
        raise ValueError(f"scale must be > 1, got {target_scale}")
    scales = (model if isinstance(model, Located) else locate(model)).scales
    passes: list[int] = []
    remaining = target_scale
    while remaining > 1 + 1e-9:
        fitting = [s for s in scales if s >= remaining - 1e-9]
        step = min(fitting) if fitting else max(scales)
        passes.append(step)
        remaining /= step
    return passes


def engines_for(model: str, scale: float, *, strength: Optional[float] = None, engine: str = "auto",
                device: str = "auto", precision: str = "auto", threads: Optional[int] = None,
                parent: Optional[str] = None) -> tuple[str, list]:
    """The model spec ('NAME@S' with ``strength``: blend.py) and one engine per native pass that
    ``scale`` takes (``plan_passes``)."""
    located = locate(with_strength(model, strength))
    return located.spec, open_engines(located, plan_passes(located, scale), engine=engine, device=device,
                                      precision=precision, threads=threads, parent=parent)


def open_engines(model: str | Located, passes: list[int], *, engine: str = "auto", device: str = "auto",
                 precision: str = "auto", threads: Optional[int] = None, parent: Optional[str] = None) -> list:
    """One loaded engine per pass (native scales, in order), each distinct scale loaded once."""
    from .engines import engine_kind
    located = model if isinstance(model, Located) else locate(model)
    scales = sorted(set(passes))
    kind = engine_kind(located.spec, engine=engine, device=device, precision=precision,
                       blended=located.strength is not None, onnx_file=located.kind == "onnx",
                       has_int8=bool(scales) and all(s in located.int8 for s in scales))
    if kind == "onnx":
        loaded = {scale: _onnx_engine(located, scale, threads) for scale in scales}
    else:
        from .device import pick_device, pick_dtype
        from .engines.torch_engine import TorchEngine
        torch_device = pick_device(device)
        dtype = pick_dtype(precision, torch_device)
        loaded = {scale: TorchEngine(resolve_model(located, scale, parent=parent).to(torch_device, dtype),
                                     torch_device, dtype) for scale in scales}
    return [loaded[s] for s in passes]


def _onnx_engine(located: Located, scale: int, threads: Optional[int]):
    from .engines.onnx_engine import OnnxEngine, open_file
    if located.kind == "onnx":
        path = located.files[next(iter(located.files))]
        engine = open_file(path) if threads is None else OnnxEngine(path, name=path.name, threads=threads)
    else:
        engine = OnnxEngine(located.int8[scale], name=located.base, threads=threads)
    if engine.scale != scale:
        raise ValueError(f"{engine.path} is a x{engine.scale} model, asked for x{scale}")
    return engine


def resolve_model(model: str | Located, scale: int, *, parent: Optional[str] = None) -> SRModel:
    """The torch network of a baseline, a named, pulled or catalogue model, or a weights file, for
    native ``scale``. 'NAME@S' blends NAME with its parent (or ``parent``) at strength S."""
    located = model if isinstance(model, Located) else locate(model)
    if located.strength is not None:
        return _blended(located, scale, parent)
    if located.kind == "baseline":
        from .registry import baseline_model
        return baseline_model(located.base, scale)
    path = located.files.get(scale)
    if located.kind == "named":
        if path is None:
            have = ", ".join(f"x{s}" for s in located.scales)
            raise ValueError(f"model {located.base!r} has no x{scale} weights (has {have})")
        from .weights import load_model
        return load_model(path, name=located.base)
    if path is None:
        path = next(iter(located.files.values()))
        raise ValueError(f"{path} is a x{located.scales[0]} model, asked for x{scale}")
    if located.kind == "ours":
        from .weights import load_model
        return load_model(path, name=located.name)
    if located.kind == "foreign":
        from .foreign import load_foreign
        return load_foreign(located.foreign, name=located.name)
    raise ValueError(f"{path} is an ONNX file: it runs on --engine onnx (or auto), not torch")


def _blended(located: Located, scale: int, parent: Optional[str]) -> SRModel:
    """``located``'s model and its parent at native ``scale``, mixed (torch)."""
    from .blend import blend
    check_strength(located.strength)
    unblended = Located(located.base, located.base, None, located.kind, located.name, located.files,
                        located.int8, located.metadata, located.foreign)
    parent = parent or parent_of(unblended, scale)
    return blend(resolve_model(unblended, scale), resolve_model(parent, scale), located.strength)


def parent_of(model: str | Located, scale: int) -> str:
    """The fidelity end of ``model``'s --strength dial (a name or a file); ValueError when it names none."""
    located = model if isinstance(model, Located) else None
    base = located.base if located is not None else split_spec(model)[0]
    listed = catalogue()
    if base in listed and listed[base].parent:
        return listed[base].parent
    if base in NAMED_MODELS:
        path = registry.WEIGHTS_DIR / NAMED_MODELS[base].get(scale, "")
    else:
        path = located.files[located.scales[0]] if located is not None and located.files else model_file(base)
    parent = None
    if located is not None and located.kind == "ours":
        parent = located.metadata.get("parent")
    elif path.suffix == ".safetensors" and path.is_file():
        from .header import read_header
        parent = read_header(path)[0].get("parent")
    if not parent:
        raise ValueError(f"{base} names no parent model to blend with: give one with --parent "
                         "(a model of the same architecture, e.g. the PSNR-trained one it was fine-tuned from)")
    beside = path.parent / parent
    return str(beside) if beside.is_file() else parent


def check_model(model: str, parent: Optional[str] = None) -> None:
    """ValueError (one line) unless ``model`` names a baseline, a shipped, catalogue or pulled
    model, or an existing file (and, as 'NAME@S', one with a parent to blend with). Reads no weights
    (but a parent's name from a header)."""
    base, strength = split_spec(model)
    if strength is not None:
        if base in BASELINES or Path(base).suffix.lower() == ".onnx":
            raise ValueError(f"{base} has no weights to blend (--strength needs two weight files)")
        check_model(base)
        if parent is None:
            scales = NAMED_MODELS.get(base, {})
            parent = parent_of(base, min(scales) if scales else 0)
        check_model(parent)
        return
    if base in BASELINES or base in NAMED_MODELS:
        return
    if Path(base).suffix.lower() == ".onnx":
        if not Path(base).is_file():
            raise ValueError(f"{base}: no such ONNX file")
        return
    model_file(base)


def model_file(model: str) -> Path:
    """The file behind a catalogue name, a name pulled from a URL, or a path; one clear line if none."""
    if Path(model).suffix.lower() == ".onnx" and Path(model).is_file():
        return Path(model)
    listed = catalogue()
    if model in listed:
        entry = listed[model]
        if not entry.path.is_file():
            raise NotPulled(entry.not_pulled())
        return entry.path
    path = Path(model)
    if path.is_file():
        return path
    cached = cached_file(model) if path.name == model else None
    if cached is not None:
        return cached
    raise ValueError(f"unknown model {model!r}: not a file, and not one of {', '.join(available_names())} "
                     f"(`sr models` lists them; `sr models pull NAME|URL` adds one)")


def _our_metadata(path: Path) -> Optional[dict[str, str]]:
    """The header metadata of a .safetensors file of ours (it states arch and params: it needs no
    detection); None for any other file, a damaged one included (foreign.py's reader reports it)."""
    if path.suffix.lower() != ".safetensors":
        return None
    from .header import read_header
    try:
        metadata, _ = read_header(path)
    except (OSError, ValueError):
        return None
    return metadata if "arch" in metadata and "params" in metadata else None


def _stated_scale(path: Path, metadata: dict) -> int:
    """The scale a weight file's metadata states, checked: a whole number from 2 to MAX_NATIVE_SCALE,
    the same as its constructor parameters' (a damaged or hand-edited header is one clear line, not
    a division by zero or "asked for x1000" later)."""
    text = metadata.get("scale")
    if text is None:
        raise ValueError(f"{path}: no 'scale' in its metadata; not one of our weight files")
    try:
        scale = int(text)
    except (TypeError, ValueError):
        scale = None
    if scale is None or str(scale) != str(text).strip() or not 2 <= scale <= MAX_NATIVE_SCALE:
        raise ValueError(f"{path}: its metadata gives scale {str(text)[:20]!r}; a model's scale is a whole number "
                         f"from 2 to {MAX_NATIVE_SCALE} (the file is damaged or was not written by sr)")
    try:
        params = json.loads(metadata.get("params") or "{}")
    except ValueError:
        params = {}
    stated = params.get("scale") if isinstance(params, dict) else None
    if stated is not None and stated != scale:
        raise ValueError(f"{path}: its metadata gives scale {scale} but its parameters scale {stated!r}; "
                         "the file is damaged or was edited")
    return scale
