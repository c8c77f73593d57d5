"""The per-connection side of the built-in CSMS: an `ocpp.v16.ChargePoint` with `@on` handlers.

The library's receive loop and call() are kept, with these corrections:

* frames are parsed once here (orjson), logged, and routed; the library's own `unpack`
  would silently drop malformed CALLs without an answer;
* a CALLRESULT/CALLERROR only reaches the library's response queue when a csms.call() is
  waiting for exactly that unique id: a reply to a frame written with send_raw(), or a late
  reply after a timeout, would otherwise be taken by the next call() as its own answer;
* CALLERROR codes are the 1.6 ones (the library sends FormatViolation for FormationViolation
  and has NotImplemented / NotSupported swapped);
* a pending call() fails at once with ConnectionError when the socket goes away, instead of
  waiting for the library's response timeout.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action

from .certificate_authority import CertificateAuthority
from .records import (
    CALL,
    CALLERROR,
    CALLRESULT,
    MALFORMED,
    ChargerBehaviour,
    ConnectorStatus,
    DataTransferHandler,
    Reservation,
    Transaction,
)

if TYPE_CHECKING:
    from collections import Counter

    from websockets.asyncio.server import ServerConnection

LOGGER = logging.getLogger("simulator.csms")

# The library's codes -> OCPP 1.6 (OCPP-J 1.6 section 4.2.3). FormatViolation does not exist
# in 1.6; NotImplemented means "unknown action", NotSupported "known but not supported", and
# the library raises them the other way round.
_ERROR_CODES_16 = {
    "FormatViolation": "FormationViolation",
    "NotImplemented": "NotSupported",
    "NotSupported": "NotImplemented",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}

# A response timeout for the library's call() that never fires: CSMSConnection.request()
# applies its own timeout (which also covers waiting for the one-call-at-a-time lock).
_LIBRARY_TIMEOUT = 24 * 3600.0


def now_iso() -> str:
    """UTC now as OCPP wants it: ISO 8601 with milliseconds and a Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def to_16_error_code(code: str) -> str:
    return _ERROR_CODES_16.get(code, code)


class Central(Protocol):
    """What a connection's handlers read and call of the CSMS (`server.CentralSystem`): its
    configured answers, its state tables and its frame log. A protocol, so that the server
    may import the handlers without the handlers importing the server."""

    boot_status: str
    boot_interval: int
    authorize: dict[str, str | IdTagInfo]
    default_id_tag_status: str
    start_transaction_status: str | None
    tx_profile_limit: float | None
    charger_behaviour: dict[str, ChargerBehaviour]
    respond: bool
    current_time: str | None
    fail_actions: dict[str, str]
    data_transfer: DataTransferHandler | None
    validate_messages: bool
    keep_log: bool
    counts: Counter[str]
    transactions: dict[int, Transaction]
    next_transaction_id: int
    status: dict[str, dict[int, ConnectorStatus]]
    registration: dict[str, str]
    boot_info: dict[str, dict[str, Any]]
    diagnostics_status: dict[str, str]
    firmware_status: dict[str, str]
    diagnostics_statuses: dict[str, list[str]]
    firmware_statuses: dict[str, list[str]]
    reservations: dict[int, Reservation]
    sign_certificates: bool
    csrs: dict[str, list[str]]

    @property
    def ca(self) -> CertificateAuthority: ...

    def stopped(self, transaction: Transaction) -> None: ...

    async def certificate_signed(self, cp_id: str, chain: str) -> str: ...

    def _spawn(self, awaitable: Any) -> None: ...

    security_events: dict[str, list[dict[str, Any]]]
    log_statuses: dict[str, list[dict[str, Any]]]

    async def call(self, cp_id: str, payload: Any, *, timeout: float | None = None) -> Any: ...

    def _record(
        self,
        conn: CSMSConnection,
        direction: str,
        message_type: int,
        unique_id: str | None,
        action: str | None,
        payload: dict[str, Any],
        raw: str,
    ) -> None: ...

    def _record_out(self, conn: CSMSConnection, raw: str) -> None: ...


class CSMSConnection(ChargePoint):
    """One charger's websocket as the CSMS sees it. Created by CentralSystem per connection."""

    def __init__(self, cp_id: str, connection: ServerConnection, csms: Central) -> None:
        super().__init__(cp_id, connection, response_timeout=_LIBRARY_TIMEOUT, logger=LOGGER)
        self.csms = csms
        self.websocket = connection
        # camelCase payload of the CALL being handled. Handlers record wire-format data
        # (meter values, boot info) and the library only hands them snake_case kwargs.
        # Safe as a plain attribute: the receive loop handles one CALL at a time.
        self._payload: dict[str, Any] = {}
        # unique id -> action of CALLs we sent, to name the action of their answers.
        self._out_actions: dict[str, str] = {}
        # unique ids a call() is waiting for: only these go to the library's queue.
        self._awaiting: set[str] = set()
        # (unique id, action) of the incoming CALL being answered, to name our reply.
        self._replying: tuple[str, str] | None = None
        # Resolved (never with an exception: nobody may be awaiting it) when the socket is
        # gone, so a pending request() can stop waiting.
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._receiver: asyncio.Task[Any] | None = None  # the task running start()
        self._signed_chain: str | None = None  # a CertificateSigned to send after answering
        # (transactionId, connectorId) of the StartTransaction just answered, for its TxProfile
        self._started: tuple[int, int] | None = None
        if not csms.validate_messages:
            for handlers in self.route_map.values():
                handlers["_skip_schema_validation"] = True

    # -- transport ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Receive loop; returns (via ConnectionClosed) when the socket closes."""
        self._receiver = asyncio.current_task()
        recv = self._connection.recv
        while True:
            raw = await recv()
            if isinstance(raw, bytes):
                # OCPP-J uses text frames only; log it and carry on.
                self.csms._record(self, "in", MALFORMED, None, None, {}, repr(raw))
                LOGGER.warning("%s: binary frame ignored (OCPP-J needs text frames)", self.id)
                continue
            await self.route_message(raw)

    async def _send(self, message: str) -> None:
        # Recorded before sending, so the log already holds our answer when the charger
        # reacts to it.
        self.csms._record_out(self, message)
        await self._connection.send(message)

    def mark_gone(self) -> None:
        if not self.gone.done():
            self.gone.set_result(None)

    # -- routing -----------------------------------------------------------------------------

    async def route_message(self, raw_msg: str) -> None:
        try:
            data = orjson.loads(raw_msg)
        except orjson.JSONDecodeError:
            data = None
        message_type = data[0] if isinstance(data, list) and data else None
        unique_id = data[1] if message_type is not None and len(data) > 1 else None
        if not isinstance(unique_id, str):
            unique_id = None

        if message_type == CALL and len(data) == 4 and isinstance(data[2], str):
            await self._route_call(raw_msg, unique_id, data[2], data[3])
        elif message_type == CALLRESULT and len(data) == 3 and unique_id is not None:
            action = self._out_actions.pop(unique_id, None)
            payload = data[2] if isinstance(data[2], dict) else {"value": data[2]}
            self.csms._record(self, "in", CALLRESULT, unique_id, action, payload, raw_msg)
            if unique_id in self._awaiting:
                self._response_queue.put_nowait(CallResult(unique_id, data[2]))
        elif message_type == CALLERROR and len(data) == 5 and unique_id is not None:
            action = self._out_actions.pop(unique_id, None)
            _, _, code, description, details = data
            payload = {"errorCode": code, "errorDescription": description, "errorDetails": details}
            self.csms._record(self, "in", CALLERROR, unique_id, action, payload, raw_msg)
            if unique_id in self._awaiting:
                self._response_queue.put_nowait(CallError(unique_id, code, description, details))
        else:
            self.csms._record(self, "in", MALFORMED, unique_id, None, {}, raw_msg)
            LOGGER.warning("%s: malformed OCPP-J frame: %.200s", self.id, raw_msg)
            if message_type == CALL and unique_id is not None:
                # We know whom to answer: a CALL with the wrong shape is a protocol error.
                await self._send_error(
                    unique_id, "ProtocolError", "CALL must be [2, uniqueId, action, payload]"
                )

    async def _route_call(self, raw: str, unique_id: str | None, action: str, payload: Any) -> None:
        csms = self.csms
        csms.counts[action] += 1
        csms._record(
            self, "in", CALL, unique_id, action, payload if isinstance(payload, dict) else {}, raw
        )
        if unique_id is None:
            LOGGER.warning("%s: CALL %s without a string unique id, not answered", self.id, action)
            return
        if not csms.respond:
            return  # test mode: let the charger time out
        self._replying = (unique_id, action)
        try:
            failure = csms.fail_actions.get(action)
            if failure:
                await self._send_error(
                    unique_id, failure, f"{action} refused by test configuration"
                )
                return
            if not isinstance(payload, dict):
                await self._send_error(unique_id, "FormationViolation", "payload must be an object")
                return
            self._payload = payload
            await self._handle_call(Call(unique_id, action, payload))
        except OCPPError as error:
            # Raised before our handler ran (schema check, unknown action) or by the check
            # of our own answer; handler exceptions are answered by the library itself.
            LOGGER.info("%s: %s answered with %s: %s", self.id, action, error.code, error)
            await self._send_error(
                unique_id, to_16_error_code(error.code), error.description, error.details
            )
        finally:
            self._replying = None
            self._payload = {}

    async def _send_error(
        self, unique_id: str, code: str, description: str, details: Any = None
    ) -> None:
        await self._send(CallError(unique_id, code, description, details or {}).to_json())

    # -- CSMS-initiated requests -------------------------------------------------------------

    async def request(self, payload: Any, timeout: float) -> Any:
        """The library's call() with suppress=False, a real timeout and disconnect awareness."""
        if self.gone.done():
            raise ConnectionError(f"charge point {self.id!r} is disconnected")
        if asyncio.current_task() is self._receiver:
            # The answer would be read by this very task, which is busy waiting for it.
            raise RuntimeError(
                "csms.call() from inside a handler (e.g. csms.data_transfer) would deadlock: "
                "run it in a task of its own"
            )
        unique_id = str(uuid.uuid4())
        action = type(payload).__name__
        self._out_actions[unique_id] = action
        self._awaiting.add(unique_id)
        task = asyncio.ensure_future(self.call(payload, suppress=False, unique_id=unique_id))
        try:
            done, _ = await asyncio.wait(
                (task, self.gone), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            self._awaiting.discard(unique_id)
        if task in done:
            return task.result()
        task.cancel()
        if self.gone.done():
            raise ConnectionError(
                f"charge point {self.id!r} disconnected before answering {action} ({unique_id})"
            )
        raise TimeoutError(f"{self.id}: no answer to {action} ({unique_id}) within {timeout}s")

    # -- handlers ----------------------------------------------------------------------------

    def _id_tag_info(self, id_tag: str) -> IdTagInfo:
        csms = self.csms
        own = csms.charger_behaviour.get(self.id)
        value = own.id_tags.get(id_tag) if own is not None else None
        if value is None:
            value = csms.authorize.get(id_tag)
        if value is None:
            value = (own and own.default_id_tag_status) or csms.default_id_tag_status
        return value if isinstance(value, IdTagInfo) else IdTagInfo(status=value)

    @on(Action.boot_notification)
    def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        csms = self.csms
        own = csms.charger_behaviour.get(self.id)
        status = str((own and own.boot_status) or csms.boot_status)
        interval = own.boot_interval if own is not None else None
        csms.registration[self.id] = status
        csms.boot_info[self.id] = self._payload
        return call_result.BootNotification(
            current_time=csms.current_time or now_iso(),
            interval=int(csms.boot_interval if interval is None else interval),
            status=status,
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=self.csms.current_time or now_iso())

    @on(Action.authorize)
    def on_authorize(self, id_tag: str, **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=self._id_tag_info(id_tag))

    @on(Action.start_transaction)
    def on_start_transaction(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None = None,
        **_: Any,
    ) -> call_result.StartTransaction:
        csms = self.csms
        transaction_id = csms.next_transaction_id
        csms.next_transaction_id += 1
        info = self._id_tag_info(id_tag)
        own = csms.charger_behaviour.get(self.id)
        forced = (own and own.start_transaction_status) or csms.start_transaction_status
        if forced is not None:
            info = IdTagInfo(
                status=forced,
                expiry_date=info.expiry_date,
                parent_id_tag=info.parent_id_tag,
            )
        csms.transactions[transaction_id] = Transaction(
            transaction_id=transaction_id,
            cp_id=self.id,
            connector_id=connector_id,
            id_tag=id_tag,
            meter_start=meter_start,
            start_timestamp=timestamp,
            reservation_id=reservation_id,
            id_tag_status=str(info.status),
        )
        reservation = csms.reservations.get(reservation_id) if reservation_id is not None else None
        if reservation is not None and reservation.cp_id == self.id:
            reservation.state = "used"
            reservation.transaction_id = transaction_id
        self._started = (transaction_id, connector_id)
        return call_result.StartTransaction(transaction_id=transaction_id, id_tag_info=info)

    @after(Action.start_transaction)
    def after_start_transaction(self, **_: Any) -> None:
        started, self._started = self._started, None
        own = self.csms.charger_behaviour.get(self.id)
        limit = own.tx_profile_limit if own is not None else None
        if limit is None:
            limit = self.csms.tx_profile_limit
        if started is not None and limit is not None:
            self.csms._spawn(self._send_tx_profile(*started, limit))

    async def _send_tx_profile(self, transaction_id: int, connector_id: int, limit: float) -> None:
        profile = {
            "charging_profile_id": transaction_id,
            "transaction_id": transaction_id,
            "stack_level": 0,
            "charging_profile_purpose": "TxProfile",
            "charging_profile_kind": "Relative",
            "charging_schedule": {
                "charging_rate_unit": "A",
                "charging_schedule_period": [{"start_period": 0, "limit": float(limit)}],
            },
        }
        request = call.SetChargingProfile(connector_id=connector_id, cs_charging_profiles=profile)
        try:
            answer = await self.csms.call(self.id, request)
        except (OCPPError, TimeoutError, ConnectionError) as exc:
            LOGGER.info(
                "%s: TxProfile for transaction %d not set: %s", self.id, transaction_id, exc
            )
            return
        LOGGER.info(
            "%s: TxProfile %s A for transaction %d: %s",
            self.id,
            limit,
            transaction_id,
            answer.status,
        )

    @on(Action.stop_transaction)
    def on_stop_transaction(
        self,
        transaction_id: int,
        meter_stop: int,
        timestamp: str,
        id_tag: str | None = None,
        reason: str | None = None,
        **_: Any,
    ) -> call_result.StopTransaction:
        csms = self.csms
        transaction = csms.transactions.get(transaction_id)
        if transaction is None:
            # Not allocated here (e.g. -1 after an unconfirmed start): keep it visible anyway.
            transaction = Transaction(
                transaction_id=transaction_id,
                cp_id=self.id,
                connector_id=0,
                id_tag=id_tag,
                meter_start=None,
                start_timestamp=None,
                started_here=False,
            )
            csms.transactions[transaction_id] = transaction
        first_stop = not transaction.stopped
        transaction.meter_stop = meter_stop
        transaction.stop_timestamp = timestamp
        transaction.reason = reason
        transaction.stop_id_tag = id_tag
        if csms.keep_log:  # its samples, as MeterValues' (`on_meter_values`)
            transaction.transaction_data = self._payload.get("transactionData")
        if first_stop:
            csms.stopped(transaction)
        info = self._id_tag_info(id_tag) if id_tag is not None else None
        return call_result.StopTransaction(id_tag_info=info)

    @on(Action.meter_values)
    def on_meter_values(
        self, connector_id: int, transaction_id: int | None = None, **_: Any
    ) -> call_result.MeterValues:
        csms = self.csms
        if csms.keep_log and transaction_id is not None:
            transaction = csms.transactions.get(transaction_id)
            if transaction is not None:
                transaction.meter_values.extend(self._payload.get("meterValue", ()))
        return call_result.MeterValues()

    @on(Action.status_notification)
    def on_status_notification(
        self, connector_id: int, status: str, error_code: str, **_: Any
    ) -> call_result.StatusNotification:
        self.csms.status.setdefault(self.id, {})[connector_id] = ConnectorStatus(
            str(status), str(error_code)
        )
        return call_result.StatusNotification()

    @on(Action.data_transfer)
    async def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None, **_: Any
    ) -> call_result.DataTransfer:
        handler = self.csms.data_transfer
        if handler is None:
            return call_result.DataTransfer(status="UnknownVendorId")
        result = handler(self.id, vendor_id, message_id, data)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, str):
            return call_result.DataTransfer(status=result)
        return result

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(
        self, status: str, **_: Any
    ) -> call_result.DiagnosticsStatusNotification:
        self.csms.diagnostics_status[self.id] = str(status)
        self.csms.diagnostics_statuses.setdefault(self.id, []).append(str(status))
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(
        self, status: str, **_: Any
    ) -> call_result.FirmwareStatusNotification:
        self.csms.firmware_status[self.id] = str(status)
        self.csms.firmware_statuses.setdefault(self.id, []).append(str(status))
        return call_result.FirmwareStatusNotification()

    # Security whitepaper (edition 3) messages a 1.6 charger with security profiles may send.

    @on(Action.security_event_notification)
    def on_security_event_notification(self, **_: Any) -> call_result.SecurityEventNotification:
        # As sent (type, timestamp, techInfo), in the order received.
        self.csms.security_events.setdefault(self.id, []).append(dict(self._payload))
        return call_result.SecurityEventNotification()

    @on(Action.log_status_notification)
    def on_log_status_notification(self, **_: Any) -> call_result.LogStatusNotification:
        # status and, unless it is Idle, the requestId of the GetLog it is about.
        self.csms.log_statuses.setdefault(self.id, []).append(dict(self._payload))
        return call_result.LogStatusNotification()

    @on(Action.signed_firmware_status_notification)
    def on_signed_firmware_status_notification(
        self, status: str, **_: Any
    ) -> call_result.SignedFirmwareStatusNotification:
        self.csms.firmware_status[self.id] = str(status)
        self.csms.firmware_statuses.setdefault(self.id, []).append(str(status))
        return call_result.SignedFirmwareStatusNotification()

    # -- certificates (security whitepaper, edition 3; issue 17, branch seccerts) -----------

    @on(Action.sign_certificate)
    def on_sign_certificate(self, csr: str, **_: Any) -> call_result.SignCertificate:
        """Accepted when the CA can sign the CSR; the chain follows in CertificateSigned
        (unless `sign_certificates` is off: then it never comes)."""
        csms = self.csms
        csms.csrs.setdefault(self.id, []).append(csr)
        try:
            chain = csms.ca.sign_csr(csr)
        except ValueError as exc:
            LOGGER.info("%s: CSR refused: %s", self.id, exc)
            return call_result.SignCertificate(status="Rejected")
        if csms.sign_certificates:
            self._signed_chain = chain
        return call_result.SignCertificate(status="Accepted")

    @after(Action.sign_certificate)
    def after_sign_certificate(self, **_: Any) -> None:
        chain, self._signed_chain = self._signed_chain, None
        if chain is not None:
            self.csms._spawn(self.csms.certificate_signed(self.id, chain))
