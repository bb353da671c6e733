"""Animated images (GIF, APNG, animated WebP) and multi-page TIFF: every frame upscaled.

Frames are read one at a time (``imageio.Animation``), upscaled by the same core as stills and
written one at a time (``imageio.animations``), so memory does not grow with the number of frames.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .imageio import ANIMATION_FORMATS, Frame, read_animation


@dataclass
class AnimationStats:
    frames: int = 0
    seconds: float = 0.0
    input_size: Optional[tuple[int, int]] = None   # width, height (of the first frame)
    output_size: Optional[tuple[int, int]] = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def output_suffix(source, fmt: str) -> str:
    """The suffix an animation is written with: its own for 'same' (GIF stays GIF), else ``fmt``'s;
    ValueError for a format that holds one frame."""
    suffix = Path(source).suffix.lower()
    if fmt == "same":
        return suffix if suffix in ANIMATION_FORMATS else ".png"
    # Each format's first suffix (.tif, not .tiff; .png, not .apng).
    suffix = {name.lower(): suffix for suffix, name in reversed(ANIMATION_FORMATS.items())}.get(fmt)
    if suffix is None:
        raise ValueError(f"{fmt} holds one frame; an animation is written as gif, png (APNG), webp or tiff "
                         "(-f same keeps its format)")
    return suffix


def upscale_animation(source, destination, upscaler, *, quality: int = 95,
                      frames: Optional[tuple[int, Optional[int]]] = None,
                      on_frame: Optional[Callable[[int, Optional[int], float], None]] = None,
                      replace: bool = True, provenance: Optional[str] = None) -> AnimationStats:
    """Upscale every frame (or frames A to B-1) of ``source`` into ``destination``, written whole
    or not at all, keeping durations, disposal, blend, loop count and the ICC profile.

    Frames stream from the reader through the model into the writer (``imageio.animations``): memory
    holds a frame or two whatever the frame count, and ``check_fits`` (``--max-pixels``, or the
    memory available) is checked on the first frame, before any work."""
    from .imageio.animations import target_mode, write_frames
    from .atomic import atomic_file
    from .imageio import animation_format
    destination = Path(destination)
    if destination.suffix.lower() not in ANIMATION_FORMATS:
        from .video import VIDEO_SUFFIXES
        if destination.suffix.lower() in VIDEO_SUFFIXES:
            raise ValueError(f"an animated image is written as an animation (.gif, .png, .webp or .tif), not as "
                             f"video ({destination.suffix}): give -o one of those, then convert it if you need video")
        raise ValueError(f"{destination.suffix} holds one frame; write an animation as .gif, .png, .webp or .tif")
    fmt = animation_format(destination)
    start, stop = frames or (0, None)
    began = time.perf_counter()
    with read_animation(source) as animation:
        stop = animation.count if stop is None else min(stop, animation.count)
        total = stop - start
        if total <= 0:
            raise ValueError(f"--frames {start}:{frames[1] if frames and frames[1] is not None else ''} asks for "
                             f"frames from {start}, but the file has {animation.count} "
                             f"(0 to {animation.count - 1})")
        # One cheap pass over the input frames: the mode every output frame is written in, and
        # whether any has a duration (the writer needs both before the first frame).
        channels, timed, sizes = set(), False, set()
        for frame in animation.frames(start, stop):
            channels.add(frame.pixels.shape[2])
            timed = timed or frame.duration is not None
            sizes.add(frame.pixels.shape[:2] + (frame.pixels.shape[2], frame.pixels.itemsize))
        for height, width, depth, itemsize in sizes:
            upscaler.check_fits(height, width, depth, itemsize)
        stats = AnimationStats()

        def upscaled():
            for frame in animation.frames(start, stop):
                height, width, _ = frame.pixels.shape
                pixels = upscaler(frame.pixels)
                if stats.input_size is None:
                    stats.input_size, stats.output_size = (width, height), (pixels.shape[1], pixels.shape[0])
                stats.frames += 1
                if on_frame is not None:
                    on_frame(stats.frames, total, stats.frames / max(time.perf_counter() - began, 1e-9))
                yield Frame(frame.index, pixels, frame.duration, frame.disposal, frame.blend)

        out_bytes = sum(upscaler.output_size(h, w)[0] * upscaler.output_size(h, w)[1] * c * i * 2
                        for h, w, c, i in sizes) * total
        with atomic_file(destination, replace=replace) as file:
            write_frames(file, upscaled(), fmt=fmt, mode=target_mode(fmt, channels), loop=animation.loop,
                         icc_profile=animation.icc_profile, quality=quality, provenance=provenance, timed=timed,
                         total_bytes=out_bytes)
    stats.seconds = time.perf_counter() - began
    return stats
