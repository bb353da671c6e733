"""The two inference engines: the same pictures from torch and ONNX Runtime, tiled or not,
the engine choice, a torch-free ONNX path, community ONNX files and int8 export."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st
from PIL import Image

from conftest import TINY_LITESR, random_net, smooth_image
from sr_cli import registry
from sr_cli.cli import cli
from sr_cli.engines import choose_engine
from sr_cli.engines.onnx_engine import OnnxEngine
from sr_cli.engines.torch_engine import TorchEngine
from sr_cli.export import export_model
from sr_cli.model import SRModel
from sr_cli.upscale import Upscaler, run_tiled
from sr_cli.weights import save_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def tiny_model(scale: int, **params) -> SRModel:
    torch.manual_seed(scale)
    net = random_net("litesr", scale=scale, **{**TINY_LITESR, **params})
    return SRModel.from_net(net, "litesr", {"scale": scale, **TINY_LITESR, **params})


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory):
    """A tiny random LiteSR x2 as torch and as an fp32 ONNX file of ours."""
    folder = tmp_path_factory.mktemp("onnx")
    model = tiny_model(2)
    export_model(model, folder / "tiny_x2.onnx", fmt="onnx")
    return model, folder / "tiny_x2.onnx"


def test_a_block_grid_model_runs_the_same_on_both_engines_tiled_or_not(tmp_path):
    # The grid's phase is the input's origin: the ONNX engine must start its tiles on the grid too.
    model = tiny_model(2, base="nearest", block_grid=8)
    with torch.no_grad():
        torch.nn.init.normal_(model.net.grid_bias, std=0.5)
    export_model(model, tmp_path / "grid_x2.onnx", fmt="onnx")
    engine = OnnxEngine(tmp_path / "grid_x2.onnx")
    assert engine.size_multiple == 8
    x = np.random.default_rng(0).random((1, 3, 37, 29), dtype=np.float32)
    reference = model(torch.from_numpy(x)).numpy()
    whole = run_tiled(engine, x, tile=None)
    tiled = run_tiled(engine, x, tile=13, overlap=2 * engine.receptive_radius, batch_size=2)
    assert np.abs(whole - reference).max() <= 1e-4
    assert np.abs(tiled - whole).max() <= 1 / 255


@settings(max_examples=12, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), tile=st.integers(4, 32), extra=st.integers(0, 4))
def test_onnx_tiled_equals_untiled_and_torch(onnx_pair, height, width, tile, extra):
    model, path = onnx_pair
    engine = OnnxEngine(path)
    overlap = 2 * engine.receptive_radius + extra
    x = np.random.default_rng(height * 100 + width).random((1, 3, height, width), dtype=np.float32)
    whole = run_tiled(engine, x, tile=None)
    tiled = run_tiled(engine, x, tile=tile, overlap=overlap, batch_size=2)
    assert isinstance(tiled, np.ndarray) and tiled.shape == (1, 3, 2 * height, 2 * width)
    assert np.abs(tiled - whole).max() <= 1 / 255
    reference = model(torch.from_numpy(x)).numpy()
    assert np.abs(whole - reference).max() <= 1e-4


@pytest.mark.parametrize("channels,dtype", [(3, np.uint8), (1, np.uint8), (4, np.uint8), (3, np.uint16)])
def test_both_engines_give_the_same_pixels(onnx_pair, channels, dtype):
    model, path = onnx_pair
    pixels = smooth_image(21, 34, channels, dtype)
    runs = {}
    for engine in (OnnxEngine(path), TorchEngine(model, torch.device("cpu"))):
        for tile in (None, 8):
            runs[engine.name, tile] = Upscaler([engine], scale=2, tile=tile, overlap=16)(pixels)
    first = runs["onnx", None]
    assert first.shape == (42, 68, channels) and first.dtype == dtype
    for key, out in runs.items():
        assert np.abs(out.astype(int) - first.astype(int)).max() <= 1, key


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("grey", [False, True])
def test_both_engines_round_a_rectangle_to_the_same_pixels(onnx_pair, dtype, grey):
    model, path = onnx_pair
    maximum = np.iinfo(dtype).max
    rng = np.random.default_rng(1)
    rect = rng.random((1, 3, 6, 7), dtype=np.float32) * 1.4 - 0.2  # beyond [0, 1] both ways
    rect[0, :, 0, :4] = [np.nan, np.inf, -np.inf, 0.5 / maximum]  # and NaN, infinities, a half
    rect[0, :, 1, :2] = [2.5 / maximum, 3.5 / maximum]  # halves go to even
    outputs = []
    for engine, block in ((OnnxEngine(path), rect.copy()),
                          (TorchEngine(model, torch.device("cpu")), torch.from_numpy(rect.copy()))):
        out = np.full((6, 7, 1 if grey else 3), 7, dtype=dtype)
        engine.to_pixels(block, out, grey)
        outputs.append(out)
    assert np.array_equal(outputs[0], outputs[1])
    if not grey:
        assert list(outputs[0][0, :4, 0]) == [0, maximum, 0, 0] and list(outputs[0][1, :2, 0]) == [2, 4]


def test_onnx_runs_a_480p_frame_whole_and_tiles_larger_or_when_memory_is_short(onnx_pair, monkeypatch):
    from sr_cli.engines import onnx_engine
    engine = OnnxEngine(onnx_pair[1])
    monkeypatch.setattr(onnx_engine, "available_memory", lambda: 16 << 30)
    assert engine.auto_tile(480, 854) is None and engine.auto_tile(512, 512) is None
    assert engine.auto_tile(720, 1280) == 256 and engine.auto_tile(100, 5000) == 256
    monkeypatch.setattr(onnx_engine, "available_memory", lambda: 1 << 30)
    assert engine.auto_tile(480, 854) is not None  # its working memory would not fit


def test_engine_choice(weights_dir, onnx_pair, monkeypatch):
    import sr_cli.device
    _, path = onnx_pair
    (weights_dir / "default_x2.int8.onnx").write_bytes(path.read_bytes())
    monkeypatch.setitem(registry.NAMED_MODELS, "default", {2: "default_x2.safetensors",
                                                           4: "default_x4.safetensors"})
    monkeypatch.setattr(sr_cli.device, "gpu_present", lambda: False)
    assert choose_engine("default", scales=[2]) == "onnx"
    assert choose_engine("default", scales=[2], precision="fp32") == "torch"  # no fp32 ONNX form shipped
    assert choose_engine("default", scales=[4]) == "torch"  # x4 has no int8 form here
    assert choose_engine("default", scales=[2], device="cuda") == "torch"
    assert choose_engine(str(path), scales=None) == "onnx"
    monkeypatch.setattr(sr_cli.device, "gpu_present", lambda: True)
    assert choose_engine("default", scales=[2]) == "torch"  # a GPU: torch
    for options, message in [(dict(engine="onnx", device="cuda"), "runs on the CPU"),
                             (dict(engine="torch", precision="int8"), "ONNX engine"),
                             (dict(engine="onnx", precision="fp16"), "runs on torch"),
                             (dict(engine="onnx", precision="fp32"), "no fp32 ONNX form"),
                             (dict(engine="bogus"), "unknown engine"),
                             (dict(device="cuda:x"), "unknown device")]:
        with pytest.raises(ValueError, match=message):
            choose_engine("default", scales=[2], **options)
    with pytest.raises(ValueError, match="no ONNX form"):
        choose_engine("classic", scales=[4], engine="onnx")
    with pytest.raises(ValueError, match="ONNX file"):
        choose_engine(str(path), engine="torch")


def shipped_folder(folder: Path, onnx_file: Path) -> Path:
    """A weights folder holding a 'default' x2 with an int8 ONNX form beside it."""
    folder.mkdir()
    params = {"scale": 2, **TINY_LITESR}
    save_model(random_net("litesr", **params), folder / "default_x2.safetensors", arch="litesr", params=params)
    (folder / "default_x2.int8.onnx").write_bytes(onnx_file.read_bytes())
    return folder


MODULES_AT_EXIT = ("import atexit, json, sys\n"
                   "atexit.register(lambda: print(json.dumps(sorted(m for m in ('torch', 'onnxruntime', 'cv2', 'av', "
                   "'numpy') if m in sys.modules)), file=sys.stderr))\n"
                   "from sr_cli.cli import main\nsys.argv = ['sr'] + sys.argv[1:]\nmain()\n")


def run_sr(args, weights):
    env = {**os.environ, "SR_WEIGHTS_DIR": str(weights), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", MODULES_AT_EXIT, *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120)
    return done, json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.subprocess
def test_the_onnx_path_never_imports_torch(tmp_path, onnx_pair):
    weights = shipped_folder(tmp_path / "weights", onnx_pair[1])
    src = tmp_path / "in.png"
    Image.fromarray(smooth_image(20, 30, 3)).save(src)
    done, modules = run_sr(["upscale", src, "-s", 2, "--quiet"], weights)
    assert done.returncode == 0, done.stderr
    assert "torch" not in modules and "onnxruntime" in modules
    assert "cv2" not in modules  # an RGB PNG at a native scale needs no OpenCV either
    assert Image.open(tmp_path / "in_x2.png").size == (60, 40)
    # Asked for, torch runs the same model's weights (and gives nearly the same picture: not the
    # same network here, so only the size is compared).
    done, modules = run_sr(["upscale", src, "-s", 2, "--engine", "torch", "-o", tmp_path / "t.png"], weights)
    assert done.returncode == 0 and "torch" in modules
    assert Image.open(tmp_path / "t.png").size == (60, 40)


@pytest.mark.subprocess
@pytest.mark.parametrize("args,message", [
    (["-m", "nosuch"], "unknown model"), (["--device", "tpu"], "unknown device"), (["-s", "0.5"], "greater than 1"),
    (["--engine", "onnx", "-m", "bicubic"], "no ONNX form"), (["--tile", "x"], "number of pixels"),
    (["--max-pixels", "-3"], "pixels"), (["--frames", "9:2"], "frames")])
def test_usage_errors_load_nothing_heavy(tmp_path, onnx_pair, args, message):
    weights = shipped_folder(tmp_path / "weights", onnx_pair[1])
    src = tmp_path / "in.png"
    Image.fromarray(smooth_image(8, 8, 3)).save(src)
    done, modules = run_sr(["upscale", src, *args], weights)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert modules == [], modules  # no torch, ONNX Runtime, OpenCV, PyAV, nor even numpy
    done, modules = run_sr(["upscale", tmp_path / "missing.png"], weights)
    assert done.returncode == 2 and "no such file" in done.stderr and modules == []


class Doubler(torch.nn.Module):
    """A community-style x2 ONNX model: conv, pixel shuffle, no metadata."""

    def __init__(self, channels=3):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(2)

    def forward(self, x):
        return self.shuffle(self.conv(x))


def plain_onnx(net, path, example, dynamic=True):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notices
        _export(net, path, example, dynamic)
    return path


def _export(net, path, example, dynamic):
    torch.onnx.export(net.eval(), (example,), str(path), input_names=["image"], output_names=["out"],
                      dynamic_axes={"image": {2: "h", 3: "w"}, "out": {2: "H", 3: "W"}} if dynamic else None,
                      opset_version=17, dynamo=False)


def test_a_community_onnx_model_runs_with_its_probed_scale(tmp_path):
    path = plain_onnx(Doubler(), tmp_path / "community_x2.onnx", torch.rand(1, 3, 16, 16))
    engine = OnnxEngine(path)
    assert engine.scale == 2 and engine.in_channels == 3 and engine.size_multiple == 1
    src = tmp_path / "in.png"
    Image.fromarray(smooth_image(10, 14, 3)).save(src)
    result = CliRunner().invoke(cli, ["upscale", str(src), "-m", str(path), "-s", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "in_x4.png").size == (56, 40)  # two x2 passes


def test_onnx_files_that_are_not_image_upscalers_are_refused(tmp_path):
    class Flatten(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)

    class Halve(torch.nn.Module):
        def forward(self, x):
            return x[:, :, ::2, :]

    flat = plain_onnx(Flatten(), tmp_path / "flat.onnx", torch.rand(1, 3, 8, 8), dynamic=False)
    with pytest.raises(ValueError, match="not an image-to-image model"):
        OnnxEngine(flat)
    halve = plain_onnx(Halve(), tmp_path / "halve.onnx", torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="whole-number scale"):
        OnnxEngine(halve)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="cannot load"):
        OnnxEngine(garbage)


def test_a_custom_operator_is_refused_not_loaded(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    node = helper.make_node("MagicUpscale", ["image"], ["out"], domain="com.example.custom")
    graph = helper.make_graph([node], "custom", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                               [1, 3, "h", "w"])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, "H", "W"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                     helper.make_opsetid("com.example.custom", 1)])
    onnx.save(model, str(tmp_path / "custom.onnx"))
    with pytest.raises(ValueError, match="cannot load"):
        OnnxEngine(tmp_path / "custom.onnx")
    src = tmp_path / "in.png"
    Image.fromarray(smooth_image(8, 8, 3)).save(src)
    result = CliRunner().invoke(cli, ["upscale", str(src), "-m", str(tmp_path / "custom.onnx")])
    assert result.exit_code != 0 and "cannot load" in result.output and "Traceback" not in result.output


def calibration_images(folder: Path, count=6, size=96) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        noise = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((size, size), Image.BICUBIC).save(folder / f"{i}.png")
    return folder


def test_export_int8_writes_a_checked_file_or_nothing(tmp_path):
    from sr_cli.quantize import export_int8
    model = tiny_model(2)
    images = calibration_images(tmp_path / "calib")
    out = tmp_path / "tiny.int8.onnx"
    summary = export_int8(model, out, calibration=images, crop=32, max_psnr_loss=1.0, max_ssim_loss=0.05)
    check = summary["check"]
    assert out.is_file() and check.images == 6 and abs(check.psnr_loss) < 1.0
    engine = OnnxEngine(out)
    assert engine.precision == "int8" and engine.scale == 2
    assert json.loads(engine.metadata["int8_recipe"])["crop"] == 32
    ops = {node.op_type for node in __import__("onnx").load(str(out)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # int8 and fp32 agree closely on an image neither saw.
    pixels = smooth_image(24, 24, 3)
    int8 = Upscaler([engine], scale=2, tile=None)(pixels).astype(int)
    fp32 = Upscaler([TorchEngine(model, torch.device("cpu"))], scale=2, tile=None)(pixels).astype(int)
    assert np.abs(int8 - fp32).mean() < 2.0
    # A limit it cannot meet: refused, nothing written, the old file kept.
    before = out.read_bytes()
    with pytest.raises(ValueError, match="not written"):
        export_int8(model, out, calibration=images, crop=32, max_psnr_loss=-1.0, overwrite=True)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib", "tiny.int8.onnx"]


def test_bench_times_both_engines_in_one_run(weights_dir, onnx_pair, monkeypatch):
    import json as json_module
    import sr_cli.device
    monkeypatch.setattr(sr_cli.device, "gpu_present", lambda: False)
    (weights_dir / "default_x2.int8.onnx").write_bytes(onnx_pair[1].read_bytes())
    result = CliRunner().invoke(cli, ["bench", "-m", "default", "-s", "2", "--size", "24x16", "--engine", "torch",
                                      "--engine", "onnx", "--repeat", "1", "--warmup", "0", "--json"])
    assert result.exit_code == 0, result.output
    rows = json_module.loads(result.output)["results"]
    assert [(r["engine"], r["precision"]) for r in rows] == [("torch", "fp32"), ("onnx", "fp32")]
    assert all(r["median_s"] > 0 and r["flops_per_output_pixel"] > 0 for r in rows)


def test_export_int8_from_the_command_line(tmp_path):
    params = {"scale": 2, **TINY_LITESR}
    save_model(random_net("litesr", **params), tmp_path / "tiny.safetensors", arch="litesr", params=params)
    images = calibration_images(tmp_path / "calib", count=4, size=160)
    out = tmp_path / "tiny.int8.onnx"
    args = ["export", str(out), "-m", str(tmp_path / "tiny.safetensors"), "--int8", "--calibration", str(images),
            "--check-set", str(images), "--check-set", str(images), "--max-loss", "1", "--max-ssim-loss", "0.1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("PSNR") == 2 and OnnxEngine(out).precision == "int8"  # one line per check set
    again = CliRunner().invoke(cli, args)
    assert again.exit_code != 0 and "exists" in again.output
    # With --check-degrade every set is also checked on degraded LR, blockiness included; a blockiness
    # limit of 0 cannot be met by any rounding, so the file is refused and the old one kept.
    degraded = args + ["--overwrite", "--check-degrade", "jpeg:30-50"]
    result = CliRunner().invoke(cli, degraded)
    assert result.exit_code == 0, result.output
    assert result.output.count("PSNR") == 4 and result.output.count("jpeg:30-50 PSNR") == 2
    assert json.loads(OnnxEngine(out).metadata["int8_recipe"])["check_degrade"] == "jpeg:30-50"
    before = out.read_bytes()
    refused = CliRunner().invoke(cli, degraded + ["--max-blockiness-change", "0"])
    assert refused.exit_code != 0 and "blockiness" in refused.output and "not written" in refused.output
    assert out.read_bytes() == before
    assert CliRunner().invoke(cli, degraded + ["--check-degrade", "jpeg:nope"]).exit_code == 2
    assert CliRunner().invoke(cli, ["export", str(tmp_path / "x.onnx"), "--int8"]).exit_code == 2  # no --calibration
