import json

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from sr_cli.commands.train_cmd import parse_value, train_command
from sr_cli.train import TrainConfig, lr_at, train
from sr_cli.weights import load_model, read_metadata

TINY = {"num_feat": 8, "num_blocks": 1}


@pytest.fixture
def images(tmp_path):
    """Random smooth 48x48 images (cubic-upsampled noise), written as PNG."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(4):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i}.png"), cv2.resize(small, (48, 48), interpolation=cv2.INTER_CUBIC))
    return folder


def config(images, out, **overrides):
    settings = dict(arch="litesr", arch_params=TINY, scale=2, data=[str(images)], out=str(out), patch=8, batch=4,
                    iters=8, lr=1e-3, workers=0, log_every=1, save_every=1000, val_every=1000, threads=1, ema=0.9)
    settings.update(overrides)
    return TrainConfig(**settings)


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_loss_goes_down_and_model_exports(images, tmp_path):
    run = train(config(images, tmp_path / "run", iters=40, lr=2e-3, val=str(images), val_every=20), on_log=lambda r: None)
    losses = [r["loss"] for r in read_log(run) if "loss" in r]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])
    model = load_model(run / "model.safetensors")
    assert (model.arch, model.scale) == ("litesr", 2)
    meta = read_metadata(run / "model.safetensors")
    assert meta["steps"] == "40" and json.loads(meta["data"]) == [str(images)]
    vals = [r for r in read_log(run) if "val_psnr" in r]
    assert [v["step"] for v in vals] == [20, 40]
    assert float(meta["val_psnr"]) == pytest.approx(vals[-1]["val_psnr"], abs=1e-3)
    assert (run / "model_best.safetensors").is_file()
    out = model(torch.rand(1, 3, 5, 7))
    assert out.shape == (1, 3, 10, 14)


def test_resume_is_exact(images, tmp_path):
    straight = train(config(images, tmp_path / "a", save_every=4), on_log=lambda r: None)

    class Crash(Exception):
        pass

    def crash_after_4(record):
        if record.get("step") == 5:
            raise Crash
    with pytest.raises(Crash):
        train(config(images, tmp_path / "b", save_every=4), on_log=crash_after_4)
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["step"] == 4
    with pytest.raises(ValueError, match="resume"):
        train(config(images, tmp_path / "b", save_every=4), on_log=lambda r: None)
    resumed = train(config(images, tmp_path / "b", save_every=4, resume=True), on_log=lambda r: None)

    a, b = load_file(str(straight / "checkpoint.safetensors")), load_file(str(resumed / "checkpoint.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a) and any(k.startswith("optim.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    with pytest.raises(ValueError, match="num_feat"):
        train(config(images, tmp_path / "b", resume=True, arch_params={"num_feat": 4}), on_log=lambda r: None)


def test_init_from_other_scale_keeps_body(images, tmp_path):
    run = train(config(images, tmp_path / "x2", iters=2), on_log=lambda r: None)
    logs = []
    run3 = train(config(images, tmp_path / "x3", iters=1, scale=3, lr=0.0, ema=0.0,
                        init=str(run / "model.safetensors")), on_log=logs.append)
    assert any("tail" in r.get("message", "") for r in logs)
    src, dst = load_file(str(run / "model.safetensors")), load_file(str(run3 / "model.safetensors"))
    assert torch.equal(src["head.weight"], dst["head.weight"])


def test_lr_schedules():
    cfg = TrainConfig(arch="litesr", scale=2, data=["x"], out="y", iters=100, lr=1.0, min_lr=0.0, warmup=10)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(99, cfg) < 0.01
    step = TrainConfig(arch="litesr", scale=2, data=["x"], out="y", iters=100, lr=1.0, schedule="step")
    assert [lr_at(s, step) for s in (0, 49, 50, 75)] == [1.0, 1.0, 0.5, 0.25]
    with pytest.raises(ValueError):
        TrainConfig(arch="litesr", scale=2, data=["x"], out="y", loss={"gan": 1.0})


def test_cli(images, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(train_command, ["--list-archs"])
    assert listed.exit_code == 0 and "litesr" in listed.output.split()
    args = ["--arch", "litesr", "--arch-opt", "num_feat=8", "--arch-opt", "num_blocks=1", "--data", str(images),
            "--scale", "2", "--out", str(tmp_path / "run"), "--patch", "8", "--batch", "2", "--iters", "3",
            "--workers", "0", "--threads", "1", "--log-every", "1", "--loss", "l1=1,mse=0.5"]
    result = runner.invoke(train_command, args)
    assert result.exit_code == 0, result.output
    assert "step       3" in result.output
    assert load_model(tmp_path / "run" / "model.safetensors").params["num_feat"] == 8
    again = runner.invoke(train_command, args)
    assert again.exit_code == 1 and "--resume" in again.output and "Traceback" not in again.output
    bad = runner.invoke(train_command, args[:2] + ["--arch-opt", "bogus=1"] + args[6:] + ["--out", str(tmp_path / "r2")])
    assert bad.exit_code == 1 and "bogus" in bad.output
    assert runner.invoke(train_command, ["--arch", "litesr"]).exit_code == 2


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("relu") == "relu"
