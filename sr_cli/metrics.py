"""PSNR and SSIM as the super-resolution literature computes them (BasicSR ``metrics/psnr_ssim.py``).

Inputs are HWC (or HW) uint8 RGB arrays. By default both are compared on the
BT.601 luma (Y) channel, ``crop_border`` pixels shaved off each side first.
Two conventions for Y:

- ``matlab`` (default): Y rounded to integers, as MATLAB's ``rgb2ycbcr`` on uint8
  does; the classic published tables were computed this way.
- ``basicsr``: Y kept as float (BasicSR); about 0.02 dB higher on Set5.

Greyscale images (HW or HWx1) are compared on their single channel as is, with no
conversion, as both MATLAB scripts and BasicSR do. Everything is float64.
"""
from __future__ import annotations

import cv2
import numpy as np

CONVENTIONS = ("matlab", "basicsr")

# ITU-R BT.601 for RGB in [0, 1], Y in [16, 235].
Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
Y_OFFSET = 16.0

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2


def rgb_to_y(img: np.ndarray, *, round_y: bool) -> np.ndarray:
    """BT.601 luma of an HWC RGB image: Y = 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1].

    ``img`` is uint8 (0..255) or float in [0, 1]. Returns HW float64 in the 0..255
    range (16..235). ``round_y`` rounds half up, as MATLAB's conversion to uint8 does.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    rgb = img.astype(np.float64)
    if np.issubdtype(img.dtype, np.integer):
        rgb /= 255.0
    y = rgb @ Y_WEIGHTS + Y_OFFSET
    return np.floor(y + 0.5) if round_y else y


def calculate_psnr(sr: np.ndarray, hr: np.ndarray, *, crop_border: int, test_y_channel: bool = True,
                   convention: str = "matlab") -> float:
    """PSNR in dB (peak 255) over the cropped image; inf for identical images.

    With ``test_y_channel`` False, the mean squared error is over all channels.
    """
    a, b = _prepare(sr, hr, crop_border=crop_border, test_y_channel=test_y_channel, convention=convention)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / mse))


def calculate_ssim(sr: np.ndarray, hr: np.ndarray, *, crop_border: int, test_y_channel: bool = True,
                   convention: str = "matlab") -> float:
    """SSIM (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), C1 = (0.01*255)^2,
    C2 = (0.03*255)^2, means over the valid region only (no padding). With
    ``test_y_channel`` False, the mean over channels. 1.0 for identical images.
    """
    a, b = _prepare(sr, hr, crop_border=crop_border, test_y_channel=test_y_channel, convention=convention)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after cropping, "
                         f"got {a.shape[0]}x{a.shape[1]}")
    return float(np.mean([_ssim_one_channel(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def _prepare(sr: np.ndarray, hr: np.ndarray, *, crop_border: int, test_y_channel: bool,
             convention: str) -> tuple[np.ndarray, np.ndarray]:
    """Check, crop and (maybe) convert to Y: two HxWxC float64 arrays."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; use one of {', '.join(CONVENTIONS)}")
    if sr.shape != hr.shape:
        raise ValueError(f"images differ in shape: {sr.shape} vs {hr.shape}")
    for img in (sr, hr):
        if img.dtype != np.uint8:
            raise TypeError(f"expected uint8 images, got {img.dtype}")
        if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
            raise ValueError(f"expected HW, HWx1 or HWx3 images, got shape {img.shape}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    h, w = hr.shape[:2]
    if 2 * crop_border >= min(h, w):
        raise ValueError(f"crop_border {crop_border} leaves nothing of a {h}x{w} image")

    def prepare(img: np.ndarray) -> np.ndarray:
        img = img[crop_border:h - crop_border, crop_border:w - crop_border]
        if img.ndim == 2:
            img = img[..., None]
        if test_y_channel and img.shape[2] == 3:
            return rgb_to_y(img, round_y=convention == "matlab")[..., None]
        return img.astype(np.float64)

    return prepare(sr), prepare(hr)


def _ssim_one_channel(a: np.ndarray, b: np.ndarray) -> float:
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA).astype(np.float64)

    def local_mean(img: np.ndarray) -> np.ndarray:
        # Correlation; the border mode is irrelevant because only the valid region is kept.
        filtered = cv2.sepFilter2D(img, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)
        r = SSIM_WINDOW // 2
        return filtered[r:-r, r:-r]

    return float(ssim_map(np.ascontiguousarray(a), np.ascontiguousarray(b), local_mean).mean())


def ssim_map(a, b, local_mean):
    """SSIM at each window position of two Y images (0..255 scale), numpy arrays or torch tensors
    alike (the training loss uses it too); ``local_mean`` is the Gaussian window's weighted mean."""
    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mu_a**2
    var_b = local_mean(b * b) - mu_b**2
    cov = local_mean(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2))


def blockiness(img: np.ndarray, *, scale: int, block: int = 8) -> float:
    """How visible an upscaled JPEG block grid is in ``img`` (HWC RGB uint8, or HW grey).

    On the Y channel, the mean absolute step across the lines of the (block x scale)-pixel grid
    (where the LR image's 8x8 JPEG blocks meet) divided by the mean absolute step at the same
    phase of the LR pixel grid away from those lines, both directions together. 1.0: no grid
    stands out; bicubic upscaling of a clean image gives about 1.0; enlarged JPEG blocks give more.
    """
    y = rgb_to_y(img, round_y=False) if img.ndim == 3 and img.shape[2] == 3 else np.squeeze(img).astype(np.float64)
    period = block * scale
    grid_sum = grid_n = other_sum = other_n = 0.0
    for steps in (np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0)).T):
        # steps[:, i] is the step between pixels i and i + 1; LR pixel edges sit at i + 1 = k * scale
        edges = np.arange(scale - 1, steps.shape[1], scale)
        on_grid = (edges + 1) % period == 0
        grid_sum += steps[:, edges[on_grid]].sum()
        grid_n += steps.shape[0] * int(on_grid.sum())
        other_sum += steps[:, edges[~on_grid]].sum()
        other_n += steps.shape[0] * int((~on_grid).sum())
    if not grid_n or not other_n:
        raise ValueError(f"image {img.shape[:2]} is too small for a {period}-pixel block grid")
    other = other_sum / other_n
    return float((grid_sum / grid_n) / other) if other > 0 else 1.0
