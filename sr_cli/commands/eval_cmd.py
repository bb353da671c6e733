"""`sr eval`: PSNR/SSIM of models on benchmark sets, side by side, the literature's way."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

from ..errors import friendly_errors
from .data_cmd import DatasetPath
from .options import inference_options
from .upscale_cmd import check_model_option

CSV_COLUMNS = ("model", "dataset", "image", "scale", "convention", "channel", "crop_border", "psnr", "ssim",
               "blockiness")


def _degrade_spec(ctx, param, value):
    """--degrade checked when parsed (exit 2 with the accepted forms); the text is passed on."""
    if value is None:
        return None
    from ..degrade import parse_degrade_spec
    try:
        parse_degrade_spec(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.command("eval")
@click.argument("datasets", nargs=-1, required=True, type=DatasetPath())
@click.option("-s", "--scale", type=click.IntRange(1), required=True, help="Upscaling factor (2, 3, 4, ...).")
@click.option("-m", "--model", "models", multiple=True, default=["bicubic"], show_default=True,
              help="Model name, baseline (bicubic, lanczos) or weights file; repeat to compare. NAME@S blends a "
                   "GAN model with its parent at strength S (photo@0.5; see `sr upscale --strength`).")
@click.option("--parent", metavar="MODEL", default=None,
              help="The other end of NAME@S (default: the parent the model records, e.g. photo's is "
                   "default); for a GAN run's file, the PSNR model it was fine-tuned from.")
@click.option("--lr-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Read LR inputs from here instead of making them by MATLAB bicubic. Files are matched "
                   "to HR files by stem, ignoring tags such as x4, _LR, _HR; with several datasets, "
                   "LR_DIR/<dataset folder name>/ is used where it exists.")
@click.option("--save-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Save the SR outputs as SAVE_DIR/<model>/<dataset>/<name>.png.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON on stdout.")
@click.option("--csv", "as_csv", is_flag=True,
              help="Print results as CSV on stdout: one row per model and dataset (image empty), "
                   "plus one per image with --per-image.")
@click.option("--per-image", is_flag=True, help="Also report every image's scores.")
@click.option("--convention", type=click.Choice(["matlab", "basicsr"]), default="matlab", show_default=True,
              help="Y channel as MATLAB's rgb2ycbcr (rounded to integers, as the published tables) "
                   "or BasicSR's (float Y, ~0.02 dB higher).")
@click.option("--rgb", is_flag=True, help="Score all RGB channels instead of the Y (luma) channel.")
@click.option("--crop-border", type=click.IntRange(0), default=None,
              help="Pixels left out on each side before scoring [default: the scale].")
@click.option("--degrade", metavar="SPEC", default=None, callback=_degrade_spec,
              help="Degrade the bicubic LR inputs, reproducibly: OP:LO-HI joined by '+', applied in order "
                   "(blur:SIGMA in LR pixels, noise:SIGMA on 0-255, jpeg:QUALITY; one intra frame of a video codec, "
                   "yuv420p: h264, hevc, vp9:CRF, mpeg4, mpeg2:QSCALE, needs the video extra), e.g. jpeg:25-55, "
                   "h264:18-30 or blur:0.4-1.6+noise:1-8+jpeg:40-85; or a training preset (realesrgan, robust, "
                   "robust_video) run on the HR image.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of --degrade's random draws (each image's generator also takes its dataset and name).")
@click.option("--niqe", is_flag=True,
              help="Also score NIQE (no reference; lower looks more natural): Mittal et al.'s published "
                   "pristine model, 96x96 blocks of the Y channel, the same border left out, as BasicSR "
                   "computes it. About 0.1 s per 0.25 MP image.")
@inference_options(tile="0")
@friendly_errors
def eval_command(datasets, scale, models, parent, lr_dir, save_dir, as_json, as_csv, per_image, convention, rgb,
                 crop_border, degrade, seed, niqe, engine, device, precision, tile, tile_overlap):
    """Score models on HR image folders, or datasets by name (Set5 Set14 BSD100: `sr data pull`): PSNR and SSIM.

    LR inputs are made from the HR images as the literature does (mod-crop, MATLAB
    bicubic downscale, uint8), unless --lr-dir gives them. Scores are on the Y
    channel with a border of SCALE pixels left out, unless told otherwise.

    Models run on the engine --engine picks (auto: the shipped models' int8 ONNX forms on a
    CPU; --engine torch for their fp32 weights, which the published tables use); the report
    says which.

    Blockiness (1.0: no visible grid) measures how much the LR image's 8x8 JPEG
    block grid stands out in the output: the mean step across the grid's lines over
    the mean step at the same phase of the LR pixel grid elsewhere (Y channel).
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if tile == "auto":
        raise click.BadParameter("give a number of LR pixels, or 0 for whole images", param_hint="--tile")
    for model in models:
        check_model_option(model, scale, engine=engine, device=device, precision=precision, parent=parent)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..evaluate import evaluate

    console = Console(stderr=True)
    # Off a terminal the bar draws nothing but leaves an empty line, which would split an error's one line.
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("evaluating", total=None)

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what)

        report = evaluate(list(datasets), scale=scale, models=list(models), lr_dir=lr_dir, save_dir=save_dir,
                          convention=convention, crop_border=crop_border, rgb=rgb, device=device,
                          engine=engine, precision=precision, tile=tile, overlap=tile_overlap, degrade=degrade,
                          seed=seed, niqe=niqe, progress=progress, skip_unscorable=True, parent=parent)

    if as_json:
        click.echo(json.dumps(report.to_dict(per_image=per_image), indent=2))
    elif as_csv:
        _write_csv(report, per_image=per_image)
    else:
        _print_table(report, per_image=per_image)
    if report.skipped:  # each named, left out of the means; the run still reports the rest
        from ..errors import display
        for file, why in report.skipped:
            click.echo(f"skipped {display(file)}: {display(why)}", err=True)
        click.echo(f"{len(report.skipped)} image(s) could not be scored and are left out of the means", err=True)
        sys.exit(1)


def _write_csv(report, *, per_image: bool) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + (("niqe",) if report.niqe else ()))
    settings = (report.scale, report.convention, "y" if report.y_channel else "rgb", report.crop_border)

    def values(score) -> tuple[str, ...]:
        return ((f"{score.psnr:.4f}", f"{score.ssim:.5f}", f"{score.blockiness:.4f}")
                + ((f"{score.niqe:.4f}",) if report.niqe else ()))

    for model in report.models:
        for dataset in report.datasets:
            score = report.scores[model][dataset]
            writer.writerow((model, dataset, "", *settings, *values(score)))
            if per_image:
                for image in score.images:
                    writer.writerow((model, dataset, image.name, *settings, *values(image)))


def _print_table(report, *, per_image: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    channel = "Y" if report.y_channel else "RGB"  # NIQE is always on Y
    convention = {"matlab": "MATLAB convention (Y rounded to integers)",
                  "basicsr": "BasicSR convention (float Y)"}[report.convention]
    caption = (f"PSNR (dB) / SSIM on {channel}, {report.crop_border} px border left out"
               + (f", {convention}" if report.y_channel else "")
               + f"; LR: {report.lr_source}; "
               + ", ".join(f"{_short_label(m)} on {report.runs_on[m]}" for m in report.models if m in report.runs_on)
               + f"; {report.seconds:.1f} s")
    table = Table(title=f"sr eval x{report.scale}", caption=caption)
    table.add_column("dataset")
    blocks = report.degrade is not None  # blockiness only says something about degraded inputs

    def cells(score) -> tuple[str, ...]:
        return ((f"{score.psnr:.2f}", f"{score.ssim:.4f}") + ((f"{score.blockiness:.3f}",) if blocks else ())
                + ((f"{score.niqe:.3f}",) if report.niqe else ()))

    for model in report.models:
        label = _short_label(model)
        table.add_column(f"{label}\nPSNR", justify="right")
        table.add_column(f"{label}\nSSIM", justify="right")
        if blocks:
            table.add_column(f"{label}\nblocks", justify="right")
        if report.niqe:
            table.add_column(f"{label}\nNIQE", justify="right")
    for dataset in report.datasets:
        scores = [report.scores[m][dataset] for m in report.models]
        table.add_row(f"{dataset} ({len(scores[0].images)})", *(v for s in scores for v in cells(s)), style="bold")
        if per_image:
            for i, image in enumerate(scores[0].images):
                table.add_row(f"  {image.name}", *(v for s in scores for v in cells(s.images[i])))
            table.add_section()
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _short_label(model: str) -> str:
    """A column title: names as they are, files by name (with their folder for run outputs)."""
    if not model.endswith((".safetensors", ".pth", ".pt", ".ckpt", ".onnx")):
        return model
    path = Path(model)
    return f"{path.parent.name}/{path.stem}" if path.stem in ("model", "model_best", "last") else path.stem
