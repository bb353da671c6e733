import numpy as np
import pytest
import torch

from sr_cli.metrics import blockiness
from sr_cli.resize import imresize


def smooth(h, w, seed=0):
    import cv2
    # interpolation knots about every 7 pixels: off the 8-pixel grid being measured
    small = np.random.default_rng(seed).integers(0, 256, (h // 7 + 1, w // 7 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def bicubic_up(img, scale):
    x = torch.tensor(img.transpose(2, 0, 1)[None], dtype=torch.float64)
    return imresize(x, scale).clamp(0, 255).round()[0].permute(1, 2, 0).numpy().astype(np.uint8)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_no_grid_is_about_one(scale):
    values = [blockiness(bicubic_up(smooth(64, 64, seed), scale), scale=scale) for seed in range(4)]
    assert 0.85 < float(np.mean(values)) < 1.15


@pytest.mark.parametrize("scale", [2, 4])
def test_enlarged_blocks_stand_out(scale):
    lr = smooth(64, 64).astype(np.int16)
    # a step added along every 8th LR pixel line, as a JPEG block grid
    lr[:, ::8] += 12
    lr[::8, :] += 12
    lr = np.clip(lr, 0, 255).astype(np.uint8)
    assert blockiness(bicubic_up(lr, scale), scale=scale) > 1.3
    # the measure reads the grid at the scale it is told: off-grid for another scale
    assert blockiness(bicubic_up(lr, scale), scale=scale) > blockiness(bicubic_up(lr, scale), scale=scale + 1)


def test_grey_and_too_small():
    grey = smooth(64, 64)[..., 0]
    assert 0.5 < blockiness(grey, scale=1) < 1.5
    with pytest.raises(ValueError, match="too small"):
        blockiness(smooth(8, 8), scale=2)
