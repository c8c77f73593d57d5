"""The meter engine: one periodic tick that advances every EVSE of every live charger.

Per tick and charger: heartbeat when due; for each connector in a transaction, the physics
step (power from the vehicle and the limits in force, energy into the register, SoC), the
Charging / SuspendedEV / SuspendedEVSE decision, and MeterValues when the connector's
MeterValueSampleInterval or the charger's ClockAlignedDataInterval comes round. No
database query and no task per EVSE: a fleet of 10,000 chargers is one loop.

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
from datetime import UTC, datetime

from simulator.core.charge_point import Charger
from simulator.core.clock import now_iso, parse_iso
from simulator.core.evse import Evse
from simulator.core.protocol import MeterSample, SampleContext
from simulator.runtime.load_management import SiteController
from simulator.runtime.metrics import TICK_DURATION, TICK_LAG

log = logging.getLogger(__name__)

LimitFn = Callable[[Charger, Evse], float | None]

# Boundaries one tick may catch up on (a stalled process, a clock stepped forward); older
# ones are not invented.
_MAX_ALIGNED_PER_TICK = 16
_DAY = 86_400


def no_limit(charger: Charger, evse: Evse) -> float | None:
    return None


class MeterEngine:
    def __init__(
        self,
        chargers: Iterable[Charger],
        tick_seconds: float = 1.0,
        sites: SiteController | None = None,
    ) -> None:
        self.chargers = chargers
        self.sites = sites  # site load management: caps set before the chargers step
        self.tick_seconds = tick_seconds
        self._last: float | None = None
        self._last_wall: float | None = None  # wall time (epoch s) of the previous tick
        self.ticks = 0
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
        now = time.monotonic() if now is None else now
        dt = 0.0 if self._last is None else max(now - self._last, 0.0)
        self._last = now
        wall = wall or datetime.now(UTC)
        self.ticks += 1
        stamp = now_iso(wall)  # one sampling instant for the whole tick
        since, self._last_wall = self._last_wall, wall.timestamp()
        if self.sites is not None:
            try:
                self.sites.apply(self.chargers)
            except Exception:
                log.exception("site load management failed")
        for charger in self.chargers:
            try:
                self.advance(charger, dt, now, wall, stamp, since)
            except Exception:
                self._failed(charger)

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
    ) -> None:
        """One step of one charger; `since` is the wall time (epoch s) of the last step."""
        if stamp is not None and charger.impairments.clock_skew_s:
            stamp = now_iso(charger.skewed(wall))  # its clock is off (a fault injected)
        if charger.heartbeat_due(now):
            charger.send_heartbeat()
        changed = False
        boundaries = self._aligned_boundaries(charger, wall, since)
        before = [evse.register_wh for evse in charger.evses] if boundaries else None
        periodic: list[int] | None = None
        if charger.transactions and (charger.power_shared or len(charger.profiles)):
            charger.refresh_limits(charger.demand_w())
        elif charger.limits:
            charger.drop_limits()
        half_tick = self.tick_seconds / 2
        for connector_id in list(charger.transactions):
            evse = charger.evses[connector_id - 1]
            changed |= charger.step_connector(evse, dt)
            # Sample at the tick nearest to the due time: ticks wake a few ms early or
            # late, and `now >= due` alone would push a sample due now to the next tick.
            if charger.sample_due(connector_id, now, half_tick):
                if periodic is None:
                    periodic = [connector_id]
                else:
                    periodic.append(connector_id)
        if boundaries and before is not None and since is not None:
            # Before this tick's periodic samples: the queue stays in timestamp order.
            self._send_aligned(charger, boundaries, before, since, wall.timestamp())
        if periodic is not None:
            measurands = charger.config_list("MeterValuesSampledData")
            for connector_id in periodic:
                charger.send_meter_values(connector_id, SampleContext.PERIODIC, measurands, stamp)
        if changed:
            charger.listener.on_change(charger)

    @staticmethod
    def _aligned_boundaries(charger: Charger, wall: datetime, since: float | None) -> list[int]:
        """The ClockAlignedDataInterval boundaries (epoch s) passed since the last tick.

        Boundaries are counted from midnight UTC, as OCPP 1.6 aligns them. The first tick
        of a charger only finds its place; a boundary before the previous tick is not
        invented (nothing was measured there).
        """
        interval = charger.config.as_int("ClockAlignedDataInterval")
        if interval <= 0:
            return []
        seconds = int(wall.timestamp())
        midnight = seconds - seconds % _DAY
        slot = midnight + (seconds - midnight) // interval * interval
        if slot == charger.last_clock_slot:
            return []
        last = charger.pass_clock_slot(slot)
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
        self,
        charger: Charger,
        boundaries: list[int],
        before: list[float],
        since: float,
        wall_s: float,
    ) -> None:
        """Clock-aligned samples at each boundary in (since, wall_s], oldest first.

        The register at a boundary is interpolated between the one before this tick's
        step (at `since`, or at the transaction's start if that came later) and the one
        after it (at `wall_s`). A boundary before its connector's transaction began is
        not part of it: it goes out as a sample without a transaction (online only).
        """
        measurands = charger.config_list("MeterValuesAlignedData")
        stop_aligned = charger.config_list("StopTxnAlignedData")
        online = charger.online
        for evse, register_before in zip(charger.evses, before, strict=True):
            tx = charger.transactions.get(evse.connector_id)
            if tx is None and not online:
                continue  # only a transaction's samples are kept while offline
            started = _epoch(tx.started_at) if tx is not None else since
            origin = max(since, started)
            span = wall_s - origin
            gained = evse.register_wh - register_before
            for boundary in boundaries:
                inside = tx is not None and boundary >= started
                if not inside and not online:
                    continue
                share = (boundary - origin) / span if span > 0 else 1.0
                register = register_before + gained * min(max(share, 0.0), 1.0)
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
