"""A minimal protocol adapter with its own vocabulary, a fake transport and a fake clock.

It shows what a second protocol version implements (`simulator.core.protocol.Messages`)
and lets tests drive the core without sockets. Nothing here imports `simulator.ocpp16`:
`Toy` speaks a made-up protocol ("hello", "socket", "session-open", ...) and answers come
from the test's `FakeTransport`, so what the core sends can be read in order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.core.link import AnswerCallback, BootState, CallFailed
from simulator.core.protocol import (
    AuthStatus,
    BootAnswer,
    Identity,
    IdTagAnswer,
    Message,
    MeterSample,
    Payload,
    Reading,
    SampleContext,
    StopReason,
    TransactionRef,
)
from simulator.core.transfer import FIRMWARE_BUSY, DiagnosticsStatus, FirmwareStatus, LogStatus


def _readings(readings: list[Reading]) -> list[list[Any]]:
    # [value, what, unit, phase]: the toy protocol's own reading shape.
    return [[v, q.measurand.name.lower(), q.unit.name.lower(), q.phase] for v, q in readings]


class Toy:
    """A made-up protocol: lower-case actions, terse fields, sessions named by the charger
    until the central system gives them a number."""

    def boot(self, identity: Identity) -> Message:
        return "hello", {"maker": identity.vendor, "model": identity.model}

    def read_boot(self, answer: Payload) -> BootAnswer:
        status = BootState.ACCEPTED if answer["verdict"] == "welcome" else BootState.REJECTED
        return BootAnswer(status, answer.get("every", 0), answer.get("clock"))

    def connector_status(
        self, connector_id: int, status: str, error_code: str, info: str | None, timestamp: str
    ) -> Message:
        return "socket", {"n": connector_id, "state": str(status).lower(), "fault": error_code}

    def heartbeat(self) -> Message:
        return "ping", {}

    def read_clock(self, answer: Payload) -> str | None:
        return answer.get("clock")

    def authorize(self, id_tag: str) -> Message:
        return "badge", {"card": id_tag}

    def read_authorize(self, answer: Payload) -> IdTagAnswer:
        return IdTagAnswer(AuthStatus.ACCEPTED if answer["ok"] else AuthStatus.BLOCKED)

    def transaction_started(
        self,
        tx: TransactionRef,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None,
    ) -> Message:
        return "session-open", {"n": connector_id, "card": id_tag, "wh": meter_start}

    def read_transaction_started(self, answer: Payload) -> tuple[int, IdTagAnswer]:
        return answer["session"], IdTagAnswer(AuthStatus.ACCEPTED)

    def is_transaction_start(self, action: str) -> bool:
        return action == "session-open"

    def ended_id_tag(self, action: str, payload: Payload) -> str | None:
        return None  # its close names no card

    def is_periodic_sample(self, action: str, payload: Payload) -> bool:
        return False

    def transaction_ended(
        self,
        tx: TransactionRef,
        meter_stop: int,
        timestamp: str,
        reason: StopReason,
        id_tag: str | None,
        samples: list[MeterSample],
    ) -> Message:
        return "session-close", {
            "wh": meter_stop,
            "why": reason.name.lower(),
            "samples": [[s.context.value, _readings(s.readings)] for s in samples],
        }

    def read_transaction_ended(self, answer: Payload) -> IdTagAnswer | None:
        return None

    def meter_values(
        self,
        connector_id: int,
        tx: TransactionRef | None,
        context: SampleContext,
        timestamp: str,
        readings: list[Reading],
    ) -> Message:
        return "readings", {"n": connector_id, "why": context.value, "r": _readings(readings)}

    def data_transfer(self, vendor_id: str, message_id: str | None, data: str | None) -> Message:
        return "vendor", {"who": vendor_id, "what": message_id, "data": data}

    def security_event(self, kind: str, timestamp: str, tech_info: str | None) -> Message:
        return "security", {"what": kind, "at": timestamp, "info": tech_info}

    def log_status(self, status: LogStatus, request_id: int | None) -> Message:
        return "log", {"is": status.value, "request": request_id}

    def diagnostics_status(self, status: DiagnosticsStatus) -> Message:
        return "diagnostics", {"busy": status is DiagnosticsStatus.UPLOADING, "is": status.value}

    def firmware_status(self, status: FirmwareStatus) -> Message:
        return "firmware", {"busy": status in FIRMWARE_BUSY, "is": status.value}

    def sign_certificate(self, csr: str) -> Message:
        return "sign-me", {"csr": csr}

    def read_accepted(self, answer: Payload) -> bool:
        return answer.get("ok") is True

    def signed_firmware_status(self, status: FirmwareStatus, request_id: int | None) -> Message:
        return "signed-firmware", {"is": status.value, "request": request_id}

    def at_send(self, action: str, payload: Payload, tx: TransactionRef | None) -> Payload:
        # Unlike 1.6's -1, the toy names an unconfirmed session by the charger's own id.
        if tx is not None and action != "session-open":
            known = tx.transaction_id
            payload["session"] = known if known is not None else f"local:{tx.local_id}"
        return payload


Responder = Callable[[str, Payload], Payload | CallFailed]


@dataclass
class FakeTransport:
    """A link.Transport with no socket: it records every CALL and answers at once with
    what `respond(action, payload)` gives (an answer, or a CallFailed to fail it).
    With `hold=True` the answer waits until `release()` (one CALL outstanding)."""

    respond: Responder
    sent: list[tuple[str, Payload]] = field(default_factory=list)
    hold: bool = False
    held: list[tuple[str, Payload, AnswerCallback]] = field(default_factory=list)
    closed: bool = False
    keepalive_changes: int = 0
    timeout_changes: int = 0

    def send_call(self, action: str, payload: Payload, done: AnswerCallback) -> None:
        # A copy: the frame as it went out, whatever the core does to the payload later.
        self.sent.append((action, dict(payload)))
        if self.hold:
            self.held.append((action, payload, done))
            return
        self._answer(action, payload, done)

    def release(self) -> None:
        action, payload, done = self.held.pop(0)
        self._answer(action, payload, done)

    def _answer(self, action: str, payload: Payload, done: AnswerCallback) -> None:
        answer = self.respond(action, payload)
        if isinstance(answer, CallFailed):
            done(None, answer)
        else:
            done(answer, None)

    async def call(self, action: str, payload: Payload) -> Payload:
        self.sent.append((action, dict(payload)))
        answer = self.respond(action, payload)
        if isinstance(answer, CallFailed):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def keepalive_changed(self) -> None:
        self.keepalive_changes += 1

    def answer_timeout_changed(self) -> None:
        self.timeout_changes += 1

    def actions(self) -> list[str]:
        return [action for action, _ in self.sent]


class _Handle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A timers.Clock advanced by hand: `advance(s)` runs the callbacks that fall due."""

    def __init__(self, start: float = 1_000.0, wall: float = 1_767_225_600.0) -> None:
        self._now = start
        self._wall_offset = wall - start
        self._due: list[tuple[float, int, _Handle, Callable[[], None]]] = []
        self._order = 0

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Handle:
        handle = _Handle()
        self._order += 1
        heapq.heappush(self._due, (self._now + delay, self._order, handle, callback))
        return handle

    def advance(self, seconds: float) -> None:
        until = self._now + seconds
        while self._due and self._due[0][0] <= until:
            when, _, handle, callback = heapq.heappop(self._due)
            self._now = max(self._now, when)
            if not handle.cancelled:
                callback()
        self._now = until
