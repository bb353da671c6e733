"""TIFF encoding that streams: strips are compressed and written straight from the pixel array.

Pillow's TIFF writer copies the array into its own image first and OpenCV's wants a BGR
copy, so for a 16384 x 16384 output (805 MB as RGB) either would double the memory of
the write. Here the file is laid out as header | directory | strips: each strip of rows
is differenced (Predictor 2, horizontal) and deflated (Compression 8, Adobe deflate) on a
few threads (``parallel.map_in_order``), as it is written. The strips' sizes are known only once they are
compressed, so the directory is written first with placeholder offsets and rewritten in
place at the end: the last piece this yields is a ``Patch`` for the writer to apply.

The directory itself (including EXIF tags and their sub-directories) is serialised by
Pillow's ``ImageFileDirectory_v2``, which lays out offsets relative to the strips
following it.
"""
from __future__ import annotations

import zlib
from typing import Iterator, NamedTuple, Optional, Union

import numpy as np
from PIL import Image, TiffImagePlugin, TiffTags

from .parallel import map_in_order

_STRIP_BYTES = 1 << 20  # raw bytes per strip
_MAX_FILE_BYTES = 0xFFFFFFFF  # classic TIFF offsets are 32-bit
_HEADER = b"II*\x00" + (8).to_bytes(4, "little")  # little-endian, first directory right after

# Tags this writer sets itself, and layout tags that must never come in from EXIF.
_LAYOUT_TAGS = {254, 255, 256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325,
                330, 338, 339, 513, 514, 34675}
_SHORT, _LONG, _UNDEFINED = TiffTags.SHORT, TiffTags.LONG, TiffTags.UNDEFINED


class Patch(NamedTuple):
    """Bytes to write over the output at ``offset`` (the stream is already that long)."""

    offset: int
    data: bytes


def encode_tiff(pixels: np.ndarray, *, icc_profile: Optional[bytes] = None, exif: Optional[bytes] = None,
                level: int = 6, strip_bytes: int = _STRIP_BYTES) -> Iterator[Union[bytes, Patch]]:
    """Yield a deflate-compressed TIFF of ``pixels`` (H x W x C, C 1-4, uint8 or uint16) in
    pieces; the last is a ``Patch`` of the directory (see ``apply_parts``)."""
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"TIFF needs H x W x 1-4 uint8/uint16 pixels, got {pixels.shape} {pixels.dtype}")
    height, width, channels = pixels.shape
    if height == 0 or width == 0:
        raise ValueError("TIFF cannot store an empty image")
    row_bytes = width * channels * pixels.itemsize
    rows_per_strip = max(1, min(height, strip_bytes // row_bytes))
    starts = range(0, height, rows_per_strip)

    def directory(offsets: list, counts: list) -> bytes:
        ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
        for tag, value in _exif_tags(exif).items():
            ifd[tag] = value
        for tag, kind, value in [
            (256, _LONG, width), (257, _LONG, height), (258, _SHORT, (8 * pixels.itemsize,) * channels),
            (259, _SHORT, 8), (262, _SHORT, 2 if channels >= 3 else 1), (273, _LONG, tuple(offsets)),
            (277, _SHORT, channels), (278, _LONG, rows_per_strip), (279, _LONG, tuple(counts)),
            (284, _SHORT, 1), (317, _SHORT, 2),
        ]:
            ifd.tagtype[tag] = kind
            ifd[tag] = value
        if channels in (2, 4):
            ifd.tagtype[338] = _SHORT
            ifd[338] = 2  # ExtraSamples: unassociated alpha
        if icc_profile:
            ifd.tagtype[34675] = _UNDEFINED
            ifd[34675] = icc_profile
        # Pillow adds the end of the directory's own data to StripOffsets: give them relative to it.
        return ifd.tobytes(len(_HEADER))

    placeholder = directory([0] * len(starts), [0] * len(starts))
    yield _HEADER + placeholder
    offsets, counts, position = [], [], 0
    strips = (pixels[top: top + rows_per_strip] for top in starts)
    for data in map_in_order(lambda rows: _compress_strip(rows, level), strips):
        offsets.append(position)
        counts.append(len(data))
        position += len(data)
        yield data
    if len(_HEADER) + len(placeholder) + position > _MAX_FILE_BYTES:
        raise ValueError("the TIFF would exceed 4 GB (BigTIFF is not written); use PNG for this image")
    final = directory(offsets, counts)
    if len(final) != len(placeholder):  # cannot happen: every value has a fixed size
        raise AssertionError("TIFF directory changed size")
    yield Patch(len(_HEADER), final)


def _compress_strip(rows: np.ndarray, level: int) -> bytes:
    """Horizontal differencing (each sample minus the same channel's sample to its left,
    modulo 2^bits), little-endian, deflated."""
    residuals = np.empty(rows.shape, rows.dtype.newbyteorder("<"))
    residuals[:, 0] = rows[:, 0]
    np.subtract(rows[:, 1:], rows[:, :-1], out=residuals[:, 1:])  # unsigned: wraps as TIFF wants
    return zlib.compress(residuals, level)


def _exif_tags(exif: Optional[bytes]) -> dict:
    """The descriptive tags of an EXIF block, sub-directories (EXIF, GPS) as dicts, as
    Pillow's TIFF writer takes them."""
    if not exif:
        return {}
    parsed = Image.Exif()
    try:
        parsed.load(exif)
    except Exception:  # unreadable EXIF is dropped rather than failing the write
        return {}
    tags = {}
    for tag in parsed:
        if tag in _LAYOUT_TAGS:
            continue
        tags[tag] = parsed.get_ifd(tag) if tag in TiffTags.TAGS_V2_GROUPS else parsed[tag]
    return tags


def join_parts(parts) -> bytes:
    """The whole file from encoder pieces, patches applied (only TIFF has them), e.g. for stdout."""
    chunks, patches = [], []
    for part in parts:
        (patches if isinstance(part, Patch) else chunks).append(part)
    data = b"".join(chunks)
    if not patches:
        return data
    patched = bytearray(data)
    for patch in patches:
        patched[patch.offset: patch.offset + len(patch.data)] = patch.data
    return bytes(patched)
