import json

import pytest
import torch
from conftest import random_net
from safetensors.torch import save_file

from sr_cli.archs import build_arch
from sr_cli.model import SRModel
from sr_cli.weights import load_model, read_metadata, save_model


def test_save_load_round_trip(tmp_path):
    params = {"scale": 3, "num_feat": 8, "num_blocks": 2}
    net = random_net("litesr", std=0.1, **params)
    path = tmp_path / "m.safetensors"
    save_model(net, path, arch="litesr", params=params, extra={"psnr": {"Set5": 30.0}, "note": "test"})
    meta = read_metadata(path)
    assert meta["arch"] == "litesr" and meta["scale"] == "3" and json.loads(meta["params"]) == params
    assert json.loads(meta["psnr"]) == {"Set5": 30.0} and meta["note"] == "test"
    loaded = load_model(path)
    assert loaded.scale == 3 and loaded.arch == "litesr" and loaded.receptive_radius == net.receptive_radius
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        expected = net.eval()(x).clamp(0, 1)
    assert torch.equal(loaded(x), expected)


def test_file_without_metadata_is_refused(tmp_path):
    path = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="metadata"):
        load_model(path)


def test_unknown_arch_and_bad_params_raise():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_arch("nope", scale=2)
    with pytest.raises(ValueError, match="bad parameters"):
        build_arch("litesr", scale=2, num_feats=3)  # typo must fail, not vanish


def test_model_pads_to_size_multiple():
    class Needs4(torch.nn.Module):
        scale, in_channels, size_multiple = 2, 3, 4

        def forward(self, x):
            assert x.shape[-1] % 4 == 0 and x.shape[-2] % 4 == 0
            return torch.nn.functional.interpolate(x, scale_factor=2)

    model = SRModel.from_net(Needs4(), "needs4", {"scale": 2})
    assert model(torch.rand(1, 3, 5, 7)).shape == (1, 3, 10, 14)
