"""Options shared by the commands that run models: one declaration, one type, one help text each.

Every value is checked when it is parsed (exit status 2 with the valid choices), before any
heavy library is imported.
"""
from __future__ import annotations

import click

from ..device import DEVICE_CHOICES, PRECISIONS, check_device_spec
from ..engines import ENGINE_HELP, ENGINES


def parse_tile(value: str) -> object:
    """'auto' -> "auto"; N -> N pixels; 0 -> None (no tiling)."""
    if value in ("auto", None):
        return "auto"
    try:
        tile = int(value)
    except ValueError:
        raise click.BadParameter("use a number of pixels, 0 for no tiling, or 'auto'") from None
    if tile < 0:
        raise click.BadParameter("tile must be >= 0")
    return tile or None


def _device(ctx, param, value):
    try:
        return check_device_spec(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _tiles(ctx, param, value):
    return tuple(parse_tile(v) for v in value) if isinstance(value, tuple) else parse_tile(value)


def inference_options(*, several: bool = False, tile: str = "auto"):
    """--engine, --device, --precision, --tile, --tile-overlap. With ``several`` (sr bench),
    --engine and --tile may be repeated to compare; ``tile`` is the default tile."""
    def decorate(command):
        options = [
            click.option("--engine", "engines" if several else "engine", type=click.Choice(ENGINES),
                         multiple=several, default=["auto"] if several else "auto", show_default=True,
                         help=ENGINE_HELP + (" Repeat to compare." if several else "")),
            click.option("--device", default="auto", show_default=True, callback=_device,
                         help=f"{DEVICE_CHOICES}."),
            click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                         help="auto: int8 on the ONNX engine, fp32 on torch. fp32 forces float (torch for the "
                              "shipped models); fp16/bf16 on GPUs (torch)."),
            click.option("--tile", "tiles" if several else "tile", multiple=several,
                         default=[tile] if several else tile, show_default=True, callback=_tiles,
                         help="Tile size in input pixels, 0 for none, or 'auto' (from free memory). Bounds "
                              "memory use." + (" Repeat for several." if several else "")),
            click.option("--tile-overlap", type=click.IntRange(0), default=16, show_default=True,
                         help="Context pixels each tile reads beyond its edges; tiles are cross-faded over "
                              "half of it."),
        ]
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def blend_options(command):
    """--strength and --parent: the perception-distortion dial of a GAN model (blend.py)."""
    command = click.option("--parent", metavar="MODEL", default=None,
                           help="The other end of --strength (default: the parent the model records, e.g. "
                                "photo's is default). Any model of the same architecture and shapes.")(command)
    return click.option("--strength", type=click.FloatRange(0, 1), default=None,
                        help="Blend the model's weights with its PSNR-trained parent's: 0 gives the parent "
                             "(faithful, smooth), 1 the model (GAN texture). Runs on torch. Same as "
                             "--model NAME@S.")(command)


def parse_sha256(ctx, param, value):
    """A sha256 as 64 hex digits (lower-cased), checked when parsed; None passes."""
    if value is None:
        return None
    value = value.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise click.BadParameter(f"must be 64 hex digits (a sha256), got {value[:80]!r}")
    return value


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(ctx, param, value):
    """A size in bytes: a number with an optional K, M, G or T (powers of 1024), e.g. 500M, 4G."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1:] if text[-1:] in _SIZE_UNITS and text[-1:] else ""
    try:
        number = float(text[: len(text) - len(unit)])
    except ValueError:
        raise click.BadParameter(f"a size such as 500M or 4G, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise click.BadParameter(f"must be a size above 0, got {value!r}")
    return int(number * _SIZE_UNITS[unit])


def scale_factor(ctx, param, value):
    """--scale: a finite factor above 1 and at most registry.MAX_SCALE, checked when parsed."""
    import math
    from ..registry import MAX_SCALE
    if value is None:
        return value
    if not math.isfinite(value) or value <= 1:
        raise click.BadParameter(f"must be greater than 1, got {value:g}")
    if value > MAX_SCALE:
        raise click.BadParameter(f"{value:g} is above the largest supported scale, {MAX_SCALE}")
    return value
