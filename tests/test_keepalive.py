"""Keepalive pings on one timer per connection (simulator/ocpp16/keepalive.py): what goes on
the wire is websockets' own rule, and WebSocketPingInterval is followed as it changes.

Over real loopback WebSockets: a websockets server that counts the pings it gets and may
stop answering them, and the built-in CSMS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ocpp.v16 import call
from prometheus_client import REGISTRY
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Event, State
from websockets.typing import Subprotocol

from simulator.core.charge_point import Charger, Listener
from simulator.ocpp16.client import OcppConnection, connect
from tests.engine import connected, runtime_charger, wait_until

TIMEOUTS = "chargesim_keepalive_timeouts_total"


class Server:
    def __init__(self) -> None:
        self.connections: list[Pinged] = []
        self.deaf = False

    async def handler(self, connection: ServerConnection) -> None:
        assert isinstance(connection, Pinged)
        connection.deaf = self.deaf  # from now on: the handshake is done
        await connection.wait_closed()

    @property
    def pings(self) -> list[bytes]:
        return [ping for c in self.connections for ping in c.pings]


class Pinged(ServerConnection):
    """A server connection that records the pings it receives and, once `deaf`, sends
    nothing (so no pong)."""

    peer: Server  # set on a subclass per test (`serve` takes a class)
    deaf = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []
        self.peer.connections.append(self)

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            self.pings.append(bytes(event.data))
        if isinstance(event, Frame) and event.opcode is Opcode.PONG:
            self.pongs.append(bytes(event.data))
        super().process_event(event)

    def send_data(self) -> None:
        if self.deaf:
            self.protocol.data_to_send()  # dropped: the pong goes nowhere
            return
        super().send_data()


@contextlib.asynccontextmanager
async def serving(ping_interval: float | None = None) -> AsyncIterator[tuple[Server, str]]:
    peer = Server()

    class Here(Pinged):
        pass

    Here.peer = peer

    async with serve(
        peer.handler,
        "127.0.0.1",
        0,
        compression=None,
        subprotocols=[Subprotocol("ocpp1.6")],
        create_connection=Here,
        ping_interval=ping_interval,
        ping_timeout=1.0,
    ) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        yield peer, f"ws://127.0.0.1:{port}"


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    async with serving() as served:  # no pings of its own: only the client's are counted
        yield served


def client_to(url: str, every: float | None, **options: Any) -> Any:
    return connect(
        url,
        create_connection=OcppConnection,
        compression=None,
        subprotocols=[Subprotocol("ocpp1.6")],
        ping_interval=every,
        ping_timeout=every,  # as `_open` passes them
        **options,
    )


async def test_pings_go_every_interval_and_their_pongs_are_read(
    server: tuple[Server, str],
) -> None:
    peer, url = server
    async with client_to(url, 0.1) as client:
        await wait_until(lambda: len(peer.pings) >= 4, message="four pings")
        assert client.keepalive_task is None  # websockets' task per connection is not made
        assert all(len(ping) == 4 for ping in peer.pings)  # websockets' payload size
        assert len(set(peer.pings)) == len(peer.pings)
        await wait_until(lambda: not client.pending_pings, message="the last pong")
        assert client.latency > 0  # measured from our pings' pongs
        assert client.protocol.state is State.OPEN
        assert client.pong_missed is None


async def test_no_pong_within_the_interval_fails_the_connection_with_1011(
    server: tuple[Server, str],
) -> None:
    peer, url = server
    peer.deaf = True
    async with client_to(url, 0.2, close_timeout=0.2) as client:
        await asyncio.wait_for(client.wait_closed(), 5.0)
        assert client.protocol.close_sent is not None
        assert client.protocol.close_sent.code == CloseCode.INTERNAL_ERROR
        assert client.protocol.close_sent.reason == "keepalive ping timeout"
        assert client.pong_missed == 0.2
        assert len(peer.pings) == 1  # the next ping was due when its pong was missed


async def test_a_ping_keeps_its_deadline_when_the_interval_changes(
    server: tuple[Server, str],
) -> None:
    """Changed (or switched off) while a ping waits for its pong: that pong is still due
    within the interval the ping went with, and the failure names that interval."""
    peer, url = server
    peer.deaf = True
    every = [0.3]
    async with client_to(url, 0.3, close_timeout=0.2) as client:
        assert isinstance(client, OcppConnection)
        client.ping_every = lambda: every[0]
        await wait_until(lambda: len(peer.pings) == 1, message="the first ping")
        every[0] = 0.0
        client.keepalive_changed()
        await asyncio.wait_for(client.wait_closed(), 5.0)
        assert client.pong_missed == 0.3
        assert client.protocol.close_sent is not None
        assert client.protocol.close_sent.code == CloseCode.INTERNAL_ERROR


async def test_a_pong_is_read_whole_or_cut_anywhere(server: tuple[Server, str]) -> None:
    """A pong alone in a chunk is read without websockets' parser; cut, or after other
    frames, websockets reads it: the ping is acknowledged either way."""
    peer, url = server
    peer.deaf = True
    async with client_to(url, None, close_timeout=0.1) as client:
        assert isinstance(client, OcppConnection)
        client.text_sink = lambda data: False
        pong = Frame(Opcode.PONG, b"").serialize(mask=False)
        for cut in range(len(pong) + 4):
            client.ping_every = lambda: 30.0
            data = client._send_ping()
            assert data is not None and data in client.pending_pings
            whole = Frame(Opcode.PONG, data).serialize(mask=False)
            assert len(whole) == len(pong) + 4
            client.data_received(whole[:cut])
            if cut < len(whole):
                client.data_received(whole[cut:])
            assert data not in client.pending_pings, cut
            if cut == 0:  # whole: websockets' parser was not fed, so it is still idle
                assert client._idle_parser is client.protocol.parser
        assert client.protocol.state is State.OPEN


async def test_a_ping_that_cannot_be_written_ends_the_connection(
    server: tuple[Server, str],
) -> None:
    _, url = server
    async with client_to(url, None, close_timeout=0.1) as client:
        assert isinstance(client, OcppConnection)

        def broken(data: Any) -> None:
            raise OSError("the socket is gone")

        client.transport.write = broken  # type: ignore[method-assign]
        assert client._send_ping() is None
        await asyncio.wait_for(client.wait_closed(), 5.0)
        assert isinstance(client.connection_exc, OSError)
        assert not client.pending_pings


async def test_the_interval_can_be_switched_on_off_and_on_again(
    server: tuple[Server, str],
) -> None:
    peer, url = server
    every: list[float] = [0.0]
    async with client_to(url, None) as client:
        assert isinstance(client, OcppConnection)
        client.ping_every = lambda: every[0]
        client.keepalive_changed()
        await asyncio.sleep(0.3)
        assert peer.pings == []  # off at connect, and still off
        every[0] = 0.1
        client.keepalive_changed()
        await wait_until(lambda: len(peer.pings) >= 2, message="pings once switched on")
        every[0] = 0.0  # read at the next ping: none after it
        await wait_until(lambda: client.ping_interval is None, message="switched off")
        seen = len(peer.pings)
        await asyncio.sleep(0.3)
        assert len(peer.pings) == seen
        every[0] = 0.1
        client.keepalive_changed()
        await wait_until(lambda: len(peer.pings) >= seen + 2, message="pings again")


async def test_the_csms_pings_are_answered() -> None:
    async with serving(ping_interval=0.1) as (peer, url), client_to(url, None) as client:
        await wait_until(lambda: len(peer.connections[0].pongs) >= 3, message="three pongs")
        assert peer.connections[0].latency > 0  # its pings acknowledged by our pongs
        assert client.protocol.state is State.OPEN


async def test_a_ping_is_answered_whole_or_cut_anywhere(server: tuple[Server, str]) -> None:
    """A ping alone in a chunk is answered without websockets' parser; cut, websockets
    answers it: the same pong either way, in order."""
    peer, url = server
    async with client_to(url, None) as client:
        assert isinstance(client, OcppConnection)
        client.text_sink = lambda data: False
        sent = []
        for cut in range(8):
            payload = b"ping-%d" % cut
            ping = Frame(Opcode.PING, payload).serialize(mask=False)
            client.data_received(ping[:cut])
            if cut < len(ping):
                client.data_received(ping[cut:])
            if cut == 0:  # whole: websockets' parser was not fed, so it is still idle
                assert client._idle_parser is client.protocol.parser
            sent.append(payload)
        await wait_until(lambda: len(peer.connections[0].pongs) == len(sent), message="pongs")
        assert peer.connections[0].pongs == sent
        assert client.protocol.state is State.OPEN


class Connections(Listener):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_connection(self, charger: Charger, event: str, detail: dict[str, Any]) -> None:
        self.events.append((event, detail))


async def test_a_charger_whose_csms_stops_answering_pings_says_so_and_reconnects(
    server: tuple[Server, str],
) -> None:
    peer, url = server
    peer.deaf = True
    events = Connections()
    charger = runtime_charger(
        "CP-DEAF", url, listener=events, config={"WebSocketPingInterval": "1"}
    )
    before = REGISTRY.get_sample_value(TIMEOUTS) or 0.0
    async with connected(charger, booted=False):
        await wait_until(
            lambda: len(peer.connections) >= 2, timeout=10.0, message="a second connection"
        )
    closed = [detail for event, detail in events.events if event == "closed"]
    assert closed and closed[0]["summary"] == "no pong to a keepalive ping within 1 s"
    missed = [detail for detail in closed if detail["summary"].startswith("no pong")]
    assert REGISTRY.get_sample_value(TIMEOUTS) == before + len(missed)


@pytest.mark.django_db(transaction=True)
async def test_a_changed_websocket_ping_interval_applies_at_once(csms) -> None:
    charger = runtime_charger("CP-PING", csms.url)  # WebSocketPingInterval 60, the default
    async with connected(charger):
        connection = charger.transport._connection  # type: ignore[union-attr]
        assert isinstance(connection, OcppConnection)
        assert connection.ping_interval == 60
        answer = await csms.call("CP-PING", call.ChangeConfiguration("WebSocketPingInterval", "1"))
        assert answer.status == "Accepted"
        await wait_until(lambda: connection.ping_interval == 1, message="the new interval")
        # Pinged within seconds, not a minute: the pong's latency is measured.
        await wait_until(lambda: connection.latency > 0, timeout=5.0, message="a ping's pong")
        refused = await csms.call(
            "CP-PING", call.ChangeConfiguration("WebSocketPingInterval", "-5")
        )
        assert refused.status == "Rejected"
        assert connection.ping_interval == 1
        # An edit from the admin or the API reaches the charger as this call (live_fleet).
        assert charger.change_configuration("WebSocketPingInterval", "2") == "Accepted"
        assert connection.ping_interval == 2
        off = await csms.call("CP-PING", call.ChangeConfiguration("WebSocketPingInterval", "0"))
        assert off.status == "Accepted"
        await wait_until(lambda: connection.ping_interval is None, message="no pings")
        assert connection._keepalive_timer is None
