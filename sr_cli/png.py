"""PNG encoding that streams: the file comes out chunk by chunk, straight from the pixel array.

A 16384 x 16384 RGB output is 805 MB; Pillow's encoder first copies it into its
own 4-bytes-a-pixel image (1.07 GB) and OpenCV's needs a BGR copy, so either
would more than double the peak memory of a large upscale. Here blocks of rows
are filtered and deflated on a few threads, so the only full-size buffer is the
caller's array.

Filters are chosen per row by libpng's and Pillow's rule, the smallest sum of absolute
residuals (as signed bytes), among Sub, Up and Average: the three whose residuals are
one uint8 pass each. Leaving out None and Paeth (Paeth's predictor needs a dozen int16
passes) makes filtering 7x faster, for files of the same size as the five-filter
choice's on photos and their upscales (docs/benchmarks.md, "PNG level and filters").
Every filter predicts from the original bytes, so the whole choice vectorises over a
block of rows.
"""
from __future__ import annotations

import struct
import zlib
from typing import Iterator, Optional

import numpy as np

from .parallel import map_in_order

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> grey, grey+alpha, RGB, RGBA
EXIF_PREFIX = b"Exif\x00\x00"  # how Pillow and JPEG APP1 start EXIF; PNG eXIf omits it
_ROWS_BYTES = 2 << 20  # raw bytes deflated at a time
_FILTER_BYTES = 256 << 10  # raw bytes filtered at a time: filtering's temporaries are ~7x this
_IDAT_BYTES = 1 << 20  # compressed bytes per IDAT chunk (any size is valid)
# zlib level 4: on x4 outputs of Set5/Set14 photos it writes 1.2-3.3x faster than level 6 for 0.4-7%
# more bytes; levels 1-2 are up to 1.7x faster again for up to 14% more (benchmarks/png_level.py;
# docs/benchmarks.md).
PNG_LEVEL = 4


def chunk(kind: bytes, data) -> bytes:
    data = bytes(data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(pixels: np.ndarray, *, icc_profile: Optional[bytes] = None, exif: Optional[bytes] = None,
               level: int = PNG_LEVEL, text: Optional[dict[str, str]] = None) -> Iterator[bytes]:
    """Yield a PNG file of ``pixels`` (H x W x C, C 1-4, uint8 or uint16) in pieces; ``text``
    (Latin-1 keyword -> Latin-1 value) goes into tEXt chunks."""
    if pixels.ndim != 3 or pixels.shape[2] not in _COLOUR_TYPES or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG needs H x W x 1-4 uint8/uint16 pixels, got {pixels.shape} {pixels.dtype}")
    height, width, channels = pixels.shape
    if height == 0 or width == 0:
        raise ValueError("PNG cannot store an empty image")
    depth = 16 if pixels.dtype == np.uint16 else 8
    yield SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, _COLOUR_TYPES[channels], 0, 0, 0))
    if icc_profile:
        yield chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile))
    if exif:
        yield chunk(b"eXIf", exif[len(EXIF_PREFIX):] if exif.startswith(EXIF_PREFIX) else exif)
    for keyword, value in (text or {}).items():
        yield chunk(b"tEXt", keyword.encode("latin-1") + b"\x00" + value.encode("latin-1"))
    bytes_per_pixel = channels * depth // 8
    row_bytes = width * bytes_per_pixel
    block = max(1, _ROWS_BYTES // row_bytes)
    starts = range(0, height, block)

    filter_block = max(1, _FILTER_BYTES // row_bytes)
    last = len(starts) - 1

    def raw_rows(top: int, bottom: int) -> np.ndarray:
        rows = pixels[top:bottom]
        raw = (rows.astype(">u2") if depth == 16 else np.ascontiguousarray(rows)).view(np.uint8)
        return raw.reshape(len(rows), row_bytes)

    def filter_and_deflate(index: int) -> tuple[bytes, bytes]:
        # Every block filters from the original bytes (the row above it is read from ``pixels``),
        # so blocks are independent: filtering (numpy) and deflating (zlib) both release the GIL
        # and run on the pool's threads.
        top = starts[index]
        bottom = min(top + block, height)
        above = raw_rows(top - 1, top)[0] if top else np.zeros(row_bytes, np.uint8)
        parts = []
        for part_top in range(top, bottom, filter_block):
            raw = raw_rows(part_top, min(part_top + filter_block, bottom))
            parts.append(filter_rows(raw, above, bytes_per_pixel))
            above = raw[-1]
        data = b"".join(parts)
        return data, _deflate(data, index == last, level)

    # Blocks are deflated independently on threads (map_in_order), each ending byte-aligned
    # (sync flush), so their concatenation is one valid stream, as pigz does; the zlib
    # header and the Adler-32 of all the data (taken here, in order) wrap it.
    checksum = zlib.adler32(b"")
    pending: list[bytes] = [b"\x78\x9c"]  # zlib header: deflate, 32K window
    pending_size = 0
    for data, compressed in map_in_order(filter_and_deflate, range(len(starts))):
        checksum = zlib.adler32(data, checksum)
        pending.append(compressed)
        pending_size += len(compressed)
        if pending_size >= _IDAT_BYTES:
            yield chunk(b"IDAT", b"".join(pending))
            pending, pending_size = [], 0
    pending.append(struct.pack(">I", checksum))
    yield chunk(b"IDAT", b"".join(pending))
    yield chunk(b"IEND", b"")


def _deflate(data: bytes, final: bool, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)  # raw deflate: no header of its own
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


def filter_rows(raw: np.ndarray, above: np.ndarray, bytes_per_pixel: int) -> bytes:
    """PNG-filter rows (R x row_bytes uint8; ``above`` is the row before them, zeros for the
    first): each output row is its filter type byte followed by the residuals."""
    count, row_bytes = raw.shape
    up = np.empty_like(raw)
    up[0] = above
    up[1:] = raw[:-1]
    left = np.zeros_like(raw)
    left[:, bytes_per_pixel:] = raw[:, :-bytes_per_pixel]
    candidates = np.empty((3, count, row_bytes), np.uint8)  # types 1-3; uint8 arithmetic wraps as PNG's
    np.subtract(raw, left, out=candidates[0])  # Sub
    np.subtract(raw, up, out=candidates[1])  # Up
    average = (left >> 1) + (up >> 1) + (left & up & 1)  # floor((left + up) / 2) without overflow
    np.subtract(raw, average, out=candidates[2])  # Average
    # |residual| as a signed byte: abs() of int8 -128 wraps to -128, which read as uint8 is 128.
    cost = np.abs(candidates.view(np.int8)).view(np.uint8).sum(axis=2, dtype=np.uint32)
    best = cost.argmin(axis=0)
    out = np.empty((count, row_bytes + 1), np.uint8)
    out[:, 0] = best + 1
    out[:, 1:] = candidates[best, np.arange(count)]
    return out.tobytes()


_CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")


def damage(data: bytes) -> Optional[str]:
    """Why a PNG file's bytes are damaged, or None: a critical chunk (IHDR, PLTE, IDAT, IEND) whose
    CRC does not match, which libpng refuses (printing "libpng error: ..." on stderr itself) and
    Pillow may not notice. A file cut short is left to the decoders, which say so."""
    if not data.startswith(SIGNATURE):
        return None
    position = len(SIGNATURE)
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4: position + 8]
        end = position + 12 + length
        if end > len(data):
            return None
        if kind in _CRITICAL:
            (stated,) = struct.unpack_from(">I", data, end - 4)
            if zlib.crc32(data[position + 8: end - 4], zlib.crc32(kind)) != stated:
                return f"damaged PNG: the {kind.decode('latin-1')} chunk's checksum does not match"
        if kind == b"IEND":
            return None
        position = end
    return None
