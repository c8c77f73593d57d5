"""The meter visit's inline fast paths give exactly what the calls they stand for give:
the kept metering point (`Charger._step_connector`), the curve's pieces (`battery._walk`),
the tick's epoch seconds (`MeterEngine.advance`), the EVSE of `send_meter_values`."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core import battery as battery_module
from simulator.core.battery import Battery, _walk
from simulator.core.charge_point import Charger
from simulator.core.protocol import SampleContext
from simulator.core.smart_charging import Limit
from simulator.runtime.meter_engine import MeterEngine
from tests.engine import COMPACT, PHEV, runtime_charger

WALL = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def charging(vehicle: Any, soc: float, target: float) -> Charger:
    charger = runtime_charger("FAST-1", "ws://127.0.0.1:1", evses=1, max_kw=22.0)
    charger.plug_in(1, vehicle, soc=soc, target_soc=target)
    charger.start_transaction(1, "TAG")
    return charger


def state(charger: Charger) -> tuple[Any, ...]:
    evse = charger.evses[0]
    return (evse.register_wh, evse.power_w, evse.current_a, evse.voltage_v, evse.soc, evse.status)


@settings(max_examples=60, deadline=None)
@given(
    vehicle=st.sampled_from([COMPACT, PHEV]),
    soc=st.floats(0, 99),
    target=st.floats(50, 100),
    steps=st.lists(
        st.tuples(st.floats(0, 900), st.sampled_from([None, 4_000.0, 11_000.0])),
        min_size=1,
        max_size=25,
    ),
)
def test_the_kept_point_inline_meters_as_a_point_computed_every_visit(
    vehicle: Any, soc: float, target: float, steps: list[tuple[float, float | None]]
) -> None:
    kept, fresh = charging(vehicle, soc, target), charging(vehicle, soc, target)
    for dt, watts in steps:
        for charger in (kept, fresh):
            if watts is None:
                charger.drop_limits()
            else:  # a new but equal limit object each visit, as a profile's
                charger.limits = {1: Limit(amps=watts / 690.0, watts=watts, phases=3)}
        fresh._kept_points.clear()  # never kept: `operating_point` at every visit
        assert kept.step_connector(kept.evses[0], dt) == fresh.step_connector(fresh.evses[0], dt)
        assert state(kept) == state(fresh)


def test_a_limit_set_after_the_point_was_kept_is_metered_at() -> None:
    charger = charging(COMPACT, 20.0, 100.0)
    evse = charger.evses[0]
    charger.step_connector(evse, 1.0)
    assert 1 in charger._kept_points and evse.power_w == 11_000.0
    charger.limits = {1: Limit(amps=6.0, watts=4_140.0, phases=3)}
    charger.step_connector(evse, 1.0)
    assert evse.power_w == 4_140.0


WALKS = st.tuples(st.floats(0, 99), st.floats(0, 100), st.floats(1, 200_000), st.floats(0, 1e5))


@settings(max_examples=100, deadline=None)
@given(walk=WALKS)
def test_the_walk_is_the_same_with_the_curve_pieces_kept_or_not(
    walk: tuple[float, float, float, float],
) -> None:
    soc, target, cap, budget = walk
    battery_module._PIECES.clear()
    first = _walk(COMPACT, soc, target, cap, True, budget)  # computes the pieces
    assert id(COMPACT.curve) in battery_module._PIECES
    assert _walk(COMPACT, soc, target, cap, True, budget) == first  # the kept ones
    assert Battery(COMPACT, soc).spec is COMPACT


def test_a_visit_without_the_ticks_epoch_seconds_reads_them_from_its_wall_time() -> None:
    given_s, read = charging(COMPACT, 20.0, 100.0), charging(COMPACT, 20.0, 100.0)
    engine = MeterEngine([given_s, read])
    engine.tick(now=100.0, wall=WALL)
    later = WALL.replace(second=30)
    since = WALL.timestamp()
    engine.advance(given_s, 30.0, 130.0, later, None, since, later.timestamp())
    engine.advance(read, 30.0, 130.0, later, None, since)
    assert read.metered_wall == given_s.metered_wall == WALL.timestamp() + 30
    assert state(read) == state(given_s)
    assert read.meter_wake == given_s.meter_wake


def test_meter_values_of_connector_0_is_nothing_and_of_a_missing_one_an_error() -> None:
    charger = charging(COMPACT, 20.0, 100.0)
    sent: list[Any] = []
    charger.send = lambda message, **kwargs: sent.append(message)  # type: ignore[method-assign,assignment]
    charger.send_meter_values(0, SampleContext.PERIODIC, ["Energy.Active.Import.Register"])
    assert sent == []
    for missing in (2, -1):
        with pytest.raises(KeyError, match=f"no connector {missing}"):
            charger.send_meter_values(missing, SampleContext.PERIODIC, ["Voltage"])
    charger.send_meter_values(1, SampleContext.PERIODIC, ["Energy.Active.Import.Register"])
    assert len(sent) == 1 and sent[0][0] == "MeterValues"


def bits(x: float) -> bytes:
    return struct.pack("<d", x)  # tells -0.0 from 0.0, and NaN equals itself


@settings(max_examples=300, deadline=None)
@given(a=st.floats(allow_nan=True, allow_infinity=True), b=st.floats(allow_nan=True))
def test_the_visits_comparisons_are_the_builtin_min_and_max(a: float, b: float) -> None:
    # The meter visit writes min(a, b) as `b if b < a else a` and max(a, b) as
    # `b if b > a else a` (MeterEngine.tick and _next_wake, Evse.meter, battery.advance
    # and _walk, SessionSeries.record): what the builtins do, without their call.
    assert bits(b if b < a else a) == bits(min(a, b))
    assert bits(b if b > a else a) == bits(max(a, b))
    assert bits(0.0 if a < 0.0 else a) == bits(max(a, 0.0))
    assert bits(1e-9 if a < 1e-9 else a) == bits(max(a, 1e-9))
