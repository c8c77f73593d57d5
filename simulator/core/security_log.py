"""The charge point's security log: the security events of the 1.6 security whitepaper.

Plain Python. Every security event the charger raises is written here (a bounded list,
newest last, as a charger's flash holds its last few hundred); `Charger.security_event`
also pushes it to the Central System with SecurityEventNotification. GetLog(SecurityLog)
uploads this log.

The whitepaper (edition 3, appendix "Security Events") lists the standard event types and
marks the critical ones, which "should be pushed to the Central System". Its list is open:
the notification's `type` is a string of up to 50 characters, and a standard type is to
be used wherever one fits. One event the simulator can cause has none: a charger losing
its connection to the Central System. The whitepaper counts that as no security event at
all, but operators want it in the same log and the issue asks for it, so it is reported
under a vendor type of our own, `ConnectionLost`, whose name says plainly that it is not
one of the standard ones (no standard name is bent to mean it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from simulator.core.clock import parse_iso

# How many events the log keeps (oldest dropped first; dropping is not clearing it).
LOG_SIZE = 500


# Why a charger starts when its process loads it (StartupOfTheFirmware's techInfo): every
# charger of the fleet says it at every start of the process, so its log line is DEBUG
# (10,000 chargers logged 10,000 lines of it at INFO); a reboot's startup stays INFO.
POWER_UP = "power-up"


class SecurityEvent(StrEnum):
    """The whitepaper's standard event types, and our one vendor type."""

    FIRMWARE_UPDATED = "FirmwareUpdated"
    FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM = "FailedToAuthenticateAtCentralSystem"
    CENTRAL_SYSTEM_FAILED_TO_AUTHENTICATE = "CentralSystemFailedToAuthenticate"
    SETTING_SYSTEM_TIME = "SettingSystemTime"
    STARTUP_OF_THE_FIRMWARE = "StartupOfTheFirmware"
    RESET_OR_REBOOT = "ResetOrReboot"
    SECURITY_LOG_WAS_CLEARED = "SecurityLogWasCleared"
    RECONFIGURATION_OF_SECURITY_PARAMETERS = "ReconfigurationOfSecurityParameters"
    MEMORY_EXHAUSTION = "MemoryExhaustion"
    INVALID_MESSAGES = "InvalidMessages"
    ATTEMPTED_REPLAY_ATTACKS = "AttemptedReplayAttacks"
    TAMPER_DETECTION_ACTIVATED = "TamperDetectionActivated"
    INVALID_FIRMWARE_SIGNATURE = "InvalidFirmwareSignature"
    INVALID_FIRMWARE_SIGNING_CERTIFICATE = "InvalidFirmwareSigningCertificate"
    INVALID_CENTRAL_SYSTEM_CERTIFICATE = "InvalidCentralSystemCertificate"
    INVALID_CHARGE_POINT_CERTIFICATE = "InvalidChargePointCertificate"
    INVALID_TLS_VERSION = "InvalidTLSVersion"
    INVALID_TLS_CIPHER_SUITE = "InvalidTLSCipherSuite"
    # Vendor type (see the module's docstring): the link to the Central System was lost.
    CONNECTION_LOST = "ConnectionLost"


# The whitepaper's critical events.
CRITICAL = frozenset(
    {
        SecurityEvent.FIRMWARE_UPDATED,
        SecurityEvent.SETTING_SYSTEM_TIME,
        SecurityEvent.STARTUP_OF_THE_FIRMWARE,
        SecurityEvent.RESET_OR_REBOOT,
        SecurityEvent.SECURITY_LOG_WAS_CLEARED,
        SecurityEvent.MEMORY_EXHAUSTION,
        SecurityEvent.TAMPER_DETECTION_ACTIVATED,
    }
)


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    kind: str
    timestamp: str  # as sent: ISO 8601, UTC
    tech_info: str | None = None
    sent: bool = True  # pushed to the Central System, or only logged

    @property
    def critical(self) -> bool:
        return self.kind in CRITICAL

    def as_dict(self) -> dict[str, object]:
        return {
            "type": self.kind,
            "timestamp": self.timestamp,
            "techInfo": self.tech_info,
            "critical": self.critical,
            "sent": self.sent,
        }


class SecurityLog:
    """The last `size` security events, oldest first."""

    def __init__(self, size: int = LOG_SIZE) -> None:
        self._events: deque[LoggedEvent] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._events)

    @property
    def full(self) -> bool:
        """Whether the next event drops the oldest (a stored copy must drop it too)."""
        return len(self._events) == self._events.maxlen

    def __iter__(self) -> Iterator[LoggedEvent]:
        return iter(self._events)

    def add(self, event: LoggedEvent) -> None:
        self._events.append(event)

    def last(self, count: int) -> list[LoggedEvent]:
        """The newest `count` events, newest first (for a page)."""
        return list(reversed(self._events))[:count]

    def between(self, oldest: datetime | None, latest: datetime | None) -> list[LoggedEvent]:
        """GetLog's window: events stamped within [oldest, latest] (None: unbounded)."""
        chosen = []
        for event in self._events:
            try:
                moment = parse_iso(event.timestamp)
            except ValueError:
                continue
            if (oldest is None or moment >= oldest) and (latest is None or moment <= latest):
                chosen.append(event)
        return chosen
