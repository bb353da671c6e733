"""`sr train`: train a generator on folders of HR images (PSNR-oriented, or GAN fine-tuning)."""
from __future__ import annotations

import dataclasses
import difflib
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import click

from ..errors import friendly_errors
from ..training.config import DEFAULT_SCALE, Option, TrainConfig, cli_fields
from .data_cmd import DatasetPath

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
    from ..tomlfile import read_toml as read
    try:
        return read(path)
    except (OSError, ValueError) as exc:
        # Read while Click parses, outside the command's error reporting: unreadable, not UTF-8 and
        # not TOML (both ValueErrors) must still be one line.
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
        from ..training.logging import format_seconds
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
# the command: its options are TrainConfig's fields (sr_cli.training.config), plus these

_PATHS = {"existing": dict(exists=True), "existing_file": dict(exists=True, dir_okay=False),
          "existing_folder": dict(exists=True, file_okay=False), "folder": dict(file_okay=False)}


def _flags(f: dataclasses.Field) -> tuple[str, ...]:
    return f.metadata["cli"].flags or ("--" + f.name.replace("_", "-"),)


def _default_text(spec: Option, value: Any) -> Any:
    """A field's default as the command line writes it (``{"l1": 1.0}`` -> ``["l1=1"]``)."""
    if spec.form in ("kv", "weights", "losses"):
        items = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()]
        return items if spec.multiple else ",".join(items)
    if spec.form in ("ints", "factors"):
        return ",".join(f"{v:g}" for v in value)
    return value


class FiniteFloat(click.ParamType):
    """A finite float, optionally >= ``minimum`` or > ``above``; anything else is exit 2 when parsed."""

    name = "float"

    def __init__(self, *, minimum: Optional[float] = None, above: Optional[float] = None):
        self.minimum, self.above = minimum, above

    def convert(self, value, param, ctx):
        import math
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"must be a finite number, got {value}", param, ctx)
        if self.above is not None and not number > self.above:
            self.fail(f"must be above {self.above:g}, got {value}", param, ctx)
        if self.minimum is not None and number < self.minimum:
            self.fail(f"must be >= {self.minimum:g}, got {value}", param, ctx)
        return number


def field_option(f: dataclasses.Field) -> Callable:
    """The click option of a TrainConfig field, from its ``Option`` metadata."""
    spec: Option = f.metadata["cli"]
    if f.default is not dataclasses.MISSING:
        default = _default_text(spec, f.default)
    elif f.default_factory is not dataclasses.MISSING:
        default = _default_text(spec, f.default_factory())
    else:
        default = None  # required: the command asks for it, or takes it from --pretrained-g
    kind = spec.type or type(default)
    kwargs: dict[str, Any] = {"help": spec.help, "multiple": spec.multiple, "metavar": spec.metavar}
    if kind is bool:
        kwargs["is_flag"] = True
    else:
        kwargs["default"] = default
        kwargs["show_default"] = default not in (None, "", (), [])
        if spec.choices:
            kwargs["type"] = click.Choice(spec.choices)
        elif kind == "path" and spec.path in ("dataset", "dataset_folder"):
            kwargs["type"] = DatasetPath(file_okay=spec.path == "dataset")
        elif kind == "path":
            kwargs["type"] = click.Path(path_type=Path, **_PATHS[spec.path])
        elif kind is float:  # finite: 'nan' and 'inf' parse as floats but are no learning rate or weight
            kwargs["type"] = FiniteFloat(minimum=spec.minimum, above=spec.above)
        elif spec.minimum is not None:
            kwargs["type"] = click.IntRange(spec.minimum)
        elif kind is int:
            kwargs["type"] = kind
    return click.option(*_flags(f), spec.name or f.name, **kwargs)


def train_options(command: Callable) -> Callable:
    """Decorate ``command`` with --config, every TrainConfig option, --display and --list-archs."""
    options = [click.option(
        "--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), is_eager=True,
        expose_value=False, callback=_load_config,
        help="TOML file of options: keys are the long option names (arch = \"litesr\", "
             "arch-opt = {num_feat = 32}, loss = {l1 = 1}, data = [\"a/\", \"b/\"]); the command line "
             "overrides it; unknown keys are an error. Relative paths are from the current folder.")]
    for f in cli_fields():
        options.append(field_option(f))
        if f.name == "csv":
            options.append(click.option(
                "--display", type=click.Choice(["auto", "live", "plain"]), default="auto", show_default=True,
                help="live: a progress display (terminals); plain: one line per log record; auto: live on a "
                     "terminal."))
    options.append(click.option("--list-archs", is_flag=True, help="Print the generator architectures and exit."))
    for option in reversed(options):
        command = option(command)
    return command


def _comma_numbers(text: str, kind: type, param_hint: str, message: str) -> list:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(message, param_hint=param_hint) from None


def config_values(options: dict[str, Any]) -> dict[str, Any]:
    """The command's option values -> TrainConfig keyword arguments (text forms parsed, bad
    ones raised as click errors; arch, scale and out as given, perhaps None)."""
    values: dict[str, Any] = {}
    for f in cli_fields():
        spec: Option = f.metadata["cli"]
        value = options[spec.name or f.name]
        hint = _flags(f)[-1]
        if spec.form == "kv":
            value = parse_arch_opts(value, param_hint=hint)
        elif spec.form == "weights":
            value = parse_weights(value, hint)
        elif spec.form == "ints":
            value = _comma_numbers(value, int, hint, "use comma-separated step numbers")
        elif spec.form == "factors":
            from ..data import shrink_factors
            parsed = _comma_numbers(value, float, hint, "use comma-separated factors below 1, e.g. 0.9,0.8")
            try:
                value = list(shrink_factors(parsed))
            except ValueError as error:
                raise click.BadParameter(str(error), param_hint=hint) from None
        elif spec.form == "losses":
            from ..training.losses import parse_loss_spec
            try:
                value = parse_loss_spec(list(value))
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
        elif spec.multiple:
            value = list(value)
        values[f.name] = value
    return values


@click.command("train")
@train_options
@friendly_errors(on_interrupt="continue with --resume (from the last checkpoint)")
def train_command(display: str, list_archs: bool, **options: Any) -> None:
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
    missing = [flag for flag, value in (("--arch", options["arch"] or options["pretrained_g"]),
                                        ("--data", options["data"]), ("--out", options["out"])) if not value]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}")
    values = config_values(options)
    rank = int(os.environ.get("RANK", "0"))
    live = display == "live" or (display == "auto" and sys.stdout.isatty())
    from ..training.checkpoint import read_generator
    from ..training.logging import print_record
    from ..training.trainer import train
    if values["pretrained_g"]:
        file_arch, file_params, _ = read_generator(values["pretrained_g"])
        values["arch"] = values["arch"] or file_arch
        if values["arch"] == file_arch:
            values["arch_params"] = {**{k: v for k, v in file_params.items() if k != "scale"},
                                     **values["arch_params"]}
        values["scale"] = values["scale"] or int(file_params["scale"])
    values["scale"] = values["scale"] or DEFAULT_SCALE
    config = TrainConfig(**values, command=shlex.join(["sr", *sys.argv[1:]]))
    if live and rank == 0:
        with LiveDisplay(config.iters) as show:
            run_dir = train(config, on_log=show)
    else:
        run_dir = train(config, on_log=print_record)
    if rank == 0:
        click.echo(f"done: {run_dir / 'model.safetensors'}")
