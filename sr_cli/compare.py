"""Side-by-side pictures of upscalers: what `sr compare` draws.

One row per input image: the input enlarged with nearest neighbours (its pixels as they are),
each model's output, and, given the ground truth, the reference, with every panel's PSNR/SSIM
against it (Y channel, ``scale`` pixels of border left out, MATLAB convention: as `sr eval`).
The rows show a crop: the given one, or the window of the input with the most detail (the
largest sum of squared luma gradients), sized so that its output is about ``panel`` pixels a
side. Models see the crop with ``CONTEXT`` input pixels around it, as a tile sees its overlap,
so the crop looks as it would in the whole image at a fraction of the work. Crops smaller than
``MIN_PANEL`` pixels are zoomed with nearest neighbours, so every panel is a useful size.

Models run through the public core API only (``Upscaler.create(model, scale)``), so anything
``--model`` takes can be compared. Labels are drawn with Pillow's default font.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

PANEL = 384      # output pixels a side of an automatic crop
MIN_PANEL = 256  # panels whose longer side is smaller are zoomed (nearest, by an integer) to at least this
MAX_ZOOM = 16
CONTEXT = 16     # input pixels around the crop that the models see (the tiles' overlap)
GAP = 4          # white pixels between panels and between rows
PAD = 4          # text inset
FONT_SIZE = 14
Box = tuple[int, int, int, int]  # x, y, width, height


@dataclass
class Panel:
    label: str
    pixels: np.ndarray              # the crop at output scale, before any zoom: H x W x 3 uint8
    psnr: Optional[float] = None    # against the reference, when there is one
    ssim: Optional[float] = None


@dataclass
class Row:
    title: str
    crop: Box                       # in input pixels
    scale: int
    zoom: int
    panels: list[Panel] = field(default_factory=list)


@dataclass
class Comparison:
    image: np.ndarray               # the picture: H x W x 3 uint8
    rows: list[Row]
    boxes: list[list[Box]]          # where each row's panels' pixels are in ``image``
    label_boxes: list[list[Box]]    # where each panel's label is


def parse_crop(text: str) -> Box:
    """'X,Y,W,H' -> (x, y, w, h); ValueError with one line otherwise."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"crop {text!r} is not X,Y,W,H (four integers, input pixels)") from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise ValueError(f"crop {text!r}: X and Y must be >= 0, W and H >= 1")
    return x, y, w, h


def detail_crop(pixels: np.ndarray, width: int, height: int) -> Box:
    """The ``width`` x ``height`` window of ``pixels`` (H x W x C) with the largest sum of squared
    luma gradients: the most detailed region. The first of equal windows (top, then left)."""
    img_h, img_w = pixels.shape[:2]
    width, height = min(width, img_w), min(height, img_h)
    if pixels.shape[2] >= 3:  # float32 and no RGB copy: a 12-megapixel photo costs ~50 MB per array
        luma = sum(pixels[..., c].astype(np.float32) * k for c, k in enumerate((0.299, 0.587, 0.114)))
    else:
        luma = pixels[..., 0].astype(np.float32)
    energy = np.zeros((img_h, img_w), np.float32)
    energy[:, :-1] += np.diff(luma, axis=1) ** 2
    energy[:-1, :] += np.diff(luma, axis=0) ** 2
    # Window sums from a summed-area table: every position at once.
    table = np.zeros((img_h + 1, img_w + 1))
    table[1:, 1:] = energy.cumsum(axis=0, dtype=np.float64).cumsum(axis=1)
    sums = (table[height:, width:] - table[:-height, width:] - table[height:, :-width] + table[:-height, :-width])
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(left), int(top), width, height


def zoom_for(height: int, width: int) -> int:
    """The integer nearest-neighbour zoom that brings a panel's longer side to MIN_PANEL."""
    return max(1, min(MAX_ZOOM, math.ceil(MIN_PANEL / max(height, width))))


def compare_row(pixels: np.ndarray, upscalers: dict[str, Callable[[np.ndarray], np.ndarray]], *, scale: int,
                reference: Optional[np.ndarray] = None, crop: Optional[Box] = None, title: str = "",
                panel: int = PANEL) -> Row:
    """One input's panels: nearest, each upscaler's output (``name -> callable`` taking and
    returning H x W x 3 uint8, e.g. an ``Upscaler``), and the reference with the metrics."""
    from .metrics import calculate_psnr, calculate_ssim

    img_h, img_w = pixels.shape[:2]
    if reference is not None:
        ref_h, ref_w = reference.shape[:2]
        if not (img_h * scale <= ref_h < (img_h + 1) * scale and img_w * scale <= ref_w < (img_w + 1) * scale):
            raise ValueError(f"the reference is {ref_w}x{ref_h}, not x{scale} of the {img_w}x{img_h} input "
                             f"(within a mod-crop)")
        reference = reference[:img_h * scale, :img_w * scale]
    if crop is None:
        side = max(1, math.ceil(panel / scale))
        crop = detail_crop(pixels, side, side) if (side < img_w or side < img_h) else (0, 0, img_w, img_h)
    x, y, w, h = crop
    if x + w > img_w or y + h > img_h:
        raise ValueError(f"crop {x},{y},{w},{h} reaches outside the {img_w}x{img_h} input")
    if reference is not None and min(w, h) * scale - 2 * scale < 11:
        raise ValueError(f"crop {w}x{h} is too small to score against the reference: at least "
                         f"{math.ceil((11 + 2 * scale) / scale)} input pixels a side")
    # The models see the crop with CONTEXT pixels around it (as far as the image goes).
    x0, y0 = max(0, x - CONTEXT), max(0, y - CONTEXT)
    x1, y1 = min(img_w, x + w + CONTEXT), min(img_h, y + h + CONTEXT)
    context = np.ascontiguousarray(pixels[y0:y1, x0:x1])
    top, left = (y - y0) * scale, (x - x0) * scale
    cut = np.s_[top:top + h * scale, left:left + w * scale]

    panels = [Panel("input (nearest)", np.repeat(np.repeat(pixels[y:y + h, x:x + w], scale, axis=0), scale, axis=1))]
    for name, upscale in upscalers.items():
        out = upscale(context)
        if out.shape[:2] != (context.shape[0] * scale, context.shape[1] * scale):
            raise ValueError(f"{name} made a {out.shape[1]}x{out.shape[0]} image of a "
                             f"{context.shape[1]}x{context.shape[0]} input at x{scale}")
        panels.append(Panel(name, np.ascontiguousarray(out[cut])))
    if reference is not None:
        truth = np.ascontiguousarray(reference[y * scale:(y + h) * scale, x * scale:(x + w) * scale])
        for p in panels:
            p.psnr = calculate_psnr(p.pixels, truth, crop_border=scale)
            p.ssim = calculate_ssim(p.pixels, truth, crop_border=scale)
        panels.append(Panel("reference", truth))
    return Row(title=title, crop=(x, y, w, h), scale=scale, zoom=zoom_for(h * scale, w * scale), panels=panels)


def render(rows: Sequence[Row]) -> Comparison:
    """Rows of labelled panels on white, one picture."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # pragma: no cover - Pillow < 10.1: the bitmap font, one size
        font = ImageFont.load_default()
    line = FONT_SIZE + 6
    layouts, width, height = [], 0, 0
    for row in rows:
        lines = 2 if any(p.psnr is not None for p in row.panels) else 1
        ph, pw = row.panels[0].pixels.shape[0] * row.zoom, row.panels[0].pixels.shape[1] * row.zoom
        row_w = len(row.panels) * pw + (len(row.panels) - 1) * GAP
        top = height + (GAP if layouts else 0)
        layouts.append((top, ph, pw, lines))
        height = top + line + lines * line + ph
        width = max(width, row_w)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    boxes, label_boxes = [], []
    for row, (top, ph, pw, lines) in zip(rows, layouts):
        draw.text((PAD, top + 3), _fit(draw, row.title, width - 2 * PAD, font), fill="black", font=font)
        label_top, image_top = top + line, top + line + lines * line
        row_boxes, row_labels = [], []
        for i, p in enumerate(row.panels):
            left = i * (pw + GAP)
            texts = [p.label]
            if lines == 2:
                texts.append(f"{p.psnr:.2f} dB  {p.ssim:.4f}" if p.psnr is not None else "PSNR / SSIM")
            for k, text in enumerate(texts):
                draw.text((left + PAD, label_top + k * line + 3), _fit(draw, text, pw - 2 * PAD, font),
                          fill="black", font=font)
            zoomed = p.pixels if row.zoom == 1 else np.repeat(np.repeat(p.pixels, row.zoom, 0), row.zoom, 1)
            sheet.paste(Image.fromarray(zoomed), (left, image_top))
            row_boxes.append((left, image_top, pw, ph))
            row_labels.append((left, label_top, pw, lines * line))
        boxes.append(row_boxes)
        label_boxes.append(row_labels)
    return Comparison(image=np.asarray(sheet).copy(), rows=list(rows), boxes=boxes, label_boxes=label_boxes)


def _fit(draw, text: str, width: int, font) -> str:
    """``text``, cut short with '...' where it would be wider than ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def read_rgb(path: Union[str, Path]) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB (orientation applied; grey repeated, alpha dropped)."""
    from .imageio import read_image, rgb8
    return rgb8(read_image(path, first_frame=True).pixels)


def compare(inputs: Sequence[Union[str, Path]], models: Sequence[str], *, scale: int = 4,
            references: Sequence[Union[str, Path]] = (), crop: Optional[Box] = None, device: str = "auto",
            panel: int = PANEL) -> Comparison:
    """The picture `sr compare` writes: one row per input file, one panel per model; ``references``
    (one per input, in order) add the ground truth and every panel's PSNR/SSIM."""
    if int(scale) != scale or scale < 2:
        raise ValueError(f"scale must be an integer of 2 or more, got {scale}")
    scale = int(scale)
    if not models:
        raise ValueError("no models to compare")
    if references and len(references) != len(inputs):
        raise ValueError(f"{len(references)} references for {len(inputs)} inputs: give one per input, in order")
    images = [read_rgb(path) for path in inputs]
    truths = [read_rgb(path) for path in references] or [None] * len(images)
    from .upscale import Upscaler
    upscalers = {name: Upscaler.create(name, scale, device=device) for name in dict.fromkeys(models)}
    rows = []
    for path, pixels, truth in zip(inputs, images, truths):
        row = compare_row(pixels, upscalers, scale=scale, reference=truth, crop=crop, panel=panel)
        x, y, w, h = row.crop
        img_h, img_w = pixels.shape[:2]
        row.title = (f"{Path(path).name}: {img_w}x{img_h}, x{scale}"
                     + (f", crop {x},{y},{w},{h}" if (w, h) != (img_w, img_h) else "")
                     + (f", shown at {row.zoom}x (nearest)" if row.zoom > 1 else "")
                     + (f"; PSNR (dB) / SSIM on Y against {Path(references[len(rows)]).name}" if truth is not None
                        else ""))
        rows.append(row)
    return render(rows)
