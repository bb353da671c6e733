import json

import numpy as np
import pytest
from conftest import TINY_LITESR as TINY, TINY_PARAMS as FAMILIES, tiny_train_config as config, write_smooth_pngs
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from sr_cli.archs import build_arch
from sr_cli.commands.train_cmd import parse_value, train_command
from sr_cli.training.config import TrainConfig
from sr_cli.training.trainer import lr_at, train
from sr_cli.weights import load_model, read_metadata


@pytest.fixture
def images(tmp_path):
    """Random smooth 48x48 images (cubic-upsampled noise), written as PNG."""
    return write_smooth_pngs(tmp_path / "hr")


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


def test_validation_psnr_equals_sr_eval(images, tmp_path):
    # Training's validation and `sr eval` make the LR by the same matlab_lr and round the output the
    # same way, so a run's Set5 figure is the one `sr eval` gives for its exported weights. The
    # striped image's LR is all exact halves (test_resize), where the two roundings used to differ.
    from PIL import Image
    from sr_cli.evaluate import evaluate
    val = write_smooth_pngs(tmp_path / "val", count=2)
    stripes = np.tile(np.array([100, 101], np.uint8), (48, 24))
    Image.fromarray(np.stack([stripes, stripes[::-1], stripes.T], axis=2)).save(val / "stripes.png")
    run = train(config(images, tmp_path / "run", iters=4, val=str(val), val_every=4), on_log=lambda r: None)
    logged = [r for r in read_log(run) if "val_psnr" in r][-1]
    report = evaluate([val], scale=2, models=[str(run / "model.safetensors")], engine="torch", device="cpu")
    score = next(iter(report.scores.values()))[report.datasets[0]]
    assert {i.name.rsplit(".", 1)[0]: i.psnr for i in score.images} == logged["val"]
    assert score.psnr == logged["val_psnr"]


def test_artifact_loss_trains_a_gan_against_its_ema_and_needs_one(images, tmp_path):
    settings = dict(gan="vanilla", disc="unet", disc_params={"num_feat": 4},
                    loss={"l1": 1.0, "artifact": 1.0, "feature_matching": 1.0})
    run = train(config(images, tmp_path / "ldl", iters=4, lr=1e-3, ema=0.9, log_every=1, **settings),
                on_log=lambda r: None)
    logged = [r for r in read_log(run) if "loss" in r]
    assert len(logged) == 4 and all(r["losses"]["artifact"] >= 0 for r in logged)
    assert any(r["losses"]["artifact"] > 0 for r in logged)
    loss_sum = [r["losses"]["l1"] + r["losses"]["artifact"] + r["losses"]["feature_matching"]
                + 0.1 * r["losses"]["gan"] for r in logged]
    assert [r["loss"] for r in logged] == pytest.approx(loss_sum, rel=1e-4)
    with pytest.raises(ValueError, match="artifact loss .* ema"):
        config(images, tmp_path / "no_ema", ema=0.0, **settings)


def test_block_edge_loss_trains_on_block_aligned_jpeg_patches(images, tmp_path):
    run = train(config(images, tmp_path / "run", iters=3, patch=16, degradation="robust_jpeg",
                       loss={"l1": 1.0, "block_edge": 2.0}), on_log=lambda r: None)
    logged = [r for r in read_log(run) if "loss" in r]
    assert len(logged) == 3 and all(r["losses"]["block_edge"] >= 0 for r in logged)
    assert all(r["loss"] == pytest.approx(r["losses"]["l1"] + 2 * r["losses"]["block_edge"], rel=1e-4) for r in logged)
    for patch in (12, 8):  # flips would move the grid; no grid line inside the patch
        with pytest.raises(ValueError, match="multiple of 8 .* at least 16"):
            config(images, tmp_path / "bad", patch=patch, loss={"l1": 1.0, "block_edge": 1.0})


def test_a_block_grid_network_trains_on_block_aligned_patches(images, tmp_path):
    # Its grid bias means something only if the codec's blocks start on the patch's multiples of 8.
    from sr_cli.training.trainer import Trainer
    from sr_cli.training.distributed import Distributed
    settings = dict(iters=2, patch=16, degradation="robust_jpeg", loss={"l1": 1.0},
                    arch_params={**TINY, "base": "nearest", "block_grid": 8})
    trainer = Trainer(config(images, tmp_path / "grid", **settings), on_log=lambda r: None,
                      dist_info=Distributed(), device=torch.device("cpu"))
    assert trainer.dataset.block_aligned
    plain = Trainer(config(images, tmp_path / "plain", **{**settings, "arch_params": TINY}), on_log=lambda r: None,
                    dist_info=Distributed(), device=torch.device("cpu"))
    assert not plain.dataset.block_aligned
    run = train(config(images, tmp_path / "run", **settings), on_log=lambda r: None)
    assert load_model(run / "model.safetensors").size_multiple == 8
    with pytest.raises(ValueError, match="multiple of 8"):
        train(config(images, tmp_path / "bad", **{**settings, "patch": 12}), on_log=lambda r: None)


def test_robust_video_trains_with_block_edge(images, tmp_path):
    run = train(config(images, tmp_path / "run", iters=2, patch=16, degradation="robust_video",
                       loss={"l1": 1.0, "block_edge": 1.0}), on_log=lambda r: None)
    assert len([r for r in read_log(run) if "loss" in r]) == 2
    assert read_metadata(run / "model.safetensors")["degradation"] == "robust_video"


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


def test_init_reads_a_data_parallel_checkpoint(images, tmp_path):
    # what torch.save(ddp_model.state_dict()) writes: every key under "module."
    source = build_arch("litesr", scale=2, **TINY)
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    run = train(config(images, tmp_path / "run", iters=1, lr=0.0, ema=0.0, init=str(path)), on_log=lambda r: None)
    out = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(out[k], v) for k, v in source.state_dict().items())


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


def test_scale_augmentation_is_recorded_and_fixed_on_resume(images, tmp_path):
    messages = []
    run = train(config(images, tmp_path / "run", iters=2, save_every=1, scale_aug=[0.5]),
                on_log=lambda r: messages.append(r.get("message", "")))
    assert any("with 4 copies shrunk by 0.5" in m for m in messages), messages
    assert json.loads(read_metadata(run / "model.safetensors")["scale_aug"]) == [0.5]
    with pytest.raises(ValueError, match="scale_aug"):
        train(config(images, run, iters=3, resume=True), on_log=lambda r: None)
    with pytest.raises(ValueError, match="between 0 and 1"):
        config(images, tmp_path / "r2", scale_aug=[1.5])
    runner = CliRunner()
    args = ["--arch", "litesr", "--data", str(images), "--out", str(tmp_path / "r3"), "--scale-aug"]
    for bad in ("0.5,big", "0.5,1.2"):
        result = runner.invoke(train_command, args + [bad])
        assert result.exit_code == 2 and "--scale-aug" in result.output and "Traceback" not in result.output


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("relu") == "relu"


# ---------------------------------------------------------------------------
# every generator family, GAN mode, pretrained generator, config files



def fixed_batch(images, n=8):
    from sr_cli.data import HRPatchDataset
    ds = HRPatchDataset([images], scale=2, patch=8, seed=99)
    lr, hr = zip(*(ds[i] for i in range(n)))
    return torch.stack(lr), torch.stack(hr)


def l1_on(net, batch):
    net.eval()
    with torch.no_grad():
        return float(torch.nn.functional.l1_loss(net(batch[0]), batch[1]))


@pytest.mark.parametrize("arch", list(FAMILIES))  # every architecture, with its descriptor's tiny settings
def test_each_generator_family_learns(arch, images, tmp_path):
    loss = {"l1": 1.0, "kl": 0.01} if arch == "vae" else {"l1": 1.0}
    run = train(config(images, tmp_path / arch, arch=arch, arch_params=FAMILIES[arch], iters=12, lr=3e-3, ema=0.0,
                       loss=loss, log_every=4), on_log=lambda r: None)
    batch = fixed_batch(images)
    torch.manual_seed(0)  # train() seeds the same way before building the network
    before = l1_on(build_arch(arch, scale=2, **FAMILIES[arch]), batch)
    after = l1_on(load_model(run / "model.safetensors").net, batch)
    assert after < 0.95 * before, (before, after)  # litesr starts close (a bicubic skip): ~0.91
    records = [r for r in read_log(run) if "loss" in r]
    assert all(np.isfinite(r["loss"]) for r in records)
    if arch == "vae":
        assert all(r["losses"]["kl"] >= 0 for r in records)


def test_kl_needs_a_kl_term(images, tmp_path):
    with pytest.raises(ValueError, match="KL"):
        train(config(images, tmp_path / "r", loss={"l1": 1.0, "kl": 0.1}), on_log=lambda r: None)


GAN_CASES = {
    "vgg-ragan": dict(gan="ragan", disc="vgg", disc_params={"num_feat": 4, "dense_features": 8, "pool_size": 2},
                      loss={"l1": 0.1, "perceptual": 1.0, "feature_matching": 1.0},
                      perceptual_layers={"conv2_2": 1.0}, vgg_random_init=True),
    "unet-lsgan": dict(gan="lsgan", disc="unet", disc_params={"num_feat": 4}, loss={"l1": 1.0}, d_steps=2),
    "unet-vanilla-bebygan": dict(gan="vanilla", disc="unet", disc_params={"num_feat": 4}, loss={"best_buddy": 1.0},
                                 gan_region=0.03),
    "vgg-vanilla": dict(gan="vanilla", disc="vgg", disc_params={"num_feat": 4, "dense_features": 8, "pool_size": 2},
                        loss={"l1": 1.0}, gan_weight=0.5, d_lr=5e-4),
}


def read_checkpoint(run, prefix):
    tensors = load_file(str(run / "checkpoint.safetensors"))
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


@pytest.mark.parametrize("case", list(GAN_CASES))
def test_gan_mode_updates_generator_and_discriminator(case, images, tmp_path):
    settings = GAN_CASES[case]
    start = train(config(images, tmp_path / "start", iters=1, lr=0.0, ema=0.0, **settings), on_log=lambda r: None)
    run = train(config(images, tmp_path / "gan", iters=6, lr=1e-3, ema=0.0, log_every=2, **settings),
                on_log=lambda r: None)
    records = [r for r in read_log(run) if "loss" in r]
    assert len(records) == 3
    for r in records:
        assert set(r["losses"]) == set(settings["loss"]) | {"gan"}
        assert all(np.isfinite(v) for v in [r["loss"], r["d_loss"], r["d_real"], r["d_fake"], *r["losses"].values()])
    for prefix in ("model.", "disc."):
        before, after = read_checkpoint(start, prefix), read_checkpoint(run, prefix)
        assert before and before.keys() == after.keys()
        changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
        assert len(changed) > len(before) // 2, prefix
    assert any(k.startswith("doptim.") for k in load_file(str(run / "checkpoint.safetensors")))
    meta = read_metadata(run / "model.safetensors")
    assert meta["gan"] == settings["gan"] and meta["disc"] == settings["disc"]
    assert json.loads(meta["loss"])["gan"] == settings.get("gan_weight", 0.1)


def test_region_aware_gan_term_leaves_flat_truth_to_the_pixel_losses():
    from sr_cli.archs.discriminators import build_discriminator
    from sr_cli.training.objective import GeneratorObjective
    base = dict(arch="litesr", scale=2, data=["x"], out="y", gan="vanilla", disc="unet", loss={"l1": 1.0})
    disc = build_discriminator("unet", num_feat=4).eval()  # spectral norm: no power step per call
    net = build_arch("litesr", **TINY)
    sr = torch.rand(2, 3, 16, 16, requires_grad=True)
    flat = torch.full((2, 3, 16, 16), 0.5)
    textured = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    region = GeneratorObjective(TrainConfig(**base, gan_region=0.03), device=torch.device("cpu"))
    everywhere = GeneratorObjective(TrainConfig(**base), device=torch.device("cpu"))
    assert region(sr, flat, net=net, disc=disc)["gan"].item() == 0.0
    assert everywhere(sr, flat, net=net, disc=disc)["gan"].item() > 0.1
    # where all of the truth is textured, the region-aware term is the plain one
    assert region(sr, textured, net=net, disc=disc)["gan"].item() == pytest.approx(
        everywhere(sr, textured, net=net, disc=disc)["gan"].item())


def test_gan_resume_is_exact(images, tmp_path):
    settings = dict(GAN_CASES["unet-lsgan"], gan="ragan", loss={"l1": 1.0, "feature_matching": 0.5},
                    degradation="simple", save_every=3, iters=6)
    straight = train(config(images, tmp_path / "a", **settings), on_log=lambda r: None)

    class Crash(Exception):
        pass

    def crash_after_3(record):
        if record.get("step") == 4:
            raise Crash
    with pytest.raises(Crash):
        train(config(images, tmp_path / "b", **settings), on_log=crash_after_3)
    resumed = train(config(images, tmp_path / "b", resume=True, **settings), on_log=lambda r: None)
    a, b = load_file(str(straight / "checkpoint.safetensors")), load_file(str(resumed / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    assert {k.split(".")[0] for k in a} == {"model", "ema", "optim", "disc", "doptim"}
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    with pytest.raises(ValueError, match="gan"):
        train(config(images, tmp_path / "b", resume=True, **{**settings, "gan": "lsgan"}), on_log=lambda r: None)


def test_gan_stage_goes_on_from_a_runs_generator_and_discriminator(images, tmp_path):
    # A GAN stage continued with other loss weights: the new run starts from the old run's generator
    # (its model file) and discriminator (its checkpoint's disc.* tensors), exactly.
    settings = dict(GAN_CASES["unet-lsgan"], gan="vanilla", iters=3, ema=0.0)
    first = train(config(images, tmp_path / "first", **settings), on_log=lambda r: None)
    logs = []
    second = train(config(images, tmp_path / "second", **{**settings, "loss": {"l1": 0.5}, "iters": 1, "lr": 0.0,
                                                             "d_lr": 0.0},
                          pretrained_g=str(first / "model.safetensors"),
                          pretrained_d=str(first / "checkpoint.safetensors")), on_log=logs.append)
    assert any("discriminator: " in r.get("message", "") for r in logs)
    before, after = read_checkpoint(first, "disc."), read_checkpoint(second, "disc.")
    # With learning rates 0 the weights stay as loaded (spectral norm's power-iteration vectors move).
    weights = [k for k in before if not k.endswith(("weight_u", "weight_v"))]
    assert before.keys() == after.keys() and weights and all(torch.equal(before[k], after[k]) for k in weights)
    # A discriminator's own tensors work too; one of another size is one clear error.
    from safetensors.torch import save_file
    save_file(before, str(tmp_path / "disc.safetensors"))
    train(config(images, tmp_path / "third", **{**settings, "iters": 1}, pretrained_d=str(tmp_path / "disc.safetensors")),
          on_log=lambda r: None)
    wider = {**settings, "disc_params": {**settings.get("disc_params", {}), "num_feat": 8}, "iters": 1}
    with pytest.raises(ValueError, match="does not fit this discriminator"):
        train(config(images, tmp_path / "fourth", **wider, pretrained_d=str(tmp_path / "disc.safetensors")),
              on_log=lambda r: None)
    with pytest.raises(ValueError, match="needs GAN training"):
        TrainConfig(arch="litesr", scale=2, data=["x"], out="y", pretrained_d=str(tmp_path / "disc.safetensors"))


def test_gan_config_checks(images, tmp_path):
    base = dict(arch="litesr", scale=2, data=["x"], out="y")
    assert TrainConfig(**base, gan="ragan").loss == {"l1": 1.0, "gan": 0.1}
    assert TrainConfig(**base, gan="ragan", loss={"l1": 1.0, "gan": 0.3}).gan_weight == 0.3
    with pytest.raises(ValueError, match="twice"):
        TrainConfig(**base, gan="ragan", loss={"l1": 1.0, "gan": 0.3}, gan_weight=0.2)
    with pytest.raises(ValueError, match="GAN"):
        TrainConfig(**base, loss={"l1": 1.0, "feature_matching": 1.0})
    with pytest.raises(ValueError, match="gan_region need GAN"):
        TrainConfig(**base, gan_region=0.03)
    with pytest.raises(ValueError, match="gan_region must be"):
        TrainConfig(**base, gan="vanilla", gan_region=-1.0)
    with pytest.raises(ValueError, match="discriminator"):
        TrainConfig(**base, gan="ragan", disc="patch")
    with pytest.raises(ValueError, match="VGG19 weights"):
        TrainConfig(**base, loss={"l1": 1.0, "perceptual": 1.0})
    with pytest.raises(ValueError, match="degradation"):
        TrainConfig(**base, degradation="bsrgan")
    with pytest.raises(ValueError, match="multiples of 8"):
        train(config(images, tmp_path / "r", patch=6, gan="lsgan", disc="unet", disc_params={"num_feat": 4}),
              on_log=lambda r: None)


def test_pretrained_generator(images, tmp_path):
    psnr = train(config(images, tmp_path / "psnr", iters=2), on_log=lambda r: None)
    logs = []
    run = train(config(images, tmp_path / "ft", iters=1, lr=0.0, ema=0.0, pretrained_g=str(psnr / "model.safetensors")),
                on_log=logs.append)
    assert any("generator: " in r.get("message", "") for r in logs)
    src, dst = load_file(str(psnr / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert src.keys() == dst.keys() and all(torch.equal(src[k], dst[k]) for k in src)
    with pytest.raises(ValueError, match="num_feat"):
        train(config(images, tmp_path / "bad", arch_params={"num_feat": 4, "num_blocks": 1},
                     pretrained_g=str(psnr / "model.safetensors")), on_log=lambda r: None)
    with pytest.raises(ValueError, match="x2 litesr"):
        train(config(images, tmp_path / "bad3", scale=3, pretrained_g=str(psnr / "model.safetensors")),
              on_log=lambda r: None)


def test_pretrained_generator_from_a_real_esrgan_pth(images, tmp_path):
    from sr_cli.training.checkpoint import read_generator
    torch.manual_seed(5)
    source = build_arch("rrdbnet", scale=2, **FAMILIES["rrdbnet"])
    path = tmp_path / "RealESRGAN_x2_tiny.pth"
    torch.save({"params_ema": source.state_dict()}, path)  # Real-ESRGAN's layout and container
    arch, params, _ = read_generator(path)
    assert arch == "rrdbnet" and params == {"scale": 2, "in_channels": 3, "out_channels": 3, **FAMILIES["rrdbnet"]}
    run = train(config(images, tmp_path / "ft", arch="rrdbnet", arch_params=FAMILIES["rrdbnet"], iters=1, lr=0.0,
                       ema=0.0, pretrained_g=str(path)), on_log=lambda r: None)
    out = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(out[k], v) for k, v in source.state_dict().items())


def test_cli_gan_from_pretrained_and_config_file(images, tmp_path):
    psnr = train(config(images, tmp_path / "psnr", iters=1), on_log=lambda r: None)
    toml = tmp_path / "gan.toml"
    toml.write_text(f"""
data = ["{images}"]
pretrained_g = "{psnr / 'model.safetensors'}"
gan = "ragan"
disc = "unet"
disc-opt = {{num_feat = 4}}
loss = {{l1 = 1, feature_matching = 0.5}}
gan-weight = 0.05
patch = 8
batch = 2
iters = 2
workers = 0
threads = 1
log-every = 1
csv = true
""")
    runner = CliRunner()
    result = runner.invoke(train_command, ["--config", str(toml), "--out", str(tmp_path / "gan"), "--iters", "3"])
    assert result.exit_code == 0, result.output
    assert "step       3" in result.output and " D " in result.output
    saved = json.loads((tmp_path / "gan" / "config.json").read_text())
    assert (saved["arch"], saved["scale"], saved["arch_params"]) == ("litesr", 2, TINY)  # from the pretrained file
    assert saved["iters"] == 3 and saved["loss"] == {"l1": 1.0, "feature_matching": 0.5, "gan": 0.05}
    assert saved["disc_params"] == {"num_feat": 4}
    rows = (tmp_path / "gan" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,loss_l1") and "d_loss" in rows[0] and len(rows) == 4

    toml.write_text('arch = "litesr"\nitres = 3\n')  # a typo is an error, not a silent default
    bad = runner.invoke(train_command, ["--config", str(toml), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown key 'itres' (did you mean 'iters'?)" in bad.output
    toml.write_text('arch = "litesr"\niters = [\n')
    bad = runner.invoke(train_command, ["--config", str(toml), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "gan.toml" in bad.output
    toml.write_text('lr = "fast"\n')
    bad = runner.invoke(train_command, ["--config", str(toml), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "fast" in bad.output


def test_config_defaults_mapping():
    from sr_cli.commands.train_cmd import config_defaults
    out = config_defaults(train_command, {"arch_opt": {"num_feat": 8, "skips": False}, "milestones": [10, 20],
                                          "data": "a", "perceptual-layers": {"conv5_4": 1}, "resume": True}, "f")
    assert out == {"arch_opts": ["num_feat=8", "skips=false"], "milestones": "10,20", "data": ["a"],
                   "perceptual_layers": "conv5_4=1", "resume": True}
    for key in ("config", "list-archs", "typo"):
        with pytest.raises(Exception, match="unknown key"):
            config_defaults(train_command, {key: 1}, "f")


def test_cli_defaults_are_the_config_defaults():
    from sr_cli.commands.train_cmd import config_values
    required = dict(arch="litesr", data=["."], out="o", scale=2)
    ctx = train_command.make_context("train", ["--arch", "litesr", "--data", ".", "--out", "o", "--scale", "2"])
    assert TrainConfig(**config_values(ctx.params)) == TrainConfig(**required)


@pytest.mark.subprocess
def test_train_options_import_no_torch():
    import subprocess
    import sys
    code = "import sys, sr_cli.commands.train_cmd; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_cli_choices_match_the_core():
    # training.config copies these names so that `sr train --help` needs no torch
    from sr_cli.archs import DISCRIMINATORS
    from sr_cli.degrade import PRESETS
    from sr_cli.training import config
    assert set(config.DISCRIMINATORS) == set(DISCRIMINATORS)
    assert set(config.DEGRADATIONS) == {"bicubic", *PRESETS}


def test_amp_is_ignored_on_cpu(images, tmp_path):
    logs = []
    train(config(images, tmp_path / "amp", iters=1, amp="fp16", device="cpu"), on_log=logs.append)
    assert any("amp" in r.get("message", "") for r in logs)


def test_cli_live_display(images, tmp_path):
    args = ["--arch", "litesr", "--arch-opt", "num_feat=8", "--arch-opt", "num_blocks=1", "--data", str(images),
            "--scale", "2", "--out", str(tmp_path / "run"), "--patch", "8", "--batch", "2", "--iters", "2",
            "--workers", "0", "--threads", "1", "--log-every", "1", "--val", str(images), "--val-every", "1",
            "--display", "live"]
    result = CliRunner().invoke(train_command, args)
    assert result.exit_code == 0, result.output
    assert "2/2" in result.output and "loss " in result.output and "val PSNR" in result.output
    assert "data: 4 images" in result.output and "done: " in result.output
