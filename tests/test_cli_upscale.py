import io
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from conftest import smooth_image
from sr_cli.cli import cli


def save(path, pixels, mode=None, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze(), mode).save(path, **kwargs)
    return path


def run(*args, input=None):
    return CliRunner().invoke(cli, ["upscale", *map(str, args)], input=input, catch_exceptions=False)


def test_single_file_default_name_beside_input(weights_dir, tmp_path):
    src = save(tmp_path / "a.png", smooth_image(10, 12, 3))
    result = run(src, "--scale", 2, "--quiet")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "a_x2.png").size == (24, 20)


def test_output_file_and_non_integer_scale(weights_dir, tmp_path):
    src = save(tmp_path / "a.png", smooth_image(10, 13, 3))
    result = run(src, "-s", "1.5", "-o", tmp_path / "out.webp", "--quiet")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out.webp").size == (round(13 * 1.5), 15)


def test_recursive_tree_is_mirrored(weights_dir, tmp_path):
    save(tmp_path / "in" / "top.png", smooth_image(8, 8, 3))
    save(tmp_path / "in" / "sub" / "deep" / "low.jpg", smooth_image(8, 8, 3))
    result = run(tmp_path / "in", "-o", tmp_path / "out", "-r", "-s", 2, "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "top.png").is_file()
    assert Image.open(tmp_path / "out" / "sub" / "deep" / "low.jpg").size == (16, 16)
    # without --recursive only the top level is taken
    result = run(tmp_path / "in", "-o", tmp_path / "flat", "-s", 2, "--quiet")
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["top.png"]


def test_bad_file_does_not_stop_the_batch(weights_dir, tmp_path):
    save(tmp_path / "in" / "a.png", smooth_image(8, 8, 3))
    (tmp_path / "in" / "b.png").write_bytes(b"not an image at all")
    save(tmp_path / "in" / "c.png", smooth_image(8, 8, 3))
    result = run(tmp_path / "in", "-o", tmp_path / "out", "-s", 2, "--json")
    assert result.exit_code == 1
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "c.png").is_file()
    assert not (tmp_path / "out" / "b.png").exists()
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["failed"]) == (2, 1)
    assert [r["status"] for r in summary["results"] if r["source"].endswith("b.png")] == ["failed"]
    assert "b.png" in result.stderr and "Traceback" not in result.output


def test_fail_fast_stops(weights_dir, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"broken")
    save(tmp_path / "in" / "b.png", smooth_image(8, 8, 3))
    result = run(tmp_path / "in", "-o", tmp_path / "out", "-s", 2, "--fail-fast", "--quiet")
    assert result.exit_code == 1 and not (tmp_path / "out" / "b.png").exists()


def test_existing_outputs_are_never_overwritten_by_surprise(weights_dir, tmp_path):
    src = save(tmp_path / "a.png", smooth_image(8, 8, 3))
    dst = tmp_path / "a_x2.png"
    dst.write_bytes(b"precious")
    result = run(src, "-s", 2, "--quiet")
    assert result.exit_code == 1 and dst.read_bytes() == b"precious" and "--overwrite" in result.stderr
    result = run(src, "-s", 2, "--quiet", "--skip-existing")
    assert result.exit_code == 0 and dst.read_bytes() == b"precious"
    # Not written by sr (no provenance tag): the user's, never replaced, not even with --overwrite (#31).
    result = run(src, "-s", 2, "--quiet", "--overwrite")
    assert result.exit_code == 1 and dst.read_bytes() == b"precious" and "not written by sr" in result.stderr
    dst.unlink()
    assert run(src, "-s", 2, "--quiet").exit_code == 0
    result = run(src, "-s", 2, "--quiet", "--overwrite")  # sr's own output: replaced
    assert result.exit_code == 0 and Image.open(dst).size == (16, 16)


def test_input_is_never_overwritten(weights_dir, tmp_path):
    src = save(tmp_path / "a.png", smooth_image(8, 8, 3))
    before = src.read_bytes()
    result = run(src, "-s", 2, "--suffix", "", "--overwrite", "--quiet")
    assert result.exit_code == 1 and src.read_bytes() == before


def test_failed_write_leaves_nothing_behind(weights_dir, tmp_path):
    # JPEG cannot hold alpha: the job fails and neither an output nor a temp file is left.
    src = save(tmp_path / "in" / "a.png", smooth_image(8, 8, 4), "RGBA")
    result = run(src, "-s", 2, "-f", "jpg", "-o", tmp_path / "out", "--quiet")
    assert result.exit_code == 1
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_stdin_to_stdout(weights_dir, tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(smooth_image(9, 11, 3)).save(buffer, format="PNG")
    result = CliRunner().invoke(cli, ["upscale", "-", "-s", "2"], input=buffer.getvalue())
    assert result.exit_code == 0, result.stderr
    assert Image.open(io.BytesIO(result.stdout_bytes)).size == (22, 18)


def test_shard_splits_sorted_inputs(weights_dir, tmp_path):
    for name in "abcde":
        save(tmp_path / "in" / f"{name}.png", smooth_image(6, 6, 3))
    result = run(tmp_path / "in", "-o", tmp_path / "out", "-s", 2, "--shard", "1/2", "--quiet")
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png", "d.png"]


def test_exif_orientation_applied_and_icc_kept(weights_dir, tmp_path):
    pixels = smooth_image(8, 12, 3)  # 12 wide, 8 high; orientation 6 = rotate 90 CW to view
    exif = Image.Exif()
    exif[0x0112] = 6
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = save(tmp_path / "a.jpg", pixels, exif=exif.tobytes(), icc_profile=icc, quality=95)
    result = run(src, "-s", 2, "--quiet")
    assert result.exit_code == 0, result.output
    out = Image.open(tmp_path / "a_x2.jpg")
    assert out.size == (16, 24)  # upright: 8 wide, 12 high, doubled
    assert out.info.get("icc_profile") == icc
    assert out.getexif().get(0x0112, 1) == 1


def test_usage_errors_are_one_line(weights_dir, tmp_path):
    src = save(tmp_path / "a.png", smooth_image(8, 8, 3))
    result = CliRunner().invoke(cli, ["upscale", str(src), "-s", "0.5"])
    assert result.exit_code == 2 and "greater than 1" in result.output
    # Checked before any model is loaded: usage errors (2), like every other bad value.
    result = CliRunner().invoke(cli, ["upscale", str(src), "-m", "no-such-model"])
    assert result.exit_code == 2 and "unknown model" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["upscale", str(tmp_path / "missing.png")])
    assert result.exit_code == 2 and "no such file" in result.output
    # A missing file among others fails alone (exit 1); the others are written.
    result = CliRunner().invoke(cli, ["upscale", str(src), str(tmp_path / "missing.png"), "-s", "2", "--quiet"])
    assert result.exit_code == 1 and "no such file" in result.output and (tmp_path / "a_x2.png").is_file()
    two = save(tmp_path / "b.png", smooth_image(8, 8, 3))
    result = CliRunner().invoke(cli, ["upscale", str(src), str(two), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "folder" in result.output


@pytest.mark.subprocess
def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "sr_cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "upscale" in result.stdout


def test_sixteen_bit_png_stays_sixteen_bit(weights_dir, tmp_path):
    import cv2
    pixels = smooth_image(10, 12, 3, np.uint16)
    src = tmp_path / "deep.png"
    cv2.imwrite(str(src), pixels[:, :, ::-1])
    result = run(src, "-s", 2, "--quiet")
    assert result.exit_code == 0, result.output
    out = cv2.imread(str(tmp_path / "deep_x2.png"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (20, 24, 3)


@pytest.mark.parametrize("mode, channels", [("L", 1), ("LA", 2), ("RGBA", 4), ("P", 3)])
def test_modes_survive_the_cli(weights_dir, tmp_path, mode, channels):
    source_mode = "RGB" if mode == "P" else "RGBA"  # a palette without transparency becomes RGB
    image = Image.fromarray(smooth_image(9, 9, len(source_mode)), source_mode).convert(mode)
    src = tmp_path / "m.png"
    image.save(src)
    result = run(src, "-s", 2, "--quiet")
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(tmp_path / "m_x2.png"))
    assert out.shape[:2] == (18, 18) and (out.shape[2] if out.ndim == 3 else 1) == channels


def test_models_lists_installed_weights(weights_dir):
    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    default = {r["scale"]: r for r in rows if r["name"] == "default"}
    assert set(default) == {2, 4} and default[4]["arch"] == "litesr" and default[4]["parameters"] > 0
    assert {("bicubic", "any"), ("lanczos", "any")} <= {(r["name"], r["scale"]) for r in rows}


def test_tile_options_give_the_same_image(weights_dir, tmp_path):
    src = save(tmp_path / "a.png", smooth_image(40, 52, 3))
    outputs = []
    for args in (["--tile", "0"], ["--tile", "16", "--tile-overlap", "14", "--tile-batch", "3"]):
        dst = tmp_path / f"out{len(outputs)}.png"
        result = run(src, "-s", 2, "-o", dst, "--quiet", *args)
        assert result.exit_code == 0, result.output
        outputs.append(np.asarray(Image.open(dst)).astype(int))
    assert np.abs(outputs[0] - outputs[1]).max() <= 1
