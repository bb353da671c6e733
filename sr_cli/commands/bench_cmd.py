"""`sr bench`: speed and memory, measured side by side in one run."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import friendly_errors
from .upscale_cmd import parse_tile


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"use WIDTHxHEIGHT, e.g. 512x512, got {text!r}") from None
    if width < 1 or height < 1:
        raise click.BadParameter("sizes must be positive")
    return width, height


@click.command("bench")
@click.option("-m", "--model", "models", multiple=True, default=["default"], show_default=True,
              help="Model name or weights file; repeat to compare.")
@click.option("--size", "sizes", multiple=True, default=["512x512"], show_default=True,
              help="Input size WIDTHxHEIGHT (synthetic image); repeat for several.")
@click.option("-s", "--scale", type=float, default=4.0, show_default=True, help="Upscaling factor.")
@click.option("--tile", "tiles", multiple=True, default=["auto"], show_default=True,
              help="Tile size in input pixels, 0 for none, or 'auto'; repeat for several.")
@click.option("--tile-overlap", type=click.IntRange(0), default=16, show_default=True, help="Context per tile side.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
              help="Inference precision.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch intra-op threads (default: torch's).")
@click.option("--repeat", type=click.IntRange(1), default=3, show_default=True, help="Timed runs per combination.")
@click.option("--warmup", type=click.IntRange(0), default=1, show_default=True, help="Untimed runs first.")
@click.option("--compare-reference", is_flag=True,
              help="Also run a Real-ESRGAN-style tile loop (10 px pad, no blending, float32 output) "
                   "and print speed and peak-memory ratios.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@friendly_errors
def bench_command(models, sizes, scale, tiles, tile_overlap, device, precision, threads, repeat, warmup,
                  compare_reference, as_json):
    """Measure upscaling speed and memory: median/min/max time, output MP/s, peak RSS, FLOPs per
    output pixel, achieved GFLOP/s and its share of this machine's 3x3 conv peak (measured here)."""
    import torch
    from ..bench import bench_one, conv_peak_gflops
    from ..upscale import pick_device, pick_dtype
    if threads:
        torch.set_num_threads(threads)
    parsed_sizes = [_parse_size(s) for s in sizes]
    parsed_tiles = [parse_tile(t) for t in tiles]
    torch_device = pick_device(device)
    peak = conv_peak_gflops(torch_device, pick_dtype(precision, torch_device))
    results = []
    for model in models:
        for width, height in parsed_sizes:
            for tile in parsed_tiles:
                results += bench_one(model, height=height, width=width, scale=scale, tile=tile,
                                     device=device, precision=precision, warmup=warmup, repeat=repeat,
                                     conv_peak=peak, reference=compare_reference, overlap=tile_overlap)
    if as_json:
        click.echo(json.dumps({"conv_peak_gflops": peak, "results": [r.as_dict() for r in results]}, indent=2))
        return
    _print_table(results, peak)


def _print_table(results, peak):
    from rich.console import Console
    from rich.table import Table
    table = Table("model", "runner", "size", "tile", "median s", "min-max s", "out MP/s", "peak RSS MB",
                  "kFLOP/out px", "GFLOP/s", "% conv peak", title=f"3x3 64->64 conv peak: {peak:.1f} GFLOP/s")
    for r in results:
        share = f"{100 * r.share_of_conv_peak:.0f}%" if r.share_of_conv_peak else "-"
        table.add_row(Path(r.model).name, r.runner, r.size, str(r.tile or "none"), f"{r.median_s:.3f}",
                      f"{r.min_s:.3f}-{r.max_s:.3f}", f"{r.output_mp_per_s:.3f}", f"{r.peak_rss_mb:.0f}",
                      f"{r.flops_per_output_pixel / 1e3:.1f}", f"{r.gflops_per_s:.1f}", share)
    import sys
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    pairs = {}
    for r in results:
        pairs.setdefault((r.model, r.size, r.tile), {})[r.runner] = r
    for (model, size, tile), runs in pairs.items():
        if "sr" in runs and "reference" in runs:
            ours, ref = runs["sr"], runs["reference"]
            console.print(f"{model} {size} tile {tile}: speed x{ref.median_s / ours.median_s:.2f} "
                          f"vs reference, peak RSS x{ours.peak_rss_mb / ref.peak_rss_mb:.2f}")
