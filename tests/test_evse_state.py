"""The EVSE state machine: OCPP 1.6 status transitions, who reports them, the meter register."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from simulator.core.battery import Battery, OperatingPoint, VehicleSpec, ac_operating_point
from simulator.core.evse import (
    CONNECTOR0_STATUSES,
    LEGAL_TRANSITIONS,
    ConnectorStatus,
    Evse,
    IllegalTransition,
    is_legal,
    is_legal_connector0,
)

S = ConnectorStatus
ALL = list(S)
PAIRS = [(frm, to) for frm, to in itertools.product(ALL, ALL) if frm is not to]

# The table of OCPP16.md ("Status"), transcribed independently of the implementation.
DOC_TABLE = {
    "Available": "Preparing Charging SuspendedEV SuspendedEVSE Reserved Unavailable Faulted",
    "Preparing": "Available Charging SuspendedEV SuspendedEVSE Finishing Faulted",
    "Charging": "Available SuspendedEV SuspendedEVSE Finishing Unavailable Faulted",
    "SuspendedEV": "Available Charging SuspendedEVSE Finishing Unavailable Faulted",
    "SuspendedEVSE": "Available Charging SuspendedEV Finishing Unavailable Faulted",
    "Finishing": "Available Preparing Unavailable Faulted",
    "Reserved": "Available Preparing Unavailable Faulted",
    "Unavailable": "Available Preparing Charging SuspendedEV SuspendedEVSE Faulted",
    "Faulted": "Available Preparing Charging SuspendedEV SuspendedEVSE Finishing Reserved "
    "Unavailable",
}

CAR = VehicleSpec(
    name="test car",
    capacity_kwh=50.0,
    ac_max_kw=11.0,
    ac_phases=3,
    dc_max_kw=100.0,
    dc_min_v=300.0,
    dc_nominal_v=360.0,
    dc_max_v=400.0,
    curve=((0, 100), (80, 50), (100, 5)),
    efficiency=0.9,
)


def evse_in(status: ConnectorStatus, **fields: object) -> Evse:
    evse = Evse(connector_id=3, max_power_w=22_000, **fields)  # type: ignore[arg-type]
    evse.status = status
    return evse


def charging_evse(soc: float = 50.0, target: float = 100.0) -> Evse:
    evse = Evse(connector_id=1, max_power_w=22_000)
    evse.battery = Battery(CAR, soc, target)
    evse.transition(S.PREPARING)
    evse.begin_transaction("TAG1")
    evse.transition(S.CHARGING)
    return evse


def ac_point(evse: Evse, limit_w: float | None = None) -> OperatingPoint:
    assert evse.battery is not None
    return ac_operating_point(evse.battery, evse.max_power_w, limit_w, 3, 230.0)


# -- the table -----------------------------------------------------------------------------


def test_the_table_is_the_one_of_the_reference() -> None:
    assert {str(k): {str(s) for s in v} for k, v in LEGAL_TRANSITIONS.items()} == {
        k: set(v.split()) for k, v in DOC_TABLE.items()
    }


def test_status_values_are_the_ocpp_strings() -> None:
    assert [s.value for s in S] == [
        "Available",
        "Preparing",
        "Charging",
        "SuspendedEV",
        "SuspendedEVSE",
        "Finishing",
        "Reserved",
        "Unavailable",
        "Faulted",
    ]


@pytest.mark.parametrize(("frm", "to"), [p for p in PAIRS if is_legal(*p)])
def test_every_legal_transition_succeeds(frm: ConnectorStatus, to: ConnectorStatus) -> None:
    evse = evse_in(frm)
    assert evse.transition(to) is True
    assert evse.status is to


@pytest.mark.parametrize(("frm", "to"), [p for p in PAIRS if not is_legal(*p)])
def test_every_illegal_transition_raises_and_leaves_the_state_alone(
    frm: ConnectorStatus, to: ConnectorStatus
) -> None:
    evse = evse_in(frm, error_code="HighTemperature", info="hot")
    with pytest.raises(IllegalTransition) as caught:
        evse.transition(to, "OtherError", "new")
    assert (evse.status, evse.error_code, evse.info) == (frm, "HighTemperature", "hot")
    message = str(caught.value)
    assert "connector 3" in message and str(frm) in message and str(to) in message
    assert (caught.value.frm, caught.value.to) == (frm, to)


@pytest.mark.parametrize("status", ALL)
def test_asking_for_the_current_status_again_is_a_no_op(status: ConnectorStatus) -> None:
    evse = evse_in(status, info="kept")
    assert evse.transition(status) is False
    assert (evse.status, evse.info) == (status, "kept")


def test_a_new_error_code_in_the_same_status_is_reported() -> None:
    evse = evse_in(S.FAULTED, error_code="GroundFailure")
    assert evse.transition(S.FAULTED, "OverCurrentFailure", "trip") is True
    assert (evse.error_code, evse.info) == ("OverCurrentFailure", "trip")


def test_an_unknown_error_code_is_refused_before_anything_changes() -> None:
    evse = evse_in(S.AVAILABLE)
    with pytest.raises(ValueError, match="Melted"):
        evse.transition(S.FAULTED, "Melted")
    assert (evse.status, evse.error_code) == (S.AVAILABLE, "NoError")


def test_leaving_a_fault_clears_the_error_code() -> None:
    evse = evse_in(S.AVAILABLE)
    evse.transition(S.FAULTED, "GroundFailure", "earth leak", vendor_error_code="E42")
    assert (evse.error_code, evse.info, evse.vendor_error_code) == (
        "GroundFailure",
        "earth leak",
        "E42",
    )
    evse.transition(S.AVAILABLE)
    assert (evse.error_code, evse.info, evse.vendor_error_code) == ("NoError", None, None)


def test_it_accepts_status_strings_as_they_come_off_the_wire() -> None:
    evse = evse_in(S.AVAILABLE)
    assert evse.transition("Preparing") is True  # type: ignore[arg-type]
    assert evse.status is S.PREPARING


@pytest.mark.parametrize(("frm", "to"), list(itertools.product(ALL, ALL)))
def test_connector_zero_only_moves_among_available_unavailable_faulted(
    frm: ConnectorStatus, to: ConnectorStatus
) -> None:
    expected = frm in CONNECTOR0_STATUSES and to in CONNECTOR0_STATUSES and is_legal(frm, to)
    assert is_legal_connector0(frm, to) is expected


def test_connector_zero_is_not_an_evse() -> None:
    with pytest.raises(ValueError, match="numbered from 1"):
        Evse(connector_id=0, max_power_w=11_000)


# -- the register --------------------------------------------------------------------------


def test_it_never_winds_the_register_back() -> None:
    evse = Evse(connector_id=1, max_power_w=11_000, register_wh=1234.5)
    with pytest.raises(ValueError, match="negative energy"):
        evse.add_energy(-0.1)
    with pytest.raises(ValueError):
        evse.add_energy(math.nan)
    assert evse.register_wh == 1234.5
    evse.add_energy(0.5)
    assert evse.register_wh == 1235.0


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), max_size=50))
def test_the_register_only_grows_whatever_is_added(amounts: list[float]) -> None:
    evse = Evse(connector_id=1, max_power_w=11_000)
    for wh in amounts:
        before = evse.register_wh
        if wh < 0:
            with pytest.raises(ValueError):
                evse.add_energy(wh)
        else:
            evse.add_energy(wh)
        assert evse.register_wh >= before


def test_a_new_transaction_starts_from_the_register_not_from_zero() -> None:
    evse = Evse(connector_id=1, max_power_w=11_000, register_wh=98_765.9)
    assert evse.begin_transaction("TAG") == 98_765
    assert evse.in_transaction and evse.session_wh == 0
    evse.add_energy(1000.0)
    assert evse.session_wh == pytest.approx(1000.0)
    assert evse.end_transaction() == 99_765
    assert not evse.in_transaction and evse.session_wh == 0


# -- statuses the EVSE takes by itself -------------------------------------------------------


def test_the_tick_that_fills_the_battery_reports_its_average_power() -> None:
    evse = charging_evse(soc=99.9)
    point, dt = ac_point(evse), 600.0
    wh = evse.apply(point, dt)
    assert wh > 0 and evse.soc == 100.0
    assert evse.status is S.CHARGING
    assert 0 < evse.power_w < point.power_w
    assert evse.power_w * dt / 3600 == pytest.approx(wh)
    assert evse.current_a == pytest.approx((evse.power_w / 690,) * 3)


def test_it_suspends_itself_once_the_battery_is_full_and_says_so_once() -> None:
    evse = charging_evse(soc=99.9)
    evse.apply(ac_point(evse), 3600)
    assert evse.apply(ac_point(evse), 1) == 0.0
    assert evse.status is S.SUSPENDED_EV
    assert evse.power_w == 0.0 and evse.current_a == (0.0, 0.0, 0.0)
    assert evse.take_status_change() is True
    assert evse.take_status_change() is False


def test_a_runtime_that_confirms_the_self_made_change_reports_it_exactly_once() -> None:
    evse = charging_evse(soc=100.0)
    evse.apply(ac_point(evse), 1)
    assert evse.transition(S.SUSPENDED_EV) is True  # nobody has reported it yet
    assert evse.transition(S.SUSPENDED_EV) is False
    assert evse.take_status_change() is False


def test_a_zero_offer_suspends_the_evse_side_even_when_the_battery_is_full() -> None:
    evse = charging_evse(soc=100.0)
    evse.apply(ac_point(evse, limit_w=0.0), 1)
    assert evse.status is S.SUSPENDED_EVSE
    evse = charging_evse(soc=40.0)
    wh = evse.apply(ac_point(evse, limit_w=0.0), 1)
    assert evse.status is S.SUSPENDED_EVSE and wh == 0.0
    assert evse.register_wh == 0.0 and evse.power_w == 0.0


def test_it_resumes_charging_when_power_is_offered_again() -> None:
    evse = charging_evse(soc=40.0)
    evse.apply(ac_point(evse, limit_w=0.0), 10)
    evse.take_status_change()
    evse.apply(ac_point(evse, limit_w=7_000.0), 10)
    assert evse.status is S.CHARGING
    assert evse.power_w == 7_000.0
    assert evse.take_status_change() is True


def test_a_vehicle_that_takes_nothing_suspends_the_ev_side() -> None:
    shy = VehicleSpec("shy", 50.0, 11.0, 3, 0.0, 0.0, 0.0, 0.0, ((0, 0.0), (100, 0.0)), 0.9)
    evse = charging_evse()
    evse.battery = Battery(shy, 30.0)
    evse.apply(ac_point(evse), 10)
    assert evse.status is S.SUSPENDED_EV and evse.register_wh == 0.0


def test_a_vehicle_unplugged_mid_transaction_suspends_the_ev_side() -> None:
    evse = charging_evse()
    evse.apply(ac_point(evse), 10)
    evse.battery = None
    wh = evse.apply(None, 10)
    assert evse.status is S.SUSPENDED_EV and wh == 0.0
    assert evse.power_w == 0.0


@pytest.mark.parametrize("status", [S.PREPARING, S.FINISHING, S.FAULTED, S.UNAVAILABLE])
def test_no_energy_flows_outside_the_session_statuses(status: ConnectorStatus) -> None:
    evse = charging_evse()
    evse.status = status
    wh = evse.apply(ac_point(evse), 60)
    assert (wh, evse.register_wh, evse.power_w) == (0.0, 0.0, 0.0)
    assert evse.status is status and not evse.status_changed


def test_leaving_the_session_drops_the_power_reading() -> None:
    evse = charging_evse()
    evse.apply(ac_point(evse), 60)
    assert evse.power_w > 0
    evse.transition(S.FAULTED, "GroundFailure")
    assert evse.power_w == 0.0 and evse.current_a == (0.0, 0.0, 0.0)


# -- random walks ----------------------------------------------------------------------------


class RandomWalk(RuleBasedStateMachine):
    """Random requests, plugs and ticks: the status only ever moves along legal edges and
    the register never goes back."""

    def __init__(self) -> None:
        super().__init__()
        self.evse = Evse(connector_id=2, max_power_w=22_000)
        self.seen = self.evse.status
        self.register = 0.0

    @rule(to=st.sampled_from(ALL), error=st.sampled_from(["NoError", "OtherError"]))
    def request(self, to: ConnectorStatus, error: str) -> None:
        before = self.evse.status
        try:
            self.evse.transition(to, error)
        except IllegalTransition:
            assert not is_legal(before, to)
            assert self.evse.status is before
        else:
            assert self.evse.status is to
            assert to is before or is_legal(before, to)

    @precondition(lambda self: self.evse.battery is None)
    @rule(soc=st.floats(0, 100), goal=st.floats(0, 100))
    def plug(self, soc: float, goal: float) -> None:
        self.evse.battery = Battery(CAR, soc, max(soc, goal))

    @precondition(lambda self: self.evse.battery is not None)
    @rule()
    def unplug(self) -> None:
        self.evse.battery = None

    @rule(
        limit=st.none() | st.floats(0, 30_000),
        dt=st.floats(0, 3600),
    )
    def tick(self, limit: float | None, dt: float) -> None:
        battery = self.evse.battery
        point = None if battery is None else ac_operating_point(battery, 22_000, limit, 3, 230)
        soc_before = None if battery is None else battery.soc
        self.evse.apply(point, dt)
        if battery is not None:
            assert soc_before is not None and battery.soc >= soc_before

    @rule(wh=st.floats(-100, 100))
    def add(self, wh: float) -> None:
        if wh < 0:
            with pytest.raises(ValueError):
                self.evse.add_energy(wh)
        else:
            self.evse.add_energy(wh)

    @invariant()
    def moves_only_along_legal_edges(self) -> None:
        status = self.evse.status
        if status is not self.seen:
            assert is_legal(self.seen, status), f"{self.seen} -> {status}"
            self.seen = status

    @invariant()
    def register_never_goes_back(self) -> None:
        assert self.evse.register_wh >= self.register
        self.register = self.evse.register_wh


TestRandomWalkOnlyTakesLegalEdges = RandomWalk.TestCase
