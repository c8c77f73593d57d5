"""The built-in CSMS's file server: firmware to download, diagnostics to upload, over HTTP.

A CSMS hands chargers URLs (UpdateFirmware's location, GetDiagnostics' location); this is
the server behind them for the demo and the tests: the standard library's threading HTTP
server on loopback, in a daemon thread (it never touches the event loop).

- GET /<name>: a file `publish`ed under that name (404 otherwise);
- PUT /<dir>/<name>: the body is kept in `received` under <name>;
- POST /<dir>: a multipart form's file part is kept under its file name;
- `failures[path] = n`: the next n requests for that path (or under it, for a path
  ending in "/") answer 503 (retries);
- `credentials = (user, password)`: every request needs that HTTP Basic login (401 else);
- `refuse_uploads = code`: every PUT and POST is answered with that status (405: a
  server that takes no uploads there; 400: one that finds them malformed);
- `ssl_context`: serve HTTPS.

Nothing here is secret-bearing: `received` holds what chargers sent, `requests` the
method and path of each request (never an Authorization header).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import http.server
import ssl
import threading
import time
from collections import Counter
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import unquote, urlsplit

MAX_UPLOAD = 64 * 1024 * 1024


class FileServer:
    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.published: dict[str, bytes] = {}
        self.received: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path), in order
        self.request_times: list[float] = []  # when each arrived (epoch seconds)
        self.failures: Counter[str] = Counter()
        self.credentials: tuple[str, str] | None = None
        self.refuse_uploads: int | None = None
        self.ssl_context = ssl_context
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        if self._server is not None:
            raise RuntimeError("FileServer already started")
        server = http.server.ThreadingHTTPServer((host, port), _handler(self))
        server.daemon_threads = True
        if self.ssl_context is not None:
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self.port

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FileServer:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FileServer not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # -- content -------------------------------------------------------------------------------

    def publish(self, name: str, data: bytes) -> str:
        """Serve `data` at /<name>; returns its URL."""
        self.published[name.lstrip("/")] = data
        return f"{self.url}/{name.lstrip('/')}"

    def wait_received(self, timeout: float = 5.0) -> dict[str, bytes]:
        """Block until something was uploaded (for threads; tests poll `received`)."""
        with self._changed:
            self._changed.wait_for(lambda: bool(self.received), timeout)
        return dict(self.received)

    # -- called by the request handler (server threads) ----------------------------------------

    def _keep(self, name: str, data: bytes) -> None:
        with self._changed:
            self.received[name] = data
            self._changed.notify_all()


def _handler(files: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "ChargeSimFiles/1"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the requests list is the log; nothing to stderr

        def _begin(self) -> str | None:
            path = unquote(urlsplit(self.path).path).lstrip("/")
            files.request_times.append(time.time())
            files.requests.append((self.command, path))
            if files.credentials is not None and not self._authorized():
                self._answer(401, b"login required\n", {"WWW-Authenticate": 'Basic realm="files"'})
                return None
            failing = next(
                (key for key, left in files.failures.items() if left > 0 and path.startswith(key)),
                None,
            )
            if failing is not None:
                files.failures[failing] -= 1
                self._answer(503, b"try again later\n")
                return None
            return path

        def _authorized(self) -> bool:
            assert files.credentials is not None
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return False
            try:
                given = base64.b64decode(header[6:], validate=True)
            except ValueError:
                return False
            wanted = ":".join(files.credentials).encode()
            return hmac.compare_digest(given, wanted)

        def _answer(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

        def _body(self) -> bytes | None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_UPLOAD:
                self._answer(413, b"a Content-Length up to 64 MiB is expected\n")
                return None
            return self.rfile.read(length)

        def do_GET(self) -> None:
            path = self._begin()
            if path is None:
                return
            data = files.published.get(path)
            if data is None:
                self._answer(404, b"not found\n")
                return
            self._answer(200, data, {"Content-Type": "application/octet-stream"})

        def _upload(self) -> tuple[str, bytes] | None:
            """The path and body of an upload, or None once refused (answered already)."""
            path = self._begin()
            body = None if path is None else self._body()
            if body is not None and files.refuse_uploads is not None:
                self._answer(files.refuse_uploads, b"no uploads here\n")
                return None
            return None if path is None or body is None else (path, body)

        def do_PUT(self) -> None:
            upload = self._upload()
            if upload is not None:
                files._keep(upload[0].rpartition("/")[2], upload[1])
                self._answer(201, b"stored\n")

        def do_POST(self) -> None:
            upload = self._upload()
            if upload is None:
                return
            body = upload[1]
            content_type = self.headers.get("Content-Type", "")
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body
            )
            stored = 0
            if message.is_multipart():
                for part in message.iter_parts():
                    name = part.get_filename()
                    if name:
                        payload = part.get_payload(decode=True)
                        files._keep(unquote(name), payload if isinstance(payload, bytes) else b"")
                        stored += 1
            if not stored:
                self._answer(400, b"a multipart form with a file is expected\n")
                return
            self._answer(201, b"stored\n")

    return Handler
