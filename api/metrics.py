"""GET /metrics: this process's Prometheus metrics, for a scraper holding an API token.

The page is prometheus_client's default registry: in the embedded mode (`runsimulator`
serving the web side and the engine in one process) that is the engine's metrics; a web
process of the scaled-out mode shows only its own (process and Python), without the
engine's families it registered on importing the engine's code (`engine_here`), and each
worker serves its engine's on `runsimulator --metrics-port`. Authenticated as every API endpoint is (a Bearer token, or
the browser's session) and needs the `chargers.view_charger` permission, so Prometheus
scrapes with `authorization: {credentials_file: ...}`.

Async, so that in the embedded mode the fleet's gauges are counted on the engine's own
event loop (`simulator.runtime.metrics`) without a thread hop; the token check is a
database read, run in a thread.
"""

from __future__ import annotations

from collections.abc import Iterator

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from ninja.errors import AuthenticationError, HttpError
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from api.auth import check_perms, session_auth, token_auth
from api.errors import DATABASE_DOWN, method_not_allowed, on_database_down, on_http_error
from simulator.contract import engine_here

PERMISSION = "chargers.view_charger"


def _authorize(request: HttpRequest) -> None:
    """Who calls (a token, else the session) and whether they may read the fleet."""
    who = token_auth(request) or session_auth(request)
    if who is None:
        raise AuthenticationError()
    request.auth = who  # type: ignore[attr-defined]  # what check_perms reads, as ninja sets it
    check_perms(request, PERMISSION)


class _WithoutEngine(CollectorRegistry):
    """The default registry's families but the engine's: this process runs none."""

    def collect(self) -> Iterator[Metric]:
        prefix = engine_here.METRIC_PREFIX
        return (family for family in REGISTRY.collect() if not family.name.startswith(prefix))


WITHOUT_ENGINE = _WithoutEngine(auto_describe=False)


@csrf_exempt  # nothing but GET and HEAD are served: a POST gets the 405, not Django's CSRF page
async def metrics(request: HttpRequest) -> HttpResponse:
    # HEAD too: uptime checks and load balancers probe with it (asked as GET, no body).
    if request.method not in ("GET", "HEAD"):
        return method_not_allowed(request, "GET, HEAD")
    try:
        await sync_to_async(_authorize)(request)
    except HttpError as exc:
        return on_http_error(request, exc)
    except DATABASE_DOWN as exc:  # the token or session is read from the database
        return on_database_down(request, exc)
    # The format the scraper asks for, as a worker's --metrics-port server (prometheus_client's
    # own) answers it: OpenMetrics for `Accept: application/openmetrics-text`, else text 0.0.4.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    if request.method == "HEAD":
        return HttpResponse(content_type=content_type)
    registry = REGISTRY if engine_here.running() else WITHOUT_ENGINE
    return HttpResponse(encode(registry), content_type=content_type)
