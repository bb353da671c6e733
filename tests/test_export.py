"""`sr export`: TorchScript and ONNX files that keep SRModel's contract (any size in, x scale out)."""
import json
import sys

import pytest
import torch
from click.testing import CliRunner
from conftest import random_net

from sr_cli.cli import cli
from sr_cli.export import export_model
from sr_cli.weights import load_model, save_model

# torch.jit.load is deprecated in favour of torch.export; TorchScript files are still what many runtimes take.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")



def saved(tmp_path, arch, **params):
    path = tmp_path / f"{arch}_x{params['scale']}.safetensors"
    save_model(random_net(arch, **params), path, arch=arch, params=params)
    return path


@pytest.mark.parametrize("arch, params", [
    ("srvgg", {"scale": 3, "num_feat": 4, "num_conv": 1}),
    ("rrdbnet", {"scale": 2, "num_feat": 4, "num_block": 1, "num_grow_ch": 4}),  # size multiple 2
])
def test_torchscript_round_trip(tmp_path, arch, params):
    weights = saved(tmp_path, arch, **params)
    out = tmp_path / "model.pt"
    result = CliRunner().invoke(cli, ["export", "--model", str(weights), str(out)])
    assert result.exit_code == 0, result.output
    assert "torchscript" in result.output and "max |diff|" in result.output
    extra = {"sr_cli.json": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    info = json.loads(extra["sr_cli.json"])
    assert info["arch"] == arch and int(info["scale"]) == params["scale"]
    model = load_model(weights)
    for size in ((9, 11), (16, 8)):  # not the traced size, and odd where the net needs even
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            got = scripted(x)
        assert got.shape == (1, 3, size[0] * params["scale"], size[1] * params["scale"])
        assert torch.allclose(got, model(x), atol=1e-6)


def test_onnx_dynamic_size_matches_pytorch(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    weights = saved(tmp_path, "rrdbnet", scale=2, num_feat=4, num_block=1, num_grow_ch=4)
    model = load_model(weights)
    out = tmp_path / "model.onnx"
    summary = export_model(model, out, fmt="onnx")
    assert summary["max_abs_diff"] is not None and summary["max_abs_diff"] <= 1e-4
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["arch"] == "rrdbnet" and props["scale"] == "2" and props["size_multiple"] == "2"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for size in ((8, 8), (15, 10)):
        x = torch.rand(1, 3, *size)
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        assert got.shape == (1, 3, 2 * size[0], 2 * size[1])
        assert torch.allclose(got, model(x), atol=1e-4)


def test_onnx_without_the_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    weights = saved(tmp_path, "srvgg", scale=2, num_feat=4, num_conv=1)
    result = CliRunner().invoke(cli, ["export", "-m", str(weights), str(tmp_path / "m.onnx")])
    assert result.exit_code == 1
    assert "pip install onnx" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_export_errors(tmp_path, weights_dir):
    runner = CliRunner()
    result = runner.invoke(cli, ["export", "-m", "default", str(tmp_path / "m.pt")])
    assert result.exit_code == 2 and "--scale" in result.output  # default has x2, x3, x4
    result = runner.invoke(cli, ["export", "-m", "bicubic", "-s", "2", str(tmp_path / "m.pt")])
    assert result.exit_code == 1 and "not a network" in result.output
    result = runner.invoke(cli, ["export", "-m", "default", "-s", "2", str(tmp_path / "m.bin")])
    assert result.exit_code == 2 and "--format" in result.output
    (tmp_path / "m.pt").write_bytes(b"")
    result = runner.invoke(cli, ["export", "-m", "default", "-s", "2", "--no-check", str(tmp_path / "m.pt")])
    assert result.exit_code == 1 and "--overwrite" in result.output
    result = runner.invoke(cli, ["export", "-m", "default", "-s", "2", "--no-check", "--overwrite",
                                 str(tmp_path / "m.pt")])
    assert result.exit_code == 0, result.output
    assert torch.jit.load(str(tmp_path / "m.pt"))(torch.rand(1, 3, 5, 6)).shape == (1, 3, 10, 12)
