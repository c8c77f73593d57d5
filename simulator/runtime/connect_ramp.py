"""The connect ramp: a worker starts its chargers' connections at most `rate` a second.

Without it, a worker connected its whole fleet at once at start-up: 10,000 WebSocket
handshakes and BootNotifications in the same second, a stampede most central systems are
not built for and not what a real fleet does. Every mass connect of the worker goes
through the one ramp the simulator owns (`Simulator.connect(paced=True)`): the fleet at
start-up, the new chargers of a large import, a reboot or reconnect of many chargers, the
dashboard's or the API's bulk connect and bulk reboot. So they share the rate instead of
adding up.

A connect a person asks for, for one charger, does not wait behind thousands of queued
chargers: it is not paced at all (one handshake is no stampede).

A charger's reconnects (its CSMS went away and came back, a Reset, a network cut over) are
automatic, not a person's: each attempt after the first takes a turn too
(`run_connection`'s `turn`), so that 10,000 chargers coming back after an outage reach
their CSMS at the rate, not in the second their backoffs run out. A charger waits in the
queue once at most: its attempts follow one another.

The chargers are released in the order they were queued, one every 1/rate seconds on a
schedule: the k-th release of a ramp comes no earlier than k/rate after its first, and
after a stall of the event loop the ramp catches up by at most `CATCH_UP_SECONDS` of
releases at once (it never makes up a long stall in one burst). A waiter cancelled before
its turn (its charger disconnected, disabled or deleted; a stop) simply leaves the queue
and takes no turn.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

# How far behind its schedule the ramp may fall (a busy event loop) and still make it up.
CATCH_UP_SECONDS = 1.0
# A progress line in the log at most this often while a ramp runs.
LOG_EVERY_SECONDS = 10.0
# Release instants kept (`released`): what tests and diagnostics read, bounded for a
# long-running worker whose fleet is connected in ramps again and again.
RELEASES_KEPT = 100_000


def progress_text(started: int, of: int, retrying: int) -> str:
    """A ramp's progress as the status line and the log say it."""
    text = f"{started:,}/{of:,} chargers started connecting"
    return f"{text}, {retrying:,} waiting to retry" if retrying else text


class ConnectRamp:
    """Turns to start a connection, at most `rate` a second (0: no pacing at all)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate >= 0:
            raise ValueError(f"connect rate {rate!r} must be 0 or more")
        self.rate = rate
        self._clock = clock
        # (name, turn, a reconnect's) of each connection queued, in order
        self._queue: deque[tuple[str, asyncio.Future[None], bool]] = deque()
        self._waiting: dict[str, int] = {}  # name -> waiters of that name still queued
        # Waiters still queued that are no reconnect (`first_connects`).
        self._first = 0
        self._releaser: asyncio.Task[None] | None = None
        self._closed = False  # a stop began: nothing is released any more
        self._last_release = -float("inf")
        # The ramp under way (from its first charger queued to its queue empty again): the
        # chargers it has given a turn, and how many turns (a charger retrying while its
        # CSMS is away takes one per attempt).
        self._started: set[str] = set()
        self._turns = 0
        # (name, clock time) of each release, the newest `RELEASES_KEPT`.
        self.released: deque[tuple[str, float]] = deque(maxlen=RELEASES_KEPT)

    @property
    def paces(self) -> bool:
        return self.rate > 0

    def waiting(self, name: str) -> bool:
        """Whether a connection of that name waits for its turn."""
        return name in self._waiting

    def in_turn_order(self) -> list[str]:
        """The connections waiting, in the order of their turns (a name queued twice, for
        its first connect and a reconnect, is there twice). One cancelled while queued
        stays in the queue until its turn comes, but takes none: it is left out."""
        return [name for name, future, _ in self._queue if not future.done()]

    def first_connects(self) -> int:
        """Connections waiting for their turn that are not a charger's reconnect: while
        the CSMS stays away, the reconnects of a large fleet may keep the ramp busy."""
        return self._first

    def progress(self) -> tuple[int, int] | None:
        """(started, of) the chargers of the ramp under way; None when none is. A charger
        counts once however many turns it takes."""
        if not self._started and not self._waiting:
            return None
        fresh = sum(1 for name in self._waiting if name not in self._started)
        return len(self._started), len(self._started) + fresh

    def retrying(self) -> int:
        """Chargers of the ramp under way waiting for a turn again: their attempt failed
        (a CSMS still away), or their connection was lost since."""
        return sum(1 for name in self._waiting if name in self._started)

    async def turn(self, name: str, *, reconnect: bool = False) -> None:
        """Until this connection may start (`reconnect`: an attempt of a charger's after
        its first). Cancelled meanwhile, it takes no turn."""
        if not self.paces:
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((name, future, reconnect))
        self._waiting[name] = self._waiting.get(name, 0) + 1
        self._first += not reconnect
        if not self._closed and (self._releaser is None or self._releaser.done()):
            self._releaser = loop.create_task(self._release(), name="connect-ramp")
        try:
            await future
        except asyncio.CancelledError:
            if future.cancelled():  # not released: it leaves the queue
                self._leave(name, reconnect)
            raise

    def _leave(self, name: str, reconnect: bool) -> None:
        self._first -= not reconnect
        left = self._waiting.get(name, 0) - 1
        if left > 0:
            self._waiting[name] = left
        else:
            self._waiting.pop(name, None)

    async def _release(self) -> None:
        """Release the queued connections on the ramp's schedule until the queue is empty."""
        interval = 1.0 / self.rate
        began = self._clock()
        # No sooner than one interval after the last release of a ramp before: chargers
        # queued in waves must not each begin with a free turn.
        if began < self._last_release + interval:
            await asyncio.sleep(self._last_release + interval - began)
        # The schedule's origin is the first release: the k-th comes no earlier than k
        # intervals after it (the origin only ever moves later).
        origin: float | None = None
        count = 0  # released since the ramp began
        logged = began
        said = False
        try:
            while self._queue:
                # One charger's turn (an edit, a small bulk connect) is no ramp worth a log
                # line. Reconnects join one by one as their backoffs run out: a line once a
                # second's worth waits (fewer are released as they come, no storm to tell).
                waiting = len(self._waiting)
                if not said and waiting > 1 and (self._first or waiting >= self.rate):
                    said = True
                    self._log_start(waiting)
                now = self._clock()
                if origin is None:
                    origin = now
                # Behind by more than CATCH_UP_SECONDS (the loop was busy): the schedule
                # moves on, so that what is made up at once stays within that.
                origin = max(origin, now - CATCH_UP_SECONDS - count * interval)
                due = math.floor((now - origin) * self.rate) + 1 - count
                while due > 0 and self._queue:
                    name, future, reconnect = self._queue.popleft()
                    if future.done():  # cancelled while queued: no turn taken
                        continue
                    self._leave(name, reconnect)
                    future.set_result(None)
                    self._started.add(name)
                    self._turns += 1
                    self._last_release = now
                    self.released.append((name, now))
                    count += 1
                    due -= 1
                if now - logged >= LOG_EVERY_SECONDS and self._queue:
                    logged = now
                    started, of = self.progress() or (0, 0)
                    log.info("connect ramp: %s", progress_text(started, of, self.retrying()))
                if self._queue:
                    await asyncio.sleep(max(origin + count * interval - self._clock(), 0.0))
        finally:
            if not self._queue:
                if said:
                    attempts = len(self._started) != self._turns
                    log.info(
                        "connect ramp: %s chargers started connecting in %.1f s%s",
                        f"{len(self._started):,}",
                        self._clock() - began,
                        f" ({self._turns:,} attempts)" if attempts else "",
                    )
                self._started = set()
                self._turns = 0

    def _log_start(self, waiting: int) -> None:
        if self._first:
            log.info(
                "connect ramp: %s chargers to connect, %g a second (about %.0f s)",
                f"{waiting:,}",
                self.rate,
                waiting / self.rate,
            )
        else:  # a reconnect storm: the rest join as their backoffs end
            log.info(
                "connect ramp: chargers reconnect at most %g a second (%s waiting so far)",
                self.rate,
                f"{waiting:,}",
            )

    def close(self) -> asyncio.Task[None] | None:
        """A stop: no queued connection gets a turn any more (the stop cancels their
        tasks). The releaser's task, cancelled, if one runs."""
        self._closed = True
        releaser, self._releaser = self._releaser, None
        if releaser is None or releaser.done():
            return None
        releaser.cancel()
        return releaser
