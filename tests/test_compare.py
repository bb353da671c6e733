"""`sr compare` on tiny synthetic images: panels, their size and placement, labels, crops, metrics."""
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import smooth_image
from sr_cli import compare as cmp
from sr_cli.cli import cli
from sr_cli.evaluate import bicubic_downscale
from sr_cli.metrics import calculate_psnr, calculate_ssim
from sr_cli.upscale import Upscaler


def textured(h, w, seed=0):
    """Smooth colour with a noisy patch: detail where the test says."""
    rng = np.random.default_rng(seed)
    img = smooth_image(h, w, 3)
    patch = img[10:18, 20:30]
    patch[:] = rng.integers(0, 256, patch.shape, dtype=np.uint8)
    return img


def save(path, pixels):
    Image.fromarray(pixels).save(path)
    return path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_detail_crop_finds_the_textured_region():
    img = textured(40, 60)
    x, y, w, h = cmp.detail_crop(img, 12, 10)
    assert (w, h) == (12, 10)
    assert 20 - 2 <= x <= 20 and 10 - 2 <= y <= 10  # the window covers the 10x8 noisy patch
    assert cmp.detail_crop(img, 100, 100) == (0, 0, 60, 40)  # larger than the image: all of it


def test_parse_crop():
    assert cmp.parse_crop("1,2,30,40") == (1, 2, 30, 40)
    for bad in ("1,2,3", "a,b,c,d", "1,2,0,4", "-1,0,4,4"):
        with pytest.raises(ValueError):
            cmp.parse_crop(bad)


def test_panels_layout_and_labels(weights_dir, tmp_path):
    img = textured(20, 24)
    models = ["bicubic", "default"]
    result = cmp.compare([save(tmp_path / "in.png", img)], models, scale=2, device="cpu")
    row, = result.rows
    assert [p.label for p in row.panels] == ["input (nearest)", "bicubic", "default"]
    assert row.crop == (0, 0, 24, 20)  # small enough to show whole
    assert row.zoom == 6  # 48 output pixels -> at least 256
    for panel in row.panels:
        assert panel.pixels.shape == (40, 48, 3) and panel.pixels.dtype == np.uint8 and panel.psnr is None
    boxes, labels = result.boxes[0], result.label_boxes[0]
    assert len(boxes) == 3 and all((w, h) == (48 * 6, 40 * 6) for _, _, w, h in boxes)
    for panel, (x, y, w, h) in zip(row.panels, boxes):  # each panel is its pixels, zoomed with nearest
        zoomed = np.repeat(np.repeat(panel.pixels, 6, axis=0), 6, axis=1)
        assert np.array_equal(result.image[y:y + h, x:x + w], zoomed)
    nearest = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)
    assert np.array_equal(row.panels[0].pixels, nearest)
    for (lx, ly, lw, lh), (x, y, _, _) in zip(labels, boxes):  # text drawn above each panel
        assert lx == x and ly + lh == y
        assert (result.image[ly:ly + lh, lx:lx + lw] < 128).any()
    assert result.image.shape[1] == 3 * 48 * 6 + 2 * cmp.GAP
    # The models' panels are what the public API makes of the whole image (it fits in the context).
    assert np.array_equal(row.panels[2].pixels, Upscaler.create("default", 2, device="cpu")(img))


def test_crop_and_context(weights_dir, tmp_path):
    img = textured(60, 70)
    result = cmp.compare([save(tmp_path / "in.png", img)], ["default"], scale=2, crop=(30, 25, 12, 10),
                         device="cpu")
    row, = result.rows
    assert row.crop == (30, 25, 12, 10)
    assert np.array_equal(row.panels[0].pixels, np.repeat(np.repeat(img[25:35, 30:42], 2, 0), 2, 1))
    # The model saw CONTEXT pixels around the crop: its panel is that region's output, cut.
    context = img[25 - cmp.CONTEXT:35 + cmp.CONTEXT, 30 - cmp.CONTEXT:42 + cmp.CONTEXT]
    out = Upscaler.create("default", 2, device="cpu")(np.ascontiguousarray(context))
    c = 2 * cmp.CONTEXT
    assert np.array_equal(row.panels[1].pixels, out[c:c + 20, c:c + 24])
    assert "crop 30,25,12,10" in row.title
    with pytest.raises(ValueError, match="outside"):
        cmp.compare([tmp_path / "in.png"], ["bicubic"], scale=2, crop=(60, 0, 20, 10), device="cpu")


def test_reference_metrics_equal_sr_eval_metrics(weights_dir, tmp_path):
    hr = smooth_image(48, 56, 3)
    lr = bicubic_downscale(hr, 2)
    result = cmp.compare([save(tmp_path / "lr.png", lr)], ["bicubic", "default"], scale=2,
                         references=[save(tmp_path / "hr.png", hr)], device="cpu")
    row, = result.rows
    assert [p.label for p in row.panels] == ["input (nearest)", "bicubic", "default", "reference"]
    assert np.array_equal(row.panels[-1].pixels, hr)
    for panel in row.panels[:-1]:
        assert panel.psnr == calculate_psnr(panel.pixels, hr, crop_border=2)
        assert panel.ssim == calculate_ssim(panel.pixels, hr, crop_border=2)
    assert row.panels[1].psnr > row.panels[0].psnr  # bicubic beats nearest on a smooth image
    with pytest.raises(ValueError, match="not x2"):
        cmp.compare([tmp_path / "lr.png"], ["bicubic"], scale=2, references=[save(tmp_path / "bad.png", hr[:40])],
                    device="cpu")


def test_cli_writes_once_and_refuses_to_overwrite(weights_dir, tmp_path):
    src = save(tmp_path / "in.png", textured(20, 24))
    out = tmp_path / "grid.png"
    result = run("compare", src, "-m", "bicubic", "-m", "default", "-s", "2", "-o", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    with Image.open(out) as picture:
        assert picture.width == 3 * 48 * 6 + 2 * cmp.GAP
    before = out.read_bytes()
    again = run("compare", src, "-m", "bicubic", "-s", "2", "-o", out, "--device", "cpu")
    assert again.exit_code == 1 and "--overwrite" in again.output and out.read_bytes() == before
    replaced = run("compare", src, "-m", "bicubic", "-s", "2", "-o", out, "--device", "cpu", "--overwrite",
                   "--crop", "2,3,12,10")
    assert replaced.exit_code == 0, replaced.output
    assert out.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    from sr_cli.provenance import read
    assert read(out)["model"] == "compare bicubic" and read(out)["source"] == "in.png"
    # A picture of the user's own at that name is never replaced, even with --overwrite.
    users = save(tmp_path / "mine.png", textured(20, 24))
    mine = users.read_bytes()
    refused = run("compare", src, "-m", "bicubic", "-s", "2", "-o", users, "--device", "cpu", "--overwrite")
    assert refused.exit_code == 1 and "provenance" in refused.output and users.read_bytes() == mine


def test_cli_reference_prints_the_scores(tmp_path):
    hr = smooth_image(48, 48, 3)
    lr = save(tmp_path / "lr.png", bicubic_downscale(hr, 2))
    result = run("compare", lr, "--reference", save(tmp_path / "hr.png", hr), "-m", "bicubic", "-s", "2",
                 "-o", tmp_path / "g.png", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "bicubic" in result.output and " dB / " in result.output


def test_cli_usage_errors(tmp_path):
    src = save(tmp_path / "in.png", textured(20, 24))
    out = tmp_path / "g.png"
    bad_crop = run("compare", src, "-m", "bicubic", "-o", out, "--crop", "1,2,3")
    assert bad_crop.exit_code == 2 and "X,Y,W,H" in bad_crop.output
    two_refs = run("compare", src, "--reference", src, "--reference", src, "-m", "bicubic", "-o", out)
    assert two_refs.exit_code == 2 and "one per INPUT" in two_refs.output
    bad_suffix = run("compare", src, "-m", "bicubic", "-o", tmp_path / "g.xyz")
    assert bad_suffix.exit_code == 2
    unknown = run("compare", src, "-m", "nope", "-s", "2", "-o", out, "--device", "cpu")
    assert unknown.exit_code == 1 and len(unknown.output.strip().splitlines()) == 1
    assert not out.exists()
