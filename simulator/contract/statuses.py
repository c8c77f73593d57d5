"""Connector statuses and fault codes: OCPP 1.6 vocabulary the engine and the pages share."""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal, get_args


class ConnectorStatus(StrEnum):
    """OCPP 1.6 ChargePointStatus of a connector."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


# The values in the order the pages count and filter them (the database stores strings),
# spelled out as a type too, so that a schema built from it (the API's) lists them.
StatusName = Literal[
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
]
CONNECTOR_STATUSES: Final[tuple[str, ...]] = get_args(StatusName)

# OCPP 1.6 ChargePointErrorCode values a person may inject (NoError clears instead).
FaultCode = Literal[
    "ConnectorLockFailure",
    "EVCommunicationError",
    "GroundFailure",
    "HighTemperature",
    "InternalError",
    "LocalListConflict",
    "OtherError",
    "OverCurrentFailure",
    "OverVoltage",
    "PowerMeterFailure",
    "PowerSwitchFailure",
    "ReaderFailure",
    "ResetFailure",
    "UnderVoltage",
    "WeakSignal",
]
FAULT_CODES: Final[tuple[str, ...]] = get_args(FaultCode)

# Every ChargePointErrorCode a connector may report: NoError, or a fault's (the engine
# refuses any other, `simulator.core.evse.ERROR_CODES`).
ErrorCodeName = Literal["NoError", FaultCode]

# A charger's link to its CSMS and its boot state, as a snapshot spells them (the core's
# `LinkState` and `BootState`; "None": not booted since power-on).
LinkName = Literal["offline", "connecting", "online"]
BootName = Literal["None", "Pending", "Accepted", "Rejected"]


def fault_info_problem(info: str) -> str | None:
    """Why a fault's `info` cannot be sent (StatusNotification's info is a CiString50:
    printable text, as an idTag), or None. The engine and a scenario file's check say it
    alike."""
    if not info[:50].isprintable():
        return "info is printable text, without control characters"
    return None
