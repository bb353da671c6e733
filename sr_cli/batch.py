"""Batches of files: where each output goes (``find_inputs``, ``plan_jobs``, ``shard``).

Planning is pure (paths in, jobs out); ``runner.run_jobs`` runs the jobs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from . import imageio
from .errors import display
from .video import VIDEO_SUFFIXES, WRITABLE_VIDEO_SUFFIXES, is_video

READABLE_SUFFIXES = imageio.READABLE_SUFFIXES | VIDEO_SUFFIXES
# .gif and .apng: animations only (a still GIF is written as PNG).
WRITABLE_SUFFIXES = imageio.WRITABLE_SUFFIXES | WRITABLE_VIDEO_SUFFIXES


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
