"""Reservation (OCPP 1.6 sections 3.13, 5.5, 5.13): ReserveNow and CancelReservation over
real loopback WebSockets against the built-in CSMS, and reservations across a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from ocpp.v16 import call
from ocpp.v16.datatypes import IdTagInfo

from chargers.models import ReservationRecord
from simulator.core.charge_point import ActionError, BootState
from simulator.core.evse import ConnectorStatus
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.cast import make_charger
from tests.engine import COMPACT, connected, loaded, runtime_charger, wait_until
from tests.workers import running

S = ConnectorStatus


def statuses(csms, cp_id, connector, after=0):
    return [
        e.payload["status"]
        for e in csms.log[after:]
        if e.cp_id == cp_id
        and e.direction == "in"
        and e.message_type == 2
        and e.action == "StatusNotification"
        and e.payload["connectorId"] == connector
    ]


async def settled(csms, charger):
    """Booted, and the statuses after boot are at the CSMS (and nothing else is queued)."""
    count = len(charger.evses) + 1
    await wait_until(
        lambda: len(csms.status.get(charger.id, {})) == count and not charger.queue,
        message=f"{charger.id}'s statuses after boot",
    )


async def started_transaction(csms, cp_id, after=0):
    entry = await csms.wait_for(cp_id, "StartTransaction", after=after, message_type=2)
    return entry.payload


async def test_a_reserved_connector_is_reserved_for_its_id_tag_and_the_start_carries_the_id(csms):
    charger = runtime_charger("RSV-1", csms.url, evses=2)
    async with connected(charger):
        await settled(csms, charger)
        mark = len(csms.log)
        assert await csms.reserve_now("RSV-1", 1, "ALICE", reservation_id=41) == "Accepted"
        await wait_until(
            lambda: statuses(csms, "RSV-1", 1, mark) == ["Reserved"], message="Reserved"
        )
        assert charger.evse(1).status is S.RESERVED

        charger.plug_in(1, COMPACT, soc=30)  # someone's car: the connector stays Reserved
        assert charger.evse(1).status is S.RESERVED
        with pytest.raises(ActionError, match="reserved for another idTag"):
            await charger.present_id_tag(1, "MALLORY")
        assert 1 not in charger.transactions

        assert await charger.present_id_tag(1, "ALICE") == "Accepted"
        start = await started_transaction(csms, "RSV-1", mark)
        assert start["reservationId"] == 41
        assert start["idTag"] == "ALICE"
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="confirmed")
        assert len(charger.reservations) == 0
        assert csms.reservations[41].state == "used"
        assert csms.reservations[41].transaction_id == charger.evse(1).transaction_id
        # Reserved -> Preparing -> Charging: the legal way out of Reserved.
        await wait_until(
            lambda: statuses(csms, "RSV-1", 1, mark) == ["Reserved", "Preparing", "Charging"],
            message="Reserved, Preparing, Charging",
        )


async def test_an_id_tag_of_the_reserved_group_may_start_and_others_may_not(csms):
    csms.authorize["MEMBER"] = IdTagInfo(status="Accepted", parent_id_tag="FLEET-A")
    csms.authorize["OUTSIDER"] = IdTagInfo(status="Accepted", parent_id_tag="FLEET-B")
    charger = runtime_charger("RSV-2", csms.url, evses=1)
    async with connected(charger):
        await settled(csms, charger)
        mark = len(csms.log)
        status = await csms.reserve_now(
            "RSV-2", 1, "BOSS", reservation_id=7, parent_id_tag="FLEET-A"
        )
        assert status == "Accepted"
        charger.plug_in(1, COMPACT)
        with pytest.raises(ActionError, match="reserved"):
            await charger.present_id_tag(1, "OUTSIDER")
        assert await charger.present_id_tag(1, "MEMBER") == "Accepted"
        start = await started_transaction(csms, "RSV-2", mark)
        assert start == {**start, "idTag": "MEMBER", "reservationId": 7}


async def test_the_reserved_id_tag_is_known_in_any_case_and_stops_its_transaction(csms):
    """QA: OCPP 1.6 makes an IdToken a CiString20, "a case insensitive string" (section
    7.28). A connector reserved for 04A1B2C3 was refused to the card read as 04a1b2c3,
    and a transaction stopped only for its idTag in the very case it started with."""
    charger = runtime_charger("RSV-CASE", csms.url, evses=1)
    async with connected(charger):
        await settled(csms, charger)
        mark = len(csms.log)
        assert await csms.reserve_now("RSV-CASE", 1, "04A1B2C3", reservation_id=61) == "Accepted"
        charger.plug_in(1, COMPACT)
        assert await charger.present_id_tag(1, "04a1b2c3") == "Accepted"
        start = await started_transaction(csms, "RSV-CASE", mark)
        assert start["reservationId"] == 61
        assert await charger.present_id_tag(1, "04A1b2C3") == "Stopped"
        stop = await csms.wait_for("RSV-CASE", "StopTransaction", after=mark)
    assert stop.payload["reason"] == "Local"


async def test_a_remote_start_for_a_reserved_group_asks_the_csmss_word_on_the_id_tag(csms):
    """QA: a connector reserved for a group (a parentIdTag) refused every remote start of
    an idTag whose group the charger did not know yet: 1.6 section 5.13 has it send an
    Authorize to learn the parentIdTag. Now the start waits for that answer, and only a
    member of the group starts (with the reservationId)."""
    csms.authorize["MEMBER"] = IdTagInfo(status="Accepted", parent_id_tag="FLEET-A")
    csms.authorize["OUTSIDER"] = IdTagInfo(status="Accepted", parent_id_tag="FLEET-B")
    charger = runtime_charger("RSV-RGRP", csms.url, evses=1, simulate_ev_on_remote_start=True)
    async with connected(charger):
        await settled(csms, charger)
        reserved = await csms.reserve_now(
            "RSV-RGRP", 1, "BOSS", reservation_id=8, parent_id_tag="FLEET-A"
        )
        assert reserved == "Accepted"
        mark = len(csms.log)
        start = call.RemoteStartTransaction(id_tag="OUTSIDER", connector_id=1)
        assert (await csms.call("RSV-RGRP", start)).status == "Accepted"
        await csms.wait_for("RSV-RGRP", "Authorize", after=mark, direction="out")
        await wait_until(lambda: not charger.queue, message="the Authorize answered")
        assert charger.evse(1).status is S.RESERVED and 1 not in charger.transactions
        start = call.RemoteStartTransaction(id_tag="MEMBER", connector_id=1)
        assert (await csms.call("RSV-RGRP", start)).status == "Accepted"
        started = await started_transaction(csms, "RSV-RGRP", mark)
    assert (started["idTag"], started["reservationId"]) == ("MEMBER", 8)


async def test_a_reservation_expires_at_its_expiry_date(csms):
    charger = runtime_charger("RSV-3", csms.url, evses=1)
    async with connected(charger):
        await settled(csms, charger)
        mark = len(csms.log)
        expiry = timedelta(seconds=1.0)
        assert await csms.reserve_now("RSV-3", 1, "ALICE", expiry, reservation_id=3) == "Accepted"
        await wait_until(lambda: statuses(csms, "RSV-3", 1, mark) == ["Reserved"], message="R")
        await wait_until(
            lambda: statuses(csms, "RSV-3", 1, mark) == ["Reserved", "Available"],
            timeout=5,
            message="the reservation to expire",
        )
        assert len(charger.reservations) == 0
        # Anyone may charge now.
        charger.plug_in(1, COMPACT)
        assert await charger.present_id_tag(1, "MALLORY") == "Accepted"
        start = await started_transaction(csms, "RSV-3", mark)
        assert "reservationId" not in start


async def test_cancel_reservation_frees_the_connector_and_an_unknown_id_is_rejected(csms):
    charger = runtime_charger("RSV-4", csms.url, evses=1)
    async with connected(charger):
        await settled(csms, charger)
        mark = len(csms.log)
        assert await csms.reserve_now("RSV-4", 1, "ALICE", reservation_id=9) == "Accepted"
        assert await csms.cancel_reservation("RSV-4", 10) == "Rejected"
        assert await csms.cancel_reservation("RSV-4", 9) == "Accepted"
        await wait_until(
            lambda: statuses(csms, "RSV-4", 1, mark) == ["Reserved", "Available"], message="A"
        )
        assert csms.reservations[9].state == "cancelled"
        assert await csms.cancel_reservation("RSV-4", 9) == "Rejected"  # gone


async def test_reserve_now_answers_occupied_faulted_unavailable_and_rejected(csms):
    charger = runtime_charger("RSV-5", csms.url, evses=3)
    async with connected(charger):
        # 1: a session; 2: faulted; 3: made Unavailable.
        charger.plug_in(1, COMPACT)
        await charger.present_id_tag(1, "T1")
        charger.inject_fault(2, "GroundFailure")
        answer = await csms.call(
            "RSV-5", call.ChangeAvailability(connector_id=3, type="Inoperative")
        )
        assert answer.status == "Accepted"

        assert await csms.reserve_now("RSV-5", 1, "A", reservation_id=1) == "Occupied"
        assert await csms.reserve_now("RSV-5", 2, "A", reservation_id=2) == "Faulted"
        assert await csms.reserve_now("RSV-5", 3, "A", reservation_id=3) == "Unavailable"
        assert await csms.reserve_now("RSV-5", 4, "A", reservation_id=4) == "Rejected"  # none
        # Connector 0 without ReserveConnectorZeroSupported (false by default).
        assert await csms.reserve_now("RSV-5", 0, "A", reservation_id=5) == "Rejected"
        # An expiry already past.
        past = datetime.now(UTC) - timedelta(minutes=1)
        answer = await csms.call(
            "RSV-5",
            call.ReserveNow(
                connector_id=1,
                expiry_date=past.isoformat(),
                id_tag="A",
                reservation_id=6,
            ),
        )
        assert answer.status == "Rejected"
        charger.clear_fault(2)
        assert await csms.reserve_now("RSV-5", 2, "A", reservation_id=7) == "Accepted"
        # Held by reservation 7: another reservation gets Occupied, the same id replaces it.
        assert await csms.reserve_now("RSV-5", 2, "B", reservation_id=8) == "Occupied"
        assert await csms.reserve_now("RSV-5", 2, "B", reservation_id=7) == "Accepted"
        held = charger.reservations.on_connector(2)
        assert held is not None and held.id_tag == "B"
        assert len(charger.reservations) == 1


async def test_a_fault_or_unavailability_ends_the_reservation(csms):
    charger = runtime_charger("RSV-6", csms.url, evses=2)
    async with connected(charger):
        await settled(csms, charger)
        mark = len(csms.log)
        assert await csms.reserve_now("RSV-6", 1, "A", reservation_id=1) == "Accepted"
        assert await csms.reserve_now("RSV-6", 2, "B", reservation_id=2) == "Accepted"
        charger.inject_fault(1, "OtherError")
        await csms.call("RSV-6", call.ChangeAvailability(connector_id=2, type="Inoperative"))
        assert len(charger.reservations) == 0
        charger.clear_fault(1)
        await wait_until(
            lambda: statuses(csms, "RSV-6", 1, mark) == ["Reserved", "Faulted", "Available"],
            message="connector 1 back to Available",
        )
        assert statuses(csms, "RSV-6", 2, mark) == ["Reserved", "Unavailable"]
        assert await csms.cancel_reservation("RSV-6", 1) == "Rejected"


async def test_moving_a_reservation_frees_its_old_connector(csms):
    charger = runtime_charger("RSV-7", csms.url, evses=2)
    async with connected(charger):
        await settled(csms, charger)
        mark = len(csms.log)
        assert await csms.reserve_now("RSV-7", 1, "A", reservation_id=5) == "Accepted"
        assert await csms.reserve_now("RSV-7", 2, "A", reservation_id=5) == "Accepted"
        await wait_until(
            lambda: statuses(csms, "RSV-7", 1, mark) == ["Reserved", "Available"], message="1"
        )
        assert statuses(csms, "RSV-7", 2, mark) == ["Reserved"]


async def test_connector_zero_keeps_one_connector_free_for_its_id_tag(csms):
    charger = runtime_charger(
        "RSV-8", csms.url, evses=2, config={"ReserveConnectorZeroSupported": "true"}
    )
    async with connected(charger):
        await settled(csms, charger)
        mark = len(csms.log)
        assert await csms.reserve_now("RSV-8", 0, "ALICE", reservation_id=11) == "Accepted"
        # No connector changes status for a reservation of connector 0.
        await asyncio.sleep(0.2)
        assert statuses(csms, "RSV-8", 1, mark) == statuses(csms, "RSV-8", 2, mark) == []
        # BOB may take one connector: another stays free for ALICE ...
        charger.plug_in(1, COMPACT)
        assert await charger.present_id_tag(1, "BOB") == "Accepted"
        # ... but not the last one (QA: which was said to be reserved itself).
        charger.plug_in(2, COMPACT)
        last = "connector 2 is the last free one, kept for a reservation of connector 0"
        with pytest.raises(ActionError, match=last):
            await charger.present_id_tag(2, "CAROL")
        # A second reservation of connector 0 finds no free connector left for it.
        assert await csms.reserve_now("RSV-8", 0, "DAVE", reservation_id=12) == "Occupied"
        assert await charger.present_id_tag(2, "ALICE") == "Accepted"
        await wait_until(lambda: len(csms.transactions) == 2, message="two starts")
        by_tag = {t.id_tag: t for t in csms.transactions.values()}
        assert by_tag["ALICE"].reservation_id == 11 and by_tag["ALICE"].connector_id == 2
        assert by_tag["BOB"].reservation_id is None
        assert len(charger.reservations) == 0


async def test_remote_start_on_a_reserved_connector_only_for_its_id_tag(csms):
    charger = runtime_charger("RSV-9", csms.url, evses=1, simulate_ev_on_remote_start=True)
    async with connected(charger):
        await settled(csms, charger)
        mark = len(csms.log)
        assert await csms.reserve_now("RSV-9", 1, "ALICE", reservation_id=21) == "Accepted"
        other = await csms.call("RSV-9", call.RemoteStartTransaction(id_tag="BOB", connector_id=1))
        assert other.status == "Rejected"
        own = await csms.call("RSV-9", call.RemoteStartTransaction(id_tag="ALICE", connector_id=1))
        assert own.status == "Accepted"
        start = await started_transaction(csms, "RSV-9", mark)
        assert start["reservationId"] == 21 and start["idTag"] == "ALICE"


async def test_a_remote_start_without_a_connector_takes_the_id_tags_reserved_one(csms):
    """QA15: with no connectorId, the start went on the first free connector, sent no
    reservationId and left the idTag's own reservation on connector 2 until it expired."""
    charger = runtime_charger("RSV-10", csms.url, evses=2, simulate_ev_on_remote_start=True)
    async with connected(charger):
        await settled(csms, charger)
        mark = len(csms.log)
        assert await csms.reserve_now("RSV-10", 2, "ALICE", reservation_id=22) == "Accepted"
        own = await csms.call("RSV-10", call.RemoteStartTransaction(id_tag="ALICE"))
        assert own.status == "Accepted"
        start = await started_transaction(csms, "RSV-10", mark)
        assert (start["connectorId"], start.get("reservationId")) == (2, 22)
        assert len(charger.reservations) == 0
        # Another idTag, with no connector named, still gets the free one.
        mark = len(csms.log)
        other = await csms.call("RSV-10", call.RemoteStartTransaction(id_tag="BOB"))
        assert other.status == "Accepted"
        second = await started_transaction(csms, "RSV-10", mark)
        assert second["connectorId"] == 1


async def test_a_charger_without_the_reservation_profile_answers_not_supported(csms):
    charger = runtime_charger(
        "RSV-10", csms.url, evses=1, config={"SupportedFeatureProfiles": "Core"}
    )
    async with connected(charger):
        unique_id = await csms.send_raw(
            "RSV-10",
            '[2,"r1","CancelReservation",{"reservationId":1}]',
        )
        reply = await csms.wait_for("RSV-10", direction="in", unique_id=unique_id)
        assert reply.message_type == 4 and reply.error_code == "NotSupported"


@pytest.mark.django_db(transaction=True)
async def test_reservations_survive_a_worker_restart_and_expire_while_it_is_down(csms):
    await database_sync_to_async(make_charger)("RSV-DB", evses=2, csms_url=csms.url)
    async with running("RSV-DB"):
        status = await csms.reserve_now("RSV-DB", 1, "ALICE", timedelta(hours=1), reservation_id=1)
        assert status == "Accepted"
        status = await csms.reserve_now("RSV-DB", 2, "BOB", timedelta(seconds=4), reservation_id=2)
        assert status == "Accepted"
    stored = await database_sync_to_async(
        lambda: sorted(ReservationRecord.objects.values_list("reservation_id", "id_tag"))
    )()
    assert stored == [(1, "ALICE"), (2, "BOB")]
    expiry = datetime.fromisoformat(csms.reservations[2].expiry_date)
    while datetime.now(UTC) <= expiry:  # reservation 2 expires while no worker runs
        await asyncio.sleep(0.1)
    mark = len(csms.log)
    async with running("RSV-DB") as charger:
        await wait_until(
            lambda: statuses(csms, "RSV-DB", 2, mark) and statuses(csms, "RSV-DB", 1, mark),
            message="statuses after the restart",
        )
        assert statuses(csms, "RSV-DB", 1, mark) == ["Reserved"]
        assert statuses(csms, "RSV-DB", 2, mark) == ["Available"]
        assert [r.reservation_id for r in charger.reservations] == [1]
        charger.plug_in(1, COMPACT)
        assert await charger.present_id_tag(1, "ALICE") == "Accepted"
        start = await started_transaction(csms, "RSV-DB", mark)
        assert start["reservationId"] == 1
    left = await database_sync_to_async(ReservationRecord.objects.count)()
    assert left == 0


@pytest.mark.django_db(transaction=True)
async def test_a_reservation_due_during_a_slow_stop_is_saved_as_it_stood_when_the_stop_began(csms):
    """A stop saves what the chargers held when it began: a reservation that falls due
    while the stop waits for a slow task (a write the database holds up) is not expired
    by a charger whose link is already gone. The next start expires it."""
    await database_sync_to_async(make_charger)("RSV-STOP", evses=1, csms_url=csms.url)
    service = Simulator(RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, only_ids=["RSV-STOP"]))
    await service.start()
    release = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(3600)
        finally:  # holds the stop's wait, as a write the database holds up does
            await asyncio.shield(release.wait())

    try:
        charger = loaded(service, "RSV-STOP")
        await wait_until(lambda: charger.online and charger.boot is BootState.ACCEPTED)
        status = await csms.reserve_now(
            "RSV-STOP", 1, "BOB", timedelta(seconds=1), reservation_id=7
        )
        assert status == "Accepted"
        service.spawn(slow_to_end(), "slow-to-end")
    finally:
        stopping = asyncio.create_task(service.stop())
        expiry = datetime.fromisoformat(csms.reservations[7].expiry_date)
        while datetime.now(UTC) <= expiry + timedelta(seconds=0.5):
            await asyncio.sleep(0.1)
        release.set()
        await stopping
    assert [r.reservation_id for r in charger.reservations] == [7]
    stored = await database_sync_to_async(
        lambda: list(ReservationRecord.objects.values_list("reservation_id", flat=True))
    )()
    assert stored == [7]


@pytest.mark.parametrize("ends", ["cancelled", "expired"])
async def test_a_reservation_ending_with_a_car_plugged_in_leaves_the_connector_preparing(
    csms, ends
):
    """A car plugged into a reserved connector waits there (Reserved); when the reservation
    ends the connector is Preparing, as a car plugged into a free one is: it went Available
    with the car still in it, and a CSMS would have offered it to the next driver."""
    cp_id = f"RSV-CAR-{ends}"
    charger = runtime_charger(cp_id, csms.url, evses=1)
    async with connected(charger):
        await settled(csms, charger)
        mark = len(csms.log)
        expiry = timedelta(seconds=1.0 if ends == "expired" else 600)
        assert await csms.reserve_now(cp_id, 1, "ALICE", expiry, reservation_id=11) == "Accepted"
        await wait_until(lambda: statuses(csms, cp_id, 1, mark) == ["Reserved"], message="R")
        charger.plug_in(1, COMPACT)
        if ends == "cancelled":
            assert await csms.cancel_reservation(cp_id, 11) == "Accepted"
        await wait_until(
            lambda: len(statuses(csms, cp_id, 1, mark)) == 2,
            timeout=5,
            message=f"the reservation {ends}",
        )
        assert statuses(csms, cp_id, 1, mark) == ["Reserved", "Preparing"]
        assert charger.evse(1).status is S.PREPARING
