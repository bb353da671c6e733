"""Files that appear whole or not at all: written to a temporary file beside the target, synced, and
renamed over it, so a failure or Ctrl-C never leaves a target cut short.

The temporary file's name (``.NAME.sr-PID-HOST-RANDOM.tmp``) says which process wrote it, so
``remove_stale_temporaries`` can delete those a killed run left behind (its process is gone)
without touching a running one's. Standard library only: weights.py and the trainer use it
without loading an image library.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import time
import zlib
from pathlib import Path
from typing import Union


@contextlib.contextmanager
def atomic_file(path: Union[str, os.PathLike]):
    """A binary file (read-write: the TIFF writer reads back its first directory to link EXIF) on a new
    temporary file beside ``path``; when the block ends it is synced and renamed over ``path``, and
    on any error (Ctrl-C included) removed, so ``path`` is never left cut short."""
    with atomic_path(path) as temporary:
        with open(temporary, "w+b") as file:  # file.name is a path: tifffile wants one
            yield file


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike]):
    """``atomic_file`` for writers that take a file name, not a file (safetensors' ``save_file``,
    which then streams the tensors to disk instead of building the whole file in memory first):
    yields the temporary file's path; synced and renamed over ``path`` when the block ends,
    removed on any error."""
    path = Path(path)
    temporary = new_temporary(path)
    try:
        yield temporary
        fd = os.open(temporary, os.O_RDWR | getattr(os, "O_BINARY", 0))  # Windows syncs only writable files
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def new_temporary(path: Union[str, os.PathLike]) -> Path:
    """A new, empty temporary file beside ``path`` (``.NAME.sr-PID-HOST-RANDOM.tmp``), created here so
    that no other process takes its name; the caller renames it over ``path`` or deletes it."""
    path = Path(path)
    while True:
        temporary = path.with_name(f".{path.name[:64]}.sr-{os.getpid()}-{_HOST}-{secrets.token_hex(4)}.tmp")
        try:  # os.open applies the umask, so the result gets the usual permissions (mkstemp: 0600)
            os.close(os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
            return temporary
        except FileExistsError:
            continue


_HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFFFF:06x}"  # which machine wrote a temporary file
_TEMPORARY = re.compile(r"^\..*\.sr-(\d+)-([0-9a-f]{6})-[0-9a-f]{8}\.tmp$", re.DOTALL)
STALE_FOREIGN_SECONDS = 24 * 3600  # another machine's temporary file (shared folder): stale after this


def remove_stale_temporaries(folder: Union[str, os.PathLike]) -> list[Path]:
    """Delete the temporary files ``atomic_file`` left in ``folder`` when its process was killed
    (SIGKILL, power loss): those of this machine whose process is gone, and another machine's
    older than a day (their process cannot be asked). Returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match:
            continue
        try:
            if match[2] == _HOST:
                if _process_alive(int(match[1])):
                    continue
            elif now - entry.stat(follow_symlinks=False).st_mtime < STALE_FOREIGN_SECONDS:
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue  # gone already, or not ours to delete: leave it
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (someone else's), or cannot tell: keep its file
    return True


def write_bytes(path: Union[str, os.PathLike], data: bytes) -> None:
    """``data`` as the whole of ``path``, atomically."""
    with atomic_file(path) as file:
        file.write(data)
