"""Reading TOML files (the catalogues, `sr train --config`): tomllib, or its backport before 3.11."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML file; OSError or ValueError (tomllib's TOMLDecodeError) when unreadable."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10: the tomli backport (a declared dependency there)
        import tomli as tomllib
    with open(path, "rb") as handle:
        return tomllib.load(handle)
