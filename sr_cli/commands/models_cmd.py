"""`sr models`: list what --model accepts from the files' headers alone; `sr models pull` downloads.

Listing imports no torch and builds no network: architecture, scale, parameter count and
scores all sit in the safetensors headers, and the catalogue is a TOML file.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import display, friendly_errors
from .options import parse_sha256, parse_size


def model_rows(show_all: bool = False) -> list[dict]:
    """One dict per (name, scale) that --model accepts, plus catalogue models not yet pulled."""
    from ..header import count_elements, read_header
    from ..registry import catalogue, list_models, onnx_form
    listed = catalogue()
    rows = []
    for entry in list_models(include_missing=True):
        if entry.path is None:
            continue
        if entry.source == "shipped" and not entry.available and not show_all:
            continue
        row = {"name": entry.name, "scale": entry.scale or None, "arch": None, "parameters": None, "psnr": None,
               "file": str(entry.path), "installed": entry.available, "source": entry.source}
        if entry.source == "catalogue":
            info = listed[entry.name]
            row.update(arch=info.arch, scale=info.scale, url=info.url, sha256=info.sha256, size=info.size,
                       licence=info.licence, description=info.description)
        elif entry.available and entry.path.suffix == ".safetensors":
            try:
                metadata, tensors = read_header(entry.path)
            except (OSError, ValueError) as exc:
                row["error"] = str(exc)
            else:
                psnr = metadata.get("psnr")
                row.update(arch=metadata.get("arch"), parameters=count_elements(tensors),
                           psnr=json.loads(psnr) if psnr else None)
                if "scale" in metadata:
                    row["scale"] = int(metadata["scale"])
            if entry.source == "shipped":
                int8 = onnx_form(entry.name, entry.scale)
                row["int8"] = str(int8) if int8 is not None else None
        rows.append(row)
    from ..registry import BASELINES
    rows += [{"name": name, "scale": "any", "arch": name, "parameters": 0, "psnr": None, "file": None,
              "installed": True, "source": "builtin"} for name in BASELINES]
    return rows


@click.group("models", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable list (catalogue rows add url, sha256, "
                                                      "size, licence, description).")
@click.option("--all", "show_all", is_flag=True, help="Also list shipped models whose weights are not installed.")
@click.pass_context
@friendly_errors
def models_command(ctx, as_json, show_all):
    """List the models `--model` accepts, and the catalogue `sr models pull NAME` downloads from.

    Name, architecture, scale, parameters and recorded PSNR come from the files' headers.
    "+ int8" marks a shipped model with an int8 ONNX form, which `sr upscale` runs on a CPU
    by default (PSNR within 0.05 dB of the fp32 figures shown).
    """
    if ctx.invoked_subcommand is not None:
        return
    rows = model_rows(show_all)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Column, Table
    width = max(len(row["name"]) for row in rows)
    table = Table(Column("name", no_wrap=True, min_width=width), "scale", "arch", "parameters",
                  "PSNR Set5 / Set14 / BSD100 (Y)", "file",
                  caption="Use any of these with --model NAME, or give a weights file path. "
                          "`sr models pull NAME` downloads a catalogue model (--json: licences, URLs, hashes).")
    for row in rows:
        psnr = row["psnr"] or {}
        scores = " / ".join(f"{psnr[k]:.2f}" if k in psnr else "-" for k in ("Set5", "Set14", "BSD100"))
        file = Path(row["file"]).name if row["file"] else "(built in)"
        if row.get("int8"):
            file += " + int8"
        if row["source"] == "catalogue" and not row["installed"]:
            file = f"not pulled ({row['size'] / 1e6:.0f} MB)"
        elif not row["installed"]:
            file = f"{file} (not installed)"
        elif "error" in row:
            file = f"{file} (unreadable)"
        scale = row["scale"]
        table.add_row(row["name"], "any" if scale == "any" else f"x{scale}" if scale else "-",
                      row["arch"] or "-", f"{row['parameters']:,}" if row["parameters"] else "-",
                      scores if psnr else "-", file)
    Console().print(table)


@models_command.command("pull", short_help="Download a catalogue model, or a model file's URL, verified.")
@click.argument("source", metavar="NAME|URL")
@click.option("--sha256", metavar="HEX", callback=parse_sha256,
              help="The publisher's sha256 of a URL outside the catalogue (required "
                   "there: nothing unverified is kept).")
@click.option("--name", metavar="NAME", default=None,
              help="The name a URL's model gets (default: its file name): letters, digits, _ + - .")
@click.option("--max-size", metavar="SIZE", default="4G", show_default=True, callback=parse_size,
              help="Refuse a URL's file larger than this (the server's announced or sent bytes); catalogue "
                   "models are held to their published size.")
@click.option("--force", is_flag=True, help="Download again even when a verified copy is already there.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors(on_interrupt="run it again to resume the download")
def pull_command(source, sha256, name, max_size, force, quiet):
    """Download a catalogue model (see `sr models`) or a model file's URL into the per-user cache.

    The file is checked against its published sha256 before it is kept, is written atomically,
    and an interrupted download resumes when the command is run again. The cache is the
    platform's (e.g. ~/.cache/sr-cli/models), or SR_CACHE_DIR/models.
    """
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    from ..registry import pull
    console = Console(stderr=True)
    progress = Progress(TextColumn("[bold]pull"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeRemainingColumn(), console=console, disable=quiet, transient=True)
    with progress:
        task = progress.add_task("", total=None)
        name, path, downloaded = pull(source, sha256=sha256, force=force, name=name, max_size=max_size,
                                      progress=lambda done, total: progress.update(task, completed=done, total=total))
    state = "downloaded and verified" if downloaded else "already there, verified"
    click.echo(f"{display(name)}: {display(path)} ({state}); use it with --model {display(name)}")
