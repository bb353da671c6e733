"""Animated images (GIF, APNG, animated WebP) and multi-page TIFF: read and written one frame at a time.

``read_animation`` opens a file and ``Animation.frames`` reads its frames one by one, each as
shown (Pillow composes each frame over the ones before), with its duration and disposal (APNG:
and blend), the loop count and the first frame's ICC profile.

Writing, frame by frame so memory does not grow with the number of frames: Pillow's GIF and
APNG writers take every frame at once (and keep a converted copy of each until the file is
written), so a long animation upscaled x4 held gigabytes. Here frames are pulled from an iterator
and written as they come; at most the frame being written and the one before it (to fold an
identical frame into it, as Pillow does) are held:

* GIF: each frame is encoded by Pillow as a one-frame GIF (its quantiser and LZW coder) and
  spliced in: the first keeps its header, global colour table, loop and comment; each later one
  keeps its graphic control extension and image, its colour table moved into a local one.
* APNG: chunks written here (acTL, fcTL, IDAT/fdAT) around ``png.encode_png``'s compressed rows;
  the frame count is patched in at the end.
* WebP: libwebp's animation encoder (through Pillow's ``_webp`` module) takes the frames one at a
  time and holds them compressed; where that module differs, Pillow's own writer is used.
* TIFF: one page at a time through tifffile (``tiff.write_tiff``).
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import numpy as np
from PIL import Image

from ..atomic import atomic_file
from ..errors import first_line
from ..png import SIGNATURE, chunk, encode_png
from .stills import ANIMATION_FORMATS, ImageReadError, _check_input_size, _eight_bits, _frames_in, _pixels_from_pil


def frame_count(source: Union[str, os.PathLike]) -> int:
    """How many frames (pages) an image file holds; 1 for stills and for what Pillow cannot open."""
    try:
        with Image.open(source) as im:
            return _frames_in(im)
    except Exception:
        return 1


@dataclass
class Frame:
    """One frame of an animation as shown (Pillow composes each frame over the ones before)."""

    index: int
    pixels: np.ndarray
    duration: Optional[float] = None   # milliseconds
    disposal: Optional[int] = None     # GIF: 0-3; APNG: 0-2
    blend: Optional[int] = None        # APNG only: 0 source, 1 over


class Animation:
    """An open multi-frame file (GIF, APNG, animated WebP, multi-page TIFF): ``frames()`` reads
    its frames one at a time, so only the frame being read is held."""

    def __init__(self, source: Union[str, os.PathLike, bytes]):
        self.name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
        try:
            data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
            self._image = Image.open(io.BytesIO(data))
            _check_input_size(*self._image.size)
            self.count = _frames_in(self._image)
        except Exception as exc:
            reason = getattr(exc, "strerror", None) or first_line(exc)
            raise ImageReadError(f"{self.name}: cannot read image ({reason})") from exc
        self.format = self._image.format
        # A GIF without a loop extension plays once: None keeps it that way.
        self.loop = self._image.info.get("loop", None if self.format == "GIF" else 0)
        self.icc_profile = self._image.info.get("icc_profile") or None

    def frames(self, start: int = 0, stop: Optional[int] = None):
        stop = self.count if stop is None else min(stop, self.count)
        for index in range(start, stop):
            try:
                self._image.seek(index)
                pixels = np.require(_pixels_from_pil(self._image), requirements=["C", "W"])
            except Exception as exc:
                reason = first_line(exc)
                raise ImageReadError(f"{self.name}: cannot read frame {index} ({reason})") from exc
            info = self._image.info
            disposal = getattr(self._image, "disposal_method", None) if self.format == "GIF" else info.get("disposal")
            yield Frame(index, pixels, info.get("duration"), disposal, info.get("blend"))

    def close(self) -> None:
        self._image.close()

    def __enter__(self) -> "Animation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_animation(source: Union[str, os.PathLike, bytes]) -> Animation:
    """Open a multi-frame file; iterate ``.frames(start, stop)`` for its frames."""
    return Animation(source)


def write_animation(path: Union[str, os.PathLike], frames: list[Frame], *, format: Optional[str] = None,
                    loop: Optional[int] = 0, icc_profile: Optional[bytes] = None, quality: int = 95,
                    replace: bool = True, provenance: Optional[str] = None) -> None:
    """Write ``frames`` as one animated (GIF, APNG, WebP) or multi-page (TIFF) file, atomically.

    Every frame is written whole, with its duration and disposal (APNG: and blend). GIF, APNG
    and WebP frames are converted to one mode (RGBA if any has alpha; grey stays grey where the
    format has it) at 8 bits. TIFF pages stand alone and are written as still TIFFs are
    (``tiff.write_tiff``), 16-bit kept; TIFF stores no durations. GIF and APNG fold a frame
    identical to the one before into it (their durations add up), which shows the same. The
    frames are written one by one (``imageio.animations``); ``upscale_animation`` streams them so.
    ``format``: "GIF", "PNG", "WEBP", "TIFF" or None for the suffix's.
    """
    path = Path(path)
    fmt = animation_format(path, format)
    if not frames:
        raise ValueError("an animation needs at least one frame")
    mode = target_mode(fmt, (frame.pixels.shape[2] for frame in frames))
    with atomic_file(path, replace=replace) as file:
        write_frames(file, iter(frames), fmt=fmt, mode=mode, loop=loop, icc_profile=icc_profile, quality=quality,
                     provenance=provenance, timed=any(frame.duration is not None for frame in frames),
                     total_bytes=sum(frame.pixels.nbytes * 2 for frame in frames))


def animation_format(path: Union[str, os.PathLike], format: Optional[str] = None) -> str:
    """"GIF", "PNG", "WEBP" or "TIFF" for ``format`` or the suffix; ValueError for a one-frame format."""
    path = Path(path)
    fmt = (format or ANIMATION_FORMATS.get(path.suffix.lower(), "")).upper()
    if fmt not in set(ANIMATION_FORMATS.values()):
        raise ValueError(f"{path.suffix or format} holds one frame; write an animation as .gif, .png (APNG), "
                         ".webp or .tif")
    return fmt


# ----------------------------------------------------------------------------- writing frame by frame

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_COLOUR_TYPES = {"L": 0, "LA": 4, "RGB": 2, "RGBA": 6}


def target_mode(fmt: str, channels: Iterable[int]) -> str:
    """The one mode every frame of a GIF/APNG/WebP is written in: RGBA if any frame has alpha; grey
    stays grey where the format has it (grey+alpha in APNG)."""
    channels = set(channels)
    alpha = bool(channels & {2, 4})
    grey = bool(channels) and channels <= {1, 2} and fmt != "WEBP"
    return ("LA" if fmt == "PNG" else "RGBA") if alpha and grey else "RGBA" if alpha else "L" if grey else "RGB"


def write_frames(file, frames: Iterator, *, fmt: str, mode: str, loop: Optional[int], icc_profile: Optional[bytes],
                 quality: int, provenance: Optional[str], timed: bool, total_bytes: Optional[int] = None) -> int:
    """Write ``frames`` (``Frame``, pixels in any mode) into the open, seekable ``file`` as
    ``fmt`` ("GIF", "PNG", "WEBP", "TIFF"); returns the number of frames written. ``timed``: some
    frame has a duration (the others then get 100 ms, as Pillow does). ``total_bytes`` (TIFF):
    the pixels' size, which decides BigTIFF before the first page."""
    if fmt == "TIFF":
        from ..tiff import write_tiff
        count = 0

        def pages():
            nonlocal count
            for frame in frames:
                count += 1
                yield frame.pixels
        write_tiff(file, pages(), icc_profile=icc_profile, provenance=provenance, total_bytes=total_bytes)
        return count
    converted = (_as_mode(frame, mode, timed) for frame in frames)
    if fmt == "WEBP":
        return _write_webp(file, converted, loop=loop, icc_profile=icc_profile, quality=quality,
                           provenance=provenance)
    folded = _fold_identical(converted)
    if fmt == "GIF":
        return _write_gif(file, folded, loop=loop, provenance=provenance)
    return _write_apng(file, folded, mode=mode, loop=loop, icc_profile=icc_profile, provenance=provenance)


def _as_mode(frame, mode: str, timed: bool):
    pixels = _eight_bits(frame.pixels)
    channels = pixels.shape[2]
    if MODES[channels] != mode:
        image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).convert(mode)
        pixels = np.asarray(image)
        pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    duration = (100 if frame.duration is None else frame.duration) if timed else None
    return Frame(frame.index, np.ascontiguousarray(pixels), duration, frame.disposal, frame.blend)


def _fold_identical(frames: Iterator) -> Iterator:
    """A frame equal to the one before (pixels, disposal, blend) adds its duration to it instead."""
    pending = None
    for frame in frames:
        if (pending is not None and frame.pixels.shape == pending.pixels.shape
                and (frame.disposal, frame.blend) == (pending.disposal, pending.blend)
                and np.array_equal(frame.pixels, pending.pixels)):
            if frame.duration is not None:
                pending.duration = (pending.duration or 0) + frame.duration
            continue
        if pending is not None:
            yield pending
        pending = frame
    if pending is not None:
        yield pending


def _pil(pixels: np.ndarray):
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


# ----------------------------------------------------------------------------- GIF

def _write_gif(file, frames: Iterator, *, loop: Optional[int], provenance: Optional[str]) -> int:
    count = 0
    for frame in frames:
        options: dict = {}
        if frame.duration is not None:
            options["duration"] = frame.duration
        if frame.disposal is not None:
            options["disposal"] = frame.disposal
        if count == 0:
            if loop is not None:
                options["loop"] = loop
            if provenance:
                options["comment"] = provenance.encode()
        buffer = io.BytesIO()
        _pil(frame.pixels).save(buffer, "GIF", **options)
        data = buffer.getvalue()
        file.write(data[:-1] if count == 0 else _gif_frame_part(data))  # [:-1]: the trailer, written last
        count += 1
    if count == 0:
        raise ValueError("an animation needs at least one frame")
    file.write(b";")
    return count


def _gif_frame_part(data: bytes) -> bytes:
    """A one-frame GIF's graphic control extension and image, as the next frame of another GIF: its
    global colour table becomes the image's local one; header, loop and comment are left out."""
    flags = data[10]
    table = 3 << ((flags & 7) + 1) if flags & 0x80 else 0
    colours = data[13:13 + table]
    position, out = 13 + table, bytearray()
    while position < len(data):
        kind = data[position]
        if kind == 0x21:  # extension: label, then sub-blocks to a zero length
            label, end = data[position + 1], position + 2
            while data[end]:
                end += data[end] + 1
            end += 1
            if label == 0xF9:  # graphic control: duration, disposal, transparency
                out += data[position:end]
            position = end
        elif kind == 0x2C:  # image descriptor, [local table], LZW size, sub-blocks
            descriptor = bytearray(data[position:position + 10])
            position += 10
            if descriptor[9] & 0x80:  # has its own table already
                own = 3 << ((descriptor[9] & 7) + 1)
                local, position = data[position:position + own], position + own
            else:
                descriptor[9] |= (0x80 | (flags & 7)) if table else 0
                local = colours
            end = position + 1
            while data[end]:
                end += data[end] + 1
            end += 1
            out += descriptor + local + data[position:end]
            position = end
        elif kind == 0x3B:
            break
        else:
            raise ValueError(f"unexpected GIF block 0x{kind:02x} from the encoder")
    return bytes(out)


# ----------------------------------------------------------------------------- APNG

def _write_apng(file, frames: Iterator, *, mode: str, loop: Optional[int], icc_profile: Optional[bytes],
                provenance: Optional[str]) -> int:
    count, sequence, actl_at = 0, 0, None
    for frame in frames:
        height, width = frame.pixels.shape[:2]
        if count == 0:
            import zlib
            file.write(SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[mode],
                                                                0, 0, 0)))
            actl_at = file.tell()
            file.write(chunk(b"acTL", struct.pack(">II", 0, loop or 0)))  # the count is patched in at the end
            if icc_profile:
                file.write(chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
            if provenance:
                from ..provenance import PNG_KEY
                file.write(chunk(b"tEXt", PNG_KEY.encode("latin-1") + b"\x00" + provenance.encode("latin-1")))
        delay = round(frame.duration) if frame.duration is not None else 0
        file.write(chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, delay, 1000,
                                              min(frame.disposal or 0, 2), min(frame.blend or 0, 1))))
        sequence += 1
        for data in _idat_payloads(frame.pixels):
            if count == 0:
                file.write(chunk(b"IDAT", data))
            else:
                file.write(chunk(b"fdAT", struct.pack(">I", sequence) + data))
                sequence += 1
        count += 1
    if count == 0:
        raise ValueError("an animation needs at least one frame")
    file.write(chunk(b"IEND", b""))
    end = file.tell()
    file.seek(actl_at)
    file.write(chunk(b"acTL", struct.pack(">II", count, loop or 0)))
    file.seek(end)
    return count


def _idat_payloads(pixels: np.ndarray) -> Iterator[bytes]:
    """The compressed image data of ``pixels`` as ``encode_png`` makes it, one IDAT payload at a time."""
    for piece in encode_png(pixels):
        position = len(SIGNATURE) if piece.startswith(SIGNATURE) else 0
        while position < len(piece):
            (length,) = struct.unpack_from(">I", piece, position)
            kind = piece[position + 4:position + 8]
            if kind == b"IDAT":
                yield piece[position + 8:position + 8 + length]
            position += 12 + length


# ----------------------------------------------------------------------------- WebP

def _write_webp(file, frames: Iterator, *, loop: Optional[int], icc_profile: Optional[bytes], quality: int,
                provenance: Optional[str]) -> int:
    lossless = quality == 100
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("an animation needs at least one frame")
    image = _pil(first.pixels)
    encoder = _webp_encoder(image.size, loop or 0, lossless)
    xmp = b""
    if provenance:
        from ..provenance import xmp as provenance_xmp
        xmp = provenance_xmp(provenance)
    if encoder is None:  # a Pillow whose libwebp binding differs: its writer, which holds the frames
        rest = [_pil(frame.pixels) for frame in frames]
        durations = [first.duration, *(frame.duration for frame in frames)] if first.duration is not None else None
        options = {"duration": durations} if durations else {}
        image.save(file, "WEBP", save_all=True, append_images=rest, loop=loop or 0, quality=quality,
                   lossless=lossless, icc_profile=icc_profile or None, xmp=xmp or None, **options)
        return 1 + len(rest)
    timestamp, count = 0.0, 0
    for frame in _chain(first, frames):
        picture = _pil(frame.pixels)
        if picture.mode not in ("RGB", "RGBA"):
            picture = picture.convert("RGBA" if "A" in picture.mode else "RGB")
        encoder.add(_core(picture), round(timestamp), lossless, quality, 100, 0)
        timestamp += frame.duration if frame.duration is not None else 0
        count += 1
    encoder.add(None, round(timestamp), lossless, quality, 100, 0)
    data = encoder.assemble(icc_profile or b"", b"", xmp)
    if data is None:
        raise OSError("cannot write file as WebP (encoder returned None)")
    file.write(data)
    return count


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _core(image):
    return image.getim() if hasattr(image, "getim") else image.im


def _webp_encoder(size: tuple[int, int], loop: int, lossless: bool):
    """libwebp's animation encoder as Pillow binds it (its argument list changed in Pillow 11), or None."""
    try:
        from PIL import _webp
    except ImportError:
        return None
    kmin, kmax = (9, 17) if lossless else (3, 5)  # gif2webp's key frame defaults, as Pillow's
    for arguments in ((size, 0, loop, False, kmin, kmax, False, False),
                      (size[0], size[1], 0, loop, False, kmin, kmax, False, False)):
        try:
            return _webp.WebPAnimEncoder(*arguments)
        except (TypeError, AttributeError):
            continue
    return None
