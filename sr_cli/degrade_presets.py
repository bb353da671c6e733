"""The degradation pipelines as data: what each ``Stage`` and ``Pipeline`` of ``sr_cli.degrade``
draws from, and the named presets. Free of torch and OpenCV so that `sr train --help` can list
the presets without importing them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

KERNEL_KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
MAX_KERNEL = 21
JPEG_BLOCK = 8  # JPEG's block size in pixels: where its grid lines fall

# The video codecs the degradations encode with (through PyAV): name -> (encoder, decoder, the
# quality setting drawn, its limits). CRF for x264/x265/VP9 (higher: worse), a fixed quantiser
# (qscale) for MPEG-4 Part 2 and MPEG-2. Every one transforms blocks whose edges lie on the frame's
# multiples of 8 (H.264 4x4/8x8 in 16x16 macroblocks; HEVC and VP9 4x4 to 32x32; MPEG 8x8), so
# JPEG_BLOCK's grid, the crop alignment and the block_edge loss serve them as they serve JPEG.
VIDEO_CODECS: dict[str, tuple[str, str, str, tuple[int, int]]] = {
    "h264": ("libx264", "h264", "crf", (0, 51)),
    "hevc": ("libx265", "hevc", "crf", (0, 51)),
    "vp9": ("libvpx-vp9", "vp9", "crf", (0, 63)),
    "mpeg4": ("mpeg4", "mpeg4", "qscale", (1, 31)),
    "mpeg2": ("mpeg2video", "mpeg2video", "qscale", (1, 31)),
}
# Encoder speed settings drawn from (x264/x265 presets; VP9 cpu-used); each changes which tools run,
# hence the artifacts (x264's ultrafast, for one, turns the deblocking filter off).
VIDEO_SPEEDS: dict[str, tuple[str, ...]] = {
    "h264": ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium"),
    "hevc": ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium"),
    "vp9": ("4", "5", "6", "7", "8"),
}
# What `sr eval --degrade h264:LO-HI` and the like encode with: the encoders' default speed.
VIDEO_DEFAULT_SPEED = {"h264": "medium", "hevc": "medium", "vp9": "4"}
COMPRESSIONS = ("jpeg", *VIDEO_CODECS)


@dataclass(frozen=True, kw_only=True)
class Stage:
    """One round of degradation; probabilities in [0, 1], ranges (low, high)."""

    blur_prob: float = 1.0
    kernel_probs: dict[str, float] = field(default_factory=lambda: {
        "iso": 0.45, "aniso": 0.25, "generalized_iso": 0.12, "generalized_aniso": 0.03,
        "plateau_iso": 0.12, "plateau_aniso": 0.03})
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[int, int] = (30, 95)
    noise_prob: float = 1.0        # Real-ESRGAN always adds noise and JPEG; milder presets may not
    jpeg_prob: float = 1.0
    kernel_sizes: tuple[int, int] = (7, MAX_KERNEL)  # odd sizes drawn from this range
    # The compression that runs (with probability jpeg_prob): JPEG alone, or drawn from these weights
    # (jpeg and the VIDEO_CODECS), each video codec at a quality drawn from codec_quality and a speed
    # from VIDEO_SPEEDS; with video_motion_prob, as the last frame of a 3-frame clip whose first two
    # frames are shifted copies (so it is coded from them: inter-frame artifacts), else as one
    # intra frame.
    codec_probs: dict[str, float] = field(default_factory=lambda: {"jpeg": 1.0})
    codec_quality: dict[str, tuple[int, int]] = field(default_factory=lambda: {
        "h264": (18, 32), "hevc": (20, 36), "vp9": (32, 63), "mpeg4": (2, 14), "mpeg2": (2, 14)})
    video_motion_prob: float = 0.0

    def __post_init__(self):
        unknown = sorted(set(self.kernel_probs) - set(KERNEL_KINDS))
        if unknown:
            raise ValueError(f"unknown blur kernels {unknown}; known: {', '.join(KERNEL_KINDS)}")
        unknown = sorted(set(self.codec_probs) - set(COMPRESSIONS))
        if unknown:
            raise ValueError(f"unknown compressions {unknown}; known: {', '.join(COMPRESSIONS)}")
        for name, (low, high) in self.codec_quality.items():
            limits = VIDEO_CODECS[name][3]
            if not limits[0] <= low <= high <= limits[1]:
                raise ValueError(f"{name} quality range {low}-{high} outside {limits[0]}-{limits[1]}")

    @property
    def video_codecs(self) -> tuple[str, ...]:
        """The video codecs this stage may run (those need PyAV)."""
        return tuple(c for c, p in self.codec_probs.items() if c in VIDEO_CODECS and p > 0)


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    """``first`` runs on the HR image; ``second`` (None: one round) relative to the LR size."""

    first: Stage
    second: Optional[Stage] = None
    final_sinc_prob: float = 0.8
    # Share of samples left clean (MATLAB bicubic, as `classic` models are trained), so a model
    # trained on the pipeline keeps its quality on clean inputs.
    clean_prob: float = 0.0
    # ``first`` runs after a downscale to the LR size (mode drawn from ``lr_downscale``; "matlab" is
    # MATLAB bicubic), not on the HR image: the photo was downsized, then blurred/noised/compressed
    # at the size it is viewed at, which is where JPEG's 8x8 grid sits in real files.
    at_lr_size: bool = False
    lr_downscale: dict[str, float] = field(default_factory=lambda: {"matlab": 1.0})

    @property
    def video_codecs(self) -> tuple[str, ...]:
        """The video codecs any stage may run (those need PyAV)."""
        stages = (self.first,) + ((self.second,) if self.second is not None else ())
        return tuple(dict.fromkeys(c for st in stages for c in st.video_codecs))


# What `sr upscale`'s default models are trained on: a quarter clean (MATLAB bicubic), the rest
# downscaled, then at the LR size blurred (4 in 10), noised (half) and always JPEG-compressed
# (quality 15-90), so blocks, ringing and noise are never mistaken for detail.
_ROBUST = Pipeline(
    first=Stage(blur_prob=0.4, blur_sigma=(0.2, 1.6), sinc_prob=0.1, kernel_sizes=(7, 13),
                noise_prob=0.5, gaussian_noise_prob=0.6, noise_range=(1.0, 10.0),
                poisson_scale_range=(0.05, 1.0), gray_noise_prob=0.4, jpeg_prob=1.0, jpeg_range=(15, 90)),
    final_sinc_prob=0.0, clean_prob=0.25, at_lr_size=True,
    lr_downscale={"matlab": 0.8, "area": 0.1, "bilinear": 0.1},
)

# robust with video codecs: the compression is JPEG (quality 15-75) in 4 of 10 samples, else
# H.264 (CRF 18-32), HEVC (20-36), VP9 (32-63), MPEG-4 or MPEG-2 (qscale 2-14) at a random speed
# setting, a third of them as an inter-coded frame; for still and video models alike.
_ROBUST_VIDEO = replace(_ROBUST, first=replace(
    _ROBUST.first, jpeg_range=(15, 75), video_motion_prob=0.33,
    codec_probs={"jpeg": 0.4, "h264": 0.3, "hevc": 0.1, "vp9": 0.1, "mpeg4": 0.05, "mpeg2": 0.05}))

PRESETS: dict[str, Pipeline] = {
    "robust": _ROBUST,
    # The second fine-tune stage of the default models: JPEG quality 15-60, where the block grid is
    # visible; the clean quarter keeps clean inputs sharp.
    "robust_jpeg": replace(_ROBUST, first=replace(_ROBUST.first, jpeg_range=(15, 60))),
    "robust_video": _ROBUST_VIDEO,
    # robust_video without the blur and the noise, and 3 in 10 samples clean: compression alone, what
    # the small `fast` networks learn to undo without giving up much on clean inputs.
    "compressed": replace(_ROBUST_VIDEO, first=replace(_ROBUST_VIDEO.first, blur_prob=0.0, noise_prob=0.0),
                          clean_prob=0.3),
    "realesrgan": Pipeline(
        first=Stage(),
        second=Stage(blur_prob=0.8, blur_sigma=(0.2, 1.5), resize_probs=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2),
                      noise_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5)),
        final_sinc_prob=0.8,
    ),
    "simple": Pipeline(
        first=Stage(blur_sigma=(0.2, 2.0), sinc_prob=0.0, resize_probs=(0.0, 0.0, 1.0), noise_range=(1.0, 10.0),
                    poisson_scale_range=(0.05, 1.0), jpeg_range=(60, 95)),
        final_sinc_prob=0.0,
    ),
}


def get_pipeline(name: str) -> Pipeline:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown degradation {name!r}; known: bicubic, {', '.join(PRESETS)}") from None
