"""The closed form's walk along a vehicle's curve uses the curve's pieces computed once per
curve: it must give, float for float, what the walk that computed each piece on every
call gave (kept here as the reference)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core import battery
from simulator.core.battery import (
    FULL_EPSILON,
    Battery,
    OperatingPoint,
    VehicleSpec,
    _walk,
    advance,
    seconds_to_target,
)
from tests.engine import COMPACT, PHEV
from tests.test_battery import vehicles


def _piece_reference(
    curve: tuple[tuple[float, float], ...], soc: float
) -> tuple[float, float, float, float]:
    if soc < curve[0][0]:
        return curve[0][0], curve[0][1] * 1000.0, soc, 0.0
    for (s0, p0), (s1, p1) in itertools.pairwise(curve):
        if soc < s1:
            return s1, p0 * 1000.0, s0, (p1 - p0) * 1000.0 / (s1 - s0)
    return math.inf, curve[-1][1] * 1000.0, soc, 0.0


def _walk_reference(
    spec: VehicleSpec, soc: float, target: float, cap_w: float, tapers: bool, budget_s: float
) -> tuple[float, float]:
    """`battery._walk` as it was before the pieces were kept per curve."""
    k = spec.efficiency / (spec.capacity_kwh * 36_000.0)
    if not tapers:
        curve: tuple[tuple[float, float], ...] = ((0.0, math.inf),)
    elif spec.curve:
        curve = spec.curve
    else:
        curve = ((0.0, spec.dc_max_kw),)
    s, elapsed = soc, 0.0
    for _ in range(4 * len(curve) + 8):
        if s >= target - FULL_EPSILON or elapsed >= budget_s:
            break
        hi, p0, s0, slope = _piece_reference(curve, s)
        end = min(hi, target)
        if slope:
            crossing = s0 + (cap_w - p0) / slope
            if s < crossing < end:
                end = crossing
        left = budget_s - elapsed
        mid = (s + end) / 2
        if p0 + slope * (mid - s0) >= cap_w or not slope:
            rate = k * (min(cap_w, p0) if not slope else cap_w)
            if rate <= 0:
                return s, math.inf
            seconds = (end - s) / rate
            if seconds > left:
                return s + rate * left, budget_s
        else:
            start_w, end_w = p0 + slope * (s - s0), p0 + slope * (end - s0)
            if start_w <= 0:
                return s, math.inf
            # The same integration as the walk (log1p/expm1, a ratio of -1 or below is a
            # curve at 0 kW: see battery._walk); what this reference keeps is the per-call
            # piece look-up.
            ratio = slope * (end - s) / start_w
            seconds = math.log1p(ratio) / (slope * k) if end_w > 0 and ratio > -1 else math.inf
            if seconds > left:
                if math.isinf(left):
                    return s, math.inf
                return s + start_w * math.expm1(slope * k * left) / slope, budget_s
        s, elapsed = end, elapsed + seconds
    return s, elapsed


def same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


@settings(max_examples=500)
@given(
    spec=st.one_of(vehicles(), st.sampled_from([COMPACT, PHEV])),
    soc=st.floats(0, 100),
    target=st.floats(0, 100),
    cap_w=st.one_of(st.floats(0, 400_000), st.just(math.inf)),
    tapers=st.booleans(),
    budget_s=st.one_of(st.floats(0, 200_000), st.just(math.inf)),
)
def test_the_walk_is_the_reference_float_for_float(
    spec: VehicleSpec, soc: float, target: float, cap_w: float, tapers: bool, budget_s: float
) -> None:
    expected = _walk_reference(spec, soc, target, cap_w, tapers, budget_s)
    assert same(_walk(spec, soc, target, cap_w, tapers, budget_s), expected)
    # Again, from the kept pieces this time.
    assert same(_walk(spec, soc, target, cap_w, tapers, budget_s), expected)


def test_a_curve_s_pieces_are_kept_once_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(battery, "_PIECES_MAX", 4)
    monkeypatch.setattr(battery, "_PIECES", {})
    first = battery._curve_pieces(COMPACT.curve)
    assert battery._curve_pieces(COMPACT.curve) is first
    for n in range(20):
        curve = ((0.0, float(n)), (50.0, 2.0 * n), (100.0, 1.0))
        assert battery._curve_pieces(curve) == battery._pieces_of(curve)
    assert len(battery._PIECES) <= 4


# Found by the property test above: the curve falls to 0 kW at 18 %, the charge meets it at
# the cap (68,408 W) and the piece's end power was left a few ulps above zero, log1p's
# argument a few ulps below -1: the walk raised "math domain error", so the meter's visit of
# such a car failed on every tick. Any curve with a piece falling to 0 kW (the admin accepts
# one, e.g. 0:50 80:20 100:0) can meet the same rounding.
FALLS_TO_ZERO = VehicleSpec(
    name="falls to zero",
    capacity_kwh=5.0,
    ac_max_kw=1.0,
    ac_phases=1,
    dc_max_kw=0.0,
    dc_min_v=150.0,
    dc_nominal_v=150.0,
    dc_max_v=150.0,
    curve=((0.0, 1.0), (1.0, 249.37399184939187), (18.0, 0.0), (19.0, 0.0)),
    efficiency=1.0,
)


def test_a_curve_that_falls_to_zero_kw_is_approached_without_an_error() -> None:
    point = OperatingPoint(68_408.0, (150.0,), (456.0,), 1, cap_w=68_408.0, tapers=True)
    battery = Battery(FALLS_TO_ZERO, soc=0.0, target_soc=18.0)
    assert seconds_to_target(battery, point) == math.inf
    soc, elapsed = _walk(FALLS_TO_ZERO, 0.0, 18.0, 68_408.0, True, 38.0)
    assert (elapsed, 1.0 < soc < 18.0) == (38.0, True)
    metered_wh = advance(battery, point, 38.0)
    assert battery.soc == soc  # the same SoC whether walked or advanced
    assert metered_wh == pytest.approx(soc * 5.0 * 10.0)
    socs = [battery.soc]
    for _ in range(100):  # an hour in 36 s visits: ever closer to 18 % (full within epsilon)
        advance(battery, point, 36.0)
        socs.append(battery.soc)
    assert socs == sorted(socs) and socs[-1] == 18.0
