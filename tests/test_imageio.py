import os
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from sr_cli import imageio
from sr_cli.imageio import (ImageData, ImageReadError, encode_image, format_from_suffix, from_tensor,
                            read_image, to_tensor, write_image)

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MODE_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def random_pixels(h, w, c, dtype=np.uint8, seed=0):
    # Full-range noise: any rounding or bit loss shows up as a mismatch.
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, (h, w, c), dtype=dtype)


def pil_image(pixels):
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def exif_with(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"  # Make: must survive the orientation reset
    return exif.tobytes()


def no_temporaries(folder):
    return not [p for p in os.listdir(folder) if p.endswith(".tmp")]


# ----------------------------------------------------------------------------- 8-bit modes

@pytest.mark.parametrize("fmt,modes", [("png", "L LA RGB RGBA"), ("tiff", "L LA RGB RGBA"),
                                       ("bmp", "L RGB"), ("webp", "RGB RGBA")])
def test_8bit_modes_round_trip_exactly(tmp_path, fmt, modes):
    for mode in modes.split():
        pixels = random_pixels(5, 7, MODE_CHANNELS[mode])
        if mode == "RGBA" and fmt == "webp":
            pixels[..., 3] = np.maximum(pixels[..., 3], 1)  # libwebp may zero colour where alpha is 0
        path = tmp_path / f"{mode}.{fmt}"
        write_image(path, ImageData(pixels=pixels), quality=100)  # 100: lossless WebP
        image = read_image(path)
        assert image.pixels.dtype == np.uint8 and image.pixels.flags.writeable
        np.testing.assert_array_equal(image.pixels, pixels, err_msg=f"{fmt} {mode}")
    assert no_temporaries(tmp_path)


def test_pil_saved_modes_read_as_expected(tmp_path):
    pil_image(random_pixels(4, 6, 3)).save(tmp_path / "rgb.png")
    Image.fromarray(random_pixels(4, 6, 2)).save(tmp_path / "la.png")
    Image.new("1", (6, 4), 1).save(tmp_path / "bw.png")
    assert read_image(tmp_path / "rgb.png").pixels.shape == (4, 6, 3)
    la = read_image(tmp_path / "la.png")
    assert la.pixels.shape == (4, 6, 2) and la.is_grey and la.has_alpha
    bw = read_image(tmp_path / "bw.png")
    assert bw.pixels.shape == (4, 6, 1) and (bw.pixels == 255).all()


def test_palette_becomes_rgb_or_rgba_with_transparency(tmp_path):
    palette_image = Image.new("P", (4, 3))
    palette_image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette_image.putpixel((1, 1), 1)
    palette_image.save(tmp_path / "p.png")
    palette_image.save(tmp_path / "pt.png", transparency=1)
    rgb = read_image(tmp_path / "p.png").pixels
    assert rgb.shape == (3, 4, 3) and tuple(rgb[0, 0]) == (10, 20, 30) and tuple(rgb[1, 1]) == (200, 100, 50)
    rgba = read_image(tmp_path / "pt.png").pixels
    assert rgba.shape == (3, 4, 4) and tuple(rgba[0, 0]) == (10, 20, 30, 255) and rgba[1, 1, 3] == 0


def test_animated_gif_is_not_cut_to_its_first_frame(tmp_path):
    from sr_cli.imageio import AnimatedImage, read_animation
    frames = [Image.new("P", (4, 4), index) for index in (1, 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(AnimatedImage, match="multi-frame input: 2 frames"):  # an ImageReadError
        read_image(tmp_path / "anim.gif")
    with read_animation(tmp_path / "anim.gif") as animation:
        colours = [tuple(frame.pixels[0, 0]) for frame in animation.frames()]
    assert colours == [(255, 0, 0), (0, 255, 0)]
    frames[0].save(tmp_path / "still.gif")
    pixels = read_image(tmp_path / "still.gif").pixels
    assert pixels.shape == (4, 4, 3) and (pixels == [255, 0, 0]).all()


def test_cmyk_becomes_rgb_without_the_cmyk_profile(tmp_path):
    cmyk = Image.new("CMYK", (5, 4), (0, 255, 255, 0))  # magenta + yellow = red
    cmyk.save(tmp_path / "plain.tiff")
    # An RGB profile on CMYK pixels cannot be applied: Pillow's plain conversion is the fallback.
    cmyk.save(tmp_path / "tagged.tiff", icc_profile=SRGB)
    for name in ("plain.tiff", "tagged.tiff"):
        image = read_image(tmp_path / name)
        assert image.pixels.shape == (4, 5, 3) and image.icc_profile is None
        assert tuple(image.pixels[0, 0]) == (255, 0, 0)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    pixels = read_image(tmp_path / "c.jpg").pixels
    assert pixels.shape == (8, 8, 3) and (pixels >= 250).all()


def test_int_and_float_modes_become_uint16(tmp_path):
    Image.fromarray(np.array([[0, 1000, 65535]], np.int32)).save(tmp_path / "i.tiff")
    np.testing.assert_array_equal(read_image(tmp_path / "i.tiff").pixels[..., 0], [[0, 1000, 65535]])
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "f.tiff")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff").pixels[..., 0], [[0, 32768, 65535]])
    Image.fromarray(np.array([[-10.0, 0.0, 40.0]], np.float32)).save(tmp_path / "wide.tiff")
    np.testing.assert_array_equal(read_image(tmp_path / "wide.tiff").pixels[..., 0], [[0, 13107, 65535]])


# ----------------------------------------------------------------------------- 16-bit

@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_16bit_round_trips_exactly(tmp_path, fmt, channels):
    pixels = random_pixels(6, 5, channels, np.uint16)
    path = tmp_path / f"deep.{fmt}"
    write_image(path, ImageData(pixels=pixels))
    image = read_image(path)
    assert image.bit_depth == 16 and image.source_format == fmt.upper()
    if fmt == "tiff" and channels == 2:  # documented: written as RGBA with the grey repeated
        np.testing.assert_array_equal(image.pixels, pixels[:, :, [0, 0, 0, 1]])
    else:
        np.testing.assert_array_equal(image.pixels, pixels)


def test_16bit_files_from_other_writers(tmp_path):
    rgb = random_pixels(4, 6, 3, np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb[:, :, ::-1])  # OpenCV is BGR
    np.testing.assert_array_equal(read_image(tmp_path / "rgb16.png").pixels, rgb)
    grey = random_pixels(4, 6, 1, np.uint16)
    Image.fromarray(grey[:, :, 0]).save(tmp_path / "grey16.png")  # Pillow's I;16
    np.testing.assert_array_equal(read_image(tmp_path / "grey16.png").pixels, grey)


def test_our_16bit_grey_alpha_png_is_valid_for_other_readers(tmp_path):
    pixels = random_pixels(5, 4, 2, np.uint16)
    write_image(tmp_path / "la16.png", ImageData(pixels=pixels))
    decoded = cv2.imread(str(tmp_path / "la16.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded[:, :, [0, 3]], pixels)
    Image.open(tmp_path / "la16.png").load()


def test_16bit_to_8bit_formats_rounds_x_over_257(tmp_path):
    values = np.arange(0, 65536, dtype=np.uint16).reshape(256, 256, 1)
    pixels = np.concatenate([values, values[::-1], values], axis=2)
    write_image(tmp_path / "down.bmp", ImageData(pixels=pixels))
    np.testing.assert_array_equal(read_image(tmp_path / "down.bmp").pixels, np.round(pixels / 257))


# ----------------------------------------------------------------------------- orientation and metadata

def test_upright_matches_pil_exif_transpose():
    pixels = random_pixels(3, 5, 3)
    for orientation in range(1, 9):
        im = pil_image(pixels)
        im.info["exif"] = exif_with(orientation)  # exif_transpose reads it via getexif()
        expected = np.asarray(ImageOps.exif_transpose(im))
        np.testing.assert_array_equal(imageio.stills._upright(pixels, orientation), expected, err_msg=str(orientation))


@pytest.mark.parametrize("orientation,k", [(6, -1), (8, 1)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_exif_orientation_applied_and_reset(tmp_path, orientation, k, dtype):
    pixels = random_pixels(3, 5, 3, dtype)
    tagged = ImageData(pixels=pixels, exif=exif_with(orientation))
    write_image(tmp_path / "tagged.png", tagged)  # our writer keeps EXIF as given
    image = read_image(tmp_path / "tagged.png")
    np.testing.assert_array_equal(image.pixels, np.rot90(pixels, k))
    exif = Image.Exif()
    exif.load(image.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "TestCam"
    write_image(tmp_path / "again.png", image)
    assert Image.open(tmp_path / "again.png").getexif()[0x0112] == 1
    np.testing.assert_array_equal(read_image(tmp_path / "again.png").pixels, np.rot90(pixels, k))


def test_jpeg_orientation(tmp_path):
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, :8] = 255  # left half white
    pil_image(pixels).save(tmp_path / "o6.jpg", exif=exif_with(6), quality=100)
    image = read_image(tmp_path / "o6.jpg")
    # 90 degrees clockwise: 16 x 8, the white half on top
    assert image.pixels.shape == (16, 8, 3)
    assert image.pixels[:8].mean() > 240 and image.pixels[8:].mean() < 15
    write_image(tmp_path / "out.jpg", image)
    out = Image.open(tmp_path / "out.jpg")
    assert out.size == (8, 16) and out.getexif()[0x0112] == 1 and out.getexif()[0x010F] == "TestCam"


@pytest.mark.parametrize("fmt,dtype", [("png", np.uint8), ("jpg", np.uint8), ("webp", np.uint8),
                                       ("tiff", np.uint8), ("png", np.uint16), ("tiff", np.uint16)])
def test_icc_profile_kept(tmp_path, fmt, dtype):
    path = tmp_path / f"icc.{fmt}"
    write_image(path, ImageData(pixels=random_pixels(4, 4, 3, dtype), icc_profile=SRGB, exif=exif_with(1)))
    with Image.open(path) as im:
        assert im.info.get("icc_profile") == SRGB
    image = read_image(path)
    assert image.icc_profile == SRGB
    assert Image.Exif().load(image.exif) is None and b"TestCam" in image.exif


def test_png16_metadata_chunks_are_well_formed(tmp_path):
    data = encode_image(ImageData(pixels=random_pixels(2, 2, 3, np.uint16), icc_profile=SRGB,
                                  exif=exif_with(1)), format="png")
    position, kinds = 8, []
    while position < len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        body = data[position + 8: position + 8 + length]
        (crc,) = struct.unpack_from(">I", data, position + 8 + length)
        assert crc == zlib.crc32(kind + body)
        kinds.append(kind)
        position += 12 + length
    assert kinds[:3] == [b"IHDR", b"iCCP", b"eXIf"] and kinds[-1] == b"IEND"


# ----------------------------------------------------------------------------- writing

def test_alpha_to_jpeg_fails_and_leaves_nothing(tmp_path):
    rgba = ImageData(pixels=random_pixels(4, 4, 4))
    with pytest.raises(ValueError, match="JPEG cannot store alpha"):
        write_image(tmp_path / "out.jpg", rgba)
    assert os.listdir(tmp_path) == []
    (tmp_path / "old.jpg").write_bytes(b"previous")
    with pytest.raises(ValueError):
        write_image(tmp_path / "old.jpg", rgba)
    assert (tmp_path / "old.jpg").read_bytes() == b"previous" and no_temporaries(tmp_path)


def test_failure_while_writing_removes_the_temporary(tmp_path, monkeypatch):
    def broken_replace(source, target):
        raise OSError("disk full")
    monkeypatch.setattr(imageio.stills.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_image(tmp_path / "out.png", ImageData(pixels=random_pixels(4, 4, 3)))
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="permission bits")
def test_written_file_gets_the_usual_permissions(tmp_path):
    write_image(tmp_path / "out.png", ImageData(pixels=random_pixels(2, 2, 3)))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_webp_side_limit_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="WebP is limited"):
        write_image(tmp_path / "wide.webp", ImageData(pixels=np.zeros((1, 16384, 3), np.uint8)))
    assert os.listdir(tmp_path) == []


def test_format_names():
    assert [format_from_suffix(f"a{s}") for s in (".PNG", ".jpeg", ".jpg", ".webp", ".tif", ".tiff", ".bmp")] == \
        ["png", "jpg", "jpg", "webp", "tiff", "tiff", "bmp"]
    with pytest.raises(ValueError, match="unknown image suffix"):
        format_from_suffix("a.gif")
    with pytest.raises(ValueError, match="unknown image format"):
        encode_image(ImageData(pixels=random_pixels(2, 2, 3)), format="gif")


def test_explicit_format_overrides_suffix_and_matches_encode(tmp_path):
    image = ImageData(pixels=random_pixels(3, 3, 3), icc_profile=SRGB)
    write_image(tmp_path / "out.bin", image, format="JPEG", quality=80)
    assert (tmp_path / "out.bin").read_bytes() == encode_image(image, format="jpg", quality=80)
    assert read_image(tmp_path / "out.bin").source_format == "JPEG"


def test_image_data_rejects_bad_pixels():
    with pytest.raises(ValueError):
        ImageData(pixels=np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError):
        ImageData(pixels=np.zeros((2, 2, 3), np.float32))


# ----------------------------------------------------------------------------- reading errors and bytes

def test_unreadable_files_raise_image_read_error(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    good = encode_image(ImageData(pixels=random_pixels(16, 16, 3)), format="png")
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    for name in ("junk.png", "cut.png", "missing.png"):
        with pytest.raises(ImageReadError) as caught:
            read_image(tmp_path / name)
        message = str(caught.value)
        assert name in message and "\n" not in message
    assert issubclass(ImageReadError, ValueError)


def test_reads_from_bytes():
    pixels = random_pixels(3, 4, 4)
    image = read_image(encode_image(ImageData(pixels=pixels), format="png"))
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.source_format == "PNG"
    with pytest.raises(ImageReadError, match="<bytes>"):
        read_image(b"\x89PNG broken")


# ----------------------------------------------------------------------------- tensors and PIL

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tensor_round_trip_is_exact(dtype):
    count = np.iinfo(dtype).max + 1
    pixels = np.arange(count * 2, dtype=np.int64).astype(dtype).reshape(count // 128 if count > 256 else 16, -1, 2)
    tensor = to_tensor(pixels)
    assert tensor.shape == (1, 2, *pixels.shape[:2]) and tensor.dtype == torch.float32
    assert tensor.min() == 0 and tensor.max() == 1 and tensor.is_contiguous()
    back = from_tensor(tensor, dtype)
    assert back.dtype == dtype and back.flags.c_contiguous
    np.testing.assert_array_equal(back, pixels)


def test_from_tensor_rounds_clips_and_takes_half():
    rows = torch.tensor([[[[-0.5, 0.0, 0.5 / 255, 1.6 / 255, 1.0, 2.0, float("nan")]]]])
    np.testing.assert_array_equal(from_tensor(rows, np.uint8)[..., 0], [[0, 0, 0, 2, 255, 255, 0]])
    half = torch.tensor([[[[1.0, 0.5]]]], dtype=torch.float16)
    np.testing.assert_array_equal(from_tensor(half, np.uint16)[..., 0], [[65535, 32768]])


def test_pil_helpers_round_trip():
    for pixels in (random_pixels(3, 4, 3), random_pixels(3, 4, 2), random_pixels(3, 4, 1, np.uint16)):
        back, mode = imageio.pil_to_pixels(imageio.pixels_to_pil(pixels, "RGB"))
        np.testing.assert_array_equal(back, pixels)
    palette = Image.new("P", (2, 2))
    pixels, mode = imageio.pil_to_pixels(palette)
    assert mode == "P" and pixels.shape == (2, 2, 3)


# ----------------------------------------------------------------------------- one rule each

def test_to_uint8_is_the_numpy_rounding_it_replaced():
    values = np.random.default_rng(1).uniform(-0.2, 1.2, (7, 9, 3)).astype(np.float32)
    values.flat[:256] = (np.arange(256) + 0.5) / 255  # halves go to even, as np.round does
    for array in (values, values.astype(np.float64), values[:, ::-1]):
        np.testing.assert_array_equal(imageio.to_uint8(array), np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8))


def test_rgb8_keeps_what_training_and_evaluation_read():
    deep = np.array([[[0x1234, 0xFFFF, 0x00FF, 0x8000]]], np.uint16)
    np.testing.assert_array_equal(imageio.rgb8(deep), [[[0x12, 0xFF, 0x00]]])  # high byte, alpha dropped
    grey_alpha = np.array([[[7, 200]]], np.uint8)
    np.testing.assert_array_equal(imageio.rgb8(grey_alpha), [[[7, 7, 7]]])
    np.testing.assert_array_equal(imageio.rgb8(grey_alpha, keep_grey=True), [[[7]]])


def test_first_frame_of_an_animation_on_request(tmp_path):
    frames = [pil_image(random_pixels(4, 5, 3, seed=s)) for s in (1, 2)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    with pytest.raises(imageio.AnimatedImage):
        read_image(tmp_path / "anim.png")
    np.testing.assert_array_equal(read_image(tmp_path / "anim.png", first_frame=True).pixels, np.asarray(frames[0]))


def test_image_suffixes_are_declared_once():
    from sr_cli import batch, data, evaluate
    assert {imageio.format_suffix(f) for f in ("png", "JPEG", "tif", "webp", "bmp")} == \
        {".png", ".jpg", ".tif", ".webp", ".bmp"}
    assert set(evaluate.IMAGE_SUFFIXES) == imageio.STILL_SUFFIXES
    assert set(data.IMAGE_EXTENSIONS) == {".png", ".jpg", ".jpeg", ".jpe", ".bmp"}  # training: as before, + .jpe
    assert batch.READABLE_SUFFIXES >= imageio.READABLE_SUFFIXES >= imageio.WRITABLE_SUFFIXES >= {".gif", ".apng"}
