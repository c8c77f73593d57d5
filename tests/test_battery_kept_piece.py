"""`battery.advance` keeps the curve piece it charged on (`Battery.piece`) and starts the next
step there: the SoC it reaches must be `_walk`'s, to the bit, however the battery, its
target and the offer change between steps (a kept piece that went stale would differ)."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given
from hypothesis import strategies as st

from simulator.core.battery import (
    FULL_EPSILON,
    Battery,
    OperatingPoint,
    _walk,
    advance,
)
from tests.engine import COMPACT

FLAT = dataclasses.replace(COMPACT, name="flat", curve=())
STEEP = dataclasses.replace(COMPACT, name="steep", curve=((5, 0), (40, 150), (60, 20), (95, 0)))
SPECS = [COMPACT, FLAT, STEEP, dataclasses.replace(COMPACT, capacity_kwh=1500.0)]


def reference(battery: Battery, point: OperatingPoint, dt_s: float) -> float:
    """`advance` as it was: every step walks from the curve's first piece."""
    spec, start, target = battery.spec, battery.soc, battery.target_soc
    if point.power_w <= 0.0 or dt_s <= 0.0 or start >= target - FULL_EPSILON:
        return 0.0
    cap = point.cap_w
    cap_w = cap if math.isfinite(cap) else point.power_w
    soc, _ = _walk(spec, start, target, cap_w, point.tapers, dt_s)
    if soc >= target - FULL_EPSILON:
        needed = battery.energy_to_target_wh()
        battery.soc = max(start, battery.target_soc)
        return needed
    battery.soc = soc if soc > start else start
    return (battery.soc - start) * spec.capacity_kwh * 10.0 / spec.efficiency


def point(cap_w: float, tapers: bool) -> OperatingPoint:
    return OperatingPoint(cap_w, (230.0,), (1.0,), 1, cap_w, cap_w, tapers)


CAPS = st.sampled_from([3_700.0, 11_000.0, 22_000.0, 50_000.0, 120_000.0, 150_000.0])
STEP = st.tuples(
    st.sampled_from(["step", "step", "step", "target", "soc", "cap", "spec"]),
    st.floats(0.001, 4_000.0),
    st.floats(0.0, 100.0),
    CAPS,
    st.booleans(),
    st.sampled_from(range(len(SPECS))),
)


@given(st.floats(0.0, 99.0), st.floats(0.0, 100.0), CAPS, st.booleans(), st.lists(STEP))
def test_advancing_from_the_kept_piece_is_walking_from_the_start(
    soc: float, target: float, cap_w: float, tapers: bool, steps: list
) -> None:
    spec = SPECS[0]
    kept, walked = Battery(spec, soc, max(soc, target)), Battery(spec, soc, max(soc, target))
    at = point(cap_w, tapers)
    for kind, dt, value, cap, taper, which in steps:
        if kind == "target":  # a new target: the kept piece's end may be the old one
            kept.target_soc = walked.target_soc = max(kept.soc, value)
        elif kind == "soc":  # set back or forward (a test, a restore): off the piece
            kept.soc = walked.soc = min(value, kept.target_soc)
        elif kind == "cap":  # another offer: another crossing of the curve
            at = point(cap, taper)
        elif kind == "spec":
            kept.spec = walked.spec = SPECS[which]
        assert advance(kept, at, dt) == reference(walked, at, dt)
        assert kept.soc == walked.soc


def test_a_second_of_steady_ac_charging_starts_on_the_kept_piece() -> None:
    battery = Battery(COMPACT, 20.0, 80.0)
    at = point(11_000.0, True)
    advance(battery, at, 1.0)
    kept = battery.piece
    assert kept is not None
    advance(battery, at, 1.0)
    assert battery.piece is kept  # found again, not searched for


def test_another_offer_on_the_same_piece_meets_the_curve_elsewhere() -> None:
    """At 150 kW the rising piece of STEEP (5 % to 40 %) is below the cap to its end; at
    50 kW the cap binds from 16.7 %: the piece kept at the first offer must not serve the
    second (whose step is on the curve, not at the cap)."""
    kept, walked = Battery(STEEP, 10.0, 90.0), Battery(STEEP, 10.0, 90.0)
    for cap_w in (150_000.0, 50_000.0, 150_000.0):
        for dt in (1.0, 1.0, 60.0):
            assert advance(kept, point(cap_w, True), dt) == reference(
                walked, point(cap_w, True), dt
            )
            assert kept.soc == walked.soc


def test_a_new_target_on_the_same_piece() -> None:
    kept, walked = Battery(COMPACT, 20.0, 20.01), Battery(COMPACT, 20.0, 20.01)
    at = point(11_000.0, True)
    for target, dt in ((20.01, 0.1), (25.0, 1.0), (25.0, 300.0), (21.0, 1.0), (30.0, 2.0)):
        kept.target_soc = walked.target_soc = max(target, kept.soc)
        assert advance(kept, at, dt) == reference(walked, at, dt)
        assert kept.soc == walked.soc
