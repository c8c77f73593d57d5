"""What a dashboard page's socket has yet to send, while the page is not reading.

A page that stops reading (a frozen tab, a laptop asleep with its connection open, a slow
link) makes the consumer's `send` wait (chargesim_site/daphne_backpressure.py). Meanwhile
the engine keeps publishing: its snapshots are whole states, so of each thing (a charger,
the fleet's counts, a site's power) only the newest needs to reach the page, and it takes
the place of the older one in the queue. What is not a snapshot (a command's result, a
log's frames) waits in order. The page is `too_far_behind` once MAX_BEHIND updates came
since its socket last took one (a slow page that reads keeps taking them; a stalled one
takes none): its socket is then closed, and the page reconnects and gets a full snapshot.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

# Updates that may come while a page's socket takes none before it is closed: a fleet page
# watching 200 charging chargers gets ~200 a second (bench/stalled_dashboard.py).
MAX_BEHIND = 5000


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


class Backlog:
    """A page's messages in the order they came, a snapshot replaced in place by a newer
    one of the same thing."""

    def __init__(self, max_behind: int = MAX_BEHIND) -> None:
        self.max_behind = max_behind
        self.behind = 0  # updates put since the socket last took one
        self._waiting: OrderedDict[Hashable, dict[str, Any]] = OrderedDict()
        self._others = itertools.count()
        self._ready = asyncio.Event()

    def put(self, message: dict[str, Any]) -> None:
        key = snapshot_key(message)
        self._waiting[("once", next(self._others)) if key is None else key] = message
        self.behind += 1
        self._ready.set()

    @property
    def too_far_behind(self) -> bool:
        return self.behind > self.max_behind

    async def take(self) -> dict[str, Any]:
        """The oldest waiting message, once there is one."""
        while not self._waiting:
            self._ready.clear()
            await self._ready.wait()
        _key, message = self._waiting.popitem(last=False)
        self.behind = 0
        return message
