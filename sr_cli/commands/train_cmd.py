"""`sr train`: train a generator on folders of HR images (PSNR-oriented)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click


def parse_value(text: str):
    """'3' -> 3, '0.5' -> 0.5, 'true'/'false' -> bool, anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_arch_opts(items) -> dict:
    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--arch-opt")
        opts[key.strip().replace("-", "_")] = parse_value(value)
    if "scale" in opts:
        raise click.BadParameter("give the scale with --scale", param_hint="--arch-opt")
    return opts


@click.command("train")
@click.option("--arch", help="Generator architecture (see --list-archs).")
@click.option("--arch-opt", "arch_opts", multiple=True, metavar="KEY=VALUE",
              help="Architecture hyperparameter, e.g. num_feat=32; repeat for several.")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Folder of HR training images (searched recursively); repeat for several.")
@click.option("-s", "--scale", type=click.IntRange(1), default=4, show_default=True, help="Upscaling factor.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: checkpoints, log.jsonl, model.safetensors.")
@click.option("--val", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of HR validation images (e.g. Set5), evaluated whole: Y-channel PSNR.")
@click.option("--patch", type=click.IntRange(1), default=48, show_default=True,
              help="LR patch size; HR patches are patch x scale.")
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True, help="Patches per step.")
@click.option("--iters", type=click.IntRange(1), default=100_000, show_default=True, help="Optimiser steps in all.")
@click.option("--lr", type=float, default=2e-4, show_default=True, help="Peak learning rate (Adam, betas 0.9/0.99).")
@click.option("--min-lr", type=float, default=1e-7, show_default=True, help="Final learning rate of the cosine schedule.")
@click.option("--schedule", type=click.Choice(["cosine", "step"]), default="cosine", show_default=True,
              help="Learning-rate decay: cosine to --min-lr, or step (x --gamma at each milestone).")
@click.option("--milestones", default="", help="Step schedule milestones, comma-separated (default: 1/2 and 3/4 of --iters).")
@click.option("--gamma", type=float, default=0.5, show_default=True, help="Step schedule factor.")
@click.option("--warmup", type=click.IntRange(0), default=0, show_default=True, help="Linear warmup steps.")
@click.option("--loss", "loss", multiple=True, default=["l1=1"], show_default=True,
              help="Loss term NAME=WEIGHT (l1, mse, charbonnier); repeat or comma-separate.")
@click.option("--ema", type=float, default=0.999, show_default=True,
              help="EMA decay of the weights (the EMA is what gets exported); 0 disables.")
@click.option("--grad-clip", type=float, default=None, help="Clip the gradient norm to this value.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the weights and the data.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint (exactly).")
@click.option("--workers", type=click.IntRange(0), default=4, show_default=True,
              help="Data loader processes (0: load in the training process).")
@click.option("--epoch-length", type=click.IntRange(1), default=None,
              help="Samples per virtual epoch (default: the number of images); only affects the epoch count logged.")
@click.option("--val-every", type=click.IntRange(1), default=5000, show_default=True, help="Validate every N steps.")
@click.option("--save-every", type=click.IntRange(1), default=5000, show_default=True, help="Checkpoint every N steps.")
@click.option("--log-every", type=click.IntRange(1), default=100, show_default=True, help="Log every N steps.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch intra-op threads (default: torch's).")
@click.option("--init", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Initialise the generator from a weights file (tensors whose shapes differ, e.g. "
                   "another scale's tail, are left as built).")
@click.option("--list-archs", is_flag=True, help="Print the generator architectures and exit.")
def train_command(arch, arch_opts, data, scale, out, val, patch, batch, iters, lr, min_lr, schedule, milestones,
                  gamma, warmup, loss, ema, grad_clip, device, seed, resume, workers, epoch_length, val_every,
                  save_every, log_every, threads, init, list_archs):
    """Train a super-resolution network on HR images (LR made by MATLAB bicubic).

    \b
    sr train --arch litesr --arch-opt num_feat=32 --data train/ --val Set5/ --scale 4 --out runs/litesr_x4
    sr train --out runs/litesr_x4 ... --resume      continue after an interruption
    """
    if list_archs:
        from ..archs import ARCHS
        for name in ARCHS:
            click.echo(name)
        return
    missing = [flag for flag, value in (("--arch", arch), ("--data", data), ("--out", out)) if not value]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}")
    try:
        milestone_list = [int(m) for m in milestones.split(",") if m.strip()]
    except ValueError:
        raise click.BadParameter("use comma-separated step numbers", param_hint="--milestones") from None
    params = parse_arch_opts(arch_opts)
    try:
        from ..losses import parse_loss_spec
        from ..train import TrainConfig, train
        loss_weights = parse_loss_spec(list(loss))
        config = TrainConfig(
            arch=arch, arch_params=params, data=[str(d) for d in data], scale=scale, out=str(out),
            val=str(val) if val else None, patch=patch, batch=batch, iters=iters, lr=lr, min_lr=min_lr,
            schedule=schedule, milestones=milestone_list, gamma=gamma, warmup=warmup, loss=loss_weights, ema=ema,
            grad_clip=grad_clip, device=device, seed=seed, resume=resume, workers=workers, epoch_length=epoch_length,
            val_every=val_every, save_every=save_every, log_every=log_every, threads=threads,
            init=str(init) if init else None, command=shlex.join(["sr", *sys.argv[1:]]),
        )
        run_dir = train(config)
    except click.ClickException:
        raise
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; continue with --resume (from the last checkpoint)") from None
    except (ValueError, OSError, RuntimeError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(message) from None
    click.echo(f"done: {run_dir / 'model.safetensors'}")

