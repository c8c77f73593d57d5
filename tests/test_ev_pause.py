"""The EV pauses and resumes its charging (OCPP 1.6 SuspendedEV), on a fake transport."""

from __future__ import annotations

import pytest

from simulator.core.charge_point import ActionError, Charger, ChargerSpec
from simulator.core.evse import ConnectorStatus, Evse
from simulator.ocpp16.messages import OCPP16
from tests.engine import COMPACT
from tests.test_charge_point_rules import csms, statuses
from tests.toy_protocol import FakeClock, FakeTransport

S = ConnectorStatus


async def charging() -> tuple[Charger, FakeTransport]:
    cp = Charger(
        ChargerSpec("PAUSE-1"),
        [Evse(connector_id=1, max_power_w=22_000)],
        messages=OCPP16,
        clock=FakeClock(),
    )
    transport = FakeTransport(csms())
    cp.attach(transport)
    await cp.boot_sequence()
    cp.plug_in(1, COMPACT, soc=20, target_soc=80)
    assert await cp.present_id_tag(1, "TAG") == "Accepted"
    assert cp.step_connector(cp.evses[0], 1.0)
    assert cp.evses[0].power_w > 0
    return cp, transport


async def test_a_paused_ev_draws_nothing_and_shows_suspended_ev_until_it_resumes():
    cp, transport = await charging()
    evse = cp.evses[0]
    cp.pause_ev(1)
    assert evse.status is S.SUSPENDED_EV
    assert evse.power_w == 0.0
    register = evse.register_wh
    cp.step_connector(evse, 10.0)
    assert evse.register_wh == register  # the session goes on, nothing flows
    assert 1 in cp.transactions
    cp.resume_ev(1)
    assert evse.status is S.CHARGING
    cp.step_connector(evse, 10.0)
    assert evse.register_wh > register
    assert statuses(transport)[-3:] == [(1, "Charging"), (1, "SuspendedEV"), (1, "Charging")]


async def test_pausing_or_resuming_twice_or_without_a_vehicle_is_refused():
    cp, _ = await charging()
    cp.pause_ev(1)
    with pytest.raises(ActionError, match="already paused"):
        cp.pause_ev(1)
    cp.resume_ev(1)
    with pytest.raises(ActionError, match="not paused"):
        cp.resume_ev(1)
    cp.stop_transaction(1)
    cp.unplug(1)
    with pytest.raises(ActionError, match="no vehicle plugged in"):
        cp.pause_ev(1)


async def test_suspended_evse_wins_over_a_paused_ev_and_gives_way_to_it_when_power_returns():
    cp, _ = await charging()
    evse = cp.evses[0]
    evse.max_power_w = 0.0  # the charger offers nothing: the EVSE suspends
    cp.step_connector(evse, 1.0)
    assert evse.status is S.SUSPENDED_EVSE
    cp.pause_ev(1)
    assert evse.status is S.SUSPENDED_EVSE
    evse.max_power_w = 22_000.0
    cp.step_connector(evse, 1.0)
    assert evse.status is S.SUSPENDED_EV
    assert evse.power_w == 0.0
    evse.max_power_w = 0.0
    cp.resume_ev(1)  # the EV wants power, the charger offers none
    assert evse.status is S.SUSPENDED_EVSE


async def test_a_paused_ev_stays_suspended_after_a_fault_is_cleared():
    cp, _ = await charging()
    cp.pause_ev(1)
    cp.inject_fault(1, "GroundFailure")
    cp.clear_fault(1)
    assert cp.evses[0].status is S.SUSPENDED_EV


async def test_an_ev_paused_before_its_transaction_starts_suspended():
    cp = Charger(
        ChargerSpec("PAUSE-2"),
        [Evse(connector_id=1, max_power_w=22_000)],
        messages=OCPP16,
        clock=FakeClock(),
    )
    cp.attach(FakeTransport(csms()))
    await cp.boot_sequence()
    cp.plug_in(1, COMPACT, soc=20)
    cp.pause_ev(1)
    assert cp.evses[0].status is S.PREPARING
    assert await cp.present_id_tag(1, "TAG") == "Accepted"
    assert cp.evses[0].status is S.SUSPENDED_EV
    cp.resume_ev(1)
    assert cp.evses[0].status is S.CHARGING
