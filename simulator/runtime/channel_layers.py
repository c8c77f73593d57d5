"""The channel layers of settings.CHANNEL_LAYERS, counting what they drop.

Both layers drop a message silently when its channel is full: `group_send` swallows the
`ChannelFull` of each member (in memory) or only logs how many members were over capacity
(Redis); a plain `send` raises it. The engine publishes idempotent snapshots so that a
drop costs nothing lasting, but a person watching a load test wants to know that pages or
API callers are missing updates: these subclasses count each refused message under
`channel_layer_full` (`simulator.core.drops`, exported by `simulator.runtime.metrics`).

Named by path in the settings (as Channels loads a backend), like the logging filters.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer

from simulator.core.drops import dropped


class CountingInMemoryChannelLayer(InMemoryChannelLayer):
    """Channels' in-memory layer; its `group_send` goes through `send` for each member."""

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        try:
            await super().send(channel, message)
        except ChannelFull:
            dropped("channel_layer_full")
            raise

    def waiting(self, channel: str, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` of the messages already waiting on `channel`, in order, taken
        without waiting (a consumer's `receive` takes one per turn of the event loop, and
        costs about three turns: while the loop is busy, a page that had fifty waiting got
        them over seconds). An expired one is dropped and its channel taken out of its
        groups, as `receive` (its `_clean_expired`) does: the page joins them again.

        The channel's queue stays in `channels` even when this empties it: the consumer's
        own `receive` may be waiting on that queue object, and a new one made by the next
        `send` would never reach it. That `receive` removes the queue when it ends."""
        queue = self.channels.get(channel)
        if queue is None:
            return []
        now = time.time()
        taken: list[dict[str, Any]] = []
        while len(taken) < limit and not queue.empty():
            expires, message = queue.get_nowait()
            if expires >= now:
                taken.append(message)
            else:
                self._remove_from_groups(channel)
        return taken


class CountingRedisChannelLayer(RedisChannelLayer):
    """channels-redis; its `group_send` runs in Redis and is counted by `CountGroupDrops`."""

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        try:
            await super().send(channel, message)
        except ChannelFull:
            dropped("channel_layer_full")
            raise


# channels_redis.core.RedisChannelLayer.group_send: "%s of %s channels over capacity in
# group %s", with the number of members that did not get the message first.
_OVER_CAPACITY = "channels over capacity"
_COUNTED = "chargesim_drops_counted"  # set on a record once its drops are counted


class CountGroupDrops(logging.Filter):
    """A filter on the `channels_redis.core` logger: the only trace of a Redis `group_send`
    that full members did not get is this INFO record, so its count is taken from it. The
    logger is set to INFO in the settings so that the record is made whatever LOG_LEVEL
    says; the filter lets it through only if the root logger's level would have."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Configuring logging again (dictConfig adds a logger's filters without removing
        # those it had) attaches this filter twice: a record is counted once, by the first.
        if (
            _OVER_CAPACITY in str(record.msg)
            and isinstance(record.args, tuple)
            and record.args
            and not getattr(record, _COUNTED, False)
        ):
            setattr(record, _COUNTED, True)
            count = record.args[0]
            if isinstance(count, int) and count > 0:
                dropped("channel_layer_full", count)
        return record.levelno >= logging.getLogger().getEffectiveLevel()
