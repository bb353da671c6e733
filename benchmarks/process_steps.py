"""Where one `sr upscale` of an image spends its time, step by step, in one process.

    python benchmarks/process_steps.py IMAGE [--model default] [--scale 4] [--engine auto]

Times, with time.perf_counter: the imports the CPU path needs (numpy, onnxruntime, Pillow and
sr_cli's upscaling modules), making the Upscaler, reading the image, upscaling it (session
start, the network and the conversion to pixels: the session is made on first use), and
encoding the PNG (in memory, nothing written). Run it a few times; the first run after a
change also compiles sr_cli's bytecode.
"""
from __future__ import annotations

import time

started = time.perf_counter()

import argparse  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image")
    parser.add_argument("--model", default="default")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--engine", default="auto")
    args = parser.parse_args()
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401
    import PIL.Image  # noqa: F401

    from sr_cli.imageio import read_image
    from sr_cli.png import encode_png
    from sr_cli.upscale import Upscaler
    imported = time.perf_counter()
    upscaler = Upscaler.create(model=args.model, scale=args.scale, engine=args.engine)
    created = time.perf_counter()
    image = read_image(args.image)
    read = time.perf_counter()
    pixels = upscaler(image.pixels)
    upscaled = time.perf_counter()
    size = sum(len(part) for part in encode_png(pixels))
    encoded = time.perf_counter()
    print(f"{args.model} x{args.scale} ({args.engine}): imports {imported - started:.2f} s, "
          f"upscaler {created - imported:.2f} s, read {read - created:.2f} s, "
          f"session + network + pixels {upscaled - read:.2f} s, PNG {encoded - upscaled:.2f} s ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
