"""A charger's timeline: its file transfers and the waits on its clock, in the order they
happened on the loop, so that a test sees a retry wait its interval on the charger's own
clock instead of timing the host (no wall-clock assertion in the suite)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from simulator.core.timers import Handle, LoopClock
from simulator.runtime.transfers import FileTransfers


class Timeline:
    def __init__(self) -> None:
        self.events: list[str] = []

    def of(self, *kinds: str) -> list[str]:
        """The events that are one of `kinds` ("download", "wait 1", "waited 1", ...)."""
        return [event for event in self.events if event in kinds]


class TimelineClock(LoopClock):
    """The real clock, noting each timer set ("wait 1") and each that went off ("waited 1")
    on the timeline."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        self.timeline.events.append(f"wait {delay:g}")

        def went_off() -> None:
            self.timeline.events.append(f"waited {delay:g}")
            callback()

        return super().call_later(delay, went_off)


class StoppedDateClock(TimelineClock):
    """A `TimelineClock` whose date (`time()`) stands still at `date` while its timers run
    on the loop: a wait for a date the test gives relative to the charger's own
    (`Charger.wall_time()`) is then exactly that many seconds, whatever the host took."""

    def __init__(self, timeline: Timeline, date: float) -> None:
        super().__init__(timeline)
        self.date = date

    def time(self) -> float:
        return self.date


class StoppedClock(TimelineClock):
    """A `TimelineClock` whose monotonic time stands still while its timers run on the
    loop: a wait the charger works out on it from a moment it read before (a Reset's grace
    from its answer, a frame's latency from its sending) is then exactly what it was
    meant to be, whatever the host took meanwhile. (Nothing on it falls due by itself:
    for a test of one such wait, not of a charger's heartbeats.)"""

    def __init__(self, timeline: Timeline) -> None:
        super().__init__(timeline)
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now


class TimelineTransfers(FileTransfers):
    """Real transfers (`FileTransfers`), each attempt noted ("download", "upload") as it
    starts."""

    def __init__(self, timeline: Timeline, **options: Any) -> None:
        super().__init__(**options)
        self.timeline = timeline

    async def download(self, url: str, *, ca_bundle: str = "") -> bytes:
        self.timeline.events.append("download")
        return await super().download(url, ca_bundle=ca_bundle)

    async def upload(
        self, url: str, file_name: str, data: bytes, *, method: str = "PUT", ca_bundle: str = ""
    ) -> None:
        self.timeline.events.append("upload")
        await super().upload(url, file_name, data, method=method, ca_bundle=ca_bundle)
