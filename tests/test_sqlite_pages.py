"""The embedded database's page size: set before its first write, and harmless for a
database made before the setting existed (a size SQLite would refuse: test_settings_env)."""

from __future__ import annotations

import os
import sqlite3

import pytest
from django.conf import settings
from django.db import connection


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's page size only")
def test_a_new_database_gets_the_configured_page_size_and_wal():
    # The test database was made through the same connection set-up as a new var/ one.
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA page_size")
        (page_size,) = cursor.fetchone()
        cursor.execute("PRAGMA journal_mode")
        (mode,) = cursor.fetchone()
    assert page_size == settings.SQLITE_PAGE_SIZE
    if "CHARGESIM_SQLITE_PAGE_SIZE" not in os.environ:
        assert page_size == 16_384  # the documented default
    assert mode == "wal"


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's page size only")
def test_an_existing_database_keeps_its_page_size_and_its_rows(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x TEXT)")
    old.execute("INSERT INTO t VALUES ('kept')")
    old.commit()
    old.close()
    # What every new connection runs (Django splits the init command at semicolons).
    new = sqlite3.connect(path)
    for statement in settings.DATABASES["default"]["OPTIONS"]["init_command"].split(";"):
        if statement.strip():
            new.execute(statement)
    assert new.execute("PRAGMA page_size").fetchone() == (4096,)
    assert new.execute("SELECT x FROM t").fetchall() == [("kept",)]
    new.close()
