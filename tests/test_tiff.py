"""The streaming TIFF encoder: strips decoded by hand, and files read back by Pillow and OpenCV."""
import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from sr_cli import tiff
from sr_cli.imageio import ImageData, encode_image, read_image, write_image


def decode_tiff(data: bytes) -> tuple[np.ndarray, dict]:
    """Independent reader for what the encoder writes: one little-endian directory, deflated
    strips with horizontal differencing undone by a cumulative sum."""
    assert data[:4] == b"II*\x00"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    tags = {}
    sizes = {3: ("H", 2), 4: ("I", 4), 7: ("B", 1), 2: ("B", 1), 5: ("II", 8)}
    for at in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, n = struct.unpack_from("<HHI", data, at)
        code, size = sizes[kind]
        where = at + 8 if size * n <= 4 else struct.unpack_from("<I", data, at + 8)[0]
        tags[tag] = struct.unpack_from("<" + code * n, data, where)
    width, height, channels = tags[256][0], tags[257][0], tags[277][0]
    bits = tags[258][0]
    assert tags[259] == (8,) and tags[317] == (2,) and tags[258] == (bits,) * channels
    dtype = np.dtype("<u1" if bits == 8 else "<u2")
    raw = b"".join(zlib.decompress(data[o: o + n]) for o, n in zip(tags[273], tags[279]))
    residuals = np.frombuffer(raw, dtype).reshape(height, width, channels)
    pixels = np.cumsum(residuals, axis=1, dtype=np.uint64) % (1 << bits)
    return pixels.astype(dtype.newbyteorder("=")), tags


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_strips_decode_to_the_pixels(monkeypatch, dtype, channels):
    pixels = np.random.default_rng(channels).integers(0, np.iinfo(dtype).max + 1, (29, 17, channels)).astype(dtype)
    parts = list(tiff.encode_tiff(pixels, strip_bytes=200))  # several strips, the last one short
    assert isinstance(parts[-1], tiff.Patch) and not any(isinstance(p, tiff.Patch) for p in parts[:-1])
    decoded, tags = decode_tiff(tiff.join_parts(parts))
    np.testing.assert_array_equal(decoded, pixels)
    assert len(tags[273]) >= 3 and tags[262] == ((2,) if channels >= 3 else (1,))
    assert (338 in tags) == (channels in (2, 4))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_written_file_reads_back_exactly_in_pillow_and_opencv(tmp_path, monkeypatch, dtype, channels):
    monkeypatch.setattr(tiff, "_STRIP_BYTES", 300)
    pixels = np.random.default_rng(7).integers(0, np.iinfo(dtype).max + 1, (23, 31, channels)).astype(dtype)
    path = tmp_path / "out.tiff"
    write_image(path, ImageData(pixels=pixels))
    assert path.read_bytes() == encode_image(ImageData(pixels=pixels), format="tiff")
    back = read_image(path).pixels
    if channels == 2 and dtype == np.uint16:  # documented: written as RGBA, grey repeated
        np.testing.assert_array_equal(back, pixels[:, :, [0, 0, 0, 1]])
    else:
        np.testing.assert_array_equal(back, pixels)
    if dtype == np.uint8:
        with Image.open(path) as im:
            assert im.size == (31, 23) and im.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    if channels in (1, 3) or (channels == 4 and dtype == np.uint16):  # 8-bit RGBA: libtiff premultiplies
        decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        expected = pixels[:, :, ::-1] if channels == 3 else pixels[:, :, [2, 1, 0, 3]] if channels == 4 else pixels[:, :, 0]
        np.testing.assert_array_equal(decoded, expected)


def test_exif_sub_directories_survive():
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[0x0100] = 999  # a layout tag inside EXIF must not replace the real width
    exif.get_ifd(0x8769)[0x829A] = (1, 125)  # ExposureTime, in the EXIF sub-directory
    data = tiff.join_parts(tiff.encode_tiff(np.zeros((5, 6, 3), np.uint8), exif=exif.tobytes()))
    decoded, tags = decode_tiff(data)
    assert tags[256] == (6,) and decoded.shape == (5, 6, 3)
    with Image.open(io.BytesIO(data)) as im:
        read = im.getexif()
        exposure = read.get_ifd(0x8769)[0x829A]
        assert read[0x010F] == "TestCam" and (exposure == (1, 125) or exposure == 1 / 125)


def test_over_4_gb_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tiff, "_MAX_FILE_BYTES", 1000)  # as if 4 GB were 1000 bytes
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)  # ~4.8 kB, incompressible
    with pytest.raises(ValueError, match="exceed 4 GB"):
        list(tiff.encode_tiff(pixels))
    monkeypatch.setattr(tiff, "_MAX_FILE_BYTES", 10_000)
    assert decode_tiff(tiff.join_parts(tiff.encode_tiff(pixels)))[0].shape == (40, 40, 3)


def test_rejects_what_tiff_cannot_hold():
    with pytest.raises(ValueError, match="TIFF needs"):
        list(tiff.encode_tiff(np.zeros((4, 4, 5), np.uint8)))
    with pytest.raises(ValueError, match="empty"):
        list(tiff.encode_tiff(np.zeros((0, 4, 3), np.uint8)))
