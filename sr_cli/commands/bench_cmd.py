"""`sr bench`: speed and memory, measured side by side in one run."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import friendly_errors
from .options import inference_options, scale_factor
from .upscale_cmd import check_model_option, parse_max_pixels


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
@click.option("-s", "--scale", type=float, default=4.0, show_default=True, callback=scale_factor,
              help="Upscaling factor (above 1).")
@click.option("--max-pixels", default="auto", show_default=True,
              help="Refuse a --size whose output has more pixels than this; 'auto' sizes it from the memory "
                   "available (the budget of `sr upscale`).")
@inference_options(several=True)
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Intra-op threads of torch and ONNX Runtime (default: theirs, one per core).")
@click.option("--repeat", type=click.IntRange(1), default=3, show_default=True, help="Timed runs per combination.")
@click.option("--warmup", type=click.IntRange(0), default=1, show_default=True, help="Untimed runs first.")
@click.option("--compare-reference", is_flag=True,
              help="Also run a Real-ESRGAN-style tile loop (10 px pad, no blending, float32 output) "
                   "and print speed and peak-memory ratios.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@friendly_errors
def bench_command(models, sizes, scale, max_pixels, engines, device, precision, tiles, tile_overlap, threads, repeat,
                  warmup, compare_reference, as_json):
    """Measure upscaling speed and memory: median/min/max time, output MP/s, peak RSS, FLOPs per
    output pixel, achieved GFLOP/s and its share of this machine's 3x3 conv peak (measured here).

    Repeat --engine to time torch and ONNX Runtime side by side in one run (e.g. --engine torch
    --engine onnx): each model runs on each engine, in the same process, on the same image."""
    parsed_sizes = [_parse_size(s) for s in sizes]
    from ..upscale import check_pixels
    limit = parse_max_pixels(max_pixels)
    for (width, height), text in zip(parsed_sizes, sizes):  # refused before anything is built or run
        try:
            check_pixels(max(1, round(width * scale)), max(1, round(height * scale)), max_pixels=limit)
        except ValueError as exc:
            raise click.BadParameter(f"{text} at x{scale:g}: {exc}", param_hint="--size") from None
    engines = list(dict.fromkeys(engines))
    for model in models:
        for engine in engines:
            check_model_option(model, scale, engine=engine, device=device, precision=precision)
    import torch
    from ..bench import bench_one, conv_peak_gflops
    from ..device import pick_device, pick_dtype
    if threads:
        torch.set_num_threads(threads)
    torch_device = pick_device(device)
    peak = conv_peak_gflops(torch_device, pick_dtype("fp32" if precision == "int8" else precision, torch_device))
    results = []
    for model in models:
        for width, height in parsed_sizes:
            for tile in tiles:
                for engine in engines:
                    results += bench_one(model, height=height, width=width, scale=scale, tile=tile,
                                         device=device, precision=precision, engine=engine, warmup=warmup,
                                         repeat=repeat, conv_peak=peak, reference=compare_reference,
                                         overlap=tile_overlap, threads=threads)
    if as_json:
        click.echo(json.dumps({"conv_peak_gflops": peak, "results": [r.as_dict() for r in results]}, indent=2))
        return
    _print_table(results, peak)


def _print_table(results, peak):
    from rich.console import Console
    from rich.table import Table
    table = Table("model", "runner", "engine", "size", "tile", "median s", "min-max s", "out MP/s", "peak RSS MB",
                  "kFLOP/out px", "GFLOP/s", "% conv peak", title=f"3x3 64->64 conv peak: {peak:.1f} GFLOP/s")
    for r in results:
        share = f"{100 * r.share_of_conv_peak:.0f}%" if r.share_of_conv_peak else "-"
        table.add_row(Path(r.model).name, r.runner, f"{r.engine} {r.precision}", r.size, str(r.tile or "none"),
                      f"{r.median_s:.3f}", f"{r.min_s:.3f}-{r.max_s:.3f}", f"{r.output_mp_per_s:.3f}", f"{r.peak_rss_mb:.0f}",
                      f"{r.flops_per_output_pixel / 1e3:.1f}", f"{r.gflops_per_s:.1f}", share)
    import sys
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    pairs = {}
    for r in results:
        pairs.setdefault((r.model, r.size, r.tile, r.engine), {})[r.runner] = r
    for (model, size, tile, _), runs in pairs.items():
        if "sr" in runs and "reference" in runs:
            ours, ref = runs["sr"], runs["reference"]
            console.print(f"{model} {size} tile {tile}: speed x{ref.median_s / ours.median_s:.2f} "
                          f"vs reference, peak RSS x{ours.peak_rss_mb / ref.peak_rss_mb:.2f}")
    by_engine = {}
    for r in results:
        if r.runner == "sr":
            by_engine.setdefault((r.model, r.size), {})[f"{r.engine} {r.precision}"] = r
    for (model, size), runs in by_engine.items():
        if len(runs) > 1:
            base_name, base = next(iter(runs.items()))
            for name, other in list(runs.items())[1:]:
                console.print(f"{model} {size}: {name} x{base.median_s / other.median_s:.2f} the speed of {base_name}")
