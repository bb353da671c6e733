"""Named models: the weights we ship in ``weights/``, the community catalogue, the baselines.

A shipped name maps to one safetensors file per native scale; the files carry their own
architecture and hyperparameters (see weights.py), so nothing here guesses. The top-level
``weights/`` folder is mapped into every wheel as the package ``sr_cli.shipped_weights``
(pyproject.toml), so an installed ``sr`` finds its models wherever it runs; SR_WEIGHTS_DIR
points elsewhere.

The catalogue (``catalogue.toml``, data only) names community models that ``sr models pull``
downloads, verified against their published sha256, into the per-user cache (the platform's
cache folder, or SR_CACHE_DIR); ``--model NAME`` then finds them. Nothing is downloaded
unless the user asks. This module imports no torch, so ``sr models`` stays fast.
"""
from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from .model import SRModel


def _shipped_weights_dir() -> Path:
    """SR_WEIGHTS_DIR, else the weights an installed wheel carries, else the checkout's weights/."""
    override = os.environ.get("SR_WEIGHTS_DIR")
    if override:
        return Path(override)
    package = Path(__file__).resolve().parent
    installed = package / "shipped_weights"
    return installed if installed.is_dir() else package.parent / "weights"


WEIGHTS_DIR = _shipped_weights_dir()
CATALOGUE_FILE = Path(__file__).resolve().parent / "catalogue.toml"
MODEL_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")

# name -> {native scale: file in WEIGHTS_DIR}
NAMED_MODELS: dict[str, dict[int, str]] = {
    # Trained on real-world degradations (JPEG, noise, blur; see weights/README.md): x3 runs x4 and resizes.
    "default": {2: "default_x2.safetensors", 4: "default_x4.safetensors"},
    # Trained on clean MATLAB-bicubic downscales: the models behind the PSNR/SSIM tables.
    "classic": {2: "classic_x2.safetensors", 3: "classic_x3.safetensors", 4: "classic_x4.safetensors"},
    # Small networks for speed (video frames), trained on JPEG- and video-codec-compressed inputs.
    "fast": {2: "fast_x2.safetensors", 3: "fast_x3.safetensors", 4: "fast_x4.safetensors"},
    # The same networks trained on clean MATLAB-bicubic downscales: clean inputs only.
    "fast-clean": {2: "fast-clean_x2.safetensors", 3: "fast-clean_x3.safetensors", 4: "fast-clean_x4.safetensors"},
    "photo": {4: "photo_x4.safetensors"},
}
BASELINES = ("bicubic", "lanczos")
MAX_SCALE = 64  # beyond this a factor is a typo, not a job (and would chain absurdly many passes)
INT8_SUFFIX = ".int8.onnx"  # a shipped model's int8 ONNX form, beside its .safetensors
BASELINE_SCALES = (2, 3, 4, 8)


class NotPulled(ValueError):
    """A catalogue model that is known but not downloaded: `sr models pull NAME` fetches it."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    scale: int
    path: Optional[Path]  # None for baselines
    source: str = "shipped"  # shipped, catalogue, cache (pulled from a URL) or builtin

    @property
    def available(self) -> bool:
        return self.path is None or self.path.is_file()


@dataclass(frozen=True)
class CatalogueEntry:
    """One community model: where it is published, what it must hash to, what it is."""

    name: str
    url: str
    sha256: str
    size: int
    licence: str
    arch: str
    scale: int
    description: str
    parent: str = ""  # a GAN model's PSNR-trained parent, for the --strength dial

    @property
    def filename(self) -> str:
        return _url_filename(self.url)

    @property
    def path(self) -> Path:
        """Where `sr models pull` puts it (it need not be there)."""
        return models_cache() / self.filename

    def not_pulled(self) -> str:
        host = urllib.parse.urlsplit(self.url).netloc
        return (f"model {self.name!r} is not downloaded yet: run `sr models pull {self.name}` "
                f"({self.size / 1e6:.0f} MB from {host}, {self.licence}), or give a weights file to --model")


def catalogue() -> dict[str, CatalogueEntry]:
    """The community models ``sr models pull`` knows, by name, from catalogue.toml."""
    from .tomlfile import read_toml
    return {name: CatalogueEntry(name=name, **fields) for name, fields in read_toml(CATALOGUE_FILE).items()}


def cache_dir() -> Path:
    """Per-user cache: SR_CACHE_DIR, else the platform's (~/.cache/sr-cli, ~/Library/Caches/sr-cli, %LOCALAPPDATA%)."""
    override = os.environ.get("SR_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_path
    return user_cache_path("sr-cli", appauthor=False)


def models_cache() -> Path:
    """Where pulled model files live."""
    return cache_dir() / "models"


def _url_filename(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not name or Path(name).suffix.lower() not in MODEL_SUFFIXES:
        raise ValueError(f"{url}: the URL does not end in a model file name ({', '.join(MODEL_SUFFIXES)})")
    return name


def cached_file(name: str) -> Optional[Path]:
    """A file pulled from a URL outside the catalogue, by its name without suffix."""
    for suffix in MODEL_SUFFIXES:
        path = models_cache() / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def list_models(include_missing: bool = False) -> list[ModelEntry]:
    """Shipped models, catalogue models (pulled, or all with include_missing), other pulled files, baselines."""
    entries = [ModelEntry(name, scale, WEIGHTS_DIR / file)
               for name, files in NAMED_MODELS.items() for scale, file in sorted(files.items())]
    known = set(NAMED_MODELS) | set(BASELINES)
    listed = catalogue()
    entries += [ModelEntry(e.name, e.scale, e.path, "catalogue") for e in listed.values() if e.name not in known]
    catalogued = {e.filename for e in listed.values()}
    if models_cache().is_dir():
        entries += [ModelEntry(path.stem, 0, path, "cache") for path in sorted(models_cache().iterdir())
                    if path.suffix.lower() in MODEL_SUFFIXES and path.name not in catalogued
                    and path.stem not in known and path.stem not in listed]
    entries += [ModelEntry(name, scale, None, "builtin") for name in BASELINES for scale in BASELINE_SCALES]
    return [e for e in entries if include_missing or e.available]


def onnx_form(model: str, scale: int) -> Optional[Path]:
    """The int8 ONNX file shipped beside a named model's weights for ``scale``, if there is one."""
    file = NAMED_MODELS.get(model, {}).get(scale)
    if file is None:
        return None
    path = WEIGHTS_DIR / (file[: -len(".safetensors")] + INT8_SUFFIX)
    return path if path.is_file() else None


def available_names() -> list[str]:
    return sorted({e.name for e in list_models()})


_PULL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]*(\.[A-Za-z0-9_+-]+)*")


def check_pull_name(name: str) -> str:
    """A name for a model pulled from a URL: letters, digits and ``_ + - .``, starting with a letter or a
    digit, no ``..``, at most 100 characters, and not a name that is already taken (a shipped
    model, a catalogue model or a baseline would win over it and it would vanish)."""
    from .errors import display
    if not name or len(name) > 100 or not _PULL_NAME.fullmatch(name):
        raise ValueError(f"{display(name)!r} cannot name a model: use letters, digits and _ + - . (starting with "
                         "a letter or digit, no '..', at most 100 characters); --name NAME picks another")
    taken = ("a shipped model" if name in NAMED_MODELS else "a catalogue model" if name in catalogue()
             else "a built-in baseline" if name in BASELINES else None)
    if taken:
        raise ValueError(f"{name!r} is {taken}'s name: a pulled file of that name would never be used; "
                         "--name NAME picks another")
    return name


def pull(source: str, *, sha256: Optional[str] = None, force: bool = False,
         progress: Optional[Callable[[int, Optional[int]], None]] = None, name: Optional[str] = None,
         max_size: Optional[int] = None) -> tuple[str, Path, bool]:
    """Download a catalogue model (by name or by its URL) or any URL with a given ``sha256``.

    Returns (name for --model, file, downloaded): a file already there is re-hashed and kept
    when it matches (downloaded False), else fetched again. Nothing unverified is kept. A URL's
    model is named ``name`` or its file name (``check_pull_name``); ``max_size`` caps its bytes.
    """
    from .download import download, file_sha256
    listed = catalogue()
    entry = listed.get(source) or next((e for e in listed.values() if e.url == source), None)
    if entry is not None:
        url, name, size, dest = entry.url, entry.name, entry.size, entry.path
        if name and name != entry.name:
            raise ValueError(f"--name is for URLs outside the catalogue; {entry.name} keeps its name")
        if sha256 and sha256.lower() != entry.sha256:
            raise ValueError(f"--sha256 differs from the catalogue's for {name} ({entry.sha256})")
        sha256 = entry.sha256
    elif "://" in source:
        if not sha256:
            raise ValueError(f"{source} is not in the catalogue: give its publisher's hash with --sha256 HEX, "
                             "so that the file can be verified before it is used")
        if len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256):
            raise ValueError(f"--sha256 must be 64 hex digits, got {sha256!r}")
        filename = _url_filename(source)
        name = check_pull_name(name or Path(filename).stem)
        url, size, dest = source, None, models_cache() / f"{name}{Path(filename).suffix.lower()}"
    else:
        raise ValueError(f"{source!r} is not in the catalogue ({', '.join(sorted(listed))}) nor a URL")
    if dest.is_file() and not force:
        if file_sha256(dest) == sha256.lower():
            return name, dest, False
    return name, download(url, dest, sha256=sha256, size=size, progress=progress, max_size=max_size), True


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
    from .model import SRModel
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
