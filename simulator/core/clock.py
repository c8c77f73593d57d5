"""Timestamps as charge points write them: UTC, ISO 8601, milliseconds and a Z.

The same in OCPP 1.6 and 2.0.1, so the core stamps its events itself. A date a central
system sends is an RFC 3339 date-time (the schemas' `format: date-time`), checked where it
enters with `parse_rfc3339` (the adapter's value checks); the core's own reading of a date
it holds (`parse_iso`: stored rows, values from the web side) stays lenient, an offset or
none, and both read a leap second (:60) as the last instant of the second before it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

# RFC 3339 section 5.6: full-date "T" partial-time time-offset ("T" and "Z" may be lower
# case). ASCII digits only: `\d` would take any script's digits.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_EXAMPLE = "2030-01-01T00:00:00Z"


def now_iso(moment: datetime | None = None) -> str:
    """UTC timestamp with millisecond precision and a Z, as CSMSs expect."""
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """Parse a timestamp the charger holds (ISO 8601, no offset read as UTC); raise
    ValueError on a bad one."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        # Python has no 60th second; RFC 3339 (and so a CSMS) has.
        value = parse_rfc3339(text, offset_required=False)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def parse_rfc3339(text: str, *, offset_required: bool = True) -> datetime:
    """An RFC 3339 date-time as an aware datetime at its own offset (no offset, when not
    required: UTC); ValueError saying what is wrong. Nothing else of ISO 8601 passes (a
    week date, a date alone, the basic format, minutes without seconds, a space for the
    "T"). A leap second (23:59:60) reads as 23:59:59.999999: Python's datetime has no
    60th second, and that instant keeps the order of the times around it."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"{text[:40]!r} is not an RFC 3339 date-time (such as {_EXAMPLE})")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset is None:
        if offset_required:
            raise ValueError(
                f"{text[:40]!r} has no UTC offset: an RFC 3339 date-time ends in Z or "
                f"+hh:mm (such as {_EXAMPLE}), and a time without one names no instant"
            )
        zone = UTC
    elif offset in ("Z", "z"):
        zone = UTC
    else:
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"{text[:40]!r} has an offset out of range: {offset}")
        delta = timedelta(hours=hours, minutes=minutes)
        zone = timezone(-delta if offset[0] == "-" else delta)
    micro = int((fraction[1:] + "00000")[:6]) if fraction else 0
    seconds = int(second)
    if seconds == 60:  # a leap second
        seconds, micro = 59, 999_999
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), seconds, micro, zone
        )
    except ValueError as exc:  # February 30th, hour 24, year 0, ...
        raise ValueError(f"{text[:40]!r} is not a valid date-time ({exc})") from None
