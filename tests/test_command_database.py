"""The commands' first look at the database (`fleet_io.management.database`): a server
that is down or a database never migrated is one clear line and an exit status, not a
driver's traceback; a password in DATABASE_URL is not printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_io.management.database import described, upkeep_text, upkeep_warnings
from scripts.reachable import reachable
from tests.pg_database import PG_URL, database_name, own_database
from tests.process import ROOT, ManagePy, free_port, run_manage

pytestmark = pytest.mark.slow

CASE = str(ROOT / "scenarios" / "library" / "boot-accepted.yaml")


def test_runscenario_on_a_database_never_migrated_says_so_and_exits_2(tmp_path: Path) -> None:
    result = run_manage(tmp_path, "runscenario", CASE, "--builtin-csms")
    assert result.returncode == 2, result.stderr
    assert "is not migrated" in result.stderr
    assert "Run `manage.py migrate` first, or add --migrate." in result.stderr
    assert str(tmp_path / "db.sqlite3") in result.stderr
    assert "Traceback" not in result.stderr
    assert "scenarios passed" not in result.stdout  # nothing ran


def test_runsimulator_without_migrating_on_a_database_never_migrated_says_so(
    tmp_path: Path,
) -> None:
    result = run_manage(tmp_path, "runsimulator", "--no-web", "--no-migrate")
    assert result.returncode == 1, result.stderr
    assert "is not migrated" in result.stderr
    assert "or leave out --no-migrate." in result.stderr
    assert "Traceback" not in result.stderr


def test_apitoken_on_a_database_never_migrated_says_so(tmp_path: Path) -> None:
    result = run_manage(tmp_path, "apitoken", "list")
    assert result.returncode == 1, result.stderr
    # It has no option of its own that migrates: none is offered.
    assert "is not migrated: " in result.stderr
    assert result.stderr.rstrip().endswith("Run `manage.py migrate` first.")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("import", "locations.resources.LocationResource", "docs/samples/locations.csv"),
        ("export", "CSV", "chargers.resources.ChargerResource"),
    ],
    ids=["import", "export"],
)
def test_import_and_export_on_a_database_never_migrated_say_so(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """The docs' first import of the sample files, on a fresh checkout before `make run`:
    the database is named, not the file blamed ("File: ... no such table") nor a
    traceback printed."""
    result = run_manage(tmp_path, *command)
    assert result.returncode == 1, result.stderr
    assert f"The database (SQLite {tmp_path / 'db.sqlite3'}) is not migrated: " in result.stderr
    assert result.stderr.rstrip().endswith("Run `manage.py migrate` first.")
    assert "File:" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (("runsimulator", "--no-web"), 1),
        (("runscenario", CASE, "--builtin-csms"), 2),
        (("migrate",), 1),
    ],
    ids=["runsimulator", "runscenario", "migrate"],
)
def test_a_database_server_that_is_down_is_named_without_its_password(
    tmp_path: Path, command: tuple[str, ...], code: int
) -> None:
    port = free_port()  # nothing listens there
    url = f"postgres://chargesim:s3cret-pw@127.0.0.1:{port}/fleet"
    result = run_manage(tmp_path, *command, env={"DATABASE_URL": url})
    assert result.returncode == code, result.stderr
    assert f"Cannot reach the database (PostgreSQL chargesim@127.0.0.1:{port}/fleet)" in (
        result.stderr
    )
    assert "Check DATABASE_URL" in result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_the_upkeep_warning_names_each_setting_found_off() -> None:
    where = "PostgreSQL u@h:5432/fleet"
    assert upkeep_text([], where, "fleet") == []
    (one,) = upkeep_text(["autovacuum"], where, "fleet")
    assert one.startswith(f"autovacuum is off on {where}: ") and "`vacuumdb fleet`" in one
    (two,) = upkeep_text(["autovacuum", "track_counts"], where, "fleet")
    assert two.startswith("autovacuum and track_counts are off on ")


@pytest.mark.django_db
def test_the_upkeep_warnings_follow_the_servers_settings() -> None:
    """SQLite has nothing to say; PostgreSQL names what of autovacuum's needs is off on the
    server (this machine's test server may have autovacuum off: both are right)."""
    from django.db import connection

    warnings = upkeep_warnings()
    if connection.vendor != "postgresql":
        assert warnings == []
        return
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0]
        cursor.execute("SHOW track_counts")
        track_counts = cursor.fetchone()[0]
    off = [
        name
        for name, value in (("autovacuum", autovacuum), ("track_counts", track_counts))
        if value == "off"
    ]
    assert warnings == upkeep_text(off, described(), connection.settings_dict["NAME"])
    assert bool(warnings) == bool(off)


@pytest.mark.postgres
@pytest.mark.skipif(not reachable(PG_URL), reason=f"no PostgreSQL at {PG_URL}")
def test_runsimulator_says_at_start_when_postgresql_will_not_vacuum(tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as admin:
        off = admin.execute("SHOW autovacuum").fetchone()[0] == "off"  # type: ignore[index]
    with own_database("chargesim_upkeep") as url:
        worker = ManagePy(tmp_path, "runsimulator", "--no-web", env={"DATABASE_URL": url})
        try:
            worker.wait_for_output("fleet: 0/0", timeout=120)
            said = "autovacuum is off on PostgreSQL" in worker.output
            assert said == off, worker.output[-3000:]
            if off:
                assert f"`vacuumdb {database_name(url)}`" in worker.output
        finally:
            worker.stop()
