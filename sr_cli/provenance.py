"""The provenance tag: every output ``sr upscale`` writes says that sr made it, with which model,
at which scale and from which source file.

It is what makes "an earlier output" knowable instead of guessed: a file is sr's only if it carries
the tag, and a file without it is the user's, so it is never taken for an earlier output, never
replaced (not even with --overwrite) and never deleted. ``sr info FILE`` shows it.

Where it is kept (the text is one line of ASCII JSON, the same everywhere):

==========================  ==========================================================
PNG, APNG                   a ``tEXt`` chunk, keyword ``sr-provenance``
JPEG, GIF                   the comment (JPEG COM segment, GIF comment extension)
WebP                        XMP, as the attribute ``sr:provenance``
TIFF                        private tag 65000 (ASCII) of the first page
MP4, MOV, MKV, WebM         container metadata ``sr_provenance``
BMP, AVI, MPEG-TS           nowhere: these formats have no place for it
==========================  ==========================================================

Standard library only; Pillow and PyAV are imported by ``read`` when a file needs them.
"""
from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Optional, Union

PNG_KEY = "sr-provenance"
VIDEO_KEY = "sr_provenance"
TIFF_TAG = 65000
_XMP = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:sr="urn:sr-cli:provenance:1" sr:provenance="{}"/></rdf:RDF></x:xmpmeta>')
_XMP_VALUE = re.compile(rb'sr:provenance="([^"]*)"')
UNTAGGED_SUFFIXES = frozenset({".bmp", ".avi", ".ts", ".m2ts", ".mts"})


def make(*, model: Optional[str], scale: Optional[float], source: Union[str, os.PathLike]) -> str:
    """The tag's text: ``{"software": "sr", "version": ..., "model": ..., "scale": ..., "source": NAME}``.
    Only the source's file name is kept (not its folder), and a model file's name (not its path)."""
    from . import __version__
    if model is not None and (os.sep in str(model) or "/" in str(model)):
        model = Path(str(model)).name
    if scale is not None and float(scale).is_integer():
        scale = int(scale)
    return json.dumps({"software": "sr", "version": __version__, "model": model, "scale": scale,
                       "source": Path(str(source)).name}, ensure_ascii=True, separators=(",", ":"))


def parse(text: Union[str, bytes, None]) -> Optional[dict]:
    """The tag as a dict, or None when ``text`` is not an sr tag."""
    if text is None:
        return None
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value.get("software") == "sr" else None


def xmp(text: str) -> bytes:
    """An XMP packet holding the tag (WebP)."""
    return _XMP.format(html.escape(text, quote=True)).encode()


def read(path: Union[str, os.PathLike]) -> Optional[dict]:
    """The tag of an image, animation or video file; None when it has none (or cannot be read)."""
    path = Path(path)
    from .video.common import is_video
    if is_video(path):
        return _read_video(path)
    try:
        from PIL import Image
        with Image.open(path) as im:
            info = im.info
            if PNG_KEY in info:
                return parse(info[PNG_KEY])
            if "comment" in info:
                return parse(info["comment"])
            if info.get("xmp"):
                match = _XMP_VALUE.search(info["xmp"] if isinstance(info["xmp"], bytes) else info["xmp"].encode())
                return parse(html.unescape(match[1].decode())) if match else None
            if im.format == "TIFF":
                return parse(im.tag_v2.get(TIFF_TAG))
    except Exception:
        return None
    return None


def _read_video(path: Path) -> Optional[dict]:
    try:
        from .video.common import load_av
        av = load_av()
        with av.open(str(path)) as container:
            for key, value in container.metadata.items():
                if key.lower() == VIDEO_KEY:
                    return parse(value)
    except Exception:
        return None
    return None


def describe(tag: dict) -> str:
    """One line for people: 'sr 0.1.0, model fast, x2, from a.png'."""
    scale = tag.get("scale")
    return (f"sr {tag.get('version', '?')}, model {tag.get('model') or '?'}, "
            f"x{scale if scale is not None else '?'}, from {tag.get('source') or '?'}")
