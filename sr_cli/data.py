"""Training and validation data: folders of HR images -> (LR, HR) pairs.

``HRPatchDataset`` decodes every HR image once and keeps it in memory as uint8
(the 291-image set is ~110 MB). Each item is a random HR crop of ``patch * scale``
pixels, randomly flipped / transposed (the 8 dihedral transforms), with its LR made
on the fly by ``resize.matlab_lr`` (MATLAB bicubic, quantised to uint8 levels as real LR
files are): the LR that ``sr eval`` scores with, and training's validation too.

The LR patch equals the same pixels of the LR image made from the whole
(modcropped) HR image: crops start on the scale grid and are resized with a margin
of context that is cut off afterwards, so the crop's edges are not mirrored
artificially.

Randomness comes only from ``(seed, index)``: item ``i`` is the same whatever the
worker, the number of workers or what ran before. ``index`` may run past
``len(dataset)`` (the "virtual epoch"); a training loop feeding global sample
numbers ``step * batch + k`` therefore resumes exactly (see ``SampleRange``).

``scale_aug`` (factors below 1, e.g. 0.9, 0.8, 0.7, 0.6) adds a MATLAB-bicubic
shrunk copy of every HR image per factor, each sampled as often as an original:
the scale augmentation VDSR (and DRRN, LapSRN) used on this same 291-image set.

With ``degradation`` (a preset of ``sr_cli.degrade``, e.g. "realesrgan") the LR
patch is made by that random pipeline instead of bicubic, from the same crop with
context; its randomness is drawn from ``(seed, 2, index)``, so it is as
reproducible as the crops. ``block_aligned`` then starts that context a multiple of
8 LR pixels before the patch (none for patches within 8 pixels of the image's top
or left edge), so the 8x8 JPEG grid of a pipeline that compresses at the LR size
lies on the patch's multiples of 8 (the ``block_edge`` loss scores those lines).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from . import imageio
from .degrade import Pipeline, degrade, get_pipeline
from .degrade_presets import JPEG_BLOCK
from .resize import imresize_uint8, matlab_lr, modcrop

# The formats training folders are read in: only these, so that a folder trains on what it always did.
_FORMATS = ("png", "jpg", "bmp")
IMAGE_EXTENSIONS = tuple(suffix for fmt in _FORMATS for suffix in imageio.FORMAT_SUFFIXES[fmt])
# LR pixels of context resized with a crop and then cut off. MATLAB's shrinking
# kernel reaches 2 LR pixels each side; one more for safety.
_LR_MARGIN = 3
# With a degradation pipeline, blur kernels reach further (up to 6 LR pixels at the LR size).
_DEGRADE_MARGIN = 8


def find_images(folders: Iterable[str | Path]) -> list[Path]:
    """Image files (``IMAGE_EXTENSIONS``, any case) under ``folders``, recursively, sorted per folder."""
    found: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            found.append(folder)
            continue
        if not folder.is_dir():
            raise ValueError(f"no such folder: {folder}")
        found += sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return found


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as HWC uint8 RGB (greyscale becomes RGB, alpha is dropped; ``imageio.rgb8``);
    of an animation, the first frame."""
    return imageio.rgb8(imageio.read_image(path, first_frame=True).pixels)


def shrink_factors(factors: Iterable[float]) -> tuple[float, ...]:
    """Scale-augmentation factors as floats; each must lie strictly between 0 and 1."""
    checked = tuple(float(f) for f in factors)
    if any(not 0.0 < f < 1.0 for f in checked):
        raise ValueError(f"scale augmentation factors must be between 0 and 1 (exclusive), got {list(checked)}")
    return checked


def shrink(img: np.ndarray, factor: float) -> np.ndarray:
    """An HWC uint8 image shrunk by ``factor`` as MATLAB's imresize does uint8 (``resize.imresize_uint8``)."""
    return imageio.from_tensor(imresize_uint8(imageio.to_tensor(img), factor))


class HRPatchDataset(Dataset):
    """Random (LR, HR) patch pairs from folders of HR images, as float CHW tensors in [0, 1].

    ``patch`` is the LR patch size; HR patches are ``patch * scale``. Images smaller
    than that are skipped (listed in ``skipped``); no usable image raises.
    ``epoch_length`` is the virtual epoch (default: the number of images).
    ``degradation``: None or "bicubic" (MATLAB bicubic, the default), a preset name
    of ``sr_cli.degrade.PRESETS`` or a ``Pipeline``.
    ``scale_aug``: factors in (0, 1); each adds a shrunk copy of every image (copies
    smaller than the HR patch are left out and counted in ``shrunk_skipped``).
    ``block_aligned``: with a degradation, crop so that the LR's JPEG grid lies on the
    patch's multiples of 8 (see the module's docstring).
    """

    def __init__(self, folders: Sequence[str | Path], *, scale: int, patch: int, seed: int = 0,
                 epoch_length: int | None = None, augment: bool = True,
                 degradation: str | Pipeline | None = None, scale_aug: Sequence[float] = (),
                 block_aligned: bool = False):
        if scale < 1 or patch < 1:
            raise ValueError(f"scale and patch must be >= 1, got scale={scale}, patch={patch}")
        self.scale, self.patch, self.seed, self.augment = int(scale), int(patch), int(seed), augment
        if isinstance(degradation, str):
            degradation = None if degradation == "bicubic" else get_pipeline(degradation)
        self.degradation: Pipeline | None = degradation
        self.block_aligned = block_aligned
        paths = find_images(folders)
        if not paths:
            raise ValueError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) in {', '.join(map(str, folders))}")
        hr_patch = self.patch * self.scale
        self.images: list[np.ndarray] = []
        self.paths: list[Path] = []
        self.skipped: list[Path] = []
        self.scale_aug = shrink_factors(scale_aug)
        self.shrunk_count = self.shrunk_skipped = 0
        for path in paths:
            original = read_rgb(path)
            img = modcrop(original, self.scale)
            if img.shape[0] < hr_patch or img.shape[1] < hr_patch:
                self.skipped.append(path)
                continue
            self.images.append(img)
            self.paths.append(path)
            for factor in self.scale_aug:
                shrunk = modcrop(shrink(original, factor), self.scale)
                if shrunk.shape[0] < hr_patch or shrunk.shape[1] < hr_patch:
                    self.shrunk_skipped += 1
                    continue
                self.images.append(shrunk)
                self.paths.append(path)
                self.shrunk_count += 1
        if not self.images:
            raise ValueError(f"all {len(paths)} images are smaller than the HR patch ({hr_patch}x{hr_patch}); "
                             f"use a smaller patch")
        self.epoch_length = int(epoch_length or len(self.images))
        if self.epoch_length < 1:
            raise ValueError("epoch_length must be >= 1")

    def __len__(self) -> int:
        return self.epoch_length

    @property
    def nbytes(self) -> int:
        return sum(img.nbytes for img in self.images)

    def _image_index(self, index: int) -> int:
        # Each run of len(images) consecutive samples visits every image once, in a seeded order.
        n = len(self.images)
        cycle, position = divmod(index, n)
        order = np.random.default_rng([self.seed, 1, cycle]).permutation(n)
        return int(order[position])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index < 0:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, 0, int(index)])
        img = self.images[self._image_index(int(index))]
        s, p = self.scale, self.patch
        m = _LR_MARGIN if self.degradation is None else _DEGRADE_MARGIN
        lr_h, lr_w = img.shape[0] // s, img.shape[1] // s
        top, left = int(rng.integers(0, lr_h - p + 1)), int(rng.integers(0, lr_w - p + 1))  # in LR pixels
        # Resize the crop with up to m LR pixels of real context on each side, then cut the context off.
        if self.block_aligned and self.degradation is not None:
            t0, l0 = top - min(top, m) // JPEG_BLOCK * JPEG_BLOCK, left - min(left, m) // JPEG_BLOCK * JPEG_BLOCK
        else:
            t0, l0 = max(top - m, 0), max(left - m, 0)
        t1, l1 = min(top + p + m, lr_h), min(left + p + m, lr_w)
        region = imageio.to_tensor(img[t0 * s:t1 * s, l0 * s:l1 * s])[0]
        if self.degradation is None:
            lr = matlab_lr(region, s)
        else:
            hwc = np.ascontiguousarray(region.permute(1, 2, 0).numpy())
            lr = torch.from_numpy(degrade(hwc, scale=s, rng=np.random.default_rng([self.seed, 2, int(index)]),
                                          pipeline=self.degradation).transpose(2, 0, 1).copy())
        lr = lr[:, top - t0:top - t0 + p, left - l0:left - l0 + p]
        hr = region[:, (top - t0) * s:(top - t0 + p) * s, (left - l0) * s:(left - l0 + p) * s]
        if self.augment:
            code = int(rng.integers(0, 8))
            lr, hr = (_augment_chw(t, code) for t in (lr, hr))
        return lr.contiguous(), hr.contiguous()


def _augment_chw(t: torch.Tensor, code: int) -> torch.Tensor:
    if code & 1:
        t = t.flip(-1)
    if code & 2:
        t = t.flip(-2)
    if code & 4:
        t = t.transpose(-1, -2)
    return t


class SampleRange(Sampler[int]):
    """Global sample numbers ``start .. stop - 1``: feed a dataset whose items depend only on index.

    For data parallel training (``world_size`` > 1) each global batch of ``batch``
    consecutive sample numbers is cut into ``world_size`` equal shards and this
    sampler yields shard ``rank`` of each; a loader over it takes
    ``batch // world_size`` per step. The ranks together see exactly the samples
    one process would, so the data do not depend on the number of processes.
    ``start`` and ``stop`` must then be multiples of ``batch``.
    """

    def __init__(self, start: int, stop: int, *, batch: int = 1, rank: int = 0, world_size: int = 1):
        self.start, self.stop = int(start), int(stop)
        self.batch, self.rank, self.world_size = int(batch), int(rank), int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {rank} out of range for world size {world_size}")
        if self.world_size > 1:
            if self.batch % self.world_size:
                raise ValueError(f"the batch ({batch}) must be a multiple of the number of processes ({world_size})")
            if self.start % self.batch or self.stop % self.batch:
                raise ValueError("start and stop must be multiples of the batch when sharding")
        self.shard = self.batch // self.world_size

    def __iter__(self):
        if self.world_size == 1:
            return iter(range(self.start, self.stop))
        offset = self.rank * self.shard
        return (b + offset + k for b in range(self.start, self.stop, self.batch) for k in range(self.shard))

    def __len__(self) -> int:
        return max(0, self.stop - self.start) // self.world_size


def worker_init(worker_id: int) -> None:
    """DataLoader worker setup: one thread each, and per-worker seeds for any other randomness."""
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    seed = torch.initial_seed() % 2**32  # torch gives each worker base_seed + worker_id
    np.random.seed(seed)
    random.seed(seed)


@dataclass
class ValImage:
    name: str
    lr: torch.Tensor  # 1CHW float [0, 1], uint8 levels
    hr: np.ndarray    # HWC uint8, modcropped


def load_validation(folder: str | Path, *, scale: int) -> list[ValImage]:
    """Full validation images: HR modcropped to the scale, LR by MATLAB bicubic quantised to uint8."""
    paths = find_images([folder])
    if not paths:
        raise ValueError(f"no validation images in {folder}")
    out = []
    for path in paths:
        hr = modcrop(read_rgb(path), scale)
        lr = matlab_lr(imageio.to_tensor(hr), scale)
        out.append(ValImage(path.stem, lr, hr))
    return out
