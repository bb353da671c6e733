"""One process at a time on a target (a training run folder, a download): an advisory lock file.

``hold(lock_file, what)`` takes an exclusive ``flock`` on ``lock_file`` without waiting; the file
says who holds it (process, machine, since when), so a second process fails at once with one line
naming the holder. The kernel drops the lock when its process ends, however it ends (SIGKILL,
power loss), so a stale lock never blocks anyone; the file itself stays (deleting it would let two
processes lock two different files of one name). Where there is no ``fcntl`` (Windows) nothing is
locked. Standard library only.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Iterator, Union


class Busy(RuntimeError):
    """Another process holds the lock; the message names it."""


@contextlib.contextmanager
def hold(lock_file: Union[str, os.PathLike], what: str, *, remove: bool = False) -> Iterator[Path]:
    """Hold ``lock_file`` (created if missing) for the block; ``Busy`` at once if another process does.
    ``what`` names the target in the message, e.g. "run folder runs/x4". With ``remove`` the file
    is deleted when the block ends (a lock that is taken checks that its file is still the one
    under that name, so deleting it never lets two processes hold "the" lock)."""
    lock_file = Path(lock_file)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield lock_file
        return
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise Busy(f"{what} is in use by {holder}") from None
        try:
            same = os.stat(lock_file).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder removed it as we opened it: take the new one
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"sr (pid {os.getpid()} on {socket.gethostname()}, since {stamp})\n".encode(), 0)
        try:
            yield lock_file
        finally:
            try:
                if remove:
                    os.unlink(lock_file)  # still locked: whoever opened it retries on the new file
                else:
                    os.ftruncate(fd, 0)  # nobody holds it now
            except OSError:
                pass
    finally:
        os.close(fd)  # releases the lock
