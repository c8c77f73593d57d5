"""The engine against the database: loading, config sync and checkpoints across restarts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from channels.db import database_sync_to_async
from ocpp.v16 import call

from chargers.models import Charger, ConfigurationKey, Evse, Transaction
from simulator.core.clock import now_iso, parse_iso
from simulator.core.protocol import StopReason
from simulator.runtime.lifecycle import RunOptions, Simulator
from simulator.runtime.persistence import Checkpointer, _last_checkpoints
from tests.cast import make_charger
from tests.engine import (
    COMPACT,
    boot_reports_answered,
    loaded,
    register_now,
    started,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def crash(service: Simulator) -> None:
    """The process dies: its loops and connections end and nothing more is written (no
    final checkpoint, unlike `stop()`)."""
    tasks = [*service._tasks, *service.connections.values()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for charger in service.store:
        charger.cancel_timers()
    await asyncio.get_running_loop().run_in_executor(service._writer, Checkpointer.close)
    service._writer.shutdown(wait=False)


async def test_it_loads_enabled_chargers_with_their_evses_and_configuration(csms):
    await database_sync_to_async(make_charger)("CP-L1", evses=3, csms_url=csms.url)
    await database_sync_to_async(make_charger)("CP-OFF", evses=1, csms_url=csms.url, enabled=False)
    await database_sync_to_async(
        ConfigurationKey.objects.filter(key="MeterValueSampleInterval").update
    )(value="17")
    service = Simulator()
    await service.start(connect=False)
    try:
        assert "CP-OFF" not in service.store
        charger = loaded(service, "CP-L1")
        assert [e.connector_id for e in charger.evses] == [1, 2, 3]
        assert charger.config["NumberOfConnectors"] == "3"
        assert charger.config["MeterValueSampleInterval"] == "17"
    finally:
        await service.stop()


async def test_an_accepted_change_configuration_survives_a_restart(csms):
    await database_sync_to_async(make_charger)("CP-CFG", evses=1, csms_url=csms.url)
    service = await started("CP-CFG")
    try:
        result = await csms.call(
            "CP-CFG", call.ChangeConfiguration(key="MeterValueSampleInterval", value="42")
        )
        assert result.status == "Accepted"
    finally:
        await service.stop()
    stored = await database_sync_to_async(ConfigurationKey.objects.get)(
        charger__charge_point_id="CP-CFG", key="MeterValueSampleInterval"
    )
    assert stored.value == "42"
    again = Simulator()
    await again.start(connect=False)
    try:
        assert loaded(again, "CP-CFG").config["MeterValueSampleInterval"] == "42"
    finally:
        await again.stop()


async def test_a_new_authorization_key_is_stored_but_never_logged(csms, caplog):
    NEW_KEY = "4e3e5ec2e74e3e5ec2e74e3e5ec2e716"  # 16 bytes in hex: a key the charger takes
    await database_sync_to_async(make_charger)("CP-KEY", evses=1, csms_url=csms.url)
    service = await started("CP-KEY")
    try:
        result = await csms.call(
            "CP-KEY", call.ChangeConfiguration(key="AuthorizationKey", value=NEW_KEY)
        )
        assert result.status == "Accepted"
    finally:
        await service.stop()
    row = await database_sync_to_async(Charger.objects.get)(charge_point_id="CP-KEY")
    assert row.authorization_key == NEW_KEY
    assert NEW_KEY not in caplog.text


async def test_registers_and_transactions_are_checkpointed_and_never_wound_back(csms):
    await database_sync_to_async(make_charger)(
        "CP-REG", evses=1, csms_url=csms.url, max_power_kw=50
    )
    service = await started("CP-REG")
    charger = loaded(service, "CP-REG")
    try:
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "TAG1") == "Accepted"
        await wait_until(lambda: register_now(charger) > 5, message="energy flowing")
        await service.checkpoint()
        stored = await database_sync_to_async(Evse.objects.get)(charger__charge_point_id="CP-REG")
        assert 0 < stored.register_wh <= charger.evse(1).register_wh
        tx = await database_sync_to_async(Transaction.objects.get)(
            charger__charge_point_id="CP-REG"
        )
        assert tx.state == "open" and tx.meter_start == 0
        # A stale value never winds the stored register back.
        from simulator.runtime.persistence import Batch, Checkpointer

        stale = Batch(
            config={},
            key_writes=[],
            outbox_new=[],
            outbox_gone=[],
            transactions=[],
            evses=[(stored.charger_id, 1.0, "Charging", stored.pk)],
        )

        def write_and_close() -> None:  # the writer thread keeps its connection: close it
            try:
                Checkpointer.write(stale)
            finally:
                Checkpointer.close()

        await asyncio.to_thread(write_and_close)
        again = await database_sync_to_async(Evse.objects.get)(pk=stored.pk)
        assert again.register_wh >= stored.register_wh
    finally:
        await service.stop()


async def test_inoperative_and_charging_profiles_survive_a_restart(csms):
    await database_sync_to_async(make_charger)("CP-AV", evses=2, csms_url=csms.url)
    service = await started("CP-AV")
    profile = {
        "chargingProfileId": 5,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.5}],
        },
    }
    try:
        answer = await csms.call(
            "CP-AV", call.ChangeAvailability(connector_id=2, type="Inoperative")
        )
        assert answer.status == "Accepted"
        answer = await csms.call(
            "CP-AV", call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile)
        )
        assert answer.status == "Accepted"
        await service.checkpoint()
    finally:
        await service.stop()
    mark = len(csms.log)
    again = await started("CP-AV")
    try:
        charger = loaded(again, "CP-AV")
        assert charger.evse(2).status.value == "Unavailable"
        assert charger.evse(1).status.value == "Available"
        assert [p.id for _c, p in charger.profiles.installed()] == [5]
        status = await csms.wait_for(
            "CP-AV",
            "StatusNotification",
            after=mark,
            predicate=lambda e: e.payload["connectorId"] == 2,
        )
        assert status.payload["status"] == "Unavailable"
    finally:
        await again.stop()


@pytest.mark.parametrize("per_statement", [1, 3, 5, 2_048])
def test_batched_writes_touch_exactly_their_rows_in_any_chunking(monkeypatch, per_statement):
    from django.db import transaction
    from django.utils import timezone

    from chargers import bulk
    from chargers.models import OutboxMessage

    monkeypatch.setattr(bulk, "ROWS_PER_STATEMENT", per_statement)
    chargers = [make_charger(f"CP-B{n}", evses=2) for n in range(4)]
    evses = list(Evse.objects.filter(charger__in=chargers).order_by("id"))
    Evse.objects.filter(pk=evses[0].pk).update(register_wh=500.0)
    new = [
        (c.pk, seq, "MeterValues", {"connectorId": 1, "seq": seq, "note": "é"}, "")
        for c in chargers
        for seq in (1, 2, 3)
    ]
    with transaction.atomic():
        OutboxMessage.objects.add(new)
        Evse.objects.checkpoint(
            [(evse.charger_id, 100.0 + n, "Charging", evse.pk) for n, evse in enumerate(evses)],
            timezone.now(),
        )
    rows = {(r.charger_id, r.seq): r for r in OutboxMessage.objects.all()}
    assert set(rows) == {(c.pk, seq) for c in chargers for seq in (1, 2, 3)}
    assert rows[(chargers[2].pk, 3)].payload == {"connectorId": 1, "seq": 3, "note": "é"}
    assert abs(rows[(chargers[2].pk, 3)].created - timezone.now()).total_seconds() < 60
    stored = {e.pk: (e.register_wh, e.status) for e in Evse.objects.all()}
    assert stored[evses[0].pk] == (500.0, "Charging")  # never wound back
    assert stored[evses[5].pk] == (105.0, "Charging")

    with transaction.atomic():
        OutboxMessage.objects.add(new[:2])
        OutboxMessage.objects.remove([(chargers[0].pk, 1), (chargers[3].pk, 2)])
    left = set(OutboxMessage.objects.values_list("charger_id", "seq"))
    assert left == {(c.pk, seq) for c in chargers for seq in (1, 2, 3)} - {
        (chargers[0].pk, 1),
        (chargers[3].pk, 2),
    }


async def test_one_chargers_out_of_range_value_does_not_stop_the_others_being_saved(csms, caplog):
    for cp_id in ("CP-HUGE", "CP-FINE", "CP-LATER"):
        await database_sync_to_async(make_charger)(cp_id, evses=1, csms_url=csms.url)
    service = await started("CP-HUGE", "CP-FINE", "CP-LATER")
    huge, fine, later = (loaded(service, c) for c in ("CP-HUGE", "CP-FINE", "CP-LATER"))
    try:
        huge.plug_in(1, COMPACT, soc=20)
        assert await huge.present_id_tag(1, "TAG-H") == "Accepted"
        await wait_until(lambda: huge.evse(1).transaction_id is not None, message="tx id")
        # Past the CSMS: a transaction id no INTEGER column holds (2^63; PostgreSQL's
        # integer stops at 2^31). Before, every later checkpoint failed on it, forever.
        tx = huge.transactions[1]
        tx.transaction_id = 2**63
        huge.listener.on_transaction(huge, tx)
        # Another charger's StartTransaction must still be saved, hence sent ...
        fine.plug_in(1, COMPACT, soc=20)
        assert await fine.present_id_tag(1, "TAG-F") == "Accepted"
        await csms.wait_for("CP-FINE", "StartTransaction", timeout=5)
        await wait_until(lambda: fine.evse(1).transaction_id is not None, message="fine's id")
        await service.checkpoint()
        # ... and so must everything of a later batch.
        later.plug_in(1, COMPACT, soc=20)
        assert await later.present_id_tag(1, "TAG-L") == "Accepted"
        await csms.wait_for("CP-LATER", "StartTransaction", timeout=5)
        await wait_until(lambda: later.evse(1).transaction_id is not None, message="later's id")
        await wait_until(lambda: register_now(later) > 1, message="later charging")
        await service.checkpoint()
        rows = await database_sync_to_async(
            lambda: {
                t.charger.charge_point_id: (t.transaction_id, t.state)
                for t in Transaction.objects.select_related("charger")
            }
        )()
        assert rows["CP-FINE"] == (fine.evse(1).transaction_id, "open")
        assert rows["CP-LATER"] == (later.evse(1).transaction_id, "open")
        # The bad row itself is repaired: the transaction is kept, without the bad id.
        assert rows["CP-HUGE"] == (None, "open")
        registers = await database_sync_to_async(
            lambda: dict(Evse.objects.values_list("charger__charge_point_id", "register_wh"))
        )()
        assert registers["CP-LATER"] > 0
        assert registers["CP-HUGE"] > 0  # the bad charger's other rows are saved too
        logged = [
            r.getMessage() for r in caplog.records if r.name == "simulator.runtime.persistence"
        ]
        refused = [m for m in logged if "not saved" in m]
        assert refused and all("CP-HUGE" in m for m in refused), logged
    finally:
        await service.stop()


def test_a_refused_row_is_logged_with_its_charger_and_only_it_is_dropped(caplog):
    """Row by row: an unencodable outbox payload and a profile id out of range cost only
    their own rows, and a charger deleted meanwhile only its own; the rest is written."""
    from django.utils import timezone

    from chargers.models import ChargingProfileRecord, OutboxMessage
    from simulator.runtime.persistence import Batch, Checkpointer

    good, bad, gone = (make_charger(c, evses=1) for c in ("CP-G", "CP-B", "CP-GONE"))
    gone_pk = gone.pk
    gone_evse = gone.evses.get().pk
    gone.delete()
    good_evse, bad_evse = (c.evses.get() for c in (good, bad))

    def profile(profile_id: int) -> dict:
        return {
            "connectorId": 0,
            "csChargingProfiles": {
                "chargingProfileId": profile_id,
                "stackLevel": 1,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}],
                },
            },
        }

    batch = Batch(
        config={(good.pk, "MeterValueSampleInterval"): "30"},
        key_writes=[],
        outbox_new=[
            (good.pk, 1, "StartTransaction", {"connectorId": 1}, ""),
            (bad.pk, 1, "MeterValues", {"connectorId": 1, "transactionId": 2**64}, ""),
            (bad.pk, 2, "MeterValues", {"connectorId": 1, "transactionId": 7}, ""),
            (gone_pk, 1, "StartTransaction", {"connectorId": 1}, ""),
        ],
        outbox_gone=[],
        transactions=[],
        profiles={bad.pk: [profile(4), profile(2**63)]},
        evses=[
            (good.pk, 10.0, "Charging", good_evse.pk),
            (bad.pk, 20.0, "Charging", bad_evse.pk),
            (gone_pk, 30.0, "Charging", gone_evse),
        ],
        at=timezone.now(),
    )
    try:
        Checkpointer.write(batch)
    finally:
        Checkpointer.close()
    assert set(OutboxMessage.objects.values_list("charger_id", "seq")) == {
        (good.pk, 1),
        (bad.pk, 2),
    }
    assert batch.rejected == {(bad.pk, 1)}
    assert batch.gone == {gone_pk}  # its rows and messages go with it
    assert list(ChargingProfileRecord.objects.values_list("charger_id", "profile_id")) == [
        (bad.pk, 4)
    ]
    assert dict(Evse.objects.values_list("pk", "register_wh")) == {
        good_evse.pk: 10.0,
        bad_evse.pk: 20.0,
    }
    assert ConfigurationKey.objects.get(charger=good, key="MeterValueSampleInterval").value == "30"
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("CP-B " in m and "MeterValues #1" in m for m in logged), logged
    assert any("CP-B " in m and "charging profile" in m for m in logged), logged
    assert not any("CP-G " in m for m in logged), logged
    # A deleted charger did nothing wrong: one line, not an error per row.
    assert not any(f"pk {gone_pk}" in m for m in logged), logged
    deleted = [r for r in caplog.records if f"pk {gone_pk} was deleted meanwhile" in r.getMessage()]
    assert [r.levelname for r in deleted] == ["INFO"], caplog.text


def _full_batch(charger_pk: int, seqs: range):
    """A checkpoint of transaction messages big enough to need new database pages."""
    from django.utils import timezone

    from simulator.runtime.persistence import Batch

    value = {"value": "1", "context": "Sample.Periodic", "format": "Raw" * 1000}
    text = orjson.dumps(
        {"connectorId": 1, "transactionId": 7, "meterValue": [{"sampledValue": [value]}]}
    ).decode()
    return Batch(
        config={},
        key_writes=[],
        outbox_new=[(charger_pk, seq, "MeterValues", text, "") for seq in seqs],
        outbox_gone=[],
        transactions=[],
        at=timezone.now(),
    )


def test_a_full_database_fails_the_checkpoint_to_be_written_again_and_drops_nothing(caplog):
    """A full disk (here SQLite's page limit on the writer's connection) is the database's
    trouble, not a row's: the batch fails as if the database were down, and is written
    whole once there is room. It used to be taken for rows the database refused, and the
    transaction messages were dropped unsent, one by one."""
    from django.db import OperationalError, connection

    from chargers.models import OutboxMessage

    if connection.vendor != "sqlite":
        pytest.skip("the page limit is SQLite's (PostgreSQL's full disk is the same error)")
    charger = make_charger("CP-FULL", evses=1)
    batch = _full_batch(charger.pk, range(1, 41))
    try:
        with connection.cursor() as cursor:
            # No free page left by earlier tests' deletes: the rows must need new ones.
            cursor.execute("VACUUM")
            assert cursor.execute("PRAGMA freelist_count").fetchone()[0] == 0
            pages = cursor.execute("PRAGMA page_count").fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(OperationalError, match="full"):
            Checkpointer.write(batch)  # closes the connection, and with it the limit
        assert not OutboxMessage.objects.exists()
        Checkpointer.write(batch)
    finally:
        Checkpointer.close()
    assert sorted(OutboxMessage.objects.values_list("seq", flat=True)) == list(range(1, 41))
    assert not batch.rejected and not batch.isolated
    assert "could not be saved" not in caplog.text and "not saved" not in caplog.text


@pytest.mark.parametrize("debug", [True, False], ids=["DEBUG", "no-DEBUG"])
def test_a_checkpoints_statements_stay_out_of_djangos_query_log(settings, debug):
    """With DEBUG on (the default) Django keeps every statement's text with its values in
    the connection's query log, up to 9,000 of them: a checkpoint's bulk statements, a
    megabyte or more each on PostgreSQL, grew a long-running worker by gigabytes."""
    from django.db import connection, reset_queries

    settings.DEBUG = debug
    charger = make_charger("CP-LOG", evses=1)
    try:
        connection.ensure_connection()
        reset_queries()
        Checkpointer.write(_full_batch(charger.pk, range(1, 41)))
        logged = [len(query["sql"]) for query in connection.queries_log]
    finally:
        Checkpointer.close()
    assert sum(logged) < 10_000, logged  # the transaction's own statements, a few bytes each


async def test_a_power_loss_stop_is_dated_at_the_last_checkpoint_not_at_the_restart(csms):
    await database_sync_to_async(make_charger)("CP-PL", evses=1, csms_url=csms.url, max_power_kw=50)
    service = await started("CP-PL")
    charger = loaded(service, "CP-PL")
    charger.plug_in(1, COMPACT, soc=20)
    assert await charger.present_id_tag(1, "TAG") == "Accepted"
    await wait_until(lambda: charger.evse(1).transaction_id is not None, message="tx id")
    await wait_until(lambda: register_now(charger) > 5, message="energy flowing")
    await service.checkpoint()
    await crash(service)
    stored = await database_sync_to_async(Evse.objects.get)(charger__charge_point_id="CP-PL")
    assert stored.checkpointed_at is not None
    # Known alive with that register until its checkpoint, or the later stamp of the lease
    # its row names (full checkpoints that found the register unchanged).
    alive = (await database_sync_to_async(_last_checkpoints)({stored.charger_id}))[
        (stored.charger_id, 1)
    ]
    assert alive >= stored.checkpointed_at
    await asyncio.sleep(0.3)  # the restart comes clearly later than the last checkpoint
    restarted_at = datetime.now(UTC)
    mark = len(csms.log)
    again = await started("CP-PL")
    try:
        stop = await csms.wait_for("CP-PL", "StopTransaction", after=mark, timeout=5)
    finally:
        await again.stop()
    assert stop.payload["reason"] == "PowerLoss"
    assert stop.payload["timestamp"] == now_iso(alive.astimezone(UTC))
    assert parse_iso(stop.payload["timestamp"]) < restarted_at
    assert stop.payload["meterStop"] == int(stored.register_wh)


@pytest.mark.parametrize("shift_h", [-2, 2], ids=["CSMS-behind", "CSMS-ahead"])
async def test_a_power_loss_stop_is_dated_on_the_chargers_own_clock(csms, shift_h):
    """The CSMS's currentTime set the charger's clock hours away from the host's: its
    StartTransaction is dated on that clock, and so must the PowerLoss stop a restart
    sends be. It was dated on the host's clock: with the CSMS 2 h behind, the session
    lasted 2 h more than it ran (billed so); 2 h ahead, the stop was moved up to the
    start, a session of no time."""
    csms.current_time = now_iso(datetime.now(UTC) + timedelta(hours=shift_h))
    await database_sync_to_async(make_charger)(
        "CP-PLC", evses=1, csms_url=csms.url, max_power_kw=50
    )
    service = await started("CP-PLC")
    charger = loaded(service, "CP-PLC")
    offset = charger.clock_offset
    assert abs(offset - shift_h * 3600) < 60
    charger.plug_in(1, COMPACT, soc=20)
    assert await charger.present_id_tag(1, "TAG") == "Accepted"
    start = await csms.wait_for("CP-PLC", "StartTransaction", timeout=5)
    await wait_until(lambda: register_now(charger) > 5, message="energy flowing")
    await service.checkpoint()
    await crash(service)
    stored = await database_sync_to_async(Evse.objects.get)(charger__charge_point_id="CP-PLC")
    alive = (await database_sync_to_async(_last_checkpoints)({stored.charger_id}))[
        (stored.charger_id, 1)
    ]
    mark = len(csms.log)
    again = await started("CP-PLC")
    try:
        stop = await csms.wait_for("CP-PLC", "StopTransaction", after=mark, timeout=5)
        # Its clock kept the CSMS's time through the restart: the boot's answer is no step.
        assert abs(loaded(again, "CP-PLC").clock_offset - offset) < 60
        await boot_reports_answered(loaded(again, "CP-PLC"))
    finally:
        await again.stop()
    events = [
        e.payload["type"]
        for e in csms.log[mark:]
        if e.cp_id == "CP-PLC" and e.message_type == 2 and e.action == "SecurityEventNotification"
    ]
    assert "SettingSystemTime" not in events, events
    assert stop.payload["reason"] == "PowerLoss"
    # The last checkpoint, as the charger's clock read it then.
    assert stop.payload["timestamp"] == now_iso(alive + timedelta(seconds=offset))
    assert parse_iso(stop.payload["timestamp"]) > parse_iso(start.payload["timestamp"])


async def test_a_restart_plugs_the_parked_cars_back_in_and_resumes_their_sessions(csms):
    """A restart of the simulator is a power cycle of its chargers, and the cars stay
    parked. They vanished: the connectors went Available under them, and a session ended
    (PowerLoss) never began again. A car of the background traffic is not kept: its
    driver's plan does not survive the restart."""
    from simulator.core.evse import ConnectorStatus

    await database_sync_to_async(make_charger)(
        "CP-PARK", evses=3, csms_url=csms.url, max_power_kw=50
    )
    service = await started("CP-PARK")
    charger = loaded(service, "CP-PARK")
    charger.plug_in(1, COMPACT, soc=30, target_soc=90)
    assert await charger.present_id_tag(1, "TAG-PARK") == "Accepted"
    charger.plug_in(2, COMPACT, soc=55, target_soc=80)
    charger.pause_ev(2)
    charger.plug_in(3, COMPACT, soc=40, brought_by=object())  # the traffic's
    await wait_until(lambda: register_now(charger) > 5, message="energy flowing")
    await service.checkpoint()
    battery = charger.evse(1).battery
    assert battery is not None
    soc_then = battery.soc
    await crash(service)
    stored = await database_sync_to_async(Evse.objects.get)(
        charger__charge_point_id="CP-PARK", connector_id=1
    )
    mark = len(csms.log)
    again = await started("CP-PARK")
    try:
        stop = await csms.wait_for("CP-PARK", "StopTransaction", after=mark, timeout=5)
        assert stop.payload["reason"] == "PowerLoss"
        start = await csms.wait_for(
            "CP-PARK", "StartTransaction", after=csms.log.index(stop) + 1, timeout=10
        )
        assert (start.payload["connectorId"], start.payload["idTag"]) == (1, "TAG-PARK")
        assert start.payload["meterStart"] == stop.payload["meterStop"]
        after = loaded(again, "CP-PARK")
        await wait_until(
            lambda: after.evse(1).status is ConnectorStatus.CHARGING, message="charging again"
        )
        first, second = after.evse(1).battery, after.evse(2).battery
        assert first is not None and second is not None
        assert first.spec == COMPACT and first.target_soc == 90
        # The SoC its stored register says: at least where it was plugged in, at most where
        # it was when the process died (the register written before then).
        assert 30 < first.soc <= soc_then + 1e-6
        assert stored.register_wh > 0
        assert (second.soc, second.target_soc, second.paused) == (55, 80, True)
        assert after.evse(2).status is ConnectorStatus.PREPARING
        assert after.evse(3).battery is None
        assert after.evse(3).status is ConnectorStatus.AVAILABLE
    finally:
        await again.stop()


async def test_a_message_that_cannot_be_saved_is_not_sent_and_does_not_hold_up_the_next(
    csms, caplog
):
    await database_sync_to_async(make_charger)("CP-UNSAVED", evses=1, csms_url=csms.url)
    service = await started("CP-UNSAVED")
    charger = loaded(service, "CP-UNSAVED")
    try:
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "TAG") == "Accepted"
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="tx id")
        value = {"value": "1", "context": "Sample.Periodic", "vendorCounter": 2**64}
        unsaved = charger.send(
            (
                "MeterValues",
                {
                    "connectorId": 1,
                    "meterValue": [{"timestamp": now_iso(), "sampledValue": [value]}],
                },
            ),
            transactional=True,
            tx=charger.transactions[1],
        )
        charger.stop_transaction(1, StopReason.LOCAL)
        await csms.wait_for("CP-UNSAVED", "StopTransaction", timeout=5)
        assert unsaved not in charger.queue
        assert not [e for e in csms.log if e.action == "MeterValues" and e.message_type == 2]
        assert f"MeterValues #{unsaved.seq} could not be saved; dropped unsent" in caplog.text
    finally:
        await service.stop()


async def test_a_restart_keeps_the_security_log_as_a_chargers_flash_does(csms):
    """The security log lived in memory: after a restart GetLog(SecurityLog) uploaded, and
    the charger page showed, nothing of what happened before."""
    await database_sync_to_async(make_charger)("CP-SECLOG", csms_url=csms.url)
    service = await started("CP-SECLOG")
    charger = loaded(service, "CP-SECLOG")
    charger.security_event("TamperDetectionActivated", "lid opened")
    charger.security_event("InvalidMessages", "a bad frame", push=False)
    await service.checkpoint()
    before = [e.as_dict() for e in charger.security_log]
    await crash(service)
    again = await started("CP-SECLOG")
    try:
        after = [e.as_dict() for e in loaded(again, "CP-SECLOG").security_log]
        assert after[: len(before)] == before
        kinds = [e["type"] for e in before]
        assert kinds[-2:] == ["TamperDetectionActivated", "InvalidMessages"]
        assert before[-1]["sent"] is False and before[-1]["techInfo"] == "a bad frame"
    finally:
        await again.stop()


@pytest.mark.django_db
def test_the_stored_security_log_keeps_a_full_logs_newest_events():
    from chargers.models import SecurityLogEntry

    row = make_charger("CP-SECFULL")
    other = make_charger("CP-SECOTHER")
    events: list[tuple[str, str, str | None, bool]] = [
        (f"Kind{n}", f"2026-12-05T10:00:{n:02d}Z", None, True) for n in range(5)
    ]
    SecurityLogEntry.objects.store({row.pk: events[:3], other.pk: events}, keep=3)
    # Not full: nothing dropped (the log in memory dropped nothing either).
    assert SecurityLogEntry.objects.filter(charger=row).count() == 3
    SecurityLogEntry.objects.store({row.pk: events[3:]}, keep=3, full=[row.pk])
    kept = SecurityLogEntry.objects.filter(charger=row).order_by("pk")
    assert [e.kind for e in kept] == ["Kind2", "Kind3", "Kind4"]
    assert SecurityLogEntry.objects.filter(charger=other).count() == 5
    # A charger deleted meanwhile is left out, not an error.
    gone = make_charger("CP-SECGONE")
    gone_pk = gone.pk
    gone.delete()
    SecurityLogEntry.objects.store({gone_pk: events}, keep=3)
    assert not SecurityLogEntry.objects.filter(charger_id=gone_pk).exists()


@pytest.mark.django_db
def test_a_loaded_charger_holds_the_operators_own_keys_with_their_read_only_flags():
    from simulator.runtime.persistence import load_fleet

    row = make_charger("CP-VENDOR")
    ConfigurationKey.objects.create(charger=row, key="VendorSerial", value="X-1", readonly=True)
    ConfigurationKey.objects.create(charger=row, key="VendorMode", value="eco")
    (charger,) = load_fleet(None, ids=["CP-VENDOR"])
    known, unknown = charger.get_configuration(["VendorSerial", "VendorMode"])
    assert known == [
        {"key": "VendorSerial", "readonly": True, "value": "X-1"},
        {"key": "VendorMode", "readonly": False, "value": "eco"},
    ]
    assert unknown == []
    assert charger.change_configuration("VendorSerial", "Y") == "Rejected"
    assert charger.change_configuration("VendorMode", "x" * 501) == "Rejected"
    assert charger.change_configuration("VendorMode", "fast") == "Accepted"
    assert charger.config["VendorMode"] == "fast"


@pytest.mark.django_db
def test_a_stored_profile_this_version_refuses_is_dropped_alone(caplog):
    """A profile stored by an earlier version whose rules were looser (a negative id, now
    Rejected) made the load refuse every profile of its charger."""
    from chargers.models import ChargingProfileRecord
    from simulator.runtime.persistence import load_fleet

    row = make_charger("CP-OLDPROF", evses=1)

    def profile(profile_id: int) -> dict[str, Any]:
        return {
            "chargingProfileId": profile_id,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "startSchedule": "2026-01-01T00:00:00Z",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}],
            },
        }

    ChargingProfileRecord.objects.store(
        {row.pk: [{"connectorId": 1, "csChargingProfiles": profile(n)} for n in (-1, 7)]}
    )
    (charger,) = load_fleet(None, ids=["CP-OLDPROF"])
    assert [p["csChargingProfiles"]["chargingProfileId"] for p in charger.profiles.all()] == [7]
    assert "stored charging profile -1 not loaded" in caplog.text


async def test_a_session_a_restart_ended_starts_again_after_a_later_boot(csms):
    """A restart ended the session (PowerLoss) and was to start it again once booted, but
    its CSMS was out of reach: stopped before any boot, the next start forgot it, and the
    parked car stayed Preparing for good."""
    from tests.process import free_port

    await database_sync_to_async(make_charger)("CP-LATER", evses=1, csms_url=csms.url)
    service = await started("CP-LATER")
    charger = loaded(service, "CP-LATER")
    charger.plug_in(1, COMPACT, soc=30, target_soc=90)
    assert await charger.present_id_tag(1, "TAG-LATER") == "Accepted"
    await wait_until(lambda: register_now(charger) > 1, message="energy flowing")
    await service.checkpoint()
    await crash(service)
    rows = Charger.objects.filter(charge_point_id="CP-LATER")
    await database_sync_to_async(rows.update)(csms_url=f"ws://127.0.0.1:{free_port()}/ocpp")
    offline = Simulator(RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, only_ids=["CP-LATER"]))
    await offline.start()
    unbooted = loaded(offline, "CP-LATER")
    assert unbooted.resume_after_boot == {1: "TAG-LATER"}
    await offline.stop()  # before any boot
    await database_sync_to_async(rows.update)(csms_url=csms.url)
    mark = len(csms.log)
    again = await started("CP-LATER")
    try:
        start = await csms.wait_for("CP-LATER", "StartTransaction", after=mark, timeout=10)
        assert (start.payload["connectorId"], start.payload["idTag"]) == (1, "TAG-LATER")
        # Started once: not again after yet another restart.
        battery = loaded(again, "CP-LATER").evse(1).battery
        assert battery is not None and battery.resume_id_tag is None
    finally:
        await again.stop()


@pytest.mark.django_db
def test_a_restart_with_only_other_durable_messages_says_what_it_restored_at_debug(caplog):
    """QA: every edit reboot logged "restored 1 unconfirmed transaction messages; ended 0
    interrupted transactions" at INFO for chargers without a transaction (905 lines in one
    bulk reboot): the message was the reboot's SecurityEventNotification."""
    import logging

    from chargers.models import OutboxMessage
    from simulator.runtime.persistence import load_fleet

    row = make_charger("CP-QUIET")
    event = {"type": "ResetOrReboot", "timestamp": "2026-12-01T10:00:00Z"}
    OutboxMessage.objects.add([(row.pk, 1, "SecurityEventNotification", event, "")])
    with caplog.at_level(logging.DEBUG, logger="simulator.runtime.persistence"):
        load_fleet(Checkpointer(), ids=["CP-QUIET"])
    (said,) = [r for r in caplog.records if r.getMessage().startswith("restored")]
    assert (said.levelname, said.getMessage()) == (
        "DEBUG",
        "restored 0 unconfirmed transaction message(s) and 1 other durable message(s) "
        "(1 SecurityEventNotification); ended 0 interrupted transaction(s) (PowerLoss)",
    )

    caplog.clear()
    stop = {"transactionId": 77, "meterStop": 1500, "timestamp": "2026-12-01T11:00:00Z"}
    OutboxMessage.objects.add([(row.pk, 2, "StopTransaction", stop, "CP-QUIET-1")])
    with caplog.at_level(logging.DEBUG, logger="simulator.runtime.persistence"):
        load_fleet(Checkpointer(), ids=["CP-QUIET"])
    (said,) = [r for r in caplog.records if r.getMessage().startswith("restored")]
    assert said.levelname == "INFO"
    assert said.getMessage().startswith(
        "restored 1 unconfirmed transaction message(s) and 1 other durable message(s)"
    )


async def test_a_restart_ends_the_tx_profile_with_the_transaction_it_was_for(csms):
    """A TxProfile lasts as long as its transaction (1.6, 3.13.2). A restart ends the open
    transaction (PowerLoss), but its TxProfile stayed installed, stored, and held the
    session that starts again after the boot at the old transaction's limit."""
    await database_sync_to_async(make_charger)("CP-TXP", evses=1, csms_url=csms.url)
    service = await started("CP-TXP")
    charger = loaded(service, "CP-TXP")
    profile = {
        "chargingProfileId": 8,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 8}],
        },
    }
    try:
        charger.plug_in(1, COMPACT, soc=30, target_soc=90)
        assert await charger.present_id_tag(1, "TAG-TXP") == "Accepted"
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="tx id")
        answer = await csms.call(
            "CP-TXP", call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
        )
        assert answer.status == "Accepted"
        await service.checkpoint()
    finally:
        await service.stop()
    mark = len(csms.log)
    again = await started("CP-TXP")
    try:
        stop = await csms.wait_for("CP-TXP", "StopTransaction", after=mark, timeout=5)
        assert stop.payload["reason"] == "PowerLoss"
        await csms.wait_for(
            "CP-TXP", "StartTransaction", after=csms.log.index(stop) + 1, timeout=10
        )
        assert loaded(again, "CP-TXP").profiles.installed() == []
        await again.checkpoint()
    finally:
        await again.stop()
    third = await started("CP-TXP")
    try:
        assert loaded(third, "CP-TXP").profiles.installed() == []
    finally:
        await third.stop()
