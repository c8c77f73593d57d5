"""How a retrying loop logs an outage (the checkpoint's database, the channel layer's
Redis): the first failure in full, a line now and then while it lasts, one when it ends;
waits that grow instead of a retry every 100 ms."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import SimpleNamespace

import pytest
from django.db import OperationalError
from redis import exceptions as redis_exceptions

from simulator.runtime.commands import CommandServer
from simulator.runtime.outage import FIRST_RETRY_S, MAX_RETRY_S, Outage


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


def test_an_outage_is_logged_in_full_when_it_starts_and_once_when_it_ends(caplog) -> None:
    outage = Outage("receiving commands")
    assert not outage.recovered()  # nothing to end
    with caplog.at_level(logging.DEBUG, logger="simulator.runtime.outage"):
        waits = [outage.failed(ConnectionError("Error 111 connecting"), t) for t in range(10)]
        assert outage.ongoing
        assert outage.recovered(10.0)
        assert not outage.recovered(11.0)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "receiving commands failed; retrying: ConnectionError: Error 111 connecting",
        "receiving commands works again after 10.0 s (10 failed attempts)",
    ]
    assert warnings[0].exc_info is not None
    assert waits[0] == FIRST_RETRY_S
    assert waits == sorted(waits) and waits[-1] == MAX_RETRY_S
    assert outage.failed(ConnectionError("again"), 20.0) == FIRST_RETRY_S  # a new outage


def test_a_long_outage_says_now_and_then_that_it_lasts(caplog) -> None:
    """A Redis away for an hour: one line a minute at the outage's level, not silence until
    it ends (nor a line per attempt)."""
    outage = Outage("checkpoint", logging.getLogger("test.outage"), level=logging.ERROR)
    with caplog.at_level(logging.WARNING, logger="test.outage"):
        for second in range(0, 200):
            outage.failed(OperationalError("database is locked\nthe statement"), float(second))
        outage.recovered(200.0)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "checkpoint failed; retrying: OperationalError: database is locked"),
        *[
            (
                logging.ERROR,
                f"checkpoint still failing after {s} s ({s + 1} attempts): "
                "OperationalError: database is locked",
            )
            for s in (60, 120, 180)
        ],
        (logging.WARNING, "checkpoint works again after 200.0 s (200 failed attempts)"),
    ]
    assert all(r.exc_info is None for r in caplog.records[1:])


def test_a_second_outage_of_the_same_kind_starts_with_a_line_not_a_traceback(caplog) -> None:
    """QA ended the worker's database sessions every 2 s for a minute: 30 tracebacks of 25
    lines each, the same one every time."""
    outage = Outage("checkpoint", logging.getLogger("test.outage"), level=logging.ERROR)
    with caplog.at_level(logging.ERROR, logger="test.outage"):
        for start in (0.0, 10.0):
            outage.failed(OperationalError("terminating connection\nmore"), start)
            outage.recovered(start + 1)
        outage.failed(ValueError("another kind"), 20.0)
    first, second, other = _lines(caplog, "checkpoint failed; retrying")
    assert first.exc_info is not None
    assert second.exc_info is None
    assert second.getMessage().endswith("OperationalError: terminating connection")
    assert other.exc_info is not None


class _FlakyLayer:
    """A channel layer whose receive gives these in turn (an exception is raised, None is
    a message of no interest), then waits for ever."""

    def __init__(self, *script: BaseException | None) -> None:
        self.script = list(script)
        self.done = asyncio.Event()

    async def new_channel(self) -> str:
        return "worker-channel"

    async def group_add(self, group: str, channel: str) -> None:
        pass

    async def group_discard(self, group: str, channel: str) -> None:
        pass

    async def receive(self, channel: str) -> dict[str, str]:
        if not self.script:
            self.done.set()
            await asyncio.Event().wait()
        step = self.script.pop(0)
        if step is not None:
            raise step
        return {"type": "nothing.here"}


async def test_the_command_receiver_logs_a_layer_timeout_in_one_line(caplog) -> None:
    """After SIGCONT a worker logged "receiving commands failed; retrying: TimeoutError"
    and redis-py's 65-line traceback: the line says all there is. An error the receiver
    does not expect keeps its traceback."""
    layer = _FlakyLayer(
        redis_exceptions.TimeoutError("Timeout reading from 127.0.0.1:6379"),
        None,
        ConnectionRefusedError(111, "Connection refused"),
        None,
        RuntimeError("a bug"),
        None,
    )
    server = CommandServer(SimpleNamespace(shard=0, shards=1), layer, summary_seconds=3600)
    with caplog.at_level(logging.INFO, logger="simulator.runtime.outage"):
        task = asyncio.create_task(server.run())
        await asyncio.wait_for(layer.done.wait(), 10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    failures = _lines(caplog, "receiving commands failed")
    assert [(r.getMessage(), r.exc_info is not None) for r in failures] == [
        (
            "receiving commands failed; retrying: TimeoutError: Timeout reading from 127.0.0.1:6379",
            False,
        ),
        (
            "receiving commands failed; retrying: ConnectionRefusedError: [Errno 111] Connection refused",
            False,
        ),
        ("receiving commands failed; retrying: RuntimeError: a bug", True),
    ]
    assert len(_lines(caplog, "receiving commands works again")) == 3
