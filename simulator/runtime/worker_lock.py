"""One running simulator per database and shard.

A second `runsimulator` started on the database of a running one (another terminal, a
forgotten `--no-web` worker, an embedded `runscenario`) would load the same chargers, end
the first one's open transactions as PowerLoss, rewrite the demo fleet and connect the same
charge point ids to the CSMS. So a process that runs chargers holds a lock for its shard
of its database for as long as it runs, and a second one is refused before it writes:

* SQLite: an exclusive `flock` on a file beside the database (`db.sqlite3.worker-0-of-1.lock`);
* PostgreSQL: a session advisory lock on a connection of its own.

Both end with the process, however it ends (SIGKILL included): a restarted worker never
waits for a dead one. Workers of different shards (`--shard K/N`) run side by side.
"""

from __future__ import annotations

import hashlib
import logging
import os
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
        self._pg: Any = None

    @property
    def held(self) -> bool:
        return self._file is not None or self._pg is not None

    def acquire(self) -> None:
        """Take the lock, or raise WorkerLockError saying who holds it."""
        conn = connections[self.alias]
        if conn.vendor == "sqlite":
            self._lock_file(conn.settings_dict["NAME"])
        elif conn.vendor == "postgresql":
            self._lock_postgres(conn)

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None
        if self._pg is not None:
            try:
                self._pg.close()  # the session ends: its advisory locks with it
            except Exception:  # already gone with the server
                log.debug("worker lock: closing its connection failed", exc_info=True)
            self._pg = None

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
            holder = handle.read().strip()
            handle.close()
            raise WorkerLockError(
                f"Another simulator{f' (pid {holder})' if holder.isdigit() else ''} runs "
                f"{self._what()} of this database (SQLite {path}). Stop it first, or give "
                "this one a database of its own (CHARGESIM_VAR_DIR or DATABASE_URL)."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def _lock_postgres(self, conn: Any) -> None:
        import psycopg

        config = conn.settings_dict
        # A key of this database's shard: every worker computes the same one.
        digest = hashlib.blake2b(
            f"chargesim-worker:{config.get('NAME')}:{self.shard}/{self.shards}".encode(),
            digest_size=8,
        ).digest()
        key = int.from_bytes(digest, "big", signed=True)
        session = psycopg.connect(**conn.get_connection_params(), autocommit=True)
        try:
            row = session.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
            if row is None or not row[0]:
                # A bigint key shows in pg_locks as its high and low 32 bits.
                holder = session.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid = %s::bigint::oid AND objid = %s::bigint::oid "
                    "AND objsubid = 1",
                    [(key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF],
                ).fetchone()
                raise WorkerLockError(
                    f"Another simulator"
                    f"{f' (PostgreSQL backend pid {holder[0]})' if holder else ''} runs "
                    f"{self._what()} of this database ({config.get('NAME')} on "
                    f"{config.get('HOST') or 'the local socket'}). Stop it first, or run "
                    "this one as another shard (--shard K/N)."
                )
        except BaseException:
            session.close()
            raise
        self._pg = session
