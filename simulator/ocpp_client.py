"""The OCPP 1.6J client of one connection: an `ocpp.v16.ChargePoint` over `websockets`.

Incoming CALLs are routed by the library to the `@on` handlers below, which ask the runtime
`Charger` what to answer; follow-up messages are sent from `@after` hooks (never from an
`@on` handler: that would deadlock the library's reader). Our own CALLs do not use the
library's `call()`: frames are built as camelCase dicts, checked against the 1.6 schemas
and matched to their answer by unique id, so that a dropped connection fails the pending
call at once instead of after the 30 s timeout.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import ssl
from typing import Any
from urllib.parse import quote

import ocpp.messages
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulator import wire
from simulator.charger import CallFailed, Charger, LinkLost, LinkState

log = logging.getLogger(__name__)

# The library validates in a thread pool by default: no parallelism to gain under the GIL,
# extra latency, and reported races.
ocpp.messages.ASYNC_VALIDATION = False


def _call_logger() -> logging.Logger:
    quiet = logging.getLogger("chargesim.ocpp.frames")
    quiet.setLevel(logging.WARNING)
    return quiet


class ChargePointClient(OcppChargePoint):
    """One live connection of a charger to its CSMS."""

    def __init__(self, charger: Charger, connection: ClientConnection, timeout: float) -> None:
        super().__init__(charger.id, connection, response_timeout=timeout, logger=_call_logger())
        self.charger = charger
        self._timeout = timeout
        self._pending: dict[str, tuple[str, asyncio.Future[Any]]] = {}

    # -- transport for the charger ----------------------------------------------------------

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        wire.validate_request(action, payload)
        unique_id = wire.new_message_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[unique_id] = (action, future)
        try:
            await self._send(wire.encode_call(unique_id, action, payload))
            try:
                message = await asyncio.wait_for(future, self._timeout)
            except TimeoutError:
                raise CallFailed(
                    "Timeout", f"no answer to {action} in {self._timeout:g} s"
                ) from None
        except ConnectionClosed:
            raise LinkLost(f"connection closed while sending {action}") from None
        finally:
            self._pending.pop(unique_id, None)
        if message[0] == wire.CALLERROR:
            code = message[2] if len(message) > 2 else "GenericError"
            description = message[3] if len(message) > 3 else ""
            raise CallFailed(str(code), str(description))
        result = message[2] if len(message) > 2 else None
        if not isinstance(result, dict):
            raise CallFailed("FormationViolation", f"{action} answer is not an object")
        try:
            wire.validate_response(action, result)
        except wire.SchemaViolation as exc:
            raise CallFailed("FormationViolation", str(exc)) from None
        return result

    def fail_pending(self, reason: str) -> None:
        for _action, future in self._pending.values():
            if not future.done():
                future.set_exception(LinkLost(reason))
        self._pending.clear()

    async def _send(self, message: str) -> None:
        self.charger.listener.on_frame(self.charger, "out", message)
        await self._connection.send(message)

    async def route_message(self, raw_msg: str) -> None:  # type: ignore[override]
        self.charger.listener.on_frame(self.charger, "in", raw_msg)
        try:
            message = wire.decode(raw_msg)
        except ValueError:
            message = None
        if (
            isinstance(message, list)
            and len(message) >= 3
            and message[0] in (wire.CALLRESULT, wire.CALLERROR)
        ):
            pending = self._pending.get(message[1])
            if pending is not None and not pending[1].done():
                pending[1].set_result(message)
            else:
                log.info("%s: answer to an unknown call %r ignored", self.id, message[1])
            return
        if self.charger.boot.value == "Rejected":
            return  # Rejected: send nothing and answer nothing until the next boot attempt
        await super().route_message(raw_msg)

    # -- CSMS-initiated operations ------------------------------------------------------------

    @on(Action.remote_start_transaction)
    def on_remote_start(
        self,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict | None = None,
        **_: Any,
    ):
        status, chosen = self.charger.remote_start(id_tag, connector_id, charging_profile)
        self._remote_start_connector = chosen if status == "Accepted" else None
        return call_result.RemoteStartTransaction(status=status)

    @after(Action.remote_start_transaction)
    async def after_remote_start(self, id_tag: str, **_: Any) -> None:
        connector_id = getattr(self, "_remote_start_connector", None)
        self._remote_start_connector = None
        if connector_id is not None:
            await _logged(self.charger.after_remote_start(id_tag, connector_id), self.id)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int, **_: Any):
        return call_result.RemoteStopTransaction(status=self.charger.remote_stop(transaction_id))

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any):
        known, unknown = self.charger.get_configuration(key)
        return call_result.GetConfiguration(
            configuration_key=known or None, unknown_key=unknown or None
        )

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str, **_: Any):
        return call_result.ChangeConfiguration(status=self.charger.change_configuration(key, value))


async def _logged(coro: Any, cp_id: str) -> None:
    """`@after` hooks run fire-and-forget: log what they raise instead of losing it."""
    try:
        await coro
    except Exception:
        log.exception("%s: follow-up after a CSMS request failed", cp_id)


# -- connecting ------------------------------------------------------------------------------


class ConnectError(Exception):
    """A connection attempt failed, with a message a person can act on."""


def connection_url(charger: Charger) -> str:
    base = charger.spec.csms_url.rstrip("/")
    return f"{base}/{quote(charger.id, safe='')}"


def _headers(charger: Charger) -> dict[str, str]:
    if charger.spec.security_profile in (1, 2) and charger.spec.authorization_key:
        token = f"{charger.id}:{charger.spec.authorization_key}".encode()
        return {"Authorization": "Basic " + base64.b64encode(token).decode()}
    return {}


def _ssl_context(charger: Charger) -> ssl.SSLContext | None:
    if not charger.spec.csms_url.startswith("wss://"):
        return None
    context = ssl.create_default_context(cafile=charger.spec.ca_bundle_path or None)
    if charger.spec.security_profile == 3:
        context.load_cert_chain(charger.spec.client_cert_path, charger.spec.client_key_path)
    return context


def describe_failure(exc: BaseException) -> str:
    """Plain words for the charger's status line (never the credentials)."""
    if isinstance(exc, InvalidStatus):
        code = exc.response.status_code
        if code == 401:
            return "CSMS rejected credentials (401)"
        if code == 404:
            return "CSMS does not know this charge point (404)"
        return f"CSMS refused the connection (HTTP {code})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, ConnectError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"network error ({exc.strerror or exc})"
    return f"{type(exc).__name__}: {exc}"


class Backoff:
    """Exponential backoff with full jitter, capped."""

    def __init__(self, base: float = 1.0, cap: float = 60.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** (self.failures - 1))
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


async def run_connection(charger: Charger, *, reconnect_cap: float = 60.0) -> None:
    """Keep one charger connected until cancelled: connect, boot, serve, reconnect."""
    backoff = Backoff(cap=reconnect_cap)
    while True:
        charger.link = LinkState.CONNECTING
        charger.listener.on_change(charger)
        try:
            connection = await _open(charger)
        except asyncio.CancelledError:
            charger.detach()
            raise
        except Exception as exc:  # every failure is reported and retried
            reason = describe_failure(exc)
            delay = backoff.next_delay()
            log.info("%s: cannot connect: %s; retrying in %.1f s", charger.id, reason, delay)
            charger.detach(reason)
            await asyncio.sleep(delay)
            continue
        backoff.reset()
        reason = await _serve(charger, connection)
        delay = backoff.next_delay()
        log.info("%s: connection closed (%s); reconnecting in %.1f s", charger.id, reason, delay)
        await asyncio.sleep(delay)


async def _open(charger: Charger) -> ClientConnection:
    ping = charger.config_int("WebSocketPingInterval")
    connection = await connect(
        connection_url(charger),
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=_headers(charger),
        ssl=_ssl_context(charger),
        compression=None,
        ping_interval=ping or None,
        ping_timeout=ping or None,
        open_timeout=max(charger.config_int("MessageTimeout"), 5),
        max_size=2**20,
        user_agent_header="ChargeSim",
        close_timeout=2,
    )
    if connection.subprotocol != "ocpp1.6":
        await connection.close()
        raise ConnectError(
            f"CSMS did not accept the ocpp1.6 subprotocol (answered {connection.subprotocol!r})"
        )
    return connection


async def _serve(charger: Charger, connection: ClientConnection) -> str:
    client = ChargePointClient(charger, connection, timeout=charger.config_int("MessageTimeout"))
    charger.attach(client)
    boot = asyncio.create_task(_logged(charger.boot_sequence(), charger.id))
    reason = "closed"
    try:
        await client.start()
    except ConnectionClosed as exc:
        reason = f"closed by peer ({exc.rcvd.code})" if exc.rcvd else "connection lost"
    finally:
        client.fail_pending("connection lost")
        boot.cancel()
        charger.detach("" if reason.startswith("closed") else reason)
        await connection.close()
    return reason
