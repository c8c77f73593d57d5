"""How a loop that retries says it is failing: once in full, then a line now and then.

The checkpoint loop retries every second while the database is down or full. Logging each
attempt with its traceback buried an hour's outage in 3,600 tracebacks; this logs the
first failure with its traceback, then one line every `every` seconds while it lasts, and
one line when it ends. A later outage of the same kind of error starts with a line too.
"""

from __future__ import annotations

import logging


class OutageLog:
    def __init__(self, log: logging.Logger, what: str, every: float = 60.0) -> None:
        self.log = log
        self.what = what  # "checkpoint": the subject of each line
        self.every = every
        self.since: float | None = None  # when the current outage began
        self.failures = 0
        self._reported = 0.0
        # The errors already shown with their traceback: an outage of the same kind again
        # (a database whose sessions an operator ends every few seconds) gets one line.
        self._shown: set[type[BaseException]] = set()

    def failed(self, exc: BaseException, now: float) -> None:
        """An attempt failed at `now` (a monotonic clock); call it in the `except` block."""
        self.failures += 1
        if self.since is None:
            self.since = self._reported = now
            if type(exc) in self._shown:
                self.log.error("%s failed; retrying: %s", self.what, brief(exc))
            else:
                self._shown.add(type(exc))
                self.log.error("%s failed; retrying", self.what, exc_info=exc)
        elif now - self._reported >= self.every:
            self._reported = now
            self.log.error(
                "%s still failing after %.0f s (%d attempts): %s",
                self.what,
                now - self.since,
                self.failures,
                brief(exc),
            )

    def succeeded(self, now: float) -> None:
        if self.since is not None:
            self.log.warning(
                "%s succeeded again after %.0f s (%d failed attempts)",
                self.what,
                now - self.since,
                self.failures,
            )
            self.since, self.failures = None, 0


def brief(exc: BaseException) -> str:
    """An error for a log line: its type and first line, never the statement's values."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
