import pytest
import torch

from sr_cli import registry, resolve
from sr_cli.archs import build_arch
from sr_cli.weights import save_model


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    for scale in (2, 4):
        params = {"scale": scale, "num_feat": 4, "num_blocks": 1}
        save_model(build_arch("litesr", **params), tmp_path / f"default_x{scale}.safetensors",
                   arch="litesr", params=params)
    return tmp_path


@pytest.mark.parametrize("target, passes", [(2, [2]), (4, [4]), (1.5, [2]), (3, [4]), (3.5, [4]), (8, [4, 2]),
                                            (16, [4, 4]), (9, [4, 4])])
def test_plan_passes(weights_dir, target, passes):
    assert resolve.plan_passes("default", target) == passes


def test_baselines_cover_common_scales():
    assert resolve.plan_passes("bicubic", 3) == [3]
    assert resolve.plan_passes("lanczos", 8) == [8]


def test_resolve_named_and_path(weights_dir):
    model = resolve.resolve_model("default", 4)
    assert model.scale == 4 and model.name == "default"
    assert resolve.resolve_model(str(weights_dir / "default_x2.safetensors"), 2).scale == 2
    with pytest.raises(ValueError, match="no x3 weights"):
        resolve.resolve_model("default", 3)
    with pytest.raises(ValueError, match="unknown model"):
        resolve.resolve_model("no-such-model", 2)


def test_scale_must_exceed_one(weights_dir):
    with pytest.raises(ValueError):
        resolve.plan_passes("default", 1.0)


def test_lanczos_baseline_shape():
    model = resolve.resolve_model("lanczos", 3)
    assert model(torch.rand(1, 3, 5, 6)).shape == (1, 3, 15, 18)
