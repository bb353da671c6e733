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
    # the circular low-pass's impulse response is cutoff * J1(cutoff r) / (2 pi r): against J1(1) and its first zero
    k = d.sinc_kernel(3, 1.0) * 0 + d.sinc_kernel(3, 1.0)
    centre, side = float(k[1, 1]), float(k[1, 2])
    assert side / centre == pytest.approx((0.4400505857 / (2 * math.pi)) / (1 / (4 * math.pi)), rel=1e-5)
    zero = d.sinc_kernel(9, 3.8317059702 / 4)  # r = 4 on the axis falls on J1's first zero
    assert abs(float(zero[4, 8])) < 1e-8
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


# --- the robust preset (what the default models learn) ---------------------------------------


def test_robust_preset_mixes_clean_and_degraded_samples():
    hr = image(64, 64)
    clean = d.matlab_downscale(hr, 4)
    outs = [d.degrade(hr, scale=4, rng=np.random.default_rng([3, i]), pipeline=d.PRESETS["robust"]) for i in range(300)]
    share = np.mean([np.array_equal(o, clean) for o in outs])
    assert 0.17 < share < 0.33  # clean_prob 0.25: 75 of 300 expected
    assert all(o.shape == (16, 16, 3) for o in outs)
    # the others differ, and by various amounts (blur, noise and JPEG are each optional)
    errors = sorted(float(np.abs(o - clean).mean()) for o in outs if not np.array_equal(o, clean))
    assert 0 < 2 * errors[0] < errors[-1]


def test_robust_jpeg_preset_compresses_harder_than_robust():
    from sr_cli.metrics import blockiness
    import cv2
    small = np.random.default_rng(5).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    hr = cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255

    def mean_blockiness(preset):
        outs = [d.degrade(hr, scale=4, rng=np.random.default_rng([7, i]), pipeline=d.PRESETS[preset])
                for i in range(40)]
        return np.mean([blockiness(np.round(o * 255).astype(np.uint8), scale=1) for o in outs])

    # quality 15-60 instead of 15-90: the 8x8 grid stands out more (1.0 = no grid)
    assert mean_blockiness("robust_jpeg") - 1 > 1.3 * (mean_blockiness("robust") - 1) > 0


def test_matlab_downscale_matches_the_eval_lr():
    from sr_cli.evaluate import bicubic_downscale
    u8 = (image(32, 24) * 255).round().astype(np.uint8)
    ours = d.matlab_downscale(u8.astype(np.float32) / 255, 4)
    assert np.array_equal(np.round(ours * 255).astype(np.uint8), bicubic_downscale(u8, 4))


# --- statistics of each stage -------------------------------------------------------------------


def smooth_u8(h=64, w=64, seed=0):
    """A smooth photo-like uint8 RGB image: JPEG on it leaves visible block edges."""
    import cv2
    small = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_jpeg_stage_makes_8x8_blocks():
    from sr_cli.metrics import blockiness
    clean = smooth_u8().astype(np.float32) / 255
    compressed = d.jpeg(clean, 10)
    u8 = lambda x: np.round(x * 255).astype(np.uint8)  # noqa: E731
    assert blockiness(u8(compressed), scale=1) > 1.5  # steps at every 8th pixel stand out
    assert 0.7 < blockiness(u8(clean), scale=1) < 1.3
    assert blockiness(u8(d.jpeg(clean, 95)), scale=1) < blockiness(u8(compressed), scale=1)


def test_noise_stage_sigma_and_grey():
    flat = np.full((128, 128, 3), 0.5, np.float32)
    for sigma in (1.0, 8.0, 25.0):
        noise = d.gaussian_noise(flat, np.random.default_rng(0), sigma / 255, gray=False) - flat
        assert noise.std() * 255 == pytest.approx(sigma, rel=0.05)
        assert abs(noise.mean()) * 255 < 0.1 * sigma
    # Poisson noise grows with brightness (shot noise), Gaussian does not
    dark, bright = np.full((128, 128, 3), 0.1, np.float32), np.full((128, 128, 3), 0.9, np.float32)
    rng = np.random.default_rng(1)
    assert (d.poisson_noise(bright, rng, 1.0, gray=False) - bright).std() > \
        2 * (d.poisson_noise(dark, rng, 1.0, gray=False) - dark).std()


def test_blur_stage_sigma():
    # a blurred impulse's spread is the kernel's sigma (sampling narrows kernels below ~1 pixel)
    for sigma in (1.0, 2.0):
        k = d.gaussian_kernel(2 * int(np.ceil(4 * sigma)) + 1, sigma, sigma)
        r = np.arange(k.shape[0]) - k.shape[0] // 2
        assert np.sqrt((k.sum(axis=0) * r ** 2).sum()) == pytest.approx(sigma, rel=0.02)


# --- sr eval --degrade specs --------------------------------------------------------------------


def test_degrade_spec_parsing():
    spec = d.parse_degrade_spec("blur:0.4-1.6+noise:1-8+jpeg:40-85")
    assert spec.ops == (("blur", 0.4, 1.6), ("noise", 1.0, 8.0), ("jpeg", 40.0, 85.0)) and spec.preset is None
    assert d.parse_degrade_spec("jpeg:30").ops == (("jpeg", 30.0, 30.0),)
    assert d.parse_degrade_spec("realesrgan").preset == "realesrgan"
    for bad in ("jpeg", "jpeg:0-50", "jpeg:60-40", "sharpen:1-2", "blur:0-1", "noise:a-b", "jpeg:25-55+"):
        with pytest.raises(ValueError):
            d.parse_degrade_spec(bad)


def test_degrade_spec_applies_reproducibly_in_order():
    from sr_cli.evaluate import bicubic_downscale
    from sr_cli.metrics import blockiness
    hr = np.repeat(np.repeat(smooth_u8(64, 64), 2, 0), 2, 1)  # 128x128
    lr = bicubic_downscale(hr, 2)
    spec = d.parse_degrade_spec("jpeg:10-20")
    a = spec.apply(hr, lr, scale=2, rng=np.random.default_rng([0, 5]))
    b = spec.apply(hr, lr, scale=2, rng=np.random.default_rng([0, 5]))
    assert np.array_equal(a, b) and a.dtype == np.uint8 and a.shape == lr.shape
    assert blockiness(a, scale=1) > 1.3 > blockiness(lr, scale=1)
    noisy = d.parse_degrade_spec("noise:8-8").apply(hr, lr, scale=2, rng=np.random.default_rng(0))
    assert (noisy.astype(float) - lr).std() == pytest.approx(8, rel=0.15)
    grey = d.parse_degrade_spec("blur:1-1").apply(hr[..., 0], lr[..., 0], scale=2, rng=np.random.default_rng(0))
    assert grey.shape == lr.shape[:2]
    preset = d.parse_degrade_spec("realesrgan").apply(hr, lr, scale=2, rng=np.random.default_rng(0))
    assert preset.shape == lr.shape and not np.array_equal(preset, lr)


# --- video codecs ---------------------------------------------------------------------------------


def psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))


@pytest.mark.parametrize("codec", list(d.VIDEO_CODECS))
def test_video_codec_quality_falls_with_its_setting(codec):
    clean = image(48, 64, seed=1)
    low, high = d.VIDEO_CODECS[codec][3]
    settings = [low + 1, (low + high) // 2, high]
    scores = [psnr(d.video_codec(clean, codec, q), clean) for q in settings]
    assert scores[0] > scores[1] > scores[2], scores
    out = d.video_codec(clean, codec, settings[1])
    assert out.shape == clean.shape and out.dtype == np.float32
    assert np.allclose(out * 255, np.round(out * 255), atol=1e-4)  # uint8 levels


def error_steps(out, clean, *, period, offset=0):
    """Mean step of the coding error (out - clean, channel mean) across the lines at ``offset`` mod
    ``period`` over its mean step elsewhere: blocks coded independently make it jump at their edges."""
    e = (out - clean).mean(axis=2)
    dx, dy = np.abs(np.diff(e, axis=1)), np.abs(np.diff(e, axis=0))
    on_x = (np.arange(dx.shape[1]) + 1 - offset) % period == 0  # dx[:, j] is the step onto column j + 1
    on_y = (np.arange(dy.shape[0]) + 1 - offset) % period == 0
    on = np.concatenate([dx[:, on_x].ravel(), dy[on_y].ravel()]).mean()
    return on / np.concatenate([dx[:, ~on_x].ravel(), dy[~on_y].ravel()]).mean()


@pytest.mark.parametrize("codec, quality, least", [("h264", 40, 1.5), ("hevc", 40, 1.0), ("vp9", 63, 1.1),
                                                   ("mpeg4", 20, 2.0), ("mpeg2", 20, 2.0)])
def test_video_codec_blocks_lie_on_the_8_pixel_grid(codec, quality, least):
    clean = smooth_u8(64, 64, seed=2).astype(np.float32) / 255
    out = d.video_codec(clean, codec, quality)
    on_grid = error_steps(out, clean, period=8)
    # HEVC's and VP9's in-loop filters smooth their block edges most (hence the lower bounds)
    assert on_grid > least
    assert on_grid > error_steps(out, clean, period=4, offset=2)  # lines inside the 4x4 blocks


def test_video_codec_odd_sizes_motion_and_repeatability():
    clean = image(15, 11, seed=3)
    for codec in d.VIDEO_CODECS:
        a = d.video_codec(clean, codec, d.VIDEO_CODECS[codec][3][0] + 10)
        b = d.video_codec(clean, codec, d.VIDEO_CODECS[codec][3][0] + 10)
        assert a.shape == clean.shape and np.array_equal(a, b)
    big = image(48, 48, seed=4)
    intra = d.video_codec(big, "h264", 30)
    clip = d.video_codec(big, "h264", 30, motion=((1.5, -0.5), (0.5, 1.0)))
    assert clip.shape == big.shape and not np.array_equal(intra, clip)  # coded from the shifted frames
    assert np.array_equal(clip, d.video_codec(big, "h264", 30, motion=((1.5, -0.5), (0.5, 1.0))))
    with pytest.raises(ValueError, match="crf"):
        d.video_codec(big, "h264", 52)
    with pytest.raises(ValueError, match="unknown video codec"):
        d.video_codec(big, "av1", 30)


def test_hevc_clips_of_small_frames():
    # x265 corrupted the heap on 3-frame clips of frames under its 64-pixel CTU (48x48: "free():
    # invalid pointer", an abort in a data-loader worker); they are padded to 64 now
    clip = d.video_codec(image(48, 48, seed=5), "hevc", 27, speed="fast", motion=((-1.06, -0.53), (-0.7, -1.34)))
    assert clip.shape == (48, 48, 3)


def test_robust_video_preset_mixes_jpeg_and_video_codecs(monkeypatch):
    calls = []
    real = d.video_codec

    def spy(img, codec, quality, **kwargs):
        calls.append((codec, quality, kwargs["speed"], kwargs["motion"] is not None))
        return real(img, codec, quality, **kwargs)

    monkeypatch.setattr(d, "video_codec", spy)
    hr = image(64, 64)
    clean = d.matlab_downscale(hr, 4)
    pipeline = d.PRESETS["robust_video"]
    outs = [d.degrade(hr, scale=4, rng=np.random.default_rng([5, i]), pipeline=pipeline) for i in range(200)]
    share_clean = np.mean([np.array_equal(o, clean) for o in outs])
    assert 0.15 < share_clean < 0.35
    codecs = [c[0] for c in calls]
    assert set(codecs) == set(d.VIDEO_CODECS)  # every codec drawn
    assert 0.35 < len(calls) / 150 < 0.8  # video in 6 of 10 degraded samples, JPEG in the rest
    assert all(pipeline.first.codec_quality[c][0] <= q <= pipeline.first.codec_quality[c][1] for c, q, _, _ in calls)
    assert 0.15 < np.mean([m for *_, m in calls]) < 0.5  # a third coded as the last frame of a clip
    assert len({s for c, _, s, _ in calls if c == "h264"}) > 2
    again = d.degrade(hr, scale=4, rng=np.random.default_rng([5, 7]), pipeline=pipeline)
    assert np.array_equal(again, outs[7])
    assert pipeline.video_codecs == tuple(d.VIDEO_CODECS) and d.PRESETS["robust"].video_codecs == ()


def test_jpeg_only_presets_draw_no_codec():
    # robust and robust_jpeg draw no codec choice: the same generator gives what it gave before codecs
    stage = d.PRESETS["robust"].first
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    img = image(16, 16)
    out = d._jpeg(img, rng_a, stage)
    assert np.array_equal(out, d.jpeg(img, int(rng_b.integers(stage.jpeg_range[0], stage.jpeg_range[1] + 1))))
    assert rng_a.random() == rng_b.random()
    with pytest.raises(ValueError, match="unknown compressions"):
        d.Stage(codec_probs={"av1": 1.0})
    with pytest.raises(ValueError, match="quality range"):
        d.Stage(codec_quality={"h264": (10, 60)})


def test_codec_degrade_specs():
    from sr_cli.evaluate import bicubic_downscale
    from sr_cli.metrics import blockiness
    assert d.parse_degrade_spec("h264:18-30").ops == (("h264", 18.0, 30.0),)
    assert [op for op, _, _ in d.parse_degrade_spec("blur:1-1+hevc:20+vp9:30-50+mpeg4:4-8+mpeg2:2").ops] == \
        ["blur", "hevc", "vp9", "mpeg4", "mpeg2"]
    for bad in ("h264:18-52", "vp9:10-64", "mpeg4:0-8", "h265:20-30", "h264:30-18"):
        with pytest.raises(ValueError):
            d.parse_degrade_spec(bad)
    hr = np.repeat(np.repeat(smooth_u8(64, 64), 2, 0), 2, 1)
    lr = bicubic_downscale(hr, 2)
    spec = d.parse_degrade_spec("h264:40-45")
    a = spec.apply(hr, lr, scale=2, rng=np.random.default_rng([0, 5]))
    assert np.array_equal(a, spec.apply(hr, lr, scale=2, rng=np.random.default_rng([0, 5])))
    assert a.dtype == np.uint8 and a.shape == lr.shape and not np.array_equal(a, lr)
    mild, harsh = (d.parse_degrade_spec(f"h264:{q}").apply(hr, lr, scale=2, rng=np.random.default_rng(0))
                   for q in (18, 45))
    assert psnr(mild / 255, lr / 255) > psnr(harsh / 255, lr / 255)
    assert blockiness(harsh, scale=1) > blockiness(lr, scale=1)
    grey = d.parse_degrade_spec("mpeg2:10").apply(hr[..., 0], lr[..., 0], scale=2, rng=np.random.default_rng(0))
    assert grey.shape == lr.shape[:2] and grey.dtype == np.uint8
    odd = d.parse_degrade_spec("vp9:50").apply(hr[:62, :58], lr[:31, :29], scale=2, rng=np.random.default_rng(0))
    assert odd.shape == (31, 29, 3)


def test_without_pyav_codecs_name_the_extra(monkeypatch):
    import sys
    from sr_cli.training.config import TrainConfig
    monkeypatch.setitem(sys.modules, "av", None)  # import av fails, find_spec gives None
    with pytest.raises(ValueError, match=r'sr-cli\[video\]'):
        d.video_codec(image(16, 16), "h264", 23)
    with pytest.raises(ValueError, match=r'sr-cli\[video\]'):
        d.parse_degrade_spec("jpeg:30+h264:18-30")
    with pytest.raises(ValueError, match=r'robust_video .*sr-cli\[video\]'):
        TrainConfig(arch="litesr", scale=2, data=["x"], out="y", degradation="robust_video")
    TrainConfig(arch="litesr", scale=2, data=["x"], out="y", degradation="robust")  # JPEG needs no PyAV
    d.parse_degrade_spec("jpeg:30")


def test_compressed_preset_only_compresses(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("compressed neither blurs nor adds noise")

    monkeypatch.setattr(d, "blur", refuse)
    monkeypatch.setattr(d, "_noise", refuse)
    hr = image(64, 64)
    clean = d.matlab_downscale(hr, 4)
    outs = [d.degrade(hr, scale=4, rng=np.random.default_rng([6, i]), pipeline=d.PRESETS["compressed"])
            for i in range(100)]
    assert 0.18 < np.mean([np.array_equal(o, clean) for o in outs]) < 0.42  # clean_prob 0.3
    assert d.PRESETS["compressed"].video_codecs == tuple(d.VIDEO_CODECS)
