"""One error body for every failure of the API, whatever raised it:

    {"detail": "what went wrong", "errors": [{"field": "name", "message": "...", "row": null}]}

`errors` lists the problems of a request that did not validate: the field each names (None
for the request as a whole) and, in a bulk request, the row (0-based in its list; an
import's problems name the row as a spreadsheet shows the file, `GET /imports/{id}/errors`).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, InterfaceError, OperationalError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    JsonResponse,
)
from django.views.decorators.csrf import csrf_exempt
from ninja import Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

if TYPE_CHECKING:
    from ninja import NinjaAPI

logger = logging.getLogger(__name__)

# Where ninja says a value came from: the first part of a pydantic error's location.
_SOURCES = {"body", "query", "path", "header", "cookie", "form", "file"}


# What ninja hands an exception handler (it is typed to take the class too).
Raised = Exception | type[Exception]


class ErrorItem(Schema):
    field: str | None = None
    message: str
    row: int | None = None


class ErrorBody(Schema):
    detail: str
    errors: list[ErrorItem] = []


# For an operation's `response=`: the failures every endpoint can answer with.
AUTH_ERRORS: dict[int, type[Schema]] = {401: ErrorBody, 403: ErrorBody}
READ_ERRORS: dict[int, type[Schema]] = {**AUTH_ERRORS, 404: ErrorBody}
WRITE_ERRORS: dict[int, type[Schema]] = {**READ_ERRORS, 422: ErrorBody}


class ApiError(HttpError):
    """A failure with per-field (and per-row) errors, answered in the one error body."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        errors: Iterable[ErrorItem] = (),
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, detail)
        self.errors = list(errors)
        self.headers = dict(headers or {})


def errors_from_django(
    error: DjangoValidationError, *, row: int | None = None, prefix: str = ""
) -> list[ErrorItem]:
    """A model's or a form's ValidationError as error items; NON_FIELD_ERRORS and `__all__`
    become field None."""
    if hasattr(error, "error_dict"):
        return errors_from_mapping(error.message_dict, row=row, prefix=prefix)
    return [ErrorItem(field=prefix or None, message=m, row=row) for m in error.messages]


def errors_from_mapping(
    messages: Mapping[str, Sequence[str]], *, row: int | None = None, prefix: str = ""
) -> list[ErrorItem]:
    items: list[ErrorItem] = []
    for name, field_messages in messages.items():
        field = None if name in ("__all__", "") else f"{prefix}{name}"
        if field is None and prefix:
            field = prefix.rstrip(".")
        items.extend(ErrorItem(field=field, message=str(m), row=row) for m in field_messages)
    return items


def _field_of(location: Sequence[Any]) -> tuple[str | None, int | None]:
    """A pydantic location such as ("body", "payload", "items", 3, "name") as a field name
    ("name") and a row (3: the index in the top-level list of a bulk request)."""
    parts = list(location)
    source = parts.pop(0) if parts and parts[0] in _SOURCES else None
    if source == "body" and parts:
        # The handler's parameter name ("payload"), not a field of the body: alone, it is
        # the whole body that is missing or wrong (field None).
        parts.pop(0)
    row = None
    if len(parts) >= 2 and parts[0] == "items" and isinstance(parts[1], int):
        row = parts[1]
        parts = parts[2:]
    field = ".".join(str(p) for p in parts) or None
    return field, row


# pydantic's messages for what the admin's form fields also say, in the admin's words.
_FORM_MESSAGES = {
    "missing": forms.Field.default_error_messages["required"],
    "float_parsing": forms.FloatField.default_error_messages["invalid"],
    "float_type": forms.FloatField.default_error_messages["invalid"],
    "int_parsing": forms.IntegerField.default_error_messages["invalid"],
    "int_type": forms.IntegerField.default_error_messages["invalid"],
    "int_from_float": forms.IntegerField.default_error_messages["invalid"],
}


# pydantic's words for a time it cannot read say how the reading failed ("input is too
# short" for `?since=1e20`, `nan` or `inf`), not what it takes.
TIME_TEXT = (
    "Enter a time: ISO 8601 (2026-12-02T10:00:00Z; UTC when it has no zone) or Unix seconds "
    "(1796205600), up to the year 9999."
)
_TIME_ERRORS = {
    "datetime_parsing",
    "datetime_from_date_parsing",
    "datetime_type",
    "datetime_object_invalid",
}

# A body left out (or empty) where the request needs one: pydantic says the parameter is
# missing, and its name (`payload`) is the handler's, not the caller's.
EMPTY_BODY_TEXT = "The body is empty: this request takes a JSON object ({...})."


def pydantic_text(error: Mapping[str, Any]) -> str:
    """A pydantic error's message for a person (the REST API's and the MCP tools')."""
    if error.get("type") in _TIME_ERRORS:
        return TIME_TEXT
    message = str(error.get("msg", "Invalid value."))
    # pydantic's "Value error, ..." prefix is noise for a person reading the message.
    return message.removeprefix("Value error, ")


def _message_of(error: Mapping[str, Any]) -> str:
    location = list(error.get("loc", ()))
    if error.get("type") == "missing" and len(location) == 2 and location[0] == "body":
        return EMPTY_BODY_TEXT
    known = _FORM_MESSAGES.get(str(error.get("type")))
    if known is not None:
        return str(known)
    return pydantic_text(error)


def body(detail: str, errors: Iterable[ErrorItem] = ()) -> dict[str, Any]:
    return ErrorBody(detail=detail, errors=list(errors)).model_dump()


# RFC 6750 section 3: the challenge of a 401, and the one for a token that was sent and
# refused (a client then knows to get a new token rather than to send one).
CHALLENGE = 'Bearer realm="ChargeSim API"'
INVALID_TOKEN_CHALLENGE = f'{CHALLENGE}, error="invalid_token"'


class InvalidToken(AuthenticationError):
    """A Bearer token was sent and is refused (unknown, revoked, its user deactivated)."""


def _respond(
    status: int, detail: str, errors: Iterable[ErrorItem] = (), *, challenge: str = CHALLENGE
) -> HttpResponse:
    response = JsonResponse(body(detail, errors), status=status)
    if status == 401:
        response["WWW-Authenticate"] = challenge
    return response


def on_validation_error(request: HttpRequest, exc: Raised) -> HttpResponse:
    assert isinstance(exc, NinjaValidationError)
    items = []
    for error in exc.errors:
        field, row = _field_of(error.get("loc", ()))
        items.append(ErrorItem(field=field, message=_message_of(error), row=row))
    return _respond(422, "The request is not valid.", items)


def on_http_error(request: HttpRequest, exc: Raised) -> HttpResponse:
    assert isinstance(exc, HttpError)
    errors = exc.errors if isinstance(exc, ApiError) else ()
    message = exc.message
    if isinstance(exc, AuthenticationError) and message == "Unauthorized":
        message = "Authentication required: send 'Authorization: Bearer <token>' or log in."
    challenge = INVALID_TOKEN_CHALLENGE if isinstance(exc, InvalidToken) else CHALLENGE
    response = _respond(exc.status_code, message, errors, challenge=challenge)
    for name, value in (exc.headers if isinstance(exc, ApiError) else {}).items():
        response[name] = value
    return response


def on_not_found(request: HttpRequest, exc: Raised) -> HttpResponse:
    return _respond(404, str(exc) or "Not found.")


def on_permission_denied(request: HttpRequest, exc: Raised) -> HttpResponse:
    return _respond(403, str(exc) or "You do not have permission to do that.")


def on_django_validation_error(request: HttpRequest, exc: Raised) -> HttpResponse:
    assert isinstance(exc, DjangoValidationError)
    return _respond(422, "The request is not valid.", errors_from_django(exc))


def on_suspicious(request: HttpRequest, exc: Raised) -> HttpResponse:
    """What Django refuses to read (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, more parameters
    than DATA_UPLOAD_MAX_NUMBER_FIELDS, ...): the caller's mistake, a 413 or a 400 as Django
    answers it outside the API, not a 500. Logged as Django logs it, without a traceback."""
    assert isinstance(exc, SuspiciousOperation)
    logging.getLogger(f"django.security.{type(exc).__name__}").warning(
        "%s on %s %s", exc, request.method, request.path
    )
    if isinstance(exc, RequestDataTooBig):
        return _respond(413, too_large_text(settings.DATA_UPLOAD_MAX_MEMORY_SIZE))
    return _respond(400, f"The request was refused: {exc}")


def too_large_text(limit: int, what: str = "request body", hint: str = "") -> str:
    """The 413's detail, one wording wherever a size limit is met (a body over Django's
    limit, /mcp's, an uploaded fleet file over its own): an import over its limit was a
    422, as if the file's content were wrong."""
    return f"The {what} is larger than the {limit:,} bytes accepted{hint}."


def on_conflict(request: HttpRequest, exc: Raised) -> HttpResponse:
    """A write the database refused for a row written meanwhile (two scripts creating the
    same location at once: both passed the form's uniqueness check, the second insert hit
    the constraint). The writes that know their field answer a 422 naming it first; this
    is what is left: a 409, not a 500, and the request may be sent again."""
    logging.getLogger(__name__).info(
        "%s %s conflicted with a concurrent write: %s", request.method, request.path, exc
    )
    return _respond(409, CONFLICT_TEXT)


CONFLICT_TEXT = (
    "A request made at the same moment changed the same thing first; send this one again "
    "to see where it stands."
)


# What a database out of reach raises (down, restarting, the network cut, a connection
# lost): the connection failing, not the request.
DATABASE_DOWN = (OperationalError, InterfaceError)


DATABASE_DOWN_TEXT = (
    "The database cannot be reached or is not answering: the API cannot answer until it is back."
)


def on_database_down(request: HttpRequest, exc: Raised) -> HttpResponse:
    """A 503 the caller may send again later, as the channel layer's, not a 500. The
    driver's message stays in the log: with DEBUG on, Django's error page showed the
    connection string, password and all."""
    logger.warning("%s %s: the database cannot be reached: %r", request.method, request.path, exc)
    return _respond(503, DATABASE_DOWN_TEXT)


def on_unexpected(request: HttpRequest, exc: Raised) -> HttpResponse:
    # The traceback goes to the log; the caller gets the same body as for any error.
    exc_info = exc if isinstance(exc, BaseException) else None
    logger.error("API error on %s %s", request.method, request.path, exc_info=exc_info)
    return _respond(500, "Internal server error.")


def install(api: NinjaAPI) -> None:
    api.add_exception_handler(NinjaValidationError, on_validation_error)
    api.add_exception_handler(HttpError, on_http_error)
    api.add_exception_handler(Http404, on_not_found)
    api.add_exception_handler(PermissionDenied, on_permission_denied)
    api.add_exception_handler(DjangoValidationError, on_django_validation_error)
    api.add_exception_handler(SuspiciousOperation, on_suspicious)
    api.add_exception_handler(IntegrityError, on_conflict)
    for error in DATABASE_DOWN:
        api.add_exception_handler(error, on_database_down)
    api.add_exception_handler(Exception, on_unexpected)


# What a 503 means, for any operation (an operation's own description lists its cases).
UNAVAILABLE_TEXT = (
    "The database cannot be reached, or, for what asks the simulator, the channel layer "
    "(Redis) cannot be, no worker runs the shard, or the worker stopped answering or "
    "restarted before it answered (`detail` says which): try again later."
)


def document_refusals(schema: dict[str, Any]) -> None:
    """Add to the OpenAPI document the refusals ninja answers before a handler runs, where
    the operation's `response=` does not list them: 409 for a write (`on_conflict`), 413
    for a body over Django's limit (`on_suspicious`), 422 for any operation (a query parameter
    it does not take, and a parameter or a body that fails validation: `?limit=0`), 400
    for a JSON body that cannot be parsed, 415 for one sent as another type
    (`api.request_bodies`), and 503 for a database out of reach (any operation)."""
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            # ninja keys an operation's responses by int (422), these by str ("422"): both
            # were written, and a JSON object with a key twice is not valid YAML, which is
            # how Swagger UI reads it ("duplicated mapping key": the docs page stayed
            # empty). One key per code, ninja's own answer kept.
            responses: dict[str, Any] = {}
            for code, answer in operation.get("responses", {}).items():
                responses.setdefault(str(code), answer)
            operation["responses"] = responses
            if method in ("post", "put", "patch", "delete"):
                responses.setdefault(
                    "409",
                    {
                        "description": "A concurrent request changed the same thing first "
                        "(or, for an action, the charger refused it).",
                        "content": {"application/json": {"schema": ref}},
                    },
                )
            body = operation.get("requestBody", {}).get("content", {})
            # Any operation refuses a query parameter it does not take
            # (`api.query_params`), besides a parameter or a body that does not validate.
            responses.setdefault(
                "422",
                {
                    "description": "A parameter or the body is not valid, or a query "
                    "parameter is one the operation does not take.",
                    "content": {"application/json": {"schema": ref}},
                },
            )
            if body:
                responses.setdefault(
                    "413",
                    {
                        "description": "The body is larger than the server accepts "
                        "(DATA_UPLOAD_MAX_MEMORY_SIZE; an uploaded fleet file, "
                        "MAX_FILE_BYTES).",
                        "content": {"application/json": {"schema": ref}},
                    },
                )
            # Any operation reads the database (the token, the rows): one that is down is a
            # 503 (`on_database_down`), which a client should retry, not a 500. Ninja's
            # own 503 of an operation that asks the workers says only "Service Unavailable".
            unavailable = responses.setdefault(
                "503", {"content": {"application/json": {"schema": ref}}}
            )
            if unavailable.get("description") in (None, "Service Unavailable"):
                unavailable["description"] = UNAVAILABLE_TEXT
            if "application/json" in body:
                responses.setdefault(
                    "415",
                    {
                        "description": "The body was sent with a Content-Type other than "
                        "application/json.",
                        "content": {"application/json": {"schema": ref}},
                    },
                )
                responses.setdefault(
                    "400",
                    {
                        "description": "The body is not JSON.",
                        "content": {"application/json": {"schema": ref}},
                    },
                )


def finished_answers(view: Callable[..., Any]) -> Callable[..., Any]:
    """`view`, with a 405 it answers (ninja's own, a bare text) in the error body, and a
    204 without the JSON type ninja gives every answer (its empty body is no JSON)."""

    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            response = await view(request, *args, **kwargs)
            return _converted(request, response)

        return async_view

    @functools.wraps(view)
    def sync_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return _converted(request, view(request, *args, **kwargs))

    return sync_view


def _converted(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if response.status_code == 204:
        del response["Content-Type"]
    if not isinstance(response, HttpResponseNotAllowed):
        return response
    return method_not_allowed(request, response["Allow"])


def method_not_allowed(request: HttpRequest, allowed: str) -> HttpResponse:
    """A 405 in the error body, with the Allow header (`allowed`: "GET, POST")."""
    answer = _respond(405, f"{request.method} is not allowed here; use {allowed}.")
    answer["Allow"] = allowed
    return answer


@csrf_exempt  # as `not_found_view`
def api_root(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """The API's own root: no endpoint, a 404 in the error body that says where the
    endpoints are listed."""
    return _respond(
        404,
        f"No API endpoint at {request.path}: the endpoints are listed at "
        f"{request.path}docs and in {request.path}openapi.json.",
    )


@csrf_exempt  # it changes nothing: a POST must get this 404, not Django's CSRF page
def not_found_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Any other path under /api/, by any method: a 404 in the API's error body, not
    Django's HTML page."""
    return _respond(404, f"No API endpoint at {request.path}.")
