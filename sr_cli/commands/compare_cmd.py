"""`sr compare`: one labelled picture of several models' outputs side by side."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import friendly_errors


@click.command("compare")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-m", "--model", "models", multiple=True, default=["bicubic", "default"], show_default=True,
              help="Model name, baseline or weights file; repeat for several panels.")
@click.option("-s", "--scale", type=click.IntRange(2), default=4, show_default=True, help="Upscaling factor.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The picture to write (.png, .jpg, .webp, .tiff, .bmp).")
@click.option("--reference", "references", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Ground truth (HR) of an INPUT, one per INPUT in order: adds its panel and every panel's "
                   "PSNR/SSIM on the crop (Y channel, border = scale, as sr eval).")
@click.option("--crop", metavar="X,Y,W,H", help="Region to show, in input pixels [default: the most detailed "
                                                 "region, about --panel output pixels a side].")
@click.option("--panel", type=click.IntRange(16), default=384, show_default=True,
              help="Output pixels a side of the automatic crop.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@friendly_errors
def compare_command(inputs, models, scale, output, references, crop, panel, device, overwrite):
    """Show models side by side on INPUT: one labelled picture, one row per INPUT.

    \b
    sr compare photo.jpg -m default -m photo -o grid.png
    sr compare lr.png --reference hr.png -m bicubic -m classic -s 4 -o grid.png
    sr compare photo.jpg -m default -m photo --crop 120,40,64,48 -o detail.png

    Each row is the input enlarged with nearest neighbours (its pixels as they are), then each
    model's output, then with --reference the ground truth. Crops are zoomed (nearest) to at
    least 256 pixels a side.
    """
    from ..compare import parse_crop
    from ..imageio import format_from_suffix
    box = None
    if crop is not None:
        try:
            box = parse_crop(crop)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--crop") from None
    if references and len(references) != len(inputs):
        raise click.BadParameter(f"{len(references)} given for {len(inputs)} inputs: one per INPUT, in order",
                                 param_hint="--reference")
    try:
        format_from_suffix(output)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--output") from None
    if output.exists() and not overwrite:
        raise click.ClickException(f"{output} exists; pass --overwrite to replace it")
    if output.exists():
        from ..provenance import read
        if read(output) is None:  # as sr upscale: only a file sr made is ever replaced
            raise click.ClickException(f"{output} exists and carries no sr provenance tag: it is not one of "
                                       "sr's pictures, so it is not replaced (even with --overwrite)")
    if any(output.resolve() == p.resolve() for p in (*inputs, *references)):
        raise click.ClickException(f"{output} is one of the inputs; write the picture elsewhere")

    from ..compare import compare
    from ..imageio import ImageData, write_image
    result = compare(list(inputs), list(models), scale=scale, references=list(references), crop=box,
                     device=device, panel=panel)
    from ..provenance import make
    tag = make(model="compare " + " ".join(models), scale=scale, source=inputs[0])
    write_image(output, ImageData(pixels=result.image, provenance=tag), replace=overwrite)  # refused at the rename, too
    for path, row in zip(inputs, result.rows):
        scored = [p for p in row.panels if p.psnr is not None]
        if scored:
            click.echo(f"{path.name} crop {','.join(map(str, row.crop))}: "
                       + ", ".join(f"{p.label} {p.psnr:.2f} dB / {p.ssim:.4f}" for p in scored))
    height, width = result.image.shape[:2]
    click.echo(f"{output} ({width}x{height})")
