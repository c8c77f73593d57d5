"""Browser WebSockets of the dashboard: live snapshots in, commands out.

Every page's socket is a `DashboardConsumer`: it refuses anonymous users (the origin is
checked by `chargesim_site.origins.SameOriginValidator`), joins the groups of the chargers the
page shows, asks their workers for a full snapshot, forwards the engine's idempotent
snapshots and routes the page's commands to the worker of the charger's shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Collection
from typing import Any, Literal

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from chargers.dashboard import access
from chargers.dashboard.backlog import Backlog, Close
from chargers.dashboard.pages import may_see_message_log
from chargers.engine_client import EngineClient, EngineError, FleetOverview
from chargers.models import Charger
from chargers.watch_lease import keep_watching
from simulator import contract
from simulator.contract.failures import brief, layer_errors

# Shard summaries older than this are from a worker that stopped.
SUMMARY_STALE_SECONDS = 15.0
# A page just opened asks every worker for its summary (`first_totals`) and waits
# DashboardConsumer.ack_timeout for the answers, a second more for the layer: until then a
# worker not heard yet has only not answered yet, and the figures do not wait for it ("1 of
# 2 workers reporting: the figures are partial" showed at every opening, until the second
# worker's own summary came, up to SUMMARY_KEEPALIVE_SECONDS later).
FIRST_SUMMARY_SECONDS = 5.0
# How long a page trusts what it read of which workers run a site's chargers (a charger
# moved or added meanwhile is seen after this).
OWNERS_SECONDS = 30.0
# A location's settings in its summaries: the same from every worker, so not added up.
_SETTINGS = ("grid_limit_w", "load_management")
_NOT_ADDED_UP = frozenset({"type", "shard", "shards", "at", "started", "location_id", *_SETTINGS})

# The most messages of the channel layer a page handles in one go (`dispatch`): more than
# a page watches chargers (`max_watched`), with their logs and the summaries; the rest wait
# for the next turn, so that one page's backlog cannot hold the event loop for long.
TAKEN_AT_ONCE = 500

_request_ids = itertools.count(1)
# Sent when the page's user gains or loses "change charger" while the page is open.
ACCESS_CHANGED = "access"
# The close code of a page that stopped reading its socket for too long (backlog.py); the
# page reconnects after it (static/dashboard/live.js).
FELL_BEHIND = 4408
# The close code of a page whose socket could not be written to (a message the encoder
# cannot write): the page reconnects and gets a full snapshot.
WRITE_FAILED = 1011
# The close code of a page opened while the channel layer (Redis) cannot be reached, or
# open when it went away: try again later (as HTTP's 503), which the page does by itself.
# Its handshake failed with a 500 and Daphne's traceback in the web log, every few seconds
# for every open page. (Not 1013: Daphne sends only 1000 and 3000-4999.)
LAYER_DOWN = 4503
# The web log says so at most this often (every page retries every few seconds).
LAYER_DOWN_LOG_SECONDS = 60.0
_layer_down_said = -LAYER_DOWN_LOG_SECONDS

log = logging.getLogger(__name__)


def _say_layer_down(exc: BaseException) -> None:
    global _layer_down_said
    now = time.monotonic()
    if now - _layer_down_said >= LAYER_DOWN_LOG_SECONDS:
        _layer_down_said = now
        log.warning(
            "Dashboard pages cannot connect: the channel layer (Redis) cannot be reached "
            "(%s); they retry by themselves",
            brief(exc),
        )


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    # Seconds to wait for the worker to acknowledge a command, then for its result.
    ack_timeout = 4.0
    result_timeout = 60.0
    max_watched = 200
    # The engine's frame log goes only to pages that show it.
    wants_log = False
    # The sessions' series (a chart of each) only to pages that draw them.
    wants_series = False
    refused = False  # accepted only to be closed with a code the page can read
    access_check_seconds = access.ACCESS_CHECK_SECONDS
    session_group: str | None = None
    backlog: Backlog | None = None
    writer: asyncio.Task[None] | None = None
    closing = False  # a close was sent, or the page went: nothing more is queued
    last_words: asyncio.Task[None] | None = None
    # How long a page whose access ended has to read its last message and close code.
    last_words_seconds = 60.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except layer_errors() as exc:
            # Redis went away under an open page (the receive of its channel failed): one
            # line, not Daphne's traceback for every page, and the page reconnects.
            _say_layer_down(exc)
            self.closing = True
            for task in (self.writer, self.last_words, *getattr(self, "pending", {}).values()):
                if task is not None:
                    task.cancel()
            for name in ("renewal", "guard"):
                if (task := getattr(self, name, None)) is not None:
                    task.cancel()
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": LAYER_DOWN})

    async def dispatch(self, message: Any) -> None:
        """Each message to its handler, as Channels does, without Channels' hop to the
        database thread first (`aclose_old_connections`, before every handler). That thread
        is one for the whole process, so during a busy spell (a connect ramp of 3,000
        chargers) every engine event queued behind it: the fleet page's counts came in one
        burst 6 s late, while a page that watched no chargers had them each second. Every
        database call here goes through `database_sync_to_async`, which closes the old
        connections itself, on that thread, before and after."""
        await self._handle(message)
        if message["type"].startswith("websocket."):
            # The page's own frames come by another `receive`: messages of the layer's
            # taken now could overtake one that task holds already, not yet dispatched.
            return
        # The messages already waiting behind this one, handled now rather than one per
        # `receive`: Channels' loop costs about three turns of the event loop each, and on
        # a loop kept busy (a connect ramp in the embedded mode) a page watching fifty
        # chargers got its second's counts, queued behind their states, seconds late.
        # Only layers that can say what is waiting (`CountingInMemoryChannelLayer`); with
        # Redis the web process runs no worker and its loop is not the busy one.
        waiting = getattr(self.channel_layer, "waiting", None)
        if waiting is None:
            return
        for queued in waiting(self.channel_name, TAKEN_AT_ONCE):
            await self._handle(queued)

    async def _handle(self, message: Any) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self._refuse(access.LOGGED_OUT)
            return
        self.watched: dict[int, str] = {}  # charger pk -> charge point id
        self.pending: dict[str, asyncio.Task[None]] = {}
        self.summaries: dict[
            int, tuple[float, contract.FleetSummary | contract.LocationSummary]
        ] = {}
        self.connected_at = time.monotonic()
        self.can_drive = await self._can_drive(user)
        self.static_groups = await self.page_groups()
        if self.static_groups is None:
            await self._refuse(access.NOT_FOUND)
            return
        key = getattr(self.scope.get("session"), "session_key", None)
        try:
            if key is not None:  # a log-out tells the sockets of its session at once
                self.session_group = access.session_group(key)
                await self.channel_layer.group_add(self.session_group, self.channel_name)
            for group in self.static_groups:
                await self.channel_layer.group_add(group, self.channel_name)
        except layer_errors() as exc:
            _say_layer_down(exc)
            self.static_groups, self.session_group = [], None  # nothing to leave
            await self._refuse(LAYER_DOWN)
            return
        await self.accept()
        # Every message to the page goes through its backlog, written by a task of its
        # own: a page that stops reading holds up that task alone (its `send` waits under
        # Daphne), never the handling of the engine's events or of the page's commands.
        self.backlog = Backlog()
        self.writer = asyncio.create_task(self._write())
        await self.send_json({"type": "hello", "can_drive": self.can_drive})
        await self.page_connected()
        self.renewal = asyncio.create_task(self._renew_watch())
        self.guard = asyncio.create_task(self._guard_access())

    async def _refuse(self, code: int) -> None:
        """Accept, then close with `code`: a close before the accept reaches a browser as
        Daphne's HTTP 403, which the page cannot tell from a server that is down, so a
        page reconnecting after its user logged out kept trying for ever."""
        self.refused = True
        await self.accept()
        await self.close(code=code)

    async def _renew_watch(self) -> None:
        """The engine publishes only for watched chargers: keep the page's watch alive, and
        its channel in its groups, while the page is held up too (`_guard_access` ends it
        with the page's login)."""

        async def renew() -> None:
            if self.watched:
                await self.request_snapshots(dict(self.watched), command=contract.WATCH)

        await keep_watching(
            self.channel_layer, self.channel_name, self._groups, renew, what="dashboard page"
        )

    def _groups(self) -> list[str]:
        """Every group the page's channel is in now."""
        groups = [*(self.static_groups or ()), *map(contract.charger_group, self.watched)]
        return groups if self.session_group is None else [*groups, self.session_group]

    async def _guard_access(self) -> None:
        """Ask every few seconds whether the page's user may still watch; if not, say why
        and close."""
        while True:
            await asyncio.sleep(self.access_check_seconds)
            if not await self._still_allowed():
                return

    async def _still_allowed(self) -> bool:
        """Whether the page may go on (`can_drive` follows the user's permission); if
        not, it was told why and its socket closed."""
        verdict = await self._access()
        if verdict.ended is not None:
            await self._end(verdict.ended)
            return False
        if verdict.can_drive != self.can_drive:
            # The page's controls follow at once: they stayed enabled until a reload, and
            # every click was refused.
            self.can_drive = verdict.can_drive
            await self.send_json({"type": ACCESS_CHANGED, "can_drive": self.can_drive})
        return True

    async def session_ended(self, event: dict[str, Any]) -> None:
        """The page's session logged out (`access.tell_sockets_of_session`)."""
        await self._end(access.WAS_LOGGED_OUT)

    async def _end(self, ended: access.Ended) -> None:
        """A last message the page shows, then a close code it does not reconnect after;
        nothing more reaches it meanwhile (its groups are left now, not at the close)."""
        if self.refused:
            return
        self.refused = True
        await self._stop()
        await self.send_json({"type": "access.ended", "message": ended.message})
        if self.backlog is None or self.writer is None or self.writer.done():
            return  # closed already
        # Both are written once the page has read what came before, also a page that does
        # not read now: closed at once, its socket was dropped a second later (autobahn's
        # close handshake timeout) with the message and the code still unsent, and the page
        # said "connection lost" and reconnected. Nothing else is queued for it meanwhile
        # (its groups are left); one that never reads again is closed after a while.
        self.backlog.close(ended.code)
        self.last_words = asyncio.create_task(self._close_if_not_read(ended.code))

    async def _close_if_not_read(self, code: int) -> None:
        writer = self.writer
        assert writer is not None  # `_end` queued the close for it
        try:
            await asyncio.wait_for(asyncio.shield(writer), self.last_words_seconds)
        except TimeoutError:
            writer.cancel()
            await self._close_now(code)

    async def disconnect(self, code: int) -> None:
        self.closing = True
        for task in (self.writer, self.last_words):
            if task is not None:
                task.cancel()
        await self._stop()

    async def send_json(self, content: Any, close: bool = False) -> None:
        """Queue `content` for the page (backlog.py); close its socket if it has stopped
        reading for too long."""
        if self.backlog is None or self.closing:
            return  # refused before it was open, or closed or closing: nobody reads it
        self.backlog.put(content)
        if close:
            self.backlog.close(1000)
        if self.backlog.too_far_behind:
            log.warning(
                "Closed a dashboard socket (%s) that took none of the last %d updates",
                self.scope.get("path"),
                self.backlog.behind,
            )
            self.refused = True
            await self._stop()
            await self._close_now(FELL_BEHIND)

    async def _write(self) -> None:
        """Send the backlog's messages to the page, one at a time (see `connect`)."""
        assert self.backlog is not None  # made before this task
        try:
            while True:
                message = await self.backlog.take()
                if isinstance(message, Close):  # queued after the page's last message
                    self.closing = True
                    await self.close(code=message.code)
                    return
                await super().send_json(message)
        except Exception:
            # A message the encoder cannot write, or a socket gone: said once, and the
            # socket closed, rather than a task dead unseen and every later message lost
            # while the page waited on a socket that looked open.
            log.exception(
                "Closed a dashboard socket (%s) that could not be written to",
                self.scope.get("path"),
            )
            self.refused = True
            await self._stop()
            await self._close_now(WRITE_FAILED)

    async def _close_now(self, code: int) -> None:
        """Close the socket with `code`, whatever waits for the page."""
        self.closing = True
        if self.writer is not None and self.writer is not asyncio.current_task():
            self.writer.cancel()
        try:
            await self.close(code=code)
        except Exception:  # the socket is gone already: there is nothing left to close
            log.debug("closing a dashboard socket that is gone", exc_info=True)

    async def _stop(self) -> None:
        current = asyncio.current_task()
        for name in ("renewal", "guard"):
            task = getattr(self, name, None)
            if task is not None and task is not current:
                task.cancel()
        for task in list(getattr(self, "pending", {}).values()):
            if task is not current:
                task.cancel()
        groups = [*(getattr(self, "static_groups", None) or ()), self.session_group]
        groups += [contract.charger_group(pk) for pk in getattr(self, "watched", {})]
        for group in groups:
            if group is not None:
                await self.channel_layer.group_discard(group, self.channel_name)
        self.static_groups = []
        self.session_group = None
        self.watched = {}

    # -- what a page is about (subclasses) --------------------------------------------------

    async def page_groups(self) -> list[str] | None:
        """Groups to join besides the watched chargers'; None refuses the connection."""
        return []

    async def page_connected(self) -> None:
        """Runs after accept(): e.g. watch the page's charger."""

    # -- from the browser --------------------------------------------------------------------

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # A refused socket is open until its close is answered: what it sends meanwhile
        # (the page's first watch) must not subscribe a logged-out user to anything.
        if self.refused or not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "watch":
            await self.watch(content.get("chargers") or [])
        elif kind == "command":
            await self.command(content)

    async def watch(self, raw_pks: list[Any]) -> None:
        """Follow exactly these chargers (the rows on the page) and snapshot the new ones."""
        pks: set[int] = set()
        for raw in raw_pks[: self.max_watched] if isinstance(raw_pks, list) else ():
            try:
                pks.add(int(raw))
            except (TypeError, ValueError):
                continue
        for pk in set(self.watched) - pks:
            del self.watched[pk]
            await self.channel_layer.group_discard(contract.charger_group(pk), self.channel_name)
        new = pks - set(self.watched)
        if not new:
            return
        found = await self._charge_point_ids(new)
        for pk, cp_id in found.items():
            self.watched[pk] = cp_id
            await self.channel_layer.group_add(contract.charger_group(pk), self.channel_name)
        await self.request_snapshots(found)

    async def request_snapshots(
        self, chargers: dict[int, str], command: Literal["snapshot", "watch"] = contract.SNAPSHOT
    ) -> None:
        by_shard: dict[int, list[int]] = {}
        shards = settings.CHARGESIM_SHARDS
        for pk, cp_id in chargers.items():
            by_shard.setdefault(contract.shard_of(cp_id, shards), []).append(pk)
        for shard, pks in by_shard.items():
            await self.channel_layer.group_send(
                contract.engine_group(shard),
                contract.watch_request(
                    command,
                    pks,
                    log=self.wants_log,
                    reply_channel=self.channel_name,
                    series=self.wants_series,
                ),
            )

    async def command(self, content: dict[str, Any]) -> None:
        request_id = str(content.get("request_id") or f"r{next(_request_ids)}")[:40]
        name = content.get("command")
        raw_pk: Any = content.get("charger")  # from the browser: anything JSON can hold
        pk: int | None
        try:
            pk = int(raw_pk)
        except (TypeError, ValueError):
            pk = None
        if name not in contract.DRIVE_COMMANDS:
            await self._result(request_id, pk, False, f"unknown command {name!r}")
            return
        if not await self._still_allowed():  # logged out (or locked out) since it opened
            return
        if not self.can_drive:
            await self._result(
                request_id, pk, False, "you may watch but not drive chargers (no change permission)"
            )
            return
        cp_id = self.watched.get(pk) if pk is not None else None
        if cp_id is None and pk is not None:
            cp_id = (await self._charge_point_ids({pk})).get(pk)
        if cp_id is None or pk is None:
            await self._result(request_id, pk, False, "there is no such charger")
            return
        raw_args = content.get("args")
        args: dict[str, Any] = raw_args if isinstance(raw_args, dict) else {}
        # Asked and answered on a channel of its own (the engine client's), so that the
        # page's socket keeps receiving snapshots while the worker runs the command.
        task = asyncio.create_task(self._run_command(request_id, pk, cp_id, name, args))
        self.pending[request_id] = task
        task.add_done_callback(lambda _task: self.pending.pop(request_id, None))

    async def _run_command(
        self, request_id: str, pk: int, cp_id: str, name: str, args: dict[str, Any]
    ) -> None:
        client = EngineClient(
            self.channel_layer,
            shards=settings.CHARGESIM_SHARDS,
            ack_seconds=self.ack_timeout,
            result_seconds=self.result_timeout,
        )
        try:
            result = await client.command(pk, cp_id, name, args)
        except EngineError as exc:  # no worker, or no answer in time: the message says which
            await self._result(request_id, pk, False, str(exc))
            return
        await self._result(request_id, pk, result["ok"], result["message"])

    async def _result(self, request_id: str, pk: int | None, ok: bool, message: str) -> None:
        await self.send_json(
            {
                "type": contract.EVENT_COMMAND_RESULT,
                "request_id": request_id,
                "charger": pk,
                "ok": ok,
                "message": message,
            }
        )

    # -- from the engine (handler name = event type with . -> _) ---------------------------

    async def charger_state(self, event: contract.ChargerState) -> None:
        charger = event["charger"]
        if charger.get("id") in self.watched:
            await self.send_json({"type": contract.EVENT_CHARGER_STATE, "charger": charger})

    async def charger_log(self, event: contract.ChargerLog) -> None:
        if self.wants_log and event["charger_id"] in self.watched:
            await self.send_json(
                {
                    "type": contract.EVENT_CHARGER_LOG,
                    "charger": event["charger_id"],
                    "frames": event["frames"],
                    "full": event["full"],
                }
            )

    async def fleet_summary(self, event: contract.FleetSummary) -> None:
        await self._summary(event, "fleet.counts")

    async def location_summary(self, event: contract.LocationSummary) -> None:
        await self._summary(event, "location.power")

    async def _summary(
        self, event: contract.FleetSummary | contract.LocationSummary, kind: str
    ) -> None:
        """Add up the shards' summaries (each shard sends its own, at least every 5 s).

        A worker that restarted (its summary's `started` changed, or it was silent) or came
        up after the page was opened knows nothing of this page: its chargers are asked for
        again (the page showed their state from before the crash until the next renewal,
        up to 30 s). The total says which watched chargers no worker reports for: those of
        a worker silent for SUMMARY_STALE_SECONDS, since its last summary or, not heard
        yet, since the page connected."""
        now = time.monotonic()
        shard = event["shard"]
        previous = self.summaries.get(shard)
        if previous is None:
            new_worker = now - self.connected_at >= SUMMARY_STALE_SECONDS
        else:
            new_worker = now - previous[0] >= SUMMARY_STALE_SECONDS or previous[1].get(
                "started"
            ) != event.get("started")
        self.summaries[shard] = (now, event)
        if new_worker and self.watched:
            shards = event["shards"]
            theirs = {
                pk: cp_id
                for pk, cp_id in self.watched.items()
                if contract.shard_of(cp_id, shards) == shard
            }
            if theirs:
                await self.request_snapshots(theirs)
        fresh = [
            e
            for at, e in self.summaries.values()
            if now - at < SUMMARY_STALE_SECONDS and e["shards"] == event["shards"]
        ]
        expected = await self.expected_shards(event)
        wanted = set(range(event["shards"])) if expected is None else expected
        of = len(self.awaited(wanted, self.summaries, now) | {e["shard"] for e in fresh})
        total: dict[str, Any] = {"type": kind, "shards": len(fresh), "of": of}
        if len(fresh) < of:
            reporting = {e["shard"] for e in fresh}
            missing = self.awaited(wanted, self.summaries, now) - reporting
            total.update(await self.not_reporting(missing, event["shards"]))
            # A worker not heard yet on a page just opened (each sends a summary every 5 s)
            # is not gone: it answered the page's snapshots, its rows are live. Marked
            # "no live data", they stayed so while it reported, until a charger changed.
            waited = now - self.connected_at >= SUMMARY_STALE_SECONDS
            total["unreported"] = sorted(
                pk
                for pk, cp_id in self.watched.items()
                if (owner := contract.shard_of(cp_id, event["shards"])) not in reporting
                and (waited or owner in self.summaries)
            )
        # A location's settings, from the newest summary: every worker reports the same.
        for key in _SETTINGS:
            if key in event:
                total[key] = event[key]  # type: ignore[literal-required]
        for e in fresh:
            for key, value in e.items():
                if key in _NOT_ADDED_UP:
                    continue
                if isinstance(value, dict):
                    bucket = total.setdefault(key, {})
                    for name, count in value.items():
                        bucket[name] = bucket.get(name, 0) + count
                elif isinstance(value, int | float):
                    total[key] = total.get(key, 0) + value
        await self.send_json(total)

    async def expected_shards(
        self, event: contract.FleetSummary | contract.LocationSummary
    ) -> set[int] | None:
        """The shards whose summaries this total waits for; None: every shard (a worker
        reports the fleet even without a charger)."""
        return None

    # The page's chargers (enabled): the fleet's; a location page's, its own.
    chargers_shown: dict[str, Any] = {}

    async def not_reporting(self, missing: set[int], shards: int) -> dict[str, Any]:
        """For a total that lacks the `missing` shards: those shards, and how many of the
        page's chargers there are in all and on them (from the database, read again after
        OWNERS_SECONDS): "10 of 20 chargers running", not 10 alone."""
        now = time.monotonic()
        if self._per_shard is None or now - self._per_shard[0] >= OWNERS_SECONDS:
            self._per_shard = (now, await self._chargers_per_shard(shards))
        per_shard = self._per_shard[1]
        return {
            "missing_shards": sorted(missing),
            "chargers_enabled": sum(per_shard.values()),
            "chargers_on_missing_shards": sum(per_shard.get(shard, 0) for shard in missing),
        }

    _per_shard: tuple[float, dict[int, int]] | None = None

    # A location whose last hour of power the page's first summary brings (the location
    # page's chart), added up over the workers.
    history_of: int | None = None

    async def ask_every_worker(self) -> FleetOverview | None:
        """Every worker's summary now (None: none answered, or the shards do not match)."""
        client = EngineClient(
            self.channel_layer, shards=settings.CHARGESIM_SHARDS, ack_seconds=self.ack_timeout
        )
        try:
            overview = await client.summary(history=self.history_of)
        except EngineError:
            return None
        return overview if overview.answered else None

    def first_totals(self) -> None:
        """Ask every worker for its summary as the page opens, rather than wait for each
        one's next (up to SUMMARY_KEEPALIVE_SECONDS): the first totals are then whole."""
        task = asyncio.create_task(self.first_summary())
        self.pending["first-summary"] = task
        task.add_done_callback(lambda _task: self.pending.pop("first-summary", None))

    async def first_summary(self) -> None:
        """Add up every worker's answer (`first_totals`) with what is published later."""
        overview = await self.ask_every_worker()
        if overview is None:
            return
        if overview.history is not None:
            # Before the totals: the chart starts with the hour, then adds the live points.
            # Also after a reconnect (a new socket asks again): what the worker kept meanwhile.
            await self.send_json({"type": "location.history", "points": overview.history})
        now = time.monotonic()
        events = [
            event
            for answer in overview.answers.values()
            if (event := self.summary_of(answer)) is not None
            and event["shard"] not in self.summaries  # one published meanwhile is newer
        ]
        for event in events[:-1]:
            self.summaries[event["shard"]] = (now, event)
        if events:  # one total of them all
            kind = "fleet.counts" if "location_id" not in events[-1] else "location.power"
            await self._summary(events[-1], kind)

    def summary_of(
        self, answer: contract.ShardSummary
    ) -> contract.FleetSummary | contract.LocationSummary | None:
        """What of a worker's asked-for summary this page adds up (None: nothing)."""
        return None

    def awaited(self, shards: set[int], heard: Collection[int], now: float) -> set[int]:
        """Of the `shards` a total is expected to add up, those it waits for now: all of
        them once FIRST_SUMMARY_SECONDS passed since the page connected, before that only
        those `heard` since (the others' summaries are on their way)."""
        if now - self.connected_at >= FIRST_SUMMARY_SECONDS:
            return shards
        return {shard for shard in shards if shard in heard}

    # -- database ----------------------------------------------------------------------------

    @database_sync_to_async
    def _chargers_per_shard(self, shards: int) -> dict[int, int]:
        return Charger.objects.enabled().filter(**self.chargers_shown).per_shard(shards)

    @database_sync_to_async
    def _charge_point_ids(self, pks: set[int]) -> dict[int, str]:
        return dict(Charger.objects.filter(pk__in=pks).values_list("pk", "charge_point_id"))

    @database_sync_to_async
    def _access(self) -> access.Access:
        """Whether the page's user may still watch (the middleware read the session once,
        at connect)."""
        key = getattr(self.scope.get("session"), "session_key", None)
        return access.check(self.scope["user"], key, shows_log=self.wants_log)

    @database_sync_to_async
    def _can_drive(self, user: Any) -> bool:
        return user.has_perm("chargers.change_charger")

    @database_sync_to_async
    def _may_see_log(self, user: Any) -> bool:
        return may_see_message_log(user)

    @database_sync_to_async
    def _exists(self, model: Any, pk: int) -> bool:
        return model.objects.filter(pk=pk).exists()


class FleetConsumer(DashboardConsumer):
    """The fleet page: counts of the whole fleet, and the chargers of the shown page."""

    async def page_groups(self) -> list[str] | None:
        return [contract.FLEET_SUMMARY_GROUP]

    async def page_connected(self) -> None:
        self.first_totals()

    def summary_of(self, answer: contract.ShardSummary) -> contract.FleetSummary | None:
        return contract.published_summaries(answer)[0]


class ChargerConsumer(DashboardConsumer):
    """One charger's page: its snapshots, its sessions' series and its OCPP message log."""

    wants_series = True

    async def page_groups(self) -> list[str] | None:
        self.charger_pk = int(self.scope["url_route"]["kwargs"]["pk"])
        # The log only for a user who may see it (the page shows it only to them too).
        self.wants_log = await self._may_see_log(self.scope["user"])
        return [] if await self._exists(Charger, self.charger_pk) else None

    async def page_connected(self) -> None:
        await self.watch([self.charger_pk])

    async def watch(self, raw_pks: list[Any]) -> None:
        # The page follows its own charger only, whatever the browser asks.
        await super().watch([self.charger_pk])


class SiteOwners:
    """Which workers run the chargers of some sites, read from the database and read again
    after OWNERS_SECONDS. A worker reports a site only while it runs a charger there: a
    site whose chargers all run on one of two workers said "1 of 2 workers reporting: the
    figures are partial" for ever."""

    def __init__(self, location_pks: list[int]) -> None:
        self.location_pks = location_pks
        self.read_at = -OWNERS_SECONDS
        self.shards: dict[int, set[int]] = {}

    async def of(self, location_pk: int, shards: int) -> set[int]:
        if time.monotonic() - self.read_at >= OWNERS_SECONDS:
            self.shards = await self._read(shards)
            self.read_at = time.monotonic()
        return self.shards.get(location_pk, set())

    @database_sync_to_async
    def _read(self, shards: int) -> dict[int, set[int]]:
        owners: dict[int, set[int]] = {}
        rows = Charger.objects.filter(location_id__in=self.location_pks, enabled=True)
        for location_pk, cp_id in rows.values_list("location_id", "charge_point_id"):
            owners.setdefault(location_pk, set()).add(contract.shard_of(cp_id, shards))
        return owners


class LocationConsumer(DashboardConsumer):
    """A location's page: the site's live power, and the chargers of the shown page."""

    async def page_groups(self) -> list[str] | None:
        from locations.models import Location

        self.location_pk = self.history_of = pk = int(self.scope["url_route"]["kwargs"]["pk"])
        self.owners = SiteOwners([pk])
        self.chargers_shown = {"location_id": pk}
        return [contract.location_group(pk)] if await self._exists(Location, pk) else None

    async def page_connected(self) -> None:
        self.first_totals()

    def summary_of(self, answer: contract.ShardSummary) -> contract.LocationSummary | None:
        # None from a worker that runs no charger of the site: it does not report it.
        return contract.published_summaries(answer)[1].get(self.location_pk)

    async def expected_shards(
        self, event: contract.FleetSummary | contract.LocationSummary
    ) -> set[int] | None:
        if "location_id" not in event:  # the fleet's summary (restarts are heard there)
            return None
        return await self.owners.of(event["location_id"], event["shards"])  # type: ignore[typeddict-item]


class LocationsConsumer(DashboardConsumer):
    """The Locations list: every site's live power, charging connectors and chargers
    online, added up over the workers (each reports the sites of its own chargers)."""

    max_locations = 500

    async def page_groups(self) -> list[str] | None:
        self.location_pks = await self._location_pks()
        self.owners = SiteOwners(self.location_pks)
        # location pk -> shard -> (when received, that shard's summary of the site)
        self.sites: dict[int, dict[int, tuple[float, contract.LocationSummary]]] = {}
        return [contract.location_group(pk) for pk in self.location_pks]

    async def page_connected(self) -> None:
        # The engine publishes a site's summary when it changes (and every few seconds):
        # ask every worker now, so that the page is complete at once, sites without a
        # running charger included.
        self.first_totals()

    async def first_summary(self) -> None:
        overview = await self.ask_every_worker()
        if overview is None:
            await self.send_json({"type": "locations.unknown", "message": "no simulator worker"})
            return
        answered = set(overview.answered)
        # Kept as if published, so that the sums of the summaries published later hold
        # every worker's share from the start (one published meanwhile is newer).
        now = time.monotonic()
        for answer in overview.answers.values():
            for pk, site_summary in contract.published_summaries(answer)[1].items():
                if pk in self.location_pks:
                    self.sites.setdefault(pk, {}).setdefault(answer["shard"], (now, site_summary))
        for pk in self.location_pks:
            site = overview.locations.get(pk)
            # The workers that run its chargers, of those that answered: a site is partial
            # only when one of its own workers is missing.
            owners = await self.owners.of(pk, overview.shards)
            message = {
                "type": "location.power",
                "location_id": pk,
                "power_w": site["power_w"] if site else 0.0,
                "charging": site["charging"] if site else 0,
                "chargers": site["chargers"] if site else 0,
                "online": site["links"].get("online", 0) if site else 0,
                "shards": len(owners & answered),
                "of": len(owners),
            }
            if site:  # a site without a running charger: the page keeps what it showed
                message["grid_limit_w"] = site["grid_limit_w"]
                message["load_management"] = site["load_management"]
            await self.send_json(message)

    async def location_summary(self, event: contract.LocationSummary) -> None:
        now = time.monotonic()
        shards = self.sites.setdefault(event["location_id"], {})
        shards[event["shard"]] = (now, event)
        fresh = [
            e
            for at, e in shards.values()
            if now - at < SUMMARY_STALE_SECONDS and e["shards"] == event["shards"]
        ]
        owners = await self.owners.of(event["location_id"], event["shards"])
        awaited = self.awaited(owners, shards, now)
        message = {
            "type": "location.power",
            "location_id": event["location_id"],
            "power_w": round(sum(e["power_w"] for e in fresh), 1),
            "charging": sum(e["charging"] for e in fresh),
            "chargers": sum(e["chargers"] for e in fresh),
            "online": sum(e["links"].get("online", 0) for e in fresh),
            "shards": len(fresh),
            "of": len(awaited | {e["shard"] for e in fresh}),
        }
        for key in _SETTINGS:  # from the newest summary, as `_summary` does
            if key in event:
                message[key] = event[key]  # type: ignore[literal-required]
        await self.send_json(message)

    @database_sync_to_async
    def _location_pks(self) -> list[int]:
        from locations.models import Location

        return list(
            Location.objects.order_by("name").values_list("pk", flat=True)[: self.max_locations]
        )
