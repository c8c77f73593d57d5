"""The charger's file transfers (`runtime.transfers.FileTransfers`) against hostile HTTP
servers on loopback: a redirect to another host, a server that trickles its answer."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from simulator.core.transfer import TransferFailed
from simulator.runtime.transfers import FileTransfers

Handle = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextlib.contextmanager
def serving(handle: Handle) -> Iterator[tuple[str, list[str | None]]]:
    """An HTTP server on 127.0.0.1 answering every GET and PUT with `handle`; its base URL, and the
    Authorization header of every request it got."""
    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            handle(self)

        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def image(request: http.server.BaseHTTPRequestHandler) -> None:
    request.send_response(200)
    request.send_header("Content-Length", "5")
    request.end_headers()
    request.wfile.write(b"image")


async def test_a_redirect_to_another_host_never_carries_the_urls_login():
    # "localhost" is another host to the client than "127.0.0.1", on the same loopback.
    with serving(image) as (elsewhere, elsewhere_saw):
        target = elsewhere.replace("127.0.0.1", "localhost") + "/fw.bin"

        def redirect(request: http.server.BaseHTTPRequestHandler) -> None:
            request.send_response(302)
            request.send_header("Location", target)
            request.send_header("Content-Length", "0")
            request.end_headers()

        with serving(redirect) as (origin, origin_saw):
            url = origin.replace("://", "://charger:s3cret@") + "/fw.bin"
            assert await FileTransfers(timeout=5.0).download(url) == b"image"
    assert origin_saw[0] is not None  # the login went where the URL named it
    assert elsewhere_saw == [None]  # and not to the host it redirected to


async def test_a_redirect_on_the_same_host_keeps_the_login():
    def handle(request: http.server.BaseHTTPRequestHandler) -> None:
        if request.path == "/old.bin":
            request.send_response(301)
            request.send_header("Location", "/new.bin")
            request.send_header("Content-Length", "0")
            request.end_headers()
        else:
            image(request)

    with serving(handle) as (base, saw):
        url = base.replace("://", "://charger:s3cret@") + "/old.bin"
        assert await FileTransfers(timeout=5.0).download(url) == b"image"
    assert len(saw) == 2 and saw[0] == saw[1] is not None


def drip(request: http.server.BaseHTTPRequestHandler, stop: threading.Event) -> None:
    """A byte every 50 ms, well inside any socket timeout, until `stop` (or the client
    goes away): a server that never ends what it sends."""
    with contextlib.suppress(OSError):
        while not stop.is_set():
            request.wfile.write(b"x")
            request.wfile.flush()
            time.sleep(0.05)


async def test_a_server_trickling_its_answer_is_cut_off_at_max_seconds():
    stop = threading.Event()

    def trickle(request: http.server.BaseHTTPRequestHandler) -> None:
        # A byte at a time, well inside the socket timeout, of a file that never ends.
        request.send_response(200)
        request.send_header("Content-Length", str(1_000_000))
        request.end_headers()
        drip(request, stop)

    transfers = FileTransfers(timeout=5.0, max_seconds=0.5)
    with serving(trickle) as (base, _):
        try:
            # The bound only keeps a failing run from waiting for the file's 14 hours.
            with pytest.raises(TransferFailed, match="took too long"):
                await asyncio.wait_for(transfers.download(f"{base}/fw.bin"), 30)
        finally:
            stop.set()


@pytest.mark.parametrize("what", ["download", "upload"])
async def test_a_server_trickling_its_headers_is_cut_off_at_max_seconds(what):
    stop = threading.Event()

    def trickle(request: http.server.BaseHTTPRequestHandler) -> None:
        # A status line, then one header that never ends, a byte well inside the timeout.
        with contextlib.suppress(OSError):
            request.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        drip(request, stop)

    transfers = FileTransfers(timeout=5.0, max_seconds=0.5)
    with serving(trickle) as (base, _):
        transfer: Coroutine[Any, Any, object]
        if what == "download":
            transfer = transfers.download(f"{base}/fw.bin")
        else:
            transfer = transfers.upload(f"{base}/uploads/", "diagnostics.json", b"{}")
        try:
            # The bound only keeps a failing run from waiting as long as the server likes.
            with pytest.raises(TransferFailed, match=f"the {what} took too long"):
                await asyncio.wait_for(transfer, 30)
        finally:
            stop.set()


def answering(raw: bytes) -> Handle:
    """A handler that answers with `raw`, as it is, and hangs up."""

    def handle(request: http.server.BaseHTTPRequestHandler) -> None:
        request.wfile.write(raw)
        request.close_connection = True

    return handle


NO_STATUS_LINE = b"garbage\r\n\r\n"
TOO_MANY_HEADERS = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n"
BAD_CHUNK = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"


@pytest.mark.parametrize(
    ("what", "raw"),
    [
        ("download", NO_STATUS_LINE),
        ("download", TOO_MANY_HEADERS),
        ("download", BAD_CHUNK),
        ("upload", NO_STATUS_LINE),  # an upload reads the answer's head, not its body
        ("upload", TOO_MANY_HEADERS),
    ],
)
async def test_a_server_answering_no_http_fails_the_transfer(raw, what):
    # http.client raises HTTPException for these, which is no OSError: the transfer must
    # still fail as TransferFailed, or the charger's job dies and it never reports.
    transfers = FileTransfers(timeout=5.0)
    with (
        serving(answering(raw)) as (base, _),
        pytest.raises(TransferFailed, match=r"^http://127\.0\.0\.1:\d+/"),
    ):
        if what == "download":
            await transfers.download(f"{base}/fw.bin")
        else:
            await transfers.upload(f"{base}/uploads/", "diagnostics.json", b"{}")


async def test_a_download_cut_short_of_its_content_length_fails():
    # The server announces 100 bytes, sends 5 and hangs up: that is no image to install.
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
    with (
        serving(answering(raw)) as (base, _),
        pytest.raises(TransferFailed, match="closed after 5 of 100 bytes"),
    ):
        await FileTransfers(timeout=5.0).download(f"{base}/fw.bin")
    # A whole file of the announced length is the file.
    whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwhole"
    with serving(answering(whole)) as (base, _):
        assert await FileTransfers(timeout=5.0).download(f"{base}/fw.bin") == b"whole"


async def test_a_login_with_a_slash_in_its_password_is_not_quoted_in_the_failure():
    """QA: "user:pa/ss@host" (the "/" not encoded) failed with "<unreadable URL>:
    nonnumeric port: 'pa'": the start of the password, in the log and the charger's
    status message."""
    with pytest.raises(TransferFailed) as failed:
        await FileTransfers().download("http://user:pa/ss@127.0.0.1:1/x")
    assert "pa" not in str(failed.value).replace("password", "")
    assert "port cannot be read" in str(failed.value)


async def test_a_redirect_loop_fails_on_one_line():
    """QA: urllib's reason for a redirect loop ran over three lines ("The last 30x error
    message was:\\nFound") into the log line and the charger's status message."""

    def loop(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", handler.path)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with serving(loop) as (base, _seen), pytest.raises(TransferFailed) as failed:
        await FileTransfers().download(f"{base}/again")
    assert "HTTP 302" in str(failed.value)
    assert "\n" not in str(failed.value)
