"""Events for the API's event stream: only while someone listens, only what they asked for.

An API stream subscribes through every shard's group (`contract.events_subscribe`) and
renews its lease; this worker then collects the events that match (status changes,
transactions, frames, connection events of the chargers, locations and kinds asked for)
and sends them to the stream's group in one batch per flush. With no live lease nothing is
collected: each listener method returns at its first test. A stream that falls behind
loses its oldest events, counted in the next batch (`dropped`), never the worker's memory.

A lease runs on the worker's running time: while the worker itself was held up (stopped by
a signal, its loop blocked) the stream's renewals waited unread in its channel, so that
time does not count against them. A subscription that lapsed anyway and is renewed later
says so in its first batch (`lapsed`): its events in between were never collected.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from simulator import contract
from simulator.core.charge_point import Charger, LocalTransaction
from simulator.core.drops import dropped
from simulator.ocpp16 import wire
from simulator.ocpp16.redaction import redact_frame

log = logging.getLogger(__name__)

# Events kept per subscription between two flushes (a flush is every 1/rate s).
PENDING_LIMIT = 10_000
# A frame's text in an event is cut to this many characters (the event says its size).
PAYLOAD_CHARS = 65_536
# Leases longer than this are cut: a stream that died must not keep a worker publishing.
MAX_LEASE_SECONDS = 3_600.0
# A flush this much later than the one before (they come every 1/rate s) means the worker
# was held up: the excess is added to every lease (`EventStream._forgive_stall`).
STALL_SECONDS = 5.0
# Lapsed subscriptions remembered, so that a renewal that starts one again says what was
# missed; the oldest are forgotten beyond this (streams that died without a word).
LAPSED_KEPT = 1_000
_GROUP = re.compile(r"^events\.[A-Za-z0-9]{1,64}$")


@dataclass
class Subscription:
    group: str
    chargers: frozenset[int] | None
    locations: frozenset[int] | None
    kinds: frozenset[str]
    expires: float  # time.monotonic()
    pending: list[contract.StreamEvent] = field(default_factory=list)
    dropped: int = 0
    through: int = 0  # events so far, sent or dropped (`contract.EventsBatch.through`)
    # Started again after it lapsed here: since when (Unix time) nothing was collected.
    lapsed: float | None = None

    def wants(self, kind: str, charger: Charger) -> bool:
        return (
            kind in self.kinds
            and (self.chargers is None or charger.spec.db_id in self.chargers)
            and (self.locations is None or charger.spec.location_id in self.locations)
        )

    def add(self, event: contract.StreamEvent) -> None:
        pending = self.pending
        pending.append(event)
        if len(pending) > PENDING_LIMIT:
            excess = len(pending) - PENDING_LIMIT
            del pending[:excess]
            self.dropped += excess
            dropped("event_stream", excess)


class EventStream:
    def __init__(self, shard: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.shard = shard
        self._clock = clock  # the leases' clock (a test moves it)
        self.subscriptions: dict[str, Subscription] = {}
        # When the last flush ran while subscriptions were live (None: none are).
        self._flushed_at: float | None = None
        # Group -> (when it lapsed, Unix time; its events lost with it), oldest first.
        self._lapsed: dict[str, tuple[float, int]] = {}
        # True while any lease is live: the one test every listener method makes first.
        self.active = False
        # Charger id -> (status, error code) per connector as last seen: a status event is
        # a change from this. Kept only while active.
        self._statuses: dict[str, tuple[tuple[str, str], ...]] = {}

    # -- subscriptions (from the command server) --------------------------------------------

    def subscribe(self, message: dict[str, Any], chargers: Any) -> bool:
        """Start or renew a subscription; False (and nothing changes) for a malformed one.
        `chargers`: the worker's loaded chargers, whose statuses are the starting point."""
        group = message.get("subscription")
        kinds = message.get("kinds")
        lease = message.get("lease")
        if not isinstance(group, str) or not _GROUP.match(group):
            return False
        if not isinstance(kinds, list) or not set(kinds) <= set(contract.STREAM_KINDS):
            return False
        if not isinstance(lease, int | float) or not lease > 0:
            return False
        now = self._clock()
        expires = now + min(float(lease), MAX_LEASE_SECONDS)
        found = self.subscriptions.get(group)
        if found is not None:
            found.expires = expires
            return True
        try:
            wanted_chargers = _ids(message.get("chargers"))
            wanted_locations = _ids(message.get("locations"))
        except (TypeError, ValueError):
            return False
        if not self.active:
            self._statuses = {charger.id: _statuses(charger) for charger in chargers}
            self._flushed_at = now
        sub = Subscription(group, wanted_chargers, wanted_locations, frozenset(kinds), expires)
        lapse = self._lapsed.pop(group, None)
        if lapse is not None:
            # A renewal of one that lapsed: its next batch says so, with what it held then.
            sub.lapsed, sub.dropped = lapse
        self.subscriptions[group] = sub
        self.active = True
        log.info("event stream %s subscribed (%s)", group, ", ".join(sorted(kinds)))
        return True

    def unsubscribe(self, group: Any) -> None:
        if self.subscriptions.pop(group, None) is not None:
            log.info("event stream %s unsubscribed", group)
        self._update_active()

    def _update_active(self) -> None:
        self.active = bool(self.subscriptions)
        if not self.active:
            self._statuses = {}
            self._flushed_at = None

    def _forgive_stall(self, now: float) -> None:
        """Add the time this worker was held up to every lease: the renewals that came
        meanwhile are still unread in its channel (or expired there), and a stream that
        renewed on time must not lose this worker's events for it."""
        last, self._flushed_at = self._flushed_at, now
        if last is None:
            return
        stalled = now - last - STALL_SECONDS
        if stalled <= 0:
            return
        for sub in self.subscriptions.values():
            sub.expires += stalled
        log.warning("this worker was held up for %.0f s: event stream leases extended", stalled)

    def _lapse(self, group: str, sub: Subscription) -> None:
        del self.subscriptions[group]
        self._lapsed[group] = (time.time(), sub.dropped + len(sub.pending))
        while len(self._lapsed) > LAPSED_KEPT:
            del self._lapsed[next(iter(self._lapsed))]
        log.info("event stream %s lapsed (not renewed)", group)

    # -- events (listener side, event loop thread; callers test `active` first) -------------

    def on_change(self, charger: Charger) -> None:
        now = _statuses(charger)
        before = self._statuses.get(charger.id)
        if before == now:
            return
        self._statuses[charger.id] = now
        for index, (status, error_code) in enumerate(now):
            previous = before[index] if before is not None and index < len(before) else None
            if previous is not None and previous[0] == status:
                continue
            data: contract.StatusData = {
                "connector_id": index + 1,
                "status": status,
                "previous": None if previous is None else previous[0],
                "error_code": error_code,
            }
            self._emit("status", charger, data)

    def on_transaction(self, charger: Charger, tx: LocalTransaction) -> None:
        data: contract.TransactionData = {
            "event": "stopped"
            if tx.stopped_at
            else ("confirmed" if tx.transaction_id is not None else "started"),
            "connector_id": tx.connector_id,
            "local_id": tx.local_id,
            "transaction_id": tx.transaction_id,
            "id_tag": tx.id_tag,
            "meter_start": tx.meter_start,
            "meter_stop": tx.meter_stop,
            "started_at": tx.started_at,
            "stopped_at": tx.stopped_at,
            "stop_reason": None if tx.stop_reason is None else str(tx.stop_reason),
        }
        self._emit("transaction", charger, data)

    def on_frame(
        self, charger: Charger, direction: str, text: str, message_id: str, action: str
    ) -> None:
        if not self._wanted("frame", charger):
            return
        refused, malformed = _judged(text, action) if direction == "in" else (None, None)
        text = redact_frame(text)
        data: contract.FrameData = {
            "direction": direction,
            "message_id": message_id[:128],
            "action": action[:128],
            "payload": text[:PAYLOAD_CHARS],
            "size": len(text),
        }
        if refused is not None:
            data["refused"] = refused[:PAYLOAD_CHARS]
        if malformed is not None:
            data["malformed"] = malformed
        self._emit("frame", charger, data)

    def on_connection(self, charger: Charger, event: str, detail: dict[str, Any]) -> None:
        data: contract.ConnectionData = {"event": event, "detail": dict(detail)}
        self._emit("connection", charger, data)

    def _wanted(self, kind: str, charger: Charger) -> bool:
        return any(sub.wants(kind, charger) for sub in self.subscriptions.values())

    def _emit(
        self,
        kind: str,
        charger: Charger,
        data: contract.StatusData
        | contract.TransactionData
        | contract.FrameData
        | contract.ConnectionData,
    ) -> None:
        pk = charger.spec.db_id
        if pk is None:
            return
        event: contract.StreamEvent | None = None
        for sub in self.subscriptions.values():
            if sub.wants(kind, charger):
                if event is None:
                    event = contract.stream_event(
                        kind, time.time(), pk, charger.id, charger.spec.location_id, data
                    )
                sub.add(event)

    # -- publishing --------------------------------------------------------------------------

    async def flush(self, layer: Any, *, stopping: bool = False) -> None:
        """Send each subscription its events; forget those whose lease ran out. `stopping`:
        the worker's last flush, sent to every live subscription, events or not, so that
        each stream can say that this shard's events stop here."""
        now = self._clock()
        self._forgive_stall(now)
        for group, sub in list(self.subscriptions.items()):
            if sub.expires < now:
                self._lapse(group, sub)
                continue
            if not sub.pending and not sub.dropped and sub.lapsed is None and not stopping:
                continue
            events, sub.pending = sub.pending, []
            lost, sub.dropped = sub.dropped, 0
            lapsed, sub.lapsed = sub.lapsed, None
            sub.through += len(events) + lost
            batch = contract.events_batch(
                self.shard, events, lost, sub.through, stopping=stopping, lapsed=lapsed
            )
            try:
                await layer.group_send(group, batch)
            except Exception as exc:  # e.g. the layer's channel is full: the stream is behind
                dropped("event_stream", len(events))
                log.info("event stream %s: batch not delivered (%s)", group, exc)
        self._update_active()


def _judged(text: str, action: str) -> tuple[str | None, str | None]:
    """A frame from the CSMS as the charger read it: why it refused it, when it is a
    CALLRESULT to its `action` CALL that it refused; and why it is no OCPP-J message at all,
    when it is not one (`wire.frame_problem`). Judged on the frame as it came (not
    redacted, not cut), by the charger's own checks: a reader of the stream (a scenario's
    verdict) must not take an answer for good that the charger threw away, nor say "no
    answer" when the CSMS sent one the charger could not read."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None, wire.frame_problem(text)
    malformed = wire.message_problem(message)
    if malformed is not None:
        return None, malformed
    if not action or message[0] != wire.CALLRESULT:
        return None, None
    return wire.answer_refusal(action, message[2]), None


def _statuses(charger: Charger) -> tuple[tuple[str, str], ...]:
    return tuple((str(evse.status), evse.error_code) for evse in charger.evses)


def _ids(raw: Any) -> frozenset[int] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > 100_000:
        raise ValueError("a list of ids")
    return frozenset(int(item) for item in raw)
