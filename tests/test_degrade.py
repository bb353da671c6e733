import math

import numpy as np
import pytest

from sr_cli import degrade as d


def image(h=48, w=40, seed=0):
    """A textured float32 RGB image in [0, 1] (smooth base + fine detail)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(x / 4 + k) * np.cos(y / 5 - k) for k in range(3)], axis=2) * 0.3 + 0.5
    return np.clip(base + rng.normal(0, 0.05, (h, w, 3)), 0, 1).astype(np.float32)


@pytest.mark.parametrize("name", list(d.PRESETS))
@pytest.mark.parametrize("scale,size", [(4, (48, 40)), (2, (30, 22)), (3, (31, 47))])
def test_shape_range_levels(name, scale, size):
    for seed in range(3):
        lr = d.degrade(image(*size), scale=scale, rng=np.random.default_rng(seed), pipeline=d.PRESETS[name])
        assert lr.shape == (size[0] // scale, size[1] // scale, 3) and lr.dtype == np.float32
        assert lr.min() >= 0.0 and lr.max() <= 1.0
        assert np.allclose(lr * 255, np.round(lr * 255), atol=1e-4)  # uint8 levels


def test_deterministic_given_the_generator():
    hr = image()
    pipeline = d.PRESETS["realesrgan"]
    a = d.degrade(hr, scale=4, rng=np.random.default_rng([7, 2, 11]), pipeline=pipeline)
    b = d.degrade(hr, scale=4, rng=np.random.default_rng([7, 2, 11]), pipeline=pipeline)
    c = d.degrade(hr, scale=4, rng=np.random.default_rng([7, 2, 12]), pipeline=pipeline)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_kernels():
    for kernel in (d.gaussian_kernel(21, 2.0, 0.5, 0.7), d.gaussian_kernel(7, 1.0, 1.0, beta=0.5),
                   d.gaussian_kernel(9, 1.5, 1.0, 0.3, beta=2.0, plateau=True), d.sinc_kernel(13, math.pi / 3)):
        assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
        assert abs(float(kernel.sum()) - 1.0) < 1e-5
        assert np.allclose(kernel, kernel[::-1, ::-1], atol=1e-7)  # point symmetric: correlation = convolution
    iso = d.gaussian_kernel(21, 2.0, 2.0)
    assert np.allclose(iso, iso.T, atol=1e-7)
    aniso = d.gaussian_kernel(21, 3.0, 0.5, 0.0)  # wide along x
    assert aniso[10, 13] > aniso[13, 10]
    assert d.sinc_kernel(21, math.pi / 4).min() < 0  # ringing lobes
    # J1 against known values
    assert d._bessel_j1(np.array([1.0, 3.8317059702]))[0] == pytest.approx(0.4400505857, abs=1e-9)
    assert abs(d._bessel_j1(np.array([3.8317059702]))[0]) < 1e-9  # first zero
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = d.random_kernel(rng, d.PRESETS["realesrgan"].first)
        assert 7 <= k.shape[0] <= 21 and abs(float(k.sum()) - 1) < 1e-5


def test_each_operation_changes_the_image():
    hr = image()
    rng = np.random.default_rng(0)
    changed = {
        "blur": d.blur(hr, d.gaussian_kernel(7, 1.5, 1.5)),
        "sinc": d.blur(hr, d.sinc_kernel(11, math.pi / 3)),
        "gaussian_noise": d.gaussian_noise(hr, rng, 10 / 255, gray=False),
        "gray_noise": d.gaussian_noise(hr, rng, 10 / 255, gray=True),
        "poisson_noise": d.poisson_noise(hr, rng, 1.0, gray=False),
        "jpeg": d.jpeg(hr, 30),
        "resize": d.resize(d.resize(hr, (24, 20), "area"), hr.shape[:2], "bicubic"),
    }
    for name, out in changed.items():
        assert out.shape == hr.shape and out.dtype == np.float32, name
        assert np.abs(out - hr).mean() > 1e-3, name
    gray = changed["gray_noise"] - hr
    assert np.allclose(gray[..., 0], gray[..., 1], atol=1e-6) and np.allclose(gray[..., 0], gray[..., 2], atol=1e-6)
    assert d.resize(hr, (10, 7), "bilinear").shape == (10, 7, 3)
    # blur smooths, JPEG output has uint8 levels
    assert np.abs(np.diff(changed["blur"], axis=1)).mean() < np.abs(np.diff(hr, axis=1)).mean()
    assert np.array_equal(changed["jpeg"] * 255, np.round(changed["jpeg"] * 255))


def test_pipeline_differs_from_plain_downscaling_and_errors():
    hr = image()
    lr = d.degrade(hr, scale=4, rng=np.random.default_rng(1), pipeline=d.PRESETS["realesrgan"])
    plain = d.resize(hr, (12, 10), "area")
    assert np.abs(lr - plain).mean() > 1e-3
    with pytest.raises(ValueError, match="unknown degradation"):
        d.get_pipeline("nope")
    with pytest.raises(ValueError, match="float32"):
        d.degrade(hr.astype(np.float64), scale=2, rng=np.random.default_rng(0), pipeline=d.PRESETS["simple"])
    with pytest.raises(ValueError, match="kernels"):
        d.Stage(kernel_probs={"box": 1.0})
