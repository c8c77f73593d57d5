"""The commands' first look at the database (`simulator.management.database`): a server
that is down or a database never migrated is one clear line and an exit status, not a
driver's traceback; a password in DATABASE_URL is not printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.process import ROOT, free_port, run_manage

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
    ("command", "code"),
    [(("runsimulator", "--no-web"), 1), (("runscenario", CASE, "--builtin-csms"), 2)],
    ids=["runsimulator", "runscenario"],
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
