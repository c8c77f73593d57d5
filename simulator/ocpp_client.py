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
import time
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
from simulator.call_errors import check_call
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
        self._followups: set[asyncio.Task[None]] = set()
        self._remote_start: tuple[str, int] | None = None
        self._trigger: tuple[str, int | None] | None = None
        self.raw_payload: dict[str, Any] = {}
        self._handled = frozenset(
            action for action, hooks in self.route_map.items() if "_on_action" in hooks
        )

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

    async def close(self) -> None:
        await self._connection.close()

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake, like a cut cable."""
        transport = self._connection.transport
        if transport is not None:
            transport.abort()

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
            log.info("%s: ignoring a frame that is not JSON: %.200r", self.id, raw_msg)
            return
        if not isinstance(message, list) or not message:
            log.info("%s: ignoring a frame that is not an OCPP-J message: %.200r", self.id, raw_msg)
            return
        kind = message[0]
        if kind in (wire.CALLRESULT, wire.CALLERROR) and len(message) >= 3:
            pending = self._pending.get(message[1])
            if pending is not None and not pending[1].done():
                pending[1].set_result(message)
            else:
                log.info("%s: answer to an unknown call %r ignored", self.id, message[1])
            return
        if kind != wire.CALL:
            log.info("%s: ignoring a frame of unknown message type %r", self.id, kind)
            return
        if self.charger.boot.value == "Rejected":
            return  # Rejected: send nothing and answer nothing until the next boot attempt
        error = check_call(raw_msg, message, self._handled)
        if error is not None:
            if error.unique_id:
                await self._send(wire.encode_error(error.unique_id, error.code, error.description))
            else:
                log.info("%s: ignoring a CALL without a unique id: %.200r", self.id, raw_msg)
            return
        # Handlers read the payload as sent (camelCase, floats), not the library's snake_case.
        self.raw_payload = message[3]
        await super().route_message(raw_msg)

    def spawn(self, coro: Any) -> None:
        """Run a follow-up as a task we keep a reference to (the loop holds tasks weakly)."""
        task = asyncio.get_running_loop().create_task(_logged(coro, self.id))
        self._followups.add(task)
        task.add_done_callback(self._followups.discard)

    # -- CSMS-initiated operations ------------------------------------------------------------
    # Requests are schema-checked in route_message (with the 1.6 error codes), so the
    # library does not check them a second time; our answers are built from its dataclasses.

    @on(Action.remote_start_transaction, skip_schema_validation=True)
    def on_remote_start(self, id_tag: str, connector_id: int | None = None, **_: Any):
        profile = self.raw_payload.get("chargingProfile")
        status, chosen = self.charger.remote_start(id_tag, connector_id, profile)
        if status == "Accepted" and chosen is not None:
            if profile is not None:
                self.charger.pending_profiles[chosen] = profile
            self._remote_start = (id_tag, chosen)
        return call_result.RemoteStartTransaction(status=status)

    @after(Action.remote_start_transaction)
    def after_remote_start(self, **_: Any) -> None:
        request, self._remote_start = self._remote_start, None
        if request is not None:
            self.spawn(self.charger.after_remote_start(*request))

    @on(Action.remote_stop_transaction, skip_schema_validation=True)
    def on_remote_stop(self, transaction_id: int, **_: Any):
        return call_result.RemoteStopTransaction(status=self.charger.remote_stop(transaction_id))

    @on(Action.get_configuration, skip_schema_validation=True)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any):
        known, unknown = self.charger.get_configuration(key)
        return call_result.GetConfiguration(
            configuration_key=known or None, unknown_key=unknown or None
        )

    @on(Action.change_configuration, skip_schema_validation=True)
    def on_change_configuration(self, key: str, value: str, **_: Any):
        return call_result.ChangeConfiguration(status=self.charger.change_configuration(key, value))

    @on(Action.set_charging_profile, skip_schema_validation=True)
    def on_set_charging_profile(self, connector_id: int, **_: Any):
        status = self.charger.on_set_charging_profile(
            connector_id, self.raw_payload["csChargingProfiles"]
        )
        return call_result.SetChargingProfile(status=status)

    @on(Action.clear_charging_profile, skip_schema_validation=True)
    def on_clear_charging_profile(self, **_: Any):
        p = self.raw_payload
        status = self.charger.on_clear_charging_profile(
            p.get("id"), p.get("connectorId"), p.get("chargingProfilePurpose"), p.get("stackLevel")
        )
        return call_result.ClearChargingProfile(status=status)

    @on(Action.get_composite_schedule, skip_schema_validation=True)
    def on_get_composite_schedule(self, connector_id: int, duration: int, **_: Any):
        unit = self.raw_payload.get("chargingRateUnit")
        status, schedule = self.charger.on_get_composite_schedule(connector_id, duration, unit)
        if schedule is None:
            return call_result.GetCompositeSchedule(status=status)
        return call_result.GetCompositeSchedule(
            status=status,
            connector_id=connector_id,
            schedule_start=schedule["startSchedule"],
            charging_schedule=_snake(schedule),
        )

    @on(Action.reset, skip_schema_validation=True)
    def on_reset(self, type: str, **_: Any):
        return call_result.Reset(status="Accepted")

    @after(Action.reset)
    def after_reset(self, type: str, **_: Any) -> None:
        self.spawn(self.charger.after_reset(type))

    @on(Action.trigger_message, skip_schema_validation=True)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any):
        status = self.charger.on_trigger_message(requested_message, connector_id)
        self._trigger = (requested_message, connector_id) if status == "Accepted" else None
        return call_result.TriggerMessage(status=status)

    @after(Action.trigger_message)
    def after_trigger_message(self, **_: Any) -> None:
        request, self._trigger = self._trigger, None
        if request is not None:
            self.spawn(self.charger.after_trigger_message(*request))

    @on(Action.change_availability, skip_schema_validation=True)
    def on_change_availability(self, connector_id: int, type: str, **_: Any):
        return call_result.ChangeAvailability(
            status=self.charger.on_change_availability(connector_id, type)
        )

    @on(Action.unlock_connector, skip_schema_validation=True)
    def on_unlock_connector(self, connector_id: int, **_: Any):
        return call_result.UnlockConnector(status=self.charger.on_unlock_connector(connector_id))

    @on(Action.clear_cache, skip_schema_validation=True)
    def on_clear_cache(self, **_: Any):
        return call_result.ClearCache(status=self.charger.on_clear_cache())

    @on(Action.data_transfer, skip_schema_validation=True)
    def on_data_transfer(self, vendor_id: str, **_: Any):
        status, data = self.charger.on_data_transfer(
            vendor_id, self.raw_payload.get("messageId"), self.raw_payload.get("data")
        )
        return call_result.DataTransfer(status=status, data=data)


def _snake(schedule: dict[str, Any]) -> dict[str, Any]:
    """The library serialises answers from snake_case: hand it the schedule that way."""
    return {
        "duration": schedule.get("duration"),
        "start_schedule": schedule.get("startSchedule"),
        "charging_rate_unit": schedule["chargingRateUnit"],
        "charging_schedule_period": [
            {
                k: v
                for k, v in (
                    ("start_period", p["startPeriod"]),
                    ("limit", p["limit"]),
                    ("number_phases", p.get("numberPhases")),
                )
                if v is not None
            }
            for p in schedule["chargingSchedulePeriod"]
        ],
        **(
            {"min_charging_rate": schedule["minChargingRate"]}
            if schedule.get("minChargingRate") is not None
            else {}
        ),
    }


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
    ca = charger.spec.ca_bundle_path or None
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConnectError(f"CA bundle {ca} cannot be read ({exc})") from None
    if charger.spec.security_profile == 3:
        try:
            context.load_cert_chain(charger.spec.client_cert_path, charger.spec.client_key_path)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"client certificate or key cannot be loaded ({exc})") from None
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
        outage = charger.offline_until - time.monotonic()
        if outage > 0:
            charger.detach(f"network cut ({outage:.0f} s left)")
            await asyncio.sleep(outage)
            continue
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
