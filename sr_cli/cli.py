"""The `sr` command line: the group, its help and version, and every command attached.

Each command lives in sr_cli/commands/ and imports torch only when it runs, so `sr --help` stays fast.
"""
from __future__ import annotations

import click

from . import __version__
from .errors import guard_standard_streams
from .commands.bench_cmd import bench_command
from .commands.compare_cmd import compare_command
from .commands.convert_cmd import convert_command, export_command
from .commands.data_cmd import data_command
from .commands.eval_cmd import eval_command
from .commands.info_cmd import info_command
from .commands.models_cmd import models_command
from .commands.train_cmd import train_command
from .commands.upscale_cmd import upscale_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sr")
def cli():
    """sr: image super-resolution.

    \b
    sr upscale photo.jpg --scale 4        upscale one image (writes photo_x4.jpg)
    sr upscale shots/ -o big/ --recursive upscale a folder tree
    sr upscale clip.mp4 --scale 2         a video, sound kept (pip install "sr-cli[video]")
    sr upscale photo.jpg -m photo --strength 0.5   between default (0) and photo (1)
    sr info photo_x4.jpg                  which model, scale and source made an output
    sr models                             list the models (shipped, pulled, catalogue)
    sr models pull RealESRGAN_x4plus      download a community model, verified
    sr data pull Set5 Set14               download the standard test sets, verified
    sr eval Set5 --scale 4 --model default --model bicubic
    sr compare photo.jpg -m default -m photo -o grid.png
    """
    guard_standard_streams()  # `sr ... >&-`: a closed stdout is one clear error where output is lost


# One line each in `sr --help`: Click would cut each command's first sentence at the terminal's width.
SUMMARIES = {
    upscale_command: "Upscale images, folders, animations, videos or stdin.",
    models_command: "List the models; pull community ones.",
    eval_command: "Score models on benchmark sets: PSNR, SSIM, NIQE.",
    train_command: "Train a network (PSNR or GAN), on one or many GPUs.",
    bench_command: "Measure upscaling speed and memory.",
    convert_command: "Rewrite a community model file as our safetensors.",
    export_command: "Export a model to ONNX (fp32 or int8) or TorchScript.",
    data_command: "List and download the standard image sets.",
    compare_command: "Show models side by side in one picture.",
    info_command: "Show which model and source made an output.",
}
for command, summary in SUMMARIES.items():
    command.short_help = summary
    cli.add_command(command)


def main() -> None:
    cli(prog_name="sr")
