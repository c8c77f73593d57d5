"""Cars waiting on one charger take turns. When its rated power or its ChargePointMax cannot
give every car the 6 A a phase an AC charger must offer, the cars admitted last wait
(SuspendedEVSE); once one has waited its location's turn (`rotation_minutes`), as many of
the cars admitted first give up their places, round the queue. The charger's arithmetic on
its own clock, then over real loopback WebSockets against the built-in CSMS."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from ocpp.v16 import call

from simulator.core.evse import ConnectorStatus
from simulator.core.operations import Operations
from simulator.runtime.load_management import UNPLACED_TURN_S, Site, SiteController
from simulator.runtime.meter_engine import MeterEngine
from tests.engine import COMPACT, connected, runtime_charger, wait_until

Status = ConnectorStatus
SITE = 7


def cpmax(limit: float, profile_id: int = 1) -> dict:
    return {
        "chargingProfileId": profile_id,
        "stackLevel": 0,
        "chargingProfilePurpose": "ChargePointMaxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
        },
    }


def in_sessions(cp_id: str, max_kw: float, evses: int = 3):
    """A charger (no socket) with an 11 kW three-phase car in a session on each connector,
    the sessions started a second apart in connector order."""
    charger = runtime_charger(cp_id, "", evses=evses, max_kw=max_kw)
    for connector in range(1, evses + 1):
        charger.plug_in(connector, COMPACT, soc=20, target_soc=100)
        charger.start_transaction(connector, f"TAG-{connector}")
        charger.transactions[connector].started_at = f"2026-12-04T10:00:0{connector}Z"
    return charger


def charging(charger, now: float, turn_s: float = 60.0) -> list[int]:
    """The connectors given power after the limits are shared at `now` (monotonic s)."""
    charger.refresh_limits(charger.demand_w(), turn_s, now)
    return [c for c, limit in sorted(charger.limits.items()) if limit.watts > 0]


def test_cars_on_a_charger_too_small_for_all_take_turns_round_the_queue():
    # 11 kW for three 11 kW cars: thirds (5.3 A a phase) would charge none, so two charge
    # and one waits. Each turn, the car that has charged longest gives up its place.
    charger = in_sessions("TURN-R", max_kw=11.0)
    assert charging(charger, 0.0) == [1, 2]
    assert charging(charger, 59.0) == [1, 2]  # a turn is not over yet
    assert charging(charger, 60.0) == [2, 3]
    assert charging(charger, 119.0) == [2, 3]
    assert charging(charger, 120.0) == [1, 3]
    assert charging(charger, 180.0) == [1, 2]
    for now in (240.0, 300.0, 360.0):  # the rated power holds through every turn
        charging(charger, now)
        assert sum(limit.watts for limit in charger.limits.values()) <= 11_000.0 + 1e-6


def test_without_turns_a_car_waits_on_the_charger_until_a_session_ends():
    charger = in_sessions("TURN-0", max_kw=11.0)
    for now in (0.0, 3_600.0, 86_400.0):
        assert charging(charger, now, turn_s=0.0) == [1, 2]
    charger.stop_transaction(1)
    assert charging(charger, 86_401.0, turn_s=0.0) == [2, 3]


def test_a_new_session_on_a_connector_queues_behind_the_cars_already_there():
    # Connector 1's session ends and a new one starts there between two visits of the
    # meter: it is the newest session, so it waits and connectors 2 and 3 charge.
    charger = in_sessions("TURN-NEW", max_kw=11.0)
    assert charging(charger, 0.0) == [1, 2]
    charger.stop_transaction(1)
    charger.unplug(1)
    charger.plug_in(1, COMPACT, soc=20, target_soc=100)
    charger.start_transaction(1, "TAG-NEW")
    charger.transactions[1].started_at = "2026-12-04T10:05:00Z"
    assert charging(charger, 2.0) == [2, 3]


def test_a_charge_point_max_too_small_for_all_takes_turns_too():
    # 16 A for three cars: two at 8 A, one waiting, and turns as with the rated power.
    charger = in_sessions("TURN-CPM", max_kw=66.0)
    assert Operations(charger).on_set_charging_profile(0, cpmax(16)) == "Accepted"
    assert charging(charger, 0.0) == [1, 2]
    assert charging(charger, 60.0) == [2, 3]
    assert [charger.limits[c].amps for c in (1, 2, 3)] == [0.0, 8.0, 8.0]


def test_dc_cars_a_charge_point_max_holds_back_take_turns_too():
    # 100 A for two DC cars that take no less than 60 A: one charges, the other waits and
    # takes its turn (it waited until a session ended).
    charger = runtime_charger("TURN-DC", "", evses=2, power_type="DC", max_kw=150.0)
    least = {**cpmax(200, profile_id=2), "chargingProfilePurpose": "TxDefaultProfile"}
    least["chargingSchedule"] = {**least["chargingSchedule"], "minChargingRate": 60}
    operations = Operations(charger)
    assert operations.on_set_charging_profile(0, cpmax(100)) == "Accepted"
    assert operations.on_set_charging_profile(0, least) == "Accepted"
    for connector in (1, 2):
        charger.plug_in(connector, COMPACT, soc=20, target_soc=100)
        charger.start_transaction(connector, f"TAG-{connector}")
        charger.transactions[connector].started_at = f"2026-12-04T10:00:0{connector}Z"
    assert charging(charger, 0.0) == [1]
    assert charging(charger, 59.0) == [1]
    assert charging(charger, 60.0) == [2]
    assert charging(charger, 120.0) == [1]
    assert charger.limits[1].amp_cap == 100.0 and charger.limits[2].amp_cap == 0.0


def test_a_car_its_own_profile_holds_at_nothing_takes_no_turn():
    # Connector 3's TxProfile offers 0 A: it wants power, gets none, and would get none alone
    # either. No turn would help it, so the others keep charging.
    charger = in_sessions("TURN-OWN", max_kw=11.0)
    tx_profile = {
        **cpmax(0, profile_id=9),
        "chargingProfilePurpose": "TxProfile",
        "transactionId": charger.transactions[3].transaction_id or -1,
    }
    assert Operations(charger).on_set_charging_profile(3, tx_profile) == "Accepted"
    for now in (0.0, 60.0, 120.0, 600.0):
        assert charging(charger, now) == [1, 2]


def test_a_location_says_how_long_a_turn_lasts():
    sites = SiteController()
    sites.use({SITE: Site(None, False, 120.0), 8: Site(50_000.0, True, 0.0)})
    assert sites.turn_s(SITE) == 120.0  # load management off: turns on its chargers still
    assert sites.turn_s(8) == 0.0
    assert sites.turn_s(None) == sites.turn_s(99) == UNPLACED_TURN_S


@contextlib.asynccontextmanager
async def ticking_at(charger, turn_s: float):
    """The meter ticking over `charger`, its location taking turns every `turn_s`."""
    sites = SiteController()
    sites.use({SITE: Site(None, False, turn_s)})
    engine = MeterEngine([charger], tick_seconds=0.05, sites=sites)
    task = asyncio.get_running_loop().create_task(engine.run())
    try:
        yield engine
    finally:
        task.cancel()


async def start_three(charger) -> None:
    for connector in (1, 2, 3):
        charger.plug_in(connector, COMPACT, soc=20, target_soc=100)
        assert await charger.present_id_tag(connector, f"TAG-{connector}") == "Accepted"
        await wait_until(
            lambda c=connector: charger.evse(c).transaction_id is not None,
            message=f"session {connector}",
        )


def heard(csms, cp_id, connector, status, after):
    return csms.wait_for(
        cp_id,
        "StatusNotification",
        after=after,
        predicate=lambda e: e.payload["connectorId"] == connector and e.payload["status"] == status,
    )


@pytest.mark.parametrize("limit", ["rated power", "ChargePointMax"])
async def test_the_csms_sees_cars_on_one_charger_take_turns(csms, limit):
    # Turns of 1 s. The waiting car charges after its turn and the first one pauses; each
    # says so to the CSMS (SuspendedEVSE, then Charging), and the charger never draws more
    # than it may.
    cp_id = "TURN-RATED" if limit == "rated power" else "TURN-MAX"
    charger = runtime_charger(
        cp_id, csms.url, evses=3, max_kw=11.0 if limit == "rated power" else 66.0, location_id=SITE
    )
    async with connected(charger), ticking_at(charger, turn_s=1.0):
        if limit == "ChargePointMax":
            answer = await csms.call(
                cp_id, call.SetChargingProfile(connector_id=0, cs_charging_profiles=cpmax(16))
            )
            assert answer.status == "Accepted"
        await start_three(charger)
        await wait_until(
            lambda: charger.evse(3).status is Status.SUSPENDED_EVSE, message="the third waits"
        )
        mark = len(csms.log)
        await heard(csms, cp_id, 3, "Charging", mark)
        await heard(csms, cp_id, 1, "SuspendedEVSE", mark)
        await wait_until(lambda: charger.evse(3).power_w > 0, message="the third charging")
        assert charger.evse(1).power_w == 0.0
        mark = len(csms.log)
        await heard(csms, cp_id, 1, "Charging", mark)  # and round again
        await heard(csms, cp_id, 2, "SuspendedEVSE", mark)
        if limit == "rated power":
            assert sum(e.power_w for e in charger.evses) <= 11_000.0 + 1.0
        else:
            assert all(max(e.current_a, default=0.0) <= 8.0 + 1e-6 for e in charger.evses)
