"""A streamed response waits for its reader (chargesim_site/daphne_backpressure.py), on a
real Daphne over a real socket: a reader that stops reading holds the stream still instead
of having the web process buffer everything, and gets all of it once it reads again."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests import streaming_app
from tests.process import ROOT, daphne_app

TOTAL = streaming_app.CHUNKS * streaming_app.CHUNK_BYTES


@pytest.fixture
def server():
    with daphne_app("tests.streaming_app:application") as port:
        yield port


def count(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10) as response:
        return int(response.read())


def settled_count(port: int) -> int:
    """The app's count once it has stopped moving for a second (or reached the end): the
    poll waits for the app, it times nothing."""
    last, still = -1, 0
    while still < 5:
        time.sleep(0.2)
        now = count(port)
        still = still + 1 if now == last else 0
        last = now
        if now == streaming_app.CHUNKS:
            break
    return last


def test_a_reader_that_stops_reading_holds_the_stream_still_and_loses_nothing(server):
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    reader.connect(("127.0.0.1", server))
    with reader:
        reader.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        held = settled_count(server)
        # Without the pacing Daphne takes all 64 MiB into memory at once; with it, what is
        # handed over is what the socket's buffers hold (a few MiB at most).
        assert 0 < held < streaming_app.CHUNKS // 4
        received = bytearray()
        while chunk := reader.recv(1 << 20):
            received += chunk
            if received.endswith(b"0\r\n\r\n"):  # the chunked encoding's last chunk
                break
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    data = _unchunk(body)
    assert len(data) == TOTAL
    size = streaming_app.CHUNK_BYTES
    assert all(
        data[n * size : (n + 1) * size] == streaming_app.chunk(n)
        for n in range(streaming_app.CHUNKS)
    )
    assert count(server) == streaming_app.CHUNKS


def _unchunk(body: bytes) -> bytes:
    out, at = bytearray(), 0
    while True:
        end = body.index(b"\r\n", at)
        size = int(body[at:end], 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        at = end + 2 + size + 2


def test_the_site_installs_the_pacing():
    # In a process of its own: this one has the pacing already (tests.streaming_app).
    check = (
        "import chargesim_site.asgi; from daphne.server import Server; "
        "print(getattr(Server, 'paces_responses', False))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "True"
