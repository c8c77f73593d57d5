"""The web side of an event stream: subscribe at every worker, renew, relay as SSE.

A stream has a group of its own (`contract.stream_group`) and asks every shard's worker to
publish the events that match to it (`contract.events_subscribe`), renewing the lease
every WATCH_RENEW_SECONDS; a worker whose lease was not renewed stops by itself, so a
stream that died without a word costs a worker at most one lease. Each event becomes one
Server-Sent Event with an id `<stream>:<n>`, n counting up from 1 on this stream; a
comment goes out when nothing else has for KEEPALIVE_SECONDS, so that proxies keep the
connection open. A stream whose client left is parked for its `resume` seconds: a reconnect
with the Last-Event-ID it was sent takes it up where it was (`Stream`, `resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
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
# How long a stream whose client left is kept for its reconnect, unless the request says
# (`resume`); and the most it may say.
RESUME_SECONDS = 30.0
RESUME_MAX_SECONDS = 300.0
# Events a stream keeps of those it sent, to send again to a reconnect whose connection
# lost some on the way (those in the sockets' buffers when it broke).
RECENT_EVENTS = 1_000
# How long a reconnect waits for the response still serving its stream to notice that its
# client left (a connection that broke without a word is noticed at the next write).
TAKEOVER_SECONDS = 2.0
UNRESUMED = (
    "This stream could not be resumed from the Last-Event-ID sent (held no longer than its "
    "`resume` seconds, another web process's, or this one restarted): this is a new stream, "
    "and the events since that id are not in it; read them in the message log."
)
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


class Stream:
    """One client's event stream: its subscription at the workers, what it has sent, and
    whose it is. It outlives the response that serves it by `resume` seconds, so that the
    client's reconnect (SSE's `Last-Event-ID`) takes it up where it was: the events of that
    time wait in its inbox and its channel (the layer's capacity counts what did not fit),
    and those already sent but maybe not received are sent again from `recent`."""

    def __init__(
        self,
        layer: Any,
        subscribe: contract.EventsSubscribe,
        shards: int,
        *,
        owner: Hashable = None,
        key: Hashable = None,
        resume: float = 0.0,
    ) -> None:
        self.layer, self.subscribe, self.shards = layer, subscribe, shards
        self.owner, self.key, self.resume = owner, key, resume
        self.token = secrets.token_hex(8)  # names it in its event ids; not its group
        self.channel = ""
        self.last_id = 0
        self.recent: deque[tuple[int, bytes]] = deque(maxlen=RECENT_EVENTS)
        self._started: dict[int, float] = {}  # shard -> when its worker started (summaries)
        self._through: dict[int, int] = {}  # shard -> its worker's count at its last batch
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(INBOX_BATCHES)
        self._receiver: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._free = asyncio.Event()  # set while no response serves it (parked)
        self._expiry: asyncio.TimerHandle | None = None
        self._ended = False

    async def join(self) -> None:
        """Called by the view before the response starts: a layer that cannot be reached is
        then a 503, where inside the stream it left the client waiting for headers."""
        self.channel = await join(self.layer, self.subscribe)

    async def serve(
        self,
        *,
        keepalive: float | None = None,
        allowed: Callable[[], Awaitable[bool]] | None = None,
        check_every: float | None = None,
        after: int | None = None,
        unresumed: str | None = None,
    ) -> AsyncIterator[bytes]:
        """The stream's bytes for one response, until the client goes away (the server then
        cancels it; the stream is parked for `resume` seconds), or until `allowed()`, asked
        every `check_every` seconds, says its caller may no longer watch (a token revoked
        since): then a last `revoked` event ends it. `after`: the id the client last had,
        when this response takes the stream up again; `unresumed`: the Last-Event-ID of a
        stream that could not be, said in the stream's first event."""
        keepalive = KEEPALIVE_SECONDS if keepalive is None else keepalive
        check_every = ACCESS_CHECK_SECONDS if check_every is None else check_every
        layer, subscribe, shards = self.layer, self.subscribe, self.shards
        group = subscribe["subscription"]
        if not self.channel:
            await self.join()
        loop = asyncio.get_running_loop()
        ended = False
        try:
            if self._receiver is None:
                self._receiver = asyncio.create_task(
                    _receive(layer, self.channel, self._inbox), name=f"sse:{group}"
                )
                if self.resume > 0:
                    _streams[self.token] = self
                await _tell_workers(layer, subscribe, shards)
                # Renewed whether the reader reads or not: in the stream's loop, the renewal
                # waited while a stalled reader held the stream still, and the workers
                # forgot the stream.
                self._renewer = asyncio.create_task(
                    keep_watching(
                        layer,
                        self.channel,
                        lambda: (subscribe["subscription"], contract.FLEET_SUMMARY_GROUP),
                        lambda: _tell_workers(layer, subscribe, shards),
                        what=f"event stream {group}",
                    ),
                    name="renew",
                )
                yield f"retry: {RETRY_MILLISECONDS}\n: subscribed\n\n".encode()
            else:
                yield f"retry: {RETRY_MILLISECONDS}\n: resumed\n\n".encode() + self._replay(
                    self.last_id if after is None else after
                )
            if unresumed is not None:
                yield self._emit("not_resumed", {"last_event_id": unresumed, "detail": UNRESUMED})
            check_at = loop.time() + check_every
            # A keep-alive after `keepalive` seconds without anything sent, not at each of
            # the access checks and lease renewals the waits also end for.
            quiet_until = loop.time() + keepalive
            while True:
                try:
                    due = min(quiet_until, check_at) if allowed is not None else quiet_until
                    message = await asyncio.wait_for(self._inbox.get(), max(due - loop.time(), 0.0))
                except TimeoutError:
                    message = None
                if allowed is not None and loop.time() >= check_at:
                    if not await allowed():
                        ended = True
                        yield self._emit("revoked", {"detail": REVOKED})
                        return
                    check_at = loop.time() + check_every
                if message is None:
                    if loop.time() >= quiet_until:
                        yield b": keep-alive\n\n"
                        quiet_until = loop.time() + keepalive
                    continue
                chunk = await self._take(message)
                if chunk:
                    yield chunk
                    quiet_until = loop.time() + keepalive
        finally:
            if ended or self.resume <= 0:
                # Shielded: the server cancels this generator when the client leaves, and
                # the workers should hear of it now rather than when the lease runs out.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.end())
            else:
                self._park(loop)

    async def _take(self, message: dict[str, Any]) -> bytes:
        """The SSE text of one message from the layer (b"" for none)."""
        if message.get("type") == contract.EVENT_FLEET_SUMMARY:
            # A worker new to this stream, or restarted: the subscription lived in the
            # memory of the one before (or reached nobody), so it is sent again now, not at
            # the next renewal (30 s of its events lost). A restart also says that events
            # went missing meanwhile.
            restarted = _worker_restarted(self._started, message)
            if restarted is not None:
                await _tell_workers(self.layer, self.subscribe, self.shards)
            if restarted:
                return self._emit("restarted", {"shard": message["shard"], "detail": GAP})
            return b""
        if message.get("stopping") and isinstance(message.get("shard"), int):
            # Its worker stopped: the next one of the shard is a restart, also when this
            # stream never had a summary of the one that stopped.
            self._started[message["shard"]] = STOPPED_WORKER
        return b"".join(self._emit(name, data) for name, data in _events(message, self._through))

    def _emit(self, name: str, data: dict[str, Any]) -> bytes:
        self.last_id += 1
        # orjson writes one line (newlines in strings are escaped), as SSE's data field needs.
        chunk = b"id: %s:%d\nevent: %s\ndata: %s\n\n" % (
            self.token.encode(),
            self.last_id,
            name.encode(),
            orjson.dumps(data),
        )
        if self.resume > 0:  # else nothing takes it up
            self.recent.append((self.last_id, chunk))
        return chunk

    def _replay(self, after: int) -> bytes:
        """What was sent after the client's last event id: sent again, those the previous
        connection may have lost on the way; or, when `recent` no longer holds them all, a
        `dropped` event counting them (the ids still count up)."""
        if after >= self.last_id:
            return b""
        held = [chunk for n, chunk in self.recent if n > after]
        if len(held) == self.last_id - after:
            return b"".join(held)
        return self._emit("dropped", {"dropped": self.last_id - after})

    def _park(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._ended:
            return
        self._free.set()
        self._expiry = loop.call_later(self.resume, self._expire)

    def _expire(self) -> None:
        if self._free.is_set():  # not taken up meanwhile
            task = asyncio.get_running_loop().create_task(self.end())
            _ending.add(task)
            task.add_done_callback(_ending.discard)

    async def take_up(self) -> bool:
        """For a reconnect: True once no other response serves the stream (the old one is
        given TAKEOVER_SECONDS to notice that its client left) and it has not ended."""
        if not self._free.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._free.wait(), TAKEOVER_SECONDS)
        if self._ended or not self._free.is_set():
            return False
        self._free.clear()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        return True

    async def end(self) -> None:
        """Unsubscribed at every worker and gone from the layer's groups; not resumable."""
        if self._ended:
            return
        self._ended = True
        _streams.pop(self.token, None)
        if self._expiry is not None:
            self._expiry.cancel()
        for task in (self._receiver, self._renewer):
            if task is not None:
                task.cancel()
        if self.channel:
            await _end(self.layer, self.subscribe["subscription"], self.channel, self.shards)


# The streams of this process that a reconnect may take up, by token: served or parked.
_streams: dict[str, Stream] = {}
_ending: set[asyncio.Task[None]] = set()  # expired streams ending (a reference each)


async def resume(last_event_id: str, owner: Hashable, key: Hashable) -> tuple[Stream, int] | None:
    """The stream a client's `Last-Event-ID` names, taken up for a new response, and the
    last event id the client had; None when it cannot be: not this process's, ended (its
    `resume` time ran out), another caller's, other filters, an id it never sent, or still
    served by a response that has not noticed its client left."""
    token, sep, number = last_event_id.strip().partition(":")
    if not sep or not number.isdigit():
        return None
    stream = _streams.get(token)
    if stream is None or stream.owner != owner or stream.key != key:
        return None
    after = int(number)
    if after > stream.last_id or not await stream.take_up():
        return None
    return stream, after


async def end_all() -> None:
    """Every stream of this process ended now (the workers told), served or parked."""
    for stream in list(_streams.values()):
        with contextlib.suppress(Exception):
            await stream.end()


async def join(layer: Any, subscribe: contract.EventsSubscribe) -> str:
    """A channel in the stream's group. Called by the view before the response starts: a
    layer that cannot be reached is then a 503, where inside the stream it left the client
    waiting for headers that never came."""
    channel: str = await layer.new_channel()
    await layer.group_add(subscribe["subscription"], channel)
    # The workers' summaries say when each started: a restarted one is subscribed again.
    await layer.group_add(contract.FLEET_SUMMARY_GROUP, channel)
    return channel


def _events(message: dict[str, Any], through: dict[int, int]) -> list[tuple[str, dict[str, Any]]]:
    """The events of one batch from a worker, as (name, data). What was missed before the
    batch comes first, as a `dropped` event: those the worker says it dropped, and the
    events of batches lost on the way (the layer drops what a full channel cannot take),
    read from the gap in the shard's count (`through`: each shard's count at its last batch
    here); then a `lapsed` event if the worker had let the subscription lapse (its count
    starts again then, as a restarted worker's does)."""
    if message.get("type") != contract.EVENT_EVENTS_BATCH:
        return []
    events = message.get("events") or ()
    dropped = message.get("dropped") or 0
    shard, count = message.get("shard"), message.get("through")
    if isinstance(shard, int) and isinstance(count, int):
        before = through.get(shard)
        lost = count - len(events) - dropped - before if before is not None else 0
        # Below 0: the count started again (`restarted` or `lapsed` says why).
        dropped += max(lost, 0)
        through[shard] = count
    parts: list[tuple[str, dict[str, Any]]] = []
    if dropped:
        parts.append(("dropped", {"dropped": dropped}))
    lapsed = message.get("lapsed")
    if isinstance(lapsed, int | float):
        # Events the worker never collected: no count can say how many.
        since = datetime.fromtimestamp(lapsed, UTC).strftime(ISO)
        parts.append(("lapsed", {"shard": shard, "since": since, "detail": LAPSED}))
    parts.extend((event["kind"], _shown(event)) for event in events)
    if message.get("stopping"):
        parts.append(("stopped", {"shard": shard, "detail": STOPPED}))
    return parts


def _shown(event: contract.StreamEvent) -> dict[str, Any]:
    """An event as a client reads it: the time as ISO 8601 (UTC), as the message log shows
    it (a frame's `at` the same text in both)."""
    return {**event, "at": shown_at(event["at"])}


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
