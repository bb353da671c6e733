"""`sr info`: the provenance tag of files sr wrote (which sr, model, scale and source made them)."""
from __future__ import annotations

import json
import sys

import click

from ..errors import display, friendly_errors


@click.command("info")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False), metavar="FILE...")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file: its tag, or null.")
@friendly_errors
def info_command(files, as_json):
    """Show which model, scale and source file made each FILE (sr's provenance tag).

    A file without the tag was not written by sr (or by a format that cannot hold it: BMP, AVI,
    MPEG-TS): `sr upscale` never replaces such a file, not even with --overwrite. Exit status 1
    when some FILE has no tag.
    """
    from ..provenance import describe, read
    untagged = 0
    for name in files:
        tag = read(name)
        untagged += tag is None
        if as_json:
            click.echo(json.dumps({"file": name, "provenance": tag}))
        else:
            click.echo(f"{display(name)}: " + (describe(tag) if tag else "no sr provenance tag (not written by sr)"))
    if untagged:
        sys.exit(1)
