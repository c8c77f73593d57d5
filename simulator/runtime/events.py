"""Publishing engine state to the channel layer: small idempotent snapshots, throttled.

The layer drops messages when a receiver is over capacity, so we publish whole snapshots
(never deltas) of the chargers that changed, at most `rate` times a second per charger,
and keep a bounded in-memory log of OCPP frames per charger for the message-log view.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any

from simulator import contract
from simulator.contract.failures import layer_errors
from simulator.core.charge_point import Charger, Listener, LocalTransaction
from simulator.core.drops import DROPPED
from simulator.core.session_series import SessionSeries
from simulator.ocpp16.redaction import may_hold_secret, redact_frame
from simulator.runtime.event_stream import EventStream
from simulator.runtime.outage import Outage

log = logging.getLogger(__name__)

# How many of a charger's newest security events its page shows.
SECURITY_EVENTS_SHOWN = 5

# What a log entry costs besides its text: the tuple, the float and the str header.
_ENTRY_OVERHEAD = 150


def snapshot(charger: Charger, *, series: bool = False) -> contract.ChargerSnapshot:
    """The full, idempotent state of one charger as the dashboard shows it; with `series`,
    each connector's session series too (a page's first snapshot, not every one)."""
    clock = charger.clock
    left = charger.offline_until - clock.monotonic()
    network = charger.impairments.network
    waiting = charger.firmware_waiting
    return contract.ChargerSnapshot(
        id=charger.spec.db_id,
        charge_point_id=charger.id,
        location_id=charger.spec.location_id,
        link=charger.link.value,
        link_error=charger.link_error_now(),
        in_service=charger.in_service,
        setup_at=charger.setup_at,
        offline_until=round(clock.time() + left, 1) if left > 0 else None,
        network=contract.NetworkSnapshot(
            latency_ms=network.latency_ms,
            jitter_ms=network.jitter_ms,
            drop_rate=network.drop_rate,
        ),
        boot=charger.boot.value,
        power_type=charger.spec.power_type,
        evses=[
            contract.EvseSnapshot(
                connector_id=evse.connector_id,
                status=str(evse.status),
                error_code=evse.error_code,
                info=evse.info,
                power_w=round(evse.power_w, 1),
                register_wh=round(evse.register_wh, 1),
                soc=None if evse.soc is None else round(evse.soc, 1),
                voltage_v=[round(v, 1) for v in evse.voltage_v],
                current_a=[round(a, 2) for a in evse.current_a],
                transaction_id=evse.transaction_id,
                id_tag=evse.id_tag,
                vehicle=evse.battery.spec.name if evse.battery is not None else None,
                session=_session(evse.session, series),
                authorization_expires_at=_authorization_expiry(charger, evse.connector_id),
            )
            for evse in charger.evses
        ],
        reservations=[
            contract.ReservationSnapshot(
                reservation_id=r.reservation_id,
                connector_id=r.connector_id,
                id_tag=r.id_tag,
                parent_id_tag=r.parent_id_tag,
                expiry=r.expiry,
            )
            for r in charger.reservations
        ],
        local_list_version=charger.local_list_version(),
        local_list_size=len(charger.local_list),
        auth_cache_size=len(charger.auth_cache) if charger.auth_cache.enabled else None,
        firmware_version=charger.spec.firmware_version,
        firmware_status=str(charger.firmware_status),
        firmware_waiting=waiting[0] if waiting else None,
        # The date on the charger's clock, on the host's as the page counts down (and as
        # the clock stands now: a step since the request moves it).
        firmware_waiting_until=(
            round(waiting[1] - charger.wall_time() + clock.time(), 1)
            if waiting and waiting[1] is not None
            else None
        ),
        diagnostics_status=str(charger.diagnostics_status),
        log_status=str(charger.log_status),
        log_request_id=charger.log_request_id,
        security_events=[
            contract.SecurityEventSnapshot(
                type=event.kind,
                timestamp=event.timestamp,
                tech_info=event.tech_info,
                sent=event.sent,
            )
            for event in charger.security_log.last(SECURITY_EVENTS_SHOWN)
        ],
        at=time.time(),
    )


def _session(session: SessionSeries | None, series: bool) -> contract.SessionSnapshot | None:
    if session is None:
        return None
    ended = session.ended_at
    shown = contract.SessionSnapshot(
        started_at=round(session.started_at, 1),
        ended_at=None if ended is None else round(ended, 1),
        start_wh=session.start_wh,
    )
    if series:
        shown["points"] = session.points()
    return shown


def _authorization_expiry(charger: Charger, connector_id: int) -> float | None:
    if connector_id not in charger.pending_authorizations:
        return None
    return charger.authorization_expires.get(connector_id)


class FrameLog(deque[tuple[float, str, str]]):
    """A charger's newest frames in the dashboard's log, (time, direction, redacted text),
    and what they cost in bytes (`_ENTRY_OVERHEAD` each besides the text)."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0


# Chargers published at once in a flush: up to twice as many sends in flight (a snapshot and
# a log each), well under a Redis connection pool's 100 (redis-py's default), which the
# worker's commands and streams share. At 50 a burst (a fleet-wide RemoteStart, a page of
# chargers sampling on one clock-aligned instant) ran the pool out of connections.
CHUNK = 10


class EventPublisher(Listener):
    def __init__(self, rate: float = 2.0, log_limit: int = 100, log_bytes: int = 24 * 1024) -> None:
        self.rate = rate
        self.log_limit = log_limit
        self.log_bytes = log_bytes
        self._dirty: dict[str, Charger] = {}
        self.frames: dict[str, FrameLog] = {}
        self._new_frames: dict[str, list[tuple[float, str, str]]] = {}
        # Charger pk -> lease expiry (monotonic). By pk, and whether or not this worker runs
        # the charger yet: a page that shows a disabled charger must see it come online when
        # it is enabled (or added) without waiting for the page's next renewal.
        self.watched: dict[int, float] = {}
        # Of those, the chargers a page watches with their message log (a charger page; the
        # fleet page shows no log): pk -> lease expiry. Frames go only to these: sent to
        # every watched charger's group, the fleet page's consumer took two messages per
        # change and dropped one, and in a busy spell (a connect ramp) its counts queued
        # behind them for seconds.
        self.logged: dict[int, float] = {}
        # Watched chargers seen changing: those in a session are settled at each flush, so
        # that their page follows the meter every tick, not at its events only.
        self._shown: dict[int, Charger] = {}
        # The API's event streams (nothing is collected while none subscribes).
        self.stream = EventStream()
        self._outage = Outage("publishing to pages", log, known=layer_errors())

    def watch(
        self,
        pk: int,
        lease: float = contract.WATCH_LEASE_SECONDS,
        *,
        charger: Charger | None = None,
        log: bool = True,
    ) -> None:
        """A page shows this charger: publish its snapshots until the lease runs out. Given
        the `charger` (running here), it follows the meter every tick from now, not from
        its next change: one in a session resumed at boot, before the page asked, changed
        next at its next sample (a minute away), and its chart stayed empty until then.
        `log`: the page shows its message log, so its new frames are published too."""
        expiry = time.monotonic() + lease
        self.watched[pk] = expiry
        if log:
            self.logged[pk] = expiry
        if charger is not None:
            self._shown[pk] = charger

    def on_change(self, charger: Charger) -> None:
        self._dirty[charger.id] = charger
        pk = charger.spec.db_id
        if pk is not None and pk in self.watched:
            self._shown[pk] = charger
        if self.stream.active:
            self.stream.on_change(charger)

    # Its page shows how many idTags the cache holds.
    on_auth_cache = on_change

    def on_transaction(self, charger: Charger, tx: LocalTransaction) -> None:
        self._dirty[charger.id] = charger
        if self.stream.active:
            self.stream.on_transaction(charger, tx)

    def on_connection(self, charger: Charger, event: str, detail: dict[str, Any]) -> None:
        """A connection event (connected, closed with its code, reconnecting, a network
        cut...) goes into the charger's log with its frames, as direction "event"."""
        if self.stream.active:
            self.stream.on_connection(charger, event, detail)
        if self.log_limit > 0:
            text = json.dumps({"event": event, **detail}, default=str)
            self._keep(charger, (time.time(), contract.LOG_EVENT, text))

    def on_frame(
        self, charger: Charger, direction: str, text: str, message_id: str = "", action: str = ""
    ) -> None:
        """Keep the newest frames of each charger, at most `log_limit` of them and about
        `log_bytes` of text (always the newest one): at fleet scale a full log of 100
        MeterValues frames would be most of a charger's memory."""
        if self.stream.active:
            self.stream.on_frame(charger, direction, text, message_id, action)
        if self.log_limit <= 0:
            return
        # Redacted here, so that neither the log nor a page it is sent to ever holds the
        # AuthorizationKey or a URL password (`redact_frame` only for the rare frame that may).
        if may_hold_secret(text):
            text = redact_frame(text)
        self._keep(charger, (time.time(), direction, text))

    def log_frame(
        self,
        charger: Charger,
        direction: str,
        text: str,
        message_id: str,
        action: str,
        at: float,
        shown: str,
    ) -> None:
        """`on_frame` for the checkpoint writer in front of this publisher, which has read
        the frame's time `at` and redacted its text into `shown` already (one entry for
        both logs): the same effect without a second clock read and secret test."""
        if self.stream.active:
            self.stream.on_frame(charger, direction, text, message_id, action)
        limit = self.log_limit
        if limit <= 0:
            return
        # `self._keep(charger, (at, direction, shown))` inlined: this is every frame's second
        # Python call into the dashboard's log (tests/test_frame_logs_shared.py holds both to
        # the same reference bound).
        entry = (at, direction, shown)
        cid = charger.id
        frames = self.frames.get(cid)
        if frames is None:
            frames = self.frames[cid] = FrameLog()
        frames.append(entry)
        size = frames.size + len(shown) + _ENTRY_OVERHEAD
        count = len(frames)
        cap = self.log_bytes
        if count > 1 and (size > cap or count > limit):  # a full log: once per frame at scale
            full = count
            while True:
                size -= len(frames.popleft()[2]) + _ENTRY_OVERHEAD
                count -= 1
                if count <= 1 or (count <= limit and size <= cap):
                    break
            DROPPED["message_log"] += full - count
        frames.size = size
        watched = self.watched
        if watched and (pk := charger.spec.db_id) in watched:
            if pk in self.logged:
                self._new_frames.setdefault(cid, []).append(entry)
            self._dirty.setdefault(cid, charger)

    def _keep(self, charger: Charger, entry: tuple[float, str, str]) -> None:
        cid = charger.id
        frames = self.frames.get(cid)
        if frames is None:
            frames = self.frames[cid] = FrameLog()
        frames.append(entry)
        size = frames.size + len(entry[2]) + _ENTRY_OVERHEAD
        count = len(frames)
        limit, cap = self.log_limit, self.log_bytes
        if count > 1 and (size > cap or count > limit):  # a full log: once per frame at scale
            full = count
            while True:
                size -= len(frames.popleft()[2]) + _ENTRY_OVERHEAD
                count -= 1
                if count <= 1 or (count <= limit and size <= cap):
                    break
            DROPPED["message_log"] += full - count  # the entries popped
        frames.size = size
        watched = self.watched
        if watched and (pk := charger.spec.db_id) in watched:
            if pk in self.logged:
                self._new_frames.setdefault(cid, []).append(entry)
            self._dirty.setdefault(cid, charger)

    async def run(self, layer: Any) -> None:
        """Flush changed chargers to their groups, `rate` times a second at most."""
        period = 1.0 / self.rate
        while True:
            await asyncio.sleep(period)
            try:
                await self.flush(layer)
            except Exception:
                log.exception("publishing events failed")

    async def flush(self, layer: Any, chunk: int = CHUNK) -> None:
        """Send each changed charger's snapshot (and new frames) to its group.

        Built and sent in small chunks that yield to the event loop in between, so that a
        flush of thousands of chargers never holds up an OCPP answer for long; within a
        chunk the sends go out concurrently (on Redis each one is a round trip). Pages that
        show many chargers follow their chargers' groups and the periodic fleet summary.
        """
        if self.stream.subscriptions:
            await self.stream.flush(layer)
        dirty, self._dirty = self._dirty, {}
        frames, self._new_frames = self._new_frames, {}
        now = time.monotonic()
        watched = self.watched
        for expired in [pk for pk, expiry in watched.items() if expiry < now]:
            del watched[expired]
        logged = self.logged
        for expired in [pk for pk, expiry in logged.items() if expiry < now]:
            del logged[expired]
        shown = self._shown
        for gone in [key for key in shown if key not in watched]:
            del shown[gone]
        for live in shown.values():
            if live.transactions:
                # The meter visits a charger at its events (a sample may be a minute
                # away): one a page shows is brought up to the latest tick and visited on
                # the next, whose change is published by the next flush.
                live.settle_meter()
        # Snapshots nobody watches are not built: at fleet scale they were a fifth of the
        # worker's CPU. The frame log is still kept for a page that connects later.
        chargers = [c for c in dirty.values() if c.spec.db_id in watched]
        failed: list[tuple[Charger, list[tuple[float, str, str]] | None]] = []
        failure: BaseException | None = None
        for start in range(0, len(chargers), chunk):
            sends = []
            owners: list[tuple[Charger, list[tuple[float, str, str]] | None]] = []
            for charger in chargers[start : start + chunk]:
                pk = charger.spec.db_id
                assert pk is not None  # filtered above: only chargers from the database
                group = contract.charger_group(pk)
                sends.append(layer.group_send(group, contract.charger_state(snapshot(charger))))
                owners.append((charger, None))
                # Kept for a page that shows the log, if its lease has not run out since.
                new = frames.get(charger.id) if pk in logged else None
                if new:
                    log_event = contract.charger_log(pk, new[-self.log_limit :])
                    sends.append(layer.group_send(group, log_event))
                    owners.append((charger, new))
            results = await asyncio.gather(*sends, return_exceptions=True)
            for owner, result in zip(owners, results, strict=True):
                if isinstance(result, Exception):
                    failed.append(owner)
                    failure = result
                elif isinstance(result, BaseException):
                    raise result  # cancelled: the flush goes with its task
            await asyncio.sleep(0)
        if failure is not None:
            self._again(failed, failure)
        elif self._outage.ongoing:
            self._outage.recovered()

    def _again(
        self,
        failed: list[tuple[Charger, list[tuple[float, str, str]] | None]],
        failure: BaseException,
    ) -> None:
        """What the layer refused (Redis down, or its pool out of connections in a burst)
        goes with the next flush: a charger's snapshot is built again then, its new log
        entries are kept ahead of those logged since. Said once an outage, not per flush."""
        for charger, entries in failed:
            self._dirty.setdefault(charger.id, charger)
            if entries is not None:
                since = self._new_frames.get(charger.id, [])
                self._new_frames[charger.id] = [*entries, *since][-self.log_limit :]
        self._outage.failed(failure)
