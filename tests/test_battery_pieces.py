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
from simulator.core.battery import FULL_EPSILON, VehicleSpec, _walk
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
            # The same integration as the walk (log1p/expm1: see battery._walk); what this
            # reference keeps is the per-call piece look-up.
            seconds = (
                math.log1p(slope * (end - s) / start_w) / (slope * k) if end_w > 0 else math.inf
            )
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
