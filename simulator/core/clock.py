"""Timestamps as charge points write them: UTC, ISO 8601, milliseconds and a Z.

The same in OCPP 1.6 and 2.0.1, so the core stamps its events itself; reading is lenient
(an offset or none) because central systems differ.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso(moment: datetime | None = None) -> str:
    """UTC timestamp with millisecond precision and a Z, as CSMSs expect."""
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """Parse an OCPP timestamp; raise ValueError on a bad one."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
