"""What the core asks of a protocol adapter, in the core's own words.

The charge point never writes a protocol message itself: for every message it sends it
calls one `Messages` method with protocol-neutral arguments (its identity, a connector's
status, a transaction, a set of meter readings) and gets back `(action, payload)`, which
it puts in its ordered outbox. The outbox keeps order, durability and retries; payloads
are opaque to it. Answers come back as the adapter's payloads and the core hands them to
the adapter's `read_*` methods, which give neutral results (`BootAnswer`, `IdTagAnswer`).

The neutral vocabulary lives here: what is measured (`Measurand`, `Quantity`), why a
sample was taken (`SampleContext`), why a transaction stopped (`StopReason`) and what an
idTag may do (`AuthStatus`). Some enum values read like OCPP 1.6 names because they are
also the configuration store's and the database's words (MeterValuesSampledData lists
measurands, a stopped transaction's reason is recorded); an adapter still maps every one
of them to its own wire name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from simulator.core.link import BootState
from simulator.core.transfer import DiagnosticsStatus, FirmwareStatus, LogStatus

Payload = dict[str, Any]
Message = tuple[str, Payload]  # (action, payload), as it goes into the outbox


class Measurand(StrEnum):
    """What a reading measures (named as MeterValuesSampledData and friends list them)."""

    ENERGY_IMPORT_REGISTER = "Energy.Active.Import.Register"
    POWER_IMPORT = "Power.Active.Import"
    CURRENT_IMPORT = "Current.Import"
    VOLTAGE = "Voltage"
    SOC = "SoC"
    POWER_OFFERED = "Power.Offered"
    CURRENT_OFFERED = "Current.Offered"


class Unit(StrEnum):
    WH = "Wh"
    W = "W"
    A = "A"
    V = "V"
    PERCENT = "Percent"


class Location(StrEnum):
    OUTLET = "Outlet"
    EV = "EV"


class Phase(StrEnum):
    """A reading of one phase: line current (L1) or line-to-neutral voltage (L1_N)."""

    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    L1_N = "L1-N"
    L2_N = "L2-N"
    L3_N = "L3-N"


class SampleContext(StrEnum):
    """Why a set of readings was taken."""

    PERIODIC = "periodic"  # every MeterValueSampleInterval during a transaction
    CLOCK = "clock"  # at a ClockAlignedDataInterval boundary
    TRANSACTION_BEGIN = "transaction-begin"
    TRANSACTION_END = "transaction-end"
    TRIGGER = "trigger"  # the CSMS asked for it


class StopReason(StrEnum):
    """Why a transaction ended (the value is what the transaction record keeps)."""

    LOCAL = "Local"
    REMOTE = "Remote"
    EV_DISCONNECTED = "EVDisconnected"
    DEAUTHORIZED = "DeAuthorized"
    POWER_LOSS = "PowerLoss"
    SOFT_RESET = "SoftReset"
    HARD_RESET = "HardReset"
    UNLOCK_COMMAND = "UnlockCommand"
    REBOOT = "Reboot"  # the charger restarts on its own (a new firmware)
    OTHER = "Other"


class AuthStatus(StrEnum):
    """What the central system said about an idTag (the authorization cache keeps it)."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


@dataclass(frozen=True, slots=True, eq=False)
class Quantity:
    """The description of a reading, shared by every reading of it: one object per
    measurand and phase (`QUANTITIES`), compared and hashed by identity so that an
    adapter can look up its own wire fields for it cheaply on the hot path."""

    measurand: Measurand
    unit: Unit
    location: Location
    phase: Phase | None = None


def _quantities() -> dict[tuple[Measurand, Phase | None], Quantity]:
    units = {
        Measurand.ENERGY_IMPORT_REGISTER: (Unit.WH, Location.OUTLET),
        Measurand.POWER_IMPORT: (Unit.W, Location.OUTLET),
        Measurand.CURRENT_IMPORT: (Unit.A, Location.OUTLET),
        Measurand.VOLTAGE: (Unit.V, Location.OUTLET),
        Measurand.SOC: (Unit.PERCENT, Location.EV),
        Measurand.POWER_OFFERED: (Unit.W, Location.OUTLET),
        Measurand.CURRENT_OFFERED: (Unit.A, Location.OUTLET),
    }
    table: dict[tuple[Measurand, Phase | None], Quantity] = {
        (m, None): Quantity(m, *units[m]) for m in Measurand
    }
    for phase in (Phase.L1, Phase.L2, Phase.L3):
        m = Measurand.CURRENT_IMPORT
        table[m, phase] = Quantity(m, *units[m], phase)
    for phase in (Phase.L1_N, Phase.L2_N, Phase.L3_N):
        m = Measurand.VOLTAGE
        table[m, phase] = Quantity(m, *units[m], phase)
    return table


QUANTITIES = _quantities()

Reading = tuple[str, Quantity]  # (value as the decimal text to send, what it is)


@dataclass(slots=True)
class MeterSample:
    """Readings of one instant, kept for a transaction's stop message."""

    timestamp: str
    context: SampleContext
    readings: list[Reading]


@dataclass(frozen=True, slots=True)
class BootAnswer:
    status: BootState
    interval: int  # seconds; 0: the central system gave none
    current_time: str | None


@dataclass(frozen=True, slots=True)
class IdTagAnswer:
    status: AuthStatus
    expiry: str | None = None
    parent_id_tag: str | None = None


def id_tag_key(id_tag: str) -> str:
    """An idTag as the charger compares it. OCPP 1.6's IdToken is a CiString20Type, "a
    case insensitive string" (section 7.28): a card read as `04a1b2c3` is the one the CSMS
    listed, reserved or started with as `04A1B2C3`."""
    return id_tag.casefold()


def same_id_tag(a: str | None, b: str | None) -> bool:
    """Whether two idTags (or parentIdTags; None: none) are the same, case aside."""
    return a is not None and b is not None and id_tag_key(a) == id_tag_key(b)


class Identity(Protocol):
    """Who the charge point is (a `ChargerSpec` is one)."""

    vendor: str
    model: str
    serial_number: str
    firmware_version: str


class TransactionRef(Protocol):
    """A transaction as an adapter sees it: the central system's id once confirmed."""

    local_id: str
    transaction_id: int | None


class Messages(Protocol):
    """A protocol adapter: builds every message the core sends and reads the answers.

    Builders return `(action, payload)` for the core's outbox. `at_send` is called by the
    outbox just before a queued message goes on the wire, so that a message queued before
    its transaction was confirmed carries the id known by then.
    """

    def boot(self, identity: Identity) -> Message: ...

    def read_boot(self, answer: Payload) -> BootAnswer: ...

    def connector_status(
        self, connector_id: int, status: str, error_code: str, info: str | None, timestamp: str
    ) -> Message: ...

    def heartbeat(self) -> Message: ...

    def read_clock(self, answer: Payload) -> str | None:
        """The central system's time in an answer (boot, heartbeat), if it gave one."""
        ...

    def authorize(self, id_tag: str) -> Message: ...

    def read_authorize(self, answer: Payload) -> IdTagAnswer: ...

    def transaction_started(
        self,
        tx: TransactionRef,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None,
    ) -> Message: ...

    def read_transaction_started(self, answer: Payload) -> tuple[int, IdTagAnswer]:
        """The central system's transaction id and what it said about the idTag."""
        ...

    def is_transaction_start(self, action: str) -> bool:
        """Whether a restored outbox message is a transaction start (its answer carries
        the transaction id)."""
        ...

    def ended_id_tag(self, action: str, payload: Payload) -> str | None:
        """The idTag a restored outbox message ends a transaction with, if it is such an
        end and names one (its answer updates the authorization cache)."""
        ...

    def is_periodic_sample(self, action: str, payload: Payload) -> bool:
        """Whether a restored outbox message holds periodic samples only (a bounded
        backlog may drop it: `Outbox.thin`)."""
        ...

    def transaction_ended(
        self,
        tx: TransactionRef,
        meter_stop: int,
        timestamp: str,
        reason: StopReason,
        id_tag: str | None,
        samples: list[MeterSample],
    ) -> Message: ...

    def read_transaction_ended(self, answer: Payload) -> IdTagAnswer | None:
        """What the central system said about the stop's idTag, if it said anything."""
        ...

    def meter_values(
        self,
        connector_id: int,
        tx: TransactionRef | None,
        context: SampleContext,
        timestamp: str,
        readings: list[Reading],
    ) -> Message: ...

    def data_transfer(self, vendor_id: str, message_id: str | None, data: str | None) -> Message:
        """A vendor-specific message; its answer is returned to the caller as it came."""
        ...

    def security_event(self, kind: str, timestamp: str, tech_info: str | None) -> Message:
        """A security event (the 1.6 security whitepaper's SecurityEventNotification)."""
        ...

    def diagnostics_status(self, status: DiagnosticsStatus) -> Message:
        """Where a diagnostics upload stands (Idle only when the central system asks)."""
        ...

    def log_status(self, status: LogStatus, request_id: int | None) -> Message:
        """Where a GetLog upload stands (the whitepaper's LogStatusNotification)."""
        ...

    def firmware_status(self, status: FirmwareStatus) -> Message:
        """Where a firmware update stands (Idle only when the central system asks)."""
        ...

    # -- security whitepaper (edition 3): certificates and signed firmware ----------------

    def sign_certificate(self, csr: str) -> Message:
        """A certificate signing request (PEM) for the charge point certificate."""
        ...

    def read_accepted(self, answer: Payload) -> bool:
        """Whether an answer with a status says Accepted."""
        ...

    def signed_firmware_status(self, status: FirmwareStatus, request_id: int | None) -> Message:
        """Where a signed firmware update stands."""
        ...

    def at_send(self, action: str, payload: Payload, tx: TransactionRef | None) -> Payload:
        """The payload as it goes on the wire now (e.g. with the transaction id known by
        then); called once per attempt, on the hot path: keep it cheap."""
        ...
