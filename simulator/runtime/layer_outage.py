"""One line when the channel layer (Redis) stops answering a loop, one when it answers
again: not a warning every 100 ms and a traceback every second for the whole outage, and
no silence when it is over."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

# Between two attempts of a loop that failed: from FIRST_RETRY_S, doubled up to MAX_RETRY_S.
FIRST_RETRY_S = 0.1
MAX_RETRY_S = 5.0


class Outage:
    """What one loop (`what`: "receiving commands") saw of the layer's failures."""

    def __init__(self, what: str, logger: logging.Logger = log) -> None:
        self.what = what
        self.log = logger
        self.since: float | None = None  # monotonic s of the first failure, while failing
        self.failures = 0
        self.retry_s = FIRST_RETRY_S

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> float:
        """Note a failure; the seconds to wait before the next attempt. The first of an
        outage is logged with its traceback, the rest at DEBUG."""
        self.failures += 1
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning(
                "%s failed (%s: %s); retrying, quietly until it works again",
                self.what,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        else:
            self.log.debug("%s failed again: %s", self.what, exc)
            self.retry_s = min(self.retry_s * 2, MAX_RETRY_S)
        return self.retry_s

    def recovered(self) -> bool:
        """Note a success; whether it ends an outage (then logged, with its length)."""
        if self.since is None:
            return False
        self.log.warning(
            "%s works again after %.1f s (%d failed attempts)",
            self.what,
            time.monotonic() - self.since,
            self.failures,
        )
        self.since, self.failures, self.retry_s = None, 0, FIRST_RETRY_S
        return True
