"""Fleet edits reach the running chargers: what a worker does when the fleet changes.

The web side sends `contract.fleet_changed` after each commit; the command server hands it
here. Messages arriving close together are coalesced (`COALESCE_SECONDS`), the rows are
read and decided in chunks (`READ_CHUNK`), and each charger of this shard acts as a real
charger would:

- a new (or newly enabled) charger is loaded and, with auto-connect, connects;
- a disabled or deleted charger (or one whose new identity belongs to another shard) ends
  its ongoing transactions at once (StopReason "Other": the operator took it out of
  service), waits up to `RETIRE_PATIENCE_SECONDS` for the CSMS to confirm them, and goes
  offline;
- a new identity, connector count, boot identity (vendor, model, serial, firmware) or
  read-only configuration key (SupportedFeatureProfiles, ...) is a reboot: the charger
  is built afresh from its row and sends a BootNotification. A charger in a session
  reboots when the session ends. A large change reboots `REBOOT_BATCH` chargers at a time
  (`_reboot_queued`), each batch booted before the next goes down; a large import of new
  chargers loads and connects them the same way, a batch at a time;
- a new CSMS URL, security profile or credentials: it reconnects (no reboot);
- edited configuration keys are applied as a local ChangeConfiguration (same validation
  and side effects: a new MeterValueSampleInterval moves the next sample at once);
- auto-connect turned on connects an offline charger now; turned off, it stays connected;
- other fields (power, vehicles, location...) apply live, from the next tick or session.

Engine-owned state (registers, statuses, CSMS-set availability, open transactions, the
outbox) is never taken from the row: the engine's writes are flushed before rows are read,
and a rebuilt charger reads them back from what the checkpoint wrote.

Nothing is lost if a message is: every `RECONCILE_SECONDS` one indexed query asks which
chargers changed (`Charger.updated`) since the newest change seen, and a count reveals
deletions. Every `LOOK_BACK_EVERY_SECONDS` the query also looks `LOOK_BACK` further back,
for a row saved before the last look but committed after it (or stamped by a machine whose
clock is behind). Not on every look: right after a bulk import every row of the fleet is
inside the look-back, and reading 10,000 rows every 3 s for a minute cost 5 % of the
worker's CPU for nothing. And not for ever: once a look-back has run `LOOK_BACK` after the
newest change seen arrived, every row that could surface behind it has (a save commits
within `LOOK_BACK` of its stamp), so look-backs stop until a newer change moves the
watermark. Before, a fleet imported and then left alone had all its rows inside the
look-back of its unmoving watermark, read again every 30 s.

Vehicle models have no `updated` stamp (and a queryset update or SQL would not set one):
the same look reads the catalogue's few rows (`VehicleModel.objects.version()`) and, when
they differ from those last applied, the chargers and the traffic take the catalogue
again. Before, a lost message left a worker on the old catalogue until it restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from django.db import InterfaceError, OperationalError

from chargers.orm_threads import in_thread
from simulator import contract
from simulator.contract import config_keys
from simulator.core.charge_point import BootState, Charger, ChargerSpec, LinkState
from simulator.core.protocol import StopReason
from simulator.core.revision import FLEET
from simulator.core.security_log import SecurityEvent
from simulator.core.transfer import Transfers
from simulator.runtime.connect_ramp import ConnectRamp
from simulator.runtime.load_management import SiteController
from simulator.runtime.persistence import (
    Checkpointer,
    build_loaded,
    charger_spec,
    custom_readonly,
    held_elsewhere,
    let_go,
    load_fleet,
    load_sites,
    load_vehicles,
    read_chargers,
)
from simulator.runtime.store import Store
from vehicles.models import VehicleModel

if TYPE_CHECKING:
    from chargers.models import Charger as ChargerRow
    from chargers.models import ConfigurationKey
    from simulator.runtime.traffic import TrafficDriver


class Service(Protocol):
    """What the reloader needs of the simulator (`lifecycle.Simulator`); a protocol, so that
    the lifecycle imports this module and not the other way round."""

    shard: int
    shards: int
    store: Store
    connections: dict[str, asyncio.Task[None]]
    checkpointer: Checkpointer
    transfers: Transfers
    sites: SiteController
    traffic: TrafficDriver | None
    ramp: ConnectRamp

    @property
    def only_ids(self) -> list[str] | None: ...

    def connect(self, charger: Charger, *, paced: bool = False) -> None: ...

    async def disconnect(self, charger: Charger) -> None: ...

    async def checkpoint(self, *, full: bool = True) -> None: ...


log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.15
RECONCILE_SECONDS = 3.0
# A row saved before the last look but committed after it still has an older `updated`.
LOOK_BACK = timedelta(seconds=60)
LOOK_BACK_EVERY_SECONDS = 30.0
RETIRE_PATIENCE_SECONDS = 10.0
# How long a worker waits before taking on a charger of another shard (a new identity)
# whose transaction is still open: the worker that had it ends that session (reason
# Other) as soon as it hears of the move, within a reconciliation of it at worst. Past
# this, that worker is taken to be gone and the session ends as after a power loss.
HANDOVER_PATIENCE_SECONDS = 2 * RETIRE_PATIENCE_SECONDS
WAITING_HANDOVER = "waiting for its previous worker to end its session"
RUNS_ELSEWHERE = "runs on another worker now"
# A charger come without a session whose previous worker still sends it durable messages
# (the SecurityEventNotification of its boot, say): loaded now, it would send them twice.
WAITING_MESSAGES = "waiting for its previous worker to deliver its last messages (no session)"
# How long the move of a charger another worker took on first waits for its message here.
MOVED_AWAY_SECONDS = 60.0

_RECONNECT = (
    "csms_url",
    "security_profile",
    "authorization_key",
    "ca_bundle_path",
    "client_cert_path",
    "client_key_path",
)
_BOOT_IDENTITY = ("vendor", "model", "serial_number", "firmware_version")
_BOOT_IDENTITY_WORDS = {
    "vendor": "vendor",
    "model": "model",
    "serial_number": "serial number",
    "firmware_version": "firmware version",
}
# A large change (a re-import of the fleet with a new vendor, say) reboots its chargers this
# many at a time, in order (`FleetReloader._reboot_queued`): each batch boots, and is
# frozen (`on_batch_up`; the chargers it replaced are freed already, `_let_go`), before the
# next goes down (a large import's new chargers are loaded and frozen so too). All at once,
# 5,000 reboots held the old fleet, the new one and 5,000 boots' worth of rows, sockets
# and messages together: a traced peak 3.3x the steady figure, which the RSS then kept.
REBOOT_BATCH = 250
# An apply reads and decides the changed rows this many at a time (`FleetReloader._decide`):
# read at once, a re-import's 1,000 rows with their EVSEs and configuration keys were held
# together until every one was decided (41 MiB traced at 1,000; `persistence.let_go` frees
# each chunk's before the next is read).
READ_CHUNK = 250
# An edit of this many chargers at most (a person's, in the admin) reboots them now, never
# behind a large change's queue; more, while a large change is rebooting, wait their turn.
FEW_REBOOTS = 10
# How long a batch may take to boot before the next goes down all the same (a CSMS that
# does not answer a BootNotification must not hold a change up for ever).
BATCH_PATIENCE_SECONDS = 120.0
BATCH_POLL_SECONDS = 0.2
NO_CHANGE = "no change for the running charger"
# An apply's log line names each changed charger up to this many, else counts outcomes.
NAMED_OUTCOMES = 10
REBOOT_WHY = "an edit that needs a reboot"
# The end of an outcome whose edit waits for a reboot at the session's end.
WHEN_SESSION_ENDS = "effect when its session ends (it reboots then)"
# Keys the operator cannot set: the engine derives them, or they live on the charger row.
_NOT_EDITABLE = {"NumberOfConnectors", "AuthorizationKey", "SecurityProfile"}


def _log_outcomes(outcomes: list[contract.ChargerOutcome]) -> None:
    """One log line for what an apply did to its changed chargers: the worker's own record
    of an edit, which only the admin's or the API's answer said before. Each charger by
    name when they are few; counted by outcome when many (a re-import of thousands)."""
    changed = [o for o in outcomes if o["outcome"] != NO_CHANGE]
    if not changed:
        return
    if len(changed) <= NAMED_OUTCOMES:
        said = "; ".join(f"{o['charge_point_id']} {o['outcome']}" for o in changed)
        log.info("fleet change applied: %s", said)
        return
    counts = Counter(o["outcome"] for o in changed)
    said = "; ".join(f"{n} {outcome}" for outcome, n in counts.most_common())
    log.info("fleet change applied to %d chargers: %s", len(changed), said)


@dataclass
class _Reboot:
    """A charger an apply reboots, with the chargers the same apply reboots (`_reboot_all`)."""

    pk: int | None
    live: Charger
    reconnect: bool
    why: str
    edited_at: float | None


@dataclass
class _PowerCycle:
    """A power cycle asked for (`FleetReloader.power_cycle`), until its batch has done it."""

    live: Charger
    paced: bool
    answer: asyncio.Future[str]


# The outcome `_apply_one` gives a charger it left to the apply's reboots.
_REBOOTING = "rebooting"


@dataclass
class _Request:
    chargers: set[int] = field(default_factory=set)
    vehicles: bool = False
    locations: bool = False
    replies: list[tuple[Any, str, str | None, set[int]]] = field(default_factory=list)


@dataclass
class _Decided:
    """What an apply has decided so far, chunk by chunk (`FleetReloader._decide`)."""

    seen_at: float  # when the apply began (Unix time): the loaded chargers' set-up is of then
    outcomes: list[contract.ChargerOutcome] = field(default_factory=list)
    reboots: list[_Reboot] = field(default_factory=list)
    new_rows: list[ChargerRow] = field(default_factory=list)  # to load now (not queued)
    # pk -> (its outcome, when its row was read) of the chargers to reboot or load, until
    # rebooted, loaded or queued (`FleetReloader._answered`)
    pending: dict[int, tuple[contract.ChargerOutcome, float]] = field(default_factory=dict)
    queued: bool = False  # a large change: its reboots and loads go to the queue
    queued_reboots: int = 0
    queued_loads: int = 0

    def starts(self) -> int:
        return len(self.reboots) + len(self.new_rows)


class FleetReloader:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.seen: dict[int, datetime] = {}  # pk -> `updated` of the row last applied
        self._looked_back = float("-inf")  # loop time of the last look-back reconciliation
        self.look_backs = 0
        self.watermark: datetime | None = None
        self._watermark_moved = float("-inf")  # loop time the watermark last moved
        self.count = -1
        # The vehicle catalogue as last read for the chargers (`VehicleModel.objects.version`,
        # read before the catalogue itself: a change in between is only applied twice).
        self.vehicles_version: list[tuple[Any, ...]] | None = None
        # pks that reboot when their session ends -> when their edit was first seen (Unix
        # time): the instant their pages' set-up is old from (`Charger.setup_at`).
        self.waiting_reboot: dict[int, float] = {}
        # pk -> loop time until which a charger come from another shard, its transaction
        # still open or its transaction messages still in the outbox, waits for that
        # shard's worker to let it go (`HANDOVER_PATIENCE_SECONDS`).
        self.waiting_handover: dict[int, float] = {}
        # pk -> whether a session is concerned, of the rows `apply` reads now
        self._open_elsewhere: dict[int, bool] = {}
        self._incoming: list[tuple[contract.FleetChanged, Any, float]] = []
        # pk -> loop time its row was last read, and what was done with it then: a message
        # for rows read after it arrived (a reconciliation got there first) is answered
        # from these, not applied again (5,000 imported rows would be read twice).
        self.read_at: dict[int, float] = {}
        self.last_outcome: dict[int, contract.ChargerOutcome] = {}
        # pk -> (`updated`, outcome) of a row version the reconciliation applied from a
        # read BEFORE that version's fleet.changed arrived (the commit comes first): the
        # message's sender hears that outcome, not "no change" from applying it twice.
        # `updated` None: the row was deleted (the charger it retired is gone, so applying
        # the message again would answer nothing at all).
        self.unheard: dict[int, tuple[datetime | None, str]] = {}
        # pk -> loop time of the idle chargers another worker took on first, moved to its
        # shard (`drop_lost`): the message of that move, arriving after, is answered
        # "stopped: moved to shard N" rather than nothing (the charger is gone from here).
        self._moved_away: dict[int, float] = {}
        # pks of an `apply` that raised (the database went away in the middle of it): the
        # next reconciliation applies them again, whatever their `updated` says, since
        # `seen` and the watermark may already have moved past the version not applied.
        self.retry: set[int] = set()
        self.retry_vehicles = False
        self.rows_read = 0
        self._arrived = asyncio.Event()
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        # A large change's reboots not done yet, in order: pk -> when its edit was first
        # seen (`_Reboot.edited_at`). Not the live charger: the one running at its turn is
        # rebooted, from its row as it is then (a later edit of it wins).
        self.batch = REBOOT_BATCH
        self._queue: dict[int, float | None] = {}
        self._queued_total = 0  # chargers queued since the queue was last empty (progress)
        self._in_flight = 0  # chargers of the batch rebooted and not yet booted
        self._pump: asyncio.Task[None] | None = None
        # Power cycles asked for and not done yet, in order, and the task doing them a
        # batch at a time (`_power_cycle_batches`).
        self._power_cycles: deque[_PowerCycle] = deque()
        self._cycler: asyncio.Task[None] | None = None
        # Chargers of the batch the pump is taking down and building afresh (not its boot
        # wait): a stop lets these finish.
        self._going_down = 0
        # Chargers a reboot took down that had a connection, until each is built afresh
        # and connecting again: out of the store and the connections meanwhile, yet still
        # the fleet's (`Simulator.status` counts them as connecting, not as gone).
        self.down: set[str] = set()
        # The queued chargers that are new (not running): a batch loads them from their
        # rows, as a start-up does, instead of rebooting them; how many since the queue was
        # last empty, and how many the batch going on is loading (progress).
        self._to_load: set[int] = set()
        self._loads_total = 0
        self._loading = 0
        self._halted = False  # a stop began: no batch starts any more
        # Called once a batch has booted, with how many chargers it replaced (rebooted) and
        # how many new ones it loaded: the lifecycle freezes what the batch built
        # (`Simulator._freeze_batch`).
        self.on_batch_up: Callable[[int, int], None] | None = None
        # The chargers replaced (rebooted) or retired so far, let go (`_let_go`): the gc
        # policy bounds what their connections leave frozen (`Simulator._keep_frozen`).
        self.replaced = 0

    # -- input ---------------------------------------------------------------------------------

    def submit(self, message: contract.FleetChanged, layer: Any = None) -> None:
        """A fleet.changed message (from the command server): applied with the others that
        arrive within `COALESCE_SECONDS`."""
        self._incoming.append((message, layer, asyncio.get_running_loop().time()))
        self._arrived.set()

    async def prime(self) -> None:
        """Before the fleet is loaded: what the database holds now is what gets loaded."""
        self.seen, self.watermark, self.count, self.vehicles_version = await in_thread(
            _all_versions
        )()
        self._watermark_moved = asyncio.get_running_loop().time()

    async def run(self, reconcile_seconds: float = RECONCILE_SECONDS) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._coalesce_loop())
            tasks.create_task(self._reconcile_loop(reconcile_seconds))

    async def _coalesce_loop(self) -> None:
        while True:
            await self._arrived.wait()
            await asyncio.sleep(COALESCE_SECONDS)
            self._arrived.clear()
            incoming, self._incoming = self._incoming, []
            request = _Request()
            for message, layer, arrived in incoming:
                pks = {int(pk) for pk in message.get("chargers") or () if _is_int(pk)}
                request.chargers |= {pk for pk in pks if self.read_at.get(pk, -1.0) < arrived}
                request.vehicles |= bool(message.get("vehicles"))
                request.locations |= bool(message.get("locations"))
                reply_to = message.get("reply_channel")
                if reply_to and layer is not None:
                    request.replies.append((layer, reply_to, message.get("request_id"), pks))
            try:
                if request.locations:
                    await self.reload_sites()
                if request.chargers or request.vehicles:
                    await self.apply(request.chargers, vehicles=request.vehicles)
            except Exception:
                log.exception("applying a fleet change failed; the reconciliation retries it")
                continue
            if request.replies and self._lock.locked():
                # An apply in progress (a reconciliation) read these rows already: its
                # outcomes are noted before it has loaded or rebooted the chargers, and a
                # sender told "loaded" must find the charger running.
                async with self._lock:
                    pass
            for layer, reply_to, request_id, pks in request.replies:
                mine = [self.last_outcome[pk] for pk in sorted(pks) if pk in self.last_outcome]
                with contextlib.suppress(Exception):
                    await layer.send(
                        reply_to,
                        contract.fleet_applied(
                            request_id, self.service.shard, self.service.shards, mine
                        ),
                    )

    async def _reconcile_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconciling the fleet failed; trying again")

    async def reconcile(self) -> list[contract.ChargerOutcome]:
        """Apply what changed in the database without a message (one was lost, or saved by
        a process that does not send them), and reboot chargers whose session ended."""
        await self.reload_sites()  # a handful of rows: no watermark needed
        start = self.watermark or datetime(1970, 1, 1, tzinfo=UTC)
        now = asyncio.get_running_loop().time()
        if now - self._looked_back >= LOOK_BACK_EVERY_SECONDS and (
            self._looked_back < self._watermark_moved + LOOK_BACK.total_seconds()
        ):
            self._looked_back = now
            self.look_backs += 1
            start -= LOOK_BACK
        changed, count, vehicles_version = await in_thread(_changed_since)(start, self.count)
        service = self.service
        pks = set()
        for pk, (updated, cp_id) in changed.items():
            if self.seen.get(pk) == updated:
                continue
            if contract.shard_of(cp_id, service.shards) == service.shard or service.store.by_pk(pk):
                pks.add(pk)
            else:
                self.seen[pk] = updated  # another shard's charger: its worker applies it
        if count is not None:  # a deletion somewhere: which loaded chargers are gone?
            existing, self.count = count
            pks |= {c.spec.db_id for c in service.store if c.spec.db_id is not None} - existing
        if changed:
            newest = max(updated for updated, _cp_id in changed.values())
            if self.watermark is None or newest > self.watermark:
                self.watermark = newest
                self._watermark_moved = now
        ready = {
            pk
            for pk in self.waiting_reboot
            if (c := self.service.store.by_pk(pk)) is None or not c.transactions
        }
        pks |= ready
        pks |= set(self.waiting_handover)
        pks |= self.retry
        vehicles = self.retry_vehicles or vehicles_version != self.vehicles_version
        if not pks and not vehicles:
            return []
        log.info(
            "reconciling %d changed chargers%s",
            len(pks),
            " and the vehicle catalogue" if vehicles else "",
        )
        return await self.apply(pks, vehicles=vehicles, heard=False)

    async def reload_sites(self) -> None:
        """Locations' load management and grid limits: the controller uses them next tick."""
        self.service.sites.use(await in_thread(load_sites)())

    # -- applying ------------------------------------------------------------------------------

    async def apply(
        self, pks: Iterable[int], *, vehicles: bool = False, heard: bool = True
    ) -> list[contract.ChargerOutcome]:
        """Re-read these chargers and act on each; one outcome per charger of this shard.
        `heard`: someone reads the outcomes (a fleet.changed), not the reconciliation."""
        async with self._lock:
            pks = set(pks)
            settled: set[int] = set()
            try:
                outcomes = await self._apply(pks, vehicles=vehicles, heard=heard, settled=settled)
            except BaseException:
                # The chunks carried out (or queued) before the failure are not applied
                # again: a retry would answer their next message "no change".
                self.retry |= pks - settled
                self.retry_vehicles |= vehicles
                raise
            self.retry -= pks
            self.retry_vehicles &= not vehicles
            _log_outcomes(outcomes)
            return outcomes

    async def _apply(
        self, pks: set[int], *, vehicles: bool, heard: bool, settled: set[int]
    ) -> list[contract.ChargerOutcome]:
        """`apply`'s work, under its lock. The rows are read and decided `READ_CHUNK` at a
        time, so that a change of the whole fleet never holds every row (with its EVSEs and
        configuration keys) at once; what a chunk decided is carried out by the end, or
        queued at once once the change is large (`_must_queue`). `settled`: the pks whose
        edit has been carried out or queued (a retry leaves them alone)."""
        service = self.service
        # The engine's own writes first, so that a value it set is not taken for an edit.
        service.checkpointer.mark_all(service.store)
        await service.checkpoint()
        catalogue, defaults, vehicles_version = await in_thread(_read_catalogue)(vehicles)
        if vehicles:
            self._use_vehicles(catalogue, defaults)
            self.vehicles_version = vehicles_version
        decided = _Decided(seen_at=time.time())
        ordered = sorted(pks)
        try:
            for start in range(0, len(ordered), READ_CHUNK):
                chunk = ordered[start : start + READ_CHUNK]
                await self._decide(chunk, catalogue, heard, decided)
                if decided.queued or self._must_queue(decided.starts()):
                    self._enqueue(decided)
                settled.update(pk for pk in chunk if pk not in decided.pending)
            if decided.queued:
                self._log_queued(decided)
            else:
                await self._start_now(decided, catalogue)
        except BaseException:
            for pk in decided.pending:  # applied again by the retry, not answered so
                self.unheard.pop(pk, None)
                self.last_outcome.pop(pk, None)
            raise
        return decided.outcomes

    async def _decide(
        self, pks: list[int], catalogue: dict[int, Any], heard: bool, decided: _Decided
    ) -> None:
        """Read these chargers' rows and decide what each edit does (`_apply_one`); the
        rows are let go on return, but those of chargers to load now (`decided.new_rows`)."""
        service = self.service
        reading = asyncio.get_running_loop().time()
        rows = await in_thread(read_chargers)(pks)
        self.rows_read += len(rows)
        self._open_elsewhere = {}
        if service.shards > 1:
            # A charger not running here yet whose session is still open is another
            # shard's until that shard's worker lets it go (`_apply_one`).
            arriving = [
                pk for pk, row in rows.items() if row.enabled and service.store.by_pk(pk) is None
            ]
            if arriving:
                self._open_elsewhere = await in_thread(held_elsewhere)(arriving)
        for pk in pks:
            row = rows.get(pk)
            live = service.store.by_pk(pk)
            if row is not None:
                self.seen[pk] = row.updated
            earlier = self.unheard.pop(pk, None)
            version = None if row is None else row.updated
            loads = len(decided.new_rows)
            # What a reconciliation did with this very version: it is applied already.
            already = earlier[1] if heard and earlier and earlier[0] == version else None
            if already is not None:
                outcome: str | None = already
            else:
                outcome = await self._apply_one(
                    pk, row, live, catalogue, decided.new_rows, decided.reboots
                )
                if not heard and outcome is not None and (row is not None or live is not None):
                    # Two reconciliations may read the same version (the second looked
                    # before the first had read it): the second finds nothing to change,
                    # and the message's sender must still hear what the first did.
                    if earlier is not None and earlier[0] == version and outcome == NO_CHANGE:
                        self.unheard[pk] = earlier
                    else:
                        self.unheard[pk] = (version, outcome)
            if outcome is _REBOOTING or len(decided.new_rows) > loads:
                # Answered once rebooted, loaded or queued (`_answered`).
                assert row is not None and outcome is not None
                answer = contract.ChargerOutcome(
                    charger_id=pk, charge_point_id=row.charge_point_id, outcome=outcome
                )
                decided.pending[pk] = (answer, reading)
                decided.outcomes.append(answer)
                if outcome is not _REBOOTING:
                    # A message that arrived before this read is answered from it, once
                    # the apply ends (the charger running by then). A reboot's is not: a
                    # message arriving meanwhile is applied after (answered then), not
                    # answered "rebooting" at once.
                    self.read_at[pk] = reading
                    self.last_outcome[pk] = answer
                continue
            if already is None:
                # Its latest edit needs no queued reboot or load. Not when the answer is of
                # what a reconciliation did with this very version: the reboot or load it
                # queued is still to come (taken off, a re-import's chargers never rebooted).
                self._unqueue(pk)
            self.read_at[pk] = reading
            self.last_outcome.pop(pk, None)
            if outcome is not None:
                name = live.id if live is not None and row is None else ""
                cp_id = row.charge_point_id if row is not None else name
                decided.outcomes.append(
                    contract.ChargerOutcome(charger_id=pk, charge_point_id=cp_id, outcome=outcome)
                )
                self.last_outcome[pk] = decided.outcomes[-1]
        kept = {row.pk for row in decided.new_rows}
        let_go(row for pk, row in rows.items() if pk not in kept)

    def _answered(self, pk: int, decided: _Decided, text: str) -> None:
        """A pending charger's outcome is known: the apply's answer, `unheard`, and for the
        messages read after its row (`read_at`), `last_outcome`."""
        outcome, reading = decided.pending.pop(pk)
        outcome["outcome"] = text
        if pk in self.unheard:
            self.unheard[pk] = (self.unheard[pk][0], text)
        self.read_at[pk] = reading
        self.last_outcome[pk] = outcome

    async def _start_now(self, decided: _Decided, catalogue: dict[int, Any]) -> None:
        """A change that fits in a batch: its reboots and loads now, ahead of any queue."""
        service = self.service
        for pk in [r.pk or 0 for r in decided.reboots] + [row.pk for row in decided.new_rows]:
            self._unqueue(pk)
        if decided.reboots:
            # Together: one checkpoint and one load for all (one each cost 2 checkpoints and
            # a load per charger: an import that rebooted 1,000 held every edit for a minute).
            texts = await self._reboot_all(decided.reboots)
            for reboot, text in zip(decided.reboots, texts, strict=True):
                self._answered(reboot.pk or 0, decided, text)
        if decided.new_rows:
            built = await in_thread(build_loaded)(
                decided.new_rows, catalogue, service.checkpointer, service.transfers
            )
            for charger in built:
                # Loaded while running (enabled again, say): a page of it shows the set-up
                # as it was before.
                self._run_loaded(charger, decided.seen_at)
            for row in decided.new_rows:
                self._answered(row.pk, decided, decided.pending[row.pk][0]["outcome"])
            let_go(decided.new_rows)

    def _run_loaded(self, charger: Charger, setup_at: float | None) -> None:
        charger.setup_at = setup_at
        self.service.store.add(charger)
        if charger.spec.auto_connect and charger.spec.csms_url:
            # Paced: a large import's new chargers connect at the worker's connect rate.
            self.service.connect(charger, paced=True)

    def _must_queue(self, starts: int) -> bool:
        """Whether an apply's reboots and loads join the queue of a large change
        (`_reboot_queued`) rather than go now. A few (a person's edit) go now whatever is
        queued, and leave the queue; so does a change that fits in a batch when nothing is
        queued and what boots stays within a batch."""
        few = starts <= min(FEW_REBOOTS, self.batch)
        return not few and (bool(self._queue) or self._in_flight + starts > self.batch)

    def _enqueue(self, decided: _Decided) -> None:
        """Queue what the apply has decided to reboot or load so far, in pk order (one
        already queued keeps its place, and its first edit's instant), and answer it so;
        the rows of the chargers to load are let go: each batch reads its own."""
        decided.queued = True
        starts = [(r.pk, r.edited_at, False) for r in decided.reboots if r.pk is not None]
        starts += [(row.pk, decided.seen_at, True) for row in decided.new_rows]
        for pk, edited_at, new in sorted(starts, key=lambda start: start[0]):
            if pk not in self._queue:
                self._queue[pk] = edited_at
                if new:
                    self._to_load.add(pk)
                    self._loads_total += 1
                    decided.queued_loads += 1
                else:
                    self._queued_total += 1
                    decided.queued_reboots += 1
            # Answered so now; a message for the same rows is answered from this
            # (`read_at`), not applied again (which would reboot or load them at once).
            self._answered(pk, decided, self._queued_text(new=pk in self._to_load))
        decided.reboots.clear()
        let_go(decided.new_rows)
        decided.new_rows.clear()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(
                self._reboot_queued(), name="fleet-reboots"
            )
            self._pump.add_done_callback(self._pump_done)

    def _pump_done(self, pump: asyncio.Task[None]) -> None:
        """Nobody awaits the batches' task: a failure would end the change in silence, the
        chargers still queued running on unchanged (a re-import that rebooted nothing
        looked like that)."""
        if pump.cancelled() or pump.exception() is None:
            return
        log.error(
            "a large fleet change failed with %d chargers still queued to reboot or load: "
            "they run on as they are; restart the simulator to apply the change to them",
            len(self._queue),
            exc_info=pump.exception(),
        )

    def _log_queued(self, decided: _Decided) -> None:
        log.info(
            "a large fleet change: %d chargers queued to reboot and %d to load, %d at a time "
            "(%d queued in all)",
            decided.queued_reboots,
            decided.queued_loads,
            self.batch,
            len(self._queue),
        )

    def _queued_text(self, *, new: bool = False) -> str:
        return f"queued to {'load' if new else 'reboot'} ({self.batch} chargers at a time)"

    def _unqueue(self, pk: int) -> None:
        """The charger leaves the queue: rebooted or loaded ahead of it, or its edit needs
        neither any more."""
        self._queue.pop(pk, None)
        self._to_load.discard(pk)

    def _requeue(self, entries: dict[int, float | None], loads: Iterable[int]) -> None:
        """A batch that could not be started goes back to the head of the queue."""
        self._queue = dict(sorted(entries.items())) | self._queue
        self._to_load.update(loads)

    def reboot_progress(self) -> tuple[int, int] | None:
        """(rebooted, of) the large change's chargers, while one is applied; None else."""
        if not self._queued_total:
            return None
        queued = len(self._queue) - len(self._to_load)
        return self._queued_total - queued - self._going_down, self._queued_total

    def load_progress(self) -> tuple[int, int] | None:
        """(loaded, of) the new chargers of a large change, while one is applied; None else."""
        if not self._loads_total:
            return None
        return self._loads_total - len(self._to_load) - self._loading, self._loads_total

    async def _reboot_queued(self) -> None:
        """Reboot (or load, for new chargers) the queued chargers `batch` at a time, in
        order: a batch goes down, is built afresh and boots (`_until_booted`) before the
        next goes down, so that the process holds one batch's old chargers and boots at a
        time, not the fleet's, and the CSMS sees one batch connect at a time."""
        try:
            while self._queue and not self._halted:
                try:
                    batch, rebooted = await self._reboot_batch()
                except Exception:
                    # The database refused the batch's first checkpoint or its read:
                    # nothing was torn down, and the batch is back at the head of the queue.
                    log.exception("rebooting a batch of a fleet change failed; trying again")
                    await asyncio.sleep(1.0)
                    continue
                if not batch:
                    continue
                self._in_flight = len(batch)
                await self._until_booted(batch)
                self._in_flight = 0
                if self.on_batch_up is not None:
                    self.on_batch_up(rebooted, len(batch) - rebooted)
        finally:
            self._in_flight = 0
            if not self._queue:
                self._queued_total = self._loads_total = 0

    async def _reboot_batch(self) -> tuple[list[int], int]:
        """Take the next batch off the queue, reboot its running chargers (`_reboot_all`)
        and load its new ones (`_load_batch`); the pks that boot, and how many rebooted."""
        async with self._lock:
            reboots: list[_Reboot] = []
            loads: dict[int, float | None] = {}
            while self._queue and len(reboots) + len(loads) < self.batch:
                pk, edited_at = next(iter(self._queue.items()))
                new = pk in self._to_load
                self._unqueue(pk)
                live = self.service.store.by_pk(pk)
                if new:
                    if live is None:  # else loaded since, ahead of the queue
                        loads[pk] = edited_at
                    continue
                if live is None:  # gone since (retired, dropped): nothing to reboot
                    continue
                if live.transactions:  # a session began while it was queued
                    self.waiting_reboot.setdefault(pk, edited_at or time.time())
                    self._outcome(pk, live.id, f"its edit takes {WHEN_SESSION_ENDS}")
                    continue
                reboots.append(_Reboot(pk, live, self._connected(live), REBOOT_WHY, edited_at))
            booting = await self._reboot_now(reboots, loads)
            if loads:
                self._loading = len(loads)
                try:
                    booting += await self._load_batch(loads)
                except BaseException as exc:
                    self._requeue(loads, loads)
                    if not reboots or not isinstance(exc, Exception):
                        raise
                    log.exception("loading a batch of a fleet change failed; trying again")
                finally:
                    self._loading = 0
            return booting, len(reboots)

    async def _reboot_now(
        self, reboots: list[_Reboot], loads: dict[int, float | None]
    ) -> list[int]:
        """A batch's reboots (`_reboot_all`); their pks. Refused, the batch (`loads` too)
        goes back to the head of the queue."""
        if not reboots:
            return []
        self._going_down = len(reboots)
        try:
            texts = await self._reboot_all(reboots)
        except BaseException:
            self._requeue({r.pk or 0: r.edited_at for r in reboots} | loads, loads)
            raise
        finally:
            self._going_down = 0
        for reboot, text in zip(reboots, texts, strict=True):
            pk = reboot.pk or 0
            charger = self.service.store.by_pk(pk)
            self._outcome(pk, reboot.live.id if charger is None else charger.id, text)
        done, total = self.reboot_progress() or (0, 0)
        log.info(
            "a large fleet change: %d of %d chargers rebooted (%d at a time)",
            done,
            total,
            self.batch,
        )
        return [r.pk or 0 for r in reboots]

    async def _load_batch(self, loads: dict[int, float | None]) -> list[int]:
        """Load a batch of new chargers from their rows as they are now (a later edit
        wins) and connect those with auto-connect; their pks."""
        service = self.service
        chargers: list[Charger] = await in_thread(load_fleet)(
            service.checkpointer,
            shard=service.shard,
            shards=service.shards,
            ids=service.only_ids,
            pks=list(loads),
            transfers=service.transfers,
        )
        by_pk = {charger.spec.db_id: charger for charger in chargers}
        for pk, edited_at in loads.items():
            charger = by_pk.get(pk)
            if charger is None:  # disabled, deleted or moved since: its apply says so
                last = self.last_outcome.get(pk)
                cp_id = "" if last is None else last["charge_point_id"]
                self._outcome(pk, cp_id, "not loaded: it can no longer be loaded")
                continue
            self._run_loaded(charger, edited_at)
            self._outcome(
                pk, charger.id, _loaded_text(charger.spec.csms_url, charger.spec.auto_connect)
            )
        done, total = self.load_progress() or (0, 0)
        log.info(
            "a large fleet change: %d of %d new chargers loaded (%d at a time)",
            done + len(loads),  # this batch's are still counted as loading
            total,
            self.batch,
        )
        return [pk for pk in loads if pk in by_pk]

    def _outcome(self, pk: int, cp_id: str, text: str) -> None:
        """What was done with a queued charger at its turn, for the answers given from now
        on (`last_outcome`, `unheard`)."""
        if pk in self.unheard:
            self.unheard[pk] = (self.unheard[pk][0], text)
        self.last_outcome[pk] = contract.ChargerOutcome(
            charger_id=pk, charge_point_id=cp_id, outcome=text
        )

    async def _until_booted(self, pks: list[int]) -> None:
        """Until every charger of the batch that connects has had its BootNotification
        answered (or its connection failed), `BATCH_PATIENCE_SECONDS` at most."""
        loop = asyncio.get_running_loop()
        patience = BATCH_PATIENCE_SECONDS
        ramp = self.service.ramp
        if ramp.paces:  # the batch's turns in the connect ramp come on top
            patience += len(pks) / ramp.rate
        deadline = loop.time() + patience
        while any(self._booting(pk) for pk in pks):
            if loop.time() >= deadline:
                log.warning(
                    "a large fleet change: %d chargers of a batch not booted within %gs; "
                    "the next batch goes on",
                    sum(1 for pk in pks if self._booting(pk)),
                    patience,
                )
                return
            await asyncio.sleep(BATCH_POLL_SECONDS)

    def _booting(self, pk: int) -> bool:
        """Whether the charger connects and its boot is not answered yet: a charger whose
        connection failed (retrying later) or that does not connect is done booting."""
        charger = self.service.store.by_pk(pk)
        if charger is None or not self._connected(charger) or charger.link_error:
            return False
        return charger.link is not LinkState.ONLINE or charger.boot is BootState.NONE

    async def halt(self, within: float) -> None:
        """A stop begins: no batch of a large change starts any more. One going down is
        let finish (its chargers torn down and not built again would not be saved by the
        stop), `within` seconds at most; a batch booting is not waited for. The chargers
        still queued run on as they are, are saved so by the stop, and start from their
        rows (the edit) at the next start."""
        self._halted = True
        pump = self._pump
        if pump is None or pump.done():
            return
        if not self._going_down:
            pump.cancel()
        await asyncio.wait([pump], timeout=max(within, 0.0))

    async def _apply_one(
        self,
        pk: int,
        row: ChargerRow | None,
        live: Charger | None,
        catalogue: dict[int, Any],
        new_rows: list[ChargerRow],
        reboots: list[_Reboot],
    ) -> str | None:
        """What the edit of charger `pk` does; a charger to load is added to `new_rows`, one
        to reboot to `reboots` (its outcome `_REBOOTING` until they have rebooted)."""
        service = self.service
        shard = None if row is None else contract.shard_of(row.charge_point_id, service.shards)
        only = service.only_ids
        if row is None or not row.enabled or shard != service.shard:
            self.waiting_reboot.pop(pk, None)
            self.waiting_handover.pop(pk, None)
            if live is None:
                if row is not None and shard == service.shard:
                    return "saved; disabled, not running"
                if self._moved_away.pop(pk, None) is not None and row is not None:
                    return f"stopped: moved to shard {shard}" if row.enabled else None
                return None
            why = (
                "deleted"
                if row is None
                else "disabled"
                if not row.enabled
                else (f"moved to shard {shard}")
            )
            return self._retire(live, why, deleted=row is None)
        if only is not None and row.charge_point_id not in only:
            return None
        if not row.evses.all():
            return "not running: it has no EVSE"
        if live is None:
            if pk in self._open_elsewhere and self._handover_pending(pk):
                # Renamed from another shard mid-session: loaded now, it would end that
                # session a second time (PowerLoss, with a register below the one the
                # other worker's StopTransaction sent) while that worker ends it too.
                return WAITING_HANDOVER if self._open_elsewhere[pk] else WAITING_MESSAGES
            self.waiting_handover.pop(pk, None)
            new_rows.append(row)
            return _loaded_text(row.csms_url, row.auto_connect)
        spec = charger_spec(row, catalogue)
        parts = _reboot_parts(live, spec, row)
        if parts:
            if live.transactions:
                self.waiting_reboot.setdefault(pk, time.time())
                # What needs no reboot (configuration, power, CSMS URL) applies now: a
                # session that never ends held back every later edit of the charger.
                now = replace(
                    spec,
                    charge_point_id=live.id,
                    **{f: getattr(live.spec, f) for f in _BOOT_IDENTITY},
                )
                applied = self._apply_live(live, now, row)
                takes = "takes" if len(parts) == 1 else "take"
                later = f"{_listed(parts)} {takes} {WHEN_SESSION_ENDS}"
                if applied == NO_CHANGE:
                    return later
                return f"{applied}; {later}"
            seen = self.waiting_reboot.pop(pk, None)
            edited_at = time.time() if seen is None else seen
            reboots.append(_Reboot(pk, live, self._connected(live), REBOOT_WHY, edited_at))
            return _REBOOTING
        self.waiting_reboot.pop(pk, None)
        return self._apply_live(live, spec, row)

    def _handover_pending(self, pk: int) -> bool:
        """Whether a charger arriving with an open session still waits for the worker
        that had it (True until `HANDOVER_PATIENCE_SECONDS` after it was first seen)."""
        now = asyncio.get_running_loop().time()
        until = self.waiting_handover.setdefault(pk, now + HANDOVER_PATIENCE_SECONDS)
        if now < until:
            return True
        log.warning(
            "charger pk %s: another worker did not let it go within %gs (a transaction "
            "open, or transaction messages unconfirmed); taking it on (an open transaction "
            "ends as after a power loss, the messages are sent)",
            pk,
            HANDOVER_PATIENCE_SECONDS,
        )
        return False

    def handover_wait(self, pk: int) -> tuple[str, float] | None:
        """What a charger come from another shard waits for (`WAITING_HANDOVER` or
        `WAITING_MESSAGES`) and the seconds left at most; None if it is not waiting."""
        until = self.waiting_handover.get(pk)
        last = self.last_outcome.get(pk)
        if until is None or last is None:
            return None
        if last["outcome"] not in (WAITING_HANDOVER, WAITING_MESSAGES):
            return None
        return last["outcome"], max(0.0, until - asyncio.get_running_loop().time())

    def _apply_live(self, live: Charger, spec: ChargerSpec, row: ChargerRow) -> str:
        reconnect = any(getattr(live.spec, f) != getattr(spec, f) for f in _RECONNECT)
        auto_connect = spec.auto_connect != live.spec.auto_connect
        changed = reconnect or live.spec != replace(spec, default_vehicle=live.spec.default_vehicle)
        powers = {e.connector_id: e.max_power_kw * 1000 for e in row.evses.all()}
        changed |= any(
            powers.get(e.connector_id, e.max_power_w) != e.max_power_w for e in live.evses
        )
        changed |= spec.default_vehicle != live.spec.default_vehicle
        live.respec(spec, powers)
        rejected = []
        keys = row.configuration.all()
        changed |= _apply_custom_keys(live, keys)
        for item in keys:
            key, value = item.key, item.value
            known = config_keys.KEYS.get(key)
            if known is None or known.readonly or key in _NOT_EDITABLE:
                continue
            if live.config.get(key) == value:
                continue
            status = live.change_configuration(key, value)
            if status in ("Accepted", "RebootRequired"):
                changed = True
                if live.config.get(key) == value:  # as stored: no write back (a newer may come)
                    self.service.checkpointer.stored_already(live, key)
            else:
                rejected.append(f"{key} {status.lower()}")
        if reconnect or changed:
            live.setup_at = time.time()
            live.listener.on_change(live)  # its pages learn that their set-up is old
        if reconnect:
            self._reconnect(live)
            text = "reconnects now"
        elif auto_connect:
            text = self._auto_connect_changed(live)
        elif changed:
            text = "applied live"
        else:
            text = NO_CHANGE
        return f"{text} ({'; '.join(rejected)})" if rejected else text

    def _auto_connect_changed(self, live: Charger) -> str:
        """Auto-connect turned on connects the charger now, as it connects a new one: "applied
        live" and offline read as a broken promise (QA: an import turning it on for 1,000
        chargers left them offline). Turned off, a connected charger stays connected, as
        one an operator connected by hand does: until it is disconnected, or the simulator
        restarts without connecting it."""
        connected = self._connected(live)
        if not live.spec.auto_connect:
            if connected:
                return "auto-connect off: it stays connected until disconnected or restarted"
            return "auto-connect off"
        if connected:
            return "auto-connect on: connected already"
        if not live.spec.csms_url:
            return "auto-connect on, but it has no CSMS URL: not connecting"
        # Paced: an import may turn it on for the whole fleet.
        self.service.connect(live, paced=True)
        return "auto-connect on: connecting now"

    def _reconnect(self, live: Charger) -> None:
        service = self.service
        task = service.connections.pop(live.id, None)
        FLEET.bump()  # the status line counts the chargers with a connection task
        if task is not None:
            task.cancel()  # the runner detaches the charger as it ends
        if live.spec.csms_url and (task is not None or live.spec.auto_connect):
            # Paced: an import may give the whole fleet a new CSMS URL.
            service.connect(live, paced=True)

    async def power_cycle(self, live: Charger, *, paced: bool = False) -> str:
        """A person asked for a power cycle (`reboot`): the charger goes down as after a
        power loss and boots again (an open transaction ends with reason PowerLoss; the
        plugged-in vehicles stay, and a session resumes as after a Reset). A charger
        that was connected reconnects, auto-connect or not; `paced` (one of a bulk reboot),
        in its turn of the connect ramp. Edits that waited for the end of a session take
        effect now.

        The power cycles asked for together (a bulk reboot asks for each of its chargers
        in the same turn of the loop) are done `batch` at a time (`_power_cycle_batches`):
        one checkpoint and one load a batch. One at a time, each with its own, a bulk
        reboot of 1,000 chargers took 57 s, answered just within the API's 60 s, and
        5,000 could not be answered at all."""
        loop = asyncio.get_running_loop()
        cycle = _PowerCycle(live, paced, loop.create_future())
        self._power_cycles.append(cycle)
        if self._cycler is None or self._cycler.done():
            self._cycler = loop.create_task(self._power_cycle_batches(), name="power-cycles")
        return await cycle.answer

    async def _power_cycle_batches(self) -> None:
        """Carry out the power cycles asked for, in order, a batch at a time under the
        fleet lock (an edit waits for one batch, not for a whole bulk reboot)."""
        while self._power_cycles:
            async with self._lock:
                batch = self._next_power_cycles()
                if not batch:
                    continue
                try:
                    texts = await self._reboot_all(
                        [self._power_cycle_reboot(cycle.live) for cycle in batch],
                        paced=batch[0].paced,
                    )
                except Exception as exc:  # each asker hears it, as from its own power cycle
                    for cycle in batch:
                        if not cycle.answer.done():
                            cycle.answer.set_exception(exc)
                    continue
                except BaseException:  # the stop cancelled it: no answer will come
                    for cycle in [*batch, *self._power_cycles]:
                        cycle.answer.cancel()
                    self._power_cycles.clear()
                    raise
                for cycle, text in zip(batch, texts, strict=True):
                    if not cycle.answer.done():
                        cycle.answer.set_result(text)

    def _next_power_cycles(self) -> list[_PowerCycle]:
        """The next batch of asked power cycles: at most `batch`, paced alike (`_reboot_all`
        paces a whole batch or none of it), each charger once (a second power cycle of
        the same charger comes in the next batch, on the charger the first built)."""
        batch: list[_PowerCycle] = []
        chargers: set[str] = set()
        while self._power_cycles and len(batch) < self.batch:
            cycle = self._power_cycles[0]
            if cycle.answer.done():  # its asker is gone (cancelled)
                self._power_cycles.popleft()
                continue
            if (batch and cycle.paced != batch[0].paced) or cycle.live.id in chargers:
                break
            batch.append(self._power_cycles.popleft())
            chargers.add(cycle.live.id)
        return batch

    def _power_cycle_reboot(self, live: Charger) -> _Reboot:
        """One charger of a batch of power cycles, with the edits it takes on (under the
        lock): those that waited for the end of a session or were queued to reboot. The
        charger as it runs now: an edit or an earlier power cycle may have rebuilt it
        since it was asked for."""
        running = None if live.spec.db_id is None else self.service.store.by_pk(live.spec.db_id)
        live = live if running is None else running
        edited_at = None
        if live.spec.db_id is not None:
            edited_at = self.waiting_reboot.pop(live.spec.db_id, None)
            queued = self._queue.get(live.spec.db_id)  # rebooted now, not twice
            self._unqueue(live.spec.db_id)
            edited_at = queued if edited_at is None else edited_at
        return _Reboot(live.spec.db_id, live, self._connected(live), "a power cycle", edited_at)

    def _connected(self, live: Charger) -> bool:
        """Whether the charger has a connection (its task runs), auto-connect or not: one an
        operator connected by hand comes back after a reboot as one that connects itself."""
        task = self.service.connections.get(live.id)
        return task is not None and not task.done()

    async def _reboot_all(self, reboots: list[_Reboot], *, paced: bool = False) -> list[str]:
        """Power-cycle: save everything, then build each charger afresh from its row (new
        identity, connectors, NumberOfConnectors), as a restart would; their outcomes.
        `edited_at`: when the edit it takes on was first seen (None: it takes on none).
        `paced`: they reconnect in their turns of the connect ramp, however few."""
        service = self.service
        lives = [r.live for r in reboots]
        # The chargers come back from what is stored: with the database out of reach they
        # would be taken down and never loaded again (until a restart). Refused then
        # (this raises), before anything is torn down: they run on as they were.
        service.checkpointer.mark_all(lives)
        await service.checkpoint()
        for r in reboots:
            # Durable, so saved below and sent by the charger built afresh once it has booted.
            r.live.security_event(SecurityEvent.RESET_OR_REBOOT, r.why)
        # Counted down from before their connections close: a whole-fleet reboot read
        # "fleet: 0/0 accepted" on the status line until the chargers were built again.
        down = {r.live.id for r in reboots if r.reconnect}
        self.down |= down
        try:
            return await self._rebuild(reboots, lives, paced)
        finally:
            self.down -= down

    async def _rebuild(
        self, reboots: list[_Reboot], lives: list[Charger], paced: bool
    ) -> list[str]:
        """`_reboot_all`'s power cycle itself, `down` counting its chargers still down."""
        service = self.service
        await asyncio.gather(*(service.disconnect(live) for live in lives))
        for live in lives:
            live.cancel_timers()
            service.store.remove(live.id)
        service.checkpointer.mark_all(lives)
        pks = [r.pk for r in reboots if r.pk is not None]
        # A few (a person's edit or power cycle) reconnect at once; a batch of a large
        # change, or of a bulk reboot (`paced`), takes its turns in the connect ramp.
        paced = paced or len(reboots) > FEW_REBOOTS
        loaded = {charger.spec.db_id: charger for charger in await self._saved_and_loaded(pks)}
        outcomes: list[str] = []
        for r in reboots:
            live = r.live
            self.down.discard(live.id)  # connecting again below (the store counts it), or gone
            charger = loaded.get(r.pk) if r.pk is not None else None
            if charger is None:
                self._let_go(live)  # saved above: nothing of it is needed any more
                outcomes.append("stopped: it can no longer be loaded")
                continue
            charger.security_log = live.security_log  # the same charger's memory, rebooted
            charger.auth_cache.carry_over(live.auth_cache)
            charger.keep_vehicles_of(live)
            same_stored = charger.spec.impairments == live.spec.impairments
            charger.impairments.carry_over(live.impairments, same_stored=same_stored)
            self._let_go(live)  # saved above, and what carries over taken
            charger.startup_after = r.why
            charger.setup_at = r.edited_at  # built afresh from its edited row, or as it was
            service.store.add(charger)
            if (charger.spec.auto_connect or r.reconnect) and charger.spec.csms_url:
                service.connect(charger, paced=paced)
            count = len(charger.evses)
            outcomes.append(f"reboots now ({count} connector{'s' if count != 1 else ''})")
        return outcomes

    async def _saved_and_loaded(self, pks: list[int]) -> list[Charger]:
        """Write the checkpoint and load the chargers afresh from it; should the database go
        away in between (it answered a moment ago), wait for it: the chargers are down, as
        a real one stays down until it can boot, and come back once it is reachable."""
        service = self.service
        while True:
            try:
                await service.checkpoint()
                loaded: list[Charger] = await in_thread(load_fleet)(
                    service.checkpointer,
                    shard=service.shard,
                    shards=service.shards,
                    pks=pks,
                    transfers=service.transfers,
                    plugged=False,  # `keep_vehicles_of` carries the live ones over
                )
                return loaded
            except (OperationalError, InterfaceError) as exc:
                log.warning("%d chargers wait for the database to reboot: %s", len(pks), exc)
                await asyncio.sleep(1.0)

    def _retire(self, live: Charger, why: str, *, deleted: bool) -> str:
        """Out of service: end its transactions now (reason Other), go offline once the
        CSMS confirmed them (or after `RETIRE_PATIENCE_SECONDS`)."""
        service = self.service
        service.store.remove(live.id)
        if deleted:
            live.forget_storage(service.checkpointer.downstream)
        else:  # disabled or moved: its pages show it enabled, or here
            # Its cars stay parked (their rows kept): enabled again, or loaded by the worker
            # it moved to, it finds them plugged in, as a charger switched off and on does.
            live.setup_at = time.time()
        ended = live.end_service(StopReason.OTHER)
        task = asyncio.get_running_loop().create_task(
            self._go_offline(live, _OUT_OF_SERVICE.get(why, why), deleted=deleted),
            name=f"retire:{live.id}",
        )
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        unsent = _transaction_messages(live)
        if deleted and unsent and not live.online:
            # Its rows are gone, its outbox with them: what it could not send now never
            # goes (only a forced delete gets here: the web side refuses the others).
            stops = "its StopTransaction" if len(ended) == 1 else "their StopTransactions"
            what = (
                f"{len(ended)} transaction{'s' if len(ended) != 1 else ''} left open at its "
                f"CSMS ({stops} never sent)"
                if ended
                else f"{unsent} transaction message{'s' if unsent != 1 else ''} never sent"
            )
            return f"stopped: deleted while offline: {what}"
        if len(ended) > 1:
            return f"stopped: {why} (its {len(ended)} transactions ended, reason Other)"
        if ended:
            return f"stopped: {why} (its transaction ended, reason Other)"
        return f"stopped: {why}"

    def drop_lost(self, pks: set[int], sessions: set[int]) -> None:
        """Chargers another worker has taken on, so this one sends nothing more of theirs,
        not even a StopTransaction, and goes offline with them at once. With a session
        (those of `sessions` had rows of it the checkpoint dropped): moved to that worker's
        shard while this one stalled, past `HANDOVER_PATIENCE_SECONDS` (that worker ended
        it). Idle: moved, and that worker loaded it before this one heard of the move
        (nothing of it was lost)."""
        service = self.service
        now = asyncio.get_running_loop().time()
        for pk, at in list(self._moved_away.items()):
            if now - at > MOVED_AWAY_SECONDS:  # its message never came: nobody to answer
                del self._moved_away[pk]
        for pk in pks:
            live = service.store.by_pk(pk)
            if live is None:
                continue
            if pk in sessions or live.transactions or _transaction_messages(live):
                log.warning(
                    "%s: another worker runs it now (it took it on while this one did not "
                    "answer); dropped here, its session's rows from here not saved and "
                    "nothing more of it sent",
                    live.id,
                )
            else:
                log.info(
                    "%s: moved to another worker's shard, which loaded it first (it was "
                    "idle); let go here",
                    live.id,
                )
                self._moved_away[pk] = now
            service.store.remove(live.id)
            self._unqueue(pk)
            service.checkpointer.forget(live)  # if the batch did not name it
            for item in list(live.queue):
                live.queue.remove(item)
            task = asyncio.get_running_loop().create_task(self._drop(live), name=f"drop:{live.id}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _drop(self, live: Charger) -> None:
        await self.service.disconnect(live)
        live.cancel_timers()
        live.out_of_service(RUNS_ELSEWHERE)
        self._let_go(live)  # nothing of it is written here any more (`Checkpointer.forget`)

    async def _go_offline(self, live: Charger, why: str, *, deleted: bool = False) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETIRE_PATIENCE_SECONDS
        while live.online and live.queue and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if deleted and (unsent := _transaction_messages(live)):
            log.warning(
                "%s deleted with %d transaction message(s) its CSMS did not confirm: never "
                "sent again (its outbox went with its row)",
                live.id,
                unsent,
            )
        await self.service.disconnect(live)
        live.cancel_timers()
        # The pages showing it hear this last state: offline, and why (not a lost link).
        live.out_of_service(why)
        try:
            # What changed, without the full pass over every charging connector's
            # register: a large deletion retires its chargers each in a task of its own,
            # each asking for this.
            await self.service.checkpoint(full=False)  # that state written before it lets go
        except Exception as exc:  # kept as the failed batch: the next checkpoint writes it
            log.warning("%s: the checkpoint after it went offline failed: %s", live.id, exc)
        finally:
            self._let_go(live)

    def _let_go(self, live: Charger) -> None:
        """A charger replaced (rebooted) or retired, its last state saved: freed now by
        reference counting (`Charger.dispose`), not by a full collection of the frozen
        fleet (`gc_policy`); counted in `replaced`."""
        live.dispose()
        self.replaced += 1

    def busy(self) -> bool:
        """Whether an apply runs, a large change or power cycles are rebooting in batches
        or chargers are still going offline: the chargers it replaces are not all garbage yet."""
        rebooting = any(t is not None and not t.done() for t in (self._pump, self._cycler))
        return self._lock.locked() or rebooting or bool(self._retiring)

    def tasks(self) -> list[asyncio.Task[None]]:
        """The reloader's own tasks still running, chargers going offline, a large
        change's batches and power cycles (the simulator's stop cancels and awaits them)."""
        ours = [self._pump, self._cycler]
        return [*self._retiring, *(task for task in ours if task is not None and not task.done())]

    def _use_vehicles(self, catalogue: dict[int, Any], defaults: dict[int, int]) -> None:
        """The vehicle models as the database has them now, for the next plug-in of every
        charger and the next arrival of the traffic. A charger's default is found by its
        row's id (`defaults`, charger pk -> vehicle pk): a deleted model left the row with
        none (SET_NULL, which does not stamp `updated`), and kept by name it would still be
        plugged in. A car plugged in keeps the battery it came with."""
        vehicles = list(catalogue.values())
        for charger in self.service.store:
            pk = charger.spec.db_id
            default = charger.spec.default_vehicle
            if pk is not None:
                default = catalogue.get(defaults.get(pk, -1))
            elif default is not None:  # not from a row: by name, as it was given
                default = next((v for v in vehicles if v.name == default.name), None)
            charger.use_vehicles(vehicles, default)
        if self.service.traffic is not None:
            self.service.traffic.use_vehicles(catalogue)


# Why a retired charger is offline, as its last state says it to the pages.
_OUT_OF_SERVICE = {"disabled": "disabled in the set-up", "deleted": "deleted from the set-up"}


def _transaction_messages(live: Charger) -> int:
    """How many transaction messages the charger holds that its CSMS has not confirmed."""
    return sum(1 for message in live.queue if message.transactional and message.tx is not None)


def _reboot_parts(live: Charger, spec: ChargerSpec, row: ChargerRow) -> list[str]:
    """What of the edit needs a reboot, in words (none: it applies live)."""
    parts = []
    if spec.charge_point_id != live.id:
        parts.append(f"the new charge point id {spec.charge_point_id}")
    count = len(row.evses.all())
    if count != len(live.evses):
        parts.append(f"the new number of connectors ({count})")
    parts += [
        f"the new {_BOOT_IDENTITY_WORDS[f]}"
        for f in _BOOT_IDENTITY
        if getattr(live.spec, f) != getattr(spec, f)
    ]
    return parts + _read_only_keys_changed(live, row)


def _listed(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _read_only_keys_changed(live: Charger, row: ChargerRow) -> list[str]:
    """A read-only key says what the charger is (SupportedFeatureProfiles, the list
    lengths...): no CSMS may change it, so an operator's new value takes a reboot."""
    changed = []
    for item in row.configuration.all():
        known = config_keys.KEYS.get(item.key)
        if known is None or not known.readonly or item.key in _NOT_EDITABLE:
            continue
        if live.config.get(item.key, known.default) != item.value:
            changed.append(f"the new {item.key} ({item.value})")
    return changed


def _loaded_text(csms_url: str, auto_connect: bool) -> str:
    if not csms_url:
        return "loaded; it has no CSMS URL"
    return "loaded, connecting" if auto_connect else "loaded (auto-connect is off)"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_catalogue(
    vehicles: bool,
) -> tuple[dict[int, Any], dict[int, int], list[tuple[Any, ...]] | None]:
    """The vehicle catalogue and, when it changed, every charger's default vehicle
    (charger pk -> vehicle pk; a charger with none is left out) and the catalogue's
    version, read before it."""
    defaults: dict[int, int] = {}
    version = None
    if vehicles:
        from chargers.models import Charger as ChargerRow

        version = VehicleModel.objects.version()
        named = ChargerRow.objects.filter(default_vehicle__isnull=False)
        defaults = dict(named.values_list("pk", "default_vehicle_id"))
    return load_vehicles(), defaults, version


def _all_versions() -> tuple[dict[int, datetime], datetime | None, int, list[tuple[Any, ...]]]:
    from chargers.models import Charger as ChargerRow

    seen = dict(ChargerRow.objects.values_list("pk", "updated"))
    return seen, max(seen.values(), default=None), len(seen), VehicleModel.objects.version()


def _changed_since(
    since: datetime, known_count: int
) -> tuple[dict[int, tuple[datetime, str]], tuple[set[int], int] | None, list[tuple[Any, ...]]]:
    """Rows changed since `since` (an indexed range), and, only when the number of rows
    differs from `known_count`, every pk (to find the deleted ones); and the vehicle
    catalogue's version."""
    from chargers.models import Charger as ChargerRow

    recent = ChargerRow.objects.filter(updated__gte=since)
    changed = {
        pk: (at, cp_id) for pk, at, cp_id in recent.values_list("pk", "updated", "charge_point_id")
    }
    count = ChargerRow.objects.count()
    vehicles = VehicleModel.objects.version()
    if count == known_count:
        return changed, None, vehicles
    return changed, (set(ChargerRow.objects.values_list("pk", flat=True)), count), vehicles


def _apply_custom_keys(live: Charger, keys: Iterable[ConfigurationKey]) -> bool:
    """The operator's own keys (outside the key table) as the row has them now: added,
    changed, made read-only or deleted. A charger holds them as text and checks nothing,
    so they are taken as they are. Whether anything changed."""
    config = live.config
    given = {k.key: k.value for k in keys if k.key not in config_keys.KEYS}
    readonly = custom_readonly(keys)
    changed = readonly != config.custom_readonly
    config.custom_readonly = readonly
    for key in config.custom_keys():
        if key not in given:
            del config[key]
            changed = True
    for key, value in given.items():
        if config.get(key) != value:
            config[key] = value
            changed = True
    return changed
