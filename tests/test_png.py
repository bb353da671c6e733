"""The streaming PNG encoder, checked by a plain per-byte decoder and by Pillow/OpenCV."""
import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from sr_cli.png import encode_png


def decode_png(data: bytes) -> tuple[np.ndarray, dict, set]:
    """Independent decoder: chunks with CRCs checked, zlib, then PNG unfiltering byte by byte."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks, idat = 8, {}, b""
    while at < len(data):
        (length,) = struct.unpack_from(">I", data, at)
        kind, body = data[at + 4: at + 8], data[at + 8: at + 8 + length]
        (crc,) = struct.unpack_from(">I", data, at + 8 + length)
        assert crc == zlib.crc32(body, zlib.crc32(kind))
        if kind == b"IDAT":
            idat += body
        else:
            chunks[kind] = body
        at += 12 + length
    assert b"IEND" in chunks and at == len(data)
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[colour]
    bpp = channels * depth // 8
    raw = zlib.decompress(idat)
    stride = width * bpp + 1
    assert len(raw) == height * stride
    out = np.zeros((height, width * bpp), np.int64)
    filters = set()
    for y in range(height):
        kind = raw[y * stride]
        filters.add(kind)
        for i in range(width * bpp):
            value = raw[y * stride + 1 + i]
            a = out[y, i - bpp] if i >= bpp else 0
            b = out[y - 1, i] if y else 0
            c = out[y - 1, i - bpp] if y and i >= bpp else 0
            if kind == 1:
                value += a
            elif kind == 2:
                value += b
            elif kind == 3:
                value += (a + b) // 2
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                value += a if pa <= pb and pa <= pc else b if pb <= pc else c
            else:
                assert kind == 0
            out[y, i] = value % 256
    pixels = out.astype(np.uint8)
    if depth == 16:
        pixels = pixels.reshape(height, width * channels, 2)
        pixels = (pixels[..., 0].astype(np.uint16) << 8) | pixels[..., 1]
    return pixels.reshape(height, width, channels), chunks, filters


def make_pixels(height, width, channels, dtype, seed=0):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    pixels = rng.integers(0, top + 1, (height, width, channels), dtype=dtype)
    # smooth gradients and flat areas too, where Sub/Up/Average/Paeth win over None
    pixels[: height // 2] = np.linspace(0, top, width).astype(dtype)[None, :, None]
    pixels[height // 2: 3 * height // 4] = (np.linspace(0, top, height)[:, None, None]
                                            ).astype(dtype)[height // 2: 3 * height // 4]
    return pixels


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (17, 23)])
def test_decodes_to_the_same_pixels(dtype, channels, size):
    pixels = make_pixels(*size, channels, dtype)
    data = b"".join(encode_png(pixels))
    decoded, _, _ = decode_png(data)
    np.testing.assert_array_equal(decoded, pixels)
    # and so do the common decoders
    if dtype == np.uint8:
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))).reshape(pixels.shape), pixels)
    elif channels != 2:
        found = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).reshape(pixels.shape)
        found = found[..., [2, 1, 0, 3][:channels]] if channels >= 3 else found
        np.testing.assert_array_equal(found, pixels)


def test_every_filter_is_chosen_somewhere_and_blocks_join_up(monkeypatch):
    # tiny blocks, so several rows' blocks and IDAT chunks are stitched together
    monkeypatch.setattr("sr_cli.png._ROWS_BYTES", 100)
    monkeypatch.setattr("sr_cli.png._IDAT_BYTES", 1000)
    # noise below the gradients: zlib emits output (hence several IDATs) only once it has plenty
    noise = np.random.default_rng(1).integers(0, 256, (150, 120, 3), dtype=np.uint8)
    pixels = np.concatenate([make_pixels(24, 120, 3, np.uint8, seed) for seed in range(3)] + [noise])
    data = b"".join(encode_png(pixels))
    decoded, _, filters = decode_png(data)
    np.testing.assert_array_equal(decoded, pixels)
    assert data.count(b"IDAT") > 2
    assert filters == {1, 2, 3}, filters  # Sub, Up and Average each win some row


def test_compresses_a_smooth_image_like_pillow():
    y, x = np.mgrid[0:256, 0:256]
    pixels = np.stack([x, y, (x + y) // 2], axis=2).astype(np.uint8)
    ours = b"".join(encode_png(pixels))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=6)
    assert len(ours) <= 1.1 * buffer.tell()


def test_metadata_chunks():
    pixels = make_pixels(4, 4, 3, np.uint8)
    _, chunks, _ = decode_png(b"".join(encode_png(pixels, icc_profile=b"profile", exif=b"Exif\x00\x00II*\x00")))
    assert zlib.decompress(chunks[b"iCCP"][len(b"ICC profile\x00\x00"):]) == b"profile"
    assert chunks[b"eXIf"] == b"II*\x00"


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 5), np.uint8), np.zeros((2, 2), np.uint8),
                                 np.zeros((2, 2, 3), np.float32), np.zeros((0, 2, 3), np.uint8)])
def test_rejects_what_png_cannot_hold(bad):
    with pytest.raises(ValueError):
        b"".join(encode_png(bad))
