"""Running a coroutine from sync code in a thread that an event loop handed work to:
asgiref's `sync_to_async`, which runs the simulator's ORM work and, in embedded mode, the
web's views. The coroutine goes to that loop (the in-memory channel layer's queues belong
to it), as `async_to_sync` sends it, but the wait is bounded and ends when the loop stops.

`async_to_sync` waits without bound for a loop that may never run the work: a scenario
run's clean-up, deleting its chargers in asgiref's thread while runsimulator stopped,
committed after the loop had ended, and the process, having said "Stopped", never exited
(the interpreter's exit waits for that thread). In the web apps' lowest layer, as the fleet
writes that need it are.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync, async_to_sync

R = TypeVar("R")

# How often the wait looks at the loop for its having stopped.
POLL_SECONDS = 0.1


# The loop a thread started by `start_thread` took from the thread that started it.
_inherited = threading.local()


class LoopStopped(Exception):
    """The loop that would run the work has stopped (the process is stopping)."""


def calling_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop whose `sync_to_async` runs this thread's code, if any (asgiref keeps
    it in a thread-local, with the pid for forked processes, as its `async_to_sync` reads
    it), or the one the thread was started from (`start_thread`)."""
    inherited: asyncio.AbstractEventLoop | None = getattr(_inherited, "loop", None)
    if inherited is not None:
        return inherited
    local = SyncToAsync.threadlocal
    if getattr(local, "main_event_loop_pid", None) != os.getpid():
        return None
    loop: asyncio.AbstractEventLoop | None = getattr(local, "main_event_loop", None)
    return loop


def run_from_thread(work: Callable[[], Coroutine[Any, Any, R]], within: float) -> R:
    """The coroutine `work()` makes, run on the loop that called this thread and waited
    for (a thread of its own, Celery's or a command's: on a new loop, as `async_to_sync`
    does). Raises LoopStopped if that loop is not running or stops meanwhile, and
    TimeoutError after `within` seconds."""
    home = calling_loop()
    if home is None or home.is_closed():
        return async_to_sync(_awaited)(work)
    if not home.is_running():
        raise LoopStopped("the event loop that would run it has stopped")
    future = asyncio.run_coroutine_threadsafe(work(), home)
    give_up = time.monotonic() + within
    while True:
        try:
            return future.result(POLL_SECONDS)
        except concurrent.futures.TimeoutError:
            if not home.is_running():
                future.cancel()
                raise LoopStopped("the event loop that would run it stopped") from None
            if time.monotonic() > give_up:
                future.cancel()
                raise TimeoutError(f"not done within {within:g} s") from None


def start_thread(target: Callable[[], None], *, name: str) -> threading.Thread:
    """Run `target` in a new thread whose coroutines (`run_from_thread`) go to this thread's
    calling loop. The embedded mode's import job runs so: sent from a loop of its own, its
    fleet change went into the in-memory layer's queues of the simulator's loop from a
    foreign thread (not thread-safe; the worker heard it only at its next wake-up)."""
    home = calling_loop()

    def run() -> None:
        _inherited.loop = home
        target()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


async def _awaited(work: Callable[[], Coroutine[Any, Any, R]]) -> R:
    return await work()
