"""Version 1 of the automation API, mounted at /api/v1/ (chargesim_site/urls.py).

django-ninja builds the OpenAPI 3.1 document from the handlers' type hints and serves
Swagger UI from its own package's static files (no CDN); its handlers may be `async def`
and await the engine's reply over the channel layer, which Django REST framework's views
cannot. Each area of the API is a router in api/routers/, added here.
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, URLResolver
from ninja import NinjaAPI
from ninja.openapi.schema import OpenAPISchema
from ninja.operation import Operation

from api import errors
from api.auth import docs_access, gate_operation, session_auth, token_auth
from api.query_params import refuse_unknown_query
from api.request_bodies import refuse_other_content_types
from api.routers import account, events, fleet, imports, live, log, scenarios


class ChargeSimAPI(NinjaAPI):
    def _get_urls(self) -> list[URLResolver | URLPattern]:
        # ninja answers a method a path does not take with a bare text 405: give it the
        # API's error body too (and a 204 no content type).
        urls = super()._get_urls()
        # Built with the URLs (every router is added by then): each operation's required
        # permissions are checked before its request is validated, and a query parameter
        # it does not take is refused.
        for bound in self._get_bound_routers():
            for path_view in bound.path_operations.values():
                for operation in path_view.operations:
                    gate_operation(operation)
                    refuse_unknown_query(operation)
                    refuse_other_content_types(operation)
        for url in urls:
            if isinstance(url, URLPattern):
                if url.name == "api-root":
                    # ninja's root is there for reverse() and raises Http404: Django's HTML
                    # page (with DEBUG, the site's URL patterns) to a script that tried it.
                    url.callback = errors.api_root
                    continue
                url.callback = errors.finished_answers(url.callback)
        return urls

    def get_openapi_operation_id(self, operation: Operation) -> str:
        # The handler's name ("list_chargers"), as the actions' explicit ids are named
        # ("charger_plug_in"), not ninja's module path ("api_routers_fleet_list_chargers"):
        # a generated client names its methods by these. A test holds them unique.
        return str(operation.view_func.__name__)

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        errors.document_refusals(schema)
        return schema


api = ChargeSimAPI(
    title="ChargeSim API",
    version="1",
    description=(
        "Drive and watch a fleet of simulated OCPP 1.6J charge points from scripts, CI and "
        "agents. Authenticate with `Authorization: Bearer <token>` (tokens: the admin's "
        "API tokens page or `manage.py apitoken create`), or with the browser's session "
        "(unsafe methods then need the X-CSRFToken header). Every error has the body "
        '`{"detail": ..., "errors": [{"field", "message", "row"}]}`.'
    ),
    urls_namespace="api-v1",
    openapi_url="/openapi.json",
    docs_url="/docs",
    docs_decorator=docs_access,
    auth=[token_auth, session_auth],
)
errors.install(api)

api.add_router("", account.router)
api.add_router("", fleet.router)
api.add_router("", imports.router)
api.add_router("", live.router)
api.add_router("", log.router)
api.add_router("", events.router)
api.add_router("", scenarios.router)
