"""Vehicle physics: property tests of the AC/DC operating point, SoC and energy."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.battery import Battery, ac_operating_point, dc_operating_point, step
from simulator.core.dc_voltage import pack_voltage
from simulator.core.evse import Evse
from tests.engine import COMPACT, PHEV

socs = st.floats(min_value=0, max_value=100, allow_nan=False)
limits = st.one_of(st.none(), st.floats(min_value=0, max_value=400_000, allow_nan=False))
ticks = st.lists(st.floats(min_value=0.05, max_value=30, allow_nan=False), min_size=1, max_size=200)


@given(socs, socs)
def test_dc_voltage_stays_within_range_and_rises_with_soc(a, b):
    low, high = sorted((a, b))
    v_low, v_high = pack_voltage(COMPACT, low), pack_voltage(COMPACT, high)
    assert COMPACT.dc_min_v <= v_low <= v_high <= COMPACT.dc_max_v


def test_dc_voltage_is_near_nominal_mid_pack():
    assert abs(pack_voltage(COMPACT, 50) - COMPACT.dc_nominal_v) < 1


@given(socs, st.floats(min_value=1000, max_value=400_000), limits)
def test_dc_power_never_exceeds_any_limit(soc, evse_max, limit):
    battery = Battery(COMPACT, soc)
    point = dc_operating_point(battery, evse_max, limit)
    assert 0 <= point.power_w <= evse_max + 1e-9
    assert point.power_w <= COMPACT.dc_max_kw * 1000 + 1e-9
    assert point.power_w <= COMPACT.curve_max_kw(soc) * 1000 + 1e-9
    if limit is not None:
        assert point.power_w <= limit + 1e-9
    if point.power_w:
        assert abs(point.current_a[0] * point.voltage_v[0] - point.power_w) < 1e-6


@given(socs, st.sampled_from([1, 3]), st.floats(min_value=1000, max_value=44_000), limits)
def test_ac_current_is_power_over_voltage_and_phases(soc, charger_phases, evse_max, limit):
    for vehicle in (COMPACT, PHEV):
        point = ac_operating_point(Battery(vehicle, soc), evse_max, limit, charger_phases, 230)
        assert point.phases == min(vehicle.ac_phases, charger_phases)
        assert len(point.current_a) == point.phases
        assert point.power_w <= min(evse_max, vehicle.ac_max_kw * 1000) + 1e-9
        if limit is not None:
            assert point.power_w <= limit + 1e-9
        for amps in point.current_a:
            assert abs(amps * 230 * point.phases - point.power_w) < 1e-6


def test_a_single_phase_hybrid_uses_one_phase_of_a_three_phase_charger():
    point = ac_operating_point(Battery(PHEV, 30), 22_000, None, 3, 230)
    assert point.phases == 1 and len(point.current_a) == 1
    assert point.power_w == 3700


@settings(max_examples=60)
@given(
    st.floats(min_value=0, max_value=95),
    st.floats(min_value=50, max_value=100),
    ticks,
    limits,
    st.booleans(),
)
def test_a_session_conserves_energy_and_soc_only_rises_to_the_target(start, target, dts, limit, dc):
    target = max(start, target)
    evse = Evse(connector_id=1, max_power_w=150_000 if dc else 22_000)
    evse.battery = Battery(COMPACT, start, target)
    reported = 0.0
    last_soc = start
    for dt in dts:
        battery = evse.battery
        point = (
            dc_operating_point(battery, evse.max_power_w, limit)
            if dc
            else ac_operating_point(battery, evse.max_power_w, limit, 3, 230)
        )
        before = evse.register_wh
        evse.meter(point, dt)  # the step Charger.step_connector takes
        reported += evse.power_w * dt / 3600
        assert evse.register_wh >= before
        assert evse.power_w <= point.power_w + 1e-6
        assert last_soc <= battery.soc <= target + 1e-9
        last_soc = battery.soc
    delta = evse.register_wh
    assert abs(delta - reported) <= max(0.005 * delta, 1e-6)
    battery_gain_wh = (last_soc - start) / 100 * COMPACT.capacity_kwh * 1000
    assert abs(battery_gain_wh - delta * COMPACT.efficiency) <= max(1e-6 * delta, 1e-6)


def test_the_ev_stops_drawing_at_full_soc():
    battery = Battery(COMPACT, 99.9)
    point = ac_operating_point(battery, 22_000, None, 3, 230)
    needed = battery.energy_to_target_wh()
    wh = step(battery, point, 3600)  # an hour at 11 kW is far more than the last 0.1 %
    assert battery.is_full() and battery.soc == 100
    assert abs(wh - needed) < 1e-9
    assert ac_operating_point(battery, 22_000, None, 3, 230).power_w == 0
    assert dc_operating_point(battery, 150_000, None).power_w == 0


def test_the_dc_curve_tapers_power_at_high_soc():
    low = dc_operating_point(Battery(COMPACT, 20), 300_000, None).power_w
    high = dc_operating_point(Battery(COMPACT, 90), 300_000, None).power_w
    assert high < low / 2
