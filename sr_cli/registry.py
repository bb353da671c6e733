"""Named models: the weights we ship in ``weights/``, plus the interpolation baselines.

A name maps to one safetensors file per native scale; the files carry their own
architecture and hyperparameters (see weights.py), so nothing here guesses.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .model import SRModel

WEIGHTS_DIR = Path(os.environ.get("SR_WEIGHTS_DIR", Path(__file__).resolve().parent.parent / "weights"))

# name -> {native scale: file in WEIGHTS_DIR}
NAMED_MODELS: dict[str, dict[int, str]] = {
    "default": {2: "default_x2.safetensors", 3: "default_x3.safetensors", 4: "default_x4.safetensors"},
    "fast": {2: "fast_x2.safetensors", 3: "fast_x3.safetensors", 4: "fast_x4.safetensors"},
    "photo": {4: "photo_x4.safetensors"},
}
BASELINES = ("bicubic", "lanczos")
BASELINE_SCALES = (2, 3, 4, 8)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    scale: int
    path: Optional[Path]  # None for baselines

    @property
    def available(self) -> bool:
        return self.path is None or self.path.is_file()


def list_models(include_missing: bool = False) -> list[ModelEntry]:
    entries = [ModelEntry(name, scale, WEIGHTS_DIR / file)
               for name, files in NAMED_MODELS.items() for scale, file in sorted(files.items())]
    entries += [ModelEntry(name, scale, None) for name in BASELINES for scale in BASELINE_SCALES]
    return [e for e in entries if include_missing or e.available]


def native_scales(model: str) -> list[int]:
    """Scales a model name can run natively (a file path: the scale in its metadata)."""
    if model in BASELINES:
        return list(BASELINE_SCALES)
    if model in NAMED_MODELS:
        scales = [s for s, f in NAMED_MODELS[model].items() if (WEIGHTS_DIR / f).is_file()]
        if not scales:
            raise ValueError(f"model {model!r} has no weights installed in {WEIGHTS_DIR}; "
                             f"available: {', '.join(available_names())}")
        return sorted(scales)
    path = Path(model)
    if path.is_file():
        from .foreign import is_ours, native_scale
        if not is_ours(path):  # .pth/.pt/.ckpt, or a .safetensors without our metadata: detected
            return [native_scale(path)]
        from .weights import read_metadata
        metadata = read_metadata(path)
        if "scale" not in metadata:
            raise ValueError(f"{path}: no 'scale' in its metadata; not one of our weight files")
        return [int(metadata["scale"])]
    raise ValueError(f"unknown model {model!r}: not a file, and not one of {', '.join(available_names())}")


def available_names() -> list[str]:
    return sorted({e.name for e in list_models()})


def plan_passes(model: str, target_scale: float) -> list[int]:
    """Native scales to chain so their product reaches ``target_scale`` with the fewest passes.

    The smallest native scale that reaches the target is used; beyond the largest
    native scale, passes are chained (x8 = x4 then x2). The caller resizes the
    result to the exact target size.
    """
    if target_scale <= 1:
        raise ValueError(f"scale must be > 1, got {target_scale}")
    scales = native_scales(model)
    passes: list[int] = []
    remaining = target_scale
    while remaining > 1 + 1e-9:
        fitting = [s for s in scales if s >= remaining - 1e-9]
        step = min(fitting) if fitting else max(scales)
        passes.append(step)
        remaining /= step
    return passes


def resolve_model(model: str, scale: int) -> SRModel:
    """Load a named model, a baseline, or a weights file, for native ``scale``."""
    if model in BASELINES:
        return baseline_model(model, scale)
    if model in NAMED_MODELS:
        file = NAMED_MODELS[model].get(scale)
        if file is None or not (WEIGHTS_DIR / file).is_file():
            have = ", ".join(f"x{s}" for s in native_scales(model))
            raise ValueError(f"model {model!r} has no x{scale} weights (has {have})")
        from .weights import load_model
        return load_model(WEIGHTS_DIR / file, name=model)
    path = Path(model)
    if not path.is_file():
        raise ValueError(f"unknown model {model!r}: not a file, and not one of {', '.join(available_names())}")
    from .foreign import is_ours, load_any
    from .weights import load_model
    loaded = load_model(path) if is_ours(path) else load_any(path)
    if loaded.scale != scale:
        raise ValueError(f"{path} is a x{loaded.scale} model, asked for x{scale}")
    return loaded


def baseline_model(kind: str, scale: int) -> SRModel:
    """Interpolation as a model: MATLAB-compatible bicubic, or OpenCV's Lanczos-4."""
    if kind == "bicubic":
        from .resize import imresize

        def net(x):
            return imresize(x, scale)
        radius = 3
    elif kind == "lanczos":
        net = _lanczos(scale)
        radius = 5
    else:
        raise ValueError(f"unknown baseline {kind!r}")
    return SRModel(net=net, arch=kind, scale=int(scale), params={"scale": int(scale)}, name=kind,
                   receptive_radius=radius)


def _lanczos(scale: int):
    def net(x):
        import cv2
        import numpy as np
        import torch
        outs = []
        for image in x.detach().to("cpu", torch.float32).numpy():
            hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
            up = cv2.resize(hwc, (hwc.shape[1] * scale, hwc.shape[0] * scale), interpolation=cv2.INTER_LANCZOS4)
            if up.ndim == 2:
                up = up[:, :, None]
            outs.append(torch.from_numpy(up.transpose(2, 0, 1).copy()))
        return torch.stack(outs).to(x.device, x.dtype)
    return net
