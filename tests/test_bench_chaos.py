"""`bench/chaos.py`'s verdict over a CSMS's log: what it calls a violation and what it
allows (at-least-once delivery). Its rounds of kills are a benchmark run, not a test."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from simulator.csms.records import LogEntry

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def chaos() -> Any:
    saved = list(sys.path)  # the bench adds its own directories when imported
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module("chaos")
    finally:
        sys.path[:] = saved


class Log:
    """A CSMS log written as the frames pass: CALLs in, answers out."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []
        self.ids = 0
        self.tx = 100

    def call(
        self, action: str, payload: dict[str, Any], *, answer: dict[str, Any] | None = None
    ) -> None:
        self.ids += 1
        uid = str(self.ids)
        at = datetime.now(UTC)
        self.entries.append(LogEntry("CP", "in", 2, uid, action, payload, at))
        if answer is not None:
            self.entries.append(LogEntry("CP", "out", 3, uid, action, answer, at))

    def start(self, at: str, meter: int) -> int:
        self.tx += 1
        self.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": meter, "timestamp": at},
            answer={"transactionId": self.tx, "idTagInfo": {"status": "Accepted"}},
        )
        return self.tx

    def sample(self, tx: int, at: str, wh: float) -> None:
        value = [{"timestamp": at, "sampledValue": [{"value": str(wh), "unit": "Wh"}]}]
        self.call(
            "MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": value}, answer={}
        )

    def stop(self, tx: int, at: str, meter: int, reason: str = "PowerLoss") -> None:
        payload = {"transactionId": tx, "meterStop": meter, "timestamp": at, "reason": reason}
        self.call("StopTransaction", payload, answer={})


def test_a_clean_history_with_copies_delivered_again_passes(chaos: Any) -> None:
    log = Log()
    tx = log.start("2026-12-04T10:00:00Z", 1000)
    log.sample(tx, "2026-12-04T10:00:05Z", 1200)
    log.sample(tx, "2026-12-04T10:00:10Z", 1400)
    # A kill: the last sample's confirmation was not stored, so it comes again (read back
    # from PostgreSQL's jsonb, with its keys in another order).
    log.sample(tx, "2026-12-04T10:00:10Z", 1400)
    again = log.entries[-2]
    reordered = {k: again.payload[k] for k in reversed(list(again.payload))}
    reordered["meterValue"] = [
        {k: mv[k] for k in reversed(list(mv))} for mv in reordered["meterValue"]
    ]
    log.entries[-2] = dataclasses.replace(again, payload=reordered)
    log.stop(tx, "2026-12-04T10:00:11Z", 1400)
    open_tx = log.start("2026-12-04T10:01:00Z", 1400)
    log.sample(open_tx, "2026-12-04T10:01:05Z", 1500)
    found = chaos.check(log.entries, chaos.Stored({("CP", 1)}, [], set()))
    assert found.violations == []
    assert found.counts["MeterValues delivered again"] == 1
    assert found.counts["open at the end"] == 1


def test_a_register_wound_back_is_named(chaos: Any) -> None:
    log = Log()
    tx = log.start("2026-12-04T10:00:00Z", 1000)
    log.sample(tx, "2026-12-04T10:00:05Z", 1200)
    log.stop(tx, "2026-12-04T10:00:06Z", 1100)  # below the sample before it
    (violation,) = chaos.check(log.entries, chaos.Stored(set(), [], set())).violations
    assert "register went back 1200.0" in violation and f"stop of {tx}" in violation


def test_a_transaction_never_stopped_is_named_but_a_start_delivered_twice_is_allowed(
    chaos: Any,
) -> None:
    log = Log()
    lost = log.start("2026-12-04T10:00:00Z", 1000)
    # Answered, but the answer was lost with the worker: the same start again, a new id.
    first = log.start("2026-12-04T10:05:00Z", 2000)
    again = log.start("2026-12-04T10:05:00Z", 2000)
    log.stop(again, "2026-12-04T10:06:00Z", 2500)
    found = chaos.check(log.entries, chaos.Stored(set(), [], set()))
    assert found.violations == [
        f"CP#1: transaction {lost} (started 2026-12-04T10:00:00Z) never stopped"
    ]
    assert found.counts["start delivered twice (orphaned id)"] == 1
    assert first != again


def test_a_sample_after_its_stop_and_a_stop_of_an_unknown_transaction_are_named(chaos: Any) -> None:
    log = Log()
    tx = log.start("2026-12-04T10:00:00Z", 1000)
    log.stop(tx, "2026-12-04T10:00:10Z", 1300)
    log.sample(tx, "2026-12-04T10:00:11Z", 1300)
    log.stop(999, "2026-12-04T10:00:12Z", 1300)
    violations = chaos.check(log.entries, chaos.Stored(set(), [], set())).violations
    assert violations == [
        f"CP: MeterValues of transaction {tx} after its stop",
        "CP: StopTransaction of transaction 999, never opened",
    ]


def test_answers_pair_with_their_own_call_when_ids_start_again(chaos: Any) -> None:
    """Each worker numbers its CALLs from 1 again: a later start with the same id is paired
    with its own answer, not with the first one's."""
    log = Log()
    first = log.start("2026-12-04T10:00:00Z", 1000)
    log.stop(first, "2026-12-04T10:00:10Z", 1100)
    log.ids = 0  # a new worker
    second = log.start("2026-12-04T10:01:00Z", 1100)
    log.stop(second, "2026-12-04T10:01:10Z", 1200)
    assert chaos.check(log.entries, chaos.Stored(set(), [], set())).violations == []


def test_a_stop_stored_but_never_sent_is_named_unless_it_waits_in_the_outbox(chaos: Any) -> None:
    log = Log()
    sent = log.start("2026-12-04T10:00:00Z", 1000)
    log.stop(sent, "2026-12-04T10:00:10Z", 1100)
    # Stopped in the database as the last worker stopped: its stop goes at the next start.
    waiting = log.start("2026-12-04T10:01:00Z", 1100)
    dropped = log.start("2026-12-04T10:02:00Z", 1200)
    db = chaos.Stored(
        open_sessions=set(),
        stopped=[("CP", sent, "L1"), ("CP", waiting, "L2"), ("CP", dropped, "L3")],
        stops_unsent={"L2"},
    )
    found = chaos.check(log.entries, db)
    assert found.violations == [
        f"CP#1: transaction {dropped} (started 2026-12-04T10:02:00Z) never stopped",
        f"CP: transaction {dropped} stopped in the database, its stop never sent",
    ]
    assert found.counts["stop waiting in the outbox"] == 1
