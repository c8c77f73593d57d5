"""How an MCP tool calls what a REST endpoint runs: as whom, and with what errors.

The transport names the caller (`CALLER`): over HTTP the API token's user (`api.mcp_http`),
over stdio the user `manage.py mcp --user` names. `caller_request` makes the request object
the routers' functions read the caller from, so a tool runs the endpoint's own code with
the endpoint's own permission checks; `tool_errors` turns the endpoint's refusals into tool
errors (`is_error`) with the endpoint's message, for the model to read.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest
from mcp.server.mcpserver.exceptions import ToolError
from ninja.errors import AuthorizationError, HttpError
from pydantic import ValidationError as PydanticValidationError

from api.auth import Caller
from api.errors import DATABASE_DOWN, DATABASE_DOWN_TEXT, ApiError, ErrorItem, errors_from_django

logger = logging.getLogger(__name__)

# Who the current MCP request acts as; set by the transport before it runs a request.
CALLER: ContextVar[Caller] = ContextVar("chargesim_mcp_caller")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def caller_request(method: str = "GET") -> HttpRequest:
    """A request object as the API's endpoints see one, for the current MCP caller: the
    routers' functions read the caller from `request.auth` (and `request.user`)."""
    who = CALLER.get(None)
    if who is None:
        raise ToolError("No caller: this MCP server runs without a user.")
    request = HttpRequest()
    request.method = method
    request.user = who.user
    request.auth = who  # type: ignore[attr-defined]  # what ninja sets on a request
    return request


def _lines(detail: str, items: Iterable[ErrorItem]) -> str:
    """An endpoint's error body as text for the model: its detail, then each problem."""
    parts = [detail]
    for item in items:
        where = ", ".join(
            part
            for part in (
                f"row {item.row}" if item.row is not None else "",
                item.field or "",
            )
            if part
        )
        if item.message == detail:
            # An engine refusal is its detail and its one item: said once, naming the
            # argument when it is about one.
            if where and parts[0] == detail:
                parts[0] = f"{where}: {detail}"
            continue
        parts.append(f"{where}: {item.message}" if where else item.message)
    return "\n".join(parts)


def refusal(exc: Exception) -> str | None:
    """What the endpoint would answer for `exc`, as text; None for a crash (a bug), which
    the SDK logs and shows only as the tool's failure."""
    if isinstance(exc, ApiError):
        return _lines(str(exc.message), exc.errors)
    if isinstance(exc, HttpError):
        message = str(exc.message)
        if isinstance(exc, AuthorizationError) and message == "Forbidden":
            message = "You do not have permission to do that."
        return message
    if isinstance(exc, Http404):
        return str(exc) or "Not found."
    if isinstance(exc, PermissionDenied):
        return str(exc) or "You do not have permission to do that."
    if isinstance(exc, DjangoValidationError):
        return _lines("The request is not valid.", errors_from_django(exc))
    if isinstance(exc, DATABASE_DOWN):
        # The endpoint's 503, not a crash: the driver's message (it names the server) only
        # in the log, as `errors.on_database_down` keeps it.
        logger.warning("MCP tool: the database cannot be reached: %r", exc)
        return DATABASE_DOWN_TEXT
    if isinstance(exc, PydanticValidationError):
        items = [
            ErrorItem(field=".".join(str(p) for p in e["loc"]) or None, message=e["msg"])
            for e in exc.errors()
        ]
        return _lines("The request is not valid.", items)
    return None


def tool_errors(fn: F) -> F:
    """What an endpoint answers with an error (401/403/404/409/422/503/504, a form's or a
    schema's validation errors) becomes a tool error with the endpoint's words, for the
    model to read; anything else stays a crash."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            text = refusal(exc)
            if text is None:
                raise
            raise ToolError(text) from exc

    return cast(F, run)


def in_thread(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """A synchronous router function (the ORM) run in Django's thread for sync code."""
    return sync_to_async(fn)
