"""Reading the stored message log: pages by time for one charger, and every entry of a
time range as JSON Lines, for the API (and anything else that reads the log the same way).

Entries are ordered by their rows' (time, id), an answer right after the CALL it answers
(they share a row), and paged by keyset: a cursor is the position of the last entry a page
returned, so a page costs the same however deep into the log it is, and rows logged
meanwhile never shift a page. What the engine stored is already redacted (see
simulator/runtime/frame_log.py): nothing here can show an AuthorizationKey.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypedDict

import orjson
from asgiref.sync import sync_to_async
from django.db.models import Q, QuerySet

from chargers.models import FrameLogEntry, LoggedFrame, logged_frames

Order = Literal["asc", "desc"]
# The largest row id either database holds (SQLite's INTEGER, PostgreSQL's bigint).
ROW_ID_MAX = 2**63 - 1
# Rows read per query while streaming (one query per chunk, never the whole range at once).
STREAM_CHUNK = 1_000


class Entry(TypedDict):
    """One entry as the API shows it (a JSON page's item, a line of a download)."""

    id: int  # the row's id * 2, + 1 for the answer stored with a CALL
    at: str  # ISO 8601, UTC ("Z"), microseconds
    charge_point_id: str
    kind: str  # "frame" or "connection"
    direction: str  # "in", "out", or "" for a connection event
    message_id: str
    action: str  # a connection event's name for kind "connection"
    payload: str  # the frame's text (redacted), or the event's details as JSON text
    size: int  # the frame's length; more than the payload's when the log cut it
    truncated: bool


class BadCursor(ValueError):
    """A cursor that this log did not hand out (or for another order, charger or window)."""


@dataclass(frozen=True)
class Window:
    """What a page is of: one charger's entries in [since, until). A cursor carries the
    window it was handed out for: another charger's cursor paged this one's log from the
    other's position, silently, and so did one taken with other times."""

    charger: int
    since: float | None
    until: float | None


@dataclass(frozen=True)
class Position:
    """Where an entry is in the log: its row's time and id, and which frame of the row."""

    at: float
    row: int
    part: int

    def encode(self, order: Order, window: Window) -> str:
        scope = f"{window.charger}:{window.since!r}:{window.until!r}"
        raw = f"{order}:{self.at!r}:{self.row}:{self.part}:{scope}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str, order: Order, window: Window) -> Position:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            given_order, at, row, part, charger, since, until = raw.split(":")
            position = cls(float(at), int(row), int(part))
            given = Window(int(charger), _bound(since), _bound(until))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise BadCursor("The cursor is not one this log handed out.") from None
        # Forged ones too (a cursor is plain text in base64): a row id past the databases'
        # integers was a 500 on PostgreSQL, and NaN compares with no row.
        if not (
            math.isfinite(position.at)
            and 0 <= position.row <= ROW_ID_MAX
            and position.part in (0, 1)
        ):
            raise BadCursor("The cursor is not one this log handed out.")
        if given_order != order:
            raise BadCursor(f"The cursor is for order={given_order}, not order={order}.")
        if given.charger != window.charger:
            raise BadCursor(
                "The cursor is from another charger's log: a cursor continues only the log "
                "it came from."
            )
        if (given.since, given.until) != (window.since, window.until):
            raise BadCursor(
                "The cursor is for other since/until: send the ones of the page it came from."
            )
        return position


def _bound(text: str) -> float | None:
    return None if text == "None" else float(text)


def shown_at(at: float) -> str:
    """A stored time (Unix seconds, a float) as the log shows it: ISO 8601, UTC, in whole
    microseconds, so that the shown text given back as `since` selects the entry and as
    `until` does not (`timestamp` reads it back).

    Stored times are finer than a microsecond, and rounding to the nearest one (what
    `datetime.fromtimestamp` does) showed some a little after they were stored: given back
    as `since`, the entry's own time left the entry out, and as `until` took it in. Shown
    here is the latest microsecond that reads back at or before the stored time."""
    micros = math.floor(at * 1_000_000)  # close: the loops make it exact
    while micros / 1_000_000 > at:  # int / int: the float `timestamp` makes of it
        micros -= 1
    while (micros + 1) / 1_000_000 <= at:
        micros += 1
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(moment: datetime | None) -> float | None:
    """A query's time as the log stores it (Unix seconds); a time without a zone is UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def entries(
    *,
    charger_pks: Iterable[int] | None = None,
    location_pks: Iterable[int] | None = None,
    since: float | None = None,
    until: float | None = None,
) -> QuerySet[FrameLogEntry]:
    """The log's entries in [since, until), of these chargers (or of these locations'
    chargers; None: all). A charger deleted meanwhile has no entries (the join drops
    rows the prune has not reached yet)."""
    rows = FrameLogEntry.objects.all()
    if charger_pks is not None:
        rows = rows.filter(charger_id__in=list(charger_pks))
    if location_pks is not None:
        rows = rows.filter(charger__location_id__in=list(location_pks))
    if since is not None:
        rows = rows.filter(at__gte=since)
    if until is not None:
        rows = rows.filter(at__lt=until)
    return rows


def page(
    rows: QuerySet[FrameLogEntry], *, order: Order, limit: int, after: Position | None
) -> tuple[list[Entry], Position | None]:
    """Up to `limit` entries after `after` in `order`, and the position to continue from
    (None when this page is the last).

    Entries are in the order of their rows (time, then id) and, within a row, a CALL before
    its answer (after it, newest first): an answer follows the CALL it answers."""
    if after is not None:
        # The cursor's own row again (its answer may be still to come). The plain bound on
        # `at` first: the database starts its index scan there (the OR, which breaks ties
        # by id, it can only filter with).
        if order == "asc":
            rows = rows.filter(at__gte=after.at).filter(
                Q(at__gt=after.at) | Q(at=after.at, id__gte=after.row)
            )
        else:
            rows = rows.filter(at__lte=after.at).filter(
                Q(at__lt=after.at) | Q(at=after.at, id__lte=after.row)
            )
    ordering = ("at", "id") if order == "asc" else ("-at", "-id")
    # Every row after the cursor's holds an entry at least: limit + 2 rows fill a page and
    # tell whether there is another.
    found = rows.order_by(*ordering).values_list(*_COLUMNS)[: limit + 2]
    entries: list[tuple[Position, Entry]] = []
    for row in found:
        frames = logged_frames(*row[3:])
        if order == "desc":
            frames.reverse()
        for frame in frames:
            position = Position(row[1], row[0], frame.part)
            if after is None or not _reached(position, after, order):
                entries.append((position, _entry(row[0], row[2], frame)))
    items = entries[:limit]
    more = len(entries) > limit
    return [entry for _position, entry in items], items[-1][0] if more else None


async def jsonl(rows: QuerySet[FrameLogEntry], *, order: Order = "asc") -> AsyncIterator[bytes]:
    """Every entry of `rows` as JSON Lines, read a chunk at a time (for a streamed
    download: the range is never held in memory)."""
    after: Position | None = None
    while True:
        items, after = await sync_to_async(page)(rows, order=order, limit=STREAM_CHUNK, after=after)
        if items:
            yield b"".join(orjson.dumps(item) + b"\n" for item in items)
        if after is None:
            return


def _reached(position: Position, after: Position, order: Order) -> bool:
    """Whether a frame of the cursor's own row was on an earlier page."""
    if position.row != after.row:
        return False
    return position.part <= after.part if order == "asc" else position.part >= after.part


_COLUMNS = (
    "id",
    "at",
    "charger__charge_point_id",
    # what logged_frames() takes, in its order
    "at",
    "kind",
    "direction",
    "message_id",
    "action",
    "size",
    "payload",
    "answer_at",
    "answer_size",
    "answer_payload",
)


def _entry(row_id: int, charge_point_id: str, frame: LoggedFrame) -> Entry:
    return {
        "id": row_id * 2 + frame.part,
        "at": shown_at(frame.at),
        "charge_point_id": charge_point_id,
        "kind": frame.kind,
        "direction": frame.direction,
        "message_id": frame.message_id,
        "action": frame.action,
        "payload": frame.payload,
        "size": frame.size,
        "truncated": frame.size > len(frame.payload),
    }
