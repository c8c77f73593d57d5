"""What a dashboard page's socket has yet to send, while the page is not reading.

A page that stops reading (a frozen tab, a laptop asleep with its connection open, a slow
link) makes the consumer's `send` wait (chargesim_site/daphne_backpressure.py). Meanwhile
the engine keeps publishing: its snapshots are whole states, so of each thing (a charger,
the fleet's counts, a site's power) only the newest needs to reach the page, and it takes
the place of the older one in the queue. A charger's message log is added to the frames of
that charger waiting already, of which only the newest LOG_FRAMES_WAITING (the most the page
shows) and about LOG_BYTES_WAITING of text are kept, the others counted as `skipped` (the
page says so): a page that stopped reading held every frame of 5,000 log messages. What is
neither (a command's result, the end of the page's access) waits in order. The page is `too_far_behind` once MAX_BEHIND updates came
since its socket last took one (a slow page that reads keeps taking them; a stalled one
takes none): its socket is then closed, and the page reconnects and gets a full snapshot.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

# Updates that may come while a page's socket takes none before it is closed: a fleet page
# watching 200 charging chargers gets ~200 a second (bench/stalled_dashboard.py).
MAX_BEHIND = 5000
# The log frames of a charger waiting for a page that does not read: the newest that the page
# shows (LOG_ROWS in static/dashboard/live.js), and about as much text as a worker keeps of a
# charger's log (EventPublisher.log_bytes) several times over; the newest frame always.
LOG_FRAMES_WAITING = 500
LOG_BYTES_WAITING = 256 * 1024
LOG = "charger.log"


@dataclass(frozen=True)
class Close:
    """Queued after a page's last message: close its socket with `code`. A class of its own,
    so that no message to the page (a dict, whatever its keys) can be taken for it."""

    code: int


def snapshot_key(message: dict[str, Any]) -> Hashable | None:
    """What a message is a whole state of (a newer one replaces it), or None: it must
    reach the page itself."""
    kind = message.get("type")
    if kind == "charger.state":
        return (kind, message["charger"].get("id"))
    if kind == "fleet.counts":
        return kind
    if kind == "location.power":
        return (kind, message.get("location_id"))
    return None


def with_frames_after(waiting: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """One log message of a charger for `waiting` and the newer `message`: the frames of
    both, the oldest left out (counted in `skipped`) past the bounds of the module's doc."""
    if message.get("full"):  # the whole log: the page starts its table again with it
        frames, skipped, full = list(message["frames"]), 0, True
    else:
        frames = [*waiting["frames"], *message["frames"]]
        skipped, full = waiting.get("skipped", 0), waiting.get("full", False)
    kept = 0
    size = 0
    for frame in reversed(frames):
        size += len(frame[2])
        if kept and (kept == LOG_FRAMES_WAITING or size > LOG_BYTES_WAITING):
            break
        kept += 1
    skipped += len(frames) - kept
    merged = {**message, "frames": frames[len(frames) - kept :], "full": full}
    if skipped:
        merged["skipped"] = skipped
    return merged


class Backlog:
    """A page's messages in the order they came, a snapshot replaced in place by a newer
    one of the same thing, a charger's log frames added to those of it waiting."""

    def __init__(self, max_behind: int = MAX_BEHIND) -> None:
        self.max_behind = max_behind
        self.behind = 0  # updates put since the socket last took one
        self._waiting: OrderedDict[Hashable, dict[str, Any] | Close] = OrderedDict()
        self._others = itertools.count()
        self._ready = asyncio.Event()

    def put(self, message: dict[str, Any]) -> None:
        key = snapshot_key(message)
        if message.get("type") == LOG:
            key = (LOG, message.get("charger"))
            waiting = self._waiting.get(key)
            if isinstance(waiting, dict):
                message = with_frames_after(waiting, message)
        self._waiting[("once", next(self._others)) if key is None else key] = message
        self.behind += 1
        self._ready.set()

    def close(self, code: int) -> None:
        """Close the socket with `code` once the messages put before are sent."""
        self._waiting[("once", next(self._others))] = Close(code)
        self._ready.set()

    @property
    def too_far_behind(self) -> bool:
        return self.behind > self.max_behind

    async def take(self) -> dict[str, Any] | Close:
        """The oldest waiting message, once there is one."""
        while not self._waiting:
            self._ready.clear()
            await self._ready.wait()
        _key, message = self._waiting.popitem(last=False)
        self.behind = 0
        return message
