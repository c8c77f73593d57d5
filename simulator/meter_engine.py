"""The meter engine: one periodic tick that advances every EVSE of every live charger.

Per tick and charger: heartbeat when due; for each connector in a transaction, the physics
step (power from the vehicle and the limits in force, energy into the register, SoC), the
Charging / SuspendedEV / SuspendedEVSE decision, and MeterValues when the connector's
MeterValueSampleInterval or the charger's ClockAlignedDataInterval comes round. No
database query and no task per EVSE: a fleet of 10,000 chargers is one loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from simulator import battery as physics
from simulator.charger import Charger, Status
from simulator.evse import Evse
from simulator.wire import now_iso

log = logging.getLogger(__name__)

LimitFn = Callable[[Charger, Evse], float | None]


def no_limit(charger: Charger, evse: Evse) -> float | None:
    return None


class MeterEngine:
    def __init__(self, chargers: Iterable[Charger], tick_seconds: float = 1.0) -> None:
        self.chargers = chargers
        self.tick_seconds = tick_seconds
        self._last: float | None = None
        self.ticks = 0

    async def run(self) -> None:
        """Tick until cancelled; a slow tick is measured, not skipped (dt is real time)."""
        next_at = time.monotonic()
        while True:
            next_at += self.tick_seconds
            try:
                self.tick()
            except Exception:
                log.exception("meter tick failed")
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
        for charger in self.chargers:
            self.advance(charger, dt, now, wall, stamp)

    def advance(
        self, charger: Charger, dt: float, now: float, wall: datetime, stamp: str | None = None
    ) -> None:
        if charger.heartbeat_due(now):
            charger.send_heartbeat()
        changed = False
        if len(charger.profiles) and charger.transactions:
            demand = {}
            for connector_id in charger.transactions:
                evse = charger.evses[connector_id - 1]
                if evse.battery is not None and evse.status in (
                    Status.CHARGING,
                    Status.SUSPENDED_EVSE,
                ):
                    demand[connector_id] = operating_point(charger, evse, None).power_w
            charger.refresh_limits(demand)
        elif charger.limits:
            charger.limits = {}
        for connector_id in list(charger.transactions):
            evse = charger.evses[connector_id - 1]
            changed |= self._step(charger, evse, dt)
            due = charger.next_sample.get(connector_id, 0.0)
            # Sample at the tick nearest to the due time: ticks wake a few ms early or
            # late, and `now >= due` alone would push a sample due now to the next tick.
            if due and now >= due - self.tick_seconds / 2:
                interval = charger.config_int("MeterValueSampleInterval")
                charger.next_sample[connector_id] = due + interval if interval else 0.0
                if charger.next_sample[connector_id] and charger.next_sample[connector_id] < now:
                    charger.next_sample[connector_id] = now + interval  # fell behind: resync
                charger.send_meter_values(
                    connector_id,
                    "Sample.Periodic",
                    charger.config_list("MeterValuesSampledData"),
                    stamp,
                )
        self._clock_aligned(charger, wall)
        if changed:
            charger.listener.on_change(charger)

    def _step(self, charger: Charger, evse: Evse, dt: float) -> bool:
        """Advance one connector by dt seconds; True if something visible changed."""
        status = evse.status
        battery = evse.battery
        if battery is None or status not in (Status.CHARGING, Status.SUSPENDED_EVSE):
            if evse.power_w:
                evse.power_w = 0.0
                evse.current_a = ()
                return True
            return False
        limit_w = charger.limit_w(evse)
        point = operating_point(charger, evse, limit_w)
        if point.power_w <= 0.0:
            evse.power_w = 0.0
            evse.current_a = ()
            if battery.is_full():
                charger.set_status(evse, Status.SUSPENDED_EV)
            elif status is Status.CHARGING:
                charger.set_status(evse, Status.SUSPENDED_EVSE)
            return True
        if status is Status.SUSPENDED_EVSE:
            charger.set_status(evse, Status.CHARGING)
        if dt > 0:
            evse.apply(point, dt)
        if evse.battery is not None and evse.battery.is_full() and evse.power_w == 0.0:
            charger.set_status(evse, Status.SUSPENDED_EV)
        return True

    def _clock_aligned(self, charger: Charger, wall: datetime) -> None:
        interval = charger.config_int("ClockAlignedDataInterval")
        if interval <= 0 or not charger.online:
            return
        midnight = wall.replace(hour=0, minute=0, second=0, microsecond=0)
        elapsed = (wall - midnight).total_seconds()
        slot = int(midnight.timestamp()) + int(elapsed // interval) * interval
        if slot == charger.last_clock_slot:
            return
        first = charger.last_clock_slot == 0
        charger.last_clock_slot = slot
        if first:
            return  # the first tick only finds its place; the next boundary sends
        measurands = charger.config_list("MeterValuesAlignedData")
        stamp = datetime.fromtimestamp(slot, UTC)

        stop_aligned = charger.config_list("StopTxnAlignedData")
        limit = charger.config_int("StopTransactionMaxMeterValues")
        for evse in charger.evses:
            charger.send_meter_values(evse.connector_id, "Sample.Clock", measurands, now_iso(stamp))
            tx = charger.transactions.get(evse.connector_id)
            if tx is not None and stop_aligned and len(tx.aligned_values) < limit:
                tx.aligned_values.append(
                    {
                        "timestamp": now_iso(stamp),
                        "sampledValue": charger.sampled_values(evse, stop_aligned, "Sample.Clock"),
                    }
                )


def operating_point(charger: Charger, evse: Evse, limit_w: float | None) -> physics.OperatingPoint:
    battery = evse.battery
    assert battery is not None
    if charger.spec.power_type == "DC":
        return physics.dc_operating_point(battery, evse.max_power_w, limit_w)
    return physics.ac_operating_point(
        battery, evse.max_power_w, limit_w, charger.spec.phases, charger.spec.voltage_v
    )
