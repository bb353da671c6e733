"""Make docs/side_by_side.png: everyday JPEGs upscaled x4 by bicubic and each model, with `sr compare`.

    .venv/bin/python docs/side_by_side.py                      # bicubic, classic, default, photo
    .venv/bin/python docs/side_by_side.py --model fast --out /tmp/fast.png

The same picture as the command

    sr compare docs/jpeg_rocket.jpg docs/jpeg_chelsea.jpg -m bicubic -m classic -m default -m photo \\
        -s 4 -o docs/side_by_side.png --overwrite

this script runs its core (``sr_cli.compare.compare``) after remaking the inputs. They are what
people really upscale: small, compressed photos. Each is a crop of a photo that may be
redistributed, shrunk by 2 (area) as a web copy would be, and saved as a JPEG at quality 60 with
Pillow (4:2:0 chroma, its default):

  docs/jpeg_rocket.jpg  from scikit-image's rocket.jpg (a real JPEG; SpaceX, public domain)
  docs/jpeg_chelsea.jpg from scikit-image's chelsea.png (CC0, Stefan van der Walt)

The script remakes them from scikit-image's data when it is installed (the `test` extra), else
uses the copies in docs/. One row per photo: the input enlarged x4 with nearest neighbours (the
JPEG blocks as they are), then each upscaler's output of that same file.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image

from sr_cli.compare import compare
from sr_cli.imageio import ImageData, write_image

DOCS = Path(__file__).resolve().parent
SCALE = 4
# name -> (scikit-image file, crop top, left, size in the original's pixels)
PHOTOS = {"rocket": ("rocket.jpg", 235, 232, 192), "chelsea": ("chelsea.png", 40, 140, 192)}
QUALITY = 60


def make_input(name: str) -> Path:
    """Crop, shrink x2 and JPEG-compress one photo into docs/jpeg_<name>.jpg; return its path."""
    out = DOCS / f"jpeg_{name}.jpg"
    try:
        import skimage
    except ImportError:
        return out  # the committed copy
    file, top, left, size = PHOTOS[name]
    with Image.open(Path(skimage.__file__).parent / "data" / file) as photo:
        crop = photo.convert("RGB").crop((left, top, left + size, top + size))
    small = crop.resize((size // 2, size // 2), Image.BOX)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=QUALITY)
    out.write_bytes(buffer.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="Models after bicubic (default: classic, default, photo).")
    parser.add_argument("--out", default=str(DOCS / "side_by_side.png"))
    args = parser.parse_args()
    models = ["bicubic"] + (args.model or ["classic", "default", "photo"])
    inputs = [make_input(name) for name in PHOTOS]
    result = compare(inputs, models, scale=SCALE, device="cpu")
    write_image(args.out, ImageData(pixels=result.image))
    print(args.out)


if __name__ == "__main__":
    main()
