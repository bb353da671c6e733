"""Peak memory of `sr upscale` on a large image, against the size of its output.

    .venv/bin/python benchmarks/large_output_memory.py                    # 4096x4096 x4, fast model
    .venv/bin/python benchmarks/large_output_memory.py --size 2048 --model default
    .venv/bin/python benchmarks/large_output_memory.py --format tiff      # TIFF out instead of PNG

Writes a synthetic smooth-plus-noise RGB PNG of --size pixels a side to a temporary
folder, runs `sr upscale` on it in a child process (PNG or TIFF out, start-up included), and
reads that process's peak resident memory from the kernel (getrusage RUSAGE_CHILDREN,
the same figure as `/usr/bin/time -v`'s "Maximum resident set size"). The output alone
is out_h x out_w x 3 bytes; the target is that plus 600 MB.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic(size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.stack([127 + 100 * np.sin(x / 37) * np.cos(y / 53), 127 + 100 * np.sin((x + y) / 91),
                      127 + 60 * np.cos(x / 13)], axis=2)
    image += np.random.default_rng(0).normal(0, 4, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="Input side in pixels.")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--model", default="fast")
    parser.add_argument("--format", choices=["png", "tiff"], default="png", help="Output format.")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="More sr upscale options.")
    args = parser.parse_args()
    from PIL import Image
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.png", Path(tmp) / f"out.{args.format}"
        Image.fromarray(synthetic(args.size)).save(source)
        command = [sys.executable, "-m", "sr_cli", "upscale", str(source), "--scale", str(args.scale),
                   "--model", args.model, "-o", str(target), "--quiet", *args.extra]
        start = time.perf_counter()
        code = subprocess.call(command)
        wall = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e6
        side = args.size * args.scale
        output_mb = side * side * 3 / 1e6
        print(f"{args.size}x{args.size} x{args.scale} ({args.model}): exit {code}, wall {wall:.1f} s, "
              f"peak RSS {peak_mb:.0f} MB; output {output_mb:.0f} MB; peak - output {peak_mb - output_mb:.0f} MB "
              f"(target <= 600); {args.format.upper()} {target.stat().st_size / 1e6 if target.exists() else 0:.0f} MB")
        raise SystemExit(code)


if __name__ == "__main__":
    main()
