"""Statements over many rows: the one way the project writes thousands of rows at once.

A fleet checkpoint (registers, outbox rows) and an import (EVSEs, configuration keys) both
send rows by the thousand. Model instances and per-row queries are far too slow for that,
so a statement names its rows as one derived table, `{rows}`, with columns
`v.column1 .. v.columnN`:

- SQLite: `(VALUES (?, ?), (?, ?), ...) AS v`, as many rows per statement as the
  parameter limit allows, in power-of-two row counts: the driver caches every prepared
  statement per connection, and one statement per batch size would grow without bound.
  One multi-row statement is one step of the driver; `executemany` steps once per row and
  releases the GIL each time, which costs the event loop more than the writes themselves.
- PostgreSQL: `unnest(%b::type[], ...) AS v(column1, ...)`, one array per column, sent in
  binary: psycopg then sends a few parameters, not 300,000 (multi-row VALUES with
  thousands of placeholders spent most of a large import in psycopg's query conversion).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

import psycopg
from django.db import connection

ROWS_PER_STATEMENT = 2_048  # SQLite: above this, longer statements gain nothing
ROWS_PER_ARRAY = 50_000  # PostgreSQL: rows per unnest() statement


def execute_rows(sql: str, rows: Sequence[Sequence[Any]], types: Sequence[str]) -> None:
    """Run `sql`, in which `{rows}` stands for `rows` as a table v(column1, ..., columnN).

    `types` are the columns' database types (PostgreSQL casts the arrays to them; SQLite
    ignores them). Run in the caller's transaction; nothing is done for no rows.
    """
    if rows:
        # chain: a third cheaper than a nested comprehension (thousands of rows a second)
        execute_values(sql, list(chain.from_iterable(rows)), types)


def execute_values(sql: str, values: list[Any], types: Sequence[str]) -> None:
    """`execute_rows` with the rows' values in one list, one row after the other (for a
    writer that builds them so: no tuple per row)."""
    width = len(types)
    if len(values) % width:
        raise ValueError(f"{len(values)} values are not rows of {width}")
    count = len(values) // width
    if not count:
        return
    connection.ensure_connection()
    # The driver's own cursor, in Django's transaction. Django's debug wrapper (DEBUG on,
    # the default) would keep each of these statements, with every value in its text, in
    # the connection's query log: up to 9,000 of them, megabytes each on PostgreSQL (a
    # second of the message log), and on SQLite it would quote every parameter first.
    # `wrap_database_errors` still turns the driver's errors into Django's: the checkpoint
    # writer tells a database that is down or full (OperationalError: write it all again
    # later) from a row it refuses (drop that row) by them.
    if connection.vendor == "postgresql":
        # A server-side binding cursor, with the arrays sent in binary (`%b`): Django's
        # client-side cursor would write each array as text, and psycopg quotes every
        # element of a text array with a regular expression, one Python call per double
        # quote. The JSON payloads of the outbox and the message log are full of them: that
        # quoting was 60 % of a worker's CPU at 2,000 chargers sampling every second.
        raw = psycopg.Cursor(connection.connection)
        table = (
            f"unnest({', '.join(f'%b::{kind}[]' for kind in types)}) "
            f"AS v({', '.join(f'column{n}' for n in range(1, width + 1))})"
        )
        statement = sql.replace("{rows}", table)
        try:
            with connection.wrap_database_errors:
                for start in range(0, count, ROWS_PER_ARRAY):
                    chunk = values[start * width : (start + ROWS_PER_ARRAY) * width]
                    raw.execute(statement, [chunk[n::width] for n in range(width)])
        finally:
            raw.close()
        return
    raw = connection.connection.cursor()
    try:
        limit = max(1, min(ROWS_PER_STATEMENT, _sqlite_max_params() // width))
        start = 0
        with connection.wrap_database_errors:
            while start < count:
                size = 1 << (min(limit, count - start).bit_length() - 1)
                raw.execute(
                    _sqlite_statement(sql, width, size),
                    values[start * width : (start + size) * width],
                )
                start += size
    finally:
        raw.close()


@functools.cache
def _sqlite_statement(sql: str, width: int, count: int) -> str:
    row = f"({', '.join(['?'] * width)})"
    return sql.replace("{rows}", f"(VALUES {', '.join([row] * count)}) AS v")


def _sqlite_max_params() -> int:
    raw = connection.connection
    try:
        return int(raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except (AttributeError, sqlite3.Error):  # older Python: the historical default
        return 999
