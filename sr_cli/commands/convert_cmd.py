"""`sr convert` (community model files -> our safetensors) and `sr export` (ONNX / TorchScript)."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import friendly_errors

EXPORT_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}




@click.command("convert")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@friendly_errors
def convert_command(source, output, overwrite):
    """Rewrite a model file (.pth/.pt/.ckpt/.safetensors: Real-ESRGAN, ESRGAN, EDSR, ours) as our
    .safetensors, with its architecture, scale, hyperparameters and where it came from, so later
    loads need no detection. Nothing in SOURCE is executed: pickles holding code are refused."""
    from ..foreign import convert
    result = convert(source, output, overwrite=overwrite)
    click.echo(f"{result['source']} ({result['source_format']}) -> {result['output']}: {result['arch']} "
               f"x{result['scale']}, {result['parameters']:,} parameters")


@click.command("export")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-m", "--model", default="default", show_default=True,
              help="A model name (see `sr models`) or a weights file (.safetensors, .pth, .pt, .ckpt).")
@click.option("-s", "--scale", type=click.IntRange(1), default=None,
              help="Native scale to export. Default: the model's only scale (required when it has several).")
@click.option("-f", "--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default=None,
              help="Default: from OUTPUT's suffix (.onnx; .pt/.ts/.torchscript for TorchScript).")
@click.option("--opset", type=click.IntRange(9), default=17, show_default=True, help="ONNX opset version.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Run the exported file on a random image and compare with PyTorch "
                   "(ONNX: when onnxruntime is installed).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@friendly_errors
def export_command(output, model, scale, fmt, opset, check, overwrite):
    """Export a model to OUTPUT as ONNX (dynamic height and width) or TorchScript.

    The exported graph maps NCHW float [0, 1] of any size to scale x the size, padding to the
    model's size multiple and clamping inside, as `sr upscale` does (without tiling)."""
    if fmt is None:
        fmt = EXPORT_SUFFIXES.get(output.suffix.lower())
        if fmt is None:
            raise click.UsageError("give --format onnx|torchscript (OUTPUT's suffix does not say)")
    from ..registry import native_scales, resolve_model
    scales = native_scales(model)
    if scale is None:
        if len(scales) != 1:
            raise click.UsageError(f"{model} has scales {', '.join(f'x{s}' for s in scales)}: pick one with --scale")
        scale = scales[0]
    from ..export import export_model
    result = export_model(resolve_model(model, scale), output, fmt=fmt, opset=opset, check=check,
                          overwrite=overwrite)
    if result["max_abs_diff"] is not None:
        checked = f", max |diff| vs PyTorch {result['max_abs_diff']:.1e}"
    else:
        checked = ", not checked (pip install onnxruntime)" if check else ""
    click.echo(f"{model} x{scale} -> {output} ({fmt}{checked})")
