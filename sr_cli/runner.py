"""Running a batch's jobs (planned by ``batch.py``) so that one bad file stops nothing.

The next image is decoded and the last ones encoded on background threads while the model
works on the current one; every output is written atomically. Videos (``video``) and animated
or multi-page images (``animation.py``) run as one job each, in their turn, with their own
pipeline, after the outputs before them are written.
"""
from __future__ import annotations

import os
import statistics
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

from .batch import Job, Result
from .errors import display, first_line
from .imageio import AnimatedImage, ImageData, read_image, write_image
from .video import is_video

PENDING_WRITE_BYTES = 256 << 20  # outputs (as pixels) waiting to be encoded at once, beyond the first


def run_jobs(jobs: list[Job], upscale: Callable, *, existing: str = "error", quality: int = 95,
             fail_fast: bool = False, on_result: Optional[Callable[[Result], None]] = None,
             video=None, on_frame: Optional[Callable[[int, Optional[int], float], None]] = None) -> list[Result]:
    """Run every job; a failure is recorded and the batch goes on (unless ``fail_fast``).

    ``existing`` says what to do when the output exists: "error", "skip" or "overwrite".
    Videos and animations need ``upscale`` to be an ``Upscaler``; ``video`` is a
    ``VideoOptions`` (codec, CRF, pixel format, frame range; the range applies to animations
    too) and ``on_frame(done, total, fps)`` reports their progress.
    """
    run = _BatchRun(upscale, existing=existing, quality=quality, on_result=on_result, video=video, on_frame=on_frame)
    runnable = run.triage(jobs)
    if not (fail_fast and any(r.status == "failed" for r in run.results)):
        run.run(runnable, fail_fast=fail_fast)
    return run.results


class _BatchRun:
    """One run of ``run_jobs``: its settings, its results in job order, and the engine's threads."""

    def __init__(self, upscale: Callable, *, existing: str, quality: int, on_result, video, on_frame):
        self.upscale, self.existing, self.quality = upscale, existing, quality
        self.on_result, self.video, self.on_frame = on_result, video, on_frame
        self.replace = existing == "overwrite"  # otherwise the final rename itself refuses an existing output
        self.results: list[Result] = []
        self.engines = getattr(upscale, "engines", None) or []
        self.original_threads = self.engines[0].threads if self.engines else 1
        self.chooser: Optional[ThreadChooser] = None

    def finish(self, result: Result) -> None:
        self.results.append(result)
        if self.on_result:
            self.on_result(result)

    def triage(self, jobs: list[Job]) -> list[Job]:
        """Finish the jobs that are skipped or fail before running (their reason known now); returns
        the others. Temporary files a killed run left of these outputs are removed first."""
        from .atomic import remove_stale_temporaries
        outputs: dict[Path, set[str]] = {}
        for job in jobs:
            if not job.error and not job.note:
                outputs.setdefault(job.destination.parent, set()).add(job.destination.name)
        for folder, names in sorted(outputs.items()):
            remove_stale_temporaries(folder, names)  # a running run's temporaries are kept
        runnable: list[Job] = []
        for job in jobs:
            verdict = self._verdict(job)
            if verdict == "skip":
                self.finish(Result(str(job.source), str(job.destination), "skipped"))
            elif verdict == "note":
                self.finish(Result(str(job.source), str(job.destination), "skipped", job.note))
            elif verdict:
                self.finish(Result(str(job.source), str(job.destination), "failed", verdict))
            else:
                runnable.append(job)
        return runnable

    def _verdict(self, job: Job) -> Optional[str]:
        """None to run the job; "skip", "note", or why it fails."""
        if job.note:
            return "note"
        if job.error:
            return job.error
        if not os.path.lexists(job.destination):
            return None
        if self.existing == "skip":
            return "skip"
        if self.existing != "overwrite":
            return f"{job.destination} exists (use --overwrite or --skip-existing)"
        from .provenance import UNTAGGED_SUFFIXES, read
        if read(job.destination) is None:  # not sr's: the user's own file, never replaced
            why = (f"{job.destination.suffix} files cannot carry sr's provenance tag"
                   if job.destination.suffix.lower() in UNTAGGED_SUFFIXES else "it has no sr provenance tag")
            return (f"{job.destination} exists and was not written by sr ({why}): it is never replaced, "
                    "not even with --overwrite; move it away or pick another -o/--suffix")
        return None

    def run(self, runnable: list[Job], *, fail_fast: bool) -> None:
        # Only where the thread count can change between images (torch on a CPU; ONNX Runtime fixes it).
        if len(runnable) > 1 and self.original_threads > 1 and self.set_threads(self.original_threads):
            self.chooser = ThreadChooser(self.original_threads)
        # Encoding (PNG deflate) can take several times as long as a small image's inference, so
        # several outputs are encoded at once, within a byte budget so large images stay one at a time.
        max_writes = max(2, min(4, os.cpu_count() or 1))
        with ThreadPoolExecutor(1, thread_name_prefix="sr-read") as reader, \
                ThreadPoolExecutor(max_writes, thread_name_prefix="sr-write") as writer:
            self.writes = _Writes(writer, max_writes, self)
            next_read: Optional[Future] = reader.submit(self.timed_read, runnable[0].source) if runnable else None
            try:
                for index, job in enumerate(runnable):
                    started = time.perf_counter()
                    current_read = next_read
                    next_read = (reader.submit(self.timed_read, runnable[index + 1].source)
                                 if index + 1 < len(runnable) else None)
                    failed, made = self.run_one(job, current_read, started)
                    if made is not None:
                        failed = self.writes.add(job, made, started)
                    failed = self.writes.collect_done() or failed
                    if failed and fail_fast:
                        break
                self.writes.drain()  # even after --fail-fast: outputs already made are written
                if next_read is not None:
                    next_read.cancel()
            finally:
                if self.chooser is not None:
                    self.set_threads(self.original_threads)

    def run_one(self, job: Job, read: Future, started: float) -> tuple[bool, Optional[tuple]]:
        """Upscale the image ``read`` brings; a video or an animation runs whole here. Returns
        whether the job failed and, for a still, (image to write, its input size, read seconds)."""
        try:
            try:
                image, read_seconds = read.result()
            except AnimatedImage:
                image = None
            if image is None:  # a video or an animation: after the outputs before it, in order
                failed = self.writes.drain()
                self.finish(self.run_frames(job, started))
                return failed, None
            in_size = (image.pixels.shape[1], image.pixels.shape[0])
            return False, (self.upscale_image(job, image), in_size, read_seconds)
        except Exception as exc:  # one bad file must not stop the batch
            result = _failure(job, exc, self.existing)
            self.finish(result)
            return result.status == "failed", None

    def upscale_image(self, job: Job, image: ImageData) -> ImageData:
        threads = self.chooser.threads() if self.chooser is not None else self.original_threads
        if self.chooser is not None:
            self.set_threads(threads)
        model_start = time.perf_counter()
        pixels = self.upscale(image.pixels)
        if self.chooser is not None:
            self.chooser.record_model(threads, time.perf_counter() - model_start,
                                      pixels.shape[0] * pixels.shape[1] / 1e6)
        return ImageData(pixels=pixels, icc_profile=image.icc_profile, exif=image.exif,
                         source_format=image.source_format, provenance=self.tag(job))

    def run_frames(self, job: Job, started: float) -> Result:
        """A video or an animation: its own pipeline, frame by frame."""
        self.set_threads(self.original_threads)
        job.destination.parent.mkdir(parents=True, exist_ok=True)
        if is_video(job.source):
            from .video import upscale_video
            stats = upscale_video(job.source, job.destination, self.upscale, options=self.video,
                                  on_frame=self.on_frame, replace=self.replace, provenance=self.tag(job))
        else:
            from .animation import upscale_animation
            stats = upscale_animation(job.source, job.destination, self.upscale, quality=self.quality,
                                      frames=getattr(self.video, "frames", None), on_frame=self.on_frame,
                                      replace=self.replace, provenance=self.tag(job))
        return Result(str(job.source), str(job.destination), "ok", None, round(time.perf_counter() - started, 3),
                      stats.input_size, stats.output_size, stats.frames, round(stats.fps, 3))

    def write(self, job: Job, image: ImageData, started: float, in_size, read_seconds: float) -> Result:
        start = time.perf_counter()
        job.destination.parent.mkdir(parents=True, exist_ok=True)
        write_image(job.destination, image, quality=self.quality, replace=self.replace)
        out_size = (image.pixels.shape[1], image.pixels.shape[0])
        if self.chooser is not None:
            self.chooser.record_io(read_seconds + time.perf_counter() - start, out_size[0] * out_size[1] / 1e6)
        return Result(str(job.source), str(job.destination), "ok", None,
                      round(time.perf_counter() - started, 3), in_size, out_size)

    @staticmethod
    def timed_read(path: Path):
        if is_video(path):
            return None, 0.0  # read by its own pipeline, in its turn
        start = time.perf_counter()
        return read_image(path), time.perf_counter() - start

    def set_threads(self, count: int) -> bool:
        return all([engine.set_threads(count) for engine in self.engines]) if self.engines else False

    def tag(self, job: Job) -> str:
        from .provenance import make
        return make(model=getattr(self.upscale, "model", None), scale=getattr(self.upscale, "scale", None),
                    source=job.source)


class _Writes:
    """Outputs being encoded, oldest first so that results keep the job order: at most ``most`` at
    once, and within ``PENDING_WRITE_BYTES`` beyond the first. Each method returns whether an
    output it collected failed."""

    def __init__(self, pool: ThreadPoolExecutor, most: int, run: _BatchRun):
        self.pool, self.most, self.run = pool, most, run
        self.pending: deque = deque()  # (job, future, bytes)
        self.bytes = 0

    def add(self, job: Job, made: tuple, started: float) -> bool:
        image, in_size, read_seconds = made
        size = image.pixels.nbytes
        failed = False
        while self.pending and (len(self.pending) >= self.most or self.bytes + size > PENDING_WRITE_BYTES):
            failed = self._collect_oldest() or failed
        self.pending.append((job, self.pool.submit(self.run.write, job, image, started, in_size, read_seconds), size))
        self.bytes += size
        return failed

    def collect_done(self) -> bool:
        failed = False
        while self.pending and self.pending[0][1].done():
            failed = self._collect_oldest() or failed
        return failed

    def drain(self) -> bool:
        failed = False
        while self.pending:
            failed = self._collect_oldest() or failed
        return failed

    def _collect_oldest(self) -> bool:
        job, future, size = self.pending.popleft()
        self.bytes -= size
        try:
            self.run.finish(future.result())
            return False
        except Exception as exc:
            result = _failure(job, exc, self.run.existing)
            self.run.finish(result)
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
