"""Values the OCPP 1.6 schemas allow but our storage and clocks cannot hold.

The schemas say "integer" and "date-time" without bounds (and the `ocpp` library does not
check formats at all), so a CSMS may send `chargingProfileId` 2^63, a date whose UTC value
lies in year 0 or 10000, or a "date-time" that is no RFC 3339 date-time at all. Such a value must be refused where it enters, once, instead of
failing later where it is used: SQLite stores at most 64-bit integers (one such row would
fail every checkpoint), our id columns are 64-bit (BigIntegerField) on every backend, and
`datetime` covers years 1-9999 only. Nor may any string hold a NUL character: OCPP's strings
are printable text, PostgreSQL's text and jsonb cannot hold one, and an idTag or a
configuration value is stored and sent again (a StartTransaction whose outbox row is
refused would be lost).

Each schema is compiled once into a small plan that visits only the fields that can hold a
number, a date-time or free text (not an enumeration: the schema allows only its members);
a message whose schema has none (MeterValues.conf, the hot path) has no plan and costs one
dictionary look-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from simulator.core.clock import parse_rfc3339
from simulator.ocpp16.schema_check import SCHEMA_DIR

INT64 = (-(2**63), 2**63 - 1)


class OutOfRange(ValueError):
    """A value passed the schema but cannot be held; the message names the field."""


def utc_datetime(text: str) -> datetime:
    """A date-time from the CSMS as an aware UTC datetime; ValueError saying why not.

    What the schemas' `format: date-time` names, an RFC 3339 date-time, and nothing else
    of ISO 8601; with its offset, as OCPP 1.6 prescribes no time zone and a time without
    one names no instant (a CSMS in local time would be read hours off). A leap second is
    read as the end of the second before (`parse_rfc3339`). Strict where Python is not:
    the UTC value must lie within years 1-9999.
    """
    value = parse_rfc3339(text)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text[:40]!r} lies outside the years 1-9999 in UTC") from None


@dataclass(slots=True)
class _Plan:
    kind: str  # "int", "number", "date", "text", "object", "array"
    bounds: tuple[int, int] = INT64
    properties: dict[str, _Plan] = field(default_factory=dict)
    items: _Plan | None = None


def _compile(node: dict[str, Any], root: dict[str, Any]) -> _Plan | None:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        node = root["definitions"][ref.rpartition("/")[2]]
    kind = node.get("type")
    if kind == "integer":
        return _Plan("int")
    if kind == "number":
        return _Plan("number")
    if kind == "string":
        if node.get("format") == "date-time":
            return _Plan("date")
        return None if "enum" in node else _Plan("text")
    if kind == "array" and isinstance(node.get("items"), dict):
        items = _compile(node["items"], root)
        return None if items is None else _Plan("array", items=items)
    if kind == "object":
        properties = {
            name: plan
            for name, child in node.get("properties", {}).items()
            if (plan := _compile(child, root)) is not None
        }
        return _Plan("object", properties=properties) if properties else None
    return None


@cache
def plan_for(name: str) -> _Plan | None:
    """The plan for `<SCHEMA_DIR>/<name>.json` ("SetChargingProfile", "HeartbeatResponse")."""
    try:
        with open(SCHEMA_DIR / f"{name}.json", encoding="utf-8") as handle:
            schema = json.load(handle)
    except FileNotFoundError:
        return None
    return _compile(schema, schema)


def check(name: str, payload: Any) -> None:
    """Raise OutOfRange for the first value of a schema-valid payload we cannot hold."""
    plan = plan_for(name)
    if plan is not None:
        _visit(plan, payload, "")


def check_response(action: str, payload: Any) -> str | None:
    """`check` for the answer to our own `action`; free for answers without numbers or dates
    (MeterValues.conf, the hot path): one look-up.

    One exception to "an RFC 3339 date-time has its offset": the `currentTime` of a
    BootNotification or Heartbeat answer without one ("2026-12-07T10:00:00") is read as
    UTC (a "Z" is added to it in `payload`), and the note returned says so (None: nothing
    was read so). Refused, a CSMS that writes its clock that way kept every charger from
    registering; a real charger sets its clock from it, and OCPP's times are UTC in
    practice. Any other date-time without an offset is still refused: an expiryDate or a
    schedule's start read hours off would change what the charger does."""
    plan = _RESPONSE_PLANS.get(action, _UNKNOWN)
    if plan is _UNKNOWN:
        plan = _RESPONSE_PLANS[action] = plan_for(f"{action}Response")
    if plan is None:
        return None
    try:
        _visit(plan, payload, "")  # type: ignore[arg-type]
    except OutOfRange:
        if action not in _CLOCK_ANSWERS or not _read_clock_as_utc(payload):
            raise
        _visit(plan, payload, "")  # type: ignore[arg-type]
        return f"{action}Response: currentTime has no UTC offset, read as UTC"
    return None


# The answers whose currentTime sets the charger's clock.
_CLOCK_ANSWERS = frozenset({"BootNotification", "Heartbeat"})


def _read_clock_as_utc(payload: Any) -> bool:
    """Add a "Z" to the answer's currentTime if it is an RFC 3339 date-time but for its
    offset; whether it did."""
    text = payload.get("currentTime") if isinstance(payload, dict) else None
    if not isinstance(text, str):
        return False
    try:
        parse_rfc3339(text)
    except ValueError:
        try:
            parse_rfc3339(text, offset_required=False)
        except ValueError:
            return False  # not a date-time at all: refused as ever
        payload["currentTime"] = f"{text}Z"
        return True
    return False


_UNKNOWN = object()
_RESPONSE_PLANS: dict[str, object] = {}


def _visit(plan: _Plan, value: Any, path: str) -> None:
    kind = plan.kind
    if kind == "object":
        if isinstance(value, dict):
            for name, child in plan.properties.items():
                if name in value:
                    _visit(child, value[name], f"{path}.{name}" if path else name)
    elif kind == "array":
        if isinstance(value, list):
            assert plan.items is not None
            for index, item in enumerate(value):
                _visit(plan.items, item, f"{path}[{index}]")
    elif kind == "text":
        if isinstance(value, str) and "\x00" in value:
            raise OutOfRange(f"{path}: a NUL character cannot be stored")
    elif kind == "date":
        if isinstance(value, str):
            try:
                utc_datetime(value)
            except ValueError as exc:
                raise OutOfRange(f"{path}: {exc}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        low, high = plan.bounds
        if not low <= value <= high:
            raise OutOfRange(f"{path}: {value} is outside {low}..{high}")
    elif kind == "int" and isinstance(value, float):
        # orjson reads an integer beyond 64 bits as a float: the schema's slow path (exact
        # integers) may have let it through.
        raise OutOfRange(f"{path}: {value:g} is outside {plan.bounds[0]}..{plan.bounds[1]}")
