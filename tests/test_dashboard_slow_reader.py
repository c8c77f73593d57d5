"""A dashboard page that stops reading its socket, on a real `runsimulator` (Daphne) with a
busy fleet: the web process does not buffer what the page cannot take (its memory grew by
each frame the fleet published, bench/stalled_dashboard.py); the socket is closed with
FELL_BEHIND once MAX_BEHIND updates passed it by, while a page that reads stays live."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from chargers.dashboard.backlog import MAX_BEHIND
from tests.browser import DemoSite, demo_site
from tests.web_session import log_in

PASSWORD = "pw-slow-reader-1"
CHARGERS = 80

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[DemoSite]:
    with demo_site(tmp_path_factory.mktemp("slow"), PASSWORD, CHARGERS, share=1) as running:
        yield running


def held_by_server(server_port: int, client_port: int) -> bool:
    """Whether the server's end of the connection from `client_port` is still open."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return fields[3] == "01"  # ESTABLISHED
    return False


async def open_page(site: DemoSite, session: str, *, stalled: bool = False):
    from websockets.asyncio.client import connect

    host = site.url.removeprefix("http://")
    sock = socket.socket()
    if stalled:  # a small window: what the client's kernel holds is small too
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(host.rsplit(":", 1)[1])))
    return await connect(
        f"ws://{host}/ws/fleet/",
        sock=sock,
        additional_headers={"Origin": site.url, "Cookie": f"sessionid={session}"},
        max_queue=1 if stalled else 16,  # the library stops reading once one message waits
        ping_interval=None,  # its keepalive would end an unread socket itself
    )


async def stall(site: DemoSite, session: str) -> tuple[bool, int]:
    """A page that reads and one that stopped reading, watching the same chargers: whether
    the server still held the stalled one's connection once the reading one had got
    3 x MAX_BEHIND charger states, and how many states the reading one got by then."""
    watch = json.dumps({"type": "watch", "chargers": list(range(1, CHARGERS + 1))})
    port = int(site.url.rsplit(":", 1)[1])
    stalled = await open_page(site, session, stalled=True)
    client_port = stalled.transport.get_extra_info("sockname")[1]
    await stalled.send(watch)
    states = 0
    async with await open_page(site, session) as reader:
        await reader.send(watch)
        while states < 3 * MAX_BEHIND:
            message = json.loads(await asyncio.wait_for(reader.recv(), 30))
            if message["type"] != "charger.state":
                continue
            states += 1
            if states % 200 == 0:
                # A page that sends keeps Daphne from pinging it (a ping left unanswered
                # ends a socket that sends nothing): only the consumer's limit may end it.
                await stalled.send(watch)
                if not held_by_server(port, client_port):
                    break
    held = held_by_server(port, client_port)
    stalled.transport.abort()
    return held, states


def test_a_page_that_stops_reading_is_closed_after_max_behind_updates(site):
    session = log_in(site.url.removeprefix("http://"), PASSWORD)
    held, states = asyncio.run(stall(site, session))
    assert not held, f"still held after {states} updates"
    # Closed by the limit: after MAX_BEHIND updates passed it by, not at once.
    assert MAX_BEHIND // 2 < states <= 2 * MAX_BEHIND
    assert "took none of the last" in site.sim.output
