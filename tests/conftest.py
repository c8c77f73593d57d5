"""Fixtures shared by every test file: the built-in CSMS, the shared cast's usual members."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.test import Client

from locations.models import Location
from simulator.csms import CentralSystem
from simulator.csms.control import ControlServer
from simulator.csms.files import FileServer
from simulator.runtime.meter_engine import MeterEngine
from tests.cast import make_location, make_superuser

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "false")


def pytest_configure(config: pytest.Config) -> None:
    # Registered here, next to the fixture that reads it, rather than in pyproject.toml.
    config.addinivalue_line(
        "markers",
        "csms(**options): keyword arguments for the `csms` fixture's CentralSystem "
        "(keep_log, boot_status, boot_interval, response_timeout, validate_messages)",
    )


@pytest.fixture
async def csms(request: pytest.FixtureRequest) -> AsyncIterator[CentralSystem]:
    """The built-in CSMS on a free port of 127.0.0.1, started for one test and stopped after.

    Constructor options come from the test's marker: `@pytest.mark.csms(keep_log=False)`.
    Behaviour that may change mid-test (`boot_status`, `respond`, `passwords`...) is set on
    the fixture's value instead.
    """
    marker = request.node.get_closest_marker("csms")
    options: dict[str, Any] = marker.kwargs if marker is not None else {}
    server = CentralSystem(**options)
    await server.start(host="127.0.0.1", port=0)
    yield server
    await server.stop()


@pytest.fixture
async def csms_control(csms: CentralSystem) -> AsyncIterator[ControlServer]:
    """The `csms` fixture's control endpoint (`csms_control.url` is a scenario's
    ${csms_control}) on a free port of 127.0.0.1, stopped after the test."""
    server = ControlServer(csms)
    await server.start(host="127.0.0.1", port=0)
    yield server
    await server.stop()


@pytest.fixture
async def flushed_layer() -> AsyncIterator[None]:
    """The channel layer emptied after the test (modules take it with
    `pytest.mark.usefixtures("flushed_layer")`): the in-memory layer is one per process, and
    a group or message a test left behind would reach the next test's consumers."""
    yield
    await get_channel_layer().flush()


@pytest.fixture
def ticking() -> Iterator[Callable[..., MeterEngine]]:
    """`ticking(*chargers, tick=0.05)` runs a meter engine over these chargers on the test's
    loop until the test ends (a worker's engine, without the rest of the worker)."""
    tasks: list[asyncio.Task[None]] = []

    def start(*chargers: Any, tick: float = 0.05) -> MeterEngine:
        engine = MeterEngine(list(chargers), tick_seconds=tick)
        tasks.append(asyncio.get_running_loop().create_task(engine.run()))
        return engine

    yield start
    for task in tasks:
        task.cancel()


@pytest.fixture
def files() -> Iterator[FileServer]:
    """The built-in CSMS's HTTP file server on a free port of 127.0.0.1 (firmware to
    download, diagnostics to upload), stopped after the test."""
    with FileServer() as server:
        yield server


@pytest.fixture
def depot(db: None) -> Location:
    """The location that imported rows name ("Depot")."""
    return make_location("Depot")


@pytest.fixture
def admin_client_logged_in(client: Client, db: None) -> Client:
    client.force_login(make_superuser())
    return client


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's test databases, and on PostgreSQL no other session left on them at
    the end: asgiref's thread of an async test (`sync_to_async`) keeps its own connection,
    and the test database cannot be dropped while one is open. Without this, whichever of
    those tests ran last failed the session at teardown (a file run alone, say)."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Django deletes the SQLite test file but not its WAL side files (see settings)."""
    from pathlib import Path

    from django.conf import settings

    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name:
        for suffix in ("-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)
