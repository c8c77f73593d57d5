"""Telling the simulator workers that fleet rows changed: the one place every web write ends.

`notify_fleet_change(...)` is called inside the write's transaction. The rows it names are
gathered per transaction and sent once, after commit (`transaction.on_commit`), as one
`contract.fleet_changed` per shard concerned: 5,000 imported chargers are a message per
shard, not 5,000. A rolled-back write sends nothing. A charger goes to the shard of each
charge point id it had (an id changed in the admin may move it to another shard); vehicle
models and locations go to every shard.

A caller that shows the outcome to a person (the admin) passes `report`, or runs the write
inside `reporting(report)` (an import job, whose writes are deep in a resource): the message
then carries a reply channel, and after sending we wait briefly for each shard's
`contract.fleet_applied`. No answer means no worker is running; the change waits in the
database for the worker's start. It lives here, in the lowest web app, because locations
and vehicles write fleet rows too and may not import `chargers`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypedDict

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import connection, transaction

from fleet_io.from_thread import LoopStopped, run_from_thread
from simulator import contract
from simulator.contract.failures import brief, layer_errors

log = logging.getLogger(__name__)

# How long an admin save waits for each shard's worker to say it got the change (it does so
# at once) ...
REPLY_SECONDS = 2.0
# ... and then, from a worker that did, for what it did (it checkpoints and reads the rows
# first, which a busy worker may take seconds over).
APPLY_SECONDS = 10.0
# The in-memory layer's queues belong to one event loop; a receive from another thread's
# loop is not woken by a send, so the wait polls that layer in slices this long.
RECEIVE_SLICE_SECONDS = 0.05
# A send from a thread is waited for at most this long beyond its own waits (a layer that
# neither answers nor fails): `from_thread`.
HANDOFF_MARGIN_SECONDS = 5.0
# `Applied.unsent` when the loop that would send has stopped: the process is stopping.
STOPPING = "the simulator is stopping"


@dataclass
class Applied:
    """What the workers said about a change: one answer per shard that answered."""

    shards: list[int]  # the shards the change was sent to
    answers: list[contract.FleetApplied]
    received: list[int] = field(default_factory=list)  # shards whose worker got it
    # shard -> charger pk -> the charge point id it was sent under: the chargers whose
    # worker did not answer are named.
    chargers: dict[int, dict[int, str]] = field(default_factory=dict)
    changes: dict[int, str] = field(default_factory=dict)  # pk -> DELETED or DISABLED
    # Why the change could not be sent (the channel layer unreachable): the workers were
    # not told, and take it at their next reconciliation instead.
    unsent: str = ""
    # The N (--shard K/N) of the workers that answered, when not this process's
    # CHARGESIM_SHARDS: the change went to the shards of another N.
    other_counts: list[int] = field(default_factory=list)

    @property
    def outcomes(self) -> list[contract.ChargerOutcome]:
        return [outcome for answer in self.answers for outcome in answer.get("outcomes") or []]

    @property
    def answered(self) -> bool:
        return bool(self.answers)


Report = Callable[[Applied], None]

_sending: set[asyncio.Task[tuple[list[Any], list[int], set[int]]]] = (
    set()
)  # sends started from a loop, kept until done


@dataclass
class _Batch:
    """The changes of one transaction, sent when it commits."""

    chargers: dict[int, dict[int, str]] = field(default_factory=dict)  # shard -> pk -> id
    changes: dict[int, str] = field(default_factory=dict)  # pk -> DELETED or DISABLED
    vehicles: set[int] = field(default_factory=set)
    locations: set[int] = field(default_factory=set)
    reports: list[Report] = field(default_factory=list)
    sent: bool = False

    def merge(self, other: _Batch) -> None:
        for shard, named in other.chargers.items():
            self.chargers.setdefault(shard, {}).update(named)
        self.changes.update(other.changes)
        self.vehicles |= other.vehicles
        self.locations |= other.locations
        self.reports += [report for report in other.reports if report not in self.reports]

    def flush(self) -> None:
        self.sent = True
        try:
            applied = send(self)
        except Exception as exc:
            # The rows are committed; a running worker finds them at its reconciliation, a
            # stopped one when it starts. Say so in the log and to whoever waits for the
            # answer, rather than turn a saved change into an error page.
            if isinstance(exc, layer_errors()):
                # Redis away says all in a line: its traceback, four times over as
                # runsimulator seeded its fleet, ended in redis-py and began with an
                # unrelated DoesNotExist (the exception get_or_create was handling).
                log.warning(
                    "could not tell the simulator workers about a fleet change (%s): they "
                    "find it at their next look at the database",
                    brief(exc),
                )
            else:
                log.exception("could not tell the simulator workers about a fleet change")
            applied = Applied(shards=[], answers=[], unsent=type(exc).__name__)
        for report in self.reports:
            report(applied)


def notify_fleet_change(
    chargers: Iterable[tuple[int, str]] = (),
    *,
    vehicles: Iterable[int] = (),
    locations: Iterable[int] = (),
    report: Report | None = None,
    change: str = "",
) -> None:
    """Tell the owning workers, after the current transaction commits, that these rows
    changed. `chargers` are (pk, charge point id) pairs; give a charger twice, with its old
    and its new id, when the id changed. `change`: DELETED or DISABLED when the chargers
    were, for what the report says of a worker that does not answer. `report` is called
    after commit with what the workers answered (an admin save shows it)."""
    batch = _Batch()
    shards = settings.CHARGESIM_SHARDS
    for pk, charge_point_id in chargers:
        shard = contract.shard_of(charge_point_id, shards)
        batch.chargers.setdefault(shard, {})[pk] = charge_point_id
        if change:
            batch.changes[pk] = change
    batch.vehicles.update(vehicles)
    batch.locations.update(locations)
    for wanted in (report, getattr(_reporting, "report", None)):
        if wanted is not None and wanted not in batch.reports:
            batch.reports.append(wanted)
    if not connection.in_atomic_block:  # autocommit: the rows are already committed
        batch.flush()
        return
    _current_batch().merge(batch)


_reporting = threading.local()


@contextmanager
def reporting(report: Report) -> Iterator[None]:
    """Every change notified in this thread while the block runs is reported to `report`
    too, after its commit: an import job gathers what the workers did with its rows, which
    the resource writes and notifies far below the job."""
    previous = getattr(_reporting, "report", None)
    _reporting.report = report
    try:
        yield
    finally:
        _reporting.report = previous


def _current_batch() -> _Batch:
    """The batch of this transaction, registered once with on_commit. A batch whose
    callback was discarded (its transaction or savepoint rolled back) is not reused."""
    batch: _Batch | None = getattr(connection, "_chargesim_fleet_batch", None)
    if (
        batch is not None
        and not batch.sent
        and any(item[1] == batch.flush for item in connection.run_on_commit)
    ):
        return batch
    batch = _Batch()
    connection._chargesim_fleet_batch = batch  # type: ignore[attr-defined]  # per connection, so per thread
    transaction.on_commit(batch.flush)
    return batch


def send(batch: _Batch) -> Applied:
    """Send the batch's messages (and wait for answers if someone will read them)."""
    everyone = batch.vehicles or batch.locations
    shards = list(range(settings.CHARGESIM_SHARDS)) if everyone else sorted(batch.chargers)
    if not shards:
        return Applied(shards=[], answers=[])
    wait = REPLY_SECONDS if batch.reports else 0.0
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        # Called from async code on its loop (a blocking wait would stall it): send only.
        task = loop.create_task(_send_and_wait(batch, shards, 0.0))
        _sending.add(task)
        task.add_done_callback(_sending.discard)
        return Applied(shards, [], chargers=batch.chargers, changes=batch.changes)
    try:
        answers, received, counts = run_from_thread(
            partial(_send_and_wait, batch, shards, wait),
            wait + APPLY_SECONDS + HANDOFF_MARGIN_SECONDS,
        )
    except LoopStopped:
        log.info(
            "a fleet change was not sent to the simulator workers: %s (the change is saved; "
            "a worker takes it when it starts)",
            STOPPING,
        )
        return Applied(shards, [], chargers=batch.chargers, changes=batch.changes, unsent=STOPPING)
    return Applied(
        shards,
        answers,
        received,
        chargers=batch.chargers,
        changes=batch.changes,
        other_counts=sorted(counts - {settings.CHARGESIM_SHARDS}),
    )


async def _send_and_wait(
    batch: _Batch, shards: list[int], wait: float
) -> tuple[list[Any], list[int], set[int]]:
    """Send, then wait up to `wait` s for every shard's `fleet_received` (or answer), and
    up to APPLY_SECONDS more for the answers of the shards that received it. Also the N
    the answering workers run with."""
    layer = get_channel_layer()
    if layer is None:
        return [], [], set()
    reply_channel = await layer.new_channel() if wait else None
    request_id = uuid.uuid4().hex if wait else None
    for shard in shards:
        message = contract.fleet_changed(
            batch.chargers.get(shard, {}),
            vehicles=batch.vehicles,
            locations=batch.locations,
            reply_channel=reply_channel,
            request_id=request_id,
        )
        await layer.group_send(contract.engine_group(shard), message)
    if reply_channel is None:
        return [], [], set()
    answers: dict[int, Any] = {}
    received: set[int] = set()
    counts: set[int] = set()
    loop = asyncio.get_running_loop()
    first = loop.time() + wait
    last = first + APPLY_SECONDS
    replies = _Replies(layer, reply_channel)
    try:
        while len(answers) < len(shards):
            now = loop.time()
            if now >= first:
                # Past the first wait only the shards that said they got it are waited for.
                if received <= set(answers) or now >= last:
                    break
                deadline = last
            else:
                deadline = first
            reply = await replies.next(deadline - now)
            if reply is None or reply.get("request_id") != request_id:
                continue
            shard = int(reply.get("shard", 0))
            # A worker of an earlier version says no N: taken to be this process's.
            counts.add(int(reply.get("shards", settings.CHARGESIM_SHARDS)))
            if reply.get("type") == contract.EVENT_FLEET_RECEIVED:
                received.add(shard)
            elif reply.get("type") == contract.EVENT_FLEET_APPLIED:
                received.add(shard)
                answers[shard] = reply
    finally:
        await replies.close()
    return [answers[shard] for shard in sorted(answers)], sorted(received), counts


class _Replies:
    """The messages of a reply channel, each awaited at most a given time.

    A Redis receive cancelled in flight may lose its message (the server popped it, the
    client never read it): cancelled every 50 ms, it lost about one worker answer in a
    hundred, and the admin said a worker that had answered "did not answer" or was "still
    applying". So one receive runs until it has a message, across the waits. The in-memory
    layer loses nothing so, and must be polled (see RECEIVE_SLICE_SECONDS)."""

    def __init__(self, layer: Any, channel: str) -> None:
        self.layer = layer
        self.channel = channel
        self.polled = isinstance(layer, InMemoryChannelLayer)
        self.receiving: asyncio.Task[dict[str, Any]] | None = None

    async def next(self, within: float) -> dict[str, Any] | None:
        """The next message, or None if none came within `within` seconds (or a slice)."""
        if self.polled:
            try:
                return await asyncio.wait_for(
                    self.layer.receive(self.channel), min(within, RECEIVE_SLICE_SECONDS)
                )
            except TimeoutError:
                return None
        if self.receiving is None:
            self.receiving = asyncio.ensure_future(self.layer.receive(self.channel))
        done, _pending = await asyncio.wait({self.receiving}, timeout=max(within, 0.0))
        if not done:
            return None
        receiving, self.receiving = self.receiving, None
        return receiving.result()

    async def close(self) -> None:
        """No more waiting: a receive still running is given up (what it would get now
        has no reader), and ended before the loop may be."""
        receiving, self.receiving = self.receiving, None
        if receiving is not None:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)


def describe(applied: Applied, *, named_up_to: int | None = None) -> list[tuple[bool, str]]:
    """The messages for a change: (it reached a worker, text), one per charger; past
    `named_up_to` chargers (the admin's, a person reads them), one per outcome, as an
    import's summary says it. The API's notes stay one per charger, for scripts."""
    if named_up_to is not None and len(applied.outcomes) > named_up_to:
        counted = summarise([applied])["outcomes"]
        summed = summary_lines({"outcomes": counted, "notes": []})
        return [(True, line) for line in summed] + notes(applied)
    lines = [
        (True, f"{outcome['charge_point_id']} {outcome['outcome']}.".replace("..", "."))
        for outcome in applied.outcomes
    ]
    return lines + notes(applied)


def notes(applied: Applied) -> list[tuple[bool, str]]:
    """What `describe` says beside the chargers' outcomes: that no worker runs, or some
    did not answer, or are still applying the change."""
    if applied.unsent == STOPPING:
        return [
            (
                False,
                "Saved, but the simulator is stopping: its workers take the change when "
                "they start again.",
            )
        ]
    if applied.unsent:
        # Not silence (an empty list reads as "nothing to tell"): the change is saved but
        # reaches the workers only through their periodic look at the database.
        return [
            (
                False,
                f"Saved, but the simulator workers could not be told ({applied.unsent}: the "
                "channel layer, Redis, cannot be reached): running workers take the change "
                "at their next check of the database, within seconds.",
            )
        ]
    if not applied.shards:
        return []
    lines = []
    if applied.other_counts:
        # The change went to the groups of this process's N, so to the wrong workers: the
        # right ones take it only at their next look at the database (seconds).
        shown = " or ".join(f"--shard K/{n}" for n in applied.other_counts)
        here = settings.CHARGESIM_SHARDS
        lines.append(
            (
                False,
                f"Saved, but the simulator workers run as {shown} while CHARGESIM_SHARDS is "
                f"{here} in this process: it told the workers of the wrong shards, and a "
                "charger's own worker takes the change only at its next check of the "
                "database. Set CHARGESIM_SHARDS to the workers' N on every web process and "
                "Celery worker.",
            )
        )
    busy = len(set(applied.received) - {a.get("shard", 0) for a in applied.answers})
    if busy:
        lines.append(
            (
                True,
                f"Saved; {busy} simulator worker(s) got the change and are still applying it "
                "(the charger pages show when it takes effect).",
            )
        )
    return lines + _unanswered(*_silent(applied))


# What a worker that did not answer (paused, busy, or not running: the web side cannot
# tell) does with each kind of change when it next reads the fleet, or when it starts.
DELETED, DISABLED = "deleted", "disabled"
_LATER = {
    DELETED: "it drops the charger when it next reads the fleet",
    DISABLED: "it stops the charger when it next reads the fleet",
    "": "it takes the change when it next reads the fleet, or when it starts",
}
# The same of several chargers ("their workers"), in the plural.
_LATER_MANY = {
    DELETED: "they drop the chargers when they next read the fleet",
    DISABLED: "they stop the chargers when they next read the fleet",
    "": "they take the change when they next read the fleet, or when they start",
}


def _silent(applied: Applied) -> tuple[dict[str, set[str]], int, int]:
    """The chargers whose worker did not answer by kind of change (DELETED, DISABLED or
    ""), how many workers did not answer, and of how many told."""
    heard = set(applied.received) | {a.get("shard", 0) for a in applied.answers}
    silent = [shard for shard in applied.shards if shard not in heard]
    kinds: dict[str, set[str]] = {}
    for shard in silent:
        for pk, cp_id in applied.chargers.get(shard, {}).items():
            kinds.setdefault(applied.changes.get(pk, ""), set()).add(cp_id)
    return kinds, len(silent), len(applied.shards)


def _unanswered(kinds: dict[str, set[str]], silent: int, told: int) -> list[tuple[bool, str]]:
    """A line per kind of change, naming the chargers whose worker did not answer."""
    lines = []
    for kind, later in _LATER.items():
        ids = sorted(kinds.get(kind, ()))
        if ids:
            its, later = (
                ("its worker", later) if len(ids) == 1 else ("their workers", _LATER_MANY[kind])
            )
            text = f"{_named(ids)} {kind or 'saved'}; {its} did not answer: {later}."
            lines.append((False, text))
    if silent and not kinds:  # a vehicle model or a location: every worker was told
        who = (
            "No simulator worker answered"
            if silent == told
            else f"{silent} of {told} simulator workers did not answer"
        )
        text = f"{who}: saved; a worker takes the change when it next reads the fleet, or when it starts."
        lines.append((False, text))
    return lines


def _named(ids: list[str]) -> str:
    """The first FIRST_CHARGERS ids, and how many more."""
    more = f" and {len(ids) - FIRST_CHARGERS:,} more" if len(ids) > FIRST_CHARGERS else ""
    return ", ".join(ids[:FIRST_CHARGERS]) + more


# The chargers named per outcome in a summary; the others are counted.
FIRST_CHARGERS = 5


class OutcomeCount(TypedDict):
    outcome: str  # as a worker says it: "reboots now (2 connectors)"
    count: int
    chargers: list[str]  # the first FIRST_CHARGERS charge point ids, in order


class FleetSummary(TypedDict):
    outcomes: list[OutcomeCount]  # the most frequent first
    notes: list[str]  # no worker running, some still applying...


def summarise(applied: Iterable[Applied]) -> FleetSummary:
    """What the workers did with many chargers' changes (an import's), counted by outcome:
    a message per charger, as an admin save shows, would be 1,000 lines."""
    chargers: dict[str, list[str]] = {}
    said: list[str] = []
    # The chargers no worker answered for, named once for the whole import, not per batch.
    kinds: dict[str, set[str]] = {}
    silent = told = 0
    for one in applied:
        for outcome in one.outcomes:
            chargers.setdefault(outcome["outcome"], []).append(outcome["charge_point_id"])
        unheard, missing, shards = _silent(one)
        for kind, ids in unheard.items():
            kinds.setdefault(kind, set()).update(ids)
        silent, told = max(silent, missing), max(told, shards)
        quiet = {text for _reached, text in _unanswered(unheard, missing, shards)}
        said += [text for _reached, text in notes(one) if text not in said and text not in quiet]
    said += [text for _reached, text in _unanswered(kinds, silent, told)]
    counted = sorted(chargers.items(), key=lambda item: (-len(item[1]), item[0]))
    return FleetSummary(
        outcomes=[
            OutcomeCount(outcome=outcome, count=len(ids), chargers=sorted(ids)[:FIRST_CHARGERS])
            for outcome, ids in counted
        ],
        notes=said,
    )


def summary_lines(summary: FleetSummary) -> list[str]:
    """The summary as a person reads it: "reboots now (2 connectors): 1,000 chargers
    (CP-0001, ..., CP-0005 and 995 more)"."""
    lines = []
    for item in summary["outcomes"]:
        count, named = item["count"], item["chargers"]
        more = f" and {count - len(named):,} more" if count > len(named) else ""
        noun = "charger" if count == 1 else "chargers"
        lines.append(f"{item['outcome']}: {count:,} {noun} ({', '.join(named)}{more})")
    return lines + summary["notes"]
