"""How a retrying loop logs an outage (the checkpoint's database, the channel layer's
Redis): the first failure in full, a line now and then while it lasts, one when it ends;
waits that grow instead of a retry every 100 ms."""

from __future__ import annotations

import logging

import pytest
from django.db import OperationalError

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
