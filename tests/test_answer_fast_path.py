"""The empty CALLRESULT's fast path in `ChargePointClient.on_text_frame` gives what the
general path gives, for every frame: the same return value, the same settled calls with the
same results or errors, the same frame log entries, the same metrics and the same log lines.

The general path is `_read_answer`, where `on_text_frame` sends every frame it does not take.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.core.charge_point import Charger, Listener
from simulator.ocpp16 import client as client_module
from simulator.ocpp16 import metrics, wire
from simulator.ocpp16.client import ChargePointClient, OcppConnection
from tests.engine import runtime_charger

# Ours, as `wire.new_message_id` makes them; the actions' answers `{}` passes or fails.
IDS = [f"{wire._PROCESS_PREFIX}-{n}" for n in (1, 22, 333)]
ACTIONS = ["MeterValues", "StatusNotification", "BootNotification", "Heartbeat", "DataTransfer"]


class Quiet(OcppConnection):
    def __init__(self) -> None:
        pass

    def send_now(self, text: str) -> bool:
        return True


class Frames(Listener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str]] = []
        self.fail = False

    def on_frame(
        self, charger: Charger, direction: str, text: str, message_id: str = "", action: str = ""
    ) -> None:
        self.seen.append((direction, text, message_id, action))
        if self.fail:
            raise RuntimeError("listener broke")


class Side:
    """One client, its frame log and the answers its pending calls got."""

    def __init__(self, name: str) -> None:
        self.frames = Frames()
        charger = runtime_charger(name, "ws://127.0.0.1:1/ocpp", evses=1, listener=self.frames)
        self.client = ChargePointClient(charger, Quiet(), timeout=30)
        self.settled: list[tuple[str, Any, Any]] = []

    def run(
        self,
        frame: bytes,
        actions: list[str],
        failing_done: bool,
        failing_listener: bool,
        general: bool = False,
    ) -> tuple[Any, ...]:
        self.frames.seen.clear()
        self.frames.fail = failing_listener
        self.settled.clear()
        self.client._pending.clear()
        deadline = time.monotonic() + 30
        for unique_id, action in zip(IDS, actions, strict=True):
            self.client._pending[unique_id] = (
                action,
                self._done(unique_id, failing_done),
                deadline,
            )
        # The answers counted by (action, result); not their times (their buckets), which
        # are the clock's.
        before = {key: sum(row[:-1]) for key, row in metrics._answers.items()}
        read = self.client._read_answer if general else self.client.on_text_frame
        taken = read(frame)
        counted = {key: sum(row[:-1]) - before.get(key, 0) for key, row in metrics._answers.items()}
        return (
            taken,
            sorted(self.client._pending),
            list(self.settled),
            list(self.frames.seen),
            {key: count for key, count in counted.items() if count},
        )

    def _done(self, unique_id: str, failing: bool) -> Any:
        def done(result: Any, error: Any) -> None:
            shown = None if error is None else (type(error).__name__, str(error))
            self.settled.append((unique_id, result, shown))
            if failing:
                raise RuntimeError("callback broke")

        return done


def mutate(unique_id: str) -> st.SearchStrategy[str]:
    """The id, or something close to it that is not it (or that JSON reads as it)."""
    escaped = "".join(f"\\u{ord(c):04x}" if c == "-" else c for c in unique_id)
    return st.sampled_from(
        [
            unique_id,
            unique_id + "x",
            unique_id[:-1],
            " " + unique_id,
            unique_id.upper(),
            escaped,  # the same string to JSON, other bytes
            unique_id + '"',
            unique_id + "\\",
            unique_id + "\x01",
            unique_id + "é",
            "",
        ]
    )


def frames() -> st.SearchStrategy[bytes]:
    # Each part often the fast path's own, so that near misses in one part are frequent.
    texts = st.one_of(st.sampled_from(IDS), st.sampled_from(IDS).flatmap(mutate))
    payloads = st.one_of(
        st.just("{}"),
        st.sampled_from(["{ }", '{"status":"Accepted"}', "[]", "null", '""', "{}}", "{},{}"]),
    )
    answers = st.builds(
        lambda kind, uid, payload, sep: f'[{kind},{sep}"{uid}",{sep}{payload}]'.encode(),
        st.one_of(st.just("3"), st.sampled_from(["4", "2", "3.0", '"3"', "03", " 3"])),
        texts,
        payloads,
        st.one_of(st.just(""), st.just(" ")),
    )
    errors = st.builds(
        lambda uid, code: f'[4,"{uid}","{code}","no",{{}}]'.encode(),
        texts,
        st.sampled_from(["GenericError", "NotImplemented", "Bogus"]),
    )
    raw = st.builds(
        lambda uid, tail: b'[3,"' + uid.encode() + tail,
        texts,
        st.one_of(
            st.just(b'",{}]'),
            # The fast path's tail, or one as long that is not it.
            st.sampled_from([b'",{}] ', b'"{}]', b'",{}]\xff', b'\xff",{}]', b'",""]', b'",[]]']),
        ),
    )
    exact = st.builds(lambda uid: f'[3,"{uid}",{{}}]'.encode(), st.sampled_from(IDS))
    return st.one_of(exact, exact, answers, errors, raw, st.binary(max_size=40))


async def test_the_fast_path_and_the_general_path_agree_on_every_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fast, general = Side("FAST-1"), Side("GENERAL-1")

    @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        frame=frames(),
        actions=st.lists(st.sampled_from(ACTIONS), min_size=3, max_size=3),
        failing_done=st.booleans(),
        failing_listener=st.booleans(),
    )
    def agree(frame: bytes, actions: list[str], failing_done: bool, failing_listener: bool) -> None:
        caplog.clear()
        seen_fast = fast.run(frame, actions, failing_done, failing_listener)
        logged_fast = [(r.levelname, r.getMessage().replace("FAST-1", "X")) for r in caplog.records]
        caplog.clear()
        seen_general = general.run(frame, actions, failing_done, failing_listener, general=True)
        logged_general = [
            (r.levelname, r.getMessage().replace("GENERAL-1", "X")) for r in caplog.records
        ]
        assert seen_fast == seen_general
        assert logged_fast == logged_general

    with caplog.at_level(logging.INFO):
        agree()


async def test_an_empty_answer_to_a_pending_call_takes_the_fast_path() -> None:
    side = Side("FAST-2")
    with mock.patch.object(client_module.orjson, "loads", side_effect=AssertionError("decoded")):
        taken, pending, settled, seen, counted = side.run(
            f'[3,"{IDS[0]}",{{}}]'.encode(), ["MeterValues"] * 3, False, False
        )
    assert taken is True
    assert pending == sorted(IDS[1:])
    assert settled == [(IDS[0], {}, None)]
    assert seen == [("in", f'[3,"{IDS[0]}",{{}}]', IDS[0], "MeterValues")]
    assert list(counted) == [("MeterValues", "ok")]


async def test_an_action_whose_answer_needs_members_is_checked_the_general_way() -> None:
    side = Side("FAST-3")
    taken, pending, settled, _seen, counted = side.run(
        f'[3,"{IDS[0]}",{{}}]'.encode(), ["BootNotification"] * 3, False, False
    )
    assert taken is True
    assert pending == sorted(IDS[1:])
    ((unique_id, result, (kind, message)),) = settled
    assert (unique_id, result, kind) == (IDS[0], None, "CallFailed")
    assert "BootNotificationResponse" in message
    assert list(counted) == [("BootNotification", "malformed")]


def test_our_message_ids_are_plain_ascii_without_quotes_or_escapes() -> None:
    # The fast path's premise: a pending id is the frame's JSON string byte for byte.
    for _ in range(100):
        unique_id = wire.new_message_id()
        assert unique_id.isascii() and unique_id.isprintable()
        assert '"' not in unique_id and "\\" not in unique_id


def test_a_tally_row_is_the_one_answered_as_counts_in_for_good() -> None:
    # The fast path keeps each action's row (`_EMPTY_RESULT_ROWS`): it must stay the row
    # the metrics add up, whatever is counted after it was handed out.
    row = metrics.tally_row("FastPathRowAction", "ok")
    metrics.answered_as("FastPathRowAction", "ok", 0.2)
    metrics.answered("FastPathRowAction", {}, 40.0)
    metrics.answered_as("FastPathRowAction", "callerror", 0.2)
    assert metrics.tally_row("FastPathRowAction", "ok") is row
    assert metrics._answers["FastPathRowAction", "ok"] is row
    assert sum(row[: metrics.SUM]) == 2
    assert row[metrics.SUM] == pytest.approx(40.2)


async def test_the_fast_path_times_an_answer_as_answered_as_does() -> None:
    # Same buckets (a bound itself is "less or equal") and the same sum, for any wait.
    side = Side("FAST-TIMES")
    frame = f'[3,"{IDS[0]}",{{}}]'.encode()
    bounds = st.sampled_from(metrics.RESPONSE_BUCKETS)

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(seconds=st.one_of(bounds, st.floats(0, 100), st.floats(-1, 0)))
    def same(seconds: float) -> None:
        now = 1000.0
        side.client._pending[IDS[0]] = ("MeterValues", lambda r, e: None, now - seconds + 30)
        fast_row = metrics.tally_row("MeterValues", "ok")
        # Both rows start equal, so the same additions give bit-identical rows. (Comparing
        # the two rows' increments instead was flaky: `(a + x) - a` and `(b + x) - b` differ
        # in the last digits when the running sums a and b do.)
        reference = metrics.tally_row("FastPathReference", "ok")
        reference[:] = fast_row
        with mock.patch.object(client_module.time, "monotonic", return_value=now):
            assert side.client.on_text_frame(frame) is True
        waited = now - (now - seconds + 30) + 30  # the client's own arithmetic
        metrics.answered_as("FastPathReference", "ok", waited)
        assert fast_row == reference

    same()
