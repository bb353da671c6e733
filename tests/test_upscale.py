import numpy as np
import pytest
import torch

from sr_cli import resolve
from conftest import smooth_image
from sr_cli.upscale import Upscaler, upscale_image, upscale_tensor


@pytest.mark.parametrize("scale", [2, 3, 4, 1.5, 3.5, 8, 2.5])
@pytest.mark.parametrize("size", [(17, 23), (1, 1), (40, 9)])
def test_output_size_is_round_input_times_scale(weights_dir, scale, size):
    h, w = size
    out = upscale_image(smooth_image(h, w, 3), scale=scale, device="cpu")
    assert out.shape == (max(1, round(h * scale)), max(1, round(w * scale)), 3) and out.dtype == np.uint8


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_channels_and_bit_depth_are_kept(weights_dir, channels, dtype):
    pixels = smooth_image(12, 10, channels, dtype)
    out = upscale_image(pixels, scale=2, device="cpu")
    assert out.shape == (24, 20, channels) and out.dtype == dtype


def test_read_only_input_is_read_without_a_warning(weights_dir, recwarn):
    pixels = smooth_image(12, 10, 3)
    expected = upscale_image(pixels, scale=2, device="cpu")
    pixels.flags.writeable = False  # as np.asarray(PIL.Image) gives
    assert np.array_equal(upscale_image(pixels, scale=2, device="cpu"), expected)
    assert not [w for w in recwarn if "not writable" in str(w.message)]


def test_alpha_is_upscaled_not_dropped(weights_dir):
    pixels = smooth_image(16, 16, 4)
    pixels[:, :, 3] = 0
    pixels[4:12, 4:12, 3] = 255
    out = upscale_image(pixels, scale=2, device="cpu")
    alpha = out[:, :, 3]
    assert alpha[12:20, 12:20].min() == 255 and alpha[:4, :4].max() == 0


def test_sixteen_bit_keeps_precision(weights_dir):
    # A ramp with steps finer than 8 bits must come out with more than 256 levels.
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16)[None, :, None], (8, 1, 3))
    out = upscale_image(ramp, scale=2, model="bicubic", device="cpu")
    assert out.dtype == np.uint16 and len(np.unique(out[:, :, 0])) > 100


def test_greyscale_stays_grey_and_2d_in_2d_out(weights_dir):
    grey = smooth_image(10, 12, 1)[:, :, 0]
    out = upscale_image(grey, scale=3, device="cpu")
    assert out.shape == (30, 36)


def test_tiled_pixels_equal_untiled(weights_dir):
    pixels = smooth_image(70, 45, 3)
    common = dict(device="cpu", scale=4)
    full = Upscaler.create("default", tile=None, **common)(pixels)
    model = Upscaler.create("default", tile=16, overlap=2 * 6 + 2, **common)
    tiled = model(pixels)
    assert np.abs(full.astype(int) - tiled.astype(int)).max() <= 1


def test_bicubic_baseline_matches_matlab_resize(weights_dir):
    from sr_cli.resize import imresize
    x = torch.rand(1, 3, 9, 11)
    out = upscale_tensor(resolve.resolve_model("bicubic", 2), x, tile=None)
    assert torch.allclose(out, imresize(x, 2).clamp(0, 1), atol=1e-6)


def test_pil_in_pil_out(weights_dir):
    from PIL import Image
    for mode in ("RGB", "RGBA", "L", "LA"):
        image = Image.new(mode, (9, 7))
        out = upscale_image(image, scale=2, device="cpu")
        assert out.size == (18, 14) and out.mode == mode


def test_bad_requests_raise_value_error(weights_dir):
    with pytest.raises(ValueError, match="fp16"):
        Upscaler.create("default", 2, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="unknown model"):
        Upscaler.create("nope", 2, device="cpu")
    with pytest.raises(ValueError, match="CUDA|cuda"):
        if torch.cuda.is_available():
            raise ValueError("cuda present: nothing to check")
        Upscaler.create("default", 2, device="cuda")


def test_out_of_memory_halves_the_tile_and_retries():
    from sr_cli.model import SRModel
    seen = []

    def picky_net(x):
        seen.append(x.shape[-1])
        if max(x.shape[-2:]) > 40:  # pretend anything bigger does not fit on the GPU
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    model = SRModel(net=picky_net, arch="picky", scale=2)
    x = torch.rand(1, 3, 100, 100)
    out = upscale_tensor(model, x, tile=None, overlap=4)
    assert out.shape == (1, 3, 200, 200)
    assert seen[0] == 100 and max(seen[-4:]) <= 40
    expected = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    assert torch.allclose(out, expected, atol=1e-6)


def test_out_of_memory_halves_both_sides_of_a_wide_tile():
    from sr_cli.model import SRModel
    seen = []

    def picky_net(x):
        seen.append(tuple(x.shape[-2:]))
        if x.shape[-1] > 70:  # wide reads do not fit
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    model = SRModel(net=picky_net, arch="picky", scale=2)
    x = torch.rand(1, 3, 60, 200)
    out = upscale_tensor(model, x, tile=(32, 128), overlap=4)
    torch.testing.assert_close(out, torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
    assert max(w for _, w in seen[-3:]) <= 70 and max(h for h, _ in seen[-3:]) <= 32 + 8


def test_auto_tile_shrinks_when_memory_is_short():
    from sr_cli.tiling import auto_tile
    big = 64 * 2**30 * 0.25  # the CPU share of 64 GiB free
    assert auto_tile(4, 1000, 1000, budget=big) == 256
    assert auto_tile(4, 200, 200, budget=big) is None  # fits in one tile
    assert auto_tile(4, 1000, 1000, budget=2**29 * 0.25) < 256


def test_auto_tile_stays_square_on_wide_outputs():
    # Blending keeps only a strip of a few rows in float, so wide images need no short tiles.
    from sr_cli.tiling import auto_tile
    big = 64 * 2**30 * 0.25
    assert auto_tile(4, 1024, 1024, budget=big) == 256
    assert auto_tile(4, 4096, 4096, budget=big) == 256


def test_wide_tiles_equal_untiled():
    from sr_cli.model import SRModel
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3 * 4, 3, padding=1), torch.nn.PixelShuffle(2)).eval()
    model = SRModel(net=net, arch="x", scale=2, receptive_radius=1)
    x = torch.rand(1, 3, 37, 90)
    whole = upscale_tensor(model, x, tile=None, overlap=4)
    wide = upscale_tensor(model, x, tile=(8, 40), overlap=4)
    torch.testing.assert_close(wide, whole, rtol=0, atol=1e-5)


def test_input_crosses_to_the_model_device_once_not_per_tile():
    # On a GPU every tile used to be copied from the host on its own. The "meta" device stands
    # in for a GPU: count the copies of pixels (uint8) from the CPU to it while 12 tiles run there
    # (the float blend weights cross once per tile row or column).
    from torch.utils._python_dispatch import TorchDispatchMode
    from sr_cli.model import SRModel

    class CountHostToDevice(TorchDispatchMode):
        copies = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
                source = args[1] if func is torch.ops.aten.copy_.default else args[0]
                target = out if func is torch.ops.aten._to_copy.default else args[0]
                if source.device.type == "cpu" and target.device.type == "meta" and source.dtype == torch.uint8:
                    type(self).copies += 1
            return out

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2)).to("meta")
    model = SRModel(net=net, arch="x", scale=2, receptive_radius=1)
    x = torch.from_numpy(smooth_image(40, 50, 3)).permute(2, 0, 1)[None]
    tiles, rects = [], []
    with CountHostToDevice():
        upscale_tensor(model, x, tile=16, overlap=4, device="meta", input_max=255.0,
                       sink=lambda top, left, block: rects.append((block.device.type, block.shape[2] * block.shape[3])),
                       on_tile=lambda done, total: tiles.append(total))
    assert tiles == [12] * 12 and CountHostToDevice.copies == 1
    assert {device for device, _ in rects} == {"meta"} and sum(area for _, area in rects) == 80 * 100
