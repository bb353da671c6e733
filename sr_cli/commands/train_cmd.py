"""`sr train`: train a generator on folders of HR images (PSNR-oriented, or GAN fine-tuning)."""
from __future__ import annotations

import difflib
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

# Kept here (not imported) so that `sr --help` does not import torch; tests check they match the core.
GAN_KINDS = ("vanilla", "lsgan", "ragan")
DISCRIMINATORS = ("vgg", "unet")
DEGRADATIONS = ("bicubic", "robust", "realesrgan", "simple")
# Options a config file may not set.
NOT_IN_CONFIG = ("config", "list_archs", "help")


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


def parse_arch_opts(items, param_hint: str = "--arch-opt") -> dict:
    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=param_hint)
        opts[key.strip().replace("-", "_")] = parse_value(value)
    if "scale" in opts:
        raise click.BadParameter("give the scale with --scale", param_hint=param_hint)
    return opts


def parse_weights(text: str, param_hint: str) -> dict[str, float]:
    """'conv5_4=1,relu4_4=0.5' -> {'conv5_4': 1.0, 'relu4_4': 0.5}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            out[key.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise click.BadParameter(f"{part!r} is not NAME=WEIGHT", param_hint=param_hint) from None
    return out


# ---------------------------------------------------------------------------
# --config FILE.toml


def read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise click.ClickException("--config needs Python 3.11 or later (tomllib), or the tomli package") from None
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--config") from None


def _item_text(key: str, value: Any) -> str:
    return f"{key}={str(value).lower() if isinstance(value, bool) else value}"


def config_defaults(command: click.Command, table: dict[str, Any], source: str) -> dict[str, Any]:
    """TOML keys (the long option names, '-' or '_') -> click parameter names and values.

    Tables become KEY=VALUE items (``arch-opt = {num_feat = 32}``, ``loss = {l1 = 1}``),
    lists feed repeatable options or become comma-separated (``milestones = [1000, 2000]``).
    Unknown keys raise, with the nearest option name.
    """
    options = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in NOT_IN_CONFIG:
            for opt in param.opts:
                if opt.startswith("--"):
                    options[opt[2:]] = param
    out: dict[str, Any] = {}
    for key, value in table.items():
        param = options.get(key.replace("_", "-"))
        if param is None:
            close = difflib.get_close_matches(key.replace("_", "-"), list(options), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise click.BadParameter(f"{source}: unknown key {key!r}{hint}", param_hint="--config")
        if isinstance(value, dict):
            items = [_item_text(k, v) for k, v in value.items()]
            value = items if param.multiple else ",".join(items)
        elif isinstance(value, list):
            value = [str(v) for v in value] if param.multiple else ",".join(str(v) for v in value)
        elif param.multiple:
            value = [value]
        out[param.name] = value
    return out


def _load_config(ctx: click.Context, param: click.Parameter, value: Path | None):
    if value is not None:
        ctx.default_map = {**(ctx.default_map or {}), **config_defaults(ctx.command, read_toml(value), str(value))}
    return value


# ---------------------------------------------------------------------------
# display


class LiveDisplay:
    """A rich live view for terminals: progress bar with it/s and ETA, the latest losses, validation."""

    def __init__(self, total: int):
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        from rich.text import Text
        self.console = Console()
        self.progress = Progress(TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(),
                                 TextColumn("{task.fields[speed]}"), TextColumn("ETA {task.fields[eta]}"),
                                 console=self.console)
        self.task = self.progress.add_task("train", total=total, speed="", eta="?")
        self.losses, self.val = Text(""), Text("")
        self.live = Live(Group(self.progress, self.losses, self.val), console=self.console, refresh_per_second=4)

    def __enter__(self) -> "LiveDisplay":
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def __call__(self, record: dict[str, Any]) -> None:
        from ..train import format_seconds
        if "val_psnr" in record:
            self.val.plain = (f"val PSNR {record['val_psnr']:.3f} dB at step {record['step']} "
                              f"(best {record['best_psnr']:.3f} at {record['best_step']})")
        elif "loss" in record:
            self.progress.update(self.task, completed=record["step"], speed=f"{record['it_s']:.2f} it/s",
                                 eta=format_seconds(record.get("eta_s")))
            terms = "  ".join(f"{k} {v:.4g}" for k, v in record.get("losses", {}).items())
            gan = f"  |  D {record['d_loss']:.4f} (real {record['d_real']:+.2f}, fake {record['d_fake']:+.2f})" \
                if "d_loss" in record else ""
            self.losses.plain = f"loss {record['loss']:.5f}  ({terms}){gan}  lr {record['lr']:.3g}"
        else:
            self.console.print(record.get("message", ""), highlight=False)


# ---------------------------------------------------------------------------
# the command


@click.command("train")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), is_eager=True,
              expose_value=False, callback=_load_config,
              help="TOML file of options: keys are the long option names (arch = \"litesr\", "
                   "arch-opt = {num_feat = 32}, loss = {l1 = 1}, data = [\"a/\", \"b/\"]); the command line "
                   "overrides it; unknown keys are an error. Relative paths are from the current folder.")
@click.option("--arch", help="Generator architecture (see --list-archs); default with --pretrained-g: the file's.")
@click.option("--arch-opt", "arch_opts", multiple=True, metavar="KEY=VALUE",
              help="Architecture hyperparameter, e.g. num_feat=32; repeat for several.")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Folder of HR training images (searched recursively); repeat for several.")
@click.option("-s", "--scale", type=click.IntRange(1), default=None,
              help="Upscaling factor [default: the --pretrained-g file's, else 4].")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: checkpoints, log.jsonl, model.safetensors.")
@click.option("--val", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of HR validation images (e.g. Set5), evaluated whole: Y-channel PSNR.")
@click.option("--patch", type=click.IntRange(1), default=48, show_default=True,
              help="LR patch size; HR patches are patch x scale.")
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True,
              help="Patches per step (over all processes under torchrun).")
@click.option("--iters", type=click.IntRange(1), default=100_000, show_default=True, help="Optimiser steps in all.")
@click.option("--lr", type=float, default=2e-4, show_default=True, help="Peak learning rate (Adam, betas 0.9/0.99).")
@click.option("--min-lr", type=float, default=1e-7, show_default=True, help="Final learning rate of the cosine schedule.")
@click.option("--schedule", type=click.Choice(["cosine", "step"]), default="cosine", show_default=True,
              help="Learning-rate decay: cosine to --min-lr, or step (x --gamma at each milestone).")
@click.option("--milestones", default="", help="Step schedule milestones, comma-separated (default: 1/2 and 3/4 of --iters).")
@click.option("--gamma", type=float, default=0.5, show_default=True, help="Step schedule factor.")
@click.option("--warmup", type=click.IntRange(0), default=0, show_default=True, help="Linear warmup steps.")
@click.option("--loss", "loss", multiple=True, default=["l1=1"], show_default=True,
              help="Loss term NAME=WEIGHT: l1, mse, charbonnier, perceptual (needs --vgg-weights), kl (vae), "
                   "and with --gan: gan (= --gan-weight), feature_matching; repeat or comma-separate.")
@click.option("--ema", type=float, default=0.999, show_default=True,
              help="EMA decay of the weights (the EMA is what gets exported); 0 disables.")
@click.option("--grad-clip", type=float, default=None, help="Clip the generator's gradient norm to this value.")
@click.option("--degradation", type=click.Choice(DEGRADATIONS), default="bicubic", show_default=True,
              help="How LR patches are made: MATLAB bicubic, or a random real-world pipeline (blur, resize, "
                   "noise, JPEG): robust (what the default models learn: a quarter clean, the rest blurred, "
                   "noised and JPEG-compressed at the LR size), realesrgan (two rounds, as Real-ESRGAN) or simple "
                   "(one milder round).")
@click.option("--scale-aug", default="", metavar="F,F,...",
              help="Scale augmentation: add a copy of every HR image shrunk by each factor (MATLAB bicubic), "
                   "e.g. 0.9,0.8,0.7,0.6, as VDSR trained on the 291-image set. Default: none.")
@click.option("--gan", type=click.Choice(GAN_KINDS), default=None,
              help="GAN training with this adversarial loss (ragan: ESRGAN's relativistic average).")
@click.option("--disc", type=click.Choice(DISCRIMINATORS), default="vgg", show_default=True,
              help="Discriminator: vgg (SRGAN/ESRGAN) or unet (Real-ESRGAN; HR patches multiple of 8).")
@click.option("--disc-opt", "disc_opts", multiple=True, metavar="KEY=VALUE",
              help="Discriminator hyperparameter, e.g. num_feat=32; repeat for several.")
@click.option("--gan-weight", type=click.FloatRange(0), default=None,
              help="Weight of the adversarial term (the same as --loss gan=X) [default: 0.1].")
@click.option("--d-steps", type=click.IntRange(1), default=1, show_default=True,
              help="Discriminator steps per generator step (on the same batch).")
@click.option("--d-lr", type=float, default=None, help="Discriminator peak learning rate [default: --lr].")
@click.option("--pretrained-g", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Start the generator from this weights file (e.g. a PSNR run's model.safetensors, or a "
                   "Real-ESRGAN/ESRGAN/EDSR .pth); --arch, --arch-opt and --scale default to the file's.")
@click.option("--vgg-weights", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="torchvision VGG19 state dict (.pth or .safetensors) for the perceptual loss; nothing is downloaded.")
@click.option("--perceptual-layers", default="conv5_4=1", show_default=True,
              help="VGG19 layers and weights of the perceptual loss (conv5_4: ESRGAN's, before the activation).")
@click.option("--amp", type=click.Choice(["bf16", "fp16"]), default=None,
              help="Mixed precision on CUDA (fp16 with gradient scaling); ignored, with a note, elsewhere.")
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
@click.option("--csv", "csv_log", is_flag=True, help="Also write log.csv (one row per log line and validation).")
@click.option("--display", type=click.Choice(["auto", "live", "plain"]), default="auto", show_default=True,
              help="live: a progress display (terminals); plain: one line per log record; auto: live on a terminal.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch intra-op threads (default: torch's).")
@click.option("--init", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Initialise the generator from a weights file (tensors whose shapes differ, e.g. "
                   "another scale's tail, are left as built).")
@click.option("--list-archs", is_flag=True, help="Print the generator architectures and exit.")
def train_command(arch, arch_opts, data, scale, out, val, patch, batch, iters, lr, min_lr, schedule, milestones,
                  gamma, warmup, loss, ema, grad_clip, degradation, scale_aug, gan, disc, disc_opts, gan_weight, d_steps, d_lr,
                  pretrained_g, vgg_weights, perceptual_layers, amp, device, seed, resume, workers, epoch_length,
                  val_every, save_every, log_every, csv_log, display, threads, init, list_archs):
    """Train a super-resolution network on HR images.

    \b
    sr train --arch litesr --arch-opt num_feat=32 --data train/ --val Set5/ --scale 4 --out runs/litesr_x4
    sr train --out runs/litesr_x4 ... --resume      continue after an interruption
    sr train --config run.toml                      options from a TOML file
    GAN fine-tuning of a PSNR model (ESRGAN's second stage):
    sr train --pretrained-g runs/litesr_x4/model.safetensors --gan ragan --disc vgg \\
        --loss l1=0.01 --loss perceptual=1 --gan-weight 0.005 --vgg-weights vgg19.pth ...
    Several processes / GPUs / nodes (the batch is split between them):
    torchrun --nproc_per_node 4 -m sr_cli train ...
    """
    if list_archs:
        from ..archs import ARCHS
        for name in ARCHS:
            click.echo(name)
        return
    missing = [flag for flag, value in (("--arch", arch or pretrained_g), ("--data", data), ("--out", out))
               if not value]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}")
    try:
        milestone_list = [int(m) for m in milestones.split(",") if m.strip()]
    except ValueError:
        raise click.BadParameter("use comma-separated step numbers", param_hint="--milestones") from None
    from ..data import shrink_factors
    try:
        parsed = [float(f) for f in scale_aug.split(",") if f.strip()]
    except ValueError:
        raise click.BadParameter("use comma-separated factors below 1, e.g. 0.9,0.8", param_hint="--scale-aug") from None
    try:
        factors = list(shrink_factors(parsed))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--scale-aug") from None
    params = parse_arch_opts(arch_opts)
    disc_params = parse_arch_opts(disc_opts, param_hint="--disc-opt")
    layers = parse_weights(perceptual_layers, "--perceptual-layers")
    rank = int(os.environ.get("RANK", "0"))
    live = display == "live" or (display == "auto" and sys.stdout.isatty())
    try:
        from ..losses import parse_loss_spec
        from ..train import TrainConfig, print_record, read_generator, train
        if pretrained_g:
            file_arch, file_params, _ = read_generator(pretrained_g)
            arch = arch or file_arch
            if arch == file_arch:
                params = {**{k: v for k, v in file_params.items() if k != "scale"}, **params}
            scale = scale or int(file_params["scale"])
        loss_weights = parse_loss_spec(list(loss))
        config = TrainConfig(
            arch=arch, arch_params=params, data=[str(d) for d in data], scale=scale or 4, out=str(out),
            val=str(val) if val else None, patch=patch, batch=batch, iters=iters, lr=lr, min_lr=min_lr,
            schedule=schedule, milestones=milestone_list, gamma=gamma, warmup=warmup, loss=loss_weights, ema=ema,
            grad_clip=grad_clip, device=device, seed=seed, resume=resume, workers=workers, epoch_length=epoch_length,
            val_every=val_every, save_every=save_every, log_every=log_every, threads=threads,
            init=str(init) if init else None, pretrained_g=str(pretrained_g) if pretrained_g else None,
            degradation=degradation, scale_aug=factors, gan=gan, disc=disc, disc_params=disc_params, gan_weight=gan_weight,
            d_steps=d_steps, d_lr=d_lr, vgg_weights=str(vgg_weights) if vgg_weights else None,
            perceptual_layers=layers, amp=amp, csv=csv_log, command=shlex.join(["sr", *sys.argv[1:]]),
        )
        if live and rank == 0:
            with LiveDisplay(config.iters) as show:
                run_dir = train(config, on_log=show)
        else:
            run_dir = train(config, on_log=print_record)
    except click.ClickException:
        raise
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; continue with --resume (from the last checkpoint)") from None
    except (ValueError, OSError, RuntimeError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(message) from None
    if rank == 0:
        click.echo(f"done: {run_dir / 'model.safetensors'}")
