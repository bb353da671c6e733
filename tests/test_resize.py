import math

import numpy as np
import pytest
import torch

from sr_cli.resize import cubic, imresize, matlab_lr, modcrop, weight_matrix


def reference_cubic(d):
    d = abs(d)
    if d <= 1:
        return 1.5 * d**3 - 2.5 * d**2 + 1
    if d <= 2:
        return -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2
    return 0.0


def reference_resize_1d(values, scale, antialias=True):
    """MATLAB's imresize along one axis, written out pixel by pixel (no matrices)."""
    n = len(values)
    shrinking = scale < 1 and antialias
    width = 4 / scale if shrinking else 4
    out = []
    for x in range(1, math.ceil(n * scale) + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = []
        for k in range(math.ceil(width) + 2):
            index = left + k
            d = u - index
            w = scale * reference_cubic(d * scale) if shrinking else reference_cubic(d)
            # MATLAB's symmetric border: 1..n, n..1, repeated.
            mirrored = (index - 1) % (2 * n)
            mirrored = mirrored if mirrored < n else 2 * n - 1 - mirrored
            taps.append((w, values[mirrored]))
        total = sum(w for w, _ in taps)
        out.append(sum(w * v for w, v in taps) / total)
    return np.array(out)


def reference_resize_2d(img, scale, antialias=True):
    rows = np.stack([reference_resize_1d(col, scale, antialias) for col in img.T], axis=1)
    return np.stack([reference_resize_1d(row, scale, antialias) for row in rows], axis=0)


def test_cubic_kernel_values():
    x = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, -0.5, -1.5])
    # Keys, a = -0.5: 1.5|x|^3 - 2.5|x|^2 + 1 on [0, 1]; -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 on (1, 2].
    expected = [1.0, 0.8671875, 0.5625, 0.2265625, 0.0, -0.0703125, -0.0625, -0.0234375, 0.0, 0.0, 0.5625, -0.0625]
    assert cubic(x).tolist() == expected


def test_upscale_ramp_by_two_hand_computed():
    # Worked by hand from MATLAB's contributions(): at x = 1, u = 0.75 and the taps at
    # indices -1, 0, 1, 2 weigh -0.0234375, 0.2265625, 0.8671875, -0.0703125; indices
    # -1 and 0 mirror to 2 and 1. Interior samples reproduce the ramp exactly.
    ramp = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    out = imresize(ramp, 2)
    expected = [0.90625, 1.1796875, 1.7265625, 2.25, 2.75, 3.2734375, 3.8203125, 4.09375]
    assert out.shape == (2, 8)
    torch.testing.assert_close(out[0], torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)
    # A single row mirrors onto itself: both output rows are the same.
    torch.testing.assert_close(out[1], out[0], rtol=0, atol=1e-12)


def test_downscale_ramp_by_two_hand_computed():
    # Antialiased: kernel stretched to width 8, weights 0.5 * cubic(d / 2) at u = 1.5:
    # indices -2..5 weigh [-0.01171875, -0.03515625, 0.11328125, 0.43359375] mirrored,
    # and mirror onto pixels 3, 2, 1, 1, 2, 3, 4, 4.
    ramp = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    out = imresize(ramp, 0.5)
    assert out.shape == (1, 2)
    torch.testing.assert_close(out[0], torch.tensor([1.4609375, 3.5390625], dtype=torch.float64), rtol=0, atol=1e-12)
    # Without antialiasing, plain bicubic at u = 1.5: weights -0.0625, 0.5625, 0.5625, -0.0625
    # on indices 0..3, index 0 mirroring to 1 (and at u = 3.5, index 5 to 4).
    plain = imresize(ramp, 0.5, antialias=False)
    torch.testing.assert_close(plain[0], torch.tensor([1.4375, 3.5625], dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape, scale", [((7, 5), 2), ((9, 12), 3), ((5, 6), 4), ((12, 12), 1 / 2),
                                          ((12, 9), 1 / 3), ((16, 13), 1 / 4), ((10, 7), 0.7), ((3, 2), 1 / 4)])
def test_matches_pixel_by_pixel_reference(shape, scale):
    img = np.random.default_rng(1).random(shape)
    got = imresize(torch.from_numpy(img), scale).numpy()
    np.testing.assert_allclose(got, reference_resize_2d(img, scale), rtol=0, atol=1e-12)


def test_without_antialias_matches_reference():
    img = np.random.default_rng(2).random((12, 8))
    got = imresize(torch.from_numpy(img), 0.5, antialias=False).numpy()
    np.testing.assert_allclose(got, reference_resize_2d(img, 0.5, antialias=False), rtol=0, atol=1e-12)


@pytest.mark.parametrize("size, scale, expected", [(512, 1 / 2, 256), (255, 1 / 3, 85), (7, 1 / 2, 4),
                                                   (10, 0.7, 7), (5, 3, 15), (13, 1 / 4, 4)])
def test_output_size_is_matlab_ceil(size, scale, expected):
    out = imresize(torch.zeros(1, 3, size, size + 1), scale)
    assert out.shape == (1, 3, expected, math.ceil((size + 1) * scale - 1e-9))


def test_accepts_nchw_chw_hw_and_keeps_dtype():
    img = torch.rand(2, 3, 8, 6)
    out = imresize(img, 0.5)
    assert out.shape == (2, 3, 4, 3) and out.dtype == torch.float32
    torch.testing.assert_close(imresize(img[0], 0.5), out[0])
    torch.testing.assert_close(imresize(img[0, 1], 0.5), out[0, 1])
    assert imresize(img.half(), 2).dtype == torch.float16


def test_constant_image_stays_constant():
    for scale in (2, 3, 4, 1 / 2, 1 / 3, 1 / 4):
        out = imresize(torch.full((1, 3, 12, 12), 0.37, dtype=torch.float64), scale)
        torch.testing.assert_close(out, torch.full_like(out, 0.37), rtol=0, atol=1e-12)


def test_weights_rows_sum_to_one_and_mirror_inside():
    for in_len, out_len, scale in ((5, 10, 2), (12, 4, 1 / 3), (2, 8, 4)):
        matrix = weight_matrix(in_len, out_len, scale=scale)
        assert matrix.shape == (out_len, in_len)
        torch.testing.assert_close(matrix.sum(1), torch.ones(out_len, dtype=torch.float64))


def test_does_not_clamp():
    # A step overshoots with bicubic; the caller clamps, not imresize.
    step = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 4)
    out = imresize(step, 2)
    assert out.min() < 0 and out.max() > 1


def test_downscale_then_upscale_is_close_on_smooth_image():
    y, x = torch.meshgrid(torch.arange(48.0), torch.arange(40.0), indexing="ij")
    smooth = (torch.sin(x / 9) * torch.cos(y / 11) * 0.5 + 0.5)[None, None]
    back = imresize(imresize(smooth, 1 / 4), 4)
    assert back.shape == smooth.shape
    assert (back - smooth)[..., 8:-8, 8:-8].abs().max() < 0.02


def test_rejects_bad_input():
    with pytest.raises(TypeError):
        imresize(torch.zeros(4, 4, dtype=torch.uint8), 2)
    with pytest.raises(ValueError):
        imresize(torch.zeros(4, 4), 0)
    with pytest.raises(ValueError):
        imresize(torch.zeros(1, 1, 1, 4, 4), 2)


def test_modcrop_numpy_and_tensor():
    assert modcrop(np.zeros((10, 7, 3)), 4).shape == (8, 4, 3)
    assert modcrop(np.zeros((10, 7)), 3).shape == (9, 6)
    assert modcrop(torch.zeros(2, 3, 10, 7), 4).shape == (2, 3, 8, 4)
    assert modcrop(np.zeros((12, 12, 3)), 4).shape == (12, 12, 3)


def test_matlab_lr_rounds_halves_up_as_matlab():
    # Columns alternating 100 and 101: MATLAB's symmetric x2 kernel puts half its weight on each,
    # so every LR pixel away from the mirrored borders is exactly 100.5, which MATLAB's uint8() (and
    # so the literature) makes 101; rounding half to even would give 100.
    levels = torch.tensor([100.0, 101.0], dtype=torch.float64).repeat(8, 12)[None]  # 1 x 8 x 24
    assert torch.equal(imresize(levels, 0.5)[..., 2:-2], torch.full((1, 4, 8), 100.5, dtype=torch.float64))
    lr = matlab_lr((levels / 255).float(), 2) * 255
    assert lr.dtype == torch.float32 and lr.shape == (1, 4, 12)
    assert torch.equal(lr[..., 2:-2].round(), torch.full((1, 4, 8), 101.0))

