"""A delete that PostgreSQL picks as a deadlock's victim is run again. A scenario run
ended "error" when deleting its temporary chargers lost such a race with the worker's
checkpoint. The deadlock here is a real one, made by two connections taking two rows'
locks in opposite orders."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError, connection, connections, transaction

from chargers.deadlocks import retrying_races
from chargers.models import Charger
from tests.cast import make_charger

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_error_other_than_a_deadlock_is_not_retried():
    calls = []

    def work() -> None:
        calls.append(1)
        raise OperationalError("no such table")

    with pytest.raises(OperationalError):
        retrying_races(work)
    assert calls == [1]


@pytest.mark.parametrize("nested", [False, True], ids=["alone", "inside-atomic"])
def test_a_real_deadlock_is_retried_until_the_delete_goes_through(nested):
    # `inside-atomic`: as the admin's delete view runs it, inside its own transaction; the
    # retry rolls back to its savepoint and runs again.
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no deadlock detection (it locks the file)")
    first, second = make_charger("DL-1"), make_charger("DL-2")
    holding = threading.Event()
    taken = threading.Event()
    errors: list[BaseException] = []

    def other_writer() -> None:
        # The worker's checkpoint, in effect: row 2 first, then row 1.
        try:
            with transaction.atomic():
                Charger.objects.filter(pk=second.pk).update(vendor="w")
                holding.set()
                taken.wait(5)
                # The delete blocks on row 2 first, so it is the one PostgreSQL finds in
                # a cycle a second later (deadlock_timeout) and ends.
                time.sleep(0.3)
                Charger.objects.filter(pk=first.pk).update(vendor="w")
        except OperationalError as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    attempts = []

    def delete_both() -> None:
        attempts.append(1)
        with transaction.atomic():
            Charger.objects.filter(pk=first.pk).update(vendor="d")
            if len(attempts) == 1:
                taken.set()
            Charger.objects.filter(pk__in=[first.pk, second.pk]).delete()

    writer = threading.Thread(target=other_writer)
    writer.start()
    assert holding.wait(5)
    if nested:
        with transaction.atomic():
            retrying_races(delete_both)
    else:
        retrying_races(delete_both)
    writer.join(10)
    assert not Charger.objects.filter(pk__in=[first.pk, second.pk]).exists()
    assert errors == []  # the other writer went through
    assert len(attempts) == 2  # the delete was the victim, and ran again
