"""The embedded database's page size: set before its first write, refused when SQLite
would refuse it, and harmless for a database made before the setting existed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


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


@pytest.mark.parametrize("raw", ["1000", "256", "131072", "big"])
def test_a_page_size_sqlite_would_refuse_stops_start_up_naming_the_variable(tmp_path, raw):
    env = {
        "PATH": os.environ["PATH"],
        "CHARGESIM_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "chargesim_site.settings",
        "CHARGESIM_SQLITE_PAGE_SIZE": raw,
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
    )
    assert result.returncode != 0
    assert "CHARGESIM_SQLITE_PAGE_SIZE" in result.stderr


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
