"""Synthetic real-world degradations for training "blind" models (Real-ESRGAN style).

``degrade(hr, scale=s, rng=rng, pipeline=PRESETS["realesrgan"])`` turns an HR image
(HWC float32 RGB in [0, 1]) into an LR image of exactly ``(H // s, W // s)``,
quantised to uint8 levels. Every random choice is drawn from ``rng``, so the
same generator state gives the same LR image: the dataset seeds it from
``(seed, sample number)`` (see ``sr_cli.data``), which keeps training resumable
exactly.

One ``Stage`` is what Real-ESRGAN calls one order of degradation:

  blur     (probability ``blur_prob``) a random kernel of odd size 7..21: isotropic or
           anisotropic Gaussian, their generalised (exp(-d^beta/2)) and plateau
           (1/(1+d^beta)) forms, or (``sinc_prob``) a circular low-pass "sinc"
           kernel that gives ringing
  resize   up, down or keep (``resize_probs``) by a factor drawn from
           ``resize_range``, with area, bilinear or bicubic interpolation
  noise    Gaussian (``gaussian_noise_prob``; sigma in ``noise_range``, /255) or
           Poisson (scale in ``poisson_scale_range``), the same in all channels
           with probability ``gray_noise_prob``
  JPEG     re-compression at a quality in ``jpeg_range`` (OpenCV's encoder); or, where the
           stage's ``codec_probs`` name them, a video codec (``video_codec``: H.264, HEVC, VP9,
           MPEG-4, MPEG-2 through PyAV, yuv420p, one intra frame or the last of a short clip)

``PRESETS["realesrgan"]`` is Real-ESRGAN's second-order pipeline with the ranges
of its x4plus training options (Wang et al. 2021): stage 1 on the HR image,
stage 2 (blur with probability 0.8) relative to the LR size, then the final
resize to the LR size combined with a sinc filter (probability 0.8) and the last
JPEG, in random order. ``PRESETS["simple"]`` is one milder round: blur, resize to
the LR size, noise, JPEG. Not reproduced from Real-ESRGAN: the unsharp masking
of the ground truth, and its GPU batch pool (the images of a batch are degraded
independently here, in the data loader's workers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch

from .degrade_presets import (KERNEL_KINDS, MAX_KERNEL, PRESETS, VIDEO_CODECS, VIDEO_DEFAULT_SPEED,  # noqa: F401
                              VIDEO_SPEEDS, Pipeline, Stage, get_pipeline)
from .imageio import to_uint8  # float [0, 1] -> uint8: imageio's one rounding
from .resize import matlab_lr

RESIZE_MODES = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}

# ---------------------------------------------------------------------------
# kernels (sum to 1, odd size, centred)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    if size % 2 != 1 or size < 1:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    r = np.arange(size, dtype=np.float64) - size // 2
    return np.meshgrid(r, r, indexing="xy")


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float = 0.0, *,
                    beta: float = 1.0, plateau: bool = False) -> np.ndarray:
    """Anisotropic (rotated by ``theta``) Gaussian; ``beta`` != 1 gives the generalised form
    exp(-q^beta / 2), and ``plateau`` 1 / (1 + q^beta), q being the Mahalanobis distance squared."""
    x, y = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * x + s * y, -s * x + c * y  # coordinates along the kernel's axes
    q = (u / sigma_x) ** 2 + (v / sigma_y) ** 2
    k = 1.0 / (1.0 + q ** beta) if plateau else np.exp(-0.5 * q ** beta)
    return (k / k.sum()).astype(np.float32)


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """Circular low-pass filter with cut-off frequency ``cutoff`` (radians, (0, pi]): ringing."""
    x, y = _grid(size)
    r = np.hypot(x, y)
    safe = np.where(r == 0, 1.0, r)
    j1 = torch.special.bessel_j1(torch.from_numpy(cutoff * safe)).numpy()
    k = np.where(r == 0, cutoff ** 2 / (4 * math.pi), cutoff * j1 / (2 * math.pi * safe))
    return (k / k.sum()).astype(np.float32)


def random_kernel(rng: np.random.Generator, stage: Stage) -> np.ndarray:
    """A blur kernel as Real-ESRGAN draws them (size 7..21, odd)."""
    size = int(rng.choice(np.arange(stage.kernel_sizes[0], stage.kernel_sizes[1] + 1, 2)))
    if rng.random() < stage.sinc_prob:
        cutoff = rng.uniform(math.pi / 3, math.pi) if size < 13 else rng.uniform(math.pi / 5, math.pi)
        return sinc_kernel(size, cutoff)
    kinds = list(stage.kernel_probs)
    probs = np.array([stage.kernel_probs[k] for k in kinds], np.float64)
    kind = kinds[int(rng.choice(len(kinds), p=probs / probs.sum()))]
    sigma_x = rng.uniform(*stage.blur_sigma)
    if kind.endswith("_iso") or kind == "iso":
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y, theta = rng.uniform(*stage.blur_sigma), rng.uniform(-math.pi, math.pi)
    beta, plateau = 1.0, kind.startswith("plateau")
    if kind.startswith("generalized") or plateau:
        low, high = stage.betap_range if plateau else stage.betag_range
        beta = rng.uniform(low, 1.0) if rng.random() < 0.5 and low < 1.0 else rng.uniform(max(low, 1.0), high)
    return gaussian_kernel(size, sigma_x, sigma_y, theta, beta=beta, plateau=plateau)


# ---------------------------------------------------------------------------
# operations on HWC float32 images in [0, 1]


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Filter with ``kernel`` (reflected borders, as Real-ESRGAN's padding)."""
    out = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return out[:, :, None] if out.ndim == 2 else out


def resize(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Resize to ``size`` = (height, width) with area, bilinear or bicubic interpolation."""
    h, w = max(int(size[0]), 1), max(int(size[1]), 1)
    out = cv2.resize(img, (w, h), interpolation=RESIZE_MODES[mode])
    return out[:, :, None] if out.ndim == 2 else out


def gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma: float, *, gray: bool) -> np.ndarray:
    """Add N(0, sigma^2) noise (sigma on the [0, 1] scale); ``gray``: the same in every channel."""
    shape = img.shape[:2] + ((1,) if gray else img.shape[2:])
    return img + (rng.standard_normal(shape) * sigma).astype(np.float32)


def poisson_noise(img: np.ndarray, rng: np.random.Generator, scale: float, *, gray: bool) -> np.ndarray:
    """Add scaled Poisson (shot) noise; the photon count follows the image's number of levels."""
    src = np.clip(img, 0.0, 1.0)
    if gray and src.shape[2] == 3:
        src = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY)[:, :, None]
    src = np.round(src * 255.0) / 255.0
    vals = 2.0 ** math.ceil(math.log2(max(len(np.unique(src)), 2)))
    noise = rng.poisson(src * vals) / vals - src
    return img + (noise * scale).astype(np.float32)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG re-compression at ``quality`` (1-100) with OpenCV; the result has uint8 levels."""
    u8 = to_uint8(img)
    bgr = u8[:, :, ::-1] if u8.shape[2] == 3 else u8
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    out = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    out = out[:, :, ::-1] if out.ndim == 3 else out[:, :, None]
    return np.ascontiguousarray(out).astype(np.float32) / 255.0


VIDEO_INSTALL_HINT = 'video-codec degradations need PyAV: pip install "sr-cli[video]"'


def load_av():
    """PyAV, or a ValueError that names the extra to install."""
    try:
        import av
    except ImportError:
        raise ValueError(VIDEO_INSTALL_HINT) from None
    av.logging.set_level(None)
    return av


_CODEC_MIN_SIDE = 32
_HEVC_MIN_SIDE = 64


def _shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], np.float32)
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def video_codec(img: np.ndarray, codec: str, quality: int, *, speed: Optional[str] = None,
                motion: Optional[tuple[tuple[float, float], ...]] = None) -> np.ndarray:
    """Encode ``img`` (HWC float32 RGB in [0, 1]) with a video codec of ``VIDEO_CODECS`` as yuv420p
    and decode it: the result has uint8 levels. ``quality`` is the CRF (h264, hevc, vp9) or the fixed
    quantiser (mpeg4, mpeg2); ``speed`` the x264/x265 preset or VP9's cpu-used (default: the
    encoder's default). ``motion``: (dx, dy) shifts of frames encoded before ``img`` itself, which is
    then the last frame of the clip, coded from them; None: one intra frame. Odd sides are padded
    (edge pixels repeated) to even for the 4:2:0 chroma, small ones to 32 (64 for HEVC), and cropped back. One thread, so the same
    input gives the same output."""
    from fractions import Fraction
    if codec not in VIDEO_CODECS:
        raise ValueError(f"unknown video codec {codec!r}; known: {', '.join(VIDEO_CODECS)}")
    encoder, decoder, knob, (low, high) = VIDEO_CODECS[codec]
    if not low <= int(quality) <= high:
        raise ValueError(f"{codec} {knob} must be in {low}-{high}, got {quality}")
    av = load_av()
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HWC RGB image, got shape {img.shape}")
    h, w = img.shape[:2]
    # even sides for 4:2:0, and at least _CODEC_MIN_SIDE (x265 refuses frames under 16 pixels, and
    # corrupts the heap on clips of frames under its 64-pixel CTU, e.g. 3 frames of 48x48);
    # padding on the bottom and right leaves the block grid where it was
    least = _HEVC_MIN_SIDE if codec == "hevc" else _CODEC_MIN_SIDE
    pad = ((0, max(h + h % 2, least) - h), (0, max(w + w % 2, least) - w), (0, 0))
    frames = [_shifted(img, dx, dy) for dx, dy in (motion or ())] + [img]
    frames = [np.pad(to_uint8(np.clip(f, 0.0, 1.0)), pad, mode="edge") for f in frames]
    u8 = frames[-1]
    ctx = av.CodecContext.create(encoder, "w")
    ctx.width, ctx.height, ctx.pix_fmt = u8.shape[1], u8.shape[0], "yuv420p"
    ctx.time_base, ctx.framerate = Fraction(1, 25), Fraction(25, 1)
    ctx.thread_count = 1  # key frames, look-ahead and the rest: the encoder's defaults, as a plain
    # `ffmpeg -c:v libx264 -crf N` of the frame(s) would (a lone x264 frame then comes out well
    # below what keyint=1 would give it: its macroblock-tree rate control has nothing to spend on)
    speed = speed or VIDEO_DEFAULT_SPEED.get(codec)
    options: dict[str, str] = {}
    if codec == "h264":
        options = {"crf": str(int(quality)), "preset": speed, "x264-params": "log=-1"}
    elif codec == "hevc":
        options = {"crf": str(int(quality)), "preset": speed,
                   "x265-params": "log-level=none:pools=none:frame-threads=1"}
    elif codec == "vp9":
        options = {"crf": str(int(quality)), "b": "0", "deadline": "good", "cpu-used": speed, "row-mt": "0"}
    else:
        ctx.qmin = ctx.qmax = int(quality)
        ctx.max_b_frames = 0
    ctx.options = options
    packets = []
    for i, f in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    dec = av.CodecContext.create(decoder, "r")
    dec.thread_count = 1
    decoded = []
    for packet in packets:
        decoded += dec.decode(packet)
    decoded += dec.decode(None)
    if len(decoded) != len(frames):
        raise RuntimeError(f"{codec}: {len(frames)} frames encoded, {len(decoded)} decoded")
    out = decoded[-1].to_ndarray(format="rgb24")[:h, :w]
    return np.ascontiguousarray(out).astype(np.float32) / 255.0


# ---------------------------------------------------------------------------
# the pipeline


def _noise(img: np.ndarray, rng: np.random.Generator, stage: Stage) -> np.ndarray:
    gray = bool(rng.random() < stage.gray_noise_prob)
    if rng.random() < stage.gaussian_noise_prob:
        return gaussian_noise(img, rng, rng.uniform(*stage.noise_range) / 255.0, gray=gray)
    return poisson_noise(img, rng, rng.uniform(*stage.poisson_scale_range), gray=gray)


def _random_factor(rng: np.random.Generator, stage: Stage) -> float:
    way = int(rng.choice(3, p=np.asarray(stage.resize_probs, np.float64) / sum(stage.resize_probs)))
    if way == 0:
        return rng.uniform(1.0, stage.resize_range[1])
    if way == 1:
        return rng.uniform(stage.resize_range[0], 1.0)
    return 1.0


def _random_mode(rng: np.random.Generator) -> str:
    return list(RESIZE_MODES)[int(rng.integers(len(RESIZE_MODES)))]


def _jpeg(img: np.ndarray, rng: np.random.Generator, stage: Stage) -> np.ndarray:
    """The stage's compression: JPEG, or a codec drawn from ``codec_probs`` (no draw for JPEG alone,
    so the JPEG-only presets draw what they always did)."""
    codec = "jpeg"
    if set(stage.codec_probs) != {"jpeg"}:
        names = list(stage.codec_probs)
        probs = np.array([stage.codec_probs[n] for n in names], np.float64)
        codec = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    if codec == "jpeg":
        return jpeg(np.clip(img, 0.0, 1.0), int(rng.integers(stage.jpeg_range[0], stage.jpeg_range[1] + 1)))
    low, high = stage.codec_quality[codec]
    quality = int(rng.integers(low, high + 1))
    speeds = VIDEO_SPEEDS.get(codec)
    speed = speeds[int(rng.integers(len(speeds)))] if speeds else None
    motion = None
    if rng.random() < stage.video_motion_prob:
        motion = tuple((float(rng.uniform(-2, 2)), float(rng.uniform(-2, 2))) for _ in range(2))
    return video_codec(img, codec, quality, speed=speed, motion=motion)


def matlab_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """HWC float32 on the uint8 levels -> (H // scale, W // scale) by ``resize.matlab_lr``: the
    training data's clean LR on an HWC array."""
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    chw = torch.from_numpy(np.ascontiguousarray(hr[:h * scale, :w * scale])).permute(2, 0, 1)
    return np.ascontiguousarray(matlab_lr(chw, scale).permute(1, 2, 0).numpy(), dtype=np.float32)


def _one_round_at_lr(out: np.ndarray, rng: np.random.Generator, stage: Stage) -> np.ndarray:
    if rng.random() < stage.blur_prob:
        out = blur(out, random_kernel(rng, stage))
    if rng.random() < stage.noise_prob:
        out = _noise(out, rng, stage)
    if rng.random() < stage.jpeg_prob:
        out = _jpeg(out, rng, stage)
    return to_uint8(out).astype(np.float32) / 255.0


def degrade(hr: np.ndarray, *, scale: int, rng: np.random.Generator, pipeline: Pipeline) -> np.ndarray:
    """LR image (H // scale, W // scale), HWC float32 quantised to uint8 levels in [0, 1]."""
    if hr.ndim != 3 or hr.dtype != np.float32:
        raise ValueError(f"expected an HWC float32 image, got {hr.dtype} {hr.shape}")
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    if h < 1 or w < 1:
        raise ValueError(f"image {hr.shape[:2]} is smaller than the scale {scale}")
    first, second = pipeline.first, pipeline.second
    if pipeline.clean_prob and rng.random() < pipeline.clean_prob:
        return matlab_downscale(hr, scale)
    if pipeline.at_lr_size:
        modes = list(pipeline.lr_downscale)
        probs = np.array([pipeline.lr_downscale[m] for m in modes], np.float64)
        mode = modes[int(rng.choice(len(modes), p=probs / probs.sum()))]
        out = matlab_downscale(hr, scale) if mode == "matlab" else resize(hr, (h, w), mode)
        return _one_round_at_lr(out, rng, first)
    out = hr
    # first order, on the HR image
    if rng.random() < first.blur_prob:
        out = blur(out, random_kernel(rng, first))
    if second is None:  # one round: straight to the LR size
        out = resize(out, (h, w), _random_mode(rng))
    else:
        factor = _random_factor(rng, first)
        out = resize(out, (round(hr.shape[0] * factor), round(hr.shape[1] * factor)), _random_mode(rng))
    out = _noise(out, rng, first)
    out = _jpeg(out, rng, first)
    if second is not None:
        if rng.random() < second.blur_prob:
            out = blur(out, random_kernel(rng, second))
        factor = _random_factor(rng, second)
        out = resize(out, (int(h * factor), int(w * factor)), _random_mode(rng))
        out = _noise(out, rng, second)
        # final: resize to the LR size + sinc filter, and JPEG, in random order
        if rng.random() < pipeline.final_sinc_prob:
            size = int(rng.choice(np.arange(7, MAX_KERNEL + 1, 2)))
            kernel: Optional[np.ndarray] = sinc_kernel(size, rng.uniform(math.pi / 3, math.pi))
        else:
            kernel = None
        if rng.random() < 0.5:
            out = resize(out, (h, w), _random_mode(rng))
            out = blur(out, kernel) if kernel is not None else out
            out = _jpeg(out, rng, second)
        else:
            out = _jpeg(out, rng, second)
            out = resize(out, (h, w), _random_mode(rng))
            out = blur(out, kernel) if kernel is not None else out
    if out.shape[:2] != (h, w):  # only when a round ended elsewhere (never with the presets)
        out = resize(out, (h, w), "area")
    return to_uint8(out).astype(np.float32) / 255.0



# ---------------------------------------------------------------------------
# fixed degradations for evaluation: `sr eval --degrade SPEC`

SPEC_OPS = ("blur", "noise", "jpeg", *VIDEO_CODECS)


@dataclass(frozen=True)
class DegradeSpec:
    """A degraded LR set, from a spec such as ``jpeg:25-55`` or ``blur:0.4-1.6+noise:1-8+jpeg:40-85``.

    Operations (``+``-separated, applied in the order written) run on the MATLAB-bicubic LR image:
    ``blur:LO-HI`` isotropic Gaussian of sigma (LR pixels) drawn from the range, ``noise:LO-HI``
    Gaussian colour noise of sigma (0..255 scale) from the range, ``jpeg:LO-HI`` JPEG at a quality
    drawn from the integers in the range; ``h264``, ``hevc``, ``vp9`` (CRF) and ``mpeg4``, ``mpeg2``
    (fixed quantiser) ``:LO-HI`` one intra frame of that video codec (``video_codec``, yuv420p, the
    encoder's default speed) at a setting drawn from the integers in the range. A preset name (``realesrgan``, ``robust``, ``simple``)
    instead runs that random pipeline on the HR image. Every draw comes from the generator passed in,
    so a seed per image makes the set reproducible.
    """

    text: str
    ops: tuple[tuple[str, float, float], ...] = ()
    preset: Optional[str] = None

    def apply(self, hr: np.ndarray, lr: np.ndarray, *, scale: int, rng: np.random.Generator) -> np.ndarray:
        """uint8 HWC (or HW) ``hr`` and its bicubic ``lr`` -> the degraded uint8 LR, same layout as ``lr``."""
        grey = lr.ndim == 2
        if self.preset is not None:
            hr_f = (hr[..., None] if grey else hr).astype(np.float32) / 255.0
            out = degrade(hr_f, scale=scale, rng=rng, pipeline=PRESETS[self.preset])
        else:
            out = (lr[..., None] if grey else lr).astype(np.float32) / 255.0
            for op, low, high in self.ops:
                if op == "blur":
                    sigma = rng.uniform(low, high)
                    size = 2 * math.ceil(3 * sigma) + 1
                    out = blur(out, gaussian_kernel(size, sigma, sigma))
                elif op == "noise":
                    out = gaussian_noise(out, rng, rng.uniform(low, high) / 255.0, gray=False)
                elif op == "jpeg":
                    out = jpeg(np.clip(out, 0.0, 1.0), int(rng.integers(int(low), int(high) + 1)))
                else:  # a video codec: RGB in, so a grey image goes in as three equal channels
                    quality = int(rng.integers(int(low), int(high) + 1))
                    rgb = np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out
                    out = video_codec(rgb, op, quality)
                    out = out.mean(axis=2, keepdims=True) if grey else out
        u8 = to_uint8(out)
        return u8[..., 0] if grey else u8


def parse_degrade_spec(text: str) -> DegradeSpec:
    """Parse ``sr eval --degrade``'s spec; ValueError with the accepted forms on anything else."""
    text = text.strip()
    if text in PRESETS:
        return DegradeSpec(text, preset=text)
    ops = []
    for part in text.split("+"):
        name, _, rng_text = part.strip().partition(":")
        if name not in SPEC_OPS or not rng_text:
            raise ValueError(f"bad degradation {part!r} in {text!r}: use OP:LO-HI joined by '+' "
                             f"(OP one of {', '.join(SPEC_OPS)}), or a preset ({', '.join(PRESETS)})")
        low_text, _, high_text = rng_text.partition("-")
        try:
            low = float(low_text)
            high = float(high_text) if high_text else low
        except ValueError:
            example = {"jpeg": "25-55", "h264": "18-30", "hevc": "18-30", "vp9": "30-50"}.get(name, "1-8")
            raise ValueError(f"bad range {rng_text!r} in {part!r}: expected LO-HI, e.g. {name}:{example}") from None
        limits = {"blur": (0.0, 20.0), "noise": (0.0, 255.0), "jpeg": (1.0, 100.0),
                  **{c: tuple(map(float, VIDEO_CODECS[c][3])) for c in VIDEO_CODECS}}[name]
        if not (limits[0] <= low <= high <= limits[1]) or (name == "blur" and low <= 0):
            raise ValueError(f"{part!r}: need {limits[0]:g} <= LO <= HI <= {limits[1]:g}"
                             + (" and LO > 0" if name == "blur" else ""))
        ops.append((name, low, high))
    codecs = [op for op, _, _ in ops if op in VIDEO_CODECS]
    if codecs:
        import importlib.util
        if importlib.util.find_spec("av") is None:
            raise ValueError(f"{', '.join(codecs)} in {text!r}: {VIDEO_INSTALL_HINT}")
    return DegradeSpec(text, ops=tuple(ops))
