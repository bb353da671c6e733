"""Make docs/side_by_side.png: one image shrunk x4, then upscaled by each model, beside the original.

    .venv/bin/python docs/side_by_side.py                     # bicubic, default, photo
    .venv/bin/python docs/side_by_side.py --model fast --out /tmp/fast.png

The source is docs/sample.png (CC0, see SAMPLE.md), so the picture can ship with the
project. Its LR copy is made as `sr eval` makes them (MATLAB bicubic, 8-bit); each
panel is labelled with its model and its Y-channel PSNR / SSIM against the original
(border = scale), and the bottom row repeats a crop of every panel at 2x, nearest,
so textures can be compared pixel for pixel.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from sr_cli import upscale_image
from sr_cli.metrics import calculate_psnr, calculate_ssim
from sr_cli.resize import imresize, modcrop

DOCS = Path(__file__).resolve().parent


def shrink(hr: np.ndarray, scale: int) -> np.ndarray:
    x = torch.from_numpy(hr).permute(2, 0, 1)[None].double() / 255
    lr = imresize(x, 1 / scale)[0].permute(1, 2, 0).numpy()
    return (lr * 255).round().clip(0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(DOCS / "sample.png"))
    parser.add_argument("--model", action="append", help="Models after bicubic (default: default, photo).")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--crop", default="40,150,80", help="Zoomed crop: top,left,size in HR pixels.")
    parser.add_argument("--out", default=str(DOCS / "side_by_side.png"))
    args = parser.parse_args()
    hr = modcrop(np.array(Image.open(args.image).convert("RGB")), args.scale)
    lr = shrink(hr, args.scale)
    panels = [("original", hr)]
    for name in ["bicubic"] + (args.model or ["default", "photo"]):
        panels.append((name, upscale_image(lr, scale=args.scale, model=name, device="cpu")))
    top, left, size = (int(v) for v in args.crop.split(","))
    height, width = hr.shape[:2]
    label_height = 30
    sheet = Image.new("RGB", (width * len(panels), label_height + height + 2 * size), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, pixels) in enumerate(panels):
        if name == "original":
            caption = f"original ({width}x{height})"
        else:
            psnr = calculate_psnr(pixels, hr, crop_border=args.scale)
            ssim = calculate_ssim(pixels, hr, crop_border=args.scale)
            caption = f"{Path(name).stem if name.endswith('.safetensors') else name}: {psnr:.2f} dB / {ssim:.4f}"
        draw.text((i * width + 4, 8), caption, fill="black")
        sheet.paste(Image.fromarray(pixels), (i * width, label_height))
        zoom = Image.fromarray(pixels[top: top + size, left: left + size]).resize((2 * size, 2 * size), Image.NEAREST)
        sheet.paste(zoom, (i * width + (width - 2 * size) // 2, label_height + height))
    sheet.save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
