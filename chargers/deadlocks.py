"""Writes that race the worker's checkpoints on PostgreSQL.

Deleting a running charger cascades to its transaction and EVSE rows while its worker may
be writing the same rows in a checkpoint, in another order: PostgreSQL then ends one of
the two transactions as a deadlock's victim (SQLSTATE 40P01). Its advice is to run the
victim again. The worker's checkpoint does (it writes again at the next one); a delete
made here does with `retrying_races`. (Seen: a scenario run ended "error" because
deleting its temporary chargers lost such a race.)

The delete can also lose without a deadlock. It collects the charger's rows, deletes them,
then deletes the charger; a row of the charger the worker commits in between (an outbox
row, say) is not collected, and PostgreSQL, which checks Django's foreign keys at COMMIT
(DEFERRABLE INITIALLY DEFERRED), then refuses the whole delete (SQLSTATE 23503). Run
again, the delete collects that row too. So `retrying_races` checks the deferred keys
before it returns, while it can still run the delete again: at COMMIT, inside the admin's
own transaction, it would be too late. Once checked, the race is over: the deleted rows
stay locked until COMMIT, so a worker's row of them committed later fails the worker's
own check instead, and the worker drops it (the checkpoint's `_deleted`): a deleted
charger's rows go with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction

log = logging.getLogger(__name__)

T = TypeVar("T")

DEADLOCK = "40P01"
FOREIGN_KEY_VIOLATION = "23503"
ATTEMPTS = 5


def is_deadlock(error: BaseException) -> bool:
    """Whether a database error is PostgreSQL's deadlock (Django wraps the driver's)."""
    return isinstance(error, OperationalError) and _sqlstate(error) == DEADLOCK


def is_reference_race(error: BaseException) -> bool:
    """Whether a database error is PostgreSQL's foreign-key violation: a row referencing
    one the transaction deleted was committed meanwhile."""
    return isinstance(error, IntegrityError) and _sqlstate(error) == FOREIGN_KEY_VIOLATION


def _sqlstate(error: BaseException) -> str | None:
    return getattr(error.__cause__, "sqlstate", None)


def retrying_races(work: Callable[[], T], *, attempts: int = ATTEMPTS) -> T:
    """`work()` in a transaction (a savepoint inside another), its deferred foreign keys
    checked at the end; run again when it lost a race with another writer (a deadlock's
    victim, or a row referencing one it deleted committed meanwhile), after 50 ms,
    100 ms, ..., up to `attempts` times in all."""
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                done = work()
                if connection.vendor == "postgresql":
                    # SET CONSTRAINTS ALL IMMEDIATE, then DEFERRED again: checks now.
                    # (SQLite has no such race: one writer at a time.)
                    connection.check_constraints()
            return done
        except DatabaseError as exc:
            if attempt == attempts or not (is_deadlock(exc) or is_reference_race(exc)):
                raise
            log.info(
                "lost a race with another writer (%s), trying again (%d of %d)",
                "deadlock" if is_deadlock(exc) else "a row written meanwhile",
                attempt,
                attempts,
            )
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises
