"""The EVSE state machine: OCPP 1.6 status transitions, the meter register, and the status
the charge point gives a connector in a transaction as the meter engine steps it."""

from __future__ import annotations

import contextlib
import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from simulator.core.charge_point import ActionError, Charger, Listener
from simulator.core.evse import (
    CONNECTOR0_STATUSES,
    LEGAL_TRANSITIONS,
    ConnectorStatus,
    Evse,
    IllegalTransition,
    is_legal,
    is_legal_connector0,
)
from simulator.core.operations import Operations
from simulator.core.vehicle import VehicleSpec
from tests.engine import runtime_charger

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


def session(soc: float = 50.0, target: float = 100.0) -> tuple[Charger, Evse]:
    """An offline AC charger (22 kW, 3 x 230 V) with CAR plugged in and a transaction."""
    charger = runtime_charger("STATE", "", evses=1)
    charger.plug_in(1, CAR, soc=soc, target_soc=target)
    charger.start_transaction(1, "TAG1")
    return charger, charger.evse(1)


def limit_to(charger: Charger, watts: float) -> None:
    """A TxDefaultProfile of `watts` on connector 1, in force from now."""
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": watts}],
        },
    }
    assert Operations(charger).on_set_charging_profile(1, profile) == "Accepted"
    charger.refresh_limits(charger.demand_w())


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
    charger = runtime_charger("REG", "", evses=1)
    charger.evse(1).add_energy(98_765.9)
    charger.plug_in(1, CAR, soc=20.0)
    tx = charger.start_transaction(1, "TAG")
    assert tx.meter_start == 98_765
    charger.evse(1).add_energy(1000.0)
    stopped = charger.stop_transaction(1)
    assert stopped.meter_stop == 99_765


# -- the status of a connector in a transaction, tick by tick ----------------------------------


def test_the_tick_that_fills_the_battery_reports_its_average_power() -> None:
    charger, evse = session(soc=99.9)
    dt = 600.0
    full_power = charger.operating_point(evse, None).power_w
    register = evse.register_wh
    assert charger.step_connector(evse, dt) is True
    assert evse.soc == 100.0
    assert evse.status is S.CHARGING
    assert 0 < evse.power_w < full_power
    assert evse.power_w * dt / 3600 == pytest.approx(evse.register_wh - register)
    assert evse.current_a == pytest.approx((evse.power_w / 690,) * 3)


def test_it_suspends_the_ev_side_once_the_battery_is_full() -> None:
    charger, evse = session(soc=99.9)
    charger.step_connector(evse, 3600)
    register = evse.register_wh
    charger.step_connector(evse, 1)
    assert evse.status is S.SUSPENDED_EV
    assert evse.register_wh == register
    assert evse.power_w == 0.0 and not any(evse.current_a)
    assert charger.step_connector(evse, 1) is False  # nothing left to change


def test_a_zero_offer_suspends_the_evse_side() -> None:
    charger, evse = session(soc=40.0)
    limit_to(charger, 0.0)
    assert charger.step_connector(evse, 1) is True
    assert evse.status is S.SUSPENDED_EVSE
    assert evse.register_wh == 0.0 and evse.power_w == 0.0


def test_it_resumes_charging_when_power_is_offered_again() -> None:
    charger, evse = session(soc=40.0)
    limit_to(charger, 0.0)
    charger.step_connector(evse, 10)
    assert evse.status is S.SUSPENDED_EVSE
    Operations(charger).on_clear_charging_profile(None, None, None, None)
    charger.refresh_limits(charger.demand_w())
    charger.step_connector(evse, 10)
    assert evse.status is S.CHARGING
    assert evse.power_w == 11_000.0


def test_a_vehicle_that_takes_nothing_suspends_the_session() -> None:
    shy = VehicleSpec("shy", 50.0, 11.0, 3, 0.0, 0.0, 0.0, 0.0, ((0, 0.0), (100, 0.0)), 0.9)
    charger = runtime_charger("SHY", "", evses=1)
    charger.plug_in(1, shy, soc=30.0)
    charger.start_transaction(1, "TAG")
    evse = charger.evse(1)
    charger.step_connector(evse, 10)
    # What production does today: a vehicle that takes nothing while the EVSE offers power
    # reads as SuspendedEVSE, not SuspendedEV (the removed Evse.apply said SuspendedEV).
    assert evse.status is S.SUSPENDED_EVSE
    assert evse.register_wh == 0.0 and evse.power_w == 0.0


def test_a_vehicle_unplugged_mid_transaction_suspends_the_ev_side() -> None:
    charger, evse = session()
    charger.config["StopTransactionOnEVSideDisconnect"] = "false"
    charger.step_connector(evse, 10)
    charger.unplug(1)
    assert evse.status is S.SUSPENDED_EV
    register = evse.register_wh
    charger.step_connector(evse, 10)
    assert evse.power_w == 0.0 and evse.register_wh == register


@pytest.mark.parametrize("status", [S.FAULTED, S.UNAVAILABLE])
def test_no_energy_flows_outside_the_session_statuses(status: ConnectorStatus) -> None:
    charger, evse = session()
    charger.set_status(evse, status, "OtherError" if status is S.FAULTED else "NoError")
    assert charger.step_connector(evse, 60) is False
    assert (evse.register_wh, evse.power_w) == (0.0, 0.0)
    assert evse.status is status


def test_leaving_the_session_drops_the_power_reading() -> None:
    charger, evse = session()
    charger.step_connector(evse, 60)
    assert evse.power_w > 0
    charger.inject_fault(1, "GroundFailure")
    assert evse.power_w == 0.0 and not any(evse.current_a)


# -- random walks ----------------------------------------------------------------------------


class RandomWalk(RuleBasedStateMachine):
    """Random local actions, status requests and meter ticks through the charge point: the
    status only ever moves along legal edges and the register never goes back."""

    def __init__(self) -> None:
        super().__init__()
        # Every status the connector takes, also those passed through within one action
        # (a start on a Reserved connector goes Reserved -> Preparing -> Charging).
        self.statuses: list[ConnectorStatus] = []
        listener = _StatusRecorder(self.statuses)
        self.charger = runtime_charger("WALK", "", evses=1, listener=listener)
        self.evse = self.charger.evse(1)
        listener.evse = self.evse
        self.seen = self.evse.status
        self.register = 0.0

    @rule(to=st.sampled_from(ALL), error=st.sampled_from(["NoError", "OtherError"]))
    def request(self, to: ConnectorStatus, error: str) -> None:
        before = self.evse.status
        try:
            self.charger.set_status(self.evse, to, error)
        except IllegalTransition:
            assert not is_legal(before, to)
            assert self.evse.status is before
        else:
            assert self.evse.status is to
            assert to is before or is_legal(before, to)

    @rule(soc=st.floats(0, 100), goal=st.floats(1, 100))
    def plug(self, soc: float, goal: float) -> None:
        with contextlib.suppress(ActionError, IllegalTransition):
            self.charger.plug_in(1, CAR, soc=soc, target_soc=goal)

    @rule()
    def unplug(self) -> None:
        with contextlib.suppress(ActionError, IllegalTransition):
            self.charger.unplug(1)

    @rule()
    def start(self) -> None:
        with contextlib.suppress(ActionError, IllegalTransition):
            self.charger.start_transaction(1, "TAG")

    @rule()
    def stop(self) -> None:
        with contextlib.suppress(ActionError, IllegalTransition):
            self.charger.stop_transaction(1)

    @precondition(lambda self: 1 in self.charger.transactions)
    @rule(dt=st.floats(0, 3600))
    def tick(self, dt: float) -> None:
        battery = self.evse.battery
        soc_before = None if battery is None else battery.soc
        self.charger.step_connector(self.evse, dt)
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
        for status in [*self.statuses, self.evse.status]:
            if status is not self.seen:
                assert is_legal(self.seen, status), f"{self.seen} -> {status}"
                self.seen = status
        self.statuses.clear()

    @invariant()
    def register_never_goes_back(self) -> None:
        assert self.evse.register_wh >= self.register
        self.register = self.evse.register_wh


TestRandomWalkOnlyTakesLegalEdges = RandomWalk.TestCase


class _StatusRecorder(Listener):
    def __init__(self, statuses: list[ConnectorStatus]) -> None:
        self.statuses = statuses
        self.evse: Evse | None = None

    def on_change(self, charger: Charger) -> None:
        if self.evse is not None and (
            not self.statuses or self.statuses[-1] is not self.evse.status
        ):
            self.statuses.append(self.evse.status)
