"""Animated images (GIF, APNG, animated WebP) and multi-page TIFF: every frame upscaled.

Frames are read one at a time (``imageio.Animation``) and upscaled by the same core as
stills; Pillow's writers take the whole list of frames at once, so the upscaled frames are
held until the file is written. Before any work, that total is checked against the memory
available (with ``--max-pixels auto``), and the run fails at once with one line if it
would not fit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .imageio import ANIMATION_FORMATS, Frame, read_animation, write_animation

BYTES_PER_FRAME_BUDGET = 2  # the held frames, and Pillow's converted/quantised copy as it writes (not TIFF's)


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
    or not at all, keeping durations, disposal, blend, loop count and the ICC profile."""
    destination = Path(destination)
    if destination.suffix.lower() not in ANIMATION_FORMATS:
        raise ValueError(f"{destination.suffix} holds one frame; write an animation as .gif, .png, .webp or .tif")
    start, stop = frames or (0, None)
    began = time.perf_counter()
    with read_animation(source) as animation:
        stop = animation.count if stop is None else min(stop, animation.count)
        total = stop - start
        if total <= 0:
            raise ValueError(f"no frames in --frames {start}:{stop} (the file has {animation.count})")
        stats = AnimationStats()
        done: list[Frame] = []
        for frame in animation.frames(start, stop):
            height, width, channels = frame.pixels.shape
            if not done:
                _check_total(upscaler, height, width, channels, frame.pixels.itemsize, total)
                stats.input_size = (width, height)
            pixels = upscaler(frame.pixels)
            if not done:
                stats.output_size = (pixels.shape[1], pixels.shape[0])
            done.append(Frame(frame.index, pixels, frame.duration, frame.disposal, frame.blend))
            stats.frames += 1
            if on_frame is not None:
                on_frame(stats.frames, total, stats.frames / max(time.perf_counter() - began, 1e-9))
        loop, icc = animation.loop, animation.icc_profile
    write_animation(destination, done, loop=loop, icc_profile=icc, quality=quality, replace=replace,
                    provenance=provenance)
    stats.seconds = time.perf_counter() - began
    return stats


def _check_total(upscaler, height: int, width: int, channels: int, itemsize: int, count: int) -> None:
    upscaler.check_fits(height, width, channels, itemsize)
    if getattr(upscaler, "max_pixels", None) is not None:
        return  # the user chose the limit (per frame); do not second-guess it
    from .device import available_memory
    out_h, out_w = upscaler.output_size(height, width)
    need = count * out_h * out_w * channels * itemsize * BYTES_PER_FRAME_BUDGET
    free = available_memory()
    if need > free:
        raise ValueError(f"{count} frames of {out_w}x{out_h} are held until the animation is written: "
                         f"~{need / 2**30:,.1f} GiB, {free / 2**30:,.1f} GiB available; --max-pixels "
                         f"{out_h * out_w} to try anyway, or --frames A:B for part of it")
