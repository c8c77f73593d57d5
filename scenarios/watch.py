"""What a run sees of its chargers: the engine's event stream, kept in memory.

The run subscribes at every shard's worker (`contract.events_subscribe`, the same
subscription the API's event stream makes) to the frames, statuses and connection events
of its chargers, and renews the lease while it runs. Steps that wait for or check frames
(`wait: csms_call`, `expect: answer`, ...) read the events kept here, and wake when a new
batch arrives.

Events reach us a flush after they happened (the worker publishes a few times a second):
a check about the past first `settle()`s for that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from simulator import contract

log = logging.getLogger(__name__)

KINDS = ("frame", "status", "connection", "transaction")
# Events kept per run (all chargers); the stored frames are bounded again by the model.
MAX_EVENTS = 200_000
# Parsed frames kept per charger for the checks; beyond this the oldest tenth goes (a
# charger metering for hours must not grow the run without bound).
MAX_FRAMES_PER_CHARGER = 50_000

CALL, CALLRESULT, CALLERROR = 2, 3, 4
# Connection events after which no answer to a CALL sent before can arrive.
LINK_DOWN = frozenset({"closed", "network_cut"})
# How long stop() keeps cancelling its tasks, and how often.
STOP_SECONDS = 30.0
STOP_RETRY_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Frame:
    """One OCPP frame of a charger, parsed."""

    at: float
    direction: str  # "in" (from the CSMS) or "out"
    message_type: int | None  # 2 CALL, 3 CALLRESULT, 4 CALLERROR; None if unreadable
    message_id: str
    action: str  # for an answer: the action of the CALL it answers
    payload: Any  # the CALL's or CALLRESULT's payload; a CALLERROR's [code, description]
    # A CALLRESULT the charger refused (it breaks the OCPP 1.6 schema, ...): why. Its call
    # failed at the charger, so it is no answer to judge the CSMS's by.
    refused: str | None = None
    # A frame from the CSMS that is no OCPP-J message at all (not JSON, no message type, an
    # answer too short to read): why, as the charger read it. No answer to anything either.
    malformed: str | None = None

    @classmethod
    def of(cls, event: contract.StreamEvent) -> Frame:
        data: Any = event["data"]
        message_type: int | None = None
        payload: Any = None
        malformed = data.get("malformed")
        try:
            message = None if malformed else orjson.loads(data["payload"])
        except (orjson.JSONDecodeError, TypeError, KeyError):
            message = None
        if isinstance(message, list) and message and isinstance(message[0], int):
            message_type = message[0]
            if message_type == CALL and len(message) > 3:
                payload = message[3]
            elif message_type == CALLRESULT and len(message) > 2:
                payload = message[2]
            elif message_type == CALLERROR and len(message) > 3:
                payload = [message[2], message[3]]
        return cls(
            at=float(event["at"]),
            direction=str(data.get("direction", "")),
            message_type=message_type,
            message_id=str(data.get("message_id", "")),
            action=str(data.get("action", "")),
            payload=payload,
            refused=data.get("refused"),
            malformed=malformed,
        )


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """One event of a charger's connection (`contract.ConnectionData`)."""

    at: float
    event: str  # connected, connect_failed, closed, reconnecting, network_cut
    detail: dict[str, Any]


# Who ended a connection (`contract.CLOSED_BY_*`) when the scenario did not: the CSMS, or
# nobody said (the CSMS went away), the charger for want of a pong, or the charger for a
# frame of the CSMS's it had to fail the link for. A close of the charger's own (a close,
# disconnect or reboot step, a network cut) is the scenario's doing.
NOT_OURS = frozenset(
    {
        contract.CLOSED_BY_CSMS,
        contract.CLOSED_LOST,
        contract.CLOSED_BY_KEEPALIVE,
        contract.CLOSED_FAILED,
    }
)


def closed_by(detail: dict[str, Any]) -> str:
    """Who ended the connection a `closed` event reports (`contract.CLOSED_BY_*`); from its
    summary for a worker that does not say (an older one of a scaled-out fleet)."""
    by = detail.get("by")
    if isinstance(by, str):
        return by
    summary = str(detail.get("summary", ""))
    if summary.startswith("closed by peer"):
        return contract.CLOSED_BY_CSMS
    if summary.startswith("connection lost"):
        return contract.CLOSED_LOST
    if summary.startswith("no pong"):
        return contract.CLOSED_BY_KEEPALIVE
    if summary.startswith("failed by the charger"):
        return contract.CLOSED_FAILED
    return contract.CLOSED_BY_CHARGER


def not_ours(link: LinkEvent) -> bool:
    """Whether this is a `closed` event whose close was not the scenario's doing."""
    return link.event == "closed" and closed_by(link.detail) in NOT_OURS


def closes_not_ours(links: list[LinkEvent], since: float = 0.0) -> list[LinkEvent]:
    """The `closed` events from `since` on whose close was not the scenario's doing."""
    return [link for link in links if link.at >= since and not_ours(link)]


def close_said(
    link: LinkEvent, run_started: float | None = None, *, later_than: float | None = None
) -> str:
    """A close as a report says it: who closed the connection, with the close code and
    reason as received, and when: in seconds into the run (given the run's start), or
    in seconds after `later_than` (a CALL the close left without its answer)."""
    detail = link.detail
    by = closed_by(detail)
    code = detail.get("code")
    reason = str(detail.get("reason") or "")
    if later_than is not None:
        when = f" {max(link.at - later_than, 0.0):.2f} s later"
    elif run_started is not None:
        when = f" {max(link.at - run_started, 0.0):.1f} s into the run"
    else:
        when = ""
    if by == contract.CLOSED_BY_CSMS:
        said = f'"{reason[:_SHOWN_REASON]}"' if reason else "no reason"
        return f"the CSMS closed the connection{when} (code {code}, {said})"
    if by == contract.CLOSED_LOST:
        return (
            f"the connection was lost{when}, without a close frame (code {code}): the CSMS "
            "went away or the network failed"
        )
    if by == contract.CLOSED_BY_KEEPALIVE:
        return f"the charger closed the connection{when}: {detail.get('summary', '')}"
    if by == contract.CLOSED_BY_NETWORK_CUT:
        return f"the charger's network was cut{when}"
    if by == contract.CLOSED_FAILED:
        code, reason = detail.get("sent_code"), str(detail.get("sent_reason") or "")
        said = f'"{reason[:_SHOWN_REASON]}"' if reason else "no reason"
        return (
            f"the charger failed the connection{when} for a frame the CSMS sent (code "
            f"{code}, {said})"
        )
    if by == contract.CLOSED_BY_ERROR:
        return f"the connection failed{when}: {detail.get('summary', '')}"
    return f"the charger closed the connection{when}"


_SHOWN_REASON = 123  # a close reason is at most 123 bytes (RFC 6455)


class Watch:
    """The run's subscription, and the events it brought, per charger."""

    def __init__(
        self, layer: Any, shards: int, chargers: list[int], *, settle_seconds: float = 1.2
    ) -> None:
        self.layer = layer
        self.shards = shards
        self.settle_seconds = settle_seconds
        self.subscribe = contract.events_subscribe(
            contract.stream_group(secrets.token_hex(16)),
            chargers=chargers,
            locations=None,
            kinds=KINDS,
            lease=contract.WATCH_LEASE_SECONDS,
        )
        self.events: list[contract.StreamEvent] = []
        self.dropped = 0
        self.frames: dict[int, list[Frame]] = {pk: [] for pk in chargers}
        # charger pk -> its link going down (`LINK_DOWN`), oldest first
        self.link_down: dict[int, list[LinkEvent]] = {}
        # charger pk -> the events of its connection, oldest first
        self.links: dict[int, list[LinkEvent]] = {}
        self._changed = asyncio.Event()
        self._channel: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._channel = await self.layer.new_channel()
        await self.layer.group_add(self.subscribe["subscription"], self._channel)
        await self._tell_workers(self.subscribe)
        self._tasks = [
            asyncio.create_task(self._receive(), name="scenario-watch"),
            asyncio.create_task(self._renew(), name="scenario-watch-renew"),
        ]

    async def stop(self) -> None:
        # A cancellation that lands inside the Redis layer's blocking read can be swallowed
        # there (the read is retried, and the task goes on receiving): cancel again until
        # the tasks end, within a bound, rather than wait for them forever.
        pending = set(self._tasks)
        deadline = asyncio.get_running_loop().time() + STOP_SECONDS
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=STOP_RETRY_SECONDS)
            if pending and asyncio.get_running_loop().time() > deadline:
                log.warning("scenario watch: %d task(s) did not stop", len(pending))
                break
        with contextlib.suppress(Exception):
            await self._tell_workers(contract.events_unsubscribe(self.subscribe["subscription"]))
            if self._channel is not None:
                await self.layer.group_discard(self.subscribe["subscription"], self._channel)

    async def settle(self) -> None:
        """Wait until events that happened before now have arrived."""
        await asyncio.sleep(self.settle_seconds)

    async def wait_for(self, pk: int, found: Callable[[list[Frame]], Any], deadline: float) -> Any:
        """`found(frames of the charger)` once it is truthy, or None at `deadline` (loop
        time); checked again whenever a batch arrives."""
        loop = asyncio.get_running_loop()
        while True:
            changed = self._changed
            result = found(self.frames.get(pk, []))
            if result:
                return result
            left = deadline - loop.time()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)

    # -- the subscription ----------------------------------------------------------------------

    async def _tell_workers(self, message: Any) -> None:
        for shard in range(self.shards):
            await self.layer.group_send(contract.engine_group(shard), message)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(contract.WATCH_RENEW_SECONDS)
            try:
                await self._tell_workers(self.subscribe)
            except Exception as exc:  # the next renewal may get through; the lease is long
                log.info("scenario watch: renewing failed (%s)", type(exc).__name__)

    async def _receive(self) -> None:
        assert self._channel is not None
        while True:
            try:
                message = await self.layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. a Redis read timeout on a quiet run
                log.info("scenario watch: receiving failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            if isinstance(message, dict) and message.get("type") == contract.EVENT_EVENTS_BATCH:
                self._add(message)

    def _add(self, batch: dict[str, Any]) -> None:
        self.dropped += int(batch.get("dropped") or 0)
        for event in batch.get("events") or ():
            if len(self.events) < MAX_EVENTS:
                self.events.append(event)
            else:
                self.dropped += 1
            kind = event.get("kind")
            if kind == "frame":
                frames = self.frames.setdefault(int(event["charger_id"]), [])
                frames.append(Frame.of(event))
                if len(frames) > MAX_FRAMES_PER_CHARGER:
                    del frames[: MAX_FRAMES_PER_CHARGER // 10]
            elif kind == "connection":
                self._add_link(int(event["charger_id"]), float(event["at"]), event["data"])
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _add_link(self, pk: int, at: float, data: Any) -> None:
        name = str(data.get("event", ""))
        detail = data.get("detail")
        link = LinkEvent(at, name, dict(detail) if isinstance(detail, dict) else {})
        links = self.links.setdefault(pk, [])
        links.append(link)
        if len(links) > MAX_FRAMES_PER_CHARGER:
            del links[: MAX_FRAMES_PER_CHARGER // 10]
        if name in LINK_DOWN:
            downs = self.link_down.setdefault(pk, [])
            downs.append(link)
            if len(downs) > MAX_FRAMES_PER_CHARGER:
                del downs[: MAX_FRAMES_PER_CHARGER // 10]
