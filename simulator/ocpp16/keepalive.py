"""WebSocket keepalive pings on the event loop's timers: one handle per connection.

websockets keeps each connection alive with a task of its own (`Connection.keepalive`): it
sleeps `ping_interval`, sends a ping through the async `send_context` and awaits the pong
under `asyncio.timeout`. A fleet of 10,000 chargers pinging every 60 s wakes 167 such
tasks a second, and they were about half of an idle fleet's CPU (bench/RESULTS.md,
session 24). Here each connection has one timer handle instead. When it fires, it checks
that the last ping had its pong and sends the next ping, a frame built directly as the
hot text frames are (`frames.client_ping_frame`).

What goes on the wire is what websockets sends: a ping of four random bytes every
interval, and the connection failed with 1011 "keepalive ping timeout" when a pong has
not come by the time the next ping is due. That equals websockets' rule when
`ping_timeout` equals `ping_interval`, as `client._open` passes them; any other pair is
left to websockets' own task. The interval is read again at every ping (`ping_every`),
so a changed WebSocketPingInterval applies from the next ping, or at once through
`keepalive_changed`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import OPEN

from simulator.ocpp16.frames import client_ping_frame, ping_payload


class KeepaliveConnection(ClientConnection):
    """A client connection whose keepalive pings run on one timer handle (module doc)."""

    # The interval now (seconds; 0 or None: no pings), read at every ping; None: the
    # `ping_interval` given to `connect`.
    ping_every: Callable[[], float | None] | None = None
    # The interval whose ping went without a pong, once the connection is failed for it.
    pong_missed: float | None = None
    _keepalive_timer: asyncio.TimerHandle | None = None
    _ping_out: bytes | None = None  # our last ping's payload (in `pending_pings` until its pong)
    # Within how long that ping's pong is due (the interval when it went; None: never).
    _pong_within: float | None = None
    _keepalive_failing: asyncio.Task[None] | None = None
    # What our pings put in `pending_pings` for websockets' `acknowledge_pings`: a future
    # already done. It records the latency as for any ping, and nobody awaits our pongs, so
    # no future is made per ping and none is left failed, unread, when the connection ends.
    _answered: asyncio.Future[float] | None = None

    def start_keepalive(self) -> None:
        if self.ping_timeout is not None and self.ping_timeout != self.ping_interval:
            super().start_keepalive()  # a rule this class does not keep: websockets' task
            return
        self._arm(self._interval())

    def keepalive_changed(self) -> None:
        """The interval changed: the next ping comes one new interval from now (none at 0),
        its pong due within that interval, as `_open` sets them. A ping still waiting for
        its pong keeps its deadline; the new interval follows it."""
        if self.keepalive_task is not None or self.protocol._state is not OPEN:
            return
        every = self._interval() or None
        if every == self.ping_interval and (every is None or self._keepalive_timer is not None):
            return  # the interval in force (a change refused, or to the same value)
        self.ping_interval = self.ping_timeout = every
        if self._ping_out is not None and self._ping_out in self.pending_pings:
            return
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        self._arm(every)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        super().connection_lost(exc)

    def _interval(self) -> float | None:
        source = self.ping_every
        return self.ping_interval if source is None else source()

    def _arm(self, every: float | None) -> None:
        if every:
            self._keepalive_timer = self.loop.call_later(every, self._keepalive_due)

    def _keepalive_due(self) -> None:
        self._keepalive_timer = None
        if self.protocol._state is not OPEN:
            return  # closing: `connection_lost` follows
        out = self._ping_out
        if out is not None and out in self.pending_pings and self._pong_within is not None:
            self.pong_missed = self._pong_within
            self._keepalive_failing = self.loop.create_task(self._fail_keepalive())
            return
        every = self._interval()
        if not every:  # switched off (WebSocketPingInterval 0) until `keepalive_changed`
            self.ping_interval = self.ping_timeout = None
            return
        self.ping_interval = every
        if self.ping_timeout is not None:
            self.ping_timeout = every
        self._ping_out = self._send_ping()
        self._pong_within = self.ping_timeout
        if self._ping_out is not None:
            self._keepalive_timer = self.loop.call_later(every, self._keepalive_due)

    def _send_ping(self) -> bytes | None:
        pending: dict[Any, Any] = self.pending_pings
        data = ping_payload()
        while data in pending:
            data = ping_payload()
        if not self.write_control(client_ping_frame(data)):
            return None
        answered = self._answered
        if answered is None:
            answered = self._answered = self.loop.create_future()
            answered.set_result(0.0)
        pending[data] = (answered, self.loop.time())
        return data

    def write_control(self, frame: bytes) -> bool:
        """Write a control frame now (a ping or a pong: RFC 6455 lets them go between the
        frames of a message, and websockets writes them whatever the back-pressure); False
        if the write failed, which ends the connection as websockets' `send_context`
        would."""
        try:
            self.transport.write(frame)
        except Exception as exc:
            self.set_connection_exc(exc)
            self.transport.abort()
            return False
        return True

    async def _fail_keepalive(self) -> None:
        # websockets' own ending of `Connection.keepalive`: close with 1011, then wait (at
        # most `close_timeout`) for the connection to end.
        try:
            async with self.send_context():
                self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        except ConnectionClosed:
            pass
