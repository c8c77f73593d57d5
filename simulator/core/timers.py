"""Time as the core sees it: an injected clock, and named per-connector timers on it.

Everything the charge point schedules (ConnectionTimeOut, MinimumStatusDuration, the
driver walking back to unplug, the outbox's retry wake-up) goes through a `Clock`, so a
test can replace the event loop's clock with one it advances by hand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class Handle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, intervals)."""
        ...

    def time(self) -> float:
        """Wall-clock epoch seconds (the charge point's own idea of the date)."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        """Run `callback` once after `delay` seconds, unless cancelled."""
        ...


class LoopClock:
    """The real clock: time.monotonic/time.time, callbacks on the running asyncio loop.

    The loop's own clock is time.monotonic, so deadlines computed here and the loop's
    timers agree."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        return asyncio.get_running_loop().call_later(delay, callback)


class Timers:
    """Named timers, at most one per (name, connector): starting one again restarts it.

    A callback that raises one of `expected` (a local action no longer possible, say) is
    logged and forgotten: a timer has nobody to report to."""

    def __init__(
        self, clock: Clock, owner: str, expected: tuple[type[Exception], ...] = ()
    ) -> None:
        self.clock = clock
        self.owner = owner
        self.expected = expected
        self._handles: dict[tuple[str, int], Handle] = {}

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._handles

    def start(
        self, name: str, connector_id: int, delay: float, callback: Callable[[int], None]
    ) -> None:
        self.cancel(name, connector_id)

        def fire() -> None:
            self._handles.pop((name, connector_id), None)
            try:
                callback(connector_id)
            except self.expected as exc:
                log.info("%s: timer %s on connector %d: %s", self.owner, name, connector_id, exc)

        self._handles[(name, connector_id)] = self.clock.call_later(delay, fire)

    def cancel(self, name: str, connector_id: int) -> None:
        handle = self._handles.pop((name, connector_id), None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()


async def sleep(clock: Clock, seconds: float) -> None:
    """`asyncio.sleep` on an injected clock: a test's clock decides when it ends."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    handle = clock.call_later(seconds, wake)
    try:
        await waiter
    finally:
        handle.cancel()
