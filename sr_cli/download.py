"""Fetch one file over HTTP(S), verified and atomic, resuming after an interruption.

Bytes go to ``<dest>.part``. A transfer cut short keeps the part, and the next call asks
the server for the rest (an HTTP Range request); a server that ignores the range sends the
whole file again and the part is rewritten from the start. The finished part is hashed and
moved onto ``dest`` only when its sha256 matches, so ``dest`` is either absent or verified;
a mismatch removes the part (after a resume, it is fetched once more from the start first,
in case the old bytes came from another file).

Limits: the file may not be larger than its published size or, without one, ``max_size``;
a server announcing more (Content-Length) is refused before anything is written, and one
sending more is cut off and its bytes removed. The free space of the target's file system is
checked against what is announced before writing. One process at a time downloads a target:
a lock file beside it (``.NAME.lock``, removed afterwards) makes a second one fail at once,
naming the first. Standard library only.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from . import __version__

CHUNK = 1 << 20
DEFAULT_MAX_SIZE = 4 << 30  # a model file from a URL without a published size: 4 GiB at most
FREE_SPACE_MARGIN = 64 << 20  # left free on the disk after a download
Progress = Callable[[int, Optional[int]], None]  # (bytes so far, total or None)


class DownloadError(OSError):
    """A download that did not produce a verified file; the message is one line for the user."""


def download(url: str, dest: str | Path, *, sha256: str, size: Optional[int] = None,
             progress: Optional[Progress] = None, timeout: float = 30.0,
             offline_hint: str = "or pass a local file to --model", max_size: Optional[int] = None) -> Path:
    """Fetch ``url`` to ``dest`` and return it, verified against ``sha256`` (hex). ``offline_hint``
    ends the line of an unreachable host with what the user can do instead. ``size`` (published)
    or else ``max_size`` (default ``DEFAULT_MAX_SIZE``) caps the bytes accepted."""
    from .lock import hold
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with hold(dest.with_name(f".{dest.name}.lock"), f"{dest} (being downloaded)", remove=True):
        return _download(url, dest, sha256=sha256, size=size, progress=progress, timeout=timeout,
                         offline_hint=offline_hint, limit=size if size is not None else max_size or DEFAULT_MAX_SIZE)


def _download(url: str, dest: Path, *, sha256: str, size: Optional[int], progress: Optional[Progress],
              timeout: float, offline_hint: str, limit: int) -> Path:
    part = dest.with_name(dest.name + ".part")
    expected = sha256.strip().lower()
    for fresh in (False, True):
        if fresh or (size is not None and part.is_file() and part.stat().st_size > size):
            part.unlink(missing_ok=True)
        resumed = part.is_file() and part.stat().st_size > 0
        _transfer(url, part, size=size, progress=progress, timeout=timeout, offline_hint=offline_hint,
                  limit=limit, published=size is not None)
        got_size = part.stat().st_size
        digest = file_sha256(part)
        if digest == expected and (size is None or got_size == size):
            os.replace(part, dest)
            return dest
        part.unlink(missing_ok=True)
        if not resumed:
            break
    what = f"{got_size:,} bytes, expected {size:,}" if size is not None and got_size != size else \
        f"sha256 {digest}, expected {expected}"
    raise DownloadError(f"{url}: the download does not match its published hash ({what}); "
                        "the file was removed, nothing was installed")


def _transfer(url: str, part: Path, *, size: Optional[int], progress: Optional[Progress], timeout: float,
              offline_hint: str, limit: int, published: bool) -> None:
    """Append the rest of ``url`` to ``part`` (or rewrite it when the server sends it all)."""
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset == size:
        return  # complete already; the caller verifies it
    headers = {"User-Agent": f"sr-cli/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    host = urllib.parse.urlsplit(url).netloc or url
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing after our part: complete, or longer than the file
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; nothing was downloaded") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {host} ({reason}): no network? Nothing was downloaded; "
                            f"run the command again when online, {offline_hint}") from None
    with response:
        if offset and response.status == 206 and _range_start(response) == offset:
            mode = "ab"
        else:
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        try:
            total = offset + int(length) if length is not None else size
        except ValueError:
            total = size
        cap = "its published size" if published else "--max-size"
        if total is not None and total > limit:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the server announces {total:,} bytes, more than {cap} ({limit:,}); "
                                "nothing was downloaded")
        if total is not None:
            free = shutil.disk_usage(part.parent).free
            if total - offset + FREE_SPACE_MARGIN > free:
                raise DownloadError(f"{url}: {total - offset:,} bytes to download but {free:,} free in "
                                    f"{part.parent}; nothing was downloaded (free some space, or set SR_CACHE_DIR)")
        done = offset
        if progress:
            progress(done, total)
        with open(part, mode) as handle:
            try:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    if done + len(chunk) > limit:
                        done += len(chunk)
                        break
                    handle.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
            except (http.client.IncompleteRead, OSError) as exc:
                if isinstance(exc, http.client.IncompleteRead):
                    handle.write(exc.partial)
                    done += len(exc.partial)
                total = total if total is not None else done + 1
            finally:
                handle.flush()
                os.fsync(handle.fileno())
    if done > limit:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the server sent more than {cap} ({limit:,} bytes); stopped, and what "
                            "came was removed")
    if total is not None and done < total:
        raise DownloadError(f"{url}: the transfer stopped at {done:,} of {total:,} bytes; run the same "
                            "command again to resume it")


def _range_start(response) -> Optional[int]:
    """The first byte of a 206 response's ``Content-Range: bytes START-END/TOTAL``."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of the file at ``path``, read in blocks (weights and datasets run to GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
