"""The engine's end of the channel layer: run commands from the dashboard, publish summaries.

A worker listens on the group of its shard (`contract.engine_group(shard)`). Every command
names a charger by primary key and a reply channel; the worker acknowledges it at once (so
that the page can tell "no worker" from "slow CSMS"), runs it against its live charger, and
answers with a result and a message for the person who clicked. Once a second it also
publishes its shard's counts (for the fleet page) and each location's live power (for the
location page); pages add up the shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from channels.exceptions import ChannelFull

from simulator import contract
from simulator.core.charge_point import ActionError, Charger
from simulator.core.drops import dropped
from simulator.core.evse import IllegalTransition
from simulator.core.protocol import StopReason
from simulator.runtime.live_fleet import FleetReloader
from simulator.runtime.persistence import Checkpointer
from simulator.runtime.store import Store

log = logging.getLogger(__name__)

# A summary that did not change is sent again this often, so a page that joins later (or a
# shard that restarted) is known within this time.
SUMMARY_KEEPALIVE_SECONDS = 5.0
# channels-redis forgets group members after a day; join again well before that.
REJOIN_SECONDS = 3600.0


class Fleet(Protocol):
    """What the command server needs of the simulator that runs it (`lifecycle.Simulator`);
    a protocol, so that the lifecycle imports this module and not the other way round."""

    shard: int
    shards: int
    store: Store
    connections: dict[str, asyncio.Task[None]]
    checkpointer: Checkpointer
    reloader: FleetReloader

    def connect(self, charger: Charger) -> None: ...

    async def disconnect(self, charger: Charger) -> None: ...


class CommandError(Exception):
    """A command that cannot run, with the message the person who asked will read."""


class CommandServer:
    def __init__(self, service: Fleet, layer: Any, summary_seconds: float = 1.0):
        self.service = service
        self.layer = layer
        self.summary_seconds = summary_seconds
        self.channel = ""
        self._running: set[asyncio.Task[None]] = set()
        # What each group was last sent (without its time) and when, to skip repeats.
        self._last_sent: dict[str, tuple[dict[str, object], float]] = {}

    @property
    def group(self) -> str:
        return contract.engine_group(self.service.shard)

    async def run(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        log.info("answering dashboard commands on %s", self.group)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._receive_loop())
                tasks.create_task(self._summary_loop())
        finally:
            for task in self._running:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(self.layer.group_discard(self.group, self.channel))

    # -- commands ----------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # e.g. redis-py's read timeout on an idle channel; the message waits in Redis.
                log.warning("receiving commands failed (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(0.1)
                continue
            if message.get("type") == contract.FLEET_CHANGED:
                reply_to = message.get("reply_channel")
                if isinstance(reply_to, str):
                    # At once: the sender then knows a worker runs this shard, however long
                    # the apply takes (a checkpoint and a read of the rows come first).
                    received = contract.fleet_received(
                        message.get("request_id"), self.service.shard
                    )
                    await self._deliver(reply_to, received)
                self.service.reloader.submit(message, self.layer)
                continue
            if message.get("type") != contract.COMMAND:
                continue
            task = asyncio.create_task(self.handle(message))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def handle(self, message: contract.EngineCommand) -> None:
        # Read with .get(): the message comes off the channel layer, so a key may be missing.
        reply_to = message.get("reply_channel") or ""
        request_id = message.get("request_id")
        command = message.get("command")
        args = message.get("args") or {}
        if command == contract.SNAPSHOT:
            await self.send_snapshots(reply_to, args.get("chargers") or [], bool(args.get("log")))
            return
        if command == contract.WATCH:
            self.watch(args.get("chargers") or [])
            return
        await self._reply(reply_to, contract.command_ack(request_id))
        charger_id = message.get("charger_id")
        try:
            text = await self.execute(charger_id, command, args)
        except CommandError as exc:
            ok, text = False, str(exc)
        except (ActionError, IllegalTransition) as exc:
            ok, text = False, str(exc)
        except KeyError as exc:  # a connector the charger does not have
            ok, text = False, str(exc.args[0]) if exc.args else "no such connector"
        except Exception as exc:
            log.exception("command %s on charger #%s failed", command, charger_id)
            ok, text = False, f"the simulator failed: {type(exc).__name__}: {exc}"
        else:
            ok = True
        await self._reply(
            reply_to, contract.command_result(request_id, charger_id, command, ok, text)
        )

    async def execute(self, charger_id: Any, command: Any, args: dict[str, Any]) -> str:
        if command not in contract.DRIVE_COMMANDS:
            raise CommandError(f"unknown command {command!r}")
        charger = self._charger(charger_id)
        if command == "connect":
            return self._connect(charger)
        if command == "disconnect":
            if charger.id not in self.service.connections:
                raise CommandError("charger is offline")
            await self.service.disconnect(charger)
            return f"{charger.id} disconnected"
        if command == "cut_network":
            seconds = _number(args, "seconds", 1, 86_400)
            if charger.id not in self.service.connections:
                raise CommandError("charger is offline")
            charger.cut_network(seconds)
            return f"network of {charger.id} cut for {seconds:g} s"
        if command == "plug_in":
            return await self._plug_in(charger, args)
        if command == "present_id_tag":
            return await self._present_id_tag(charger, args)
        connector_id = _connector(args)
        if command == "stop":
            charger.stop_transaction(connector_id, StopReason.LOCAL)
            return f"transaction on connector {connector_id} stopped"
        if command == "unplug":
            charger.unplug(connector_id)
            return f"vehicle unplugged from connector {connector_id}"
        if command == "inject_fault":
            code = str(args.get("error_code") or "OtherError")
            if code not in contract.FAULT_CODES:
                raise CommandError(f"{code!r} is not an OCPP 1.6 error code")
            info = str(args.get("info") or "")[:50] or None
            charger.inject_fault(connector_id, code, info)
            return f"connector {connector_id} faulted ({code})"
        if command == "clear_fault":
            charger.clear_fault(connector_id)
            return f"fault on connector {connector_id} cleared"
        raise CommandError(f"{command} is not available from the dashboard")

    def _charger(self, charger_id: Any) -> Charger:
        try:
            pk = int(charger_id)
        except (TypeError, ValueError):
            raise CommandError("no charger given") from None
        charger = self.service.store.by_pk(pk)
        if charger is None:
            shard = f" (shard {self.service.shard}/{self.service.shards})"
            raise CommandError(
                f"charger #{pk} is not running on this simulator worker{shard}: it is "
                "disabled, deleted, or CHARGESIM_SHARDS differs from the workers' --shard N"
            )
        return charger

    def _connect(self, charger: Charger) -> str:
        if not charger.spec.csms_url:
            raise CommandError("the charger has no CSMS URL")
        task = self.service.connections.get(charger.id)
        if task is not None and not task.done():
            return f"{charger.id} is already connected"
        self.service.connect(charger)
        return f"{charger.id} connecting to {charger.spec.csms_url}"

    async def _plug_in(self, charger: Charger, args: dict[str, Any]) -> str:
        from simulator.runtime.persistence import load_vehicles

        connector_id = _connector(args)
        soc = _number(args, "soc", 0, 100, default=20.0)
        target = _number(args, "target_soc", 1, 100, default=100.0)
        vehicle = None
        if args.get("vehicle_id") not in (None, ""):
            vehicle_id = int(_number(args, "vehicle_id", 1, 2**31))
            vehicles = await sync_to_async(_fresh(load_vehicles), thread_sensitive=False)()
            vehicle = vehicles.get(vehicle_id)
            if vehicle is None:
                raise CommandError(f"there is no vehicle model #{vehicle_id}")
        else:
            vehicle = charger.pick_vehicle()
            if vehicle is None:
                raise CommandError("choose a vehicle model (the charger has no default)")
        charger.plug_in(connector_id, vehicle, soc=soc, target_soc=target)
        return f"{vehicle.name} plugged into connector {connector_id} at {soc:g} %"

    async def _present_id_tag(self, charger: Charger, args: dict[str, Any]) -> str:
        connector_id = _connector(args)
        id_tag = str(args.get("id_tag") or "").strip()
        if not id_tag or len(id_tag) > 20:
            raise CommandError("an idTag has 1 to 20 characters")
        status = await charger.present_id_tag(connector_id, id_tag)
        if status == "Stopped":
            return f"idTag {id_tag} stopped its transaction on connector {connector_id}"
        if status != "Accepted":
            raise CommandError(f"idTag {id_tag} was not accepted ({status})")
        if connector_id in charger.transactions:
            return f"idTag {id_tag} accepted: transaction started on connector {connector_id}"
        return f"idTag {id_tag} accepted: plug in a vehicle on connector {connector_id}"

    def watch(self, pks: list[Any]) -> None:
        """A page still shows these chargers: renew their watch leases (also of those this
        worker does not run now, so that one it loads later is published at once)."""
        from simulator.runtime.events import EventPublisher

        publisher = self.service.checkpointer.downstream
        if not isinstance(publisher, EventPublisher):
            return
        for raw in pks[:1000]:
            try:
                publisher.watch(int(raw))
            except (TypeError, ValueError):
                continue

    async def send_snapshots(self, reply_to: str, pks: list[Any], with_log: bool) -> None:
        """A page connected: the full state of the chargers it shows that this worker runs."""
        from simulator.runtime.events import EventPublisher, snapshot

        publisher = self.service.checkpointer.downstream
        for raw in pks[:1000]:
            try:
                pk = int(raw)
            except (TypeError, ValueError):
                continue
            if isinstance(publisher, EventPublisher):
                publisher.watch(pk)  # also when not loaded: it may be enabled or added later
            charger = self.service.store.by_pk(pk)
            if charger is None:
                continue
            await self._reply(reply_to, contract.charger_state(snapshot(charger)))
            if with_log and isinstance(publisher, EventPublisher) and charger.spec.db_id:
                frames = publisher.frames.get(charger.id) or ()
                await self._reply(
                    reply_to, contract.charger_log(charger.spec.db_id, frames, full=True)
                )

    async def _reply(
        self,
        channel: str,
        message: contract.CommandAck
        | contract.CommandResult
        | contract.ChargerState
        | contract.ChargerLog,
    ) -> None:
        if not channel:
            return
        await self._deliver(channel, message)

    async def _deliver(self, channel: str, message: Any) -> None:
        """Send to one caller's channel; a caller that went away, or a full channel, costs
        only this message (counted: the layer counts a full channel, this the rest)."""
        try:
            await self.layer.send(channel, message)
        except ChannelFull:
            log.info("reply to %s not delivered: its channel is full", channel)
        except Exception as exc:
            dropped("reply_undelivered")
            log.info("reply to %s not delivered: %s", channel, exc)

    # -- summaries ---------------------------------------------------------------------------

    async def _summary_loop(self) -> None:
        joined = time.monotonic()
        while True:
            await asyncio.sleep(self.summary_seconds)
            try:
                await self.publish_summaries()
                if time.monotonic() - joined > REJOIN_SECONDS:
                    await self.layer.group_add(self.group, self.channel)
                    joined = time.monotonic()
            except Exception:
                log.exception("publishing summaries failed")

    def summaries(self) -> tuple[contract.FleetCounts, dict[int, contract.SiteCounts]]:
        # Once a second over every charger and connector (20,000 at 10,000 chargers), so
        # the loop counts enum members (hashing a member is cheap, `.value` and `str()` are
        # not) and turns them into names once, at the end.
        statuses: Counter[Any] = Counter()
        links: Counter[Any] = Counter()
        power_w = 0.0
        sites: dict[int, _Site] = {}
        for charger in self.service.store:
            link = charger.link
            links[link] += 1
            location_id = charger.spec.location_id
            site = None
            if location_id is not None:
                site = sites.get(location_id)
                if site is None:
                    site = sites[location_id] = _Site()
                site.chargers += 1
                site.links[link] += 1
            for evse in charger.evses:
                status, power = evse.status, evse.power_w
                statuses[status] += 1
                power_w += power
                if site is not None:
                    site.power_w += power
                    site.statuses[status] += 1
                    if power > 0:
                        site.charging += 1
        fleet = contract.FleetCounts(
            chargers=len(self.service.store),
            statuses=_names(statuses),
            links=_names(links),
            power_w=round(power_w, 1),
        )
        locations = {
            pk: contract.SiteCounts(
                power_w=round(site.power_w, 1),
                chargers=site.chargers,
                charging=site.charging,
                statuses=_names(site.statuses),
                links=_names(site.links),
            )
            for pk, site in sites.items()
        }
        return fleet, locations

    async def publish_summaries(self) -> None:
        fleet, locations = self.summaries()
        shard, shards, now = self.service.shard, self.service.shards, time.time()
        await self._publish_if_changed(
            contract.FLEET_SUMMARY_GROUP, contract.fleet_summary(shard, shards, fleet, now)
        )
        for pk, site in locations.items():
            await self._publish_if_changed(
                contract.location_group(pk), contract.location_summary(shard, shards, pk, site, now)
            )

    async def _publish_if_changed(
        self, group: str, message: contract.FleetSummary | contract.LocationSummary
    ) -> None:
        now = time.monotonic()
        unchanged = {key: value for key, value in message.items() if key != "at"}
        previous = self._last_sent.get(group)
        if (
            previous is not None
            and previous[0] == unchanged
            and now - previous[1] < SUMMARY_KEEPALIVE_SECONDS
        ):
            return
        self._last_sent[group] = (unchanged, now)
        await self.layer.group_send(group, message)


class _Site:
    """One location's counts while `summaries` walks the fleet."""

    __slots__ = ("chargers", "charging", "links", "power_w", "statuses")

    def __init__(self) -> None:
        self.power_w = 0.0
        self.chargers = 0
        self.charging = 0
        self.statuses: Counter[Any] = Counter()
        self.links: Counter[Any] = Counter()


def _names(counts: Counter[Any]) -> dict[str, int]:
    """Counts keyed by enum members (StrEnum: their str() is the value) -> by name."""
    return {str(member): n for member, n in counts.items()}


def _fresh(function: Any) -> Any:
    """Run an ORM function in a worker thread and close its connection afterwards."""
    from django.db import close_old_connections

    def run(*args: Any) -> Any:
        close_old_connections()
        try:
            return function(*args)
        finally:
            close_old_connections()

    return run


def _number(
    args: dict[str, Any], name: str, low: float, high: float, default: float | None = None
) -> float:
    raw: Any = args.get(name)  # from a browser: anything JSON can hold
    if raw in (None, ""):
        if default is None:
            raise CommandError(f"{name.replace('_', ' ')} is required")
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise CommandError(f"{name.replace('_', ' ')} must be a number") from None
    if not low <= value <= high:
        raise CommandError(f"{name.replace('_', ' ')} must be within {low:g} and {high:g}")
    return value


def _connector(args: dict[str, Any]) -> int:
    value = _number(args, "connector_id", 1, 99, default=1)
    if value != int(value):
        raise CommandError("connector id must be a whole number")
    return int(value)
