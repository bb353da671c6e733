"""The weights we ship in weights/: each file the registry names is there, loads, says what it is,
and upscales an image better than bicubic (the photo model, which trades
PSNR for texture: within 1 dB of it)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from sr_cli import registry
from sr_cli.metrics import calculate_psnr
from sr_cli.resize import imresize
from sr_cli.upscale import Upscaler, upscale_pixels
from sr_cli.weights import load_model, read_metadata

SHIPPED = [(name, scale) for name, files in registry.NAMED_MODELS.items() for scale in files]
SAMPLE = registry.WEIGHTS_DIR.parent / "docs" / "sample.png"
REQUIRED = {("default", 2), ("default", 4), ("classic", 2), ("classic", 3), ("classic", 4), ("fast", 2), ("fast", 3),
            ("fast", 4), ("fast-clean", 2), ("fast-clean", 3), ("fast-clean", 4), ("photo", 4)}


def shipped_path(name, scale):
    return registry.WEIGHTS_DIR / registry.NAMED_MODELS[name][scale]


def test_required_weights_are_shipped():
    missing = [f"{n} x{s}" for n, s in sorted(REQUIRED) if not shipped_path(n, s).is_file()]
    assert not missing, f"missing from weights/: {missing}"


@pytest.mark.parametrize("name,scale", SHIPPED)
def test_shipped_file_is_what_the_registry_says(name, scale):
    path = shipped_path(name, scale)
    if not path.is_file():
        pytest.skip(f"{path.name} is not shipped")
    metadata = read_metadata(path)
    assert metadata["name"] == name and int(metadata["scale"]) == scale
    assert set(json.loads(metadata["psnr"])) == {"Set5", "Set14", "BSD100"}
    model = load_model(path)
    assert model.scale == scale and model.arch == metadata["arch"]
    assert model.params == json.loads(metadata["params"])


@pytest.mark.parametrize("name,scale", SHIPPED)
def test_shipped_model_beats_bicubic(name, scale):
    if not shipped_path(name, scale).is_file():
        pytest.skip("not shipped")
    # A natural photo (docs/sample.png, CC0, ships with the project), cut to a multiple of scale.
    hr = np.array(Image.open(SAMPLE).convert("RGB"))[:, :, :3]
    hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
    x = torch.from_numpy(hr).permute(2, 0, 1)[None].double() / 255
    lr = (imresize(x, 1 / scale)[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    ours = upscale_pixels(Upscaler.create(name, scale, device="cpu"), lr)
    bicubic = upscale_pixels(Upscaler.create("bicubic", scale, device="cpu"), lr)
    assert ours.shape == hr.shape
    gain = calculate_psnr(ours, hr, crop_border=scale) - calculate_psnr(bicubic, hr, crop_border=scale)
    # the photo model trades PSNR for texture: it only has to stay near bicubic; fast is trained
    # mostly on compressed inputs and gives up some of its clean gain (fast-clean keeps it)
    assert gain > {"photo": -1.0, "fast": 0.2}.get(name, 0.3), gain


@pytest.mark.parametrize("scale", [2, 4])
def test_default_cleans_jpeg_inputs(scale):
    """The default models are trained on real-world degradations: on a JPEG-compressed input they
    must not enlarge the 8x8 blocks (as the bicubic-trained classic models do) and must score above
    the classic models (which reproduce the blocks faithfully)."""
    from sr_cli.degrade import jpeg
    from sr_cli.metrics import blockiness
    if not shipped_path("default", scale).is_file():
        pytest.skip("not shipped")
    hr = np.array(Image.open(SAMPLE).convert("RGB"))
    hr = hr[: hr.shape[0] // (8 * scale) * 8 * scale, : hr.shape[1] // (8 * scale) * 8 * scale]
    x = torch.from_numpy(hr).permute(2, 0, 1)[None].double() / 255
    lr = (imresize(x, 1 / scale)[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    lr = (jpeg(lr.astype(np.float32) / 255, 35) * 255).round().astype(np.uint8)
    out = {name: upscale_pixels(Upscaler.create(name, scale, device="cpu"), lr) for name in ("default", "classic", "bicubic")}
    blocks = {name: blockiness(img, scale=scale) for name, img in out.items()}
    psnr = {name: calculate_psnr(img, hr, crop_border=scale) for name, img in out.items()}
    assert blocks["default"] < min(blocks["classic"], blocks["bicubic"]), blocks
    assert psnr["default"] > psnr["classic"] + 0.1, psnr


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fast_cleans_compressed_inputs(scale):
    """fast is trained on JPEG- and video-codec-compressed inputs (the `compressed` preset): on an
    H.264 frame and on a JPEG it leaves a fainter block grid than the same network trained on
    clean downscales (fast-clean) and scores higher."""
    from sr_cli.degrade import jpeg, video_codec
    from sr_cli.metrics import blockiness
    if not (shipped_path("fast", scale).is_file() and shipped_path("fast-clean", scale).is_file()):
        pytest.skip("not shipped")
    pytest.importorskip("av")
    hr = np.array(Image.open(SAMPLE).convert("RGB"))
    hr = hr[: hr.shape[0] // (8 * scale) * 8 * scale, : hr.shape[1] // (8 * scale) * 8 * scale]
    x = torch.from_numpy(hr).permute(2, 0, 1)[None].double() / 255
    lr = imresize(x, 1 / scale)[0].permute(1, 2, 0).numpy().clip(0, 1).astype(np.float32)
    lr = np.round(lr * 255) / 255
    for coded in (video_codec(lr, "h264", 28), jpeg(lr, 35)):
        coded = (coded * 255).round().astype(np.uint8)
        out = {name: upscale_pixels(Upscaler.create(name, scale, device="cpu"), coded) for name in ("fast", "fast-clean")}
        blocks = {name: blockiness(img, scale=scale) for name, img in out.items()}
        psnr = {name: calculate_psnr(img, hr, crop_border=scale) for name, img in out.items()}
        assert blocks["fast"] < blocks["fast-clean"], blocks
        assert psnr["fast"] > psnr["fast-clean"], psnr
