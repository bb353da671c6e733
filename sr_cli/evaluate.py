"""Benchmark evaluation: PSNR/SSIM of models on HR image folders, the literature's way.

For each HR image: mod-crop to a multiple of ``scale``; make the LR input with
MATLAB bicubic ``imresize(hr, 1/scale)`` quantised to uint8 (round half up, clip),
or read it from ``lr_dir``; upscale it with each model; quantise the output to
uint8; score it against the HR with ``metrics`` (Y channel, border = scale, by
default).

Images are read by ``imageio`` (EXIF orientation applied) as 8-bit (``imageio.rgb8``):
greyscale stays greyscale, everything else becomes RGB (alpha dropped), 16-bit colour
keeps its high byte; 16-bit and float greyscale is refused. A greyscale image is scored
on its single channel. A model that takes 3 channels gets the grey replicated to
RGB and its output averaged back to one channel; a 1-channel model on RGB runs on
each channel separately.

Paired LR files (``lr_dir``) are matched to HR files by stem, after removing any
of these trailing tags (case-insensitive, optionally preceded by ``_``, ``-`` or
``.``): ``x2``/``x3``/..., ``LR``, ``HR``, ``LRBI``, ``bicubic``, ``SRF_2``/...
So ``baby.png`` matches ``babyx4.png``, ``baby_LR.png`` or ``baby_x4_LR.png``.
With several datasets, ``lr_dir/<dataset folder name>/`` is used where it
exists, else ``lr_dir`` itself.
"""
from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from .errors import first_line
from .imageio import ImageData, STILL_SUFFIXES, from_tensor, read_image, rgb8, to_tensor, write_image
from .metrics import CONVENTIONS, blockiness, calculate_psnr, calculate_ssim
from .niqe import niqe as niqe_score
from .resize import matlab_lr, modcrop

IMAGE_SUFFIXES = tuple(sorted(STILL_SUFFIXES))  # the still formats imageio reads and writes
DEFAULT_OVERLAP = 16
ProgressFn = Callable[[int, int, str], None]  # (done, total, what was just scored)

_TAG = re.compile(r"[_.\-]?(x\d+|lrbi|lr|hr|bicubic|srf_\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class ImageScore:
    name: str
    psnr: float
    ssim: float
    blockiness: float
    niqe: Optional[float] = None  # with niqe=True only


@dataclass
class DatasetScore:
    """One model on one dataset: per-image scores and their means."""

    model: str
    dataset: str
    images: list[ImageScore] = field(default_factory=list)

    @property
    def psnr(self) -> float:
        return float(np.mean([i.psnr for i in self.images])) if self.images else float("nan")

    @property
    def ssim(self) -> float:
        return float(np.mean([i.ssim for i in self.images])) if self.images else float("nan")

    @property
    def blockiness(self) -> float:
        return float(np.mean([i.blockiness for i in self.images])) if self.images else float("nan")

    @property
    def niqe(self) -> Optional[float]:
        values = [i.niqe for i in self.images if i.niqe is not None]
        return float(np.mean(values)) if values else None


@dataclass
class EvalReport:
    """Scores of every model on every dataset, with the settings that produced them."""

    scale: int
    convention: str
    crop_border: int
    y_channel: bool
    lr_source: str
    models: list[str]
    datasets: list[str]
    scores: dict[str, dict[str, DatasetScore]]  # model -> dataset -> score
    seconds: float
    degrade: Optional[str] = None
    seed: int = 0
    runs_on: dict[str, str] = field(default_factory=dict)  # model -> "engine precision", e.g. "onnx int8"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why) not scored: left out of the means
    niqe: bool = False  # NIQE scored too

    def to_dict(self, *, per_image: bool = False) -> dict:
        def dataset_dict(score: DatasetScore) -> dict:
            out = {"psnr": score.psnr, "ssim": score.ssim, "blockiness": score.blockiness, "images": len(score.images)}
            if self.niqe:
                out["niqe"] = score.niqe
            if per_image:
                out["per_image"] = [{"name": i.name, "psnr": i.psnr, "ssim": i.ssim, "blockiness": i.blockiness}
                                    | ({"niqe": i.niqe} if self.niqe else {}) for i in score.images]
            return out

        return {
            "scale": self.scale, "convention": self.convention, "crop_border": self.crop_border,
            "channel": "y" if self.y_channel else "rgb", "lr_source": self.lr_source,
            "degrade": self.degrade, "seed": self.seed,
            "seconds": round(self.seconds, 3), "engines": self.runs_on,
            "results": {m: {d: dataset_dict(self.scores[m][d]) for d in self.datasets} for m in self.models},
            "skipped": [{"file": file, "error": why} for file, why in self.skipped],
        }


def evaluate(datasets: Sequence[Union[str, Path]], *, scale: int, models: Sequence[str] = ("bicubic",),
             lr_dir: Optional[Union[str, Path]] = None, save_dir: Optional[Union[str, Path]] = None,
             convention: str = "matlab", crop_border: Optional[int] = None, rgb: bool = False,
             device: str = "cpu", engine: str = "torch", precision: str = "auto",
             tile: Optional[int] = None, overlap: int = DEFAULT_OVERLAP,
             degrade: Optional[str] = None, seed: int = 0, niqe: bool = False,
             progress: Optional[ProgressFn] = None, skip_unscorable: bool = False,
             parent: Optional[str] = None) -> EvalReport:
    """Score ``models`` on each dataset (a folder of HR images, or one image) at ``scale``.

    ``crop_border`` defaults to ``scale``; ``rgb`` scores all channels instead of Y;
    ``tile`` (LR pixels, None = whole image) and ``overlap`` go to tiled inference;
    ``save_dir`` receives the SR outputs as ``<model>/<dataset>/<stem>.png``.
    ``degrade`` (a spec of ``sr_cli.degrade.parse_degrade_spec``, e.g. ``jpeg:25-55``) degrades
    each bicubic LR image with a generator seeded by ``seed`` and the image's dataset and name,
    so the LR set is the same whatever the models or the order; with ``save_dir`` the LR inputs
    are saved too, as ``lr/<dataset>/<stem>.png``. ``niqe`` also scores each output's NIQE
    (``sr_cli.niqe``: no reference, lower is more natural; the same border left out). With
    ``skip_unscorable`` an image that cannot be
    scored (unreadable, too small for the scale, no LR partner) is listed in ``report.skipped`` and
    left out of the means instead of stopping the run (ValueError/OSError). ``parent`` is the
    other end of any 'NAME@S' model's blend (default: the parent the model records).
    """
    from .degrade import parse_degrade_spec

    started = time.perf_counter()
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    scale = int(scale)
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; use one of {', '.join(CONVENTIONS)}")
    crop_border = scale if crop_border is None else crop_border
    if crop_border < 0:
        raise ValueError(f"crop border must be >= 0, got {crop_border}")
    spec = parse_degrade_spec(degrade) if degrade else None
    if spec is not None and lr_dir is not None:
        raise ValueError("--degrade makes the LR images from the HR ones; it cannot be combined with --lr-dir")
    models = list(dict.fromkeys(models))  # a model named twice is run once
    if not models:
        raise ValueError("no models to evaluate")

    folders = [Path(d) for d in datasets]
    labels = _dataset_labels(folders)
    images = {label: _list_images(folder) for label, folder in zip(labels, folders)}
    from .resolve import open_engines
    loaded = {name: open_engines(name, [scale], engine=engine, device=device, precision=precision, parent=parent)[0]
              for name in models}

    scores = {m: {d: DatasetScore(model=m, dataset=d) for d in labels} for m in models}
    total, done = sum(len(v) for v in images.values()) * len(models), 0
    skipped: list[tuple[str, str]] = []
    for label, folder in zip(labels, folders):
        lr_folder = _lr_folder(Path(lr_dir), folder, several=len(folders) > 1) if lr_dir is not None else None
        lr_files = _index_lr_files(lr_folder) if lr_folder is not None else None
        for path in images[label]:
            try:
                image_scores = score_image(path, label, lr_files=lr_files, lr_folder=lr_folder, scale=scale,
                                           spec=spec, seed=seed, save_dir=save_dir, loaded=loaded, tile=tile,
                                           overlap=overlap, crop_border=crop_border, rgb=rgb, convention=convention,
                                           with_niqe=niqe)
            except (ValueError, OSError) as exc:  # this file cannot be scored: named, left out, the rest go on
                if not skip_unscorable:
                    raise
                skipped.append((str(path), first_line(exc)))
                done += len(loaded)
                continue
            for name, score in image_scores.items():
                scores[name][label].images.append(score)
                done += 1
                if progress is not None:
                    progress(done, total, f"{name} {label}/{path.name}")

    return EvalReport(scale=scale, convention=convention, crop_border=crop_border, y_channel=not rgb,
                      lr_source=(str(lr_dir) if lr_dir is not None else "bicubic (MATLAB imresize)"
                                 + (f", then {spec.text} (seed {seed})" if spec is not None else "")),
                      models=models, datasets=labels, scores=scores, seconds=time.perf_counter() - started,
                      degrade=spec.text if spec is not None else None, seed=int(seed),
                      runs_on={name: f"{e.name} {e.precision}" for name, e in loaded.items()}, skipped=skipped,
                      niqe=niqe)


def score_image(path: Path, label: str, *, scale: int, loaded: dict, crop_border: int, spec=None, seed: int = 0,
                lr_files=None, lr_folder=None, save_dir=None, tile=None, overlap: int = DEFAULT_OVERLAP,
                rgb: bool = False, convention: str = "matlab", with_niqe: bool = False) -> dict[str, ImageScore]:
    """Every model's (``loaded``: name -> engine) score on one HR image of the dataset ``label``, as
    ``evaluate`` scores it; ValueError/OSError when it cannot be scored (too small for the scale,
    unreadable, no LR partner...)."""
    hr = _read_image(path)
    small = min(hr.shape[:2]) // scale * scale - 2 * crop_border
    if small < 11:  # SSIM's window, after the mod-crop and the border
        raise ValueError(f"{path.name} is too small to score at x{scale}: {hr.shape[1]}x{hr.shape[0]} "
                         f"leaves {max(small, 0)} pixels after the {crop_border}-pixel border (SSIM needs 11)")
    if lr_files is None:
        hr = modcrop(hr, scale)
        lr = bicubic_downscale(hr, scale)
        if spec is not None:
            lr = degraded_lr(spec, hr, lr, scale=scale, seed=seed, label=label, name=path.name)
            if save_dir is not None:
                _save(lr, Path(save_dir) / "lr" / _safe_name(label) / f"{path.stem}.png")
    else:
        lr, hr = _paired_lr(path, hr, lr_files, lr_folder, scale)
    found = {}
    for name, model in loaded.items():
        sr = run_model(model, lr, tile=tile, overlap=overlap)
        if sr.shape != hr.shape:
            raise ValueError(f"{name} made a {sr.shape} image from {path.name}, expected {hr.shape}")
        if save_dir is not None:
            _save(sr, Path(save_dir) / _safe_name(name) / _safe_name(label) / f"{path.stem}.png")
        kwargs = dict(crop_border=crop_border, test_y_channel=not rgb, convention=convention)
        found[name] = ImageScore(
            name=path.name, psnr=calculate_psnr(sr, hr, **kwargs), ssim=calculate_ssim(sr, hr, **kwargs),
            blockiness=blockiness(sr, scale=scale),
            niqe=niqe_score(sr, crop_border=crop_border) if with_niqe else None)
    return found


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """uint8 HR (HW or HWC, sides multiples of ``scale``) -> uint8 LR by ``resize.matlab_lr``."""
    return _uint8_like(matlab_lr(to_tensor(hr), scale), hr)


def degraded_lr(spec, hr: np.ndarray, lr: np.ndarray, *, scale: int, seed: int, label: str, name: str) -> np.ndarray:
    """``lr`` degraded by ``spec`` with a generator seeded by ``seed`` and the image's dataset label and
    file name: the same LR whatever the models, their order or the other images."""
    rng = np.random.default_rng([int(seed), zlib.crc32(f"{label}/{name}".encode())])
    return spec.apply(hr, lr, scale=scale, rng=rng)


def run_model(engine, lr: np.ndarray, *, tile: Optional[int], overlap: int) -> np.ndarray:
    """Upscale a uint8 HW/HWC image with an engine (engines/); returns uint8 of the same layout."""
    from .upscale import run_tiled, upscale_tensor

    x = to_tensor(lr)
    channels = x.shape[1]
    if engine.name == "torch":
        device = engine.torch_device

        def run(batch):
            return upscale_tensor(engine.model, batch, tile=tile, overlap=overlap, device=device,
                                  dtype=engine.dtype).cpu()
    else:
        def run(batch):
            return torch.from_numpy(run_tiled(engine, batch.numpy(), tile=tile, overlap=overlap))
    if engine.in_channels == channels:
        y = run(x)
    elif engine.in_channels == 3 and channels == 1:
        # Grey in, grey out: averaged in float64 so identical channels come back exactly.
        y = run(x.repeat(1, 3, 1, 1)).double().mean(dim=1, keepdim=True)
    elif engine.in_channels == 1:
        y = run(x.transpose(0, 1)).transpose(0, 1)  # channels as a batch of greyscale images
    else:
        raise ValueError(f"model {engine.label!r} takes {engine.in_channels} channels; "
                         f"the image has {channels}")
    return _uint8_like(y, lr)


def match_key(stem: str) -> str:
    """The part of a file stem that pairs HR and LR files (tags like x4, _LR, _HR removed)."""
    key = stem
    while True:
        shorter = _TAG.sub("", key)
        if shorter == key or not shorter:
            return key.lower()
        key = shorter


def _uint8_like(x: torch.Tensor, like: np.ndarray) -> np.ndarray:
    """1xCxHxW float in [0, 1] -> uint8 rounded as scores are (``imageio.from_tensor``), HWC, or HW
    if ``like`` is HW."""
    hwc = from_tensor(x, scored=True)
    return hwc[..., 0] if like.ndim == 2 else hwc


def _read_image(path: Path) -> np.ndarray:
    """uint8 HW (greyscale) or HWC (RGB); of an animation, the first frame."""
    pixels = read_image(path, first_frame=True).pixels
    if pixels.shape[2] == 1 and pixels.dtype == np.uint16:
        raise ValueError(f"{path}: 16-bit or float greyscale images are not supported for evaluation")
    pixels = rgb8(pixels, keep_grey=True)
    return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


def _list_images(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"dataset {path} does not exist")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    return found


def _dataset_labels(folders: list[Path]) -> list[str]:
    names = [f.stem if f.is_file() else (f.resolve().name or str(f)) for f in folders]
    # Two folders with the same name (e.g. a/HR and b/HR) are told apart by their paths.
    return [str(f) if names.count(n) > 1 else n for f, n in zip(folders, names)]


def _lr_folder(lr_dir: Path, dataset: Path, *, several: bool) -> Path:
    if several and (lr_dir / dataset.resolve().name).is_dir():
        return lr_dir / dataset.resolve().name
    if not lr_dir.is_dir():
        raise FileNotFoundError(f"LR folder {lr_dir} does not exist")
    return lr_dir


def _index_lr_files(folder: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for path in _list_images(folder):
        index.setdefault(match_key(path.stem), []).append(path)
    return index


def _paired_lr(hr_path: Path, hr: np.ndarray, lr_files: dict[str, list[Path]], lr_folder: Path,
               scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The LR image paired with ``hr_path``, and the HR cropped to exactly ``scale`` times its size."""
    candidates = lr_files.get(match_key(hr_path.stem), [])
    if not candidates:
        raise ValueError(f"no LR image for {hr_path.name} in {lr_folder} (matched by stem, e.g. "
                         f"{hr_path.stem}x{scale}.png or {hr_path.stem}_LR.png)")
    if len(candidates) > 1:
        raise ValueError(f"several LR images match {hr_path.name}: {', '.join(p.name for p in candidates)}")
    lr = _read_image(candidates[0])
    if lr.ndim != hr.ndim:
        raise ValueError(f"{candidates[0].name} and {hr_path.name} differ in colour (greyscale vs RGB)")
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if h > hr.shape[0] or w > hr.shape[1] or h <= hr.shape[0] - scale or w <= hr.shape[1] - scale:
        raise ValueError(f"{candidates[0].name} is {lr.shape[1]}x{lr.shape[0]}; x{scale} of it does not fit "
                         f"{hr_path.name} ({hr.shape[1]}x{hr.shape[0]}) after mod-crop")
    return lr, hr[:h, :w]


def _safe_name(name: str) -> str:
    """A model name or path as one folder name."""
    path = Path(name)
    base = path.stem if path.suffix == ".safetensors" else name
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", base).strip("._") or "model"


def _save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, ImageData(pixels=img[:, :, None] if img.ndim == 2 else img))
