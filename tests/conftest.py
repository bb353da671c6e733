import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sr_cli import registry
from sr_cli.archs import ARCHS, build_arch
from sr_cli.weights import save_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# Each architecture's tiny hyperparameters, as its descriptor declares them (``ArchDescriptor.tiny``).
TINY_PARAMS = {name: dict(arch.tiny) for name, arch in ARCHS.items()}
TINY_LITESR = TINY_PARAMS["litesr"]


def random_net(arch, *, std=0.05, **params):
    """Our ``arch`` built with ``params``, random (non-trivial) weights of deviation ``std``, in eval
    mode: a model whose outputs depend on every weight, or the network behind a synthetic community
    weights file (its state dict renamed and wrapped as released)."""
    net = build_arch(arch, **params)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, std)
    return net.eval()


def tiny_train_config(images, out, **overrides):
    """A TrainConfig for a few fast steps of a tiny LiteSR x2 on ``images``; ``overrides`` on top."""
    from sr_cli.training.config import TrainConfig
    settings = dict(arch="litesr", arch_params=TINY_LITESR, scale=2, data=[str(images)], out=str(out), patch=8,
                    batch=4, iters=8, lr=1e-3, workers=0, log_every=1, save_every=1000, val_every=1000, threads=1,
                    ema=0.9)
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread():
    # Test tensors are tiny: one thread beats two that contend, above all on a shared 2-core box.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def device() -> str:
    # Tests run on the CPU unless SR_TEST_DEVICE says otherwise (e.g. cuda on a GPU box).
    return os.environ.get("SR_TEST_DEVICE", "cpu")


def write_smooth_pngs(folder: Path, count: int = 4, size: int = 48) -> Path:
    """``count`` random smooth RGB images (cubic-upsampled noise) as PNG files in ``folder``."""
    import cv2
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i}.png"), cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC))
    return folder


def smooth_image(h, w, c, dtype=np.uint8):
    """A smooth synthetic H x W x C image (no data files needed)."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(x / 5 + k) * np.cos(y / 7 - k) for k in range(c)], axis=2)
    maximum = 65535 if dtype == np.uint16 else 255
    return np.round((base * 0.5 + 0.5) * maximum).astype(dtype)


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """A 'default' model per scale with random (non-trivial) weights: behaviour, not quality."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(registry, "WEIGHTS_DIR", folder)
    for scale in (2, 3, 4):
        params = {"scale": scale, **TINY_LITESR}
        save_model(random_net("litesr", **params), folder / f"default_x{scale}.safetensors", arch="litesr",
                   params=params)
    return folder


