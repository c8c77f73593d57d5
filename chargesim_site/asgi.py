"""ASGI entry point: HTTP through Django (and /mcp through the MCP SDK), WebSockets through
Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
# Django must be set up before the consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from api.mcp_http import with_mcp  # noqa: E402
from chargers.dashboard.routing import websocket_urlpatterns  # noqa: E402
from chargesim_site.daphne_backpressure import pace_responses_to_readers  # noqa: E402
from chargesim_site.daphne_bodies import leave_bodies_to_django  # noqa: E402
from chargesim_site.daphne_reasons import name_every_status  # noqa: E402
from chargesim_site.origins import SameOriginValidator  # noqa: E402

leave_bodies_to_django()
pace_responses_to_readers()
name_every_status()

application = ProtocolTypeRouter(
    {
        # /mcp: the MCP server (streamable HTTP, API tokens); everything else: Django.
        "http": with_mcp(django_asgi_app),
        # Scheme, host and port, as Django checks the Origin of a POST (see origins.py).
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
