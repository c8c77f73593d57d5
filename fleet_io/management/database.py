"""The commands' first look at the database: one clear line instead of a driver's traceback.

A user who points DATABASE_URL at a server that is down, or runs `runscenario` on a fresh
checkout before anything migrated it, would otherwise read thirty lines of psycopg or
SQLite traceback ending in "no such table". The message names the database without its
password (it may reach a CI log). It lives in fleet_io, the lowest of the Django apps in
the import-linter layers, so that every app's commands may use it: the `import` and
`export` commands as much as `runsimulator`.
"""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db.migrations.executor import MigrationExecutor


def described(alias: str = DEFAULT_DB_ALIAS) -> str:
    """The database as a user set it up, without a password: a SQLite file's path, or
    PostgreSQL's user@host:port/name."""
    conn = connections[alias]
    config = conn.settings_dict
    if conn.vendor == "sqlite":
        return f"SQLite {config.get('NAME')}"
    where = config.get("HOST") or "local socket"
    if config.get("PORT"):
        where = f"{where}:{config['PORT']}"
    user = f"{config['USER']}@" if config.get("USER") else ""
    return f"{conn.display_name} {user}{where}/{config.get('NAME')}"


def check_database(
    *,
    migrated: bool,
    or_else: str = "",
    returncode: int = 1,
    alias: str = DEFAULT_DB_ALIAS,
) -> None:
    """Raise a CommandError (exit status `returncode`) when the database cannot be reached,
    or, with `migrated`, when migrations are left to apply (the command would fail at its
    first query on a missing table or column). `or_else`: the command's own way to migrate
    first, if it has one ("add --migrate"), offered in the message."""
    conn = connections[alias]
    try:
        conn.ensure_connection()
    except OperationalError as exc:
        # The driver's first line says why (refused, unknown host, no such database);
        # the rest is its hint, repeated for each address tried.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(
            f"Cannot reach the database ({described(alias)}): {reason}. "
            "Check DATABASE_URL and that the server is running.",
            returncode=returncode,
        ) from None
    if not migrated:
        return
    executor = MigrationExecutor(conn)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        count = len(plan)
        raise CommandError(
            f"The database ({described(alias)}) is not migrated: {count} migration"
            f"{'' if count == 1 else 's'} to apply. Run `manage.py migrate` first"
            + (f", or {or_else}." if or_else else "."),
            returncode=returncode,
        )


def upkeep_warnings(alias: str = DEFAULT_DB_ALIAS) -> list[str]:
    """What about the database's upkeep would hurt a long-running worker, in words for its
    operator (nothing to say on SQLite, which reuses its free pages itself).

    The worker inserts and deletes rows all day: a transaction message's outbox row lives
    until the CSMS confirms it, and the message log is pruned as it grows. PostgreSQL
    reclaims deleted rows only by VACUUM, which autovacuum runs; with it off (or without
    `track_counts`, which it needs) those tables and their indexes grow for ever, and
    every scan of the outbox reads the dead rows too."""
    conn = connections[alias]
    if conn.vendor != "postgresql":
        return []
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM pg_settings WHERE name IN ('autovacuum', 'track_counts') "
            "AND setting = 'off' ORDER BY name"
        )
        off = [name for (name,) in cursor.fetchall()]
    return upkeep_text(off, described(alias), conn.settings_dict.get("NAME") or "")


def upkeep_text(off: list[str], where: str, name: str) -> list[str]:
    """The warning for PostgreSQL settings found off (none: nothing to say)."""
    if not off:
        return []
    return [
        f"{' and '.join(off)} {'is' if len(off) == 1 else 'are'} off on {where}: the "
        "outbox and message-log tables, written and deleted all the time, will grow without "
        "bound. Turn autovacuum on in postgresql.conf, or VACUUM on a schedule (e.g. "
        f"`vacuumdb {name}` every few minutes)."
    ]
