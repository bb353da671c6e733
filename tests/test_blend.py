"""Network interpolation (--strength): the two ends are the two models, mixing needs matching shapes."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import random_net, smooth_image
from sr_cli.blend import blend, split_spec
from sr_cli.resolve import parent_of
from sr_cli.cli import cli
from sr_cli.model import SRModel
from sr_cli.weights import load_model, save_model

PARAMS = {"scale": 4, "num_feat": 8, "num_blocks": 1}


@pytest.fixture
def pair(weights_dir):
    """'default' x4 and a 'photo' x4 of the same shapes whose metadata names default as its parent."""
    torch.manual_seed(7)
    save_model(random_net("litesr", **PARAMS), weights_dir / "photo_x4.safetensors", arch="litesr", params=PARAMS,
               extra={"parent": "default"})
    return weights_dir


def test_blend_ends_are_the_two_models_and_the_middle_is_the_mean(pair):
    photo, default = (load_model(pair / f"{n}_x4.safetensors") for n in ("photo", "default"))
    x = torch.rand(1, 3, 9, 7)
    for strength, expected in ((0.0, default), (1.0, photo)):
        mixed = blend(load_model(pair / "photo_x4.safetensors"), load_model(pair / "default_x4.safetensors"), strength)
        torch.testing.assert_close(mixed(x), expected(x), rtol=0, atol=0)
    half = blend(load_model(pair / "photo_x4.safetensors"), load_model(pair / "default_x4.safetensors"), 0.5)
    for key, value in half.net.state_dict().items():
        torch.testing.assert_close(value, (photo.net.state_dict()[key] + default.net.state_dict()[key]) / 2)


def test_only_matching_models_blend(pair):
    other = {"scale": 4, "num_feat": 8, "num_blocks": 2}
    wide = SRModel.from_net(random_net("litesr", **other), "litesr", other)
    with pytest.raises(ValueError, match="different shapes"):
        blend(load_model(pair / "photo_x4.safetensors"), wide, 0.5)
    srvgg = {"scale": 4, "num_feat": 8, "num_conv": 2}
    with pytest.raises(ValueError, match="same architecture"):
        blend(load_model(pair / "photo_x4.safetensors"),
              SRModel.from_net(random_net("srvgg", **srvgg), "srvgg", srvgg), 0.5)


def test_a_block_grid_model_blends_with_a_parent_without_the_grid(pair):
    # The parent computes what it would with a zero grid bias, so it blends as that network.
    grid_params = {**PARAMS, "block_grid": 8}
    torch.manual_seed(3)
    child = SRModel.from_net(random_net("litesr", **grid_params), "litesr", grid_params)
    default = load_model(pair / "default_x4.safetensors")  # blend() rewrites the model, never the parent
    x = torch.rand(1, 3, 16, 24)
    start = blend(SRModel.from_net(random_net("litesr", **grid_params), "litesr", grid_params), default, 0.0)
    torch.testing.assert_close(start(x), default(x), rtol=0, atol=1e-6)
    own_bias = child.net.grid_bias.detach().clone()
    half = blend(child, default, 0.5)
    assert own_bias.abs().max() > 0
    torch.testing.assert_close(half.net.grid_bias.detach(), own_bias / 2)
    with pytest.raises(ValueError, match="different shapes .*grid_bias"):  # the other way round it does not
        blend(default, child, 0.5)


def test_parents_come_from_metadata_or_the_catalogue(pair):
    assert parent_of("photo", 4) == "default"
    assert parent_of("RealESRGAN_x4plus", 4) == "RealESRNet_x4plus"  # not pulled: read from the catalogue
    with pytest.raises(ValueError, match="--parent"):
        parent_of("default", 4)
    assert split_spec("photo@0.25") == ("photo", 0.25) and split_spec("photo") == ("photo", None)
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_spec("photo@1.5")


def test_strength_on_the_command_line(pair, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(smooth_image(12, 10, 3)).save(src)

    def run(*args):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.png"
        result = CliRunner().invoke(cli, ["upscale", str(src), "-s", "4", "-o", str(out), "--quiet", *args])
        assert result.exit_code == 0, result.output
        return np.asarray(Image.open(out)).astype(int)

    default, photo = run("-m", "default"), run("-m", "photo")
    assert np.array_equal(run("-m", "photo", "--strength", "0"), default)
    assert np.array_equal(run("-m", "photo", "--strength", "1"), photo)
    middle = run("-m", "photo@0.5")
    assert np.abs(middle - default).mean() < np.abs(photo - default).mean()
    assert np.array_equal(run("-m", "default", "--strength", "1", "--parent", "photo"), default)
    for args, message in ((["-m", "default", "--strength", "0.5"], "--parent"),
                          (["-m", "photo", "--strength", "2"], "0<=x<=1"),
                          (["-m", "bicubic", "--strength", "0.5"], "no weights to blend"),
                          (["-m", "photo@0.5", "--engine", "onnx"], "run on torch")):
        result = CliRunner().invoke(cli, ["upscale", str(src), "-s", "4", "--quiet", *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_a_deeper_model_blends_with_its_shallower_parent(pair):
    # A parent without the extra residual blocks computes what it would with them at zero.
    deep_params = {**PARAMS, "num_blocks": 3}
    torch.manual_seed(5)
    child = SRModel.from_net(random_net("litesr", **deep_params), "litesr", deep_params)
    extra = {k: v.detach().clone() for k, v in child.net.state_dict().items() if k.startswith(("body.1.", "body.2."))}
    default = load_model(pair / "default_x4.safetensors")
    x = torch.rand(1, 3, 9, 7)
    start = blend(SRModel.from_net(random_net("litesr", **deep_params), "litesr", deep_params), default, 0.0)
    torch.testing.assert_close(start(x), default(x), rtol=0, atol=1e-6)
    half = blend(child, default, 0.5).net.state_dict()
    assert all(v.abs().max() > 0 for v in extra.values())
    for key, value in extra.items():
        torch.testing.assert_close(half[key], value / 2)
    with pytest.raises(ValueError, match="different shapes .*body.1"):  # a shallower model cannot drop blocks
        blend(default, SRModel.from_net(random_net("litesr", **deep_params), "litesr", deep_params), 0.5)
