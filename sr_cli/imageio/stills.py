"""Still image files <-> pixel arrays, keeping what makes an image look right.

Pixels are H x W x C numpy arrays, uint8 or uint16, C = 1 grey, 2 grey+alpha,
3 RGB, 4 RGBA (always 3-D).

Reading (``read_image``):
  * L, LA, RGB, RGBA stay as they are; "1" -> L; palette -> RGB, or RGBA when it
    has transparency; a transparent colour key on L/RGB -> LA/RGBA.
  * CMYK -> RGB, through the embedded ICC profile to sRGB when there is one (the
    CMYK profile is then dropped: the pixels are sRGB, which untagged means).
  * 16-bit PNG/TIFF keep all 16 bits (Pillow reduces 16-bit colour to 8 bits, so
    those are decoded with OpenCV). Mode I/F images become uint16: integers that
    fit are kept as they are, floats with maximum <= 1 are scaled by 65535, and
    anything else is stretched from min(0, lowest) .. highest to 0 .. 65535.
  * The EXIF orientation is applied (as PIL.ImageOps.exif_transpose does) and
    the EXIF kept with Orientation reset to 1; the ICC profile is kept.
  * Animated or multi-page files (GIF, APNG, WebP, multi-page TIFF) hold several pictures:
    ``read_image`` raises ``AnimatedImage`` (an ImageReadError naming the frame count) rather
    than silently losing every frame but the first, and ``read_animation`` reads them, one
    frame at a time, with their durations, loop count and disposal. A camera's MPO (one
    picture plus previews) is read as its first picture.
  * Files Pillow cannot identify (e.g. float RGB TIFF) are decoded by OpenCV,
    without metadata.

Writing (``write_image``/``encode_image``): png, jpg, webp, tiff, bmp (animations:
``animations.write_animation``).
  * Atomic (``atomic.py``): the file is written to a temporary file beside the target and
    renamed over it, so a failure never leaves a partial output. PNG and TIFF
    are encoded while they are written (``png.py``; ``tiff.py``, through tifffile), so a
    large output needs no second copy. TIFF over 4 GB is written as BigTIFF.
  * JPEG and BMP cannot store alpha here: ValueError (use png/webp/tiff); we do
    not silently flatten an image onto a background the user did not choose.
  * 16-bit is written as 16-bit to PNG and TIFF; JPEG, WebP and BMP get
    round(x / 257). WebP stores grey as RGB; quality 100 means lossless WebP.
  * ICC and EXIF are kept in PNG, JPEG, WebP and TIFF (8 and 16-bit); BMP
    keeps neither. TIFF is deflate-compressed with horizontal differencing.
  * 16-bit grey+alpha TIFF is written as RGBA (grey repeated): neither Pillow
    nor OpenCV reads 2-channel 16-bit TIFF. Values are exact; read back it has
    4 channels.

Suffixes: ``FORMAT_SUFFIXES`` and ``ANIMATION_FORMATS`` are the one declaration of the image
suffixes read and written; batch, evaluate, data and animation derive theirs from them.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from ..atomic import atomic_file
from ..errors import first_line
from ..png import EXIF_PREFIX, PNG_LEVEL, encode_png
from ..png import damage as png_damage
from ..provenance import PNG_KEY, xmp as provenance_xmp

# Still-image formats written, and their suffixes: the first is the one an output gets.
FORMAT_SUFFIXES = {"png": (".png",), "jpg": (".jpg", ".jpeg", ".jpe"), "webp": (".webp",),
                   "tiff": (".tif", ".tiff"), "bmp": (".bmp",)}
# Animated or multi-page files: suffix -> the Pillow format they are written in.
ANIMATION_FORMATS = {".gif": "GIF", ".png": "PNG", ".apng": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
_SUFFIX_FORMATS = {suffix: fmt for fmt, suffixes in FORMAT_SUFFIXES.items() for suffix in suffixes}
_FORMAT_NAMES = {**{fmt: fmt for fmt in FORMAT_SUFFIXES}, "jpeg": "jpg", "tif": "tiff"}
STILL_SUFFIXES = frozenset(_SUFFIX_FORMATS)
WRITABLE_SUFFIXES = STILL_SUFFIXES | frozenset(ANIMATION_FORMATS)  # .gif and .apng: as animations only
READABLE_SUFFIXES = WRITABLE_SUFFIXES | {".tga", ".ppm", ".pgm"}  # Pillow reads these too; never written
_PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP"}
_ORIENTATION = 0x0112
# TIFF tags that describe the photo rather than the file's layout: what a TIFF's EXIF is made of.
_TIFF_EXIF_TAGS = {269, 270, 271, 272, 274, 282, 283, 296, 305, 306, 315, 316, 318, 319, 33432,
                   0x8769, 0x8825}
_WEBP_MAX_SIDE = 16383


def _opencv():
    """OpenCV, imported on first use (16-bit and odd files only: ~0.25 s and 40 MB at import)."""
    import cv2
    # OpenCV prints its own warnings about broken files to stderr; the one line we raise says it all.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return cv2


_INPUT_LIMIT: Optional[tuple[int, str]] = None  # (pixels, what sets it): set_input_limit


def set_input_limit(pixels: Optional[int], why: str = "") -> None:
    """Refuse, from the header alone and before decoding, an input (or frame) of more than ``pixels``
    pixels, saying ``why``; this limit replaces Pillow's own decompression-bomb limit (89/179 MP),
    which would otherwise refuse images that ``--max-pixels`` allows, or let bombs under it decode.
    None restores Pillow's limit."""
    global _INPUT_LIMIT
    if pixels is None:
        _INPUT_LIMIT = None
        Image.MAX_IMAGE_PIXELS = _PILLOW_LIMIT
        return
    _INPUT_LIMIT = (max(1, int(pixels)), why)
    Image.MAX_IMAGE_PIXELS = None  # ours decides


_PILLOW_LIMIT = Image.MAX_IMAGE_PIXELS


def _check_input_size(width: int, height: int) -> None:
    if _INPUT_LIMIT is not None and width * height > _INPUT_LIMIT[0]:
        limit, why = _INPUT_LIMIT
        raise ValueError(f"{width}x{height} input: {width * height:,} pixels, above the {limit:,} {why}; "
                         "refused before decoding (a decompression bomb, or raise --max-pixels)")


def _frames_in(im: Image.Image) -> int:
    return 1 if im.format == "MPO" else getattr(im, "n_frames", 1)


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message is one line naming the file."""


class AnimatedImage(ImageReadError):
    """A file of several frames given to ``read_image``: read it with ``read_animation``."""

    def __init__(self, message: str, frames: int):
        super().__init__(message)
        self.frames = frames


@dataclass
class ImageData:
    """Pixels (H x W x C, uint8/uint16) and the metadata that travels with them.

    ``exif`` is raw EXIF starting with ``b"Exif\\0\\0"``, its Orientation already 1
    because the pixels are upright. ``source_format`` is Pillow's name ("PNG", "JPEG", ...).
    """

    pixels: np.ndarray
    icc_profile: Optional[bytes] = None
    exif: Optional[bytes] = None
    source_format: Optional[str] = None
    provenance: Optional[str] = None  # written, never read back into pixels: provenance.py (sr's tag)

    def __post_init__(self) -> None:
        shape, dtype = self.pixels.shape, self.pixels.dtype
        if len(shape) != 3 or shape[2] not in (1, 2, 3, 4) or dtype not in (np.uint8, np.uint16):
            raise ValueError(f"pixels must be H x W x 1-4 uint8/uint16, got {shape} {dtype}")

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def is_grey(self) -> bool:
        return self.channels in (1, 2)


# ----------------------------------------------------------------------------- reading

def read_image(source: Union[str, os.PathLike, bytes], *, first_frame: bool = False) -> ImageData:
    """Read a file (or its bytes, e.g. from stdin) into upright pixels plus ICC/EXIF. An animated or
    multi-page file raises ``AnimatedImage``, or with ``first_frame`` gives its first picture."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, data = "<bytes>", bytes(source)
    else:
        name = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ImageReadError(f"{name}: {exc.strerror or exc}") from exc
    try:
        return _decode(data, first_frame=first_frame)
    except AnimatedImage as exc:
        raise AnimatedImage(f"{name}: {exc}", exc.frames) from None
    except MemoryError:
        raise ImageReadError(f"{name}: cannot read image (out of memory while decoding)") from None
    except Exception as exc:  # any decoder failure on an untrusted file is "unreadable"
        reason = first_line(exc)
        raise ImageReadError(f"{name}: cannot read image ({reason})") from exc


def _decode(data: bytes, *, first_frame: bool) -> ImageData:
    damaged = png_damage(data)
    if damaged:  # before any decoder: libpng would print its own "libpng error" line on stderr
        raise ValueError(damaged)
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return _decode_with_cv2_only(data)
    with im:
        _check_input_size(*im.size)
        frames = _frames_in(im)
        if frames > 1 and not first_frame:
            raise AnimatedImage(f"animated/multi-frame input: {frames} frames (read_animation reads them)", frames)
        pixels = _deep_pixels(data, im)
        if pixels is None:
            pixels = _pixels_from_pil(im)
        tags = im.getexif()
        orientation = tags.get(_ORIENTATION, 1)
        icc = None if im.mode == "CMYK" else im.info.get("icc_profile") or None
        exif = _exif_from_tiff(tags) if im.format == "TIFF" else _exif_upright(im.info.get("exif"))
        source_format = "JPEG" if im.format == "MPO" else im.format  # MPO: a camera's multi-picture JPEG
    pixels = np.require(_upright(pixels, orientation), requirements=["C", "W"])
    return ImageData(pixels=pixels, icc_profile=icc, exif=exif, source_format=source_format)


def _decode_with_cv2_only(data: bytes) -> ImageData:
    cv2 = _opencv()
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ValueError("not a recognised image format")
    is_tiff = data[:4] in (b"II*\x00", b"MM\x00*")
    return ImageData(pixels=_from_cv2(decoded, grey_alpha=False), source_format="TIFF" if is_tiff else None)


def _deep_pixels(data: bytes, im: Image.Image) -> Optional[np.ndarray]:
    """16-bit colour PNG/TIFF at full depth (Pillow would give 8 bits); None where Pillow is exact."""
    if im.mode not in ("LA", "RGB", "RGBA"):  # I;16 grey is exact in Pillow; CMYK etc. go through Pillow
        return None
    if im.format == "PNG":
        deep, grey_alpha = data[24] == 16, data[25] == 4  # IHDR bit depth, colour type
    elif im.format == "TIFF":
        bits = im.tag_v2.get(258, 8)
        deep, grey_alpha = max(bits if isinstance(bits, tuple) else (bits,)) > 8, im.mode == "LA"
    else:
        return None
    if not deep:
        return None
    cv2 = _opencv()
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ValueError("OpenCV could not decode the 16-bit pixels")
    return _from_cv2(decoded, grey_alpha=grey_alpha)


def _from_cv2(decoded: np.ndarray, *, grey_alpha: bool) -> np.ndarray:
    if decoded.ndim == 2:
        pixels = decoded[:, :, None]
    elif grey_alpha and decoded.shape[2] == 4:  # OpenCV expands grey+alpha to BGRA
        pixels = decoded[:, :, [0, 3]]
    elif decoded.shape[2] in (3, 4):
        cv2 = _opencv()
        code = cv2.COLOR_BGR2RGB if decoded.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        pixels = cv2.cvtColor(decoded, code, dst=decoded)  # in place: we own the buffer
    else:
        raise ValueError(f"unsupported channel count {decoded.shape[2]}")
    return pixels if pixels.dtype in (np.uint8, np.uint16) else _as_uint16(pixels)


def _pixels_from_pil(im: Image.Image) -> np.ndarray:
    """Pillow image -> H x W x C uint8/uint16, converting modes we do not keep."""
    mode = im.mode
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode in ("L", "RGB") and "transparency" in im.info:
        im = im.convert(mode + "A")
    elif mode == "CMYK":
        im = _cmyk_to_rgb(im)
    elif mode in ("RGBa", "La"):  # premultiplied alpha
        im = im.convert(mode[:-1] + "A")
    elif mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16, copy=False)[:, :, None]  # I;16B is big-endian
    elif mode in ("I", "F"):
        return _as_uint16(np.asarray(im))[:, :, None]
    elif mode not in ("L", "LA", "RGB", "RGBA"):  # YCbCr, HSV, RGBX, ...
        im = im.convert("RGB")
    pixels = np.asarray(im)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    icc = im.info.get("icc_profile")
    if icc:
        try:
            return ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                             ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: Pillow's plain conversion is better than refusing the image
    return im.convert("RGB")


def _as_uint16(values: np.ndarray) -> np.ndarray:
    """Integer or float pixels of any range -> uint16 (the rules are in the module docstring)."""
    if values.dtype.kind in "iu" and values.min(initial=0) >= 0 and values.max(initial=0) <= 65535:
        return values.astype(np.uint16)
    is_float = values.dtype.kind == "f"
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lowest, highest = min(values.min(initial=0.0), 0.0), values.max(initial=0.0)
    if is_float and highest <= 1.0:  # the usual normalised float image
        lowest, highest = 0.0, 1.0
    scaled = (values - lowest) * (65535 / ((highest - lowest) or 1.0))
    return np.round(np.clip(scaled, 0, 65535)).astype(np.uint16)


def _upright(pixels: np.ndarray, orientation: Any) -> np.ndarray:
    """Apply an EXIF orientation (1-8) as PIL.ImageOps.exif_transpose would; views, no copies."""
    swapped = pixels.transpose(1, 0, 2)
    return {2: pixels[:, ::-1], 3: pixels[::-1, ::-1], 4: pixels[::-1], 5: swapped,
            6: swapped[:, ::-1], 7: swapped[::-1, ::-1], 8: swapped[::-1]}.get(orientation, pixels)


def _exif_upright(raw: Optional[bytes]) -> Optional[bytes]:
    """Raw EXIF with the "Exif\\0\\0" prefix and IFD0's Orientation set to 1, patched in place
    so that every other byte (maker notes, thumbnails) survives untouched."""
    if not raw:
        return None
    exif = bytearray(raw if raw.startswith(EXIF_PREFIX) else EXIF_PREFIX + raw)
    try:
        order = {b"II": "<", b"MM": ">"}[bytes(exif[6:8])]
        (ifd,) = struct.unpack_from(order + "I", exif, 10)
        (count,) = struct.unpack_from(order + "H", exif, 6 + ifd)
        for entry in range(6 + ifd + 2, 6 + ifd + 2 + 12 * count, 12):
            tag, kind = struct.unpack_from(order + "HH", exif, entry)
            if tag == _ORIENTATION and kind == 3:  # SHORT, value stored inline
                struct.pack_into(order + "H", exif, entry + 8, 1)
    except (KeyError, struct.error):
        pass  # not a TIFF structure we can walk: keep it as it came
    return bytes(exif)


def _exif_from_tiff(tags: Image.Exif) -> Optional[bytes]:
    # A TIFF's "EXIF" is its own tag directory; keep the descriptive tags, not the file layout.
    for tag in [tag for tag in tags if tag not in _TIFF_EXIF_TAGS]:
        del tags[tag]
    if not tags:
        return None
    if _ORIENTATION in tags:
        tags[_ORIENTATION] = 1
    try:
        return tags.tobytes()
    except Exception:  # odd tag types Pillow cannot write back: lose the EXIF, not the image
        return None


# ----------------------------------------------------------------------------- writing

def format_from_suffix(path: Union[str, os.PathLike]) -> str:
    """"png", "jpg", "webp", "tiff" or "bmp" from the file name; ValueError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise ValueError(f"{path}: unknown image suffix {suffix!r} (use .png, .jpg, .webp, .tiff or .bmp)")
    return _SUFFIX_FORMATS[suffix]


def format_suffix(format: str) -> str:
    """The suffix an output in ``format`` (png, jpg/jpeg, webp, tiff/tif, bmp) gets; ValueError otherwise."""
    return FORMAT_SUFFIXES[canonical_format(format)][0]


def canonical_format(format: str) -> str:
    """png, jpg, webp, tiff or bmp for any of their names, any case; ValueError otherwise."""
    fmt = _FORMAT_NAMES.get(format.lower())
    if fmt is None:
        raise ValueError(f"unknown image format {format!r} (use png, jpg, webp, tiff or bmp)")
    return fmt


def write_image(path: Union[str, os.PathLike], image: ImageData, *, format: Optional[str] = None,
                quality: int = 95, replace: bool = True) -> None:
    """Write ``image`` atomically; the format comes from ``format`` or the suffix. With ``replace``
    False an existing ``path`` is kept and ``atomic.OutputExists`` raised (checked at the rename)."""
    fmt = _checked_format(image, format or format_from_suffix(path), quality)
    with atomic_file(path, replace=replace) as file:
        _write_encoded(file, image, fmt, quality)


def encode_image(image: ImageData, *, format: str, quality: int = 95) -> bytes:
    """The file's bytes, e.g. for stdout."""
    fmt = _checked_format(image, format, quality)
    buffer = io.BytesIO()
    _write_encoded(buffer, image, fmt, quality)
    return buffer.getvalue()


def _checked_format(image: ImageData, format: str, quality: int) -> str:
    """The canonical format name, once ``image`` is known to fit it (checked before any file is made)."""
    fmt = canonical_format(format)
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be 1-100, got {quality}")
    if fmt in ("jpg", "bmp") and image.has_alpha:
        raise ValueError(f"{_PIL_FORMATS[fmt]} cannot store alpha; use png, webp or tiff")
    if fmt == "webp" and max(image.height, image.width) > _WEBP_MAX_SIDE:
        raise ValueError(f"WebP is limited to {_WEBP_MAX_SIDE} pixels a side, the image is "
                         f"{image.width}x{image.height}; use png or tiff")
    return fmt


def _write_encoded(file, image: ImageData, fmt: str, quality: int) -> None:
    """Encode into ``file`` (seekable, readable: tifffile's EXIF pointers are set at the end). PNG
    and TIFF are compressed as they are written, so a large output is never held twice."""
    if fmt == "png":
        text = {PNG_KEY: image.provenance} if image.provenance else None
        for part in encode_png(image.pixels, icc_profile=image.icc_profile, exif=image.exif, text=text):
            file.write(part)
    elif fmt == "tiff":
        from ..tiff import write_tiff  # tifffile: imported for TIFF outputs only
        write_tiff(file, [image.pixels], icc_profile=image.icc_profile, exif=image.exif,
                   provenance=image.provenance)
    else:
        file.write(_encode_with_pil(image, fmt=fmt, quality=quality))


def _encode_with_pil(image: ImageData, *, fmt: str, quality: int) -> memoryview:
    pixels = _eight_bits(image.pixels)
    im = Image.fromarray(pixels[:, :, 0] if image.channels == 1 else pixels)
    options: dict = {}
    if fmt != "bmp":
        options.update(icc_profile=image.icc_profile, exif=image.exif or b"")
    if fmt == "png":
        options.update(compress_level=PNG_LEVEL, pnginfo=_png_info(image.provenance))
    elif fmt == "jpg":
        # 4:4:4 at high quality: halving chroma would blur the colour edges we just upscaled.
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2,
                       comment=image.provenance.encode() if image.provenance else None)
    elif fmt == "webp":
        options.update(quality=quality, lossless=quality == 100, exact=image.has_alpha,
                       xmp=provenance_xmp(image.provenance) if image.provenance else None)
    buffer = io.BytesIO()
    im.save(buffer, _PIL_FORMATS[fmt], **{k: v for k, v in options.items() if v is not None})
    return buffer.getbuffer()


def _png_info(provenance: Optional[str]):
    if not provenance:
        return None
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_text(PNG_KEY, provenance)
    return info


def _eight_bits(pixels: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 as round(x / 257) in one pass (uint8 passes through): the one 16 -> 8 bit
    reduction of what is written."""
    if pixels.dtype != np.uint16:
        return pixels
    return _opencv().convertScaleAbs(pixels, alpha=1 / 257).reshape(pixels.shape)


# ----------------------------------------------------------------------------- PIL and 8-bit colour

def rgb8(pixels: np.ndarray, *, keep_grey: bool = False) -> np.ndarray:
    """Pixels as the 8-bit colour that training and evaluation work on: H x W x 3 uint8 RGB (grey
    repeated), or H x W x 1 for grey with ``keep_grey``; alpha is dropped, not composited.
    16-bit keeps its high byte (x >> 8), as libpng and Pillow reduced it for the readers this
    replaced, so datasets train and score as before."""
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if pixels.shape[2] in (1, 2):
        pixels = pixels[:, :, :1] if keep_grey else np.repeat(pixels[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


def pil_to_pixels(image: Image.Image) -> tuple[np.ndarray, str]:
    """A PIL image -> (H x W x C pixels, its original mode), converted as ``read_image`` does
    (but with no EXIF rotation: the caller already holds the image it wants)."""
    return np.require(_pixels_from_pil(image), requirements=["C", "W"]), image.mode


def pixels_to_pil(pixels: np.ndarray, mode: str) -> Image.Image:
    """Pixels -> a PIL image: L/LA/RGB/RGBA for uint8, I;16 for uint16 grey (mode "I" if
    ``mode`` was "I"). PIL has no 16-bit colour or 16-bit alpha, so those become 8-bit."""
    if pixels.dtype == np.uint16 and pixels.shape[2] == 1:
        image = Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]))
        return image.convert("I") if mode == "I" else image
    pixels = _eight_bits(pixels)
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
