"""Batches of files: where each output goes, and running them so one bad file stops nothing.

Planning is pure (paths in, jobs out). Running decodes the next image and
encodes the last one on background threads while the model works on the
current one; every output is written atomically. Videos (``video.py``) and
animated or multi-page images (``animation.py``) run in the batch as one job each,
in their turn, with their own pipeline.
"""
from __future__ import annotations

import os
import statistics
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from . import imageio
from .errors import display, first_line
from .video import VIDEO_SUFFIXES, WRITABLE_VIDEO_SUFFIXES, is_video

READABLE_SUFFIXES = imageio.READABLE_SUFFIXES | VIDEO_SUFFIXES
# .gif and .apng: animations only (a still GIF is written as PNG).
WRITABLE_SUFFIXES = imageio.WRITABLE_SUFFIXES | WRITABLE_VIDEO_SUFFIXES
PENDING_WRITE_BYTES = 256 << 20  # outputs (as pixels) waiting to be encoded at once, beyond the first


@dataclass
class Job:
    source: Path
    destination: Path
    error: Optional[str] = None  # known before running (e.g. two inputs map to one output)
    note: Optional[str] = None   # skipped before running, and why (an earlier run's output)


@dataclass
class Result:
    source: str
    destination: str
    status: str  # "ok", "skipped" or "failed"
    error: Optional[str] = None
    seconds: float = 0.0
    input_size: Optional[tuple[int, int]] = None   # width, height
    output_size: Optional[tuple[int, int]] = None
    frames: Optional[int] = None  # videos and animations: frames written
    fps: Optional[float] = None   # videos and animations: frames per second, start to finish

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()
                if v is not None or k not in ("frames", "fps")}


def scale_text(scale: float) -> str:
    return str(int(scale)) if float(scale).is_integer() else f"{scale:g}"


def find_inputs(inputs: Iterable[str], *, recursive: bool,
                exclude: Optional[Path] = None) -> list[tuple[Path, Optional[Path]]]:
    """Expand files and folders into (image file, folder it was found under or None).

    Walking a folder leaves out anything inside ``exclude`` (the output folder, when it
    lies inside an input folder), so one run's outputs are not the next run's inputs.
    A named file that does not exist (or is a symlink loop) is kept: its job fails alone.
    """
    skip = exclude.resolve() if exclude is not None else None
    found: list[tuple[Path, Optional[Path]]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            root = path.resolve()
            files = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in READABLE_SUFFIXES)
            if skip is not None and skip != root and _inside(skip, root):
                files = [f for f in files if not _inside(f.resolve(), skip)]
            found += [(f, path) for f in files]
        else:
            found.append((path, None))
    return found


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan_jobs(inputs: list[tuple[Path, Optional[Path]]], *, output: Optional[Path], fmt: str,
              suffix: Optional[str], scale: float) -> list[Job]:
    """Decide each output path. ``output`` is a file only for a single file input.

    No job may write over any input of the run, not even with --overwrite. A file found
    in a folder where another found file's output would go (``a_x2.png`` beside ``a.png``)
    is an earlier run's output only if it carries sr's provenance tag naming that source
    (provenance.py): then it is not taken as an input (its job is "skipped"), and --overwrite
    may replace it. Without the tag it is the user's own file, a real input, and protected;
    names and sizes are never taken as proof.
    """
    single_file = len(inputs) == 1 and inputs[0][1] is None
    output_is_file = (output is not None and not output.is_dir()
                      and output.suffix.lower() in WRITABLE_SUFFIXES)
    if output_is_file and not single_file:
        raise ValueError(f"{output} looks like a file, but several images are being upscaled: give a folder")
    if suffix is None:
        suffix = f"_x{scale_text(scale)}" if output is None else ""

    def destination_of(source: Path, root: Optional[Path]) -> Path:
        if output_is_file:
            return output
        folder = source.parent if output is None else output
        if output is not None and root is not None:
            folder = output / source.parent.relative_to(root)  # mirror the tree under OUTPUT
        return folder / f"{source.stem}{suffix}{_output_suffix(source, fmt)}"

    walked = {_key(source): source for source, root in inputs if root is not None}
    earlier: dict[Path, Path] = {}  # an earlier run's output found in a folder -> its source
    for source, root in inputs:
        if root is None:
            continue
        key = _key(destination_of(source, root))
        if key in walked and key != _key(source) and _made_from(walked[key], source):
            earlier[key] = source
    protected = {_key(source) for source, _ in inputs if _key(source) not in earlier}
    protected_ids = {_file_id(source) for source, _ in inputs if _key(source) not in earlier} - {None}

    jobs: list[Job] = []
    claimed: dict[Path, Path] = {}
    for source, root in inputs:
        key = _key(source)
        if key in earlier:
            job = Job(source, source, note=f"an earlier output of {display(earlier[key])}, not an input")
            jobs.append(job)
            continue
        job = Job(source, destination_of(source, root))
        target = _key(job.destination)
        if not source.is_file():
            job.error = _missing(source)
        elif target == key or _file_id(job.destination) == _file_id(source):
            job.error = "output would overwrite the input; use -o or --suffix"
        elif target in protected or _file_id(job.destination) in protected_ids:
            job.error = (f"output {display(job.destination)} is itself an input of this run and is never "
                         "overwritten; use -o or --suffix")
        elif target in claimed:
            job.error = f"output {display(job.destination)} is also the output of {display(claimed[target])}"
        else:
            claimed[target] = source
        jobs.append(job)
    return jobs


def _key(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return path.absolute()


def _file_id(path: Path) -> Optional[tuple[int, int]]:
    """(device, inode): the same file under two names (hard links, case-insensitive folders)."""
    try:
        info = path.stat()
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _missing(path: Path) -> str:
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            return "symlink loop"
        if path.is_symlink():
            return "broken symlink"
        return "no such file or folder" if exc.errno == 2 else (exc.strerror or str(exc))
    return "not a regular file"


def _made_from(candidate: Path, source: Path) -> bool:
    """Whether ``candidate`` carries sr's provenance tag naming ``source`` (its file name)."""
    from .provenance import read
    tag = read(candidate)
    return tag is not None and tag.get("source") == source.name


def _output_suffix(source: Path, fmt: str) -> str:
    if is_video(source):  # -f is for images: a clip keeps its container (or goes into Matroska)
        from .video import output_suffix
        return output_suffix(source)
    if source.suffix.lower() in imageio.ANIMATION_FORMATS.keys() - imageio.STILL_SUFFIXES:  # .gif, .apng
        if imageio.frame_count(source) > 1:  # an animated GIF stays a GIF ('same'), or -f's animation format
            from .animation import output_suffix
            try:
                return output_suffix(source, fmt)
            except ValueError:
                pass  # the job fails when it runs, with the same line
    if fmt == "same":
        suffix = source.suffix.lower()
        return suffix if suffix in WRITABLE_SUFFIXES else ".png"
    try:
        return imageio.format_suffix(fmt)
    except ValueError:
        raise ValueError(f"unknown format {fmt!r} ({', '.join(['same', *imageio.FORMAT_SUFFIXES])})") from None


def shard(items: list, spec: Optional[str]) -> list:
    """Every N-th item starting at K, for ``spec`` "K/N" (job arrays split a folder this way)."""
    if not spec:
        return items
    try:
        k, n = (int(part) for part in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes K/N, e.g. 0/4, got {spec!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard K/N needs 0 <= K < N, got {spec!r}")
    return items[k::n]


class ThreadChooser:
    """Chooses the engine's CPU thread count during a batch, from what it measures.

    With every core on the model, the background decode/encode threads find no idle
    core and in effect run in series with it; with one core fewer they overlap it.
    Which wins depends on the ratio of model time to I/O time (small images: I/O
    matters; large ones: the model), so the first images run both ways and are timed.
    """

    def __init__(self, cores: int):
        self.options = (cores, cores - 1)
        self.model_rate: dict[int, list[float]] = {k: [] for k in self.options}  # s per output MP
        self.io_rate: list[float] = []

    def threads(self) -> int:
        for option in self.options:
            if not self.model_rate[option]:
                return option
        if not self.io_rate:
            return self.options[0]
        full, fewer = (statistics.median(self.model_rate[k]) for k in self.options)
        io = statistics.median(self.io_rate)
        return self.options[1] if max(fewer, io) < full + io else self.options[0]

    def record_model(self, threads: int, seconds: float, megapixels: float) -> None:
        self.model_rate[threads].append(seconds / max(megapixels, 1e-6))

    def record_io(self, seconds: float, megapixels: float) -> None:
        self.io_rate.append(seconds / max(megapixels, 1e-6))


def run_jobs(jobs: list[Job], upscale: Callable, *, existing: str = "error", quality: int = 95,
             fail_fast: bool = False, on_result: Optional[Callable[[Result], None]] = None,
             video=None, on_frame: Optional[Callable[[int, Optional[int], float], None]] = None) -> list[Result]:
    """Run every job; a failure is recorded and the batch goes on (unless ``fail_fast``).

    ``existing`` says what to do when the output exists: "error", "skip" or "overwrite".
    Videos and animations need ``upscale`` to be an ``Upscaler``; ``video`` is a
    ``VideoOptions`` (codec, CRF, pixel format, frame range; the range applies to animations
    too) and ``on_frame(done, total, fps)`` reports their progress.
    """
    from .atomic import remove_stale_temporaries
    from .imageio import AnimatedImage, ImageData, read_image, write_image

    replace = existing == "overwrite"  # otherwise the final rename itself refuses an existing output

    def tag(job: Job) -> str:
        from .provenance import make
        return make(model=getattr(upscale, "model", None), scale=getattr(upscale, "scale", None), source=job.source)
    results: list[Result] = []
    outputs: dict[Path, set[str]] = {}
    for job in jobs:
        if not job.error and not job.note:
            outputs.setdefault(job.destination.parent, set()).add(job.destination.name)
    for folder, names in sorted(outputs.items()):
        remove_stale_temporaries(folder, names)  # what a killed run left of these outputs; a running one's are kept

    def finish(result: Result) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    def prepare(job: Job) -> Optional[str]:
        if job.note:
            return "note"
        if job.error:
            return job.error
        if not os.path.lexists(job.destination):
            return None
        if existing == "skip":
            return "skip"
        if existing != "overwrite":
            return f"{job.destination} exists (use --overwrite or --skip-existing)"
        from .provenance import UNTAGGED_SUFFIXES, read
        if read(job.destination) is None:  # not sr's: the user's own file, never replaced
            why = (f"{job.destination.suffix} files cannot carry sr's provenance tag"
                   if job.destination.suffix.lower() in UNTAGGED_SUFFIXES else "it has no sr provenance tag")
            return (f"{job.destination} exists and was not written by sr ({why}): it is never replaced, "
                    "not even with --overwrite; move it away or pick another -o/--suffix")
        return None

    runnable: list[Job] = []
    for job in jobs:
        verdict = prepare(job)
        if verdict == "skip":
            finish(Result(str(job.source), str(job.destination), "skipped"))
        elif verdict == "note":
            finish(Result(str(job.source), str(job.destination), "skipped", job.note))
        elif verdict:
            finish(Result(str(job.source), str(job.destination), "failed", verdict))
        else:
            runnable.append(job)
    if fail_fast and any(r.status == "failed" for r in results):
        return results

    engines = getattr(upscale, "engines", None) or []
    original_threads = engines[0].threads if engines else 1

    def set_threads(count: int) -> bool:
        return all([engine.set_threads(count) for engine in engines]) if engines else False

    # Only where the thread count can change between images (torch on a CPU; ONNX Runtime fixes it).
    adjustable = len(runnable) > 1 and original_threads > 1 and set_threads(original_threads)
    chooser = ThreadChooser(original_threads) if adjustable else None

    def timed_read(path: Path):
        if is_video(path):
            return None, 0.0  # read by its own pipeline, in its turn
        start = time.perf_counter()
        return read_image(path), time.perf_counter() - start

    def run_frames(job: Job, started: float) -> Result:
        """A video or an animation: its own pipeline, frame by frame."""
        set_threads(original_threads)
        job.destination.parent.mkdir(parents=True, exist_ok=True)
        if is_video(job.source):
            from .video import upscale_video
            stats = upscale_video(job.source, job.destination, upscale, options=video, on_frame=on_frame,
                                  replace=replace, provenance=tag(job))
        else:
            from .animation import upscale_animation
            stats = upscale_animation(job.source, job.destination, upscale, quality=quality,
                                      frames=getattr(video, "frames", None), on_frame=on_frame,
                                      replace=replace, provenance=tag(job))
        return Result(str(job.source), str(job.destination), "ok", None, round(time.perf_counter() - started, 3),
                      stats.input_size, stats.output_size, stats.frames, round(stats.fps, 3))

    def write(job: Job, image, started: float, in_size, read_seconds: float) -> Result:
        start = time.perf_counter()
        job.destination.parent.mkdir(parents=True, exist_ok=True)
        write_image(job.destination, image, quality=quality, replace=replace)
        out_size = (image.pixels.shape[1], image.pixels.shape[0])
        if chooser is not None:
            chooser.record_io(read_seconds + time.perf_counter() - start, out_size[0] * out_size[1] / 1e6)
        return Result(str(job.source), str(job.destination), "ok", None,
                      round(time.perf_counter() - started, 3), in_size, out_size)

    # Encoding (PNG deflate) can take several times as long as a small image's inference, so
    # several outputs are encoded at once, within a byte budget so large images stay one at a time.
    max_writes = max(2, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(1, thread_name_prefix="sr-read") as reader, \
            ThreadPoolExecutor(max_writes, thread_name_prefix="sr-write") as writer:
        pending: deque = deque()  # (job, future, bytes), oldest first: results keep the job order
        pending_bytes = 0

        def collect_oldest() -> bool:
            nonlocal pending_bytes
            job, future, size = pending.popleft()
            pending_bytes -= size
            return _collect(job, future, finish, existing)

        next_read: Optional[Future] = reader.submit(timed_read, runnable[0].source) if runnable else None
        try:
            for index, job in enumerate(runnable):
                started = time.perf_counter()
                current_read = next_read
                next_read = (reader.submit(timed_read, runnable[index + 1].source)
                             if index + 1 < len(runnable) else None)
                failed = False
                try:
                    try:
                        image, read_seconds = current_read.result()
                    except AnimatedImage:
                        image = None
                    if image is None:  # a video or an animation: after the outputs before it, in order
                        while pending:
                            failed = collect_oldest() or failed
                        finish(run_frames(job, started))
                        if failed and fail_fast:
                            break
                        continue
                    in_size = (image.pixels.shape[1], image.pixels.shape[0])
                    threads = chooser.threads() if chooser is not None else original_threads
                    if chooser is not None:
                        set_threads(threads)
                    model_start = time.perf_counter()
                    pixels = upscale(image.pixels)
                    if chooser is not None:
                        chooser.record_model(threads, time.perf_counter() - model_start,
                                             pixels.shape[0] * pixels.shape[1] / 1e6)
                    upscaled = ImageData(pixels=pixels, icc_profile=image.icc_profile,
                                         exif=image.exif, source_format=image.source_format, provenance=tag(job))
                except Exception as exc:  # one bad file must not stop the batch
                    result = _failure(job, exc, existing)
                    finish(result)
                    failed = result.status == "failed"
                if not failed:
                    size = upscaled.pixels.nbytes
                    while pending and (len(pending) >= max_writes or pending_bytes + size > PENDING_WRITE_BYTES):
                        failed = collect_oldest() or failed
                    pending.append((job, writer.submit(write, job, upscaled, started, in_size, read_seconds), size))
                    pending_bytes += size
                while pending and pending[0][1].done():
                    failed = collect_oldest() or failed
                if failed and fail_fast:
                    break
            while pending:  # even after --fail-fast: outputs already made are written
                collect_oldest()
            if next_read is not None:
                next_read.cancel()
        finally:
            if chooser is not None:
                set_threads(original_threads)
    return results


def _collect(job: Job, future: Future, finish: Callable[[Result], None], existing: str = "error") -> bool:
    try:
        finish(future.result())
        return False
    except Exception as exc:
        result = _failure(job, exc, existing)
        finish(result)
        return result.status == "failed"


def _failure(job: Job, exc: BaseException, existing: str) -> Result:
    """The result of a job that raised: an output another run published first (between our check
    and our rename) is "skipped" with --skip-existing and otherwise fails as "exists"."""
    from .atomic import OutputExists
    if isinstance(exc, OutputExists):
        if existing == "skip":
            return Result(str(job.source), str(job.destination), "skipped", "written meanwhile by another run")
        return Result(str(job.source), str(job.destination), "failed",
                      f"{display(job.destination)} exists (written meanwhile by another run; "
                      "use --overwrite or --skip-existing)")
    return Result(str(job.source), str(job.destination), "failed",
                  first_line(exc, names=(str(job.source), str(job.destination))))
