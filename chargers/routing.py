"""WebSocket routes of the dashboard (consumers come with the dashboard)."""

websocket_urlpatterns: list = []
