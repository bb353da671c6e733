"""`sr convert` (community model files -> our safetensors) and `sr export` (ONNX / TorchScript)."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import friendly_errors
from .options import blend_options

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
@blend_options
@click.option("--int8", is_flag=True,
              help="Write a calibrated int8 ONNX file (static QDQ quantisation, first and last convolutions "
                   "kept fp32), checked against the fp32 model before it is kept.")
@click.option("--calibration", type=click.Path(exists=True, path_type=Path), multiple=True,
              help="--int8: a folder of HR images whose bicubic LR patches set the activation ranges "
                   "(e.g. the training set; repeat for several; 120 images are drawn from them).")
@click.option("--calibration-degrade", metavar="SPEC", default=None,
              help="--int8: also calibrate on degraded LR patches (a --degrade spec of sr eval, e.g. "
                   "jpeg:25-55), for models meant for compressed photos.")
@click.option("--check-set", type=click.Path(exists=True, path_type=Path), multiple=True,
              help="--int8: HR images to compare int8 with fp32 on, a folder (repeat for several: each must "
                   "be within the limits). Default: the first 10 calibration images; held-out sets such as "
                   "Set5 and Set14 give honest figures.")
@click.option("--check-degrade", metavar="SPEC", default=None,
              help="--int8: also compare on each check set's LR degraded by this (a --degrade spec of sr eval, "
                   "seed 0, e.g. jpeg:25-55), where blockiness must stay within --max-blockiness-change too.")
@click.option("--max-loss", type=click.FloatRange(0), default=0.05, show_default=True,
              help="--int8: refuse to write the file if it loses more PSNR (dB, Y) than this against fp32.")
@click.option("--max-ssim-loss", type=click.FloatRange(0), default=0.002, show_default=True,
              help="--int8: the same for SSIM.")
@click.option("--max-blockiness-change", type=click.FloatRange(0), default=0.01, show_default=True,
              help="--int8: refuse it if its blockiness (sr eval's) differs from fp32's by more than this.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@friendly_errors
def export_command(output, model, scale, fmt, opset, check, strength, parent, int8, calibration,
                   calibration_degrade, check_set, check_degrade, max_loss, max_ssim_loss, max_blockiness_change,
                   overwrite):
    """Export a model to OUTPUT as ONNX (dynamic height and width) or TorchScript.

    The exported graph maps NCHW float [0, 1] of any size to scale x the size, padding to the
    model's size multiple and clamping inside, as `sr upscale` does (without tiling). With
    --int8, the ONNX file is quantised to int8 (about 1.8x faster on a CPU through
    `sr upscale --model OUTPUT`) and kept only within --max-loss of the fp32 model."""
    if fmt is None:
        fmt = EXPORT_SUFFIXES.get(output.suffix.lower())
        if fmt is None:
            raise click.UsageError("give --format onnx|torchscript (OUTPUT's suffix does not say)")
    if int8 and (fmt != "onnx" or output.suffix.lower() != ".onnx"):
        raise click.UsageError("--int8 writes ONNX: give OUTPUT a .onnx name")
    if int8 and not calibration:
        raise click.UsageError("--int8 needs --calibration DIR: a folder of images (e.g. `sr data pull General100`)")
    if not int8 and (calibration or check_set or calibration_degrade or check_degrade):
        raise click.UsageError("--calibration, --calibration-degrade, --check-set and --check-degrade go with --int8")
    for option, spec in (("--calibration-degrade", calibration_degrade), ("--check-degrade", check_degrade)):
        if spec:
            from ..degrade import parse_degrade_spec
            try:
                parse_degrade_spec(spec)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=option) from None
    from ..blend import with_strength
    from ..resolve import native_scales, resolve_model
    model = with_strength(model, strength)
    scales = native_scales(model)
    if scale is None:
        if len(scales) != 1:
            raise click.UsageError(f"{model} has scales {', '.join(f'x{s}' for s in scales)}: pick one with --scale")
        scale = scales[0]
    if int8:
        from ..quantize import export_int8
        result = export_int8(resolve_model(model, scale, parent=parent), output, calibration=calibration,
                             check_set=check_set or None,
                             degrade=calibration_degrade, check_degrade=check_degrade, max_psnr_loss=max_loss,
                             max_ssim_loss=max_ssim_loss, max_blockiness_change=max_blockiness_change,
                             overwrite=overwrite, progress=lambda text: click.echo(text, err=True))
        click.echo(f"{model} x{scale} -> {output} (int8 ONNX, {result['bytes'] / 1e6:.2f} MB); against fp32: "
                   + "; ".join(f"{c.images} images{f' {c.degrade}' if c.degrade else ''} PSNR {c.int8_psnr:.3f} "
                               f"vs {c.fp32_psnr:.3f} dB ({-c.psnr_loss:+.3f}), SSIM {c.int8_ssim:.4f} vs "
                               f"{c.fp32_ssim:.4f} ({-c.ssim_loss:+.4f}), blockiness {c.int8_blockiness:.3f} vs "
                               f"{c.fp32_blockiness:.3f}" for c in result["checks"]))
        return
    from ..export import export_model
    result = export_model(resolve_model(model, scale, parent=parent), output, fmt=fmt, opset=opset, check=check,
                          overwrite=overwrite)
    if result["max_abs_diff"] is not None:
        checked = f", max |diff| vs PyTorch {result['max_abs_diff']:.1e}"
    else:
        checked = ", not checked (pip install onnxruntime)" if check else ""
    click.echo(f"{model} x{scale} -> {output} ({fmt}{checked})")
