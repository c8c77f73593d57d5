"""A CSMS's HTTP hook on loopback (what a scenario's `trigger` step calls), whose answer to
each request the test decides: a status, or a connection closed without one."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextlib.contextmanager
def http_hook(answer: Callable[[str], int | None]) -> Iterator[str]:
    """A server on a free port of 127.0.0.1 that calls `answer(path)` for each request and
    answers with the status it returns, or closes the connection unanswered for None (a
    hook that cannot be reached, as the step sees it). Yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            status = answer(self.path)
            if status is None:
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            return None  # not on the test's stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="http-hook", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
