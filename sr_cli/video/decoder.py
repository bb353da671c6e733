"""The first stage of a clip's pipeline: demux, decode the video frames to RGB, and pass them on
with the audio and subtitle packets to copy, in demux order; and what the file declares (frame
count, duration) that the decoded frames are checked against.

With ``--frames A:B`` only frames A to B-1 are passed on, and the copied packets of that stretch;
``Window`` records where the excerpt starts and ends so that every timestamp can be shifted to
start at 0.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

from .common import END, Pipe


@dataclass
class Window:
    """Seconds: the excerpt's start and end (with --frames); how much of the stream the frames covered."""

    offset: Optional[float] = None
    end: Optional[float] = None
    first: Optional[float] = None
    covered: Optional[float] = None


class Decoder:
    """The decoding thread. Copied packets wait in ``_held`` until the decoded video has caught up
    with them (decoders hold a few frames back), so that the excerpt's start and end are known when
    they are sent. ``index`` counts the frames decoded; ``seconds`` the time spent decoding, not
    waiting on a full queue."""

    def __init__(self, inp, video, copied: dict, pipe: Pipe, *, frames: Optional[tuple[int, Optional[int]]],
                 to_pixels: Callable):
        self.inp, self.video, self.copied, self.pipe = inp, video, copied, pipe
        self.start, self.stop_at = frames or (0, None)
        self.to_pixels = to_pixels  # an av.VideoFrame -> its RGB pixels
        self.window = Window()
        self.index = 0
        self.seconds = 0.0
        self._held: deque = deque()  # (seconds, time base, packet), in demux order
        self._passed: set = set()    # copied streams past the excerpt's end
        self._blocked = 0.0
        self._done = False           # past the excerpt's last frame

    def run(self) -> None:
        begun = time.perf_counter()
        for packet in self.inp.demux(self.video, *(self.inp.streams[i] for i in self.copied)):
            if packet.stream.index != self.video.index:
                self._hold(packet)
            elif not self._done:
                self._decode(packet)
            if self._done:
                self._release(None)
                if len(self._passed) == len(self.copied):
                    break
        if self.window.offset is not None:
            self._release(None)
        self.seconds = time.perf_counter() - begun - self._blocked
        self.pipe.put(END)

    def _hold(self, packet) -> None:
        when = packet.pts if packet.pts is not None else packet.dts
        if packet.size and when is not None:
            self._held.append((float(when * packet.time_base), packet.time_base, packet))

    def _decode(self, packet) -> None:
        window = self.window
        for frame in packet.decode():
            now = frame.time
            if self.index < self.start:
                while self._held and now is not None and self._held[0][0] < now:
                    self._held.popleft()  # before frame A, so before the excerpt
            elif self.stop_at is None or self.index < self.stop_at:
                if window.offset is None:
                    window.offset = (now or 0.0) if self.start else 0.0
                self._release(now)
                if now is not None:
                    window.first = now if window.first is None else window.first
                    length = float(frame.duration * frame.time_base) if frame.duration else 0.0
                    window.covered = now + length - window.first
                self._put(("frame", self.to_pixels(frame), frame.pts, frame.time_base, frame.rotation))
            self.index += 1
            if self.stop_at is not None and self.index >= self.stop_at:
                self._done = True
                duration = float(frame.duration * frame.time_base) if frame.duration else 0.0
                window.end = (now or 0.0) + duration
                break

    def _release(self, upto: Optional[float]) -> None:
        while self._held and (upto is None or self._held[0][0] <= upto):
            self._send(*self._held.popleft())

    def _send(self, seconds: float, time_base, packet) -> None:
        window = self.window
        if self.start and seconds < window.offset:
            return  # before the excerpt (a whole clip keeps everything, encoder priming too)
        if window.end is not None and seconds >= window.end:
            self._passed.add(packet.stream.index)
            return
        if window.offset:
            shift = round(window.offset / time_base)
            packet.pts = None if packet.pts is None else packet.pts - shift
            packet.dts = None if packet.dts is None else packet.dts - shift
        packet.stream = self.copied[packet.stream.index]  # rebased to the output's time base when muxed
        self._put(("packet", packet))

    def _put(self, item) -> None:
        waited = time.perf_counter()
        self.pipe.put(item)
        self._blocked += time.perf_counter() - waited


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


def cut_short(container, video, covered: Optional[float], expected: int) -> bool:
    """Whether the decoded frames stop clearly before the stream's declared duration: more than
    three frames' time and 5% short (a variable frame rate makes a count from it a guess)."""
    declared = declared_seconds(container, video)
    if not declared or covered is None:
        return False
    rate = float(video.average_rate or video.guessed_rate or 0) or expected / max(declared, 1e-9)
    return declared - covered > max(3 / rate, 0.05 * declared)
