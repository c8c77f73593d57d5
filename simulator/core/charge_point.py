"""The runtime charge point: the facade that composes one charger's parts.

Plain Python. It talks to the central system through a `Transport` (the protocol
adapter's connection, or a fake in unit tests) and reports what happened to a `Listener`
(persistence, dashboard events). Its parts, each the only owner of its state:
connectors and their status (`evse`, changed only through `Charger.set_status`),
transactions (`transactions`), the configuration store (`configuration`), the
authorization cache (`authorization`), timers on an injected clock (`timers`), the
ordered outbox (`outbox`) and the charging profiles (`smart_charging`). CSMS-initiated
operations (`operations`) sit above and call in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from simulator.contract import FAULT_CODES, config_keys
from simulator.core import power_sharing
from simulator.core.authorization import AuthorizationCache
from simulator.core.battery import (
    MIN_AC_AMPS,
    Battery,
    OperatingPoint,
    ac_operating_point,
    ac_point_holds_below,
    dc_operating_point,
    seconds_to_target,
    seconds_until_tapering,
)
from simulator.core.certificates import CertificateError, CertificateStore
from simulator.core.clock import now_iso, parse_iso
from simulator.core.configuration import ConfigValues, check_change, is_write_only
from simulator.core.dc_voltage import pack_voltage
from simulator.core.evse import ConnectorStatus, Evse, IllegalTransition
from simulator.core.impairments import Impairments, StoredImpairments
from simulator.core.link import (
    AnswerCallback,
    BootState,
    CallFailed,
    LinkLost,
    LinkState,
    Transport,
)
from simulator.core.local_list import Entry, ListChange, LocalAuthList, UpdateStatus, UpdateType
from simulator.core.outbox import BACKLOG_LIMIT, Outbox, Outgoing
from simulator.core.power_sharing import capped
from simulator.core.protocol import (
    QUANTITIES,
    AuthStatus,
    IdTagAnswer,
    Measurand,
    Message,
    Messages,
    MeterSample,
    Payload,
    Phase,
    Reading,
    SampleContext,
    StopReason,
    TransactionRef,
    same_id_tag,
)
from simulator.core.reservations import Reservation, ReservationBook
from simulator.core.revision import FLEET
from simulator.core.security_log import POWER_UP, LoggedEvent, SecurityEvent, SecurityLog
from simulator.core.session_series import SessionSeries
from simulator.core.smart_charging import (
    Electrical,
    Limit,
    ProfileError,
    ProfileStore,
    parse_remote_start_profile,
    units_from_config,
)
from simulator.core.timers import Clock, LoopClock, Timers, sleep
from simulator.core.transactions import LocalTransaction
from simulator.core.transfer import (
    FIRMWARE_BUSY,
    DiagnosticsStatus,
    FirmwareStatus,
    LogStatus,
    Transfers,
)
from simulator.core.vehicle import VehicleSpec

log = logging.getLogger(__name__)

Status = ConnectorStatus

__all__ = [
    "AnswerCallback",
    "BootState",
    "CallFailed",
    "Charger",
    "ChargerSpec",
    "Fanout",
    "LinkLost",
    "LinkState",
    "Listener",
    "LocalTransaction",
    "Transport",
]


class Listener:
    """What the charger tells the world; every method is cheap and must not block."""

    def on_change(self, charger: Charger) -> None:
        """Anything visible changed (status, power, link, boot)."""

    def on_metered(self, charger: Charger) -> None:
        """The meter settled the charger between visits (before something changes what
        flows, or for a reader of "now"): its registers moved, and nothing else was said.
        A register moves only so or at a visit, which reports a metered connector by
        `on_change`."""

    def on_config(self, charger: Charger, key: str, value: str) -> None:
        """A configuration value changed and must be persisted."""

    def on_frame(
        self, charger: Charger, direction: str, text: str, message_id: str = "", action: str = ""
    ) -> None:
        """A frame went out ("out") or came in ("in"): its text as on the wire, and its
        message id and action when the adapter knows them (it does for every frame it
        could parse: no listener has to parse a frame again)."""

    def on_connection(self, charger: Charger, event: str, detail: dict[str, Any]) -> None:
        """The link to the CSMS changed: "connected", "connect_failed", "closed" (with the
        CSMS's close code, and the charger's own as `sent_code` and `sent_reason` when it
        sent one), "reconnecting" (after a backoff delay), "network_cut"; `detail` holds
        plain values (no credentials)."""

    def on_transaction(self, charger: Charger, tx: LocalTransaction) -> None:
        """A transaction started, got its id, or stopped."""

    def on_profiles(self, charger: Charger) -> None:
        """The installed charging profiles changed and must be persisted."""

    def on_availability(self, charger: Charger) -> None:
        """ChangeAvailability changed what must survive a restart."""

    def on_reservations(self, charger: Charger) -> None:
        """A reservation was made, used, cancelled or expired (persist `reservations`)."""

    def on_local_list(self, charger: Charger, change: ListChange) -> None:
        """SendLocalList changed the local authorization list (persist the change)."""

    def on_auth_cache(self, charger: Charger) -> None:
        """The authorization cache changed (persist `auth_cache.take_changes()`)."""

    def on_clock(self, charger: Charger) -> None:
        """The CSMS's currentTime stepped the charger's clock (persist `clock_offset`)."""

    def on_firmware(self, charger: Charger) -> None:
        """A new firmware was installed (persist `spec.firmware_version`)."""

    def on_certificates(self, charger: Charger) -> None:
        """The certificate store changed (persist `certificates`, its keys encrypted)."""

    def on_vehicle(self, charger: Charger, evse: Evse) -> None:
        """A vehicle was plugged into or out of this EVSE, paused or resumed (persist
        `evse.battery`, so that a restart plugs it back in)."""

    def on_security_event(self, charger: Charger, event: LoggedEvent) -> None:
        """A security event was added to `charger.security_log` (persist it, so that the
        log survives a restart as a charger's flash keeps it)."""


class Fanout(Listener):
    """Tells several listeners, in order (e.g. the dashboard's publisher and the waits of
    actions for a condition, behind the checkpoint writer)."""

    def __init__(self, *listeners: Listener) -> None:
        self.listeners = listeners
        # Each listener method is bound once, here, for every method of `Listener` (so that
        # one added later fans out too): the base no-op where no listener implements it;
        # where one does, that listener's own bound method, because on_frame and on_change
        # run for every frame and every tick of a busy charger and should then cost nothing
        # more; where several do, a loop over theirs.
        for name in _LISTENER_METHODS:
            own = [getattr(x, name) for x in listeners if _implements(x, name)]
            if len(own) == 1:
                setattr(self, name, own[0])
            elif own:
                setattr(self, name, _in_turn(own))


def _in_turn(methods: list[Callable[..., None]]) -> Callable[..., None]:
    def tell_each(*args: Any, **kwargs: Any) -> None:
        for method in methods:
            method(*args, **kwargs)

    return tell_each


# Why a charger is offline during a fault-injected outage (`cut_network`); the connection
# runner adds the seconds left.
NETWORK_CUT = "network cut"
_LISTENER_METHODS = tuple(name for name in vars(Listener) if name.startswith("on_"))


def _implements(listener: Listener, name: str) -> bool:
    return getattr(type(listener), name) is not getattr(Listener, name)


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
    firmware_failure: str = ""  # a `transfer.FirmwareFailure` to simulate on every update
    diagnostics_upload_method: str = "PUT"  # HTTP(S) uploads: "PUT" or "POST" (multipart)
    power_sharing: str = "equal"  # the rated power among connectors: "equal" or "first"
    auto_connect: bool = True
    # Messages its queue holds before it thins its periodic samples (`Outbox.thin`); 0: no
    # bound. The worker's setting (CHARGESIM_OFFLINE_QUEUE_LIMIT), not the charger row's.
    backlog_limit: int = BACKLOG_LIMIT
    # Answer overrides, network conditions and clock skew stored on the charger's row.
    impairments: StoredImpairments = field(default_factory=StoredImpairments)
    db_id: int | None = None
    location_id: int | None = None

    def __repr__(self) -> str:
        # Never let the AuthorizationKey reach a log line through a repr.
        return f"ChargerSpec({self.charge_point_id!r})"


@dataclass(slots=True, frozen=True)
class _KeptPoint:
    """A connector's operating point and what it was computed from: the same again while
    these are unchanged and the SoC stays below `below_soc` (`ac_point_holds_below`).
    Slots, not a NamedTuple: the interpreter reads a slot directly, a NamedTuple's field
    through its descriptor, and the meter reads six of them at every visit."""

    point: OperatingPoint
    battery: Battery
    limit: Limit | None
    spec: ChargerSpec
    max_power_w: float
    below_soc: float


class Charger:
    """One simulated charge point with its EVSEs (connector id = index + 1)."""

    def __init__(
        self,
        spec: ChargerSpec,
        evses: list[Evse],
        config: dict[str, str] | None = None,
        listener: Listener | None = None,
        vehicles: list[VehicleSpec] | None = None,
        *,
        messages: Messages,
        clock: Clock | None = None,
        transfers: Transfers | None = None,
    ) -> None:
        self.spec = spec
        self.messages = messages  # the protocol adapter: every outgoing message's shape
        self.id = spec.charge_point_id  # read on every frame: an attribute, not a property
        self.evses = evses
        self.config = ConfigValues(config_keys.defaults(len(evses)))
        if config:
            self.config.update({k: v for k, v in config.items() if k != "AuthorizationKey"})
        self.config["NumberOfConnectors"] = str(len(evses))
        self.listener = listener or Listener()
        self.vehicles = vehicles or []
        self.boot = BootState.NONE
        # A boot sequence is sending BootNotifications until one is accepted; `_boot_run`
        # is the latest one started.
        self.booting = False
        self._boot_run: object | None = None
        # Not Accepted: no BootNotification before this (monotonic s; 0: any time).
        self.next_boot_at = 0.0
        # A BootNotification sent outside the queue (not registered yet, or Pending) awaits
        # its answer, which may leave the charger unable to send anything.
        self.boot_unanswered = False
        # Set when a BootNotification is answered while the boot sequence waits out the
        # interval of one not Accepted: a triggered one may have been accepted meanwhile.
        self._boot_answered: asyncio.Event | None = None
        # Held by each CALL sent outside the queue (a BootNotification, a message triggered
        # while Pending): OCPP-J allows one CALL outstanding, and the queue sends nothing
        # before Accepted, so these wait for one another's answers here.
        self._unqueued = asyncio.Lock()
        self.link = LinkState.OFFLINE
        self.link_error = ""
        self.in_service = True  # False once taken out of the running fleet (out_of_service)
        # When an edit of its set-up last reached this running charger (Unix time; None:
        # none since it was loaded): a page rendered before it shows an older set-up.
        self.setup_at: float | None = None
        self.connector0_status = ConnectorStatus.AVAILABLE
        self.charger_unavailable = False
        self.transport: Transport | None = None
        self.clock: Clock = clock or LoopClock()
        self.timers = Timers(self.clock, self.id, (ActionError, IllegalTransition))
        self.outbox = Outbox(
            self.id,
            self.clock,
            self._sendable,
            lambda: self.online,
            self._retry_policy,
            messages.at_send,
            spec.backlog_limit,
        )
        self.queue = self.outbox.queue
        self.transactions: dict[int, LocalTransaction] = {}
        self.local_list = LocalAuthList()
        self.auth_cache = AuthorizationCache(self.config, self.local_list, self.wall_time)
        self.auth_cache.on_change = weakref.WeakMethod(self._auth_cache_changed)
        self.reservations = ReservationBook()
        self.transfers = transfers  # how firmware and diagnostics files move (runtime)
        self.firmware_status = FirmwareStatus.IDLE  # the last one reported
        self.signed_firmware_request: int | None = None  # its requestId, if a signed update
        # What a firmware update waits for now, in words, and until when (a date on the
        # charger's clock, as the CSMS gave it; None: until something happens): its page
        # says why it sits still.
        self.firmware_waiting: tuple[str, float | None] | None = None
        self.diagnostics_status = DiagnosticsStatus.IDLE
        self.jobs: dict[str, asyncio.Task[None]] = {}  # "firmware", "diagnostics", "log"
        self.certificates = CertificateStore()
        self._chain_arrived: asyncio.Event | None = None  # set by CertificateSigned
        self.log_status = LogStatus.IDLE  # the last GetLog upload's, and its requestId
        self.log_request_id: int | None = None
        self.security_log = SecurityLog()
        # SecurityProfile raised or AuthorizationKey changed: reconnect after the answer
        self.reconnect_due = False
        self.security_change: str | None = None  # a security key changed: report it then
        # Why the charger last went down (or "power-up" once loaded), until the boot after
        # it reports the firmware's startup (StartupOfTheFirmware); None: nothing to report.
        self.startup_after: str | None = None
        # A firmware installed before a reboot, reported once the charger has booted into
        # it (OCPP 1.6: reboot into the new firmware, then FirmwareStatusNotification
        # Installed): (the version before, the version now, the signed update's requestId,
        # or None for UpdateFirmware).
        self.installed_firmware: tuple[str, str, int | None] | None = None
        self.pending_authorizations: dict[int, str] = {}  # connector -> idTag awaiting a plug
        # Sessions a Reset cut short with the vehicle still plugged in and wanting energy:
        # connector -> its idTag, to start again once the reboot's boot is accepted.
        self.resume_after_boot: dict[int, str] = {}
        # connector -> when its pending authorization lapses (epoch s; ConnectionTimeOut)
        self.authorization_expires: dict[int, float] = {}
        self._claimed: dict[int, int] = {}  # connector -> reservation its authorized idTag uses
        self.scheduled_availability: dict[int, str] = {}
        self.next_heartbeat = 0.0
        self._heartbeat: Outgoing | None = None  # the last periodic Heartbeat queued
        self.next_sample: dict[int, float] = {}
        self.last_clock_slot = 0
        # Seconds the charger's clock runs ahead of the host's, as the CSMS's currentTime set
        # it (0: the host's clock). Owned by `_sync_clock`; the meter engine reads it.
        self.clock_offset = 0.0
        # Waits for a date on that clock (`sleep_until`), woken by a step of it (True).
        self._date_waiters: set[asyncio.Future[bool]] = set()
        self._reboot_task: asyncio.Task[None] | None = None
        # A Reset or new firmware is taking it down: still online, its boot still
        # Accepted, for a grace and its last messages, but no longer up to wait for.
        self.restarting = False
        self.offline_until = 0.0
        # Answer overrides, network conditions, clock skew: the row's, then run-time ones.
        self.impairments = Impairments.for_charger(spec.charge_point_id)
        # The simulated driver's and the firmware's own choices (which car, its SoC, when
        # the driver unplugs, the boot retry's backoff): a generator per charger, seeded
        # from its id, so that the same fleet doing the same things makes the same choices
        # in every run (a str seed is hashed with SHA-512, not with the salted str hash).
        self.rng = random.Random(f"driver:{spec.charge_point_id}")
        self.impairments.apply_stored(spec.impairments)
        self.locked_cables: set[int] = set()
        self.availability: dict[int, str] = {
            e.connector_id: "Inoperative" for e in evses if e.status is Status.UNAVAILABLE
        }
        self.pending_profiles: dict[int, dict[str, Any]] = {}
        self.profiles = self._new_profile_store()
        self.limits: dict[int, Limit] = {}
        # The charger's clock when `refresh_limits` last read its profiles.
        self.limits_at: datetime | None = None
        # When not every car fits (the 6 A minimum): connectors in the order they are
        # admitted (their sessions' start, changed by turns), and when the turn of a waiting
        # car began (monotonic s; None: nobody waits).
        self._turn_queue: list[int] = []
        self._turn_sessions: dict[int, LocalTransaction] = {}  # the session each queued for
        self._turn_started: float | None = None
        self.limits_dirty = False
        # Caps in watts per connector set from outside (the site's load management).
        self.site_caps_w: dict[int, float] = {}
        self.power_shared = self._rated_binds()  # the meter must share power each tick
        self._physical: tuple[Electrical, Limit] | None = None  # cache of _physical_limit
        self.last_sent_status: dict[int, tuple[str, str, str | None]] = {}
        # The meter engine's bookkeeping: when it last advanced the connectors (its monotonic
        # and wall time), when it must visit the charger next (0: on its next tick), and its
        # hook that brings the connectors up to its latest tick (`settle_meter`). The engine
        # keeps the times; only this class changes a connector's register, SoC and status.
        self.metered_at: float | None = None
        self.metered_wall: float | None = None
        # The host's time (epoch s) of `metered_at`, on no charger's clock: its registers
        # were true then (a checkpoint stores them with it; they move only when metered).
        self.registers_at: float | None = None
        self.meter_wake = 0.0
        self.meter_settle: Callable[[Charger], None] | None = None
        self._kept_points: dict[int, _KeptPoint] = {}  # connector -> its metering point
        # Connector -> the limit its SuspendedEVSE reason was worked out under, and that
        # reason: worked out again only when the limit moves (`_follow_suspension`).
        self._suspended_under: dict[int, tuple[Limit | None, str | None]] = {}

    def __repr__(self) -> str:
        return f"<Charger {self.id} {self.link} boot={self.boot}>"

    # -- identity and configuration ---------------------------------------------------------

    def evse(self, connector_id: int) -> Evse:
        if not 1 <= connector_id <= len(self.evses):
            raise KeyError(f"{self.id} has no connector {connector_id}")
        return self.evses[connector_id - 1]

    def config_int(self, key: str) -> int:
        return self.config.as_int(key)

    def config_bool(self, key: str) -> bool:
        return self.config.as_bool(key)

    def config_list(self, key: str) -> list[str]:
        return self.config.as_list(key)

    def get_configuration(self, keys: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
        """GetConfiguration: known keys (never AuthorizationKey's value) and unknown ones."""
        known, unknown = self.config.report(keys)
        for entry in known:
            if entry["key"] == "SecurityProfile":  # kept on the charger, not in its table
                entry["value"] = str(self.spec.security_profile)
        return known, unknown

    def change_configuration(self, key: str, value: str) -> str:
        """ChangeConfiguration: Accepted, RebootRequired, Rejected or NotSupported. The key
        is matched without regard to case (CiString50) and handled, stored and reported
        in the charger's own spelling."""
        config = self.config
        key = config.spelling(key) or key  # no such key: NotSupported below
        if key in config and key not in config_keys.KEYS:
            # One of the operator's own keys (a vendor's): the charger holds it as text, and
            # a CSMS may change it unless the operator made it read-only.
            if key in config.custom_readonly or len(value) > config_keys.MAX_VALUE_CHARS:
                return "Rejected"
            config[key] = value
            self.listener.on_config(self, key, value)
            return "Accepted"
        status, value = check_change(self.id, key, value)
        if status not in ("Accepted", "RebootRequired"):
            return status
        before: str | None = None
        if key == "SecurityProfile":
            refusal = self._security_profile_refusal(int(value))
            if refusal:
                log.info("%s: SecurityProfile %s rejected: %s", self.id, value, refusal)
                return "Rejected"
            if int(value) == self.spec.security_profile:
                return "Accepted"  # nothing changes: no reconnect, no event
            self.spec.security_profile = int(value)
            self.reconnect_due = True  # with the new profile, once the answer is out
        elif is_write_only(key):
            # Never empty (`check_change` takes only 16 to 20 bytes in hex): an empty key
            # would lock a profile 1 or 2 charger out of its CSMS (401 on every retry).
            if value != self.spec.authorization_key and self.spec.security_profile in (1, 2):
                # The Basic password: the charger reconnects with it once the answer is
                # out, as the whitepaper's password update has it (OCTT TC_073_CS), so
                # that the CSMS learns at once whether the new password works. The same
                # key again changes nothing: a CSMS that sends its configuration on every
                # connection would otherwise have the charger reconnect for ever.
                self.reconnect_due = True
            self.spec.authorization_key = value
        else:
            before = self.config.get(key)
            self.config[key] = value
        self.listener.on_config(self, key, value)
        self._apply_config(key, before if key == "MeterValueSampleInterval" else None)
        if key in _SECURITY_PARAMETERS:
            # Reported once the answer is out (`security_parameters_changed`).
            self.security_change = key
        return status

    async def security_parameters_changed(self) -> None:
        """After the answer to a ChangeConfiguration: a security parameter that changed is
        reported (ReconfigurationOfSecurityParameters, with the key's name only: its value
        may be a secret), and a raised SecurityProfile or a new AuthorizationKey (the
        Basic password of profiles 1 and 2) takes effect on a new connection: this one
        closes once the event is out, and the connection runner opens the next with it."""
        key, self.security_change = self.security_change, None
        if key is not None:
            self.security_event(SecurityEvent.RECONFIGURATION_OF_SECURITY_PARAMETERS, key)
        if not self.reconnect_due:
            return
        self.reconnect_due = False
        await self.drain(REBOOT_PATIENCE_S)
        transport = self.transport
        if transport is not None:
            log.info(
                "%s: reconnecting with the new %s (security profile %d)",
                self.id,
                key,
                self.spec.security_profile,
            )
            await transport.close()

    def _security_profile_refusal(self, profile: int) -> str:
        """Why the charger cannot move to `profile` ("" if it can): never down (the
        whitepaper), and only with what that profile needs to connect."""
        spec = self.spec
        if profile < spec.security_profile:
            return f"lower than the current profile {spec.security_profile}"
        if profile in (1, 2) and not spec.authorization_key:
            return "no AuthorizationKey for HTTP Basic authentication"
        if profile >= 2 and not spec.csms_url.lower().startswith("wss://"):
            return "the Central System URL is not wss:// (TLS)"
        if profile == 3 and not (
            # One signed through SignCertificate / CertificateSigned counts too (the
            # connection uses it first): it was refused as "no client certificate".
            self.certificates.has_client_certificate
            or (spec.client_cert_path and spec.client_key_path)
        ):
            return "no client certificate"
        return ""

    def _apply_config(self, key: str, before: str | None = None) -> None:
        self.settle_meter()  # sample, heartbeat and clock-aligned times may move
        now = self.clock.monotonic()
        if key == "HeartbeatInterval":
            self.next_heartbeat = now + self.config_int("HeartbeatInterval")
        elif key == "MeterValueSampleInterval":
            interval = self.config_int("MeterValueSampleInterval")
            old = int(before) if before and before.isdigit() else 0
            for connector_id in self.transactions:
                due = self.next_sample.get(connector_id, 0.0)
                if not interval:
                    self.next_sample[connector_id] = 0.0
                elif due and old:
                    # The new interval counts from the last sample (or the start), at once
                    # if that is past: from now, 60 s to 10 s sent the next one 69 s after
                    # the last, later than either interval.
                    self.next_sample[connector_id] = max(now, due - old + interval)
                else:
                    self.next_sample[connector_id] = now + interval
        elif key == "AuthorizationCacheEnabled" and not self.config_bool(key):
            self.auth_cache.clear()
        elif key == "WebSocketPingInterval" and self.transport is not None:
            self.transport.keepalive_changed()
        elif key == "MessageTimeout" and self.transport is not None:
            # Accepted means applied (1.6 section 5.3): not from the next connection on.
            self.transport.answer_timeout_changed()

    # -- connection lifecycle (called by the connection runner) ----------------------------

    def attach(self, transport: Transport) -> None:
        self.transport = transport
        self.meter_wake = 0.0  # online again: a heartbeat may be overdue
        self.link = LinkState.ONLINE
        self.link_error = ""
        FLEET.bump()
        if self.reservations:
            self._arm_reservations()  # restored ones had no event loop to time them
        if (
            self.certificates.roots
            and self.spec.csms_url.startswith("wss://")
            and self.certificates.drop_fallback()
        ):
            # AdditionalRootCertificateCheck: the new CSMS root worked; the old one goes.
            self.listener.on_certificates(self)
        self.listener.on_change(self)

    def connecting(self) -> None:
        """The connection runner is opening a connection."""
        self.link = LinkState.CONNECTING
        FLEET.bump()
        self.listener.on_change(self)

    def detach(self, error: str = "", *, closed_by_peer: bool = False) -> None:
        """The connection is gone; `error` says why when it was lost or the CSMS closed it
        (`closed_by_peer`: a close, not a ConnectionLost), not when the charger did."""
        lost = (
            bool(error)
            and not closed_by_peer
            and self.link is LinkState.ONLINE
            and self.boot is BootState.ACCEPTED
        )
        self.transport = None
        self.link = LinkState.OFFLINE
        self.link_error = error
        FLEET.bump()
        # Non-transactional messages are not kept: after an outage the current status is sent.
        self.outbox.link_lost()
        if lost:
            # Sent once the charger is back (the event is durable), stamped now.
            self.security_event(SecurityEvent.CONNECTION_LOST, error)
        self.listener.on_change(self)

    def link_error_now(self) -> str:
        """`link_error` as of now: a network cut's count of seconds left was true when the
        link went down, and a snapshot read later (the API's state, a page opened then)
        must not show it frozen. Only an offline charger has a link error to show."""
        error = self.link_error
        if self.link is not LinkState.OFFLINE:
            return error
        left = self.offline_until - self.clock.monotonic()
        if left > 0:  # the cut is why, also while the lost link is still being told
            return f"{NETWORK_CUT} ({left:.0f} s left)"
        return f"{NETWORK_CUT} (over)" if error.startswith(NETWORK_CUT) else error

    def out_of_service(self, why: str) -> None:
        """Taken out of the running fleet (disabled or deleted in the set-up, or moved to
        another worker) and offline: its last state says why, in place of a link error."""
        self.link_error = why
        self.in_service = False
        self.listener.on_change(self)

    def cut_network(self, seconds: float) -> None:
        """Fault injection: the network goes away now and stays down `seconds`.

        Not a reboot: transaction messages queue up in the outbox, and after the outage the
        charger reconnects without a BootNotification and reports its current statuses.
        """
        if seconds <= 0:
            raise ActionError("the outage must last more than 0 seconds")
        self.offline_until = self.clock.monotonic() + seconds
        if self.transport is not None:
            self.transport.abort()
        self.listener.on_change(self)

    def power_cycle(self, why: str = "power cycle") -> None:
        """A reboot: the next connection starts with a BootNotification, and once it is
        accepted the charger reports the start of its firmware."""
        self.boot = BootState.NONE
        self.restarting = False
        self.next_boot_at = 0.0  # a reboot starts with a BootNotification at once
        FLEET.bump()
        self.startup_after = why

    @property
    def online(self) -> bool:
        return self.link is LinkState.ONLINE and self.transport is not None

    @property
    def may_send_triggered(self) -> bool:
        """Whether a message triggered now is sure to go out: once Accepted (through the
        queue), or while Pending (directly) with no BootNotification awaiting its answer.
        With no boot answered yet, Rejected, or a boot whose answer may leave the charger
        unregistered (timed out, Rejected), it would be dropped: TriggerMessage answers
        Rejected then ("will not be sent"), not Accepted."""
        if self.boot is BootState.ACCEPTED:
            return True
        return self.boot is BootState.PENDING and not self.boot_unanswered

    async def boot_sequence(self) -> None:
        """Run after each connect: boot if needed, then report current statuses."""
        transport = self.transport
        run = self._boot_run = object()
        self.booting = True
        try:
            while self.online and self.boot is not BootState.ACCEPTED:
                # Pending or Rejected: the interval is the minimum wait before the next
                # BootNotification, on this connection or on a new one.
                wait = self.next_boot_at - self.clock.monotonic()
                if wait > 0:
                    # Woken early by the answer to a triggered BootNotification (the usual
                    # end of a Pending provisioning: Accepted, statuses now, not once the
                    # interval runs out; or a new interval, counted from that answer).
                    answered = self._boot_answered = asyncio.Event()
                    try:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(answered.wait(), wait)
                    finally:
                        if self._boot_answered is answered:
                            self._boot_answered = None
                    if self.transport is not transport:
                        return  # a new connection runs its own boot sequence
                    continue
                await self._send_boot_notification()
        finally:
            # The sequence of a connection since replaced ends here, the new one's goes on:
            # cleared, a triggered boot answered Pending would start a second one beside it
            # (two BootNotifications at each retry, every status twice once Accepted).
            if self._boot_run is run:
                self.booting = False
        if not self.online:
            return
        if self.startup_after is not None:
            why, self.startup_after = self.startup_after, None
            version = self.spec.firmware_version
            self.security_event(
                SecurityEvent.STARTUP_OF_THE_FIRMWARE,
                f"firmware {version} started after {why}",
                level=logging.DEBUG if why == POWER_UP else logging.INFO,
            )
        self._report_installed()
        self.send_all_statuses()
        self.wake()
        resume, self.resume_after_boot = self.resume_after_boot, {}
        for connector_id, id_tag in resume.items():
            self.start_job(f"resume-{connector_id}", self._resume_session(connector_id, id_tag))

    async def _resume_session(self, connector_id: int, id_tag: str) -> None:
        """After a Reset, the driver's vehicle is still plugged in and not full: the
        charger starts a new session for the same idTag (authorized again, as any start),
        as chargers that resume after a power loss do. Nothing happens if the vehicle has
        left, a session is already running, or the connector cannot charge now."""
        evse = self.evse(connector_id)
        battery = evse.battery
        if battery is not None and battery.resume_id_tag is not None:
            battery.resume_id_tag = None  # tried now: not again after another restart
            self.listener.on_vehicle(self, evse)
        if (
            battery is None
            or battery.is_full()
            or connector_id in self.transactions
            or evse.status in (Status.FAULTED, Status.UNAVAILABLE)
        ):
            return
        try:
            result = await self.present_id_tag(connector_id, id_tag)
        except ActionError as exc:
            log.info("%s: session on connector %d not resumed: %s", self.id, connector_id, exc)
            return
        log.info(
            "%s: session on connector %d resumed after the reset: %s", self.id, connector_id, result
        )

    async def _send_boot_notification(self) -> tuple[BootState, int]:
        action, payload = self.messages.boot(self.spec)
        try:
            raw: dict[str, Any] | None
            if self.boot is BootState.ACCEPTED:
                # Triggered while registered: in turn, behind the CALL the queue has out.
                raw = await self.request((action, payload))
            else:
                self.boot_unanswered = True
                try:
                    raw = await self._call_unqueued(action, payload, boot=True)
                finally:
                    self.boot_unanswered = False
            assert raw is not None  # a BootNotification always goes
            answer = self.messages.read_boot(raw)
        except CallFailed as exc:
            log.warning("%s: %s failed: %s", self.id, action, exc)
            self.next_boot_at = self.clock.monotonic() + self._boot_backoff()
            return BootState.REJECTED, 0
        status = answer.status
        # Any int64 passes the range check; a timer or a HeartbeatInterval beyond the key's
        # own maximum would not mean anything (and 2^63 s overflows asyncio's clock).
        interval = min(answer.interval, _HEARTBEAT_MAX)
        self._sync_clock(answer.current_time)
        self.boot = status
        if self._boot_answered is not None:
            self._boot_answered.set()
        if status is not BootState.ACCEPTED:
            # The next BootNotification after the interval (our own backoff if 0).
            wait = interval if interval > 0 else self._boot_backoff()
            self.next_boot_at = self.clock.monotonic() + wait
        FLEET.bump()
        if status is BootState.ACCEPTED and interval > 0:
            self.config["HeartbeatInterval"] = str(interval)
            self.listener.on_config(self, "HeartbeatInterval", str(interval))
        self.next_heartbeat = self.clock.monotonic() + self.config_int("HeartbeatInterval")
        self.meter_wake = 0.0  # the engine finds the next heartbeat
        self.listener.on_change(self)
        return status, interval

    def _boot_backoff(self) -> float:
        """The wait before the next BootNotification when the CSMS gave none (an interval
        of 0, or no answer)."""
        return 30 + self.rng.uniform(0, 10)

    async def send_triggered_boot(self) -> None:
        """TriggerMessage(BootNotification) after Accepted: send one, as real chargers do.

        If the CSMS answers this one Pending or Rejected, the charger is no longer
        registered: it sends nothing else (and, Rejected, answers nothing) until a
        BootNotification is accepted, so it must go on booting as after a connect (retry
        after the interval, then the statuses once Accepted); stopping here would leave
        it silent on this connection for good (no heartbeat, no transaction message)."""
        transport = self.transport
        if transport is None or not self.online:
            return
        try:
            await self._send_boot_notification()
        except LinkLost as exc:
            # Unanswered on a link now gone, as any triggered message may be: the charger
            # is as it was, and a new connection boots by itself if it must.
            log.info("%s: triggered BootNotification not answered: %s", self.id, exc)
            return
        # The state, not the answer: a boot that failed (a CALLERROR, no answer) leaves the
        # charger as it was, registered still, and its boot sequence must not run again.
        if self.boot is BootState.ACCEPTED or self.booting:
            return  # registered, or a boot sequence already goes on until it is
        if self.transport is transport:  # a new connection boots by itself
            await self.boot_sequence()

    def _sync_clock(self, current_time: str | None) -> None:
        if not current_time:
            return
        try:
            moment = parse_iso(current_time)
        except ValueError:
            log.info("%s: CSMS sent an unparseable currentTime %r", self.id, current_time)
            return
        if not _CLOCK_RANGE[0] <= moment < _CLOCK_RANGE[1]:
            # A clock near datetime's limits would make every later date computation
            # (intervals, schedules, the composite window) overflow: keep our own.
            log.info("%s: ignoring a currentTime out of range: %r", self.id, current_time)
            return
        offset = moment.timestamp() - self.clock.time()
        # Within a second of the host's clock, or of its own: the answer's time in flight
        # and its milliseconds, not a clock to follow. The host's (NTP-kept) clock stays,
        # and with it the meter's shared timestamps; an offset stays as it was set.
        if -CLOCK_NOISE_S < offset < CLOCK_NOISE_S:
            offset = 0.0
        step = offset - self.clock_offset
        if -CLOCK_NOISE_S < step < CLOCK_NOISE_S:
            return
        # Metered up to now on the old clock; the next visit reads the new one (a profile's
        # periods, the next clock-aligned boundary) and schedules the charger again.
        self.settle_meter()
        self.clock_offset = offset
        # Clock-aligned boundaries are the new clock's from this instant: the next visit
        # samples one that the new clock passes from now on (even in this tick), and none
        # that a step forward jumps over, which the charger never lived through.
        if self.metered_wall is not None:
            self.metered_wall = self.clock.time() + offset
        self.last_clock_slot = CLOCK_STEPPED
        # Stored (a restart dates its PowerLoss stops and starts its clock by it).
        self.listener.on_clock(self)
        if self.reservations:
            # Their timers ran for the seconds left on the old clock: an expiryDate the step
            # passed ends its reservation now, and the others run for what the new one leaves.
            self._arm_reservations(again=True)
        for waiter in self._date_waiters:  # a firmware's retrieveDate, say: counted again
            if not waiter.done():
                waiter.set_result(True)
        if self.firmware_waiting is not None and self.firmware_waiting[1] is not None:
            self.listener.on_change(self)  # its page counts down to the date on the new clock
        if abs(step) >= CLOCK_STEP_REPORTED_S:
            self.security_event(
                SecurityEvent.SETTING_SYSTEM_TIME,
                f"clock set {step:+.0f} s from the Central System's currentTime",
            )

    # -- the outgoing queue ----------------------------------------------------------------

    def enqueue(self, item: Outgoing) -> None:
        self.outbox.enqueue(item)

    def send(
        self,
        message: Message,
        transactional: bool = False,
        tx: TransactionRef | None = None,
        on_result: Callable[[Payload], None] | None = None,
        thinnable: bool = False,
    ) -> Outgoing:
        # Named arguments, not **kwargs: no dict made and unpacked for every message.
        item = Outgoing(message[0], message[1], transactional, tx, on_result=on_result)
        if thinnable:
            item.thinnable = True
        self.outbox.enqueue(item)
        return item

    async def request(self, message: Message) -> Payload:
        """Send a non-transactional message and wait for its answer (e.g. Authorize)."""
        future: asyncio.Future[Payload] = asyncio.get_running_loop().create_future()
        self.outbox.enqueue(Outgoing(message[0], message[1], future=future))
        return await future

    def wake(self) -> None:
        """Send the next ready message if nothing is outstanding."""
        self.outbox.wake()

    def _sendable(self) -> Transport | None:
        """The transport, when the charger may send its queue now (online and booted)."""
        if self.boot is not BootState.ACCEPTED or self.link is not LinkState.ONLINE:
            return None
        return self.transport

    def _retry_policy(self) -> tuple[int, int]:
        return (
            self.config_int("TransactionMessageAttempts"),
            self.config_int("TransactionMessageRetryInterval"),
        )

    # -- status ----------------------------------------------------------------------------

    def set_status(
        self,
        evse: Evse,
        status: ConnectorStatus,
        error_code: str = "NoError",
        info: str | None = None,
    ) -> bool:
        """Move a connector to a new status and report it; illegal moves raise."""
        self.settle_meter()  # what flowed until now flowed in the old status
        if (status is Status.FAULTED or status is Status.UNAVAILABLE) and self.reservations:
            # A reservation ends when its connector can no longer be used (1.6 section 5.13).
            held = self.reservations.on_connector(evse.connector_id)
            if held is not None and evse.status is not status:
                self._end_reservation(held, release=False)
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
        # The info too: a changed reason (a SuspendedEVSE's figure) is news to the CSMS.
        key = (str(status), error_code, info)
        if settled and self.last_sent_status.get(connector_id) == key:
            return
        self.last_sent_status[connector_id] = key
        self.send(
            self.messages.connector_status(connector_id, status, error_code, info, self.stamp())
        )

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
        # Asked for every charger on every tick and almost always false: the cheapest test
        # first.
        return (
            now >= self.next_heartbeat
            and self.online
            and self.boot is BootState.ACCEPTED
            and self.config.as_int("HeartbeatInterval") > 0
        )

    def send_heartbeat(self) -> None:
        self.next_heartbeat = self.clock.monotonic() + self.config_int("HeartbeatInterval")
        waiting = self._heartbeat
        if waiting is not None and any(item is waiting for item in self.queue):
            # The last one has not gone (or not been answered) yet, held up behind a
            # message that waits for its answer: a second would say nothing more, and
            # both would leave back to back once the queue moves.
            return
        self._heartbeat = self.send(self.messages.heartbeat(), on_result=self._heartbeat_answered)

    def _heartbeat_answered(self, result: dict[str, Any]) -> None:
        self._sync_clock(self.messages.read_clock(result))

    # -- authorization -------------------------------------------------------------------

    async def authorize(self, id_tag: str) -> str:
        """Authorize an idTag: online through the CSMS, offline by list/cache/configuration."""
        return (await self.authorize_info(id_tag)).status

    async def authorize_info(self, id_tag: str) -> IdTagAnswer:
        """`authorize`, with the idTag's parent (its group) when it is known."""
        if self.online and self.boot is BootState.ACCEPTED:
            try:
                result = await self.request(self.messages.authorize(id_tag))
            except (CallFailed, LinkLost) as exc:
                log.info("%s: Authorize failed (%s); deciding offline", self.id, exc)
            else:
                answer = self.messages.read_authorize(result)
                self.auth_cache.remember(id_tag, answer.status, answer.parent_id_tag, answer.expiry)
                return answer
        status = self.auth_cache.offline_status(id_tag)
        return IdTagAnswer(status, None, self.auth_cache.parent_of(id_tag))

    # -- local actions (dashboard, API, tests) --------------------------------------------

    def plug_in(
        self,
        connector_id: int,
        vehicle: VehicleSpec,
        soc: float = 20.0,
        target_soc: float = 100.0,
        *,
        brought_by: object = None,
    ) -> None:
        self.settle_meter()
        evse = self.evse(connector_id)
        if evse.battery is not None:
            raise ActionError("a vehicle is already plugged in")
        if evse.status in (Status.FAULTED, Status.UNAVAILABLE):
            raise ActionError(f"connector {connector_id} is {evse.status}")
        # A target of 0 is an empty car that wants nothing (a traffic profile may draw it),
        # as a target at the SoC is a full one: it plugs in and draws no power.
        if not 0 <= soc <= 100 or not 0 <= target_soc <= 100:
            raise ActionError("SoC must be within 0–100 %")
        if self.spec.power_type == "DC" and vehicle.dc_max_kw <= 0:
            raise ActionError(f"{vehicle.name} cannot charge on DC")
        evse.battery = Battery(vehicle, soc, max(target_soc, soc), brought_by=brought_by)
        evse.soc = soc
        self.listener.on_vehicle(self, evse)
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
        elif evse.status is not Status.RESERVED:
            # Plugged in, waiting for an idTag: a real charger waits as long as it takes.
            # (A reserved connector stays Reserved until its idTag is presented.)
            self.set_status(evse, Status.PREPARING)
        self.listener.on_change(self)

    async def present_id_tag(self, connector_id: int, id_tag: str) -> str:
        """A driver holds a card to the reader: start, or stop their own transaction."""
        evse = self.evse(connector_id)
        tx = self.transactions.get(connector_id)
        if tx is not None:
            stops = same_id_tag(tx.id_tag, id_tag) or await self._of_its_group(tx, id_tag)
            if stops and self.transactions.get(connector_id) is tx:  # (Authorize takes time)
                self.stop_transaction(connector_id, StopReason.LOCAL, id_tag=id_tag)
                return "Stopped"
            raise ActionError(f"connector {connector_id} is in a transaction of another idTag")
        if evse.status in (Status.FAULTED, Status.UNAVAILABLE):
            raise ActionError(f"connector {connector_id} is {evse.status}")
        if self.unlock_cable(connector_id):
            return "Unlocked"
        own = self.reservations.on_connector(connector_id) if self.reservations else None
        if own is not None and not own.admits(id_tag, None) and own.parent_id_tag is None:
            raise ActionError(f"connector {connector_id} is reserved for another idTag")
        if self.online and self.auth_cache.pre_authorized(id_tag):
            # Start at once from the local list or cache, without waiting for Authorize.
            # Online only: LocalPreAuthorize is the online rule (1.6 section 9.1);
            # offline, LocalAuthorizeOffline decides (`authorize_info`).
            info = IdTagAnswer(AuthStatus.ACCEPTED, None, self.auth_cache.parent_of(id_tag))
        else:
            info = await self.authorize_info(id_tag)
        status = info.status
        if status != "Accepted":
            return status
        if not self.claim_reservation(connector_id, id_tag, info.parent_id_tag):
            if self.reservations.on_connector(connector_id) is not None:
                raise ActionError(f"connector {connector_id} is reserved for another idTag")
            # A reservation of connector 0 holds no connector: "connector 1 is reserved"
            # sent the driver looking for one.
            raise ActionError(
                f"connector {connector_id} is the last free one, kept for a reservation of "
                "connector 0 (any connector) for another idTag"
            )
        if evse.battery is not None:
            self.start_transaction(connector_id, id_tag)
        else:
            self.pending_authorizations[connector_id] = id_tag
            if evse.status in (Status.AVAILABLE, Status.RESERVED):
                self.set_status(evse, Status.PREPARING)
            self._start_connection_timeout(connector_id)
        return status

    async def _of_its_group(self, tx: LocalTransaction, id_tag: str) -> bool:
        """Whether another idTag may stop this transaction: one of the same group, the
        parentIdTag of the idTag that started it (OCPP 1.6; the compliance test
        TC_069_CS). The presented idTag's group comes from the local list or the cache,
        else from an Authorize; a transaction of no known group is its idTag's alone."""
        group = tx.parent_id_tag or self.auth_cache.parent_of(tx.id_tag)
        if group is None:
            return False
        info = self.auth_cache.local_entry(id_tag)
        if info is None or info.status is not AuthStatus.ACCEPTED or info.parent_id_tag is None:
            info = await self.authorize_info(id_tag)
        return info.status is AuthStatus.ACCEPTED and same_id_tag(info.parent_id_tag, group)

    def start_transaction(self, connector_id: int, id_tag: str) -> LocalTransaction:
        self.settle_meter()
        evse = self.evse(connector_id)
        if connector_id in self.transactions:
            raise ActionError(f"connector {connector_id} already has a transaction")
        self._cancel_timer("connection-timeout", connector_id)
        self.pending_authorizations.pop(connector_id, None)
        reservation = self._reservation_used(connector_id, id_tag)
        if evse.status in (Status.RESERVED, Status.FINISHING):
            # Neither may go to Charging at once (1.6's state table): a new session on a
            # reserved connector, or on one whose last session ended with the cable still
            # in, passes through Preparing.
            self.set_status(evse, Status.PREPARING)
        tx = LocalTransaction(connector_id, id_tag, int(evse.register_wh), self.stamp())
        tx.metered_from = self.metered_at  # the settle above brought the meter up to now
        self.transactions[connector_id] = tx
        evse.session = SessionSeries(self.clock.time(), start_wh=evse.register_wh)
        evse.session.record(self.clock.time(), 0.0, evse.soc, evse.register_wh)
        evse.id_tag = id_tag
        evse.transaction_id = None
        interval = self.config_int("MeterValueSampleInterval")
        self.next_sample[connector_id] = self.clock.monotonic() + interval if interval else 0.0
        tx.begin_values = self._stop_txn_samples(evse, SampleContext.TRANSACTION_BEGIN)
        self.install_remote_start_profile(connector_id)
        self.send(
            self.messages.transaction_started(
                tx,
                connector_id,
                id_tag,
                tx.meter_start,
                tx.started_at,
                None if reservation is None else reservation.reservation_id,
            ),
            transactional=True,
            tx=tx,
            on_result=lambda result: self._on_start_confirmed(tx, result),
        )
        battery = evse.battery
        if battery is not None and (battery.is_full() or battery.paused):
            ev_suspended = Status.SUSPENDED_EV if self.offers(evse) else Status.SUSPENDED_EVSE
            self.set_status(evse, ev_suspended)
        elif (below := self.below_ac_minimum(evse)) is not None:
            self._suspend_below_minimum(evse, below)  # never Charging: nothing can flow
        elif battery is not None and not battery.spec.takes(self.spec.power_type):
            self._suspend_evse(evse, self.limits.get(connector_id))  # the car's own doing
        else:
            self.set_status(evse, Status.CHARGING)
        self.listener.on_transaction(self, tx)
        return tx

    def _on_start_confirmed(self, tx: LocalTransaction, result: Payload) -> None:
        tx.transaction_id, id_tag_info = self.messages.read_transaction_started(result)
        tx.parent_id_tag = id_tag_info.parent_id_tag
        evse = self.evse(tx.connector_id)
        if self.transactions.get(tx.connector_id) is tx:
            evse.transaction_id = tx.transaction_id
        status = id_tag_info.status
        self.auth_cache.remember(tx.id_tag, status, id_tag_info.parent_id_tag, id_tag_info.expiry)
        self.listener.on_transaction(self, tx)
        if status is not AuthStatus.ACCEPTED and self.transactions.get(tx.connector_id) is tx:
            if self.config_bool("StopTransactionOnInvalidId"):
                self.stop_transaction(tx.connector_id, StopReason.DEAUTHORIZED)
            else:
                # The transaction goes on without energy: held here, not only in the
                # status, or the meter's next visit would find power offered and charge.
                self.settle_meter()
                evse.deauthorized = True
                self._kept_points.pop(tx.connector_id, None)
                evse.stop_flow()
                if evse.status in (Status.CHARGING, Status.SUSPENDED_EV):
                    self.set_status(evse, Status.SUSPENDED_EVSE)
        self.listener.on_change(self)

    def stop_transaction(
        self,
        connector_id: int,
        reason: StopReason = StopReason.LOCAL,
        id_tag: str | None = None,
        *,
        end_values: list[MeterSample] | None = None,
    ) -> LocalTransaction:
        """End the connector's transaction now. `end_values`: its Transaction.End samples,
        taken by a caller that is about to lose what they read (`unplug`); None: taken
        here."""
        self.settle_meter()  # meterStop and the last samples are of now
        evse = self.evse(connector_id)
        tx = self.transactions.pop(connector_id, None)
        if tx is None:
            raise ActionError(f"connector {connector_id} has no transaction")
        evse.stop_flow()
        evse.deauthorized = False
        tx.meter_stop = max(int(evse.register_wh), tx.meter_start)
        tx.stopped_at = self.stamp()
        tx.stop_reason = reason
        if evse.session is not None:
            evse.session.end(self.clock.time(), evse.soc, evse.register_wh)
        if end_values is None:
            end_values = self._stop_txn_samples(evse, SampleContext.TRANSACTION_END)
        # At most StopTransactionMaxMeterValues, the begin and the end always among them.
        room = max(self.config_int("StopTransactionMaxMeterValues"), 2)
        middle = max(room - len(tx.begin_values) - len(end_values), 0)
        samples = [*tx.begin_values, *tx.aligned_values[:middle], *end_values][:room]
        self.send(
            self.messages.transaction_ended(
                tx, tx.meter_stop, tx.stopped_at, reason, id_tag, samples
            ),
            transactional=True,
            tx=tx,
            on_result=None if not id_tag else partial(self._on_stop_confirmed, id_tag),
        )
        self.next_sample.pop(connector_id, None)
        # The connector's transaction (as the dashboard and the API show it) is over.
        evse.id_tag = None
        evse.transaction_id = None
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
            self._apply_charger_availability()
        return tx

    def _on_stop_confirmed(self, id_tag: str, result: Payload) -> None:
        """1.6 section 4.10: the idTagInfo of StopTransaction.conf updates the
        authorization cache as Authorize.conf's and StartTransaction.conf's do (a tag
        blocked meanwhile must not start offline on what the cache said at the start)."""
        info = self.messages.read_transaction_ended(result)
        if info is not None:
            self.auth_cache.remember(id_tag, info.status, info.parent_id_tag, info.expiry)

    def unplug(self, connector_id: int) -> None:
        self.settle_meter()
        evse = self.evse(connector_id)
        if evse.battery is None:
            raise ActionError("no vehicle plugged in")
        end_values = None
        if connector_id in self.transactions and self.config_bool(
            "StopTransactionOnEVSideDisconnect"
        ):
            # The transaction ends as the car leaves: its Transaction.End readings are of
            # the car at that instant (its SoC, the phases it drew on), nothing flowing
            # any more, taken before its readings go with it.
            evse.stop_flow()
            end_values = self._stop_txn_samples(evse, SampleContext.TRANSACTION_END)
            if evse.session is not None:  # the chart's last point too: it had no SoC
                evse.session.end(self.clock.time(), evse.soc, evse.register_wh)
        evse.battery = None
        evse.soc = None
        self.listener.on_vehicle(self, evse)
        # Nothing is connected: no reading applies any more (not the last one's 230 V).
        evse.voltage_v = ()
        evse.current_a = ()
        if connector_id in self.transactions:
            if not self.config_bool("UnlockConnectorOnEVSideDisconnect"):
                # The cable stays locked in the charger's socket: the connector is not free
                # (Finishing) until an idTag is presented or the CSMS sends UnlockConnector.
                self.locked_cables.add(connector_id)
            if self.config_bool("StopTransactionOnEVSideDisconnect"):
                self.stop_transaction(
                    connector_id, StopReason.EV_DISCONNECTED, end_values=end_values
                )
            else:
                self.set_status(evse, Status.SUSPENDED_EV)
                evse.cut_power()
                self.listener.on_change(self)
                return
        if evse.status in (Status.FINISHING, Status.PREPARING) and (
            connector_id not in self.locked_cables
        ):
            self.set_status(evse, Status.AVAILABLE)
            self._back_to_reserved(evse)
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

    def pause_ev(self, connector_id: int) -> None:
        """The EV stops drawing power (OCPP 1.6: SuspendedEV, "the EV is connected to the
        EVSE but it is not requesting energy"); SuspendedEVSE, if the charger offers
        nothing now, stays (it wins over SuspendedEV). The session goes on."""
        self.settle_meter()
        evse = self.evse(connector_id)
        battery = evse.battery
        if battery is None:
            raise ActionError("no vehicle plugged in")
        if battery.paused:
            raise ActionError(f"the EV on connector {connector_id} is already paused")
        battery.paused = True
        self.listener.on_vehicle(self, evse)
        if evse.status is Status.CHARGING:
            evse.stop_flow()
            self.set_status(evse, Status.SUSPENDED_EV)
        self.listener.on_change(self)

    def resume_ev(self, connector_id: int) -> None:
        """The paused EV requests energy again: Charging, or SuspendedEVSE if the charger
        offers nothing now (a full battery stays SuspendedEV)."""
        self.settle_meter()
        evse = self.evse(connector_id)
        battery = evse.battery
        if battery is None:
            raise ActionError("no vehicle plugged in")
        if not battery.paused:
            raise ActionError(f"the EV on connector {connector_id} is not paused")
        battery.paused = False
        self.listener.on_vehicle(self, evse)
        if (
            evse.status is Status.SUSPENDED_EV
            and connector_id in self.transactions
            and not battery.is_full()
        ):
            limit = self.limits.get(connector_id)
            if self.operating_point(evse, limit).power_w > 0.0:
                self.set_status(evse, Status.CHARGING)
            else:
                self._suspend_evse(evse, limit)
        self.listener.on_change(self)

    def inject_fault(
        self, connector_id: int, error_code: str = "OtherError", info: str | None = None
    ) -> None:
        if error_code not in FAULT_CODES:
            raise ActionError(f"{error_code!r} is not an OCPP 1.6 fault code")
        evse = self.evse(connector_id)
        if evse.status is Status.FAULTED and evse.error_code == error_code:
            # Nothing would change (no StatusNotification either): refused as a second
            # pause_ev is, so that a script can tell it did nothing.
            raise ActionError(f"connector {connector_id} is already faulted ({error_code})")
        self.settle_meter()
        evse.cut_power()
        if connector_id in self.pending_authorizations:
            # A fault ends the incipient session: authorized with no cable yet, it would
            # otherwise start at the next plug-in after the fault cleared, the connector
            # Available meanwhile. The driver presents the card again.
            self._cancel_timer("connection-timeout", connector_id)
            self.pending_authorizations.pop(connector_id, None)
            self.pending_profiles.pop(connector_id, None)
            self.authorization_expires.pop(connector_id, None)
            self._claimed.pop(connector_id, None)
        self.set_status(evse, Status.FAULTED, error_code, info)

    def clear_fault(self, connector_id: int) -> None:
        self.settle_meter()
        evse = self.evse(connector_id)
        if evse.status is not Status.FAULTED:
            raise ActionError(f"connector {connector_id} is not faulted")
        if connector_id in self.transactions:
            # An Inoperative set meanwhile is Scheduled: it waits for the session's end.
            paused = evse.battery is not None and evse.battery.paused
            self.set_status(evse, Status.SUSPENDED_EV if paused else Status.CHARGING)
        elif self.availability.get(connector_id) == "Inoperative":
            # Made Inoperative (the connector, or the whole charger) by the CSMS: it is
            # Unavailable again, a car plugged in or not, until made Operative (then
            # Preparing with a car, `apply_availability`), as it refuses to start.
            self.set_status(evse, Status.UNAVAILABLE)
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
        parsed = None
        if charging_profile is not None:
            # A TxProfile without a transactionId; installed when the transaction starts.
            try:
                parsed = parse_remote_start_profile(charging_profile)
            except ProfileError as exc:
                log.info("%s: RemoteStartTransaction profile rejected: %s", self.id, exc)
                return "Rejected", None
        # Absent: any free connector. 0 is no connector to start on (1.6 section 6.33:
        # connectorId SHALL be > 0): Rejected like any other the charger does not have.
        candidates = [connector_id] if connector_id is not None else self._start_candidates(id_tag)
        for candidate in candidates:
            if not 1 <= candidate <= len(self.evses):
                return "Rejected", None
            evse = self.evse(candidate)
            if candidate in self.transactions or candidate in self.pending_authorizations:
                continue
            if evse.status in _REMOTE_STARTABLE:
                if evse.status is Status.FINISHING and evse.battery is None:
                    continue
                # A profile the store would refuse (a stackLevel above
                # ChargeProfileMaxStackLevel, too many periods, a unit not allowed) was
                # dropped at the start without a word: the session charged unlimited while
                # the CSMS took it as limited.
                why = None
                if parsed is not None:
                    why = self.profiles.check(candidate, parsed, active_transaction_id=-1)
                if why is not None:
                    log.info("%s: RemoteStartTransaction profile rejected: %s", self.id, why)
                    return "Rejected", None
                # Reserved for someone else: refused, unless the CSMS named a connector
                # reserved for a group of which only it knows whether the idTag is a
                # member (its Authorize then decides, in `after_remote_start`).
                parent = self.auth_cache.parent_of(id_tag)
                claimed = self.claim_reservation(candidate, id_tag, parent)
                if not claimed and not (
                    connector_id is not None and self._group_to_ask(candidate, id_tag)
                ):
                    continue
                if charging_profile is not None:
                    self.pending_profiles[candidate] = charging_profile
                return "Accepted", candidate
        return "Rejected", None

    def _start_candidates(self, id_tag: str) -> list[int]:
        """The connectors a remote start without a connectorId may take, in order: the one
        reserved for this idTag (or its group) first, so that its reservation is used, not
        left to expire beside a session on another connector; then the others."""
        connectors = [evse.connector_id for evse in self.evses]
        if not self.reservations:
            return connectors
        parent = self.auth_cache.parent_of(id_tag)

        def not_its_own(connector: int) -> bool:
            reservation = self.reservations.on_connector(connector)
            return reservation is None or not reservation.admits(id_tag, parent)

        return sorted(connectors, key=not_its_own)  # stable: the others keep their order

    async def after_remote_start(self, id_tag: str, connector_id: int) -> None:
        # 1.6: AuthorizeRemoteTxRequests authorizes the request "like a local action to
        # start a transaction": with LocalPreAuthorize, an idTag the local list or cache
        # accepts starts without an Authorize, as at the reader.
        ask_group = self._group_to_ask(connector_id, id_tag)
        if ask_group or (
            self.config_bool("AuthorizeRemoteTxRequests")
            and not (self.online and self.auth_cache.pre_authorized(id_tag))
        ):
            info = await self.authorize_info(id_tag)
            why = None if info.status == "Accepted" else f"not authorized ({info.status})"
            parent = info.parent_id_tag
            if (
                why is None
                and ask_group
                and not self.claim_reservation(connector_id, id_tag, parent)
            ):
                why = "the connector is reserved for another group"
            if why is not None:
                log.info("%s: remote start for %s: %s", self.id, id_tag, why)
                # Its TxProfile goes with it: kept, the next driver's session took it.
                self.pending_profiles.pop(connector_id, None)
                return
        evse = self.evse(connector_id)
        if evse.battery is None and self.spec.simulate_ev_on_remote_start:
            vehicle = self.pick_vehicle()
            if vehicle is not None:
                self.pending_authorizations[connector_id] = id_tag
                self.plug_in(
                    connector_id, vehicle, soc=round(self.rng.uniform(10, 40), 1), target_soc=100.0
                )
                return
        if evse.battery is not None:
            if evse.status is Status.FINISHING:
                self.set_status(evse, Status.PREPARING)
            self.start_transaction(connector_id, id_tag)
            return
        self.pending_authorizations[connector_id] = id_tag
        if evse.status in (Status.AVAILABLE, Status.RESERVED):
            self.set_status(evse, Status.PREPARING)
        self._start_connection_timeout(connector_id)

    def _group_to_ask(self, connector_id: int, id_tag: str) -> bool:
        """Whether the connector's reservation is for a group (a parentIdTag) that this
        idTag may belong to, which neither the list nor the cache can tell: 1.6 section
        5.13, the charger then SHALL send an Authorize for the idTag to learn its
        parentIdTag."""
        own = self.reservations.on_connector(connector_id) if self.reservations else None
        return (
            own is not None
            and own.parent_id_tag is not None
            and not own.admits(id_tag, None)
            and self.auth_cache.parent_of(id_tag) is None
        )

    def remote_stop(self, transaction_id: int) -> str:
        if self.boot is not BootState.ACCEPTED:
            # 1.6 section 4.2: RemoteStopTransaction is not allowed while Pending, as
            # RemoteStart is not (a transaction may run then: a triggered BootNotification
            # answered Pending, or one started offline before the boot).
            return "Rejected"
        for connector_id, tx in self.transactions.items():
            if tx.transaction_id == transaction_id:
                self.stop_transaction(connector_id, StopReason.REMOTE)
                if self.spec.simulate_ev_on_remote_start:
                    self.driver_unplugs_later(connector_id, self.rng.uniform(2, 5))
                return "Accepted"
        return "Rejected"

    def driver_unplugs_later(self, connector_id: int, delay: float) -> None:
        """A simulated driver walks back and unplugs once the transaction is over."""
        self._start_timer("driver-unplug", connector_id, delay, self._driver_unplugs)

    def _driver_unplugs(self, connector_id: int) -> None:
        evse = self.evse(connector_id)
        if evse.battery is not None and connector_id not in self.transactions:
            self.unplug(connector_id)

    def pick_vehicle(self) -> VehicleSpec | None:
        if self.spec.default_vehicle is not None:
            return self.spec.default_vehicle
        # Not a car that takes nothing here (a DC-only one on AC): a simulated driver
        # would not plug it in.
        fitting = [v for v in self.vehicles if v.takes(self.spec.power_type)]
        return self.rng.choice(fitting) if fitting else None

    # -- reservations -------------------------------------------------------------------

    def firmware_waits(self, what: str | None, at: float | None = None) -> None:
        """A firmware update now waits for `what` (None: no longer waits), until `at` (a
        date on the charger's clock) if it is a time; the page is told."""
        self.firmware_waiting = None if what is None else (what, at)
        self.listener.on_change(self)

    def wall_time(self) -> float:
        """The charger's clock as epoch seconds (synchronised to the CSMS's)."""
        return self.clock.time() + self.clock_offset + self.impairments.clock_skew_s

    async def sleep_until(self, at: float) -> None:
        """Wait until `at` (epoch s) on the charger's clock. A wait of the seconds left
        would go by the clock as it was: a step of it (the CSMS's currentTime) wakes the
        wait to count again on the new one, at once over if the step passed `at`."""
        loop = asyncio.get_running_loop()
        while (left := at - self.wall_time()) > 0:
            waiter: asyncio.Future[bool] = loop.create_future()

            def counted_out(waiter: asyncio.Future[bool] = waiter) -> None:
                if not waiter.done():
                    waiter.set_result(False)

            handle = self.clock.call_later(left, counted_out)
            self._date_waiters.add(waiter)
            try:
                stepped = await waiter
            finally:
                handle.cancel()
                self._date_waiters.discard(waiter)
            if not stepped:
                return  # the seconds ran out (a test's clock may hold the date still)

    def reserve_now(
        self,
        connector_id: int,
        expiry: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
    ) -> str:
        """ReserveNow: Accepted, Occupied, Faulted, Unavailable or Rejected."""
        if not 0 <= connector_id <= len(self.evses):
            return "Rejected"
        try:
            expires_at = parse_iso(expiry).timestamp()
        except ValueError:
            return "Rejected"
        if expires_at <= self.wall_time():
            return "Rejected"  # already over
        self._expire_due()
        if connector_id == 0:
            if not self.config_bool("ReserveConnectorZeroSupported"):
                return "Rejected"
            answer = self._reservable_anywhere(reservation_id)
        else:
            answer = self._reservable(connector_id, reservation_id)
        if answer != "Accepted":
            return answer
        # Kept in one form (UTC, milliseconds): what a CSMS sends may be of any length.
        expiry = now_iso(datetime.fromtimestamp(expires_at, UTC))
        reservation = Reservation(
            reservation_id, connector_id, id_tag, expiry, expires_at, parent_id_tag or None
        )
        replaced = self.reservations.add(reservation)
        if replaced is not None and replaced.connector_id != connector_id:
            self._release(replaced)  # a reservation moved to another connector
        self._start_timer(
            "reservation", reservation_id, expires_at - self.wall_time(), self._reservation_expired
        )
        if connector_id:
            self.set_status(self.evse(connector_id), Status.RESERVED)
        self.listener.on_reservations(self)
        self.listener.on_change(self)
        return "Accepted"

    def cancel_reservation(self, reservation_id: int) -> str:
        """CancelReservation: Accepted for a reservation the charger holds, else Rejected."""
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            return "Rejected"
        self._end_reservation(reservation)
        return "Accepted"

    def claim_reservation(self, connector_id: int, id_tag: str, parent_id_tag: str | None) -> bool:
        """May this (authorized) idTag use the connector given the reservations? If it
        uses one, the transaction it starts there carries that reservation's id."""
        self._claimed.pop(connector_id, None)
        if not self.reservations:
            return True
        self._expire_due()
        others_free = len([c for c in self._free_connectors() if c != connector_id])
        allowed, reservation = self.reservations.usable(
            connector_id, id_tag, parent_id_tag, others_free
        )
        if allowed and reservation is not None:
            self._claimed[connector_id] = reservation.reservation_id
        return allowed

    def restore_reservations(self, records: list[dict[str, Any]]) -> None:
        """After a restart: the reservations still valid (their timers start once the
        charger runs on an event loop, at its first connection)."""
        now = self.wall_time()
        for record in records:
            try:
                expires_at = parse_iso(str(record["expiry"])).timestamp()
                reservation = Reservation(
                    int(record["reservation_id"]),
                    int(record["connector_id"]),
                    str(record["id_tag"]),
                    str(record["expiry"]),
                    expires_at,
                    record.get("parent_id_tag") or None,
                )
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("%s: a stored reservation is not usable: %s", self.id, exc)
                continue
            connector = reservation.connector_id
            if expires_at <= now or not 0 <= connector <= len(self.evses):
                continue
            if connector:
                evse = self.evse(connector)
                if evse.status is not Status.AVAILABLE:
                    continue  # made Unavailable meanwhile: the reservation ended
                evse.transition(Status.RESERVED)  # reported with every status after boot
            self.reservations.add(reservation)

    def _reservable(self, connector_id: int, reservation_id: int) -> str:
        evse = self.evse(connector_id)
        if self.charger_unavailable or evse.status is Status.UNAVAILABLE:
            return "Unavailable"
        if evse.status is Status.FAULTED:
            return "Faulted"
        held = self.reservations.on_connector(connector_id)
        if held is not None and held.reservation_id != reservation_id:
            return "Occupied"
        if (
            evse.status not in (Status.AVAILABLE, Status.RESERVED)
            or evse.battery is not None
            or connector_id in self.transactions
            or connector_id in self.pending_authorizations
        ):
            return "Occupied"
        anywhere = [r for r in self.reservations.anywhere() if r.reservation_id != reservation_id]
        free = self._free_connectors()
        if anywhere and held is None and len(free) - 1 < len(anywhere):
            return "Occupied"  # the last free connectors are promised to connector 0
        return "Accepted"

    def _reservable_anywhere(self, reservation_id: int) -> str:
        if self.charger_unavailable:
            return "Unavailable"
        others = [r for r in self.reservations.anywhere() if r.reservation_id != reservation_id]
        free = self._free_connectors()
        if len(free) > len(others):
            return "Accepted"
        statuses = {evse.status for evse in self.evses}
        if statuses == {Status.FAULTED}:
            return "Faulted"
        if statuses == {Status.UNAVAILABLE}:
            return "Unavailable"
        return "Occupied"

    def _free_connectors(self) -> list[int]:
        """Connectors nobody uses or holds: Available, no cable, no session, no reservation."""
        return [
            evse.connector_id
            for evse in self.evses
            if evse.status is Status.AVAILABLE
            and evse.battery is None
            and evse.connector_id not in self.transactions
            and evse.connector_id not in self.pending_authorizations
        ]

    def _reservation_used(self, connector_id: int, id_tag: str) -> Reservation | None:
        """The reservation a transaction starting now uses (it ends with the start)."""
        if not self.reservations:
            self._claimed.pop(connector_id, None)
            return None
        claimed = self._claimed.pop(connector_id, None)
        reservation = self.reservations.get(claimed) if claimed is not None else None
        if reservation is None:
            _allowed, reservation = self.reservations.usable(
                connector_id, id_tag, self.auth_cache.parent_of(id_tag), 0
            )
        if reservation is not None:
            self._end_reservation(reservation, release=False)
        return reservation

    def _end_reservation(self, reservation: Reservation, *, release: bool = True) -> None:
        """Forget a reservation (used, cancelled, expired, its connector out of order);
        with `release`, its connector becomes Available again."""
        if self.reservations.remove(reservation.reservation_id) is None:
            return
        self._cancel_timer("reservation", reservation.reservation_id)
        for connector, claimed in list(self._claimed.items()):
            if claimed == reservation.reservation_id:
                del self._claimed[connector]
        if release:
            self._release(reservation)
        self.listener.on_reservations(self)
        self.listener.on_change(self)

    def _release(self, reservation: Reservation) -> None:
        if reservation.connector_id:
            evse = self.evse(reservation.connector_id)
            if evse.status is Status.RESERVED:
                # A car plugged in meanwhile waited in Reserved: now it waits for an idTag,
                # as on a free connector, not Available with the cable in.
                free = Status.AVAILABLE if evse.battery is None else Status.PREPARING
                self.set_status(evse, free)

    def _back_to_reserved(self, evse: Evse) -> None:
        """A connector that became Available again while its reservation still holds."""
        if self.reservations and self.reservations.on_connector(evse.connector_id) is not None:
            self.set_status(evse, Status.RESERVED)

    def _reservation_expired(self, reservation_id: int) -> None:
        reservation = self.reservations.get(reservation_id)
        if reservation is not None:
            log.info("%s: reservation %d expired", self.id, reservation_id)
            self._end_reservation(reservation)

    def _expire_due(self) -> None:
        now = self.wall_time()
        for reservation in list(self.reservations):
            if reservation.expires_at <= now:
                self._reservation_expired(reservation.reservation_id)

    def _arm_reservations(self, *, again: bool = False) -> None:
        """Time the reservations to their expiry on the charger's clock (`again`: also
        those timed already, whose timers counted on another clock)."""
        self._expire_due()
        now = self.wall_time()
        for reservation in self.reservations:
            if again or ("reservation", reservation.reservation_id) not in self.timers:
                self._start_timer(
                    "reservation",
                    reservation.reservation_id,
                    reservation.expires_at - now,
                    self._reservation_expired,
                )

    # -- the local authorization list -------------------------------------------------------

    @property
    def feature_profiles(self) -> list[str]:
        return self.config_list("SupportedFeatureProfiles")

    def send_local_list(self, version: int, kind: str, items: list[Entry]) -> str:
        """SendLocalList: Accepted, Failed, VersionMismatch or NotSupported."""
        if "LocalAuthListManagement" not in self.feature_profiles:
            return UpdateStatus.NOT_SUPPORTED
        status, change = self.local_list.update(
            version,
            UpdateType(kind),
            items,
            max_length=self.config_int("LocalAuthListMaxLength"),
            max_items=self.config_int("SendLocalListMaxLength"),
        )
        if change is not None:
            for id_tag in change.entries:  # the list decides these now, not the cache
                self.auth_cache.forget(id_tag)
            self.listener.on_local_list(self, change)
            self.listener.on_change(self)
        return status

    def local_list_version(self) -> int:
        """GetLocalListVersion: -1 when the charger has no local list, 0 when it is empty."""
        if "LocalAuthListManagement" not in self.feature_profiles:
            return -1
        return self.local_list.reported_version

    def restore_local_list(self, version: int, entries: dict[str, IdTagAnswer]) -> None:
        self.local_list.restore(version, entries)

    def _auth_cache_changed(self) -> None:
        self.listener.on_auth_cache(self)

    # -- firmware and diagnostics -------------------------------------------------------------

    def start_job(self, name: str, job: Any) -> None:
        """Run a firmware or diagnostics procedure (a coroutine) as the charger's own task,
        replacing one of the same kind still running (`_replace_job`); it outlives the
        connection."""
        running = self.jobs.get(name)
        if running is not None and not running.done():
            self._replace_job(name, running)
        # The task runs the job itself (not a wrapper awaiting it): cancelled before its
        # first step, the job is closed with it instead of left never awaited.
        task = asyncio.get_running_loop().create_task(job, name=f"{self.id}:{name}")
        self.jobs[name] = task
        task.add_done_callback(lambda done: self._job_done(name, done))

    def would_cancel(self, name: str) -> bool:
        """Whether a new request of this kind would cancel one still running (answered
        AcceptedCanceled where the request has that answer: SignedUpdateFirmware, GetLog)."""
        running = self.jobs.get(name)
        if running is None or running.done():
            return False
        return not (name == JOB_FIRMWARE and self.firmware_status in _INSTALL_UNDER_WAY)

    def _replace_job(self, name: str, running: asyncio.Task[None]) -> None:
        """A newer request of a kind the charger runs one at a time (UpdateFirmware or
        SignedUpdateFirmware, GetDiagnostics, GetLog) replaces the older one still running:
        the CSMS asked again. The older one's last status, when it left one open
        (DownloadScheduled, Downloading, Downloaded, SignatureVerified, InstallScheduled,
        Uploading), is closed with the failure it amounts to (DownloadFailed,
        InstallationFailed, UploadFailed, UploadFailure), queued before the newer one says
        anything: each status the CSMS got has its end. The security whitepaper's requests
        also answer AcceptedCanceled, but that answer names no requestId: a CSMS tracking
        the older request by its id would wait for its end for ever, so a signed update
        and a GetLog are closed under their own requestId too. The log says why either
        way. An update already installing is let be (it is rebooting into its image): the
        newer one runs beside it and after the reboot."""
        if name == JOB_FIRMWARE and self.firmware_status in _INSTALL_UNDER_WAY:
            log.info(
                "%s: a new firmware update waits for the one installing (%s) to reboot",
                self.id,
                self.firmware_status,
            )
            return
        running.cancel()
        closing: Message | None = None
        ended = ""
        firmware = _FIRMWARE_CLOSING.get(self.firmware_status)
        if name == JOB_FIRMWARE and firmware is not None:
            request = self.signed_firmware_request
            self.firmware_status = firmware
            ended = firmware
            closing = (
                self.messages.firmware_status(firmware)
                if request is None
                else self.messages.signed_firmware_status(firmware, request)
            )
        elif name == JOB_DIAGNOSTICS and self.diagnostics_status is DiagnosticsStatus.UPLOADING:
            self.diagnostics_status = DiagnosticsStatus.UPLOAD_FAILED
            ended = self.diagnostics_status
            closing = self.messages.diagnostics_status(self.diagnostics_status)
        elif name == JOB_LOG and self.log_status is LogStatus.UPLOADING:
            # The whitepaper's UploadLogStatusEnumType has no Canceled (OCPP 2.0.1 added
            # AcceptedCanceled to it later for exactly this): of the statuses it allows,
            # UploadFailure says what happened, the file never arrived.
            self.log_status = LogStatus.UPLOAD_FAILURE
            ended = self.log_status
            closing = self.messages.log_status(self.log_status, self.log_request_id)
        if closing is None:
            log.info("%s: the running %s job is replaced by a newer request", self.id, name)
            return
        log.info(
            "%s: the running %s job is replaced by a newer request; it ends as %s",
            self.id,
            name,
            ended,
        )
        self.listener.on_change(self)
        self.send(closing)

    def _job_done(self, name: str, task: asyncio.Task[None]) -> None:
        if self.jobs.get(name) is task:
            del self.jobs[name]
        if not task.cancelled() and task.exception() is not None:
            # Nobody awaits a job: what it raises is logged, never lost.
            log.error("%s: the %s job failed", self.id, name, exc_info=task.exception())

    async def report_firmware(self, status: FirmwareStatus) -> None:
        self.firmware_status, self.signed_firmware_request = status, None
        self.listener.on_change(self)
        await self._report(self.messages.firmware_status(status))

    async def report_signed_firmware(self, status: FirmwareStatus, request_id: int) -> None:
        self.firmware_status, self.signed_firmware_request = status, request_id
        self.listener.on_change(self)
        await self._report(self.messages.signed_firmware_status(status, request_id))

    async def report_diagnostics(self, status: DiagnosticsStatus) -> None:
        self.diagnostics_status = status
        self.listener.on_change(self)
        await self._report(self.messages.diagnostics_status(status))

    async def report_log(self, status: LogStatus, request_id: int) -> None:
        self.log_status, self.log_request_id = status, request_id
        self.listener.on_change(self)
        await self._report(self.messages.log_status(status, request_id))

    def log_status_now(self) -> tuple[LogStatus, int | None]:
        """What a triggered LogStatusNotification says: Uploading (with its requestId)
        while an upload runs, else Idle."""
        if self.log_status is LogStatus.UPLOADING:
            return LogStatus.UPLOADING, self.log_request_id
        return LogStatus.IDLE, None

    def security_event(
        self,
        kind: str,
        tech_info: str | None = None,
        *,
        push: bool = True,
        level: int = logging.INFO,
    ) -> None:
        """Log a security event (e.g. "FirmwareUpdated", "ResetOrReboot") in the security
        log and, with `push`, report it to the Central System; the process's log gets a
        line at `level`.

        The whitepaper asks for the critical ones to be pushed, queued while offline and
        delivered for sure, as transaction messages are: so every pushed event goes
        through the durable part of the outbox (a charger reports few of them) and is sent
        again until answered. The simulator also pushes the non-critical events it raises
        at a person's pace (failed authentication, a security key changed, a lost link):
        the whitepaper allows it and CSMS operators want them. Events a hostile peer can
        raise at will (InvalidMessages) are only logged (`push=False`): pushing one per
        bad frame back to that peer would let it fill the outbox.
        """
        timestamp = now_iso(self.now())
        event = LoggedEvent(str(kind), timestamp, tech_info, sent=push)
        self.security_log.add(event)
        log.log(level, "%s: security event %s (%s)", self.id, kind, tech_info or "")
        self.listener.on_security_event(self, event)
        self.listener.on_change(self)
        if push:
            self.send(self.messages.security_event(kind, timestamp, tech_info), transactional=True)

    async def _report(self, message: Message) -> None:
        """Send a status notification and wait for its answer (the next step may be a
        reboot); offline, or refused, it is lost, as on a real charger."""
        try:
            await self.request(message)
        except (CallFailed, LinkLost) as exc:
            log.info("%s: %s not delivered: %s", self.id, message[0], exc)

    def firmware_status_now(self) -> FirmwareStatus:
        """What a triggered FirmwareStatusNotification says: Idle unless busy."""
        status = self.firmware_status
        if status in _SIGNED_ONLY:  # words FirmwareStatusNotification does not have
            return _SIGNED_ONLY[status]
        return status if status in FIRMWARE_BUSY else FirmwareStatus.IDLE

    def diagnostics_status_now(self) -> DiagnosticsStatus:
        status = self.diagnostics_status
        return status if status is DiagnosticsStatus.UPLOADING else DiagnosticsStatus.IDLE

    # -- certificates (security whitepaper, edition 3) ---------------------------------------

    def request_certificate(self) -> None:
        """Ask the central system for a charge point certificate (SignCertificate): what
        ExtendedTriggerMessage(SignChargePointCertificate) and the operator's action do."""
        self.start_job("certificate", self._obtain_certificate())

    def csr_identity(self) -> tuple[str, str]:
        """The CSR's subject (whitepaper): CN = the serial number (else the charge point
        id), O = the CpoName key (else "ChargeSim")."""
        organization = self.config.get("CpoName", "") or "ChargeSim"
        return self.spec.serial_number or self.id, organization

    async def _obtain_certificate(self) -> None:
        """SignCertificate with a CSR for a new key; if no CertificateSigned arrives within
        CertSigningWaitMinimum seconds, a new CSR, up to CertSigningRepeatTimes more times,
        the wait doubling each time."""
        arrived = self._chain_arrived = asyncio.Event()
        wait = float(max(self.config_int("CertSigningWaitMinimum"), 1))
        attempts = 1 + self.config_int("CertSigningRepeatTimes")
        for attempt in range(1, attempts + 1):
            csr = self.certificates.new_csr(*self.csr_identity())
            self.listener.on_certificates(self)
            try:
                answer = await self.request(self.messages.sign_certificate(csr))
            except (CallFailed, LinkLost) as exc:
                log.info(
                    "%s: SignCertificate %d/%d not answered: %s", self.id, attempt, attempts, exc
                )
            else:
                if not self.messages.read_accepted(answer):
                    log.info("%s: the central system rejected SignCertificate", self.id)
                    return
            try:
                await asyncio.wait_for(arrived.wait(), wait)
            except TimeoutError:
                wait *= 2
                continue
            return
        log.info("%s: no CertificateSigned after %d SignCertificate", self.id, attempts)

    def certificate_signed(self, chain: str) -> str:
        """CertificateSigned: Accepted (installed, used from the next connection) or
        Rejected (with the security event InvalidChargePointCertificate)."""
        try:
            self.certificates.accept_chain(
                chain,
                max_chain_size=self.config_int("CertificateSignedMaxChainSize"),
                now=datetime.fromtimestamp(self.wall_time(), UTC),
            )
        except CertificateError as exc:
            log.info("%s: CertificateSigned rejected: %s", self.id, exc)
            self.security_event("InvalidChargePointCertificate", str(exc))
            return "Rejected"
        log.info("%s: new charge point certificate installed", self.id)
        self.listener.on_certificates(self)
        self.listener.on_change(self)
        if self._chain_arrived is not None:
            self._chain_arrived.set()
        return "Accepted"

    def certificates_changed(self) -> None:
        self.listener.on_certificates(self)
        self.listener.on_change(self)

    async def install_firmware(self, version: str, signed_request: int | None = None) -> None:
        """The new firmware is in place: remember it and reboot to run it. That it is
        installed (and the FirmwareUpdated security event) is reported by the new firmware,
        after the reboot's BootNotification is accepted (`boot_sequence`)."""
        previous, self.spec.firmware_version = self.spec.firmware_version, version
        self.listener.on_firmware(self)
        self.installed_firmware = (previous, version, signed_request)
        await self.restart(f"firmware {version} installed")

    def _report_installed(self) -> None:
        """The first words of a firmware booted after its installation: queued, in order,
        before the connectors' statuses."""
        installed, self.installed_firmware = self.installed_firmware, None
        if installed is None:
            return
        previous, version, signed_request = installed
        self.security_event(SecurityEvent.FIRMWARE_UPDATED, f"{previous} -> {version}")
        status = FirmwareStatus.INSTALLED
        self.firmware_status, self.signed_firmware_request = status, signed_request
        self.listener.on_change(self)
        if signed_request is None:
            self.send(self.messages.firmware_status(status))
        else:
            self.send(self.messages.signed_firmware_status(status, signed_request))

    # -- charging profiles and the limits in force -------------------------------------------

    def _new_profile_store(self) -> ProfileStore:
        spec = self.spec
        phases = spec.phases if spec.power_type == "AC" else 3
        per_evse_w = max((e.max_power_w for e in self.evses), default=spec.max_power_w)
        return ProfileStore(
            len(self.evses),
            electrical=Electrical(
                voltage=spec.voltage_v,
                phases=phases,
                max_current=per_evse_w / (spec.voltage_v * phases),
            ),
            max_profiles=self.config_int("MaxChargingProfilesInstalled"),
            max_stack_level=self.config_int("ChargeProfileMaxStackLevel"),
            max_periods=self.config_int("ChargingScheduleMaxPeriods"),
            allowed_units=units_from_config(
                self.config.get("ChargingScheduleAllowedChargingRateUnit", "Current,Power")
            ),
            rated_w=spec.max_power_w,
        )

    def profiles_changed(self) -> None:
        self.settle_meter()  # the old limits held until now
        self.limits_dirty = True
        self.listener.on_profiles(self)

    def transaction_starts(self) -> dict[int, datetime]:
        starts = {}
        for connector_id, tx in self.transactions.items():
            try:
                starts[connector_id] = parse_iso(tx.started_at)
            except ValueError:
                starts[connector_id] = datetime.now(UTC)
        return starts

    def refresh_limits(
        self, demand_w: dict[int, float], turn_s: float = 0.0, now: float | None = None
    ) -> None:
        """Share the limits in force among the connectors that want power now: the
        ChargePointMax, the charger's rated power (its `power_sharing` policy) and the site's
        caps. Each is a cap on the sum or on one connector; the stricter wins per connector.

        An AC car that does not fit above the 6 A minimum waits (SuspendedEVSE). Once one has
        waited `turn_s` (its location's turns; 0: none), as many of the cars admitted first
        as wait give up their places to them, and so on in turn (`now`: the meter's
        monotonic clock, the charger's by default)."""
        self._share_limits(demand_w)
        if len(demand_w) > 1 and self._take_turn(demand_w, turn_s, now):
            self._share_limits(demand_w)

    def _share_limits(self, demand_w: dict[int, float]) -> None:
        """`refresh_limits`' sharing, in the order the connectors are admitted."""
        limits, at = self._limits_for(demand_w, self.site_caps_w, self.limits)
        if at is not None:
            self.limits_at = at
        if limits or self.limits:
            self.limits = limits

    def site_wants_w(self) -> dict[int, float]:
        """What each connector in a transaction would draw now without its site's caps: its
        vehicle's demand under the charger's own limits, shared as the charger shares them
        (its profiles and ChargePointMax, its rated power, no AC share below 6 A, in the
        order it admits cars). What the site's load management shares out: asked for less,
        a car the charger holds back would be given power it cannot use, and the others
        pieces too small to charge on."""
        demand = self.demand_w()
        if not demand:
            return demand
        limits, _at = self._limits_for(demand, {}, {})
        return {
            c: w if (limit := limits.get(c)) is None else self.draw_under(c, w, limit)
            for c, w in demand.items()
        }

    def draw_under(self, connector_id: int, demand_w: float, limit: Limit) -> float:
        """What the car on this connector, drawing `demand_w` with no limit, draws under
        `limit`: `operating_point`'s power, in closed form when the limit is in watts only.
        Then the power is the least of the EVSE, the car and its curve (`demand_w`) and the
        limit, or nothing under the AC minimum offer; worked out directly because a managed
        site's controller asks it of every connector every tick."""
        evse = self.evses[connector_id - 1]
        dc = self.spec.power_type == "DC"
        if evse.battery is not None and (dc or limit.amp_cap is not None):
            # Per phase the car uses, or at the pack voltage: the full computation.
            return min(demand_w, self.operating_point(evse, limit).power_w)
        if dc:  # no car to ask (a caller's guess at a demand): at the nominal voltage
            watts = demand_w if limit.watt_cap is None else min(demand_w, limit.watt_cap)
            if limit.amp_cap is not None:
                watts = min(watts, limit.amp_cap * _dc_line_v(evse))
            return max(0.0, watts)
        watts = max(0.0, limit.usable_watts)
        # The same tolerance as the operating point's test of the 6 A minimum.
        if watts < self.minimum_draw_w(connector_id) - 1e-6:
            return 0.0
        return min(demand_w, watts)

    def _limits_for(
        self, demand_w: dict[int, float], site: dict[int, float], before: dict[int, Limit]
    ) -> tuple[dict[int, Limit], datetime | None]:
        """The limits of the connectors wanting power (`demand_w`) under the charger's own
        limits and the site's caps (`site`), and the instant the profiles were read (None:
        none were). `before`: the limits in force, whose objects are kept while equal."""
        profiled = len(self.profiles) > 0
        rated = self.spec.max_power_w
        sharing = self.power_shared and (bool(site) or sum(demand_w.values()) > rated)
        ac = self.spec.power_type != "DC"
        if not sharing:
            if profiled:
                starts = self.transaction_starts()
                charging = {c: starts.get(c) for c in demand_w}
                at = self.now()
                return self.profiles.allocate(
                    at,
                    charging,
                    demand_watts=demand_w,
                    ac_minimum=ac,
                    order=self._admission_order(demand_w, starts),
                    phases=self._car_phases(demand_w) if ac else None,
                    dc_volts=None if ac else self._dc_volts(demand_w),
                ), at
            return {}, None
        voltage = self.profiles.electrical.voltage
        now = self.now() if profiled else None
        if now is not None:
            starts = self.transaction_starts()
            charging = {c: starts.get(c) for c in demand_w}
            own = self.profiles.own_limits(now, charging)
            # What each car draws under its own limit: an amp limit's watts over the
            # nominal supply are more than a single-phase or DC car draws under it.
            wants = {
                c: min(self.draw_under(c, demand_w[c], own[c]), site.get(c, math.inf))
                for c in demand_w
            }
        else:  # the common case, kept cheap: each connector's own limit is the physical one
            physical = self._physical_limit()
            wants = {c: min(physical.watts, w, site.get(c, math.inf)) for c, w in demand_w.items()}
        first: list[int] = []
        # An AC connector cannot be offered less than 6 A a phase: those admitted last wait
        # rather than all sharing too little to charge.
        floors = {c: self.minimum_draw_w(c) for c in demand_w} if ac else None
        # (On DC too with profiles: a ChargePointMax below the least rates admits in turn.)
        if self.spec.power_sharing == power_sharing.FIRST or floors or (not ac and profiled):
            first = self._admission_order(demand_w, self.transaction_starts())
        caps = power_sharing.share(rated, wants, self.spec.power_sharing, first, floors)
        for connector_id, watts in site.items():
            if connector_id in caps:
                caps[connector_id] = min(caps[connector_id], watts)
        if now is not None:
            limits = self._allocate(now, charging, caps, own, first)
            return {c: capped(limit, caps[c], voltage) for c, limit in limits.items()}, now
        limits = {}
        for c, cap in caps.items():
            previous = before.get(c)
            # The same cap as last tick (steady charging): keep its Limit.
            if (
                previous is not None
                and previous.watts == cap
                and previous.phases == physical.phases
                and not previous.profile_ids
            ):
                limits[c] = previous
            else:
                limits[c] = capped(physical, cap, voltage)
        return limits, None

    def _allocate(
        self,
        now: datetime,
        charging: dict[int, datetime | None],
        shares: dict[int, float],
        own: dict[int, Limit],
        order: list[int],
    ) -> dict[int, Limit]:
        """The ChargePointMax shared among `charging`, each wanting its `shares` of the
        rated power under its `own` limit, admitted in `order` (see `_limits_for`)."""
        ac = self.spec.power_type != "DC"
        return self.profiles.allocate(
            now,
            charging,
            demand_watts=shares,
            own=own,
            ac_minimum=ac,
            order=order,
            phases=self._car_phases(charging) if ac else None,
            dc_volts=None if ac else self._dc_volts(charging),
        )

    def _admission_order(
        self, demand_w: dict[int, float], starts: dict[int, datetime]
    ) -> list[int]:
        """The connectors wanting power in the order they are admitted when not all of them
        fit: the order their sessions started, as turns changed it."""
        queue, joined = self._admission_queue(demand_w, starts)
        if joined:
            transactions = self.transactions
            self._turn_sessions = {c: transactions[c] for c in queue if c in transactions}
        self._turn_queue = queue
        return queue

    def _admission_queue(
        self, wanting: Mapping[int, float], starts: Mapping[int, datetime]
    ) -> tuple[list[int], bool]:
        """`_admission_order` without keeping it (an offer asks what would happen): those
        queued in the same session first, then the others by when their sessions started
        (a connector without one last); and whether any joined the queue."""
        sessions, transactions = self._turn_sessions, self.transactions
        # A place is its session's: a new session on the connector queues at the back.
        queue = [
            c
            for c in self._turn_queue
            if c in wanting and c in transactions and sessions.get(c) is transactions[c]
        ]
        if len(queue) < len(wanting):
            known = set(queue)
            far = datetime.max.replace(tzinfo=UTC)
            queue += sorted(
                (c for c in wanting if c not in known), key=lambda c: (starts.get(c, far), c)
            )
            return queue, True
        return queue, False

    def _take_turn(self, demand_w: dict[int, float], turn_s: float, now: float | None) -> bool:
        """Whether a turn is over: True once the cars at the head of the queue moved to its
        back (then the limits are shared again). A car waits when it wants power, its share
        is nothing, and its own limit (`offers`) would let it charge alone."""
        limits = self.limits
        waiting = [
            c
            for c, want in demand_w.items()
            if want > 0.0
            and (limit := limits.get(c)) is not None
            and limit.watts <= 0.0
            and self.offers(self.evses[c - 1])
        ]
        if not waiting or turn_s <= 0.0:
            self._turn_started = None
            return False
        now = self.clock.monotonic() if now is None else now
        started = self._turn_started
        if started is None:
            self._turn_started = now
            return False
        if now - started < turn_s:
            return False
        self._turn_started = now
        parked = set(waiting)
        queue = self._turn_queue
        drawing = [c for c in queue if c not in parked and (c in limits and limits[c].watts > 0.0)]
        leaving = set(drawing[: len(waiting)])
        if not leaving:
            return False
        self._turn_queue = [c for c in queue if c not in leaving] + [
            c for c in queue if c in leaving
        ]
        return True

    def minimum_draw_w(self, connector_id: int) -> float:
        """The least power the connector's car can be offered and charge: 6 A on each phase
        it uses (AC, IEC 61851-1's control pilot); DC regulates down to nothing."""
        spec = self.spec
        if spec.power_type == "DC":
            return 0.0
        return MIN_AC_AMPS * spec.voltage_v * self._phases_used(connector_id)

    def _phases_used(self, connector_id: int) -> int:
        """The AC phases the connector's car draws on: both sides have them."""
        phases = max(1, self.spec.phases)
        battery = self.evses[connector_id - 1].battery
        if battery is not None:
            phases = max(1, min(battery.spec.ac_phases, phases))
        return phases

    def _car_phases(self, connectors: Iterable[int]) -> dict[int, int]:
        return {c: self._phases_used(c) for c in connectors}

    def _dc_volts(self, connectors: Iterable[int]) -> dict[int, float]:
        """The line voltage of each of these DC connectors (see `_dc_line_v`)."""
        return {c: _dc_line_v(self.evses[c - 1]) for c in connectors}

    def dc_line_volts(self) -> dict[int, float] | None:
        """Each connector's line voltage on a DC charger (its car's pack voltage, else a
        nominal 400 V), which its amp limits are DC current at; None on AC."""
        if self.spec.power_type != "DC":
            return None
        return self._dc_volts(evse.connector_id for evse in self.evses)

    def plugged_car_phases(self) -> dict[int, int] | None:
        """The phases the car plugged into each connector draws on (`_phases_used`), for
        the connectors with a car, which an AC limit converts between amps and watts over
        (as its offer does); None on DC."""
        if self.spec.power_type == "DC":
            return None
        return {
            evse.connector_id: self._phases_used(evse.connector_id)
            for evse in self.evses
            if evse.battery is not None
        }

    def _physical_limit(self) -> Limit:
        """What a connector may draw when nothing but its EVSE limits it."""
        electrical = self.profiles.electrical
        cached = self._physical
        if cached is None or cached[0] is not electrical:
            amps, phases = electrical.max_current, electrical.phases
            watts = amps * electrical.voltage * phases
            cached = self._physical = (electrical, Limit(amps=amps, watts=watts, phases=phases))
        return cached[1]

    def _rated_binds(self) -> bool:
        """Whether the connectors together could draw more than the rated power, or a site
        cap applies: only then does the meter share power (a cost per tick)."""
        total = sum(evse.max_power_w for evse in self.evses)
        return total > self.spec.max_power_w or bool(self.site_caps_w)

    def set_site_caps(self, caps_w: dict[int, float]) -> None:
        """The site's load management caps these connectors (W) from the next tick on."""
        if caps_w == self.site_caps_w:
            return
        self.settle_meter()
        self.site_caps_w = caps_w
        self.power_shared = self._rated_binds()

    def install_remote_start_profile(self, connector_id: int) -> None:
        profile = self.pending_profiles.pop(connector_id, None)
        if profile is None:
            return
        parsed = parse_remote_start_profile(profile)
        if self.profiles.install(connector_id, parsed, active_transaction_id=-1) == "Accepted":
            self.profiles_changed()

    # -- availability and reboot ------------------------------------------------------------

    def change_availability(self, connector_id: int, kind: str) -> str:
        """ChangeAvailability (connector 0: the whole charger): Accepted, or Scheduled when
        a transaction must end first."""
        self.settle_meter()
        targets = [e.connector_id for e in self.evses] if connector_id == 0 else [connector_id]
        if connector_id == 0:
            self.charger_unavailable = kind == "Inoperative"
            if self.charger_unavailable:
                for reservation in self.reservations.anywhere():
                    self._end_reservation(reservation)
        scheduled = False
        for target in targets:
            self.availability[target] = kind
            if kind == "Inoperative" and target in self.transactions:
                self.scheduled_availability[target] = kind
                scheduled = True
            else:
                self.scheduled_availability.pop(target, None)
                self.apply_availability(target)
        if connector_id == 0:
            self._apply_charger_availability(report=True)
        self.listener.on_availability(self)
        return "Scheduled" if scheduled else "Accepted"

    def _apply_charger_availability(self, report: bool = False) -> None:
        """Connector 0 (the charger as a whole) follows `charger_unavailable`, but an
        Inoperative answered Scheduled happens only after the transactions end (1.6
        section 5.2): until then connector 0 stays Available, as the connectors still in
        a transaction stay in theirs. `report`: send its status even if unchanged."""
        if self.charger_unavailable and self.scheduled_availability:
            return
        status = Status.UNAVAILABLE if self.charger_unavailable else Status.AVAILABLE
        if report or status is not self.connector0_status:
            self.connector0_status = status
            self.send_status(0)

    def restore_availability(self, charger_unavailable: bool) -> None:
        """After a restart: the whole charger was made Inoperative before it stopped."""
        self.charger_unavailable = charger_unavailable
        self.connector0_status = Status.UNAVAILABLE if charger_unavailable else Status.AVAILABLE

    def apply_availability(self, connector_id: int) -> None:
        evse = self.evse(connector_id)
        if evse.status is Status.FAULTED:
            # Faulted is the more specific of the two inoperative states: it is reported
            # while the fault lasts, and `clear_fault` then reports Unavailable if the
            # connector (or the charger) is Inoperative. Made Unavailable here, the fault
            # was hidden from the CSMS, and clearing it was refused ("not faulted").
            return
        inoperative = self.availability.get(connector_id) == "Inoperative"
        if inoperative and evse.status is not Status.UNAVAILABLE:
            if evse.status is Status.PREPARING:
                self.pending_authorizations.pop(connector_id, None)
                self.pending_profiles.pop(connector_id, None)
                self.set_status(evse, Status.AVAILABLE)
            self.set_status(evse, Status.UNAVAILABLE)
        elif not inoperative and evse.status is Status.UNAVAILABLE:
            self.set_status(
                evse, Status.PREPARING if evse.battery is not None else Status.AVAILABLE
            )

    async def restart(self, why: str, grace: float = 0.0) -> None:
        """Go down and boot again (Reset, new firmware) as a real charger does: report
        ResetOrReboot, give what is queued (that event, the StopTransactions of sessions cut
        short) up to REBOOT_PATIENCE_S to go out while online, then reboot; the socket
        stays open at least `grace` seconds from now (a Reset's answer has just gone).

        The grace is kept on the charger's clock, as its other timers: a test's clock says
        how long it was, rather than the test timing the host."""
        clock = self.clock
        started = clock.monotonic()
        self.restarting = True
        self.security_event(SecurityEvent.RESET_OR_REBOOT, why)
        await self.drain(REBOOT_PATIENCE_S)
        left = started + grace - clock.monotonic()
        if left > 0:
            await sleep(clock, left)
        self.reboot(why)

    async def drain(self, patience: float) -> None:
        """Wait, up to `patience` seconds on the charger's clock, for the queue to go out,
        while it can go: online and booted. A charger Pending or Rejected cannot send it
        (it stays queued for the next accepted boot), so nothing is waited for: a Reset
        while Pending used to keep its socket open the whole patience, 5 s, not the grace."""
        clock = self.clock
        deadline = clock.monotonic() + patience
        outbox = self.outbox
        while self.queue and outbox.can_send() and clock.monotonic() < deadline:
            await sleep(clock, DRAIN_POLL_S)

    def reboot(self, why: str = "reboot") -> None:
        """Go down now; `why` is the techInfo of the StartupOfTheFirmware that the next
        boot reports (`restart` also reports the ResetOrReboot first)."""
        self.settle_meter()
        for evse in self.evses:
            evse.stop_flow()
            if evse.status in (Status.FINISHING, Status.PREPARING) and evse.battery is None:
                evse.transition(Status.AVAILABLE)
            elif evse.status is Status.FINISHING:
                # The session it finished is gone with the reboot; the car is still plugged
                # in: the boot reports Preparing, not the state before it (QA saw Finishing,
                # then Preparing 4 ms later).
                evse.transition(Status.PREPARING)
        self.pending_authorizations.clear()
        self.pending_profiles.clear()
        self._claimed.clear()
        self.power_cycle(why)
        transport = self.transport
        if transport is not None:
            self._reboot_task = asyncio.get_running_loop().create_task(transport.close())

    def keep_vehicles_of(self, before: Charger) -> None:
        """A power cycle of `before` made this charger: the vehicles plugged into it stay
        plugged in (the same battery state) and, as after a Reset, a session one was
        charging in starts again once the boot is accepted, with the same idTag. The
        vehicles used to vanish, leaving connectors Available under parked cars."""
        for old in before.evses:
            battery = old.battery
            if battery is None or old.connector_id > len(self.evses):
                continue
            try:
                self.plug_in(
                    old.connector_id,
                    battery.spec,
                    battery.soc,
                    battery.target_soc,
                    brought_by=battery.brought_by,
                )
            except ActionError as exc:  # the connector changed under it (an edit)
                log.info("%s: vehicle on connector %d not kept: %s", self.id, old.connector_id, exc)
                continue
            evse = self.evse(old.connector_id)
            kept = evse.battery
            assert kept is not None
            if battery.paused:
                kept.paused = True
                self.listener.on_vehicle(self, evse)
            tx = before.transactions.get(old.connector_id)
            if tx is not None and not battery.is_full() and not battery.paused:
                self.resume_after_boot_for(old.connector_id, tx.id_tag)

    def resume_after_boot_for(self, connector_id: int, id_tag: str) -> None:
        """Start a session for `id_tag` on this connector once the boot is accepted (its car
        charged in one a power loss ended). Kept with the car (`Battery.resume_id_tag`), so
        that a restart before that boot still starts it."""
        self.resume_after_boot[connector_id] = id_tag
        evse = self.evse(connector_id)
        if evse.battery is not None and evse.battery.resume_id_tag != id_tag:
            evse.battery.resume_id_tag = id_tag
            self.listener.on_vehicle(self, evse)

    # -- changes made by the operator (the fleet edited while running) ----------------------

    def respec(self, spec: ChargerSpec, evse_power_w: dict[int, float]) -> None:
        """The operator edited what a charger is made of, without touching its identity or
        connector count (those need a reboot: the runtime builds a new charger). Live state
        (registers, statuses, availability, transactions, the outbox) is not touched; an
        ongoing session keeps its vehicle, new ones use the new limits from the next tick."""
        if spec.charge_point_id != self.id:
            raise ValueError("a new charge point id needs a reboot, not respec()")
        self.settle_meter()
        if spec.impairments != self.spec.impairments:
            self.impairments.apply_stored(spec.impairments)
        self.spec = spec
        FLEET.bump()  # its location may have changed
        for evse in self.evses:
            evse.max_power_w = evse_power_w.get(evse.connector_id, evse.max_power_w)
        self.profiles.rated_w = spec.max_power_w
        self.power_shared = self._rated_binds()
        self.listener.on_change(self)

    def use_vehicles(self, vehicles: list[VehicleSpec], default: VehicleSpec | None) -> None:
        """The vehicle catalogue was edited: the next plug-in picks from it; a vehicle
        already plugged in keeps the battery it came with."""
        self.vehicles = vehicles
        self.spec.default_vehicle = default

    def end_service(self, reason: StopReason = StopReason.OTHER) -> list[LocalTransaction]:
        """Taken out of service by the operator: every ongoing transaction ends now (its
        StopTransaction queued like any other), and the charger may then go offline. The
        cars stay plugged in, and none resumes a session a power loss ended (its boot not
        yet accepted) when the charger is back in service: the operator ended that too."""
        self.resume_after_boot.clear()
        for evse in self.evses:
            battery = evse.battery
            if battery is not None and battery.resume_id_tag is not None:
                battery.resume_id_tag = None
                self.listener.on_vehicle(self, evse)
        return [self.stop_transaction(c, reason) for c in list(self.transactions)]

    def forget_storage(self, listener: Listener | None) -> None:
        """The charger's database rows are gone (deleted): nothing of it may be written
        any more, so its messages no longer wait for durability and only `listener` (the
        dashboard's publisher, or none) hears of its changes."""
        self.queue.sink = None
        self.listener = listener or Listener()

    # -- sending outside the normal flow --------------------------------------------------

    def status_message(self, connector_id: int) -> Message:
        """The current status of a connector (0: the charger) as a message."""
        if connector_id == 0:
            status, error_code, info = self.connector0_status, "NoError", None
        else:
            evse = self.evse(connector_id)
            status, error_code, info = evse.status, evse.error_code, evse.info
        return self.messages.connector_status(connector_id, status, error_code, info, self.stamp())

    async def send_now(
        self, message: Message, on_result: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        """A triggered message: through the queue once booted, directly while Pending (the
        only messages a Pending charger may send). `on_result` hears its answer either way.

        A trigger is accepted only when the message will go (`may_send_triggered`). Should
        a BootNotification still come first (its retry fell due meanwhile), the message
        waits for its answer (one CALL outstanding), then goes as the answer says: through
        the queue once Accepted, directly if Pending, not at all otherwise (a charger not
        registered sends nothing but BootNotifications)."""
        if self.boot is BootState.ACCEPTED:
            self.send(message, on_result=on_result)
            return
        try:
            result = await self._call_unqueued(*message, on_accepted=on_result)
        except (CallFailed, LinkLost) as exc:
            log.info("%s: triggered %s failed: %s", self.id, message[0], exc)
            return
        if result is not None and on_result is not None:
            on_result(result)

    async def _call_unqueued(
        self,
        action: str,
        payload: Payload,
        *,
        boot: bool = False,
        on_accepted: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any] | None:
        """Send a CALL outside the queue once no other such CALL awaits its answer; its
        answer. A message other than the `boot` notification goes only while Pending: once
        the one before it made the charger Accepted, through the queue (None); with no boot
        accepted or pending, not at all (None, logged)."""
        async with self._unqueued:
            if not boot:
                if self.boot is BootState.ACCEPTED:
                    self.send((action, payload), on_result=on_accepted)
                    return None
                if self.boot is not BootState.PENDING:
                    log.info(
                        "%s: triggered %s not sent: its BootNotification is %s",
                        self.id,
                        action,
                        "rejected" if self.boot is BootState.REJECTED else "not answered",
                    )
                    return None
            transport = self.transport
            if transport is None:
                raise LinkLost(f"{self.id} is offline")
            return await transport.call(action, payload)

    # -- triggered messages (TriggerMessage, ExtendedTriggerMessage: `core.triggers`) ------

    async def trigger_boot(self) -> None:
        await self.send_triggered_boot()

    async def trigger_heartbeat(self) -> None:
        # Its answer sets the clock as a periodic Heartbeat's does (the currentTime of every
        # Heartbeat.conf, as the README promises).
        await self.send_now(self.messages.heartbeat(), on_result=self._heartbeat_answered)

    async def trigger_status(self, connector_id: int | None) -> None:
        """One connector's status (0: the charger's), or all when none is named."""
        targets = [connector_id] if connector_id is not None else range(len(self.evses) + 1)
        for target in targets:
            await self.send_now(self.status_message(target))

    async def trigger_meter_values(self, connector_id: int | None) -> None:
        """Meter values (context Trigger) of one connector, or of all when none (or 0)."""
        self.settle_meter()
        targets = [connector_id] if connector_id else [e.connector_id for e in self.evses]
        # Accepted means a MeterValues goes out: with no measurand configured, the register
        # (what a sampled value without a measurand means in OCPP 1.6).
        measurands = self.config_list("MeterValuesSampledData") or [
            Measurand.ENERGY_IMPORT_REGISTER.value
        ]
        for target in targets:
            if self.boot is BootState.ACCEPTED:
                self.send_meter_values(target, SampleContext.TRIGGER, measurands)
                continue
            # Pending: the queue sends nothing before Accepted, but a triggered message is
            # what a Pending charger may send (`send_now`), so it goes out now.
            values = self.readings(self.evse(target), measurands)
            if values:
                tx = self.transactions.get(target)
                message = self.messages.meter_values(
                    target, tx, SampleContext.TRIGGER, self.stamp(), values
                )
                await self.send_now(message)

    async def trigger_diagnostics_status(self) -> None:
        await self.send_now(self.messages.diagnostics_status(self.diagnostics_status_now()))

    async def trigger_firmware_status(self) -> None:
        await self.send_now(self.messages.firmware_status(self.firmware_status_now()))

    async def trigger_signed_firmware_status(self) -> None:
        """ExtendedTriggerMessage(FirmwareStatusNotification) asks for the whitepaper's
        SignedFirmwareStatusNotification: where a signed update stands, with its
        requestId, while one runs; Idle otherwise."""
        status, request_id = self.firmware_status, self.signed_firmware_request
        if request_id is None or status not in FIRMWARE_BUSY:
            status, request_id = FirmwareStatus.IDLE, None
        await self.send_now(self.messages.signed_firmware_status(status, request_id))

    async def trigger_log_status(self) -> None:
        await self.send_now(self.messages.log_status(*self.log_status_now()))

    async def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> Payload:
        """A vendor-specific message to the CSMS; its answer as the adapter received it."""
        return await self.request(self.messages.data_transfer(vendor_id, message_id, data))

    # -- recovery after a restart -------------------------------------------------------------

    def restore_message(
        self,
        action: str,
        payload: Payload,
        seq: int,
        attempts: int,
        tx: LocalTransaction | None,
        queued_at: float | None = None,
    ) -> None:
        """Put back a transaction message that was written but not confirmed before the
        process stopped; it is sent first, in its original order. `queued_at` (epoch s):
        when it was first queued, if known."""
        item = Outgoing(action, payload, transactional=True, tx=tx, seq=seq, attempts=attempts)
        item.queued_at = self.clock.time() if queued_at is None else queued_at
        # The row keeps no context: a periodic sample is known again by its payload, so that
        # the backlog's bound can thin the part of a long outage restored after a restart.
        item.thinnable = self.messages.is_periodic_sample(action, payload)
        if tx is not None and self.messages.is_transaction_start(action):
            item.on_result = lambda result: self._on_start_confirmed(tx, result)
        elif (id_tag := self.messages.ended_id_tag(action, payload)) is not None:
            item.on_result = partial(self._on_stop_confirmed, id_tag)
        self.queue.restore(item)

    def end_interrupted(
        self,
        tx: LocalTransaction,
        reason: StopReason = StopReason.POWER_LOSS,
        timestamp: str | None = None,
    ) -> None:
        """A transaction the process was in when it died: end it as a real charger does
        after a power loss, with the last register it knew (never below meterStart)."""
        self.settle_meter()
        evse = self.evse(tx.connector_id)
        tx.meter_stop = max(int(evse.register_wh), tx.meter_start)
        tx.stopped_at = timestamp or self.stamp()
        tx.stop_reason = reason
        self.send(
            self.messages.transaction_ended(tx, tx.meter_stop, tx.stopped_at, reason, None, []),
            transactional=True,
            tx=tx,
        )
        self.listener.on_transaction(self, tx)
        # Its TxProfile ended with it, as at any stop: kept, it held the session that
        # starts again after the boot at the old transaction's limit.
        if self.profiles.clear_transaction(tx.connector_id):
            self.profiles_changed()

    # -- ConnectionTimeOut and other timers ---------------------------------------------------

    def _start_connection_timeout(self, connector_id: int) -> None:
        timeout = self.config_int("ConnectionTimeOut")
        if timeout > 0:
            self.authorization_expires[connector_id] = self.clock.time() + timeout
            self._start_timer(
                "connection-timeout", connector_id, timeout, self._connection_timed_out
            )

    def _connection_timed_out(self, connector_id: int) -> None:
        """Authorized but no cable within ConnectionTimeOut: the incipient transaction is
        cancelled and the connector goes back to Available."""
        evse = self.evse(connector_id)
        self.pending_authorizations.pop(connector_id, None)
        self.pending_profiles.pop(connector_id, None)  # a remote start's, with it
        self._claimed.pop(connector_id, None)
        if (
            connector_id not in self.transactions
            and evse.status is Status.PREPARING
            and evse.battery is None
        ):
            self.set_status(evse, Status.AVAILABLE)
            self._back_to_reserved(evse)

    def _start_timer(
        self, name: str, connector_id: int, delay: float, callback: Callable[[int], None]
    ) -> None:
        self.timers.start(name, connector_id, delay, callback)

    def _cancel_timer(self, name: str, connector_id: int) -> None:
        self.timers.cancel(name, connector_id)

    def cancel_timers(self) -> None:
        self.timers.cancel_all()
        self.outbox.cancel_wake()
        for job in self.jobs.values():
            job.cancel()

    def dispose(self) -> None:
        """Gone for good (replaced by a reboot, or retired), offline and its last state
        saved: break the reference cycles it is part of, so that reference counting frees
        it. Left to the collector, a charger frozen with the fleet (`gc_policy`) would be
        freed only by a full collection of the whole heap, a pause of the event loop.

        What it shares with the charger that replaced it (its security log, the vehicles
        `keep_vehicles_of` took over) is left alone. A late call on it (a timer's, an
        answer's) finds it offline with nothing to send: it must not fail, only do nothing."""
        self.cancel_timers()
        self.jobs.clear()
        self.outbox.dispose()
        # The charger's own bound `wall_time` (the cache lives as long as the charger).
        self.auth_cache.now = self.clock.time
        self.transport = None
        self.listener = Listener()  # nothing it does now is news to the pages or the store
        self.meter_settle = None

    # -- meter values -------------------------------------------------------------------------

    def readings(
        self, evse: Evse, measurands: list[str], register_wh: float | None = None
    ) -> list[Reading]:
        """The readings of the measurands asked for (their configured names; unknown ones
        are skipped), each its value as decimal text and its shared `Quantity`.

        `register_wh` stands for the register when the sample is of another instant than
        now (a clock-aligned boundary between two ticks). A MeterValues goes out every
        sample interval for every charging connector, so this is on the simulator's hot
        path: no per-reading object beyond the (value, quantity) pair.
        """
        values: list[Reading] = []
        add = values.append
        ac = self.spec.power_type == "AC"
        # The texts of values a fleet repeats (its voltages, currents, powers) come from
        # memos (`_TEXT_1`, `_TEXT_2`; `_AMPS`, `_VOLTS` per phase): a look-up costs a sixth
        # of formatting a float.
        text1, text2 = _TEXT_1.get, _TEXT_2.get
        for measurand in measurands:
            if measurand == _ENERGY:
                # Whole Wh, floored like meterStart/meterStop, so every register the CSMS sees
                # is consistent and never goes back.
                register = evse.register_wh if register_wh is None else register_wh
                add((str(int(register)), _Q_ENERGY))
            elif measurand == _POWER:
                power = evse.power_w
                add((text1(power) or _fixed_1(power), _Q_POWER))
            elif measurand == _CURRENT:
                if ac:
                    # Nothing flowing: 0 A on each phase it would use, not one reading
                    # without a phase (a CSMS keying Current.Import by phase lost it).
                    per_phase = evse.current_a or (0.0,) * self._phases_used(evse.connector_id)
                    values += _AMPS.get(per_phase) or _per_phase(per_phase, _CURRENT)
                else:
                    amps = evse.current_a[0] if evse.current_a else 0.0
                    add((text2(amps) or _fixed_2(amps), _Q_CURRENT))
            elif measurand == _VOLTAGE:
                if ac:
                    # No reading yet (before the meter's first visit, no car): the supply's
                    # voltage on each phase the car would use, as Current.Import reads them,
                    # so a session's samples name the same phases from its Transaction.Begin.
                    volts = evse.voltage_v or (self.spec.voltage_v,) * self._phases_used(
                        evse.connector_id
                    )
                    values += _VOLTS.get(volts) or _per_phase(volts, _VOLTAGE)
                else:
                    # No reading yet (Transaction.Begin, before the meter's first visit):
                    # the pack's voltage, which the charger reads before power flows and
                    # Current.Offered is already worked out at; 0 with no car.
                    v = (
                        evse.voltage_v[0]
                        if evse.voltage_v
                        else pack_voltage(evse.battery.spec, evse.battery.soc)
                        if evse.battery is not None
                        else 0.0
                    )
                    add((text1(v) or _fixed_1(v), _Q_VOLTAGE))
            elif measurand == _SOC:
                soc = evse.soc
                if soc is not None:
                    # A charging vehicle's SoC differs at every sample, its text mostly not.
                    known = evse.soc_text
                    if known is not None and known[0] <= soc <= known[1]:
                        add((known[2], _Q_SOC))
                    else:
                        add((_soc_text(evse, soc), _Q_SOC))
            elif measurand == _POWER_OFFERED:
                offered = self._power_offered(evse, self._offer_limit(evse), ac)
                add((text1(offered) or _fixed_1(offered), _Q_POWER_OFFERED))
            elif measurand == _CURRENT_OFFERED:
                limit = self._offer_limit(evse)
                offered = self._power_offered(evse, limit, ac)
                # The current coherent with Power.Offered and with what the car may draw:
                # on AC on each phase the car uses (a watt limit is more amps on one phase
                # than on three; below 6 A a phase there is no offer), on DC at the line
                # voltage.
                if ac:
                    amps = offered / (self.spec.voltage_v * self._offer_phases(evse, limit))
                else:
                    amps = offered / _dc_line_v(evse)
                # To the 0.01 A of Current.Import: at 0.1 A a draw at the offer read above
                # it (7.25 A drawn, 7.2 A offered).
                add((text2(amps) or _fixed_2(amps), _Q_CURRENT_OFFERED))
        return values

    def _offer_limit(self, evse: Evse) -> Limit | None:
        """The limit an offer to this connector is made under: what it would be given if
        its car asked for more. Its own limit (as `offers` reads it) within what the other
        connectors wanting power now leave of a ChargePointMax and of the charger's rated
        power, as they are shared: two connectors of a 150 kW cabinet do not each offer
        150 kW while one of them draws it, and two 11 kW cars on a 22 kW charger are each
        offered 11 kW, not the 22 kW of their EVSEs, though both fit. A car drawing power
        asks for all its EVSE can give it (what it draws is never more: the sharing gives
        no connector less for asking more); a paused car, for what it draws when it
        resumes; a full car or no car, for the EVSE's maximum. A charger that does not
        share its rated power offers the limit the car draws under."""
        connector_id = evse.connector_id
        limits = self.limits
        limit = limits.get(connector_id) if limits else None
        profiled = len(self.profiles) > 0
        if not self.power_shared and (limit is not None or not profiled):
            return limit  # it draws, or nothing limits a connector: the common cases
        others = self.demand_w()
        drawing = others.pop(connector_id, None) is not None
        if limit is not None and not others:
            return limit  # drawing alone: nothing to share with but the limit it has
        ac = self.spec.power_type != "DC"
        starts = self.transaction_starts()
        now = self.now()
        if not others:  # nothing to share with: its own limit, within the rated power
            if profiled:
                start = starts.get(connector_id)
                at = now if start is None or start <= now else start
                limit = self.profiles.limit_at(connector_id, at, tx_start=start)
            # Alone it may have all the rated power and its site's cap, not more: an 11 kW
            # charger's 22 kW EVSE is offered 11 kW (as its car, once charging, is).
            room = min(self.spec.max_power_w, self.site_caps_w.get(connector_id, math.inf))
            base = limit if limit is not None else self._physical_limit()
            if room < base.watts:
                limit = capped(base, room, self.profiles.electrical.voltage)
            return limit
        # As `_limits_for` shares them, this connector asking for what its car would draw
        # (a paused one, on resuming), or for all it can take (a full car, no car).
        battery = evse.battery
        ask = evse.max_power_w
        if drawing:
            # Shared anew below: the limit it draws under holds its share of what its
            # car draws now, not of what it could be given.
            limit = None
            ask = self._power_offered(evse, None, ac)
        elif battery is not None and not battery.is_full():
            ask = self.operating_point(evse, None).power_w
        asking = {**others, connector_id: ask}
        charging = {c: starts.get(c) for c in asking}
        site = self.site_caps_w
        own: dict[int, Limit] = {}
        if profiled:
            own = self.profiles.own_limits(now, charging)
            wants = {c: self.draw_under(c, w, own[c]) for c, w in others.items()}
            wants[connector_id] = min(ask, self._power_offered(evse, own[connector_id], ac))
        else:
            physical = self._physical_limit().watts
            wants = {c: min(physical, w) for c, w in asking.items()}
        wants = {c: min(w, site.get(c, math.inf)) for c, w in wants.items()}
        order = self._admission_queue(asking, starts)[0]
        rated = self.spec.max_power_w
        sharing = self.power_shared and (bool(site) or sum(wants.values()) > rated)
        shares = wants
        if sharing:
            floors = {c: self.minimum_draw_w(c) for c in asking} if ac else None
            shares = power_sharing.share(rated, wants, self.spec.power_sharing, order, floors)
        if profiled:
            limit = self._allocate(now, charging, shares, own, order)[connector_id]
        if sharing:
            base = limit if limit is not None else self._physical_limit()
            limit = capped(base, shares[connector_id], self.profiles.electrical.voltage)
        return limit

    def _power_offered(self, evse: Evse, limit: Limit | None, ac: bool) -> float:
        """The most the EVSE offers the vehicle now. On AC a vehicle on fewer phases than
        the EVSE is offered the EVSE's and an amp limit's current on its phases only, and an
        offer below 6 A on each of them is none (0), as `battery.ac_operating_point` lets it
        draw. On DC an amp limit is the DC current at the line voltage. Below the EV's own
        minimum rate the offer is still the limit itself (see `Limit.below_minimum`): the
        EVSE offers it, the car refuses it."""
        if evse.deauthorized:  # its idTag refused, its transaction going on: nothing
            return 0.0
        if not ac:
            offered = evse.max_power_w
            if limit is not None:
                if limit.watt_cap is not None:
                    offered = min(offered, limit.watt_cap)
                if limit.amp_cap is not None:
                    offered = min(offered, limit.amp_cap * _dc_line_v(evse))
            return max(0.0, offered)
        phases = self._offer_phases(evse, limit)
        offered = self._ac_offer_w(evse, limit, phases)
        if offered < MIN_AC_AMPS * self.spec.voltage_v * phases - 1e-6:
            return 0.0  # below what the control pilot can signal (IEC 61851-1)
        return offered

    def _ac_offer_w(self, evse: Evse, limit: Limit | None, phases: int) -> float:
        """The AC power `limit` lets the EVSE offer on `phases`, before the 6 A minimum
        turns an offer under it into none (`_power_offered`)."""
        offered = evse.max_power_w if limit is None else min(limit.watts, evse.max_power_w)
        evse_phases = max(1, self.spec.phases)
        if phases < evse_phases:
            offered = min(offered, evse.max_power_w * phases / evse_phases)
        if limit is not None and limit.amp_cap is not None:
            offered = min(offered, limit.amp_cap * self.spec.voltage_v * phases)
        return offered

    def _offer_phases(self, evse: Evse, limit: Limit | None) -> int:
        """The phases an AC offer is made on: those the car uses, else the EVSE's, and no
        more than the limit's numberPhases lets it use."""
        phases = max(1, self.spec.phases)
        battery = evse.battery
        if battery is not None:
            phases = max(1, min(battery.spec.ac_phases, phases))
        if limit is not None and limit.phases < phases:
            phases = max(1, limit.phases)
        return phases

    def _stop_txn_samples(self, evse: Evse, context: SampleContext) -> list[MeterSample]:
        measurands = self.config_list("StopTxnSampledData")
        if not measurands:
            return []
        return [MeterSample(self.stamp(), context, self.readings(evse, measurands))]

    def send_meter_values(
        self,
        connector_id: int,
        context: SampleContext,
        measurands: list[str],
        timestamp: str | None = None,
        *,
        register_wh: float | None = None,
        outside_transaction: bool = False,
    ) -> None:
        """One MeterValues for a connector; transaction-bound ones go through the outbox.
        `outside_transaction`: a sample of an instant before the connector's transaction."""
        evses = self.evses
        if 0 < connector_id <= len(evses):  # `evse()`, inline: at every sample
            evse = evses[connector_id - 1]
        elif connector_id:
            evse = self.evse(connector_id)  # raises: no such connector
        else:
            return
        values = self.readings(evse, measurands, register_wh)
        if not values:
            return
        tx = None if outside_transaction else self.transactions.get(connector_id)
        message = self.messages.meter_values(
            connector_id, tx, context, timestamp or self.stamp(), values
        )
        if tx is not None and context is not _TRIGGER:
            # A periodic sample: a long backlog may drop it (`Outbox.thin`); a clock-aligned
            # one, which billing reads, never.
            self.send(message, transactional=True, tx=tx, thinnable=context is _PERIODIC)
        elif tx is not None:
            # A triggered sample names its transaction but is not one of its messages. Its
            # register is the live one, above the stored one until the next checkpoint: it
            # is held until its charger's state is stored (`durable=False`), so that a
            # worker killed after sending it never ends the transaction (PowerLoss, on the
            # restart) below a register the CSMS already has.
            self.outbox.enqueue(Outgoing(message[0], message[1], durable=False))
        else:
            self.send(message)

    # -- the meter tick (called by the runtime's meter engine) -------------------------------

    def operating_point(self, evse: Evse, limit: Limit | None) -> OperatingPoint:
        """What flows into the plugged vehicle now, given the EVSE and the profile limit in
        force for it (None: no profile)."""
        battery = evse.battery
        assert battery is not None
        limit_w = None if limit is None else limit.usable_watts
        # A transaction whose idTag the CSMS refused is offered nothing (`Evse.deauthorized`).
        max_w = 0.0 if evse.deauthorized else evse.max_power_w
        if self.spec.power_type == "DC":
            if limit is None:
                return dc_operating_point(battery, max_w, None)
            # The caps as they were set: an amp limit (and a least rate) is the DC current,
            # at the pack voltage.
            return dc_operating_point(
                battery,
                max_w,
                limit.watt_cap,
                limit.amp_cap,
                limit.least_a,
                limit.least_w,
            )
        return ac_operating_point(
            battery,
            max_w,
            limit_w,
            self.spec.phases,
            self.spec.voltage_v,
            None if limit is None else limit.usable_amp_cap,
            None if limit is None else limit.phases,
        )

    def demand_w(self) -> dict[int, float]:
        """What each connector in a transaction would draw without a limit."""
        demand = {}
        for connector_id in self.transactions:
            evse = self.evses[connector_id - 1]
            if evse.battery is not None and evse.status in (
                Status.CHARGING,
                Status.SUSPENDED_EVSE,
            ):
                demand[connector_id] = self.operating_point(evse, None).power_w
        return demand

    def seconds_to_target(self, evse: Evse) -> float:
        """How long until the vehicle on this connector reaches its target SoC at the limit
        in force now (infinite if it never does)."""
        battery = evse.battery
        if battery is None:
            return math.inf
        return seconds_to_target(
            battery, self.operating_point(evse, self.limits.get(evse.connector_id))
        )

    def seconds_to_limit_change(self, horizon_s: float) -> float | None:
        """How long until a charging profile may change the limit of a connector in a
        transaction, by time alone (a period starts, a schedule ends): None if not within
        `horizon_s`. The meter engine visits a charger with profiles then, not every tick."""
        if not self.transactions or len(self.profiles) == 0:
            return None
        now = self.now()
        # From the instant the limits in force were computed (`refresh_limits`), not from
        # now: a change that fell between the two clock reads is still ahead of them.
        since = self.limits_at if self.limits_at is not None and self.limits_at < now else now
        change = self.profiles.next_change(since, self.transaction_starts(), horizon_s)
        return None if change is None else max((change - now).total_seconds(), 0.0)

    def seconds_to_demand_change(self, evse: Evse) -> float:
        """How long the connector's demand (what it would draw without a limit, which its
        charger's shared power and the site's caps are computed from) stays constant while
        it charges at the limit in force (0: it changes now, on the curve's taper)."""
        battery = evse.battery
        if battery is None:
            return math.inf
        free = self.operating_point(evse, None)
        point = self.operating_point(evse, self.limits.get(evse.connector_id))
        return seconds_until_tapering(battery, point, free.cap_w)

    def drop_limits(self) -> None:
        """No profile left: nothing limits the connectors."""
        self.limits = {}

    def settle_meter(self) -> None:
        """Something is about to change what flows (a status, a limit, a plug, a setting),
        or to read the register as of now: the meter engine first brings every connector
        up to now (in closed form), and visits the charger on its next tick to schedule it
        again. Without an engine (a charger alone, in a test) nothing moves."""
        settle = self.meter_settle
        if settle is not None:
            settle(self)
        self.meter_wake = 0.0

    def step_connector(self, evse: Evse, dt: float) -> bool:
        """Advance one connector in a transaction by dt seconds: energy, then the
        Charging / SuspendedEV / SuspendedEVSE decision. True if something visible changed.
        The session's series records the outcome. (One call: the meter visits every
        charging connector every second at 1 s sampling.)"""
        changed = True
        status = evse.status
        battery = evse.battery
        if battery is None or status not in _METERED:
            changed = evse.stop_flow() if evse.power_w else False
            if status is _SUSPENDED_EV and battery is not None and not self.offers(evse):
                # SuspendedEVSE wins over SuspendedEV: the charger offers nothing now.
                changed = self.set_status(evse, Status.SUSPENDED_EVSE) or changed
        else:
            # `operating_point` at the limit in force, or the connector's previous point
            # again while it cannot have changed (the same battery, limit, EVSE maximum
            # and charger spec, the SoC still below where it could move): at 1 s sampling
            # every charging connector is visited every second, and an AC point is
            # constant for most of a session (a vehicle's target SoC is fixed when it
            # plugs in).
            connector_id = evse.connector_id
            limits = self.limits
            limit = limits.get(connector_id) if limits else None
            kept = self._kept_points.get(connector_id)
            if (
                kept is not None
                and battery.soc < kept.below_soc
                and kept.battery is battery
                and kept.spec is self.spec
                and kept.max_power_w == evse.max_power_w
                # A profile's limit is a new object each visit, but mostly an equal one.
                and (kept.limit is limit or kept.limit == limit)
            ):
                point = kept.point
            else:
                point = self._metering_point(evse, battery, limit)
            if point.power_w <= 0.0:
                evse.stop_flow()
                if battery.is_full():
                    self.set_status(evse, self._full_status(evse))
                elif status is Status.CHARGING or not battery.spec.takes(self.spec.power_type):
                    # The second: a car that takes nothing here waits in SuspendedEV,
                    # not SuspendedEVSE, once the charger offers again (such a car is
                    # rare: its check on each visit is not worth keeping state for).
                    self._suspend_evse(evse, limit)
                elif status is _SUSPENDED_EVSE:
                    self._follow_suspension(evse, limit)
            elif status is _SUSPENDED_EVSE and battery.paused:
                # The charger offers again, but the EV wants nothing now.
                evse.stop_flow()
                self.set_status(evse, Status.SUSPENDED_EV)
            else:
                if status is _SUSPENDED_EVSE:
                    self.set_status(evse, Status.CHARGING)
                if dt > 0.0:  # float to float: the interpreter's fast compare
                    evse.meter(point, dt)
                else:  # nothing metered in no time, but the readings are those of the point now
                    evse.show(point)
                # The cheap test first: mostly it flows.
                if evse.power_w == 0.0 and evse.battery is not None and evse.battery.is_full():
                    self.set_status(evse, self._full_status(evse))
        session = evse.session
        now = self.clock.time()
        if session is None or session.ended_at is not None:  # rare: mostly it records on
            tx = self.transactions.get(evse.connector_id)
            if tx is not None:
                # A transaction resumed after a restart: its series starts now.
                session = evse.session = SessionSeries(now, start_wh=tx.meter_start)
            if session is None:
                return changed
        session.record(now, evse.power_w, evse.soc, evse.register_wh)
        return changed

    def offers(self, evse: Evse) -> bool:
        """Whether the charger would let the car on this connector charge if it asked now:
        its own limit (its profiles, the ChargePointMax as if it charged alone, the EVSE's
        maximum; on AC at least 6 A a phase). Shares of the rated power and the site's
        caps do not count: they are shared by what the cars ask for, so a full or paused
        car's share is 0, and one that asks gets a share."""
        if evse.battery is None:
            return evse.max_power_w > 0.0
        return self.operating_point(evse, self._own_limit(evse)).offered_w > 0.0

    def _own_limit(self, evse: Evse) -> Limit | None:
        """The connector's limit under its profiles alone (the ChargePointMax as if it
        charged alone), before any sharing; None without profiles."""
        if len(self.profiles) == 0:
            return None
        start = self.transaction_starts().get(evse.connector_id)
        now = self.now()
        # A transaction's start is stamped to the millisecond: it may lie a moment
        # after the clock read here, and its profiles apply from it.
        at = now if start is None or start <= now else start
        return self.profiles.limit_at(evse.connector_id, at, tx_start=start)

    def below_ac_minimum(self, evse: Evse) -> str | None:
        """Why this AC connector's own rating lets no car charge, in words (None: it does).
        Its power over the charger's phases under 6 A a phase (a 3.7 kW EVSE wired to
        three phases is 5.4 A each): IEC 61851-1's pilot cannot signal it, whatever the car."""
        spec = self.spec
        phases = max(1, spec.phases)
        if spec.power_type != "AC" or spec.voltage_v <= 0:
            return None
        amps = evse.max_power_w / (spec.voltage_v * phases)
        if amps >= MIN_AC_AMPS - 1e-9:
            return None
        return f"offered {amps:.1f} A per phase, below the {MIN_AC_AMPS:g} A minimum"

    def _suspend_evse(self, evse: Evse, limit: Limit | None) -> None:
        """SuspendedEVSE for a car that wants energy the charger lets none of flow under
        `limit` (the one in force), saying why when the EVSE's rating or a limit under the
        6 A minimum is the cause. Worked out on the change of status only, never per tick.

        A car that takes no power of this charger's kind (AC or DC) at all is the one
        holding the session when the charger offers: SuspendedEV, "the EV does not take
        energy" (OCPP 1.6, 4.9), saying why; SuspendedEVSE would blame the charger."""
        kind = self.spec.power_type
        battery = evse.battery
        if battery is not None and not battery.spec.takes(kind) and self.offers(evse):
            takes_none = f"the car takes no {kind} power"
            if self.set_status(evse, Status.SUSPENDED_EV, info=takes_none):
                log.info("%s: connector %d: %s", self.id, evse.connector_id, takes_none)
            return
        below = self.below_ac_minimum(evse)
        if below is not None:
            self._suspend_below_minimum(evse, below)
            return
        why = self._limit_reason(evse, limit)
        self._suspended_under[evse.connector_id] = (limit, why)
        if self.set_status(evse, Status.SUSPENDED_EVSE, info=why) and why is not None:
            log.info("%s: connector %d suspends the car: %s", self.id, evse.connector_id, why)

    def _follow_suspension(self, evse: Evse, limit: Limit | None) -> None:
        """A car still held under a limit that moved (a 4 A profile, then 3 A): the reason
        `_suspend_evse` gave says the new figure, in a new StatusNotification of the same
        status (a real charger reports a changed error so), and on the charger's page and
        state. Only for a reason given under a limit, and only when the limit moved: on
        most visits of a waiting car, one comparison."""
        under = self._suspended_under.get(evse.connector_id)
        if under is None or under[1] is None or under[1] != evse.info:
            return  # suspended otherwise (a deauthorized idTag, ...): nothing to follow
        if under[0] is limit or under[0] == limit:
            return
        why = self._limit_reason(evse, limit)
        self._suspended_under[evse.connector_id] = (limit, why)
        if why == evse.info:
            return
        # None: the limit no longer explains it; the old figure would mislead.
        evse.info = why
        self._status_notification(evse.connector_id, evse.status, evse.error_code, why)
        self.listener.on_change(self)
        if why is not None:
            log.info("%s: connector %d still suspends the car: %s", self.id, evse.connector_id, why)

    def _limit_reason(self, evse: Evse, limit: Limit | None) -> str | None:
        """Why `limit` lets the car on this AC connector draw nothing, in words short
        enough for a StatusNotification's info (50 characters): a charging profile, the
        charger's power share or the site's load limit leaves under 6 A a phase (IEC
        61851-1), or a profile is under its minChargingRate. None when no limit is why (DC,
        an idTag the CSMS refused, no limit in force)."""
        spec = self.spec
        if limit is None or spec.power_type == "DC" or spec.voltage_v <= 0 or evse.deauthorized:
            return None
        if limit.below_minimum:
            return "charging profile is below its minChargingRate"
        amps = self._offer_amps(evse, limit)
        if amps >= MIN_AC_AMPS - 1e-6:
            return None
        source = "charging profile"
        own = self._own_limit(evse)
        own_amps = math.inf if own is None else self._offer_amps(evse, own)
        if own_amps < MIN_AC_AMPS - 1e-6:
            amps = own_amps  # the profile alone holds the car, whatever is shared
        elif self.site_caps_w.get(evse.connector_id, math.inf) <= limit.watts + 1e-6:
            source = "site load limit"
        elif self.power_shared:
            source = "power share"
        # Rounded down: 5.96 A is no "6.0 A ... below the 6 A minimum".
        shown = math.floor(amps * 10) / 10
        return f"{source} allows {shown:.1f} A per phase ({MIN_AC_AMPS:g} A min)"

    def _offer_amps(self, evse: Evse, limit: Limit) -> float:
        """The current per phase `limit` lets this AC EVSE offer, the 6 A minimum aside."""
        phases = self._offer_phases(evse, limit)
        return self._ac_offer_w(evse, limit, phases) / (self.spec.voltage_v * phases)

    def _suspend_below_minimum(self, evse: Evse, why: str) -> None:
        """SuspendedEVSE, saying why (the StatusNotification's info, the log): the EVSE is
        what holds the car, not the car's own choice."""
        if self.set_status(evse, Status.SUSPENDED_EVSE, info=why):
            log.info("%s: connector %d cannot charge a car: %s", self.id, evse.connector_id, why)

    def _full_status(self, evse: Evse) -> ConnectorStatus:
        """A full car's status: SuspendedEV, or SuspendedEVSE when the charger offers
        nothing either (it wins: OCPP 1.6, 4.9)."""
        return Status.SUSPENDED_EV if self.offers(evse) else Status.SUSPENDED_EVSE

    def _metering_point(self, evse: Evse, battery: Battery, limit: Limit | None) -> OperatingPoint:
        """`operating_point` at `limit`, for the meter (`step_connector`, when it has no
        point kept for the connector that still holds); kept while it holds, on AC."""
        connector_id = evse.connector_id
        point = self.operating_point(evse, limit)
        if self.spec.power_type != "DC":
            below = ac_point_holds_below(battery, point)
            if below > battery.soc:
                self._kept_points[connector_id] = _KeptPoint(
                    point, battery, limit, self.spec, evse.max_power_w, below
                )
        return point

    def sample_due(
        self, connector_id: int, now: float, tolerance: float, interval: int | None = None
    ) -> bool:
        """Whether the connector's periodic sample is due at `now` (within `tolerance`);
        if so, its next one is scheduled, `interval` (MeterValueSampleInterval, as the
        caller read it) after it."""
        due = self.next_sample.get(connector_id, 0.0)
        if not due or now < due - tolerance:
            return False
        if interval is None:
            interval = self.config.as_int("MeterValueSampleInterval")
        following = due + interval if interval else 0.0
        if following and following < now:
            following = now + interval  # fell behind: resync
        self.next_sample[connector_id] = following
        return True

    def pass_clock_slot(self, slot: int) -> int:
        """The clock-aligned slot the charger is in now; returns the one it was in."""
        last, self.last_clock_slot = self.last_clock_slot, slot
        return last

    def keep_aligned_sample(self, tx: LocalTransaction, values: MeterSample) -> None:
        """A clock-aligned reading for the transaction's stop message (StopTxnAlignedData),
        up to StopTransactionMaxMeterValues."""
        if len(tx.aligned_values) < self.config_int("StopTransactionMaxMeterValues"):
            tx.aligned_values.append(values)

    def keep_periodic_sample(
        self, connector_id: int, measurands: list[str], timestamp: str | None
    ) -> None:
        """A periodic reading of StopTxnSampledData (`measurands`) for the transaction's
        stop message: 1.6 defines the key as the measurands its transactionData carries
        every MeterValueSampleInterval from the start of the transaction, not only at its
        begin and end. Up to StopTransactionMaxMeterValues, with the clock-aligned ones."""
        tx = self.transactions.get(connector_id)
        if tx is None or len(tx.aligned_values) >= self.config_int("StopTransactionMaxMeterValues"):
            return
        evse = self.evses[connector_id - 1]
        if len(measurands) == 1 and measurands[0] == _ENERGY:
            # The key's default, at every sample of a transaction's first readings: the
            # register alone, as `readings` gives it, without its loop (a third the cost).
            readings = [(str(int(evse.register_wh)), _Q_ENERGY)]
        else:
            readings = self.readings(evse, measurands)
        if readings:
            stamp = timestamp or self.stamp()
            tx.aligned_values.append(MeterSample(stamp, SampleContext.PERIODIC, readings))

    def now(self) -> datetime:
        """The charger's clock, synchronised to the CSMS's at boot and heartbeat (and off
        by its clock skew, if it is given one)."""
        return datetime.fromtimestamp(self.wall_time(), UTC)

    def stamp(self) -> str:
        """The timestamp of a message the charger makes now, on its clock: the host's UTC
        clock, set by the CSMS's currentTime (`clock_offset`) and off by the charger's clock
        skew. A skew stays across the CSMS's clock sync: it plays a charger whose clock is
        wrong however often it is set."""
        shift = self.clock_offset + self.impairments.clock_skew_s
        if not shift:
            return now_iso()
        return now_iso(datetime.now(UTC) + timedelta(seconds=shift))

    def skewed(self, moment: datetime) -> datetime:
        """`moment` as this charger's clock reads it (the meter engine's shared stamps)."""
        skew = self.impairments.clock_skew_s
        return moment + timedelta(seconds=skew) if skew else moment


# The CSMS times a charger accepts: wide, but far enough from datetime's limits (years
# 1-9999) that adding any interval or schedule of up to 68 years cannot overflow.
_CLOCK_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))
_HEARTBEAT_MAX = config_keys.KEYS["HeartbeatInterval"].maximum or 86_400


# The charger's jobs that run one at a time, a newer request replacing an older one.
JOB_FIRMWARE = "firmware"  # UpdateFirmware, SignedUpdateFirmware
JOB_DIAGNOSTICS = "diagnostics"  # GetDiagnostics
JOB_LOG = "log"  # GetLog
# A firmware update replaced before it ended: the failure its last status amounts to. The
# whitepaper's FirmwareStatusEnumType has no Canceled (as 1.6's FirmwareStatus has not):
# an image that never arrived is DownloadFailed, one that arrived (and verified) but was
# never installed is InstallationFailed, for a signed update as for a plain one.
_FIRMWARE_CLOSING = {
    FirmwareStatus.DOWNLOAD_SCHEDULED: FirmwareStatus.DOWNLOAD_FAILED,
    FirmwareStatus.DOWNLOADING: FirmwareStatus.DOWNLOAD_FAILED,
    FirmwareStatus.DOWNLOADED: FirmwareStatus.INSTALLATION_FAILED,
    FirmwareStatus.SIGNATURE_VERIFIED: FirmwareStatus.INSTALLATION_FAILED,
    FirmwareStatus.INSTALL_SCHEDULED: FirmwareStatus.INSTALLATION_FAILED,
}
_INSTALL_UNDER_WAY = frozenset({FirmwareStatus.INSTALLING, FirmwareStatus.INSTALL_REBOOTING})

_SIGNED_ONLY = {
    FirmwareStatus.DOWNLOAD_SCHEDULED: FirmwareStatus.IDLE,
    FirmwareStatus.SIGNATURE_VERIFIED: FirmwareStatus.DOWNLOADED,
    FirmwareStatus.INSTALL_SCHEDULED: FirmwareStatus.DOWNLOADED,
    FirmwareStatus.INSTALL_REBOOTING: FirmwareStatus.INSTALLING,
    FirmwareStatus.INVALID_SIGNATURE: FirmwareStatus.IDLE,
}


class ActionError(Exception):
    """A local action that cannot be done now, with a message for the person who asked."""


# Where a RemoteStartTransaction may start (a Reserved one only for its idTag).
_REMOTE_STARTABLE = frozenset(
    {Status.AVAILABLE, Status.PREPARING, Status.FINISHING, Status.RESERVED}
)


# The statuses in which a connector in a transaction meters (`step_connector`).
_METERED = (Status.CHARGING, Status.SUSPENDED_EVSE)
# Enum members the meter's visit compares with, as module names: `Enum.MEMBER` goes
# through the enum metaclass's `__getattr__` hook, a lookup more than a global each time.
_SUSPENDED_EVSE = Status.SUSPENDED_EVSE
_SUSPENDED_EV = Status.SUSPENDED_EV
_TRIGGER = SampleContext.TRIGGER
_PERIODIC = SampleContext.PERIODIC
_M = Measurand
_Q_ENERGY = QUANTITIES[_M.ENERGY_IMPORT_REGISTER, None]
_Q_POWER = QUANTITIES[_M.POWER_IMPORT, None]
_Q_CURRENT = QUANTITIES[_M.CURRENT_IMPORT, None]
_Q_CURRENT_PHASE = tuple(QUANTITIES[_M.CURRENT_IMPORT, p] for p in (Phase.L1, Phase.L2, Phase.L3))
_Q_VOLTAGE = QUANTITIES[_M.VOLTAGE, None]
_Q_VOLTAGE_PHASE = tuple(QUANTITIES[_M.VOLTAGE, p] for p in (Phase.L1_N, Phase.L2_N, Phase.L3_N))
_Q_SOC = QUANTITIES[_M.SOC, None]
_Q_POWER_OFFERED = QUANTITIES[_M.POWER_OFFERED, None]
_Q_CURRENT_OFFERED = QUANTITIES[_M.CURRENT_OFFERED, None]
# The measurands' names as plain str, which `readings` compares the configured names
# (str) with: str == str is the interpreter's specialised compare, str == StrEnum the
# generic one (a subclass check first), five of them per sample.
_ENERGY = str(_M.ENERGY_IMPORT_REGISTER)
_POWER = str(_M.POWER_IMPORT)
_CURRENT = str(_M.CURRENT_IMPORT)
_VOLTAGE = str(_M.VOLTAGE)
_SOC = str(_M.SOC)
_POWER_OFFERED = str(_M.POWER_OFFERED)
_CURRENT_OFFERED = str(_M.CURRENT_OFFERED)
# Memos of readings' decimal texts, one per format ("%.1f", "%.2f"): the meter formats
# the same few values (230.0 V, 16.00 A, 11040.0 W) for thousands of connectors a second.
# Exact by construction: equal floats format alike, except 0.0 and -0.0 ("-0.0"), so zero
# is never stored; NaN is never equal, so never found, and never stored. Bounded: cleared
# when full (the fleet's recurring values come back at once).
_TEXT_1: dict[float, str] = {}
_TEXT_2: dict[float, str] = {}
_TEXTS_MAX = 4096


def _dc_line_v(evse: Evse) -> float:
    """A DC connector's line voltage: its car's pack voltage (also while it draws
    nothing), else a nominal 400 V."""
    volts = evse.voltage_v
    if volts and volts[0] > 0.0:
        return volts[0]
    battery = evse.battery
    if battery is not None:
        packed = pack_voltage(battery.spec, battery.soc)
        if packed > 0.0:
            return packed
    return 400.0


def _fixed_1(value: float) -> str:
    """`f"{value:.1f}"`, remembered in `_TEXT_1` (see there)."""
    text = f"{value:.1f}"
    if value and value == value:
        _remember(_TEXT_1, value, text)
    return text


# An AC connector's per-phase readings of a (current or voltage) tuple, the same way:
# tuples compare element by element, so one holding a zero or a NaN is never stored.
_AMPS: dict[tuple[float, ...], list[Reading]] = {}
_VOLTS: dict[tuple[float, ...], list[Reading]] = {}


def _per_phase(per_phase: tuple[float, ...], measurand: str) -> list[Reading]:
    """The readings of an AC connector's phases (L1, L2, L3 in turn), remembered in
    `_AMPS` or `_VOLTS` (see there)."""
    if measurand == _CURRENT:
        memo = _AMPS
        readings = [(f"{a:.2f}", _Q_CURRENT_PHASE[n]) for n, a in enumerate(per_phase)]
    else:
        memo = _VOLTS
        readings = [(f"{v:.1f}", _Q_VOLTAGE_PHASE[n]) for n, v in enumerate(per_phase)]
    if all(value and value == value for value in per_phase):
        _remember(memo, per_phase, readings)
    return readings


def _remember(memo: dict[Any, Any], key: object, value: object) -> None:
    """Keep `value` for `key`; a full memo is emptied first (it stays bounded)."""
    if len(memo) >= _TEXTS_MAX:
        memo.clear()
    memo[key] = value


def _soc_text(evse: Evse, soc: float) -> str:
    """`f"{soc:.1f}"`, remembered on the EVSE (`Evse.soc_text`) with the SoCs from `soc` up
    to the highest float found that gives the same text: rounding to a decimal is monotonic,
    so every SoC between two that give a text gives it too. (Only positive finite SoCs:
    -0.0 gives "-0.0".) A SoC rising at a sample a second needs a format every few dozen
    samples, not at each."""
    text = f"{soc:.1f}"
    if 0.0 < soc < math.inf:
        hi = float(text) + 0.05  # about where the text changes; below it if need be
        for _ in range(8):
            if f"{hi:.1f}" == text:
                break
            hi = math.nextafter(hi, -math.inf)
        else:
            hi = soc
        evse.soc_text = (soc, hi if hi > soc else soc, text)
    return text


def _fixed_2(value: float) -> str:
    """`f"{value:.2f}"`, remembered in `_TEXT_2` (see there)."""
    text = f"{value:.2f}"
    if value and value == value:
        _remember(_TEXT_2, value, text)
    return text


# A clock step from the Central System's currentTime that is reported as SettingSystemTime.
# 1.6 has no TimeAdjustmentReportingThreshold (2.0.1 does): below this a step is the drift
# that every Heartbeat answer corrects, and reporting those would flood the security log.
CLOCK_STEP_REPORTED_S = 60.0
# A CSMS's currentTime closer than this to the host's clock, or to the charger's own, leaves
# the charger's clock as it is.
CLOCK_NOISE_S = 1.0
# `last_clock_slot` after a clock step: the next visit finds the boundaries passed since the
# step's instant (`metered_wall`, on the new clock), not from a slot of the old clock.
CLOCK_STEPPED = -1
# ChangeConfiguration keys that are the whitepaper's "security parameters": a change
# raises ReconfigurationOfSecurityParameters.
_SECURITY_PARAMETERS = frozenset({"SecurityProfile", "AuthorizationKey"})
# How long a restart waits for its queue (StopTransactions, ResetOrReboot) to go out.
REBOOT_PATIENCE_S = 5.0
# How often `drain` looks whether the queue has gone out.
DRAIN_POLL_S = 0.05
