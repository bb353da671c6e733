"""Adversarial suite (#22): hostile inputs, names, destinations, model files and signals.

Every case checks the contract a user relies on: the exit status; one line on stderr per failed
file, naming it and the reason; no traceback; no partial or temporary file left; no input
changed (checksums before and after); the other files of the batch still written. Images are
tiny and built on the fly; the model is a tiny LiteSR x2 written here. A few cases need a real
process (signals, ``ulimit -f``, closed pipes); the rest run in-process through Click's runner.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_LITESR, random_net, smooth_image
from PIL import Image
from safetensors.torch import save_file

from sr_cli.archs import build_arch
from sr_cli.batch import display
from sr_cli.cli import cli
from sr_cli.weights import save_model

TINY = {"scale": 2, **TINY_LITESR}
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(random_net("litesr", **TINY), path, arch="litesr", params=TINY)
    return path


def png(path: Path, pixels: np.ndarray, mode: str | None = None, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels, mode)
    image.save(path, **options)
    return path


def noise(h: int, w: int, c: int = 3) -> np.ndarray:
    return np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, c), dtype=np.uint8)


def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of ours (or anybody's) under ``folder``."""
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def upscale(*args, input: bytes | None = None):
    return CliRunner().invoke(cli, ["upscale", *map(str, args)], input=input)


def failed_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("failed ")]


def assert_clean(result, code: int) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception


def assert_failed(result, name, reason: str) -> None:
    """Exactly one stderr line names ``name`` and gives ``reason``."""
    lines = [line for line in failed_lines(result) if display(name) in line]
    assert len(lines) == 1, (name, result.stderr)
    assert reason.lower() in lines[0].lower(), (reason, lines[0])


def assert_image(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        image.load()  # the whole file decodes: nothing cut short
        assert image.size == size


def sr_process(*args, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    def default_signals():  # a parent that ignores SIGINT (a background job) would pass that on
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    return subprocess.Popen([sys.executable, "-m", "sr_cli", *map(str, args)], env=env,
                            preexec_fn=default_signals, **popen)


# ----------------------------------------------------------------------------- hostile images

def bomb_png() -> bytes:
    """A valid-looking PNG header claiming 100000 x 100000 pixels, with almost no data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_hostile_images_fail_alone_and_the_rest_are_written(model, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    png(src / "good.png", smooth_image(6, 7, 3))
    good_bytes = (src / "good.png").read_bytes()
    (src / "zero.png").write_bytes(b"")
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (src / "truncated.png").write_bytes(good_bytes[: len(good_bytes) // 2])
    (src / "text.png").write_text("hello, not an image\n")
    (src / "bomb.png").write_bytes(bomb_png())
    (src / "looks_like.jpg").write_bytes(good_bytes)  # a PNG under a .jpg name: read by content
    png(src / "one_pixel.png", noise(1, 1))
    png(src / "tall.png", noise(300, 1))
    png(src / "wide.png", noise(1, 300))
    png(src / "alpha.png", noise(5, 6, 4), "RGBA")
    png(src / "grey_alpha.png", noise(5, 6, 2), "LA")
    png(src / "palette.png", noise(5, 6)).unlink()
    Image.fromarray(noise(5, 6)).convert("P").save(src / "palette.png")
    Image.new("CMYK", (5, 4), (0, 255, 255, 0)).save(src / "cmyk.jpg")
    deep = (smooth_image(5, 6, 3, np.uint16))
    import cv2
    cv2.imwrite(str(src / "sixteen.png"), deep[:, :, ::-1])
    frames = [Image.new("RGB", (4, 4), colour) for colour in ("red", "blue", "green")]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(src / "pages.tif", save_all=True, append_images=frames[1:2])
    frames[0].save(src / "apng.png", save_all=True, append_images=frames[1:])
    before = checksums(src)

    result = upscale(src, "-o", out, "-s", 2, "-m", model, "--quiet", "--json")
    assert_clean(result, 1)
    for name, reason in [("zero.png", "cannot read"), ("corrupt.png", "cannot read"),
                         ("truncated.png", "cannot read"), ("text.png", "cannot read"),
                         ("bomb.png", "decompression bomb")]:
        assert_failed(result, src / name, reason)
        assert not list(out.glob(Path(name).stem + ".*"))
    assert len(failed_lines(result)) == 5
    for name, size in [("good.png", (14, 12)), ("looks_like.jpg", (14, 12)), ("one_pixel.png", (2, 2)),
                       ("tall.png", (2, 600)), ("wide.png", (600, 2)), ("alpha.png", (12, 10)),
                       ("grey_alpha.png", (12, 10)), ("palette.png", (12, 10)), ("cmyk.jpg", (10, 8)),
                       ("sixteen.png", (12, 10))]:
        assert_image(out / name, size)
    assert cv2.imread(str(out / "sixteen.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert Image.open(out / "alpha.png").mode == "RGBA"
    # Animations and multi-page files: every frame (page) upscaled, never cut to the first.
    for name, count in [("anim.gif", 3), ("pages.tif", 2), ("apng.png", 3)]:
        with Image.open(out / name) as im:
            assert (im.n_frames, im.size) == (count, (8, 8))
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["failed"]) == (13, 5)
    assert checksums(src) == before and not leftovers(tmp_path)


def test_unreadable_and_special_files_named_on_the_command_line(model, tmp_path):
    good = png(tmp_path / "good.png", smooth_image(6, 6, 3))
    loop = tmp_path / "loop.png"
    os.symlink(tmp_path / "loop2.png", loop)
    os.symlink(loop, tmp_path / "loop2.png")
    dangling = tmp_path / "dangling.png"
    os.symlink(tmp_path / "nowhere.png", dangling)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)  # reading it would block forever
    folder_named_png = tmp_path / "folder.png"
    folder_named_png.mkdir()
    cases = [(loop, "symlink loop"), (dangling, "broken symlink"), (fifo, "not a regular file"),
             (tmp_path / "missing.png", "no such file")]
    if not ROOT:  # root reads anything: permissions cannot make a file unreadable
        locked = png(tmp_path / "locked.png", smooth_image(6, 6, 3))
        locked.chmod(0)
        cases.append((locked, "permission denied"))
    result = upscale(good, *(path for path, _ in cases), "-s", 2, "-m", model, "--quiet")
    assert_clean(result, 1)
    for path, reason in cases:
        assert_failed(result, path, reason)
    assert_image(tmp_path / "good_x2.png", (12, 12))
    assert not leftovers(tmp_path)


def test_symlink_loops_inside_a_folder_walk_end(model, tmp_path):
    src = tmp_path / "in"
    png(src / "a" / "x.png", smooth_image(6, 6, 3))
    os.symlink("..", src / "a" / "up")       # a directory loop
    os.symlink("self.png", src / "self.png")  # a file loop
    result = upscale(src, "-r", "-o", tmp_path / "out", "-s", 2, "-m", model, "--quiet")
    assert_clean(result, 0)
    assert_image(tmp_path / "out" / "a" / "x.png", (12, 12))


ODD_NAMES = ["with space.png", "unicodé 日本.png", "new\nline.png", "[red]markup[red].png", "[bold].png", "[link=x]y.png",
             "esc\x1b[31mape.png", "tab\there.png", "dash -x.png", os.fsdecode(b"bytes\xff.png")]


@pytest.mark.parametrize("quiet", [True, False])
def test_odd_file_names_are_one_line_and_stop_nothing(model, tmp_path, quiet):
    src = tmp_path / "in"
    for name in ODD_NAMES:
        png(src / name, smooth_image(5, 5, 3))
    (src / "bad\nname [x].png").write_bytes(b"junk")
    before = checksums(src)
    result = upscale(src, "-s", 2, "-m", model, *(["--quiet"] if quiet else []))
    assert_clean(result, 1)
    assert len(failed_lines(result)) == 1
    assert_failed(result, src / "bad\nname [x].png", "cannot read")
    assert "\x1b" not in result.stderr  # no escape code reaches the terminal
    for name in ODD_NAMES:
        stem = name[: -len(".png")]
        assert_image(src / f"{stem}_x2.png", (10, 10))
        if not quiet:
            assert sum(display(src / name) in line for line in result.stderr.splitlines()) == 1
    assert {k: v for k, v in checksums(src).items() if "_x2" not in k} == before
    assert not leftovers(tmp_path)


# ----------------------------------------------------------------------------- collisions

def test_overwrite_never_replaces_an_input(model, tmp_path):
    src = tmp_path / "in"
    png(src / "a.png", smooth_image(6, 6, 3))
    png(src / "a_x2.png", smooth_image(7, 9, 3))  # a real input that happens to have that name
    png(src / "b.png", smooth_image(6, 6, 3))
    before = checksums(src)
    result = upscale(src, "-s", 2, "-m", model, "--overwrite", "--quiet")
    assert_clean(result, 1)
    assert_failed(result, src / "a.png", "is itself an input")
    assert checksums(src).items() >= before.items()  # every input byte for byte as it was
    assert_image(src / "a_x2_x2.png", (18, 14))
    assert_image(src / "b_x2.png", (12, 12))
    # Named explicitly, too; and through a hard link (the same file under another name).
    result = upscale(src / "a.png", src / "a_x2.png", "-s", 2, "-m", model, "--overwrite", "--quiet")
    assert_clean(result, 1)
    assert_failed(result, src / "a.png", "is itself an input")
    out = tmp_path / "out"
    out.mkdir()
    os.link(src / "b.png", out / "b.png")
    result = upscale(src / "b.png", "-o", out, "-s", 2, "-m", model, "--overwrite", "--quiet")
    assert_clean(result, 1)
    assert_failed(result, src / "b.png", "overwrite the input")
    assert checksums(src).items() >= before.items() and not leftovers(tmp_path)


def test_an_earlier_runs_outputs_are_not_taken_as_inputs(model, tmp_path):
    src = tmp_path / "in"
    png(src / "a.png", smooth_image(6, 6, 3))
    png(src / "sub" / "b.png", smooth_image(5, 5, 3))
    assert_clean(upscale(src, "-s", 2, "-m", model, "--quiet"), 0)
    first = checksums(src)
    # Again: a_x2.png (twice a.png's size) is a.png's earlier output, not a new input.
    result = upscale(src, "-s", 2, "-m", model, "--skip-existing", "--json")
    assert_clean(result, 0)
    assert not (src / "a_x2_x2.png").exists() and checksums(src) == first
    result = upscale(src, "-s", 2, "-m", model, "--overwrite", "--quiet")
    assert_clean(result, 0)
    assert not (src / "a_x2_x2.png").exists() and sorted(checksums(src)) == sorted(first)
    # Outputs under -o inside the input tree are not walked into by the next run.
    for _ in range(2):
        result = upscale(src, "-r", "-o", src / "big", "-s", 2, "-m", model, "--skip-existing", "--quiet")
        assert_clean(result, 0)
    assert not (src / "big" / "big").exists()
    assert_image(src / "big" / "sub" / "b.png", (10, 10))
    assert not leftovers(tmp_path)


def test_outputs_colliding_with_each_other(model, tmp_path):
    src = tmp_path / "in"
    png(src / "a.png", smooth_image(6, 6, 3))
    png(src / "a.jpg", smooth_image(6, 6, 3), quality=95)
    result = upscale(src, "-s", 2, "-m", model, "-f", "png", "--quiet")
    assert_clean(result, 1)
    assert len(failed_lines(result)) == 1 and "also the output of" in failed_lines(result)[0]
    assert_image(src / "a_x2.png", (12, 12))


def test_destination_that_cannot_be_written(model, tmp_path):
    good = png(tmp_path / "a.png", smooth_image(6, 6, 3))
    (tmp_path / "file").write_text("a file, not a folder")
    # Refused before the model is loaded: a usage error naming what is wrong.
    result = upscale(good, "-o", tmp_path / "file" / "out", "-s", 2, "-m", model, "--quiet")
    assert_clean(result, 2)
    assert "is not a folder" in result.stderr
    if not ROOT:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        result = upscale(good, "-o", locked, "-s", 2, "-m", model, "--quiet")
        assert_clean(result, 2)
        assert "permission denied" in result.stderr
    assert not leftovers(tmp_path)


@pytest.mark.subprocess
def test_full_destination_ulimit(model, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    png(src / "big.png", noise(160, 160))  # ~300 KB as a PNG output: over the limit
    png(src / "small.png", smooth_image(4, 4, 3))
    before = checksums(src)
    command = (f"ulimit -f 64; exec {sys.executable} -m sr_cli upscale {src} -o {out} -s 2 "
               f"-m {model} --quiet")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("failed ")]
    assert len(lines) == 1 and "big.png" in lines[0] and "too large" in lines[0].lower()
    assert not (out / "big.png").exists() and not leftovers(tmp_path)
    assert_image(out / "small.png", (8, 8))
    assert checksums(src) == before


# ----------------------------------------------------------------------------- stdout

def test_stdout_happy_path_and_refusals(model, tmp_path):
    data = io.BytesIO()
    Image.fromarray(smooth_image(5, 7, 3)).save(data, format="PNG")
    result = upscale("-", "-s", 2, "-m", model, input=data.getvalue())
    assert_clean(result, 0)
    assert Image.open(io.BytesIO(result.stdout_bytes)).size == (14, 10)
    result = upscale("-", "-s", 2, "-m", model, input=b"garbage")
    assert_clean(result, 1)
    assert result.stdout_bytes == b"" and "cannot read image" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.subprocess
def test_stdout_closed_early_is_an_error(model, tmp_path):
    source = png(tmp_path / "in.png", noise(128, 128))  # output ~200 KB: more than a pipe holds
    with open(source, "rb") as stdin:
        process = sr_process("upscale", "-", "-s", 2, "-m", model, stdin=stdin, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        process.stdout.close()  # the reader goes away before reading anything
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=120) == 1, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "reader closed" in lines[0] and "cut short" in lines[0]


@pytest.mark.subprocess
def test_stdout_short_write_is_an_error_and_leaves_no_partial_image(model, tmp_path):
    source = png(tmp_path / "in.png", noise(128, 128))
    target = tmp_path / "out.png"
    command = f"ulimit -f 32; exec {sys.executable} -m sr_cli upscale - -s 2 -m {model} < {source} > {target}"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cut short" in lines[0] and "Traceback" not in done.stderr
    assert target.stat().st_size == 0  # what the shell created, with nothing partial in it


# ----------------------------------------------------------------------------- signals

@pytest.fixture(scope="module")
def slow_batch(tmp_path_factory) -> Path:
    """Enough work that a signal sent after the first output lands mid-batch."""
    folder = tmp_path_factory.mktemp("slow") / "in"
    for index in range(24):
        png(folder / f"{index:02d}.png", noise(128 + index, 128))
    return folder


@pytest.mark.subprocess
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_signal_mid_batch_then_skip_existing_completes(model, slow_batch, tmp_path, signum, code):
    src = tmp_path / "in"
    shutil.copytree(slow_batch, src)
    before = checksums(src)
    out = tmp_path / "out"
    process = sr_process("upscale", src, "-o", out, "-s", 2, "-m", model, "--quiet",
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(p.suffix == ".png" for p in out.iterdir())):
        assert process.poll() is None and time.monotonic() < deadline, "no output appeared"
        time.sleep(0.02)
    process.send_signal(signum)
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == code, stderr
    assert "Traceback" not in stderr
    if signum != signal.SIGKILL:
        assert not leftovers(tmp_path) and "interrupted" in stderr
    for path in out.glob("*.png"):  # whatever was written is whole
        width, height = Image.open(src / path.name).size
        assert_image(path, (2 * width, 2 * height))
    result = upscale(src, "-o", out, "-s", 2, "-m", model, "--skip-existing", "--quiet")
    assert_clean(result, 0)
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # all there, no temp file left
    assert checksums(src) == before


@pytest.mark.subprocess
def test_stale_temporaries_of_dead_runs_are_removed_live_ones_kept(model, tmp_path):
    from sr_cli import atomic
    src = png(tmp_path / "a.png", smooth_image(6, 6, 3))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".a_x2.png.sr-{dead.pid}-{atomic._HOST}-0123abcd.tmp"
    live = tmp_path / f".b_x2.png.sr-{os.getpid()}-{atomic._HOST}-0123abcd.tmp"
    other_host = tmp_path / f".c_x2.png.sr-{dead.pid}-ffffff-0123abcd.tmp"
    unrelated = tmp_path / "notes.tmp"
    # Also (#31): of the temporary pattern and a dead process, but of no output of this run: kept.
    not_ours = tmp_path / f".holiday.jpg.sr-{dead.pid}-{atomic._HOST}-0123abcd.tmp"
    for path in (stale, live, other_host, unrelated, not_ours):
        path.write_bytes(b"partial")
    if atomic._HOST == "ffffff":
        pytest.skip("this host's tag collides with the test's other-host tag")
    result = upscale(src, "-s", 2, "-m", model, "--quiet")
    assert_clean(result, 0)
    assert not stale.exists() and live.exists() and other_host.exists() and unrelated.exists()
    assert not_ours.exists()


# ----------------------------------------------------------------------------- hostile model files

class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _model_cases(folder: Path) -> list[tuple[Path, str]]:
    params = dict(TINY)
    state = build_arch("litesr", **params).state_dict()
    meta = {"format": "sr-cli/1", "arch": "litesr", "scale": "2", "params": json.dumps(params)}
    cases = []

    def add(name, reason, write):
        path = folder / name
        write(path)
        cases.append((path, reason))

    add("pickle.pth", "refused", lambda p: torch.save({"w": _RunsCode()}, p))
    add("raw_pickle.pt", "convert it to .safetensors", lambda p: p.write_bytes(pickle.dumps({"w": _RunsCode()})))
    add("list.pth", "not a state dict", lambda p: torch.save([1, 2, 3], p))
    add("zero.safetensors", "not a readable", lambda p: p.write_bytes(b""))
    add("huge_header.safetensors", "not a readable",
        lambda p: p.write_bytes(struct.pack("<Q", 2**62) + b"{}"))
    add("lying_offsets.safetensors", "not a readable", lambda p: p.write_bytes(
        (lambda h: struct.pack("<Q", len(h)) + h)(json.dumps(
            {"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4000000]}}).encode()) + b"\0" * 16))
    add("absurd.safetensors", "num_feat=1000000000", lambda p: save_file(
        state, str(p), metadata={**meta, "params": json.dumps({**params, "num_feat": 10**9})}))
    add("absurd_blocks.safetensors", "num_blocks=100000000", lambda p: save_file(
        state, str(p), metadata={**meta, "params": json.dumps({**params, "num_blocks": 10**8})}))
    add("shape.safetensors", "has shape", lambda p: save_file(
        state, str(p), metadata={**meta, "params": json.dumps({**params, "num_feat": 16})}))
    add("missing.safetensors", "missing", lambda p: save_file(
        dict(list(state.items())[:-1]), str(p), metadata=meta))
    add("int.safetensors", "floating-point", lambda p: save_file(
        {k: v.to(torch.int32) for k, v in state.items()}, str(p), metadata=meta))
    add("nan.safetensors", "nan", lambda p: save_file(
        {k: torch.full_like(v, float("nan")) for k, v in state.items()}, str(p), metadata=meta))
    add("inf.pth", "nan or infinite", lambda p: torch.save(
        {k: torch.full_like(v, float("inf")) for k, v in build_arch("srvgg", scale=2, num_feat=4,
                                                                    num_conv=1).state_dict().items()}, p))
    add("params_not_json.safetensors", "not json", lambda p: save_file(
        state, str(p), metadata={**meta, "params": "{oops"}))
    add("unknown_arch.safetensors", "unknown architecture", lambda p: save_file(
        state, str(p), metadata={**meta, "arch": "nope"}))
    return cases


def test_hostile_model_files_are_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = png(tmp_path / "a.png", smooth_image(5, 5, 3))
    for path, reason in _model_cases(tmp_path):
        result = upscale(image, "-s", 2, "-m", path, "--quiet")
        assert_clean(result, 1)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and reason.lower() in lines[0].lower(), (path, lines)
        assert not (tmp_path / "a_x2.png").exists()
    assert not (tmp_path / "PWNED").exists()  # the pickle's code never ran


# ----------------------------------------------------------------------------- absurd values

@pytest.mark.parametrize("args", [["-s", "0"], ["-s", "-2"], ["-s", "nan"], ["-s", "inf"], ["-s", "1e308"],
                                  ["-s", "65"], ["--tile", "-1"], ["--tile", "huge"], ["--max-pixels", "0"],
                                  ["--max-pixels", "lots"], ["-q", "0"], ["--tile-batch", "0"],
                                  ["--shard", "5/2"], ["--skip-existing", "--overwrite"]])
def test_absurd_values_are_usage_errors(model, tmp_path, args):
    image = png(tmp_path / "a.png", smooth_image(5, 5, 3))
    result = upscale(image, "-m", model, *args)
    assert_clean(result, 2)
    assert not (tmp_path / "a_x5.png").exists() and not list(tmp_path.glob("a_x*"))


def test_outputs_too_large_are_refused_up_front(model, tmp_path, monkeypatch):
    from sr_cli import device
    small = png(tmp_path / "small.png", smooth_image(4, 4, 3))
    large = png(tmp_path / "large.png", smooth_image(40, 40, 3))
    result = upscale(small, large, "-s", 64, "-m", model, "--max-pixels", 1e6, "--quiet")
    assert_clean(result, 1)
    assert_failed(result, large, "--max-pixels")
    assert_image(tmp_path / "small_x64.png", (256, 256))
    # By default the limit comes from the memory available (here made 100 KB).
    monkeypatch.setattr(device, "available_memory", lambda: 100_000)
    result = upscale(large, "-s", 4, "-m", model, "--quiet")
    assert_clean(result, 1)
    assert_failed(result, large, "available")
    assert not leftovers(tmp_path) and not (tmp_path / "large_x4.png").exists()


def test_extreme_but_legal_tiling_values_work(model, tmp_path):
    image = png(tmp_path / "a.png", smooth_image(9, 5, 3))
    for args in (["--tile", "1", "--tile-overlap", "0"], ["--tile", "100000", "--tile-overlap", "100000"],
                 ["--tile", "3", "--tile-batch", "1000"]):
        result = upscale(image, "-s", 2, "-m", model, "--overwrite", "--quiet", *args)
        assert_clean(result, 0)
        assert_image(tmp_path / "a_x2.png", (10, 18))


# ----------------------------------------------------------------------------- export and training

def test_export_checks_before_it_writes(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from sr_cli import export
    from sr_cli.weights import load_model
    params = {"scale": 2, "num_feat": 8, "num_blocks": 1, "base": "nearest"}  # the layout "fast" ships
    save_model(random_net("litesr", **params), tmp_path / "m.safetensors", arch="litesr", params=params)
    model = load_model(tmp_path / "m.safetensors")
    summary = export.export_model(model, tmp_path / "m.onnx", fmt="onnx")
    assert summary["max_abs_diff"] < export.ONNX_TOLERANCE
    monkeypatch.setattr(export, "ONNX_TOLERANCE", -1.0)  # every check fails now
    with pytest.raises(RuntimeError, match="differs"):
        export.export_model(model, tmp_path / "bad.onnx", fmt="onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.safetensors"]


TRAIN_ARGS = ["--arch", "litesr", "--arch-opt", "num_feat=8", "--arch-opt", "num_blocks=1", "--scale", "2",
              "--patch", "8", "--batch", "2", "--iters", "2", "--save-every", "2", "--workers", "0",
              "--threads", "1", "--ema", "0.9"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from conftest import write_smooth_pngs
    from sr_cli.commands.train_cmd import train_command
    base = tmp_path_factory.mktemp("train")
    images = write_smooth_pngs(base / "hr", count=2, size=24)
    result = CliRunner().invoke(train_command, [*TRAIN_ARGS, "--data", str(images), "--out", str(base / "run")])
    assert result.exit_code == 0, result.output
    assert (base / "run" / "checkpoint.safetensors").is_file()
    return images, base / "run"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _nan_checkpoint(path: Path) -> None:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as handle:
        metadata, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
    save_file({k: v.fill_(float("nan")) if k.startswith("model.") else v for k, v in tensors.items()},
              str(path), metadata=metadata)


@pytest.mark.parametrize("damage, reason", [
    (lambda run: _truncate(run / "checkpoint.safetensors"), "cannot be resumed"),
    (lambda run: (run / "checkpoint.safetensors").write_bytes(b""), "cannot be resumed"),
    (lambda run: (run / "checkpoint.safetensors").unlink(), "cannot be resumed"),
    (lambda run: (run / "checkpoint.json").write_text("{not json"), "damaged checkpoint state"),
    (lambda run: (run / "checkpoint.json").write_text("[]"), "damaged checkpoint state"),
    (lambda run: _nan_checkpoint(run / "checkpoint.safetensors"), "nan"),
], ids=["truncated", "empty", "missing-tensors", "state-not-json", "state-not-object", "nan-weights"])
def test_resume_on_a_damaged_checkpoint_is_one_line(trained_run, tmp_path, damage, reason):
    from sr_cli.commands.train_cmd import train_command
    images, original = trained_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    damage(run)
    result = CliRunner().invoke(train_command, [*TRAIN_ARGS, "--data", str(images), "--out", str(run), "--resume"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and str(run) in error[0] and reason in error[0].lower(), result.stderr


# ----------------------------------------------------------------------------- issue 31: third pass

def test_racing_runs_publish_one_output_the_other_reports_exists(model, tmp_path, monkeypatch):
    """Class 2: the output appears between the run's check and its rename (another run wrote it): the
    rename refuses it atomically, the other run's file stays, this job fails "exists" (exit 1)."""
    from sr_cli import upscale as upscale_module
    src = png(tmp_path / "a.png", smooth_image(6, 6, 3))
    theirs = tmp_path / "a_x2.png"
    real_call = upscale_module.Upscaler.__call__

    def racing(self, pixels):  # the other run publishes while this one is at work
        theirs.write_bytes(b"the other run's output")
        return real_call(self, pixels)
    monkeypatch.setattr(upscale_module.Upscaler, "__call__", racing)
    result = upscale(src, "-s", 2, "-m", model, "--quiet")
    assert_clean(result, 1)
    assert_failed(result, src, "exists")
    assert theirs.read_bytes() == b"the other run's output" and not leftovers(tmp_path)
    theirs.unlink()
    result = upscale(src, "-s", 2, "-m", model, "--quiet", "--skip-existing")  # skipping: not a failure
    assert_clean(result, 0)
    assert theirs.read_bytes() == b"the other run's output" and not leftovers(tmp_path)


def test_no_replace_publication_lets_exactly_one_writer_win(tmp_path):
    from sr_cli.atomic import OutputExists, atomic_file
    target = tmp_path / "out.bin"
    with pytest.raises(OutputExists, match="exists"):
        with atomic_file(target, replace=False) as first:
            first.write(b"first")
            with atomic_file(target, replace=False) as second:  # started later, published first
                second.write(b"second")
    with pytest.raises(OutputExists):
        with atomic_file(target, replace=False) as third:
            third.write(b"third")
    assert target.read_bytes() == b"second" and os.listdir(tmp_path) == ["out.bin"]


def test_a_users_file_named_and_sized_like_an_output_is_never_taken_for_one(model, tmp_path):
    """Class 1: d/a_x2.png, the user's own, exactly a.png's name + _x2 and twice its size: before, it was
    "skipped (an earlier output)" and then replaced with --overwrite. Without sr's tag it is an input."""
    src = tmp_path / "d"
    png(src / "a.png", smooth_image(24, 32, 3))
    png(src / "a_x2.png", noise(48, 64))  # the user's: right name, right size, no tag
    before = checksums(src)
    result = upscale(src, "-s", 2, "-m", model, "--overwrite", "--json")
    assert_clean(result, 1)
    statuses = {Path(r["source"]).name: r for r in json.loads(result.stdout)["results"]}
    assert statuses["a.png"]["status"] == "failed" and "is itself an input" in statuses["a.png"]["error"]
    assert statuses["a_x2.png"]["status"] == "ok"  # upscaled as the input it is
    assert checksums(src).items() >= before.items() and not leftovers(tmp_path)
    # Named alone, the user's file is never replaced either, with or without --overwrite.
    for args in ([], ["--overwrite"], ["--skip-existing"]):
        result = upscale(src / "a.png", "-s", 2, "-m", model, "--quiet", *args)
        assert result.exit_code == (0 if args == ["--skip-existing"] else 1), result.stderr
        assert checksums(src).items() >= before.items()
    assert "not written by sr" in upscale(src / "a.png", "-s", 2, "-m", model, "--overwrite").stderr


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tiff"])
def test_every_output_carries_the_provenance_tag(model, tmp_path, fmt):
    from sr_cli.provenance import read
    src = png(tmp_path / "in" / "a b.png", smooth_image(6, 8, 3))
    assert_clean(upscale(src, "-s", 2, "-m", model, "-f", fmt, "-o", tmp_path / "out", "--quiet"), 0)
    out = next((tmp_path / "out").iterdir())
    tag = read(out)
    assert tag is not None and (tag["model"], tag["scale"], tag["source"]) == ("tiny.safetensors", 2, "a b.png")
    assert read(src) is None
    info = CliRunner().invoke(cli, ["info", str(out), str(src)])
    assert info.exit_code == 1  # one of the two has no tag
    assert "model tiny.safetensors, x2, from a b.png" in info.stdout and "no sr provenance tag" in info.stdout
    assert_image(out, (16, 12))


def test_animations_carry_the_tag_and_are_recognised_as_earlier_outputs(model, tmp_path):
    from sr_cli.provenance import read
    src = tmp_path / "d"
    src.mkdir()
    frames = [Image.fromarray(smooth_image(6, 6, 3) // (i + 1)) for i in range(3)]
    frames[0].save(src / "a.gif", save_all=True, append_images=frames[1:], duration=50)
    assert_clean(upscale(src, "-s", 2, "-m", model, "--quiet"), 0)
    assert read(src / "a_x2.gif")["source"] == "a.gif"
    result = upscale(src, "-s", 2, "-m", model, "--overwrite", "--json")
    assert_clean(result, 0)
    statuses = {Path(r["source"]).name: r["status"] for r in json.loads(result.stdout)["results"]}
    assert statuses == {"a.gif": "ok", "a_x2.gif": "skipped"}


def test_a_second_train_into_a_busy_out_says_who_holds_it(trained_run, tmp_path):
    """Class 3: two `sr train` into one --out; the second fails at once, naming the holder, and
    touches nothing (no interleaved log.jsonl, no checkpoint from the wrong run)."""
    from sr_cli.commands.train_cmd import train_command
    from sr_cli.lock import hold
    from sr_cli.training.trainer import RUN_LOCK
    images, original = trained_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    before = checksums(run)
    with hold(run / RUN_LOCK, "test"):  # as the first run holds it while it trains
        result = CliRunner().invoke(train_command, [*TRAIN_ARGS, "--data", str(images), "--out", str(run),
                                                    "--resume", "--iters", "4"])
    assert result.exit_code == 1, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "in use by sr (pid" in error[0] and str(run) in error[0], result.stderr
    assert {k: v for k, v in checksums(run).items() if k != RUN_LOCK} == \
        {k: v for k, v in before.items() if k != RUN_LOCK}
    # Once it is free, the same command runs.
    result = CliRunner().invoke(train_command, [*TRAIN_ARGS, "--data", str(images), "--out", str(run),
                                                "--resume", "--iters", "4"])
    assert result.exit_code == 0, result.output


def test_a_failed_training_start_leaves_no_run_folder(tmp_path):
    from sr_cli.commands.train_cmd import train_command
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(train_command, [*TRAIN_ARGS, "--data", str(empty), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.subprocess
@pytest.mark.parametrize("args, code", [(["bench", "--size", "16x16", "-m", "bicubic"], 1), (["models"], 1),
                                        (["upscale", "{image}", "-s", "2", "-m", "bicubic"], 0)])
def test_a_closed_stdout_is_one_clear_line(tmp_path, args, code):
    """Class 12: `sr bench ... >&-` failed with "'NoneType' object has no attribute 'isatty'". A command
    whose output goes to stdout now says it is lost (exit 1); one that prints nothing there runs."""
    image = png(tmp_path / "a.png", smooth_image(8, 8, 3))
    args = [a.format(image=image) for a in args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.run([sys.executable, "-m", "sr_cli", *args], stderr=subprocess.PIPE, cwd=tmp_path,
                             env=env, preexec_fn=lambda: os.close(1), timeout=120)  # as `sr ... >&-`
    err = process.stderr.decode()
    assert process.returncode == code, err
    assert "NoneType" not in err and "Traceback" not in err
    if code:
        assert err.strip().splitlines()[-1] == ("Error: stdout is closed, so the output is lost: run without "
                                                "'>&-' or redirect it (> FILE, > /dev/null)")


@pytest.mark.parametrize("stated", ["0", "1000", "-2", "2.5", "x"])
def test_a_model_file_stating_an_absurd_scale_is_one_clear_line(model, tmp_path, stated):
    """Class 11: metadata scale=0 gave "float division by zero"; scale=1000 "is a x2 model, asked for x1000"
    although the user asked for x2."""
    from safetensors import safe_open
    with safe_open(str(model), framework="pt") as handle:
        metadata, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={**metadata, "scale": stated})
    image = png(tmp_path / "a.png", smooth_image(6, 6, 3))
    result = upscale(image, "-s", 2, "-m", bad, "--quiet")
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"scale {stated!r}" in lines[0] and "whole number from 2" in lines[0], lines
    assert "division" not in lines[0] and not (tmp_path / "a_x2.png").exists()


def test_eval_names_a_file_it_cannot_score_and_scores_the_rest(tmp_path):
    """Class 9: one image too small for the scale aborted all of `sr eval` ("cannot resize a 0x0 image by
    0.25"), naming no file."""
    folder = tmp_path / "set"
    png(folder / "big.png", smooth_image(40, 40, 3))
    png(folder / "tiny.png", smooth_image(3, 3, 3))
    (folder / "broken.png").write_bytes(b"not a png")
    result = CliRunner().invoke(cli, ["eval", str(folder), "-s", "4", "-m", "bicubic", "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    report = json.loads(result.stdout)
    assert report["results"]["bicubic"]["set"]["images"] == 1
    assert sorted(Path(s["file"]).name for s in report["skipped"]) == ["broken.png", "tiny.png"]
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 2 and any("tiny.png" in line and "too small" in line for line in skipped), skipped


@pytest.mark.parametrize("args, hint", [
    (["upscale", "{image}", "--codec", "nonsense"], "--codec nonsense"),
    (["upscale", "{image}", "--pix-fmt", "nonsense"], "--pix-fmt nonsense"),
    (["train", "--arch", "litesr", "--data", "{folder}", "--out", "{folder}/run", "--lr", "-1"], "--lr"),
    (["train", "--arch", "litesr", "--data", "{folder}", "--out", "{folder}/run", "--lr", "nan"], "--lr"),
    (["train", "--arch", "litesr", "--data", "{folder}", "--out", "{folder}/run", "--gamma", "inf"], "--gamma"),
    (["models", "pull", "http://127.0.0.1:9/m.pth", "--sha256", "zz"], "--sha256"),
    (["eval", "{folder}", "-s", "2", "-m", "bicubic", "--degrade", "jpeg:500"], "--degrade"),
    (["bench", "-s", "1000", "-m", "bicubic"], "--scale"),
    (["upscale", "{image}", "--device", "bogus"], "--device"),
    (["upscale", "{image}", "-m", "nosuch"], "--model"),
], ids=["codec", "pix-fmt", "lr-negative", "lr-nan", "gamma-inf", "sha256", "degrade", "bench-scale", "device",
        "model"])
def test_bad_option_values_are_usage_errors_at_parse_time(tmp_path, args, hint):
    """Class 13: these were found late and exited 1 (or ran); now exit 2 naming the option, nothing written."""
    pytest.importorskip("av")
    image = png(tmp_path / "a.png", smooth_image(8, 8, 3))
    args = [a.format(image=image, folder=tmp_path) for a in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert hint in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_bench_refuses_an_absurd_size_up_front(tmp_path, monkeypatch):
    """Class 8: `sr bench --size 100000x100000` ran ~10 s to 2.2 GB, then a raw OpenCV allocation error."""
    import time as clock
    started = clock.perf_counter()
    result = CliRunner().invoke(cli, ["bench", "--size", "100000x100000", "-m", "bicubic"])
    assert result.exit_code == 2 and "--size" in result.output and "GiB available" in result.output, result.output
    assert clock.perf_counter() - started < 5
    result = CliRunner().invoke(cli, ["bench", "--size", "4000x4000", "-m", "bicubic", "--max-pixels", "1e6"])
    assert result.exit_code == 2 and "above --max-pixels 1,000,000" in result.output, result.output


def test_messages_say_what_happened(model, tmp_path, capfd):
    """Class 14: "--frames 500:600" on a short GIF said "no frames in --frames 500:300"; anim.gif -o x.mp4
    said ".mp4 holds one frame"; a PNG with a bad CRC printed a stray "libpng error" line."""
    frames = [Image.fromarray(smooth_image(6, 6, 3) // (i + 1)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    result = upscale(tmp_path / "anim.gif", "-s", 2, "-m", model, "--frames", "500:600", "--quiet")
    assert_clean(result, 1)
    assert_failed(result, tmp_path / "anim.gif", "--frames 500:600 asks for frames from 500, but the file has 3")
    result = upscale(tmp_path / "anim.gif", "-o", tmp_path / "x.mp4", "-s", 2, "-m", model, "--quiet")
    assert_clean(result, 1)
    assert_failed(result, tmp_path / "anim.gif", "not as video (.mp4)")
    # A bad CRC: one line of ours, none from libpng (which writes to the process's stderr itself).
    import cv2
    good = tmp_path / "d16.png"
    cv2.imwrite(str(good), np.full((8, 8, 3), 1000, np.uint16))  # 16-bit: decoded by OpenCV's libpng
    data = bytearray(good.read_bytes())
    at = data.index(b"IDAT")
    data[at + 4 + int.from_bytes(data[at - 4:at], "big")] ^= 0xFF
    good.write_bytes(bytes(data))
    capfd.readouterr()
    result = upscale(good, "-s", 2, "-m", model, "--quiet")
    assert_clean(result, 1)
    assert_failed(result, good, "damaged PNG: the IDAT chunk's checksum does not match")
    assert "libpng" not in capfd.readouterr().err and not leftovers(tmp_path)


def test_resume_without_a_checkpoint_and_model_file_modes(trained_run, tmp_path):
    """Also (#31): --resume with no checkpoint silently started afresh; trained models were written 0600
    while every other output is 0666 less the umask."""
    from sr_cli.commands.train_cmd import train_command
    images, run = trained_run
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("model.safetensors", "checkpoint.safetensors", "config.json"):
        assert (run / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    result = CliRunner().invoke(train_command, [*TRAIN_ARGS, "--data", str(images), "--out", str(tmp_path / "new"),
                                                "--resume"])
    assert result.exit_code == 1 and "no checkpoint to resume" in result.output, result.output
    assert not (tmp_path / "new").exists()


def test_max_pixels_drives_the_decoders_limit(model, tmp_path, monkeypatch):
    """Also (#31): Pillow's own decompression limit (179 MP) overrode --max-pixels. Here Pillow's is made
    small; an input within --max-pixels is read, and one beyond it is refused before decoding."""
    from PIL import Image as PILImage
    from sr_cli import imageio
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 500)
    monkeypatch.setattr(imageio.stills, "_PILLOW_LIMIT", 500)
    image = png(tmp_path / "a.png", smooth_image(40, 40, 3))  # 1600 pixels: a "bomb" to Pillow now
    result = upscale(image, "-s", 2, "-m", model, "--max-pixels", "1e5", "--quiet")
    assert_clean(result, 0)
    assert struct.unpack(">II", (tmp_path / "a_x2.png").read_bytes()[16:24]) == (80, 80)  # IHDR: Pillow would refuse
    result = upscale(image, "-s", 2, "-m", model, "--max-pixels", "4000", "--quiet", "-o", tmp_path / "b.png")
    assert_clean(result, 1)
    assert_failed(result, image, "above the 1,000 that --max-pixels 4,000 allows at x2")
    assert PILImage.MAX_IMAGE_PIXELS == 500  # the run's limit does not outlive it


def test_plain_progress_lines_when_stderr_is_not_a_terminal(model, tmp_path, monkeypatch):
    """Also (#31): with stderr not a terminal there was no progress at all (a 5000-frame GIF ran 100 s
    silent). Now a plain line every SR_PROGRESS_SECONDS (5 by default; 0 here: at every event)."""
    frames = [Image.fromarray(smooth_image(6, 6, 3) // (i + 1)) for i in range(4)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    monkeypatch.setenv("SR_PROGRESS_SECONDS", "0")
    result = upscale(tmp_path / "anim.gif", "-s", 2, "-m", model)
    assert_clean(result, 0)
    lines = [line for line in result.stderr.splitlines() if line.startswith("progress: ")]
    assert any("0/1 files, frame 2/4 at" in line and "elapsed" in line for line in lines), result.stderr
    assert lines[-1].startswith("progress: 1/1 files")
    monkeypatch.setenv("SR_PROGRESS_SECONDS", "3600")
    result = upscale(tmp_path / "anim.gif", "-s", 2, "-m", model, "--overwrite")
    assert_clean(result, 0)
    assert "progress: " not in result.stderr
