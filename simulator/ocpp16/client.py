"""The OCPP 1.6J client of one connection: an `ocpp.v16.ChargePoint` over `websockets`.

Incoming CALLs are routed by the library to the `@on` handlers below, which ask the runtime
`Charger` what to answer; follow-up messages are sent from `@after` hooks (never from an
`@on` handler: that would deadlock the library's reader). Our own CALLs do not use the
library's `call()`: frames are built as camelCase dicts, checked against the 1.6 schemas
and matched to their answer by unique id, so that a dropped connection fails the pending
call at once instead of after the 30 s timeout.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import secrets
import ssl
import tempfile
import time
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import ocpp.messages
import orjson
from cryptography.hazmat.primitives import serialization
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.protocol import OPEN, Event
from websockets.proxy import get_proxy
from websockets.streams import StreamReader
from websockets.uri import parse_uri

from simulator.contract import (
    CLOSED_BY_CHARGER,
    CLOSED_BY_CSMS,
    CLOSED_BY_ERROR,
    CLOSED_BY_KEEPALIVE,
    CLOSED_BY_NETWORK_CUT,
    CLOSED_FAILED,
    CLOSED_LOST,
)
from simulator.core.charge_point import NETWORK_CUT, Charger
from simulator.core.drops import dropped
from simulator.core.firmware import DiagnosticsRequest, FirmwareRequest
from simulator.core.link import AnswerCallback, CallFailed, LinkLost
from simulator.core.logs import LogRequest
from simulator.core.operations import Operations
from simulator.core.security_log import SecurityEvent
from simulator.core.timers import sleep
from simulator.ocpp16 import metrics, wire
from simulator.ocpp16.call_errors import (
    NOT_JSON,
    UNREADABLE_ANSWER,
    check_call,
    readable_answer_id,
    readable_call_id,
    readable_number_id,
    unreadable_frame_error,
)
from simulator.ocpp16.frames import client_pong_frame, client_text_frame, take_text_frames
from simulator.ocpp16.keepalive import KeepaliveConnection
from simulator.ocpp16.messages import read_local_list, unsupported_actions
from simulator.ocpp16.redaction import redact_urls
from simulator.ocpp16.value_ranges import OutOfRange
from simulator.ocpp16.value_ranges import check_response as check_ranges
from simulator.ocpp16.wire import ID_HEAD, Checked, next_message_number

log = logging.getLogger(__name__)

# The library validates in a thread pool by default: no parallelism to gain under the GIL,
# extra latency, and reported races.
ocpp.messages.ASYNC_VALIDATION = False


_ANSWERS = (wire.CALLRESULT, wire.CALLERROR)
_ANSWER_SHAPES = {
    wire.CALLRESULT: ("CALLRESULT", "[3, uniqueId, payload]"),
    wire.CALLERROR: (
        "CALLERROR",
        "[4, uniqueId, errorCode, errorDescription, errorDetails]",
    ),
}
_RESPONSE_BUCKETS = metrics.RESPONSE_BUCKETS
_SUM = metrics.SUM
# CALLERRORs for well-formed CALLs this charger does not take: no sign of a hostile peer.
_NOT_HOSTILE = frozenset({"NotImplemented", "NotSupported"})
# Answers longer than this are re-serialised without \u escapes (see `_send`).
_RAW_UTF8_ABOVE = 65_536
# Where websockets' parser waits between frames (see `OcppConnection._between_frames`).
_AT_EOF = StreamReader.at_eof.__code__
_FIN_TEXT = 0x81  # the first byte of an unfragmented text frame without RSV bits
_FIN_PING = 0x89  # ... of a ping
_FIN_PONG = 0x8A  # ... of a pong
# A CALLRESULT whose payload is `{}`, as the CSMS frames it (see `on_text_frame`).
_RESULT_HEAD = b'[3,"'
_EMPTY_RESULT_TAIL = b'",{}]'
# action -> the metrics' tally row of its `ok` answers when the answer `{}` passes its
# response schema and value ranges, else None.
_EMPTY_RESULT_ROWS: dict[str, list[float] | None] = {}


# The chargers already warned that their CSMS's currentTime has no UTC offset.
_LOCAL_CLOCK_WARNED: weakref.WeakSet[Charger] = weakref.WeakSet()


def _empty_result_row(action: str) -> list[float] | None:
    """Whether `{}` passes `action`'s response checks (`_answer`'s), decided once per
    action: if so, the tally row `metrics.answered` would count it in (it never changes)."""
    if action in _EMPTY_RESULT_ROWS:
        return _EMPTY_RESULT_ROWS[action]
    row: list[float] | None
    try:
        wire.validate_response(action, {})
        check_ranges(action, {})
        row = metrics.tally_row(action, "ok")  # what `answered` counts `{}` as
    except (wire.SchemaViolation, OutOfRange):
        row = None
    _EMPTY_RESULT_ROWS[action] = row
    return row


class OcppConnection(KeepaliveConnection):
    """websockets' client connection with a synchronous path for the hot frames.

    `send_now` writes a text frame at once when nothing stands in the way (open, no
    fragmented send in progress, socket buffer below its high-water mark); `text_sink`
    sees every complete text frame as soon as it is parsed and may take it (answers to
    our calls), so that a MeterValues round trip needs no task switch at all; plain text
    frames that arrive while websockets' parser waits between frames are read here
    (`data_received`), without it, and so are the pongs to the keepalive pings
    (`KeepaliveConnection`) and the CSMS's pings, answered at once. Everything else
    (closing, back-pressure, fragments, the CSMS's CALLs) keeps websockets' own path.
    """

    text_sink: Callable[[bytes], bool] | None = None

    # websockets' parser (the generator), when it was last found waiting between frames
    # and has been fed nothing since (only `data_received` and `eof_received` feed it; a
    # failing connection replaces it): no need to look again while it is the same.
    _idle_parser: Any = None

    def data_received(self, data: bytes) -> None:
        # While websockets' parser waits between frames, the plain text frames at the start
        # of the chunk go to `text_sink` directly; the rest (what it does not take, control
        # frames, fragments, a frame cut off) goes to websockets from that frame boundary.
        sink = self.text_sink
        protocol = self.protocol
        # `_state`: the `state` property's value, without its Python call (every chunk).
        if (
            sink is not None
            and protocol._state is OPEN
            and (protocol.parser is self._idle_parser or self._between_frames())
        ):
            # The usual chunk, one whole frame of fewer than 126 bytes: the first step of
            # `take_text_frames` without its call and loop.
            max_size = protocol.max_message_size
            length = len(data) - 2
            if 0 <= length < 126 and data[0] == _FIN_TEXT and data[1] == length:
                if (max_size is None or length <= max_size) and sink(data[2:]):
                    return
            elif 0 <= length < 126 and data[0] == _FIN_PONG and data[1] == length:
                # A chunk of one pong (a keepalive's, every WebSocketPingInterval): what
                # websockets' parser would do with it, without the parser.
                self.acknowledge_pings(data[2:])
                return
            elif 0 <= length < 126 and data[0] == _FIN_PING and data[1] == length:
                # A chunk of one ping from the CSMS (many ping each connection every 20 to
                # 60 s): its pong at once, as websockets' protocol answers (RFC 6455 5.5.2).
                self.write_control(client_pong_frame(data[2:]))
                return
            else:
                taken = take_text_frames(data, sink, max_size)
                if taken == len(data):
                    return
                data = data[taken:]
        self._idle_parser = None
        super().data_received(data)

    def eof_received(self) -> None:
        self._idle_parser = None
        super().eof_received()

    def _between_frames(self) -> bool:
        """Whether websockets' parser waits for the first byte of a frame that is not a
        continuation (an empty buffer: `StreamReader.at_eof` yields only then); if so, it
        is remembered in `_idle_parser` until the parser is fed again."""
        protocol = self.protocol
        if protocol.current_size is not None or protocol.extensions:
            return False
        parser: Any = protocol.parser
        while parser.gi_yieldfrom is not None:  # the client's parse -> Protocol.parse -> ...
            parser = parser.gi_yieldfrom
        if parser.gi_code is not _AT_EOF:
            return False
        self._idle_parser = protocol.parser
        return True

    def process_event(self, event: Event) -> None:
        sink = self.text_sink
        if (
            sink is not None
            and isinstance(event, Frame)
            and event.opcode is Opcode.TEXT
            and event.fin
            and sink(bytes(event.data))
        ):
            return
        super().process_event(event)

    def send_now(self, text: str) -> bool:
        """Write one text frame now; False if it must go through the async `send()`.

        Only when websockets would write exactly this frame itself: the connection is
        open, no fragmented message is in progress, no extension was negotiated, and the
        socket's buffer is below its high-water mark."""
        protocol = self.protocol
        if (
            self.send_in_progress is not None
            or self.paused
            or protocol._state is not OPEN  # the `state` property, without its call
            or protocol.expect_continuation_frame
            or protocol.extensions
        ):
            return False
        try:
            self.transport.write(client_text_frame(text.encode()))
        except Exception as exc:  # as in send_context: the connection is done for
            self.set_connection_exc(exc)
            self.transport.abort()
        return True


def _call_logger() -> logging.Logger:
    quiet = logging.getLogger("chargesim.ocpp.frames")
    quiet.setLevel(logging.WARNING)
    return quiet


class ChargePointClient(OcppChargePoint):
    """One live connection of a charger to its CSMS."""

    def __init__(self, charger: Charger, connection: ClientConnection, timeout: float) -> None:
        super().__init__(charger.id, connection, response_timeout=timeout, logger=_call_logger())
        self.charger = charger
        self.operations = Operations(charger)
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        # unique id -> (action, callback, deadline on the loop's clock)
        self._pending: dict[str, tuple[str, AnswerCallback, float]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._followups: set[asyncio.Task[None]] = set()
        self._remote_start: tuple[str, int] | None = None
        self._trigger: tuple[str, int | None] | None = None
        self.raw_payload: dict[str, Any] = {}
        self._replied = False  # the CALL being routed has had its answer
        # (message id, action) of the frame being routed: our answer to it repeats them.
        self._answering: tuple[str, str] = ("", "")
        self._routing_action = "unknown"  # the action of the CALL being routed (metrics)
        # Actions whose answers came with properties their schema does not name (logged once)
        self._extra_fields_seen: set[str] = set()
        # Actions of CALLs that came with integral floats for integers (logged once)
        self._integral_floats_seen: set[str] = set()
        self._firmware: FirmwareRequest | None = None
        self._diagnostics: DiagnosticsRequest | None = None
        self._log_request: LogRequest | None = None
        self._extended_trigger: tuple[str, int | None] | None = None
        # Frames the charger's network conditions hold back: (due on the loop's clock, text,
        # unique id of our CALL or "" for an answer, action), sent in order by `_drain`.
        self._delayed: deque[tuple[float, str, str, str]] = deque()
        self._last_due = 0.0
        self._drainer: asyncio.Task[None] | None = None
        self._answer_delay = 0.0  # an answer override's delay for the CALL being routed
        self.closing: tuple[int, str] | None = None  # we closed with this code (close_with)
        # The CSMS answered a CALL of ours on this connection (a result or a CALLERROR): it
        # is up, not only its WebSocket endpoint (`run_connection` resets its backoff then).
        self.answered = False
        # What this charger answers: every action with a handler, less those of the feature
        # profiles it does not support (answered NotSupported).
        self._handled = frozenset(
            action for action, hooks in self.route_map.items() if "_on_action" in hooks
        ) - unsupported_actions(charger.feature_profiles)

    # -- transport for the charger ----------------------------------------------------------

    def send_call(self, action: str, payload: dict[str, Any], done: AnswerCallback) -> None:
        """Send one CALL now and call `done(result, None)` or `done(None, error)` once.

        The hot path of the simulator: no task, no future, no `wait_for`. The frame is
        schema-checked and written to the socket synchronously, the answer is matched by
        unique id as soon as the connection parses it, and timeouts are checked by one timer
        per connection that is armed only while a call is pending (not one per call).
        """
        # The adapter's own MeterValues are valid by construction (`wire.Checked`), and
        # once durable already encoded; every other payload is checked in full.
        if type(payload) is Checked and action == "MeterValues":
            stored = payload.text
            if stored is not None:
                # `wire.new_message_id()` and `wire.frame_call` without their two calls:
                # the same id and text (tests/test_wire_framing.py).
                unique_id = f"{ID_HEAD}{next_message_number()}"
                text = f'[2,"{unique_id}","MeterValues",{stored}]'
            else:
                unique_id = wire.new_message_id()
                text = wire.encode_call(unique_id, action, payload)
        else:
            wire.validate_request(action, payload)
            unique_id = wire.new_message_id()
            text = wire.encode_call(unique_id, action, payload)
        # time.monotonic is the loop's clock, `loop.time()` (see `_answer`), without a Python call.
        deadline = time.monotonic() + self._timeout
        self._pending[unique_id] = (action, done, deadline)
        if self._sweeper is None:
            self._sweeper = self._loop.call_at(deadline, self._expire)
        charger = self.charger
        charger.listener.on_frame(charger, "out", text, unique_id, action)
        # `_impairs()` without its call: while no network condition is set, this is all the
        # feature costs every CALL.
        network = charger.impairments.network
        if (
            network.drop_rate or network.latency_ms or network.jitter_ms or self._delayed
        ) and self._impaired(text, unique_id, action):
            return
        connection = self._connection
        if not (isinstance(connection, OcppConnection) and connection.send_now(text)):
            self.spawn(self._send_later(unique_id, action, text))

    def _impairs(self) -> bool:
        """Whether network conditions may take a frame: while none are set, this is all the
        feature costs the send path (attribute reads, no call into the core)."""
        network = self.charger.impairments.network
        return bool(network.drop_rate or network.latency_ms or network.jitter_ms or self._delayed)

    def _impaired(self, text: str, unique_id: str, action: str) -> bool:
        """The charger's network conditions take the frame: it is lost (a CALL then times
        out and fails as if its answer were lost: the outbox retries a transaction
        message), or held back for its latency behind the frames held before it (delayed,
        never reordered). False: send it now as usual. Either way the charger's own log
        shows the frame as sent, when it sent it: the network lost or held it after."""
        impairments = self.charger.impairments
        network = impairments.network
        if network.drop_rate and impairments.drops_frame():
            dropped("network_drop")
            log.info("%s: network condition dropped an outgoing %s", self.id, action or "frame")
            return True
        if not (self._delayed or network.delays):
            return False
        # On the charger's clock, as its other waits (the loop's own in production): a
        # test's clock shows the hold without the test timing the host.
        due = max(self.charger.clock.monotonic() + impairments.frame_delay(), self._last_due)
        self._last_due = due
        self._delayed.append((due, text, unique_id, action))
        if self._drainer is None:
            self._drainer = self._loop.create_task(self._drain())
        return True

    async def _drain(self) -> None:
        """Send the held-back frames in order, each at its due time."""
        try:
            while self._delayed:
                due, text, unique_id, action = self._delayed[0]
                clock = self.charger.clock
                wait = due - clock.monotonic()
                if wait > 0:
                    await sleep(clock, wait)
                self._delayed.popleft()
                try:
                    await self._connection.send(text)
                except ConnectionClosed:
                    if unique_id:
                        self._lose(unique_id, LinkLost(f"connection closed while sending {action}"))
        finally:
            self._drainer = None

    async def close_with(self, code: int, reason: str) -> None:
        """Close the connection with this close code (fault injection); the charger then
        reconnects as after any close. The code and reason are the caller's to check."""
        self.closing = (code, reason)
        await self._connection.close(code, reason)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """`send_call` for code that wants to await the answer (boot, triggered messages)."""
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()

        def done(result: dict[str, Any] | None, error: Exception | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        self.send_call(action, payload, done)
        return await future

    async def _send_later(self, unique_id: str, action: str, text: str) -> None:
        """The slow path: the socket's buffer is full (wait for it) or the connection is
        closing (fail the call)."""
        try:
            await self._connection.send(text)
        except ConnectionClosed:
            self._lose(unique_id, LinkLost(f"connection closed while sending {action}"))

    def _expire(self) -> None:
        """Time out the calls whose deadline passed; re-arm for the next deadline."""
        self._sweeper = None
        now = self._loop.time()
        for unique_id, (action, _done, deadline) in list(self._pending.items()):
            if deadline <= now:
                error = CallFailed("Timeout", f"no answer to {action} in {self._timeout:g} s")
                metrics.unanswered(action, "timeout")
                self._settle(unique_id, None, error)
        if self._pending and self._sweeper is None:
            soonest = min(deadline for _a, _d, deadline in self._pending.values())
            self._sweeper = self._loop.call_at(soonest, self._expire)

    def _settle(
        self, unique_id: str, result: dict[str, Any] | None, error: Exception | None
    ) -> None:
        pending = self._pending.pop(unique_id, None)
        if pending is None:
            return
        _action, done, _deadline = pending
        try:
            done(result, error)
        except Exception:
            log.exception("%s: handling the answer to %s failed", self.id, _action)

    def _lose(self, unique_id: str, error: LinkLost) -> None:
        """Fail a call whose connection went away before its answer (counted as lost)."""
        pending = self._pending.get(unique_id)
        if pending is not None:
            metrics.unanswered(pending[0], "lost")
            self._settle(unique_id, None, error)

    def _answer(
        self, message: list[Any], unique_id: str, pending: tuple[str, AnswerCallback, float]
    ) -> None:
        """A CALLRESULT or CALLERROR to the pending call `unique_id`: settle it."""
        action, done, deadline = pending
        self.answered = True
        # Sent at its deadline less the timeout: the time it waited, with no clock kept.
        # (time.monotonic is the loop's clock, `loop.time()`, without a Python call.)
        seconds = time.monotonic() - deadline + self._timeout
        if message[0] == wire.CALLERROR:
            code = str(message[2]) if len(message) > 2 else "GenericError"
            description = message[3] if len(message) > 3 else ""
            metrics.answered_as(action, "callerror", seconds)
            metrics.callerror_received(code)
            self._settle(unique_id, None, CallFailed(code, str(description)))
            return
        result = message[2]
        if not isinstance(result, dict):
            metrics.answered_as(action, "malformed", seconds)
            error = CallFailed("FormationViolation", f"{action} answer is not an object")
            self._settle(unique_id, None, error)
            return
        try:
            ignored = wire.validate_response(action, result)
            # A value we cannot hold (transactionId 2^63, a date in year 10000) fails the
            # call like a schema violation: the usual failure and retry path, nothing stored.
            local_clock = check_ranges(action, result)
        except (wire.SchemaViolation, OutOfRange) as exc:
            metrics.answered_as(action, "malformed", seconds)
            self._settle(unique_id, None, CallFailed("FormationViolation", str(exc)))
            return
        if local_clock is not None and self.charger not in _LOCAL_CLOCK_WARNED:
            # Once per charger: the CSMS writes every Heartbeat's currentTime that way.
            _LOCAL_CLOCK_WARNED.add(self.charger)
            log.warning("%s: %s (OCPP 1.6's date-times carry one)", self.id, local_clock)
        if ignored is not None and action not in self._extra_fields_seen:
            # Once per action and connection: a CSMS that adds vendor fields adds them to
            # every answer (the message log keeps each frame as it came).
            self._extra_fields_seen.add(action)
            log.warning("%s: %s (not in OCPP 1.6's schema)", self.id, ignored)
        metrics.answered(action, result, seconds)
        # `_settle` inlined: this is every MeterValues' answer.
        if self._pending.pop(unique_id, None) is None:
            return
        try:
            done(result, None)
        except Exception:
            log.exception("%s: handling the answer to %s failed", self.id, action)

    def _unreadable_answer(self, raw: str) -> bool:
        """Whether `raw`, which orjson refused, is an answer to one of our pending calls
        that the standard library reads (a number beyond a double's range, an unpaired
        surrogate): that call fails at once, as a schema-invalid answer does (its usual
        retry path), rather than waiting out its timeout for an answer that came. Its
        values go no further: a lone surrogate cannot be written to the database."""
        unique_id = readable_answer_id(raw)
        pending = self._pending.get(unique_id) if unique_id is not None else None
        if pending is None:
            return False
        assert unique_id is not None  # a pending call's
        action, _done, deadline = pending
        self._answering = (unique_id, action)
        self.charger.listener.on_frame(self.charger, "in", raw, unique_id, action)
        metrics.answered_as(action, "malformed", time.monotonic() - deadline + self._timeout)
        self._settle(unique_id, None, CallFailed("FormationViolation", UNREADABLE_ANSWER))
        return True

    def on_text_frame(self, data: bytes) -> bool:
        """Called by the connection for every complete text frame, before the library's
        reader: answers to our calls are handled here at once (True); anything else
        (the CSMS's CALLs, frames that do not parse) goes the library's way (False)."""
        if data[-5:] == _EMPTY_RESULT_TAIL and data[:4] == _RESULT_HEAD:
            # `[3,"<id>",{}]`, the answer to nearly every MeterValues, read without the JSON
            # decode when "<id>" is a pending call's: our ids (`wire.new_message_id`) are
            # plain ASCII without quotes, backslashes or control characters, so the frame
            # is then exactly the JSON [3, id, {}], and `_answer` would take the same steps
            # as here once `{}` passes the action's checks (decided once per action). Any
            # other frame (a non-ASCII or unknown id, a CALLERROR, spaces, a payload) goes
            # the general way (`_read_answer`).
            try:
                unique_id = data[4:-5].decode("ascii")
            except UnicodeDecodeError:
                unique_id = ""
            pending = self._pending.get(unique_id)
            if pending is not None and (
                (row := _EMPTY_RESULT_ROWS.get(action := pending[0])) is not None
                or (row := _empty_result_row(action)) is not None
            ):
                _action, done, deadline = pending
                charger = self.charger
                try:
                    charger.listener.on_frame(charger, "in", data.decode(), unique_id, action)
                    seconds = time.monotonic() - deadline + self._timeout
                    # `metrics.answered_as(action, "ok", seconds)` on its row, without the
                    # call and the row's lookup (every MeterValues' answer).
                    row[bisect_left(_RESPONSE_BUCKETS, seconds)] += 1
                    row[_SUM] += seconds
                    if self._pending.pop(unique_id, None) is None:
                        return True
                    self.answered = True
                    try:
                        done({}, None)
                    except Exception:
                        log.exception("%s: handling the answer to %s failed", self.id, action)
                except Exception:  # raised inside websockets' parser: it would drop the link
                    log.exception("%s: handling an answer failed", self.id)
                return True
        return self._read_answer(data)

    def _read_answer(self, data: bytes) -> bool:
        """`on_text_frame` for any frame: decoded, checked and dispatched in full."""
        try:
            message = orjson.loads(data)  # `wire.decode`, without its Python call
        except ValueError:
            return False
        if type(message) is not list or len(message) < 3 or message[0] not in _ANSWERS:
            return False
        if type(message[0]) is not int:  # 3.0 == 3, but it is no MessageTypeId
            return False
        unique_id = message[1]
        if type(unique_id) is not str:  # a list or an object is not even hashable
            return False
        pending = self._pending.get(unique_id)
        if pending is None:
            return False
        try:
            self.charger.listener.on_frame(self.charger, "in", data.decode(), unique_id, pending[0])
            self._answer(message, unique_id, pending)
        except Exception:  # raised inside websockets' parser, it would drop the connection
            log.exception("%s: handling an answer failed", self.id)
        return True

    async def close(self) -> None:
        await self._connection.close()

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake, like a cut cable."""
        transport = self._connection.transport
        if transport is not None:
            transport.abort()

    def keepalive_changed(self) -> None:
        connection = self._connection
        if isinstance(connection, KeepaliveConnection):
            connection.keepalive_changed()  # nothing when the interval in force is the same

    def answer_timeout_changed(self) -> None:
        """MessageTimeout changed: the next CALL waits that long for its answer, and so does
        the one in flight, counted from when it was sent (its deadline moves by the
        difference, so the time it waited is still its deadline less the timeout)."""
        timeout = self.charger.config_int("MessageTimeout")
        shift = timeout - self._timeout
        if not shift:
            return
        self._timeout = timeout
        self._response_timeout = timeout  # the library's own `call()`, should it be used
        pending = self._pending
        for unique_id, (action, done, deadline) in list(pending.items()):
            pending[unique_id] = (action, done, deadline + shift)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if pending:
            soonest = min(deadline for _a, _d, deadline in pending.values())
            self._sweeper = self._loop.call_at(soonest, self._expire)

    def release(self) -> None:
        """The connection is over: no CALL of the CSMS's is routed here any more. The
        library's `route_map` holds this client's own bound methods, a reference cycle
        that kept the client, and so its charger, alive until a full collection (for ever
        once frozen with the fleet, `gc_policy`): emptied, reference counting frees them."""
        self.route_map.clear()

    def fail_pending(self, reason: str) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            self._drainer = None
        self._delayed.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for unique_id in list(self._pending):
            self._lose(unique_id, LinkLost(reason))

    async def _send(self, message: str) -> None:
        # Only the reader sends through here (answers to the CALL it is handling).
        self._replied = True
        answer = wire.decode(message)
        metrics.call_received(self._routing_action, answer)
        if len(message) > _RAW_UTF8_ABOVE:
            # The library's json.dumps writes "é" as \u00e9: a DataTransfer echo of a frame
            # just under the CSMS's size cap would come back 3-6 times larger, over it, and
            # the CSMS would drop the link. The same JSON in plain UTF-8 stays the size sent.
            message = orjson.dumps(answer).decode()
        message_id, action = self._answering
        delay, self._answer_delay = self._answer_delay, 0.0
        if delay > 0:  # an answer override: the normal answer, late
            await asyncio.sleep(delay)
        self.charger.listener.on_frame(self.charger, "out", message, message_id, action)
        if not (self._impairs() and self._impaired(message, "", action)):
            await self._connection.send(message)

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Route one frame from the CSMS; nothing in it may end the connection."""
        if isinstance(raw_msg, bytes):
            # OCPP-J carries its messages in text frames only: a binary one is not a
            # message (nothing to answer), and must not end the connection either.
            dropped("frame_ignored")
            note = wire.BINARY_FRAME_NOTE.format(size=len(raw_msg))
            self.charger.listener.on_frame(self.charger, "in", note, "")
            log.warning("%s: %s", self.id, note[1:-1])
            return
        try:
            await self._route(raw_msg)
        except (ConnectionClosed, asyncio.CancelledError):
            raise
        except Exception:
            # A frame our checks let through still broke a handler: answer what we can
            # (InternalError) and keep the connection, as a real charger keeps running.
            log.exception("%s: handling a frame failed: %.200r", self.id, raw_msg)
            unique_id = readable_call_id(raw_msg)
            if unique_id is not None and not self._replied:
                await self._send(wire.encode_error(unique_id, "InternalError", "see the log"))

    async def _route(self, raw_msg: str) -> None:
        self._replied = False
        self._answer_delay = 0.0
        self._routing_action = "unknown"
        try:
            message = wire.decode(raw_msg)
        except ValueError:
            unique_id = readable_call_id(raw_msg)
            if unique_id is None and self._unreadable_answer(raw_msg):
                return
            # A number is no OCPP-J id (a string), but echoed it tells the CSMS, as for a
            # CALL that parses (`check_call`).
            id_text = readable_number_id(raw_msg) if unique_id is None else None
            shown_id = unique_id or id_text or ""
            self._answering = (shown_id, "")
            self.charger.listener.on_frame(self.charger, "in", raw_msg, shown_id)
            if not shown_id:
                dropped("frame_ignored")
                log.info("%s: ignoring a frame that is not JSON: %.200r", self.id, raw_msg)
            elif self.charger.boot.value != "Rejected":
                if unique_id is not None:
                    refused = unreadable_frame_error(
                        raw_msg,
                        unique_id,
                        self._handled,
                        max_keys=max(self.charger.config_int("GetConfigurationMaxKeys"), 1),
                    )
                    if refused.code not in _NOT_HOSTILE:
                        self._invalid_message(refused.code, "")
                    await self._send(
                        wire.encode_error(unique_id, refused.code, refused.description)
                    )
                else:
                    # A number as the id: FormationViolation whatever else (`check_call`).
                    self._invalid_message("FormationViolation", "")
                    text = wire.encode_error_to_id_text(shown_id, "FormationViolation", NOT_JSON)
                    await self._send(text)
            else:
                metrics.call_received("unknown", None)
            return
        self._answering = message_id, action = self._frame_ids(message, raw_msg)
        self.charger.listener.on_frame(self.charger, "in", raw_msg, message_id, action)
        if not isinstance(message, list) or not message or type(message[0]) is not int:
            dropped("frame_ignored")
            log.info("%s: ignoring a frame that is not an OCPP-J message: %.200r", self.id, raw_msg)
            return
        kind = message[0]
        if kind in _ANSWERS and len(message) >= 3:
            unique_id = message[1]
            # (a list or an object as the id is not even hashable)
            pending = self._pending.get(unique_id) if type(unique_id) is str else None
            if pending is None:
                dropped("frame_ignored")
                log.info("%s: answer to an unknown call %r ignored", self.id, unique_id)
            else:
                self._answer(message, unique_id, pending)
            return
        if kind != wire.CALL:
            dropped("frame_ignored")
            if kind in _ANSWERS:  # a CALLRESULT or CALLERROR without its id and payload
                log.info(
                    "%s: ignoring a %s too short to answer any call (%d element%s; it is %s):"
                    " %.200r",
                    self.id,
                    _ANSWER_SHAPES[kind][0],
                    len(message),
                    "" if len(message) == 1 else "s",
                    _ANSWER_SHAPES[kind][1],
                    raw_msg,
                )
            else:
                log.info("%s: ignoring a frame of unknown message type %r", self.id, kind)
            return
        if len(message) > 2 and type(message[2]) is str:
            self._routing_action = message[2]
        if self.charger.boot.value == "Rejected":
            # Rejected: send nothing and answer nothing until the next boot attempt.
            metrics.call_received(self._routing_action, None)
            return
        read_as_ints: list[str] = []
        error = check_call(
            raw_msg,
            message,
            self._handled,
            max_keys=max(self.charger.config_int("GetConfigurationMaxKeys"), 1),
            read_as_ints=read_as_ints,
        )
        if error is None and read_as_ints:
            # `"connectorId": 1.0` read as 1: the library parses the frame again, so it
            # gets the payload as read (the message log keeps the frame as it came).
            raw_msg = wire.encode_call(message[1], message[2], message[3])
            if self._routing_action not in self._integral_floats_seen:
                # Once per action and connection, as for an answer's vendor fields.
                self._integral_floats_seen.add(self._routing_action)
                log.warning(
                    "%s: %s: %s: integral float, read as an integer (OCPP 1.6's schema says"
                    " integer)",
                    self.id,
                    self._routing_action,
                    ", ".join(read_as_ints),
                )
        if error is not None:
            answer = error.answer()
            if error.code not in _NOT_HOSTILE:
                self._invalid_message(error.code, self._routing_action, answered=answer is not None)
            if answer is not None:
                await self._send(answer)
            else:
                dropped("frame_ignored")
                log.info("%s: ignoring a CALL without a unique id: %.200r", self.id, raw_msg)
            return
        if self.charger.impairments.answers and await self._overridden(message[1]):
            return
        # Handlers read the payload as sent (camelCase, floats), not the library's snake_case.
        self.raw_payload = message[3]
        # A real charge point answers a call first, then reports what it caused (the
        # StatusNotification of a RemoteStop or a ChangeAvailability): what the handler
        # queues waits until the answer is on the wire.
        outbox = self.charger.outbox
        outbox.hold()
        try:
            await super().route_message(raw_msg)
        finally:
            outbox.release()

    async def _overridden(self, unique_id: str) -> bool:
        """Answer a well-formed CALL as an answer override says, if one applies: True when
        that is its whole answer (the normal handler and its side effects do not run); a
        delay only sets `_answer_delay` and lets the call be handled normally."""
        action = self._routing_action
        override = self.charger.impairments.answers.take(action)
        if override is None:
            return False
        if override.no_answer:
            log.info("%s: answer override: no answer to %s", self.id, action)
            metrics.call_received(action, None)
            return True
        if override.call_error is not None:
            log.info("%s: answer override: %s to %s", self.id, override.call_error, action)
            text = wire.encode_error(unique_id, override.call_error, override.description)
            await self._send(text)
            return True
        if override.status is not None:
            log.info("%s: answer override: %s to %s", self.id, override.status, action)
            await self._send(wire.encode_result(unique_id, {"status": override.status}))
            return True
        self._answer_delay = override.delay_s
        return False

    def _invalid_message(self, code: str, action: str, *, answered: bool = True) -> None:
        """A CALL that breaks the protocol goes in the security log (InvalidMessages): the
        error it got, or, without a unique id to answer, that it was ignored."""
        outcome = f"answered {code}" if answered else f"ignored ({code}, no unique id to answer)"
        what = f"{action[:40]} {outcome}" if action else f"a frame {outcome}"
        self.charger.security_event(SecurityEvent.INVALID_MESSAGES, what, push=False)

    def _frame_ids(self, message: Any, raw: str) -> tuple[str, str]:
        """The message id and action of a decoded frame ("" where it has none): a CALL
        names its action, an answer's is that of our call it answers. A CALL's id that is
        a number is its text as sent, which its CALLERROR echoes (`check_call`)."""
        if type(message) is not list or len(message) < 2:
            return "", ""
        if type(message[1]) is not str:
            if message[0] != wire.CALL or type(message[1]) not in (int, float):
                return "", ""
            action = message[2] if len(message) > 2 and type(message[2]) is str else ""
            return readable_number_id(raw) or "", action
        if message[0] == wire.CALL and len(message) > 2 and type(message[2]) is str:
            return message[1], message[2]
        pending = self._pending.get(message[1])
        return message[1], pending[0] if pending is not None else ""

    def spawn(self, coro: Any) -> None:
        """Run a follow-up as a task we keep a reference to (the loop holds tasks weakly)."""
        task = asyncio.get_running_loop().create_task(_logged(coro, self.id))
        self._followups.add(task)
        task.add_done_callback(self._followups.discard)

    # -- CSMS-initiated operations ------------------------------------------------------------
    # Requests are schema-checked in route_message (with the 1.6 error codes), so the
    # library does not check them a second time; our answers are built from its dataclasses.

    @on(Action.remote_start_transaction, skip_schema_validation=True)
    def on_remote_start(self, id_tag: str, connector_id: int | None = None, **_: Any):
        profile = self.raw_payload.get("chargingProfile")
        status, chosen = self.charger.remote_start(id_tag, connector_id, profile)
        if status == "Accepted" and chosen is not None:
            self._remote_start = (id_tag, chosen)
        return call_result.RemoteStartTransaction(status=status)

    @after(Action.remote_start_transaction)
    def after_remote_start(self, **_: Any) -> None:
        request, self._remote_start = self._remote_start, None
        if request is not None:
            self.spawn(self.charger.after_remote_start(*request))

    @on(Action.remote_stop_transaction, skip_schema_validation=True)
    def on_remote_stop(self, transaction_id: int, **_: Any):
        return call_result.RemoteStopTransaction(status=self.charger.remote_stop(transaction_id))

    @on(Action.get_configuration, skip_schema_validation=True)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any):
        known, unknown = self.charger.get_configuration(key)
        return call_result.GetConfiguration(
            configuration_key=known or None, unknown_key=unknown or None
        )

    @on(Action.change_configuration, skip_schema_validation=True)
    def on_change_configuration(self, key: str, value: str, **_: Any):
        return call_result.ChangeConfiguration(status=self.charger.change_configuration(key, value))

    @on(Action.set_charging_profile, skip_schema_validation=True)
    def on_set_charging_profile(self, connector_id: int, **_: Any):
        status = self.operations.on_set_charging_profile(
            connector_id, self.raw_payload["csChargingProfiles"]
        )
        return call_result.SetChargingProfile(status=status)

    @on(Action.clear_charging_profile, skip_schema_validation=True)
    def on_clear_charging_profile(self, **_: Any):
        p = self.raw_payload
        status = self.operations.on_clear_charging_profile(
            p.get("id"), p.get("connectorId"), p.get("chargingProfilePurpose"), p.get("stackLevel")
        )
        return call_result.ClearChargingProfile(status=status)

    @on(Action.get_composite_schedule, skip_schema_validation=True)
    def on_get_composite_schedule(self, connector_id: int, duration: int, **_: Any):
        unit = self.raw_payload.get("chargingRateUnit")
        status, schedule = self.operations.on_get_composite_schedule(connector_id, duration, unit)
        if schedule is None:
            return call_result.GetCompositeSchedule(status=status)
        return call_result.GetCompositeSchedule(
            status=status,
            connector_id=connector_id,
            schedule_start=schedule["startSchedule"],
            charging_schedule=_snake(schedule),
        )

    @on(Action.reset, skip_schema_validation=True)
    def on_reset(self, type: str, **_: Any):
        return call_result.Reset(status="Accepted")

    @after(Action.reset)
    def after_reset(self, type: str, **_: Any) -> None:
        self.spawn(self.operations.after_reset(type))

    @on(Action.trigger_message, skip_schema_validation=True)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any):
        status = self.operations.on_trigger_message(requested_message, connector_id)
        self._trigger = (requested_message, connector_id) if status == "Accepted" else None
        return call_result.TriggerMessage(status=status)

    @after(Action.trigger_message)
    def after_trigger_message(self, **_: Any) -> None:
        request, self._trigger = self._trigger, None
        if request is not None:
            self.spawn(self.operations.after_trigger_message(*request))

    @on(Action.change_availability, skip_schema_validation=True)
    def on_change_availability(self, connector_id: int, type: str, **_: Any):
        return call_result.ChangeAvailability(
            status=self.operations.on_change_availability(connector_id, type)
        )

    @on(Action.unlock_connector, skip_schema_validation=True)
    def on_unlock_connector(self, connector_id: int, **_: Any):
        return call_result.UnlockConnector(status=self.operations.on_unlock_connector(connector_id))

    @on(Action.clear_cache, skip_schema_validation=True)
    def on_clear_cache(self, **_: Any):
        return call_result.ClearCache(status=self.operations.on_clear_cache())

    @on(Action.data_transfer, skip_schema_validation=True)
    def on_data_transfer(self, vendor_id: str, **_: Any):
        status, data = self.operations.on_data_transfer(
            vendor_id, self.raw_payload.get("messageId"), self.raw_payload.get("data")
        )
        return call_result.DataTransfer(status=status, data=data)

    # -- Reservation, Local Auth List Management, Firmware Management (issue 17) -------------

    @on(Action.reserve_now, skip_schema_validation=True)
    def on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
        **_: Any,
    ):
        status = self.operations.on_reserve_now(
            connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )
        return call_result.ReserveNow(status=status)

    @on(Action.cancel_reservation, skip_schema_validation=True)
    def on_cancel_reservation(self, reservation_id: int, **_: Any):
        return call_result.CancelReservation(
            status=self.operations.on_cancel_reservation(reservation_id)
        )

    @on(Action.send_local_list, skip_schema_validation=True)
    def on_send_local_list(self, list_version: int, update_type: str, **_: Any):
        entries = read_local_list(self.raw_payload)
        status = self.operations.on_send_local_list(list_version, update_type, entries)
        return call_result.SendLocalList(status=status)

    @on(Action.get_local_list_version, skip_schema_validation=True)
    def on_get_local_list_version(self, **_: Any):
        return call_result.GetLocalListVersion(
            list_version=self.operations.on_get_local_list_version()
        )

    @on(Action.update_firmware, skip_schema_validation=True)
    def on_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        **_: Any,
    ):
        self._firmware = self.operations.on_update_firmware(
            location, retrieve_date, retries, retry_interval
        )
        return call_result.UpdateFirmware()

    @after(Action.update_firmware)
    def after_update_firmware(self, **_: Any) -> None:
        request, self._firmware = self._firmware, None
        if request is not None:
            self.operations.after_update_firmware(request)

    @on(Action.get_diagnostics, skip_schema_validation=True)
    def on_get_diagnostics(
        self,
        location: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        start_time: str | None = None,
        stop_time: str | None = None,
        **_: Any,
    ):
        self._diagnostics = self.operations.on_get_diagnostics(
            location, retries, retry_interval, start_time, stop_time
        )
        return call_result.GetDiagnostics(file_name=self._diagnostics.file_name)

    @after(Action.get_diagnostics)
    def after_get_diagnostics(self, **_: Any) -> None:
        request, self._diagnostics = self._diagnostics, None
        if request is not None:
            self.operations.after_get_diagnostics(request)

    # -- Security whitepaper (edition 3): certificates and signed firmware (issue 17) --------

    @on(Action.certificate_signed, skip_schema_validation=True)
    def on_certificate_signed(self, certificate_chain: str, **_: Any):
        status = self.operations.on_certificate_signed(self.raw_payload["certificateChain"])
        return call_result.CertificateSigned(status=status)

    @on(Action.install_certificate, skip_schema_validation=True)
    def on_install_certificate(self, certificate_type: str, certificate: str, **_: Any):
        status = self.operations.on_install_certificate(
            certificate_type, self.raw_payload["certificate"]
        )
        return call_result.InstallCertificate(status=status)

    @on(Action.get_installed_certificate_ids, skip_schema_validation=True)
    def on_get_installed_certificate_ids(self, certificate_type: str, **_: Any):
        ids = self.operations.on_get_installed_certificate_ids(certificate_type)
        if not ids:
            return call_result.GetInstalledCertificateIds(status="NotFound")
        return call_result.GetInstalledCertificateIds(
            status="Accepted",
            certificate_hash_data=[
                {
                    "hash_algorithm": item["hashAlgorithm"],
                    "issuer_name_hash": item["issuerNameHash"],
                    "issuer_key_hash": item["issuerKeyHash"],
                    "serial_number": item["serialNumber"],
                }
                for item in ids
            ],
        )

    @on(Action.delete_certificate, skip_schema_validation=True)
    def on_delete_certificate(self, **_: Any):
        status = self.operations.on_delete_certificate(self.raw_payload["certificateHashData"])
        return call_result.DeleteCertificate(status=status)

    @on(Action.signed_update_firmware, skip_schema_validation=True)
    def on_signed_update_firmware(self, request_id: int, **_: Any):
        payload = self.raw_payload
        status, self._firmware = self.operations.on_signed_update_firmware(
            request_id, payload["firmware"], payload.get("retries"), payload.get("retryInterval")
        )
        return call_result.SignedUpdateFirmware(status=status)

    @after(Action.signed_update_firmware)
    def after_signed_update_firmware(self, **_: Any) -> None:
        request, self._firmware = self._firmware, None
        if request is not None:
            self.operations.after_update_firmware(request)

    # -- security whitepaper, edition 3: SecurityProfile, GetLog, ExtendedTriggerMessage ----

    @after(Action.change_configuration)
    def after_change_configuration(self, **_: Any) -> None:
        self.spawn(self.operations.after_change_configuration())

    @on(Action.get_log, skip_schema_validation=True)
    def on_get_log(
        self,
        log_type: str,
        request_id: int,
        retries: int | None = None,
        retry_interval: int | None = None,
        **_: Any,
    ):
        window = self.raw_payload["log"]
        status, self._log_request = self.operations.on_get_log(
            log_type,
            request_id,
            window["remoteLocation"],
            window.get("oldestTimestamp"),
            window.get("latestTimestamp"),
            retries,
            retry_interval,
        )
        file_name = self._log_request.file_name if self._log_request is not None else None
        return call_result.GetLog(status=status, filename=file_name)

    @after(Action.get_log)
    def after_get_log(self, **_: Any) -> None:
        request, self._log_request = self._log_request, None
        if request is not None:
            self.operations.after_get_log(request)

    @on(Action.extended_trigger_message, skip_schema_validation=True)
    def on_extended_trigger_message(
        self, requested_message: str, connector_id: int | None = None, **_: Any
    ):
        status = self.operations.on_extended_trigger_message(requested_message, connector_id)
        self._extended_trigger = (requested_message, connector_id) if status == "Accepted" else None
        return call_result.ExtendedTriggerMessage(status=status)

    @after(Action.extended_trigger_message)
    def after_extended_trigger_message(self, **_: Any) -> None:
        request, self._extended_trigger = self._extended_trigger, None
        if request is not None:
            self.spawn(self.operations.after_extended_trigger_message(*request))


def _snake(schedule: dict[str, Any]) -> dict[str, Any]:
    """The library serialises answers from snake_case: hand it the schedule that way."""
    return {
        "duration": schedule.get("duration"),
        "start_schedule": schedule.get("startSchedule"),
        "charging_rate_unit": schedule["chargingRateUnit"],
        "charging_schedule_period": [
            {
                k: v
                for k, v in (
                    ("start_period", p["startPeriod"]),
                    ("limit", p["limit"]),
                    ("number_phases", p.get("numberPhases")),
                )
                if v is not None
            }
            for p in schedule["chargingSchedulePeriod"]
        ],
        **(
            {"min_charging_rate": schedule["minChargingRate"]}
            if schedule.get("minChargingRate") is not None
            else {}
        ),
    }


async def _logged(coro: Any, cp_id: str) -> None:
    """`@after` hooks run fire-and-forget: log what they raise instead of losing it."""
    try:
        await coro
    except Exception:
        log.exception("%s: follow-up after a CSMS request failed", cp_id)


# -- connecting ------------------------------------------------------------------------------


class ConnectError(Exception):
    """A connection attempt failed, with a message a person can act on."""


def connection_url(charger: Charger) -> str:
    base = charger.spec.csms_url.rstrip("/")
    return f"{base}/{quote(charger.id, safe='')}"


def shown_url(url: str) -> str:
    """A URL to record or show: without user info, query or fragment, which may hold
    credentials (ws://user:password@host/ocpp?token=...)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:  # a port that is not a number: the URL would not have connected
        port = ""
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


# (secure, host, port) -> the proxy the environment names for it, or None.
_proxies: dict[tuple[bool, str, int], str | None] = {}


def _proxy(url: str) -> str | None:
    """The proxy websockets would pick for this URL from the environment (its `proxy=True`),
    worked out once per CSMS endpoint: websockets reads it on every connect, scanning
    os.environ twice, which took a tenth of the worker's time while 5,000 imported chargers
    connected at once. The environment of a running worker does not change."""
    uri = parse_uri(url)
    key = (uri.secure, uri.host, uri.port)
    if key not in _proxies:
        _proxies[key] = get_proxy(uri)
    return _proxies[key]


def _headers(charger: Charger) -> dict[str, str]:
    if charger.spec.security_profile in (1, 2) and charger.spec.authorization_key:
        token = f"{charger.id}:{charger.spec.authorization_key}".encode()
        return {"Authorization": "Basic " + base64.b64encode(token).decode()}
    return {}


def _ssl_context(charger: Charger) -> ssl.SSLContext | None:
    if not charger.spec.csms_url.startswith("wss://"):
        return None
    ca = charger.spec.ca_bundle_path or None
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConnectError(f"CA bundle {ca} cannot be read ({exc})") from None
    roots = charger.certificates.central_system_roots_pem()
    if roots:  # InstallCertificate(CentralSystemRootCertificate): trusted as well
        try:
            context.load_verify_locations(cadata=roots)
        except ssl.SSLError as exc:
            raise ConnectError(f"an installed CSMS root cannot be used ({exc})") from None
    if charger.spec.security_profile == 3:
        if charger.certificates.has_client_certificate:
            # The certificate obtained through SignCertificate / CertificateSigned wins
            # over the files of the charger's settings.
            load_client_certificate(context, charger)
            return context
        try:
            context.load_cert_chain(charger.spec.client_cert_path, charger.spec.client_key_path)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"client certificate or key cannot be loaded ({exc})") from None
    return context


def load_client_certificate(context: ssl.SSLContext, charger: Charger) -> None:
    """Give a TLS context the charger's own certificate and key from its store.

    `ssl` loads a key only from a file: the key is written for the moment of the call to
    a private temporary file (mode 0600), encrypted under a one-time password, and the file
    is removed at once; the plain key never touches the disk."""
    store = charger.certificates
    password = secrets.token_bytes(32)
    key = serialization.load_pem_private_key(store.private_key_pem().encode(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="chargesim-tls-") as folder:
        cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        with open(cert_path, "w", encoding="ascii") as out:
            out.write(store.chain_pem)
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(encrypted)
        try:
            context.load_cert_chain(cert_path, key_path, password=password)
        except ssl.SSLError as exc:
            raise ConnectError(f"the charger's own certificate cannot be used ({exc})") from None


def failure_event(exc: BaseException) -> SecurityEvent | None:
    """The security event a failed connection attempt is, if any: the Central System
    refused our credentials (HTTP 401), or we refused its TLS certificate."""
    if isinstance(exc, InvalidStatus) and exc.response.status_code == 401:
        return SecurityEvent.FAILED_TO_AUTHENTICATE_AT_CENTRAL_SYSTEM
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SecurityEvent.INVALID_CENTRAL_SYSTEM_CERTIFICATE
    return None


def describe_failure(exc: BaseException) -> str:
    """Plain words for the charger's status line (never the credentials)."""
    if isinstance(exc, InvalidStatus):
        code = exc.response.status_code
        if code == 401:
            return "CSMS rejected credentials (401)"
        if code == 404:
            return "CSMS does not know this charge point (404)"
        return f"CSMS refused the connection (HTTP {code})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, ConnectError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"network error ({exc.strerror or exc})"
    # Another library's words, which may quote a URL: websockets' InvalidProxy quotes the
    # proxy's from the environment, password and all.
    return redact_urls(f"{type(exc).__name__}: {exc}")


class Backoff:
    """Exponential backoff with full jitter, capped."""

    def __init__(self, base: float = 1.0, cap: float = 60.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** (self.failures - 1))
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


async def run_connection(
    charger: Charger,
    *,
    reconnect_cap: float = 60.0,
    turn: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Keep one charger connected until cancelled: connect, boot, serve, reconnect.

    `turn` (the worker's connect ramp, when it has a rate): awaited before every attempt
    but the first, so that the reconnects of a fleet whose CSMS came back after an outage
    (or whose network cuts end together) start at the worker's connect rate, not all in
    the second the backoffs run out. The first attempt took its turn already if it was
    one of many (`Simulator.connect`), or is one a person asked for and is not paced."""
    backoff = Backoff(cap=reconnect_cap)
    # Whether the last connection ended by no choice of the charger's: the next one is a
    # reconnect (RECONNECTS). A reboot for a Reset or new firmware, a new security profile
    # and a disconnect close it themselves, as a reboot from the API or an edit does in a
    # new connection task: those are not counted.
    closed_on_it = False
    reported = ""  # the failure last logged as a security event, until a connection works
    first = True
    while True:
        outage = charger.offline_until - time.monotonic()
        if outage > 0:
            charger.detach(f"{NETWORK_CUT} ({outage:.0f} s left)")
            charger.listener.on_connection(
                charger, "network_cut", {"seconds_left": round(outage, 1)}
            )
            await asyncio.sleep(outage)
            continue
        if turn is not None and not first:
            await turn()
        first = False
        charger.connecting()
        try:
            connection = await _open(charger)
        except asyncio.CancelledError:
            charger.detach()
            raise
        except Exception as exc:  # every failure is reported and retried
            metrics.CONNECT_FAILURES.inc()
            reason = describe_failure(exc)
            event = failure_event(exc)
            if event is not None and reason != reported:
                # Once per run of the same failure, not once per retry.
                charger.security_event(event, reason)
            reported = reason if event is not None else ""
            delay = backoff.next_delay()
            log.info("%s: cannot connect: %s; retrying in %.1f s", charger.id, reason, delay)
            charger.detach(reason)
            charger.listener.on_connection(
                charger,
                "connect_failed",
                {
                    "reason": reason,
                    "retry_in_seconds": round(delay, 3),
                    "attempt": backoff.failures,
                },
            )
            await asyncio.sleep(delay)
            continue
        reported = ""
        charger.listener.on_connection(
            charger,
            "connected",
            {"url": shown_url(connection_url(charger)), "subprotocol": connection.subprotocol},
        )
        if closed_on_it:
            metrics.RECONNECTS.inc()
        reason, answered, by = await _serve(charger, connection)
        closed_on_it = by != CLOSED_BY_CHARGER
        if answered:
            # Reset only once the CSMS has answered on the connection, not when the socket
            # opened: a CSMS that accepts the WebSocket and drops it at once (crash-looping
            # behind its proxy, refusing the charger after the handshake) would otherwise
            # be retried every 0.5-1 s for ever, by every charger of the fleet.
            backoff.reset()
        delay = backoff.next_delay()
        log.info("%s: connection closed (%s); reconnecting in %.1f s", charger.id, reason, delay)
        charger.listener.on_connection(
            charger, "reconnecting", {"in_seconds": round(delay, 3), "attempt": backoff.failures}
        )
        await asyncio.sleep(delay)


async def _open(charger: Charger) -> ClientConnection:
    ping = charger.config_int("WebSocketPingInterval")
    url = connection_url(charger)
    connection = await connect(
        url,
        proxy=_proxy(url),
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=_headers(charger),
        ssl=_ssl_context(charger),
        compression=None,
        ping_interval=ping or None,
        ping_timeout=ping or None,  # equal: a pong is due by the next ping (keepalive.py)
        open_timeout=max(charger.config_int("MessageTimeout"), 5),
        max_size=2**20,
        user_agent_header="ChargeSim",
        close_timeout=2,
        create_connection=OcppConnection,
    )
    if connection.subprotocol != "ocpp1.6":
        await connection.close()
        raise ConnectError(
            f"CSMS did not accept the ocpp1.6 subprotocol (answered {connection.subprotocol!r})"
        )
    if isinstance(connection, KeepaliveConnection):
        # The interval configured at each ping, and at a change (`keepalive_changed`).
        connection.ping_every = partial(charger.config_int, "WebSocketPingInterval")
    return connection


async def _serve(charger: Charger, connection: ClientConnection) -> tuple[str, bool, str]:
    """Serve one connection until it ends: why it ended, whether the CSMS answered a CALL
    of the charger's on it, and who ended it (CLOSED_BY_CHARGER, CLOSED_BY_CSMS, ...)."""
    client = ChargePointClient(charger, connection, timeout=charger.config_int("MessageTimeout"))
    if isinstance(connection, OcppConnection):
        connection.text_sink = client.on_text_frame
    charger.attach(client)
    boot = asyncio.create_task(_logged(charger.boot_sequence(), charger.id))
    reason = "closed"
    by = CLOSED_BY_CHARGER  # cancelled: a disconnect, a reboot, the worker stopping
    sent: Close | None = None
    try:
        await client.start()
    except ConnectionClosed as exc:
        sent = exc.sent
        if client.closing is not None:  # close_connection: the charger closed it
            reason = f"closed by the charger ({client.closing[0]})"
        elif isinstance(connection, KeepaliveConnection) and connection.pong_missed:
            reason = f"no pong to a keepalive ping within {connection.pong_missed:g} s"
            by = CLOSED_BY_KEEPALIVE
            metrics.KEEPALIVE_TIMEOUTS.inc()
        elif sent is not None and not exc.rcvd_then_sent:
            # The charger's close came first: its own (a reconnect for a new security
            # profile, a reboot), or a frame of the CSMS's it had to fail the link for.
            reason = _closed_first(sent)
            if not _own_close(sent):
                by = CLOSED_FAILED
        elif exc.rcvd is not None:
            reason, by = f"closed by peer ({_said(exc.rcvd)})", CLOSED_BY_CSMS
        else:
            # No close frame: the CSMS went away or the network failed, unless it is the
            # charger's own network cut (`Charger.cut_network` aborts the socket).
            reason = "connection lost"
            cut = charger.offline_until > time.monotonic()
            by = CLOSED_BY_NETWORK_CUT if cut else CLOSED_LOST
    except Exception as exc:
        # A bug must cost this connection, never the charger's reconnect loop.
        log.exception("%s: the connection failed", charger.id)
        reason = f"internal error ({type(exc).__name__})"
        by = CLOSED_BY_ERROR
    finally:
        if isinstance(connection, OcppConnection):
            connection.text_sink = None
        if isinstance(connection, KeepaliveConnection):
            # Over `charger.config_int`: the connection (a reference cycle with its
            # protocol and transport, kept by the gc policy's freeze) kept the charger.
            connection.ping_every = None
        client.fail_pending("connection lost")
        client.release()
        boot.cancel()
        # The CSMS's close is why the charger is offline (one that drops it after each
        # BootNotification, say): its page says so, as for a lost link. The charger's own
        # closes (a disconnect, a reboot, the worker stopping) are no error.
        by_csms = by == CLOSED_BY_CSMS
        charger.detach(
            reason if by_csms or not reason.startswith("closed") else "", closed_by_peer=by_csms
        )
        try:
            await connection.close()
        finally:
            detail: dict[str, Any] = {
                # As received from the CSMS; 1006 when none came (the link was lost, or
                # the charger failed it and no longer read what came).
                "code": connection.close_code,
                "reason": connection.close_reason or "",
                "summary": reason,
                "by": by,
            }
            if sent is not None:  # what the charger's own close frame said
                detail["sent_code"] = sent.code
                detail["sent_reason"] = sent.reason
            charger.listener.on_connection(charger, "closed", detail)
    return reason, client.answered, by


def _closed_first(sent: Close) -> str:
    """Why the link ended when the charger sent its close frame first: its own close (a
    reboot, a new security profile: 1000), or a frame from the CSMS it had to fail the
    connection for, as RFC 6455 requires (1009 over the size limit, 1007 text that is not
    UTF-8, 1002 a protocol error such as an unknown opcode). Only the first is a close:
    the others are the link's error, on the charger's page and in its ConnectionLost."""
    if _own_close(sent):
        return f"closed by the charger ({_said(sent)})"
    return f"failed by the charger with {_said(sent)}"


def _own_close(sent: Close) -> bool:
    return sent.code in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY)


def _said(close: Close) -> str:
    """A close frame's code, and its reason when it gave one."""
    return f"{close.code}: {close.reason}" if close.reason else str(close.code)
