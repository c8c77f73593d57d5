"""A graceful stop lets the conversations in progress finish.

When the stop comes, a charger may have just made a message: a StopTransaction as its
driver leaves, the MeterValues of this second, a StatusNotification. Closing the connection
at once would leave it unsent. A transaction message would still be delivered, but only
at the next start, so a user who stops the simulator and looks at the central system finds
a session open that the simulator has ended; any other message would be lost.

So before the connections close, the stop waits, for a bounded time, until every charger
that can send has had the messages it held at that instant answered. Messages made during
the wait are not waited for: the wait ends even though the meter goes on sampling. A
charger that goes offline meanwhile is given up on. The durability rules stay as they
are: what is not answered by the end stays in the outbox if it is a transaction message.

Not `Charger.drain` once per charger: that one (a reboot's) waits for one charger's whole
queue, new messages included, and says nothing of what was left; here one loop watches the
fleet's snapshot and reports what no answer came for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.core.charge_point import Charger
    from simulator.core.outbox import Outgoing

# How often the wait looks whether the messages have been answered: a stop is rare, and
# an answer from a central system on loopback takes about a millisecond.
POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Drained:
    """What the wait achieved: messages answered, and those still unanswered at its end
    (with the chargers that hold them)."""

    finished: int
    left: int
    chargers_left: tuple[str, ...]

    @property
    def waited_for(self) -> int:
        return self.finished + self.left


async def drain(chargers: Iterable[Charger], within: float, forced: asyncio.Event) -> Drained:
    """Wait until the messages each charger can send now have been answered, for at most
    `within` seconds, or until `forced` is set (a second signal)."""
    loop = asyncio.get_running_loop()
    waiting: dict[Charger, list[Outgoing]] = {}
    for charger in chargers:
        items = charger.outbox.finishing(within)
        if items:
            waiting[charger] = items
    total = sum(len(items) for items in waiting.values())
    until = loop.time() + within
    given_up: dict[Charger, list[Outgoing]] = {}
    while waiting and not forced.is_set():
        left = until - loop.time()
        if left <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(forced.wait(), min(POLL_SECONDS, left))
        for charger, items in list(waiting.items()):
            outbox = charger.outbox
            if not outbox.can_send():
                # Offline now: its link-lost drop took the other messages out of the queue,
                # so what was not seen answered by the last look is counted as unanswered.
                given_up[charger] = items
                del waiting[charger]
                continue
            # Identity, not equality: two MeterValues may be alike to the byte.
            queued = {id(item) for item in outbox.queue}
            items = [item for item in items if id(item) in queued]
            if items:
                waiting[charger] = items
            else:
                del waiting[charger]
    return _summary(total, {**given_up, **waiting})


def _summary(total: int, left: dict[Charger, list[Outgoing]]) -> Drained:
    unanswered = sum(len(items) for items in left.values())
    return Drained(total - unanswered, unanswered, tuple(sorted(c.id for c in left)))
