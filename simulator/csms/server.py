"""CentralSystem: the built-in OCPP 1.6J CSMS used by the demo, the tests and the benchmarks.

One `CentralSystem` serves any number of chargers on one websockets server. Every option is a
plain attribute read when it is needed, so a test can change the CSMS's behaviour between two
messages (boot_status, authorize, respond, fail_actions, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import ocpp.messages
import orjson
from ocpp.v16 import call
from ocpp.v16.datatypes import IdTagInfo
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHeader, NegotiationError
from websockets.frames import CloseCode
from websockets.headers import build_www_authenticate_basic, parse_authorization_basic
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from simulator.ocpp16.redaction import names_secret, redact_frame, redact_value

from .certificate_authority import CertificateAuthority
from .handlers import LOGGER, CSMSConnection
from .records import (
    CALL,
    CALLERROR,
    CALLRESULT,
    MALFORMED,
    ChargerBehaviour,
    Closure,
    ConnectorStatus,
    DataTransferHandler,
    LocalList,
    LogEntry,
    Refusal,
    Reservation,
    Transaction,
)

# jsonschema validation in a thread pool buys nothing under the GIL, costs ~150 µs a message
# and has been reported to race: validate inline. Guarded because the attribute is not API.
if hasattr(ocpp.messages, "ASYNC_VALIDATION"):
    ocpp.messages.ASYNC_VALIDATION = False

SUBPROTOCOL = Subprotocol("ocpp1.6")

# Every frame, both directions, at INFO; off unless someone configures this logger (runcsms
# and `python -m simulator.csms` do).
FRAMES = logging.getLogger("simulator.csms.frames")

# (cp_id, vendor_id, message_id, data) -> call_result.DataTransfer or a status string,
# or an awaitable of either


class WaitTimeout(AssertionError, TimeoutError):
    """wait_for() saw no matching frame in time.

    Both an AssertionError (reads as a test failure) and a TimeoutError (== asyncio's in 3.11),
    so either `pytest.raises` works.
    """


def _date_text(value: datetime | timedelta | str) -> str:
    """An OCPP date-time: a datetime (UTC if naive), now plus a timedelta, or text as is."""
    if isinstance(value, str):
        return value
    if isinstance(value, timedelta):
        value = datetime.now(UTC) + value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    moment = value.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def cp_id_from_path(path: str) -> str:
    """The charge point id is the last path segment, percent-decoded (OCPP-J 1.6 section 3.1)."""
    return unquote(urlsplit(path).path.rstrip("/").rpartition("/")[2])


# Tenths of a second since this instant: a first transaction id that a CSMS started later
# has not handed out yet (unless the run before averaged more than ten transactions a
# second), and below 2**31 until 2030.
_IDS_EPOCH = 1_700_000_000


def restart_safe_first_id(now: float | None = None) -> int:
    """A first transaction id for a CSMS that keeps nothing between runs (the demo's,
    `runcsms`): counted from 1 each time, a restart handed out the ids of the run before
    again, and pages and CSMS logs showed two transactions under one id."""
    return max(1, int(((time.time() if now is None else now) - _IDS_EPOCH) * 10))


class CentralSystem:
    """A small real OCPP 1.6J central system on the `ocpp` library's server side."""

    # Stopped transactions kept when the log is not (see `transactions`).
    STOPPED_KEPT = 1000

    # The handlers of each connection; a test double may swap in a subclass with a broken one.
    connection_class: type[CSMSConnection] = CSMSConnection

    def __init__(
        self,
        *,
        keep_log: bool = True,
        boot_status: str = "Accepted",
        boot_interval: int = 300,
        response_timeout: float = 30.0,
        validate_messages: bool = True,
        first_transaction_id: int = 1,
    ) -> None:
        # -- behaviour (change at any time) --
        self.boot_status = boot_status  # "Accepted" | "Pending" | "Rejected"
        # heartbeat interval when Accepted, retry interval otherwise (seconds)
        self.boot_interval = boot_interval
        self.authorize: dict[str, str | IdTagInfo] = {}  # idTag -> status (or full IdTagInfo)
        self.default_id_tag_status = "Accepted"
        # StartTransaction's idTagInfo.status for every tag; None: the tag's own (authorize)
        self.start_transaction_status: str | None = None
        # Smart charging as a CSMS with a site limit does it: after each StartTransaction,
        # a TxProfile for that transaction capped at this many amperes (None: none sent).
        self.tx_profile_limit: float | None = None
        # cp id -> what it is answered where that differs from the above
        self.charger_behaviour: dict[str, ChargerBehaviour] = {}
        self.passwords: dict[str, str] = {}  # cp id -> HTTP Basic password (profile 1/2)
        self.require_known = False  # refuse ids in neither `known` nor `passwords` with 404
        self.known: set[str] = set()
        self.respond = True  # False: swallow chargers' CALLs (timeout tests)
        # currentTime of Boot/Heartbeat answers; None: now (a test may send any clock)
        self.current_time: str | None = None
        self.fail_actions: dict[str, str] = {}  # action -> CALLERROR code to answer with
        # None answers DataTransfer with UnknownVendorId
        self.data_transfer: DataTransferHandler | None = None
        self.response_timeout = response_timeout  # default timeout of call()
        # Missing or wrong subprotocol: "reject" = HTTP 400 during the handshake (websockets'
        # negotiation); "close" = OCPP-J 1.6 section 3.1.2 to the letter: finish the handshake
        # without Sec-WebSocket-Protocol, then close at once (1002).
        self.subprotocol_policy: Literal["reject", "close"] = "reject"
        # Schema-check chargers' CALLs and our answers (read when a charger connects).
        # Benchmarks may turn it off to keep the CSMS from being the bottleneck.
        self.validate_messages = validate_messages
        self.keep_log = keep_log

        # -- state --
        self.log: list[LogEntry] = []
        self.counts: Counter[str] = Counter()  # action of every CALL received
        self.connected: dict[str, CSMSConnection] = {}
        self.connects: Counter[str] = Counter()  # cp id -> accepted websocket connections
        self.refusals: deque[Refusal] = deque(maxlen=1000)
        self.closures: deque[Closure] = deque(maxlen=1000)  # connections that ended
        # Every transaction with the log kept (tests read them all); without it (the demo,
        # scenarios, `runcsms`: runs of days) the open ones and the newest `STOPPED_KEPT`
        # stopped ones, so that memory follows the fleet, not its history.
        self.transactions: dict[int, Transaction] = {}
        self._stopped: deque[int] = deque()  # stopped transaction ids, oldest first
        self.next_transaction_id = first_transaction_id
        self.status: dict[str, dict[int, ConnectorStatus]] = {}
        self.registration: dict[str, str] = {}  # cp id -> last BootNotification status we sent
        self.boot_info: dict[str, dict[str, Any]] = {}  # cp id -> last BootNotification payload
        self.diagnostics_status: dict[str, str] = {}
        self.firmware_status: dict[str, str] = {}
        # Every status in the order received (cp id -> statuses), and what the CSMS asked
        # for (issue 17: Reservation, Local Auth List Management, Firmware Management).
        self.diagnostics_statuses: dict[str, list[str]] = {}
        self.firmware_statuses: dict[str, list[str]] = {}
        self.reservations: dict[int, Reservation] = {}
        self.next_reservation_id = 1
        self.local_lists: dict[str, LocalList] = {}
        self.diagnostics_files: dict[str, str] = {}  # cp id -> file name it announced
        # Certificates (security whitepaper): the CA that signs chargers' CSRs (made when
        # first used), whether it answers a SignCertificate with a CertificateSigned, the
        # CSRs received and the answers to the CertificateSigned sent (cp id -> in order).
        self._ca: CertificateAuthority | None = None
        self.sign_certificates = True
        self.csrs: dict[str, list[str]] = {}
        self.certificate_signed_answers: dict[str, list[str]] = {}
        # Security whitepaper (issue 17): SecurityEventNotification payloads and
        # LogStatusNotification payloads as received (cp id -> in order), and the file name
        # each GetLog was answered with (cp id -> request id -> file name).
        self.security_events: dict[str, list[dict[str, Any]]] = {}
        self.log_statuses: dict[str, list[dict[str, Any]]] = {}
        self.log_files: dict[str, dict[int, str]] = {}
        self.next_log_request_id = 1

        self._server: Server | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, **serve_options: Any) -> int:
        """Listen; port 0 picks a free port. Returns the port. Extra options go to serve()."""
        if self._server is not None:
            raise RuntimeError("CentralSystem already started")
        options: dict[str, Any] = {
            # 30 KiB instead of 71 KiB per connection, and chargers rarely negotiate it
            "compression": None,
            # a test CSMS should not hang for 10 s on a client that ignores the close frame
            "close_timeout": 2,
        }
        options.update(serve_options)
        self._server = await serve(
            self._handle,
            host,
            port,
            subprotocols=[SUBPROTOCOL],
            select_subprotocol=self._select_subprotocol,
            process_request=self._process_request,
            logger=logging.getLogger("simulator.csms.websockets"),
            **options,
        )
        self._host = host
        self._port = self._server.sockets[0].getsockname()[1]
        LOGGER.info("CSMS listening on %s", self.url)
        return self._port

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("CentralSystem not started")
        return self._port

    @property
    def url(self) -> str:
        """ws://host:port; a charger connects to url + "/" + cp_id."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"ws://{host}:{self.port}"

    async def stop(self) -> None:
        """Close every connection (1001) and stop listening. Idempotent."""
        for conn in list(self.connected.values()):
            conn.mark_gone()
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        self._notify()

    async def __aenter__(self) -> CentralSystem:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        if self._server is None:
            raise RuntimeError("CentralSystem not started")
        await self._server.serve_forever()

    # -- CSMS-initiated ----------------------------------------------------------------------

    def connection(self, cp_id: str) -> CSMSConnection:
        try:
            return self.connected[cp_id]
        except KeyError:
            known = ", ".join(sorted(self.connected)) or "none"
            raise KeyError(
                f"charge point {cp_id!r} is not connected (connected: {known})"
            ) from None

    async def call(self, cp_id: str, payload: Any, *, timeout: float | None = None) -> Any:
        """Send an ocpp.v16.call.* request; return the call_result.* dataclass.

        A CALLERROR raises the matching ocpp.exceptions.OCPPError; no answer in time raises
        TimeoutError; the charger going away raises ConnectionError at once.
        """
        conn = self.connection(cp_id)
        answer = await conn.request(payload, self.response_timeout if timeout is None else timeout)
        self._take_new_password(cp_id, payload, answer)
        return answer

    def _take_new_password(self, cp_id: str, payload: Any, answer: Any) -> None:
        """An AuthorizationKey the charger accepted is its Basic password from now on, and a
        charger on security profile 1 or 2 reconnects with it at once (the whitepaper's
        password update): a CSMS that checks passwords checks the new one, as one that
        rotates them does. The key is matched without regard to case, as chargers do."""
        if (
            cp_id in self.passwords
            and isinstance(payload, call.ChangeConfiguration)
            and payload.key.casefold() == "authorizationkey"
            and getattr(answer, "status", None) == "Accepted"
        ):
            self.passwords[cp_id] = payload.value

    async def send_raw(self, cp_id: str, text: str) -> str | None:
        """Write one frame as is. Returns its unique id when it has one (for wait_for)."""
        conn = self.connection(cp_id)
        unique_id = None
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, list) and len(data) > 1 and isinstance(data[1], str):
            unique_id = data[1]
            if data[0] == CALL and len(data) > 2 and isinstance(data[2], str):
                # so the charger's answer is logged under this action
                conn._out_actions[unique_id] = data[2]
        await conn._send(text)
        return unique_id

    async def disconnect(
        self, cp_id: str, code: int = CloseCode.NORMAL_CLOSURE, reason: str = ""
    ) -> None:
        """Close that charger's websocket from the server side."""
        conn = self.connection(cp_id)
        conn.mark_gone()  # pending call()s fail now, not after the closing handshake
        if self.connected.get(cp_id) is conn:
            del self.connected[cp_id]
        self._notify()
        await conn.websocket.close(code, reason)

    # -- Reservation, Local Auth List Management, Firmware Management (issue 17) -----------

    async def reserve_now(
        self,
        cp_id: str,
        connector_id: int,
        id_tag: str,
        expiry: datetime | timedelta | str = timedelta(minutes=15),
        *,
        reservation_id: int | None = None,
        parent_id_tag: str | None = None,
    ) -> str:
        """ReserveNow (expiry: a time, a delay from now, or the text to send); the answer.
        Every reservation is kept in `reservations`, accepted or not."""
        if reservation_id is None:
            reservation_id = self.next_reservation_id
        self.next_reservation_id = max(self.next_reservation_id, reservation_id + 1)
        expiry_date = _date_text(expiry)
        answer = await self.call(
            cp_id,
            call.ReserveNow(
                connector_id=connector_id,
                expiry_date=expiry_date,
                id_tag=id_tag,
                reservation_id=reservation_id,
                parent_id_tag=parent_id_tag,
            ),
        )
        self.reservations[reservation_id] = Reservation(
            reservation_id,
            cp_id,
            connector_id,
            id_tag,
            expiry_date,
            parent_id_tag,
            status=str(answer.status),
            state="active" if answer.status == "Accepted" else "refused",
        )
        return str(answer.status)

    async def cancel_reservation(self, cp_id: str, reservation_id: int) -> str:
        answer = await self.call(cp_id, call.CancelReservation(reservation_id=reservation_id))
        reservation = self.reservations.get(reservation_id)
        if answer.status == "Accepted" and reservation is not None:
            reservation.state = "cancelled"
        return str(answer.status)

    async def send_local_list(
        self,
        cp_id: str,
        version: int,
        entries: dict[str, str | IdTagInfo | None],
        update_type: str = "Full",
    ) -> str:
        """SendLocalList: idTag -> status (or a full IdTagInfo; None removes it in a
        Differential update). What the charger accepted is kept in `local_lists`."""
        items = []
        for id_tag, info in entries.items():
            item: dict[str, Any] = {"id_tag": id_tag}
            if info is not None:
                info = info if isinstance(info, IdTagInfo) else IdTagInfo(status=info)
                item["id_tag_info"] = {
                    k: v
                    for k, v in (
                        ("status", str(info.status)),
                        ("expiry_date", info.expiry_date),
                        ("parent_id_tag", info.parent_id_tag),
                    )
                    if v is not None
                }
            items.append(item)
        answer = await self.call(
            cp_id,
            call.SendLocalList(
                list_version=version, update_type=update_type, local_authorization_list=items
            ),
        )
        if answer.status == "Accepted":
            held = self.local_lists.get(cp_id)
            kept = dict(held.entries) if held is not None and update_type != "Full" else {}
            for item in items:
                info_dict = item.get("id_tag_info")
                if info_dict is None:
                    kept.pop(item["id_tag"], None)
                else:
                    kept[item["id_tag"]] = info_dict["status"]
            self.local_lists[cp_id] = LocalList(version, kept)
        return str(answer.status)

    async def get_local_list_version(self, cp_id: str) -> int:
        answer = await self.call(cp_id, call.GetLocalListVersion())
        return int(answer.list_version)

    async def update_firmware(
        self,
        cp_id: str,
        location: str,
        retrieve_date: datetime | timedelta | str = timedelta(0),
        *,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> None:
        """UpdateFirmware; its progress arrives in `firmware_statuses[cp_id]`."""
        await self.call(
            cp_id,
            call.UpdateFirmware(
                location=location,
                retrieve_date=_date_text(retrieve_date),
                retries=retries,
                retry_interval=retry_interval,
            ),
        )

    async def get_diagnostics(
        self,
        cp_id: str,
        location: str,
        *,
        start_time: datetime | str | None = None,
        stop_time: datetime | str | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> str | None:
        """GetDiagnostics; the file name the charger will upload (None: it has nothing).
        Its progress arrives in `diagnostics_statuses[cp_id]`."""
        answer = await self.call(
            cp_id,
            call.GetDiagnostics(
                location=location,
                start_time=None if start_time is None else _date_text(start_time),
                stop_time=None if stop_time is None else _date_text(stop_time),
                retries=retries,
                retry_interval=retry_interval,
            ),
        )
        if answer.file_name:
            self.diagnostics_files[cp_id] = answer.file_name
        return answer.file_name

    # -- certificates and signed firmware (security whitepaper; issue 17, seccerts) ----------

    @property
    def ca(self) -> CertificateAuthority:
        """The CA that signs chargers' CSRs (a TLS server trusting its root accepts them
        with security profile 3)."""
        if self._ca is None:
            self._ca = CertificateAuthority()
        return self._ca

    async def certificate_signed(self, cp_id: str, chain: str) -> str:
        """CertificateSigned with this PEM chain; the charger's answer (also kept in
        `certificate_signed_answers`)."""
        answer = await self.call(cp_id, call.CertificateSigned(certificate_chain=chain))
        self.certificate_signed_answers.setdefault(cp_id, []).append(str(answer.status))
        return str(answer.status)

    async def install_certificate(
        self, cp_id: str, pem: str, certificate_type: str = "CentralSystemRootCertificate"
    ) -> str:
        answer = await self.call(
            cp_id, call.InstallCertificate(certificate_type=certificate_type, certificate=pem)
        )
        return str(answer.status)

    async def get_installed_certificate_ids(
        self, cp_id: str, certificate_type: str = "CentralSystemRootCertificate"
    ) -> tuple[str, list[dict[str, str]]]:
        """The status and the hash data (camelCase, as on the wire) of each certificate."""
        answer = await self.call(
            cp_id, call.GetInstalledCertificateIds(certificate_type=certificate_type)
        )
        ids = [
            {
                "hashAlgorithm": item["hash_algorithm"],
                "issuerNameHash": item["issuer_name_hash"],
                "issuerKeyHash": item["issuer_key_hash"],
                "serialNumber": item["serial_number"],
            }
            for item in answer.certificate_hash_data or ()
        ]
        return str(answer.status), ids

    async def delete_certificate(self, cp_id: str, hash_data: dict[str, str]) -> str:
        snake = {
            "hash_algorithm": hash_data["hashAlgorithm"],
            "issuer_name_hash": hash_data["issuerNameHash"],
            "issuer_key_hash": hash_data["issuerKeyHash"],
            "serial_number": hash_data["serialNumber"],
        }
        answer = await self.call(cp_id, call.DeleteCertificate(certificate_hash_data=snake))
        return str(answer.status)

    async def signed_update_firmware(
        self,
        cp_id: str,
        location: str,
        signing_certificate: str,
        signature: str,
        *,
        request_id: int = 1,
        retrieve_date: datetime | timedelta | str = timedelta(0),
        install_date: datetime | timedelta | str | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> str:
        """SignedUpdateFirmware; the answer. Its progress arrives in
        `firmware_statuses[cp_id]`."""
        firmware: dict[str, Any] = {
            "location": location,
            "retrieve_date_time": _date_text(retrieve_date),
            "signing_certificate": signing_certificate,
            "signature": signature,
        }
        if install_date is not None:
            firmware["install_date_time"] = _date_text(install_date)
        answer = await self.call(
            cp_id,
            call.SignedUpdateFirmware(
                request_id=request_id,
                firmware=firmware,
                retries=retries,
                retry_interval=retry_interval,
            ),
        )
        return str(answer.status)

    # -- security whitepaper, edition 3 (issue 17) -------------------------------------------

    async def get_log(
        self,
        cp_id: str,
        location: str,
        *,
        log_type: str = "SecurityLog",
        request_id: int | None = None,
        oldest: datetime | str | None = None,
        latest: datetime | str | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> tuple[str, str | None, int]:
        """GetLog: (status, file name, requestId). Its progress arrives in
        `log_statuses[cp_id]`; a requestId is chosen when none is given."""
        if request_id is None:
            request_id = self.next_log_request_id
            self.next_log_request_id += 1
        window: dict[str, str] = {"remoteLocation": location}
        if oldest is not None:
            window["oldestTimestamp"] = _date_text(oldest)
        if latest is not None:
            window["latestTimestamp"] = _date_text(latest)
        answer = await self.call(
            cp_id,
            call.GetLog(
                log=window,
                log_type=log_type,
                request_id=request_id,
                retries=retries,
                retry_interval=retry_interval,
            ),
        )
        if answer.filename:
            self.log_files.setdefault(cp_id, {})[request_id] = answer.filename
        return str(answer.status), answer.filename, request_id

    async def extended_trigger(
        self, cp_id: str, requested_message: str, connector_id: int | None = None
    ) -> str:
        """ExtendedTriggerMessage; the charger's answer (Accepted, Rejected, NotImplemented)."""
        answer = await self.call(
            cp_id,
            call.ExtendedTriggerMessage(
                requested_message=requested_message, connector_id=connector_id
            ),
        )
        return str(answer.status)

    # -- waiting -----------------------------------------------------------------------------

    async def wait_for(
        self,
        cp_id: str | None,
        action: str | None = None,
        *,
        direction: str | None = "in",
        predicate: Callable[[LogEntry], bool] | None = None,
        timeout: float = 5.0,
        after: int = 0,
        message_type: int | None = None,
        unique_id: str | None = None,
    ) -> LogEntry:
        """First log entry at index >= after matching every given filter (None = any).

        `action` also matches answers (their action is the answered CALL's); narrow with
        message_type=2/3/4 when needed. Raises WaitTimeout listing what was seen.
        """
        if not self.keep_log:
            raise RuntimeError("wait_for needs CentralSystem(keep_log=True)")

        def matches(entry: LogEntry) -> bool:
            return (
                (cp_id is None or entry.cp_id == cp_id)
                and (action is None or entry.action == action)
                and (direction is None or entry.direction == direction)
                and (message_type is None or entry.message_type == message_type)
                and (unique_id is None or entry.unique_id == unique_id)
                and (predicate is None or predicate(entry))
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = after
        while True:
            log = self.log
            while index < len(log):
                entry = log[index]
                index += 1
                if matches(entry):
                    return entry
            remaining = deadline - loop.time()
            if remaining <= 0:
                wanted = ", ".join(
                    f"{name}={value!r}"
                    for name, value in (
                        ("action", action),
                        ("direction", direction),
                        ("message_type", message_type),
                        ("unique_id", unique_id),
                        ("predicate", predicate),
                    )
                    if value is not None
                )
                raise WaitTimeout(
                    f"no frame for {cp_id!r} matching {wanted or 'anything'} at index >= {after} "
                    f"within {timeout}s; {self.describe(cp_id)}"
                )
            await self._wait_change(remaining)

    async def wait_connected(self, cp_id: str, *, timeout: float = 5.0) -> CSMSConnection:
        """Wait until that charge point has an open connection."""
        await self._wait_until(lambda: cp_id in self.connected, timeout, f"{cp_id!r} to connect")
        return self.connected[cp_id]

    async def wait_disconnected(self, cp_id: str, *, timeout: float = 5.0) -> None:
        await self._wait_until(
            lambda: cp_id not in self.connected, timeout, f"{cp_id!r} to disconnect"
        )

    async def _wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                refused = [r for r in self.refusals if repr(r.cp_id) in what]
                raise WaitTimeout(
                    f"waited {timeout}s for {what}; connected: {sorted(self.connected)}; "
                    f"refused attempts: {refused[-5:]}"
                )
            await self._wait_change(remaining)

    def describe(self, cp_id: str | None, last: int = 40) -> str:
        """What the log holds for that charge point (the last `last` frames), for messages."""
        seen = [(i, e) for i, e in enumerate(self.log) if cp_id is None or e.cp_id == cp_id]
        state = "connected" if cp_id in self.connected else "not connected"
        if not seen:
            return f"{cp_id!r} is {state}; no frames seen for it"
        lines = [f"  #{i} {e.summary()}" for i, e in seen[-last:]]
        skipped = f" (last {last} of {len(seen)})" if len(seen) > last else ""
        return f"{cp_id!r} is {state}; frames seen{skipped}:\n" + "\n".join(lines)

    async def _wait_change(self, timeout: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout)

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- recording (called by CSMSConnection) -------------------------------------------------

    def stopped(self, transaction: Transaction) -> None:
        """A transaction was stopped for the first time: without the log, the oldest
        stopped one is forgotten once more than `STOPPED_KEPT` are kept."""
        if self.keep_log:
            return
        stopped = self._stopped
        stopped.append(transaction.transaction_id)
        while len(stopped) > self.STOPPED_KEPT:
            self.transactions.pop(stopped.popleft(), None)

    def _record(
        self,
        conn: CSMSConnection,
        direction: str,
        message_type: int,
        unique_id: str | None,
        action: str | None,
        payload: dict[str, Any],
        raw: str,
    ) -> None:
        if direction == "in" and FRAMES.isEnabledFor(logging.INFO):
            FRAMES.info("%s <- %s", conn.id, raw)
        if not self.keep_log:
            return
        if names_secret(raw):  # a ChangeConfiguration(AuthorizationKey) we sent
            raw, payload = redact_frame(raw), redact_value(payload)
        self.log.append(
            LogEntry(
                conn.id, direction, message_type, unique_id, action, payload, datetime.now(UTC), raw
            )
        )
        if self._waiters:
            self._notify()

    def _record_out(self, conn: CSMSConnection, raw: str) -> None:
        if FRAMES.isEnabledFor(logging.INFO):
            FRAMES.info("%s -> %s", conn.id, raw)
        if not self.keep_log:
            return  # no parsing of our own frames unless someone looks at them
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        message_type = data[0] if isinstance(data, list) and data else MALFORMED
        unique_id = (
            data[1]
            if isinstance(data, list) and len(data) > 1 and isinstance(data[1], str)
            else None
        )
        action: str | None = None
        payload: dict[str, Any] = {}
        if message_type == CALL and len(data) == 4:
            action = data[2] if isinstance(data[2], str) else None
            payload = data[3] if isinstance(data[3], dict) else {}
        elif message_type in (CALLRESULT, CALLERROR):
            replying = conn._replying
            if replying is not None and replying[0] == unique_id:
                action = replying[1]
            if message_type == CALLRESULT and len(data) == 3:
                payload = data[2] if isinstance(data[2], dict) else {}
            elif message_type == CALLERROR and len(data) == 5:
                payload = dict(
                    zip(("errorCode", "errorDescription", "errorDetails"), data[2:], strict=True)
                )
            else:
                message_type = MALFORMED
        else:
            message_type = MALFORMED
        self._record(conn, "out", message_type, unique_id, action, payload, raw)

    # -- websocket server hooks --------------------------------------------------------------

    def _refuse(self, cp_id: str, status: int, reason: str) -> None:
        LOGGER.warning("%s: connection refused (%s): %s", cp_id or "<no id>", status, reason)
        self.refusals.append(Refusal(cp_id, status, reason, datetime.now(UTC)))
        self._notify()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        cp_id = cp_id_from_path(request.path)
        if not cp_id:
            self._refuse(cp_id, 404, f"no charge point id in path {request.path!r}")
            return connection.respond(http.HTTPStatus.NOT_FOUND, "No charge point id in path\n")
        password = self.passwords.get(cp_id)
        if self.require_known and password is None and cp_id not in self.known:
            self._refuse(cp_id, 404, "unknown charge point id")
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Unknown charge point\n")
        if password is None:
            return None
        problem = self._check_basic_auth(cp_id, password, request.headers.get("Authorization"))
        if problem is None:
            return None
        self._refuse(cp_id, 401, problem)
        response = connection.respond(http.HTTPStatus.UNAUTHORIZED, f"{problem}\n")
        response.headers["WWW-Authenticate"] = build_www_authenticate_basic("ChargeSim CSMS")
        return response

    @staticmethod
    def _check_basic_auth(cp_id: str, password: str, header: str | None) -> str | None:
        """None when the header carries user=cp_id and the right password, else why not."""
        if header is None:
            return "missing credentials"
        try:
            user, given = parse_authorization_basic(header)
        except InvalidHeader:
            return "unsupported credentials"
        if user != cp_id:
            return f"user {user!r} is not the charge point id"
        # constant time, and bytes so that any non-ASCII password still compares
        if not hmac.compare_digest(
            given.encode(errors="surrogateescape"), password.encode(errors="surrogateescape")
        ):
            return "invalid password"
        return None

    def _select_subprotocol(
        self, connection: ServerConnection, subprotocols: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        if SUBPROTOCOL in subprotocols:
            return SUBPROTOCOL
        cp_id = cp_id_from_path(connection.request.path) if connection.request else ""
        offered = ", ".join(subprotocols) or "none"
        if self.subprotocol_policy == "close":
            self._refuse(cp_id, CloseCode.PROTOCOL_ERROR, f"subprotocol {offered} offered")
            return None  # handshake completes without the header; _handle closes
        self._refuse(cp_id, 400, f"subprotocol {offered} offered, {SUBPROTOCOL} required")
        raise NegotiationError(f"subprotocol {SUBPROTOCOL} required, offered: {offered}")

    async def _handle(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None
        cp_id = cp_id_from_path(websocket.request.path)
        if websocket.subprotocol != SUBPROTOCOL:
            await websocket.close(CloseCode.PROTOCOL_ERROR, f"subprotocol {SUBPROTOCOL} required")
            return
        conn = self.connection_class(cp_id, websocket, self)
        old = self.connected.get(cp_id)
        if old is not None:
            # The newest connection wins: the old one is usually a socket the charger
            # already abandoned and the server has not noticed yet.
            LOGGER.warning("%s: new connection replaces the open one", cp_id)
            old.mark_gone()
            self._spawn(old.websocket.close(CloseCode.NORMAL_CLOSURE, "replaced by new connection"))
        self.connected[cp_id] = conn
        self.connects[cp_id] += 1
        self._notify()
        LOGGER.info("%s connected from %s", cp_id, websocket.remote_address)
        try:
            await conn.start()
        except ConnectionClosed as closed:
            LOGGER.info("%s disconnected (%s)", cp_id, closed)
        except Exception:
            LOGGER.exception("%s: connection handler failed", cp_id)
            raise
        finally:
            conn.mark_gone()
            if self.connected.get(cp_id) is conn:
                del self.connected[cp_id]
            received = websocket.protocol.close_rcvd
            self.closures.append(
                Closure(
                    cp_id,
                    received.code if received is not None else CloseCode.ABNORMAL_CLOSURE,
                    received.reason if received is not None else "",
                    websocket.protocol.close_rcvd_then_sent is True,
                    datetime.now(UTC),
                )
            )
            self._notify()

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
