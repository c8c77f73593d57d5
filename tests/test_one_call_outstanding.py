"""One CALL outstanding (OCPP-J 1.6 §4.1.1: no CALL before the previous one is answered or
timed out), also for what a charger sends outside its queue: its BootNotification, and
what a TriggerMessage asks for before the boot is accepted.

A QA pass with a CSMS that answered late found three ways round it: TriggerMessages while
the BootNotification had no answer yet sent a Heartbeat and a StatusNotification beside
it; while Pending, triggered messages went out side by side; and once Accepted, a
TriggerMessage(BootNotification) went out beside the triggered StatusNotification the
queue had out. Here a CSMS of its own, on a real socket, holds answers back and records
every CALL that arrives while another is unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from simulator.core.charge_point import BootState
from tests.engine import connected, runtime_charger, wait_until


class LateCsms:
    """Answers every CALL at once, but those of the actions in `hold`: those wait in
    `held` for the test to answer. `overlaps` lists each CALL that came while another
    was unanswered (the unanswered one's action, the newcomer's)."""

    def __init__(self) -> None:
        self.hold: set[str] = set()
        self.held: asyncio.Queue[list[Any]] = asyncio.Queue()
        self.calls: list[str] = []
        self.overlaps: list[tuple[str, str]] = []
        self.boot_status = "Accepted"
        self._unanswered: dict[str, str] = {}  # message id -> action
        self._answers: dict[str, asyncio.Future[list[Any]]] = {}
        self._ids = itertools.count(1)
        self.socket: ServerConnection | None = None

    async def handler(self, socket: ServerConnection) -> None:
        self.socket = socket
        async for text in socket:
            frame = json.loads(text)
            if frame[0] == 2:
                _, unique_id, action, _payload = frame
                self.overlaps += [(other, action) for other in self._unanswered.values()]
                self._unanswered[unique_id] = action
                self.calls.append(action)
                if action in self.hold:
                    self.held.put_nowait(frame)
                else:
                    await self.answer(frame)
            elif frame[1] in self._answers:
                self._answers.pop(frame[1]).set_result(frame)

    async def answer(self, frame: list[Any], **payload: Any) -> None:
        unique_id, action = frame[1], frame[2]
        if action == "BootNotification":
            payload = {
                "status": self.boot_status,
                "currentTime": "2026-12-06T10:00:00Z",
                "interval": 300,
                **payload,
            }
        elif action == "Heartbeat":
            payload = {"currentTime": "2026-12-06T10:00:00Z"}
        # Answered once it is sent: the next CALL may follow at once.
        del self._unanswered[unique_id]
        assert self.socket is not None
        await self.socket.send(json.dumps([3, unique_id, payload]))

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        assert self.socket is not None
        unique_id = f"csms-{next(self._ids)}"
        answer = self._answers[unique_id] = asyncio.get_running_loop().create_future()
        await self.socket.send(json.dumps([2, unique_id, action, payload]))
        return await asyncio.wait_for(answer, 5)

    async def next_held(self, action: str) -> list[Any]:
        frame = await asyncio.wait_for(self.held.get(), 10)
        assert frame[2] == action, (frame, self.calls)
        return frame


@contextlib.asynccontextmanager
async def late_csms() -> AsyncIterator[tuple[LateCsms, str]]:
    csms = LateCsms()
    async with serve(
        csms.handler, "127.0.0.1", 0, subprotocols=[Subprotocol("ocpp1.6")], compression=None
    ) as server:
        port = server.sockets[0].getsockname()[1]
        yield csms, f"ws://127.0.0.1:{port}/ocpp"


async def triggered(
    csms: LateCsms, message: str, connector_id: int | None = None, expect: str = "Accepted"
) -> None:
    payload: dict[str, Any] = {"requestedMessage": message}
    if connector_id is not None:
        payload["connectorId"] = connector_id
    answer = await csms.call("TriggerMessage", payload)
    assert answer[2] == {"status": expect}, answer


async def settled() -> None:
    """Time for whatever the charger would send now to arrive (a few turns of the loop
    and the socket); the absence of a frame is what is checked after."""
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_triggers_while_pending_go_one_by_one() -> None:
    """Triggers during the unanswered boot are Rejected (they would not be sent if the boot
    timed out or were Rejected: below); once Pending, triggered messages go one at a time,
    each after the one before it is answered."""
    async with late_csms() as (csms, url):
        csms.hold = {"BootNotification", "Heartbeat", "StatusNotification"}
        csms.boot_status = "Pending"
        charger = runtime_charger("CP-LATE", url, evses=1)
        async with connected(charger, booted=False):
            boot = await csms.next_held("BootNotification")
            await triggered(csms, "Heartbeat", expect="Rejected")
            await triggered(csms, "StatusNotification", connector_id=1, expect="Rejected")
            await csms.answer(boot)  # Pending: triggered messages may go, one at a time
            await wait_until(lambda: charger.boot is BootState.PENDING, message="Pending")
            await settled()
            assert csms.calls == ["BootNotification"]  # the rejected triggers sent nothing
            await triggered(csms, "Heartbeat")
            await triggered(csms, "StatusNotification", connector_id=1)
            heartbeat = await csms.next_held("Heartbeat")
            await settled()
            assert csms.calls == ["BootNotification", "Heartbeat"]
            await csms.answer(heartbeat)
            await csms.answer(await csms.next_held("StatusNotification"))
            # Pending: more triggers, answered late, still one at a time.
            await triggered(csms, "StatusNotification")  # connectors 0 and 1
            first = await csms.next_held("StatusNotification")
            await settled()
            await csms.answer(first)
            await csms.answer(await csms.next_held("StatusNotification"))
    assert csms.overlaps == []


async def test_a_trigger_during_an_unanswered_boot_is_rejected_as_it_would_not_be_sent() -> None:
    """QA: a TriggerMessage while the BootNotification had no answer was Accepted, and the
    message dropped when the boot timed out. Accepted says "will be sent" (1.6 section
    5.17); a charger whose boot may end unregistered cannot promise it: Rejected, before
    and after the boot timed out (it sends nothing but its next BootNotification)."""
    async with late_csms() as (csms, url):
        csms.hold = {"BootNotification"}
        charger = runtime_charger("CP-LATE", url, evses=1, config={"MessageTimeout": "1"})
        async with connected(charger, booted=False):
            await csms.next_held("BootNotification")
            await triggered(csms, "Heartbeat", expect="Rejected")
            await wait_until(lambda: charger.next_boot_at > 0, message="the boot to time out")
            await triggered(csms, "StatusNotification", expect="Rejected")
            await settled()
    assert csms.calls == ["BootNotification"]


async def test_a_trigger_while_a_pending_chargers_next_boot_awaits_its_answer_is_rejected() -> None:
    """Pending, the charger boots again after the interval: while that BootNotification
    has no answer, a Rejected answer to it would leave the charger unable to send the
    triggered message, so the trigger is Rejected."""
    async with late_csms() as (csms, url):
        csms.hold = {"BootNotification"}
        csms.boot_status = "Pending"
        charger = runtime_charger("CP-LATE", url, evses=1)
        async with connected(charger, booted=False):
            await csms.answer(await csms.next_held("BootNotification"), interval=1)
            await wait_until(lambda: charger.boot is BootState.PENDING, message="Pending")
            again = await csms.next_held("BootNotification")  # after the 1 s interval
            await triggered(csms, "Heartbeat", expect="Rejected")
            await csms.answer(again, status="Rejected", interval=300)
            await wait_until(lambda: charger.boot is BootState.REJECTED, message="Rejected")
            await settled()
    assert csms.calls == ["BootNotification", "BootNotification"]


async def test_a_triggered_boot_once_accepted_waits_for_the_call_the_queue_has_out() -> None:
    async with late_csms() as (csms, url):
        charger = runtime_charger("CP-LATE", url, evses=1)
        async with connected(charger):
            await wait_until(lambda: not charger.queue, message="the boot's reports answered")
            csms.hold = {"StatusNotification", "BootNotification"}
            await triggered(csms, "StatusNotification", connector_id=1)
            status = await csms.next_held("StatusNotification")
            await triggered(csms, "BootNotification")
            await settled()
            assert csms.calls[-1] == "StatusNotification"  # no BootNotification beside it
            await csms.answer(status)
            await csms.answer(await csms.next_held("BootNotification"))
            await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="Accepted")
    assert csms.overlaps == []
