"""The engine's end of the channel layer: run commands from the dashboard and the API,
answer state and summary requests, publish summaries.

A worker listens on the group of its shard (`contract.engine_group(shard)`). Every command
names a charger by primary key and a reply channel; the worker acknowledges it at once (so
that the sender can tell "no worker" from "slow CSMS"), runs it against its live charger,
and answers with a result, a message for the person who asked, and the charger's state
after it. An action may wait for a condition (`wait_for`, see `runtime.conditions`) before
it is answered. A bulk command drives many chargers of the shard, chosen by ids, location
and live connector status, and is answered with one result per charger. Once a second the
worker also publishes its shard's counts (for the fleet page) and each location's live
power (for the location page); pages add up the shards. The same counts feed each site's
last hour (`site_history`), which a summary request for a site carries.

Every value of a message comes from outside (a browser, a script): each is checked here
and a bad one is answered with a message, never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from channels.exceptions import ChannelFull

from chargers.orm_threads import in_thread
from simulator import contract
from simulator.contract import overrides, traffic
from simulator.contract.failures import layer_errors
from simulator.core.charge_point import ActionError, Charger
from simulator.core.drops import dropped
from simulator.core.evse import IllegalTransition
from simulator.core.link import BootState, LinkState
from simulator.core.protocol import StopReason
from simulator.core.vehicle import VehicleSpec
from simulator.ocpp16.client import ChargePointClient, shown_url
from simulator.runtime.absence import why_not_running
from simulator.runtime.conditions import Conditions
from simulator.runtime.connect_ramp import ConnectRamp
from simulator.runtime.events import EventPublisher, snapshot
from simulator.runtime.live_fleet import FleetReloader
from simulator.runtime.outage import Outage
from simulator.runtime.persistence import Checkpointer
from simulator.runtime.store import Store
from simulator.runtime.tally import Tally
from simulator.runtime.traffic import TrafficDriver, load_profiles, site_time_zone

log = logging.getLogger(__name__)

# At most this many 10 ms turns for a cut connection to be seen closed (a few, in practice).
CUT_SETTLE_TURNS = 200

# A summary that did not change is sent again this often, so a page that joins later (or a
# shard that restarted) is known within this time (the pages count on it: the contract's).
SUMMARY_KEEPALIVE_SECONDS = contract.SUMMARY_KEEPALIVE_SECONDS
# How often the worker joins its group again (one ZADD): channels-redis forgets members after
# a day, and a Redis restarted without its data, flushed or failed over forgets them at
# once, with no error for the worker to see. Until it joined again, every command was
# answered "No simulator worker is running" (it was once an hour).
REJOIN_SECONDS = 5.0
# Most chargers one bulk command may list (a shard of 10,000 chargers fits).
BULK_MAX_CHARGERS = 100_000


class Fleet(Protocol):
    """What the command server needs of the simulator that runs it (`lifecycle.Simulator`);
    a protocol, so that the lifecycle imports this module and not the other way round."""

    shard: int
    shards: int
    store: Store
    connections: dict[str, asyncio.Task[None]]
    checkpointer: Checkpointer
    reloader: FleetReloader
    ramp: ConnectRamp
    publisher: EventPublisher | None
    conditions: Conditions
    tally: Tally

    def connect(self, charger: Charger, *, paced: bool = False) -> None: ...

    async def disconnect(self, charger: Charger) -> None: ...

    async def traffic_driver(self) -> TrafficDriver: ...


class CommandError(Exception):
    """A command that cannot run, with the message the person who asked will read."""

    kind = contract.ERROR_REFUSED


class InvalidArgument(CommandError):
    """The command or one of its values is wrong: the asker's mistake, not the charger's.
    `field`: the argument it is about, when one is (the API names it in its 422)."""

    kind = contract.ERROR_INVALID

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotRunning(CommandError):
    """This worker does not run the charger (disabled, deleted, another shard): `why`
    says which, once the charger's row is read."""

    kind = contract.ERROR_NOT_RUNNING

    def __init__(self, pk: int) -> None:
        super().__init__(f"charger #{pk} is not running on this simulator worker")
        self.pk = pk


@dataclass(slots=True, frozen=True)
class Wait:
    """A checked `wait_for`: the condition, on which connector, for how long at most."""

    condition: str
    connector_id: int
    timeout: float


@dataclass(slots=True)
class Outcome:
    ok: bool
    message: str
    error: str | None = None
    wait: contract.WaitOutcome | None = None
    field: str | None = None  # the argument an ERROR_INVALID is about


class CommandServer:
    def __init__(
        self,
        service: Fleet,
        layer: Any,
        summary_seconds: float = contract.SUMMARY_CHECK_SECONDS,
    ):
        self.service = service
        self.layer = layer
        self.summary_seconds = summary_seconds
        self.channel = ""
        self.started = time.time()  # said in its summaries: pages see a restart by it
        self._running: set[asyncio.Task[None]] = set()
        # What each group was last sent (without its time) and when, to skip repeats.
        self._last_sent: dict[str, tuple[dict[str, object], float]] = {}
        # The counts `publish_summaries` last went through, and when.
        self._published: contract.FleetCounts | None = None
        self._compared = -math.inf

    @property
    def group(self) -> str:
        return contract.engine_group(self.service.shard)

    async def run(self) -> None:
        # Joined here first, before anything else runs on the loop (the worker's caller may
        # send a command right after the start); if Redis cannot be reached, `_receive_loop`
        # goes on trying. A worker started while Redis was away ended this task at its first
        # step, and never answered a command, however soon Redis came back.
        outage = Outage("receiving commands", known=layer_errors())
        joined = False
        try:
            self.channel = await self.layer.new_channel()
            await self.layer.group_add(self.group, self.channel)
            joined = True
            log.info("answering dashboard commands on %s", self.group)
        except Exception as exc:
            await asyncio.sleep(outage.failed(exc))
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._receive_loop(outage, joined=joined))
                tasks.create_task(self._summary_loop())
        finally:
            for task in self._running:
                task.cancel()
            if self.channel:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.layer.group_discard(self.group, self.channel))

    # -- commands ----------------------------------------------------------------------------

    async def _receive_loop(self, outage: Outage, *, joined: bool) -> None:
        while True:
            try:
                if not self.channel:
                    self.channel = await self.layer.new_channel()
                if not joined or outage.ongoing:  # Redis may have come back without its data
                    await self.layer.group_add(self.group, self.channel)
                    # The layer answers again: said now, not at the next command, which a
                    # quiet shard may get hours later (its last line said it was failing).
                    outage.recovered()
                    if not joined:
                        joined = True
                        log.info("answering dashboard commands on %s", self.group)
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Redis away, or redis-py's read timeout on an idle channel (the message
                # then waits in Redis).
                await asyncio.sleep(outage.failed(exc))
                continue
            outage.recovered()
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == contract.FLEET_CHANGED:
                reply_to = message.get("reply_channel")
                if isinstance(reply_to, str):
                    # At once: the sender then knows a worker runs this shard, however long
                    # the apply takes (a checkpoint and a read of the rows come first).
                    received = contract.fleet_received(
                        message.get("request_id"), self.service.shard, self.service.shards
                    )
                    await self._deliver(reply_to, received)
                self.service.reloader.submit(message, self.layer)
                continue
            if kind in (contract.COMMAND, contract.BULK_COMMAND) and contract.expired(
                message, time.time()
            ):
                # Its sender answered "no worker runs it" already (this worker was paused,
                # or behind): done now, it would happen after the caller was told it did
                # not, and a script that retried would get it twice.
                dropped("command_expired")
                log.warning(
                    "%s %r dropped: read after its sender had given up on it",
                    "bulk command" if kind == contract.BULK_COMMAND else "command",
                    message.get("command"),
                )
                continue
            if kind in (contract.EVENTS_SUBSCRIBE, contract.EVENTS_UNSUBSCRIBE):
                self.subscription(message)
            elif kind == contract.COMMAND:
                self._start(self.handle(message))
            elif kind == contract.BULK_COMMAND:
                self._start(self.handle_bulk(message))
            elif kind == traffic.TRAFFIC:
                self._start(self.handle_traffic(message))

    def _start(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def handle(self, message: contract.EngineCommand) -> None:
        # Read with .get(): the message comes off the channel layer, so a key may be missing.
        reply_to = _text(message.get("reply_channel"))
        request_id = _request_id(message.get("request_id"))
        command = message.get("command")
        args = _args(message.get("args"))
        if command == contract.SNAPSHOT:
            await self.send_snapshots(
                reply_to,
                _list(args.get("chargers")),
                bool(args.get("log")),
                series=bool(args.get("series")),
            )
            return
        if command == contract.WATCH:
            self.watch(_list(args.get("chargers")), log=bool(args.get("log", True)))
            return
        if command == contract.SUMMARY:
            site = args.get("history")
            # A pk from the web side; anything else asks for no history (never a crash).
            history = site if isinstance(site, int) and not isinstance(site, bool) else None
            await self._reply(reply_to, self.shard_summary(request_id, history=history))
            return
        await self._reply(reply_to, contract.command_ack(request_id, self.started))
        charger_id = message.get("charger_id")

        async def done(text: str) -> None:
            await self._reply(reply_to, contract.command_done(request_id, text))

        try:
            wait = parse_wait(message.get("wait_for"), args)
        except CommandError as exc:
            outcome = Outcome(False, str(exc), exc.kind, field=_field_of(exc))
        else:
            outcome = await self.perform(charger_id, command, args, wait, done=done)
        pk = _pk(charger_id)
        charger = self.service.store.by_pk(pk) if pk is not None else None
        await self._reply(
            reply_to,
            contract.command_result(
                request_id,
                pk,
                command if isinstance(command, str) else None,
                outcome.ok,
                outcome.message,
                error=outcome.error,
                charger=snapshot(charger) if charger is not None else None,
                wait=outcome.wait,
                field=outcome.field,
            ),
        )

    async def perform(
        self,
        charger_id: Any,
        command: Any,
        args: dict[str, Any],
        wait: Wait | None = None,
        catalogue: Mapping[int, VehicleSpec] | None = None,
        *,
        done: Callable[[str], Awaitable[None]] | None = None,
        paced: bool = False,
    ) -> Outcome:
        """Run one command (or `state`) on one charger and, if it was done, wait for the
        condition (telling `done` first what was done, for a caller that may lose this
        worker during the wait); never raises."""
        try:
            if command == contract.STATE:
                charger = self._charger(charger_id)
                if args.get("connector_id") is not None:
                    # The connector the answer (or its wait) is about must exist: a script
                    # asking for connector 5 of a one-connector charger hears so.
                    charger.evse(_connector(args))
                # The meter visits a steadily charging connector only at its events (a sample
                # due, a limit): its register and SoC as of now, not as of the last sample.
                charger.settle_meter()
                text = f"{charger.id} is {charger.link.value}, boot {charger.boot.value}"
            else:
                text = await self.execute(charger_id, command, args, catalogue, paced=paced)
        except NotRunning as exc:
            return Outcome(False, (await self._not_running([exc.pk]))[exc.pk], exc.kind)
        except CommandError as exc:
            return Outcome(False, str(exc), exc.kind, field=_field_of(exc))
        except (ActionError, IllegalTransition) as exc:
            return Outcome(False, str(exc), contract.ERROR_REFUSED)
        except KeyError as exc:  # a connector the charger does not have
            message = str(exc.args[0]) if exc.args else "no such connector"
            return Outcome(False, message, contract.ERROR_INVALID, field="connector_id")
        except Exception as exc:
            log.exception("command %s on charger #%s failed", command, charger_id)
            text = f"the simulator failed: {type(exc).__name__}: {exc}"
            return Outcome(False, text, contract.ERROR_FAILED)
        outcome = Outcome(True, text)
        pk = _pk(charger_id)
        if wait is not None and pk is not None:
            if done is not None and command != contract.STATE:
                await done(text)
            outcome.wait = await self.service.conditions.wait(
                pk, wait.condition, wait.connector_id, wait.timeout
            )
        return outcome

    async def execute(
        self,
        charger_id: Any,
        command: Any,
        args: dict[str, Any],
        catalogue: Mapping[int, VehicleSpec] | None = None,
        *,
        paced: bool = False,
    ) -> str:
        """`paced`: one charger of a bulk command, whose connect takes its turn in the
        connect ramp."""
        if command not in contract.DRIVE_COMMANDS:
            raise InvalidArgument(f"unknown command {command!r}")
        charger = self._charger(charger_id)
        if command == "connect":
            return self._connect(charger, paced=paced)
        if command == "disconnect":
            if charger.id not in self.service.connections:
                raise CommandError("charger is offline")
            await self.service.disconnect(charger)
            return f"{charger.id} disconnected"
        if command == "reboot":
            return await self._power_cycle(charger, paced=paced)
        if command == "cut_network":
            seconds = _number(args, "seconds", overrides.CUT_MIN_S, overrides.CUT_MAX_S)
            if charger.id not in self.service.connections:
                raise CommandError("charger is offline")
            charger.cut_network(seconds)
            # The abort reaches the connection on the loop's next turns: answered before,
            # the charger still read as online (its snapshot, a `wait_for` Accepted met at
            # once while the network was down).
            for _ in range(CUT_SETTLE_TURNS):
                if not charger.online:
                    break
                await asyncio.sleep(0.01)
            return f"network of {charger.id} cut for {seconds:g} s"
        if command == "request_certificate":
            if charger.id not in self.service.connections:
                raise CommandError("charger is offline")
            charger.request_certificate()
            return f"{charger.id} asked its CSMS for a certificate (SignCertificate)"
        if command in _IMPAIRMENTS:
            try:
                return await self._impair(charger, command, args)
            except ValueError as exc:
                raise InvalidArgument(str(exc), getattr(exc, "field", None)) from None
        if command == "plug_in":
            return await self._plug_in(charger, args, catalogue)
        if command == "present_id_tag":
            return await self._present_id_tag(charger, args)
        connector_id = _connector(args)
        if command == "stop":
            charger.stop_transaction(connector_id, _stop_reason(args))
            if not charger.online:
                # Offline (a network cut): the StopTransaction waits in the outbox.
                return (
                    f"transaction on connector {connector_id} stopped; its StopTransaction "
                    "is sent once the charger is back online"
                )
            return f"transaction on connector {connector_id} stopped"
        if command == "unplug":
            charger.unplug(connector_id)
            return f"vehicle unplugged from connector {connector_id}"
        if command == "pause_ev":
            charger.pause_ev(connector_id)
            status = charger.evse(connector_id).status
            if connector_id not in charger.transactions:
                # Allowed (the car will not ask for power), but no session was paused.
                return (
                    f"the EV on connector {connector_id} has no session to pause ({status}): "
                    "it is marked paused, so a session started later begins SuspendedEV"
                )
            return f"the EV on connector {connector_id} stopped drawing power ({status})"
        if command == "resume_ev":
            charger.resume_ev(connector_id)
            status = charger.evse(connector_id).status
            return f"the EV on connector {connector_id} requests power again ({status})"
        if command == "inject_fault":
            code = str(args.get("error_code") or "OtherError")
            if code not in contract.FAULT_CODES:
                raise InvalidArgument(f"{code!r} is not an OCPP 1.6 error code")
            info = str(args.get("info") or "")[:50] or None
            problem = None if info is None else contract.fault_info_problem(info)
            if problem is not None:
                raise InvalidArgument(problem)
            charger.inject_fault(connector_id, code, info)
            return f"connector {connector_id} faulted ({code})"
        if command == "clear_fault":
            charger.clear_fault(connector_id)
            return f"fault on connector {connector_id} cleared"
        raise InvalidArgument(f"{command} is not available from the dashboard")

    async def _impair(self, charger: Charger, command: str, args: dict[str, Any]) -> str:
        """Fault injection: answer overrides, network conditions, a close, clock skew. Set
        on the running charger only (a charger's stored values are its row's); a bad
        value raises ValueError from the contract's checks."""
        impairments = charger.impairments
        if command == "set_answer_override":
            if args.get("clear") is True:
                action = args.get("action")
                if action is not None and action not in overrides.ANSWER_STATUSES:
                    raise InvalidArgument(f"{action!r} is not a CALL the CSMS sends")
                removed = impairments.answers.clear(action)
                return f"{removed} answer override(s) of {charger.id} cleared"
            if "clear" in args and args["clear"] is not False:
                raise InvalidArgument("clear must be true (or left out)")
            raw = args.get("rule", {k: v for k, v in args.items() if k != "clear"})
            rule = overrides.check_rule(raw)
            impairments.answers.add(rule)
            what = next(f"{k} {rule[k]}" for k in overrides.KINDS if k in rule)  # type: ignore[literal-required]
            which = "every" if rule["mode"] == "every" else "the next"
            return f"{charger.id} answers {which} {rule['action']} with {what}"
        if command == "set_network":
            checked = overrides.check_network(args)
            seed = args.get("seed")
            if seed is not None:
                if isinstance(seed, bool) or not isinstance(seed, int):
                    raise InvalidArgument("seed must be a whole number")
                impairments.seed(seed)
            elif not checked:
                raise InvalidArgument("give latency_ms, jitter_ms or drop_rate")
            network = impairments.network
            network.latency_ms = checked.get("latency_ms", network.latency_ms)
            network.jitter_ms = checked.get("jitter_ms", network.jitter_ms)
            network.drop_rate = checked.get("drop_rate", network.drop_rate)
            # Its page shows the conditions: a snapshot now, not at its next change.
            charger.listener.on_change(charger)
            return (
                f"network of {charger.id}: latency {network.latency_ms} ms, jitter "
                f"{network.jitter_ms} ms, drop rate {network.drop_rate:g}"
            )
        if command == "close_connection":
            code, reason = overrides.check_close(args)
            transport = charger.transport
            if not isinstance(transport, ChargePointClient):
                raise CommandError("charger is offline")
            await transport.close_with(code, reason)
            return f"{charger.id} closed its connection with code {code}"
        impairments.clock_skew_s = overrides.check_skew(args.get("seconds"))
        return f"clock of {charger.id} off by {impairments.clock_skew_s:+g} s"

    def _charger(self, charger_id: Any) -> Charger:
        pk = _pk(charger_id)
        if pk is None:
            raise InvalidArgument("no charger given")
        charger = self.service.store.by_pk(pk)
        if charger is None:
            raise NotRunning(pk)
        return charger

    async def _not_running(self, pks: list[int]) -> dict[int, str]:
        service = self.service
        return await why_not_running(pks, service.reloader, service.shard, service.shards)

    async def _power_cycle(self, charger: Charger, *, paced: bool = False) -> str:
        """A reboot; `paced` (a bulk reboot): it reconnects in its turn of the ramp, as a
        bulk connect does, not with the rest of the bulk in the same second."""
        service = self.service
        text = f"{charger.id} {await service.reloader.power_cycle(charger, paced=paced)}"
        if paced and service.ramp.paces and charger.id in service.connections:
            text += (
                f"; it reconnects in its turn of the connect ramp ({service.ramp.rate:g} "
                "chargers a second)"
            )
        return text

    def _connect(self, charger: Charger, *, paced: bool = False) -> str:
        """Connect the charger now; `paced` (a bulk connect), in its turn of the ramp."""
        if not charger.spec.csms_url:
            raise CommandError("the charger has no CSMS URL")
        service = self.service
        task = service.connections.get(charger.id)
        ramp = service.ramp
        if task is not None and not task.done():
            if ramp.waiting(charger.id):
                if paced:
                    return f"{charger.id} is waiting for its turn in the connect ramp already"
                # Asked for this one charger: now, not behind the ramp's queue.
                service.connections.pop(charger.id, None)
                task.cancel()
                service.connect(charger)
                return (
                    f"{charger.id} was waiting for its turn in the connect ramp: connecting "
                    f"now to {shown_url(charger.spec.csms_url)}"
                )
            if charger.link is LinkState.ONLINE:
                return f"{charger.id} is already connected"
            if charger.link is LinkState.CONNECTING:
                return f"{charger.id} is connecting already"
            left = charger.offline_until - charger.clock.monotonic()
            if left > 0:
                return f"{charger.id} reconnects when its network cut ends ({left:.0f} s left)"
            # Waiting out its backoff (up to a minute): someone who asks to connect, say
            # after bringing the CSMS back, means now, not at the next try.
            service.connections.pop(charger.id, None)
            task.cancel()
            service.connect(charger, paced=paced)
            why = f" ({charger.link_error})" if charger.link_error else ""
            return (
                f"{charger.id} was waiting to retry{why}: connecting now to "
                f"{shown_url(charger.spec.csms_url)}"
            )
        service.connect(charger, paced=paced)
        if paced and ramp.paces:
            return (
                f"{charger.id} connects to {shown_url(charger.spec.csms_url)} in its turn of "
                f"the connect ramp ({ramp.rate:g} chargers a second)"
            )
        # A URL stored before user info was refused may still hold a password.
        return f"{charger.id} connecting to {shown_url(charger.spec.csms_url)}"

    async def _plug_in(
        self,
        charger: Charger,
        args: dict[str, Any],
        catalogue: Mapping[int, VehicleSpec] | None = None,
    ) -> str:
        connector_id = _connector(args)
        soc = _number(args, "soc", 0, 100, default=20.0)
        target = _number(args, "target_soc", 1, 100, default=100.0)
        if target < soc:
            raise InvalidArgument(
                f"target_soc {target:g} % is below soc {soc:g} %: the EV would draw nothing",
                "target_soc",
            )
        vehicle_id = _vehicle_id(args)
        vehicle = None
        if vehicle_id is not None:
            vehicles = catalogue if catalogue is not None else await _catalogue()
            vehicle = vehicles.get(vehicle_id)
            if vehicle is None:
                raise InvalidArgument(f"there is no vehicle model #{vehicle_id}", "vehicle_id")
        else:
            vehicle = charger.pick_vehicle()
            if vehicle is None:
                raise InvalidArgument("choose a vehicle model (the charger has no default)")
        charger.plug_in(connector_id, vehicle, soc=soc, target_soc=target)
        return f"{vehicle.name} plugged into connector {connector_id} at {soc:g} %"

    async def _present_id_tag(self, charger: Charger, args: dict[str, Any]) -> str:
        connector_id = _connector(args)
        raw = args.get("id_tag")
        if raw is not None and not isinstance(raw, str):
            raise InvalidArgument(f"an idTag is text, and {raw!r} is not", "id_tag")
        id_tag = raw.strip() if isinstance(raw, str) else ""
        # A control character (NUL above all: no PostgreSQL text holds one) would make
        # the StartTransaction unstorable; OCPP 1.6 allows printable ASCII only.
        problem = traffic.id_tag_problem(id_tag)
        if problem is not None:
            raise InvalidArgument(problem, "id_tag")
        # Without the CSMS the charger decides alone: "not accepted (Invalid)" alone read
        # as the CSMS's verdict on the tag.
        alone = not (charger.online and charger.boot is BootState.ACCEPTED)
        status = await charger.present_id_tag(connector_id, id_tag)
        if status == "Stopped":
            return f"idTag {id_tag} stopped the transaction on connector {connector_id}"
        if status != "Accepted":
            raise CommandError(
                f"idTag {id_tag} was not accepted ({status})"
                + (
                    f": {contract.DECIDED_ALONE} (its local list and cache, "
                    "AllowOfflineTxForUnknownId for an idTag in neither)"
                    if alone
                    else ""
                )
            )
        if connector_id in charger.transactions:
            return f"idTag {id_tag} accepted: transaction started on connector {connector_id}"
        expires = charger.authorization_expires.get(connector_id)
        if connector_id not in charger.pending_authorizations or expires is None:
            return f"idTag {id_tag} accepted: {contract.AWAITS_VEHICLE} on connector {connector_id}"
        left = max(expires - charger.clock.time(), 0.0)
        return (
            f"idTag {id_tag} accepted: {contract.AWAITS_VEHICLE} on connector {connector_id} "
            f"within {left:.0f} s (ConnectionTimeOut), or the authorization lapses"
        )

    # -- bulk commands -------------------------------------------------------------------------

    async def handle_traffic(self, message: traffic.TrafficCommand) -> None:
        """Start, stop or report a site's background traffic (a scenario's traffic step);
        answered with one `traffic_result` from this worker."""
        reply_to = _text(message.get("reply_channel"))
        request_id = _request_id(message.get("request_id"))
        location_id = _pk(message.get("location_id"))
        shard = self.service.shard
        action = message.get("action")
        if location_id is None or action not in traffic.TRAFFIC_ACTIONS:
            text = (
                "give a location id"
                if location_id is None
                else f"{action!r} is not one of {', '.join(traffic.TRAFFIC_ACTIONS)}"
            )
            await self._reply(
                reply_to, traffic.traffic_result(request_id, shard, location_id, False, text)
            )
            return
        driver = await self.service.traffic_driver()
        try:
            text = await self._traffic_action(driver, action, location_id, message)
        except traffic.ProfileError as exc:
            result = traffic.traffic_result(
                request_id, shard, location_id, False, exc.message, field=exc.field
            )
        else:
            site = driver.sites.get(location_id)
            result = traffic.traffic_result(
                request_id,
                shard,
                location_id,
                True,
                text,
                tally=None if site is None else site.tally.as_dict(),
                running=driver.going_on(location_id),
            )
        await self._reply(reply_to, result)

    async def _traffic_action(
        self,
        driver: TrafficDriver,
        action: str,
        location_id: int,
        message: traffic.TrafficCommand,
    ) -> str:
        here = len(driver.chargers_at(location_id))
        if action == "stop":
            await driver.stop_site(location_id)
            return f"traffic at location {location_id} stopped"
        if action == "status":
            state = "running" if driver.running(location_id) else "not running"
            return f"traffic at location {location_id} {state} ({here} chargers here)"
        profile = message.get("profile")
        if profile is None:
            # The site's stored profile, even if --traffic leaves it out (disabled): the
            # caller asked for this site's traffic.
            stored = await in_thread(load_profiles)(location_id, disabled=True)
            profile = dict(stored.get(location_id) or traffic.default_profile())
        elif not isinstance(profile, dict):
            raise traffic.ProfileError("profile", "Give the profile as an object.")
        elif "time_zone" not in profile:  # hours of day are the site's local hours
            zone = await in_thread(site_time_zone)(location_id)
            profile = {**profile, "time_zone": zone}
        duration = _optional_number(message.get("duration"), "duration")
        speed = _optional_number(message.get("speed"), "speed")
        seed = message.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise traffic.ProfileError("seed", f"The seed must be an integer, not {seed!r}.")
        # An override's mix is refused as the API refuses a profile's: a model that does
        # not exist would come as no car at all, every such arrival failing.
        mix = driver.arrival_profile(location_id, profile).vehicles
        unknown = sorted(set(mix) - set(driver.vehicles))
        if unknown and message.get("profile") is not None:
            raise traffic.ProfileError("vehicle_mix", f"There is no vehicle model {unknown[0]}.")
        site = driver.start_site(location_id, profile, duration=duration, seed=seed, speed=speed)
        # A run for a duration hands the site back to its stored profile when it ends;
        # one without stays the command's until stopped (or the worker restarts).
        site.hand_back = duration is not None
        return f"traffic at location {location_id} started ({here} chargers here)"

    async def handle_bulk(self, message: contract.BulkCommand) -> None:
        reply_to = _text(message.get("reply_channel"))
        request_id = _request_id(message.get("request_id"))
        raw_command = message.get("command")
        command = raw_command if isinstance(raw_command, str) else None
        args = _args(message.get("args"))
        await self._reply(reply_to, contract.command_ack(request_id, self.started))
        shard = self.service.shard
        try:
            if command not in contract.DRIVE_COMMANDS:
                raise InvalidArgument(f"unknown command {raw_command!r}")
            targets = self.select(message.get("targets"), command)
            wait = parse_wait(message.get("wait_for"), args)
            catalogue = None
            if command == "plug_in" and _vehicle_id(args) is not None:
                catalogue = await _catalogue()  # once, not once per charger
        except CommandError as exc:
            await self._reply(
                reply_to, contract.bulk_result(request_id, shard, command, [], str(exc))
            )
            return
        # Why a listed charger does not run here: its rows read once, not once each.
        absent = await self._not_running([pk for pk, charger, _ in targets if charger is None])
        results = await asyncio.gather(
            *(
                self._bulk_one(pk, charger, connector_id, command, args, wait, catalogue, absent)
                for pk, charger, connector_id in targets
            )
        )
        await self._reply(reply_to, contract.bulk_result(request_id, shard, command, results))

    def select(self, raw: Any, command: str) -> list[tuple[int, Charger | str | None, int | None]]:
        """The (charger pk, charger, connector) a bulk command runs on: the charger is None
        when this worker does not run a listed pk, and a string (why) when a listed charger
        is left out by the other filters; the connector is None for a charger command."""
        targets = raw if isinstance(raw, dict) else {}
        listed = targets.get("chargers")
        location = targets.get("location_id")
        status = targets.get("status")
        every = targets.get("every") is True
        if listed is not None and (not isinstance(listed, list) or len(listed) > BULK_MAX_CHARGERS):
            raise InvalidArgument(f"chargers must be a list of at most {BULK_MAX_CHARGERS} ids")
        if location is not None and _pk(location) is None:
            raise InvalidArgument("location_id must be a whole number")
        if status is not None and status not in contract.CONNECTOR_STATUSES:
            raise InvalidArgument(f"{status!r} is not a connector status")
        if listed is None and location is None and status is None and not every:
            raise InvalidArgument(
                "choose the chargers: ids, a location, a connector status or every charger"
            )
        location_id = _pk(location) if location is not None else None
        store = self.service.store
        candidates: list[tuple[int, Charger | None]]
        if listed is not None:
            pks = []
            for raw_pk in listed:
                pk = _pk(raw_pk)
                if pk is None:
                    raise InvalidArgument(f"{raw_pk!r} is not a charger id")
                pks.append(pk)
            candidates = [(pk, store.by_pk(pk)) for pk in dict.fromkeys(pks)]
        else:
            candidates = [(c.spec.db_id, c) for c in store if c.spec.db_id is not None]
        per_connector = command in contract.CONNECTOR_COMMANDS
        chosen: list[tuple[int, Charger | str | None, int | None]] = []
        for pk, charger in candidates:
            if charger is None:
                chosen.append((pk, None, None))
                continue
            if location_id is not None and charger.spec.location_id != location_id:
                if listed is not None:
                    chosen.append((pk, f"skipped: not at location #{location_id}", None))
                continue
            if status is None:
                chosen.append((pk, charger, None))
                continue
            matching = [e.connector_id for e in charger.evses if e.status == status]
            if not matching:
                if listed is not None:
                    chosen.append((pk, f"skipped: no connector is {status}", None))
            elif per_connector:
                chosen.extend((pk, charger, connector_id) for connector_id in matching)
            else:
                chosen.append((pk, charger, None))
        return chosen

    async def _bulk_one(
        self,
        pk: int,
        charger: Charger | str | None,
        connector_id: int | None,
        command: str,
        args: dict[str, Any],
        wait: Wait | None,
        catalogue: Mapping[int, VehicleSpec] | None,
        absent: Mapping[int, str],
    ) -> contract.ChargerResult:
        """`absent`: why each listed charger that is not running here is not."""
        if not isinstance(charger, Charger):
            skipped = isinstance(charger, str)
            return contract.ChargerResult(
                charger_id=pk,
                charge_point_id=None,
                connector_id=None,
                ok=False,
                message=charger if isinstance(charger, str) else absent[pk],
                error=contract.ERROR_SKIPPED if skipped else contract.ERROR_NOT_RUNNING,
            )
        cp_id = charger.id
        if command in contract.CONNECTOR_COMMANDS:
            if connector_id is not None:
                args = {**args, "connector_id": connector_id}
            else:
                try:
                    connector_id = _connector(args)
                except CommandError:
                    connector_id = None  # perform() answers it
        if wait is not None and connector_id is not None:
            wait = Wait(wait.condition, connector_id, wait.timeout)
        outcome = await self.perform(pk, command, args, wait, catalogue, paced=True)
        result = contract.ChargerResult(
            charger_id=pk,
            charge_point_id=cp_id,
            connector_id=connector_id,
            ok=outcome.ok,
            message=outcome.message,
        )
        if outcome.error is not None:
            result["error"] = outcome.error
        if outcome.wait is not None:
            result["wait"] = outcome.wait
        now = self.service.store.by_pk(pk)  # a reboot replaced the charger
        if connector_id is not None and now is not None and connector_id <= len(now.evses):
            result["status"] = str(now.evses[connector_id - 1].status)
            result["session"] = connector_id in now.transactions
        return result

    # -- pages' snapshots ----------------------------------------------------------------------

    def watch(self, pks: list[Any], *, log: bool = True) -> None:
        """A page still shows these chargers: renew their watch leases (also of those this
        worker does not run now, so that one it loads later is published at once); `log`,
        with their message logs."""
        publisher = self.service.publisher
        if publisher is None:
            return
        store = self.service.store
        for raw in pks[:1000]:
            pk = _pk(raw)
            if pk is not None:
                publisher.watch(pk, charger=store.by_pk(pk), log=log)

    def subscription(self, message: dict[str, Any]) -> None:
        """An API event stream starts, renews or ends its subscription."""
        publisher = self.service.publisher
        if publisher is None:
            return
        stream = publisher.stream
        stream.shard = self.service.shard
        if message.get("type") == contract.EVENTS_UNSUBSCRIBE:
            stream.unsubscribe(message.get("subscription"))
        elif not stream.subscribe(message, self.service.store):
            log.warning("ignored a malformed event stream subscription")

    async def send_snapshots(
        self, reply_to: str, pks: list[Any], with_log: bool, *, series: bool = False
    ) -> None:
        """A page connected: the full state of the chargers it shows that this worker runs."""
        publisher = self.service.publisher
        for raw in pks[:1000]:
            pk = _pk(raw)
            if pk is None:
                continue
            charger = self.service.store.by_pk(pk)
            if publisher is not None:
                # Also when not loaded: it may be enabled or added later.
                publisher.watch(pk, charger=charger, log=with_log)
            if charger is None:
                continue
            await self._reply(reply_to, contract.charger_state(snapshot(charger, series=series)))
            if with_log and publisher is not None and charger.spec.db_id:
                frames = publisher.frames.get(charger.id) or ()
                await self._reply(
                    reply_to, contract.charger_log(charger.spec.db_id, frames, full=True)
                )

    async def _reply(
        self,
        channel: str,
        message: contract.CommandAck
        | contract.CommandDone
        | contract.CommandResult
        | contract.ChargerState
        | contract.ChargerLog
        | contract.BulkResult
        | contract.ShardSummary
        | traffic.TrafficResult,
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
        outage = Outage("publishing summaries", known=layer_errors())
        while True:
            await asyncio.sleep(self.summary_seconds)
            try:
                # The sites' history samples the counts the summaries carry, when they do
                # (no count of its own), and first: while the layer is down too, so that a
                # page opened after an outage shows its hour whole.
                self.service.tally.sites.history.record(time.time(), self.summaries()[1])
                if time.monotonic() - joined > REJOIN_SECONDS:
                    await self.layer.group_add(self.group, self.channel)
                    joined = time.monotonic()
                await self.publish_summaries()
            except Exception as exc:
                outage.failed(exc)  # at the summaries' own pace: no wait of its own
                continue
            outage.recovered()

    def summaries(self) -> tuple[contract.FleetCounts, dict[int, contract.SiteCounts]]:
        """The shard's counts; the same objects while nothing they count changed (shared:
        not to be changed)."""
        counts = self.service.tally.counts()
        return counts.fleet, counts.locations

    def shard_summary(
        self, request_id: str | None, *, history: int | None = None
    ) -> contract.ShardSummary:
        """The shard's counts now; with `history` (a location pk), that site's power over
        the last hour as this worker sampled it (empty if it runs none of its chargers)."""
        fleet, locations = self.summaries()
        shard, shards, now = self.service.shard, self.service.shards, time.time()
        points = None if history is None else self.service.tally.sites.history.points(history, now)
        return contract.shard_summary(
            request_id, shard, shards, fleet, locations, now, self.started, points
        )

    async def publish_summaries(self) -> None:
        fleet, locations = self.summaries()
        # Counts that did not change need no message built nor compared until the keep-alive
        # is due (`summaries` returns the very same objects then).
        started = time.monotonic()
        if fleet is self._published and started - self._compared < SUMMARY_KEEPALIVE_SECONDS:
            return
        shard, shards, now = self.service.shard, self.service.shards, time.time()
        await self._publish_if_changed(
            contract.FLEET_SUMMARY_GROUP,
            contract.fleet_summary(shard, shards, fleet, now, self.started),
        )
        for pk, site in locations.items():
            await self._publish_if_changed(
                contract.location_group(pk),
                contract.location_summary(shard, shards, pk, site, now, self.started),
            )
        # Only once all went out: after a failed send, the next round compares them again.
        self._published, self._compared = fleet, started

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
        await self.layer.group_send(group, message)
        # Once sent: marked before, a send the layer refused counted as sent, so the next
        # round skipped it and the loop logged "publishing summaries works again" while
        # Redis was still away, and the pages got the counts only at the keep-alive.
        self._last_sent[group] = (unchanged, now)


async def _catalogue() -> dict[int, VehicleSpec]:
    """The vehicle models as the physics sees them, read now (they may have been edited)."""
    from simulator.runtime.persistence import load_vehicles

    vehicles: dict[int, VehicleSpec] = await in_thread(load_vehicles)()
    return vehicles


# -- reading values that come from outside ------------------------------------------------------


def parse_wait(raw: Any, args: dict[str, Any]) -> Wait | None:
    """A command's `wait_for`, checked (None: answer as soon as the command is done)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidArgument("wait_for must name a condition and a timeout")
    condition = raw.get("condition")
    if condition not in contract.WAIT_CONDITIONS:
        choices = ", ".join(contract.WAIT_CONDITIONS)
        raise InvalidArgument(f"wait_for {condition!r} is not one of {choices}")
    limit = contract.WAIT_TIMEOUT_MAX
    timeout = _number(raw, "timeout", 0, limit, default=contract.WAIT_TIMEOUT_DEFAULT)
    return Wait(str(condition), _connector(args), timeout)


_IMPAIRMENTS = frozenset(
    {"set_answer_override", "set_network", "close_connection", "set_clock_skew"}
)


def _pk(raw: Any) -> int | None:
    """A primary key from a message: a whole number (or its digits), else None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.isdigit() and len(raw) < 19:
        return int(raw)
    if isinstance(raw, float) and raw.is_integer() and abs(raw) < 2**53:
        return int(raw)
    return None


def _text(raw: Any) -> str:
    return raw if isinstance(raw, str) else ""


def _request_id(raw: Any) -> str | None:
    return raw[:64] if isinstance(raw, str) else None


def _field_of(exc: CommandError) -> str | None:
    return exc.field if isinstance(exc, InvalidArgument) else None


def _args(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


def _list(raw: Any) -> list[Any]:
    return raw if isinstance(raw, list) else []


def _number(
    args: Mapping[str, Any], name: str, low: float, high: float, default: float | None = None
) -> float:
    raw: Any = args.get(name)  # from a browser or a script: anything JSON can hold
    label = name.replace("_", " ")
    if raw in (None, ""):
        if default is None:
            raise InvalidArgument(f"{label} is required", name)
        return default
    if isinstance(raw, bool):
        raise InvalidArgument(f"{label} must be a number", name)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{label} must be a number", name) from None
    if not low <= value <= high:  # NaN fails this too
        raise InvalidArgument(f"{label} must be within {low:g} and {high:g}", name)
    return value


def _stop_reason(args: Mapping[str, Any]) -> StopReason:
    """`stop`'s reason (`contract.StopArgs`): Local when not given."""
    raw = args.get("reason", StopReason.LOCAL.value)
    try:
        return StopReason(raw)
    except ValueError:
        known = ", ".join(reason.value for reason in StopReason)
        raise InvalidArgument(f"{raw!r} is not a stop reason (one of: {known})", "reason") from None


def _connector(args: Mapping[str, Any]) -> int:
    value = _number(args, "connector_id", 1, 99, default=1)
    if value != int(value):
        raise InvalidArgument("connector id must be a whole number", "connector_id")
    return int(value)


def _vehicle_id(args: Mapping[str, Any]) -> int | None:
    if args.get("vehicle_id") in (None, ""):
        return None
    value = _number(args, "vehicle_id", 1, 2**31)
    if value != int(value):
        raise InvalidArgument("vehicle id must be a whole number", "vehicle_id")
    return int(value)


def _optional_number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise traffic.ProfileError(name, f"The {name} must be a number, not {value!r}.")
    return float(value)
