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
RESUME = Query(
    event_stream.RESUME_SECONDS,
    ge=0,
    le=event_stream.RESUME_MAX_SECONDS,
    description="How long (seconds) the stream is kept after its connection drops, for a "
    "reconnect sending its Last-Event-ID to take up where it was; 0: ended at once.",
)

_EXAMPLE = (
    "retry: 3000\n: subscribed\n\n"
    "id: 9f86d081884c7d65:1\nevent: status\n"
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
    "kinds given (all by default). Each event has an `id`, `<stream>:<n>` with n counting "
    "up from 1 on this stream, and its `kind` as the event name; `dropped` says how many events a slow reader "
    "missed; `restarted` (`shard`) that a worker restarted, its events from before it was "
    "subscribed again only in the message log. A stream whose connection drops is kept for "
    "`resume` seconds (30 by default): a reconnect sending the `Last-Event-ID` header (as "
    "browsers' EventSource does) takes it up where it was, the events since that id sent "
    "first; a reconnect that cannot be (later, to another web process, other filters) "
    "opens a new stream whose first event, `not_resumed`, says so: read the message log "
    "for what happened meanwhile. A comment is sent every "
    "15 s when nothing else is. A token revoked or expired (or a permission taken away) while the "
    "stream is open ends it within seconds, with a last `revoked` event. Needs "
    "`chargers.view_charger`.",
)
async def stream_events(
    request: HttpRequest,
    charger: list[str] | None = CHARGERS,
    location: list[LocationId] | None = LOCATIONS,
    kind: list[Kind] | None = KINDS,
    resume: float = RESUME,
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
    kinds: list[str] = list(kind or contract.STREAM_KINDS)
    # A reconnect takes up the stream only for its caller and the same filters.
    owner = (who.user.pk, who.token.pk if who.token is not None else None)
    key = (sorted(pks) if pks else None, sorted(location or ()), sorted(kinds))
    last_event_id = request.headers.get("Last-Event-ID", "")
    taken = await event_stream.resume(last_event_id, owner, repr(key)) if last_event_id else None
    unresumed = None
    if taken is not None:
        stream, after = taken
        stream.resume = resume
    else:
        unresumed = last_event_id.strip() or None
        layer = get_channel_layer()
        if layer is None:
            raise ApiError(503, "No channel layer is configured: the simulator cannot be reached.")
        subscribe = event_stream.subscription(chargers=pks, locations=location, kinds=kinds)
        stream = event_stream.Stream(
            layer, subscribe, settings.CHARGESIM_SHARDS, owner=owner, key=repr(key), resume=resume
        )
        after = None
        try:
            await stream.join()
        except Exception as exc:  # Redis away: any of redis-py's errors, or the OS's
            raise ApiError(503, str(LayerDown(exc))) from None
    response = StreamingHttpResponse(
        stream.serve(
            allowed=sync_to_async(partial(_still_allowed, who)),
            after=after,
            unresumed=unresumed,
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
