"""`sr data list` and `sr data pull NAME...`: the standard image sets, downloaded and verified on request.

Also the click type that lets `sr eval` and `sr train` take a catalogue name wherever they take a folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import friendly_errors


class DatasetPath(click.ParamType):
    """A file or folder as given, else a pulled catalogue set's folder (``datasets.resolve``). A set
    not pulled yet is one line giving the `sr data pull` command (exit 1); a name that is neither
    is a usage error listing the catalogue (exit 2)."""

    name = "FOLDER|DATASET"

    def __init__(self, *, file_okay: bool = True):
        self.file_okay = file_okay

    def convert(self, value, param, ctx):
        if isinstance(value, Path) and value.exists():
            return value
        from ..datasets import NotPulled, resolve
        try:
            path = resolve(str(value))
        except NotPulled as exc:
            raise click.ClickException(str(exc)) from None
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if not self.file_okay and not path.is_dir():
            self.fail(f"{str(value)!r} is a file, not a folder", param, ctx)
        return path


@click.group("data")
@friendly_errors
def data_command():
    """The standard image sets (Set5, Set14, BSD100, ..., T91, General100): list and download them.

    \b
    sr data list                  what the catalogue holds, and what is pulled
    sr data pull Set5 Set14       download, verified; then `sr eval Set5 Set14 -s 4`
    """


@data_command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable list (adds repo, commit, folder, licence).")
@friendly_errors
def list_command(as_json):
    """List the catalogue's sets: kind, images, size, and whether each is pulled."""
    from ..datasets import catalogue
    sets = catalogue()
    if as_json:
        click.echo(json.dumps([{"name": e.name, "kind": e.kind, "images": len(e.files), "size": e.size,
                                "pulled": e.present, "folder": str(e.folder), "repo": e.repo, "commit": e.commit,
                                "licence": e.licence, "description": e.description} for e in sets.values()],
                              indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table("name", "kind", "images", "size", "pulled", "what",
                  caption="`sr data pull NAME...` downloads a set (verified against the catalogue's sha256); "
                          "then use NAME wherever `sr eval` or `sr train` takes a folder.")
    for e in sets.values():
        table.add_row(e.name, e.kind, str(len(e.files)), f"{e.size / 1e6:.1f} MB", "yes" if e.present else "-",
                      e.description)
    Console().print(table)


@data_command.command("pull", short_help="Download catalogue sets, every file verified.")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--mirror", metavar="BASE", help="Fetch BASE/NAME/FILE instead of the publishers' URLs (an "
                                               "http(s) URL or a local folder); still checked against the "
                                               "catalogue's hashes.")
@click.option("--force", is_flag=True, help="Download every file again, even where verified copies are there.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors(on_interrupt="run it again to go on where it stopped")
def pull_command(names, mirror, force, quiet):
    """Download catalogue sets (see `sr data list`) into the per-user cache, data/NAME/.

    Every file is checked against its sha256 and size before it is kept and is written
    atomically; an interrupted pull goes on where it stopped when run again. A set counts as
    pulled only when all its files are verified. The cache is the platform's (e.g.
    ~/.cache/sr-cli/data), or SR_CACHE_DIR/data.
    """
    from ..datasets import catalogue, lookup
    sets = catalogue()
    unknown = [n for n in names if lookup(n, sets) is None]
    if unknown:
        raise click.BadParameter(f"unknown dataset{'s' if len(unknown) > 1 else ''} "
                                 f"{', '.join(repr(n) for n in unknown)}; the catalogue has {', '.join(sets)}",
                                 param_hint="NAME")
    entries = list({lookup(n, sets).name: lookup(n, sets) for n in names}.values())

    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    from ..datasets import pull
    console = Console(stderr=True)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                        disable=quiet or not console.is_terminal, transient=True)
    with progress:
        for entry in entries:
            task = progress.add_task(entry.name, total=entry.size)

            def update(done: int, total: int, file: str, task=task, name=entry.name) -> None:
                progress.update(task, completed=done, total=total, description=f"{name} {file}")

            fetched = pull(entry, mirror=mirror, force=force, progress=update)
            progress.remove_task(task)
            state = f"{fetched} of {len(entry.files)} files downloaded, all verified" if fetched else \
                "already there, verified"
            click.echo(f"{entry.name}: {entry.folder} ({state}); use it as `{entry.name}` in sr eval / sr train")
