"""One running simulator per database and shard.

A second `runsimulator` started on the database of a running one (another terminal, a
forgotten `--no-web` worker, an embedded `runscenario`) would load the same chargers, end
the first one's open transactions as PowerLoss, rewrite the demo fleet and connect the same
charge point ids to the CSMS. So a process that runs chargers holds a lock for its shard
of its database for as long as it runs, and a second one is refused before it writes:

* SQLite: an exclusive `flock` on a file beside the database (`db.sqlite3.worker-0-of-1.lock`);
* PostgreSQL: a session advisory lock on a connection of its own.

Both end with the process, however it ends (SIGKILL included): a restarted worker never
waits for a dead one. Workers of different shards (`--shard K/N`) run side by side, but only
with the same N: `--shard 0/1` beside `--shard 1/2` would run shard 1's chargers twice. So
each worker also holds a shared lock on its N (a file `...workers-of-N.lock` locked shared,
or a shared advisory lock keyed N), and is refused while another N is held.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import sys
from pathlib import Path
from typing import IO, Any

from django.db import DEFAULT_DB_ALIAS, connections

try:
    import fcntl
except ImportError:  # not POSIX: no lock (the other checks still hold)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


class WorkerLockError(Exception):
    """Another process runs this shard of this database."""


class WorkerLock:
    def __init__(self, shard: int, shards: int, alias: str = DEFAULT_DB_ALIAS) -> None:
        self.shard, self.shards, self.alias = shard, shards, alias
        self._file: IO[str] | None = None
        self._count_file: IO[str] | None = None
        self._pg: Any = None

    @property
    def held(self) -> bool:
        return self._file is not None or self._pg is not None

    def acquire(self) -> None:
        """Take the lock, or raise WorkerLockError saying who holds it."""
        conn = connections[self.alias]
        try:
            if conn.vendor == "sqlite":
                self._lock_file(conn.settings_dict["NAME"])
            elif conn.vendor == "postgresql":
                self._lock_postgres(conn)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None
        if self._count_file is not None:
            self._count_file.close()
            self._count_file = None
        if self._pg is not None:
            _end_session(self._pg)
            self._pg = None

    def check(self) -> bool:
        """Make sure the lock is still held; True if it had been lost and is taken again.

        A PostgreSQL session lock lives as long as its connection: a server restart, a
        failover, `pg_terminate_backend` or an idle-session timeout ends it without a word,
        and a second worker for this shard could then start beside this one. So the
        session is asked for a moment of life now and then (which also keeps it from
        being idle), and a lost lock is taken again at once. Raises WorkerLockError if
        another process took it meanwhile (this one must stop); a database that cannot be
        reached yet is retried at the next check."""
        session = self._pg
        if session is None:
            return False  # SQLite's flock ends only with the process, or nothing is locked
        import psycopg

        try:
            session.execute("SELECT 1").fetchone()
            return False
        except psycopg.Error:
            log.warning("worker lock: its database session was lost; taking the lock again")
        with contextlib.suppress(Exception):
            session.close()
        self._pg = None
        try:
            self._lock_postgres(connections[self.alias])
        except WorkerLockError:
            raise
        except psycopg.Error:
            # Not reachable yet: keep a closed session so that the next check tries again.
            self._pg = session
            return False
        log.warning("worker lock: %s of this database taken again", self._what())
        return True

    def _what(self) -> str:
        return f"shard {self.shard}/{self.shards}"

    def _lock_file(self, name: Any) -> None:
        text = str(name)
        if fcntl is None or not text or text == ":memory:" or text.startswith("file:"):
            return  # an in-memory database is this process's own
        path = Path(text)
        lock_path = path.with_name(f"{path.name}.worker-{self.shard}-of-{self.shards}.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")  # noqa: SIM115 (held open while the lock is held)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().split(maxsplit=1)  # "pid command" (`_command`)
            handle.close()
            said = ""
            if holder and holder[0].isdigit():
                said = (
                    f" ({holder[1]}, pid {holder[0]})" if len(holder) > 1 else f" (pid {holder[0]})"
                )
            raise WorkerLockError(
                f"Another simulator{said} runs "
                f"{self._what()} of this database (SQLite {path}). Stop it first, or give "
                "this one a database of its own (CHARGESIM_VAR_DIR or DATABASE_URL)."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {_command()}")
        handle.flush()
        self._file = handle
        self._lock_count_file(path)

    def _lock_count_file(self, path: Path) -> None:
        """Hold this worker's N shared; refuse while another N is held (by anyone)."""
        assert fcntl is not None  # `_lock_file` returned before calling it otherwise
        stem = f"{path.name}.workers-of-"
        mine = path.with_name(f"{stem}{self.shards}.lock")
        handle = open(mine, "a+")  # noqa: SIM115 (held open while the lock is held)
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)  # shared: never waits on a shared one
        self._count_file = handle
        for other in path.parent.glob(f"{stem}*.lock"):
            count = other.name[len(stem) : -len(".lock")]
            if other == mine or not count.isdigit():
                continue
            with open(other, "a+") as probe:
                try:
                    fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # held: a worker runs with that N
                    raise self._other_count(int(count), f"SQLite {path}") from None
                # Free: left by a worker that ended; closing `probe` drops the probe's lock.

    def _other_count(self, count: int, database: str) -> WorkerLockError:
        return WorkerLockError(
            f"Another simulator runs this database ({database}) as {count} shard"
            f"{'s' if count != 1 else ''} (--shard K/{count}), and this one as "
            f"{self._what()}: the shards would overlap and run chargers twice. Every worker "
            "of one database takes the same N; stop the others first to change it."
        )

    def _lock_postgres(self, conn: Any) -> None:
        import psycopg

        config = conn.settings_dict
        # A key of this database's shard: every worker computes the same one.
        digest = hashlib.blake2b(
            f"chargesim-worker:{config.get('NAME')}:{self.shard}/{self.shards}".encode(),
            digest_size=8,
        ).digest()
        key = int.from_bytes(digest, "big", signed=True)
        params = conn.get_connection_params()
        # Named in pg_stat_activity, so that a refused worker can say which process (and
        # machine) holds the shard, not the PostgreSQL backend serving it.
        params["application_name"] = _session_name()
        session = psycopg.connect(**params, autocommit=True)
        try:
            row = session.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
            if row is None or not row[0]:
                # A bigint key shows in pg_locks as its high and low 32 bits.
                holder = session.execute(
                    "SELECT l.pid, a.application_name FROM pg_locks l "
                    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid "
                    "AND l.objsubid = 1",
                    [(key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF],
                ).fetchone()
                raise WorkerLockError(
                    f"Another simulator{_holder_text(holder)} runs "
                    f"{self._what()} of this database ({config.get('NAME')} on "
                    f"{config.get('HOST') or 'the local socket'}). Stop it first, or run "
                    f"this one as another shard of the {self.shards} (--shard K/{self.shards})."
                )
            # This worker's N, shared; any other N held means overlapping shards. The
            # two-int form keeps N readable in pg_locks (classid: ours, objid: N).
            session.execute("SELECT pg_advisory_lock_shared(%s, %s)", [_COUNTS, self.shards])
            other = session.execute(
                "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = %s::bigint::oid AND objsubid = 2 AND objid <> %s::bigint::oid "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "LIMIT 1",
                [_COUNTS, self.shards],
            ).fetchone()
            if other is not None:
                where = f"{config.get('NAME')} on {config.get('HOST') or 'the local socket'}"
                raise self._other_count(int(other[0]), where)
        except BaseException:
            _end_session(session)  # a refused worker's shared N must not refuse the next one
            raise
        self._pg = session


def _end_session(session: Any) -> None:
    """Give up the session's advisory locks, then close it.

    Closing alone is not enough: the server releases a session's locks only as its backend
    exits, after the client's close has returned (later still on a loaded server or with
    temporary tables to drop). A worker restarted at once as another N (`--shard 0/3` after
    the `K/2` ones stopped) was then refused for a lock of a worker that had already ended.
    The unlock is answered only once the locks are gone."""
    try:
        session.execute("SELECT pg_advisory_unlock_all()")
    except Exception:  # already gone with the server, and its locks with it
        log.debug("worker lock: unlocking before close failed", exc_info=True)
    try:
        session.close()
    except Exception:
        log.debug("worker lock: closing its connection failed", exc_info=True)


# The first key of the shard-count advisory locks (the second is N): "CSMN" in ASCII, so
# that no other application's two-int advisory lock is taken for ours by chance.
_COUNTS = 0x43534D4E


_SESSION_PREFIX = "chargesim worker "


def _session_name() -> str:
    """`chargesim worker runscenario, pid 24403 on host-a`: at most 63 bytes, as
    PostgreSQL keeps."""
    return f"{_SESSION_PREFIX}{_command()}, pid {os.getpid()} on {socket.gethostname()}"[:63]


def _command() -> str:
    """What this process is, as a refusal names it (`runsimulator`, `runscenario`, a
    Celery worker): "Another simulator (pid N)" sent a user looking for a simulator
    when a scenario run held the shard."""
    argv = sys.argv
    name = Path(argv[0]).name if argv else ""
    if name == "manage.py" and len(argv) > 1:
        return argv[1]
    return name if name and not name.startswith("-") else "python"  # "-c": xdist


def _holder_text(holder: tuple[int, str | None] | None) -> str:
    """Who holds a shard's lock, as the refusal says it: the worker's process and host
    when its session says so, else the PostgreSQL backend's pid."""
    if holder is None:
        return ""
    backend, name = holder
    if name and name.startswith(_SESSION_PREFIX):
        return f" ({name.removeprefix(_SESSION_PREFIX)})"
    return f" (PostgreSQL backend pid {backend})"
