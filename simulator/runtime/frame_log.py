"""The durable message log: every frame and connection event of every charger, bounded.

The checkpoint writer stores it with the rest of a full checkpoint (`persistence`): the
event loop only appends a tuple per frame (the adapter hands over the message id and
action it already read; the text redacted by the one secret test per frame that the
dashboard's log shares), and the writer thread turns a second's frames into rows and
writes them in one statement. What reaches the database is redacted as the dashboard's log
is (no AuthorizationKey, no URL password), cut to `payload_chars` (the row keeps the
frame's full length, so a reader sees it was cut), and holds no NUL character (PostgreSQL's text refuses it, and a
hostile CSMS may send one): no frame can make a batch fail. Old rows are pruned in bounded
steps, by count and by age (`prune`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

from chargers.models import FrameLogEntry, FrameLogRow
from simulator.core.drops import dropped
from simulator.ocpp16.redaction import may_hold_secret, redact_frame

log = logging.getLogger(__name__)

FRAME: Final = FrameLogEntry.Kind.FRAME.value
CONNECTION: Final = FrameLogEntry.Kind.CONNECTION.value

# A message id or action from the CSMS is kept to this many characters (ours are shorter).
NAME_CHARS: Final = 128
# Frames waiting while the database is down are kept up to this many (the newest).
BACKLOG: Final = 200_000

# A frame or event as the event loop records it: (charger pk, Unix time, kind, direction,
# message id, action, length, text).
Pending = tuple[int, float, str, str, str, str, int, str]


@dataclass(frozen=True)
class FrameLogPolicy:
    enabled: bool = True
    max_rows: int = 1_000_000
    max_age_seconds: float = 7 * 86_400.0
    payload_chars: int = 65_536
    prune_seconds: float = 10.0
    prune_batch: int = 20_000

    @classmethod
    def from_settings(cls) -> FrameLogPolicy:
        return cls(
            enabled=settings.CHARGESIM_MESSAGE_LOG_STORE,
            max_rows=settings.CHARGESIM_MESSAGE_LOG_MAX_ROWS,
            max_age_seconds=settings.CHARGESIM_MESSAGE_LOG_MAX_DAYS * 86_400.0,
            payload_chars=settings.CHARGESIM_MESSAGE_LOG_PAYLOAD_CHARS,
        )


def rows(
    pending: list[Pending], payload_chars: int, *, redacted: bool = False
) -> list[FrameLogRow]:
    """The rows to store for these entries, as tuples (`values` says what they hold)."""
    flat = values(pending, payload_chars, redacted=redacted)
    return [tuple(flat[n : n + _WIDTH]) for n in range(0, len(flat), _WIDTH)]


def values(pending: list[Pending], payload_chars: int, *, redacted: bool = False) -> list[Any]:
    """The rows to store for these entries (in the writer thread), their values one row
    after the other in one list (what the statement binds): a CALL and its answer in one
    row when both are here (the log's cost is per row: this halves it), anything else a
    row of its own. Most frames are stored as they were recorded, after a few substring and
    length checks; the others are redacted, cut or cleaned first. `redacted`: the entries'
    texts are redacted already (the checkpointer's are: it shares one secret test per frame
    with the dashboard's log), so only their length and names are checked here.

    Written for speed (it sees every frame): no tuple is built per row, an answer is
    written into its CALL's row in place, and a frame's kind is read from its first three
    characters."""
    out: list[Any] = []
    extend = out.extend
    # (charger pk, message id, direction) of a CALL -> where its row starts in `out`
    calls: dict[tuple[int, str, str], int] = {}
    pop = calls.pop
    for entry in pending:
        # One unpacking: cheaper than reading the tuple's items one by one.
        pk, at, _kind, direction, message_id, action, size, text = entry
        if (
            size > payload_chars
            or (not redacted and may_hold_secret(text))
            or len(message_id) > NAME_CHARS
            or len(action) > NAME_CHARS
            or "\x00" in message_id
            or "\x00" in action
            # Our own frames are JSON we wrote: only a frame from the CSMS can hold a NUL.
            or (direction == "in" and "\x00" in text)
        ):
            entry = _cleaned(entry, payload_chars, redacted)
            pk, at, _kind, direction, message_id, action, size, text = entry
        if message_id:
            # The frame's kind from its first three characters, in one slice and string
            # compares (cheaper than reading three characters one by one).
            head = text[:3]
            if head == "[2,":
                calls[(pk, message_id, direction)] = len(out)
            elif head == "[3," or head == "[4,":
                start = pop((pk, message_id, _OTHER[direction]), None)
                if start is not None:
                    out[start + 8] = at
                    out[start + 9] = size
                    out[start + 10] = text
                    continue
        extend(entry)
        extend(_NO_ANSWER)
    return out


# A row without an answer: the answer's time, size and payload.
_NO_ANSWER: tuple[None, None, str] = (None, None, "")
_OTHER = {"in": "out", "out": "in", "": ""}
_WIDTH = 11  # values per row


def _cleaned(entry: Pending, payload_chars: int, redacted: bool) -> Pending:
    pk, at, kind, direction, message_id, action, size, text = entry
    if not redacted:
        text = redact_frame(text)
        size = len(text)  # after redaction: a cut is then `size > len(payload)`
    text = text[:payload_chars].replace("\x00", "\ufffd")
    message_id = message_id[:NAME_CHARS].replace("\x00", "\ufffd")
    action = action[:NAME_CHARS].replace("\x00", "\ufffd")
    return (pk, at, kind, direction, message_id, action, size, text)


def write(pending: list[Pending], payload_chars: int, *, redacted: bool = False) -> None:
    """Store frames, in a savepoint of the checkpoint's transaction (or a transaction of
    their own). The log must never hold up the checkpoint: rows refused for what is in them
    are dropped with a warning; only an error of the database itself is raised.
    `redacted` as for `rows`."""
    if not pending:
        return
    try:
        with transaction.atomic():
            FrameLogEntry.objects.add_values(values(pending, payload_chars, redacted=redacted))
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        dropped("message_log_unsaved", len(pending))
        log.warning("message log: %d entries not stored (%s)", len(pending), type(exc).__name__)


def prune(policy: FrameLogPolicy, now: float | None = None) -> int:
    """Delete rows beyond the policy's count and age, one bounded step (in the writer
    thread). In the scaled-out mode every worker prunes; on PostgreSQL one at a time (an
    advisory lock that the others skip), SQLite serialises writers anyway."""
    before = (time.time() if now is None else now) - policy.max_age_seconds
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_PRUNE_LOCK])
                if not cursor.fetchone()[0]:
                    return 0
        return FrameLogEntry.objects.prune(
            max_rows=policy.max_rows, before=before, limit=policy.prune_batch
        )


# Any 64-bit number names a PostgreSQL advisory lock; this one is ChargeSim's pruning.
_PRUNE_LOCK: Final = 0x43534D4C4F47  # "CSMLOG"
