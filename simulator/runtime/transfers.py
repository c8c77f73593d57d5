"""Moving firmware and diagnostics files for the chargers: HTTP(S) and FTP, off the loop.

`FileTransfers` is the `simulator.core.transfer.Transfers` the runtime gives every charger.
The standard library's clients (urllib, ftplib) run in a worker thread each, with socket
timeouts, so a slow or silent server never holds up the event loop that runs the fleet;
the charger gives up on a transfer after `max_seconds`, however slowly the server trickles. No credentials ever reach a log line or an
error message: URLs are shown without their user information.

- Download: http(s):// GET (user:password in the URL becomes HTTP Basic), ftp:// RETR
  (anonymous unless the URL names a user); at most `max_bytes`.
- Upload: the location is a directory (1.6: "the location where the diagnostics file shall
  be uploaded to"): http(s) PUT to location/<file name>, or POST of a multipart form to
  the location itself (field `file`); ftp:// STOR <file name> in the location's directory.
- `journal`: what the process kept of a charger for a diagnostics file: its log lines
  (`LogJournal`, a logging handler on the `simulator` loggers) and its OCPP frames (the
  dashboard's bounded, redacted frame log).
"""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import http.client
import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from simulator.contract.url_login import basic_login, without_login
from simulator.core.clock import now_iso
from simulator.core.transfer import TransferFailed

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0  # seconds, per socket operation
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS = 600.0  # a whole transfer, however slowly the server trickles
_USER_AGENT = "ChargeSim"
# What an FTP exchange may raise: the protocol's errors and the socket's (`all_errors`), and
# the ValueError of a command ftplib refuses to send, a user name or path with a line break
# in it (ftp://host/a%0D%0ADELE%20b): a CSMS's URL like any other that cannot be used.
_FTP_ERRORS: tuple[type[Exception], ...] = (*ftplib.all_errors, ValueError)

# (time, "in"/"out", frame text), newest last
Frame = tuple[float, str, str]


def shown(url: str) -> str:
    """A URL for a message: without user name and password. A text that is no URL with a
    scheme and a host (a CSMS's "not a url") is shown as given, quoted, less anything up to
    an "@" (which might be a login): rebuilt from its parts it read "://not a url"."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unreadable URL>"
    if not parts.scheme or not parts.netloc:
        return repr(url.rpartition("@")[2][:200])
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{parts.scheme}://{netloc}{parts.path}"


class LogJournal(logging.Handler):
    """The process's recent log lines, for the diagnostics files of its chargers.

    One bounded deque for all (lines are few next to frames); a charger's lines are those
    that start with its charge point id and a colon, as every engine log line does."""

    def __init__(self, limit: int = 5000) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[tuple[float, str, str]] = deque(maxlen=limit)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append((record.created, record.levelname, record.getMessage()))
        except Exception:  # a log line must never break what logged it
            self.handleError(record)

    def of(self, charge_point_id: str) -> list[tuple[float, str, str]]:
        prefix = f"{charge_point_id}:"
        return [line for line in self.lines if line[2].startswith(prefix)]


class FileTransfers:
    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        frames: Callable[[str], Iterable[Frame]] | None = None,
        log_journal: LogJournal | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.frames = frames
        self.log_journal = log_journal

    # -- the Transfers interface ---------------------------------------------------------------

    async def download(self, url: str, *, ca_bundle: str = "") -> bytes:
        scheme = _scheme(url)
        if scheme == "ftp":
            return await self._within_time(url, "download", self._ftp_get, url)
        return await self._within_time(url, "download", self._http_get, url, ca_bundle)

    async def upload(
        self, url: str, file_name: str, data: bytes, *, method: str = "PUT", ca_bundle: str = ""
    ) -> None:
        scheme = _scheme(url)
        if scheme == "ftp":
            await self._within_time(url, "upload", self._ftp_put, url, file_name, data)
        elif method.upper() == "POST":
            await self._within_time(url, "upload", self._http_post, url, file_name, data, ca_bundle)
        else:
            await self._within_time(url, "upload", self._http_put, url, file_name, data, ca_bundle)

    async def _within_time(
        self, url: str, what: str, function: Callable[..., Any], *args: Any
    ) -> Any:
        """A transfer run in its thread, given up after `max_seconds` whatever it waits for.

        The body of a download is measured as it arrives (`_Limit`), but a server may
        trickle its status line and headers, or an upload's answer, a byte inside every
        socket timeout: nothing else ends that. The thread given up on is left to end on
        its own (`_in_thread`); the charger goes on to its next attempt or its failure."""
        deadline = asyncio.timeout(self.max_seconds)
        try:
            async with deadline:
                return await _in_thread(function, *args)
        except TimeoutError:
            if not deadline.expired():  # not ours (the threads turn theirs into TransferFailed)
                raise
            raise TransferFailed(f"{shown(url)}: the {what} took too long") from None

    def journal(
        self, charge_point_id: str, start: float | None, stop: float | None
    ) -> dict[str, Any]:
        def within(moment: float) -> bool:
            return (start is None or moment >= start) and (stop is None or moment <= stop)

        lines = self.log_journal.of(charge_point_id) if self.log_journal is not None else []
        frames = list(self.frames(charge_point_id)) if self.frames is not None else []
        return {
            "log": [[_iso(at), level, text] for at, level, text in lines if within(at)],
            "frames": [[_iso(at), way, text] for at, way, text in frames if within(at)],
        }

    # -- HTTP(S) -------------------------------------------------------------------------------

    def _http_get(self, url: str, ca_bundle: str) -> bytes:
        request = urllib.request.Request(without_login(url), headers=_headers(url))
        limit = _Limit(url, self.max_bytes, self.max_seconds)
        chunks = []
        with self._open(request, url, ca_bundle) as response:
            try:
                # read1: what one receive brings. read(n) waits for all n bytes, so a server
                # trickling a byte at a time inside the socket timeout was never measured
                # against max_seconds and held the charger in Downloading for weeks.
                while chunk := response.read1(65_536):
                    limit.take(len(chunk))
                    chunks.append(chunk)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                raise TransferFailed(f"{shown(url)}: {_reason(exc)}") from None
            expected = _content_length(response.headers.get("Content-Length"))
        if expected is not None and limit.size != expected:
            # The connection closed early: http.client ends the read quietly there, and a
            # truncated image was reported Downloaded and installed.
            raise TransferFailed(
                f"{shown(url)}: the connection closed after {limit.size} of {expected} bytes"
            )
        return b"".join(chunks)

    def _http_put(self, url: str, file_name: str, data: bytes, ca_bundle: str) -> None:
        target = _join(url, file_name)
        headers = {**_headers(url), "Content-Type": "application/octet-stream"}
        request = urllib.request.Request(
            without_login(target), data=data, headers=headers, method="PUT"
        )
        with self._open(request, target, ca_bundle):
            pass

    def _http_post(self, url: str, file_name: str, data: bytes, ca_bundle: str) -> None:
        boundary = uuid.uuid4().hex
        body = b"".join(
            (
                f"--{boundary}\r\n".encode(),
                f'Content-Disposition: form-data; name="file"; filename="{quote(file_name)}"\r\n'.encode(),
                b"Content-Type: application/octet-stream\r\n\r\n",
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            )
        )
        headers = {
            **_headers(url),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        }
        request = urllib.request.Request(
            without_login(url), data=body, headers=headers, method="POST"
        )
        with self._open(request, url, ca_bundle):
            pass

    def _open(self, request: urllib.request.Request, url: str, ca_bundle: str) -> Any:
        context = None
        if url.lower().startswith("https://"):
            try:
                context = ssl.create_default_context(cafile=ca_bundle or None)
            except (OSError, ssl.SSLError) as exc:
                raise TransferFailed(f"CA bundle {ca_bundle} cannot be read ({exc})") from None
        handlers: list[urllib.request.BaseHandler] = [_Redirects()]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        try:
            return urllib.request.build_opener(*handlers).open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response, and with it the socket
            raise TransferFailed(
                f"{shown(url)}: HTTP {exc.code} {_first_line(str(exc.reason))}", status=exc.code
            ) from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            # HTTPException (no status line, too many headers, a broken chunk) is no
            # OSError: uncaught, it ended the charger's job with its status left open.
            raise TransferFailed(f"{shown(url)}: {_reason(exc)}") from None

    # -- FTP -----------------------------------------------------------------------------------

    def _ftp_get(self, url: str) -> bytes:
        parts = urlsplit(url)
        chunks: list[bytes] = []
        limit = _Limit(url, self.max_bytes, self.max_seconds)

        def keep(chunk: bytes) -> None:
            limit.take(len(chunk))
            chunks.append(chunk)

        path = unquote(parts.path).lstrip("/")
        with self._ftp(url) as ftp:
            try:
                ftp.retrbinary(f"RETR {path}", keep)
            except _FTP_ERRORS as exc:
                raise TransferFailed(f"{shown(url)}: {_reason(exc)}") from None
        return b"".join(chunks)

    def _ftp_put(self, url: str, file_name: str, data: bytes) -> None:
        parts = urlsplit(url)
        directory = [unquote(p) for p in parts.path.split("/") if p]
        with self._ftp(url) as ftp:
            try:
                for segment in directory:
                    ftp.cwd(segment)
                ftp.storbinary(f"STOR {file_name}", _Reader(data))
            except _FTP_ERRORS as exc:
                raise TransferFailed(
                    f"{shown(url)}: {_reason(exc)}", status=_ftp_code(exc)
                ) from None

    def _ftp(self, url: str) -> ftplib.FTP:
        parts = urlsplit(url)
        ftp = ftplib.FTP(timeout=self.timeout)
        try:
            ftp.connect(parts.hostname or "", parts.port or 21)
            ftp.login(unquote(parts.username or "anonymous"), unquote(parts.password or ""))
        except _FTP_ERRORS as exc:
            ftp.close()
            raise TransferFailed(f"{shown(url)}: {_reason(exc)}", status=_ftp_code(exc)) from None
        return ftp


class _Redirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, but the login in the URL goes only where the URL sent it.

    urllib copies every header to the redirect's target, Authorization too: a file server
    (or whoever answers in its name) that redirects elsewhere would hand the charger's
    password to another host. As curl and browsers do, it is dropped once the target's
    scheme, host or port is not the one the URL named."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL (the scheme's port when it names none)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # an unreadable port: an origin no other URL has
        port = -1
    return scheme, parts.hostname or "", _DEFAULT_PORTS.get(scheme) if port is None else port


class _Limit:
    """The size and time a download may take, checked as its blocks arrive."""

    def __init__(self, url: str, max_bytes: int, max_seconds: float) -> None:
        self.url = url
        self.max_bytes = max_bytes
        self.deadline = time.monotonic() + max_seconds
        self.size = 0

    def take(self, size: int) -> None:
        self.size += size
        if self.size > self.max_bytes:
            raise TransferFailed(f"{shown(self.url)} is larger than {self.max_bytes} bytes")
        if time.monotonic() > self.deadline:
            raise TransferFailed(f"{shown(self.url)}: the download took too long")


class _Reader:
    """bytes as the file object ftplib's storbinary reads blocks from."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        chunk = bytes(self._data[self._at : end])
        self._at += len(chunk)
        return chunk


def _scheme(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("http", "https", "ftp"):
        raise TransferFailed(f"unsupported location {shown(url)}: http, https or ftp only")
    return scheme


def _headers(url: str) -> dict[str, str]:
    return {"User-Agent": _USER_AGENT, **basic_login(url)}


def _join(url: str, file_name: str) -> str:
    """The file's URL in the location directory (query and fragment kept)."""
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return parts._replace(path=path + quote(file_name)).geturl()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc.reason, str):
        exc = exc.reason  # URLError wraps the OSError
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.BadStatusLine):  # its text is what the server sent
        return "the server's answer is not HTTP"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ValueError | http.client.InvalidURL) and "port" in str(exc).lower():
        # http.client's "nonnumeric port: 'pa'" quotes what it took for the port: in a
        # login with an unencoded "/" (user:pa/ss@host), the start of the password.
        return "its port cannot be read (a '/' in a password must be written %2F)"
    return _first_line(str(exc)) or type(exc).__name__


def _first_line(text: str) -> str:
    """A reason on one line, for a log line and a status message (urllib's redirect-loop
    reason runs over three)."""
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else ""


def _content_length(value: str | None) -> int | None:
    """A Content-Length header's size; None when there is none or it is no number."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _ftp_code(exc: BaseException) -> int | None:
    """The reply code of an FTP error (ftplib's message starts with it: "530 Login ...")."""
    if isinstance(exc, ftplib.Error):
        head = str(exc)[:3]
        if head.isdigit():
            return int(head)
    return None


def _iso(moment: float) -> str:
    return now_iso(datetime.fromtimestamp(moment, UTC))


async def _in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking transfer in a daemon thread of its own: unlike the loop's default
    executor, a transfer still running at exit (until its timeouts end it) never holds
    the process up, and a cancelled wait leaves nothing behind but that thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, error = function(*args), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="file-transfer", daemon=True).start()
    return await future
