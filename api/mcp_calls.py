"""How an MCP tool calls what a REST endpoint runs: as whom, and with what errors.

The transport names the caller (`CALLER`): over HTTP the API token's user (`api.mcp_http`),
over stdio the user `manage.py mcp --user` names. `caller_request` makes the request object
the routers' functions read the caller from, so a tool runs the endpoint's own code with
the endpoint's own permission checks; `tool_errors` turns the endpoint's refusals into tool
errors (`is_error`) with the endpoint's message, for the model to read.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from mcp.server.mcpserver.exceptions import ToolError
from ninja.errors import HttpError

from api.auth import Caller
from api.errors import ApiError

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


def _refusal(exc: HttpError) -> str:
    """An endpoint's error as one message for the model: its detail and each problem."""
    parts = [str(exc.message)]
    if isinstance(exc, ApiError):
        for item in exc.errors:
            where = " ".join(
                p
                for p in (f"row {item.row}" if item.row is not None else "", item.field or "")
                if p
            )
            parts.append(f"{where}: {item.message}" if where else item.message)
    return "\n".join(parts)


def tool_errors(fn: F) -> F:
    """An endpoint's refusal (401/403/404/409/422/503/504: ninja's HttpError and the API's
    ApiError) raised inside a tool becomes a tool error with the endpoint's message, as a
    model reads it; anything else stays a crash (logged, and only the tool's name shown)."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except HttpError as exc:
            raise ToolError(_refusal(exc)) from exc

    return cast(F, run)


def in_thread(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """A synchronous router function (the ORM) run in Django's thread for sync code."""
    return sync_to_async(fn)
