"""The EVSE state machine: exactly the OCPP 1.6 transitions, and a register that only grows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.evse import (
    CONNECTOR0_STATUSES,
    LEGAL_TRANSITIONS,
    ConnectorStatus,
    Evse,
    IllegalTransition,
    is_legal,
)

S = ConnectorStatus
TABLE = {
    S.AVAILABLE: {
        S.PREPARING,
        S.CHARGING,
        S.SUSPENDED_EV,
        S.SUSPENDED_EVSE,
        S.RESERVED,
        S.UNAVAILABLE,
        S.FAULTED,
    },
    S.PREPARING: {
        S.AVAILABLE,
        S.CHARGING,
        S.SUSPENDED_EV,
        S.SUSPENDED_EVSE,
        S.FINISHING,
        S.FAULTED,
    },
    S.CHARGING: {
        S.AVAILABLE,
        S.SUSPENDED_EV,
        S.SUSPENDED_EVSE,
        S.FINISHING,
        S.UNAVAILABLE,
        S.FAULTED,
    },
    S.SUSPENDED_EV: {
        S.AVAILABLE,
        S.CHARGING,
        S.SUSPENDED_EVSE,
        S.FINISHING,
        S.UNAVAILABLE,
        S.FAULTED,
    },
    S.SUSPENDED_EVSE: {
        S.AVAILABLE,
        S.CHARGING,
        S.SUSPENDED_EV,
        S.FINISHING,
        S.UNAVAILABLE,
        S.FAULTED,
    },
    S.FINISHING: {S.AVAILABLE, S.PREPARING, S.UNAVAILABLE, S.FAULTED},
    S.RESERVED: {S.AVAILABLE, S.PREPARING, S.UNAVAILABLE, S.FAULTED},
    S.UNAVAILABLE: {
        S.AVAILABLE,
        S.PREPARING,
        S.CHARGING,
        S.SUSPENDED_EV,
        S.SUSPENDED_EVSE,
        S.FAULTED,
    },
    S.FAULTED: set(S) - {S.FAULTED},
}


def test_the_table_is_exactly_the_spec_with_errata():
    assert {k: set(v) for k, v in LEGAL_TRANSITIONS.items()} == TABLE
    assert {S.AVAILABLE, S.UNAVAILABLE, S.FAULTED} == CONNECTOR0_STATUSES


@pytest.mark.parametrize("frm", list(S))
@pytest.mark.parametrize("to", list(S))
def test_each_transition_is_allowed_or_refused_as_the_table_says(frm, to):
    evse = Evse(connector_id=1, max_power_w=1, status=frm)
    if frm is to:
        assert evse.transition(to) is False
    elif to in TABLE[frm]:
        assert evse.transition(to) is True
        assert evse.status is to
    else:
        with pytest.raises(IllegalTransition, match=f"{frm} -> {to}"):
            evse.transition(to)
        assert evse.status is frm


@given(st.lists(st.sampled_from(list(S)), max_size=60))
def test_no_illegal_transition_is_reachable(requests):
    evse = Evse(connector_id=1, max_power_w=1)
    for to in requests:
        before = evse.status
        try:
            evse.transition(to)
        except IllegalTransition:
            assert evse.status is before
        else:
            assert evse.status is before or is_legal(before, evse.status)


@given(st.lists(st.floats(min_value=-10, max_value=1e6, allow_nan=False), max_size=40))
def test_it_never_winds_the_register_back(amounts):
    evse = Evse(connector_id=1, max_power_w=1)
    for wh in amounts:
        before = evse.register_wh
        if wh < 0:
            with pytest.raises(ValueError):
                evse.add_energy(wh)
        else:
            evse.add_energy(wh)
        assert evse.register_wh >= before


def test_a_fault_keeps_its_error_code_and_clearing_resets_it():
    evse = Evse(connector_id=1, max_power_w=1)
    evse.transition(S.FAULTED, "GroundFailure", "test")
    assert (evse.error_code, evse.info) == ("GroundFailure", "test")
    evse.transition(S.AVAILABLE)
    assert evse.error_code == "NoError"
