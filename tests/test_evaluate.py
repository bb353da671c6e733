import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sr_cli import resolve
from sr_cli.commands.eval_cmd import eval_command
from sr_cli.evaluate import bicubic_downscale, evaluate, match_key
from sr_cli.metrics import calculate_psnr, calculate_ssim
from sr_cli.model import SRModel
from sr_cli.resize import imresize

BENCHMARK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark"


def textured(h, w, c, seed):
    """A smooth image with some noise, so bicubic scores are finite and image-dependent."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(x / (4 + k) + seed) * np.cos(y / (5 + k)) for k in range(c)], axis=2)
    img = (base * 0.4 + 0.5) * 255 + rng.normal(0, 6, base.shape)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return img[..., 0] if c == 1 else img


@pytest.fixture
def dataset(tmp_path):
    """Two RGB images and one greyscale (mode L), sides not multiples of 2 or 3."""
    folder = tmp_path / "Tiny"
    folder.mkdir()
    Image.fromarray(textured(37, 41, 3, seed=1)).save(folder / "a.png")
    Image.fromarray(textured(32, 29, 3, seed=2)).save(folder / "b.png")
    Image.fromarray(textured(31, 34, 1, seed=3), mode="L").save(folder / "grey.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def literature_bicubic(hr, scale):
    """The classic pipeline written out: mod-crop, MATLAB bicubic down, uint8, bicubic up, uint8."""
    h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
    hr = hr[:h, :w]
    chw = torch.from_numpy(np.atleast_3d(hr).transpose(2, 0, 1).astype(np.float64))
    lr = torch.floor(imresize(chw, 1 / scale) + 0.5).clamp(0, 255)
    # Models run in float32 on [0, 1]; the result is quantised from float64.
    sr = torch.floor(imresize(lr.float() / 255, scale).double() * 255 + 0.5).clamp(0, 255)
    sr = sr.numpy().transpose(1, 2, 0).astype(np.uint8)
    return (sr[..., 0] if hr.ndim == 2 else sr), hr


@pytest.mark.parametrize("scale", [2, 3])
def test_bicubic_scores_follow_the_literature_pipeline(dataset, scale):
    report = evaluate([dataset], scale=scale, models=["bicubic"])
    score = report.scores["bicubic"]["Tiny"]
    assert [i.name for i in score.images] == ["a.png", "b.png", "grey.png"]
    for image in score.images:
        hr = np.asarray(Image.open(dataset / image.name))
        sr, hr = literature_bicubic(hr, scale)
        assert image.psnr == pytest.approx(calculate_psnr(sr, hr, crop_border=scale), abs=1e-9)
        assert image.ssim == pytest.approx(calculate_ssim(sr, hr, crop_border=scale), abs=1e-9)
        assert 20 < image.psnr < 60
    assert score.psnr == pytest.approx(np.mean([i.psnr for i in score.images]))
    assert report.crop_border == scale and report.y_channel and report.convention == "matlab"


def test_options_change_what_is_scored(dataset):
    base = evaluate([dataset], scale=2).scores["bicubic"]["Tiny"]
    for kwargs in ({"rgb": True}, {"crop_border": 0}, {"convention": "basicsr"}):
        other = evaluate([dataset], scale=2, **kwargs).scores["bicubic"]["Tiny"]
        assert other.psnr != base.psnr
        # The greyscale image has no Y conversion, so the convention leaves it alone.
        if "convention" in kwargs:
            assert other.images[2].psnr == base.images[2].psnr


def test_lr_dir_pairs_by_stem_and_matches_generated_lr(dataset, tmp_path):
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    names = {"a.png": "ax2.png", "b.png": "b_LR.png", "grey.png": "grey_x2_LR.png"}
    for hr_name, lr_name in names.items():
        hr = np.asarray(Image.open(dataset / hr_name))
        h, w = hr.shape[0] // 2 * 2, hr.shape[1] // 2 * 2
        Image.fromarray(bicubic_downscale(hr[:h, :w], 2)).save(lr_dir / lr_name)
    generated = evaluate([dataset], scale=2).scores["bicubic"]["Tiny"]
    paired = evaluate([dataset], scale=2, lr_dir=lr_dir)
    assert [i.psnr for i in paired.scores["bicubic"]["Tiny"].images] == [i.psnr for i in generated.images]
    assert paired.lr_source == str(lr_dir)

    (lr_dir / "b_LR.png").rename(lr_dir / "c_LR.png")
    with pytest.raises(ValueError, match="no LR image for b.png"):
        evaluate([dataset], scale=2, lr_dir=lr_dir)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(lr_dir / "b_LR.png")
    with pytest.raises(ValueError, match="does not fit"):
        evaluate([dataset], scale=2, lr_dir=lr_dir)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(lr_dir / "a_x2.png")
    with pytest.raises(ValueError, match="several LR images"):
        evaluate([dataset], scale=2, lr_dir=lr_dir)


def test_match_key():
    for stem in ("baby", "babyx4", "baby_x4", "baby_LR", "baby_x4_LR", "BABY_lr", "baby.x2", "baby_HR", "baby-bicubic"):
        assert match_key(stem) == "baby"
    assert match_key("img_001_SRF_4_HR") == "img_001"
    assert match_key("x4") == "x4"  # never stripped to nothing


def test_save_dir_writes_outputs(dataset, tmp_path):
    out = tmp_path / "out"
    evaluate([dataset], scale=3, models=["bicubic"], save_dir=out)
    saved = sorted(p.name for p in (out / "bicubic" / "Tiny").iterdir())
    assert saved == ["a.png", "b.png", "grey.png"]
    assert Image.open(out / "bicubic" / "Tiny" / "a.png").size == (39, 36)  # 41x37 mod-cropped to 39x36
    assert Image.open(out / "bicubic" / "Tiny" / "grey.png").mode == "L"


def fake_model(*, in_channels, scale, seen):
    """Nearest-neighbour upscaling that records the input shapes it was given."""
    def net(x):
        seen.append(tuple(x.shape))
        return x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    return SRModel(net=net, arch="nearest", scale=scale, name="nearest", in_channels=in_channels)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_channel_handling(dataset, monkeypatch, in_channels):
    seen = []
    monkeypatch.setattr(resolve, "locate", lambda model: resolve.Located(model, model, None, "fake", model,
                                                                          files={2: Path(model)}))
    monkeypatch.setattr(resolve, "resolve_model",
                        lambda model, scale, parent=None: fake_model(in_channels=in_channels, scale=scale, seen=seen))
    report = evaluate([dataset], scale=2, models=["fake"], tile=8, overlap=2)
    assert all(shape[1] == in_channels for shape in seen)
    # Nearest neighbour gives the same scores however the channels were fed to it.
    reference = []
    for name in ("a.png", "b.png", "grey.png"):
        hr = np.asarray(Image.open(dataset / name))
        hr = hr[: hr.shape[0] // 2 * 2, : hr.shape[1] // 2 * 2]
        lr = bicubic_downscale(hr, 2)
        sr = lr.repeat(2, axis=0).repeat(2, axis=1)
        reference.append(calculate_psnr(sr, hr, crop_border=2))
    assert [i.psnr for i in report.scores["fake"]["Tiny"].images] == pytest.approx(reference, abs=1e-9)


def test_progress_and_several_models_and_datasets(dataset, tmp_path):
    other = tmp_path / "sub" / "Tiny"  # same folder name: told apart by path
    other.mkdir(parents=True)
    Image.fromarray(textured(24, 24, 3, seed=5)).save(other / "c.png")
    calls = []
    report = evaluate([dataset, other], scale=2, models=["bicubic", "lanczos", "bicubic"],
                      progress=lambda done, total, what: calls.append((done, total)))
    assert report.models == ["bicubic", "lanczos"]
    assert report.datasets == [str(dataset), str(other)]
    assert calls[-1] == (8, 8) and len(calls) == 8
    as_dict = report.to_dict(per_image=True)
    assert set(as_dict["results"]) == {"bicubic", "lanczos"}
    assert len(as_dict["results"]["lanczos"][str(other)]["per_image"]) == 1


def test_errors(dataset, tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        evaluate([dataset], scale=2, models=["no-such-model"])
    with pytest.raises(FileNotFoundError):
        evaluate([tmp_path / "missing"], scale=2)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        evaluate([empty], scale=2)
    with pytest.raises(ValueError, match="convention"):
        evaluate([dataset], scale=2, convention="octave")


def test_cli_json_csv_and_table(dataset):
    runner = CliRunner()
    result = runner.invoke(eval_command, [str(dataset), "--scale", "2", "--json", "--per-image"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["convention"] == "matlab" and data["scale"] == 2 and data["crop_border"] == 2
    assert len(data["results"]["bicubic"]["Tiny"]["per_image"]) == 3

    result = runner.invoke(eval_command, [str(dataset), "-s", "2", "-m", "bicubic", "-m", "lanczos", "--csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["model"], r["image"]) for r in rows] == [("bicubic", ""), ("lanczos", "")]
    assert math.isclose(float(rows[0]["psnr"]), data["results"]["bicubic"]["Tiny"]["psnr"], abs_tol=1e-4)

    result = runner.invoke(eval_command, [str(dataset), "-s", "2", "--per-image", "--convention", "basicsr"])
    assert result.exit_code == 0, result.output
    assert "Tiny" in result.stdout and "grey.png" in result.stdout and "BasicSR convention" in result.stdout


def test_cli_errors_are_one_line(dataset):
    runner = CliRunner()
    for args, message in (([str(dataset), "-s", "2", "-m", "nope"], "unknown model"),
                          ([str(dataset), "-s", "2", "--json", "--csv"], "choose one"),
                          ([str(dataset), "-s", "2", "--device", "warp-drive"], "unknown device")):
        result = runner.invoke(eval_command, args)
        assert result.exit_code != 0
        assert "Traceback" not in result.output and message in result.output
    result = runner.invoke(eval_command, [str(dataset)])
    assert result.exit_code == 2 and "--scale" in result.output


def test_registered_in_main_cli():
    from sr_cli.cli import cli
    assert cli.get_command(None, "eval") is eval_command


@pytest.mark.skipif(not (BENCHMARK / "Set5").is_dir(), reason="benchmark data not present")
@pytest.mark.parametrize("scale, psnr, ssim", [(2, 33.66, 0.9299), (3, 30.39, 0.8682), (4, 28.42, 0.8104)])
def test_set5_bicubic_reproduces_published_numbers(scale, psnr, ssim):
    score = evaluate([BENCHMARK / "Set5"], scale=scale, models=["bicubic"]).scores["bicubic"]["Set5"]
    assert len(score.images) == 5
    assert score.psnr == pytest.approx(psnr, abs=0.02)
    assert score.ssim == pytest.approx(ssim, abs=0.001)


def test_degrade_makes_a_reproducible_lr_set(dataset, tmp_path):
    clean = evaluate([dataset], scale=2, models=["bicubic"]).scores["bicubic"]["Tiny"]
    runs = [evaluate([dataset], scale=2, models=["bicubic"], degrade="noise:10-20+jpeg:20-40", seed=seed,
                     save_dir=tmp_path / f"s{seed}") for seed in (0, 0, 1)]
    scores = [r.scores["bicubic"]["Tiny"] for r in runs]
    assert scores[0].psnr == scores[1].psnr and scores[0].psnr != scores[2].psnr  # the seed decides
    assert scores[0].psnr < clean.psnr - 1  # degraded inputs score lower
    lr_files = sorted((tmp_path / "s0" / "lr" / "Tiny").glob("*.png"))
    assert [p.name for p in lr_files] == ["a.png", "b.png", "grey.png"]
    assert not np.array_equal(np.asarray(Image.open(lr_files[0])), np.asarray(Image.open(tmp_path / "s1" / "lr" / "Tiny" / "a.png")))
    assert runs[0].degrade == "noise:10-20+jpeg:20-40" and "jpeg:20-40" in runs[0].lr_source
    # the LR image does not depend on which models run beside it or in what order
    both = evaluate([dataset], scale=2, models=["lanczos", "bicubic"], degrade="noise:10-20+jpeg:20-40", seed=0)
    assert both.scores["bicubic"]["Tiny"].psnr == scores[0].psnr
    with pytest.raises(ValueError, match="lr-dir"):
        evaluate([dataset], scale=2, degrade="jpeg:30", lr_dir=tmp_path)


def test_cli_degrade_reports_blockiness(dataset):
    runner = CliRunner()
    result = runner.invoke(eval_command, [str(dataset), "-s", "2", "--degrade", "jpeg:10-20", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["degrade"] == "jpeg:10-20" and data["seed"] == 3
    assert data["results"]["bicubic"]["Tiny"]["blockiness"] > 0
    result = runner.invoke(eval_command, [str(dataset), "-s", "2", "--degrade", "jpeg:10-20"])
    assert result.exit_code == 0 and "blocks" in result.stdout
    result = runner.invoke(eval_command, [str(dataset), "-s", "2", "--degrade", "sharpen:1-2"])
    # #31: checked when parsed, a usage error (exit 2)
    assert result.exit_code == 2 and "bad degradation" in result.output and "Traceback" not in result.output


def test_degrade_with_a_video_codec(dataset):
    runner = CliRunner()
    args = [str(dataset), "-s", "2", "--degrade", "blur:0.5-1+h264:30-40", "--seed", "1", "--json"]
    first, second = (runner.invoke(eval_command, args) for _ in range(2))
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["results"] == json.loads(second.stdout)["results"]  # reproducible
    clean = evaluate([dataset], scale=2, models=["bicubic"]).scores["bicubic"]["Tiny"]
    coded = json.loads(first.stdout)["results"]["bicubic"]["Tiny"]
    assert coded["psnr"] < clean.psnr and coded["blockiness"] > 0
    result = runner.invoke(eval_command, [str(dataset), "-s", "2", "--degrade", "h264:10-60"])
    assert result.exit_code == 2 and "0 <= LO <= HI <= 51" in result.output  # checked when parsed


def test_a_blend_of_a_file_without_a_recorded_parent_takes_parent(tmp_path):
    from conftest import TINY_LITESR, random_net
    from sr_cli.weights import save_model
    params = {"scale": 2, **TINY_LITESR}
    for name, seed in (("gan", 1), ("psnr", 2)):
        torch.manual_seed(seed)
        save_model(random_net("litesr", **params), tmp_path / f"{name}.safetensors", arch="litesr", params=params)
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(hr / "a.png")
    gan, psnr = str(tmp_path / "gan.safetensors"), str(tmp_path / "psnr.safetensors")

    def scores(*args):
        result = CliRunner().invoke(eval_command, [str(hr), "-s", "2", "--engine", "torch", "--json", *args])
        assert result.exit_code == 0, result.output
        return {m: s["hr"] for m, s in json.loads(result.output)["results"].items()}

    ends = scores("-m", f"{gan}@0", "-m", f"{gan}@1", "-m", psnr, "-m", gan, "--parent", psnr)
    assert ends[f"{gan}@0"] == ends[psnr] and ends[f"{gan}@1"] == ends[gan]
    middle = scores("-m", f"{gan}@0.5", "--parent", psnr)[f"{gan}@0.5"]
    assert middle != ends[gan] and middle != ends[psnr]
    refused = CliRunner().invoke(eval_command, [str(hr), "-s", "2", "-m", f"{gan}@0.5"])
    assert refused.exit_code != 0 and "--parent" in refused.output and "Traceback" not in refused.output
