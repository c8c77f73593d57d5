"""What the built-in CSMS remembers: frames, transactions, connector states, refusals.

Plain slotted dataclasses: the same CSMS may hold thousands of chargers in a benchmark, and
tests compare these objects directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ocpp.v16.datatypes import IdTagInfo

CALL, CALLRESULT, CALLERROR = 2, 3, 4
# A frame that is not valid OCPP-J (not JSON, not an array, wrong element count ...). It is
# still logged, so a test can see exactly what a charger put on the wire.
MALFORMED = 0

_TYPE_NAMES = {
    CALL: "CALL",
    CALLRESULT: "CALLRESULT",
    CALLERROR: "CALLERROR",
    MALFORMED: "MALFORMED",
}


@dataclass(slots=True, frozen=True)
class LogEntry:
    """One websocket frame, either direction.

    `action` is also filled in for CALLRESULT/CALLERROR frames (the action of the CALL they
    answer), so a test can wait for "the answer to RemoteStartTransaction" by action.
    For a CALLERROR, `payload` is {"errorCode", "errorDescription", "errorDetails"}.
    """

    cp_id: str
    direction: str  # "in" (charger -> CSMS) or "out" (CSMS -> charger)
    message_type: int  # 2 CALL, 3 CALLRESULT, 4 CALLERROR, 0 malformed
    unique_id: str | None
    action: str | None
    payload: dict[str, Any]
    at: datetime
    raw: str = ""

    @property
    def error_code(self) -> str | None:
        return self.payload.get("errorCode") if self.message_type == CALLERROR else None

    def summary(self, width: int = 160) -> str:
        kind = _TYPE_NAMES.get(self.message_type, str(self.message_type))
        text = (
            f"{self.direction:>3} {kind} {self.action or '-'} "
            f"id={self.unique_id} {self.payload if self.payload else self.raw}"
        )
        return text if len(text) <= width else text[: width - 3] + "..."


class ConnectorStatus(NamedTuple):
    """Last StatusNotification of one connector; compares equal to (status, error_code)."""

    status: str
    error_code: str


@dataclass(slots=True)
class Transaction:
    """A transaction as the CSMS saw it. Timestamps are kept exactly as the charger sent them."""

    transaction_id: int
    cp_id: str
    connector_id: int
    id_tag: str | None
    meter_start: int | None
    start_timestamp: str | None
    reservation_id: int | None = None
    # idTagInfo.status the CSMS answered to StartTransaction
    id_tag_status: str = "Accepted"
    meter_stop: int | None = None
    stop_timestamp: str | None = None
    reason: str | None = None  # as sent: None means the charger omitted it (spec: "Local")
    stop_id_tag: str | None = None
    # camelCase MeterValue objects ({"timestamp", "sampledValue": [...]}) received in
    # MeterValues for this transaction; only kept when the CSMS keeps its log.
    meter_values: list[dict[str, Any]] = field(default_factory=list)
    # StopTransaction's transactionData as received; kept, as `meter_values`, only with the
    # log (up to StopTransactionMaxMeterValues samples a transaction: the bulk of a
    # transaction's memory in a long run).
    transaction_data: list[dict[str, Any]] | None = None
    # False when the CSMS never saw the StartTransaction (StopTransaction for an id it did
    # not allocate, e.g. -1 after an unconfirmed start).
    started_here: bool = True

    @property
    def stopped(self) -> bool:
        return self.stop_timestamp is not None

    @property
    def energy_wh(self) -> int | None:
        if self.meter_start is None or self.meter_stop is None:
            return None
        return self.meter_stop - self.meter_start


@dataclass(slots=True)
class Reservation:
    """A reservation the CSMS made (ReserveNow), and what became of it."""

    reservation_id: int
    cp_id: str
    connector_id: int
    id_tag: str
    expiry_date: str
    parent_id_tag: str | None = None
    status: str = "Accepted"  # the charger's answer to ReserveNow
    state: str = "active"  # "active", "used" (a StartTransaction carried it), "cancelled"
    transaction_id: int | None = None  # the transaction that used it


@dataclass(slots=True)
class LocalList:
    """The local authorization list the CSMS last had a charger accept (SendLocalList)."""

    version: int
    entries: dict[str, str]  # idTag -> status


@dataclass(slots=True)
class ChargerBehaviour:
    """How the CSMS answers one charge point where that differs from how it answers all
    (a real CSMS's per-charger settings; scenarios set them through the control endpoint,
    so that chargers running in parallel do not see each other's). None: as for all."""

    boot_status: str | None = None
    boot_interval: int | None = None
    default_id_tag_status: str | None = None
    start_transaction_status: str | None = None
    tx_profile_limit: float | None = None
    id_tags: dict[str, str | IdTagInfo] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Refusal:
    """A connection attempt the CSMS refused during the opening handshake."""

    cp_id: str
    status: int  # HTTP status (400, 401, 404), or 1002 when closed after the handshake
    reason: str
    at: datetime


@dataclass(slots=True, frozen=True)
class Closure:
    """A charger's connection that ended, with the close frame the charger sent."""

    cp_id: str
    code: int  # as received from the charger; 1006 when none came (the link was lost)
    reason: str
    by_charger: bool  # the charger started the closing handshake
    at: datetime


# A DataTransfer answerer: (cp id, vendorId, messageId, data) -> a status, or a
# call_result.DataTransfer; it may be a coroutine function.
DataTransferHandler = Callable[[str, str, str | None, str | None], Any]
