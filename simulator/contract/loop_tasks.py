"""Tasks that the web side starts on the engine's event loop in embedded mode (web and
engine in one process), such as a scenario run started through the API. The simulator
cancels and awaits them with its own tasks when it stops, so that each ends cleanly (a
scenario run stores itself as stopped) instead of being dropped with the loop."""

from __future__ import annotations

import asyncio
from typing import Any

_tasks: set[asyncio.Task[Any]] = set()


def adopt(task: asyncio.Task[Any]) -> None:
    """Keep `task` (the loop holds tasks weakly) until it ends."""
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def running(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    """The adopted tasks of `loop` that have not ended."""
    return [t for t in _tasks if not t.done() and t.get_loop() is loop]
