"""A car that takes no power of its charger's kind (a DC-only car on AC) holds its session in
SuspendedEV, saying why: OCPP 1.6's "the EV does not take energy". SuspendedEVSE blamed the
charger. Over real loopback WebSockets against the built-in CSMS."""

from __future__ import annotations

import dataclasses

from ocpp.v16 import call

from tests.engine import (
    COMPACT,
    PHEV,
    boot_reports_answered,
    connected,
    runtime_charger,
    tx_default_profile,
    wait_until,
)

DC_ONLY = dataclasses.replace(COMPACT, name="DC-only van", ac_max_kw=0.0)
WHY = "the car takes no AC power"
SAMPLED = {"MeterValueSampleInterval": "1"}


async def reported(csms, cp_id, status, after):
    return await csms.wait_for(
        cp_id,
        "StatusNotification",
        after=after,
        predicate=lambda e: e.payload["connectorId"] == 1 and e.payload["status"] == status,
    )


def statuses_heard(csms, after):
    return [
        e.payload["status"]
        for e in csms.log[after:]
        if e.action == "StatusNotification" and e.message_type == 2 and e.payload["connectorId"]
    ]


async def a_sample_later(csms, cp_id):
    """The meter has visited the connector since: a periodic MeterValues came after now."""
    await csms.wait_for(cp_id, "MeterValues", after=len(csms.log), timeout=5)


async def test_a_dc_only_car_on_an_ac_charger_is_suspended_ev_saying_why(csms, ticking):
    charger = runtime_charger("NP-AC", csms.url, evses=1, config=SAMPLED)
    async with connected(charger):
        ticking(charger)
        # The boot's Available may still be on its way (it was heard after the mark once).
        await boot_reports_answered(charger)
        mark = len(csms.log)
        charger.plug_in(1, DC_ONLY)
        assert await charger.present_id_tag(1, "A") == "Accepted"
        suspended = await reported(csms, "NP-AC", "SuspendedEV", mark)
        await a_sample_later(csms, "NP-AC")
    assert suspended.payload["info"] == WHY
    assert statuses_heard(csms, mark) == ["Preparing", "SuspendedEV"]
    assert charger.evse(1).power_w == 0.0


async def test_it_goes_back_to_suspended_ev_when_the_charger_offers_again(csms, ticking):
    """While the charger offers nothing, SuspendedEVSE wins (4.9); when it offers again,
    the car is the one holding the session again."""
    charger = runtime_charger("NP-OFFER", csms.url, evses=1, config=SAMPLED)
    async with connected(charger):
        ticking(charger)
        charger.plug_in(1, DC_ONLY)
        await charger.present_id_tag(1, "A")
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="start")
        mark = len(csms.log)
        answer = await csms.call(
            "NP-OFFER",
            call.SetChargingProfile(
                connector_id=1, cs_charging_profiles=tx_default_profile((0, 0))
            ),
        )
        assert answer.status == "Accepted"
        await reported(csms, "NP-OFFER", "SuspendedEVSE", mark)
        mark = len(csms.log)
        cleared = await csms.call("NP-OFFER", call.ClearChargingProfile(id=1))
        assert cleared.status == "Accepted"
        again = await reported(csms, "NP-OFFER", "SuspendedEV", mark)
        await a_sample_later(csms, "NP-OFFER")
    assert again.payload["info"] == WHY
    assert statuses_heard(csms, mark) == ["SuspendedEV"]


def test_a_simulated_driver_brings_no_car_that_takes_nothing_on_this_charger():
    ac = runtime_charger("NP-PICK", "ws://127.0.0.1:9/ocpp", evses=1)
    ac.vehicles = [DC_ONLY, PHEV]
    assert {ac.pick_vehicle() for _ in range(50)} == {PHEV}
