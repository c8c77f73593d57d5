"""The database really out of a running worker's reach, for tests of what the worker does
while it is away and once it is back (no mock: the worker's own connections fail)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async

from simulator.runtime.persistence import Checkpointer
from tests.process import free_port

if TYPE_CHECKING:
    from simulator.runtime.lifecycle import Simulator


def backend_pid() -> int:
    """This thread's PostgreSQL session (opened if need be)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def terminate_backend(pid: int) -> None:
    """End a PostgreSQL session from this thread's own."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


@contextlib.asynccontextmanager
async def database_away(service: Simulator) -> AsyncIterator[None]:
    """The database out of this worker's reach until the block ends: the checkpoint writer's
    session ends, and every new connection of this process goes nowhere. Only this process's
    sessions are touched (other tests may share the server)."""
    from django.db import connections

    shared = connections["default"].settings_dict  # one dict for every thread's connection
    key = "PORT" if shared["ENGINE"].endswith("postgresql") else "NAME"
    kept = shared[key]
    loop = asyncio.get_running_loop()
    writer = 0
    if key == "PORT":
        writer = await loop.run_in_executor(service._writer, backend_pid)
        await sync_to_async(backend_pid)()  # a session to end the writer's from
    with tempfile.TemporaryDirectory(prefix="chargesim-away-") as scratch:
        # PostgreSQL: a port where nothing listens; SQLite: a file in a directory that is
        # never made.
        shared[key] = str(free_port()) if key == "PORT" else str(Path(scratch) / "gone" / "db")
        try:
            if key == "PORT":
                await sync_to_async(terminate_backend)(writer)
            else:
                await loop.run_in_executor(service._writer, Checkpointer.close)
            yield
        finally:
            shared[key] = kept


@contextlib.contextmanager
def unreachable_database(password: str) -> Iterator[None]:
    """The database down for the web side of this process until the block ends: this
    thread's connection closed and every new one going nowhere, with `password` as the
    database password (what an error page must not show). Outside a test transaction: a
    connection closed inside one breaks the test's rollback."""
    from django.db import connections

    connection = connections["default"]
    shared = connection.settings_dict  # one dict for every thread's connection
    key = "PORT" if shared["ENGINE"].endswith("postgresql") else "NAME"
    kept = {key: shared[key], "PASSWORD": shared["PASSWORD"]}
    connection.close()
    with tempfile.TemporaryDirectory(prefix="chargesim-away-") as scratch:
        # As database_away: PostgreSQL on a port where nothing listens; SQLite a file in a
        # directory that is never made.
        shared[key] = str(free_port()) if key == "PORT" else str(Path(scratch) / "gone" / "db")
        shared["PASSWORD"] = password
        try:
            yield
        finally:
            connection.close()
            shared.update(kept)
