"""The last stage of a clip's pipeline: the encoder chosen and set up for the output (codec family,
pixel format, CRF, colour tags, rotation), and the thread that encodes the upscaled frames and
muxes them with the copied audio and subtitle packets."""
from __future__ import annotations

import time
from fractions import Fraction
from typing import Any, Optional

from .common import END, Pipe, VideoOptions, VideoStats, VideoUnavailable, load_av, reason

# The input's codec, re-encoded with the encoder of the same family when the container takes it.
_ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1", "vp8": "libvpx"}
# Quality defaults a little above each encoder's own: upscaled detail is what the run is for.
_DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 31, "libvpx": 10, "libsvtav1": 30}
_UNSPECIFIED = 2  # AVCOL_SPC/AVCOL_PRI/AVCOL_TRC_UNSPECIFIED
# AVColorSpace -> swscale's SWS_CS_* (the same numbers, but for BT.601's two names and unknowns).
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


def open_output(av, inp, out, video, options: VideoOptions, size: tuple[int, int], deep: bool,
                provenance: Optional[str], stats: VideoStats) -> tuple[Any, dict]:
    """Add the encoder (stream 0, as in most files) and a copy of every audio and subtitle stream to
    ``out``, with the input's metadata and sr's tag; returns the encoder's stream and {input stream
    index: output stream} of the copies."""
    from ..provenance import VIDEO_KEY
    encoder = _add_encoder(av, out, video, options, size, deep)
    stats.codec = encoder.codec_context.name
    for key, value in inp.metadata.items():
        if key.lower() != VIDEO_KEY:  # the input's own tag (it was an output once) says nothing of this file
            out.metadata[key] = value
    if provenance:
        out.metadata[VIDEO_KEY] = provenance
    copied = {}
    for stream in list(inp.streams.audio) + list(inp.streams.subtitles):
        try:
            copied[stream.index] = out.add_stream_from_template(stream)
        except Exception as exc:
            raise ValueError(f"cannot copy {stream.type} stream {stream.index} ({stream.codec_context.name}) "
                             f"into {out.format.name}: {reason(exc)}") from None
        for key, value in stream.metadata.items():
            copied[stream.index].metadata[key] = value
        stats.copied_streams.append(f"{stream.type} {stream.codec_context.name}")
    return encoder, copied


def tag_colours(encoder, in_ctx, height: int) -> tuple[int, int]:
    """Give the encoder the input's colour tags (untagged: BT.601 up to 576 lines, else BT.709, as
    players read the input); returns swscale's (matrix, range) for converting frames to and from RGB."""
    matrix = _matrix(in_ctx.colorspace, height)
    colour_range = in_ctx.color_range or 1  # unspecified: limited (MPEG), as nearly all video is
    encoder.codec_context.colorspace = in_ctx.colorspace if in_ctx.colorspace != _UNSPECIFIED else (
        6 if height <= 576 else 1)
    encoder.codec_context.color_range = colour_range
    for name in ("color_primaries", "color_trc"):
        value = getattr(in_ctx, name)
        if value == _UNSPECIFIED:
            value = (6 if height <= 576 else 1)  # SMPTE 170M / BT.709
        setattr(encoder.codec_context, name, value)
    return matrix, colour_range


class Encoder:
    """The encoding thread: takes upscaled frames and copied packets from ``pipe`` until ``END``.
    Copied packets that come before the first frame wait: the header waits for its rotation."""

    def __init__(self, av, out, encoder, pipe: Pipe, *, size: tuple[int, int], rgb: str, matrix: int,
                 colour_range: int, window, stats: VideoStats):
        self.av, self.out, self.encoder, self.pipe = av, out, encoder, pipe
        self.size, self.rgb, self.matrix, self.colour_range = size, rgb, matrix, colour_range
        self.window, self.stats = window, stats
        self._waiting: list = []
        self._started = False
        self._last_pts: Optional[int] = None

    def run(self) -> None:
        begun = time.perf_counter()
        while True:
            self.stats.stages["encode"] += time.perf_counter() - begun
            item = self.pipe.get()
            begun = time.perf_counter()
            if item is END:
                break
            if item[0] == "packet":
                if self._started:
                    self.out.mux(item[1])
                else:
                    self._waiting.append(item[1])
                continue
            self._encode(*item[1:])
        self._mux(self.encoder.encode(None))
        self.stats.stages["encode"] += time.perf_counter() - begun

    def _encode(self, pixels, pts, time_base, rotation) -> None:
        out_w, out_h = self.size
        if pixels.shape[:2] != (out_h, out_w):
            raise ValueError(f"the frame size changes mid-clip (frame {self.stats.frames}); not supported")
        if not self._started:
            if rotation:
                self.encoder.set_display_rotation(rotation)
            self._started = True
        frame = self.av.VideoFrame.from_ndarray(pixels, format=self.rgb)
        frame = frame.reformat(format=self.encoder.codec_context.pix_fmt, dst_colorspace=self.matrix,
                               dst_color_range=self.colour_range)
        pts = _shifted(pts, time_base, self.window.offset)
        if self._last_pts is not None and (pts is None or pts <= self._last_pts):
            pts = self._last_pts + 1  # a missing or repeated timestamp: the encoder needs them rising
        frame.pts, frame.time_base = pts, time_base
        self._last_pts = pts
        self._mux(self.encoder.encode(frame))

    def _mux(self, packets) -> None:
        """The encoder's packets, then the copied ones that waited for the first frame."""
        for packet in packets:
            self.out.mux(packet)
        for packet in self._waiting:
            self.out.mux(packet)
        self._waiting.clear()


def _shifted(pts, time_base, offset) -> Optional[int]:
    if pts is None or not offset:
        return pts
    return pts - round(offset / time_base)


def _matrix(colorspace: int, height: int) -> int:
    """swscale's matrix for a stream's colour space; untagged: BT.601 up to 576 lines, else BT.709."""
    if colorspace in _SWS_MATRIX:
        return _SWS_MATRIX[colorspace]
    return 5 if height <= 576 else 1


def check_codec_options(codec: Optional[str], pix_fmt: Optional[str]) -> None:
    """--codec names a video encoder of this PyAV build and --pix-fmt a pixel format it takes (when
    both are given), checked before anything runs; ValueError (one line, the choices) otherwise.
    Without PyAV nothing is checked here: the video job says how to install it."""
    try:
        av = load_av()
    except VideoUnavailable:
        return
    encoder = None
    if codec:
        try:
            encoder = av.Codec(codec, "w")
        except Exception:
            encoder = None
        if encoder is None or encoder.type != "video":
            raise ValueError(f"--codec {codec}: no such video encoder in this PyAV build (e.g. "
                             f"{', '.join(sorted(set(_ENCODERS.values())))}, or h264, hevc, vp9, av1)")
    if pix_fmt:
        try:
            av.VideoFormat(pix_fmt)
        except Exception:
            raise ValueError(f"--pix-fmt {pix_fmt}: no such pixel format (e.g. yuv420p, yuv444p, yuv420p10le)") \
                from None
        supported = [f.name for f in (encoder.video_formats or ())] if encoder is not None else []
        if supported and pix_fmt not in supported:
            raise ValueError(f"--pix-fmt {pix_fmt}: the {encoder.name} encoder takes {', '.join(supported)}")


def _add_encoder(av, out, video, options: VideoOptions, size: tuple[int, int], deep: bool):
    in_codec = video.codec_context.name
    if options.codec:
        candidates = [options.codec]
    else:
        fallback = "libvpx-vp9" if out.format.name == "webm" else "libx264"
        candidates = [name for name in (_ENCODERS.get(in_codec), fallback) if name]
    errors = []
    for name in candidates:
        try:
            codec = av.Codec(name, "w")
        except Exception:
            errors.append(f"no encoder {name!r} in this PyAV build")
            continue
        if codec.type != "video":
            errors.append(f"{name!r} is not a video codec")
            continue
        rate = video.average_rate or video.guessed_rate or video.base_rate or Fraction(25)
        try:
            stream = out.add_stream(codec.name, rate=rate)
        except Exception as exc:
            errors.append(reason(exc))
            continue
        break
    else:
        raise ValueError("; ".join(errors))
    ctx = stream.codec_context
    ctx.width, ctx.height = size
    ctx.time_base = video.time_base or Fraction(1, 90000)
    stream.time_base = ctx.time_base
    sar = video.codec_context.sample_aspect_ratio
    if sar:
        ctx.sample_aspect_ratio = sar
    ctx.pix_fmt = _pick_pix_fmt(codec, options.pix_fmt, video.codec_context.format, deep)
    if not _fits_subsampling(av, ctx.pix_fmt, *size):
        # Chroma at half width/height needs even sizes (x264: "Generic error in an external library").
        full = [name for name in (("yuv444p10le", "yuv444p") if deep else ("yuv444p",))
                if name in [f.name for f in (codec.video_formats or ())]]
        if options.pix_fmt or not full:
            raise ValueError(f"the output is {size[0]}x{size[1]}, and {ctx.pix_fmt} (chroma at half resolution) "
                             "needs an even width and height: pick a scale that gives even sizes, or --pix-fmt "
                             f"{full[0] if full else 'yuv444p'} where the encoder has it")
        ctx.pix_fmt = full[0]  # odd sizes: full-resolution chroma, no pixel lost or added
    crf = options.crf if options.crf is not None else _DEFAULT_CRF.get(codec.name)
    settings = {}
    if crf is not None:
        if options.crf is not None and codec.name not in _DEFAULT_CRF:
            raise ValueError(f"--crf: the {codec.name} encoder has no CRF mode "
                             f"(use {', '.join(sorted(_DEFAULT_CRF))})")
        settings["crf"] = str(crf)
        if codec.name in ("libvpx-vp9", "libvpx"):
            settings["b"] = "0"  # constant quality, not a bit rate cap
    ctx.options = settings
    return stream


def _fits_subsampling(av, pix_fmt: str, width: int, height: int) -> bool:
    """Whether a ``width`` x ``height`` frame fits ``pix_fmt``'s chroma subsampling (even sizes for 4:2:0)."""
    try:
        planes = av.VideoFormat(pix_fmt, 2, 2).components
    except Exception:
        return True
    halved_w = any(c.width < 2 for c in planes)
    halved_h = any(c.height < 2 for c in planes)
    return not ((halved_w and width % 2) or (halved_h and height % 2))


def _pick_pix_fmt(codec, requested: Optional[str], in_format, deep: bool) -> str:
    supported = [f.name for f in (codec.video_formats or ())]
    if requested:
        if supported and requested not in supported:
            raise ValueError(f"--pix-fmt {requested}: the {codec.name} encoder takes {', '.join(supported)}")
        return requested
    if in_format is not None and (not supported or in_format.name in supported):
        return in_format.name
    preferred = ["yuv420p10le", "yuv420p"] if deep else ["yuv420p"]
    for name in preferred:
        if name in supported:
            return name
    return supported[0] if supported else "yuv420p"
