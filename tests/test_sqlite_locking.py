"""The embedded database under two writers: a transaction that reads and then writes (an
admin save) while another connection commits (the engine's checkpoint) must wait its turn,
not fail with "database is locked" as SQLite's deferred transactions do in WAL mode."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from locations.models import Location

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's locking only"),
]


def test_a_read_then_write_transaction_waits_for_a_writer_that_commits_meanwhile():
    site = Location.objects.create(name="Depot")
    read_done = threading.Event()
    other_finished = threading.Event()
    failures: list[BaseException] = []

    def checkpoint() -> None:
        # Another connection (another thread) writes while the transaction below is open.
        try:
            read_done.wait(timeout=10)
            Location.objects.filter(pk=site.pk).update(address="written by the engine")
        except BaseException as error:
            failures.append(error)
        finally:
            connections.close_all()
            other_finished.set()

    writer = threading.Thread(target=checkpoint)
    writer.start()
    try:
        with transaction.atomic():
            assert Location.objects.get(pk=site.pk).name == "Depot"  # a read first
            read_done.set()
            # With deferred transactions the other write commits here, and the write
            # below fails at once. With immediate ones the other write waits for ours.
            other_finished.wait(timeout=0.5)
            Location.objects.filter(pk=site.pk).update(name="Depot 2")
    finally:
        read_done.set()
        writer.join(timeout=30)
    assert not failures, failures
    site.refresh_from_db()
    assert (site.name, site.address) == ("Depot 2", "written by the engine")
