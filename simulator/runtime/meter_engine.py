"""The meter engine: one periodic tick that advances the chargers whose next event is due.

Event-driven: each charger carries its next wake time (`Charger.meter_wake`, monotonic s),
the earliest of its next heartbeat, its charging connectors' next periodic samples, its next
ClockAlignedDataInterval boundary, and the instant a charging connector reaches its target
SoC (a status change). A tick visits only the chargers due (within half a tick); one visit
advances each connector in a transaction by the time since the charger's own last visit, in
closed form (`battery.advance`: exact however long), then decides Charging / SuspendedEV /
SuspendedEVSE, heartbeats and samples as before, and schedules the next wake. Steady
charging and idle chargers thus cost a visit per event, not per tick. No database query and
no task per EVSE: a fleet of 10,000 chargers is one loop over one float each per tick.

What changes the flow between visits (a status, a plug, a transaction, a profile, a site cap,
a setting) first calls `Charger.settle_meter`: the engine's `settle` brings the charger's
connectors up to the latest tick (as the per-tick engine had them) and the charger is
visited, and scheduled again, on the next tick. A charger with charging profiles is also
visited at the instants its profiles' limits change by time (a period starts, a schedule or
a profile's validity ends; installing or clearing one settles it); chargers whose rated
power, ChargePointMax or site caps are shared among their connectors are visited every
tick only while a connector's curve tapers below what it would draw (its demand, from which
the shares are computed, then moves continuously), otherwise at their events and at the
instant a taper begins.

A clock-aligned sample is dated at its boundary, which lies between two ticks: its register
is interpolated between the registers of those ticks (the power is constant over a step),
so that, in timestamp order, registers never go back. It is taken offline too (the outbox
keeps a transaction's samples), and never inside a transaction that began after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from simulator.core.battery import DC_AMP_REVISIT_S, FULL_EPSILON
from simulator.core.charge_point import CLOCK_STEPPED, Charger
from simulator.core.clock import now_iso, parse_iso
from simulator.core.evse import ConnectorStatus, Evse
from simulator.core.protocol import MeterSample, SampleContext
from simulator.runtime.load_management import UNPLACED_TURN_S, SiteController
from simulator.runtime.metrics import TICK_DURATION, TICK_LAG

log = logging.getLogger(__name__)

LimitFn = Callable[[Charger, Evse], float | None]

# A charger is visited at least this often (seconds, plus its spread below), whatever its
# events: a safety net for a change that did not wake it, cheap at fleet scale (a visit that
# finds nothing due).
MAX_SLEEP_S = 60.0
# The spread of an idle charger's: up to this much later, by a share fixed by its id. A
# fleet that booted in the same few seconds would otherwise be visited in the same tick
# every minute while idle, a burst of the whole fleet's visits where a spread costs a few
# visits a tick. Later, not sooner: a charger sampling every 60 s is woken by its samples,
# and would otherwise be visited once more between two of them.
SAFETY_SPREAD_S = 12.0
_SPREAD_MASK = 4095
_SPREAD_UNIT = SAFETY_SPREAD_S / (_SPREAD_MASK + 1)
# Boundaries one tick may catch up on (a stalled process, a clock stepped forward); older
# ones are not invented.
_MAX_ALIGNED_PER_TICK = 16
_DAY = 86_400
# Enum members the visit compares with, as module names: `Enum.MEMBER` goes through the
# enum metaclass's `__getattr__` hook, a lookup more than a global each time.
_PERIODIC = SampleContext.PERIODIC
_CHARGING = ConnectorStatus.CHARGING
_SUSPENDED_EVSE = ConnectorStatus.SUSPENDED_EVSE


def no_limit(charger: Charger, evse: Evse) -> float | None:
    return None


class _Aligned(NamedTuple):
    """A visit's steps to the clock-aligned boundaries it passed."""

    boundaries: list[int]  # epoch s
    registers: list[list[float]]  # at each boundary, per connector
    rest: dict[int, float]  # connector in a transaction -> the part of dt after the last one
    changed: bool  # something visible changed


def _began_since(charger: Charger, connector_id: int, since: float) -> bool:
    """Whether the connector's transaction began at or after `since` (the engine's time)."""
    tx = charger.transactions.get(connector_id)
    began = None if tx is None else tx.metered_from
    return began is not None and began >= since - 1e-6


class MeterEngine:
    def __init__(
        self,
        chargers: Iterable[Charger],
        tick_seconds: float = 1.0,
        sites: SiteController | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chargers = chargers
        self.sites = sites  # site load management: caps set before the chargers step
        self.tick_seconds = tick_seconds
        self._monotonic = monotonic  # the host's clock, read once a tick and at a settle
        self._last: float | None = None
        # Whether the latest tick read the host's clock (False: its caller gave the time, as
        # a test driving the engine does; then no time passes between ticks).
        self._on_host_clock = False
        self._held_now: float | None = None  # the settles' now in this turn of the loop
        self._last_wall: float | None = None  # wall time (epoch s) of the previous tick
        self.ticks = 0
        self.visits = 0  # charger visits (advances), for tests and the bench
        self._visiting: Charger | None = None
        self._settle = self.settle  # bound once: each visit hands it to its charger
        self._failing: set[str] = set()  # chargers whose step failed (logged once each)

    async def run(self) -> None:
        """Tick until cancelled; a slow tick is measured, not skipped (dt is real time).
        Each tick's lateness and duration go to the metrics (two observations a tick)."""
        next_at = time.monotonic()
        while True:
            started = time.monotonic()
            TICK_LAG.observe(max(started - next_at, 0.0))
            next_at += self.tick_seconds
            try:
                self.tick()
            except Exception:
                log.exception("meter tick failed")
            TICK_DURATION.observe(time.monotonic() - started)
            delay = next_at - time.monotonic()
            if delay < 0:  # overloaded: do not try to catch up with a burst of ticks
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    def tick(self, now: float | None = None, wall: datetime | None = None) -> None:
        self._on_host_clock = now is None
        now = self._monotonic() if now is None else now
        self._last = now
        wall = wall or datetime.now(UTC)
        self.ticks += 1
        stamp = now_iso(wall)  # one sampling instant for the whole tick
        self._last_wall = wall_s = wall.timestamp()  # and its epoch s, read once a tick
        # Visit at the tick nearest to the due time: ticks wake a few ms early or late.
        due = now + self.tick_seconds / 2
        if self.sites is not None:
            try:
                self.sites.apply(self.chargers, now, due)
            except Exception:
                log.exception("site load management failed")
        for charger in self.chargers:
            if charger.meter_wake > due:
                continue  # the common case: one float compared per charger and tick
            at = charger.metered_at
            # No builtin min/max on the visit's path: `max(x, 0.0)` as the comparison it
            # makes, `0.0 if 0.0 > x else x` (the same result, NaN and -0.0 included).
            dt = 0.0 if at is None or now - at < 0.0 else now - at
            try:
                self.advance(charger, dt, now, wall, stamp, charger.metered_wall, wall_s)
            except Exception:
                charger.meter_wake = now + self.tick_seconds  # retried, not every tick twice
                self._failed(charger)

    def settle(self, charger: Charger) -> None:
        """Bring the charger's connectors in a transaction up to now, in closed form
        (`Charger.settle_meter` calls this before something changes the flow). Its next
        visit (the next tick) takes its samples and schedules it again.

        Up to now, not to the latest tick: a transaction that starts between two ticks
        meters from its start (the tick before it is not its time), one that stops meters
        up to its stop, and a connector whose share a new session halves keeps its whole
        share until then. (Driven by a caller's times, the engine knows no time between
        ticks: "now" is the latest tick.)"""
        at, last = charger.metered_at, self._last
        if at is None or last is None or charger is self._visiting:
            return  # nothing to settle, or a change made by the visit itself
        now = self._settle_time(last)
        if now <= at:
            return
        charger.metered_at = now
        if self._last_wall is not None:
            charger.registers_at = self._last_wall + (now - last)
        dt = now - at
        if charger.transactions:
            # A status change inside settles again: it is this settle's own (the host's
            # clock has moved on by then, so `metered_at` alone would not tell).
            visiting, self._visiting = self._visiting, charger
            try:
                for connector_id in list(charger.transactions):
                    charger.step_connector(charger.evses[connector_id - 1], dt)
            finally:
                self._visiting = visiting
            # Registers moved, and unlike a visit, nothing has told the listener.
            charger.listener.on_metered(charger)

    def _settle_time(self, last: float) -> float:
        """The time a settle brings a charger up to: the host's now, one for everything
        that runs in this turn of the event loop. An operation settles, changes its state
        (a car paused, its flow stopped), then changes a status, which settles again: at
        a later now, that settle would step the changed state as if it had held, and a
        paused car's flow come back."""
        if not self._on_host_clock:
            return last
        now = self._held_now
        if now is None:
            now = self._monotonic()
            try:
                asyncio.get_running_loop().call_soon(self._release_now)
                self._held_now = now
            except RuntimeError:
                pass  # no event loop (a test stepping it by hand): each settle reads it
        return now if now > last else last

    def _release_now(self) -> None:
        self._held_now = None

    def _failed(self, charger: Charger) -> None:
        """One charger's failure costs that charger's step, never the rest of the fleet's
        tick; its traceback is logged once, not every second."""
        if charger.id in self._failing:
            log.debug("%s: meter step failed again", charger.id, exc_info=True)
            return
        self._failing.add(charger.id)
        log.exception("%s: meter step failed (further failures are logged at DEBUG)", charger.id)

    def advance(
        self,
        charger: Charger,
        dt: float,
        now: float,
        wall: datetime,
        stamp: str | None = None,
        since: float | None = None,
        wall_s: float | None = None,
    ) -> None:
        """One visit of one charger: advance its connectors by `dt`, heartbeat and sample
        what is due, schedule its next visit. `since` is the wall time (epoch s) of its
        last visit; `wall_s`, `wall`'s (the tick reads it once for all its visits)."""
        self.visits += 1
        self._visiting = charger
        if wall_s is None:
            wall_s = wall.timestamp()
        try:
            self._visit(charger, dt, now, wall, stamp, since, wall_s)
        finally:
            self._visiting = None

    def _visit(
        self,
        charger: Charger,
        dt: float,
        now: float,
        wall: datetime,
        stamp: str | None,
        since: float | None,
        wall_s: float,
    ) -> None:
        # At 1 s sampling every charging charger is visited every tick: the common case (no
        # clock-aligned boundary, no heartbeat due) allocates nothing and asks little.
        charger.meter_settle = self._settle
        charger.metered_at = now
        charger.registers_at = wall_s
        offset = charger.clock_offset
        if offset:
            # Its clock was set by the CSMS's currentTime: its timestamps and clock-aligned
            # boundaries go by that clock, not by the tick's shared one.
            wall_s += offset
            wall += timedelta(seconds=offset)
            if stamp is not None:
                stamp = now_iso(charger.skewed(wall))
        elif stamp is not None and charger.impairments.clock_skew_s:
            stamp = now_iso(charger.skewed(wall))  # its clock is off (a fault injected)
        charger.metered_wall = wall_s
        if now >= charger.next_heartbeat and charger.heartbeat_due(now):
            charger.send_heartbeat()
        changed = False
        config = charger.config
        settings = config.meter or config.meter_settings()  # kept until a change
        interval = settings.aligned_interval
        boundaries = (
            self._aligned_boundaries(charger, interval, wall_s, since) if interval > 0 else None
        )
        periodic: list[int] | None = None
        # Asked once a visit (`_next_wake` takes it): a call into the profile store.
        profiled = bool(charger.transactions) and len(charger.profiles) > 0
        before = charger.limits
        if charger.transactions and (charger.power_shared or profiled):
            sites = self.sites
            turn_s = UNPLACED_TURN_S if sites is None else sites.turn_s(charger.spec.location_id)
            charger.refresh_limits(charger.demand_w(), turn_s, now)
        elif charger.limits:
            charger.drop_limits()
        if profiled and dt > 0.0 and charger.limits != before:
            # A profile's period began since the last visit (it is visited then): the time
            # up to now ran at the limits as they were, and the new ones apply from now.
            # But a session that began since (its settle brought the charger up to its
            # start) had no limits "as they were": its profiles held from its start.
            after = charger.limits
            charger.limits = {
                c: limit
                for c, limit in after.items()
                if c not in before and _began_since(charger, c, now - dt)
            } | before
            aligned = (
                self._step_to_boundaries(charger, boundaries, dt, wall_s) if boundaries else None
            )
            for connector_id in list(charger.transactions):
                rest = dt if aligned is None else aligned.rest.get(connector_id, dt)
                changed |= charger.step_connector(charger.evses[connector_id - 1], rest)
            charger.limits = after
            dt, left = 0.0, None
        else:
            aligned = (
                self._step_to_boundaries(charger, boundaries, dt, wall_s) if boundaries else None
            )
            left = None if aligned is None else aligned.rest
        half_tick = self.tick_seconds / 2
        for connector_id in list(charger.transactions):
            evse = charger.evses[connector_id - 1]
            rest = dt if left is None else left.get(connector_id, dt)
            changed |= charger.step_connector(evse, rest)
            # Sample at the tick nearest to the due time: ticks wake a few ms early or
            # late, and `now >= due` alone would push a sample due now to the next tick.
            if charger.sample_due(connector_id, now, half_tick, settings.sample_interval):
                if periodic is None:
                    periodic = [connector_id]
                else:
                    periodic.append(connector_id)
        if aligned is not None:
            changed |= aligned.changed
            # Before this tick's periodic samples: the queue stays in timestamp order.
            self._send_aligned(charger, aligned.boundaries, aligned.registers)
        if periodic is not None:
            measurands = settings.sampled_data
            stop_sampled = settings.stop_sampled_data
            for connector_id in periodic:
                charger.send_meter_values(connector_id, _PERIODIC, measurands, stamp)
                if stop_sampled:
                    charger.keep_periodic_sample(connector_id, stop_sampled, stamp)
        if changed:
            charger.listener.on_change(charger)
        charger.meter_wake = self._next_wake(charger, now, wall_s, interval, profiled)

    @staticmethod
    def _step_to_boundaries(
        charger: Charger, boundaries: list[int], dt: float, wall_s: float
    ) -> _Aligned:
        """Advance each connector in a transaction to each clock-aligned boundary in turn.

        A connector stands at `wall_s - dt` (a settle may have moved it past the last
        visit), or at its transaction's start if that is later (nothing flowed before it).
        """
        changed = False
        at_boundaries = [[evse.register_wh for evse in charger.evses] for _ in boundaries]
        left: dict[int, float] = {}
        for connector_id, tx in list(charger.transactions.items()):
            evse = charger.evses[connector_id - 1]
            origin, rest = max(wall_s - dt, _epoch(tx.started_at)), dt
            for registers, boundary in zip(at_boundaries, boundaries, strict=True):
                piece = min(max(boundary - origin, 0.0), rest)
                if piece > 0:
                    changed |= charger.step_connector(evse, piece)
                    rest -= piece
                    origin += piece
                registers[connector_id - 1] = evse.register_wh
            left[connector_id] = rest
        return _Aligned(boundaries, at_boundaries, left, changed)

    def _next_wake(
        self, charger: Charger, now: float, wall_s: float, interval: int, profiled: bool
    ) -> float:
        """When the charger must be visited next (monotonic s): its earliest event.
        `interval`: its ClockAlignedDataInterval (s), as the visit read it; `profiled`:
        whether it is in a transaction with a charging profile installed, as the visit
        found it."""
        tick = self.tick_seconds
        if charger.transactions:
            wake = now + MAX_SLEEP_S  # its samples come sooner, as a rule: no spread to pay
        else:  # (a str keeps its hash: no hashing here)
            wake = now + MAX_SLEEP_S + (hash(charger.id) & _SPREAD_MASK) * _SPREAD_UNIT
        heartbeat = charger.next_heartbeat
        if heartbeat > now:  # past: offline or not booted; going online wakes it
            wake = heartbeat if heartbeat < wake else wake
        if interval > 0:
            seconds = int(wall_s)
            midnight = seconds - seconds % _DAY
            boundary = min(
                midnight + ((seconds - midnight) // interval + 1) * interval, midnight + _DAY
            )
            wake = min(wake, now + (boundary - wall_s))
        if not charger.transactions:
            return wake
        # Shared power (the rated power, a site's caps) is shared by demand: constant, and
        # so are the shares, until a connector's curve tapers below what it would draw.
        shared = charger.power_shared
        if profiled:
            # A profile's limit changes at its periods' starts (and when it is installed or
            # cleared, which settles the charger): visited then. A ChargePointMax is shared
            # by demand, as the rated power is.
            change = charger.seconds_to_limit_change(wake - now)
            if change is not None:
                wake = min(wake, now + change)
            if charger.spec.power_type == "DC" and any(
                limit.amp_cap is not None for limit in charger.limits.values()
            ):
                # An amp limit's power follows the pack voltage, which the closed form
                # between two visits holds fixed.
                wake = min(wake, now + DC_AMP_REVISIT_S)
            shared = shared or len(charger.transactions) > 1
        for due in charger.next_sample.values():
            if due and due < wake:  # min(wake, due)
                wake = due
        for connector_id in charger.transactions:
            evse = charger.evses[connector_id - 1]
            status = evse.status
            if status is _CHARGING:
                battery = evse.battery
                if battery is None:
                    return now + tick
                # `is_full` and `energy_to_target_wh`, inline: on every visit of a
                # charging connector.
                soc, target = battery.soc, battery.target_soc
                if soc >= target - FULL_EPSILON:
                    return now + tick  # its status changes on the next visit
                # The exact instant only when it could come first: at most the EVSE's
                # power flows, so the target is not reached sooner than this.
                spec = battery.spec
                # (max(x, 0.0) and max(y, 1e-9), as comparisons.)
                missing = 0.0 if target - soc < 0.0 else target - soc
                to_target_wh = missing * spec.capacity_kwh * 10.0 / spec.efficiency
                most_w = evse.max_power_w
                soonest = to_target_wh * 3600.0 / (1e-9 if most_w < 1e-9 else most_w)
                if now + soonest < wake:
                    wake = min(wake, now + charger.seconds_to_target(evse))
                if shared:
                    steady = charger.seconds_to_demand_change(evse)
                    if steady <= 0:
                        return now + tick  # tapering: the shares move every tick
                    wake = min(wake, now + steady)
            elif status is _SUSPENDED_EVSE:
                return now + tick  # the next visit decides whether it charges again
        return wake

    @staticmethod
    def _aligned_boundaries(
        charger: Charger, interval: int, wall_s: float, since: float | None
    ) -> list[int]:
        """The boundaries (epoch s) of a ClockAlignedDataInterval of `interval` s (> 0)
        passed since the last tick.

        Boundaries are counted from midnight UTC, as OCPP 1.6 aligns them. The first tick
        of a charger only finds its place; a boundary before the previous tick is not
        invented (nothing was measured there). After a clock step the boundaries are the
        new clock's from the step's instant on (`Charger._sync_clock`).
        """
        seconds = int(wall_s)
        midnight = seconds - seconds % _DAY
        slot = midnight + (seconds - midnight) // interval * interval
        if slot == charger.last_clock_slot:
            return []
        last = charger.pass_clock_slot(slot)
        if last == CLOCK_STEPPED and since is not None:
            last = int(since)  # the step's instant on the new clock (`_sync_clock`)
        if not last or since is None or slot < last:
            return []
        found: list[int] = []
        boundary = slot
        while boundary > last and boundary > since and len(found) < _MAX_ALIGNED_PER_TICK:
            found.append(boundary)
            boundary -= interval
            if boundary < midnight:  # the previous day's grid differs if 86400 % interval
                break
        found.reverse()
        return found

    def _send_aligned(
        self, charger: Charger, boundaries: list[int], registers: list[list[float]]
    ) -> None:
        """Clock-aligned samples at each boundary passed since the last visit, oldest
        first, each with the registers at that boundary (`registers`, per boundary per
        connector). A boundary before its connector's transaction began is not part of
        it: it goes out as a sample without a transaction (online only).
        """
        measurands = charger.config_list("MeterValuesAlignedData")
        stop_aligned = charger.config_list("StopTxnAlignedData")
        online = charger.online
        for index, evse in enumerate(charger.evses):
            tx = charger.transactions.get(evse.connector_id)
            if tx is None and not online:
                continue  # only a transaction's samples are kept while offline
            started = _epoch(tx.started_at) if tx is not None else 0.0
            for boundary, at_boundary in zip(boundaries, registers, strict=True):
                inside = tx is not None and boundary >= started
                if not inside and not online:
                    continue
                register = at_boundary[index]
                stamp = now_iso(charger.skewed(datetime.fromtimestamp(boundary, UTC)))
                charger.send_meter_values(
                    evse.connector_id,
                    SampleContext.CLOCK,
                    measurands,
                    stamp,
                    register_wh=register,
                    outside_transaction=not inside,
                )
                if inside and tx is not None and stop_aligned:
                    charger.keep_aligned_sample(
                        tx,
                        MeterSample(
                            stamp,
                            SampleContext.CLOCK,
                            charger.readings(evse, stop_aligned, register_wh=register),
                        ),
                    )


def _epoch(timestamp: str) -> float:
    """An OCPP timestamp as epoch seconds (0 if unreadable: then it does not bound)."""
    try:
        return parse_iso(timestamp).timestamp()
    except ValueError:
        return 0.0
