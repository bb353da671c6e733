"""NIQE, the no-reference naturalness score (Mittal, Soundararajan and Bovik, IEEE SPL 2013).

Lower is more natural. Computed as the authors' MATLAB release and BasicSR's
``calculate_niqe`` do, with the published pristine model (``niqe_pristine.json``: the
authors' numbers, as BasicSR ships them): the image's Y channel (BT.601, float, then
rounded) is cut into 96x96 blocks; at two scales (the image, then a MATLAB-bicubic half)
each block's MSCN coefficients give 18 AGGD features; a Gaussian fitted to all blocks'
36 features is compared with the pristine one. The score on Set14's ``baboon.png`` is
5.7296, MATLAB's.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .metrics import rgb_to_y

BLOCK = 96
# (row, column) shifts of the pairwise products: horizontal, vertical and both diagonals.
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (36,), covariance (36, 36), 7x7 Gaussian window) of the pristine model."""
    data = json.loads((Path(__file__).with_name("niqe_pristine.json")).read_text())
    return (np.asarray(data["mu_pris_param"], np.float64), np.asarray(data["cov_pris_param"], np.float64),
            np.asarray(data["gaussian_window"], np.float64))


@lru_cache(maxsize=1)
def _shape_table() -> tuple[np.ndarray, np.ndarray]:
    """The AGGD shape grid (0.2..10 by 0.001) and its moment ratio Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))."""
    shapes = np.arange(0.2, 10.001, 0.001)
    lgamma = np.vectorize(math.lgamma)
    ratio = np.exp(2 * lgamma(2 / shapes) - lgamma(1 / shapes) - lgamma(3 / shapes))
    return shapes, ratio


def niqe(img: np.ndarray, *, crop_border: int = 0) -> float:
    """NIQE of an HWC RGB (uint8, or float in [0, 1]) or HW grey (0..255) image.

    ``crop_border`` pixels are left out on each side first. The image must hold at least
    two 96x96 blocks after the crop (ValueError otherwise).
    """
    if img.ndim == 3 and img.shape[2] == 3:
        y = rgb_to_y(img, round_y=False)
    elif img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        y = img.reshape(img.shape[:2]).astype(np.float64)
    else:
        raise ValueError(f"expected an HxWx3 RGB or HxW grey image, got shape {img.shape}")
    if crop_border:
        y = y[crop_border:-crop_border, crop_border:-crop_border]
    y = np.round(y)  # as MATLAB's uint8 Y
    rows, cols = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    if rows * cols < 2:
        raise ValueError(f"NIQE needs at least two {BLOCK}x{BLOCK} blocks; the image is "
                         f"{y.shape[1]}x{y.shape[0]} after its {crop_border}-pixel border")
    y = y[:rows * BLOCK, :cols * BLOCK]
    mu_pristine, cov_pristine, window = pristine_model()

    features = []
    for level in (1, 2):
        mscn = _mscn(y, window)
        size = BLOCK // level
        blocks = mscn.reshape(rows, size, cols, size).transpose(2, 0, 1, 3).reshape(-1, size, size)
        features.append(np.array([_block_features(b) for b in blocks]))  # column-major block order, as MATLAB
        if level == 1:
            y = _half(y)
    features = np.concatenate(features, axis=1)

    mu = np.nanmean(features, axis=0)
    cov = np.cov(features[~np.isnan(features).any(axis=1)], rowvar=False)
    diff = mu_pristine - mu
    return float(np.sqrt(diff @ np.linalg.pinv((cov_pristine + cov) / 2) @ diff))


def _mscn(y: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients (Eq. 1), edges replicated.

    Filtered in float64, then kept in float32 as BasicSR does: in flat areas the local variance
    E[y^2] - E[y]^2 is a difference of near-equal float32 numbers, and that rounding moves the
    score by up to ~0.01; matching it keeps our figures comparable with published ones.
    """
    mean = cv2.filter2D(y, cv2.CV_64F, window, borderType=cv2.BORDER_REPLICATE).astype(np.float32)
    mean_sq = cv2.filter2D(y * y, cv2.CV_64F, window, borderType=cv2.BORDER_REPLICATE).astype(np.float32)
    sigma = np.sqrt(np.abs(mean_sq - mean * mean))
    return (y.astype(np.float32) - mean) / (sigma + 1)


def _half(y: np.ndarray) -> np.ndarray:
    """MATLAB's imresize(y, 0.5) (bicubic, antialiased) on 0..255 values, not rounded."""
    import torch

    from .resize import imresize

    return (imresize(torch.from_numpy(y / 255.0), 0.5) * 255.0).numpy().astype(np.float32).astype(np.float64)


def _block_features(block: np.ndarray) -> list[float]:
    """18 features: the AGGD fit of the MSCN block, then of its four neighbour products."""
    shape, left, right = _aggd(block)
    found = [shape, (left + right) / 2]
    for shift in _SHIFTS:
        shape, left, right = _aggd(block * np.roll(block, shift, axis=(0, 1)))
        mean = (right - left) * math.exp(math.lgamma(2 / shape) - math.lgamma(1 / shape))
        found += [shape, mean, left, right]
    return found


def _aggd(values: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (shape, left scale, right scale)."""
    values = values.ravel()
    shapes, ratio = _shape_table()
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-positive block has no left side: NaN, as MATLAB
        left_std = np.sqrt(np.mean(values[values < 0] ** 2)) if (values < 0).any() else np.nan
        right_std = np.sqrt(np.mean(values[values > 0] ** 2)) if (values > 0).any() else np.nan
        gamma_hat = left_std / right_std
        r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values ** 2)
        r_norm = r_hat * (gamma_hat ** 3 + 1) * (gamma_hat + 1) / (gamma_hat ** 2 + 1) ** 2
    shape = float(shapes[np.argmin((ratio - r_norm) ** 2)])
    spread = math.sqrt(math.exp(math.lgamma(1 / shape) - math.lgamma(3 / shape)))
    return shape, float(left_std * spread), float(right_std * spread)
