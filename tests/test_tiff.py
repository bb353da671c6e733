"""TIFF output through tifffile: pixels, layout tags, EXIF, BigTIFF, pages, and no whole-image copy."""
import io
import tracemalloc

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from sr_cli import tiff
from sr_cli.imageio import Frame, ImageData, encode_image, read_animation, read_image, write_animation, write_image


def random_pixels(height, width, channels, dtype, seed=7):
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, (height, width, channels)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_pixels_read_back_exactly_in_tifffile_pillow_and_opencv(tmp_path, monkeypatch, dtype, channels):
    monkeypatch.setattr(tiff, "_STRIP_BYTES", 300)  # several strips, the last one short
    pixels = random_pixels(23, 31, channels, dtype)
    path = tmp_path / "out.tiff"
    write_image(path, ImageData(pixels=pixels))
    assert path.read_bytes() == encode_image(ImageData(pixels=pixels), format="tiff")
    stored = pixels[:, :, [0, 0, 0, 1]] if channels == 2 and dtype == np.uint16 else pixels  # documented: RGBA
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.compression == 8 and page.predictor == 2 and len(page.dataoffsets) >= 3
        assert page.photometric == (2 if stored.shape[2] >= 3 else 1)
        assert page.extrasamples == ((2,) if stored.shape[2] in (2, 4) else ())  # unassociated alpha
        np.testing.assert_array_equal(page.asarray().reshape(stored.shape), stored)
    np.testing.assert_array_equal(read_image(path).pixels, stored)
    if dtype == np.uint8:
        with Image.open(path) as im:
            assert im.size == (31, 23) and im.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    if channels in (1, 3) or (channels == 4 and dtype == np.uint16):  # 8-bit RGBA: libtiff premultiplies
        decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        expected = pixels[:, :, ::-1] if channels == 3 else pixels[:, :, [2, 1, 0, 3]] if channels == 4 else pixels[:, :, 0]
        np.testing.assert_array_equal(decoded, expected)


def camera_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[0x0131] = "sr"  # Software
    exif[0x011A] = exif[0x011B] = 300.0  # X/YResolution
    exif[0x0128] = 2  # inches
    exif[0x0100] = 999  # a layout tag inside EXIF must not replace the real width
    exif.get_ifd(0x8769)[0x829A] = (1, 125)  # ExposureTime, in the EXIF sub-directory
    exif.get_ifd(0x8769)[0x9003] = "2024:01:02 03:04:05"  # DateTimeOriginal
    exif.get_ifd(0x8825)[0x0001] = "N"  # GPSLatitudeRef, in the GPS sub-directory
    exif.get_ifd(0x8769)[0xA005] = {0x0001: "R98"}  # the interoperability directory, inside EXIF's
    return exif


@pytest.mark.parametrize("big", [False, True])
def test_exif_with_its_sub_directories_survives(monkeypatch, big):
    if big:
        monkeypatch.setattr(tiff, "_CLASSIC_BYTES", 10)  # as if the pixels were over 4 GB
    data = encode_image(ImageData(pixels=np.zeros((5, 6, 3), np.uint8), exif=camera_exif().tobytes()), format="tiff")
    assert data[2] == (43 if big else 42)
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        tags = tif.pages.first.tags
        assert tif.is_bigtiff == big and tags["ImageWidth"].value == 6
        assert tags["ExifTag"].value["DateTimeOriginal"] == "2024:01:02 03:04:05"
        assert tags["GPSTag"].value["GPSLatitudeRef"] == "N"
        assert tags["XResolution"].value == (300, 1) and tags["ResolutionUnit"].value == 2
    with Image.open(io.BytesIO(data)) as im:
        read = im.getexif()
        exposure = read.get_ifd(0x8769)[0x829A]
        assert read[0x010F] == "TestCam" and read[0x0131] == "sr" and (exposure == (1, 125) or exposure == 1 / 125)
        assert read.get_ifd(0x8825)[0x0001] == "N" and read.get_ifd(0xA005)[0x0001] == "R98" and im.size == (6, 5)


def test_unreadable_exif_is_dropped_not_fatal():
    data = encode_image(ImageData(pixels=np.zeros((3, 4, 3), np.uint8), exif=b"Exif\0\0garbage"), format="tiff")
    assert read_image(data).pixels.shape == (3, 4, 3)


def test_icc_profile_on_every_page_and_pages_of_any_kind(tmp_path):
    icc = b"\0" * 128  # kept verbatim; no reader here checks the profile itself
    frames = [Frame(0, random_pixels(8, 10, 3, np.uint8)), Frame(1, random_pixels(5, 4, 1, np.uint16)),
              Frame(2, random_pixels(6, 6, 4, np.uint8))]
    write_animation(tmp_path / "pages.tif", frames, icc_profile=icc)
    with tifffile.TiffFile(tmp_path / "pages.tif") as tif:
        assert len(tif.pages) == 3
        for page, frame in zip(tif.pages, frames):
            assert page.tags["InterColorProfile"].value == icc and page.compression == 8
            np.testing.assert_array_equal(page.asarray().reshape(frame.pixels.shape), frame.pixels)
    with read_animation(tmp_path / "pages.tif") as animation:
        assert animation.count == 3 and [f.pixels.shape for f in animation.frames()] == [(8, 10, 3), (5, 4, 1), (6, 6, 4)]


def test_a_large_image_is_written_without_a_copy_of_it(tmp_path):
    y, x = np.mgrid[0:3000, 0:3000]
    pixels = np.stack([x % 256, y % 256, (x + y) % 256], axis=2).astype(np.uint8)  # 27 MB
    tracemalloc.start()
    try:
        write_image(tmp_path / "big.tif", ImageData(pixels=pixels))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < pixels.nbytes / 2, f"{peak / 1e6:.1f} MB traced while writing {pixels.nbytes / 1e6:.1f} MB"
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "big.tif"), pixels)


def test_rejects_what_tiff_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="TIFF needs"):
        tiff.write_tiff(io.BytesIO(), [np.zeros((4, 4, 5), np.uint8)])
    with pytest.raises(ValueError, match="empty"):
        write_image(tmp_path / "empty.tif", ImageData(pixels=np.zeros((0, 4, 3), np.uint8)))
    assert list(tmp_path.iterdir()) == []  # nothing left behind
