"""The closed-form meter (`battery.advance`, `seconds_to_target`) against the 1 s Euler
integration it replaced (`battery.step`): energy, SoC and time to full within 0.5 %.

The vehicles are drawn in the catalogue's shapes: AC on 1 or 3 phases with or without a
taper, DC with a curve given every 10 % of SoC (or none). Only curves that a 1 s step
resolves are drawn: where the power halves within a few seconds (a 350 kW drop over 10 %
of a 20 kWh pack) the Euler reference is itself off by more than 0.5 %, and the closed form
is the exact one (checked against a finer Euler below).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simulator.core.battery import (
    Battery,
    OperatingPoint,
    VehicleSpec,
    ac_operating_point,
    ac_point_holds_below,
    advance,
    dc_operating_point,
    seconds_to_target,
    step,
)
from tests.engine import COMPACT

# The steepest relative power change per second (|dP/dt| / P) the 1 s reference resolves
# to 0.5 %: its error on a taper is about half of that per unit of time.
_RESOLVED_PER_S = 0.008


@dataclass(frozen=True)
class Case:
    spec: VehicleSpec
    dc: bool
    evse_max_w: float
    limit_w: float | None
    limit_a: float | None
    phases: int
    voltage_v: float

    def point(self, battery: Battery) -> OperatingPoint:
        if self.dc:
            return dc_operating_point(battery, self.evse_max_w, self.limit_w)
        return ac_operating_point(
            battery, self.evse_max_w, self.limit_w, self.phases, self.voltage_v, self.limit_a
        )


def steepest_per_s(spec: VehicleSpec) -> float:
    k = spec.efficiency / (spec.capacity_kwh * 36_000.0)
    slopes = [
        abs(p1 - p0) * 1000 / (s1 - s0) for (s0, p0), (s1, p1) in itertools.pairwise(spec.curve)
    ]
    return max(slopes, default=0.0) * k


@st.composite
def cases(draw: st.DrawFn) -> Case:
    dc = draw(st.booleans())
    socs = sorted(draw(st.sets(st.integers(0, 10), min_size=2, max_size=8)))
    curve = tuple((s * 10.0, draw(st.floats(2, 350 if dc else 22))) for s in socs)
    nominal = draw(st.floats(300, 800))
    spec = VehicleSpec(
        name="drawn",
        capacity_kwh=draw(st.floats(20, 150)),
        ac_max_kw=draw(st.floats(1.4, 22)),
        ac_phases=draw(st.sampled_from([1, 3])),
        dc_max_kw=draw(st.floats(20, 350)) if dc else 0.0,
        dc_min_v=nominal * 0.8,
        dc_nominal_v=nominal,
        dc_max_v=nominal * 1.1,
        curve=curve if draw(st.booleans()) else (),
        efficiency=draw(st.floats(0.8, 1.0)),
    )
    assume(steepest_per_s(spec) <= _RESOLVED_PER_S)
    phases = draw(st.sampled_from([1, 3]))
    return Case(
        spec=spec,
        dc=dc,
        evse_max_w=draw(st.floats(3_700, 350_000 if dc else 22_000)),
        limit_w=draw(st.none() | st.floats(500, 300_000)),
        limit_a=None if dc else draw(st.none() | st.floats(6, 32)),
        phases=phases,
        voltage_v=draw(st.floats(220, 240)),
    )


def euler(case: Case, battery: Battery, seconds: int) -> tuple[float, int | None]:
    """The stepped reference: (Wh after `seconds` 1 s steps, the step count to full)."""
    wh, full_after = 0.0, None
    for n in range(seconds):
        if battery.is_full():
            full_after = n if full_after is None else full_after
            break
        wh += step(battery, case.point(battery), 1.0)
    if battery.is_full() and full_after is None:
        full_after = seconds
    return wh, full_after


@settings(max_examples=60, deadline=None)
@given(
    case=cases(),
    soc=st.floats(0, 95),
    to_target=st.floats(0.5, 100),
    hours=st.floats(0.01, 4),
)
def test_the_closed_form_stays_within_half_a_percent_of_the_stepped_integration(
    case: Case, soc: float, to_target: float, hours: float
) -> None:
    target = min(soc + to_target, 100.0)
    seconds = int(hours * 3600)
    stepped, exact = Battery(case.spec, soc, target), Battery(case.spec, soc, target)
    point = case.point(exact)
    assume(point.power_w > 0)
    to_full = seconds_to_target(exact, point)
    wh = advance(exact, point, seconds)

    stepped_wh, full_after = euler(case, stepped, seconds)
    assert math.isclose(wh, stepped_wh, rel_tol=0.005, abs_tol=1e-6)
    assert math.isclose(exact.soc - soc, stepped.soc - soc, rel_tol=0.005, abs_tol=1e-9)
    if full_after is not None and full_after < seconds:  # the reference filled inside
        # The reference sees "full" only at a whole step, up to one step after its own
        # filling instant: its step plus the half percent, added (not the larger of the two;
        # a DC case filling at 159.99994 s was seen full at 161 by the reference).
        assert abs(to_full - full_after) <= 1.0 + 0.005 * full_after
    else:
        assert to_full >= seconds - max(1.0, 0.005 * seconds)


@settings(max_examples=40, deadline=None)
@given(case=cases(), soc=st.floats(0, 95), splits=st.lists(st.floats(0.1, 900), max_size=12))
def test_advancing_in_pieces_is_advancing_at_once(
    case: Case, soc: float, splits: list[float]
) -> None:
    # Events split an interval anywhere (a sample, a settle): the register must not care.
    once, pieces = Battery(case.spec, soc), Battery(case.spec, soc)
    point = case.point(once)
    assume(point.power_w > 0)
    total = advance(once, point, sum(splits))
    assert math.isclose(
        sum(advance(pieces, case.point(pieces), dt) for dt in splits),
        total,
        rel_tol=1e-9,
        abs_tol=1e-6,
    )
    assert math.isclose(pieces.soc, once.soc, rel_tol=1e-9, abs_tol=1e-9)


def test_a_taper_too_steep_for_1_s_steps_is_exact_in_closed_form() -> None:
    # 120 kW falling to 7 kW between 90 and 100 % of a small pack: the 1 s Euler overshoots
    # the taper, a 0.01 s Euler agrees with the closed form.
    small = VehicleSpec(
        name="small", capacity_kwh=8.0, ac_max_kw=11, ac_phases=3, dc_max_kw=120,
        dc_min_v=300, dc_nominal_v=370, dc_max_v=410,
        curve=((0, 120), (90, 120), (100, 7)), efficiency=1.0,
    )  # fmt: skip
    case = Case(small, True, 150_000, None, None, 1, 230)
    exact, fine = Battery(small, 90.0, 99.0), Battery(small, 90.0, 99.0)
    to_full = seconds_to_target(exact, case.point(exact))
    elapsed = 0.0
    while not fine.is_full():
        step(fine, case.point(fine), 0.01)
        elapsed += 0.01
    assert math.isclose(to_full, elapsed, rel_tol=0.002)


def test_a_constant_power_meters_power_times_time() -> None:
    battery = Battery(COMPACT, 30.0, 80.0)
    point = ac_operating_point(battery, 11_000, None, 3, 230)
    assert math.isclose(advance(battery, point, 600), 11_000 * 600 / 3600, rel_tol=1e-12)


@settings(max_examples=80, deadline=None)
@given(
    case=cases().filter(lambda case: not case.dc),
    soc=st.floats(0, 99),
    target=st.floats(1, 100),
    steps=st.lists(st.floats(0.5, 900), min_size=1, max_size=30),
)
def test_an_ac_point_is_the_same_below_the_soc_it_holds_to(
    case: Case, soc: float, target: float, steps: list[float]
) -> None:
    # The meter reuses the point instead of computing it on each visit: it must be the very
    # point computed afresh (every float), up to the last SoC below the bound.
    battery = Battery(case.spec, soc, max(soc, target))
    point = case.point(battery)
    below = ac_point_holds_below(battery, point)
    assume(below > soc)
    for dt in steps:
        advance(battery, point, dt)
        if battery.soc >= below:
            break
        assert case.point(battery) == point
    if math.isfinite(below):
        battery.soc = math.nextafter(below, -math.inf)
        assert case.point(battery) == point


def test_an_ac_point_at_its_cap_holds_until_the_curve_may_fall_below_it() -> None:
    # 11 kW on an ID.3, whose curve stays above 11 kW up to 90 % and then falls to 7 kW:
    # the same point up to 90 %; then it is computed again (one piece of the curve).
    battery = Battery(COMPACT, 20.0, 95.0)
    point = ac_operating_point(battery, 11_000, None, 3, 230)
    assert point.power_w == 11_000
    assert ac_point_holds_below(battery, point) == 90.0
    battery.soc = 92.0
    assert ac_point_holds_below(battery, ac_operating_point(battery, 11_000, None, 3, 230)) == 92.0
    battery.soc = 97.5  # on the curve: its power follows the SoC
    tapering = ac_operating_point(battery, 11_000, None, 3, 230)
    assert tapering.power_w < 11_000
    assert ac_point_holds_below(battery, tapering) == -math.inf
    # Below its target only: full from there on, nothing flows.
    assert ac_point_holds_below(Battery(COMPACT, 20.0, 80.0), point) < 80.0


def test_a_nearly_flat_piece_advances_alike_in_pieces_and_at_once() -> None:
    # Found by the property test above: a curve rising by a fraction of a watt over 60 % of
    # SoC made the closed form's log of a ratio lose digits (1.11118 vs 1.11104 Wh here).
    flat = VehicleSpec(
        name="flat", capacity_kwh=100.0, ac_max_kw=11, ac_phases=3, dc_max_kw=150,
        dc_min_v=300, dc_nominal_v=370, dc_max_v=410,
        curve=((0.0, 2.0), (60.0, 2.0000001)), efficiency=1.0,
    )  # fmt: skip
    case = Case(flat, True, 150_000, None, None, 1, 230)
    once, pieces = Battery(flat, 0.0), Battery(flat, 0.0)
    total = advance(once, case.point(once), 2.0)
    parts = sum(advance(pieces, case.point(pieces), dt) for dt in (1.0, 1.0))
    assert math.isclose(parts, total, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(pieces.soc, once.soc, rel_tol=1e-9, abs_tol=1e-9)
