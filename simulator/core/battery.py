"""The vehicle side of a charging session: what the EV can take, and its state of charge.

AC: power = min(EVSE max, the vehicle's on-board charger, the charging-profile limit, and
the battery's own taper near full), over the phases both sides have, at the charger's
voltage. DC: the vehicle's charging curve gives the power it accepts at its SoC (taper),
the pack voltage follows its SoC, current = P / V. SoC integrates the energy that reaches
the battery (metered energy × efficiency).

Plain Python, no Django: this runs once per EVSE per tick for fleets of 10,000+ EVSEs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.core.dc_voltage import pack_voltage
from simulator.core.vehicle import VehicleSpec

# SoC (percent) closer than this to the target counts as full: float dust must not keep
# a session in Charging for another tick.
FULL_EPSILON = 1e-6


@dataclass(slots=True, eq=False)
class Battery:
    """The plugged vehicle's battery; SoC in percent, only ever rising towards the target."""

    spec: VehicleSpec
    soc: float
    target_soc: float = 100.0
    # The EV stopped drawing power on its own (a timer in the car, the driver's app): the
    # connector shows SuspendedEV until it resumes. The physics does not read it: the
    # charge point keeps a paused EV out of the session statuses in which energy flows.
    paused: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.soc <= 100 or not 0 <= self.target_soc <= 100:
            raise ValueError(
                f"{self.spec.name}: SoC {self.soc} % and target {self.target_soc} % "
                "must be within 0–100"
            )

    def is_full(self) -> bool:
        return self.soc >= self.target_soc - FULL_EPSILON

    def energy_to_target_wh(self) -> float:
        """Metered (grid-side) energy still needed to reach the target SoC."""
        missing_wh = max(self.target_soc - self.soc, 0.0) * self.spec.capacity_kwh * 10.0
        return missing_wh / self.spec.efficiency

    def accept(self, grid_wh: float) -> None:
        """Store metered energy (times the efficiency); stops at the target, never goes down."""
        if grid_wh < 0:
            raise ValueError(f"{self.spec.name}: cannot take back {-grid_wh} Wh")
        gained = grid_wh * self.spec.efficiency / (self.spec.capacity_kwh * 10.0)
        # max(): a battery plugged in above its target keeps its SoC.
        self.soc = max(self.soc, min(self.soc + gained, self.target_soc))


@dataclass(slots=True)
class OperatingPoint:
    """What flows at this instant: total power, per-phase (AC) or pack (DC) voltage and
    current, and what the EVSE side offers (``min(EVSE max, limit)``; ``offered_w <= 0``
    means the EVSE suspends, ``power_w <= 0 < offered_w`` means the EV does)."""

    power_w: float
    voltage_v: tuple[float, ...]
    current_a: tuple[float, ...]
    phases: int
    offered_w: float = math.inf


def _offered(evse_max_w: float, limit_w: float | None) -> float:
    offered = evse_max_w if limit_w is None else min(evse_max_w, limit_w)
    return max(offered, 0.0)


def ac_operating_point(
    battery: Battery,
    evse_max_w: float,
    limit_w: float | None,
    charger_phases: int,
    voltage_v: float,
    limit_a: float | None = None,
) -> OperatingPoint:
    """AC charging over min(vehicle phases, charger phases) at ``voltage_v`` (line-to-neutral).

    Both maxima are per-phase current limits in reality, so a 3-phase vehicle on a 1-phase
    charger gets a third of its on-board charger power, and a 3-phase EVSE feeding a 1-phase
    vehicle a third of its own; never more than the plain minimum. Near full the vehicle's
    curve tapers the power when it is below the AC maximum.

    ``limit_a`` is a charging profile's limit in amps: per phase, on each phase the vehicle
    uses (``limit_w`` is the total power, e.g. a limit in watts).
    """
    spec = battery.spec
    charger_phases = max(1, charger_phases)
    phases = max(1, min(spec.ac_phases, charger_phases))
    voltages = (voltage_v,) * phases
    if phases < charger_phases:
        evse_max_w *= phases / charger_phases
    if limit_a is not None:
        amp_w = limit_a * voltage_v * phases
        limit_w = amp_w if limit_w is None else min(limit_w, amp_w)
    offered = _offered(evse_max_w, limit_w)
    if battery.is_full() or voltage_v <= 0:
        return OperatingPoint(0.0, voltages, (0.0,) * phases, phases, offered)
    vehicle_w = spec.ac_max_kw * 1000
    if phases < spec.ac_phases:
        vehicle_w *= phases / spec.ac_phases
    if spec.curve:
        vehicle_w = min(vehicle_w, spec.curve_max_kw(battery.soc) * 1000)
    power = max(min(offered, vehicle_w), 0.0)
    amps = power / (voltage_v * phases)
    return OperatingPoint(power, voltages, (amps,) * phases, phases, offered)


def dc_operating_point(
    battery: Battery, evse_max_w: float, limit_w: float | None
) -> OperatingPoint:
    """DC charging: min(EVSE max, vehicle DC max, curve at this SoC, limit) at the pack voltage."""
    spec = battery.spec
    volts = pack_voltage(spec, battery.soc)
    offered = _offered(evse_max_w, limit_w)
    if battery.is_full() or spec.dc_max_kw <= 0 or volts <= 0:
        return OperatingPoint(0.0, (volts,), (0.0,), 1, offered)
    vehicle_w = min(spec.dc_max_kw, spec.curve_max_kw(battery.soc)) * 1000
    power = max(min(offered, vehicle_w), 0.0)
    return OperatingPoint(power, (volts,), (power / volts,), 1, offered)


def step(battery: Battery, point: OperatingPoint, dt_s: float) -> float:
    """Deliver one tick at this operating point into the battery; return the metered Wh.

    The energy is ``power * dt / 3600`` Wh, capped at what the target still needs so that
    the SoC lands exactly on the target instead of past it. The power to report for the
    tick is therefore ``wh * 3600 / dt``: the operating point's power, except on the last
    tick before full, where it is that tick's lower average. Reported that way, the
    register delta always equals the integral of the reported power (``Evse.apply`` does
    this).
    """
    if point.power_w <= 0 or dt_s <= 0 or battery.is_full():
        return 0.0
    wh = point.power_w * dt_s / 3600.0
    needed = battery.energy_to_target_wh()
    if wh < needed:
        battery.accept(wh)
        return wh
    battery.soc = max(battery.soc, battery.target_soc)
    return needed
