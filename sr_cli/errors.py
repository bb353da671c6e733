"""One place that turns the core's exceptions into one-line CLI errors."""
from __future__ import annotations

import functools

import click


def friendly_errors(command):
    """Wrap a Click command: ValueError/OSError/RuntimeError become one line and exit status 1."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise
        except (ValueError, OSError, RuntimeError) as exc:
            text = str(exc).strip()
            raise click.ClickException(text.splitlines()[0] if text else type(exc).__name__) from None
    return wrapper
