"""Connector statuses and fault codes: OCPP 1.6 vocabulary the engine and the pages share."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


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


_S = ConnectorStatus
# The values in the order the pages count and filter them (the database stores strings).
CONNECTOR_STATUSES: Final[tuple[str, ...]] = tuple(
    status.value
    for status in (
        _S.AVAILABLE,
        _S.PREPARING,
        _S.CHARGING,
        _S.SUSPENDED_EVSE,
        _S.SUSPENDED_EV,
        _S.FINISHING,
        _S.RESERVED,
        _S.UNAVAILABLE,
        _S.FAULTED,
    )
)

# OCPP 1.6 ChargePointErrorCode values a person may inject (NoError clears instead).
FAULT_CODES: Final = (
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
)
