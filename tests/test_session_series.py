"""A session's series for the dashboard's chart: bounded, the whole session in it, carried
in the charger's first snapshot; and the deadlines a page counts down (an authorization
without a vehicle, a network cut)."""

from __future__ import annotations

import itertools
import math

import pytest

from simulator.core.charge_point import Charger, ChargerSpec
from simulator.core.evse import Evse
from simulator.core.session_series import CAPACITY, SessionSeries
from simulator.ocpp16.messages import OCPP16
from simulator.runtime.events import snapshot
from tests.engine import COMPACT
from tests.test_charge_point_rules import csms
from tests.toy_protocol import FakeClock, FakeTransport

START = 1_767_225_600.0


def test_a_long_session_keeps_at_most_capacity_points_from_its_start_to_now():
    series = SessionSeries(START, start_wh=1_000.0, capacity=240)
    for second in range(8 * 3600):  # 8 h, a reading a second at a steady 11 kW
        series.record(START + second, 11_000.0, 20 + second / 500, 1_000.0 + second * 3.0)
    points = [[v if v is not None else math.nan for v in p] for p in series.points()]
    assert len(points) <= 240
    assert points[0][0] == START  # the start stays
    assert points[-1][0] >= START + 8 * 3600 - series.step_s  # up to now
    assert all(later[0] > earlier[0] for earlier, later in itertools.pairwise(points))
    assert all(p[1] == 11_000.0 for p in points[1:])  # merging averages the power
    assert points[-1][3] == pytest.approx((8 * 3600 - 1) * 3.0, rel=0.01)  # Wh since the start
    assert series.step_s >= 8 * 3600 / 240  # the spacing grew with the session


def test_readings_between_points_are_averaged_into_the_next_one():
    series = SessionSeries(START, capacity=10)
    series.record(START, 0.0, 50.0, 0.0)
    series.record(START + 0.3, 6_000.0, 50.0, 1.0)  # too soon for a point of its own
    series.record(START + 1.0, 2_000.0, 50.5, 2.0)
    assert [p[1] for p in series.points()] == [0.0, 4_000.0]


def test_an_ended_session_keeps_its_last_point_and_takes_no_more():
    series = SessionSeries(START, capacity=CAPACITY)
    series.record(START, 0.0, None, 0.0)
    series.record(START + 5, 7_000.0, None, 10.0)
    series.end(START + 5.5, None, 11.0)
    series.record(START + 60, 7_000.0, None, 99.0)
    assert series.ended_at == START + 5.5
    assert series.points()[-1] == [START + 5.5, 0.0, None, 11.0]
    assert len(series) == 3


def test_a_series_needs_room_for_two_points():
    with pytest.raises(ValueError, match="at least 2"):
        SessionSeries(START, capacity=1)


def charger(clock: FakeClock, **config: str) -> Charger:
    return Charger(
        ChargerSpec("SERIES-1"),
        [Evse(connector_id=1, max_power_w=11_000)],
        config,
        messages=OCPP16,
        clock=clock,
    )


async def in_session(clock: FakeClock) -> Charger:
    """A booted charger whose connector 1 has a car plugged in and a transaction started."""
    cp = charger(clock)
    cp.attach(FakeTransport(csms()))
    await cp.boot_sequence()
    cp.plug_in(1, COMPACT, soc=20)
    assert await cp.present_id_tag(1, "TAG") == "Accepted"
    return cp


async def test_the_first_snapshot_of_a_page_carries_the_session_from_its_start():
    clock = FakeClock()
    cp = await in_session(clock)
    started = clock.time()
    for _ in range(600):  # ten minutes of meter ticks
        clock.advance(1.0)
        cp.step_connector(cp.evses[0], 1.0)

    evse = snapshot(cp, series=True)["evses"][0]
    session = evse["session"]
    assert session is not None and session["started_at"] == started
    assert session["ended_at"] is None
    points = session["points"]
    assert len(points) <= CAPACITY
    assert points[0][0] == started and points[-1][0] == clock.time()
    assert (points[-1][1] or 0) > 0 and (points[-1][2] or 0) > 20  # power flows, SoC rose
    # The register at the start: the page shows the session's energy (the card's register
    # is the connector's lifetime one), as the series' last point counts it.
    assert session["start_wh"] == cp.transactions[1].meter_start
    assert evse["register_wh"] - session["start_wh"] == pytest.approx(points[-1][3], abs=1.0)
    # Later snapshots (every change, a few a second) carry only the session's times.
    assert "points" not in (snapshot(cp)["evses"][0]["session"] or {})

    cp.stop_transaction(1)
    ended = snapshot(cp, series=True)["evses"][0]["session"]
    assert ended is not None
    assert ended["ended_at"] == clock.time()  # the last session, shown after it ended
    assert ended["points"][-1][1] == 0.0


async def test_an_authorization_without_a_vehicle_shows_when_it_lapses_and_then_goes():
    clock = FakeClock()
    cp = charger(clock, ConnectionTimeOut="45")
    cp.attach(FakeTransport(csms()))
    await cp.boot_sequence()
    assert await cp.present_id_tag(1, "TAG") == "Accepted"
    assert snapshot(cp)["evses"][0]["authorization_expires_at"] == clock.time() + 45
    clock.advance(44)
    assert snapshot(cp)["evses"][0]["authorization_expires_at"] is not None
    clock.advance(1)
    evse = snapshot(cp)["evses"][0]
    assert evse["authorization_expires_at"] is None
    assert evse["status"] == "Available"


async def test_a_network_cut_says_when_it_ends_and_unplugging_clears_the_readings():
    clock = FakeClock()
    cp = charger(clock)
    cp.attach(FakeTransport(csms()))
    await cp.boot_sequence()
    assert snapshot(cp)["offline_until"] is None
    cp.cut_network(20)
    clock.advance(1)
    assert snapshot(cp)["offline_until"] == pytest.approx(clock.time() + 19)
    clock.advance(20)
    assert snapshot(cp)["offline_until"] is None

    cp.plug_in(1, COMPACT, soc=20)
    assert await cp.present_id_tag(1, "TAG") == "Accepted"
    clock.advance(1)
    cp.step_connector(cp.evses[0], 1.0)
    assert snapshot(cp)["evses"][0]["voltage_v"]
    cp.stop_transaction(1)
    cp.unplug(1)
    evse = snapshot(cp)["evses"][0]
    assert evse["voltage_v"] == [] and evse["current_a"] == []
    assert not math.isnan(evse["register_wh"])


async def test_a_session_the_car_ends_by_leaving_ends_its_chart_with_the_cars_soc():
    """QA: the car unplugged (StopTransactionOnEVSideDisconnect) took its SoC with it
    before the session's series was ended: the chart's last point had none."""
    clock = FakeClock()
    cp = await in_session(clock)
    for _ in range(60):
        clock.advance(1.0)
        cp.step_connector(cp.evses[0], 1.0)
    soc = cp.evses[0].soc
    cp.unplug(1)
    assert 1 not in cp.transactions
    ended = snapshot(cp, series=True)["evses"][0]["session"]
    assert ended is not None and ended["ended_at"] == clock.time()
    assert ended["points"][-1][1] == 0.0
    assert ended["points"][-1][2] == pytest.approx(soc, abs=0.05)
