import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sr_cli.commands.eval_cmd import eval_command
from sr_cli.niqe import niqe, pristine_model

BENCHMARK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark"


def natural_like(h, w, seed=0):
    """1/f noise (the spectrum of natural scenes) in RGB: NIQE scores it as fairly natural."""
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    amplitude = 1 / np.maximum(np.hypot(fy, fx), 1 / max(h, w))
    channels = []
    for _ in range(3):
        phase = np.exp(2j * np.pi * rng.random((h, w)))
        field = np.real(np.fft.ifft2(amplitude * phase))
        channels.append((field - field.mean()) / field.std())
    img = np.stack(channels, axis=2) * 0.6 + np.stack(channels[:1] * 3, axis=2) * 0.4
    return np.clip(np.round(img * 45 + 128), 0, 255).astype(np.uint8)


def test_pristine_model_shapes():
    mu, cov, window = pristine_model()
    assert mu.shape == (36,) and cov.shape == (36, 36) and window.shape == (7, 7)
    assert np.allclose(cov, cov.T) and abs(window.sum() - 1) < 1e-6


def test_blur_and_blocks_score_less_natural():
    img = natural_like(288, 384)
    sharp = niqe(img)
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0)
    assert niqe(blurred) > sharp + 1
    # 8x8 blocks of flat colour (JPEG at its worst) are unnatural too.
    blocky = cv2.resize(cv2.resize(img, (48, 36), interpolation=cv2.INTER_AREA), (384, 288),
                        interpolation=cv2.INTER_NEAREST)
    assert niqe(blocky) > sharp + 1


def test_border_grey_and_size_checks():
    img = natural_like(300, 300, seed=1)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    assert np.isfinite(niqe(grey)) and niqe(grey) == niqe(grey[..., None])
    # The border is left out before blocking: a frame of junk around the image changes nothing.
    framed = np.pad(img, ((6, 6), (6, 6), (0, 0)), constant_values=255)
    assert niqe(framed, crop_border=6) == pytest.approx(niqe(img), abs=1e-12)
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        niqe(img[:150, :150])
    with pytest.raises(ValueError, match="shape"):
        niqe(np.zeros((200, 200, 2), np.uint8))


@pytest.mark.skipif(not (BENCHMARK / "Set14" / "baboon.png").is_file(), reason="benchmark data not present")
def test_baboon_matches_matlab_release():
    # BasicSR's calculate_niqe documents the authors' MATLAB code (R2021a) on this very image: 5.72957338.
    img = np.asarray(Image.open(BENCHMARK / "Set14" / "baboon.png").convert("RGB"))
    assert niqe(img) == pytest.approx(5.72957338, abs=1e-3)


@pytest.mark.skipif(not BENCHMARK.is_dir(), reason="benchmark data not present")
def test_matches_basicsr_reference():
    reference = pytest.importorskip("basicsr.metrics.niqe", reason="BasicSR (the reference) not installed")
    for name in ("Set14/zebra.png", "Set5/head.png", "BSD100/img_005.png"):
        bgr = cv2.imread(str(BENCHMARK / name))
        for border in (0, 4):
            expected = reference.calculate_niqe(bgr, crop_border=border)
            assert niqe(bgr[..., ::-1], crop_border=border) == pytest.approx(expected, abs=1e-3), name


def test_eval_cli_reports_niqe(tmp_path):
    folder = tmp_path / "Natural"
    folder.mkdir()
    Image.fromarray(natural_like(200, 240, seed=2)).save(folder / "a.png")
    Image.fromarray(natural_like(208, 200, seed=3)).save(folder / "b.png")
    runner = CliRunner()
    result = runner.invoke(eval_command, [str(folder), "-s", "2", "--niqe", "--json", "--per-image"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["results"]["bicubic"]["Natural"]
    per_image = {i["name"]: i["niqe"] for i in data["per_image"]}
    assert data["niqe"] == pytest.approx(np.mean(list(per_image.values())))
    # What eval scores is the bicubic output with the scale's border left out.
    assert all(np.isfinite(v) and v > 0 for v in per_image.values())

    result = runner.invoke(eval_command, [str(folder), "-s", "2", "--niqe", "--csv"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert float(rows[0]["niqe"]) == pytest.approx(data["niqe"], abs=1e-4)
    result = runner.invoke(eval_command, [str(folder), "-s", "2", "--csv"])
    assert "niqe" not in result.stdout.splitlines()[0]
    result = runner.invoke(eval_command, [str(folder), "-s", "2", "--niqe"])
    assert result.exit_code == 0 and "NIQE" in result.stdout
