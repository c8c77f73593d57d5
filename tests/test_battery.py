"""Vehicle physics: operating points, limits, SoC integration and energy bookkeeping."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from simulator.core.battery import (
    FULL_EPSILON,
    Battery,
    OperatingPoint,
    VehicleSpec,
    ac_operating_point,
    dc_operating_point,
    step,
)
from simulator.core.charge_point import Charger
from simulator.core.dc_voltage import pack_voltage
from simulator.core.evse import ConnectorStatus, Evse
from tests.engine import COMPACT, PHEV, runtime_charger

ID3 = COMPACT


@st.composite
def vehicles(draw: st.DrawFn, min_curve_kw: float = 0.0) -> VehicleSpec:
    dc = draw(st.booleans())
    low = draw(st.floats(150, 700))
    nominal = low + draw(st.floats(0, 150))
    socs = sorted(draw(st.sets(st.integers(0, 100), min_size=2, max_size=8)))
    curve = tuple((float(s), draw(st.floats(min_curve_kw, 350))) for s in socs)
    return VehicleSpec(
        name="drawn",
        capacity_kwh=draw(st.floats(5, 150)),
        ac_max_kw=draw(st.floats(1, 22)),
        ac_phases=draw(st.sampled_from([1, 3])),
        dc_max_kw=draw(st.floats(20, 350)) if dc else 0.0,
        dc_min_v=low,
        dc_nominal_v=nominal,
        dc_max_v=nominal + draw(st.floats(0, 150)),
        curve=curve if draw(st.booleans()) else (),
        efficiency=draw(st.floats(0.5, 1.0)),
    )


@dataclass(slots=True)
class Site:
    dc: bool
    evse_max_w: float
    phases: int
    voltage_v: float

    def point(self, battery: Battery, limit_w: float | None) -> OperatingPoint:
        if self.dc:
            return dc_operating_point(battery, self.evse_max_w, limit_w)
        return ac_operating_point(battery, self.evse_max_w, limit_w, self.phases, self.voltage_v)


sites = st.builds(
    Site,
    dc=st.booleans(),
    # From 4.5 kW: an AC EVSE that cannot offer 6 A on each of three phases at 250 V offers
    # nothing (`MIN_AC_AMPS`), and these properties are about charging.
    evse_max_w=st.floats(4_500, 350_000),
    phases=st.sampled_from([1, 3]),
    voltage_v=st.floats(200, 250),
)
limits = st.none() | st.floats(0, 400_000)


def plugged(vehicle: VehicleSpec, soc: float, target: float, site: Site) -> tuple[Charger, Evse]:
    """An offline charger built like the site, the vehicle plugged in, a transaction on."""
    charger = runtime_charger(
        "SITE",
        "",
        evses=1,
        power_type="DC" if site.dc else "AC",
        max_kw=site.evse_max_w / 1000,
        phases=site.phases,
        voltage_v=site.voltage_v,
    )
    evse = charger.evse(1)
    evse.add_energy(12_345.0)
    charger.plug_in(1, vehicle, soc=soc, target_soc=target)
    charger.start_transaction(1, "TAG")
    return charger, evse


# -- the vehicle spec ------------------------------------------------------------------------


def test_the_curve_is_interpolated_linearly_and_clamped_to_its_ends() -> None:
    spec = VehicleSpec("v", 50, 11, 3, 100, 300, 350, 400, ((10, 100), (50, 60)), 0.9)
    assert spec.curve_max_kw(30) == pytest.approx(80)
    assert spec.curve_max_kw(0) == 100
    assert spec.curve_max_kw(90) == 60
    assert spec.curve_max_kw(50) == 60


def test_without_a_curve_the_dc_maximum_applies() -> None:
    spec = VehicleSpec("v", 50, 11, 3, 75, 300, 350, 400, (), 0.9)
    assert spec.curve_max_kw(55) == 75


def test_the_curve_holds_above_a_power_up_to_the_first_piece_that_may_fall_below_it() -> None:
    spec = VehicleSpec("v", 50, 11, 3, 100, 300, 350, 400, ((10, 100), (50, 60), (80, 9)), 0.9)
    assert spec.curve_holds_below(0, 50_000) == 50  # flat, then 100 -> 60 kW: both above
    assert spec.curve_holds_below(60, 50_000) == 60  # 60 -> 9 kW may be below at once
    assert spec.curve_holds_below(0, 120_000) == 0  # below from the start
    assert spec.curve_holds_below(85, 8_000) == math.inf  # flat at 9 kW beyond the curve
    assert spec.curve_holds_below(85, 10_000) == 85
    flat = VehicleSpec("v", 50, 11, 3, 75, 300, 350, 400, (), 0.9)
    assert flat.curve_holds_below(40, 75_000) == math.inf  # its DC maximum throughout
    assert flat.curve_holds_below(40, 76_000) == 40


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"curve": ((0, 50), (0, 40))}, "does not increase"),
        ({"efficiency": 0.0}, "efficiency"),
        ({"efficiency": 1.2}, "efficiency"),
        ({"ac_phases": 2}, "phases"),
        ({"capacity_kwh": 0.0}, "capacity"),
        ({"dc_min_v": 420.0}, "DC voltages"),
    ],
)
def test_a_vehicle_that_cannot_exist_is_refused(changes: dict, complaint: str) -> None:
    fields = {
        "name": "bad",
        "capacity_kwh": 58.0,
        "ac_max_kw": 11.0,
        "ac_phases": 3,
        "dc_max_kw": 120.0,
        "dc_min_v": 300.0,
        "dc_nominal_v": 370.0,
        "dc_max_v": 410.0,
        "curve": ((0, 100), (100, 7)),
        "efficiency": 0.92,
    }
    with pytest.raises(ValueError, match=complaint):
        VehicleSpec(**(fields | changes))


# -- the battery -----------------------------------------------------------------------------


def test_the_energy_to_target_is_counted_on_the_grid_side() -> None:
    battery = Battery(ID3, 50.0, 80.0)
    assert battery.energy_to_target_wh() == pytest.approx(0.3 * 58_000 / 0.92)


def test_accepted_energy_loses_the_efficiency_share() -> None:
    battery = Battery(ID3, 50.0)
    battery.accept(1000.0)
    assert battery.soc == pytest.approx(50.0 + 920.0 / 58_000 * 100)


def test_the_soc_stops_at_the_target() -> None:
    battery = Battery(ID3, 79.0, 80.0)
    battery.accept(100_000.0)
    assert battery.soc == 80.0 and battery.is_full()


def test_a_battery_plugged_above_its_target_keeps_its_soc() -> None:
    battery = Battery(ID3, 90.0, 80.0)
    battery.accept(500.0)
    assert battery.soc == 90.0


def test_a_battery_never_gives_energy_back() -> None:
    battery = Battery(ID3, 50.0)
    with pytest.raises(ValueError):
        battery.accept(-1.0)
    assert battery.soc == 50.0


# -- AC --------------------------------------------------------------------------------------


def test_ac_current_is_power_over_voltage_times_phases() -> None:
    point = ac_operating_point(Battery(ID3, 40.0), 22_000, None, 3, 230.0)
    assert point.power_w == 11_000
    assert point.phases == 3 and point.voltage_v == (230.0, 230.0, 230.0)
    assert point.current_a == pytest.approx((11_000 / 690,) * 3)


def test_a_one_phase_vehicle_on_a_three_phase_charger_uses_one_phase() -> None:
    point = ac_operating_point(Battery(PHEV, 40.0), 22_000, None, 3, 230.0)
    assert point.phases == 1
    assert point.voltage_v == (230.0,)
    assert point.current_a == pytest.approx((3700 / 230,))
    assert point.power_w == pytest.approx(3700)


def test_a_three_phase_vehicle_on_a_one_phase_charger_gets_one_phase_of_its_charger() -> None:
    point = ac_operating_point(Battery(ID3, 40.0), 7_400, None, 1, 230.0)
    assert point.phases == 1 and len(point.current_a) == 1
    assert point.power_w == pytest.approx(11_000 / 3)


def test_the_profile_limit_caps_ac_power_and_is_offered() -> None:
    point = ac_operating_point(Battery(ID3, 40.0), 22_000, 6_900.0, 3, 230.0)
    assert point.power_w == 6_900.0 and point.offered_w == 6_900.0
    assert point.current_a == pytest.approx((10.0, 10.0, 10.0))


def test_an_amp_limit_binds_per_phase_on_each_phase_the_vehicle_uses() -> None:
    # 10 A on a 3-phase 22 kW EVSE is 6.9 kW over three phases: a single-phase car under
    # it may still draw only 10 A on its one phase (the bug: 16 A / 3.7 kW).
    single = ac_operating_point(Battery(PHEV, 40.0), 22_000, 6_900.0, 3, 230.0, limit_a=10.0)
    assert single.current_a == pytest.approx((10.0,))
    assert single.power_w == pytest.approx(2_300.0) and single.offered_w == pytest.approx(2_300)
    three = ac_operating_point(Battery(ID3, 40.0), 22_000, 6_900.0, 3, 230.0, limit_a=10.0)
    assert three.current_a == pytest.approx((10.0, 10.0, 10.0))
    assert three.power_w == pytest.approx(6_900.0)


def test_a_watt_limit_is_total_power_whatever_the_phases() -> None:
    # 6.9 kW set in watts: the single-phase car is held by its own 3.7 kW on-board charger.
    point = ac_operating_point(Battery(PHEV, 40.0), 22_000, 6_900.0, 3, 230.0)
    assert point.power_w == pytest.approx(3_700.0)


def test_ac_tapers_only_near_the_top() -> None:
    assert ac_operating_point(Battery(ID3, 85.0), 22_000, None, 3, 230.0).power_w == 11_000
    near_full = ac_operating_point(Battery(ID3, 99.0), 22_000, None, 3, 230.0)
    assert near_full.power_w == pytest.approx(ID3.curve_max_kw(99.0) * 1000)
    assert near_full.power_w < 11_000


def test_a_full_battery_draws_nothing() -> None:
    point = ac_operating_point(Battery(ID3, 80.0, 80.0), 22_000, None, 3, 230.0)
    assert point.power_w == 0.0 and point.current_a == (0.0, 0.0, 0.0)


# -- DC --------------------------------------------------------------------------------------


def test_dc_follows_the_curve_at_the_pack_voltage() -> None:
    battery = Battery(ID3, 60.0)
    point = dc_operating_point(battery, 150_000, None)
    volts = pack_voltage(ID3, 60.0)
    assert point.power_w == pytest.approx(ID3.curve_max_kw(60.0) * 1000)
    assert point.voltage_v == (volts,)
    assert point.current_a == pytest.approx((point.power_w / volts,))


def test_dc_power_is_capped_by_the_station_and_the_limit() -> None:
    battery = Battery(ID3, 20.0)
    assert dc_operating_point(battery, 50_000, None).power_w == 50_000
    assert dc_operating_point(battery, 150_000, 30_000.0).power_w == 30_000


def test_a_vehicle_without_dc_draws_nothing_on_dc() -> None:
    point = dc_operating_point(Battery(PHEV, 20.0), 50_000, None)
    assert point.power_w == 0.0 and point.current_a == (0.0,)


def test_the_dc_curve_tapers_power_at_high_soc() -> None:
    low = dc_operating_point(Battery(COMPACT, 20), 300_000, None).power_w
    high = dc_operating_point(Battery(COMPACT, 90), 300_000, None).power_w
    assert high < low / 2


@given(vehicles(), sites, st.floats(0, 100), limits)
def test_power_never_exceeds_any_limit(
    vehicle: VehicleSpec, site: Site, soc: float, limit_w: float | None
) -> None:
    point = site.point(Battery(vehicle, soc), limit_w)
    assert point.power_w >= 0
    assert point.power_w <= site.evse_max_w
    assert limit_w is None or point.power_w <= limit_w
    if site.dc:
        assert point.power_w <= vehicle.dc_max_kw * 1000
        assert point.power_w <= vehicle.curve_max_kw(soc) * 1000
        volts = pack_voltage(vehicle, soc)
        assert point.current_a[0] * volts == pytest.approx(point.power_w)
    else:
        assert point.power_w <= vehicle.ac_max_kw * 1000
        if vehicle.curve:
            assert point.power_w <= vehicle.curve_max_kw(soc) * 1000
        assert point.phases == min(vehicle.ac_phases, site.phases) == len(point.current_a)
        for amps in point.current_a:
            assert amps == pytest.approx(point.power_w / (site.voltage_v * point.phases))


# -- a whole session -------------------------------------------------------------------------


def test_the_last_tick_lands_exactly_on_the_target() -> None:
    battery = Battery(ID3, 79.99, 80.0)
    point = ac_operating_point(battery, 22_000, None, 3, 230.0)
    needed = battery.energy_to_target_wh()
    wh = step(battery, point, 600)
    assert battery.soc == 80.0 and battery.is_full()
    assert wh == needed < point.power_w * 600 / 3600


def test_a_zero_length_tick_delivers_nothing() -> None:
    battery = Battery(ID3, 50.0)
    wh = step(battery, ac_operating_point(battery, 22_000, None, 3, 230.0), 0.0)
    assert wh == 0.0 and battery.soc == 50.0


def test_the_ev_stops_drawing_at_full_soc() -> None:
    battery = Battery(COMPACT, 99.9)
    point = ac_operating_point(battery, 22_000, None, 3, 230)
    needed = battery.energy_to_target_wh()
    wh = step(battery, point, 3600)  # an hour at 11 kW is far more than the last 0.1 %
    assert battery.is_full() and battery.soc == 100
    assert abs(wh - needed) < 1e-9
    assert ac_operating_point(battery, 22_000, None, 3, 230).power_w == 0
    assert dc_operating_point(battery, 150_000, None).power_w == 0


@given(
    vehicles(),
    sites,
    st.floats(0, 100),
    st.floats(0, 100),
    st.lists(st.tuples(st.floats(0, 900), limits), min_size=1, max_size=200),
)
def test_a_session_meters_exactly_the_energy_it_reports(
    vehicle: VehicleSpec,
    site: Site,
    soc: float,
    goal: float,
    ticks: list[tuple[float, float | None]],
) -> None:
    target = max(soc, goal)
    evse = Evse(connector_id=1, max_power_w=site.evse_max_w, register_wh=12_345.0)
    evse.battery = Battery(vehicle, soc, target)
    battery = evse.battery
    assert battery is not None
    start_wh = evse.register_wh
    reported_wh = 0.0
    for dt, limit_w in ticks:
        soc_before, register_before = battery.soc, evse.register_wh
        point = site.point(battery, limit_w)
        wh = evse.meter(point, dt)  # the step Charger.step_connector takes
        reported_wh += evse.power_w * dt / 3600
        # The interval's average: at most the offer's cap (on a rising curve it may exceed
        # the power at the interval's start).
        assert 0 <= evse.power_w <= point.cap_w
        assert limit_w is None or evse.power_w <= limit_w
        assert soc_before <= battery.soc <= target
        # The register is a float far above one tick's energy: compare to its resolution.
        register_ulp = math.ulp(evse.register_wh)
        assert evse.register_wh - register_before == pytest.approx(
            wh, rel=1e-12, abs=2 * register_ulp
        )
    metered = evse.register_wh - start_wh
    assert metered == pytest.approx(reported_wh, rel=1e-9, abs=2 * len(ticks) * register_ulp)
    stored_wh = (battery.soc - soc) * vehicle.capacity_kwh * 10
    assert stored_wh == pytest.approx(metered * vehicle.efficiency, rel=1e-9, abs=1e-6)


@given(vehicles(min_curve_kw=0.5), sites, st.floats(0, 100), st.floats(0, 100))
def test_every_session_ends_in_suspended_ev_at_its_target(
    vehicle: VehicleSpec, site: Site, soc: float, goal: float
) -> None:
    if site.dc and vehicle.dc_max_kw == 0:
        site = replace(site, dc=False)
    target = max(soc, goal)
    assume(target > 0)  # a charger takes no target of 0 %
    charger, evse = plugged(vehicle, soc, target, site)
    battery = evse.battery
    assert battery is not None
    for _ in range(2000):
        charger.step_connector(evse, 3600)
        if evse.status is not ConnectorStatus.CHARGING:
            break
    assert evse.status is ConnectorStatus.SUSPENDED_EV
    assert target - FULL_EPSILON <= battery.soc <= target and evse.soc == battery.soc
    assert evse.power_w == 0.0 and not any(evse.current_a)
