"""`sr upscale`: images, videos, folders or stdin through one model, with progress and a summary.

torch is imported inside the command so that `sr upscale --help` stays fast.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import friendly_errors
from .options import blend_options, inference_options, scale_factor

FORMATS = ["same", "png", "jpg", "webp", "tiff", "bmp"]


@click.command("upscale")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output file (one input), or folder (created if missing). Default: beside each input.")
@click.option("-s", "--scale", type=float, default=4.0, show_default=True, callback=scale_factor,
              help="Upscaling factor: 2, 3, 4 run a model natively; any other factor > 1 runs the best "
                   "native model(s) and resizes to exactly round(size x scale).")
@click.option("-m", "--model", default="default", show_default=True,
              help="A model name (see `sr models`; 'bicubic' and 'lanczos' are always there) or a weights file.")
@blend_options
@inference_options()
@click.option("--tile-batch", type=click.IntRange(1), default=1, show_default=True,
              help="Tiles of equal size run together; more keeps a GPU busy (CPUs gain nothing).")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="same", show_default=True,
              help="Output format of images; 'same' keeps each input's format (an animated GIF stays a GIF). "
                   "Videos keep their container (or go into .mkv); -o NAME.mkv picks another.")
@click.option("-q", "--quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG/WebP quality.")
@click.option("--suffix", default=None,
              help="Added to output names. Default: '_x<scale>' beside the inputs, nothing with -o FOLDER.")
@click.option("-r", "--recursive", is_flag=True, help="Walk folders recursively; the tree is mirrored under -o.")
@click.option("--skip-existing", is_flag=True, help="Skip inputs whose output already exists.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (never an input).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failure instead of carrying on.")
@click.option("--shard", metavar="K/N", help="Process only every N-th input from the K-th (0-based), for job arrays.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-file lines; errors are still printed.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per run with every file's result.")
@click.option("--codec", default=None,
              help="Video encoder (libx264, libx265, libvpx-vp9, libsvtav1, or h264/hevc...). Default: the "
                   "input's codec family where the container takes it, else H.264 (VP9 in WebM).")
@click.option("--crf", type=click.IntRange(0, 63), default=None,
              help="Video quality, lower is better (default: 18 for x264, 20 x265, 31 VP9, 30 AV1).")
@click.option("--pix-fmt", default=None, help="Video pixel format, e.g. yuv420p, yuv444p, yuv420p10le. "
                                              "Default: the input's, where the encoder takes it.")
@click.option("--frames", "frame_range", metavar="A:B", default=None,
              help="Only frames A to B-1 (from 0) of videos and animations, e.g. 0:48 for a preview.")
@click.option("--allow-partial", is_flag=True,
              help="Write what decoded from a video cut short (fewer frames than its header declares) "
                   "instead of failing it.")
@click.option("--max-pixels", default="auto", show_default=True,
              help="Refuse (that file fails, at once) an image whose output, or a pass on the way to it, has more "
                   "pixels than this; 'auto' sizes it from the memory available. Raise it to try anyway.")
@friendly_errors(on_interrupt="outputs already written are complete, nothing partial is left; "
                              "rerun with --skip-existing to go on")
def upscale_command(inputs, output, scale, model, strength, parent, engine, device, precision, tile, tile_overlap,
                    tile_batch, fmt, quality, suffix, recursive, skip_existing, overwrite, fail_fast, shard, quiet,
                    as_json, codec, crf, pix_fmt, frame_range, allow_partial, max_pixels):
    """Upscale images, videos, folders or stdin (INPUT '-') to stdout.

    Videos (mp4, mkv, mov, webm, ...; needs `pip install "sr-cli[video]"`) are decoded,
    upscaled and encoded frame by frame on overlapping threads, keeping every timestamp,
    the rotation and the audio and subtitle streams (copied). Animated GIF/APNG/WebP and
    multi-page TIFF keep every frame, the durations, loop count and disposal.

    Every output carries a provenance tag (sr, the model, the scale, the source's name; see
    `sr info FILE`). Existing outputs are never replaced without --overwrite, and with it only
    files that carry the tag: a file without it is yours and is never replaced, nor is an input
    of the run. Walking a folder, an earlier run's outputs (tagged files such as a_x2.png beside
    a.png; anything under -o) are not taken as inputs. Outputs are written whole or not at all;
    temporary files a killed run left are removed by the next run over the folder.

    \b
    Exit status:
      0    every image was written (or skipped)
      1    some image failed (each named on stderr, one line each); the others were written
      2    usage error (bad option or value)
      130  interrupted by Ctrl-C (143: SIGTERM); outputs already written are complete
    """
    # Everything the user typed is checked here, before torch, ONNX Runtime, OpenCV or PyAV is
    # imported, so a mistake costs a fraction of a second.
    if skip_existing and overwrite:
        raise click.UsageError("--skip-existing and --overwrite exclude each other")
    pixel_limit = parse_max_pixels(max_pixels)
    from ..video import VideoOptions, parse_frames
    try:
        frames = parse_frames(frame_range)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--frames") from None
    if codec or pix_fmt:
        from ..video import check_codec_options
        try:
            check_codec_options(codec, pix_fmt)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    video = VideoOptions(codec=codec, crf=crf, pix_fmt=pix_fmt, frames=frames, allow_partial=allow_partial)
    from ..blend import with_strength
    model = with_strength(model, strength)
    check_model_option(model, scale, engine=engine, device=device, precision=precision, parent=parent)
    stream = "-" in inputs
    if stream:
        if len(inputs) > 1 or (output not in (None, Path("-"))) or as_json:
            raise click.UsageError("'-' reads stdin and writes stdout: give it alone, without -o or --json")
        if sys.stdout is None or sys.stdout.isatty():
            raise click.UsageError("'-' writes the image to stdout, which is a terminal: redirect it (> out.png)")
    else:
        check_inputs_exist(inputs)
        check_writable(output)

    from ..imageio import set_input_limit
    click.get_current_context().call_on_close(lambda: set_input_limit(None))  # for this run only
    if pixel_limit is not None:  # inputs are refused before decoding from the same budget (Pillow's limit off)
        set_input_limit(pixel_limit / (scale * scale), f"that --max-pixels {pixel_limit:,} allows at x{scale:g}")
    else:
        from ..device import available_memory
        from ..upscale import BYTES_PER_PIXEL_BUDGET
        set_input_limit(available_memory() / BYTES_PER_PIXEL_BUDGET / (scale * scale),
                        f"that the memory available allows at x{scale:g}")

    def load():
        from ..upscale import Upscaler
        return Upscaler.create(model, scale, device=device, precision=precision, engine=engine, tile=tile,
                               overlap=tile_overlap, batch_size=tile_batch, max_pixels=pixel_limit, parent=parent)
    if stream:
        _upscale_stream(load(), fmt, quality)
        return

    from ..batch import find_inputs, plan_jobs, shard as take_shard
    try:
        found = take_shard(find_inputs(inputs, recursive=recursive, exclude=output), shard)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--shard") from None
    if not found:
        raise click.ClickException("no images or videos found in the inputs"
                                   + ("" if recursive else " (folders: try --recursive)"))
    jobs = plan_jobs(found, output=output, fmt=fmt, suffix=suffix, scale=scale)
    upscaler = load()
    existing = "skip" if skip_existing else "overwrite" if overwrite else "error"
    results = _run_with_progress(jobs, upscaler, existing, quality, fail_fast, quiet, video)
    failed = [r for r in results if r.status == "failed"]
    if as_json:
        summary = {"ok": sum(r.status == "ok" for r in results), "skipped": sum(r.status == "skipped" for r in results),
                   "failed": len(failed), "scale": scale, "model": model, "results": [r.as_dict() for r in results]}
        click.echo(json.dumps(summary, indent=2))
    if failed:
        click.echo(f"{len(failed)} of {len(results)} failed", err=True)
        sys.exit(1)


def check_model_option(model: str, scale: float, *, engine: str, device: str, precision: str,
                       parent=None) -> None:
    """The model exists (name or file) and can run on the engine, device and precision asked for."""
    from ..engines import choose_engine
    from ..registry import NAMED_MODELS, NotPulled
    from ..resolve import check_model, plan_passes
    try:
        check_model(model, parent)
    except NotPulled as exc:  # a known name: one line saying which command fetches it (exit 1)
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None
    try:
        # Only shipped names have int8 forms; their scales come from the file table, in microseconds.
        scales = sorted(set(plan_passes(model, scale))) if model in NAMED_MODELS else None
        choose_engine(model, engine=engine, device=device, precision=precision, scales=scales)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def check_inputs_exist(inputs) -> None:
    """At least one input exists; with none, nothing is loaded and the run is a usage error."""
    import os
    missing = [item for item in inputs if not os.path.lexists(item)]
    if missing and len(missing) == len(inputs):
        from ..errors import display
        raise click.BadParameter(f"{display(missing[0])}: no such file or folder"
                                 + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else ""),
                                 param_hint="INPUT")


def check_writable(output) -> None:
    """-o is somewhere this user may write: its nearest existing folder is writable."""
    import os
    if output is None or str(output) == "-":
        return
    target = Path(output).absolute()
    folder = target if target.is_dir() else target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise click.BadParameter(f"{folder} is not a folder", param_hint="-o")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write in {folder} (permission denied)", param_hint="-o")


def parse_max_pixels(value: str):
    """'auto' -> None (sized from free memory at run time); else a positive number of pixels."""
    if value in (None, "auto"):
        return None
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter("a number of pixels (e.g. 4e9) or 'auto'", param_hint="--max-pixels") from None
    if not number >= 1 or number == float("inf"):
        raise click.BadParameter(f"must be a number of pixels >= 1, got {value}", param_hint="--max-pixels")
    return int(number)


def _run_with_progress(jobs, upscaler, existing, quality, fail_fast, quiet, video=None):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    from ..batch import display
    from ..runner import run_jobs
    console = Console(stderr=True)
    # Off a terminal the bar draws nothing: a plain line every few seconds shows life in logs and CI.
    import os
    import time
    plain = not quiet and not console.is_terminal
    interval = float(os.environ.get("SR_PROGRESS_SECONDS", "5"))
    began = time.monotonic()
    state = {"last": began, "files": 0, "frame": None, "tile": None}

    def tick() -> None:
        now = time.monotonic()
        if not plain or now - state["last"] < interval:
            return
        state["last"] = now
        parts = [f"{state['files']}/{len(jobs)} files"]
        if state["frame"] is not None:
            done, total, fps = state["frame"]
            parts.append(f"frame {done}/{total or '?'} at {fps:.2f} fps")
        elif state["tile"] is not None:
            parts.append("tile {}/{}".format(*state["tile"]))
        parts.append(f"{_clock(now - began)} elapsed")
        console.print(Text("progress: " + ", ".join(parts)), highlight=False, soft_wrap=True)

    progress = Progress(TextColumn("[bold]upscale"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.description}", markup=False), console=console, disable=quiet,
                        transient=True)

    def report(result):
        # Names are printed as plain text (a '[' is not markup) with control characters escaped,
        # so any file name is one line and can neither disturb the terminal nor stop the batch.
        progress.advance(task)
        state["files"] += 1
        state["frame"] = state["tile"] = None
        if result.status == "failed":
            console.print(Text.assemble(("failed", "red"), f" {display(result.source)}: {result.error}"),
                          highlight=False, soft_wrap=True)
        elif not quiet:
            verb = "ok" if result.status == "ok" else "skipped"
            detail = (f" ({result.seconds:.2f}s)" if result.status == "ok"
                      else f" ({result.error})" if result.error else "")
            if result.status == "ok" and result.frames:
                detail = f" ({result.frames} frames, {result.seconds:.2f}s, {result.fps:.2f} fps)"
            console.print(Text(f"{verb} {display(result.source)} -> {display(result.destination)}{detail}"),
                          highlight=False, soft_wrap=True)
        tick()

    with progress:
        task = progress.add_task("", total=len(jobs))
        tiles = progress.add_task("tiles", total=None, visible=False)

        def tile_done(done, total):
            progress.update(tiles, completed=done, total=total, visible=total > 1,
                            description=f"tile {done}/{total}")
            state["tile"] = (done, total)
            tick()
        frames = progress.add_task("frames", total=None, visible=False)

        def frame_done(done, total, fps):
            # Frames of a video or an animation, with the rate so far and the time left at that rate.
            left = f", ETA {_clock((total - done) / fps)}" if total and fps > 0 else ""
            count = f"{done}/{total}" if total else f"{done}"
            progress.update(frames, completed=done, total=total, visible=done < (total or done + 1),
                            description=f"frame {count}, {fps:.2f} fps{left}")
            state["frame"] = (done, total, fps)
            tick()
        upscaler.on_tile = tile_done
        return run_jobs(jobs, upscaler, existing=existing, quality=quality, fail_fast=fail_fast, on_result=report,
                        video=video, on_frame=frame_done)


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _upscale_stream(upscaler, fmt, quality):
    from ..imageio import ImageData, canonical_format, encode_image, read_image
    data = sys.stdin.buffer.read()
    if not data:
        raise click.ClickException("no image data on stdin")
    from ..imageio import AnimatedImage
    try:
        image = read_image(data)
    except AnimatedImage as exc:
        raise click.ClickException(f"stdin holds {exc.frames} frames: give an animation as a file "
                                   "(sr upscale anim.gif)") from None
    out_format = fmt
    if fmt == "same":
        try:
            out_format = canonical_format(image.source_format or "png")
        except ValueError:  # a format written only as an animation (GIF): PNG keeps every pixel
            out_format = "png"
    from ..provenance import make
    result = ImageData(pixels=upscaler(image.pixels), icc_profile=image.icc_profile, exif=image.exif,
                       source_format=image.source_format,
                       provenance=make(model=upscaler.model, scale=upscaler.scale, source="-"))
    write_stdout(encode_image(result, format=out_format, quality=quality))


def write_stdout(data: bytes) -> None:
    """Write all of ``data`` to stdout or raise OSError saying how much got out.

    Every write's count is checked (a full disk or ``ulimit -f`` can take part of one), a reader
    that closes early is an error, and where stdout is a regular file a failed write is cut back
    to where it started, so no partial image is left there.
    """
    import io
    import os
    import stat
    total = len(data)
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        fd = None  # not a real file (e.g. a test runner's buffer)
    if fd is None:
        written = sys.stdout.buffer.write(data)
        if written is not None and written != total:
            raise OSError(f"stdout took {written} of {total} bytes: the image is cut short")
        sys.stdout.buffer.flush()
        return
    sys.stdout.flush()
    start = None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            start = os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        pass
    view, written = memoryview(data), 0
    try:
        while written < total:
            count = os.write(fd, view[written: written + (1 << 20)])
            if count <= 0:
                raise OSError(f"stdout accepted nothing after {written} of {total} bytes")
            written += count
    except OSError as exc:
        removed = False
        if start is not None:
            try:
                os.ftruncate(fd, start)
                removed = True
            except OSError:
                pass
        try:  # nothing more can reach a closed stdout; stop Python complaining at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
        except OSError:
            pass
        reason = "the reader closed it" if isinstance(exc, BrokenPipeError) else exc.strerror or str(exc)
        raise OSError(f"stdout: wrote {written} of {total} bytes, then {reason}: the image is cut short"
                      + (" (and removed)" if removed else "")) from None
