"""The runtime charge point: OCPP behaviour of one charger, independent of the socket.

Plain Python. It talks to the central system through a `Transport` (the OCPP client of the
current connection, or a fake in unit tests) and reports what happened to a `Listener`
(persistence, dashboard events). Outgoing messages go through one ordered queue per
charger, drained by a short-lived task while the charger is online and booted: one
outstanding CALL at a time, in order, as OCPP-J requires.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Any, Protocol

from simulator.contract import FAULT_CODES, config_keys
from simulator.core.battery import Battery, VehicleSpec
from simulator.core.clock import now_iso
from simulator.core.evse import ConnectorStatus, Evse, IllegalTransition
from simulator.core.operations import Operations, new_profile_store
from simulator.core.outbox import MessageQueue, Outgoing
from simulator.core.smart_charging import Limit

log = logging.getLogger(__name__)

Status = ConnectorStatus


class BootState(StrEnum):
    NONE = "None"  # not booted since power-on
    PENDING = "Pending"
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class LinkState(StrEnum):
    OFFLINE = "offline"
    CONNECTING = "connecting"
    ONLINE = "online"


class CallFailed(Exception):
    """The CSMS answered a CALLERROR, or did not answer in time."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description


class LinkLost(Exception):
    """The connection went away while a call was outstanding."""


AnswerCallback = Callable[[dict[str, Any] | None, Exception | None], None]


class Transport(Protocol):
    def send_call(self, action: str, payload: dict[str, Any], done: AnswerCallback) -> None:
        """Send a CALL now; `done(result, None)` or `done(None, CallFailed | LinkLost)`
        follows exactly once (possibly before this returns)."""

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]: ...

    async def close(self) -> None: ...

    def abort(self) -> None: ...


class Listener:
    """What the charger tells the world; every method is cheap and must not block."""

    def on_change(self, charger: Charger) -> None:
        """Anything visible changed (status, power, link, boot)."""

    def on_config(self, charger: Charger, key: str, value: str) -> None:
        """A configuration value changed and must be persisted."""

    def on_frame(self, charger: Charger, direction: str, text: str) -> None:
        """An OCPP frame went out ("out") or came in ("in")."""

    def on_transaction(self, charger: Charger, tx: LocalTransaction) -> None:
        """A transaction started, got its id, or stopped."""

    def on_profiles(self, charger: Charger) -> None:
        """The installed charging profiles changed and must be persisted."""

    def on_availability(self, charger: Charger) -> None:
        """ChangeAvailability changed what must survive a restart."""


@dataclass(slots=True)
class ChargerSpec:
    charge_point_id: str
    vendor: str = "ChargeSim"
    model: str = "Virtual AC 22"
    serial_number: str = ""
    firmware_version: str = "1.0.0"
    power_type: str = "AC"
    max_power_w: float = 22_000.0
    phases: int = 3
    voltage_v: float = 230.0
    csms_url: str = ""
    security_profile: int = 0
    authorization_key: str = ""
    ca_bundle_path: str = ""
    client_cert_path: str = ""
    client_key_path: str = ""
    default_vehicle: VehicleSpec | None = None
    simulate_ev_on_remote_start: bool = False
    reject_triggered_boot: bool = False
    auto_connect: bool = True
    db_id: int | None = None
    location_id: int | None = None

    def __repr__(self) -> str:
        # Never let the AuthorizationKey reach a log line through a repr.
        return f"ChargerSpec({self.charge_point_id!r})"


@dataclass(slots=True, eq=False)
class LocalTransaction:
    connector_id: int
    id_tag: str
    meter_start: int
    started_at: str
    local_id: str = field(default_factory=lambda: f"{time.time_ns():x}{random.getrandbits(16):04x}")
    transaction_id: int | None = None  # the CSMS's id, once StartTransaction is confirmed
    meter_stop: int | None = None
    stopped_at: str | None = None
    stop_reason: str | None = None
    begin_values: list[dict[str, Any]] = field(default_factory=list)
    aligned_values: list[dict[str, Any]] = field(default_factory=list)

    @property
    def wire_id(self) -> int:
        """The id to put on the wire: -1 until the CSMS confirmed the start (OCPP 1.6)."""
        return self.transaction_id if self.transaction_id is not None else -1


class Charger(Operations):
    """One simulated charge point with its EVSEs (connector id = index + 1)."""

    def __init__(
        self,
        spec: ChargerSpec,
        evses: list[Evse],
        config: dict[str, str] | None = None,
        listener: Listener | None = None,
        vehicles: list[VehicleSpec] | None = None,
    ) -> None:
        self.spec = spec
        self.id = spec.charge_point_id  # read on every frame: an attribute, not a property
        self.evses = evses
        self.config = ConfigValues(config_keys.defaults(len(evses)))
        if config:
            self.config.update({k: v for k, v in config.items() if k != "AuthorizationKey"})
        self.config["NumberOfConnectors"] = str(len(evses))
        self.listener = listener or Listener()
        self.vehicles = vehicles or []
        self.boot = BootState.NONE
        self.link = LinkState.OFFLINE
        self.link_error = ""
        self.connector0_status = ConnectorStatus.AVAILABLE
        self.charger_unavailable = False
        self.transport: Transport | None = None
        self.queue = MessageQueue()
        self.transactions: dict[int, LocalTransaction] = {}
        self.auth_cache: dict[str, str] = {}
        self.pending_authorizations: dict[int, str] = {}  # connector -> idTag awaiting a plug
        self.scheduled_availability: dict[int, str] = {}
        self.next_heartbeat = 0.0
        self.next_sample: dict[int, float] = {}
        self.last_clock_slot = 0
        self._in_flight: Outgoing | None = None  # the queue's CALL awaiting its answer
        self._pumping = False
        self._pump_again = False
        self._wake_handle: asyncio.TimerHandle | None = None
        self._timers: dict[tuple[str, int], asyncio.TimerHandle] = {}
        self._clock_offset = 0.0
        self._reboot_task: asyncio.Task[None] | None = None
        self.offline_until = 0.0
        self.locked_cables: set[int] = set()
        self.availability: dict[int, str] = {
            e.connector_id: "Inoperative" for e in evses if e.status is Status.UNAVAILABLE
        }
        self.pending_profiles: dict[int, dict[str, Any]] = {}
        self.profiles = new_profile_store(self)
        self.limits: dict[int, Limit] = {}
        self.limits_dirty = False
        self.last_sent_status: dict[int, tuple[str, str]] = {}

    def __repr__(self) -> str:
        return f"<Charger {self.id} {self.link} boot={self.boot}>"

    # -- identity and configuration ---------------------------------------------------------

    def evse(self, connector_id: int) -> Evse:
        if not 1 <= connector_id <= len(self.evses):
            raise KeyError(f"{self.id} has no connector {connector_id}")
        return self.evses[connector_id - 1]

    def config_int(self, key: str) -> int:
        return self.config.parsed(key, _as_int)

    def config_bool(self, key: str) -> bool:
        return self.config.parsed(key, _as_bool)

    def config_list(self, key: str) -> list[str]:
        return self.config.parsed(key, config_keys.as_list)

    def get_configuration(self, keys: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
        """GetConfiguration: known keys (never AuthorizationKey's value) and unknown ones."""
        wanted = keys or [k for k in config_keys.KEYS if not config_keys.KEYS[k].write_only]
        known: list[dict[str, Any]] = []
        unknown: list[str] = []
        for key in wanted:
            spec = config_keys.KEYS.get(key)
            if spec is None:
                unknown.append(key)
            elif spec.write_only:
                # The spec lets a write-only key be reported without its value.
                known.append({"key": key, "readonly": False})
            else:
                known.append({"key": key, "readonly": spec.readonly, "value": self.config[key]})
        limit = self.config_int("GetConfigurationMaxKeys")
        return known[: max(limit, 1)] if keys is None else known, unknown

    def change_configuration(self, key: str, value: str) -> str:
        """ChangeConfiguration: Accepted, RebootRequired, Rejected or NotSupported."""
        spec = config_keys.KEYS.get(key)
        if spec is None:
            return "NotSupported"
        if spec.readonly:
            return "Rejected"
        try:
            value = config_keys.normalise(key, value)
        except config_keys.InvalidValue as exc:
            log.info("%s: ChangeConfiguration %s rejected: %s", self.id, key, exc)
            return "Rejected"
        if spec.write_only:
            self.spec.authorization_key = value
        else:
            self.config[key] = value
        self.listener.on_config(self, key, value)
        self._apply_config(key)
        return "RebootRequired" if spec.reboot_required else "Accepted"

    def _apply_config(self, key: str) -> None:
        now = time.monotonic()
        if key == "HeartbeatInterval":
            self.next_heartbeat = now + self.config_int("HeartbeatInterval")
        elif key == "MeterValueSampleInterval":
            interval = self.config_int("MeterValueSampleInterval")
            for connector_id in self.transactions:
                self.next_sample[connector_id] = now + interval if interval else 0.0
        elif key == "AuthorizationCacheEnabled" and not self.config_bool(key):
            self.auth_cache.clear()

    # -- connection lifecycle (called by the connection runner) ----------------------------

    def attach(self, transport: Transport) -> None:
        self.transport = transport
        self.link = LinkState.ONLINE
        self.link_error = ""
        self.listener.on_change(self)

    def detach(self, error: str = "") -> None:
        self.transport = None
        self._in_flight = None
        self.link = LinkState.OFFLINE
        self.link_error = error
        # Non-transactional messages are not kept: after an outage the current status is sent.
        self.queue.drop_non_transactional(LinkLost(f"{self.id} went offline"))
        self.listener.on_change(self)

    def cut_network(self, seconds: float) -> None:
        """Fault injection: the network goes away now and stays down `seconds`.

        Not a reboot: transaction messages queue up in the outbox, and after the outage the
        charger reconnects without a BootNotification and reports its current statuses.
        """
        if seconds <= 0:
            raise ActionError("the outage must last more than 0 seconds")
        self.offline_until = time.monotonic() + seconds
        if self.transport is not None:
            self.transport.abort()
        self.listener.on_change(self)

    def power_cycle(self) -> None:
        """A reboot: the next connection starts with a BootNotification."""
        self.boot = BootState.NONE

    @property
    def online(self) -> bool:
        return self.link is LinkState.ONLINE and self.transport is not None

    async def boot_sequence(self) -> None:
        """Run after each connect: boot if needed, then report current statuses."""
        while self.online and self.boot is not BootState.ACCEPTED:
            status, interval = await self._send_boot_notification()
            if status == "Accepted":
                break
            # Pending or Rejected: retry after the interval (our own backoff if 0).
            await asyncio.sleep(interval if interval > 0 else 30 + random.uniform(0, 10))
        if not self.online:
            return
        self.send_all_statuses()
        self.wake()

    async def _send_boot_notification(self) -> tuple[str, int]:
        payload: dict[str, Any] = {
            "chargePointVendor": self.spec.vendor[:20],
            "chargePointModel": self.spec.model[:20],
            "firmwareVersion": self.spec.firmware_version[:50],
        }
        if self.spec.serial_number:
            payload["chargePointSerialNumber"] = self.spec.serial_number[:25]
        assert self.transport is not None
        try:
            result = await self.transport.call("BootNotification", payload)
        except CallFailed as exc:
            log.warning("%s: BootNotification failed: %s", self.id, exc)
            return "Rejected", 0
        status = result["status"]
        # Any int64 passes the range check; a timer or a HeartbeatInterval beyond the key's
        # own maximum would not mean anything (and 2^63 s overflows asyncio's clock).
        interval = min(int(result.get("interval", 0)), _HEARTBEAT_MAX)
        self._sync_clock(result.get("currentTime"))
        self.boot = BootState(status)
        if status == "Accepted" and interval > 0:
            self.config["HeartbeatInterval"] = str(interval)
            self.listener.on_config(self, "HeartbeatInterval", str(interval))
        self.next_heartbeat = time.monotonic() + self.config_int("HeartbeatInterval")
        self.listener.on_change(self)
        return status, interval

    async def send_triggered_boot(self) -> None:
        """TriggerMessage(BootNotification) after Accepted: send one, as real chargers do."""
        if self.online:
            await self._send_boot_notification()

    def _sync_clock(self, current_time: str | None) -> None:
        if not current_time:
            return
        try:
            from simulator.core.clock import parse_iso

            moment = parse_iso(current_time)
        except ValueError:
            log.info("%s: CSMS sent an unparseable currentTime %r", self.id, current_time)
            return
        if not _CLOCK_RANGE[0] <= moment < _CLOCK_RANGE[1]:
            # A clock near datetime's limits would make every later date computation
            # (intervals, schedules, the composite window) overflow: keep our own.
            log.info("%s: ignoring a currentTime out of range: %r", self.id, current_time)
            return
        self._clock_offset = moment.timestamp() - time.time()

    # -- the outgoing queue ----------------------------------------------------------------

    def enqueue(self, item: Outgoing) -> None:
        if not item.transactional and not self.online:
            if item.future is not None and not item.future.done():
                item.future.set_exception(LinkLost(f"{self.id} is offline"))
            return
        self.queue.append(item)
        if item.durable:  # else the group commit that makes it durable wakes the queue
            self.wake()

    def send(self, action: str, payload: dict[str, Any], **kwargs: Any) -> Outgoing:
        item = Outgoing(action, payload, **kwargs)
        self.enqueue(item)
        return item

    async def request(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a non-transactional message and wait for its answer (e.g. Authorize)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.enqueue(Outgoing(action, payload, future=future))
        return await future

    def wake(self) -> None:
        """Send the next ready message if nothing is outstanding.

        The queue is drained by callbacks, not by a task: each answer sends the next
        message at once. One outstanding CALL at a time, in order, as OCPP-J requires.
        """
        if self._pumping:
            self._pump_again = True  # an answer arrived while sending: go round again
            return
        self._pumping = True
        try:
            self._pump_again = True
            while self._pump_again:
                self._pump_again = False
                self._send_next()
        finally:
            self._pumping = False

    def _send_next(self) -> None:
        if self._in_flight is not None or not self.queue:
            return
        if not self.online or self.boot is not BootState.ACCEPTED:
            return
        item = self.queue.next_ready(time.monotonic())
        if item is None:
            soonest = self.queue.soonest_retry()
            if soonest is not None:
                self._schedule_wake(max(soonest - time.monotonic(), 0.0))
            return  # else waiting for durability: the sink wakes us
        transport = self.transport
        assert transport is not None
        self._in_flight = item
        try:
            transport.send_call(
                item.action, item.wire_payload(), lambda r, e: self._answered(item, r, e)
            )
        except Exception as exc:  # a message we built wrong can never go: drop it, loudly
            log.exception("%s: %s cannot be sent; dropped", self.id, item.action)
            if self._in_flight is item:
                self._in_flight = None
            self.queue.remove(item)
            if item.future is not None and not item.future.done():
                item.future.set_exception(CallFailed("InternalError", str(exc)))
            self._pump_again = True

    def _answered(
        self, item: Outgoing, result: dict[str, Any] | None, error: Exception | None
    ) -> None:
        if self._in_flight is not item:
            return  # an answer for a connection that is gone
        self._in_flight = None
        if isinstance(error, CallFailed):
            self._failed(item, error)
        elif error is not None:
            return  # the link is gone: reconnecting wakes the queue again
        else:
            self.queue.remove(item)
            if item.on_result is not None:
                try:
                    item.on_result(result)  # type: ignore[arg-type]
                except Exception:
                    log.exception("%s: handling the answer to %s failed", self.id, item.action)
            if item.future is not None and not item.future.done():
                item.future.set_result(result)  # type: ignore[arg-type]
        self.wake()

    def _failed(self, item: Outgoing, exc: CallFailed) -> None:
        if not item.transactional:
            log.info("%s: %s failed (%s); not retried", self.id, item.action, exc)
            self.queue.remove(item)
            if item.future is not None and not item.future.done():
                item.future.set_exception(exc)
            return
        interval = self.config_int("TransactionMessageRetryInterval")
        if self.queue.retry_later(item, self.config_int("TransactionMessageAttempts"), interval):
            log.info(
                "%s: %s failed (%s); attempt %d in %ss",
                self.id,
                item.action,
                exc,
                item.attempts + 1,
                interval * item.attempts,
            )
        else:
            log.warning(
                "%s: dropping %s after %d failed attempts (last: %s)",
                self.id,
                item.action,
                item.attempts,
                exc,
            )

    def _schedule_wake(self, delay: float) -> None:
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        self._wake_handle = asyncio.get_running_loop().call_later(delay, self.wake)

    # -- status ----------------------------------------------------------------------------

    def set_status(
        self,
        evse: Evse,
        status: ConnectorStatus,
        error_code: str = "NoError",
        info: str | None = None,
    ) -> bool:
        """Move a connector to a new status and report it; illegal moves raise."""
        if not evse.transition(status, error_code, info):
            return False
        self._status_notification(evse.connector_id, evse.status, evse.error_code, evse.info)
        self.listener.on_change(self)
        return True

    def _status_notification(
        self,
        connector_id: int,
        status: str,
        error_code: str = "NoError",
        info: str | None = None,
        *,
        settled: bool = False,
    ) -> None:
        if not self.online or self.boot is not BootState.ACCEPTED:
            return  # sent with the current status after (re)boot
        minimum = self.config_int("MinimumStatusDuration")
        if minimum > 0 and connector_id > 0 and not settled:
            # Only a status that lasts MinimumStatusDuration is reported.
            self._start_timer("status", connector_id, minimum, self._send_settled_status)
            return
        key = (str(status), error_code)
        if settled and self.last_sent_status.get(connector_id) == key:
            return
        self.last_sent_status[connector_id] = key
        payload: dict[str, Any] = {
            "connectorId": connector_id,
            "errorCode": error_code,
            "status": str(status),
            "timestamp": now_iso(),
        }
        if info:
            payload["info"] = info[:50]
        self.send("StatusNotification", payload)

    def _send_settled_status(self, connector_id: int) -> None:
        evse = self.evse(connector_id)
        self._status_notification(
            connector_id, evse.status, evse.error_code, evse.info, settled=True
        )

    def send_all_statuses(self) -> None:
        """After a (re)boot: the current status of every connector, not the history."""
        self.last_sent_status.clear()
        self._status_notification(0, self.connector0_status, settled=True)
        for evse in self.evses:
            self._status_notification(
                evse.connector_id, evse.status, evse.error_code, evse.info, settled=True
            )

    def send_status(self, connector_id: int) -> None:
        if connector_id == 0:
            self._status_notification(0, self.connector0_status)
        else:
            evse = self.evse(connector_id)
            self._status_notification(connector_id, evse.status, evse.error_code, evse.info)

    # -- heartbeat ---------------------------------------------------------------------------

    def heartbeat_due(self, now: float) -> bool:
        return (
            self.online
            and self.boot is BootState.ACCEPTED
            and self.config_int("HeartbeatInterval") > 0
            and now >= self.next_heartbeat
        )

    def send_heartbeat(self) -> None:
        self.next_heartbeat = time.monotonic() + self.config_int("HeartbeatInterval")
        self.send("Heartbeat", {}, on_result=lambda r: self._sync_clock(r.get("currentTime")))

    # -- authorization -------------------------------------------------------------------

    async def authorize(self, id_tag: str) -> str:
        """Authorize an idTag: online through the CSMS, offline by cache/configuration."""
        if self.online and self.boot is BootState.ACCEPTED:
            try:
                result = await self.request("Authorize", {"idTag": id_tag})
            except (CallFailed, LinkLost) as exc:
                log.info("%s: Authorize failed (%s); deciding offline", self.id, exc)
            else:
                status = result["idTagInfo"]["status"]
                if self.config_bool("AuthorizationCacheEnabled"):
                    self.auth_cache[id_tag] = status
                return status
        cached = (
            self.auth_cache.get(id_tag) if self.config_bool("AuthorizationCacheEnabled") else None
        )
        if cached == "Accepted" and self.config_bool("LocalAuthorizeOffline"):
            return "Accepted"
        if cached is None and self.config_bool("AllowOfflineTxForUnknownId"):
            return "Accepted"
        return cached if cached not in (None, "Accepted") else "Invalid"

    # -- local actions (dashboard, API, tests) --------------------------------------------

    def plug_in(
        self, connector_id: int, vehicle: VehicleSpec, soc: float = 20.0, target_soc: float = 100.0
    ) -> None:
        evse = self.evse(connector_id)
        if evse.battery is not None:
            raise ActionError("a vehicle is already plugged in")
        if evse.status in (Status.FAULTED, Status.UNAVAILABLE):
            raise ActionError(f"connector {connector_id} is {evse.status}")
        if not 0 <= soc <= 100 or not 0 < target_soc <= 100:
            raise ActionError("SoC must be within 0–100 %")
        if self.spec.power_type == "DC" and vehicle.dc_max_kw <= 0:
            raise ActionError(f"{vehicle.name} cannot charge on DC")
        evse.battery = Battery(vehicle, soc, max(target_soc, soc))
        evse.soc = soc
        self._cancel_timer("connection-timeout", connector_id)
        tx = self.transactions.get(connector_id)
        if tx is not None:
            # The EV came back during a transaction (StopTransactionOnEVSideDisconnect=false).
            self.set_status(evse, Status.CHARGING)
        elif connector_id in self.pending_authorizations:
            id_tag = self.pending_authorizations.pop(connector_id)
            if evse.status is not Status.PREPARING:
                self.set_status(evse, Status.PREPARING)
            self.start_transaction(connector_id, id_tag)
        else:
            # Plugged in, waiting for an idTag: a real charger waits as long as it takes.
            self.set_status(evse, Status.PREPARING)
        self.listener.on_change(self)

    async def present_id_tag(self, connector_id: int, id_tag: str) -> str:
        """A driver holds a card to the reader: start, or stop their own transaction."""
        evse = self.evse(connector_id)
        tx = self.transactions.get(connector_id)
        if tx is not None:
            if tx.id_tag == id_tag:
                self.stop_transaction(connector_id, "Local", id_tag=id_tag)
                return "Stopped"
            raise ActionError(f"connector {connector_id} is in a transaction of another idTag")
        if evse.status in (Status.FAULTED, Status.UNAVAILABLE):
            raise ActionError(f"connector {connector_id} is {evse.status}")
        if self.unlock_cable(connector_id):
            return "Unlocked"
        if (
            self.config_bool("LocalPreAuthorize")
            and self.config_bool("AuthorizationCacheEnabled")
            and self.auth_cache.get(id_tag) == "Accepted"
        ):
            status = "Accepted"  # start at once from the cache, without waiting for Authorize
        else:
            status = await self.authorize(id_tag)
        if status != "Accepted":
            return status
        if evse.battery is not None:
            self.start_transaction(connector_id, id_tag)
        else:
            self.pending_authorizations[connector_id] = id_tag
            if evse.status is Status.AVAILABLE:
                self.set_status(evse, Status.PREPARING)
            self._start_connection_timeout(connector_id)
        return status

    def start_transaction(self, connector_id: int, id_tag: str) -> LocalTransaction:
        evse = self.evse(connector_id)
        if connector_id in self.transactions:
            raise ActionError(f"connector {connector_id} already has a transaction")
        self._cancel_timer("connection-timeout", connector_id)
        self.pending_authorizations.pop(connector_id, None)
        tx = LocalTransaction(connector_id, id_tag, int(evse.register_wh), now_iso())
        self.transactions[connector_id] = tx
        evse.id_tag = id_tag
        evse.transaction_id = None
        interval = self.config_int("MeterValueSampleInterval")
        self.next_sample[connector_id] = time.monotonic() + interval if interval else 0.0
        tx.begin_values = self._stop_txn_samples(evse, "Transaction.Begin")
        self.install_remote_start_profile(connector_id)
        self.send(
            "StartTransaction",
            {
                "connectorId": connector_id,
                "idTag": id_tag,
                "meterStart": tx.meter_start,
                "timestamp": tx.started_at,
            },
            transactional=True,
            tx=tx,
            on_result=lambda result: self._on_start_confirmed(tx, result),
        )
        battery = evse.battery
        if battery is not None and battery.is_full():
            self.set_status(evse, Status.SUSPENDED_EV)
        else:
            self.set_status(evse, Status.CHARGING)
        self.listener.on_transaction(self, tx)
        return tx

    def _on_start_confirmed(self, tx: LocalTransaction, result: dict[str, Any]) -> None:
        tx.transaction_id = int(result["transactionId"])
        evse = self.evse(tx.connector_id)
        if self.transactions.get(tx.connector_id) is tx:
            evse.transaction_id = tx.transaction_id
        status = result.get("idTagInfo", {}).get("status", "Accepted")
        if self.config_bool("AuthorizationCacheEnabled"):
            self.auth_cache[tx.id_tag] = status
        self.listener.on_transaction(self, tx)
        if status != "Accepted" and self.transactions.get(tx.connector_id) is tx:
            if self.config_bool("StopTransactionOnInvalidId"):
                self.stop_transaction(tx.connector_id, "DeAuthorized")
            elif evse.status in (Status.CHARGING, Status.SUSPENDED_EV):
                self.set_status(evse, Status.SUSPENDED_EVSE)
        self.listener.on_change(self)

    def stop_transaction(
        self, connector_id: int, reason: str = "Local", id_tag: str | None = None
    ) -> LocalTransaction:
        evse = self.evse(connector_id)
        tx = self.transactions.pop(connector_id, None)
        if tx is None:
            raise ActionError(f"connector {connector_id} has no transaction")
        evse.power_w = 0.0
        evse.current_a = ()
        tx.meter_stop = max(int(evse.register_wh), tx.meter_start)
        tx.stopped_at = now_iso()
        tx.stop_reason = reason
        payload: dict[str, Any] = {
            "meterStop": tx.meter_stop,
            "timestamp": tx.stopped_at,
            "reason": reason,
        }
        if id_tag:
            payload["idTag"] = id_tag
        end_values = self._stop_txn_samples(evse, "Transaction.End")
        if tx.begin_values or tx.aligned_values or end_values:
            payload["transactionData"] = [*tx.begin_values, *tx.aligned_values, *end_values][
                : max(self.config_int("StopTransactionMaxMeterValues"), 2)
            ]
        self.send("StopTransaction", payload, transactional=True, tx=tx)
        self.next_sample.pop(connector_id, None)
        evse.id_tag = None
        if evse.status is not Status.FAULTED and evse.status is not Status.UNAVAILABLE:
            held = evse.battery is not None or connector_id in self.locked_cables
            self.set_status(evse, Status.FINISHING if held else Status.AVAILABLE)
        self.listener.on_transaction(self, tx)
        self.pending_profiles.pop(connector_id, None)
        if self.profiles.clear_transaction(connector_id):
            self.profiles_changed()
        self.limits.pop(connector_id, None)
        if self.scheduled_availability.pop(connector_id, None) is not None:
            self.apply_availability(connector_id)
        return tx

    def unplug(self, connector_id: int) -> None:
        evse = self.evse(connector_id)
        if evse.battery is None:
            raise ActionError("no vehicle plugged in")
        evse.battery = None
        evse.soc = None
        if connector_id in self.transactions:
            if not self.config_bool("UnlockConnectorOnEVSideDisconnect"):
                # The cable stays locked in the charger's socket: the connector is not free
                # (Finishing) until an idTag is presented or the CSMS sends UnlockConnector.
                self.locked_cables.add(connector_id)
            if self.config_bool("StopTransactionOnEVSideDisconnect"):
                self.stop_transaction(connector_id, "EVDisconnected")
            else:
                self.set_status(evse, Status.SUSPENDED_EV)
                evse.power_w = 0.0
                self.listener.on_change(self)
                return
        if evse.status in (Status.FINISHING, Status.PREPARING) and (
            connector_id not in self.locked_cables
        ):
            self.set_status(evse, Status.AVAILABLE)
        self.listener.on_change(self)

    def unlock_cable(self, connector_id: int) -> bool:
        """Release a cable held locked after an EV-side disconnect; True if one was."""
        if connector_id not in self.locked_cables:
            return False
        self.locked_cables.discard(connector_id)
        evse = self.evse(connector_id)
        if evse.battery is None and evse.status is Status.FINISHING:
            self.set_status(evse, Status.AVAILABLE)
        return True

    def inject_fault(
        self, connector_id: int, error_code: str = "OtherError", info: str | None = None
    ) -> None:
        if error_code not in FAULT_CODES:
            raise ActionError(f"{error_code!r} is not an OCPP 1.6 fault code")
        evse = self.evse(connector_id)
        evse.power_w = 0.0
        self.set_status(evse, Status.FAULTED, error_code, info)

    def clear_fault(self, connector_id: int) -> None:
        evse = self.evse(connector_id)
        if evse.status is not Status.FAULTED:
            raise ActionError(f"connector {connector_id} is not faulted")
        if connector_id in self.transactions:
            self.set_status(evse, Status.CHARGING)
        elif evse.battery is not None:
            self.set_status(evse, Status.PREPARING)
        else:
            self.set_status(evse, Status.AVAILABLE)

    # -- CSMS-initiated operations -----------------------------------------------------------

    def remote_start(
        self, id_tag: str, connector_id: int | None, charging_profile: dict[str, Any] | None = None
    ) -> tuple[str, int | None]:
        """RemoteStartTransaction: decide the answer; the caller runs `after_remote_start`."""
        if self.boot is not BootState.ACCEPTED or self.charger_unavailable:
            return "Rejected", None
        if not self.accept_remote_start_profile(charging_profile):
            return "Rejected", None
        candidates = [connector_id] if connector_id else [e.connector_id for e in self.evses]
        for candidate in candidates:
            if not 1 <= candidate <= len(self.evses):
                return "Rejected", None
            evse = self.evse(candidate)
            if candidate in self.transactions or candidate in self.pending_authorizations:
                continue
            if evse.status in (Status.AVAILABLE, Status.PREPARING, Status.FINISHING):
                if evse.status is Status.FINISHING and evse.battery is None:
                    continue
                return "Accepted", candidate
        return "Rejected", None

    async def after_remote_start(self, id_tag: str, connector_id: int) -> None:
        if self.config_bool("AuthorizeRemoteTxRequests"):
            status = await self.authorize(id_tag)
            if status != "Accepted":
                log.info("%s: remote start for %s not authorized (%s)", self.id, id_tag, status)
                return
        evse = self.evse(connector_id)
        if evse.battery is None and self.spec.simulate_ev_on_remote_start:
            vehicle = self.pick_vehicle()
            if vehicle is not None:
                self.pending_authorizations[connector_id] = id_tag
                self.plug_in(
                    connector_id, vehicle, soc=round(random.uniform(10, 40), 1), target_soc=100.0
                )
                return
        if evse.battery is not None:
            if evse.status is Status.FINISHING:
                self.set_status(evse, Status.PREPARING)
            self.start_transaction(connector_id, id_tag)
            return
        self.pending_authorizations[connector_id] = id_tag
        if evse.status is Status.AVAILABLE:
            self.set_status(evse, Status.PREPARING)
        self._start_connection_timeout(connector_id)

    def remote_stop(self, transaction_id: int) -> str:
        for connector_id, tx in self.transactions.items():
            if tx.transaction_id == transaction_id:
                self.stop_transaction(connector_id, "Remote")
                if self.spec.simulate_ev_on_remote_start:
                    self._start_timer(
                        "driver-unplug", connector_id, random.uniform(2, 5), self._driver_unplugs
                    )
                return "Accepted"
        return "Rejected"

    def _driver_unplugs(self, connector_id: int) -> None:
        evse = self.evse(connector_id)
        if evse.battery is not None and connector_id not in self.transactions:
            self.unplug(connector_id)

    def pick_vehicle(self) -> VehicleSpec | None:
        if self.spec.default_vehicle is not None:
            return self.spec.default_vehicle
        dc = self.spec.power_type == "DC"
        fitting = [v for v in self.vehicles if not dc or v.dc_max_kw > 0]
        return random.choice(fitting) if fitting else None

    # -- recovery after a restart -------------------------------------------------------------

    def restore_message(
        self,
        action: str,
        payload: dict[str, Any],
        seq: int,
        attempts: int,
        tx: LocalTransaction | None,
    ) -> None:
        """Put back a transaction message that was written but not confirmed before the
        process stopped; it is sent first, in its original order."""
        item = Outgoing(action, payload, transactional=True, tx=tx, seq=seq, attempts=attempts)
        if action == "StartTransaction" and tx is not None:
            item.on_result = lambda result: self._on_start_confirmed(tx, result)
        self.queue.restore(item)

    def end_interrupted(
        self, tx: LocalTransaction, reason: str = "PowerLoss", timestamp: str | None = None
    ) -> None:
        """A transaction the process was in when it died: end it as a real charger does
        after a power loss, with the last register it knew (never below meterStart)."""
        evse = self.evse(tx.connector_id)
        tx.meter_stop = max(int(evse.register_wh), tx.meter_start)
        tx.stopped_at = timestamp or now_iso()
        tx.stop_reason = reason
        self.send(
            "StopTransaction",
            {"meterStop": tx.meter_stop, "timestamp": tx.stopped_at, "reason": reason},
            transactional=True,
            tx=tx,
        )
        self.listener.on_transaction(self, tx)

    # -- ConnectionTimeOut and other timers ---------------------------------------------------

    def _start_connection_timeout(self, connector_id: int) -> None:
        timeout = self.config_int("ConnectionTimeOut")
        if timeout > 0:
            self._start_timer(
                "connection-timeout", connector_id, timeout, self._connection_timed_out
            )

    def _connection_timed_out(self, connector_id: int) -> None:
        """Authorized but no cable within ConnectionTimeOut: the incipient transaction is
        cancelled and the connector goes back to Available."""
        evse = self.evse(connector_id)
        self.pending_authorizations.pop(connector_id, None)
        if (
            connector_id not in self.transactions
            and evse.status is Status.PREPARING
            and evse.battery is None
        ):
            self.set_status(evse, Status.AVAILABLE)

    def _start_timer(
        self, name: str, connector_id: int, delay: float, callback: Callable[[int], None]
    ) -> None:
        self._cancel_timer(name, connector_id)

        def fire() -> None:
            self._timers.pop((name, connector_id), None)
            try:
                callback(connector_id)
            except (ActionError, IllegalTransition) as exc:
                log.info("%s: timer %s on connector %d: %s", self.id, name, connector_id, exc)

        self._timers[(name, connector_id)] = asyncio.get_running_loop().call_later(delay, fire)

    def _cancel_timer(self, name: str, connector_id: int) -> None:
        handle = self._timers.pop((name, connector_id), None)
        if handle is not None:
            handle.cancel()

    def cancel_timers(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._wake_handle is not None:
            self._wake_handle.cancel()

    # -- meter values -------------------------------------------------------------------------

    def sampled_values(
        self, evse: Evse, measurands: list[str], context: str, register_wh: float | None = None
    ) -> list[dict[str, Any]]:
        """SampledValue entries for the measurands asked for, in OCPP 1.6 units.

        `register_wh` stands for the register when the sample is of another instant than
        now (a clock-aligned boundary between two ticks). Each entry is its value plus a shared, precomputed set of descriptive fields
        (context, measurand, unit, location, phase): a MeterValues goes out every sample
        interval for every charging connector, so this is on the simulator's hot path.
        """
        values: list[dict[str, Any]] = []
        add = values.append
        ac = self.spec.power_type == "AC"
        for measurand in measurands:
            if measurand == "Energy.Active.Import.Register":
                # Whole Wh, floored like meterStart/meterStop, so every register the CSMS sees
                # is consistent and never goes back.
                register = evse.register_wh if register_wh is None else register_wh
                add({"value": str(int(register)), **_fields(context, measurand)})
            elif measurand == "Power.Active.Import":
                add({"value": f"{evse.power_w:.1f}", **_fields(context, measurand)})
            elif measurand == "Current.Import":
                if ac and evse.current_a:
                    for phase, amps in enumerate(evse.current_a):
                        add({"value": f"{amps:.2f}", **_fields(context, measurand, _PHASES[phase])})
                else:
                    amps = evse.current_a[0] if evse.current_a else 0.0
                    add({"value": f"{amps:.2f}", **_fields(context, measurand)})
            elif measurand == "Voltage":
                if ac:
                    volts = evse.voltage_v or (self.spec.voltage_v,) * self.spec.phases
                    for phase, v in enumerate(volts):
                        add({"value": f"{v:.1f}", **_fields(context, measurand, _TO_N[phase])})
                else:
                    v = evse.voltage_v[0] if evse.voltage_v else 0.0
                    add({"value": f"{v:.1f}", **_fields(context, measurand)})
            elif measurand == "SoC":
                if evse.soc is not None:
                    add({"value": f"{evse.soc:.1f}", **_fields(context, measurand)})
            elif measurand == "Power.Offered":
                limit = self.limits.get(evse.connector_id)
                offered = evse.max_power_w if limit is None else min(limit.watts, evse.max_power_w)
                add({"value": f"{offered:.1f}", **_fields(context, measurand)})
            elif measurand == "Current.Offered":
                limit = self.limits.get(evse.connector_id)
                phases = self.spec.phases if ac else 1
                volts = self.spec.voltage_v
                if not ac:
                    volts = evse.voltage_v[0] if evse.voltage_v and evse.voltage_v[0] else 400.0
                amps = evse.max_power_w / (volts * phases)
                if limit is not None:
                    amps = min(amps, limit.amps)
                add({"value": f"{amps:.1f}", **_fields(context, measurand)})
        return values

    def _stop_txn_samples(self, evse: Evse, context: str) -> list[dict[str, Any]]:
        measurands = self.config_list("StopTxnSampledData")
        if not measurands:
            return []
        return [
            {"timestamp": now_iso(), "sampledValue": self.sampled_values(evse, measurands, context)}
        ]

    def send_meter_values(
        self,
        connector_id: int,
        context: str,
        measurands: list[str],
        timestamp: str | None = None,
        *,
        register_wh: float | None = None,
        outside_transaction: bool = False,
    ) -> None:
        """One MeterValues for a connector; transaction-bound ones go through the outbox.
        `outside_transaction`: a sample of an instant before the connector's transaction."""
        evse = self.evse(connector_id) if connector_id else None
        if evse is None:
            return
        values = self.sampled_values(evse, measurands, context, register_wh)
        if not values:
            return
        payload: dict[str, Any] = {
            "connectorId": connector_id,
            "meterValue": [{"timestamp": timestamp or now_iso(), "sampledValue": values}],
        }
        tx = None if outside_transaction else self.transactions.get(connector_id)
        if tx is not None and context != "Trigger":
            payload["transactionId"] = tx.wire_id
            self.send("MeterValues", payload, transactional=True, tx=tx)
        else:
            if tx is not None:
                payload["transactionId"] = tx.wire_id
            self.send("MeterValues", payload)

    def limit_w(self, evse: Evse) -> float | None:
        """The charging-profile limit in force for a connector (None: no profile)."""
        limit = self.limits.get(evse.connector_id)
        return None if limit is None else limit.usable_watts

    def now(self) -> datetime:
        """The charger's clock, synchronised to the CSMS's at boot and heartbeat."""
        return datetime.fromtimestamp(time.time() + self._clock_offset, UTC)


class ConfigValues(dict[str, str]):
    """The configuration as text, with parsed values cached: the meter tick reads several
    keys per charger per second, and parsing them each time costs more than the physics."""

    __slots__ = ("_parsed",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parsed: dict[str, Any] = {}

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        self._parsed.clear()

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().update(*args, **kwargs)
        self._parsed.clear()

    def parsed(self, key: str, parse: Callable[[str], Any]) -> Any:
        try:
            return self._parsed[key]
        except KeyError:
            text = self.get(key, config_keys.KEYS[key].default)
            try:
                value = parse(text)
            except ValueError:
                value = parse(config_keys.KEYS[key].default)
            self._parsed[key] = value
            return value


# The CSMS times a charger accepts: wide, but far enough from datetime's limits (years
# 1-9999) that adding any interval or schedule of up to 68 years cannot overflow.
_CLOCK_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))
_HEARTBEAT_MAX = config_keys.KEYS["HeartbeatInterval"].maximum or 86_400


def _as_int(text: str) -> int:
    return int(text)


def _as_bool(text: str) -> bool:
    return text == "true"


class ActionError(Exception):
    """A local action that cannot be done now, with a message for the person who asked."""


_UNITS = {
    "Energy.Active.Import.Register": ("Wh", "Outlet"),
    "Power.Active.Import": ("W", "Outlet"),
    "Current.Import": ("A", "Outlet"),
    "Voltage": ("V", "Outlet"),
    "SoC": ("Percent", "EV"),
    "Power.Offered": ("W", "Outlet"),
    "Current.Offered": ("A", "Outlet"),
}
_PHASES = ("L1", "L2", "L3")
_TO_N = ("L1-N", "L2-N", "L3-N")


@cache
def _fields(context: str, measurand: str, phase: str = "") -> dict[str, str]:
    """The descriptive fields of a SampledValue (shared: never mutate the result)."""
    unit, location = _UNITS[measurand]
    fields = {"context": context, "measurand": measurand, "unit": unit, "location": location}
    if phase:
        fields["phase"] = phase
    return fields
