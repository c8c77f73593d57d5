"""The built-in CSMS, driven by a tiny raw OCPP-J client (not the project's charge point)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.exceptions import NotSupportedError
from ocpp.v16 import call, call_result
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from simulator.csms import (
    CALL,
    CALLERROR,
    CALLRESULT,
    MALFORMED,
    CentralSystem,
    ConnectorStatus,
    WaitTimeout,
)

ROOT = Path(__file__).resolve().parent.parent
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class RawCharger:
    """Just enough of a charge point to speak OCPP-J frames by hand."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._n = 0

    async def send(self, frame: Any) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = 5.0) -> list[Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        """Send a CALL and return the answer frame (CALLRESULT or CALLERROR)."""
        self._n += 1
        unique_id = f"m-{self._n}"
        await self.send([CALL, unique_id, action, payload])
        reply = await self.recv()
        assert reply[1] == unique_id, reply
        return reply

    async def boot(self) -> list[Any]:
        return await self.call(
            "BootNotification", {"chargePointVendor": "Test", "chargePointModel": "Raw"}
        )


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@contextlib.asynccontextmanager
async def charger(
    csms: CentralSystem,
    cp_id: str,
    *,
    offer: tuple[str, ...] = ("ocpp1.6",),
    headers: dict[str, str] | None = None,
) -> AsyncIterator[RawCharger]:
    async with connect(
        f"{csms.url}/{cp_id}",
        # None sends no Sec-WebSocket-Protocol header at all ([] would send an empty one)
        subprotocols=[Subprotocol(name) for name in offer] or None,
        additional_headers=headers,
        compression=None,
        open_timeout=5,
        close_timeout=1,
    ) as ws:
        yield RawCharger(ws)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- boot ------------------------------------------------------------------------------------


async def test_url_uses_the_free_port_it_listens_on() -> None:
    server = CentralSystem()
    port = await server.start(host="127.0.0.1", port=0)
    try:
        assert port > 0
        assert server.url == f"ws://127.0.0.1:{port}"
    finally:
        await server.stop()


async def test_boot_accepted_answers_status_current_time_and_heartbeat_interval(csms) -> None:
    csms.boot_interval = 42
    async with charger(csms, "CP-1") as cp:
        reply = await cp.boot()
    assert reply[0] == CALLRESULT
    assert reply[2]["status"] == "Accepted"
    assert reply[2]["interval"] == 42
    assert ISO_Z.match(reply[2]["currentTime"])
    sent = datetime.fromisoformat(reply[2]["currentTime"].replace("Z", "+00:00"))
    assert abs(sent - datetime.now(UTC)) < timedelta(seconds=5)
    assert csms.registration["CP-1"] == "Accepted"
    assert csms.boot_info["CP-1"] == {"chargePointVendor": "Test", "chargePointModel": "Raw"}


@pytest.mark.parametrize("status", ["Pending", "Rejected"])
async def test_boot_not_accepted_answers_that_status_with_the_retry_interval(
    csms, status: str
) -> None:
    csms.boot_status = status
    csms.boot_interval = 7
    async with charger(csms, "CP-1") as cp:
        reply = await cp.boot()
        assert reply[2]["status"] == status
        assert reply[2]["interval"] == 7
        # options are read per message: the next boot attempt is accepted
        csms.boot_status = "Accepted"
        assert (await cp.boot())[2]["status"] == "Accepted"
    assert csms.counts["BootNotification"] == 2


async def test_heartbeat_answers_current_time(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        reply = await cp.call("Heartbeat", {})
    assert reply[0] == CALLRESULT
    assert ISO_Z.match(reply[2]["currentTime"])


# -- handshake: subprotocol, auth, known ids -------------------------------------------------


async def test_missing_subprotocol_is_refused_with_http_400(csms) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with charger(csms, "CP-1", offer=()):
            pass
    assert refused.value.response.status_code == 400
    assert csms.refusals[-1].cp_id == "CP-1"
    assert "ocpp1.6" in csms.refusals[-1].reason
    assert "CP-1" not in csms.connected


async def test_other_subprotocol_is_refused_with_http_400(csms) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with charger(csms, "CP-1", offer=("ocpp2.0.1",)):
            pass
    assert refused.value.response.status_code == 400
    assert "ocpp2.0.1" in csms.refusals[-1].reason


async def test_ocpp16_is_picked_from_several_offered_subprotocols(csms) -> None:
    async with charger(csms, "CP-1", offer=("ocpp2.0.1", "ocpp1.6")) as cp:
        assert cp.ws.subprotocol == "ocpp1.6"
        assert (await cp.boot())[0] == CALLRESULT


async def test_close_policy_finishes_handshake_without_subprotocol_then_closes_1002(csms) -> None:
    csms.subprotocol_policy = "close"
    async with charger(csms, "CP-1", offer=("ocpp2.0.1",)) as cp:
        assert cp.ws.subprotocol is None
        with pytest.raises(ConnectionClosed) as closed:
            await cp.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002
    assert "CP-1" not in csms.connected


async def test_basic_auth_with_wrong_password_gets_http_401(csms) -> None:
    csms.passwords["CP-1"] = "secret"
    with pytest.raises(InvalidStatus) as refused:
        async with charger(csms, "CP-1", headers=basic("CP-1", "wrong")):
            pass
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"].startswith("Basic ")
    assert csms.refusals[-1].status == 401


async def test_basic_auth_without_credentials_gets_http_401(csms) -> None:
    csms.passwords["CP-1"] = "secret"
    with pytest.raises(InvalidStatus) as refused:
        async with charger(csms, "CP-1"):
            pass
    assert refused.value.response.status_code == 401


async def test_basic_auth_user_must_be_the_charge_point_id(csms) -> None:
    csms.passwords["CP-1"] = "secret"
    with pytest.raises(InvalidStatus) as refused:
        async with charger(csms, "CP-1", headers=basic("CP-2", "secret")):
            pass
    assert refused.value.response.status_code == 401


async def test_basic_auth_with_right_password_connects(csms) -> None:
    csms.passwords["CP-1"] = "secret"
    async with charger(csms, "CP-1", headers=basic("CP-1", "secret")) as cp:
        assert (await cp.boot())[2]["status"] == "Accepted"
        assert "CP-1" in csms.connected


@pytest.fixture
def websockets_debug() -> Any:
    """`runcsms -v 2`'s logging (websockets' own debug), undone after the test."""
    from simulator.csms.run import configure_logging

    names = ("simulator.csms", "simulator.csms.frames", "simulator.csms.websockets")
    kept = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    filters = [(logger, list(logger.filters)) for logger, _ in kept]
    configure_logging(2)
    yield
    for logger, level in kept:
        logger.setLevel(level)
    for logger, before in filters:
        logger.filters[:] = before


async def test_websockets_debug_shows_no_basic_credentials_nor_a_frames_key(
    csms, websockets_debug, caplog
) -> None:
    """QA: `runcsms -v 2` logged each charger's Authorization header (its id and
    AuthorizationKey in base64) and each frame, whose text websockets cuts in the middle:
    a ChangeConfiguration's new key was there without the key's name for the redaction
    to find."""
    caplog.set_level(logging.DEBUG, logger="simulator.csms.websockets")
    csms.passwords["CP-1"] = "old-secret-password"
    new_key = "00112233445566778899aabbccddeeff"
    async with charger(csms, "CP-1", headers=basic("CP-1", "old-secret-password")) as cp:
        assert (await cp.boot())[2]["status"] == "Accepted"
        await csms.send_raw(
            "CP-1",
            json.dumps(
                [CALL, "k-1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": new_key}]
            ),
        )
        assert (await cp.recv())[3]["value"] == new_key
    debug = [r.getMessage() for r in caplog.records if r.name == "simulator.csms.websockets"]
    text = "\n".join(debug)
    assert "< Authorization: ********" in debug, text
    assert "> TEXT [" in text and "< TEXT [" in text, text  # each frame, with its size
    encoded = base64.b64encode(b"CP-1:old-secret-password").decode()
    for secret in (
        encoded,
        encoded[:12],
        "old-secret-password",
        new_key[-12:],
        "ChangeConfiguration",
    ):
        assert secret not in text, text


async def test_require_known_refuses_unknown_ids_with_http_404(csms) -> None:
    csms.require_known = True
    csms.known.add("CP-KNOWN")
    with pytest.raises(InvalidStatus) as refused:
        async with charger(csms, "CP-STRANGER"):
            pass
    assert refused.value.response.status_code == 404
    async with charger(csms, "CP-KNOWN") as cp:
        assert (await cp.boot())[0] == CALLRESULT


async def test_charge_point_id_is_the_percent_decoded_last_path_segment(csms) -> None:
    async with connect(
        f"{csms.url}/ocpp/CP%201",
        subprotocols=[Subprotocol("ocpp1.6")],
        compression=None,
    ) as ws:
        await (await csms.wait_connected("CP 1", timeout=2)).websocket.ping()
        assert ws.subprotocol == "ocpp1.6"


# -- charger-initiated messages --------------------------------------------------------------


async def test_authorize_answers_from_the_table_or_the_default_status(csms) -> None:
    csms.authorize = {"BAD": "Invalid"}
    async with charger(csms, "CP-1") as cp:
        bad = await cp.call("Authorize", {"idTag": "BAD"})
        good = await cp.call("Authorize", {"idTag": "ANY"})
        csms.default_id_tag_status = "Blocked"
        blocked = await cp.call("Authorize", {"idTag": "ANY"})
    assert bad[2] == {"idTagInfo": {"status": "Invalid"}}
    assert good[2] == {"idTagInfo": {"status": "Accepted"}}
    assert blocked[2] == {"idTagInfo": {"status": "Blocked"}}


async def test_start_transaction_allocates_incrementing_ids_and_records_meter_start(csms) -> None:
    csms.authorize = {"BAD": "Invalid"}
    async with charger(csms, "CP-1") as cp:
        first = await cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "T1", "meterStart": 1000, "timestamp": now_iso()},
        )
        second = await cp.call(
            "StartTransaction",
            {"connectorId": 2, "idTag": "BAD", "meterStart": 5, "timestamp": now_iso()},
        )
    assert first[2]["idTagInfo"] == {"status": "Accepted"}
    assert second[2]["idTagInfo"] == {"status": "Invalid"}
    assert second[2]["transactionId"] == first[2]["transactionId"] + 1
    tx = csms.transactions[first[2]["transactionId"]]
    assert (tx.cp_id, tx.connector_id, tx.id_tag, tx.meter_start) == ("CP-1", 1, "T1", 1000)
    assert not tx.stopped
    assert csms.transactions[second[2]["transactionId"]].id_tag_status == "Invalid"


async def test_stop_transaction_records_meter_stop_reason_and_transaction_data(csms) -> None:
    sample = {
        "timestamp": now_iso(),
        "sampledValue": [
            {"value": "1500", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
        ],
    }
    async with charger(csms, "CP-1") as cp:
        started = await cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "T1", "meterStart": 1000, "timestamp": now_iso()},
        )
        tx_id = started[2]["transactionId"]
        meter = await cp.call(
            "MeterValues", {"connectorId": 1, "transactionId": tx_id, "meterValue": [sample]}
        )
        stopped = await cp.call(
            "StopTransaction",
            {
                "transactionId": tx_id,
                "meterStop": 2500,
                "timestamp": now_iso(),
                "idTag": "T1",
                "reason": "EVDisconnected",
                "transactionData": [sample],
            },
        )
    assert meter[:2] == [CALLRESULT, "m-2"] and meter[2] == {}
    assert stopped[2] == {"idTagInfo": {"status": "Accepted"}}
    tx = csms.transactions[tx_id]
    assert tx.stopped and tx.meter_stop == 2500 and tx.energy_wh == 1500
    assert tx.reason == "EVDisconnected"
    assert tx.meter_values == [sample]
    assert tx.transaction_data == [sample]


@pytest.mark.csms(keep_log=False)
async def test_without_its_log_the_csms_keeps_open_and_the_newest_stopped_transactions(
    csms,
) -> None:
    """A demo or `runcsms` runs for days: what it keeps of transactions must follow the
    fleet, not its history (it kept every transaction and each StopTransaction's samples)."""
    csms.STOPPED_KEPT = 3
    sample = {"timestamp": now_iso(), "sampledValue": [{"value": "1500"}]}
    async with charger(csms, "CP-1") as cp:

        async def start(connector: int) -> int:
            answer = await cp.call(
                "StartTransaction",
                {"connectorId": connector, "idTag": "T1", "meterStart": 0, "timestamp": now_iso()},
            )
            return int(answer[2]["transactionId"])

        async def stop(tx_id: int) -> None:
            stop = {"transactionId": tx_id, "meterStop": 10, "timestamp": now_iso()}
            await cp.call("StopTransaction", stop | {"transactionData": [sample]})

        kept_open = await start(2)
        ids = [await start(1) for _ in range(6)]
        for tx_id in ids:
            await stop(tx_id)
        await stop(ids[-1])  # a retried stop is not a second stopped transaction
    assert sorted(csms.transactions) == sorted([kept_open, *ids[-3:]])
    assert not csms.transactions[kept_open].stopped
    assert all(csms.transactions[i].transaction_data is None for i in ids[-3:])


async def test_stop_transaction_for_an_id_never_started_here_is_still_recorded(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        reply = await cp.call(
            "StopTransaction", {"transactionId": -1, "meterStop": 10, "timestamp": now_iso()}
        )
    assert reply[0] == CALLRESULT and reply[2] == {}
    assert csms.transactions[-1].started_here is False
    assert csms.transactions[-1].meter_stop == 10


async def test_status_notification_keeps_last_status_per_connector(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        for connector, status, error in [
            (0, "Available", "NoError"),
            (1, "Preparing", "NoError"),
            (1, "Faulted", "GroundFailure"),
        ]:
            await cp.call(
                "StatusNotification",
                {"connectorId": connector, "status": status, "errorCode": error},
            )
    assert csms.status["CP-1"] == {
        0: ("Available", "NoError"),
        1: ConnectorStatus("Faulted", "GroundFailure"),
    }


async def test_data_transfer_is_unknown_vendor_unless_a_handler_is_set(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        unknown = await cp.call("DataTransfer", {"vendorId": "acme", "data": "x"})
        seen = []

        async def handler(cp_id: str, vendor: str, message_id: str | None, data: str | None):
            seen.append((cp_id, vendor, message_id, data))
            return call_result.DataTransfer(status="Accepted", data="pong")

        csms.data_transfer = handler
        handled = await cp.call("DataTransfer", {"vendorId": "acme", "messageId": "p", "data": "x"})
    assert unknown[2] == {"status": "UnknownVendorId"}
    assert handled[2] == {"status": "Accepted", "data": "pong"}
    assert seen == [("CP-1", "acme", "p", "x")]


async def test_diagnostics_and_firmware_status_notifications_are_answered_and_kept(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        diag = await cp.call("DiagnosticsStatusNotification", {"status": "Uploaded"})
        firmware = await cp.call("FirmwareStatusNotification", {"status": "Installed"})
    assert diag[:1] == [CALLRESULT] and firmware[:1] == [CALLRESULT]
    assert csms.diagnostics_status["CP-1"] == "Uploaded"
    assert csms.firmware_status["CP-1"] == "Installed"


async def test_schema_violations_get_ocpp16_error_codes(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        extra = await cp.call("Heartbeat", {"unexpected": 1})
        wrong_type = await cp.call("Authorize", {"idTag": 5})
        missing = await cp.call("Authorize", {})
    # the library says FormatViolation, which 1.6 does not have
    assert extra[0] == CALLERROR and extra[2] == "FormationViolation"
    assert wrong_type[2] == "TypeConstraintViolation"
    assert missing[2] == "ProtocolError"


async def test_unknown_action_is_not_implemented_and_csms_only_action_not_supported(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        unknown = await cp.call("MakeCoffee", {})
        wrong_way = await cp.call("Reset", {"type": "Soft"})
    assert unknown[0] == CALLERROR and unknown[2] == "NotImplemented"
    assert wrong_way[0] == CALLERROR and wrong_way[2] == "NotSupported"


async def test_malformed_frames_are_logged_and_a_short_call_gets_a_protocol_error(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        await cp.send("this is not json")
        await cp.send([CALL, "short-1", "Heartbeat"])
        reply = await cp.recv()
        assert (await cp.boot())[0] == CALLRESULT  # the connection survives
    assert reply == [
        CALLERROR,
        "short-1",
        "ProtocolError",
        "CALL must be [2, uniqueId, action, payload]",
        {},
    ]
    malformed = [e for e in csms.log if e.message_type == MALFORMED]
    assert [e.raw for e in malformed] == ["this is not json", '[2, "short-1", "Heartbeat"]']


async def test_respond_false_swallows_calls_so_chargers_time_out(csms) -> None:
    csms.respond = False
    async with charger(csms, "CP-1") as cp:
        await cp.send([CALL, "h-1", "Heartbeat", {}])
        await csms.wait_for("CP-1", "Heartbeat")
        with pytest.raises(TimeoutError):
            await cp.recv(timeout=0.3)
    assert csms.counts["Heartbeat"] == 1
    assert [e.direction for e in csms.log] == ["in"]


async def test_fail_actions_answer_that_action_with_a_callerror(csms) -> None:
    csms.fail_actions = {"StartTransaction": "InternalError"}
    async with charger(csms, "CP-1") as cp:
        reply = await cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": now_iso()},
        )
        assert (await cp.call("Heartbeat", {}))[0] == CALLRESULT
    assert reply[0] == CALLERROR and reply[2] == "InternalError"
    assert csms.transactions == {}
    answer = await csms.wait_for("CP-1", "StartTransaction", direction="out")
    assert answer.message_type == CALLERROR and answer.error_code == "InternalError"


# -- CSMS-initiated: call, send_raw, wait_for, disconnect ------------------------------------


async def test_call_sends_the_request_and_returns_the_response_dataclass(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        pending = asyncio.create_task(
            csms.call("CP-1", call.RemoteStartTransaction(id_tag="T1", connector_id=1))
        )
        request = await cp.recv()
        assert request[0] == CALL and request[2] == "RemoteStartTransaction"
        assert request[3] == {"idTag": "T1", "connectorId": 1}
        await cp.send([CALLRESULT, request[1], {"status": "Accepted"}])
        result = await pending
    assert result == call_result.RemoteStartTransaction(status="Accepted")
    answer = await csms.wait_for("CP-1", "RemoteStartTransaction", message_type=CALLRESULT)
    assert answer.unique_id == request[1] and answer.payload == {"status": "Accepted"}


async def test_call_raises_when_the_charger_answers_with_a_callerror(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        pending = asyncio.create_task(csms.call("CP-1", call.ClearCache()))
        request = await cp.recv()
        await cp.send([CALLERROR, request[1], "NotSupported", "nope", {}])
        with pytest.raises(NotSupportedError):
            await pending


async def test_call_to_an_unconnected_charge_point_raises_a_clear_key_error(csms) -> None:
    with pytest.raises(KeyError, match="'CP-NONE' is not connected"):
        await csms.call("CP-NONE", call.ClearCache())


async def test_call_times_out_when_the_charger_does_not_answer(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        with pytest.raises(TimeoutError, match="ClearCache"):
            await csms.call("CP-1", call.ClearCache(), timeout=0.2)
        # the connection is still usable, and a late answer is not taken by the next call
        late = await cp.recv()
        await cp.send([CALLRESULT, late[1], {"status": "Rejected"}])
        pending = asyncio.create_task(csms.call("CP-1", call.ClearCache()))
        request = await cp.recv()
        await cp.send([CALLRESULT, request[1], {"status": "Accepted"}])
        assert (await pending).status == "Accepted"


async def test_pending_call_fails_at_once_when_the_charger_disconnects(csms) -> None:
    """Not timed: the call's own timeout is an hour away, so only the disconnect can end
    it; one that waited for its timeout instead is a hang, which the deadline stops."""
    async with charger(csms, "CP-1") as cp:
        pending = asyncio.create_task(csms.call("CP-1", call.ClearCache(), timeout=3600))
        await cp.recv()
    with pytest.raises(ConnectionError, match="disconnected"):
        await asyncio.wait_for(pending, 30)  # a deadline against a hang only


async def test_send_raw_reply_is_logged_and_found_by_wait_for(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        mark = len(csms.log)
        unique_id = await csms.send_raw("CP-1", '[2,"raw-1","Reset",{"type":"Hard"}]')
        assert unique_id == "raw-1"
        request = await cp.recv()
        assert request == [CALL, "raw-1", "Reset", {"type": "Hard"}]
        await cp.send([CALLRESULT, "raw-1", {"status": "Accepted"}])
        answer = await csms.wait_for("CP-1", unique_id="raw-1", after=mark)
        # garbage the other way: the charger's CALLERROR is logged too
        await csms.send_raw("CP-1", '[2,"raw-2","Reset",{}]')
        await cp.recv()
        await cp.send([CALLERROR, "raw-2", "FormationViolation", "type missing", {}])
        error = await csms.wait_for("CP-1", "Reset", message_type=CALLERROR, after=mark)
    assert answer.direction == "in" and answer.message_type == CALLRESULT
    assert answer.action == "Reset" and answer.payload == {"status": "Accepted"}
    assert error.error_code == "FormationViolation"
    sent = await csms.wait_for("CP-1", "Reset", direction="out", after=mark)
    assert sent.raw == '[2,"raw-1","Reset",{"type":"Hard"}]'


async def test_send_raw_can_write_a_malformed_frame(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        assert await csms.send_raw("CP-1", "[2, not json") is None
        assert await cp.ws.recv() == "[2, not json"
    entry = await csms.wait_for("CP-1", direction="out")
    assert entry.message_type == MALFORMED


async def test_wait_for_returns_entries_logged_later(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        waiting = asyncio.create_task(csms.wait_for("CP-1", "Heartbeat"))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await cp.call("Heartbeat", {})
        entry = await asyncio.wait_for(waiting, 2)
    assert entry.message_type == CALL and entry.unique_id == "m-1"


async def test_wait_for_respects_after_and_predicate(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        await cp.call(
            "StatusNotification", {"connectorId": 1, "status": "Available", "errorCode": "NoError"}
        )
        mark = len(csms.log)
        await cp.call(
            "StatusNotification", {"connectorId": 1, "status": "Charging", "errorCode": "NoError"}
        )
    entry = await csms.wait_for("CP-1", "StatusNotification", after=mark)
    assert entry.payload["status"] == "Charging"
    first = await csms.wait_for(
        "CP-1", "StatusNotification", predicate=lambda e: e.payload["status"] == "Available"
    )
    assert first.unique_id == "m-1"


async def test_wait_for_timeout_lists_what_was_seen_for_that_charge_point(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        await cp.boot()
        with pytest.raises(WaitTimeout) as timed_out:
            await csms.wait_for("CP-1", "StartTransaction", timeout=0.1)
    message = str(timed_out.value)
    assert "StartTransaction" in message and "BootNotification" in message
    assert isinstance(timed_out.value, AssertionError) and isinstance(timed_out.value, TimeoutError)


async def test_wait_connected_timeout_names_the_refused_attempts(csms) -> None:
    csms.passwords["CP-1"] = "secret"
    with pytest.raises(InvalidStatus):
        async with charger(csms, "CP-1"):
            pass
    with pytest.raises(WaitTimeout, match="missing credentials"):
        await csms.wait_connected("CP-1", timeout=0.1)


async def test_call_from_inside_a_handler_fails_fast_instead_of_deadlocking(csms) -> None:
    errors: list[Exception] = []

    async def handler(cp_id: str, *_: Any) -> str:
        try:
            await csms.call(cp_id, call.ClearCache(), timeout=1)
        except RuntimeError as exc:
            errors.append(exc)
        return "Rejected"

    csms.data_transfer = handler
    async with charger(csms, "CP-1") as cp:
        reply = await cp.call("DataTransfer", {"vendorId": "acme"})
    assert reply[2] == {"status": "Rejected"}
    assert "deadlock" in str(errors[0])


async def test_disconnect_closes_the_socket_from_the_server_side(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        await csms.wait_connected("CP-1")
        await csms.disconnect("CP-1")
        assert "CP-1" not in csms.connected
        with pytest.raises(ConnectionClosed):
            await cp.recv()
    with pytest.raises(KeyError):
        await csms.disconnect("CP-1")
    assert csms.connects["CP-1"] == 1


async def test_a_new_connection_with_the_same_id_replaces_the_old_one(csms) -> None:
    async with charger(csms, "CP-1") as old:
        first = await csms.wait_connected("CP-1")
        async with charger(csms, "CP-1") as new:
            with pytest.raises(ConnectionClosed):
                await old.recv()
            assert csms.connected["CP-1"] is not first
            assert (await new.boot())[0] == CALLRESULT
    assert csms.connects["CP-1"] == 2


async def test_stop_closes_every_connection(csms) -> None:
    async with charger(csms, "CP-1") as cp:
        await csms.wait_connected("CP-1")
        await csms.stop()
        with pytest.raises(ConnectionClosed):
            await cp.recv()
    assert csms.connected == {}


# -- light mode ------------------------------------------------------------------------------


@pytest.mark.csms(keep_log=False)
async def test_without_keep_log_only_counters_are_kept(csms: CentralSystem) -> None:
    async with charger(csms, "CP-1") as cp:
        await cp.boot()
        await cp.call("Heartbeat", {})
        await cp.call("Heartbeat", {})
    assert csms.log == []
    assert csms.counts == {"BootNotification": 1, "Heartbeat": 2}
    with pytest.raises(RuntimeError, match="keep_log"):
        await csms.wait_for("CP-1", "Heartbeat")


@pytest.mark.csms(keep_log=False)
async def test_many_chargers_share_one_csms(csms: CentralSystem) -> None:
    async with contextlib.AsyncExitStack() as stack:
        cps = [await stack.enter_async_context(charger(csms, f"CP-{i}")) for i in range(50)]
        replies = await asyncio.gather(*(cp.boot() for cp in cps))
        assert len(csms.connected) == 50
    assert all(reply[2]["status"] == "Accepted" for reply in replies)
    assert csms.counts["BootNotification"] == 50


# -- as a process ----------------------------------------------------------------------------


async def _run_and_interrupt(*argv: str) -> tuple[int, str]:
    """Start a CSMS process on a free port, boot one charger against it, then Ctrl-C it."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        "--port",
        "0",
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    output: list[str] = []
    try:
        url = None
        async with asyncio.timeout(30):
            while url is None:
                line = (await process.stdout.readline()).decode()
                assert line, "process ended before listening:\n" + "".join(output)
                output.append(line)
                found = re.search(r"listening on (ws://\S+?)/<", line)
                url = found.group(1) if found else None
        async with connect(f"{url}/CP-PROC", subprotocols=[Subprotocol("ocpp1.6")]) as ws:
            cp = RawCharger(ws)
            assert (await cp.boot())[2]["status"] == "Accepted"
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(15):
            rest = await process.stdout.read()
            code = await process.wait()
        output.append(rest.decode())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return code, "".join(output)


async def test_python_m_simulator_csms_serves_logs_frames_and_stops_on_ctrl_c() -> None:
    code, output = await _run_and_interrupt(sys.executable, "-m", "simulator.csms")
    assert code == 0, output
    assert "CP-PROC <- [2," in output and "BootNotification" in output
    assert "CSMS stopped" in output


async def test_runcsms_management_command_serves_and_stops_on_ctrl_c() -> None:
    code, output = await _run_and_interrupt(sys.executable, "manage.py", "runcsms")
    assert code == 0, output
    assert "CP-PROC <- [2," in output
    assert "CSMS control on http://127.0.0.1:" in output
    assert "CSMS stopped" in output


@pytest.mark.parametrize(
    ("launcher", "prefix"),
    [
        ((sys.executable, "manage.py", "runcsms"), "CommandError: "),
        ((sys.executable, "-m", "simulator.csms"), "python -m simulator.csms: "),
    ],
)
@pytest.mark.parametrize("option", ["--port", "--control-port"])
def test_a_taken_port_is_one_line_naming_its_option(launcher, prefix, option) -> None:
    """It was asyncio's 40-line traceback, as `runsimulator` no longer gives."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = ["--port", str(port)] if option == "--port" else ["--port", "0", option, str(port)]
        done = subprocess.run(
            [*launcher, *ports], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"{prefix}{option} {port}: cannot listen on 127.0.0.1:{port} (Address already in use)"
    )
    assert "Traceback" not in done.stderr


def test_a_restarted_csms_does_not_hand_out_the_ids_of_the_run_before() -> None:
    """The demo's CSMS and `runcsms` keep nothing between runs: counted from 1 each time,
    a restart gave a new transaction the id of one the run before had (two sessions under
    one id on a charger's page)."""
    from simulator.csms.run import add_arguments, build
    from simulator.csms.server import restart_safe_first_id

    start = 1_764_000_000.0
    # An hour at up to ten transactions a second, then a restart a second later.
    assert restart_safe_first_id(start + 3600 + 1) > restart_safe_first_id(start) + 10 * 3600
    assert restart_safe_first_id(1_893_456_000.0) < 2**31  # 2030-01-01: still an int32
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert build(vars(parser.parse_args([]))).next_transaction_id > 10 * 3600
    assert CentralSystem().next_transaction_id == 1  # a test's own CSMS counts from 1
