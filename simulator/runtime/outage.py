"""How a loop that retries says it is failing: once in full, then a line now and then, and
one line when it works again.

The checkpoint loop retries every second while the database is down or full; the channel
layer's loops (commands, summaries, page updates) retry while Redis is away. Logging each
attempt with its traceback buried an hour's outage in 3,600 tracebacks, and a warning every
100 ms buried everything else. An outage logs its first failure with the traceback, then
one line every `every` seconds while it lasts, and one line when it ends; a later outage of
the same kind of error starts with a line too (a database whose sessions an operator ends
every few seconds gave the same 25-line traceback 30 times a minute).
"""

from __future__ import annotations

import logging
import time

from simulator.contract.failures import brief

log = logging.getLogger(__name__)

# Between two attempts of a loop that failed: from FIRST_RETRY_S, doubled up to MAX_RETRY_S
# (a loop with a pace of its own, the checkpoint's, ignores it).
FIRST_RETRY_S = 0.1
MAX_RETRY_S = 5.0


class Outage:
    """What one loop (`what`: "checkpoint", "receiving commands") saw of its failures.

    `level` is that of the lines saying it fails: ERROR where data waits on it (the
    checkpoint), WARNING where the loop only cannot reach the pages or the web side.
    Times are monotonic seconds, the caller's (`now`) or `time.monotonic()`'s."""

    def __init__(
        self,
        what: str,
        logger: logging.Logger = log,
        *,
        level: int = logging.WARNING,
        every: float = 60.0,
        known: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.what = what
        # Errors whose line says all there is (the channel layer's timeouts and lost
        # connections): never a traceback, which only says where in redis-py it was read.
        self.known = known
        self.log = logger
        self.level = level
        self.every = every
        self.since: float | None = None  # when the current outage began
        self.failures = 0
        self.retry_s = FIRST_RETRY_S
        self._reported = 0.0
        # The errors already shown with their traceback: an outage of the same kind again
        # gets one line.
        self._shown: set[type[BaseException]] = set()

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException, now: float | None = None) -> float:
        """Note a failure (call it in the `except` block); the seconds to wait before the
        next attempt."""
        now = time.monotonic() if now is None else now
        self.failures += 1
        if self.since is None:
            self.since = self._reported = now
            self.retry_s = FIRST_RETRY_S
            if type(exc) in self._shown or isinstance(exc, self.known):
                self.log.log(self.level, "%s failed; retrying: %s", self.what, brief(exc))
            else:
                self._shown.add(type(exc))
                self.log.log(
                    self.level, "%s failed; retrying: %s", self.what, brief(exc), exc_info=exc
                )
            return self.retry_s
        self.retry_s = min(self.retry_s * 2, MAX_RETRY_S)
        if now - self._reported >= self.every:
            self._reported = now
            self.log.log(
                self.level,
                "%s still failing after %.0f s (%d attempts): %s",
                self.what,
                now - self.since,
                self.failures,
                brief(exc),
            )
        else:
            self.log.debug("%s failed again: %s", self.what, brief(exc))
        return self.retry_s

    def recovered(self, now: float | None = None) -> bool:
        """Note a success; whether it ends an outage (then logged, with its length)."""
        if self.since is None:
            return False
        now = time.monotonic() if now is None else now
        self.log.warning(
            "%s works again after %.1f s (%d failed attempts)",
            self.what,
            now - self.since,
            self.failures,
        )
        self.since, self.failures, self.retry_s = None, 0, FIRST_RETRY_S
        return True
