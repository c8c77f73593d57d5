"""The web side's request/reply client of the engine, over the channel layer.

The web side owns nothing live: a charger's state and every action on it belong to the
simulator worker that runs it, the worker of its shard (`contract.shard_of(charge point
id, CHARGESIM_SHARDS)`). Each request here gets a fresh reply channel, goes to that
worker's group, and waits for its acknowledgement (`ACK_SECONDS`: without one, no worker
runs that shard) and then for its answer (`RESULT_SECONDS`, plus the action's own
`wait_for` timeout), asking the shard every `PROBE_SECONDS` meanwhile whether the worker
that acknowledged still runs it (one question per shard for all the waits of the event
loop: `chargers.shard_probe`): one that stopped answering or restarted ends the wait then
(`WorkerGone`), not a minute after the timeout. A bulk action and the fleet summary go to
every shard and gather the answers; a shard without a worker is reported, charger by
charger where the caller knows them, never silently left out.

Used by the API (`api.routers.live`); the dashboard's consumers keep their own socket-bound
way of asking (their answers arrive as channel events of the page's socket).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from channels.layers import get_channel_layer
from django.conf import settings

from chargers.shard_probe import Gone, ShardProbe, probe_of
from simulator import contract
from simulator.contract.traffic import EVENT_TRAFFIC_RESULT, TrafficResult, traffic_command

# Not "no worker is running": a worker that is paused, overloaded or cut off from the
# channel layer does not acknowledge either, and starting a second one is refused.
NO_WORKER = "no simulator worker answered for this charger (none runs it, or it is stalled)"
NOT_FINISHED = "the simulator did not finish in time"
# Set by this client on a per-charger result (the engine's kinds are contract.ERROR_*).
ERROR_NO_WORKER = "no_worker"
ERROR_TIMEOUT = "timeout"
ERROR_WORKER_GONE = "worker_gone"

ACK_SECONDS = 4.0
RESULT_SECONDS = 60.0
# While a command runs, how often its worker is asked whether it is still there (it then
# has ACK_SECONDS to answer): a worker that went away is known within the two. One
# question per shard and interval, however many commands wait on it.
PROBE_SECONDS = 5.0
# Sends in flight at once per event loop, whatever the number of clients: each holds one
# of the Redis layer's pooled connections (100 by default, and redis-py raises
# MaxConnectionsError past them rather than wait), so a thousand concurrent requests (a
# scenario across 1,000 chargers) queue here instead of failing.
MAX_CONCURRENT_SENDS = 50
# Single-charger requests in flight at once per event loop (the rest queue): their
# acknowledgements and results share this process's one Redis list of replies (capacity
# 1,500 for all its reply channels; a worker drops a reply to a full one), so a thousand
# at once would lose replies and read as "no worker".
MAX_IN_FLIGHT = 200
# The semaphores of those limits, one per event loop, shared by every EngineClient on it:
# the API and the dashboard make a client per request, so limits kept on the client held
# per request, not for the process's pooled connections and reply list.
_sends: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)
_in_flight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


class EngineError(Exception):
    """The engine could not be asked, or did not answer; the message says which."""


class NoWorker(EngineError):
    """Nobody acknowledged: no simulator worker runs the charger's shard."""


class NotFinished(EngineError):
    """The worker acknowledged but did not answer in time."""


class WorkerGone(EngineError):
    """The worker acknowledged, then stopped answering or restarted before its answer."""


class LayerDown(EngineError):
    """The channel layer (Redis) could not be reached: nobody can be asked."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(
            f"The channel layer (Redis) cannot be reached ({type(exc).__name__}: {exc}): "
            "the simulator workers cannot be asked until it is back"
        )


@dataclass
class FleetOverview:
    """The fleet summary added up over the shards that answered."""

    shards: int
    answered: list[int]
    missing: list[int]  # shards without a worker
    counts: contract.FleetCounts
    locations: dict[int, contract.SiteCounts]
    # Each shard's own answer (a page adds them up with the summaries published later).
    answers: dict[int, contract.ShardSummary] = field(default_factory=dict)
    # The site asked for (`summary(history=)`): its power over the last hour, added up over
    # the shards that answered (`add_up_history`); None when not asked.
    history: list[list[float | None]] | None = None


@dataclass
class BulkOutcome:
    """One result per charger (per connector, for a connector command) of every shard."""

    results: list[contract.ChargerResult] = field(default_factory=list)
    asked: list[int] = field(default_factory=list)  # shards sent the command
    missing: list[int] = field(default_factory=list)  # shards without a worker
    unfinished: list[int] = field(default_factory=list)  # acknowledged, no answer in time
    # Acknowledged, then its worker stopped answering or restarted: shard -> what to say.
    gone: dict[int, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # whole-command refusals, by shard


class EngineClient:
    """Ask the engine; one instance may serve many concurrent requests."""

    def __init__(
        self,
        layer: Any = None,
        *,
        shards: int | None = None,
        ack_seconds: float = ACK_SECONDS,
        result_seconds: float = RESULT_SECONDS,
        probe_seconds: float = PROBE_SECONDS,
    ) -> None:
        self.layer = layer if layer is not None else get_channel_layer()
        if self.layer is None:
            raise EngineError("no channel layer is configured (CHANNEL_LAYERS)")
        self.shards = shards if shards is not None else settings.CHARGESIM_SHARDS
        self.ack_seconds = ack_seconds
        self.result_seconds = result_seconds
        self.probe_seconds = probe_seconds

    async def _group_send(self, group: str, message: Any) -> None:
        async with _per_loop(_sends, MAX_CONCURRENT_SENDS):
            try:
                await self.layer.group_send(group, message)
            except Exception as exc:  # redis-py's ConnectionError, an OSError: an API 500
                raise LayerDown(exc) from exc

    def _give_up(self) -> tuple[float, float]:
        """For a command about to be sent: its `expires` (Unix time) and when this client
        stops waiting for its acknowledgement (loop time), both counted from now, before the
        send, so that they end at the same moment: a worker drops a command the clock skew
        it allows past its `expires` (`contract.expired`), so `expires` is that much
        earlier than the end of the wait. Counted from after the send, a send that waited
        (Redis paused, the sends queued here) had the worker drop a command the caller
        still waited for, and a quick one left the skew's second in which a worker carried
        out a command its caller had been told no worker ran. (The wait itself stays
        `ack_seconds`: a longer one held up everything that waits for it, a scenario's
        clean-up at a stop among them.)"""
        loop = asyncio.get_running_loop()
        return (
            time.time() + self.ack_seconds - contract.CLOCK_SKEW_SECONDS,
            loop.time() + self.ack_seconds,
        )

    def shard_of(self, charge_point_id: str) -> int:
        return contract.shard_of(charge_point_id, self.shards)

    # -- one charger -------------------------------------------------------------------------

    async def command(
        self,
        charger_pk: int,
        charge_point_id: str,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        wait_for: contract.WaitFor | None = None,
    ) -> contract.CommandResult:
        """Run a drive command (or `state`) on one charger; its result, which carries the
        charger's state afterwards. Raises NoWorker, WorkerGone or NotFinished."""
        async with _per_loop(_in_flight, MAX_IN_FLIGHT):
            return await self._command(charger_pk, charge_point_id, command, args, wait_for)

    async def _command(
        self,
        charger_pk: int,
        charge_point_id: str,
        command: str,
        args: Mapping[str, Any] | None,
        wait_for: contract.WaitFor | None,
    ) -> contract.CommandResult:
        channel = await self.layer.new_channel()
        request_id = uuid.uuid4().hex
        expires, ack_deadline = self._give_up()
        message = contract.engine_command(
            command,
            charger_pk,
            args or {},
            channel,
            request_id,
            wait_for=wait_for,
            expires=expires,
        )
        shard = self.shard_of(charge_point_id)
        await self._group_send(contract.engine_group(shard), message)
        loop = asyncio.get_running_loop()
        reply = await self._receive(channel, {request_id}, ack_deadline)
        if reply is None:
            raise NoWorker(NO_WORKER)
        if reply.get("type") == contract.EVENT_COMMAND_ACK:
            deadline = loop.time() + self.result_seconds + _wait_seconds(wait_for)
            waiting = _Waiting(command, shard, reply.get("started"))
            reply = await self._result(channel, request_id, waiting, deadline)
        if reply is None or reply.get("type") != contract.EVENT_COMMAND_RESULT:
            raise NotFinished(NOT_FINISHED)
        return cast(contract.CommandResult, reply)

    async def _result(
        self, channel: str, request_id: str, waiting: _Waiting, deadline: float
    ) -> dict[str, Any] | None:
        """The command's result, or None at the deadline. Meanwhile the shard's probe
        (shared by every wait on the shard) asks every `probe_seconds` whether the worker
        that acknowledged still runs it. Raises WorkerGone when it does not."""
        probe = probe_of(self.layer, waiting.shard, self.probe_seconds, self.ack_seconds)
        verdict = probe.watch(waiting.started)
        receiving: asyncio.Task[dict[str, Any] | None] | None = None
        try:
            while True:
                if receiving is None:
                    receiving = asyncio.create_task(self._receive(channel, {request_id}, deadline))
                await asyncio.wait((receiving, verdict), return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    raise _gone(verdict, waiting)
                reply, receiving = receiving.result(), None
                if reply is not None and reply.get("type") == contract.EVENT_COMMAND_DONE:
                    waiting.done = str(reply.get("message"))
                    continue
                return reply
        finally:
            probe.unwatch(verdict)
            if receiving is not None:
                receiving.cancel()

    async def state(
        self,
        charger_pk: int,
        charge_point_id: str,
        *,
        wait_for: contract.WaitFor | None = None,
    ) -> contract.CommandResult:
        """The charger's snapshot (in the result's `charger`), once `wait_for` holds if given."""
        return await self.command(
            charger_pk, charge_point_id, contract.STATE, {}, wait_for=wait_for
        )

    # -- every shard -------------------------------------------------------------------------

    async def summary(self, *, history: int | None = None) -> FleetOverview:
        """Every shard's counts now, added up; with `history` (a location pk), that site's
        power over the last hour too."""
        channel = await self.layer.new_channel()
        request_id = uuid.uuid4().hex
        message = contract.summary_request(channel, request_id, history=history)
        for shard in range(self.shards):
            await self._group_send(contract.engine_group(shard), message)
        deadline = asyncio.get_running_loop().time() + self.ack_seconds
        answers: dict[int, contract.ShardSummary] = {}
        while len(answers) < self.shards:
            reply = await self._receive(channel, {request_id}, deadline)
            if reply is None:
                break
            if reply.get("type") == contract.EVENT_SHARD_SUMMARY:
                answers[int(reply["shard"])] = cast(contract.ShardSummary, reply)
        theirs = sorted({int(a["shards"]) for a in answers.values()} - {self.shards})
        if theirs:
            # Counts of the wrong shards, added up as if whole, were a fleet silently short.
            shown = " or ".join(f"--shard K/{n}" for n in theirs)
            raise EngineError(
                f"The simulator workers run as {shown}, but CHARGESIM_SHARDS is "
                f"{self.shards} here: set it to the workers' N on every web process"
            )
        return FleetOverview(
            shards=self.shards,
            answered=sorted(answers),
            missing=[s for s in range(self.shards) if s not in answers],
            counts=add_up(answers.values()),
            locations=_add_up_locations(answers.values()),
            answers=answers,
            history=None if history is None else add_up_history(answers.values()),
        )

    async def bulk(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        chargers: Mapping[int, str] | None = None,
        location_id: int | None = None,
        status: str | None = None,
        wait_for: contract.WaitFor | None = None,
        known: Mapping[int, str] | None = None,
        every: bool = False,
    ) -> BulkOutcome:
        """Run one command on many chargers: those listed (pk -> charge point id; each shard
        is sent only its own), and/or those at a location, and/or the connectors in a status
        (filters the workers apply to their live chargers), or `every` charger (the other
        filters narrow it). `known`: the chargers the
        caller expects the filters to reach (e.g. the location's); those of a shard without
        a worker get a result that says so. Listed chargers always get one."""
        channel = await self.layer.new_channel()
        base = uuid.uuid4().hex
        sends: dict[int, contract.BulkTargets] = {}
        if chargers is not None:
            for pk, cp_id in chargers.items():
                targets = sends.setdefault(self.shard_of(cp_id), {"chargers": []})
                targets["chargers"].append(pk)
        else:
            sends = {shard: {} for shard in range(self.shards)}
        for targets in sends.values():
            if location_id is not None:
                targets["location_id"] = location_id
            if status is not None:
                targets["status"] = status
            if every:
                targets["every"] = True
        shard_of_request = {f"{base}.{shard}": shard for shard in sends}
        expires, ack_deadline = self._give_up()
        for request_id, shard in shard_of_request.items():
            message = contract.bulk_command(
                command,
                args or {},
                sends[shard],
                channel,
                request_id,
                wait_for=wait_for,
                expires=expires,
            )
            await self._group_send(contract.engine_group(shard), message)
        outcome = BulkOutcome(asked=sorted(sends))
        await self._gather_bulk(
            channel, shard_of_request, outcome, command, _wait_seconds(wait_for), ack_deadline
        )
        expected = dict(known or {})
        expected.update(chargers or {})
        for pk, cp_id in sorted(expected.items()):
            shard = self.shard_of(cp_id)
            if shard in outcome.missing:
                outcome.results.append(_unanswered(pk, cp_id, NO_WORKER, ERROR_NO_WORKER))
            elif shard in outcome.unfinished:
                outcome.results.append(_unanswered(pk, cp_id, NOT_FINISHED, ERROR_TIMEOUT))
            elif shard in outcome.gone:
                gone = outcome.gone[shard]
                outcome.results.append(_unanswered(pk, cp_id, gone, ERROR_WORKER_GONE))
        return outcome

    async def _gather_bulk(
        self,
        channel: str,
        shard_of_request: dict[str, int],
        outcome: BulkOutcome,
        command: str,
        wait_seconds: float,
        ack_deadline: float,
    ) -> None:
        """Each shard's acknowledgement, then its results; meanwhile the probe of each shard
        that acknowledged asks whether its worker still runs it, as for one charger: a
        worker that went away (`outcome.gone`) is known within seconds, not after the wait's
        timeout and the minute after it."""
        result_deadline = ack_deadline + self.result_seconds + wait_seconds
        unacked = set(shard_of_request.values())
        working: dict[int, tuple[ShardProbe, asyncio.Future[Gone]]] = {}
        receiving: asyncio.Task[dict[str, Any] | None] | None = None
        try:
            while unacked or working:
                if receiving is None:
                    deadline = ack_deadline if unacked else result_deadline
                    receiving = asyncio.create_task(
                        self._receive(channel, set(shard_of_request), deadline)
                    )
                verdicts = {verdict: shard for shard, (_, verdict) in working.items()}
                awaited: list[asyncio.Future[Any]] = [receiving, *verdicts]
                await asyncio.wait(awaited, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    for verdict, shard in verdicts.items():
                        if verdict.done():
                            probe, _ = working.pop(shard)
                            probe.unwatch(verdict)
                            waiting = _Waiting(command, shard, None)
                            error = _gone(verdict, waiting)
                            if isinstance(error, LayerDown):
                                raise error
                            outcome.gone[shard] = str(error)
                    continue
                reply, receiving = receiving.result(), None
                if reply is None:
                    if unacked:  # the acknowledgements are due first
                        outcome.missing.extend(sorted(unacked))
                        unacked.clear()
                        continue
                    outcome.unfinished.extend(sorted(working))
                    return
                shard = shard_of_request[reply["request_id"]]
                if reply.get("type") == contract.EVENT_COMMAND_ACK:
                    if shard in unacked:
                        unacked.discard(shard)
                        probe = probe_of(self.layer, shard, self.probe_seconds, self.ack_seconds)
                        working[shard] = (probe, probe.watch(reply.get("started")))
                elif reply.get("type") == contract.EVENT_BULK_RESULT:
                    unacked.discard(shard)
                    if shard in working:
                        probe, verdict = working.pop(shard)
                        probe.unwatch(verdict)
                    outcome.gone.pop(shard, None)  # its answer came after all
                    outcome.results.extend(reply.get("results") or [])
                    if reply.get("message"):
                        outcome.refused.append(str(reply["message"]))
        finally:
            for probe, verdict in working.values():
                probe.unwatch(verdict)
            if receiving is not None:
                receiving.cancel()
            outcome.missing.sort()

    async def traffic(
        self,
        action: str,
        location_id: int,
        *,
        profile: Mapping[str, Any] | None = None,
        duration: float | None = None,
        seed: int | None = None,
        speed: float | None = None,
    ) -> tuple[list[TrafficResult], list[int]]:
        """Start, stop or report a site's background traffic on every shard (each worker
        drives the site's chargers it runs): the answers, by shard, and the shards that did
        not answer within `ack_seconds` (no worker runs them)."""
        channel = await self.layer.new_channel()
        request_id = uuid.uuid4().hex
        message = traffic_command(
            action,
            location_id,
            channel,
            request_id,
            profile=profile,
            duration=duration,
            seed=seed,
            speed=speed,
        )
        for shard in range(self.shards):
            await self._group_send(contract.engine_group(shard), message)
        deadline = asyncio.get_running_loop().time() + self.ack_seconds
        answers: dict[int, TrafficResult] = {}
        while len(answers) < self.shards:
            reply = await self._receive(channel, {request_id}, deadline)
            if reply is None:
                break
            if reply.get("type") == EVENT_TRAFFIC_RESULT:
                answers[int(reply["shard"])] = cast(TrafficResult, reply)
        missing = [s for s in range(self.shards) if s not in answers]
        return [answers[s] for s in sorted(answers)], missing

    # -- the reply channel -------------------------------------------------------------------

    async def _receive(
        self, channel: str, request_ids: set[str], deadline: float
    ) -> dict[str, Any] | None:
        """The next reply to one of `request_ids` on the channel, or None at the deadline."""
        loop = asyncio.get_running_loop()
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                message = await asyncio.wait_for(self.layer.receive(channel), left)
            except TimeoutError:
                return None
            except Exception as exc:
                raise LayerDown(exc) from exc
            if isinstance(message, dict) and message.get("request_id") in request_ids:
                return message


@dataclass
class _Waiting:
    """A command acknowledged by the worker of `shard`, started at `started`, whose result
    is awaited; `done`: what the worker said it did before its `wait_for`, if it did."""

    command: str
    shard: int
    started: Any
    done: str | None = None

    def gone(self, *, restarted: bool) -> str:
        what = "restarted" if restarted else "stopped answering"
        head = f"the worker of shard {self.shard} {what} before it answered"
        if self.command == contract.STATE:
            return f"{head}: ask for the charger's state again"
        if self.done is not None:
            return (
                f"{head}; the action was carried out ({self.done}), but whether its wait_for "
                "condition came is not known: read the charger's state"
            )
        return f"{head}; the action may or may not have been carried out: read the charger's state"


def _gone(verdict: asyncio.Future[Gone], waiting: _Waiting) -> EngineError:
    """What a wait ends with once its shard's probe gave its `verdict`."""
    try:
        gone = verdict.result()
    except Exception as exc:  # the probe could not ask: the layer is away
        return LayerDown(exc)
    return WorkerGone(waiting.gone(restarted=gone is Gone.RESTARTED))


def _per_loop(
    semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore],
    size: int,
) -> asyncio.Semaphore:
    """The running loop's semaphore (a process may run more than one loop in its life, and
    a semaphore belongs to one)."""
    loop = asyncio.get_running_loop()
    semaphore = semaphores.get(loop)
    if semaphore is None:
        semaphore = semaphores[loop] = asyncio.Semaphore(size)
    return semaphore


def add_up(summaries: Iterable[contract.FleetCounts]) -> contract.FleetCounts:
    """The fleet's counts from its shards' counts."""
    total = contract.FleetCounts(chargers=0, statuses={}, links={}, power_w=0.0)
    for summary in summaries:
        total["chargers"] += summary["chargers"]
        total["power_w"] += summary["power_w"]
        _add_counts(total["statuses"], summary["statuses"])
        _add_counts(total["links"], summary["links"])
    total["power_w"] = round(total["power_w"], 1)
    return total


def _add_up_locations(
    summaries: Iterable[contract.ShardSummary],
) -> dict[int, contract.SiteCounts]:
    sites: dict[int, contract.SiteCounts] = {}
    for summary in summaries:
        for site in summary["locations"]:
            total = sites.setdefault(
                site["location_id"],
                contract.SiteCounts(
                    power_w=0.0,
                    chargers=0,
                    charging=0,
                    statuses={},
                    links={},
                    held_back=0,
                    # The location's settings: the same from every worker, not added up.
                    grid_limit_w=site.get("grid_limit_w"),
                    load_management=bool(site.get("load_management")),
                ),
            )
            total["power_w"] = round(total["power_w"] + site["power_w"], 1)
            total["chargers"] += site["chargers"]
            total["charging"] += site["charging"]
            total["held_back"] += site.get("held_back", 0)
            _add_counts(total["statuses"], site["statuses"])
            _add_counts(total["links"], site["links"])
    return dict(sorted(sites.items()))


def add_up_history(summaries: Iterable[contract.ShardSummary]) -> list[list[float | None]]:
    """A site's power over time from its shards' parts, as its live power is added up: the
    workers' steps end at the same times (multiples of the step, on every worker), so the
    power of each step is the sum of the shards' that have it (a shard without it ran no
    charger of the site then: nothing). The grid limit is the same from every worker (the
    location's); of two that differ (an edit one worker read first), the higher."""
    steps: dict[float, list[float | None]] = {}
    for summary in summaries:
        for end, power_w, limit_w in summary.get("history", ()):
            if end is None:
                continue
            step = steps.get(end)
            if step is None:
                steps[end] = [end, power_w, limit_w]
                continue
            step[1] = round((step[1] or 0.0) + (power_w or 0.0), 1)
            if limit_w is not None and (step[2] is None or limit_w > step[2]):
                step[2] = limit_w
    return [steps[end] for end in sorted(steps)]


def _add_counts(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for name, count in counts.items():
        into[name] = into.get(name, 0) + count


def _wait_seconds(wait_for: contract.WaitFor | None) -> float:
    if not isinstance(wait_for, dict):  # None, or a bad value the worker will refuse
        return 0.0
    try:  # the worker checks it and refuses a bad one; here it only extends the wait
        timeout = float(wait_for.get("timeout", contract.WAIT_TIMEOUT_DEFAULT))
    except (TypeError, ValueError):
        return 0.0
    return min(max(timeout, 0.0), contract.WAIT_TIMEOUT_MAX) if math.isfinite(timeout) else 0.0


def _unanswered(pk: int, cp_id: str, message: str, error: str) -> contract.ChargerResult:
    return contract.ChargerResult(
        charger_id=pk,
        charge_point_id=cp_id,
        connector_id=None,
        ok=False,
        message=message,
        error=error,
    )
