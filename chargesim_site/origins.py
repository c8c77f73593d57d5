"""The same-origin check of a WebSocket handshake, by Django's own CSRF origin rules.

A browser sends any site's cookies with a WebSocket handshake and nothing like a CSRF
token, so the Origin header is the only defence against a page elsewhere driving chargers
with the user's session. Channels' AllowedHostsOriginValidator compares the Origin's host
with ALLOWED_HOSTS and ignores scheme and port: a page on another port of the same host
got through, while the same Origin on an HTTP POST is refused. Here the handshake must
pass exactly the check a POST passes: its Host in ALLOWED_HOSTS, and its Origin equal to
the request's own scheme://host:port or listed in CSRF_TRUSTED_ORIGINS.
"""

from __future__ import annotations

from typing import Any

from channels.security.websocket import WebsocketDenier
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware


class _Handshake(HttpRequest):
    """A WebSocket handshake seen as the HTTP request it is, for Django's host checks."""

    def __init__(self, scope: dict[str, Any]) -> None:
        super().__init__()
        self._secure_scheme = scope.get("scheme") in ("wss", "https")
        server = scope.get("server") or (None, None)
        if server[0] is not None:
            self.META["SERVER_NAME"] = str(server[0])
            self.META["SERVER_PORT"] = str(server[1] or (443 if self._secure_scheme else 80))
        for name, value in scope.get("headers", ()):
            key = name.decode("latin1").upper().replace("-", "_")
            self.META[f"HTTP_{key}"] = value.decode("latin1")

    def _get_scheme(self) -> str:
        # SECURE_PROXY_SSL_HEADER, when set, still wins (HttpRequest.scheme).
        return "https" if self._secure_scheme else "http"


def _allow_all(request: HttpRequest) -> HttpResponse:
    raise AssertionError("only the origin check of the CSRF middleware is used")


def origin_allowed(scope: dict[str, Any]) -> bool:
    request = _Handshake(scope)
    if "HTTP_ORIGIN" not in request.META:
        return False  # every browser sends one: a handshake without it is not a page's
    try:
        request.get_host()  # refused outright, as Django refuses such a request
    except (DisallowedHost, KeyError):
        return False
    # A new instance per handshake: it reads CSRF_TRUSTED_ORIGINS once (cached property).
    # A private method (not in django-stubs): the same origin check as Django's, not a copy.
    return CsrfViewMiddleware(_allow_all)._origin_verified(request)  # type: ignore[attr-defined]


class SameOriginValidator:
    """ASGI middleware: deny a WebSocket handshake whose origin Django's CSRF check refuses."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
