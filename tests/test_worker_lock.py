"""One running simulator per database and shard (`simulator.runtime.worker_lock`): a second
one is refused before it writes, a killed one never holds the next start up."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from scripts.reachable import reachable
from simulator.runtime.worker_lock import WorkerLock, WorkerLockError
from tests.pg_database import PG_URL, database_name, own_database
from tests.process import ManagePy, free_port, run_manage


def demo_worker(var_dir: Path) -> ManagePy:
    """`runsimulator --no-web --demo` with one demo charger, on the database in `var_dir`."""
    return ManagePy(
        var_dir, "runsimulator", "--no-web", "--demo", "--demo-chargers", "1",
        "--csms-port", str(free_port()),
    )  # fmt: skip


@pytest.mark.slow
def test_a_second_simulator_on_the_database_is_refused_and_a_killed_one_frees_it(
    tmp_path: Path,
) -> None:
    first = demo_worker(tmp_path)
    try:
        first.wait_for_output("fleet: 1/1 accepted")
        second = run_manage(
            tmp_path, "runsimulator", "--no-web", "--demo", "--csms-port", str(free_port())
        )
        assert second.returncode == 1, second.stderr
        # Named as what it is: QA saw "(pid N)" of a runscenario and looked for a simulator.
        assert (
            f"Another simulator (runsimulator, pid {first.proc.pid}) runs shard 0/1 of this "
            "database" in second.stderr
        )
        assert "Traceback" not in second.stderr
        assert "DEMO-0001" not in second.stdout  # it loaded nothing
        # A shard of another N would run some of its chargers twice: refused too.
        overlapping = run_manage(tmp_path, "runsimulator", "--no-web", "--shard", "1/2")
        assert overlapping.returncode == 1, overlapping.stderr
        assert "runs this database (SQLite" in overlapping.stderr
        assert "as 1 shard (--shard K/1), and this one as shard 1/2" in overlapping.stderr
        first.signal(signal.SIGKILL)
        first.wait(10)
        again = demo_worker(tmp_path)
        try:
            again.wait_for_output("fleet: 1/1 accepted")
        finally:
            again.stop()
    finally:
        first.stop()


@pytest.mark.django_db
def test_the_lock_is_one_holder_per_shard_until_released() -> None:
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith("file:"):
        pytest.skip("an in-memory test database has nothing to lock")
    held = WorkerLock(0, 1)
    held.acquire()
    try:
        with pytest.raises(WorkerLockError, match="runs shard 0/1 of this database") as refused:
            WorkerLock(0, 1).acquire()
        # The holder named as its process (and host), not as the PostgreSQL backend that
        # serves its session (README: "naming the process that holds it").
        assert f"pid {os.getpid()}" in str(refused.value)
        assert str(refused.value).startswith("Another simulator (")
        # Any shard of another N overlaps shard 0/1 (which runs every charger).
        with pytest.raises(WorkerLockError, match=r"as 1 shard \(--shard K/1\)"):
            WorkerLock(1, 2).acquire()
    finally:
        held.release()
    # Shards of one N run side by side; then a worker of another N is refused.
    shards = [WorkerLock(0, 2), WorkerLock(1, 2)]
    for shard in shards:
        shard.acquire()
    try:
        with pytest.raises(
            WorkerLockError, match=r"as 2 shards \(--shard K/2\), and this one as shard 0/3"
        ):
            WorkerLock(0, 3).acquire()
    finally:
        for shard in shards:
            shard.release()
    regrown = WorkerLock(0, 3)
    regrown.acquire()  # once they stopped, the fleet may run as another N
    regrown.release()
    after = WorkerLock(0, 1)
    after.acquire()
    assert after.held
    after.release()
    assert not after.held


@pytest.mark.django_db
def test_a_released_postgresql_lock_is_free_at_once_even_if_its_session_ends_slowly() -> None:
    """A worker restarted at once as another N is not refused by one that has stopped."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's advisory locks only (SQLite's flock ends with the close)")
    stopped = WorkerLock(0, 2)
    stopped.acquire()
    # A session with temporary tables to drop ends slowly, as any does on a loaded server
    # (CI once refused `--shard 0/3` right after the `K/2` shards had been released): the
    # server gives up a closed session's locks only once its backend has exited.
    with stopped._pg.transaction():
        for n in range(300):
            stopped._pg.execute(f"CREATE TEMP TABLE slow_to_end_{n} (x int)")
    stopped.release()
    regrown = WorkerLock(0, 3)
    regrown.acquire()
    regrown.release()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_an_embedded_runscenario_on_the_database_of_a_running_simulator_is_refused(
    tmp_path: Path,
) -> None:
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith("file:"):
        pytest.skip("an in-memory test database has nothing to lock")
    from django.core.management.base import CommandError

    from scenarios.models import ScenarioRun

    held = WorkerLock(0, 1)  # as a runsimulator on this database holds it
    held.acquire()
    out = io.StringIO()
    try:
        # Refused before it writes or starts anything: it stored a run as an error and
        # exited 1, which a CI job reads as a CSMS that failed its checks.
        with pytest.raises(CommandError) as refused:
            call_command(
                "runscenario",
                str(Path(__file__).parent.parent / "scenarios/library/boot-accepted.yaml"),
                "--builtin-csms",
                stdout=out,
                stderr=out,
            )
    finally:
        held.release()
    assert refused.value.returncode == 2  # nothing ran
    assert "Another simulator" in str(refused.value)
    assert "runs shard 0/1 of this database" in str(refused.value)
    assert "Built-in CSMS on" not in out.getvalue()
    assert not ScenarioRun.objects.exists()


def _end_sessions(session_pid: int) -> None:
    """End a PostgreSQL session from another one, as a failover or an admin would."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [session_pid])


@pytest.mark.django_db
def test_a_lock_lost_with_its_postgresql_session_is_taken_again_at_the_next_check() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("only a PostgreSQL lock lives in a session that can end under it")
    held = WorkerLock(0, 1)
    held.acquire()
    try:
        assert held.check() is False  # alive: nothing to do
        _end_sessions(held._pg.info.backend_pid)
        assert held.check() is True  # taken again
        with pytest.raises(WorkerLockError, match="runs shard 0/1 of this database"):
            WorkerLock(0, 1).acquire()
    finally:
        held.release()


@pytest.mark.django_db
def test_a_lock_another_worker_took_meanwhile_stops_the_check() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("only a PostgreSQL lock lives in a session that can end under it")
    held = WorkerLock(0, 1)
    held.acquire()
    other = WorkerLock(0, 1)
    try:
        _end_sessions(held._pg.info.backend_pid)
        other.acquire()  # the lock was free: a second worker got it
        with pytest.raises(WorkerLockError):
            held.check()
    finally:
        other.release()
        held.release()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not reachable(PG_URL), reason=f"no PostgreSQL at {PG_URL}")
def test_a_worker_whose_database_sessions_were_ended_keeps_its_shard(tmp_path: Path) -> None:
    """Every session of the worker's database ended (a failover, pg_terminate_backend): the
    worker takes its lock again, so a second worker for its shard is still refused."""
    import psycopg

    with own_database("chargesim_lock") as url:
        env = {"DATABASE_URL": url}
        args = ("runsimulator", "--no-web", "--demo", "--demo-chargers", "1")
        first = ManagePy(tmp_path / "a", *args, "--csms-port", str(free_port()), env=env)
        try:
            first.wait_for_output("fleet: 1/1 accepted", timeout=120)
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    [database_name(url)],
                )
            first.wait_for_output("of this database taken again", timeout=30)
            second = run_manage(tmp_path / "b", *args, "--csms-port", str(free_port()), env=env)
            assert second.returncode == 1, second.stdout[-2000:] + second.stderr[-2000:]
            assert "runs shard 0/1 of this database" in second.stderr
            assert first.proc.poll() is None  # and the first one runs on
        finally:
            first.stop()
