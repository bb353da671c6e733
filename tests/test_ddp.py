"""Data-parallel training: two CPU processes (gloo) started by torchrun, as a user would."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_LITESR as TINY, write_smooth_pngs
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from sr_cli.archs.discriminators import build_discriminator
from sr_cli.training.config import TrainConfig
from sr_cli.training.distributed import weights_checksum
from sr_cli.training.trainer import train
from sr_cli.weights import load_model

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

DISC = {"num_feat": 4}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.subprocess
def test_two_processes_train_one_model(tmp_path):
    images = write_smooth_pngs(tmp_path / "hr")
    out = tmp_path / "run"
    # GAN mode (lsgan: per-element means, so the shards' average is the whole batch's loss) with the
    # U-Net discriminator: both networks are DistributedDataParallel.
    args = ["--arch", "litesr", "--arch-opt", "num_feat=8", "--arch-opt", "num_blocks=1", "--data", str(images),
            "--scale", "2", "--patch", "8", "--batch", "4", "--iters", "4", "--lr", "1e-3", "--ema", "0",
            "--gan", "lsgan", "--disc", "unet", "--disc-opt", "num_feat=4", "--workers", "0", "--threads", "1",
            "--log-every", "2", "--device", "cpu", "--display", "plain"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "sr_cli", "train", *args, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    assert result.stdout.count("done: ") == 1  # rank 0 reports, the other rank stays quiet
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["checkpoint.safetensors", "model.safetensors"]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [2, 4]
    assert "x 2 processes" in result.stdout
    # the ranks compared checksums of their weights at the end; rank 0's export matches them
    agreed = [r["weights_sha256"] for r in records if "weights_sha256" in r]
    assert len(agreed) == 1
    generator = load_model(out / "model.safetensors").net
    disc = build_discriminator("unet", **DISC)
    disc.load_state_dict({k[5:]: v for k, v in load_file(str(out / "checkpoint.safetensors")).items()
                          if k.startswith("disc.")})
    assert weights_checksum(generator, disc) == agreed[0]

    # the samples are sharded, not duplicated: one process with the same batch takes the same steps
    alone = train(TrainConfig(arch="litesr", arch_params=TINY, scale=2, data=[str(images)], out=str(tmp_path / "one"),
                              patch=8, batch=4, iters=4, lr=1e-3, ema=0.0, gan="lsgan", disc="unet", disc_params=DISC,
                              workers=0, threads=1, log_every=2, device="cpu"), on_log=lambda r: None)
    single = load_model(alone / "model.safetensors").net.state_dict()
    for name, value in generator.state_dict().items():
        assert torch.allclose(value, single[name], atol=1e-5), name
