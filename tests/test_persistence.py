"""The engine against the database: loading, config sync and checkpoints across restarts."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from ocpp.v16 import call

from chargers.models import Charger, ConfigurationKey, Evse, Transaction
from simulator.charger import BootState
from simulator.csms import CentralSystem
from simulator.service import SimulatorService
from tests.cast import make_charger
from tests.engine import COMPACT, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def csms():
    server = CentralSystem()
    await server.start(host="127.0.0.1", port=0)
    yield server
    await server.stop()


async def started(csms, *ids: str) -> SimulatorService:
    service = SimulatorService(
        tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5, only_ids=list(ids)
    )
    await service.start()
    for cp_id in ids:
        charger = service.store.get(cp_id)
        await wait_until(lambda c=charger: c.boot is BootState.ACCEPTED, message=f"{cp_id} boot")
    return service


async def test_it_loads_enabled_chargers_with_their_evses_and_configuration(csms):
    await database_sync_to_async(make_charger)("CP-L1", evses=3, csms_url=csms.url)
    await database_sync_to_async(make_charger)("CP-OFF", evses=1, csms_url=csms.url, enabled=False)
    await database_sync_to_async(
        ConfigurationKey.objects.filter(key="MeterValueSampleInterval").update
    )(value="17")
    service = SimulatorService()
    await service.start(connect=False)
    try:
        assert "CP-OFF" not in service.store
        charger = service.store.get("CP-L1")
        assert [e.connector_id for e in charger.evses] == [1, 2, 3]
        assert charger.config["NumberOfConnectors"] == "3"
        assert charger.config["MeterValueSampleInterval"] == "17"
    finally:
        await service.stop()


async def test_an_accepted_change_configuration_survives_a_restart(csms):
    await database_sync_to_async(make_charger)("CP-CFG", evses=1, csms_url=csms.url)
    service = await started(csms, "CP-CFG")
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
    again = SimulatorService()
    await again.start(connect=False)
    try:
        assert again.store.get("CP-CFG").config["MeterValueSampleInterval"] == "42"
    finally:
        await again.stop()


async def test_a_new_authorization_key_is_stored_but_never_logged(csms, caplog):
    await database_sync_to_async(make_charger)("CP-KEY", evses=1, csms_url=csms.url)
    service = await started(csms, "CP-KEY")
    try:
        result = await csms.call(
            "CP-KEY", call.ChangeConfiguration(key="AuthorizationKey", value="n3w-s3cret-key-16")
        )
        assert result.status == "Accepted"
    finally:
        await service.stop()
    row = await database_sync_to_async(Charger.objects.get)(charge_point_id="CP-KEY")
    assert row.authorization_key == "n3w-s3cret-key-16"
    assert "n3w-s3cret-key-16" not in caplog.text


async def test_registers_and_transactions_are_checkpointed_and_never_wound_back(csms):
    await database_sync_to_async(make_charger)(
        "CP-REG", evses=1, csms_url=csms.url, max_power_kw=50
    )
    service = await started(csms, "CP-REG")
    charger = service.store.get("CP-REG")
    try:
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "TAG1") == "Accepted"
        await wait_until(lambda: charger.evse(1).register_wh > 5, message="energy flowing")
        await service.checkpoint()
        stored = await database_sync_to_async(Evse.objects.get)(charger__charge_point_id="CP-REG")
        assert 0 < stored.register_wh <= charger.evse(1).register_wh
        tx = await database_sync_to_async(Transaction.objects.get)(
            charger__charge_point_id="CP-REG"
        )
        assert tx.state == "open" and tx.meter_start == 0
        # A stale value never winds the stored register back.
        from simulator.persistence import Batch, Checkpointer

        stale = Batch(
            config={},
            key_writes=[],
            outbox_new=[],
            outbox_gone=[],
            transactions=[],
            evses=[(1.0, "Charging", stored.pk)],
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
    service = await started(csms, "CP-AV")
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
    again = await started(csms, "CP-AV")
    try:
        charger = again.store.get("CP-AV")
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

    from chargers.models import OutboxMessage
    from simulator import persistence

    monkeypatch.setattr(persistence, "_ROWS_PER_STATEMENT", per_statement)
    chargers = [make_charger(f"CP-B{n}", evses=2) for n in range(4)]
    evses = list(Evse.objects.filter(charger__in=chargers).order_by("id"))
    Evse.objects.filter(pk=evses[0].pk).update(register_wh=500.0)
    new = [
        (c.pk, seq, "MeterValues", {"connectorId": 1, "seq": seq, "note": "é"}, "")
        for c in chargers
        for seq in (1, 2, 3)
    ]
    with transaction.atomic():
        persistence._write_outbox(new, [])
        persistence._write_evses([(100.0 + n, "Charging", evse.pk) for n, evse in enumerate(evses)])
    rows = {(r.charger_id, r.seq): r for r in OutboxMessage.objects.all()}
    assert set(rows) == {(c.pk, seq) for c in chargers for seq in (1, 2, 3)}
    assert rows[(chargers[2].pk, 3)].payload == {"connectorId": 1, "seq": 3, "note": "é"}
    assert abs(rows[(chargers[2].pk, 3)].created - timezone.now()).total_seconds() < 60
    stored = {e.pk: (e.register_wh, e.status) for e in Evse.objects.all()}
    assert stored[evses[0].pk] == (500.0, "Charging")  # never wound back
    assert stored[evses[5].pk] == (105.0, "Charging")

    with transaction.atomic():
        persistence._write_outbox(new[:2], [(chargers[0].pk, 1), (chargers[3].pk, 2)])
    left = set(OutboxMessage.objects.values_list("charger_id", "seq"))
    assert left == {(c.pk, seq) for c in chargers for seq in (1, 2, 3)} - {
        (chargers[0].pk, 1),
        (chargers[3].pk, 2),
    }
