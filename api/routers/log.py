"""The message log: every OCPP frame a charger sent or received and every event of its
connection, as the simulator workers stored it (chargers/message_log.py reads it).

One charger's log pages by time (JSON, with a cursor) or downloads whole (JSON Lines,
streamed); the fleet's exports for a time range (JSON Lines, streamed). Reading it needs
what the dashboard's message log needs (chargers.dashboard.pages.may_see_message_log).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from django.http import Http404, HttpRequest, StreamingHttpResponse
from ninja import Field, Query, Router, Schema
from ninja.errors import AuthorizationError

from api import scope
from api.auth import caller
from api.errors import READ_ERRORS, ApiError, ErrorBody, ErrorItem
from api.query_params import LocationId, Moment
from chargers import message_log
from chargers.dashboard.pages import may_see_message_log
from chargers.models import Charger

router = Router(tags=["message log"])

MAX_LIMIT = 1000
ERRORS = {**READ_ERRORS, 422: ErrorBody}
JSONL = "application/x-ndjson"

CHARGERS = Query(None, description="Only these charge point ids.")
LOCATIONS = Query(None, description="Only the chargers of these location ids.")
EXPORT_SINCE = Query(..., description="From this time (ISO 8601, UTC if no zone; or Unix seconds).")
EXPORT_UNTIL = Query(None, description="Up to this time (default: now).")
ORDER = Query("desc", description="desc: newest first.")
LIMIT = Query(100, ge=1, le=MAX_LIMIT, description="Entries per page.")
CURSOR = Query(None, description="The `next_cursor` of the previous page.")
SINCE = Query(
    None,
    description="Entries logged at or after this time (ISO 8601, UTC if no zone; or Unix seconds).",
)
UNTIL = Query(
    None,
    description="Entries logged before this time (ISO 8601, UTC if no zone; or Unix seconds).",
)


class LogEntryOut(Schema):
    id: int = Field(
        description="Unique; increases through the log (a CALL's answer is its CALL's id + 1)."
    )
    # A string, not a datetime: the same text as in a download's line (microseconds, "Z").
    at: str = Field(
        description="When the worker logged it: ISO 8601, UTC, in whole microseconds (the "
        "stored time is finer: shown is the last microsecond at or before it, so this text "
        "given as `since` selects the entry, and as `until` leaves it out).",
        json_schema_extra={"format": "date-time"},
    )
    charge_point_id: str = Field(
        description="The charger's id now: the log is kept per charger, so a renamed "
        "charger's frames from before the rename are listed under its new id (its old id "
        "answers 404). The id used on the wire then is the last one of a `connected` "
        "event's `url` before them."
    )
    kind: Literal["frame", "connection"] = Field(
        description="An OCPP frame, or an event of the connection to the CSMS."
    )
    direction: Literal["in", "out", ""] = Field(
        description='"out": the charger sent it, "in": it received it; "" for an event.'
    )
    message_id: str = Field(description="The frame's message id (empty if it has none).")
    action: str = Field(
        description="The CALL's action (an answer's is its CALL's); for a connection event "
        "its name: connected, connect_failed, closed, reconnecting, network_cut."
    )
    payload: str = Field(
        description="The frame's text as on the wire (an AuthorizationKey shows as ********), "
        "or the event's details as JSON text (closed: its close code and reason; "
        "connect_failed and reconnecting: the backoff delay)."
    )
    size: int = Field(description="The frame's length in characters.")
    truncated: bool = Field(
        description="The log kept only the first CHARGESIM_MESSAGE_LOG_PAYLOAD_CHARS "
        "characters of the frame (`size` is its full length)."
    )


class LogPage(Schema):
    items: list[LogEntryOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same charger, since, until and order) for the "
        "next page; null on the last page. A cursor of another charger's log, or of other "
        "times or order, is refused (422)."
    )


def _may_read_log(request: HttpRequest) -> None:
    if not may_see_message_log(caller(request).user):
        raise AuthorizationError(
            message="You need the permission 'chargers.view_charger' to read the message log."
        )


def _charger(charge_point_id: str) -> Charger:
    charger = Charger.objects.filter(charge_point_id=charge_point_id).first()
    if charger is None:
        raise Http404(f"No charger {charge_point_id!r}.")
    return charger


def _range(since: datetime | None, until: datetime | None) -> tuple[float | None, float | None]:
    start, end = message_log.timestamp(since), message_log.timestamp(until)
    if start is not None and end is not None and end <= start:
        raise ApiError(
            422,
            "The request is not valid.",
            [
                ErrorItem(
                    field="until",
                    message=f"`until` must be after `since` ({_read_as(start, end)}).",
                )
            ],
        )
    return start, end


def _read_as(start: float, end: float) -> str:
    """The two times as read, in UTC: a bare number is Unix seconds (`until=4` is 1970)."""
    since, until = (datetime.fromtimestamp(t, UTC).isoformat() for t in (start, end))
    return f"read as since {since}, until {until}"


def _jsonl_response(rows: Any, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(message_log.jsonl(rows), content_type=JSONL)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def _streamed(description: str) -> dict[str, Any]:
    """An operation's OpenAPI 200 answer when it streams JSON Lines."""
    return {
        "responses": {
            200: {
                "description": description,
                "content": {JSONL: {"schema": {"$ref": "#/components/schemas/LogEntryOut"}}},
            }
        }
    }


@router.get(
    "/chargers/{charge_point_id}/log",
    response={200: LogPage, **ERRORS},
    summary="A charger's message log, a page at a time",
    description="Frames and connection events of one charger in [since, until), newest "
    "first (`order=desc`, the default) or oldest first, at most `limit` per page; follow "
    "`next_cursor` for the next page. An answer comes right after the CALL it answers (and "
    "is selected by the CALL's time). Needs `chargers.view_charger`.",
)
def charger_log(
    request: HttpRequest,
    charge_point_id: str,
    since: Moment | None = SINCE,
    until: Moment | None = UNTIL,
    order: Literal["asc", "desc"] = ORDER,
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
) -> LogPage:
    _may_read_log(request)
    charger = _charger(charge_point_id)
    start, end = _range(since, until)
    window = message_log.Window(charger.pk, start, end)
    try:
        after = None if cursor is None else message_log.Position.decode(cursor, order, window)
    except message_log.BadCursor as exc:
        raise ApiError(
            422, "The request is not valid.", [ErrorItem(field="cursor", message=str(exc))]
        ) from None
    rows = message_log.entries(charger_pks=[charger.pk], since=start, until=end)
    items, last = message_log.page(rows, order=order, limit=limit, after=after)
    return LogPage(
        items=[LogEntryOut.model_validate(item) for item in items],
        next_cursor=None if last is None else last.encode(order, window),
    )


@router.get(
    "/chargers/{charge_point_id}/log.jsonl",
    response=ERRORS,
    openapi_extra=_streamed("The entries, oldest first: one LogEntryOut per line."),
    summary="Download a charger's message log",
    description="Every entry of one charger in [since, until) (the whole stored log by "
    "default) as JSON Lines, oldest first, streamed as it is read. Needs "
    "`chargers.view_charger`.",
)
def charger_log_download(
    request: HttpRequest,
    charge_point_id: str,
    since: Moment | None = SINCE,
    until: Moment | None = UNTIL,
) -> StreamingHttpResponse:
    _may_read_log(request)
    charger = _charger(charge_point_id)
    start, end = _range(since, until)
    rows = message_log.entries(charger_pks=[charger.pk], since=start, until=end)
    return _jsonl_response(rows, f"{_safe(charge_point_id)}-log.jsonl")


@router.get(
    "/log.jsonl",
    response=ERRORS,
    openapi_extra=_streamed("The entries, oldest first: one LogEntryOut per line."),
    summary="Export the fleet's message log",
    description="Every entry of every charger (or of the chargers and locations given) in "
    "[since, until) as JSON Lines, oldest first, streamed as it is read. Needs "
    "`chargers.view_charger`.",
)
def fleet_log_export(
    request: HttpRequest,
    since: Moment = EXPORT_SINCE,
    until: Moment | None = EXPORT_UNTIL,
    charger: list[str] | None = CHARGERS,
    location: list[LocationId] | None = LOCATIONS,
) -> StreamingHttpResponse:
    _may_read_log(request)
    start, end = _range(since, until or datetime.now(UTC))
    pks = scope.charger_pks(charger) if charger else None
    if location:
        scope.check_locations(location)
    rows = message_log.entries(charger_pks=pks, location_pks=location, since=start, until=end)
    return _jsonl_response(rows, "chargesim-log.jsonl")


def _safe(name: str) -> str:
    """A charge point id for a file name in a header (ids are printable; quotes are not)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
