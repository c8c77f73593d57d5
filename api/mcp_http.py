"""`/mcp`: the MCP server over streamable HTTP, behind the API's token auth.

The SDK's ASGI app (`MCPServer.streamable_http_app`) is mounted in `chargesim_site.asgi`
beside Django, wrapped by `McpEndpoint`:

- the Host header is checked against ALLOWED_HOSTS as Django checks it (400 otherwise);
  the SDK's own DNS-rebinding check, which knows only localhost, is off;
- `Authorization: Bearer <token>` is required, an API token of a user with
  `chargers.view_charger` (the least any tool needs): anonymous or a bad token 401, no
  permission 403, in the API's error body. Each tool then checks its own permission. The
  browser's session is not accepted here: an MCP client is a program with a token;
- a request body over DATA_UPLOAD_MAX_MEMORY_SIZE (Django's limit, which the API answers
  with 413 too) is refused with 413 before the SDK reads it: a JSON-RPC call is small, and
  the SDK would otherwise hold any size in memory;
- another path under /mcp is a 404, a method but POST (and GET, below) a 405 with
  `Allow: POST`, a body of another type than JSON a 415, each in the API's error body (the
  SDK's were a bare text, a JSON-RPC error without Allow, and a bare text 400); a body
  without a Content-Type is read as JSON, as the API reads one; an MCP-Protocol-Version
  the SDK does not speak a 400 that lists those it does;
- a JSON-RPC message that gives a key twice in one object is answered with a JSON-RPC
  error naming it (`api.mcp_messages`), as the API refuses such a body, not read
  last-wins by the SDK;
- the server runs stateless, answering in JSON: any web process can serve any request
  (no sticky sessions behind a load balancer), and each request runs its own session
  manager for its lifetime, because Daphne does not run ASGI lifespan events (and so
  nothing outlives a request or needs stopping with the process).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import JSONRPCError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from api import errors
from api.auth import Caller
from api.mcp_calls import CALLER
from api.mcp_messages import message_error
from api.mcp_server import server
from api.models import ApiToken
from api.request_bodies import is_json

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/mcp"
PERMISSION = "chargers.view_charger"


class Refused(Exception):
    def __init__(self, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _check_host(scope: Scope) -> None:
    host = _header(scope, b"host") or ""
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's own default
    if not domain or not validate_host(domain, allowed):
        raise Refused(400, f"Invalid Host header: {host!r}.")


def authenticate(header: str | None) -> Caller:
    """The caller an Authorization header names, with the permission /mcp needs."""
    if not header:
        raise Refused(401, "Authentication required: send 'Authorization: Bearer <token>'.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(401, "The Authorization header must be 'Bearer <token>'.")
    row = ApiToken.objects.authenticate(token.strip())
    if row is None:
        challenge = ((b"www-authenticate", errors.INVALID_TOKEN_CHALLENGE.encode()),)
        raise Refused(401, ApiToken.objects.refusal(token.strip()), challenge)
    if not row.user.has_perm(PERMISSION):
        raise Refused(403, f"You need the permission '{PERMISSION}' for this.")
    return Caller(user=row.user, token=row)


async def _refuse(send: Send, refused: Refused) -> None:
    headers = [(b"content-type", b"application/json"), *refused.headers]
    if refused.status == 401 and not any(name == b"www-authenticate" for name, _ in headers):
        headers.append((b"www-authenticate", errors.CHALLENGE.encode()))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    body = json.dumps(errors.body(refused.detail)).encode()
    await send({"type": "http.response.body", "body": body})


ALLOW_POST = ((b"allow", b"POST"),)
NO_STREAM = Refused(
    405,
    "This MCP server is stateless: it sends nothing of its own, so there is no stream to "
    "GET. POST the JSON-RPC requests.",
    ALLOW_POST,
)


def not_post(method: str) -> Refused:
    """The 405 of a method the endpoint does not serve (the SDK's had no Allow header)."""
    return Refused(
        405, f"{method} is not allowed here; use POST (the JSON-RPC requests).", ALLOW_POST
    )


def not_json(content_type: str) -> Refused:
    """The 415 of a body that is not JSON, in the REST API's words (`request_bodies`)."""
    kind = content_type.split(";", 1)[0].strip()
    return Refused(
        415,
        f"The body must be JSON, sent with 'Content-Type: application/json' (it came as {kind!r}).",
    )


class _Gone(Exception):
    """The client went away while sending its body."""


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request's body, up to `limit` bytes (Refused 413 beyond); None for a request
    without one (GET, the SDK's event stream)."""
    if scope.get("method") not in ("POST", "PUT", "PATCH"):
        return None
    too_large = Refused(413, errors.too_large_text(limit))
    length = _header(scope, b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:  # chunked, or a Content-Length that lied
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the body read already to the app as one message."""
    first: MutableMapping[str, Any] | None = {
        "type": "http.request",
        "body": body,
        "more_body": False,
    }

    async def replay() -> MutableMapping[str, Any]:
        nonlocal first
        if first is not None:
            message, first = first, None
            return message
        return await receive()  # after the body: the disconnect, when it comes

    return replay


async def _answer_error(send: Send, error: JSONRPCError) -> None:
    """A JSON-RPC error for a message the SDK is not given, at 400 as the SDK answers a
    message it cannot read (its client reads the error from the body)."""
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    body = error.model_dump_json(by_alias=True, exclude_unset=True).encode()
    await send({"type": "http.response.body", "body": body})


def unknown_version(version: str) -> Refused:
    spoken = ", ".join(sorted(HANDSHAKE_PROTOCOL_VERSIONS, reverse=True))
    return Refused(
        400, f"Unsupported MCP-Protocol-Version {version!r}: this server speaks {spoken}."
    )


class McpEndpoint:
    """The ASGI app of /mcp (see the module's docstring)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            _check_host(scope)
            if scope.get("path") != PATH:
                # The SDK's bare text "Not Found": in the API's body, as any path under /api/.
                raise Refused(404, f"No MCP endpoint at {scope.get('path')}: it is {PATH}.")
            caller = await sync_to_async(authenticate)(_header(scope, b"authorization"))
        except Refused as refused:
            await _refuse(send, refused)
            return
        except errors.DATABASE_DOWN as exc:
            # Reading the token meets the database first: a 503 to retry, as the API's
            # (`errors.on_database_down`), not the ASGI server's bare 500.
            logger.warning("/mcp: the database cannot be reached: %r", exc)
            await _refuse(send, Refused(503, errors.DATABASE_DOWN_TEXT))
            return
        if scope.get("method") == "GET":
            # The stream a client may open for the server's own messages: a stateless
            # server sends none, and the SDK would hold the GET open for ever. The
            # transport's spec allows 405 for "no such stream here".
            await _refuse(send, NO_STREAM)
            return
        if scope.get("method") != "POST":
            await _refuse(send, not_post(str(scope.get("method"))))
            return
        version = _header(scope, b"mcp-protocol-version")
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            # The transport's spec asks for a 400; the SDK answered with its own unrelated
            # classifier's words. Named here with the versions a client may use instead.
            await _refuse(send, unknown_version(version))
            return
        content_type = _header(scope, b"content-type") or ""
        if not content_type:
            # Read as JSON, as the REST API reads a body without a type (the SDK refused it).
            headers = [
                *((k, v) for k, v in scope.get("headers", ()) if k.lower() != b"content-type"),
                (b"content-type", b"application/json"),
            ]
            scope = {**scope, "headers": headers}
        elif not is_json(content_type):
            # The SDK's check answers a bare text 400 ("Invalid Content-Type header").
            await _refuse(send, not_json(content_type))
            return
        try:
            body = await _read_body(scope, receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        except Refused as refused:
            await _refuse(send, refused)
            return
        except _Gone:
            return
        if body is not None:
            error = message_error(body)
            if error is not None:
                await _answer_error(send, error)
                return
            receive = _replaying(body, receive)
        app = server().streamable_http_app(
            streamable_http_path=PATH,
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        # The session manager's task group, and so the tools, run inside this context.
        token = CALLER.set(caller)
        try:
            async with app.router.lifespan_context(app):
                await app(scope, receive, send)
        finally:
            CALLER.reset(token)


def with_mcp(django_app: Callable[..., Awaitable[None]]) -> ASGIApp:
    """HTTP for `chargesim_site.asgi`: /mcp to the MCP server, everything else to Django."""
    endpoint = McpEndpoint()

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if path == PATH or path.startswith(PATH + "/"):
            await endpoint(scope, receive, send)
        else:
            await django_app(scope, receive, send)

    return route
