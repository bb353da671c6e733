import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from sr_cli.metrics import calculate_psnr, calculate_ssim, rgb_to_y


def random_pair(h=40, w=36, c=3, noise=8, seed=0):
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, (h, w, c), dtype=np.uint8) if c else rng.integers(0, 256, (h, w), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-noise, noise + 1, hr.shape), 0, 255).astype(np.uint8)
    return sr, hr


def test_rgb_to_y_known_values():
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    # 16 + 65.481, 16 + 128.553, 16 + 24.966 for pure red, green, blue.
    np.testing.assert_allclose(rgb_to_y(pixels, round_y=False)[0], [16, 235, 81.481, 144.553, 40.966], atol=1e-9)
    np.testing.assert_array_equal(rgb_to_y(pixels, round_y=True)[0], [16, 235, 81, 145, 41])
    # Float input is taken as [0, 1].
    np.testing.assert_allclose(rgb_to_y(pixels / 255.0, round_y=False), rgb_to_y(pixels, round_y=False))


def test_rgb_to_y_rounds_half_up():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    y = rgb_to_y(img, round_y=False)
    assert np.array_equal(rgb_to_y(img, round_y=True), np.floor(y + 0.5))


def test_psnr_of_known_noise_on_all_channels():
    rng = np.random.default_rng(1)
    hr = rng.integers(10, 246, (20, 24, 3), dtype=np.uint8)
    # +-3 everywhere: MSE is exactly 9.
    signs = np.where(rng.random(hr.shape) < 0.5, -3, 3)
    sr = (hr.astype(int) + signs).astype(np.uint8)
    expected = 10 * math.log10(255**2 / 9)
    assert calculate_psnr(sr, hr, crop_border=0, test_y_channel=False) == pytest.approx(expected, abs=1e-10)
    # The border is left out: noise only in a 2-pixel frame does not count with crop_border=2.
    framed = hr.copy()
    framed[:2] = 0
    assert calculate_psnr(framed, hr, crop_border=2, test_y_channel=False) == math.inf


@pytest.mark.parametrize("convention", ["matlab", "basicsr"])
def test_psnr_on_y_matches_independent_formula(convention):
    sr, hr = random_pair()
    border = 3

    def y_of(img):
        rgb = img[border:-border, border:-border].astype(np.float64)
        y = 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255
        return np.floor(y + 0.5) if convention == "matlab" else y

    mse = np.mean((y_of(sr) - y_of(hr)) ** 2)
    expected = 10 * np.log10(255**2 / mse)
    got = calculate_psnr(sr, hr, crop_border=border, convention=convention)
    assert got == pytest.approx(expected, abs=1e-9)


def test_conventions_differ_on_y_only():
    sr, hr = random_pair()
    matlab = calculate_psnr(sr, hr, crop_border=2, convention="matlab")
    basicsr = calculate_psnr(sr, hr, crop_border=2, convention="basicsr")
    assert matlab != basicsr and abs(matlab - basicsr) < 0.5
    rgb = [calculate_psnr(sr, hr, crop_border=2, test_y_channel=False, convention=c) for c in ("matlab", "basicsr")]
    assert rgb[0] == rgb[1]


@pytest.mark.parametrize("test_y_channel", [True, False])
@pytest.mark.parametrize("convention", ["matlab", "basicsr"])
def test_ssim_matches_skimage_on_the_same_region(test_y_channel, convention):
    sr, hr = random_pair(h=48, w=40, noise=20, seed=2)
    border = 4
    got = calculate_ssim(sr, hr, crop_border=border, test_y_channel=test_y_channel, convention=convention)

    # skimage pads, then averages over the map with (win_size - 1) // 2 = 5 pixels cut from
    # each side: the same valid region as ours, given our already-cropped images.
    a, b = sr[border:-border, border:-border], hr[border:-border, border:-border]
    if test_y_channel:
        a, b = (rgb_to_y(v, round_y=convention == "matlab") for v in (a, b))
        channel_axis = None
    else:
        a, b = a.astype(np.float64), b.astype(np.float64)
        channel_axis = 2
    expected = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255, channel_axis=channel_axis)
    assert got == pytest.approx(expected, abs=1e-9)


def test_greyscale_is_scored_on_its_channel():
    sr, hr = random_pair(c=0)
    assert sr.ndim == 2
    psnr = calculate_psnr(sr, hr, crop_border=2)
    assert psnr == calculate_psnr(sr[..., None], hr[..., None], crop_border=2)
    assert psnr == calculate_psnr(sr, hr, crop_border=2, test_y_channel=False)
    # No Y conversion: the MSE is on the raw grey values.
    mse = np.mean((sr[2:-2, 2:-2].astype(float) - hr[2:-2, 2:-2]) ** 2)
    assert psnr == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-10)
    ssim = calculate_ssim(sr, hr, crop_border=2)
    expected = structural_similarity(sr[2:-2, 2:-2].astype(float), hr[2:-2, 2:-2].astype(float),
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert ssim == pytest.approx(expected, abs=1e-9)
    assert ssim == pytest.approx(calculate_ssim(sr[..., None], hr[..., None], crop_border=2), abs=1e-15)


@pytest.mark.parametrize("shape", [(30, 30, 3), (30, 30), (30, 30, 1)])
def test_identical_images(shape):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert calculate_psnr(img, img, crop_border=4) == math.inf
    assert calculate_ssim(img, img, crop_border=4) == pytest.approx(1.0, abs=1e-12)


def test_rejects_bad_input():
    sr, hr = random_pair()
    with pytest.raises(ValueError, match="shape"):
        calculate_psnr(sr[:-1], hr, crop_border=0)
    with pytest.raises(TypeError, match="uint8"):
        calculate_psnr(sr.astype(np.float32), hr.astype(np.float32), crop_border=0)
    with pytest.raises(ValueError, match="convention"):
        calculate_ssim(sr, hr, crop_border=0, convention="octave")
    with pytest.raises(ValueError, match="leaves nothing"):
        calculate_psnr(sr, hr, crop_border=20)
    with pytest.raises(ValueError, match="11x11"):
        calculate_ssim(sr[:14, :14], hr[:14, :14], crop_border=2)
