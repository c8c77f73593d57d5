"""How an MCP tool calls what a REST endpoint runs: as whom, and with what errors.

The transport names the caller (`CALLER`): over HTTP the API token's user (`api.mcp_http`),
over stdio the user `manage.py mcp --user` names. `caller_request` makes the request object
the routers' functions read the caller from, so a tool runs the endpoint's own code with
the endpoint's own permission checks; `tool_errors` turns the endpoint's refusals into tool
errors (`is_error`) with the endpoint's message, for the model to read.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Annotated, Any, TypeVar, Union, cast, get_args, get_origin

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest
from mcp.server.mcpserver.exceptions import ToolError
from ninja.errors import AuthorizationError, HttpError
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from api.auth import Caller
from api.errors import (
    DATABASE_DOWN,
    DATABASE_DOWN_TEXT,
    ApiError,
    ErrorItem,
    errors_from_django,
    pydantic_text,
)
from api.fleet_schemas import json_type
from api.query_params import did_you_mean

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


def error_text(detail: str, items: Iterable[ErrorItem]) -> str:
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
        return error_text(str(exc.message), exc.errors)
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
        return error_text("The request is not valid.", errors_from_django(exc))
    if isinstance(exc, DATABASE_DOWN):
        # The endpoint's 503, not a crash: the driver's message (it names the server) only
        # in the log, as `errors.on_database_down` keeps it.
        logger.warning("MCP tool: the database cannot be reached: %r", exc)
        return DATABASE_DOWN_TEXT
    if isinstance(exc, PydanticValidationError):
        items = [
            ErrorItem(field=".".join(str(p) for p in e["loc"]) or None, message=pydantic_text(e))
            for e in exc.errors()
        ]
        return error_text("The request is not valid.", items)
    return None


def not_found(exc: BaseException | None) -> bool:
    """Whether `exc` is the endpoint's 404: what the caller named does not exist."""
    if isinstance(exc, Http404):
        return True
    return isinstance(exc, HttpError) and exc.status_code == 404


def unknown_arguments(
    model: type[BaseModel], given: Mapping[str, Any], prefix: str = "", owner: str = "this tool"
) -> list[ErrorItem]:
    """The names in `given`, and in the objects nested in it, that `model` does not take,
    each with the nearest name it does: the SDK's argument models ignore them, and a
    misspelt filter (`locaton`) answered every charger, as a REST query once did. `owner`
    names what takes them (bulk_action's `args` are its action's, not the tool's)."""
    fields = model.model_fields
    by_name = {name: info for name, info in fields.items()}
    by_name.update({info.alias: info for info in fields.values() if info.alias})
    problems = []
    for key, value in given.items():
        info = by_name.get(key)
        if info is None:
            if model.model_config.get("extra") != "allow":
                problems.append(
                    ErrorItem(field=f"{prefix}{key}", message=_not_an_argument(key, model, owner))
                )
            continue
        inner, many = _model_in(info.annotation)
        if inner is None:
            continue
        if isinstance(value, str):  # the SDK reads an object sent as JSON text too
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if many and isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    problems += unknown_arguments(inner, item, f"{prefix}{key}.{index}.", owner)
        elif not many and isinstance(value, Mapping):
            problems += unknown_arguments(inner, value, f"{prefix}{key}.", owner)
    return problems


def not_json_types(model: type[BaseModel], given: Mapping[str, Any]) -> list[ErrorItem]:
    """The arguments of `given` that `model` takes as numbers but that came as a boolean
    or a string, or as booleans but came as anything else: the SDK reads "1" or "true" as
    JSON first, then pydantic's lax mode any number text and "no" or 0 as false, where the
    REST body refuses them (`json_type`). An object argument checks its own (its schema is
    a request body's)."""
    problems = []
    for key, value in given.items():
        try:
            json_type(model, key, value)
        except PydanticCustomError as exc:
            problems.append(ErrorItem(field=key, message=str(exc)))
    return problems


def _not_an_argument(name: str, model: type[BaseModel], owner: str = "this tool") -> str:
    known = set(model.model_fields)
    filters = model.model_fields.get("filters")
    if filters is not None:
        inner, _ = _model_in(filters.annotation)
        if inner is not None and name in inner.model_fields:
            # A list tool's filters are one argument, an object: the flat form is refused
            # with the form it takes, not ignored.
            return f'a filter: give it inside filters, as {{"filters": {{"{name}": ...}}}}.'
    return f"Not an argument of {owner}: {did_you_mean(name, known)}"


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model an argument's type holds (through Optional and Annotated), and whether it
    is a list of them."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _model_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        for arm in get_args(annotation):
            found = _model_in(arm)
            if found[0] is not None:
                return found
        return None, False
    if origin is list:
        inner, _ = _model_in(get_args(annotation)[0])
        return inner, inner is not None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's input schema with `additionalProperties: false` on every object of named
    properties (the arguments and the models nested in them), as the tool refuses any
    other name (`unknown_arguments`). A free-form object (`args` of bulk_action, a
    charger's configuration) is left open."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            if isinstance(value, dict):
                closed(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        closed(item)
    return schema


# What an endpoint says in HTTP's words, in the tools' own: an agent told to "follow it with
# GET /scenarios/runs/{id}" or to send "?force=true" has no such call. In order: the first
# of two that overlap is the longer.
TOOL_WORDS = {
    "GET /scenarios/runs/{id}": "get_scenario_run",
    "(repeat it for several: `status=failed&status=error` lists every run that did not pass)": (
        '(a list: `["failed", "error"]` lists every run that did not pass)'
    ),
    "`?force=true`": "`force: true`",
    "?force=true": "force: true",
}


# An HTTP status an endpoint's description names: a tool's caller sees none (a refusal is
# a tool error with the endpoint's words), so the description says "an error" instead.
_CODE = r"(?:20[0-4]|40[0-9]|41[0-9]|42[0-9]|50[0-4])"
_STATUS_CODES = (
    (re.compile(r"(?<=; )503 \("), "unavailable for now ("),  # "Errors: ...; 503 (`detail`"
    (re.compile(r" \(with Retry-After\)"), ""),  # a header no tool caller sees
    (re.compile(r"still 20[0-4]\b"), "still no error"),  # "`wait.met` is false, still 200"
    (re.compile(rf" \({_CODE}\)"), ""),  # "is refused (409) while"
    (re.compile(rf"\({_CODE}, "), "("),  # "(202, status `queued`)"
    (re.compile(rf"\({_CODE} "), "(an error "),  # "(503 when none answers"
    (re.compile(rf"\ba {_CODE}\b"), "an error"),  # "is a 422 listing", "is a 409."
    (re.compile(rf"(?:(?<=: )|(?<=; )){_CODE} "), ""),  # "Errors: 404 no such charger; 409 the"
)


def without_status_codes(text: str) -> str:
    """An endpoint's description without the HTTP status codes it names."""
    for pattern, words in _STATUS_CODES:
        text = pattern.sub(words, text)
    return text


def in_tool_words(text: str) -> str:
    """An endpoint's description or refusal as a tool says it (`TOOL_WORDS`)."""
    for http_words, tool_words in TOOL_WORDS.items():
        text = text.replace(http_words, tool_words)
    return text


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
            raise ToolError(in_tool_words(text)) from exc

    return cast(F, run)


def in_thread(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """A synchronous router function (the ORM) run in Django's thread for sync code."""
    return sync_to_async(fn)
