"""Community model files: each layout built from our own modules with random weights, its keys
renamed and wrapped exactly as the released files have them, then loaded through the registry."""
import importlib
import json
import os
import pickle
import re
import sys
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors.torch import save_file

from conftest import random_net
from sr_cli import foreign, resolve
from sr_cli.archs import ARCHS
from sr_cli.archs.edsr import DIV2K_RGB_MEAN
from sr_cli.cli import cli
from sr_cli.upscale import upscale_tensor
from sr_cli.weights import load_model, read_metadata


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
    assert resolve.native_scales(str(path)) == [scale]
    loaded = resolve.resolve_model(str(path), scale)
    assert loaded.arch == "rrdbnet" and loaded.scale == scale and loaded.size_multiple == net.size_multiple
    assert loaded.params == {"scale": scale, "in_channels": 3, "out_channels": 3, **RRDB}
    assert loaded.metadata["source_format"] == "Real-ESRGAN RRDBNet"
    same_outputs(loaded, net)


@pytest.mark.parametrize("scale, act", [(4, "prelu"), (2, "relu")])
def test_real_esrgan_compact(tmp_path, scale, act):
    net = random_net("srvgg", scale=scale, num_feat=8, num_conv=3, act_type=act)
    path = tmp_path / "realesr-general-x4v3.pth"
    torch.save({"params": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    loaded = resolve.resolve_model(str(path), scale)
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
    loaded = resolve.resolve_model(str(path), scale)
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
    loaded = resolve.resolve_model(str(path), 4)
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
    loaded = resolve.resolve_model(str(path), scale)
    assert loaded.params == {"scale": scale, "in_channels": 3, "num_feat": 8, "num_blocks": 2, "res_scale": 1.0,
                             "mean_shift": True, "rgb_range": 255.0}
    same_outputs(loaded, net)


def test_each_layout_is_claimed_by_its_own_architecture_only():
    # foreign.recognise tries the architectures in ARCHS order: the keys each layout tests for are
    # its own, so that order cannot change what a community file loads as.
    rrdb = random_net("rrdbnet", scale=4, **RRDB).state_dict()
    mmsr_names = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    mmsr = {re.sub(r"^(\w+)\.", lambda m: f"{mmsr_names.get(m[1], m[1])}.",
                   re.sub(r"^body\.(\d+)\.rdb(\d)", r"RRDB_trunk.\1.RDB\2", k)): v for k, v in rrdb.items()}
    compact = random_net("srvgg", scale=2, num_feat=4, num_conv=1).state_dict()
    edsr = edsr_official(random_net("edsr", scale=2, num_feat=8, num_blocks=1))
    samples = [("rrdbnet", "Real-ESRGAN RRDBNet", rrdb),
               ("rrdbnet", "ESRGAN (original layout)", esrgan_original_keys(rrdb, RRDB["num_block"], 2)),
               ("rrdbnet", "ESRGAN (mmsr layout)", mmsr),
               ("srvgg", "Real-ESRGAN SRVGGNetCompact", compact),
               ("edsr", "EDSR (EDSR-PyTorch layout)", edsr)]
    for name, layout, state in samples:
        assert [arch.name for arch in ARCHS.values() if arch.detect(state) is not None] == [name]
        found = foreign.recognise(state)
        assert (found.arch, found.layout) == (name, layout)
        foreign.build(found)  # loads with strict=True


def test_safetensors_without_our_metadata_is_detected(tmp_path):
    net = random_net("rrdbnet", scale=4, **RRDB)
    path = tmp_path / "4x-community.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    assert resolve.native_scales(str(path)) == [4]
    same_outputs(resolve.resolve_model(str(path), 4), net)
    with pytest.raises(ValueError, match="x4 model, asked for x2"):
        resolve.resolve_model(str(path), 2)


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
        resolve.resolve_model(str(path), 2)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=expected):
        resolve.native_scales(str(path))
    result = CliRunner().invoke(cli, ["convert", str(path), str(tmp_path / "out.safetensors")])
    assert result.exit_code == 1 and "safetensors" in result.output and "Traceback" not in result.output
    assert not marker.exists()


def test_unrecognised_state_dict_names_the_supported_formats(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.zeros(4, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="unrecognised model.*Real-ESRGAN.*ESRGAN.*EDSR") as info:
        resolve.resolve_model(str(path), 4)
    assert "\n" not in str(info.value)


def test_unreadable_files(tmp_path):
    for name, match in (("broken.pt", "cannot be read as plain weights"),
                        ("broken.safetensors", "not a readable safetensors file"),
                        ("weights.bin", "unsupported file type")):
        path = tmp_path / name
        path.write_bytes(b"not a model")
        with pytest.raises(ValueError, match=match):
            resolve.resolve_model(str(path), 4)


def test_legacy_torch_serialization_loads(tmp_path):
    # 2018-era files (the original ESRGAN release) predate torch.save's zip format.
    net = random_net("rrdbnet", scale=4, **RRDB)
    path = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(esrgan_original_keys(net.state_dict(), RRDB["num_block"], 2), path,
               _use_new_zipfile_serialization=False)
    same_outputs(resolve.resolve_model(str(path), 4), net)


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
        resolve.resolve_model(str(path), 1)


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
    assert resolve.native_scales(str(path)) == [2]
    loaded = resolve.resolve_model(str(path), 2)
    assert (loaded.arch, loaded.scale, loaded.size_multiple) == ("spandrel:Fake", 2, 4)
    x = torch.rand(1, 3, 9, 10)  # padded to 12 x 12 by SRModel, cropped back
    assert loaded(x).shape == (1, 3, 18, 20)
    with pytest.raises(ValueError, match="cannot be converted"):
        foreign.convert(path, tmp_path / "o.safetensors")
    other = tmp_path / "other.pth"
    torch.save({"x.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="unrecognised model"):
        resolve.resolve_model(str(other), 2)


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


# Spandrel's own network classes at tiny sizes, random weights: saved as a plain .pth, detected by
# spandrel from the tensors alone, and run through our SRModel and tiling. Per architecture: the
# class (module in spandrel.architectures, name), its hyperparameters, the scale, whether spandrel
# says it runs in float16, its size requirements (minimum, multiple), a size that meets them, and
# the hyperparameters detection cannot read from a state dict (they change no tensor here).
SPANDREL_CASES = {
    "SwinIR": ("SwinIR", "SwinIR", dict(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4,
                                        mlp_ratio=2.0, upscale=2, upsampler="pixelshuffledirect"),
               2, False, (16, 1), (16, 24), ()),
    "Swin2SR": ("Swin2SR", "Swin2SR", dict(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4,
                                           mlp_ratio=2.0, upscale=2, upsampler="pixelshuffledirect"),
                2, False, (16, 1), (16, 24), ()),
    "HAT": ("HAT", "HAT", dict(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, compress_ratio=3,
                               squeeze_factor=6, mlp_ratio=2.0, upscale=3, num_feat=16),
            3, False, (16, 1), (16, 24), ("img_size",)),
    "DAT": ("DAT", "DAT", dict(img_size=16, embed_dim=16, split_size=[2, 4], depth=[2], num_heads=[2],
                               expansion_factor=2.0, upscale=2, upsampler="pixelshuffledirect"),
            2, False, (16, 1), (16, 24), ("img_size",)),
    "SPAN": ("SPAN", "SPAN", dict(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=4),
             4, True, (0, 1), (16, 24), ()),
    "RealCUGAN": ("RealCUGAN", "UpCunet2x_fast", {}, 2, True, (40, 4), (40, 44), ()),
    "OmniSR": ("OmniSR", "OmniSR", dict(num_feat=16, block_num=1, window_size=4, res_num=1, up_scale=2),
               2, True, (16, 1), (16, 24), ()),
    "SAFMN": ("SAFMN", "SAFMN", dict(dim=8, n_blocks=1, ffn_scale=2.0, upscaling_factor=2),
              2, False, (0, 8), (16, 24), ()),
    "RCAN": ("RCAN", "RCAN", dict(scale=2, n_resgroups=1, n_resblocks=1, n_feats=16, reduction=4),
             2, False, (0, 1), (16, 24), ()),
    "PLKSR": ("PLKSR", "RealPLKSR", dict(dim=16, n_blocks=1, upscaling_factor=2, kernel_size=7),
              2, False, (0, 1), (16, 24), ()),
}


def _spandrel_net(arch):
    module, cls, params = SPANDREL_CASES[arch][:3]
    _real_spandrel()
    torch.manual_seed(0)
    return getattr(importlib.import_module(f"spandrel.architectures.{module}"), cls)(**params).eval()


def _spandrel_reference(net, x, scale, minimum, multiple):
    """The network's own output on ``x`` padded as promised: replicated up to the size multiple
    (SRModel), then reflected (replicated past size - 1) up to the minimum (spandrel), cropped."""
    h, w = x.shape[-2:]
    x = F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), mode="replicate")
    pad_h, pad_w = max(0, minimum - x.shape[-2]), max(0, minimum - x.shape[-1])
    reflect_h, reflect_w = min(pad_h, x.shape[-2] - 1), min(pad_w, x.shape[-1] - 1)
    x = F.pad(x, (0, reflect_w, 0, reflect_h), mode="reflect")
    x = F.pad(x, (0, pad_w - reflect_w, 0, pad_h - reflect_h), mode="replicate")
    with torch.no_grad():
        return net(x)[..., : h * scale, : w * scale].clamp(0, 1)


@pytest.mark.parametrize("arch", list(SPANDREL_CASES))
def test_spandrel_architectures_run_through_our_tiling(tmp_path, arch):
    _, _, params, scale, half, (minimum, multiple), fits, undetectable = SPANDREL_CASES[arch]
    net = _spandrel_net(arch)
    path = tmp_path / f"{scale}x_{arch}.pth"
    torch.save(net.state_dict(), path)
    assert resolve.native_scales(str(path)) == [scale]
    loaded = resolve.resolve_model(str(path), scale)
    assert (loaded.arch, loaded.scale, loaded.size_multiple) == (f"spandrel:{arch}", scale, multiple)
    assert loaded.net.size_minimum == minimum
    # Detection read our tiny configuration back from the tensors.
    detected = loaded.net.model.hyperparameters
    assert {k: v for k, v in detected.items() if k not in undetectable} == \
        {k: v for k, v in net.hyperparameters.items() if k not in undetectable}
    assert json.loads(loaded.metadata["supports_half"]) is half and loaded.net.supports_half is half
    assert json.loads(loaded.metadata["supports_bfloat16"]) is True
    assert json.loads(loaded.metadata["size_requirements"]) == {"minimum": minimum, "multiple_of": multiple}
    # One size meeting the requirements, one below the minimum and off the multiple: padded, cropped.
    for size in (fits, (13, 10)):
        x = torch.rand(1, 3, *size)
        before = x.clone()
        y = loaded(x)
        assert y.shape == (1, 3, size[0] * scale, size[1] * scale)
        assert torch.equal(x, before)  # RCAN scales its input in place: we hand it a copy
        assert (y - _spandrel_reference(net, x, scale, minimum, multiple)).abs().max() <= 1e-4
        whole = upscale_tensor(loaded, x, tile=max(size) + 8, overlap=4)
        assert torch.allclose(whole, y, atol=1e-6)
        # 2 x 2 tiles, below the minimum for (13, 10): each padded by spandrel.
        tiled = upscale_tensor(loaded, x, tile=max(8, max(size) // 2), overlap=4)
        assert tiled.shape == y.shape and torch.isfinite(tiled).all() and torch.equal(x, before)


@pytest.mark.parametrize("arch", ["SwinIR", "SPAN"])
def test_spandrel_half_precision_follows_its_support(tmp_path, arch):
    half, fits = SPANDREL_CASES[arch][4], SPANDREL_CASES[arch][6]
    net = _spandrel_net(arch)
    path = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), path)
    scale = SPANDREL_CASES[arch][3]
    loaded = resolve.resolve_model(str(path), scale)
    x = torch.rand(1, 3, *fits)
    full = loaded(x)
    loaded.to("cpu", torch.float16, channels_last=False)
    assert loaded.net.compute_dtype == (torch.float16 if half else torch.float32)
    if not half:  # kept in float32: float16 tiles in, float16 out, float32 inside
        out = upscale_tensor(loaded, x, tile=max(fits) + 8, overlap=4, dtype=torch.float16)
        assert out.dtype == torch.float32 and (out - full).abs().max() <= 1e-2
        assert loaded(x.half()).dtype == torch.float16
    loaded.to("cpu", torch.bfloat16, channels_last=True)
    assert loaded.net.compute_dtype == torch.bfloat16  # every architecture here supports bfloat16
