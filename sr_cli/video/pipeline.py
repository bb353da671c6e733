"""A clip's pipeline: three stages on three threads, joined by bounded queues (``common.Pipe``), so
memory does not grow with the clip: the decoder (``decoder.Decoder``) demuxes and decodes, the
caller's thread runs the model, the encoder (``encoder.Encoder``) encodes and muxes. A stage that
fails stops the others, and its error is the run's."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Optional

from .common import (MUXERS, END, WRITABLE_VIDEO_SUFFIXES, Pipe, Stop, VideoOptions, VideoStats, load_av,
                     reason)
from .decoder import Decoder, cut_short, declared_frames
from .encoder import Encoder, open_output, tag_colours


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
    from ..atomic import atomic_path
    av = load_av()
    options = options or VideoOptions()
    source, destination = Path(source), Path(destination)
    muxer = MUXERS.get(destination.suffix.lower())
    if muxer is None:
        raise ValueError(f"cannot write video as {destination.suffix or 'a file without a suffix'} "
                         f"(use {', '.join(sorted(WRITABLE_VIDEO_SUFFIXES))})")
    try:
        inp = av.open(str(source))
    except Exception as exc:
        raise ValueError(f"cannot read video ({reason(exc)})") from None
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
        raise ValueError(f"cannot write video ({reason(exc)})") from exc
    finally:
        inp.close()


def _run(av, inp, out, upscaler, options: VideoOptions, on_frame, provenance: Optional[str]) -> VideoStats:
    video = inp.streams.video[0]
    video.thread_type = "AUTO"  # frame threads in the decoder too
    in_ctx = video.codec_context
    width, height = in_ctx.width, in_ctx.height
    if not width or not height:
        raise ValueError("the video stream has no frame size")
    deep = in_ctx.format is not None and max((c.bits for c in in_ctx.format.components), default=8) > 8
    upscaler.check_fits(height, width, 3, 2 if deep else 1)
    out_h, out_w = upscaler.output_size(height, width)
    stats = VideoStats(input_size=(width, height), output_size=(out_w, out_h))
    encoder_stream, copied = open_output(av, inp, out, video, options, (out_w, out_h), deep, provenance, stats)
    matrix, colour_range = tag_colours(encoder_stream, in_ctx, height)
    rgb = "rgb48le" if deep else "rgb24"

    stop = threading.Event()
    decoded, upscaled = Pipe(stop), Pipe(stop)
    decoder = Decoder(inp, video, copied, decoded, frames=options.frames, to_pixels=lambda frame: frame.to_ndarray(
        format=rgb, src_colorspace=matrix, src_color_range=colour_range))
    encoder = Encoder(av, out, encoder_stream, upscaled, size=(out_w, out_h), rgb=rgb, matrix=matrix,
                      colour_range=colour_range, window=decoder.window, stats=stats)
    errors: list[BaseException] = []
    threads = [_stage(decoder.run, lambda why: f"cannot decode frame {decoder.index} ({why})", av, stop, errors,
                      "sr-video-decode"),
               _stage(encoder.run, lambda why: f"cannot encode frame {stats.frames} with {stats.codec} ({why})",
                      av, stop, errors, "sr-video-encode")]
    expected, exact, total = _frame_counts(inp, video, options.frames)

    def report() -> None:
        if on_frame is not None:
            on_frame(stats.frames, total, stats.frames / max(time.perf_counter() - began, 1e-9))

    began = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        _upscale_frames(decoded, upscaled, upscaler, stats, report)
        threads[1].join()
    except Stop:
        pass  # a stage failed: its error is raised below
    finally:
        if errors or threads[1].is_alive():  # failed, or interrupted (Ctrl-C): every stage stops
            stop.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    stats.stages["decode"] = decoder.seconds
    _check_count(stats.frames, expected, exact, options, inp, video, decoder.window.covered)
    stats.seconds = time.perf_counter() - began
    return stats


def _stage(body: Callable[[], None], failed: Callable[[str], str], av, stop: threading.Event,
           errors: list, name: str) -> threading.Thread:
    """The thread of a stage: its error is kept for the caller and stops the others; PyAV's errors
    are described with ``failed(reason)``."""
    def run() -> None:
        try:
            body()
        except Stop:
            pass
        except av.error.FFmpegError as exc:
            errors.append(ValueError(failed(reason(exc))))
            stop.set()
        except BaseException as exc:
            errors.append(exc)
            stop.set()
    return threading.Thread(target=run, name=name, daemon=True)


def _upscale_frames(decoded: Pipe, upscaled: Pipe, upscaler, stats: VideoStats, report: Callable[[], None]) -> None:
    """The middle stage, on the caller's thread: every frame through ``upscaler``, packets passed on."""
    while True:
        item = decoded.get()
        if item is END:
            upscaled.put(END)
            return
        if item[0] == "frame":
            tick = time.perf_counter()
            pixels = upscaler(item[1])
            stats.stages["inference"] += time.perf_counter() - tick
            item = ("frame", pixels, *item[2:])
            stats.frames += 1
            report()
        upscaled.put(item)


def _frame_counts(inp, video, frames) -> tuple[Optional[int], bool, Optional[int]]:
    """(expected, exact, total): the frames the header promises in the range asked for (checked at
    the end), whether that is a count rather than an estimate, and the total the progress shows."""
    start, stop_at = frames or (0, None)
    declared, exact = declared_frames(inp, video)
    total = declared
    if total is not None:
        total = max(0, (min(total, stop_at) if stop_at is not None else total) - start)
    expected = total
    if stop_at is not None and total is None:
        total = stop_at - start
    return expected, exact, total


def _check_count(done: int, expected: Optional[int], exact: bool, options: VideoOptions, inp, video,
                 covered: Optional[float]) -> None:
    """ValueError when no frame decoded, or fewer than the header declares (unless --allow-partial)."""
    if done == 0:
        start, stop_at = options.frames or (0, None)
        raise ValueError("no frames decoded" + (f" in --frames {start}:{'' if stop_at is None else stop_at}"
                                                 if options.frames else ""))
    if expected and not options.allow_partial and (
            done < expected if exact else not options.frames and cut_short(inp, video, covered, expected)):
        raise ValueError(f"the input is cut short: {done} of the {expected} frames its header declares "
                         f"{'in that range ' if options.frames else ''}could be decoded; nothing written "
                         "(--allow-partial writes what decoded)")
