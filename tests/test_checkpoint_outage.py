"""A database outage as the worker's log tells it: the first failure in full, then a line
now and then while it lasts, and one when it ends (not a traceback a second)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from simulator.core.charge_point import BootState
from simulator.runtime.lifecycle import RunOptions, Simulator
from simulator.runtime.persistence import Checkpointer
from tests.cast import make_charger
from tests.engine import loaded, wait_until
from tests.process import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def _backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _terminate(pid: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


@contextlib.asynccontextmanager
async def database_away(service: Simulator, tmp_path: Path) -> AsyncIterator[None]:
    """The database out of this worker's reach until the block ends: the writer's session
    ends, and every new connection of this process goes nowhere (PostgreSQL: a port where
    nothing listens; SQLite: a file in a directory that does not exist)."""
    from django.db import connections

    shared = connections["default"].settings_dict  # one dict for every thread's connection
    key = "PORT" if shared["ENGINE"].endswith("postgresql") else "NAME"
    kept = shared[key]
    loop = asyncio.get_running_loop()
    writer = 0
    if key == "PORT":
        writer = await loop.run_in_executor(service._writer, _backend_pid)
        await sync_to_async(_backend_pid)()  # a session to end the writer's from
    shared[key] = str(free_port()) if key == "PORT" else str(tmp_path / "gone" / "db.sqlite3")
    try:
        if key == "PORT":
            await sync_to_async(_terminate)(writer)
        else:
            await loop.run_in_executor(service._writer, Checkpointer.close)
        yield
    finally:
        shared[key] = kept


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


async def test_a_database_outage_is_logged_once_in_full_then_now_and_then(
    csms, caplog, tmp_path
) -> None:
    await database_sync_to_async(make_charger)("CP-OUT", evses=1, csms_url=csms.url)
    service = Simulator(
        RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5, only_ids=["CP-OUT"])
    )
    await service.start()
    service.checkpoint_outage.every = 0.5
    try:
        charger = loaded(service, "CP-OUT")
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot")
        async with database_away(service, tmp_path):

            async def failing_again() -> bool:
                service.checkpointer.on_change(charger)  # something to write, as a visit
                return len(_lines(caplog, "still failing")) >= 2

            while not await failing_again():
                await asyncio.sleep(0.05)
        await wait_until(lambda: _lines(caplog, "succeeded again"), message="the end of it")
    finally:
        await service.stop()
    first = _lines(caplog, "checkpoint failed; retrying")
    assert len(first) == 1 and first[0].exc_info is not None
    still = _lines(caplog, "checkpoint still failing after")
    assert all(r.exc_info is None and "OperationalError" in r.getMessage() for r in still)
    ended = _lines(caplog, "checkpoint succeeded again after")[0].getMessage()
    attempts = int(ended.split("(")[1].split()[0])
    # Every attempt failed (about ten a second here), but only these lines say so.
    assert attempts > len(first) + len(still), (ended, len(still))
