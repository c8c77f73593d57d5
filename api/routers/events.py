"""The event stream: Server-Sent Events of what the fleet does, as it happens.

Status changes, transactions, OCPP frames and connection events of the chargers (and
locations, and kinds) asked for, from every simulator worker (api/event_stream.py). The
workers collect events only while a stream is open: a stream costs them nothing once it
closes, and nothing at all while none is open.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Query, Router
from ninja.errors import AuthorizationError

from api import event_stream, scope
from api.auth import Caller, caller
from api.errors import READ_ERRORS, ApiError, ErrorBody
from api.models import ApiToken
from api.query_params import LocationId
from chargers.dashboard.pages import may_see_message_log
from chargers.engine_client import LayerDown
from simulator import contract

router = Router(tags=["events"])

Kind = Literal["status", "transaction", "frame", "connection"]
CHARGERS = Query(None, description="Only these charge point ids.")
LOCATIONS = Query(None, description="Only the chargers of these location ids.")
KINDS = Query(None, description="Only these kinds (default: all).")

_EXAMPLE = (
    "retry: 3000\n: subscribed\n\n"
    "id: 1\nevent: status\n"
    'data: {"kind":"status","at":"2026-12-01T10:00:00.000000Z","charger_id":7,'
    '"charge_point_id":"CP-7","location_id":1,"data":{"connector_id":1,"status":"Charging",'
    '"previous":"Preparing","error_code":"NoError"}}\n\n'
    ": keep-alive\n\n"
)


@router.get(
    "/events",
    response={**READ_ERRORS, 422: ErrorBody, 503: ErrorBody},
    openapi_extra={
        "responses": {
            200: {
                "description": "A Server-Sent Events stream (never ends by itself).",
                "content": {
                    "text/event-stream": {"schema": {"type": "string"}, "example": _EXAMPLE}
                },
            }
        }
    },
    summary="Stream the fleet's events",
    description="Server-Sent Events, one per status change (`status`: connector, status, "
    "previous status, error code), transaction (`transaction`: started, confirmed with the "
    "CSMS's id, stopped; ids, idTag and meter values in Wh), OCPP frame (`frame`: direction, "
    "message id, action, the frame's text with any AuthorizationKey as ********) and "
    "connection event (`connection`: connected, connect_failed, closed with its code, "
    "reconnecting, network_cut), of the chargers (charge point ids), locations (ids) and "
    "kinds given (all by default). Each event has an `id` counting up from 1 on this "
    "stream and its `kind` as the event name; `dropped` says how many events a slow reader "
    "missed; `restarted` (`shard`) that a worker restarted, its events from before it was "
    "subscribed again only in the message log. A reconnect opens a new stream: nothing is replayed (`Last-Event-ID` is not "
    "read), so read the message log for what happened meanwhile. A comment is sent every "
    "15 s when nothing else is. A token revoked or expired (or a permission taken away) while the "
    "stream is open ends it within seconds, with a last `revoked` event. Needs "
    "`chargers.view_charger`.",
)
async def stream_events(
    request: HttpRequest,
    charger: list[str] | None = CHARGERS,
    location: list[LocationId] | None = LOCATIONS,
    kind: list[Kind] | None = KINDS,
) -> Any:
    who = caller(request)
    if not await sync_to_async(may_see_message_log)(who.user):
        raise AuthorizationError(
            message="You need the permission 'chargers.view_charger' to watch events."
        )
    pks = await sync_to_async(scope.charger_pks)(charger) if charger else None
    if location:
        await sync_to_async(scope.check_locations)(location)
        if pks is not None:
            await sync_to_async(scope.check_chargers_at)(pks, location)
    layer = get_channel_layer()
    if layer is None:
        raise ApiError(503, "No channel layer is configured: the simulator cannot be reached.")
    subscribe = event_stream.subscription(
        chargers=pks, locations=location, kinds=list(kind or contract.STREAM_KINDS)
    )
    try:
        channel = await event_stream.join(layer, subscribe)
    except Exception as exc:  # Redis away: any of redis-py's errors, or the OS's
        raise ApiError(503, str(LayerDown(exc))) from None
    response = StreamingHttpResponse(
        event_stream.sse(
            layer,
            subscribe,
            settings.CHARGESIM_SHARDS,
            allowed=sync_to_async(partial(_still_allowed, who)),
            channel=channel,
        ),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def _still_allowed(who: Caller) -> bool:
    """Asked again while a stream is open: a token revoked or expired since, or a user
    deactivated or without the permission now, ends it (a new request would be refused the
    same way)."""
    if who.token is not None and not ApiToken.objects.usable().filter(pk=who.token.pk).exists():
        return False
    user = get_user_model().objects.filter(pk=who.user.pk, is_active=True).first()
    return user is not None and may_see_message_log(user)
