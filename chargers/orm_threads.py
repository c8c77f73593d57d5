"""ORM calls from code that runs for days off any web request: the worker's engine and its
scenario runs, each on an event loop that hands ORM work to threads.

Django keeps two things per thread that only a web request's start and end clear:
- the connection itself (`CONN_MAX_AGE`, a connection the database dropped): closed
  around each call here, as Channels' `database_sync_to_async` does;
- with DEBUG on (the default), the connection's query log: every statement's text, up to
  9,000 per connection. A worker's threads would hold that many each for as long as the
  process runs, and nothing reads them. Each call here leaves its thread's log empty.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

P = ParamSpec("P")
R = TypeVar("R")


def forget_queries() -> None:
    """Empty the query log of this thread's open connections (a no-op with DEBUG off)."""
    for conn in connections.all(initialized_only=True):
        conn.queries_log.clear()


def in_thread(
    function: Callable[P, R], *, thread_sensitive: bool = False
) -> Callable[P, Awaitable[R]]:
    """`function` as a coroutine function that runs it in a thread (the loop's pool, or
    asgiref's one thread with `thread_sensitive`), stale connections closed before and
    after, and no query log left behind."""

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()
            forget_queries()

    return sync_to_async(run, thread_sensitive=thread_sensitive)
