"""Peak memory of `sr upscale` on a large image, against the size of its output.

    .venv/bin/python benchmarks/large_output_memory.py                    # 4096x4096 x4, fast model
    .venv/bin/python benchmarks/large_output_memory.py --size 2048 --model default
    .venv/bin/python benchmarks/large_output_memory.py --format tiff      # TIFF out instead of PNG
    .venv/bin/python benchmarks/large_output_memory.py --writer 8000      # the writer alone, PNG and TIFF

With --writer SIDE, a child process builds a SIDE x SIDE RGB uint8 array (in row blocks, so
building it adds a few MB at most) and writes it with `imageio.write_image`; it reports
its resident memory just before the write and its peak (getrusage RUSAGE_SELF). Peak minus the
array is start-up plus everything the writer adds; peak minus "before" is the writer alone, so a
whole-image copy would show as about the array's size there.

Writes a synthetic smooth-plus-noise RGB PNG of --size pixels a side to a temporary
folder, runs `sr upscale` on it in a child process (PNG or TIFF out, start-up included), and
reads that process's peak resident memory from the kernel (getrusage RUSAGE_CHILDREN,
the same figure as `/usr/bin/time -v`'s "Maximum resident set size"). The output alone
is out_h x out_w x 3 bytes; the target is that plus 600 MB.
"""
from __future__ import annotations

import argparse
import json
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


def write_in_child(fmt: str, side: int, path: str) -> None:
    """The child of --writer: build the array, write it, print the figures as JSON."""
    from sr_cli.imageio import ImageData, write_image
    pixels = np.empty((side, side, 3), np.uint8)
    rng = np.random.default_rng(0)
    x = np.arange(side)
    for top in range(0, side, 32):  # smooth plus noise, like a photo; small blocks: small temporaries
        y = np.arange(top, min(top + 32, side))[:, None]
        block = pixels[top:top + len(y)]
        block[..., 0] = (x // 7 + y // 11) % 256
        block[..., 1] = (x * y // 4096) % 256
        block[..., 2] = (x // 3) % 256
        block += rng.integers(0, 8, block.shape, dtype=np.uint8)
    with open("/proc/self/status") as status:
        before = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
    start = time.perf_counter()
    write_image(path, ImageData(pixels=pixels))
    print(json.dumps({"before": before, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "seconds": time.perf_counter() - start, "array": pixels.nbytes,
                      "file": Path(path).stat().st_size}))


def measure_writer(side: int, formats: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in formats:
            target = str(Path(tmp) / f"out.{fmt}")
            result = subprocess.run([sys.executable, __file__, "--child", fmt, str(side), target],
                                    capture_output=True, text=True, check=True)
            r = json.loads(result.stdout)
            mb = {k: v / 1e6 for k, v in r.items() if k != "seconds"}
            print(f"{fmt.upper()} {side}x{side} RGB uint8 ({mb['array']:.0f} MB): peak RSS {mb['peak']:.0f} MB, "
                  f"peak - array {mb['peak'] - mb['array']:.0f} MB, peak - before write {mb['peak'] - mb['before']:.0f} MB; "
                  f"write {r['seconds']:.1f} s, file {mb['file']:.0f} MB")
            Path(target).unlink()


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        write_in_child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="Input side in pixels.")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--model", default="fast")
    parser.add_argument("--format", choices=["png", "tiff"], help="Output format (default: png; --writer: both).")
    parser.add_argument("--writer", type=int, metavar="SIDE", help="Measure the writer alone on a SIDE x SIDE array.")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="More sr upscale options.")
    args = parser.parse_args()
    if args.writer:
        measure_writer(args.writer, [args.format] if args.format else ["png", "tiff"])
        return
    args.format = args.format or "png"
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
