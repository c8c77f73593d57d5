"""No frame or value from a CSMS stops the engine or gets the wrong OCPP 1.6 answer.

Over real loopback WebSockets against the built-in CSMS, whose `send_raw` writes frames as
they are (hostile ones included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from channels.db import database_sync_to_async
from ocpp.v16 import call

from chargers.models import ChargingProfileRecord, OutboxMessage, Transaction
from simulator.core.charge_point import BootState, CallFailed, Charger
from simulator.csms import CentralSystem, CSMSConnection
from simulator.ocpp16.wire import SchemaViolation, validate_response
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.cast import make_charger
from tests.engine import (
    COMPACT,
    boot_reports_answered,
    connected,
    loaded,
    runtime_charger,
    wait_until,
)

BEYOND_INT64 = 2**63


def frame(unique_id: object, action: str, payload: object) -> str:
    # json, not orjson: it writes integers of any size, as a hostile CSMS may.
    return json.dumps([2, unique_id, action, payload], ensure_ascii=False)


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


@contextlib.asynccontextmanager
async def booted_service(
    csms: CentralSystem, cp_id: str
) -> AsyncIterator[tuple[Simulator, Charger]]:
    """A worker with one stored charger of one EVSE (checkpoints every 0.1 s), once the
    charger is booted: (the worker, its runtime charger)."""
    await database_sync_to_async(make_charger)(cp_id, evses=1, csms_url=csms.url)
    service = Simulator(RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, only_ids=[cp_id]))
    await service.start()
    try:
        charger = loaded(service, cp_id)
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot")
        yield service, charger
    finally:
        await service.stop()


# -- values the schema allows but we cannot hold ---------------------------------------------


@pytest.mark.parametrize("profile_id", [BEYOND_INT64, -BEYOND_INT64 - 1, 2**64])
async def test_it_answers_property_constraint_violation_for_a_huge_profile_id(csms, profile_id):
    charger = runtime_charger("HF-PID", csms.url, evses=1)
    async with connected(charger):
        payload = {"connectorId": 0, "csChargingProfiles": profile(chargingProfileId=profile_id)}
        reply = await reply_to(csms, "HF-PID", frame("pid", "SetChargingProfile", payload))
        assert reply.error_code == "PropertyConstraintViolation"
        assert len(charger.profiles) == 0
        await still_answers(csms, "HF-PID")


AVAILABILITY = '[2,"big","ChangeAvailability",{"connectorId":VALUE,"type":"Operative"}]'
LIMIT = json.dumps(
    [2, "big", "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile()}]
).replace("5000", "VALUE")


@pytest.mark.parametrize(
    ("template", "value"),
    [
        (AVAILABILITY, "1" + "0" * 400),  # an integer beyond a double's range
        (AVAILABILITY, "-1" + "0" * 400),
        (LIMIT, "1e400"),
        ('[2,"big","DataTransfer",{"vendorId":"ChargeSim","data":VALUE}]', '"\\ud800"'),
    ],
)
async def test_a_valid_json_value_the_charger_cannot_read_is_a_property_constraint_violation(
    csms, template, value
):
    """QA: 10**30 as a connectorId got PropertyConstraintViolation, but 10**400 (or 1e400,
    or a string with an unpaired surrogate) got FormationViolation "The frame is not JSON":
    the frame is JSON, one of its values is what the charger cannot take."""
    charger = runtime_charger("HF-BIGNUM", csms.url, evses=1)
    async with connected(charger):
        reply = await reply_to(csms, "HF-BIGNUM", template.replace("VALUE", value), "big")
        assert reply.error_code == "PropertyConstraintViolation", reply.raw
        assert "not JSON" not in reply.raw
        assert len(charger.profiles) == 0
        # What the rest of the frame says still counts: an unknown action, a missing field.
        text = f'[2,"unknown","FooBar",{{"a":{value}}}]'
        reply = await reply_to(csms, "HF-BIGNUM", text, "unknown")
        assert reply.error_code == "NotImplemented", reply.raw
        text = f'[2,"missing","DataTransfer",{{"messageId":{value}}}]'
        reply = await reply_to(csms, "HF-BIGNUM", text, "missing")
        assert reply.error_code == "OccurenceConstraintViolation", reply.raw
        # Still not JSON: NaN, Infinity, a cut frame.
        for bad in ("NaN", "-Infinity", "1,"):
            text = f'[2,"bad","ChangeAvailability",{{"connectorId":{bad},"type":"Operative"}}]'
            reply = await reply_to(csms, "HF-BIGNUM", text, "bad")
            assert reply.error_code == "FormationViolation", reply.raw
        await still_answers(csms, "HF-BIGNUM")


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


# QA: these passed as dates (datetime.fromisoformat reads much of ISO 8601), one without an
# offset read as UTC; a leap second, valid RFC 3339, was refused.
NOT_RFC3339 = {
    "week date": ("2030-W01-1T00:00:00Z", "is not an RFC 3339 date-time"),
    "date alone": ("2030-01-01", "is not an RFC 3339 date-time"),
    "basic format": ("20300101T000000Z", "is not an RFC 3339 date-time"),
    "no seconds": ("2030-01-01T00:00Z", "is not an RFC 3339 date-time"),
    "space for T": ("2030-01-01 00:00:00Z", "is not an RFC 3339 date-time"),
    "no offset": ("2030-01-01T00:00:00", "has no UTC offset"),
    "offset of 24 h": ("2030-01-01T00:00:00+24:00", "has an offset out of range"),
    "February 30th": ("2030-02-30T00:00:00Z", "is not a valid date-time"),
}


@pytest.mark.parametrize(("moment", "why"), NOT_RFC3339.values(), ids=NOT_RFC3339.keys())
async def test_a_date_that_is_not_rfc_3339_is_a_property_constraint_violation(csms, moment, why):
    charger = runtime_charger("HF-3339", csms.url, evses=1)
    async with connected(charger):
        reserve = {"connectorId": 1, "expiryDate": moment, "idTag": "D", "reservationId": 1}
        reply = await reply_to(csms, "HF-3339", frame("r1", "ReserveNow", reserve))
        assert reply.error_code == "PropertyConstraintViolation"
        assert reply.payload["errorDescription"].startswith(f"expiryDate: {moment!r} {why}")
        assert not charger.reservations
        schedule = {
            "chargingRateUnit": "A",
            "startSchedule": moment,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}],
        }
        payload = {"connectorId": 0, "csChargingProfiles": profile(chargingSchedule=schedule)}
        reply = await reply_to(csms, "HF-3339", frame("p1", "SetChargingProfile", payload))
        assert reply.error_code == "PropertyConstraintViolation"
        assert len(charger.profiles) == 0
        await still_answers(csms, "HF-3339")


def test_an_answer_with_a_date_that_is_not_rfc_3339_is_refused():
    from simulator.ocpp16.wire import answer_refusal

    no_offset = {"status": "Accepted", "expiryDate": "2030-01-01T00:00:00"}
    refusal = answer_refusal("Authorize", {"idTagInfo": no_offset})
    assert refusal is not None and "has no UTC offset" in refusal
    # A clock's currentTime is the one date-time read as UTC without its offset.
    assert answer_refusal("Heartbeat", {"currentTime": "2030-01-01T00:00:00"}) is None
    refusal = answer_refusal("Heartbeat", {"currentTime": "2030-01-01 00:00:00"})
    assert refusal is not None and "is not an RFC 3339 date-time" in refusal
    assert answer_refusal("Heartbeat", {"currentTime": "2030-06-30T23:59:60Z"}) is None


async def test_a_leap_second_and_any_rfc_3339_spelling_are_taken(csms):
    charger = runtime_charger("HF-LEAP", csms.url, evses=1)
    async with connected(charger):
        reserve = {
            "connectorId": 1,
            "expiryDate": "2099-06-30T23:59:60Z",
            "idTag": "D",
            "reservationId": 1,
        }
        reply = await reply_to(csms, "HF-LEAP", frame("r1", "ReserveNow", reserve))
        assert reply.payload == {"status": "Accepted"}
        (reservation,) = charger.reservations
        assert reservation.expiry == "2099-06-30T23:59:59.999Z"  # the end of the second before
        for n, moment in enumerate(
            ["2030-06-30T23:59:60Z", "2030-01-01t00:00:00.123456789z", "2030-01-01T05:30:00+05:30"]
        ):
            schedule = {
                "chargingRateUnit": "A",
                "startSchedule": moment,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}],
            }
            body = profile(chargingProfileId=10 + n, stackLevel=n, chargingSchedule=schedule)
            payload = {"connectorId": 0, "csChargingProfiles": body}
            reply = await reply_to(csms, "HF-LEAP", frame(f"p{n}", "SetChargingProfile", payload))
            assert reply.payload == {"status": "Accepted"}, moment
        assert len(charger.profiles) == 3


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[3]", "ignoring a CALLRESULT too short to answer any call (1 element; it is [3, "),
        ('[4,"x"]', "ignoring a CALLERROR too short to answer any call (2 elements; it is [4, "),
        ("[5]", "ignoring a frame of unknown message type 5"),
    ],
)
async def test_an_answer_too_short_to_read_is_said_to_be_so(csms, caplog, text, said):
    """QA: [3] was logged as "a frame of unknown message type 3": 3 is CALLRESULT."""
    caplog.set_level(logging.INFO, logger="simulator.ocpp16.client")
    charger = runtime_charger("HF-SHORT", csms.url, evses=1)
    async with connected(charger):
        await csms.send_raw("HF-SHORT", text)
        await still_answers(csms, "HF-SHORT")
    assert f"HF-SHORT: {said}" in caplog.text


@pytest.mark.parametrize("value", ["--5", "²", "٣", "1_000", "9" * 30])
async def test_an_integer_key_takes_only_plain_ascii_digits(csms, value):
    charger = runtime_charger("HF-CFG", csms.url, evses=1)
    async with connected(charger):
        payload = {"key": "HeartbeatInterval", "value": value}
        reply = await reply_to(csms, "HF-CFG", frame("c1", "ChangeConfiguration", payload))
        assert reply.message_type == 3
        assert reply.payload == {"status": "Rejected"}
        assert charger.config["HeartbeatInterval"] == "300"


# -- text that cannot be stored: a NUL character ----------------------------------------------

NUL_CALLS = {
    "idTag": ("RemoteStartTransaction", {"connectorId": 1, "idTag": "T\x001"}),
    "configuration value": (
        "ChangeConfiguration",
        {"key": "HeartbeatInterval", "value": "60\x00"},
    ),
    "local list entry": (
        "SendLocalList",
        {
            "listVersion": 3,
            "updateType": "Full",
            "localAuthorizationList": [
                {"idTag": "T1", "idTagInfo": {"status": "Accepted", "parentIdTag": "P\x00"}}
            ],
        },
    ),
    "key list": ("GetConfiguration", {"key": ["HeartbeatInterval", "\x00"]}),
    "vendor id": ("DataTransfer", {"vendorId": "\x00Vendor"}),
}


@pytest.mark.parametrize("action, payload", NUL_CALLS.values(), ids=NUL_CALLS.keys())
async def test_a_nul_character_in_any_text_of_a_call_is_a_property_constraint_violation(
    csms, action, payload
):
    # PostgreSQL's text and jsonb hold no NUL: an idTag with one would make the charger's
    # StartTransaction unstorable, and a stored value unreadable. Refused where it enters.
    charger = runtime_charger("HF-NUL", csms.url, evses=1)
    async with connected(charger):
        config, version = dict(charger.config), charger.local_list.version
        reply = await reply_to(csms, "HF-NUL", frame("n1", action, payload))
        assert reply.error_code == "PropertyConstraintViolation"
        assert "NUL character" in reply.payload["errorDescription"]
        assert dict(charger.config) == config
        assert charger.local_list.version == version
        assert not charger.pending_authorizations and not charger.transactions
        await still_answers(csms, "HF-NUL")


@pytest.mark.django_db(transaction=True)
async def test_after_a_refused_nul_id_tag_the_next_session_is_stored_on_every_backend(csms):
    async with booted_service(csms, "HF-NULTX") as (service, charger):
        charger.plug_in(1, COMPACT, soc=20)
        start = {"connectorId": 1, "idTag": "T\x001"}
        reply = await reply_to(csms, "HF-NULTX", frame("n2", "RemoteStartTransaction", start))
        assert reply.error_code == "PropertyConstraintViolation"
        answer = await csms.call(
            "HF-NULTX", call.RemoteStartTransaction(id_tag="T1", connector_id=1)
        )
        assert answer.status == "Accepted"
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="started")
        await service.checkpoint()
        rows = await database_sync_to_async(list)(
            Transaction.objects.filter(charger__charge_point_id="HF-NULTX").values_list(
                "id_tag", "transaction_id"
            )
        )
        assert rows == [("T1", charger.evse(1).transaction_id)]
        outbox = await database_sync_to_async(OutboxMessage.objects.count)()
        assert outbox == 0  # the StartTransaction was stored, sent and confirmed


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


@pytest.mark.django_db(transaction=True)
async def test_a_binary_frame_is_ignored_and_the_link_stays(csms, caplog):
    """OCPP-J sends text frames only. A binary one (here a CALL's bytes, and junk) is no
    message: it is logged and ignored. It used to end the connection with a TypeError
    in the message log's secret test, and the charger reported ConnectionLost."""
    async with booted_service(csms, "HF-BIN"):
        websocket = csms.connection("HF-BIN").websocket
        await websocket.send(b'[2,"bin-1","GetLocalListVersion",{}]')
        await websocket.send(bytes.fromhex("00ff00ff"))
        await still_answers(csms, "HF-BIN")
        assert csms.connects["HF-BIN"] == 1
        unanswered = [e for e in csms.log if e.cp_id == "HF-BIN" and e.unique_id == "bin-1"]
        assert unanswered == []
    assert "binary frame of 36 bytes, ignored" in caplog.text
    assert "binary frame of 4 bytes, ignored" in caplog.text
    # No ConnectionLost: the link never dropped (the firmware's startup may be reported).
    assert "ConnectionLost" not in [
        e.payload["type"]
        for e in csms.log
        if e.cp_id == "HF-BIN" and e.direction == "in" and e.action == "SecurityEventNotification"
    ]


async def test_a_protocol_error_for_an_over_long_id_echoes_the_id_as_sent(csms):
    charger = runtime_charger("HF-LONG", csms.url, evses=1)
    long_id = "x" * 30 + "-" + "y" * 30
    async with connected(charger):
        reply = await reply_to(csms, "HF-LONG", frame(long_id, "ClearCache", {}))
    assert reply.unique_id == long_id
    assert reply.error_code == "ProtocolError"


@pytest.mark.parametrize("number", ["123", "-7", "1.5", "123456789012345678901234567890"])
async def test_a_call_whose_id_is_a_number_gets_a_formation_violation_echoing_it(csms, number):
    """OCPP-J 1.6 (4.1.3): the unique id is a string. A number is not, but it can be echoed
    exactly as sent (beyond 64 bits too), so that the CSMS learns why its call failed; the
    call itself is not acted on (here a Reset, which would reboot the charger)."""
    charger = runtime_charger("HF-NUMID", csms.url, evses=1)
    async with connected(charger):
        await csms.send_raw("HF-NUMID", f'[2, {number}, "Reset", {{"type": "Soft"}}]')
        reply = await csms.wait_for(
            "HF-NUMID", predicate=lambda e: e.raw.startswith(f"[4,{number},"), timeout=3
        )
        await still_answers(csms, "HF-NUMID")
        assert charger.boot is BootState.ACCEPTED
    code, description, details = json.loads(reply.raw)[2:]
    assert code == "FormationViolation"
    assert "uniqueId must be a string" in description and details == {}
    answers = [e for e in csms.log if e.cp_id == "HF-NUMID" and e.raw.startswith("[4,")]
    assert answers == [reply]  # one answer, and no CALLRESULT: the Reset was not done
    assert csms.counts["BootNotification"] == 1
    assert csms.connects["HF-NUMID"] == 1


@pytest.mark.parametrize("number", ["123", "-7", "1.5e3", "123456789012345678901234567890"])
async def test_a_truncated_call_whose_id_is_a_number_gets_a_formation_violation_echoing_it(
    csms, number
):
    """A CALL that does not parse, with a string id, was answered and one with a numeric id
    ignored: the CSMS waited out its timeout. Its id is echoed as sent, as for a CALL that
    parses (test above)."""
    charger = runtime_charger("HF-NUMCUT", csms.url, evses=1)
    async with connected(charger):
        await csms.send_raw("HF-NUMCUT", f'[2, {number}, "Heartbeat", {{')
        reply = await csms.wait_for(
            "HF-NUMCUT", predicate=lambda e: e.raw.startswith(f"[4,{number},"), timeout=3
        )
        await still_answers(csms, "HF-NUMCUT")
    code, _, details = json.loads(reply.raw)[2:]
    assert (code, details) == ("FormationViolation", {})
    assert csms.connects["HF-NUMCUT"] == 1


async def test_a_truncated_call_whose_id_is_readable_gets_a_formation_violation(csms):
    charger = runtime_charger("HF-TRUNC", csms.url, evses=1)
    async with connected(charger):
        reply = await reply_to(csms, "HF-TRUNC", '[2,"cut","Reset",{"type":"So', "cut")
        assert reply.error_code == "FormationViolation"
        # A byte order mark before the JSON (RFC 8259 forbids one): answered, not ignored.
        bom = '\ufeff[2,"bom-1","GetLocalListVersion",{}]'
        reply = await reply_to(csms, "HF-TRUNC", bom, "bom-1")
        assert reply.error_code == "FormationViolation"
        await still_answers(csms, "HF-TRUNC")


# -- answers to our own calls --------------------------------------------------------------


async def test_a_csms_text_in_a_log_line_forges_no_line_nor_escape(csms, caplog):
    """QA: a CALLERROR's description and an answer's property names are logged as the CSMS
    wrote them: a line break and a forged line after it, a carriage return over the line,
    terminal escapes reached the worker's log as they were. The console's lines escape them
    (a traceback keeps its lines)."""
    caplog.set_level(logging.INFO)
    charger = runtime_charger("HF-LOGS", csms.url, evses=1)
    async with connected(charger):
        await boot_reports_answered(charger)
        csms.respond = False
        for message, answer in (
            (
                "Heartbeat",
                lambda u: [4, u, "GenericError", "one\n2026-12-07 ERROR forged\x1b[2J\r", {}],
            ),
            ("StatusNotification", lambda u: [3, u, {"odd\nname\x1b[31m": 1}]),
        ):
            mark = len(csms.log)
            await csms.call(
                "HF-LOGS", call.TriggerMessage(requested_message=message, connector_id=1)
            )
            sent = await csms.wait_for("HF-LOGS", message, after=mark, direction="in", timeout=5)
            await csms.send_raw("HF-LOGS", json.dumps(answer(sent.unique_id)))
        csms.respond = True
        await wait_until(
            lambda: "odd" in caplog.text and "forged" in caplog.text, message="both logged"
        )
    console = next(h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler)
    lines = [
        console.format(r)
        for r in caplog.records
        if "forged" in r.getMessage() or "odd" in r.getMessage()
    ]
    assert len(lines) == 2, lines
    for line in lines:
        assert not any(c in line for c in "\n\r\x1b"), line
    assert "GenericError: one\\n2026-12-07 ERROR forged\\x1b[2J\\r" in lines[0], lines[0]
    assert "odd\\nname\\x1b[31m" in lines[1], lines[1]


@pytest.mark.django_db(transaction=True)
async def test_a_transaction_id_beyond_64_bits_is_never_stored_and_checkpoints_go_on(csms):
    async with booted_service(csms, "HF-TXID") as (service, charger):
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


async def test_an_answer_with_vendor_fields_is_taken_once_not_sent_again(csms, caplog):
    """A StartTransaction answer with properties the schema does not name (a CSMS's vendor
    fields, at the top and inside idTagInfo) is read for the fields it knows. It used to
    fail the call: the charger sent the StartTransaction again and the CSMS opened a
    second transaction for one session."""
    charger = runtime_charger(
        "HF-VEND", csms.url, evses=1, config={"TransactionMessageRetryInterval": "1"}
    )
    async with connected(charger):
        conn = csms.connection("HF-VEND")
        plain = conn._send

        async def with_vendor_fields(message: str) -> None:
            if message.startswith("[3,") and '"transactionId"' in message:
                message = message.replace(
                    '{"transactionId"', '{"vendorExt":{"a":1},"transactionId"'
                )
                message = message.replace('"idTagInfo":{', '"idTagInfo":{"tier":"gold",')
            await plain(message)

        conn._send = with_vendor_fields
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "T1") == "Accepted"
        answer = await csms.wait_for("HF-VEND", "StartTransaction", message_type=3, direction="out")
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="the id")
        await asyncio.sleep(1.5)  # past the retry interval: nothing is sent again
        starts = [
            e
            for e in csms.log
            if e.cp_id == "HF-VEND" and e.action == "StartTransaction" and e.message_type == 2
        ]
        assert len(starts) == 1
        assert charger.evse(1).transaction_id == answer.payload["transactionId"]
        assert len(csms.transactions) == 1
        # A second session's answer is taken the same way, and the warning is not repeated.
        charger.stop_transaction(1)
        charger.unplug(1)
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "T2") == "Accepted"
        await wait_until(lambda: len(csms.transactions) == 2, message="the second session")
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="its id")
    warnings = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "StartTransactionResponse" in warnings[0] and "vendorExt" in warnings[0]


async def test_an_answer_with_null_for_what_it_may_leave_out_is_taken(csms, caplog):
    """Authorize and StartTransaction answers with "expiryDate": null and "parentIdTag":
    null in idTagInfo, as the JSON serialisers of many CSMSs write the properties they did
    not set, read as if those were absent. They used to fail the call: the Authorize as
    if the CSMS were away (the driver refused), the StartTransaction sent again (a second
    transaction at the CSMS). A null where a value is required still fails."""
    charger = runtime_charger("HF-NULL", csms.url, evses=1)
    async with connected(charger):
        conn = csms.connection("HF-NULL")
        plain = conn._send

        async def with_nulls(message: str) -> None:
            if message.startswith("[3,"):
                message = message.replace(
                    '"idTagInfo":{', '"idTagInfo":{"expiryDate":null,"parentIdTag":null,'
                )
            await plain(message)

        conn._send = with_nulls
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "T1") == "Accepted"
        answer = await csms.wait_for("HF-NULL", "StartTransaction", message_type=3, direction="out")
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="the id")
        starts = [
            e
            for e in csms.log
            if e.cp_id == "HF-NULL" and e.action == "StartTransaction" and e.message_type == 2
        ]
        assert len(starts) == 1
        assert charger.evse(1).transaction_id == answer.payload["transactionId"]
    notes = [r.getMessage() for r in caplog.records if "read as absent" in r.getMessage()]
    assert any("AuthorizeResponse: idTagInfo.expiryDate: null" in n for n in notes), notes
    # Required, a null is no value: refused as ever.
    with pytest.raises(SchemaViolation, match="transactionId"):
        validate_response(
            "StartTransaction", {"transactionId": None, "idTagInfo": {"status": "Accepted"}}
        )


class FloatInterval(CSMSConnection):
    """Writes its BootNotification answer's interval as a float (300.0), as the JSON
    serialisers of C# and Python CSMSs write an integral number."""

    async def _send(self, message: str) -> None:
        if message.startswith("[3,") and '"currentTime"' in message:
            message = re.sub(r'"interval":(\d+)', r'"interval":\1.0', message)
        await super()._send(message)


async def test_a_boot_answer_with_an_integral_float_interval_registers(csms, caplog):
    """An "interval" of 300.0 failed the draft-04 integer check: the charger never registered
    (QA20). An integral float where the schema says integer is read as that integer."""
    csms.connection_class = FloatInterval
    charger = runtime_charger("HF-F300", csms.url, evses=1)
    async with connected(charger):
        boot = await csms.wait_for("HF-F300", "BootNotification", message_type=3, direction="out")
        assert '"interval":300.0' in boot.raw
        assert charger.config["HeartbeatInterval"] == "300"  # not "300.0"
    assert "interval: integral float, read as an integer" in caplog.text
    # One with a fraction is no integer: the answer fails as ever.
    with pytest.raises(SchemaViolation, match="interval: 300.5 is not of type 'integer'"):
        validate_response(
            "BootNotification",
            {"status": "Accepted", "currentTime": "2030-01-01T00:00:00Z", "interval": 300.5},
        )


async def test_a_call_with_an_integral_float_for_an_integer_is_read_as_that_integer(csms):
    """`"connectorId": 1.0` from a CSMS's serialiser got TypeConstraintViolation (QA20):
    it is read as 1, down to the handler; 1.5 is still a TypeConstraintViolation."""
    charger = runtime_charger("HF-F1", csms.url, evses=2)
    async with connected(charger):
        await boot_reports_answered(charger)
        text = '[2,"f1","ChangeAvailability",{"connectorId":1.0,"type":"Inoperative"}]'
        reply = await reply_to(csms, "HF-F1", text)
        assert reply.payload == {"status": "Accepted"}
        assert charger.evse(1).status == "Unavailable"
        assert charger.evse(2).status == "Available"
        payload = {"connectorId": 0.0, "csChargingProfiles": profile(chargingProfileId=7.0)}
        reply = await reply_to(csms, "HF-F1", frame("f2", "SetChargingProfile", payload))
        assert reply.payload == {"status": "Accepted"}
        ((connector_id, stored),) = charger.profiles.installed()
        assert (connector_id, stored.id) == (0, 7) and type(stored.id) is int
        text = '[2,"f3","ChangeAvailability",{"connectorId":1.5,"type":"Operative"}]'
        reply = await reply_to(csms, "HF-F1", text)
        assert reply.error_code == "TypeConstraintViolation"
        assert charger.evse(1).status == "Unavailable"
        await still_answers(csms, "HF-F1")


@pytest.mark.django_db(transaction=True)
async def test_ids_past_32_bits_are_kept_through_a_checkpoint(csms):
    # The ids are 64-bit on every backend: PostgreSQL's 32-bit integer would refuse these.
    async with booted_service(csms, "HF-WIDE") as (service, charger):
        csms.next_transaction_id = 2**40
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "T1") == "Accepted"
        await wait_until(lambda: charger.evse(1).transaction_id == 2**40, message="tx id")
        answer = await csms.call(
            "HF-WIDE",
            call.SetChargingProfile(
                connector_id=0, cs_charging_profiles=profile(chargingProfileId=2**62)
            ),
        )
        assert answer.status == "Accepted"
        await service.checkpoint()
        stored = await database_sync_to_async(
            lambda: (
                list(Transaction.objects.values_list("transaction_id", flat=True)),
                list(ChargingProfileRecord.objects.values_list("profile_id", flat=True)),
            )
        )()
        assert stored == ([2**40], [2**62])


@pytest.mark.parametrize(
    "info, why",
    [
        ({"expiry_date": "9999-12-31T23:59:59-01:00"}, "years 1-9999"),
        ({"parent_id_tag": "P\x00"}, "NUL character"),
    ],
    ids=["expiry date out of range", "NUL in the parent idTag"],
)
async def test_an_authorize_answer_the_charger_cannot_hold_fails_the_call(csms, caplog, info, why):
    from ocpp.v16.datatypes import IdTagInfo

    csms.authorize["T9"] = IdTagInfo(status="Accepted", **info)
    charger = runtime_charger("HF-EXP", csms.url, evses=1)
    async with connected(charger):
        # Treated like a schema-invalid answer: decided offline (unknown tag: Invalid).
        assert await charger.authorize("T9") == "Invalid"
        assert "T9" not in charger.auth_cache
    assert "Authorize failed (FormationViolation" in caplog.text
    assert why in caplog.text


@pytest.mark.parametrize(
    "spoil",
    [
        ('"status":"Accepted"', '"status":"Accepted","parentIdTag":"\\ud800"'),
        ('{"idTagInfo"', '{"vendorExt":1e400,"idTagInfo"'),
        ('{"idTagInfo"', '{"vendorExt":1' + "0" * 400 + ',"idTagInfo"'),
    ],
    ids=["unpaired surrogate", "1e400", "400 digits"],
)
async def test_an_answer_orjson_cannot_read_fails_its_call_at_once(csms, caplog, spoil):
    """QA: valid JSON that orjson refuses (a number beyond a double, an unpaired
    surrogate) as the answer to the charger's own call was dropped as not JSON: the call
    waited out its timeout for an answer that had come. It now fails at once, as a
    schema-invalid answer does, and the message log names the call it answers."""
    charger = runtime_charger("HF-UNREAD", csms.url, evses=1, config={"MessageTimeout": "60"})
    async with connected(charger):
        conn = csms.connection("HF-UNREAD")
        plain = conn._send

        async def spoiled(message: str) -> None:
            if message.startswith("[3,") and '"idTagInfo"' in message:
                message = message.replace(spoil[0], spoil[1], 1)
            await plain(message)

        conn._send = spoiled
        assert await charger.authorize("T9") == "Invalid"  # decided offline: unknown tag
        assert "T9" not in charger.auth_cache
        assert charger.online
    assert "Authorize failed (FormationViolation" in caplog.text
    assert "cannot hold" in caplog.text
    assert "not JSON" not in caplog.text


async def test_an_answer_whose_message_type_is_not_an_integer_is_ignored(csms, caplog):
    """OCPP-J's MessageTypeId is an integer: a CALL of [2.0, ...] was ignored, while
    [3.0, id, {...}] was taken as the CALLRESULT of the call it named (QA11)."""
    charger = runtime_charger("HF-FLOAT", csms.url, evses=1, config={"MessageTimeout": "1"})
    async with connected(charger):
        await boot_reports_answered(charger)
        conn = csms.connection("HF-FLOAT")
        plain = conn._send

        async def spoiled(message: str) -> None:
            await plain("[3.0," + message[3:] if message.startswith("[3,") else message)

        conn._send = spoiled
        with (
            caplog.at_level(logging.INFO, logger="simulator.ocpp16.client"),
            pytest.raises(CallFailed, match="Timeout"),
        ):
            await charger.data_transfer("Vendor")
        conn._send = plain
        await still_answers(csms, "HF-FLOAT")
    assert "not an OCPP-J message" in caplog.text


async def test_a_boot_interval_beyond_a_day_is_capped_at_the_keys_maximum(csms):
    csms.boot_interval = 2**62
    charger = runtime_charger("HF-INT", csms.url, evses=1)
    async with connected(charger):
        assert charger.config["HeartbeatInterval"] == "86400"


@pytest.mark.parametrize(
    "overrides",
    [
        # Offsets past what a timedelta can add: each meter tick would raise.
        {
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "duration": 10**15,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 5000}],
            }
        },
        {
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 5000},
                    {"startPeriod": 10**15, "limit": 0},
                ],
            }
        },
        # A start so near the calendar's end that start + duration is no datetime.
        {
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "startSchedule": "9999-12-31T00:00:00Z",
                "duration": 172800,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 5000}],
            },
        },
    ],
    ids=["duration", "start-period", "start-schedule"],
)
async def test_a_schedule_that_cannot_be_computed_is_rejected_and_metering_goes_on(csms, overrides):
    charger = runtime_charger("HF-HORIZON", csms.url, evses=1)
    async with connected(charger):
        payload = {"connectorId": 0, "csChargingProfiles": profile(**overrides)}
        reply = await reply_to(csms, "HF-HORIZON", frame("h1", "SetChargingProfile", payload))
        assert reply.payload == {"status": "Rejected"}
        assert len(charger.profiles) == 0
        answer = await csms.call(
            "HF-HORIZON", call.GetCompositeSchedule(connector_id=0, duration=86400)
        )
        assert answer.status == "Accepted"


async def test_a_current_time_without_offset_is_read_as_utc_with_one_warning(csms, caplog):
    """A Boot answer's currentTime of "2030-01-01T00:00:00" (no offset) failed the boot,
    so the charger never registered (QA20). It is read as UTC, as the clock is set, with
    one warning per charger, not one per Heartbeat."""
    csms.current_time = "2030-01-01T00:00:00"
    charger = runtime_charger("HF-LOCAL", csms.url, evses=1)
    async with connected(charger):
        await boot_reports_answered(charger)
        read = charger.now() - datetime(2030, 1, 1, tzinfo=UTC)
        assert abs(read.total_seconds()) < 3600  # UTC, not any other zone
        for n in range(2):
            answer = await csms.call("HF-LOCAL", call.TriggerMessage(requested_message="Heartbeat"))
            assert answer.status == "Accepted"
            await wait_until(
                lambda n=n: csms.counts["Heartbeat"] == n + 1, message=f"heartbeat {n + 1}"
            )
            await csms.wait_for("HF-LOCAL", "Heartbeat", message_type=3, direction="out")
        assert charger.boot is BootState.ACCEPTED
    warnings = [r for r in caplog.records if "currentTime has no UTC offset" in r.getMessage()]
    assert len(warnings) == 1, warnings
    refused = [r for r in caplog.records if "has no UTC offset:" in r.getMessage()]
    assert not refused, refused  # no answer failed for it


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:01Z", "9999-12-31T23:59:59Z"])
async def test_a_clock_near_the_calendars_ends_is_ignored(csms, moment):
    csms.current_time = moment
    charger = runtime_charger("HF-CLOCK", csms.url, evses=1)
    async with connected(charger):
        assert abs((charger.now() - datetime.now(UTC)).total_seconds()) < 3600
        # Date sums over a week still work (they would overflow at either end).
        answer = await csms.call(
            "HF-CLOCK", call.GetCompositeSchedule(connector_id=0, duration=7 * 86400)
        )
        assert answer.status == "Accepted"


# -- a seeded fuzz run -------------------------------------------------------------------------

OCPP_16_ERROR_CODES = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)

# Valid payloads of every action the charger handles; the fuzzer spoils them. Reset is
# never sent valid: it reboots the charger, which would close the link on purpose.
TEMPLATES: dict[str, dict] = {
    "RemoteStartTransaction": {
        "idTag": "T1",
        "connectorId": 2,
        "chargingProfile": profile(chargingProfilePurpose="TxProfile"),
    },
    "RemoteStopTransaction": {"transactionId": 1},
    "GetConfiguration": {"key": ["HeartbeatInterval", "Nope"]},
    "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "300"},
    "SetChargingProfile": {
        "connectorId": 0,
        "csChargingProfiles": profile(
            validFrom="2020-01-01T00:00:00Z",
            validTo="9999-12-31T23:59:59Z",
            recurrencyKind="Daily",
        ),
    },
    "ClearChargingProfile": {
        "id": 7,
        "connectorId": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "stackLevel": 1,
    },
    "GetCompositeSchedule": {"connectorId": 0, "duration": 3600, "chargingRateUnit": "W"},
    "Reset": {"type": "Sometimes"},
    "TriggerMessage": {"requestedMessage": "Heartbeat", "connectorId": 1},
    "ChangeAvailability": {"connectorId": 2, "type": "Operative"},
    "UnlockConnector": {"connectorId": 2},
    "ClearCache": {},
    "DataTransfer": {"vendorId": "ChargeSim", "messageId": "echo", "data": "hello"},
    # Issue 17. Files go to a loopback port nobody listens on: the transfers fail at once.
    "ReserveNow": {
        "connectorId": 2,
        "expiryDate": "2099-01-01T00:00:00Z",
        "idTag": "R1",
        "reservationId": 3,
        "parentIdTag": "P1",
    },
    "CancelReservation": {"reservationId": 3},
    "SendLocalList": {
        "listVersion": 2,
        "updateType": "Differential",
        "localAuthorizationList": [
            {
                "idTag": "L1",
                "idTagInfo": {"status": "Accepted", "expiryDate": "2099-01-01T00:00:00Z"},
            },
            {"idTag": "L2"},
        ],
    },
    "GetLocalListVersion": {},
    "UpdateFirmware": {
        "location": "http://127.0.0.1:9/chargesim-2.0.0.bin",
        "retrieveDate": "2020-01-01T00:00:00Z",
        "retries": 0,
        "retryInterval": 0,
    },
    "GetDiagnostics": {
        "location": "ftp://u:p@127.0.0.1:9/diag/",
        "retries": 0,
        "startTime": "2020-01-01T00:00:00Z",
    },
    # The security whitepaper (issue 17).
    "GetLog": {
        "logType": "SecurityLog",
        "requestId": 1,
        "retries": 0,
        "log": {
            "remoteLocation": "http://127.0.0.1:9/logs/",
            "oldestTimestamp": "2020-01-01T00:00:00Z",
        },
    },
    "ExtendedTriggerMessage": {"requestedMessage": "Heartbeat", "connectorId": 1},
}

HOSTILE_VALUES: list[object] = [
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    -(10**30),
    2**31,
    -1,
    0,
    1.5,
    -0.0,
    1e308,
    1e-300,
    True,
    None,
    "",
    "x" * 600,
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00Z",
    "2024-02-30T00:00:00Z",
    "yesterday",
    "--5",
    "²",
    "٣",
    "9" * 40,
    "Hard",
    "ChargePointMaxProfile",
    "Relative",
    "Recurring",
    "BootNotification",
    "MeterValues",
    "Inoperative",
    [],
    [1, "a", None],
    {},
    {"a": {"b": [1, 2]}},
]


class HostileFrames:
    """A seeded stream of hostile frames, each with the unique id its answer must carry
    (None: the frame is not a readable CALL and must not be answered)."""

    def __init__(self, seed: int) -> None:
        import random

        self.random = random.Random(seed)
        self.count = 0
        self.big_left = 8  # frames of hundreds of KiB: a few are enough

    def _id(self, prefix: str = "f") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def _value(self, like: object = None) -> object:
        """A hostile value; half the time of the same JSON type as `like`, so that it
        passes the schema and reaches the range checks and the handlers."""
        r = self.random
        if r.random() < 0.5 and like is not None and not isinstance(like, bool):
            same = [
                v
                for v in HOSTILE_VALUES
                if type(v) is type(like) or (isinstance(like, float) and type(v) is int)
            ]
            if same:
                return r.choice(same)
        if r.random() < 0.1:
            return r.choice([r.randint(-(2**70), 2**70), r.uniform(-1e20, 1e20), r.random()])
        return r.choice(HOSTILE_VALUES)

    def _spoil(self, payload: object, depth: int = 0) -> object:
        """Replace, add or drop one value somewhere inside a copy of `payload`."""
        r = self.random
        if isinstance(payload, dict) and payload and depth < 4 and r.random() < 0.8:
            copy = dict(payload)
            key = r.choice(list(copy))
            action = r.random()
            if action < 0.1:
                del copy[key]
            elif action < 0.2:
                copy[r.choice(["extra", "validFrom", "transactionId", key + "X"])] = self._value()
            else:
                copy[key] = self._spoil(copy[key], depth + 1)
            return copy
        if isinstance(payload, list) and payload and depth < 4 and r.random() < 0.8:
            items = list(payload)
            index = r.randrange(len(items))
            items[index] = self._spoil(items[index], depth + 1)
            if r.random() < 0.2:
                items.extend(items * r.randint(1, 30))  # too many periods, keys, ...
            return items
        return self._value(like=payload)

    def call(self) -> tuple[str, str | None]:
        """A valid-shaped CALL of a handled action with hostile values."""
        action = self.random.choice(sorted(TEMPLATES))
        payload: object = TEMPLATES[action]
        for _ in range(self.random.randint(1, 3)):
            payload = self._spoil(payload)
        if (
            action == "Reset"
            and isinstance(payload, dict)
            and payload.get("type")
            in (
                "Hard",
                "Soft",
            )
        ):
            payload = {"type": "Firm"}
        unique_id = self._id()
        return frame(unique_id, action, payload), unique_id

    def next(self) -> tuple[str, str | None]:
        r = self.random
        kind = r.choices(
            [
                "call",
                "malformed",
                "not_a_message",
                "message_type",
                "deep",
                "unknown_action",
                "odd_call_id",
                "answer",
                "big",
            ],
            weights=[40, 10, 5, 8, 6, 6, 8, 15, 2],
        )[0]
        if kind == "big" and self.big_left <= 0:
            kind = "call"
        if kind == "call":
            return self.call()
        if kind == "malformed":
            text, unique_id = self.call()
            prefix = len(f'[2, "{unique_id}"')
            cut = r.randrange(1, len(text))
            garbage = r.choice(["", "}", "]]", ",", " nul", "NaN", "\x00", '"'])
            if cut < prefix and garbage == '"':
                garbage = ""  # a quote inside the id would make another, shorter id
            return text[:cut] + garbage, unique_id if cut >= prefix else None
        if kind == "not_a_message":
            return r.choice(["{}", '"x"', "5", "null", "[]", "[[]]", "true", "", " "]), None
        if kind == "message_type":
            type_id: object = r.choice([0, 1, 5, 99, -1, -2, "2", 2.0, 2e0, True, None, [2], {}])
            return json.dumps([type_id, self._id("n"), "ClearCache", {}]), None
        if kind == "deep":
            depth = r.choice([50, 500, 900, 1000, 1100, 3000, 20_000])
            unique_id = self._id()
            inner = r.choice(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth])
            field = r.choice(["type", "key", "data", "csChargingProfiles"])
            action = r.choice(["Reset", "GetConfiguration", "DataTransfer", "SetChargingProfile"])
            return f'[2,"{unique_id}","{action}",{{"{field}":{inner}}}]', unique_id
        if kind == "unknown_action":
            unique_id = self._id()
            action = r.choice(["", "Foo", "reset", "Reset ", "BootNotification", "x" * 5000])
            return frame(unique_id, action, {}), unique_id
        if kind == "odd_call_id":
            choice = r.random()
            if choice < 0.5:
                # No id an answer could carry (a number is answered, echoed: tested apart).
                odd: object = r.choice([None, ["x"], {"a": 1}, True])
                return json.dumps([2, odd, "ClearCache", {}]), None
            unique_id = self._id("L") + "-" + "q" * r.randint(30, 120)  # over 36: ProtocolError
            if choice < 0.6:
                unique_id = self._id('q"ü\\')  # escapes and non-ASCII in a short id
            return frame(unique_id, "ClearCache", {}), unique_id
        if kind == "answer":
            odd_id = r.choice([["x"], {"a": 1}, 5, None, self._id("n"), "", 2**64])
            payload = r.choice([{}, [], None, {"status": "Accepted"}, "x", self._value()])
            if r.random() < 0.5:
                return json.dumps([3, odd_id, payload]), None
            code = r.choice(["GenericError", "", None, 5, "NotACode"])
            return json.dumps([4, odd_id, code, payload, payload])[: r.choice([None, 12])], None
        self.big_left -= 1  # huge strings below the 1 MiB size cap
        size = r.choice([100_000, 400_000, 900_000])  # bytes of UTF-8
        unique_id = self._id()
        big: dict[str, object] = r.choice(
            [
                {"vendorId": "ChargeSim", "messageId": "echo", "data": "é" * (size // 2)},
                {"key": ["k" * size]},
                {"vendorId": "v" * size},
            ]
        )
        action = "DataTransfer" if "vendorId" in big else "GetConfiguration"
        return frame(unique_id, action, big), unique_id


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_thousands_of_hostile_frames_get_one_right_answer_each_and_the_charger_runs_on(
    csms, caplog
):
    caplog.set_level("WARNING")
    await database_sync_to_async(make_charger)("HF-FUZZ", evses=2, csms_url=csms.url)
    service = Simulator(RunOptions(tick_seconds=0.1, checkpoint_seconds=0.2, only_ids=["HF-FUZZ"]))
    await service.start()
    try:
        charger = loaded(service, "HF-FUZZ")
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot")
        frames = HostileFrames(seed=20260112)
        expected: dict[str, str] = {}  # unique id -> the frame that must be answered
        answers: dict[object, list] = {}  # unique id -> the charger's frames with that id
        seen = 0

        def collect() -> None:
            nonlocal seen
            for entry in csms.log[seen:]:
                if entry.cp_id == "HF-FUZZ" and entry.direction == "in":
                    answers.setdefault(entry.unique_id, []).append(entry)
            seen = len(csms.log)

        def answered(batch: list[str]) -> bool:
            collect()
            return all(unique_id in answers for unique_id in batch)

        total = 0
        while total < 4_000:
            batch: list[str] = []
            for _ in range(100):
                text, unique_id = frames.next()
                await csms.send_raw("HF-FUZZ", text)
                total += 1
                if unique_id is not None:
                    assert unique_id not in expected
                    expected[unique_id] = text
                    batch.append(unique_id)
            try:
                await wait_until(
                    lambda b=batch: answered(b), timeout=20, message="answers to the batch"
                )
            except AssertionError:
                missing = [expected[u][:300] for u in batch if u not in answers]
                raise AssertionError(
                    f"{len(missing)} unanswered, {charger.link}, {dict(csms.connects)}: "
                    f"{missing[:5]}"
                ) from None
        await asyncio.sleep(0.3)  # a second answer would be late, not missing
        collect()

        assert len(expected) > 2_000
        for unique_id, text in expected.items():
            replies = answers.get(unique_id, [])
            assert len(replies) == 1, f"{[r.raw[:200] for r in replies]} answering {text[:300]}"
            reply = replies[0]
            assert reply.message_type in (3, 4), f"{reply.raw[:300]} answering {text[:300]}"
            if reply.message_type == 4:
                assert reply.error_code in OCPP_16_ERROR_CODES, reply.raw[:300]
                assert reply.error_code != "InternalError", f"{reply.raw} for {text[:300]}"
        mine = {k for k in answers if isinstance(k, str) and k[:1] in ("f", "L", "q", "n")}
        assert not {k for k in mine if k.startswith("n")}, "a frame that is no CALL was answered"
        assert csms.connects["HF-FUZZ"] == 1  # never dropped
        assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]

        # Undo what the valid parts of the stream may have changed, then run a transaction.
        for key, value in (
            ("MeterValueSampleInterval", "1"),
            ("MeterValuesSampledData", "Energy.Active.Import.Register"),
            ("TransactionMessageAttempts", "3"),
            ("MessageTimeout", "30"),
        ):
            answer = await csms.call("HF-FUZZ", call.ChangeConfiguration(key=key, value=value))
            assert answer.status == "Accepted"
        await csms.call("HF-FUZZ", call.ChangeAvailability(connector_id=0, type="Operative"))
        await csms.call("HF-FUZZ", call.ClearChargingProfile())
        for reservation in list(charger.reservations):
            await csms.cancel_reservation("HF-FUZZ", reservation.reservation_id)
        for connector in (1, 2):
            if connector in charger.transactions:
                charger.stop_transaction(connector)
        mark = len(csms.log)
        if charger.evse(1).battery is not None:
            charger.unplug(1)
        charger.plug_in(1, COMPACT, soc=20)
        if 1 not in charger.transactions:
            assert await charger.present_id_tag(1, "T1") == "Accepted"
        started = await csms.wait_for(
            "HF-FUZZ", "StartTransaction", after=mark, message_type=3, direction="out"
        )
        tx_id = started.payload["transactionId"]
        await csms.wait_for(
            "HF-FUZZ",
            "MeterValues",
            after=mark,
            predicate=lambda e: e.payload.get("transactionId") == tx_id,
        )
        charger.stop_transaction(1)
        await csms.wait_for(
            "HF-FUZZ", "StopTransaction", after=mark, message_type=3, direction="out"
        )
        await wait_until(lambda: not charger.queue, message="the outbox to drain")
        await service.checkpoint()
        row = await database_sync_to_async(Transaction.objects.get)(transaction_id=tx_id)
        assert row.meter_stop is not None
        assert row.state == Transaction.State.STOPPED
    finally:
        await service.stop()
