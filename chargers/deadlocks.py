"""Writes that race the worker's checkpoints on PostgreSQL.

Deleting a running charger cascades to its transaction and EVSE rows while its worker may
be writing the same rows in a checkpoint, in another order: PostgreSQL then ends one of
the two transactions as a deadlock's victim (SQLSTATE 40P01). Its advice is to run the
victim again. The worker's checkpoint does (it writes again at the next one); a delete
made here does with `retrying_deadlocks`. (Seen: a scenario run ended "error" because
deleting its temporary chargers lost such a race.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEADLOCK = "40P01"
ATTEMPTS = 5


def is_deadlock(error: BaseException) -> bool:
    """Whether a database error is PostgreSQL's deadlock (Django wraps the driver's)."""
    cause = error.__cause__ if isinstance(error, OperationalError) else error
    return getattr(cause, "sqlstate", None) == DEADLOCK


def retrying_deadlocks(work: Callable[[], T], *, attempts: int = ATTEMPTS) -> T:
    """`work()`, one whole database transaction, run again when it was a deadlock's
    victim (after 50 ms, 100 ms, ...), up to `attempts` times in all."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except OperationalError as exc:
            if attempt == attempts or not is_deadlock(exc):
                raise
            log.info("deadlock with another writer, trying again (%d of %d)", attempt, attempts)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises
