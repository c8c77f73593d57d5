"""WebSocket routes of the dashboard."""

from django.urls import path

from chargers.dashboard import consumers

websocket_urlpatterns = [
    path("ws/fleet/", consumers.FleetConsumer.as_asgi()),
    path("ws/chargers/<int:pk>/", consumers.ChargerConsumer.as_asgi()),
    path("ws/locations/", consumers.LocationsConsumer.as_asgi()),
    path("ws/locations/<int:pk>/", consumers.LocationConsumer.as_asgi()),
]
