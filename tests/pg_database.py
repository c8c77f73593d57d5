"""A PostgreSQL database of a test's own on the test server (PG_TEST_URL), for tests that
run the worker as a process against PostgreSQL: made empty, dropped at the end."""

from __future__ import annotations

import contextlib
import os
import urllib.parse
import uuid
from collections.abc import Iterator

PG_URL = os.environ.get("PG_TEST_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def database_name(url: str) -> str:
    return urllib.parse.urlsplit(url).path.lstrip("/")


@contextlib.contextmanager
def own_database(prefix: str) -> Iterator[str]:
    """A new empty database named `prefix` and a random tail; its URL. Dropped at the end
    even with sessions still open in it (a worker killed, a process still stopping)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urllib.parse.urlsplit(PG_URL)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
