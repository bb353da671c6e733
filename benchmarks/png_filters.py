"""PNG row filters: sr's choice among Sub, Up and Average against libpng's among all five.

    python benchmarks/png_filters.py OUT1.png [OUT2.png ...] [--level 4]

Each image is filtered in the blocks sr's writer uses, by sr_cli.png.filter_rows and by the
five-filter rule of libpng and Pillow (below: every filter tried, the smallest sum of absolute
residuals as signed bytes kept); the seconds spent filtering (one thread) and the size of each
after deflate at the level given are printed, per image and in all.
"""
from __future__ import annotations

import argparse
import time
import zlib

import numpy as np

from sr_cli.imageio import read_image
from sr_cli.png import _FILTER_BYTES, PNG_LEVEL, filter_rows


def five_filter_rows(raw: np.ndarray, above: np.ndarray, bytes_per_pixel: int) -> bytes:
    """libpng's rule over None, Sub, Up, Average and Paeth, vectorised over the rows."""
    count, row_bytes = raw.shape
    x = raw.astype(np.int16)
    up = np.empty_like(x)
    up[0] = above
    up[1:] = x[:-1]
    left = np.zeros_like(x)
    left[:, bytes_per_pixel:] = x[:, :-bytes_per_pixel]
    up_left = np.zeros_like(x)
    up_left[:, bytes_per_pixel:] = up[:, :-bytes_per_pixel]
    p_left, p_up, p_up_left = np.abs(up - up_left), np.abs(left - up_left), np.abs(left + up - 2 * up_left)
    paeth = np.where((p_left <= p_up) & (p_left <= p_up_left), left, np.where(p_up <= p_up_left, up, up_left))
    candidates = np.stack([x, x - left, x - up, x - ((left + up) >> 1), x - paeth]).astype(np.uint8)
    cost = np.abs(candidates.view(np.int8).astype(np.int16)).sum(axis=2, dtype=np.int64)
    best = cost.argmin(axis=0)
    out = np.empty((count, row_bytes + 1), np.uint8)
    out[:, 0] = best
    out[:, 1:] = candidates[best, np.arange(count)]
    return out.tobytes()


def filtered(raw: np.ndarray, bytes_per_pixel: int, rule) -> tuple[bytes, float]:
    block = max(1, _FILTER_BYTES // raw.shape[1])
    start = time.perf_counter()
    parts = [rule(raw[top:top + block], raw[top - 1] if top else np.zeros(raw.shape[1], np.uint8), bytes_per_pixel)
             for top in range(0, raw.shape[0], block)]
    return b"".join(parts), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--level", type=int, default=PNG_LEVEL)
    args = parser.parse_args()
    rules = {"sr (Sub, Up, Average)": filter_rows, "libpng (all five)": five_filter_rows}
    totals = {name: [0.0, 0] for name in rules}
    for path in args.images:
        pixels = read_image(path).pixels
        if pixels.dtype != np.uint8:
            continue
        raw = np.ascontiguousarray(pixels).reshape(pixels.shape[0], -1)
        cells = []
        for name, rule in rules.items():
            data, seconds = filtered(raw, pixels.shape[2], rule)
            size = len(zlib.compress(data, args.level))
            totals[name][0] += seconds
            totals[name][1] += size
            cells.append(f"{name} {seconds:.3f} s, {size / 1e6:.3f} MB")
        print(f"{path} ({pixels.shape[1]}x{pixels.shape[0]}): " + "; ".join(cells))
    (ours_s, ours_b), (five_s, five_b) = totals.values()
    print(f"all: filtering {ours_s:.2f} s against {five_s:.2f} s ({five_s / ours_s:.1f}x faster), "
          f"bytes {ours_b / five_b:.4f} of the five-filter choice's (deflate level {args.level})")


if __name__ == "__main__":
    main()
