"""No frame or value from a CSMS stops the engine or gets the wrong OCPP 1.6 answer.

Over real loopback WebSockets against the built-in CSMS, whose `send_raw` writes frames as
they are (hostile ones included).
"""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from ocpp.v16 import call

from chargers.models import ChargingProfileRecord, Transaction
from simulator.charger import BootState
from simulator.csms import CentralSystem
from simulator.service import SimulatorService
from tests.cast import make_charger
from tests.engine import COMPACT, connected, runtime_charger, wait_until

BEYOND_INT64 = 2**63


@pytest.fixture
async def csms():
    server = CentralSystem()
    await server.start(host="127.0.0.1", port=0)
    yield server
    await server.stop()


def frame(unique_id: object, action: str, payload: object) -> str:
    # json, not orjson: it writes integers of any size, as a hostile CSMS may.
    return json.dumps([2, unique_id, action, payload])


def profile(**overrides: object) -> dict:
    body: dict = {
        "chargingProfileId": 7,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 5000}],
        },
    }
    body.update(overrides)
    return body


async def reply_to(csms: CentralSystem, cp_id: str, text: str, unique_id: str | None = None):
    unique_id = await csms.send_raw(cp_id, text) or unique_id
    assert unique_id is not None
    return await csms.wait_for(cp_id, direction="in", unique_id=unique_id, timeout=3)


async def still_answers(csms: CentralSystem, cp_id: str) -> None:
    answer = await csms.call(cp_id, call.GetConfiguration(key=["HeartbeatInterval"]))
    assert answer.configuration_key[0]["key"] == "HeartbeatInterval"


# -- values the schema allows but we cannot hold ---------------------------------------------


@pytest.mark.parametrize(
    ("profile_id", "code"),
    [(BEYOND_INT64, "PropertyConstraintViolation"), (2**31, "PropertyConstraintViolation")],
)
async def test_it_answers_property_constraint_violation_for_a_huge_profile_id(
    csms, profile_id, code
):
    charger = runtime_charger("HF-PID", csms.url, evses=1)
    async with connected(charger):
        payload = {"connectorId": 0, "csChargingProfiles": profile(chargingProfileId=profile_id)}
        reply = await reply_to(csms, "HF-PID", frame("pid", "SetChargingProfile", payload))
        assert reply.error_code == code
        assert len(charger.profiles) == 0
        await still_answers(csms, "HF-PID")


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "not a date"]
)
async def test_a_date_outside_years_1_to_9999_in_utc_is_a_property_constraint_violation(
    csms, moment
):
    charger = runtime_charger("HF-DATE", csms.url, evses=1)
    async with connected(charger):
        payload = {"connectorId": 0, "csChargingProfiles": profile(validFrom=moment)}
        reply = await reply_to(csms, "HF-DATE", frame("d1", "SetChargingProfile", payload))
        assert reply.error_code == "PropertyConstraintViolation"
        schedule = {
            "chargingRateUnit": "A",
            "startSchedule": moment,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}],
        }
        tx_profile = profile(chargingProfilePurpose="TxProfile", chargingSchedule=schedule)
        start = {"idTag": "T1", "connectorId": 1, "chargingProfile": tx_profile}
        reply = await reply_to(csms, "HF-DATE", frame("d2", "RemoteStartTransaction", start))
        assert reply.error_code == "PropertyConstraintViolation"
        assert len(charger.profiles) == 0
        assert not charger.pending_authorizations
        await still_answers(csms, "HF-DATE")


@pytest.mark.parametrize("value", ["--5", "²", "٣", "1_000", "9" * 30])
async def test_an_integer_key_takes_only_plain_ascii_digits(csms, value):
    charger = runtime_charger("HF-CFG", csms.url, evses=1)
    async with connected(charger):
        payload = {"key": "HeartbeatInterval", "value": value}
        reply = await reply_to(csms, "HF-CFG", frame("c1", "ChangeConfiguration", payload))
        assert reply.message_type == 3
        assert reply.payload == {"status": "Rejected"}
        assert charger.config["HeartbeatInterval"] == "300"


# -- frames ------------------------------------------------------------------------------------


async def test_a_call_nested_a_thousand_levels_deep_is_answered_and_the_link_stays(csms):
    charger = runtime_charger("HF-DEEP", csms.url, evses=1)
    async with connected(charger):
        for depth in (1_000, 5_000):  # what json can follow, and what no parser here reads
            deep = "[" * depth + "]" * depth
            text = f'[2,"deep-{depth}","Reset",{{"type":{deep}}}]'
            reply = await reply_to(csms, "HF-DEEP", text, f"deep-{depth}")
            assert reply.error_code == "FormationViolation"
        await still_answers(csms, "HF-DEEP")
    assert csms.connects["HF-DEEP"] == 1


@pytest.mark.parametrize("odd_id", [["x"], {"a": 1}, 5, None])
async def test_an_answer_with_a_list_or_object_id_is_ignored_without_dropping_the_link(
    csms, odd_id
):
    charger = runtime_charger("HF-AID", csms.url, evses=1)
    async with connected(charger):
        await csms.send_raw("HF-AID", json.dumps([3, odd_id, {}]))
        await csms.send_raw("HF-AID", json.dumps([4, odd_id, "GenericError", "", {}]))
        await still_answers(csms, "HF-AID")
        assert charger.boot is BootState.ACCEPTED
    assert csms.connects["HF-AID"] == 1


async def test_a_protocol_error_for_an_over_long_id_echoes_the_id_as_sent(csms):
    charger = runtime_charger("HF-LONG", csms.url, evses=1)
    long_id = "x" * 30 + "-" + "y" * 30
    async with connected(charger):
        reply = await reply_to(csms, "HF-LONG", frame(long_id, "ClearCache", {}))
    assert reply.unique_id == long_id
    assert reply.error_code == "ProtocolError"


async def test_a_truncated_call_whose_id_is_readable_gets_a_formation_violation(csms):
    charger = runtime_charger("HF-TRUNC", csms.url, evses=1)
    async with connected(charger):
        reply = await reply_to(csms, "HF-TRUNC", '[2,"cut","Reset",{"type":"So', "cut")
        assert reply.error_code == "FormationViolation"
        await still_answers(csms, "HF-TRUNC")


# -- answers to our own calls --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_transaction_id_beyond_64_bits_is_never_stored_and_checkpoints_go_on(csms):
    await database_sync_to_async(make_charger)(
        "HF-TXID",
        evses=1,
        csms_url=csms.url,
    )
    service = SimulatorService(tick_seconds=0.1, checkpoint_seconds=0.1, only_ids=["HF-TXID"])
    await service.start()
    try:
        charger = service.store.get("HF-TXID")
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot")
        charger.config.update(TransactionMessageRetryInterval="1", TransactionMessageAttempts="3")
        csms.next_transaction_id = BEYOND_INT64
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "T1") == "Accepted"
        await csms.wait_for("HF-TXID", "StartTransaction", message_type=3, direction="out")
        csms.next_transaction_id = 41  # the CSMS recovers: the retry gets a usable id
        await wait_until(lambda: charger.evse(1).transaction_id == 41, message="retry")
        await service.checkpoint()
        rows = await database_sync_to_async(list)(
            Transaction.objects.filter(charger__charge_point_id="HF-TXID").values_list(
                "transaction_id", flat=True
            )
        )
        assert rows == [41]
        # Profiles are still written too (a bad batch would block every later one).
        answer = await csms.call(
            "HF-TXID", call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile())
        )
        assert answer.status == "Accepted"
        await service.checkpoint()
        stored = await database_sync_to_async(ChargingProfileRecord.objects.count)()
        assert stored == 1
    finally:
        await service.stop()


async def test_an_authorize_answer_with_an_expiry_date_out_of_range_fails_the_call(csms, caplog):
    from ocpp.v16.datatypes import IdTagInfo

    csms.authorize["T9"] = IdTagInfo(status="Accepted", expiry_date="9999-12-31T23:59:59-01:00")
    charger = runtime_charger("HF-EXP", csms.url, evses=1)
    async with connected(charger):
        # Treated like a schema-invalid answer: decided offline (unknown tag: Invalid).
        assert await charger.authorize("T9") == "Invalid"
        assert "T9" not in charger.auth_cache
    assert "Authorize failed (FormationViolation" in caplog.text


async def test_a_boot_interval_beyond_a_day_is_capped_at_the_keys_maximum(csms):
    csms.boot_interval = 2**62
    charger = runtime_charger("HF-INT", csms.url, evses=1)
    async with connected(charger):
        assert charger.config["HeartbeatInterval"] == "86400"
