"""A streamed response goes out at its reader's pace, not into Daphne's memory.

Daphne hands each `http.response.body` to Twisted's `Request.write` and returns at once, so
an application streaming a response (the event stream, a message log exported as JSON
Lines) never learns that its reader stopped reading: Twisted buffers all of it in the web
process until the connection closes. Twisted already says when a connection's send buffer
is full: it pauses the producer registered on the request, and resumes it once the buffer
has drained. Here every response registers such a producer, and the application's
`await send(...)` of a body chunk waits while it is paused. A reader that stops reading
then holds its stream still (the event stream drops what it cannot deliver and says so
with its `dropped` event once the reader reads again), and costs the web process at most
one socket's buffers.

A dashboard page's WebSocket is paced the same way: Daphne hands each `websocket.send` to
autobahn, which writes it to the transport at once, so a page that stopped reading (a
frozen tab, a laptop asleep with its connection open) had every frame of a busy fleet
buffered in the web process (bench/stalled_dashboard.py: +0.34 MiB/s for as long as it
stayed; Daphne's keepalive ping ends such a socket after ~50 s only if the page sends
nothing). With the same producer on the socket's transport, `await send(...)` of a frame
waits while the transport's buffer is full, and the dashboard's consumer keeps only the
newest snapshot of each thing meanwhile (chargers/dashboard/backlog.py).
"""

from __future__ import annotations

import asyncio
from typing import Any


class SendBuffer:
    """A response's producer: paused while its connection's send buffer is full. Twisted
    calls these on the reactor's thread, which under Daphne is the asyncio loop's."""

    def __init__(self) -> None:
        self.paused = False
        self._drained: asyncio.Future[None] | None = None

    # Twisted's IPushProducer, by its names (Twisted calls them; it checks no declaration).
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._wake()

    def stopProducing(self) -> None:  # the connection is gone: nobody waits
        self.paused = False
        self._wake()

    async def drained(self) -> None:
        """Return once the reader has taken enough for more to be written."""
        while self.paused:
            if self._drained is None or self._drained.done():
                self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def _wake(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)


def pace_responses_to_readers() -> None:
    """Make Daphne's `send` of a body chunk wait while the reader is not reading.
    Idempotent."""
    try:
        from daphne.http_protocol import WebRequest
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # served by another ASGI server: nothing to change
        return
    if getattr(Server, "paces_responses", False):
        return
    request_reply = WebRequest.handle_reply
    server_reply = Server.handle_reply
    socket_reply = WebSocketProtocol.handle_reply

    def handle_reply(self: Any, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "http.response.start" and self.producer is None and self.channel is not None:
            self.send_buffer = SendBuffer()
            self.registerProducer(self.send_buffer, True)
        elif (
            kind == "http.response.body"
            and not message.get("more_body", False)
            and self.producer is not None
            and self.channel is not None
        ):
            self.unregisterProducer()  # before finish(), which may reuse the channel
        request_reply(self, message)

    def handle_socket_reply(self: Any, message: dict[str, Any]) -> None:
        socket_reply(self, message)
        transport = self.transport
        if message.get("type") == "websocket.accept" and transport is not None:
            # The transport's producer is still the HTTP channel the upgrade came through:
            # it has nothing more to send, and pausing it does not slow the application.
            if getattr(transport, "producer", None) is not None:
                transport.unregisterProducer()
            self.send_buffer = SendBuffer()
            transport.registerProducer(self.send_buffer, True)

    async def paced_reply(self: Any, protocol: Any, message: dict[str, Any]) -> None:
        await server_reply(self, protocol, message)
        buffer = getattr(protocol, "send_buffer", None)
        if buffer is not None and (
            message.get("more_body", False) or message.get("type") == "websocket.send"
        ):
            await buffer.drained()

    WebRequest.handle_reply = handle_reply
    WebSocketProtocol.handle_reply = handle_socket_reply
    Server.handle_reply = paced_reply
    Server.paces_responses = True
