"""A live watch kept alive: the workers' lease and the channel's groups, renewed by a task
of their own every WATCH_RENEW_SECONDS.

A dashboard page's socket (`chargers.dashboard.consumers`) and an API event stream
(`api.event_stream`) hear the workers through channel-layer groups, and a worker publishes
to them only while their lease lasts (WATCH_LEASE_SECONDS). Both are renewed here, apart
from the task that reads and writes, so that a reader held up (one that stopped reading, a
consumer busy) lets neither lapse. The groups are joined again each time too: the in-memory
layer drops a channel from all its groups once a message has waited in it past its expiry
(a minute: a consumer busy that long, a process held up, a laptop asleep), and every layer
forgets members after its group expiry (a day); nothing tells the channel either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from simulator import contract

log = logging.getLogger(__name__)


async def keep_watching(
    layer: Any,
    channel: str,
    groups: Callable[[], Collection[str]],
    renew: Callable[[], Awaitable[None]],
    *,
    what: str,
) -> None:
    """Every WATCH_RENEW_SECONDS, until cancelled: join `channel` to `groups()` again, then
    `renew()` the workers' lease. `groups` is asked each time (a page changes what it
    watches); a round that fails (the layer away) is tried again at the next, never ends
    the renewals. `what` names the watch in the log."""
    while True:
        await asyncio.sleep(contract.WATCH_RENEW_SECONDS)
        try:
            wanted = set(groups())
            for group in wanted:
                await layer.group_add(group, channel)
            # A group left meanwhile (a page no longer showing a charger) is left again.
            for group in wanted - set(groups()):
                await layer.group_discard(group, channel)
            await renew()
        except Exception as exc:  # the layer away: its reader says so; the next round retries
            log.debug("%s: renewing its watch failed (%s)", what, type(exc).__name__)
