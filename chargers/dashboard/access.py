"""Whether an open dashboard socket's user may still watch, asked again while it is open.

The auth middleware reads the session once, when the socket opens: a page left open after
its user logged out (in another tab), was deactivated or lost the permission its page was
opened with kept receiving snapshots and OCPP frames for as long as it stayed open. Each
socket asks `check` every ACCESS_CHECK_SECONDS, and a log-out tells the sockets of its
session at once (`session_group`, `tell_sockets_of_session`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import partial
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest

from chargers.dashboard.pages import may_see_message_log
from fleet_io.from_thread import LoopStopped, run_from_thread

log = logging.getLogger(__name__)

# How often an open page's socket asks whether its user may still watch: the longest a
# user logged out elsewhere, deactivated or without the permission now still receives
# (the API's event stream asks as often: api.event_stream.ACCESS_CHECK_SECONDS).
ACCESS_CHECK_SECONDS = 5.0
# The close codes of a page's socket that its script does not reconnect after
# (static/dashboard/live.js): reconnecting cannot help.
LOGGED_OUT = 4401
NO_ACCESS = 4403
NOT_FOUND = 4404  # what the page shows no longer exists
# The event type a log-out sends to the sockets of its session.
SESSION_ENDED = "session.ended"
# How long a log-out waits for the channel layer to take that event (the pages' own checks
# find out within ACCESS_CHECK_SECONDS all the same).
SESSION_END_SECONDS = 5.0


@dataclass(frozen=True)
class Ended:
    """Why a page may no longer watch: its socket's last message, then its close code."""

    code: int
    message: str


WAS_LOGGED_OUT = Ended(LOGGED_OUT, "You were logged out: log in again to watch.")
DEACTIVATED = Ended(NO_ACCESS, "Your account can no longer watch chargers.")
NO_LOG = Ended(
    NO_ACCESS,
    "Your account can no longer see this charger's OCPP messages: reload the page to "
    "watch it without them.",
)


@dataclass(frozen=True)
class Access:
    ended: Ended | None  # None: the page may go on watching
    can_drive: bool = False


def check(user: Any, session_key: str | None, *, shows_log: bool) -> Access:
    """Whether the page of `user` (opened with the session `session_key`, None in a test's
    scope) may still watch: the session still logs this user in (not logged out, expired
    or its password changed), the user is active and, on a page opened with the OCPP
    message log, still may see it."""
    model = auth.get_user_model()
    current: Any
    if session_key is not None:
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        current = auth.get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
        if not current.is_authenticated or current.pk != user.pk:
            # Django logs a deactivated user out too: said as what it is.
            inactive = model._default_manager.filter(pk=user.pk, is_active=False).exists()
            return Access(DEACTIVATED if inactive else WAS_LOGGED_OUT)
    else:
        current = model._default_manager.filter(pk=user.pk).first()
        if current is None or not current.is_active:
            return Access(DEACTIVATED)
    if shows_log and not may_see_message_log(current):
        return Access(NO_LOG)
    return Access(None, can_drive=current.has_perm("chargers.change_charger"))


def session_group(session_key: str) -> str:
    """The channel-layer group of the sockets opened with a session: named by a hash of
    its key, as the key itself logs its user in (the layer may be a shared Redis)."""
    return "dashboard.session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


@receiver(user_logged_out, dispatch_uid="chargers.dashboard.access.logged_out")
def tell_sockets_of_session(sender: Any, request: HttpRequest | None, **kwargs: Any) -> None:
    """A log-out closes the pages open with its session now, not at their next check."""
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    layer = get_channel_layer()
    if key is None or layer is None:
        return
    ended = partial(layer.group_send, session_group(key), {"type": SESSION_ENDED})
    try:
        run_from_thread(ended, SESSION_END_SECONDS)
    except LoopStopped:  # the process is stopping: its pages close with it
        return
    except Exception:  # the layer away (Redis down): the pages' own checks find out
        log.warning("Could not tell the open pages of a session that it logged out", exc_info=True)
