"""The web side of an event stream: subscribe at every worker, renew, relay as SSE.

A stream has a group of its own (`contract.stream_group`) and asks every shard's worker to
publish the events that match to it (`contract.events_subscribe`), renewing the lease
every WATCH_RENEW_SECONDS; a worker whose lease was not renewed stops by itself, so a
stream that died without a word costs a worker at most one lease. Each event becomes one
Server-Sent Event with an id that counts up from 1 on this stream; a comment goes out
when nothing else has for KEEPALIVE_SECONDS, so that proxies keep the connection open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from chargers.message_log import shown_at
from chargers.watch_lease import keep_watching
from simulator import contract

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
# The client reconnects after this many milliseconds if the connection drops.
RETRY_MILLISECONDS = 3_000
# Batches waiting to be written to the client; beyond this the stream is behind and the
# layer's own capacity drops the rest (the next batch that arrives says how many events
# were lost: `_events` reads the gap in the workers' counts).
INBOX_BATCHES = 100
ISO = "%Y-%m-%dT%H:%M:%S.%fZ"
# How often an open stream asks whether its caller may still watch (a revoked token, a
# user deactivated or without the permission now): the longest a revoked caller still
# receives events.
ACCESS_CHECK_SECONDS = 5.0
REVOKED = "The credentials this stream was opened with are no longer valid."
GAP = (
    "The worker of this shard restarted: its events from before it heard this stream "
    "again (a session it ended at its start, say) are not in the stream; read them in the "
    "message log."
)
LAPSED = (
    "This stream's subscription at the worker of this shard ran out before the worker heard "
    "it renewed (the renewals were lost on the way, say): its events from `since` until "
    "now are not in the stream; read them in the message log."
)
STOPPED_WORKER = -1.0  # a shard's start time in `sse` once its worker said it stopped
STOPPED = (
    "The worker of this shard stopped: no events of its chargers until it runs again (the "
    "stream then says `restarted`)."
)


def subscription(
    *, chargers: list[int] | None, locations: list[int] | None, kinds: list[str]
) -> contract.EventsSubscribe:
    """A new stream's subscription, under a group name nobody can guess."""
    return contract.events_subscribe(
        contract.stream_group(secrets.token_hex(16)),
        chargers=chargers,
        locations=locations,
        kinds=kinds,
        lease=contract.WATCH_LEASE_SECONDS,
    )


async def sse(
    layer: Any,
    subscribe: contract.EventsSubscribe,
    shards: int,
    *,
    keepalive: float | None = None,
    allowed: Callable[[], Awaitable[bool]] | None = None,
    check_every: float | None = None,
    channel: str | None = None,
) -> AsyncIterator[bytes]:
    """The stream's bytes, until the client goes away (the server then cancels it), or
    until `allowed()`, asked every `check_every` seconds, says its caller may no longer
    watch (a token revoked since the stream opened): then a last `revoked` event ends it."""
    keepalive = KEEPALIVE_SECONDS if keepalive is None else keepalive
    check_every = ACCESS_CHECK_SECONDS if check_every is None else check_every
    group = subscribe["subscription"]
    if channel is None:  # else `join` took it, before the response began
        channel = await join(layer, subscribe)
    started: dict[int, float] = {}  # shard -> when its worker started, from its summaries
    through: dict[int, int] = {}  # shard -> its worker's event count at its last batch here
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(INBOX_BATCHES)
    receiver = asyncio.create_task(_receive(layer, channel, inbox), name=f"sse:{group}")
    renewer: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    try:
        await _tell_workers(layer, subscribe, shards)
        # Renewed whether the reader reads or not: in the stream's loop, the renewal waited
        # while a stalled reader held the stream still, and the workers forgot the stream.
        renewer = asyncio.create_task(
            keep_watching(
                layer,
                channel,
                lambda: (subscribe["subscription"], contract.FLEET_SUMMARY_GROUP),
                lambda: _tell_workers(layer, subscribe, shards),
                what=f"event stream {group}",
            ),
            name="renew",
        )
        check_at = loop.time() + check_every
        yield f"retry: {RETRY_MILLISECONDS}\n: subscribed\n\n".encode()
        last_id = 0
        # A keep-alive after `keepalive` seconds without anything sent, not at each of the
        # access checks and lease renewals the waits also end for.
        quiet_until = loop.time() + keepalive
        while True:
            try:
                due = min(quiet_until, check_at) if allowed is not None else quiet_until
                message = await asyncio.wait_for(inbox.get(), max(due - loop.time(), 0.0))
            except TimeoutError:
                message = None
            if allowed is not None and loop.time() >= check_at:
                if not await allowed():
                    last_id += 1
                    yield _sse(last_id, "revoked", {"detail": REVOKED})
                    return
                check_at = loop.time() + check_every
            if message is None:
                if loop.time() >= quiet_until:
                    yield b": keep-alive\n\n"
                    quiet_until = loop.time() + keepalive
                continue
            if message.get("type") == contract.EVENT_FLEET_SUMMARY:
                # A worker new to this stream, or restarted: the subscription lived in the
                # memory of the one before (or reached nobody), so it is sent again now,
                # not at the next renewal (30 s of its events lost). A restart also says
                # that events went missing meanwhile.
                restarted = _worker_restarted(started, message)
                if restarted is not None:
                    await _tell_workers(layer, subscribe, shards)
                if restarted:
                    last_id += 1
                    yield _sse(last_id, "restarted", {"shard": message["shard"], "detail": GAP})
                    quiet_until = loop.time() + keepalive
                continue
            if message.get("stopping") and isinstance(message.get("shard"), int):
                # Its worker stopped: the next one of the shard is a restart, also when
                # this stream never had a summary of the one that stopped.
                started[message["shard"]] = STOPPED_WORKER
            chunk, last_id = _events(message, last_id, through)
            if chunk:
                yield chunk
                quiet_until = loop.time() + keepalive
    finally:
        receiver.cancel()
        if renewer is not None:
            renewer.cancel()
        # Shielded: the server cancels this generator when the client leaves, and the
        # workers should hear of it now rather than when the lease runs out.
        with contextlib.suppress(Exception):
            await asyncio.shield(_end(layer, group, channel, shards))


async def join(layer: Any, subscribe: contract.EventsSubscribe) -> str:
    """A channel in the stream's group. Called by the view before the response starts: a
    layer that cannot be reached is then a 503, where inside the stream it left the client
    waiting for headers that never came."""
    channel: str = await layer.new_channel()
    await layer.group_add(subscribe["subscription"], channel)
    # The workers' summaries say when each started: a restarted one is subscribed again.
    await layer.group_add(contract.FLEET_SUMMARY_GROUP, channel)
    return channel


def _events(message: dict[str, Any], last_id: int, through: dict[int, int]) -> tuple[bytes, int]:
    """The SSE text of one batch from a worker, and the last event id used. What was
    missed before the batch comes first, as a `dropped` event: those the worker says it
    dropped, and the events of batches lost on the way (the layer drops what a full
    channel cannot take), read from the gap in the shard's count (`through`: each shard's
    count at its last batch here); then a `lapsed` event if the worker had let the
    subscription lapse (its count starts again then, as a restarted worker's does)."""
    if message.get("type") != contract.EVENT_EVENTS_BATCH:
        return b"", last_id
    events = message.get("events") or ()
    dropped = message.get("dropped") or 0
    shard, count = message.get("shard"), message.get("through")
    if isinstance(shard, int) and isinstance(count, int):
        before = through.get(shard)
        lost = count - len(events) - dropped - before if before is not None else 0
        # Below 0: the count started again (`restarted` or `lapsed` says why).
        dropped += max(lost, 0)
        through[shard] = count
    parts = []
    if dropped:
        last_id += 1
        parts.append(_sse(last_id, "dropped", {"dropped": dropped}))
    lapsed = message.get("lapsed")
    if isinstance(lapsed, int | float):
        # Events the worker never collected: no count can say how many.
        last_id += 1
        since = datetime.fromtimestamp(lapsed, UTC).strftime(ISO)
        parts.append(_sse(last_id, "lapsed", {"shard": shard, "since": since, "detail": LAPSED}))
    for event in events:
        last_id += 1
        parts.append(_sse(last_id, event["kind"], _shown(event)))
    if message.get("stopping"):
        last_id += 1
        parts.append(_sse(last_id, "stopped", {"shard": shard, "detail": STOPPED}))
    return b"".join(parts), last_id


def _shown(event: contract.StreamEvent) -> dict[str, Any]:
    """An event as a client reads it: the time as ISO 8601 (UTC), as the message log shows
    it (a frame's `at` the same text in both)."""
    return {**event, "at": shown_at(event["at"])}


def _sse(event_id: int, name: str, data: dict[str, Any]) -> bytes:
    # orjson writes one line (newlines in strings are escaped), as SSE's data field needs.
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, name.encode(), orjson.dumps(data))


async def _receive(layer: Any, channel: str, inbox: asyncio.Queue[dict[str, Any]]) -> None:
    # Redis away: one line when it starts and one when it ends, and waits that grow to 5 s,
    # not a line every half second for every open stream.
    wait, failing_since = 0.5, None
    loop = asyncio.get_running_loop()
    while True:
        try:
            message = await layer.receive(channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis away, or its read timeout on a quiet stream
            if failing_since is None:
                failing_since = loop.time()
                log.info("event stream: receiving failed (%s); retrying", type(exc).__name__)
            await asyncio.sleep(wait)
            wait = min(wait * 2, 5.0)
            continue
        if failing_since is not None:
            log.info("event stream: receiving again after %.1f s", loop.time() - failing_since)
            wait, failing_since = 0.5, None
        await inbox.put(message)


def _worker_restarted(started: dict[int, float], message: dict[str, Any]) -> bool | None:
    """From a worker's fleet summary: None if its worker is the one known already, False if
    it is new to this stream, True if it replaced another (the worker restarted)."""
    shard, now_started = message.get("shard"), message.get("started")
    if not isinstance(shard, int) or not isinstance(now_started, int | float):
        return None
    before = started.get(shard)
    if before == now_started:
        return None
    started[shard] = now_started
    return before is not None


async def _tell_workers(
    layer: Any, message: contract.EventsSubscribe | contract.EventsUnsubscribe, shards: int
) -> None:
    for shard in range(shards):
        await layer.group_send(contract.engine_group(shard), message)


async def _end(layer: Any, group: str, channel: str, shards: int) -> None:
    await _tell_workers(layer, contract.events_unsubscribe(group), shards)
    await layer.group_discard(group, channel)
    await layer.group_discard(contract.FLEET_SUMMARY_GROUP, channel)
