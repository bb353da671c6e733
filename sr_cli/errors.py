"""One place that turns the core's exceptions into one-line CLI errors, and signals into exit codes.

Exit status of a wrapped command: 0 success; 1 an error (one line on stderr, no traceback);
2 a usage error (Click's); 130 interrupted by Ctrl-C (SIGINT), 143 by SIGTERM. Set SR_DEBUG=1
to see the traceback of an unexpected error instead of its one line.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Optional, Sequence

import click

EXIT_INTERRUPTED = 128 + signal.SIGINT   # 130
EXIT_TERMINATED = 128 + signal.SIGTERM   # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same clean-up runs."""


def _on_sigterm(signum, frame):
    raise Terminated()


def display(text) -> str:
    """A file name (or any text) fit for one line of a terminal: control characters (newlines,
    escape codes) and undecodable bytes shown as escapes, everything else as is."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def first_line(exc: BaseException, limit: Optional[int] = None, *, names: Sequence[str] = ()) -> str:
    """``exc``'s message as one printable line of at most ``limit`` characters: its first line, or
    the exception's type where the message is empty. A first line that ends in ':' only announces
    the lines below (torch's "Error(s) in loading state_dict for ...:"), so they are joined onto it.
    ``names`` are file names the caller's report shows already: a leading "NAME: " is dropped, and
    a name holding a newline does not cut the line. An out-of-memory error says what to try."""
    if isinstance(exc, MemoryError):
        return "out of memory (try a smaller --tile, or a smaller job)"
    text = str(exc).strip()
    for name in names:
        if text.startswith(name + ": "):
            text = text[len(name) + 2:]
        text = text.replace(name, display(name))
    lines = [line.strip() for line in text.splitlines()]
    line = " ".join(lines) if lines and lines[0].endswith(":") else (lines[0] if lines else "")
    return display(line)[:limit] or type(exc).__name__


def friendly_errors(command=None, *, on_interrupt: str = ""):
    """Wrap a Click command: any exception becomes one line and exit status 1; Ctrl-C exits 130
    and SIGTERM 143 (Click's own handling would print "Aborted!" and exit 1).

    ``on_interrupt`` ends the interruption's line with what the user can do next, which only
    the command knows. Use it bare (``@friendly_errors``) or with it (``@friendly_errors(on_interrupt=...)``).
    """
    if command is None:
        return functools.partial(friendly_errors, on_interrupt=on_interrupt)

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread: leave signals alone
            previous = None
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, Terminated)
            click.echo(f"interrupted ({'SIGTERM' if terminated else 'Ctrl-C'})"
                       + (f": {on_interrupt}" if on_interrupt else ""), err=True)
            sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
        except Exception as exc:
            if os.environ.get("SR_DEBUG"):
                raise
            raise click.ClickException(first_line(exc)) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return wrapper


class StdoutClosed(OSError):
    """Output written to a closed stdout."""


class ClosedStdout:
    """Stands for a closed stdout (``sr ... >&-``: Python then sets ``sys.stdout`` to None, and the
    first ``isatty()`` or print failed with "'NoneType' object has no attribute ..."). It is not a
    terminal; writing to it raises one clear OSError, so a command whose output is lost exits 1 saying
    so, while one that prints nothing to stdout runs as usual."""

    encoding = "utf-8"
    errors = "strict"
    closed = False

    @property
    def buffer(self):
        return self

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise StdoutClosed("stdout is closed, so the output is lost: run without '>&-' or redirect it "
                           "(> FILE, > /dev/null)")

    def flush(self) -> None:
        pass


def guard_standard_streams() -> None:
    """Replace a closed stdout with ``ClosedStdout`` and a closed stderr with a sink."""
    if sys.stdout is None:
        sys.stdout = ClosedStdout()
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
