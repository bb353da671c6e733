"""Files that appear whole or not at all: written to a temporary file beside the target, synced, and
renamed over it, so a failure or Ctrl-C never leaves a target cut short.

Without ``replace`` the last step refuses an existing target atomically (``OutputExists``): the
temporary file is published with renameat2(RENAME_NOREPLACE) where the kernel and file system
have it, else by a hard link (which fails on an existing name) and the unlink of the temporary
name, so of two runs racing for one name exactly one writes it.

The temporary file's name (``.NAME.sr-PID-HOST-RANDOM.tmp``) says which process wrote it, so
``remove_stale_temporaries`` can delete those a killed run left behind (its process is gone)
without touching a running one's. Standard library only: weights.py and the trainer use it
without loading an image library.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import socket
import sys
import time
import zlib
from pathlib import Path
from typing import Union


class OutputExists(FileExistsError):
    """The target appeared (another process wrote it) and ``replace`` was False: nothing was replaced."""

    def __str__(self) -> str:
        return str(self.strerror)


@contextlib.contextmanager
def atomic_file(path: Union[str, os.PathLike], *, replace: bool = True):
    """A binary file (read-write: the TIFF writer reads back its first directory to link EXIF) on a new
    temporary file beside ``path``; when the block ends it is synced and renamed over ``path``, and
    on any error (Ctrl-C included) removed, so ``path`` is never left cut short. With ``replace``
    False an existing ``path`` is left as it is and ``OutputExists`` raised."""
    with atomic_path(path, replace=replace) as temporary:
        with open(temporary, "w+b") as file:  # file.name is a path: tifffile wants one
            yield file


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike], *, replace: bool = True):
    """``atomic_file`` for writers that take a file name, not a file (safetensors' ``save_file``,
    which then streams the tensors to disk instead of building the whole file in memory first):
    yields the temporary file's path; synced and renamed over ``path`` when the block ends,
    removed on any error. ``replace`` as for ``atomic_file``."""
    path = Path(path)
    temporary = new_temporary(path)
    try:
        yield temporary
        fd = os.open(temporary, os.O_RDWR | getattr(os, "O_BINARY", 0))  # Windows syncs only writable files
        try:
            if _NEW_FILE_MODE is not None:  # a writer that made its own file (safetensors: 0600) gets the usual mode
                os.fchmod(fd, _NEW_FILE_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temporary, path)
        else:
            publish_new(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def publish_new(temporary: Path, path: Path) -> None:
    """Rename ``temporary`` to ``path`` unless ``path`` exists, as one step: OutputExists if it does."""
    try:
        if _rename_noreplace(temporary, path):
            return
        try:
            os.link(temporary, path)  # fails with EEXIST on an existing name, whoever made it
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS,
                                 errno.EMLINK, errno.EACCES):
                raise
            # No hard links here (FAT, some network shares): the best that is left is check, then rename.
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
            os.replace(temporary, path)
            return
        os.unlink(temporary)
    except FileExistsError:
        raise OutputExists(errno.EEXIST, f"{path} exists (another run wrote it first?)", str(path)) from None


_RENAMEAT2 = None


def _rename_noreplace(source: Path, target: Path) -> bool:
    """renameat2(RENAME_NOREPLACE) on Linux; False where the C library or file system lacks it."""
    global _RENAMEAT2
    if not sys.platform.startswith("linux"):
        return False
    if _RENAMEAT2 is None:
        try:
            import ctypes
            function = ctypes.CDLL(None, use_errno=True).renameat2
            function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            _RENAMEAT2 = function
        except (OSError, AttributeError):
            _RENAMEAT2 = False
    if _RENAMEAT2 is False:
        return False
    import ctypes
    at_fdcwd, rename_noreplace = -100, 1
    if _RENAMEAT2(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), rename_noreplace) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        raise FileExistsError(code, "exists", str(target))
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # this file system cannot: fall back to a hard link
    raise OSError(code, os.strerror(code), str(target))


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


def _new_file_mode():
    """What a new file gets here: 0666 less the umask (read once, at import, before any thread)."""
    if not hasattr(os, "fchmod"):
        return None
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_NEW_FILE_MODE = _new_file_mode()
_HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFFFF:06x}"  # which machine wrote a temporary file
_TEMPORARY = re.compile(r"^\.(.*)\.sr-(\d+)-([0-9a-f]{6})-[0-9a-f]{8}\.tmp$", re.DOTALL)
STALE_FOREIGN_SECONDS = 24 * 3600  # another machine's temporary file (shared folder): stale after this


def remove_stale_temporaries(folder: Union[str, os.PathLike], names=None) -> list[Path]:
    """Delete the temporary files ``atomic_file`` left in ``folder`` when its process was killed
    (SIGKILL, power loss): those of this machine whose process is gone, and another machine's
    older than a day (their process cannot be asked). With ``names`` (file names in ``folder``),
    only the temporary files of those targets are touched: a file that merely looks like one, or
    belongs to another target, is left alone. Returns what was removed."""
    targets = None if names is None else {str(name)[:64] for name in names}
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or (targets is not None and match[1] not in targets):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue  # ours are plain files
            if match[3] == _HOST:
                if _process_alive(int(match[2])):
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


def write_bytes(path: Union[str, os.PathLike], data: bytes, *, replace: bool = True) -> None:
    """``data`` as the whole of ``path``, atomically (``replace`` as for ``atomic_file``)."""
    with atomic_file(path, replace=replace) as file:
        file.write(data)
