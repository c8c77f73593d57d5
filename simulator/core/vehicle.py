"""A vehicle model as the physics sees it: capacity, AC and DC limits, charging curve.

Its own module so that both the battery (SoC, operating points) and the DC pack-voltage
curve can use it without importing each other.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VehicleSpec:
    """A vehicle model as the physics sees it (one instance shared by every EV of a model)."""

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

    def __post_init__(self) -> None:
        problems = []
        if not self.capacity_kwh > 0:
            problems.append(f"capacity {self.capacity_kwh} kWh is not positive")
        if not 0 < self.efficiency <= 1:
            problems.append(f"efficiency {self.efficiency} is not within (0, 1]")
        if self.ac_phases not in (1, 3):
            problems.append(f"AC phases {self.ac_phases} is neither 1 nor 3")
        if self.ac_max_kw < 0 or self.dc_max_kw < 0:
            problems.append("maximum powers must not be negative")
        if self.dc_max_kw > 0 and not 0 < self.dc_min_v <= self.dc_nominal_v <= self.dc_max_v:
            problems.append(
                f"DC voltages must satisfy 0 < min ≤ nominal ≤ max, got "
                f"{self.dc_min_v}/{self.dc_nominal_v}/{self.dc_max_v} V"
            )
        for (s0, _), (s1, _) in itertools.pairwise(self.curve):
            if not s1 > s0:
                problems.append(f"curve SoC {s1} % does not increase after {s0} %")
                break
        if any(kw < 0 for _, kw in self.curve):
            problems.append("curve powers must not be negative")
        if problems:
            raise ValueError(f"vehicle {self.name!r}: " + "; ".join(problems))

    def takes(self, power_type: str) -> bool:
        """Whether the vehicle takes any power on a charger of this kind ("AC" or "DC")."""
        return (self.dc_max_kw if power_type == "DC" else self.ac_max_kw) > 0

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

    def curve_holds_below(self, soc: float, watts: float) -> float:
        """A SoC (%) up to which (exclusive) `curve_max_kw(s) * 1000 >= watts` for every s
        from `soc` on, found per piece of the curve rather than per s (`soc` itself when the
        curve may be below `watts` at once; infinite when it never is).

        A piece whose ends are both at or above `watts` is so throughout: its interpolation
        is monotonic in the SoC between its ends, also as computed in floats (each
        operation rounds monotonically). Stopping at the first piece that is not keeps the
        answer exact without solving for the crossing."""
        curve = self.curve
        if not curve:
            return math.inf if self.dc_max_kw * 1000 >= watts else soc
        held = soc
        if soc <= curve[0][0]:  # flat below the first point
            if curve[0][1] * 1000 < watts:
                return soc
            held = curve[0][0]
        for (_, p0), (s1, _) in itertools.pairwise(curve):
            if s1 < soc:
                continue  # a piece wholly below `soc`
            if p0 * 1000 < watts or self.curve_max_kw(s1) * 1000 < watts:
                return held
            held = s1
        return math.inf if curve[-1][1] * 1000 >= watts else held
