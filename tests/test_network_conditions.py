"""Network conditions, a close with a code, and clock skew, set by drive commands, against
the built-in CSMS over real sockets. A delay is read as a wait on the charger's own clock,
never timed on the host."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from simulator.core.charge_point import Charger, Listener
from simulator.core.clock import parse_iso
from simulator.core.protocol import StopReason
from simulator.csms import CentralSystem
from simulator.runtime.commands import InvalidArgument
from tests.engine import COMPACT, connected, runtime_charger, wait_until
from tests.test_answer_overrides import PK, answer_to, command_server, send
from tests.timeline import StoppedClock, Timeline


class Sent(Listener):
    """The charger's own record of each frame it sent: (unique id, action, when)."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, str, datetime]] = []

    def on_frame(
        self, charger: Charger, direction: str, text: str, message_id: str = "", action: str = ""
    ) -> None:
        if direction == "out":
            self.frames.append((message_id, action, datetime.now(UTC)))

    def of(self, action: str) -> list[tuple[str, str, datetime]]:
        return [frame for frame in self.frames if frame[1] == action]


def received(csms: CentralSystem, cp_id: str, action: str, message_type: int) -> list[Any]:
    return [
        e
        for e in csms.log
        if e.cp_id == cp_id
        and e.direction == "in"
        and e.action == action
        and e.message_type == message_type
    ]


async def test_latency_and_jitter_delay_each_frame_and_keep_their_order(csms):
    sent = Sent()
    charger = runtime_charger("NET-LAT", csms.url, evses=1, db_id=PK, listener=sent)
    server = command_server(charger)
    async with connected(charger):
        await server.execute(PK, "set_network", {"latency_ms": 300, "jitter_ms": 200, "seed": 3})
        asked = [await send(csms, "NET-LAT", "GetLocalListVersion", {}) for _ in range(8)]
        await answer_to(csms, "NET-LAT", asked[-1])
    answers = received(csms, "NET-LAT", "GetLocalListVersion", 3)
    # The charger answered in order, and the CSMS got the answers in that order, though the
    # jitter gave them delays from 100 to 500 ms.
    order = [uid for uid, _action, _at in sent.of("GetLocalListVersion")]
    assert order == asked
    assert [e.unique_id for e in answers] == asked


async def test_latency_holds_a_frame_that_long_on_the_chargers_clock(csms):
    """The hold is a wait on the charger's clock from the moment it sent the frame: on a
    clock that stands still, exactly the latency, whatever the host took; read on its
    timeline (the wait went off before the CSMS had the frame), not timed on the host."""
    timeline = Timeline()
    clock = StoppedClock(timeline)
    charger = runtime_charger("NET-HOLD", csms.url, evses=1, db_id=PK, clock=clock)
    server = command_server(charger)
    async with connected(charger):
        await server.execute(PK, "set_network", {"latency_ms": 300})
        asked = await send(csms, "NET-HOLD", "GetLocalListVersion", {})
        await answer_to(csms, "NET-HOLD", asked)
        timeline.events.append("answered")
    # (Another frame the charger sent meanwhile may be held behind it: its own wait.)
    held = timeline.of("wait 0.3", "waited 0.3", "answered")
    assert held[:2] == ["wait 0.3", "waited 0.3"] and "answered" in held[2:], held


async def test_a_dropped_transaction_message_is_sent_again_once_frames_get_through(csms):
    sent = Sent()
    config = {
        "MessageTimeout": "1",
        "TransactionMessageRetryInterval": "1",
        "TransactionMessageAttempts": "10",
    }
    charger = runtime_charger("NET-DROP", csms.url, evses=1, db_id=PK, listener=sent, config=config)
    server = command_server(charger)
    async with connected(charger):
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "T") == "Accepted"
        await csms.wait_for("NET-DROP", "StartTransaction")
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="tx id")
        await server.execute(PK, "set_network", {"drop_rate": 1.0})
        charger.stop_transaction(1, StopReason.LOCAL)
        await wait_until(lambda: len(sent.of("StopTransaction")) >= 2, message="a retry")
        # Every attempt so far was lost on the way: the CSMS has seen none.
        assert received(csms, "NET-DROP", "StopTransaction", 2) == []
        assert charger.queue  # still waiting in the outbox
        await server.execute(PK, "set_network", {"drop_rate": 0})
        await csms.wait_for("NET-DROP", "StopTransaction", timeout=15)
        await wait_until(lambda: not charger.queue, message="the outbox to empty")
    stops = received(csms, "NET-DROP", "StopTransaction", 2)
    assert len(stops) == 1  # delivered once, after the losses
    attempts = sent.of("StopTransaction")
    assert len(attempts) >= 3 and attempts[-1][0] == stops[0].unique_id


async def test_close_connection_sends_the_code_and_the_charger_reconnects_without_a_boot(csms):
    charger = runtime_charger("NET-CLOSE", csms.url, evses=1, db_id=PK)
    server = command_server(charger)
    async with connected(charger):
        text = await server.execute(
            PK, "close_connection", {"code": 4001, "reason": "scenario says so"}
        )
        assert "4001" in text
        await wait_until(lambda: csms.connects["NET-CLOSE"] == 2, message="a reconnect")
        await wait_until(lambda: charger.online, message="online again")
    closure = next(c for c in csms.closures if c.cp_id == "NET-CLOSE")
    assert (closure.code, closure.reason, closure.by_charger) == (4001, "scenario says so", True)
    boots = received(csms, "NET-CLOSE", "BootNotification", 2)
    assert len(boots) == 1  # a reconnect, not a reboot


class Closes(Listener):
    """Each `closed` event of the charger's connection: who closed it, and the summary."""

    def __init__(self) -> None:
        self.closed: list[tuple[str, str]] = []
        self.link_errors: list[str] = []  # the charger's link error then

    def on_connection(self, charger: Charger, event: str, detail: dict[str, Any]) -> None:
        if event == "closed":
            self.closed.append((detail["by"], detail["summary"]))
            self.link_errors.append(charger.link_error)


async def test_a_closed_connection_says_who_closed_it(csms):
    """A reader of the events (a scenario's report) tells a close of the CSMS's from the
    charger's own doing: its close step, a reconnect it starts (a new security profile),
    its network cut; and a link lost without a close frame (the CSMS went away)."""
    closes = Closes()
    charger = runtime_charger("NET-BY", csms.url, evses=1, db_id=PK, listener=closes)
    server = command_server(charger)

    async def closed_then_back(count: int) -> None:
        await wait_until(lambda: len(closes.closed) == count, message=f"close {count}")
        await wait_until(lambda: charger.online, message="online again")

    async with connected(charger):
        await csms.disconnect("NET-BY", code=4000, reason="bye")
        await closed_then_back(1)
        await server.execute(PK, "close_connection", {"code": 4001})
        await closed_then_back(2)
        assert charger.transport is not None
        await charger.transport.close()  # as a reconnect for a new security profile does
        await closed_then_back(3)
        charger.cut_network(0.3)
        await closed_then_back(4)
        transport = csms.connection("NET-BY").websocket.transport
        transport.abort()  # the CSMS's end gone without a close frame
        await closed_then_back(5)
    assert closes.closed == [
        ("csms", "closed by peer (4000: bye)"),
        ("charger", "closed by the charger (4001)"),
        ("charger", "closed by the charger (1000)"),
        ("network_cut", "connection lost"),
        ("lost", "connection lost"),
        ("charger", "closed"),  # its connection task cancelled: a disconnect, a reboot
    ]
    # Why it is offline, on its page: the CSMS's close too (it showed no reason), never
    # the charger's own.
    errors = closes.link_errors
    assert errors[:3] + errors[4:] == ["closed by peer (4000: bye)", "", "", "connection lost", ""]


async def test_clock_skew_shifts_the_timestamps_the_charger_sends(csms):
    charger = runtime_charger("NET-SKEW", csms.url, evses=1, db_id=PK)
    server = command_server(charger)
    async with connected(charger):
        await server.execute(PK, "set_clock_skew", {"seconds": -7200})
        charger.inject_fault(1, "GroundFailure", None)
        status = await csms.wait_for(
            "NET-SKEW", "StatusNotification", predicate=lambda e: e.payload["status"] == "Faulted"
        )
        await server.execute(PK, "set_clock_skew", {"seconds": 0})
        charger.clear_fault(1)
        back = await csms.wait_for(
            "NET-SKEW",
            "StatusNotification",
            predicate=lambda e: e.payload["status"] == "Available" and e.at > status.at,
        )
    skew = (parse_iso(status.payload["timestamp"]) - status.at).total_seconds()
    assert -7200 - 5 < skew < -7200 + 5
    assert abs((parse_iso(back.payload["timestamp"]) - back.at).total_seconds()) < 5


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("set_network", {"drop_rate": 1.5}, "drop_rate must be within 0 and 1"),
        ("set_network", {"latency_ms": "fast"}, "latency_ms must be a number"),
        ("set_network", {"jitter_ms": 2.5}, "whole number of milliseconds"),
        ("set_network", {}, "give latency_ms, jitter_ms or drop_rate"),
        ("close_connection", {"code": 1006}, "close code 1006 cannot be sent"),
        ("close_connection", {"code": 4000, "reason": "x" * 200}, "at most 123 bytes"),
        ("set_clock_skew", {}, "clock skew seconds must be a number"),
    ],
)
async def test_bad_network_values_are_refused_with_a_clear_message(command, args, message):
    charger = runtime_charger("NET-BAD", "ws://127.0.0.1:9/", evses=1, db_id=PK)
    with pytest.raises(InvalidArgument) as refused:
        await command_server(charger).execute(PK, command, args)
    assert message in str(refused.value)
