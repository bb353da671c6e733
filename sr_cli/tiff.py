"""TIFF files through tifffile, compressed strip by strip straight from the pixel arrays.

tifffile lays the file out and writes BigTIFF (64-bit offsets) when the pixels would not fit
the 4 GB of a classic TIFF. Pages are deflated (Adobe deflate, level 6) after horizontal
differencing, in 1 MB strips on a few threads with a few strips in flight, so a large
output needs no second copy of the image.

EXIF: the photo's descriptive tags (camera, date, artist, resolution, ...) go into the first
page's directory. tifffile writes no EXIF or GPS sub-directories, so those are appended after
the pages (serialised by Pillow) and the pointers, written as placeholders, set to them.
"""
from __future__ import annotations

import os
import struct
from typing import BinaryIO, Iterable, Optional

import numpy as np
import tifffile
from PIL import Image, TiffImagePlugin

from .parallel import THREADS

_STRIP_BYTES = 1 << 20  # raw bytes per strip
# Raw pixels above this go into BigTIFF (tifffile's own threshold for uncompressed data: the
# compressed size is not known in advance, and deflate can grow incompressible data).
_CLASSIC_BYTES = 2**32 - 2**25
# Tags tifffile sets itself from the pixels and options; from EXIF only the others are taken.
_LAYOUT_TAGS = {254, 255, 256, 257, 258, 259, 262, 273, 277, 278, 279, 282, 283, 284, 296, 317, 322,
                323, 324, 325, 330, 338, 339, 513, 514, 34675}
_SUB_DIRECTORIES = {0x8769: "ExifTag", 0x8825: "GPSTag"}


def write_tiff(file: BinaryIO, pages: Iterable[np.ndarray], *, icc_profile: Optional[bytes] = None,
               exif: Optional[bytes] = None, provenance: Optional[str] = None,
               total_bytes: Optional[int] = None) -> None:
    """Write ``pages`` (H x W x C, C 1-4, uint8/uint16 each) as one TIFF into ``file``, which must
    be seekable and readable (the EXIF pointers are set once the pages are written).

    16-bit grey+alpha is written as RGBA (grey repeated): neither Pillow nor OpenCV reads
    2-channel 16-bit TIFF. The ICC profile goes with every page, the EXIF and sr's ``provenance``
    tag (private tag 65000: provenance.py) with the first."""
    if total_bytes is None:  # a list, sized now; with total_bytes, pages may come one at a time
        pages = list(pages)
        total_bytes = sum(p.nbytes for p in pages)
    start = file.tell()
    big = total_bytes > _CLASSIC_BYTES
    tags, resolution, directories = _from_exif(exif)
    # Placeholder pointers, by name: tifffile leaves out these tags when given by number.
    pointers = [(_SUB_DIRECTORIES[tag], 16 if big else 4, 1, 0, True) for tag in directories]
    icc = [(34675, 7, None, icc_profile, True)] if icc_profile else []  # as a tag: older tifffile lacks iccprofile=
    tagged = [(65000, 2, None, provenance, True)] if provenance else []
    with tifffile.TiffWriter(file, bigtiff=big) as writer:
        for index, pixels in enumerate(pages):
            pixels = _storable(pixels)
            _, width, channels = pixels.shape
            extra = (tags + pointers + tagged if index == 0 else []) + icc
            writer.write(  # grey as a plain H x W page: one sample has no planar configuration to state
                pixels[:, :, 0] if channels == 1 else pixels, photometric="rgb" if channels >= 3 else "minisblack",
                planarconfig=None if channels == 1 else "contig",
                extrasamples=["unassalpha"] if channels in (2, 4) else None,
                compression="zlib", compressionargs={"level": 6}, predictor="horizontal",
                rowsperstrip=max(1, _STRIP_BYTES // (width * channels * pixels.itemsize)),
                metadata=None, software=False, extratags=extra,
                **(resolution if index == 0 else {}),
                maxworkers=THREADS, buffersize=2 * THREADS * _STRIP_BYTES)
    if directories:
        _append_directories(file, start, directories)


def _storable(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"TIFF needs H x W x 1-4 uint8/uint16 pixels, got {pixels.shape} {pixels.dtype}")
    if pixels.size == 0:
        raise ValueError("TIFF cannot store an empty image")
    if pixels.shape[2] == 2 and pixels.dtype == np.uint16:
        return pixels[:, :, [0, 0, 0, 1]]
    return pixels


def _from_exif(exif: Optional[bytes]) -> tuple[list, dict, dict]:
    """tifffile extratags for the descriptive tags of an EXIF block, its resolution as tifffile's
    arguments, and the sub-directories {tag: values} to append. Unreadable EXIF is dropped."""
    if not exif:
        return [], {}, {}
    parsed = Image.Exif()
    try:
        parsed.load(exif)
    except Exception:
        return [], {}, {}
    directories = {tag: dict(parsed.get_ifd(tag)) for tag in _SUB_DIRECTORIES if tag in parsed}
    directories = {tag: values for tag, values in directories.items() if values}
    if 0xA005 in directories.get(0x8769, {}):  # the interoperability directory, nested in EXIF's
        interop = parsed.get_ifd(0xA005)
        if interop:
            directories[0x8769][0xA005] = dict(interop)
        else:
            del directories[0x8769][0xA005]
    typed = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")  # gives each value its TIFF type
    tags = []
    for tag, value in parsed.items():
        if tag in _LAYOUT_TAGS or tag in _SUB_DIRECTORIES:
            continue
        try:
            typed[tag] = value
            tags.append(_extratag(tag, typed.tagtype[tag], typed[tag]))
        except Exception:  # a value with no TIFF form: lose that tag, not the image
            continue
    resolution = {}
    if 282 in parsed and 283 in parsed:
        resolution = {"resolution": (_rational(parsed[282]), _rational(parsed[283])),
                      "resolutionunit": parsed.get(296, 2)}
    return tags, resolution, directories


def _extratag(tag: int, kind: int, value) -> tuple:
    values = value if isinstance(value, tuple) else (value,)
    if kind == 2:  # ASCII: bytes as they were (tifffile takes str as 7-bit ASCII only)
        return tag, kind, None, value.encode() if isinstance(value, str) else value, True
    if kind in (1, 7) and isinstance(value, bytes):
        return tag, kind, None, value, True
    if kind in (5, 10):  # rationals: numerator, denominator pairs
        return tag, kind, len(values), tuple(n for v in values for n in _rational(v)), True
    return tag, kind, len(values), values, True


def _rational(value) -> tuple[int, int]:
    if isinstance(value, tuple):
        value = value[0]
    return int(value.numerator), int(value.denominator)


def _append_directories(file: BinaryIO, start: int, directories: dict) -> None:
    """Append each sub-directory, laid out by Pillow for where it lands, and set the first
    page's placeholder pointer (an inline offset in the file's own format) to it."""
    file.seek(start)
    header = file.read(16)
    big = header[2] == 43
    file.seek(start + struct.unpack_from("<Q" if big else "<I", header, 8 if big else 4)[0])
    count = struct.unpack("<Q" if big else "<H", file.read(8 if big else 2))[0]
    entry_size = 20 if big else 12
    ifd = file.tell()
    entries = file.read(count * entry_size)
    for index in range(count):
        tag = struct.unpack_from("<H", entries, index * entry_size)[0]
        if tag not in directories:
            continue
        directory = TiffImagePlugin.ImageFileDirectory_v2(ifh=header[:4] + bytes(12 if big else 4), group=tag)
        for key, value in directories[tag].items():
            directory[key] = value
        end = file.seek(0, os.SEEK_END)
        end += file.write(b"\0" * ((end - start) % 2))  # a directory starts on a word boundary
        file.write(directory.tobytes(end - start))
        file.seek(ifd + index * entry_size + (12 if big else 8))
        file.write(struct.pack("<Q" if big else "<I", end - start))
