"""The vehicle side of a charging session: what the EV can take, and its state of charge.

AC: power = min(EVSE max, the vehicle's on-board charger, the charging-profile limit, and
the battery's own taper near full), over the phases both sides have, at the charger's
voltage. DC: the vehicle's charging curve gives the power it accepts at its SoC (taper),
the pack voltage follows its SoC, current = P / V. SoC integrates the energy that reaches
the battery (metered energy × efficiency).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from simulator.dc_voltage import pack_voltage

_FULL_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class VehicleSpec:
    name: str
    capacity_kwh: float
    ac_max_kw: float
    ac_phases: int
    dc_max_kw: float
    dc_min_v: float
    dc_nominal_v: float
    dc_max_v: float
    curve: tuple[tuple[float, float], ...]
    efficiency: float

    def curve_max_kw(self, soc: float) -> float:
        """Linear interpolation of the charging curve at this SoC, clamped to its ends."""
        curve = self.curve
        if not curve:
            return self.dc_max_kw
        if soc <= curve[0][0]:
            return curve[0][1]
        for (s0, p0), (s1, p1) in itertools.pairwise(curve):
            if soc <= s1:
                return p0 + (p1 - p0) * (soc - s0) / (s1 - s0)
        return curve[-1][1]


@dataclass(slots=True, eq=False)
class Battery:
    spec: VehicleSpec
    soc: float
    target_soc: float = 100.0

    def is_full(self) -> bool:
        return self.soc >= self.target_soc - _FULL_EPSILON

    def energy_to_target_wh(self) -> float:
        """Metered (grid-side) energy still needed to reach the target SoC."""
        missing = max(self.target_soc - self.soc, 0.0) / 100.0 * self.spec.capacity_kwh * 1000
        return missing / self.spec.efficiency

    def accept(self, grid_wh: float) -> None:
        if grid_wh <= 0:
            return
        gained = grid_wh * self.spec.efficiency / (self.spec.capacity_kwh * 1000) * 100.0
        self.soc = min(self.soc + gained, self.target_soc)


@dataclass(slots=True)
class OperatingPoint:
    power_w: float
    voltage_v: tuple[float, ...]
    current_a: tuple[float, ...]
    phases: int


def ac_operating_point(
    battery: Battery,
    evse_max_w: float,
    limit_w: float | None,
    charger_phases: int,
    voltage_v: float,
) -> OperatingPoint:
    spec = battery.spec
    phases = max(1, min(spec.ac_phases, charger_phases))
    voltages = (voltage_v,) * phases
    if battery.is_full():
        return OperatingPoint(0.0, voltages, (0.0,) * phases, phases)
    power = min(evse_max_w, spec.ac_max_kw * 1000)
    if spec.curve:
        power = min(power, spec.curve_max_kw(battery.soc) * 1000)
    if limit_w is not None:
        power = min(power, limit_w)
    power = max(power, 0.0)
    amps = power / (voltage_v * phases) if voltage_v > 0 else 0.0
    return OperatingPoint(power, voltages, (amps,) * phases, phases)


def dc_operating_point(
    battery: Battery, evse_max_w: float, limit_w: float | None
) -> OperatingPoint:
    spec = battery.spec
    volts = pack_voltage(spec, battery.soc)
    if battery.is_full() or spec.dc_max_kw <= 0 or volts <= 0:
        return OperatingPoint(0.0, (volts,), (0.0,), 1)
    power = min(evse_max_w, spec.dc_max_kw * 1000, spec.curve_max_kw(battery.soc) * 1000)
    if limit_w is not None:
        power = min(power, limit_w)
    power = max(power, 0.0)
    return OperatingPoint(power, (volts,), (power / volts,), 1)


def step(battery: Battery, point: OperatingPoint, dt_s: float) -> float:
    """Deliver one tick at this operating point; return the metered Wh (capped so that the
    SoC lands exactly on the target rather than past it)."""
    if point.power_w <= 0 or dt_s <= 0:
        return 0.0
    wh = min(point.power_w * dt_s / 3600.0, battery.energy_to_target_wh())
    battery.accept(wh)
    if battery.energy_to_target_wh() <= 1e-9:
        battery.soc = battery.target_soc
    return wh
