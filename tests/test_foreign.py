"""Community model files: each layout built from our own modules with random weights, its keys
renamed and wrapped exactly as the released files have them, then loaded through the registry."""
import json
import os
import pickle
import sys
import types

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner
from safetensors.torch import save_file

from sr_cli import foreign, registry
from sr_cli.archs import build_arch
from sr_cli.archs.edsr import DIV2K_RGB_MEAN
from sr_cli.cli import cli
from sr_cli.weights import load_model, read_metadata


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny convs on a shared 2-core box: one thread is far faster than two contending ones.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_net(arch, **params):
    net = build_arch(arch, **params)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    return net.eval()


def same_outputs(loaded, net, size=(8, 12)):
    x = torch.rand(1, net.in_channels, *size)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), net(x))
        assert torch.equal(loaded(x), net(x).clamp(0, 1))


RRDB = {"num_feat": 8, "num_block": 2, "num_grow_ch": 4}


# ---------------------------------------------------------------------------
# layouts


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_real_esrgan_rrdbnet_prefers_params_ema(tmp_path, scale):
    net = random_net("rrdbnet", scale=scale, **RRDB)
    other = random_net("rrdbnet", scale=scale, **RRDB)
    path = tmp_path / f"RealESRGAN_x{scale}plus.pth"
    torch.save({"params": other.state_dict(), "params_ema": net.state_dict()}, path)
    assert registry.native_scales(str(path)) == [scale]
    loaded = registry.resolve_model(str(path), scale)
    assert loaded.arch == "rrdbnet" and loaded.scale == scale and loaded.size_multiple == net.size_multiple
    assert loaded.params == {"scale": scale, "in_channels": 3, "out_channels": 3, **RRDB}
    assert loaded.metadata["source_format"] == "Real-ESRGAN RRDBNet"
    same_outputs(loaded, net)


@pytest.mark.parametrize("scale, act", [(4, "prelu"), (2, "relu")])
def test_real_esrgan_compact(tmp_path, scale, act):
    net = random_net("srvgg", scale=scale, num_feat=8, num_conv=3, act_type=act)
    path = tmp_path / "realesr-general-x4v3.pth"
    torch.save({"params": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    loaded = registry.resolve_model(str(path), scale)
    assert loaded.params == {"scale": scale, "in_channels": 3, "out_channels": 3, "num_feat": 8,
                             "num_conv": 3, "act_type": act}
    same_outputs(loaded, net)


def esrgan_original_keys(state, num_block, n_up):
    names = {"conv_first": "model.0", "conv_body": f"model.1.sub.{num_block}",
             "conv_hr": f"model.{3 * n_up + 2}", "conv_last": f"model.{3 * n_up + 4}"}
    names.update({f"conv_up{k}": f"model.{3 * k}" for k in range(1, n_up + 1)})
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "body":  # body.i.rdbK.convJ.leaf -> model.1.sub.i.RDBK.convJ.0.leaf
            out[f"model.1.sub.{parts[1]}.RDB{parts[2][3:]}.{parts[3]}.0.{parts[4]}"] = value
        else:
            out[f"{names[parts[0]]}.{parts[1]}"] = value
    return out


@pytest.mark.parametrize("scale", [4, 8])
def test_original_esrgan_layout(tmp_path, scale):
    net = random_net("rrdbnet", scale=scale, **RRDB)
    state = esrgan_original_keys(net.state_dict(), RRDB["num_block"], {4: 2, 8: 3}[scale])
    last = {4: "model.10.weight", 8: "model.13.weight"}[scale]  # conv_last after 2 or 3 upsampling stages
    assert "model.1.sub.0.RDB1.conv1.0.weight" in state and "model.1.sub.2.weight" in state and last in state
    path = tmp_path / "RRDB_ESRGAN_x4_old_arch.pth"
    torch.save(state, path)  # plain state dict: its "model.N" keys are not a container
    loaded = registry.resolve_model(str(path), scale)
    assert loaded.metadata["source_format"] == "ESRGAN (original layout)"
    same_outputs(loaded, net)


def test_mmsr_esrgan_layout_in_a_lightning_style_checkpoint(tmp_path):
    net = random_net("rrdbnet", scale=4, **RRDB)
    names = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    state = {}
    for key, value in net.state_dict().items():
        parts = key.split(".")
        if parts[0] == "body":
            key = f"RRDB_trunk.{parts[1]}.RDB{parts[2][3:]}.{parts[3]}.{parts[4]}"
        else:
            key = f"{names.get(parts[0], parts[0])}.{parts[1]}"
        state[f"netG.module.{key}"] = value
    path = tmp_path / "esrgan.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    loaded = registry.resolve_model(str(path), 4)
    same_outputs(loaded, net)


def edsr_official(net, rgb_range=255.0):
    state = dict(net.state_dict())
    mean = torch.tensor(DIV2K_RGB_MEAN) * rgb_range
    state["sub_mean.weight"] = torch.eye(3).view(3, 3, 1, 1)
    state["sub_mean.bias"] = -mean
    state["add_mean.weight"] = torch.eye(3).view(3, 3, 1, 1)
    state["add_mean.bias"] = mean
    return state


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_official_layout(tmp_path, scale):
    net = random_net("edsr", scale=scale, num_feat=8, num_blocks=2, rgb_range=255.0)
    assert "tail.0.0.weight" in net.state_dict() and "body.2.weight" in net.state_dict()
    path = tmp_path / f"edsr_baseline_x{scale}.pt"
    torch.save(edsr_official(net), path)
    loaded = registry.resolve_model(str(path), scale)
    assert loaded.params == {"scale": scale, "in_channels": 3, "num_feat": 8, "num_blocks": 2, "res_scale": 1.0,
                             "mean_shift": True, "rgb_range": 255.0}
    same_outputs(loaded, net)


def test_safetensors_without_our_metadata_is_detected(tmp_path):
    net = random_net("rrdbnet", scale=4, **RRDB)
    path = tmp_path / "4x-community.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    assert registry.native_scales(str(path)) == [4]
    same_outputs(registry.resolve_model(str(path), 4), net)
    with pytest.raises(ValueError, match="x4 model, asked for x2"):
        registry.resolve_model(str(path), 2)


def test_upscale_cli_runs_a_pth(tmp_path):
    net = random_net("srvgg", scale=2, num_feat=4, num_conv=1)
    model = tmp_path / "compact.pth"
    torch.save({"params": net.state_dict()}, model)
    import numpy as np
    from PIL import Image
    Image.fromarray(np.full((9, 10, 3), 128, np.uint8)).save(tmp_path / "in.png")
    result = CliRunner().invoke(cli, ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"),
                                      "--scale", "2", "--model", str(model), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out.png").size == (20, 18)


# ---------------------------------------------------------------------------
# safety and errors


class Payload:
    """Unpickling this runs a shell command: the kind of file we must refuse."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_pickled_code_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    net = random_net("srvgg", scale=2, num_feat=4, num_conv=1)
    obj = {"params_ema": net.state_dict(), "hook": Payload(marker)}
    if writer == "torch":
        torch.save(obj, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(obj, handle)
    # torch.save's zip names the global it needs; a raw pickle stops at its first unknown opcode.
    expected = "refused: it needs the Python object .*system" if writer == "torch" else "cannot be read as plain"
    with pytest.raises(ValueError, match=expected + ".*safetensors") as info:
        registry.resolve_model(str(path), 2)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=expected):
        registry.native_scales(str(path))
    result = CliRunner().invoke(cli, ["convert", str(path), str(tmp_path / "out.safetensors")])
    assert result.exit_code == 1 and "safetensors" in result.output and "Traceback" not in result.output
    assert not marker.exists()


def test_unrecognised_state_dict_names_the_supported_formats(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.zeros(4, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="unrecognised model.*Real-ESRGAN.*ESRGAN.*EDSR") as info:
        registry.resolve_model(str(path), 4)
    assert "\n" not in str(info.value)


def test_unreadable_files(tmp_path):
    for name, match in (("broken.pt", "cannot be read as plain weights"),
                        ("broken.safetensors", "not a readable safetensors file"),
                        ("weights.bin", "unsupported file type")):
        path = tmp_path / name
        path.write_bytes(b"not a model")
        with pytest.raises(ValueError, match=match):
            registry.resolve_model(str(path), 4)


def test_legacy_torch_serialization_loads(tmp_path):
    # 2018-era files (the original ESRGAN release) predate torch.save's zip format.
    net = random_net("rrdbnet", scale=4, **RRDB)
    path = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(esrgan_original_keys(net.state_dict(), RRDB["num_block"], 2), path,
               _use_new_zipfile_serialization=False)
    same_outputs(registry.resolve_model(str(path), 4), net)


def test_known_layout_we_cannot_map_says_why(tmp_path):
    net = random_net("rrdbnet", scale=4, **RRDB)
    state = esrgan_original_keys(net.state_dict(), RRDB["num_block"], 2)
    x1 = {k: v for k, v in state.items() if k not in ("model.3.weight", "model.3.bias", "model.6.weight",
                                                         "model.6.bias", "model.8.weight", "model.8.bias")}
    x1["model.2.weight"], x1["model.2.bias"] = state["model.8.weight"], state["model.8.bias"]
    x1["model.4.weight"], x1["model.4.bias"] = x1.pop("model.10.weight"), x1.pop("model.10.bias")
    path = tmp_path / "1x_old.pth"
    torch.save(x1, path)
    with pytest.raises(ValueError, match="original-ESRGAN x1 file"):
        registry.resolve_model(str(path), 1)


# ---------------------------------------------------------------------------
# convert


def test_convert_round_trip(tmp_path):
    net = random_net("rrdbnet", scale=2, **RRDB)
    source = tmp_path / "RealESRGAN_x2plus.pth"
    torch.save({"params_ema": net.state_dict()}, source)
    out = tmp_path / "x2plus.safetensors"
    result = CliRunner().invoke(cli, ["convert", str(source), str(out)])
    assert result.exit_code == 0, result.output
    assert "Real-ESRGAN RRDBNet" in result.output
    meta = read_metadata(out)
    assert meta["arch"] == "rrdbnet" and meta["scale"] == "2"
    assert json.loads(meta["params"]) == {"scale": 2, "in_channels": 3, "out_channels": 3, **RRDB}
    assert meta["converted_from"] == source.name and meta["source_format"] == "Real-ESRGAN RRDBNet"
    assert len(meta["source_sha256"]) == 64
    same_outputs(load_model(out), net)
    assert foreign.is_ours(out)
    again = CliRunner().invoke(cli, ["convert", str(source), str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_convert_edsr_keeps_rgb_range(tmp_path):
    net = random_net("edsr", scale=2, num_feat=8, num_blocks=1, rgb_range=255.0)
    source = tmp_path / "edsr.pt"
    torch.save(edsr_official(net), source)
    out = tmp_path / "edsr.safetensors"
    foreign.convert(source, out)
    assert json.loads(read_metadata(out)["params"])["rgb_range"] == 255.0
    same_outputs(load_model(out), net)


def test_convert_refuses_unrecognised_and_bad_output(tmp_path):
    source = tmp_path / "mystery.pth"
    torch.save({"w": torch.zeros(2)}, source)
    result = CliRunner().invoke(cli, ["convert", str(source), str(tmp_path / "o.safetensors")])
    assert result.exit_code == 1 and "unrecognised model" in result.output
    with pytest.raises(ValueError, match="must be a .safetensors"):
        foreign.convert(source, tmp_path / "o.pth")


# ---------------------------------------------------------------------------
# spandrel


class _FakeDescriptor:
    """Just the ImageModelDescriptor surface we use."""

    def __init__(self, model):
        self.model = model
        self.scale = 2
        self.input_channels = 3
        self.size_requirements = types.SimpleNamespace(minimum=0, multiple_of=4, square=False)
        self.architecture = types.SimpleNamespace(id="Fake", name="Fake Arch")
        self.purpose = "SR"
        self.tags = ["4nf"]

    def __call__(self, x):
        return self.model(x).clamp(0, 1)


def _fake_spandrel(net):
    module = types.ModuleType("spandrel")

    class UnsupportedModelError(Exception):
        pass

    class ModelLoader:
        def load_from_state_dict(self, state):
            if "fake.weight" not in state:
                raise UnsupportedModelError()
            return _FakeDescriptor(net)

    module.UnsupportedModelError = UnsupportedModelError
    module.ModelLoader = ModelLoader
    module.ImageModelDescriptor = _FakeDescriptor
    return module


def test_unknown_layouts_go_to_spandrel_when_installed(tmp_path, monkeypatch):
    net = nn.Sequential(nn.Conv2d(3, 12, 3, 1, 1), nn.PixelShuffle(2)).eval()
    monkeypatch.setitem(sys.modules, "spandrel", _fake_spandrel(net))
    path = tmp_path / "4x_fancy.pth"
    torch.save({"fake.weight": torch.zeros(1)}, path)
    assert registry.native_scales(str(path)) == [2]
    loaded = registry.resolve_model(str(path), 2)
    assert (loaded.arch, loaded.scale, loaded.size_multiple) == ("spandrel:Fake", 2, 4)
    x = torch.rand(1, 3, 9, 10)  # padded to 12 x 12 by SRModel, cropped back
    assert loaded(x).shape == (1, 3, 18, 20)
    with pytest.raises(ValueError, match="cannot be converted"):
        foreign.convert(path, tmp_path / "o.safetensors")
    other = tmp_path / "other.pth"
    torch.save({"x.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="unrecognised model"):
        registry.resolve_model(str(other), 2)


def _real_spandrel():
    try:
        import spandrel
    except Exception as exc:  # not installed, or failing on its torchvision import
        pytest.skip(f"spandrel does not import here ({type(exc).__name__})")
    return spandrel


def test_real_spandrel_matches_our_loader(tmp_path):
    _real_spandrel()
    net = random_net("srvgg", scale=2, num_feat=8, num_conv=2)
    state = dict(net.state_dict())
    model = foreign._spandrel_model(state, tmp_path / "x.pth", name="x", metadata={})
    assert model is not None and model.scale == 2 and model.arch == "spandrel:Compact"
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(model(x), net(x).clamp(0, 1), atol=1e-6)
