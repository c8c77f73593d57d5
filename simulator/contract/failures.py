"""What either side of the channel layer meets when it is away, and how a log line says it.

The worker's loops (commands, summaries, page updates) and the web side's notice of a fleet
change both talk over the channel layer: a Redis that is away, or does not answer in time,
is one known failure to them, said in a line rather than a traceback.
"""

from __future__ import annotations


def layer_errors() -> tuple[type[BaseException], ...]:
    """The errors of a channel layer that cannot be reached or does not answer in time (a
    worker resumed after a pause reads a timeout first): Redis's own, and the socket's."""
    try:
        from redis import exceptions
    except ImportError:  # the in-memory layer: no Redis installed
        return (OSError,)
    return (OSError, exceptions.ConnectionError, exceptions.TimeoutError)


def brief(exc: BaseException) -> str:
    """An error for a log line: its type and first line, never the statement's values."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
