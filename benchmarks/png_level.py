"""PNG deflate level: seconds to write and bytes written, per level, for real upscaled outputs.

    python benchmarks/png_level.py OUT1.png [OUT2.png ...] [--levels 1 2 3 4 6] [--repeat 3]

Each file is read once, then written by sr's PNG writer (sr_cli/png.py, the writer of
`sr upscale`) at each level, several times; the median time and the size are printed,
with the size relative to level 6.
"""
from __future__ import annotations

import argparse
import statistics
import time

from sr_cli.imageio import read_image
from sr_cli.png import encode_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4, 6, 9])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for path in args.images:
        pixels = read_image(path).pixels
        sizes, times = {}, {}
        for level in args.levels:
            runs = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                size = sum(len(part) for part in encode_png(pixels, level=level))
                runs.append(time.perf_counter() - start)
            sizes[level], times[level] = size, statistics.median(runs)
        base = sizes.get(6) or next(iter(sizes.values()))
        print(f"{path} ({pixels.shape[1]}x{pixels.shape[0]})")
        for level in args.levels:
            print(f"  level {level}: {times[level]:.3f} s, {sizes[level] / 1e6:.2f} MB ({sizes[level] / base:.3f} of level 6)")


if __name__ == "__main__":
    main()
