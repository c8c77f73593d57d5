"""The built-in OCPP 1.6J central system (no Django here: benchmarks run it standalone)."""

from .handlers import CSMSConnection, now_iso
from .records import (
    CALL,
    CALLERROR,
    CALLRESULT,
    MALFORMED,
    ConnectorStatus,
    LocalList,
    LogEntry,
    Refusal,
    Reservation,
    Transaction,
)
from .server import SUBPROTOCOL, CentralSystem, WaitTimeout, cp_id_from_path

__all__ = [
    "CALL",
    "CALLERROR",
    "CALLRESULT",
    "MALFORMED",
    "SUBPROTOCOL",
    "CSMSConnection",
    "CentralSystem",
    "ConnectorStatus",
    "LocalList",
    "LogEntry",
    "Refusal",
    "Reservation",
    "Transaction",
    "WaitTimeout",
    "cp_id_from_path",
    "now_iso",
]
