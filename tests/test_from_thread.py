"""`run_from_thread`: a coroutine from a loop's worker thread, bounded however the loop
fares (the fleet-change send's tests, in test_fleet_changes.py, cover the stopped loop)."""

from __future__ import annotations

import asyncio

import pytest

from fleet_io.from_thread import run_from_thread
from tests.test_fleet_changes import LoopInThisThread


def test_work_the_running_loop_never_finishes_times_out():
    def write() -> object:
        with pytest.raises(TimeoutError, match="not done within 0.3 s"):
            run_from_thread(lambda: asyncio.Event().wait(), 0.3)
        return "timed out"

    writer = LoopInThisThread(write)
    writer.start()
    writer.loop.run_until_complete(asyncio.to_thread(writer.done.wait, 30))
    assert writer.finish()
    assert writer.outcome["applied"] == "timed out"


def test_work_from_a_thread_of_no_loop_runs_on_a_loop_of_its_own():
    async def answer() -> int:
        return 42

    assert run_from_thread(answer, 5.0) == 42
