"""Video clips through PyAV: decode, upscale every frame with the same tiled core, encode.

PyAV (the optional extra ``sr-cli[video]``) is FFmpeg's libraries in a wheel: every
container and codec FFmpeg knows, with libx264/libx265/libvpx/SVT-AV1 encoders, and no
``ffmpeg`` binary to find, no pipes of raw frames to frame by hand, and packets (audio,
subtitles) that can be copied as they are.

Three threads overlap: one demuxes and decodes, the caller's runs the model, one encodes
and muxes. Frames stream through bounded queues (``QUEUE_FRAMES`` each), so memory does not
grow with the clip. Audio and subtitle packets travel through the same queues in demux order
and are muxed unchanged (copied, not re-encoded; FFmpeg's muxer interleaves them).

What is kept: every frame's timestamp (variable frame rate too: the encoder runs in the
input stream's time base), the frame rate, the rotation (display matrix), the sample aspect
ratio, the colour tags (untagged SD is tagged BT.601 and untagged HD BT.709, as players would
have read the input, because the output's size would make them guess otherwise), container
metadata, and every audio and subtitle stream. Other streams (data, attachments, a second
video) are left out. The output is written to a temporary file and renamed at the end.

``--frames A:B`` takes frames A (inclusive) to B (exclusive), counted in presentation order
from 0, decoding from the start (frame-accurate, no keyframe seeking); copied packets in that
stretch are kept and every timestamp is shifted so the excerpt starts where frame A was at 0.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional

INSTALL_HINT = 'video input needs PyAV: pip install "sr-cli[video]"'
# Containers read as video; the output keeps the input's container where it can hold H.264/H.265.
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m2ts", ".mts",
                  ".mpg", ".mpeg", ".wmv", ".flv", ".ogv", ".3gp"}
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
           ".avi": "avi", ".ts": "mpegts", ".m2ts": "mpegts", ".mts": "mpegts"}
WRITABLE_VIDEO_SUFFIXES = set(_MUXERS)
# The input's codec, re-encoded with the encoder of the same family when the container takes it.
_ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1", "vp8": "libvpx"}
# Quality defaults a little above each encoder's own: upscaled detail is what the run is for.
_DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 31, "libvpx": 10, "libsvtav1": 30}
QUEUE_FRAMES = 4  # frames waiting between two stages (decoded or upscaled), each way
_UNSPECIFIED = 2  # AVCOL_SPC/AVCOL_PRI/AVCOL_TRC_UNSPECIFIED
# AVColorSpace -> swscale's SWS_CS_* (the same numbers, but for BT.601's two names and unknowns).
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


class VideoUnavailable(ValueError):
    """PyAV is not installed; the message says how to install it."""


def load_av():
    try:
        import av
    except ImportError:
        raise VideoUnavailable(INSTALL_HINT) from None
    av.logging.set_level(None)  # FFmpeg's own warnings on stderr: the one line we raise says it
    return av


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def output_suffix(source) -> str:
    """The input's container where we can write H.264/H.265 into it, else Matroska (holds anything)."""
    suffix = Path(source).suffix.lower()
    return suffix if suffix in WRITABLE_VIDEO_SUFFIXES else ".mkv"


def parse_frames(spec: Optional[str]) -> Optional[tuple[int, Optional[int]]]:
    """'A:B' -> (A, B), frames A to B-1 counted from 0; 'A:' to the end, ':B' from the start."""
    if spec in (None, ""):
        return None
    try:
        first, last = spec.split(":")
        start = int(first) if first.strip() else 0
        stop = int(last) if last.strip() else None
    except ValueError:
        raise ValueError(f"--frames takes A:B (frames A to B-1, from 0), e.g. 0:48, got {spec!r}") from None
    if start < 0 or (stop is not None and stop <= start):
        raise ValueError(f"--frames A:B needs 0 <= A < B, got {spec!r}")
    return start, stop


@dataclass
class VideoOptions:
    codec: Optional[str] = None     # encoder or codec name; None: the input's family, else H.264 (VP9 in WebM)
    crf: Optional[int] = None       # None: _DEFAULT_CRF for the encoder
    pix_fmt: Optional[str] = None   # None: the input's, when the encoder takes it
    frames: Optional[tuple[int, Optional[int]]] = None  # parse_frames
    allow_partial: bool = False     # a clip cut short (fewer frames than declared): written, not failed


@dataclass
class VideoStats:
    frames: int = 0
    seconds: float = 0.0
    input_size: Optional[tuple[int, int]] = None   # width, height
    output_size: Optional[tuple[int, int]] = None
    codec: str = ""
    copied_streams: list[str] = field(default_factory=list)  # e.g. ["audio aac", "subtitle subrip"]
    stages: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "inference": 0.0, "encode": 0.0})

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def probe_size(path) -> Optional[tuple[int, int]]:
    """(width, height) of a file's first video stream from its headers; None if unreadable or no PyAV."""
    try:
        av = load_av()
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return stream.codec_context.width, stream.codec_context.height
    except Exception:
        return None


class _Stop(Exception):
    """Another stage failed or the run was interrupted: this stage ends quietly."""


_END = object()


class _Pipe:
    """A bounded queue whose put/get give up when the run is stopping."""

    def __init__(self, stop: threading.Event):
        self.queue: queue.Queue = queue.Queue(QUEUE_FRAMES)
        self.stop = stop

    def put(self, item) -> None:
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self):
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                continue


def upscale_video(source, destination, upscaler, *, options: Optional[VideoOptions] = None,
                  on_frame: Optional[Callable[[int, Optional[int], float], None]] = None,
                  replace: bool = True, provenance: Optional[str] = None) -> VideoStats:
    """Upscale every frame of ``source`` into ``destination`` (written whole or not at all; with
    ``replace`` False an existing ``destination`` is kept and ``atomic.OutputExists`` raised).
    ``provenance`` is sr's tag (provenance.py), stored in the container's metadata.

    ``upscaler`` maps H x W x 3 uint8/uint16 pixels to upscaled ones (an ``Upscaler``).
    ``on_frame(done, total or None, fps)`` is called after each frame is upscaled.
    Raises ValueError (one line, without the file's name) when the clip cannot be read or written.
    """
    from .atomic import atomic_path
    av = load_av()
    options = options or VideoOptions()
    source, destination = Path(source), Path(destination)
    muxer = _MUXERS.get(destination.suffix.lower())
    if muxer is None:
        raise ValueError(f"cannot write video as {destination.suffix or 'a file without a suffix'} "
                         f"(use {', '.join(sorted(WRITABLE_VIDEO_SUFFIXES))})")
    try:
        inp = av.open(str(source))
    except Exception as exc:
        raise ValueError(f"cannot read video ({_reason(exc)})") from None
    try:
        with atomic_path(destination, replace=replace) as temporary:
            if not inp.streams.video:
                raise ValueError("no video stream in the file")
            # use_metadata_tags: MP4/MOV keep keys of any name (sr's tag among them).
            out = av.open(str(temporary), "w", format=muxer,
                          options={"movflags": "+faststart+use_metadata_tags"} if muxer in ("mp4", "mov") else {})
            try:
                stats = _run(av, inp, out, upscaler, options, on_frame, provenance)
            except BaseException:
                try:  # closed before atomic_path deletes the file (Windows cannot delete an open one)
                    out.close()
                except Exception:
                    pass
                raise
            out.close()
        return stats
    except av.error.FFmpegError as exc:  # its str() names the temporary file: say it in our words
        raise ValueError(f"cannot write video ({_reason(exc)})") from exc
    finally:
        inp.close()


def _reason(exc: BaseException) -> str:
    """One line from an FFmpeg error: its meaning and, where FFmpeg logged one, the detail."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    log = getattr(exc, "log", None)
    if log and len(log) == 3 and str(log[2]).strip():
        text = f"{text}: {log[2]}"
    return " ".join(str(text).split())


def _run(av, inp, out, upscaler, options: VideoOptions, on_frame, provenance: Optional[str] = None) -> VideoStats:
    video = inp.streams.video[0]
    video.thread_type = "AUTO"  # frame threads in the decoder too
    in_ctx = video.codec_context
    width, height = in_ctx.width, in_ctx.height
    if not width or not height:
        raise ValueError("the video stream has no frame size")
    in_format = in_ctx.format
    deep = in_format is not None and max((c.bits for c in in_format.components), default=8) > 8
    upscaler.check_fits(height, width, 3, 2 if deep else 1)
    out_h, out_w = upscaler.output_size(height, width)
    stats = VideoStats(input_size=(width, height), output_size=(out_w, out_h))

    encoder = _add_encoder(av, out, video, options, (out_w, out_h), deep)  # stream 0, as in most files
    stats.codec = encoder.codec_context.name
    from .provenance import VIDEO_KEY
    for key, value in inp.metadata.items():
        if key.lower() != VIDEO_KEY:  # the input's own tag (it was an output once) says nothing of this file
            out.metadata[key] = value
    if provenance:
        out.metadata[VIDEO_KEY] = provenance
    copied = {}  # input stream index -> output stream
    for stream in list(inp.streams.audio) + list(inp.streams.subtitles):
        try:
            copied[stream.index] = out.add_stream_from_template(stream)
        except Exception as exc:
            raise ValueError(f"cannot copy {stream.type} stream {stream.index} ({stream.codec_context.name}) "
                             f"into {out.format.name}: {_reason(exc)}") from None
        for key, value in stream.metadata.items():
            copied[stream.index].metadata[key] = value
        stats.copied_streams.append(f"{stream.type} {stream.codec_context.name}")

    rgb = "rgb48le" if deep else "rgb24"
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

    start, stop_at = options.frames or (0, None)
    declared, exact = declared_frames(inp, video)
    total = declared
    if total is not None:
        total = max(0, (min(total, stop_at) if stop_at is not None else total) - start)
    expected = total  # what the header promises in the range asked for: checked at the end
    if stop_at is not None and total is None:
        total = stop_at - start

    stop = threading.Event()
    decoded, upscaled = _Pipe(stop), _Pipe(stop)
    errors: list[BaseException] = []
    # Seconds: the excerpt's start and end (with --frames); how much of the stream the frames covered.
    window = {"offset": None, "end": None, "first": None, "covered": None}

    index = 0

    def decode() -> None:
        # Copied packets wait in `held` until the decoded video has caught up with them (decoders
        # hold a few frames back), so that the excerpt's start and end are known when they are sent.
        nonlocal index
        begun = time.perf_counter()
        blocked = 0.0  # seconds waiting on a full queue: not decoding
        held: deque = deque()  # (seconds, time base, packet), in demux order
        passed: set = set()  # copied streams past the excerpt's end

        def send(seconds: float, time_base, packet) -> None:
            if start and seconds < window["offset"]:
                return  # before the excerpt (a whole clip keeps everything, encoder priming too)
            if window["end"] is not None and seconds >= window["end"]:
                passed.add(packet.stream.index)
                return
            if window["offset"]:
                shift = round(window["offset"] / time_base)
                packet.pts = None if packet.pts is None else packet.pts - shift
                packet.dts = None if packet.dts is None else packet.dts - shift
            packet.stream = copied[packet.stream.index]  # rebased to the output's time base when muxed
            put(("packet", packet))

        def put(item) -> None:
            nonlocal blocked
            waited = time.perf_counter()
            decoded.put(item)
            blocked += time.perf_counter() - waited

        def release(upto: Optional[float]) -> None:
            while held and (upto is None or held[0][0] <= upto):
                send(*held.popleft())

        video_done = False
        for packet in inp.demux(video, *(inp.streams[i] for i in copied)):
            if packet.stream.index != video.index:
                when = packet.pts if packet.pts is not None else packet.dts
                if packet.size == 0 or when is None:
                    continue
                held.append((float(when * packet.time_base), packet.time_base, packet))
                if video_done:
                    release(None)
                    if len(passed) == len(copied):
                        break
                continue
            if video_done:
                continue
            for frame in packet.decode():
                now = frame.time
                if index < start:
                    while held and now is not None and held[0][0] < now:
                        held.popleft()  # before frame A, so before the excerpt
                elif stop_at is None or index < stop_at:
                    if window["offset"] is None:
                        window["offset"] = (now or 0.0) if start else 0.0
                    release(now)
                    if now is not None:
                        window["first"] = now if window["first"] is None else window["first"]
                        length = float(frame.duration * frame.time_base) if frame.duration else 0.0
                        window["covered"] = now + length - window["first"]
                    pixels = frame.to_ndarray(format=rgb, src_colorspace=matrix, src_color_range=colour_range)
                    put(("frame", pixels, frame.pts, frame.time_base, frame.rotation))
                index += 1
                if stop_at is not None and index >= stop_at:
                    video_done = True
                    duration = float(frame.duration * frame.time_base) if frame.duration else 0.0
                    window["end"] = (now or 0.0) + duration
                    break
            if video_done:
                release(None)
                if len(passed) == len(copied):
                    break
        if window["offset"] is not None:
            release(None)
        stats.stages["decode"] = time.perf_counter() - begun - blocked
        decoded.put(_END)

    def encode() -> None:
        begun = time.perf_counter()
        waiting: list = []  # copied packets before the first frame: the header waits for its rotation
        started = False
        last_pts = None
        while True:
            stats.stages["encode"] += time.perf_counter() - begun
            item = upscaled.get()
            begun = time.perf_counter()
            if item is _END:
                break
            if item[0] == "packet":
                if started:
                    out.mux(item[1])
                else:
                    waiting.append(item[1])
                continue
            _, pixels, pts, time_base, rotation = item
            if pixels.shape[:2] != (out_h, out_w):
                raise ValueError(f"the frame size changes mid-clip (frame {stats.frames}); not supported")
            if not started:
                if rotation:
                    encoder.set_display_rotation(rotation)
                started = True
            frame = av.VideoFrame.from_ndarray(pixels, format=rgb)
            frame = frame.reformat(format=encoder.codec_context.pix_fmt, dst_colorspace=matrix,
                                   dst_color_range=colour_range)
            pts = _shifted(pts, time_base, window["offset"])
            if last_pts is not None and (pts is None or pts <= last_pts):
                pts = last_pts + 1  # a missing or repeated timestamp: the encoder needs them rising
            frame.pts, frame.time_base = pts, time_base
            last_pts = pts
            for packet in encoder.encode(frame):
                out.mux(packet)
            for packet in waiting:
                out.mux(packet)
            waiting.clear()
        for packet in encoder.encode(None):
            out.mux(packet)
        for packet in waiting:
            out.mux(packet)
        stats.stages["encode"] += time.perf_counter() - begun

    def stage(body, failed):
        """The thread of a stage: its error is kept for the caller and stops the others; PyAV's
        errors are described with ``failed(reason)``."""
        def run() -> None:
            try:
                body()
            except _Stop:
                pass
            except av.error.FFmpegError as exc:
                errors.append(ValueError(failed(_reason(exc))))
                stop.set()
            except BaseException as exc:
                errors.append(exc)
                stop.set()
        return run

    threads = [threading.Thread(target=stage(decode, lambda why: f"cannot decode frame {index} ({why})"),
                                name="sr-video-decode", daemon=True),
               threading.Thread(target=stage(encode, lambda why: f"cannot encode frame {stats.frames} with "
                                                                 f"{stats.codec} ({why})"),
                                name="sr-video-encode", daemon=True)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        while True:
            item = decoded.get()
            if item is _END:
                upscaled.put(_END)
                break
            if item[0] == "frame":
                tick = time.perf_counter()
                pixels = upscaler(item[1])
                stats.stages["inference"] += time.perf_counter() - tick
                item = ("frame", pixels, *item[2:])
                stats.frames += 1
                if on_frame is not None:
                    on_frame(stats.frames, total, stats.frames / max(time.perf_counter() - began, 1e-9))
            upscaled.put(item)
        threads[1].join()
    except _Stop:
        pass  # a stage failed: its error is raised below
    finally:
        if errors or threads[1].is_alive():  # failed, or interrupted (Ctrl-C): every stage stops
            stop.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    if stats.frames == 0:
        raise ValueError("no frames decoded" + (f" in --frames {start}:{'' if stop_at is None else stop_at}"
                                                 if options.frames else ""))
    if expected and not options.allow_partial and (
            stats.frames < expected if exact else
            not options.frames and _cut_short(inp, video, window["covered"], expected)):
        raise ValueError(f"the input is cut short: {stats.frames} of the {expected} frames its header declares "
                         f"{'in that range ' if options.frames else ''}could be decoded; nothing written "
                         "(--allow-partial writes what decoded)")
    stats.seconds = time.perf_counter() - began
    return stats


def declared_frames(container, video) -> tuple[Optional[int], bool]:
    """How many frames the container says the stream has, and whether that is a count (MP4/MOV
    sample tables) rather than an estimate from the stream's duration and frame rate (Matroska...)."""
    if video.frames:
        return int(video.frames), True
    rate = video.average_rate or video.guessed_rate
    seconds = declared_seconds(container, video)
    if not rate or not seconds:
        return None, False
    return round(seconds * float(rate)), False


def declared_seconds(container, video) -> Optional[float]:
    """The video stream's duration as the file declares it: the stream's own, Matroska's DURATION
    tag, or the container's when the video is its only stream; None when unknown."""
    if video.duration:
        return float(video.duration * video.time_base)
    tag = next((value for key, value in video.metadata.items() if key.upper() == "DURATION"), None)
    if tag:
        try:
            hours, minutes, seconds = str(tag).split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            pass
    if container.duration and len(container.streams) == 1:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _cut_short(container, video, covered: Optional[float], expected: int) -> bool:
    """Whether the decoded frames stop clearly before the stream's declared duration: more than
    three frames' time and 5% short (a variable frame rate makes a count from it a guess)."""
    declared = declared_seconds(container, video)
    if not declared or covered is None:
        return False
    rate = float(video.average_rate or video.guessed_rate or 0) or expected / max(declared, 1e-9)
    return declared - covered > max(3 / rate, 0.05 * declared)


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
            errors.append(_reason(exc))
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
