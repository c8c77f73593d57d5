"""Who is calling: an API token (`Authorization: Bearer <token>`) or the browser's session.

A request with an Authorization header is judged by its token alone: a wrong or revoked
token is a 401 even when the same browser is logged in, so that a script never runs as
someone it did not name. The session is for the browser (the interactive docs, pages'
scripts): on an unsafe method it must carry Django's CSRF token, as a form post does.

Neither class logs the header: a token must never reach a log (ninja's own HttpBearer
logs an unexpected header in DEBUG).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from ninja.errors import AuthenticationError, AuthorizationError, HttpError
from ninja.operation import Operation
from ninja.security.base import AuthBase
from ninja.utils import check_csrf

from api.errors import DATABASE_DOWN, InvalidToken, on_database_down, on_http_error
from api.models import ApiToken

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of a request (`request.auth`)."""

    user: Any  # the AUTH_USER_MODEL instance
    token: ApiToken | None = None

    @property
    def via(self) -> str:
        return "session" if self.token is None else "token"


class TokenAuth(AuthBase):
    """`Authorization: Bearer <token>`, checked against the stored digests."""

    openapi_type = "http"
    openapi_scheme = "bearer"
    openapi_description = "An API token, from the admin or `manage.py apitoken create`."

    def __call__(self, request: HttpRequest) -> Caller | None:
        header = request.headers.get("Authorization")
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError(message="The Authorization header must be 'Bearer <token>'.")
        row = ApiToken.objects.authenticate(token.strip())
        if row is None:
            raise InvalidToken(message=ApiToken.objects.refusal(token.strip()))
        # Views and forms that read request.user see the token's user.
        request.user = row.user
        return Caller(user=row.user, token=row)


class SessionAuth(AuthBase):
    """The browser's Django session; unsafe methods need the CSRF token."""

    openapi_type = "apiKey"
    openapi_in = "cookie"
    openapi_description = "The session of a user logged in to the admin (with X-CSRFToken)."
    # Read by ninja's docs page: it then sends the CSRF token with "Try it out".
    csrf = True

    def __init__(self) -> None:
        self.openapi_name = settings.SESSION_COOKIE_NAME
        super().__init__()

    def __call__(self, request: HttpRequest) -> Caller | None:
        if "Authorization" in request.headers:
            return None  # TokenAuth decided: never fall back to the session
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if request.method not in SAFE_METHODS and check_csrf(request) is not None:
            raise HttpError(
                403,
                "CSRF check failed: with a session, send the csrftoken cookie's value in "
                "the X-CSRFToken header (or use an API token).",
            )
        return Caller(user=user)


token_auth = TokenAuth()
session_auth = SessionAuth()


def caller(request: HttpRequest) -> Caller:
    auth = getattr(request, "auth", None)
    if not isinstance(auth, Caller):
        raise AuthenticationError()
    return auth


def check_perms(request: HttpRequest, *perms: str) -> Caller:
    """The caller, if they hold every one of `perms`; a 403 naming the first missing one
    otherwise. Sync: from an async handler, call `acheck_perms`."""
    who = caller(request)
    for perm in perms:
        if not who.user.has_perm(perm):
            raise AuthorizationError(message=f"You need the permission '{perm}' for this.")
    return who


async def acheck_perms(request: HttpRequest, *perms: str) -> Caller:
    return await sync_to_async(check_perms)(request, *perms)


F = TypeVar("F", bound=Callable[..., Any])


def require(*perms: str) -> Callable[[F], F]:
    """Refuse callers without every one of `perms` (403), before the handler runs. Goes
    under the router's decorator:

        @router.get("/chargers", ...)
        @require("chargers.view_charger")
        def list_chargers(request): ...
    """

    def decorate(view: F) -> F:
        # Checked again in the handler: the MCP tools call handlers without ninja.
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def checked_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                await acheck_perms(request, *perms)
                return await view(request, *args, **kwargs)

            checked_async.required_perms = perms  # type: ignore[attr-defined]  # read by gate_operation
            return _resolved(checked_async, view)

        @functools.wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            check_perms(request, *perms)
            return view(request, *args, **kwargs)

        checked.required_perms = perms  # type: ignore[attr-defined]  # read by gate_operation
        return _resolved(checked, view)

    return decorate


def gate_operation(operation: Operation) -> None:
    """Check the permissions an operation `require`s right after ninja authenticated the
    caller, before it reads the request's parameters and body: a caller who may not write
    gets 403, not a 422 for a body it should never have sent (whose detail would show it
    what a valid write looks like). Idempotent; the OpenAPI document is unchanged."""
    perms: tuple[str, ...] = getattr(operation.view_func, "required_perms", ())
    if not perms or getattr(operation, "gated", False):
        return
    checks = operation._run_checks
    if inspect.iscoroutinefunction(checks):

        async def gated_async(request: HttpRequest) -> HttpResponse | None:
            error: HttpResponse | None = await checks(request)
            if error is None:
                try:
                    await acheck_perms(request, *perms)
                except AuthorizationError as exc:
                    return operation.api.on_exception(request, exc)
            return error

        operation._run_checks = gated_async  # type: ignore[method-assign,assignment]  # an AsyncOperation's own is async
    else:

        def gated(request: HttpRequest) -> HttpResponse | None:
            error = checks(request)
            if error is None:
                try:
                    check_perms(request, *perms)
                except AuthorizationError as exc:
                    return operation.api.on_exception(request, exc)
            return error

        operation._run_checks = gated  # type: ignore[method-assign]
    operation.gated = True  # type: ignore[attr-defined]


def _resolved(wrapper: Any, view: F) -> F:
    """ninja resolves string annotations (`from __future__ import annotations`) in the
    globals of the function it is given, this module's for a wrapper: hand it the
    handler's signature, resolved in the handler's own module."""
    wrapper.__signature__ = inspect.signature(view, eval_str=True)
    return cast(F, wrapper)


def docs_access(view: Callable[..., Any]) -> Callable[..., Any]:
    """For the OpenAPI document and the docs page: a token or a session, as the endpoints.
    A browser without either is sent to the login page; anything else gets a 401."""

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            who = token_auth(request) or session_auth(request)
        except HttpError as exc:
            return on_http_error(request, exc)
        except DATABASE_DOWN as exc:  # as the endpoints answer it, not Django's error page
            return on_database_down(request, exc)
        if who is not None:
            return view(request, *args, **kwargs)
        if "text/html" in request.headers.get("Accept", ""):
            return redirect_to_login(request.get_full_path(), resolve_url(settings.LOGIN_URL))
        return on_http_error(request, AuthenticationError())

    return guarded
