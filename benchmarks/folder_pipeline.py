"""Folder batches: background decode/encode vs one image at a time, side by side.

    python benchmarks/folder_pipeline.py --model default --count 50 --size 128 --scale 4

Writes the images to a temporary folder, then times (1) a plain loop that reads,
upscales and writes each image in turn, and (2) sr's batch runner, which decodes
the next image and encodes the last one on background threads. Same model, same
images, same output format, alternating runs.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from sr_cli.batch import Job
from sr_cli.runner import run_jobs
from sr_cli.bench import synthetic_image
from sr_cli.imageio import ImageData, read_image, write_image
from sr_cli.upscale import Upscaler


def sequential(jobs, upscaler):
    for job in jobs:
        image = read_image(job.source)
        write_image(job.destination, ImageData(upscaler(image.pixels), image.icc_profile, image.exif))


def pipelined(jobs, upscaler):
    results = run_jobs(jobs, upscaler, existing="overwrite")
    assert all(r.status == "ok" for r in results), [r.error for r in results if r.error]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--scale", type=float, default=4)
    parser.add_argument("--format", default="png")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    upscaler = Upscaler.create(args.model, args.scale, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "in"), Path(tmp, "out")
        src.mkdir()
        dst.mkdir()
        for i in range(args.count):
            Image.fromarray(synthetic_image(args.size, args.size, seed=i)).save(src / f"{i:03d}.{args.format}")
        jobs = [Job(p, dst / p.name) for p in sorted(src.iterdir())]
        upscaler(np.zeros((args.size, args.size, 3), np.uint8))  # warm-up
        times = {"sequential": [], "pipelined": []}
        for _ in range(args.rounds):
            for name, fn in (("sequential", sequential), ("pipelined", pipelined)):
                start = time.perf_counter()
                fn(jobs, upscaler)
                times[name].append(time.perf_counter() - start)
    seq, pipe = statistics.median(times["sequential"]), statistics.median(times["pipelined"])
    print(f"{args.count} images {args.size}x{args.size} x{args.scale:g} {args.format}, model {args.model}, "
          f"median of {args.rounds}: sequential {seq:.2f}s, pipelined {pipe:.2f}s, speed-up x{seq / pipe:.2f}")
    print("all runs:", {k: [round(t, 2) for t in v] for k, v in times.items()})


if __name__ == "__main__":
    main()
