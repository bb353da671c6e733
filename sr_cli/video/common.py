"""What the stages of a clip's pipeline and the CLI share: the suffixes, PyAV's import, the
options and statistics of a run, and the bounded queue between two stages."""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

INSTALL_HINT = 'video input needs PyAV: pip install "sr-cli[video]"'
# Containers read as video; the output keeps the input's container where it can hold H.264/H.265.
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m2ts", ".mts",
                  ".mpg", ".mpeg", ".wmv", ".flv", ".ogv", ".3gp"}
MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
           ".avi": "avi", ".ts": "mpegts", ".m2ts": "mpegts", ".mts": "mpegts"}
WRITABLE_VIDEO_SUFFIXES = set(MUXERS)
QUEUE_FRAMES = 4  # frames waiting between two stages (decoded or upscaled), each way


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


class Stop(Exception):
    """Another stage failed or the run was interrupted: this stage ends quietly."""


END = object()  # the last item a stage passes on


class Pipe:
    """A bounded queue whose put/get give up when the run is stopping."""

    def __init__(self, stop: threading.Event):
        self.queue: queue.Queue = queue.Queue(QUEUE_FRAMES)
        self.stop = stop

    def put(self, item) -> None:
        while True:
            if self.stop.is_set():
                raise Stop
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self):
        while True:
            if self.stop.is_set():
                raise Stop
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                continue


def reason(exc: BaseException) -> str:
    """One line from an FFmpeg error: its meaning and, where FFmpeg logged one, the detail."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    log = getattr(exc, "log", None)
    if log and len(log) == 3 and str(log[2]).strip():
        text = f"{text}: {log[2]}"
    return " ".join(str(text).split())
