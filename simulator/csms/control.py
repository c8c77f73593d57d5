"""The built-in CSMS's control endpoint: make it act, and set how it answers, over HTTP.

A real CSMS is made to act through its own API; a scenario does the same with a `trigger`
step that calls an HTTP hook (issue 16). This is that hook for the built-in CSMS, on a port
of its own: websockets' opening handshake only takes GET requests without a body, so the
CSMS's own port cannot carry a POST with a JSON payload.

    GET    /                                what is here: the CSMS's URL, the operations
    GET    /chargers                        connected charge points and their registration
    POST   /chargers/<cp id>/<Action>       send that CALL (the JSON body is its payload);
                                            the answer is the charger's CALLRESULT payload
    GET    /behaviour                       how the CSMS answers every charger (bootStatus,
                                            bootInterval, defaultIdTagStatus, idTags,
                                            startTransactionStatus, txProfileLimitA: the
                                            TxProfile it sends after each StartTransaction;
                                            `apply_behaviour`)
    POST   /behaviour  (or PUT, PATCH)      change some of it; the answer is all of it
    DELETE /behaviour                       back to how it was when the endpoint started
    GET|POST|DELETE /chargers/<cp id>/behaviour
                                            the same for one charge point only (it may not
                                            be connected yet): chargers running side by
                                            side in scenarios do not see each other's

Answers are JSON. 200: the charger's answer; 400: a payload the CSMS would not send (the
schema's own words), or a bad behaviour; 404: no such charger connected, or no such
operation; 502: the charger answered with a CALLERROR (`callError` holds it) or an answer
that breaks the schema, or went away; 504: no answer within `?timeout=` seconds (default:
the CSMS's response timeout).

It listens on loopback only, and refuses peers that are not loopback, unless built with
`allow_remote=True`; a `token` then makes every request carry `Authorization: Bearer
<token>`. No answer carries a secret: an AuthorizationKey value is masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import http
import ipaddress
import logging
import math
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import orjson
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, validate_payload
from ocpp.v16 import call
from ocpp.v16.datatypes import IdTagInfo

from simulator.ocpp16.redaction import (
    REDACTED,
    is_secret_name,
    redact_query_secrets,
    redact_urls,
    redact_value,
)

from .records import ChargerBehaviour
from .server import CentralSystem, _date_text

LOGGER = logging.getLogger("simulator.csms.control")

# What a scenario may make the CSMS do to a charger (OCPP 1.6 core and the feature profiles
# the built-in CSMS speaks).
OPERATIONS = (
    "CancelReservation",
    "ChangeAvailability",
    "ChangeConfiguration",
    "ClearCache",
    "ClearChargingProfile",
    "DataTransfer",
    "GetCompositeSchedule",
    "GetConfiguration",
    "GetDiagnostics",
    "GetLocalListVersion",
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "ReserveNow",
    "Reset",
    "SendLocalList",
    "SetChargingProfile",
    "TriggerMessage",
    "UnlockConnector",
    "UpdateFirmware",
)

BOOT_STATUSES = ("Accepted", "Pending", "Rejected")
ID_TAG_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
MAX_BODY = 1024 * 1024
READ_TIMEOUT = 10.0  # seconds a client may take to send its request


class BadRequest(ValueError):
    """Input the endpoint refuses, with the HTTP status to answer it with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def default_port(csms_port: int) -> int:
    """The control port when none is given: next to a fixed CSMS port (9000 -> 9001, what a
    scenario expects by default), any free one next to a CSMS on any free port."""
    return csms_port + 1 if 0 < csms_port < 65535 else 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- behaviour: how the CSMS answers chargers ------------------------------------------------

BEHAVIOUR_KEYS = {
    "bootStatus": "boot_status",
    "bootInterval": "boot_interval",
    "defaultIdTagStatus": "default_id_tag_status",
    "startTransactionStatus": "start_transaction_status",
    "txProfileLimitA": "tx_profile_limit",
}


@dataclass(frozen=True)
class Behaviour:
    """How a CentralSystem answers every charger: what DELETE /behaviour goes back to."""

    boot_status: str
    boot_interval: int
    default_id_tag_status: str
    start_transaction_status: str | None
    tx_profile_limit: float | None
    id_tags: dict[str, str | IdTagInfo]

    @classmethod
    def of(cls, csms: CentralSystem) -> Behaviour:
        return cls(
            str(csms.boot_status),
            int(csms.boot_interval),
            str(csms.default_id_tag_status),
            csms.start_transaction_status,
            csms.tx_profile_limit,
            dict(csms.authorize),
        )

    def apply(self, csms: CentralSystem) -> None:
        csms.boot_status = self.boot_status
        csms.boot_interval = self.boot_interval
        csms.default_id_tag_status = self.default_id_tag_status
        csms.start_transaction_status = self.start_transaction_status
        csms.tx_profile_limit = self.tx_profile_limit
        csms.authorize = dict(self.id_tags)
        csms.charger_behaviour.clear()


def behaviour_json(csms: CentralSystem, cp_id: str | None = None) -> dict[str, Any]:
    """How the CSMS answers every charger, or that one (its own settings over the rest),
    camelCase like OCPP."""
    own = csms.charger_behaviour.get(cp_id) if cp_id is not None else None
    tags = dict(csms.authorize)
    if own is not None:
        tags.update(own.id_tags)
    answer: dict[str, Any] = {}
    for key, name in BEHAVIOUR_KEYS.items():
        value = getattr(own, name) if own is not None else None
        answer[key] = getattr(csms, name) if value is None else value
    answer["idTags"] = {name: _tag_json(info) for name, info in sorted(tags.items())}
    return answer


def _tag_json(info: str | IdTagInfo) -> dict[str, Any]:
    if isinstance(info, str):
        return {"status": info}
    fields = {
        "status": str(info.status),
        "expiryDate": info.expiry_date,
        "parentIdTag": info.parent_id_tag,
    }
    return {key: value for key, value in fields.items() if value is not None}


def apply_behaviour(csms: CentralSystem, change: Any, cp_id: str | None = None) -> None:
    """Set what `change` names (the camelCase keys of `behaviour_json`), for every charger
    or for one; all or nothing.

    idTags entries are merged: a status, or {status, expiryDate | expiresIn (seconds from
    now, negative for the past), parentIdTag}; null forgets the tag. A list of {idTag,
    status, ...} says the same. For one charger, null for any other key means "as for
    every charger".
    """
    fields = _parse_behaviour(change, for_one=cp_id is not None)
    tags = fields.pop("id_tags", {})
    if cp_id is None:
        for name, value in fields.items():
            setattr(csms, name, value)
        held = csms.authorize = dict(csms.authorize)
    else:
        own = csms.charger_behaviour.setdefault(cp_id, ChargerBehaviour())
        for name, value in fields.items():
            setattr(own, name, value)
        held = own.id_tags
    for name, info in tags.items():
        if info is None:
            held.pop(name, None)
        else:
            held[name] = info


def _parse_behaviour(change: Any, *, for_one: bool) -> dict[str, Any]:
    if not isinstance(change, dict):
        raise BadRequest("the behaviour must be a JSON object")
    known = {*BEHAVIOUR_KEYS, "idTags"}
    unknown = sorted(set(change) - known)
    if unknown:
        raise BadRequest(
            f"unknown behaviour {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    fields: dict[str, Any] = {}
    for key, value in change.items():
        if key == "idTags":
            continue
        name = BEHAVIOUR_KEYS[key]
        if value is None and (for_one or key in ("startTransactionStatus", "txProfileLimitA")):
            fields[name] = None
        elif key == "txProfileLimitA":
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise BadRequest(f"txProfileLimitA must be amperes > 0, got {value!r}")
            fields[name] = float(value)
        elif key == "bootStatus":
            fields[name] = _choice(key, value, BOOT_STATUSES)
        elif key == "bootInterval":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise BadRequest(
                    f"bootInterval must be a whole number of seconds >= 0, got {value!r}"
                )
            fields[name] = value
        else:
            fields[name] = _choice(key, value, ID_TAG_STATUSES)
    if "idTags" in change:
        tags = change["idTags"]
        if isinstance(tags, list):
            # [{idTag, status, ...}]: the form a template can fill in (YAML keys are not
            # substituted, values are).
            tags = dict(_tag_entry(entry) for entry in tags)
        if not isinstance(tags, dict):
            raise BadRequest(
                "idTags must be an object (idTag -> status or {status, ...}) or a list of "
                "{idTag, status, ...}"
            )
        parsed: dict[str, str | IdTagInfo | None] = {}
        for name, spec in tags.items():
            if not name or len(name) > 20:
                raise BadRequest(f"idTag {name!r} must be 1 to 20 characters (IdToken)")
            parsed[name] = None if spec is None else _id_tag_info(name, spec)
        fields["id_tags"] = parsed
    return fields


def _tag_entry(entry: Any) -> tuple[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("idTag"), str):
        raise BadRequest(f"an idTags entry must be an object with an idTag, got {entry!r}")
    rest = {key: value for key, value in entry.items() if key != "idTag"}
    return entry["idTag"], rest


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _id_tag_info(name: str, spec: Any) -> str | IdTagInfo:
    if isinstance(spec, str):
        return _choice(f"idTags.{name}", spec, ID_TAG_STATUSES)
    if not isinstance(spec, dict):
        raise BadRequest(f"idTags.{name} must be a status or an object, got {spec!r}")
    unknown = sorted(set(spec) - {"status", "expiryDate", "expiresIn", "parentIdTag"})
    if unknown:
        raise BadRequest(f"idTags.{name}: unknown {', '.join(unknown)}")
    status = _choice(f"idTags.{name}.status", spec.get("status"), ID_TAG_STATUSES)
    if "expiryDate" in spec and "expiresIn" in spec:
        raise BadRequest(f"idTags.{name}: give expiryDate or expiresIn, not both")
    expiry: str | None = None
    if "expiryDate" in spec:
        if not isinstance(spec["expiryDate"], str):
            raise BadRequest(f"idTags.{name}.expiryDate must be an ISO 8601 date-time")
        expiry = spec["expiryDate"]
    if "expiresIn" in spec:
        seconds = spec["expiresIn"]
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise BadRequest(f"idTags.{name}.expiresIn must be seconds from now")
        expiry = _date_text(timedelta(seconds=seconds))
    parent = spec.get("parentIdTag")
    if parent is not None and not isinstance(parent, str):
        raise BadRequest(f"idTags.{name}.parentIdTag must be a string")
    if expiry is None and parent is None:
        return status
    return IdTagInfo(status=status, expiry_date=expiry, parent_id_tag=parent)


# -- operations: make the CSMS send a CALL ---------------------------------------------------


async def operate(
    csms: CentralSystem, cp_id: str, action: str, payload: Any, timeout: float | None
) -> dict[str, Any]:
    """Send `action` with this camelCase payload to the charger; its answer, camelCase.

    Defaults a scenario should not have to spell: ReserveNow's reservationId (the next
    free one) and expiryDate (in 15 minutes, or `expiresIn` seconds from now: a scenario
    cannot write a date-time relative to its run), UpdateFirmware's retrieveDate (now), and
    RemoteStopTransaction's transactionId: without one, the charger's running transaction
    (on `connectorId` when given), as a CSMS's own "stop the session on ..." would.
    ReserveNow, CancelReservation, SendLocalList and GetDiagnostics go through the CSMS's
    own methods, so that it remembers them as it does for a test.
    """
    if action not in OPERATIONS:
        raise BadRequest(
            f"no operation {action!r}; operations: {', '.join(OPERATIONS)}", status=404
        )
    if not isinstance(payload, dict):
        raise BadRequest(f"the {action} payload must be a JSON object")
    payload = dict(payload)
    if action == "ReserveNow":
        payload.setdefault("reservationId", csms.next_reservation_id)
        payload["expiryDate"] = _reservation_expiry(payload)
    elif action == "UpdateFirmware":
        payload.setdefault("retrieveDate", _date_text(timedelta(0)))
    elif action == "RemoteStopTransaction" and "transactionId" not in payload:
        payload["transactionId"] = _running_transaction(
            csms, cp_id, payload.pop("connectorId", None)
        )
    try:
        await validate_payload(Call("control", action, payload), "1.6")
    except OCPPError as error:
        # The schema's own words are in the details; the description is generic.
        details = error.details if isinstance(error.details, dict) else {}
        cause = _unquoted_secrets(str(details.get("cause") or error.description), payload)
        raise BadRequest(f"{action} payload refused: {cause}") from None
    try:
        csms.connection(cp_id)
    except KeyError as exc:
        raise BadRequest(str(exc.args[0]), status=404) from None
    snake = camel_to_snake_case(payload)
    if action not in _REMEMBERED:
        request = getattr(call, action)(**snake)
        answer = await csms.call(cp_id, request, timeout=timeout)
        result: dict[str, Any] = redact_value(
            snake_to_camel_case(remove_nones(serialize_as_dict(answer)))
        )
        return result
    # The CSMS's own methods wait with its response timeout: bound them by this one too.
    async with asyncio.timeout(timeout):
        return await _remembered(csms, cp_id, action, snake)


_YEAR_S = 365 * 86400


def _reservation_expiry(payload: dict[str, Any]) -> Any:
    """ReserveNow's expiryDate: as given, or `expiresIn` seconds from now (taken out of the
    payload, which the schema would refuse with it), or in 15 minutes."""
    if "expiresIn" not in payload:
        return payload.get("expiryDate", _date_text(timedelta(minutes=15)))
    seconds = payload.pop("expiresIn")
    if "expiryDate" in payload:
        raise BadRequest("ReserveNow: give expiryDate or expiresIn, not both")
    number = not isinstance(seconds, bool) and isinstance(seconds, int | float)
    if not number or not 0 < seconds <= _YEAR_S:
        raise BadRequest(
            f"ReserveNow: expiresIn must be seconds from now (0 to a year), got {seconds!r}"
        )
    return _date_text(timedelta(seconds=seconds))


def _unquoted_secrets(cause: str, payload: dict[str, Any]) -> str:
    """jsonschema's words for a refused payload, which quote the value at fault: without
    the AuthorizationKey a ChangeConfiguration sets, nor a URL's password or signature (a
    scenario's verdict quotes this answer, and its result and JUnit file keep it)."""
    if any(is_secret_name(payload[name]) for name in payload if name.lower() == "key"):
        secret = payload.get("value")
        if secret is not None:
            cause = cause.replace(repr(secret), REDACTED)
            if str(secret) in cause:  # quoted some other way
                cause = "it does not fit the schema (not quoted: it sets the AuthorizationKey)"
    return redact_query_secrets(redact_urls(cause))


# Operations the CSMS keeps a record of (reservations, local lists, diagnostics files).
_REMEMBERED = frozenset({"ReserveNow", "CancelReservation", "SendLocalList", "GetDiagnostics"})


async def _remembered(
    csms: CentralSystem, cp_id: str, action: str, snake: dict[str, Any]
) -> dict[str, Any]:
    if action == "ReserveNow":
        status = await csms.reserve_now(
            cp_id,
            snake["connector_id"],
            snake["id_tag"],
            snake["expiry_date"],
            reservation_id=snake["reservation_id"],
            parent_id_tag=snake.get("parent_id_tag"),
        )
        return {"status": status}
    if action == "CancelReservation":
        return {"status": await csms.cancel_reservation(cp_id, snake["reservation_id"])}
    if action == "SendLocalList":
        entries: dict[str, str | IdTagInfo | None] = {}
        for item in snake.get("local_authorization_list") or ():
            info = item.get("id_tag_info")
            entries[item["id_tag"]] = None if info is None else IdTagInfo(**info)
        status = await csms.send_local_list(
            cp_id, snake["list_version"], entries, snake["update_type"]
        )
        return {"status": status}
    if action == "GetDiagnostics":
        file_name = await csms.get_diagnostics(
            cp_id,
            snake["location"],
            start_time=snake.get("start_time"),
            stop_time=snake.get("stop_time"),
            retries=snake.get("retries"),
            retry_interval=snake.get("retry_interval"),
        )
        return {} if file_name is None else {"fileName": file_name}
    raise AssertionError(f"{action} is not one of {sorted(_REMEMBERED)}")


def _running_transaction(csms: CentralSystem, cp_id: str, connector_id: Any) -> int:
    running = [
        t
        for t in csms.transactions.values()
        if t.cp_id == cp_id
        and t.started_here
        and not t.stopped
        and (connector_id is None or t.connector_id == connector_id)
    ]
    if not running:
        where = "" if connector_id is None else f" on connector {connector_id}"
        raise BadRequest(f"{cp_id} has no running transaction{where} to stop", status=409)
    return max(t.transaction_id for t in running)


# -- the HTTP server ---------------------------------------------------------------------------


class ControlServer:
    """The control endpoint of one CentralSystem, on the CentralSystem's event loop."""

    def __init__(
        self,
        csms: CentralSystem,
        *,
        allow_remote: bool = False,
        token: str | None = None,
    ) -> None:
        self.csms = csms
        self.allow_remote = allow_remote
        self._token = token
        self._initial = Behaviour.of(csms)
        self._server: asyncio.Server | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, or_any: bool = False) -> int:
        """Listen; port 0 picks a free port, as does a taken port with `or_any` (for a
        default port, which must not stop the CSMS from starting). Returns the port."""
        if self._server is not None:
            raise RuntimeError("ControlServer already started")
        if not self.allow_remote and not is_loopback(host):
            raise ValueError(
                f"the CSMS control endpoint listens on loopback only, not {host!r}, "
                "unless remote control is explicitly allowed"
            )
        try:
            self._server = await asyncio.start_server(self._client, host, port)
        except OSError as exc:
            if not (or_any and port and exc.errno == errno.EADDRINUSE):
                raise
            LOGGER.info("control port %d is taken; using any free port", port)
            self._server = await asyncio.start_server(self._client, host, 0)
        self._host = host
        self._port = self._server.sockets[0].getsockname()[1]
        LOGGER.info("CSMS control endpoint on %s", self.url)
        return self._port

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ControlServer not started")
        return self._port

    @property
    def url(self) -> str:
        """http://host:port, what a scenario knows as ${csms_control}."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> ControlServer:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- one request per connection ----------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, TimeoutError) as exc:
            LOGGER.info("control request dropped: %s", exc)
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        request: h11.Request | None = None
        body = bytearray()
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await reader.read(65536))
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > MAX_BODY:
                            await self._send(writer, 413, {"error": "body over 1 MiB"})
                            return
                    elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        break
        except h11.RemoteProtocolError as exc:
            await self._send(writer, 400, {"error": f"not an HTTP/1.1 request: {exc}"})
            return
        if request is None:
            return
        # Checked once the request is read: closing on unread bytes would reset the
        # connection, and the peer would never see why.
        peer = writer.get_extra_info("peername")
        if not self.allow_remote and not (peer and is_loopback(str(peer[0]))):
            await self._send(writer, 403, {"error": "control from loopback only"})
            return
        status, answer = await self._answer(request, bytes(body))
        await self._send(writer, status, answer)

    async def _answer(self, request: h11.Request, body: bytes) -> tuple[int, Any]:
        method = request.method.decode("ascii", "replace").upper()
        if self._token is not None and not self._authorized(request):
            return 401, {"error": "missing or wrong bearer token"}
        target = urlsplit(request.target.decode("ascii", "replace"))
        parts = [unquote(part) for part in target.path.strip("/").split("/") if part]
        query = parse_qs(target.query)
        try:
            payload = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            return 400, {"error": f"the body is not JSON: {exc}"}
        try:
            return await self._route(method, parts, query, payload)
        except BadRequest as exc:
            return exc.status, {"error": str(exc)}
        except Exception:
            LOGGER.exception("control request %s %s failed", method, target.path)
            return 500, {"error": "the control endpoint failed; see the CSMS's log"}

    async def _route(
        self, method: str, parts: list[str], query: dict[str, list[str]], payload: Any
    ) -> tuple[int, Any]:
        csms = self.csms
        if not parts:
            self._allow(method, "GET")
            return 200, {
                "csms": csms.url,
                "operations": list(OPERATIONS),
                "chargers": "/chargers",
                "behaviour": "/behaviour",
            }
        if parts == ["behaviour"]:
            if method == "GET":
                return 200, behaviour_json(csms)
            if method == "DELETE":
                self._initial.apply(csms)
                return 200, behaviour_json(csms)
            self._allow(method, "GET", "POST", "PUT", "PATCH", "DELETE")
            apply_behaviour(csms, payload)
            LOGGER.info("CSMS behaviour changed: %s", sorted(payload))
            return 200, behaviour_json(csms)
        if len(parts) == 3 and parts[0] == "chargers" and parts[2] == "behaviour":
            cp_id = parts[1]
            if method == "DELETE":
                csms.charger_behaviour.pop(cp_id, None)
            elif method != "GET":
                self._allow(method, "GET", "POST", "PUT", "PATCH", "DELETE")
                apply_behaviour(csms, payload, cp_id)
                LOGGER.info("CSMS behaviour for %s changed: %s", cp_id, sorted(payload))
            return 200, behaviour_json(csms, cp_id)
        if parts == ["chargers"]:
            self._allow(method, "GET")
            return 200, {
                "connected": sorted(csms.connected),
                "registration": dict(sorted(csms.registration.items())),
            }
        if len(parts) == 3 and parts[0] == "chargers":
            self._allow(method, "POST")
            cp_id, action = parts[1], parts[2]
            timeout = _timeout(query)
            try:
                return 200, await operate(csms, cp_id, action, payload, timeout)
            except OCPPError as error:
                return 502, {
                    "error": f"{cp_id} answered {action} with {error.code}",
                    "callError": {
                        "errorCode": error.code,
                        "errorDescription": error.description,
                        "errorDetails": redact_value(error.details),
                    },
                }
            except ConnectionError as exc:
                return 502, {"error": str(exc)}
            except TimeoutError as exc:
                return 504, {"error": str(exc) or f"{cp_id} did not answer {action} in time"}
        raise BadRequest(f"no such path /{'/'.join(parts)}", status=404)

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise BadRequest(f"{method} not allowed here; use {', '.join(allowed)}", status=405)

    def _authorized(self, request: h11.Request) -> bool:
        assert self._token is not None
        for name, value in request.headers:
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    return hmac.compare_digest(given.strip().encode(), self._token.encode())
        return False

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, answer: Any) -> None:
        """One JSON response, then the connection closes (h11 only parses requests)."""
        data = orjson.dumps(answer, default=_json_default)
        head = (
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode("ascii") + data)
        await writer.drain()


def _json_default(value: Any) -> Any:
    # The ocpp library reads 1.6 schedules' numbers as Decimal (their schema's multipleOf).
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _timeout(query: dict[str, list[str]]) -> float | None:
    values = query.get("timeout")
    if not values:
        return None
    try:
        seconds = float(values[-1])
    except ValueError:
        seconds = math.nan
    if not (0 < seconds <= 3600):
        raise BadRequest(f"timeout must be seconds within 0 and 3600, got {values[-1]!r}")
    return seconds
