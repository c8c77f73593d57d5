"""Fleet edits reach a running worker: each kind of change, seen at the built-in CSMS over
real sockets, sent as `fleet_changed` through the real (in-memory) channel layer."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import weakref
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone
from ocpp.v16 import call

from chargers.engine_client import EngineClient
from chargers.models import Charger as ChargerRow
from chargers.models import ConfigurationKey, Evse
from fleet_io import fleet_changes
from simulator import contract
from simulator.core.charge_point import BootState, LinkState
from simulator.core.outbox import Outgoing
from simulator.csms import CentralSystem
from simulator.runtime import live_fleet
from simulator.runtime.events import snapshot
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.cast import make_charger, make_vehicle
from tests.database_away import backend_pid, database_away, terminate_backend
from tests.engine import COMPACT, boot_reports_answered, loaded, register_now, wait_until
from tests.process import free_port
from vehicles.models import VehicleModel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("flushed_layer")]


@pytest.fixture
async def worker(csms):
    await sync_to_async(make_charger)("CP-LIVE", evses=2, csms_url=csms.url)
    service = Simulator(
        RunOptions(
            tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5, reconcile_seconds=0.3
        )
    )
    await service.start(channels=True)
    charger = loaded(service, "CP-LIVE")
    await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="CP-LIVE boot")
    try:
        yield service
    finally:
        await service.stop()


async def saved(*pks: int) -> list[contract.ChargerOutcome]:
    """Send fleet_changed for these chargers as the web side does after commit; the answer."""
    layer = get_channel_layer()
    reply = await layer.new_channel()
    await layer.group_send(
        contract.engine_group(0),
        contract.fleet_changed(list(pks), reply_channel=reply, request_id="r1"),
    )
    # First, at once, that the worker got it; then what it did.
    receipt = await asyncio.wait_for(layer.receive(reply), 10)
    assert receipt["type"] == contract.EVENT_FLEET_RECEIVED
    assert (receipt["request_id"], receipt["shard"]) == ("r1", 0)
    answer = await asyncio.wait_for(layer.receive(reply), 10)
    assert answer["type"] == contract.EVENT_FLEET_APPLIED and answer["request_id"] == "r1"
    return answer["outcomes"]


async def state_of(pk: int, cp_id: str) -> str:
    """What the worker answers a `state` command for the charger, as the web side asks."""
    result = await EngineClient().command(pk, cp_id, contract.STATE)
    return result["message"]


def pk_of(cp_id: str) -> int:
    return ChargerRow.objects.get(charge_point_id=cp_id).pk


def edit(pk: int, **values: Any) -> None:
    """Change the row as an edit (admin, API, import) saves it: a new version (`updated`).
    With the version unchanged, the worker may answer an outcome it gave that version
    (the look-ahead of a reconciliation) for this edit's."""
    ChargerRow.objects.filter(pk=pk).update(updated=timezone.now(), **values)


async def start_session(service: Simulator, cp_id: str, csms: CentralSystem) -> None:
    charger = loaded(service, cp_id)
    # Not booted yet (its BootNotification received by the CSMS, not yet answered), the
    # charger decides the idTag offline: "Invalid" (seen on a loaded host).
    await wait_until(
        lambda: charger.online and charger.boot is BootState.ACCEPTED, message=f"{cp_id} booted"
    )
    charger.plug_in(1, COMPACT, soc=30)
    assert await charger.present_id_tag(1, "TAG-1") == "Accepted"
    await csms.wait_for(cp_id, "StartTransaction", direction="out", message_type=3)


async def test_a_new_charger_boots_at_the_csms_without_a_restart(worker, csms):
    row = await sync_to_async(make_charger)("CP-NEW", evses=1, csms_url=csms.url)
    outcomes = await saved(row.pk)
    assert outcomes == [
        {"charger_id": row.pk, "charge_point_id": "CP-NEW", "outcome": "loaded, connecting"}
    ]
    await csms.wait_for("CP-NEW", "BootNotification")


async def test_the_fleet_counts_follow_chargers_loaded_and_stopped_live(worker, csms):
    assert (worker.tally.counts().fleet["chargers"], worker.status().wanted) == (1, 1)
    row = await sync_to_async(make_charger)("CP-NEW", evses=1, csms_url=csms.url)
    await saved(row.pk)
    assert (worker.tally.counts().fleet["chargers"], worker.status().wanted) == (2, 2)
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(edit)(pk, enabled=False)
    await saved(pk)
    assert worker.tally.counts().fleet["chargers"] == 1


async def test_a_disabled_charger_ends_its_transaction_with_reason_other_and_goes_offline(
    worker, csms
):
    await start_session(worker, "CP-LIVE", csms)
    charger = loaded(worker, "CP-LIVE")
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(edit)(pk, enabled=False)
    outcomes = await saved(pk)
    assert outcomes[0]["outcome"] == "stopped: disabled (its transaction ended, reason Other)"
    stop = await csms.wait_for("CP-LIVE", "StopTransaction")
    assert stop.payload["reason"] == "Other"
    await csms.wait_disconnected("CP-LIVE")
    assert worker.store.get("CP-LIVE") is None
    # Its last state, as the pages showing it hear it: offline, and why.
    await wait_until(lambda: charger.link_error != "", message="the reason")
    state = snapshot(charger)
    assert (state["link"], state["link_error"]) == ("offline", "disabled in the set-up")


async def test_a_charger_deleted_online_in_a_session_ends_it_with_reason_other(worker, csms):
    """A forced delete (the web side refuses the others): online, the StopTransaction
    leaves as the charger stops, and the answer says the transaction ended."""
    await start_session(worker, "CP-LIVE", csms)
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(ChargerRow.objects.filter(pk=pk).delete)()
    outcomes = await saved(pk)
    assert outcomes[0]["outcome"] == "stopped: deleted (its transaction ended, reason Other)"
    stop = await csms.wait_for("CP-LIVE", "StopTransaction")
    assert stop.payload["reason"] == "Other"
    await csms.wait_disconnected("CP-LIVE")


@pytest.mark.parametrize("reconciled_first", [False, True], ids=["message", "reconciled-first"])
async def test_a_charger_deleted_offline_in_a_session_does_not_say_its_transaction_ended(
    worker, csms, reconciled_first
):
    """Its outbox went with its row: the StopTransaction it could not send (the network
    cut) is never sent, and the answer says so rather than "its transaction ended". Also
    when the reconciliation saw the row gone and retired the charger before the web side's
    message came: its sender hears what was done, not an empty answer."""
    await start_session(worker, "CP-LIVE", csms)
    charger = loaded(worker, "CP-LIVE")
    charger.cut_network(120)
    await wait_until(lambda: not charger.online, message="offline")
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(ChargerRow.objects.filter(pk=pk).delete)()
    if reconciled_first:
        await worker.reloader.reconcile()
        assert worker.store.get("CP-LIVE") is None
    outcomes = await saved(pk)
    assert [o["outcome"] for o in outcomes] == [
        "stopped: deleted while offline: 1 transaction left open at its CSMS "
        "(its StopTransaction never sent)"
    ]
    assert worker.store.get("CP-LIVE") is None


async def test_a_disabled_charger_says_how_many_transactions_it_ended(worker, csms):
    await start_session(worker, "CP-LIVE", csms)
    charger = loaded(worker, "CP-LIVE")
    charger.plug_in(2, COMPACT, soc=30)
    assert await charger.present_id_tag(2, "TAG-2") == "Accepted"
    await wait_until(lambda: len(charger.transactions) == 2, message="two sessions")
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(edit)(pk, enabled=False)
    outcomes = await saved(pk)
    assert outcomes[0]["outcome"] == "stopped: disabled (its 2 transactions ended, reason Other)"


async def test_the_admins_disable_action_stops_a_charger_whose_last_edit_was_reconciled(
    worker, csms, admin_client_logged_in
):
    """The action's UPDATE left `updated` as it was. A worker that had applied the row's
    last version by its reconciliation (an edit it was not told of) took the message for
    that version, answered "applied live", and the charger ran on, disabled, for ever."""
    from django.utils import timezone

    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(ChargerRow.objects.filter(pk=pk).update)(
        max_power_kw=21, updated=timezone.now()
    )
    await worker.reloader.reconcile()
    response = await sync_to_async(admin_client_logged_in.post)(
        "/admin/chargers/charger/", {"action": "disable", "_selected_action": [pk]}, follow=True
    )
    shown = [str(m) for m in response.context["messages"]]
    assert "CP-LIVE stopped: disabled." in shown, shown
    await csms.wait_disconnected("CP-LIVE")
    assert worker.store.get("CP-LIVE") is None


async def test_an_admin_action_on_many_chargers_says_each_outcome_once(
    twelve, csms, admin_client_logged_in
):
    """Deleting the 3,000 chargers of an import from the changelist said a line per
    charger ("QA-HUGE-0001 stopped: deleted." 3,000 times) above the list. Past ten
    chargers it is a line per outcome, as an import says it."""
    pks = list((await sync_to_async(the_twelve)()).values())
    response = await sync_to_async(admin_client_logged_in.post)(
        "/admin/chargers/charger/", {"action": "disable", "_selected_action": pks}, follow=True
    )
    shown = [str(m) for m in response.context["messages"]]
    assert sorted(shown) == [
        "Disabled 12 chargers.",
        "stopped: disabled: 12 chargers (CP-B00, CP-B01, CP-B02, CP-B03, CP-B04 and 7 more)",
    ], shown
    await wait_until(lambda: not twelve.store.by_pk(pks[-1]), message="stopped")


async def test_a_disabled_charger_enabled_again_finds_its_cars_still_plugged_in(worker, csms):
    """Disabled, then enabled, a charger's connectors came back Available under the cars
    plugged into it (a restart keeps them). A charger switched off and on finds them
    plugged in: Preparing, with the SoC they had, and no session starts by itself (the
    operator ended them), not even one a power loss ended whose boot never came."""
    from simulator.core.evse import ConnectorStatus

    pk = await sync_to_async(pk_of)("CP-LIVE")
    await start_session(worker, "CP-LIVE", csms)  # connector 1: a car at 30 %, charging
    charger = loaded(worker, "CP-LIVE")
    charger.plug_in(2, COMPACT, soc=55)
    charger.resume_after_boot_for(2, "TAG-2")  # as after a restart whose boot never came
    await wait_until(lambda: register_now(charger) > 1, message="energy flowing")
    await sync_to_async(edit)(pk, enabled=False)
    assert (await saved(pk))[0][
        "outcome"
    ] == "stopped: disabled (its transaction ended, reason Other)"
    battery = charger.evse(1).battery
    assert battery is not None
    soc = battery.soc
    await csms.wait_disconnected("CP-LIVE")
    mark = len(csms.log)
    await sync_to_async(edit)(pk, enabled=True)
    assert (await saved(pk))[0]["outcome"] == "loaded, connecting"
    await csms.wait_for("CP-LIVE", "BootNotification", after=mark)
    again = loaded(worker, "CP-LIVE")
    for connector_id, expected in ((1, soc), (2, 55)):
        await csms.wait_for(
            "CP-LIVE",
            "StatusNotification",
            after=mark,
            predicate=lambda e, c=connector_id: (
                e.payload["connectorId"] == c and e.payload["status"] == "Preparing"
            ),
        )
        kept = again.evse(connector_id).battery
        assert kept is not None and kept.soc == pytest.approx(expected, abs=0.1)
        assert again.evse(connector_id).status is ConnectorStatus.PREPARING
    await asyncio.sleep(0.5)  # a session resumed would start now, after the boot
    assert not again.transactions
    assert not [e for e in csms.log[mark:] if e.action == "StartTransaction"]


async def test_a_charger_moved_to_another_shard_is_taken_on_with_its_cars_plugged_in(csms):
    """Renamed into another shard (several workers), the charger's car vanished: the
    worker it left forgot it, and the one taking it on found its connector empty."""
    ids = [f"MOVE-{n}" for n in range(100)]
    here = next(cp_id for cp_id in ids if contract.shard_of(cp_id, 2) == 0)
    there = next(cp_id for cp_id in ids if contract.shard_of(cp_id, 2) == 1)
    row = await sync_to_async(make_charger)(here, evses=1, csms_url=csms.url)

    def options(shard: int) -> RunOptions:
        return RunOptions(shard=shard, shards=2, tick_seconds=0.1, checkpoint_seconds=0.1)

    first = Simulator(options(0))
    await first.start(connect=False, channels=True)
    try:
        loaded(first, here).plug_in(1, COMPACT, soc=40)
        await first.checkpoint()
        await sync_to_async(edit)(row.pk, charge_point_id=there)
        assert (await saved(row.pk))[0]["outcome"] == "stopped: moved to shard 1"
        await first.checkpoint()
    finally:
        await first.stop()
    second = Simulator(options(1))
    await second.start(connect=False)
    try:
        kept = loaded(second, there).evse(1).battery
        assert kept is not None and kept.soc == pytest.approx(40)
    finally:
        await second.stop()


@pytest.fixture
async def shard_zero(csms):
    """The worker of shard 0 of two, and an id of its shard for a charger arriving there."""
    cp_id = next(f"ARRIVE-{n}" for n in range(100) if contract.shard_of(f"ARRIVE-{n}", 2) == 0)
    service = Simulator(
        RunOptions(
            shard=0, shards=2, tick_seconds=0.1, checkpoint_seconds=0.1, reconcile_seconds=0.2
        )
    )
    await service.start(channels=True)
    try:
        yield service, cp_id
    finally:
        await service.stop()


async def test_a_charger_arriving_from_another_shard_waits_for_its_outbox_to_empty(
    csms, shard_zero
):
    """Moved to this shard mid-session: the other worker's StopTransaction was confirmed,
    but its outbox row waited for that worker's next checkpoint, and this worker, seeing
    no open transaction, loaded the charger and sent the StopTransaction a second time,
    under the charger's new identity."""
    from chargers.models import OutboxMessage

    service, cp_id = shard_zero
    row = await sync_to_async(make_charger)(cp_id, evses=1, csms_url=csms.url)
    stop = {"transactionId": 7, "meterStop": 10, "timestamp": "2026-12-05T12:00:00Z"}
    await sync_to_async(OutboxMessage.objects.add)([(row.pk, 1, "StopTransaction", stop, "")])
    assert (await saved(row.pk))[0]["outcome"] == live_fleet.WAITING_HANDOVER
    # Its state says so too, not a guess among disabled, deleted or a shard setting.
    assert (await state_of(row.pk, cp_id)).startswith(
        f"charger #{row.pk} is waiting for its previous worker (shard 1) to end its session (up to "
    )
    # The other worker's next checkpoint deletes the confirmed row: this one loads it.
    await sync_to_async(OutboxMessage.objects.filter(charger_id=row.pk).delete)()
    await wait_until(lambda: service.store.get(cp_id) is not None, message="taken on")
    await csms.wait_for(cp_id, "BootNotification")
    assert csms.counts["StopTransaction"] == 0


async def test_a_charger_another_worker_took_on_is_dropped_sending_nothing_more(csms, caplog):
    """QA (scaled-out): a worker stalled past the hand-over wait while its charger moved to
    the other shard; the other worker took it on (ending the session, PowerLoss), and once
    the stalled one ran again it stored a MeterValues and a StopTransaction of the session
    already ended, which the other worker sent at its next start: the transaction stopped
    twice, its energy counted twice."""
    from chargers.models import EngineLease, OutboxMessage, RuntimeState

    cp_id = next(f"TAKEN-{n}" for n in range(100) if contract.shard_of(f"TAKEN-{n}", 2) == 0)
    row = await sync_to_async(make_charger)(cp_id, evses=1, csms_url=csms.url)
    service = Simulator(
        RunOptions(
            shard=0, shards=2, tick_seconds=0.1, checkpoint_seconds=0.1, reconcile_seconds=0.2
        )
    )
    await service.start(channels=True)
    try:
        charger = loaded(service, cp_id)
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot")
        holder = await sync_to_async(lambda: RuntimeState.objects.get(charger_id=row.pk).holder)()
        assert holder is not None  # claimed at its load
        await start_session(service, cp_id, csms)
        await service.checkpoint()
        rows_before = await sync_to_async(OutboxMessage.objects.filter(charger_id=row.pk).count)()
        # The other worker takes it on: its load claims the charger (this one is "stalled").
        other = await sync_to_async(EngineLease.objects.stamp)(None, timezone.now())
        await sync_to_async(RuntimeState.objects.claim)([row.pk], other)
        stops = csms.counts["StopTransaction"]
        charger.stop_transaction(1)  # a transaction message of the session ended elsewhere
        await wait_until(lambda: service.store.get(cp_id) is None, message="dropped")
        await wait_until(lambda: not charger.online, message="offline")
        assert csms.counts["StopTransaction"] == stops  # nothing more sent from here
        await service.checkpoint()
        rows_after = await sync_to_async(OutboxMessage.objects.filter(charger_id=row.pk).count)()
        assert rows_after == rows_before  # nor stored for the other worker to send
        assert f"{cp_id}: another worker runs it now" in caplog.text
        assert charger.link_error == live_fleet.RUNS_ELSEWHERE
    finally:
        await service.stop()


async def test_an_idle_charger_the_other_shard_loaded_first_is_let_go_as_moved(
    csms, shard_zero, caplog
):
    """A CI flake, scaled out: an idle charger renamed into the other shard, whose worker's
    reconciliation loaded (and claimed) it before this worker heard of the rename. This one
    took it for a stall ("run by another worker now (it took them on while this one did
    not answer)", "another worker runs it now"), and answered the rename's message nothing
    at all: the charger had already gone from here."""
    from chargers.models import EngineLease, RuntimeState

    caplog.set_level(logging.INFO, logger=live_fleet.__name__)
    service, cp_id = shard_zero
    row = await sync_to_async(make_charger)(cp_id, evses=1, csms_url=csms.url)
    assert (await saved(row.pk))[0]["outcome"].startswith("loaded")
    charger = loaded(service, cp_id)
    await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot")
    moved = next(f"GONE-{n}" for n in range(100) if contract.shard_of(f"GONE-{n}", 2) == 1)

    def renamed_and_taken() -> None:
        with transaction.atomic():
            # The other worker's load, committed with the rename: this one reads both at
            # once. The claim first, as a worker takes its locks (the claims row, then the
            # chargers' rows): renamed first, the charger's row was locked while the claim
            # waited for this worker's checkpoint, which held the claims row and waited for
            # that charger's row (a deadlock PostgreSQL broke by failing this test).
            other = EngineLease.objects.stamp(None, timezone.now())
            RuntimeState.objects.claim([row.pk], other)
            renamed = ChargerRow.objects.get(pk=row.pk)
            renamed.charge_point_id = moved
            renamed.save()

    await sync_to_async(renamed_and_taken)()
    await wait_until(lambda: service.store.get(cp_id) is None, message="let go")
    await wait_until(lambda: not charger.online, message="offline")
    assert await saved(row.pk) == [
        {"charger_id": row.pk, "charge_point_id": moved, "outcome": "stopped: moved to shard 1"}
    ]
    assert "run by another worker" not in caplog.text
    assert "another worker runs it now" not in caplog.text
    assert f"{cp_id}: moved to another worker's shard, which loaded it first" in caplog.text
    assert charger.link_error == live_fleet.RUNS_ELSEWHERE


async def test_an_idle_charger_arriving_from_another_shard_waits_for_its_last_messages(
    csms, shard_zero
):
    """Renamed to another shard and straight back while idle: the first worker still had
    the SecurityEventNotification of its boot there in the outbox, and the charger was
    said to wait "for its previous worker to end its session", of which it had none."""
    from chargers.models import OutboxMessage

    _, cp_id = shard_zero
    row = await sync_to_async(make_charger)(cp_id, evses=1, csms_url=csms.url)
    event = {"type": "StartupOfTheFirmware", "timestamp": "2026-12-05T12:00:00Z"}
    await sync_to_async(OutboxMessage.objects.add)(
        [(row.pk, 1, "SecurityEventNotification", event, "")]
    )
    assert (await saved(row.pk))[0]["outcome"] == live_fleet.WAITING_MESSAGES
    assert (await state_of(row.pk, cp_id)).startswith(
        f"charger #{row.pk} is waiting for its previous worker (shard 1) to deliver its "
        "last messages (up to "
    )


async def test_a_change_sent_by_a_process_of_another_shard_count_says_so(csms, shard_zero):
    """QA (scaled out): the Celery worker started without CHARGESIM_SHARDS (so 1) beside
    workers of --shard K/2. An import told only shard 0's group; that worker answered for
    none of the chargers, the others' worker heard nothing, and the import's result said
    nothing at all (no outcome, no note) while its chargers waited for a reconciliation."""
    # Shard 1's of two: a process of one shard sends it to shard 0's worker.
    cp_id = next(f"ELSE-{n}" for n in range(100) if contract.shard_of(f"ELSE-{n}", 2) == 1)
    row = await sync_to_async(make_charger)(cp_id, evses=1, csms_url=csms.url)
    reports: list[fleet_changes.Applied] = []

    def save() -> None:  # as an import job or an admin save does, in a thread of its own
        fleet_changes.notify_fleet_change([(row.pk, cp_id)], report=reports.append)

    assert settings.CHARGESIM_SHARDS == 1
    await sync_to_async(save, thread_sensitive=False)()
    said = fleet_changes.describe(reports[0])
    assert said == [
        (
            False,
            "Saved, but the simulator workers run as --shard K/2 while CHARGESIM_SHARDS is 1 "
            "in this process: it told the workers of the wrong shards, and a charger's own "
            "worker takes the change only at its next check of the database. Set "
            "CHARGESIM_SHARDS to the workers' N on every web process and Celery worker.",
        )
    ]


async def test_a_deleted_chargers_state_says_it_is_deleted(worker):
    row = await sync_to_async(make_charger)("CP-GONE", evses=1, enabled=False)
    pk = row.pk
    assert await state_of(pk, "CP-GONE") == f"charger #{pk} is disabled"
    await sync_to_async(row.delete)()
    assert await state_of(pk, "CP-GONE") == f"charger #{pk} is deleted"


async def test_a_new_connector_count_reboots_with_the_new_number_of_connectors(worker, csms):
    pk = await sync_to_async(pk_of)("CP-LIVE")
    boots = csms.counts["BootNotification"]
    await sync_to_async(Evse.objects.create)(charger_id=pk, connector_id=3, max_power_kw=22)
    await sync_to_async(edit)(pk)  # its save marks the charger row
    outcomes = await saved(pk)
    assert outcomes[0]["outcome"] == "reboots now (3 connectors)"
    await wait_until(lambda: csms.counts["BootNotification"] > boots, message="a new boot")
    charger = loaded(worker, "CP-LIVE")
    assert charger.config["NumberOfConnectors"] == "3"
    await csms.wait_for(
        "CP-LIVE", "StatusNotification", predicate=lambda e: e.payload.get("connectorId") == 3
    )


async def test_a_connected_charger_without_auto_connect_comes_back_after_an_edit_reboot(
    worker, csms
):
    """A charger an operator connected by hand (auto-connect off) went offline for good
    after an edit that reboots it, while the admin said "reboots now"; a power cycle of
    the same charger came back."""
    row = await sync_to_async(make_charger)(
        "CP-MAN", evses=1, csms_url=csms.url, auto_connect=False
    )
    assert (await saved(row.pk))[0]["outcome"] == "loaded (auto-connect is off)"
    worker.connect(loaded(worker, "CP-MAN"))
    await wait_until(lambda: loaded(worker, "CP-MAN").online, message="connected by hand")
    boots = csms.connects["CP-MAN"]
    # As an edit saves it, a new version (`updated`): with the row's version unchanged, the
    # worker took a reconciliation's outcome of the version it had loaded for this one's
    # (CI, under load: "loaded (auto-connect is off)").
    await sync_to_async(ChargerRow.objects.filter(pk=row.pk).update)(
        vendor="Another vendor", updated=timezone.now()
    )
    assert (await saved(row.pk))[0]["outcome"] == "reboots now (1 connector)"
    await wait_until(lambda: csms.connects["CP-MAN"] > boots, message="connected again")
    boot = await csms.wait_for(
        "CP-MAN",
        "BootNotification",
        predicate=lambda e: e.payload.get("chargePointVendor") == "Another vendor",
    )
    assert boot is not None
    await wait_until(lambda: loaded(worker, "CP-MAN").online, message="online again")


async def test_chargers_an_edit_reboots_together_each_boot_again_under_their_new_set_up(
    worker, csms
):
    """Rebooted together (one checkpoint and one load for all: one at a time, an import
    rebooting 1,000 chargers held every other edit for a minute), each comes back as its
    own row says, with its own outcome; one in a session waits for its end."""
    await sync_to_async(make_charger)("CP-TWO", evses=1, csms_url=csms.url)
    await sync_to_async(make_charger)("CP-BUSY", evses=1, csms_url=csms.url)
    pks = [await sync_to_async(pk_of)(cp_id) for cp_id in ("CP-LIVE", "CP-TWO", "CP-BUSY")]
    await saved(*pks[1:])
    await wait_until(lambda: csms.counts["BootNotification"] >= 3, message="three boots")
    await start_session(worker, "CP-BUSY", csms)
    for pk, vendor in zip(pks, ("Vendor A", "Vendor B", "Vendor C"), strict=True):
        await sync_to_async(edit)(pk, vendor=vendor)
    outcomes = {o["charge_point_id"]: o["outcome"] for o in await saved(*pks)}
    assert outcomes == {
        "CP-LIVE": "reboots now (2 connectors)",
        "CP-TWO": "reboots now (1 connector)",
        "CP-BUSY": "the new vendor takes effect when its session ends (it reboots then)",
    }
    for cp_id, vendor in (("CP-LIVE", "Vendor A"), ("CP-TWO", "Vendor B")):
        boot = await csms.wait_for(
            cp_id,
            "BootNotification",
            predicate=lambda e, v=vendor: e.payload.get("chargePointVendor") == v,
            timeout=10,
        )
        assert boot is not None
        assert loaded(worker, cp_id).spec.vendor == vendor
    assert loaded(worker, "CP-BUSY").transactions


class RebootsAtOnce:
    """How many chargers reboot at once, counted where it happens: at each charger a
    reboot takes down (`Store.remove`), the chargers taken down whose successor has not
    booted yet (accepted by the CSMS), the one going down included. Counted, not timed."""

    def __init__(self, service: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.service = service
        self.down: list[int] = []  # pks taken down, in order
        self.most = 0
        remove = service.store.remove

        def counted(charge_point_id: str) -> Any:
            charger = remove(charge_point_id)
            if charger is not None and charger.spec.db_id is not None:
                self.down.append(charger.spec.db_id)
                self.most = max(self.most, sum(1 for pk in set(self.down) if not self.up(pk)))
            return charger

        monkeypatch.setattr(service.store, "remove", counted)

    def up(self, pk: int) -> bool:
        charger = self.service.store.by_pk(pk)
        return (
            charger is not None
            and charger.link is LinkState.ONLINE
            and charger.boot is BootState.ACCEPTED
        )


class BatchGate:
    """Holds each batch of a large change in its load (`load_fleet` of more than one
    charger) until the test lets one through: what runs meanwhile is deterministic."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.permits = threading.Semaphore(0)
        load = live_fleet.load_fleet

        def held(*args: Any, **kwargs: Any) -> Any:
            if len(kwargs.get("pks") or ()) > 1:
                assert self.permits.acquire(timeout=20), "the test let no batch through"
            return load(*args, **kwargs)

        monkeypatch.setattr(live_fleet, "load_fleet", held)

    def let_through(self, batches: int = 1_000) -> None:
        self.permits.release(batches)


def edit_all(pks: list[int], **values: Any) -> None:
    """One UPDATE of many rows, as an import's commit: one version for them all."""
    ChargerRow.objects.filter(pk__in=pks).update(updated=timezone.now(), **values)


@pytest.fixture
async def twelve(csms):
    """A worker running twelve chargers of one EVSE, all booted, that applies what the
    messages say only: the background reconciliation is held off (an hour), so that a test
    decides when one reads the rows (`reloader.reconcile()`), as the interleavings of a
    reconciliation that queued a change before its message came do."""

    def make() -> None:
        with transaction.atomic():
            for n in range(12):
                make_charger(f"CP-B{n:02}", evses=1, csms_url=csms.url)

    await sync_to_async(make)()
    service = Simulator(
        RunOptions(
            tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5, reconcile_seconds=3600
        )
    )
    await service.start(channels=True)
    await wait_until(
        lambda: service.progress()["accepted"] == 12, timeout=20, message="twelve chargers booted"
    )
    try:
        yield service
    finally:
        await service.stop()


def the_twelve() -> dict[str, int]:
    """Charge point id -> pk, in pk order (the order a change queues them in)."""
    return dict(ChargerRow.objects.order_by("pk").values_list("charge_point_id", "pk"))


QUEUED = "queued to reboot (2 chargers at a time)"


class LargeChange:
    """The twelve re-imported under vendor "Import 1" (one UPDATE, one message), rebooted
    2 at a time: the first batch is let through, the next ones wait in their load."""

    def __init__(self, worker: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.worker = worker
        self.at_once = RebootsAtOnce(worker, monkeypatch)
        self.gate = BatchGate(monkeypatch)
        worker.reloader.batch = 2

    async def send(self, csms: CentralSystem) -> None:
        self.chargers = await sync_to_async(the_twelve)()
        self.pks = list(self.chargers.values())
        self.mark = len(csms.log)
        self.gate.let_through(1)
        await sync_to_async(edit_all)(self.pks, vendor="Import 1")
        assert_queued(await saved(*self.pks), 12)


def assert_queued(outcomes: list[contract.ChargerOutcome], count: int) -> None:
    assert [o["outcome"] for o in outcomes] == [QUEUED] * count


async def booted_as(csms: CentralSystem, after: int, vendors: dict[str, str]) -> None:
    """Each charger sent one BootNotification after `after`, under its vendor."""
    for cp_id, vendor in vendors.items():

        def under(entry: Any, wanted: str = vendor) -> bool:
            return bool(entry.payload.get("chargePointVendor") == wanted)

        await csms.wait_for(
            cp_id, "BootNotification", after=after, message_type=2, predicate=under, timeout=20
        )
    for cp_id in vendors:
        boots = [
            e
            for e in csms.log[after:]
            if e.cp_id == cp_id and e.action == "BootNotification" and e.message_type == 2
        ]
        assert len(boots) == 1, f"{cp_id} booted {len(boots)} times"


async def test_a_large_change_reboots_in_batches_each_charger_into_its_latest_edit(
    twelve, csms, monkeypatch, caplog
):
    """A re-import rebooting every charger at once held the old fleet, the new one and all
    their boots together (a traced peak 3.3x the steady figure at 5,000). Rebooted in
    batches, at most a batch boots at once; an import changing some of them again while
    they wait reboots each once, into its latest edit, in its place in the queue."""
    caplog.set_level("INFO", logger="simulator.runtime.live_fleet")
    worker = twelve
    change = LargeChange(worker, monkeypatch)
    await change.send(csms)
    chargers, pks, at_once, gate = change.chargers, change.pks, change.at_once, change.gate
    # The second batch is going down; a second import changes the last six again.
    late = pks[6:]
    await sync_to_async(edit_all)(late, vendor="Import 2")
    second = asyncio.create_task(saved(*late))
    await wait_until(lambda: worker.reloader._incoming, message="the second import's message")
    await wait_until(lambda: not worker.reloader._incoming, message="its apply waiting its turn")
    gate.let_through()
    assert {o["outcome"] for o in await second} == {QUEUED}
    vendors = {cp: "Import 2" if pk in late else "Import 1" for cp, pk in chargers.items()}
    await booted_as(csms, change.mark, vendors)
    for cp_id, vendor in vendors.items():
        assert loaded(worker, cp_id).spec.vendor == vendor
    assert at_once.down == pks  # each once, in the queue's order
    assert at_once.most == 2
    said = [r.getMessage() for r in caplog.records if "large fleet change" in r.getMessage()]
    assert "a large fleet change: 2 of 12 chargers rebooted (2 at a time)" in said
    assert "a large fleet change: 12 of 12 chargers rebooted (2 at a time)" in said
    await wait_until(lambda: worker.reloader.reboot_progress() is None, message="done")


async def test_a_one_charger_edit_during_a_large_change_reboots_it_at_once(
    twelve, csms, monkeypatch
):
    """An admin save of one charger is not held behind an import's queue: it reboots now
    (after the batch going down, not the thousands queued), and the queue does not reboot
    it a second time. The status line says how far the large change has got."""
    worker = twelve
    change = LargeChange(worker, monkeypatch)
    await change.send(csms)
    chargers, pks, gate = change.chargers, change.pks, change.gate
    await wait_until(lambda: len(change.at_once.down) == 4, message="the 2nd batch going down")
    last = pks[-1]
    await sync_to_async(edit)(last, vendor="Admin")
    one = asyncio.create_task(saved(last))
    await wait_until(lambda: worker.reloader._incoming, message="the admin save's message")
    await wait_until(lambda: not worker.reloader._incoming, message="its apply waiting")
    gate.let_through(1)  # the second batch only: the third waits in its load
    outcomes = await one
    assert outcomes[0]["outcome"] == "reboots now (1 connector)"
    assert loaded(worker, "CP-B11").spec.vendor == "Admin"
    # Two batches of two and the admin's: 5 of 12, the rest queued or going down.
    assert worker.reloader.reboot_progress() == (5, 12)
    assert "fleet change: 5/12 chargers rebooted" in worker.status().text()
    gate.let_through()
    vendors = {cp: "Admin" if pk == last else "Import 1" for cp, pk in chargers.items()}
    await booted_as(csms, change.mark, vendors)
    await wait_until(lambda: worker.reloader.reboot_progress() is None, message="done")
    assert "fleet change" not in worker.status().text()


async def test_a_stop_during_a_large_change_ends_its_batch_and_saves_every_charger(
    twelve, csms, monkeypatch, caplog
):
    """A stop while a large change reboots: no batch starts once it begins, the one going
    down ends (its chargers built again, so saved, not left out), and the chargers still
    queued are saved as they run: the next start loads every one from its edited row."""
    worker = twelve
    change = LargeChange(worker, monkeypatch)
    await change.send(csms)
    chargers, pks, at_once, gate = change.chargers, change.pks, change.at_once, change.gate
    await wait_until(lambda: len(at_once.down) == 4, message="the second batch going down")
    stopping = asyncio.create_task(worker.stop())
    await wait_until(lambda: worker._stopping, message="the stop begun")
    gate.let_through()
    await stopping
    assert at_once.down == pks[:4]  # no third batch
    assert worker.saved_at_stop == 12
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    again = Simulator(RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1))
    await again.start(connect=False)
    try:
        assert {c.id: c.spec.vendor for c in again.store} == dict.fromkeys(chargers, "Import 1")
    finally:
        await again.stop()


async def heard_after_the_reconciliation(
    worker: Simulator, pks: list[int], gate: BatchGate
) -> list[contract.ChargerOutcome]:
    """A large change the reconciliation finds first (it read the rows after their commit,
    before their fleet.changed arrived) and queues, its first batch held in its load; the
    message comes and is applied meanwhile; then every batch goes on. The answer."""
    await worker.reloader.reconcile()
    answer = asyncio.create_task(saved(*pks))
    await wait_until(lambda: worker.reloader._incoming, message="the change's message")
    await wait_until(lambda: not worker.reloader._incoming, message="its apply waiting its turn")
    gate.let_through()
    return await answer


async def test_a_large_change_the_reconciliation_queued_first_reboots_every_charger(
    twelve, csms, monkeypatch
):
    """The message of a change the reconciliation had queued found that version applied
    already and answered "queued", but also took each charger off the queue, as for an
    edit that needs no reboot: only the batch under way rebooted, the rest never did, with
    no word in the log (bench/reimport_memory.py: a re-import whose 1,000 chargers all
    stayed up). Answered so, every charger reboots into the edit, once."""
    worker = twelve
    worker.reloader.batch = 2
    gate = BatchGate(monkeypatch)
    chargers = await sync_to_async(the_twelve)()
    pks = list(chargers.values())
    mark = len(csms.log)
    await sync_to_async(edit_all)(pks, vendor="Import 1")
    outcomes = await heard_after_the_reconciliation(worker, pks, gate)
    # The first batch had rebooted when the message was applied; the rest waited.
    assert [o["outcome"] for o in outcomes] == ["reboots now (1 connector)"] * 2 + [QUEUED] * 10
    await wait_until(lambda: not worker.reloader.busy(), message="the change applied")
    assert {c.id: c.spec.vendor for c in worker.store} == dict.fromkeys(chargers, "Import 1")
    await booted_as(csms, mark, dict.fromkeys(chargers, "Import 1"))


async def test_a_large_change_that_fails_between_batches_says_so(twelve, csms, caplog):
    """The task rebooting a large change's batches is awaited by nobody: an exception out
    of it (here from what runs once a batch has booted) ended the change in silence, the
    chargers still queued never rebooted, and nothing in the log said why."""
    worker = twelve
    worker.reloader.batch = 2

    def fails(replaced: int, loaded: int) -> None:
        raise RuntimeError("the batch's freeze failed")

    worker.reloader.on_batch_up = fails
    pks = list((await sync_to_async(the_twelve)()).values())
    await sync_to_async(edit_all)(pks, vendor="Import 1")
    assert_queued(await saved(*pks), 12)
    await wait_until(
        lambda: any(r.levelname == "ERROR" for r in caplog.records), message="the failure said"
    )
    (said,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert said.getMessage().startswith(
        "a large fleet change failed with 10 chargers still queued to reboot or load"
    )
    assert said.exc_info is not None and "the batch's freeze failed" in str(said.exc_info[1])


class Loads:
    """How many chargers each load from the database builds afresh (`load_fleet`): a
    reboot loads its chargers once, after its checkpoint. Counted, not timed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        load = live_fleet.load_fleet

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.sizes.append(len(kwargs.get("pks") or ()))
            return load(*args, **kwargs)

        monkeypatch.setattr(live_fleet, "load_fleet", counted)


async def test_a_bulk_reboot_power_cycles_its_chargers_a_batch_at_a_time(twelve, csms, monkeypatch):
    """A bulk reboot (the API's, the dashboard's, the MCP tool's) power-cycled its chargers
    one by one, each with its own checkpoint and load under the fleet lock: 1,000 took
    57 s, answered just within the API's 60 s. Now a batch at a time, one checkpoint and
    one load a batch; each charger keeps its own result and boots again."""
    worker = twelve
    worker.reloader.batch = 5
    loads = Loads(monkeypatch)
    chargers = await sync_to_async(the_twelve)()
    mark = len(csms.log)
    outcome = await EngineClient().bulk("reboot", chargers={pk: cp for cp, pk in chargers.items()})
    assert loads.sizes == [5, 5, 2]
    assert sorted((r["charge_point_id"], r["ok"], r["message"]) for r in outcome.results) == [
        (cp_id, True, f"{cp_id} reboots now (1 connector)") for cp_id in sorted(chargers)
    ]
    await booted_as(csms, mark, {cp_id: loaded(worker, cp_id).spec.vendor for cp_id in chargers})
    await wait_until(lambda: worker.progress()["accepted"] == 12, message="all back")


async def test_a_bulk_reboot_counts_its_chargers_as_connecting_while_they_are_down(
    twelve, csms, monkeypatch
):
    """While a reboot had its chargers down (out of the store and the connections, until
    each was built afresh) the status line counted them nowhere: a whole-fleet reboot
    from the dashboard read "fleet: 0/0 accepted, 0 connecting", as if the fleet were
    gone. Read as they go down (at each batch's load), they are still the fleet's,
    connecting."""
    worker = twelve
    worker.reloader.batch = 5
    seen: list[tuple[int, bool]] = []
    load = worker.reloader._saved_and_loaded

    async def read_status_first(pks: list[int]) -> Any:
        status = worker.status()
        # The batch's chargers are down: connecting (the batch before may be booting).
        seen.append((status.wanted, status.connecting >= len(pks)))
        return await load(pks)

    monkeypatch.setattr(worker.reloader, "_saved_and_loaded", read_status_first)
    chargers = await sync_to_async(the_twelve)()
    await EngineClient().bulk("reboot", chargers={pk: cp for cp, pk in chargers.items()})
    assert seen == [(12, True)] * 3
    await wait_until(lambda: worker.progress()["accepted"] == 12, message="all back")
    status = worker.status()
    assert (status.wanted, status.accepted, status.connecting) == (12, 12, 0)
    assert not worker.reloader.down


async def test_a_reboot_keeps_the_authorization_cache(worker, csms):
    """QA: 1.6's Authorization Cache values "SHOULD be persisted across reboots and power
    outages". A power cycle (the reboot action, an edit that reboots) built the charger
    afresh with an empty cache: offline right after it, a tag the CSMS had accepted a
    moment before was unknown (Invalid)."""
    before = loaded(worker, "CP-LIVE")
    assert await before.authorize("REGULAR") == "Accepted"
    assert before.auth_cache.local_entry("REGULAR") is not None
    pk = await sync_to_async(pk_of)("CP-LIVE")
    result = await EngineClient().command(pk, "CP-LIVE", "reboot")
    assert result["ok"], result
    after = loaded(worker, "CP-LIVE")
    assert after is not before
    assert after.auth_cache.offline_status("REGULAR") == "Accepted"
    assert after.auth_cache.offline_status("STRANGER") == "Invalid"


async def test_a_reboot_of_one_charger_loads_it_alone_and_twice_at_once_reboots_it_twice(
    twelve, csms, monkeypatch
):
    """A single reboot is still one charger's power cycle; two of the same charger asked
    at once are two power cycles, one after the other (the second of the charger the
    first built), never the same charger twice in one batch."""
    worker = twelve
    loads = Loads(monkeypatch)
    pk = (await sync_to_async(the_twelve)())["CP-B03"]
    mark = len(csms.log)
    client = EngineClient()
    result = await client.command(pk, "CP-B03", "reboot")
    assert (result["ok"], result["message"]) == (True, "CP-B03 reboots now (1 connector)")
    assert loads.sizes == [1]
    await booted_as(csms, mark, {"CP-B03": loaded(worker, "CP-B03").spec.vendor})
    first, second = await asyncio.gather(
        client.command(pk, "CP-B03", "reboot"), client.command(pk, "CP-B03", "reboot")
    )
    assert [first["message"], second["message"]] == ["CP-B03 reboots now (1 connector)"] * 2
    assert loads.sizes == [1, 1, 1]
    await wait_until(lambda: worker.progress()["accepted"] == 12, message="all back")
    assert [c.id for c in worker.store].count("CP-B03") == 1


class RowsAlive:
    """How many charger rows an apply holds at once: at each read (`read_chargers`), the
    rows of every read so far still alive, the collector off (as good as off for them
    under the gc policy's thresholds). Counted, not timed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.alive: weakref.WeakSet[ChargerRow] = weakref.WeakSet()
        self.most = 0
        self.reads: list[int] = []
        read = live_fleet.read_chargers

        def counted(pks: list[int]) -> dict[int, ChargerRow]:
            rows = read(pks)
            self.reads.append(len(rows))
            # The read before ran in another of the loop's pool threads, which may not
            # have dropped its finished call yet (the future holds the rows it returned):
            # on a loaded host (CI) that thread still held them as this read began. Give
            # it the moment it takes; rows the apply itself kept would stay alive anyway.
            deadline = time.monotonic() + 2
            while any(row.pk not in rows for row in self.alive) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.alive.update(rows.values())
            self.most = max(self.most, len(self.alive))
            return rows

        monkeypatch.setattr(live_fleet, "read_chargers", counted)


async def test_a_large_change_is_read_and_decided_a_chunk_of_rows_at_a_time(
    twelve, csms, monkeypatch
):
    """Read at once, the rows of a re-import (with their EVSEs and configuration keys,
    41 MiB traced at 1,000 chargers) were all held until every one was decided, on top of
    the reboots. Read and decided a chunk at a time, each chunk's rows freed before the
    next is read, the apply holds a chunk's rows at most, and every charger still takes
    its edit and gets its outcome."""
    worker = twelve
    monkeypatch.setattr(live_fleet, "READ_CHUNK", 5)
    rows = RowsAlive(monkeypatch)
    pks = list((await sync_to_async(the_twelve)()).values())
    await sync_to_async(edit_all)(pks, power_sharing="first", max_power_kw=5.0)
    gc.collect()
    gc.disable()
    try:
        outcomes = await saved(*pks)
    finally:
        gc.enable()
    assert [o["outcome"] for o in outcomes] == ["applied live"] * 12
    assert rows.reads == [5, 5, 2]
    assert rows.most <= 5
    for charger in worker.store:
        assert charger.profiles.rated_w == 5_000.0


async def test_the_worker_logs_what_an_edit_did_naming_few_chargers_counting_many(
    twelve, csms, caplog
):
    """QA (scaled out): the worker's log said nothing when an edit was applied; only the
    admin's or the API's answer did. One line an apply: each charger by name when few,
    counted by outcome when many."""
    by_id = await sync_to_async(the_twelve)()
    pks = list(by_id.values())
    caplog.set_level(logging.INFO, logger=live_fleet.__name__)
    await sync_to_async(edit_all)(pks[:2], max_power_kw=5.0)
    await saved(*pks[:2])
    await sync_to_async(edit_all)(pks, max_power_kw=7.0)
    await saved(*pks)
    said = [r.getMessage() for r in caplog.records if "fleet change applied" in r.getMessage()]
    first, second = list(by_id)[:2]
    assert said[0] == f"fleet change applied: {first} applied live; {second} applied live"
    assert said[-1] == "fleet change applied to 12 chargers: 12 applied live"


async def test_a_change_the_database_cut_short_between_chunks_loses_nothing(
    twelve, csms, monkeypatch
):
    """The database fails after the first chunk of a change was decided: that chunk's
    edits are applied (and answered so to the message that comes for them later, not
    "no change"), and the retry applies the rest, not the first chunk again."""
    worker = twelve
    monkeypatch.setattr(live_fleet, "READ_CHUNK", 5)
    read = live_fleet.read_chargers
    calls = 0

    def second_read_fails(pks: list[int]) -> dict[int, ChargerRow]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OperationalError("the database went away")
        return read(pks)

    monkeypatch.setattr(live_fleet, "read_chargers", second_read_fails)
    pks = list((await sync_to_async(the_twelve)()).values())
    await sync_to_async(edit_all)(pks, max_power_kw=5.0)
    with pytest.raises(OperationalError):
        await worker.reloader.apply(pks, heard=False)
    assert worker.reloader.retry == set(pks[5:])
    rated = {c.spec.db_id: c.profiles.rated_w for c in worker.store}
    assert [rated[pk] for pk in pks[:5]] == [5_000.0] * 5
    assert await worker.reloader.reconcile()  # the retry
    assert not worker.reloader.retry
    assert all(c.profiles.rated_w == 5_000.0 for c in worker.store)
    outcomes = await saved(pks[0])
    assert outcomes[0]["outcome"] == "applied live"


class LoadsAtOnce:
    """How many new chargers are loaded at once, counted where it happens: at each charger
    added to the store, those added whose boot is not accepted yet. Counted, not timed."""

    def __init__(self, service: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.service = service
        self.added: list[int] = []
        self.most = 0
        add = service.store.add

        def counted(charger: Any) -> None:
            add(charger)
            self.added.append(charger.spec.db_id)
            self.most = max(self.most, sum(1 for pk in self.added if not self.up(pk)))

        monkeypatch.setattr(service.store, "add", counted)

    def up(self, pk: int) -> bool:
        charger = self.service.store.by_pk(pk)
        return charger is not None and charger.boot is BootState.ACCEPTED


def twelve_new(csms_url: str) -> dict[str, int]:
    """Twelve new chargers of one EVSE in one commit, as an import's; `the_twelve` of them."""
    with transaction.atomic():
        for n in range(12):
            make_charger(f"CP-N{n:02}", evses=1, csms_url=csms_url)
    return the_twelve()


@pytest.fixture
async def empty(csms):
    """A worker running no charger yet, that applies what the messages say only."""
    service = Simulator(
        RunOptions(
            tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5, reconcile_seconds=3600
        )
    )
    await service.start(channels=True)
    try:
        yield service
    finally:
        await service.stop()


async def test_a_large_import_of_new_chargers_loads_and_connects_them_in_batches(
    empty, csms, monkeypatch, caplog
):
    """An import of thousands of new chargers loaded them all and connected them all at
    once: the whole import's rows and boots in memory together, and a thundering herd of
    connections and BootNotifications at the user's CSMS. Loaded in batches, at most a
    batch connects and boots at once, each charger from its row as it is at its turn,
    and the status line says how far the import has got."""
    caplog.set_level("INFO", logger="simulator.runtime.live_fleet")
    worker = empty
    worker.reloader.batch = 2
    at_once = LoadsAtOnce(worker, monkeypatch)
    gate = BatchGate(monkeypatch)
    chargers = await sync_to_async(twelve_new)(csms.url)
    pks = list(chargers.values())
    gate.let_through(1)
    outcomes = await saved(*pks)
    assert [o["outcome"] for o in outcomes] == ["queued to load (2 chargers at a time)"] * 12
    # The first batch booted, the second held in its load; a second import edits three
    # chargers still queued: each boots once, from its latest edit, in its place.
    await wait_until(
        lambda: worker.reloader._loading == 2 and len(worker.store) == 2,
        message="the second batch loading",
    )
    assert worker.reloader.load_progress() == (2, 12)
    assert "fleet change: 2/12 new chargers loaded" in worker.status().text()
    late = pks[-3:]
    await sync_to_async(edit_all)(late, vendor="Edited")
    second = asyncio.create_task(saved(*late))
    await wait_until(lambda: worker.reloader._incoming, message="the second import's message")
    await wait_until(lambda: not worker.reloader._incoming, message="its apply waiting its turn")
    gate.let_through()
    assert [o["outcome"] for o in await second] == ["queued to load (2 chargers at a time)"] * 3
    vendors = {cp: "Edited" if pk in late else "ChargeSim" for cp, pk in chargers.items()}
    await booted_as(csms, 0, vendors)
    assert at_once.added == pks  # each once, in the queue's order
    assert at_once.most == 2
    await wait_until(lambda: worker.reloader.load_progress() is None, message="done")
    assert "fleet change" not in worker.status().text()
    said = [r.getMessage() for r in caplog.records if "large fleet change" in r.getMessage()]
    assert "a large fleet change: 12 of 12 new chargers loaded (2 at a time)" in said


async def test_new_chargers_the_reconciliation_queued_first_are_all_loaded(
    empty, csms, monkeypatch
):
    """As for a large change's reboots: the message of an import the reconciliation had
    queued to load took the new chargers off the queue, and all but the batch under way
    were never loaded."""
    worker = empty
    worker.reloader.batch = 2
    gate = BatchGate(monkeypatch)
    chargers = await sync_to_async(twelve_new)(csms.url)
    outcomes = await heard_after_the_reconciliation(worker, list(chargers.values()), gate)
    queued = "queued to load (2 chargers at a time)"
    assert [o["outcome"] for o in outcomes] == ["loaded, connecting"] * 2 + [queued] * 10
    await wait_until(lambda: not worker.reloader.busy(), message="the import applied")
    assert sorted(c.id for c in worker.store) == sorted(chargers)
    await booted_as(csms, 0, dict.fromkeys(chargers, "ChargeSim"))


async def test_a_connector_count_change_in_a_session_waits_for_the_session_to_end(worker, csms):
    await start_session(worker, "CP-LIVE", csms)
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(Evse.objects.create)(charger_id=pk, connector_id=3, max_power_kw=22)
    await sync_to_async(edit)(pk)  # its save marks the charger row
    outcomes = await saved(pk)
    assert outcomes[0]["outcome"] == (
        "the new number of connectors (3) takes effect when its session ends (it reboots then)"
    )
    charger = loaded(worker, "CP-LIVE")
    assert len(charger.evses) == 2 and 1 in charger.transactions
    boots = csms.counts["BootNotification"]
    charger.stop_transaction(1)
    await wait_until(
        lambda: csms.counts["BootNotification"] > boots, timeout=10, message="the reboot"
    )
    assert loaded(worker, "CP-LIVE").config["NumberOfConnectors"] == "3"


async def test_a_new_csms_url_reconnects_the_charger_there(worker, csms):
    other = CentralSystem()
    await other.start(host="127.0.0.1", port=0)
    try:
        pk = await sync_to_async(pk_of)("CP-LIVE")
        await sync_to_async(edit)(pk, csms_url=other.url)
        outcomes = await saved(pk)
        assert outcomes[0]["outcome"] == "reconnects now"
        await other.wait_connected("CP-LIVE")
        await csms.wait_disconnected("CP-LIVE")
    finally:
        await other.stop()


async def test_a_new_sample_interval_brings_meter_values_at_that_interval(worker, csms):
    await start_session(worker, "CP-LIVE", csms)
    pk = await sync_to_async(pk_of)("CP-LIVE")
    charger = loaded(worker, "CP-LIVE")
    assert charger.config["MeterValueSampleInterval"] != "1"
    await sync_to_async(
        ConfigurationKey.objects.filter(charger_id=pk, key="MeterValueSampleInterval").update
    )(value="1")
    mark = len(csms.log)
    await sync_to_async(edit)(pk)  # its save marks the charger row
    outcomes = await saved(pk)
    assert outcomes[0]["outcome"] == "applied live"
    first = await csms.wait_for("CP-LIVE", "MeterValues", after=mark, timeout=5)
    await csms.wait_for("CP-LIVE", "MeterValues", after=csms.log.index(first) + 1, timeout=5)


async def test_a_value_applied_from_the_database_is_not_written_back_over_a_newer_one(csms):
    """Two quick PUTs of a key: the worker applied the first and queued it to be written
    back; the second was stored meanwhile, and the checkpoint wrote the first over it. The
    charger and the database kept the older value, and the second PUT's worker said "no
    change". A value the worker takes from its row is the row's already: nothing is written
    back."""
    await sync_to_async(make_charger)("CP-RACE", evses=1, csms_url=csms.url)
    service = Simulator(RunOptions(tick_seconds=0.1, checkpoint_seconds=3600, reconnect_cap=0.5))
    await service.start(channels=True)
    try:
        charger = loaded(service, "CP-RACE")
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="CP-RACE boot")
        await service.checkpoint()  # what the boot changed (HeartbeatInterval), stored first
        pk = await sync_to_async(pk_of)("CP-RACE")
        key = ConfigurationKey.objects.filter(charger_id=pk, key="MeterValueSampleInterval")
        await sync_to_async(key.update)(value="40")
        await sync_to_async(edit)(pk)  # its save marks the charger row
        assert (await saved(pk))[0]["outcome"] == "applied live"
        assert charger.config["MeterValueSampleInterval"] == "40"
        await sync_to_async(key.update)(value="45")  # the second PUT, stored
        await service.checkpoint()  # before the worker hears of it
        assert await sync_to_async(lambda: key.get().value)() == "45"
        assert (await saved(pk))[0]["outcome"] == "applied live"
        assert charger.config["MeterValueSampleInterval"] == "45"
    finally:
        await service.stop()


async def test_an_invalid_configuration_value_is_rejected_as_change_configuration_would(
    worker, csms
):
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await worker.checkpoint()  # the HeartbeatInterval the CSMS set at boot is saved first
    await sync_to_async(
        ConfigurationKey.objects.filter(charger_id=pk, key="HeartbeatInterval").update
    )(value="-5")
    await sync_to_async(edit)(pk)  # its save marks the charger row
    outcomes = await saved(pk)
    assert (
        outcomes[0]["outcome"] == "no change for the running charger (HeartbeatInterval rejected)"
    )


def _configuration(answer: Any) -> dict[str, tuple[bool, str | None]]:
    return {k["key"]: (k["readonly"], k.get("value")) for k in answer.configuration_key}


async def test_the_operators_own_keys_reach_the_running_charger_and_its_csms(worker, csms):
    """A vendor key set in the admin, the API or an import was stored and loaded, but the
    charger answered it as an unknown key, left it out of GetConfiguration, refused its
    ChangeConfiguration (NotSupported), and never took on a new one while running."""
    pk = await sync_to_async(pk_of)("CP-LIVE")
    make = sync_to_async(ConfigurationKey.objects.create)
    await make(charger_id=pk, key="VendorMode", value="eco")
    await make(charger_id=pk, key="VendorSerial", value="X-1", readonly=True)
    await sync_to_async(edit)(pk)  # its save marks the charger row
    outcomes = await saved(pk)
    assert outcomes[0]["outcome"] == "applied live"
    everything = _configuration(await csms.call("CP-LIVE", call.GetConfiguration()))
    assert everything["VendorMode"] == (False, "eco")
    assert everything["VendorSerial"] == (True, "X-1")
    assert "HeartbeatInterval" in everything  # with all the standard keys: none cut off
    named = await csms.call("CP-LIVE", call.GetConfiguration(key=["VendorMode", "Nope"]))
    assert _configuration(named) == {"VendorMode": (False, "eco")}
    assert named.unknown_key == ["Nope"]
    changed = await csms.call("CP-LIVE", call.ChangeConfiguration(key="VendorMode", value="fast"))
    assert changed.status == "Accepted"
    locked = await csms.call("CP-LIVE", call.ChangeConfiguration(key="VendorSerial", value="Y"))
    assert locked.status == "Rejected"
    await worker.checkpoint()
    stored = await sync_to_async(
        lambda: dict(ConfigurationKey.objects.filter(charger_id=pk).values_list("key", "value"))
    )()
    assert (stored["VendorMode"], stored["VendorSerial"]) == ("fast", "X-1")
    # Deleted in the admin: gone from the running charger too.
    await sync_to_async(ConfigurationKey.objects.filter(charger_id=pk, key="VendorMode").delete)()
    await sync_to_async(edit)(pk)  # its save marks the charger row
    await saved(pk)
    named = await csms.call("CP-LIVE", call.GetConfiguration(key=["VendorMode"]))
    assert named.unknown_key == ["VendorMode"]


async def test_a_charger_added_without_a_message_is_picked_up_by_reconciliation(worker, csms):
    await sync_to_async(make_charger)("CP-QUIET", evses=1, csms_url=csms.url)
    await csms.wait_for("CP-QUIET", "BootNotification", timeout=10)


async def test_a_deleted_charger_without_a_message_goes_offline_by_reconciliation(worker, csms):
    # Its boot's durable report stored and confirmed first: on PostgreSQL a delete that
    # commits while the worker inserts an outbox row of the charger fails its deferred
    # foreign-key check (a race of the delete, not what this test is about).
    await boot_reports_answered(loaded(worker, "CP-LIVE"))
    await worker.checkpoint()
    await sync_to_async(ChargerRow.objects.filter(charge_point_id="CP-LIVE").delete)()
    await csms.wait_disconnected("CP-LIVE", timeout=10)
    assert worker.store.get("CP-LIVE") is None


async def test_a_message_for_rows_reconciliation_read_after_it_came_is_not_applied_twice(
    worker, csms, monkeypatch
):
    from simulator.runtime import live_fleet

    monkeypatch.setattr(live_fleet, "COALESCE_SECONDS", 2.0)  # the message waits...
    row = await sync_to_async(make_charger)("CP-LATE", evses=1, csms_url=csms.url)
    read = worker.reloader.rows_read
    answer = asyncio.ensure_future(saved(row.pk))
    await wait_until(lambda: worker.reloader._incoming, message="the message to arrive")
    await worker.reloader.reconcile()  # ...while a reconciliation reads the row
    assert await answer == [
        {"charger_id": row.pk, "charge_point_id": "CP-LATE", "outcome": "loaded, connecting"}
    ]
    assert worker.reloader.rows_read == read + 1
    await csms.wait_for("CP-LATE", "BootNotification")


async def test_a_change_the_reconciliation_applied_first_is_still_reported_as_applied(worker, csms):
    """The reconciliation can find a committed save before its fleet.changed is handled
    (it runs every few seconds): the admin must still hear "applied live", not "no change"."""
    from django.utils import timezone

    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(
        ConfigurationKey.objects.filter(charger_id=pk, key="MeterValueSampleInterval").update
    )(value="7")
    await sync_to_async(ChargerRow.objects.filter(pk=pk).update)(updated=timezone.now())
    await worker.reloader.reconcile()
    assert loaded(worker, "CP-LIVE").config["MeterValueSampleInterval"] == "7"
    outcomes = await saved(pk)
    assert outcomes[0]["outcome"] == "applied live"


async def test_new_credentials_reconnect_the_charger_with_them(worker, csms):
    """Security profile 1 with a new AuthorizationKey: the charger reconnects (no reboot)
    and the CSMS, which now requires that password, accepts it."""
    pk = await sync_to_async(pk_of)("CP-LIVE")
    connects, boots = csms.connects["CP-LIVE"], csms.counts["BootNotification"]
    csms.passwords["CP-LIVE"] = "a-new-password-16"
    await sync_to_async(edit)(pk, security_profile=1, authorization_key="a-new-password-16")
    outcomes = await saved(pk)
    assert outcomes[0]["outcome"] == "reconnects now"
    await wait_until(lambda: csms.connects["CP-LIVE"] > connects, message="a new connection")
    await wait_until(lambda: loaded(worker, "CP-LIVE").online, message="online again")
    assert not [r for r in csms.refusals if r.cp_id == "CP-LIVE"]
    assert csms.counts["BootNotification"] == boots  # a reconnect is not a reboot


async def test_an_edited_vehicle_model_is_used_from_the_next_session(worker, csms):
    vehicle = await sync_to_async(make_vehicle)(0)
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(edit)(pk, default_vehicle=vehicle)
    await saved(pk)
    await sync_to_async(VehicleModel.objects.filter(pk=vehicle.pk).update)(capacity_kwh=123.0)
    layer = get_channel_layer()
    await layer.group_send(contract.engine_group(0), contract.fleet_changed(vehicles=[vehicle.pk]))
    charger = loaded(worker, "CP-LIVE")
    await wait_until(
        lambda: (v := charger.pick_vehicle()) is not None and v.capacity_kwh == 123.0,
        message="the edited model picked for the next session",
    )


async def test_a_vehicle_model_changed_without_a_message_is_found_by_the_reconciliation(
    worker, csms, monkeypatch
):
    """A queryset update sends no message (nor SQL, nor a message the channel layer lost):
    the worker kept the old catalogue until it restarted. The periodic look finds the
    catalogue changed, the next car is the edited model, and a look that finds nothing
    changed does not read the catalogue again."""
    vehicle = await sync_to_async(make_vehicle)(0)  # its signal tells the worker
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(edit)(pk, default_vehicle=vehicle)
    await saved(pk)
    charger = loaded(worker, "CP-LIVE")
    await wait_until(
        lambda: (v := charger.pick_vehicle()) is not None and v.name == str(vehicle),
        message="the new model known",
    )
    catalogues = []
    read = live_fleet.load_vehicles

    def counted_read() -> Any:
        catalogues.append(1)
        return read()

    monkeypatch.setattr(live_fleet, "load_vehicles", counted_read)

    await sync_to_async(VehicleModel.objects.filter(pk=vehicle.pk).update)(capacity_kwh=123.0)

    await wait_until(
        lambda: (v := charger.pick_vehicle()) is not None and v.capacity_kwh == 123.0,
        message="the edited model picked for the next session",
    )
    assert await plug_in(worker, "CP-LIVE", 1) == f"{vehicle} plugged into connector 1 at 30 %"
    battery = charger.evse(1).battery
    assert battery is not None and battery.spec.capacity_kwh == 123.0
    read_when_changed = len(catalogues)
    assert read_when_changed >= 1
    assert await worker.reloader.reconcile() == []
    assert await worker.reloader.reconcile() == []
    assert len(catalogues) == read_when_changed  # nothing changed since: not read again


async def plug_in(service: Simulator, cp_id: str, connector_id: int) -> str:
    """A car plugged in as the dashboard's button does it, with no model chosen: the
    charger's default, or any model that fits it."""
    from simulator.runtime.commands import CommandServer

    server = CommandServer(service, get_channel_layer())
    pk = loaded(service, cp_id).spec.db_id
    return await server.execute(pk, "plug_in", {"connector_id": connector_id, "soc": 30})


def quiet_profile() -> dict[str, Any]:
    """The default profile (its mix: the whole catalogue) with about one arrival a month:
    the site runs and draws from the catalogue, and no driver comes during the test."""
    from simulator.contract.traffic import default_profile

    profile: dict[str, Any] = dict(default_profile())
    profile["hourly_arrivals"] = [0.001] * 24
    return profile


async def test_a_deleted_default_vehicle_model_is_no_longer_plugged_in(worker, csms):
    """The charger kept the deleted model as its default (matched by name in the catalogue
    read after the delete, else kept as it was) and the traffic kept its catalogue of the
    start: the next car was the deleted model until the worker restarted. Now the next one
    is what the data says; the car charging already keeps its battery and its session."""
    gone = await sync_to_async(make_vehicle)(0)
    other = await sync_to_async(make_vehicle)(3)  # the only other model: single-phase
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(edit)(pk, default_vehicle=gone)
    await saved(pk)
    charger = loaded(worker, "CP-LIVE")
    assert await plug_in(worker, "CP-LIVE", 1) == f"{gone} plugged into connector 1 at 30 %"
    assert await charger.present_id_tag(1, "TAG-1") == "Accepted"
    await csms.wait_for("CP-LIVE", "StartTransaction", direction="out", message_type=3)
    await wait_until(lambda: charger.evse(1).power_w > 0, message="the first car charging")
    driver = await worker.traffic_driver()
    location_id = charger.spec.location_id
    assert location_id is not None
    site = driver.start_site(location_id, quiet_profile())
    assert set(site.stream.profile.vehicles) == {gone.pk, other.pk}

    await sync_to_async(VehicleModel.objects.filter(pk=gone.pk).delete)()  # its signal tells

    await wait_until(lambda: gone.pk not in driver.vehicles, message="the traffic told")
    assert site.stream.profile.vehicles == (other.pk,)
    assert charger.spec.default_vehicle is None
    assert await plug_in(worker, "CP-LIVE", 2) == f"{other} plugged into connector 2 at 30 %"
    first = charger.evse(1).battery
    assert first is not None and first.spec.name == str(gone)
    assert 1 in charger.transactions and charger.evse(1).power_w > 0
    assert not [e for e in csms.log if e.action == "StopTransaction"]


async def test_an_edited_vehicle_model_reaches_the_next_car_of_the_traffic(worker, csms):
    """The traffic's catalogue was read once, at its start: an edited model (capacity,
    phases, curve) never reached its drivers."""
    vehicle = await sync_to_async(make_vehicle)(0)
    driver = await worker.traffic_driver()
    assert driver.vehicles[vehicle.pk].ac_phases == 3

    def edit_vehicle() -> None:
        row = VehicleModel.objects.get(pk=vehicle.pk)
        row.capacity_kwh, row.ac_phases, row.charging_curve = 40.0, 1, [[0, 50], [100, 10]]
        row.save()  # its signal tells the workers

    await sync_to_async(edit_vehicle)()
    await wait_until(
        lambda: driver.vehicles[vehicle.pk].capacity_kwh == 40.0, message="the traffic told"
    )
    edited = driver.vehicle(vehicle.pk)
    assert edited is not None
    assert (edited.ac_phases, edited.curve) == (1, ((0.0, 50.0), (100.0, 10.0)))
    answer = await plug_in(worker, "CP-LIVE", 1)  # no default: any model that fits
    assert answer == f"{vehicle} plugged into connector 1 at 30 %"
    battery = loaded(worker, "CP-LIVE").evse(1).battery
    assert battery is not None and battery.spec == edited


async def test_a_row_committed_late_is_found_by_the_periodic_look_back(worker, csms):
    """A save stamped before the newest change seen (committed late, or by a machine whose
    clock is behind) is not in the quick look, which reads only newer rows; the look-back
    that runs every LOOK_BACK_EVERY_SECONDS finds it."""
    from datetime import timedelta

    pk = await sync_to_async(pk_of)("CP-LIVE")
    reloader = worker.reloader
    assert reloader.watermark is not None
    await sync_to_async(
        ConfigurationKey.objects.filter(charger_id=pk, key="MeterValueSampleInterval").update
    )(value="9")
    late = reloader.watermark - timedelta(seconds=5)
    await sync_to_async(ChargerRow.objects.filter(pk=pk).update)(updated=late)
    reloader._looked_back = asyncio.get_running_loop().time()  # a look-back just ran
    await reloader.reconcile()
    assert loaded(worker, "CP-LIVE").config["MeterValueSampleInterval"] != "9"
    reloader._looked_back = float("-inf")  # the look-back is due
    await reloader.reconcile()
    assert loaded(worker, "CP-LIVE").config["MeterValueSampleInterval"] == "9"


async def test_look_backs_stop_once_the_watermark_has_settled(worker, csms):
    """A fleet left alone keeps its watermark: after one look-back `LOOK_BACK` past the
    watermark's last move every late row has surfaced, so none follows until it moves."""
    from datetime import timedelta

    from simulator.runtime.live_fleet import LOOK_BACK, LOOK_BACK_EVERY_SECONDS

    reloader = worker.reloader
    assert reloader.watermark is not None
    now = asyncio.get_running_loop().time()
    settled = LOOK_BACK.total_seconds()
    reloader._watermark_moved = now - 10 * settled
    reloader._looked_back = now - 10 * settled + settled / 2  # before it settled: one due
    looked = reloader.look_backs
    await reloader.reconcile()
    assert reloader.look_backs == looked + 1
    reloader._looked_back -= LOOK_BACK_EVERY_SECONDS  # long enough ago, but after settling
    await reloader.reconcile()
    assert reloader.look_backs == looked + 1

    # A newer change moves the watermark: look-backs are due again.
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(
        ConfigurationKey.objects.filter(charger_id=pk, key="MeterValueSampleInterval").update
    )(value="7")
    newer = reloader.watermark + timedelta(seconds=1)
    await sync_to_async(ChargerRow.objects.filter(pk=pk).update)(updated=newer)
    await reloader.reconcile()  # the quick look sees it and moves the watermark
    reloader._looked_back -= LOOK_BACK_EVERY_SECONDS
    await reloader.reconcile()
    assert reloader.look_backs == looked + 2


async def test_a_new_feature_profile_list_reboots_the_charger_into_it(worker, csms):
    """SupportedFeatureProfiles is read-only to a CSMS: an operator's new value is a reboot
    (issue 17), after which ReserveNow is NotSupported."""
    pk = await sync_to_async(pk_of)("CP-LIVE")
    boots = csms.counts["BootNotification"]
    await sync_to_async(
        ConfigurationKey.objects.filter(charger_id=pk, key="SupportedFeatureProfiles").update
    )(value="Core,SmartCharging")
    await sync_to_async(edit)(pk)  # its save marks the charger row
    outcomes = await saved(pk)
    assert outcomes[0]["outcome"] == "reboots now (2 connectors)"
    await wait_until(lambda: csms.counts["BootNotification"] > boots, message="a new boot")
    assert loaded(worker, "CP-LIVE").feature_profiles == ["Core", "SmartCharging"]
    await wait_until(lambda: "CP-LIVE" in csms.connected, message="reconnected")
    unique_id = await csms.send_raw("CP-LIVE", '[2,"rp","CancelReservation",{"reservationId":1}]')
    reply = await csms.wait_for("CP-LIVE", direction="in", unique_id=unique_id)
    assert reply.error_code == "NotSupported"


async def test_a_firmware_failure_mode_applies_live(worker, csms):
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(edit)(
        pk, firmware_failure="InstallationFailed", diagnostics_upload_method="POST"
    )
    outcomes = await saved(pk)
    assert outcomes[0]["outcome"] == "applied live"
    spec = loaded(worker, "CP-LIVE").spec
    assert (spec.firmware_failure, spec.diagnostics_upload_method) == ("InstallationFailed", "POST")


async def test_the_power_sharing_policy_and_rating_apply_live(worker, csms):
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(edit)(pk, power_sharing="first", max_power_kw=5.0)
    outcomes = await saved(pk)
    assert outcomes[0]["outcome"] == "applied live"
    live = loaded(worker, "CP-LIVE")
    assert live.spec.power_sharing == "first"
    assert live.profiles.rated_w == 5_000.0
    assert live.power_shared  # its connectors now add up to more than 5 kW


async def test_turning_load_management_on_caps_a_running_session(worker, csms):
    """The operator turns load management on at the charger's location (as the admin or
    the API saves it): the running session is held under the grid limit from then on."""
    await start_session(worker, "CP-LIVE", csms)
    charger = loaded(worker, "CP-LIVE")
    await wait_until(lambda: charger.evse(1).power_w > 10_000, message="11 kW")
    location = await sync_to_async(lambda: ChargerRow.objects.get(pk=pk_of("CP-LIVE")).location)()
    location.grid_limit_kw = 6
    location.load_management = True
    await sync_to_async(location.save)()
    await get_channel_layer().group_send(
        contract.engine_group(0), contract.fleet_changed(locations=[location.pk])
    )
    await wait_until(
        lambda: 0 < charger.evse(1).power_w <= 6_000 + 1, timeout=5, message="under 6 kW"
    )
    assert worker.sites.grid_limits_w == {location.pk: 6_000.0}
    assert worker.sites.held_back == {location.pk: 1}
    site = worker.tally.counts().locations[location.pk]  # what the location pages are sent
    assert (site["grid_limit_w"], site["load_management"], site["held_back"]) == (6_000.0, True, 1)


async def test_a_power_cycle_reports_the_reboot_and_the_startup_after_it(worker, csms):
    """The charger is built afresh from its row: its ResetOrReboot, saved in the durable
    outbox before it went down, is sent after the new boot, then StartupOfTheFirmware;
    the security log is the same charger's. Its first boot, once loaded, reported the
    firmware's startup too, as a real charge point does at every start."""
    before = loaded(worker, "CP-LIVE")
    # Its first boot's reports sent (the startup event is raised once the boot is
    # accepted: a power cycle a moment after Accepted came before it).
    await boot_reports_answered(before)
    outcome = await worker.reloader.power_cycle(before)
    assert outcome.startswith("reboots now")
    await wait_until(
        lambda: len(csms.security_events.get("CP-LIVE", [])) >= 3, timeout=10, message="events"
    )
    events = csms.security_events["CP-LIVE"]
    assert [(e["type"], e["techInfo"]) for e in events] == [
        ("StartupOfTheFirmware", "firmware 1.0.0 started after power-up"),
        ("ResetOrReboot", "a power cycle"),
        ("StartupOfTheFirmware", "firmware 1.0.0 started after a power cycle"),
    ]
    after = loaded(worker, "CP-LIVE")
    assert after is not before
    assert [e.kind for e in after.security_log] == [
        "StartupOfTheFirmware",
        "ResetOrReboot",
        "StartupOfTheFirmware",
    ]


async def test_a_power_cycle_leaves_the_cars_plugged_in_and_resumes_their_session(worker, csms):
    """The vehicles vanished: a parked car's connector went Available, its session ended
    (PowerLoss) and never began again, unlike after a Reset. Now the car stays, with its
    SoC, and the session starts again with the same idTag once the boot is accepted; a
    car that was only plugged in stays plugged in (Preparing)."""
    from simulator.core.evse import ConnectorStatus

    before = loaded(worker, "CP-LIVE")
    before.plug_in(1, COMPACT, soc=30, target_soc=90)
    assert await before.present_id_tag(1, "TAG-KEPT") == "Accepted"
    await wait_until(lambda: before.evse(1).power_w > 0, message="charging")
    before.plug_in(2, COMPACT, soc=55)

    def soc_of(charger: Any, connector_id: int) -> float | None:
        battery = charger.evse(connector_id).battery
        return None if battery is None else battery.soc

    soc = soc_of(before, 1)
    assert soc is not None
    assert (await worker.reloader.power_cycle(before)).startswith("reboots now")
    after = loaded(worker, "CP-LIVE")
    ended = await csms.wait_for("CP-LIVE", "StopTransaction", message_type=2, timeout=10)
    assert ended.payload["reason"] == "PowerLoss"
    started = await csms.wait_for(
        "CP-LIVE",
        "StartTransaction",
        message_type=2,
        after=csms.log.index(ended) + 1,
        timeout=10,
    )
    assert (started.payload["connectorId"], started.payload["idTag"]) == (1, "TAG-KEPT")
    await wait_until(lambda: after.evse(1).status is ConnectorStatus.CHARGING, message="again")
    assert (soc_of(after, 1) or 0) >= soc
    assert soc_of(after, 2) == 55
    assert after.evse(2).status is ConnectorStatus.PREPARING


async def test_a_traffic_driver_takes_its_car_away_after_a_power_cycle(worker, csms):
    """A power cycle during a driver's dwell builds the charger afresh, the car plugged into
    the new one and its session resumed. The driver held the old charger: at the end of
    the dwell it stopped and unplugged nothing, and the car stayed for ever."""
    from simulator.core.arrivals import Arrival
    from simulator.runtime.traffic import SimClock, SiteTraffic, TrafficDriver

    class DwellClock(SimClock):
        """The dwell ends when the test says so, not after some wall-clock time."""

        def __init__(self) -> None:
            super().__init__(1.0)
            self.over = asyncio.Event()

        async def sleep_until(self, t: float, interrupt: asyncio.Event | None = None) -> bool:
            await self.over.wait()
            return True

    before = loaded(worker, "CP-LIVE")
    location_id = before.spec.location_id
    assert location_id is not None
    driver = TrafficDriver(worker.store, {1: COMPACT})
    clock = DwellClock()
    site = SiteTraffic(
        driver, location_id, driver.arrival_profile(location_id, None), clock, 0, None
    )
    arrival = Arrival(clock.now(), 1, 30.0, 90.0, 600.0, "TAG-TRAFFIC", False, 0.0)
    session = asyncio.create_task(site._session(arrival, None))
    first = await csms.wait_for("CP-LIVE", "StartTransaction", message_type=2, timeout=10)
    assert first.payload["idTag"] == "TAG-TRAFFIC"
    await wait_until(lambda: before.evse(1).power_w > 0, message="the driver's car charging")
    assert (await worker.reloader.power_cycle(before)).startswith("reboots now")
    after = loaded(worker, "CP-LIVE")
    assert after is not before
    resumed = await csms.wait_for(
        "CP-LIVE",
        "StartTransaction",
        message_type=2,
        after=csms.log.index(first) + 1,
        timeout=10,
    )
    assert resumed.payload["idTag"] == "TAG-TRAFFIC"
    await wait_until(lambda: 1 in after.transactions, message="the session resumed")
    clock.over.set()
    await asyncio.wait_for(session, 10)
    assert after.evse(1).battery is None and 1 not in after.transactions
    stop = await csms.wait_for(
        "CP-LIVE", "StopTransaction", message_type=2, after=csms.log.index(resumed), timeout=10
    )
    assert stop.payload["reason"] == "Local"
    assert site.tally.left == 1


async def test_a_power_cycle_while_the_database_is_away_leaves_no_charger_behind(worker, csms):
    """Asked for a power cycle while the database cannot be reached, a charger must not be
    taken down and left out of the worker: it runs on (its session too), and is power
    cycled once the database is back or not at all, never lost until a restart."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL: a session of the worker is ended from another")
    await start_session(worker, "CP-LIVE", csms)
    before = loaded(worker, "CP-LIVE")
    async with database_away(worker):
        with pytest.raises(OperationalError):
            await worker.reloader.power_cycle(before)
        # Not taken down: still the worker's, connected, its session on.
        assert worker.store.get("CP-LIVE") is before
        assert before.online and 1 in before.transactions
    mark = len(csms.log)
    outcome = await worker.reloader.power_cycle(before)
    assert outcome.startswith("reboots now")
    stop = await csms.wait_for("CP-LIVE", "StopTransaction", after=mark, timeout=10)
    assert stop.payload["reason"] == "PowerLoss"
    assert loaded(worker, "CP-LIVE") is not before


async def test_an_edit_whose_apply_the_database_cut_short_is_applied_once_it_is_back(
    worker, csms, monkeypatch, caplog
):
    """The database goes away after the worker has read an edited row and before it has
    acted on it (here a reboot for a new connector, which checkpoints first): the edit is
    not lost, and the reconciliation applies it once the database is back, although the
    row's `updated` is the one the worker read."""
    import threading

    from django.db import connection, connections

    from simulator.runtime import live_fleet

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL: a session of the worker is ended from another")
    pk = await sync_to_async(pk_of)("CP-LIVE")
    loop = asyncio.get_running_loop()
    writer = await loop.run_in_executor(worker._writer, backend_pid)
    shared = connections["default"].settings_dict
    port = shared["PORT"]
    cut = threading.Event()
    read = live_fleet.read_chargers

    def read_then_lose_the_database(pks: list[int]):
        rows = read(pks)
        if pk in pks and not cut.is_set():
            shared["PORT"] = str(free_port())
            terminate_backend(writer)
            cut.set()
        return rows

    monkeypatch.setattr(live_fleet, "read_chargers", read_then_lose_the_database)
    await sync_to_async(Evse.objects.create)(charger_id=pk, connector_id=3, max_power_kw=22)
    await get_channel_layer().group_send(contract.engine_group(0), contract.fleet_changed([pk]))
    try:
        await wait_until(cut.is_set, message="the edited row read")
        await wait_until(
            lambda: any(
                "fleet" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records
            ),
            message="the apply cut short",
        )
        assert loaded(worker, "CP-LIVE").config["NumberOfConnectors"] == "2"
    finally:
        shared["PORT"] = port
    await wait_until(
        lambda: (
            (c := worker.store.get("CP-LIVE")) is not None and c.config["NumberOfConnectors"] == "3"
        ),
        timeout=15,
        message="the edit applied after the database came back",
    )
    await csms.wait_for(
        "CP-LIVE", "StatusNotification", predicate=lambda e: e.payload.get("connectorId") == 3
    )


async def test_a_snapshot_says_when_an_edit_last_reached_the_running_charger(worker, csms):
    # A charger page rendered before that instant shows an older set-up (it says so).
    pk = await sync_to_async(pk_of)("CP-LIVE")
    live = loaded(worker, "CP-LIVE")
    assert snapshot(live)["setup_at"] is None  # nothing edited since it was loaded
    assert (await saved(pk))[0]["outcome"] == "no change for the running charger"
    assert snapshot(live)["setup_at"] is None

    before = time.time()
    await sync_to_async(edit)(pk, max_power_kw=11.0)
    assert (await saved(pk))[0]["outcome"] == "applied live"
    applied = snapshot(live)["setup_at"]
    assert applied is not None and before <= applied <= time.time()

    # A new connector: the charger is built afresh, and says so too.
    await sync_to_async(Evse.objects.create)(charger_id=pk, connector_id=3, max_power_kw=22)
    await sync_to_async(edit)(pk)  # its save marks the charger row
    assert (await saved(pk))[0]["outcome"] == "reboots now (3 connectors)"
    rebuilt = loaded(worker, "CP-LIVE")
    assert rebuilt is not live
    assert (snapshot(rebuilt)["setup_at"] or 0.0) > applied

    # A power cycle with no edit waiting changes nothing of the set-up.
    await worker.reloader.power_cycle(rebuilt)
    assert snapshot(loaded(worker, "CP-LIVE"))["setup_at"] is None


async def test_in_a_session_only_what_needs_a_reboot_waits_for_its_end(worker, csms):
    """QA: one save changing the firmware version, a configuration key and a connector's
    power during a session said "takes effect when its session ends" for all of it, and
    so did every later edit: the demo's sessions never end, and the CSMS saw none of them."""
    await start_session(worker, "CP-LIVE", csms)
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(
        ConfigurationKey.objects.filter(charger_id=pk, key="MeterValueSampleInterval").update
    )(value="17")
    await sync_to_async(Evse.objects.filter(charger_id=pk, connector_id=1).update)(max_power_kw=3.7)
    await sync_to_async(edit)(pk, firmware_version="9.9")
    assert (await saved(pk))[0]["outcome"] == (
        "applied live; the new firmware version takes effect when its session ends (it "
        "reboots then)"
    )
    charger = loaded(worker, "CP-LIVE")
    assert charger.config["MeterValueSampleInterval"] == "17"
    assert charger.evse(1).max_power_w == 3700
    assert charger.spec.firmware_version != "9.9"  # what it booted with, until it reboots
    assert 1 in charger.transactions
    # A later edit of a key alone: applied, the reboot still to come.
    await sync_to_async(
        ConfigurationKey.objects.filter(charger_id=pk, key="MeterValueSampleInterval").update
    )(value="23")
    await sync_to_async(edit)(pk)
    assert (await saved(pk))[0]["outcome"] == (
        "applied live; the new firmware version takes effect when its session ends (it "
        "reboots then)"
    )
    assert loaded(worker, "CP-LIVE").config["MeterValueSampleInterval"] == "23"
    boots = csms.counts["BootNotification"]
    charger.stop_transaction(1)
    await wait_until(lambda: csms.counts["BootNotification"] > boots, message="the reboot")
    boot = await csms.wait_for(
        "CP-LIVE",
        "BootNotification",
        predicate=lambda e: e.payload.get("firmwareVersion") == "9.9",
        timeout=10,
    )
    assert boot is not None


async def test_an_edit_that_waited_for_the_session_dates_the_set_up_from_when_it_was_seen(
    worker, csms
):
    # The stamp was the reboot's, at the session's end: a page loaded after the edit (and
    # showing it) was told its set-up was old.
    await start_session(worker, "CP-LIVE", csms)
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(Evse.objects.create)(charger_id=pk, connector_id=3, max_power_kw=22)
    before = time.time()
    await sync_to_async(edit)(pk)  # its save marks the charger row
    assert (await saved(pk))[0]["outcome"].endswith("when its session ends (it reboots then)")
    seen = time.time()
    await asyncio.sleep(0.2)
    ended = time.time()  # a page loaded now shows the third connector already
    loaded(worker, "CP-LIVE").stop_transaction(1)
    await wait_until(
        lambda: (c := worker.store.get("CP-LIVE")) is not None and len(c.evses) == 3,
        message="rebooted with 3 connectors",
    )
    stamp = snapshot(loaded(worker, "CP-LIVE"))["setup_at"]
    assert stamp is not None and before <= stamp <= seen < ended


async def test_a_charger_enabled_again_says_its_set_up_may_differ_from_its_pages(worker, csms):
    # Disabled, edited, enabled: it came back at the new power with no stamp, so a page
    # opened before still showed the old one, as current.
    # Each `before` is taken before its edit: the reconciliation (every 0.3 s here) may
    # apply the edit before its message.
    pk = await sync_to_async(pk_of)("CP-LIVE")
    live = loaded(worker, "CP-LIVE")
    before = time.time()
    await sync_to_async(edit)(pk, enabled=False)
    assert (await saved(pk))[0]["outcome"].startswith("stopped: disabled")
    assert (snapshot(live)["setup_at"] or 0.0) >= before  # its pages show it enabled
    before = time.time()
    await sync_to_async(edit)(pk, enabled=True, max_power_kw=11.0)
    assert (await saved(pk))[0]["outcome"].startswith("loaded")
    assert (snapshot(loaded(worker, "CP-LIVE"))["setup_at"] or 0.0) >= before


async def test_auto_connect_turned_on_connects_the_running_charger(worker, csms):
    """QA F4: "applied live", and the charger stayed offline (an import turning it on for
    1,000 chargers left them all offline)."""
    row = await sync_to_async(make_charger)(
        "CP-AUTO", evses=1, csms_url=csms.url, auto_connect=False
    )
    assert (await saved(row.pk))[0]["outcome"] == "loaded (auto-connect is off)"
    await sync_to_async(edit)(row.pk, auto_connect=True)
    assert (await saved(row.pk))[0]["outcome"] == "auto-connect on: connecting now"
    await csms.wait_for("CP-AUTO", "BootNotification")
    await wait_until(lambda: loaded(worker, "CP-AUTO").online, message="connected")


async def test_auto_connect_turned_off_leaves_a_connected_charger_connected_and_says_so(
    worker, csms
):
    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(edit)(pk, auto_connect=False)
    assert (await saved(pk))[0]["outcome"] == (
        "auto-connect off: it stays connected until disconnected or restarted"
    )
    assert loaded(worker, "CP-LIVE").online


async def test_an_answer_waits_for_the_apply_that_already_read_its_row(worker, csms, monkeypatch):
    """CI, under load: the reconciliation read the re-enabled row and noted "loaded,
    connecting" before it had built the charger; the edit's message, arriving meanwhile,
    was answered from that note at once, and the charger was not running yet."""
    import threading

    pk = await sync_to_async(pk_of)("CP-LIVE")
    await sync_to_async(edit)(pk, enabled=False)
    await saved(pk)
    gate = threading.Event()
    build = live_fleet.build_loaded

    def held(*args: Any, **kwargs: Any) -> Any:
        gate.wait(10)
        return build(*args, **kwargs)

    monkeypatch.setattr(live_fleet, "build_loaded", held)
    monkeypatch.setattr(live_fleet, "COALESCE_SECONDS", 1.0)
    reloader = worker.reloader
    read_before = reloader.read_at.get(pk, 0.0)
    await sync_to_async(edit)(pk, enabled=True)
    # The message arrives, then the reconciliation reads the row before the message is
    # applied: the message is answered from what the reconciliation noted.
    answer = asyncio.create_task(saved(pk))
    await wait_until(lambda: reloader._incoming, message="the message to arrive")
    reconciling = asyncio.create_task(reloader.reconcile())
    await wait_until(lambda: reloader.read_at.get(pk, 0.0) > read_before, message="row read")
    await asyncio.sleep(1.5)  # the message coalesced, and met the apply in progress
    assert not answer.done()
    gate.set()
    assert (await answer)[0]["outcome"] == "loaded, connecting"
    assert loaded(worker, "CP-LIVE").spec.db_id == pk
    await reconciling


async def test_chargers_rebooted_or_retired_are_freed_without_the_collector(worker, csms):
    """A charger replaced by a reboot (an edit, a power cycle) or retired was a reference
    cycle (its outbox, durability sink, connection and client held its bound methods):
    frozen with the fleet by the gc policy, only a full collection of the whole heap could
    free it, a pause of the event loop of seconds at 5,000 chargers. Let go once its last
    state is saved, reference counting frees it: here with the collector off."""
    names = ("CP-EDITED", "CP-CYCLED", "CP-RETIRED")
    pks = []
    for cp_id in names:
        row = await sync_to_async(make_charger)(cp_id, evses=1, csms_url=csms.url)
        await saved(row.pk)
        await csms.wait_for(cp_id, "BootNotification")
        pks.append(row.pk)
    boots = csms.counts["BootNotification"]
    gc.collect()
    gc.disable()
    try:
        old = [weakref.ref(loaded(worker, cp_id)) for cp_id in names]
        await sync_to_async(edit)(pks[0], vendor="Edited")
        await sync_to_async(edit)(pks[2], enabled=False)
        outcomes = await saved(pks[0], pks[2])
        assert sorted(o["outcome"] for o in outcomes) == [
            "reboots now (1 connector)",
            "stopped: disabled",
        ]
        await worker.reloader.power_cycle(loaded(worker, "CP-CYCLED"))
        await wait_until(
            lambda: csms.counts["BootNotification"] == boots + 2, message="the reboots' boots"
        )
        await wait_until(lambda: not worker.reloader.busy(), message="the retired one offline")
        await wait_until(lambda: all(ref() is None for ref in old), message="them freed")
    finally:
        gc.enable()
    assert worker.reloader.replaced == 3


async def test_a_late_call_on_a_charger_let_go_does_nothing(worker, csms):
    """A charger let go (`Charger.dispose`) may still be called by what held it a moment
    before (a late answer, a wake from a written checkpoint, an event): it must neither
    fail nor send, nor tell the store or the pages anything."""
    old = loaded(worker, "CP-LIVE")
    boots = csms.counts["BootNotification"]
    await worker.reloader.power_cycle(old)
    await wait_until(lambda: csms.counts["BootNotification"] > boots, message="the reboot")
    new = loaded(worker, "CP-LIVE")
    assert new is not old
    # What the new one sends after its boot is not the old one's: done before counting.
    await wait_until(lambda: new.boot is BootState.ACCEPTED, message="the new one accepted")
    await boot_reports_answered(new)
    sent = sum(csms.counts.values())
    old.wake()
    old.outbox.enqueue(Outgoing("DataTransfer", {"vendorId": "late"}, transactional=True))
    old.detach("a late error")
    old.out_of_service("late")
    old.cancel_timers()
    old.dispose()  # twice: as harmless
    await worker.checkpoint()
    await asyncio.sleep(0.2)
    assert sum(csms.counts.values()) == sent
    assert loaded(worker, "CP-LIVE").link is LinkState.ONLINE
