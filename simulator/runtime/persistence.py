"""The bridge between the ORM and the runtime chargers: load, config sync, checkpoints.

The only module of the engine that touches Django models. Loading builds plain runtime
objects; afterwards the engine owns live state and this module writes through what must
survive a restart (meter registers, statuses, configuration) in batches, from a thread, so
that the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q, QuerySet

from chargers.models import (
    AuthCacheEntry,
    CertificateStoreRecord,
    ChargingProfileRecord,
    ConfigurationKey,
    EngineLease,
    LocalAuthEntry,
    LocalListChange,
    OutboxMessage,
    PluggedVehicle,
    ReservationRecord,
    RuntimeState,
    SecurityLogEntry,
    TagEntriesChange,
    TransactionValues,
)
from chargers.models import Charger as ChargerRow
from chargers.models import Evse as EvseRow
from chargers.models import Transaction as TransactionRow
from chargers.orm_threads import forget_queries
from simulator import contract
from simulator.contract import config_keys, overrides
from simulator.contract.failures import brief as _brief
from simulator.core.answer_overrides import Override
from simulator.core.battery import Battery
from simulator.core.certificates import CertificateStore
from simulator.core.charge_point import (
    ActionError,
    Charger,
    ChargerSpec,
    Listener,
    LocalTransaction,
)
from simulator.core.clock import now_iso, parse_iso
from simulator.core.drops import dropped
from simulator.core.evse import ConnectorStatus, Evse
from simulator.core.impairments import StoredImpairments
from simulator.core.local_list import ListChange
from simulator.core.outbox import Outgoing
from simulator.core.protocol import AuthStatus, IdTagAnswer
from simulator.core.security_log import LOG_SIZE, POWER_UP, LoggedEvent
from simulator.core.smart_charging import ChargingProfile
from simulator.core.transfer import Transfers
from simulator.core.vehicle import VehicleSpec
from simulator.ocpp16.messages import OCPP16
from simulator.ocpp16.redaction import may_hold_secret, redact_frame
from simulator.ocpp16.wire import Checked
from simulator.runtime import frame_log
from simulator.runtime.events import EventPublisher
from simulator.runtime.frame_log import CONNECTION, FRAME, FrameLogPolicy
from simulator.runtime.load_management import Site
from simulator.runtime.load_progress import LoadProgress
from vehicles.models import VehicleModel

log = logging.getLogger(__name__)
_CHARGING = ConnectorStatus.CHARGING.value


def vehicle_spec(row: VehicleModel) -> VehicleSpec:
    return VehicleSpec(
        name=str(row),
        capacity_kwh=row.capacity_kwh,
        ac_max_kw=row.ac_max_kw,
        ac_phases=row.ac_phases,
        dc_max_kw=row.dc_max_kw,
        dc_min_v=row.dc_min_v or 0.0,
        dc_nominal_v=row.dc_nominal_v or 0.0,
        dc_max_v=row.dc_max_v or 0.0,
        curve=tuple((float(s), float(k)) for s, k in row.charging_curve),
        efficiency=row.efficiency,
    )


def load_vehicles() -> dict[int, VehicleSpec]:
    """The vehicle catalogue; a row the physics cannot use is skipped with a warning."""
    vehicles = {}
    for row in VehicleModel.objects.all():
        try:
            vehicles[row.pk] = vehicle_spec(row)
        except ValueError as exc:
            log.warning("vehicle %s not usable by the simulator: %s", row, exc)
    return vehicles


def load_sites() -> dict[int, Site]:
    """Every location's grid limit (W), whether its load management is on, and how often
    its waiting cars take turns."""
    from locations.models import Location

    return {
        pk: Site(None if kw is None else kw * 1000, managed, minutes * 60.0)
        for pk, kw, managed, minutes in Location.objects.values_list(
            "pk", "grid_limit_kw", "load_management", "rotation_minutes"
        )
    }


def charger_spec(row: ChargerRow, vehicles: dict[int, VehicleSpec]) -> ChargerSpec:
    return ChargerSpec(
        charge_point_id=row.charge_point_id,
        vendor=row.vendor,
        model=row.model,
        serial_number=row.serial_number,
        firmware_version=row.firmware_version,
        power_type=row.power_type,
        max_power_w=row.max_power_kw * 1000,
        phases=row.phases if row.power_type == "AC" else 3,
        voltage_v=row.nominal_voltage,
        csms_url=row.csms_url,
        security_profile=row.security_profile,
        authorization_key=row.authorization_key,
        ca_bundle_path=row.ca_bundle_path,
        client_cert_path=row.client_cert_path,
        client_key_path=row.client_key_path,
        default_vehicle=vehicles.get(row.default_vehicle_id) if row.default_vehicle_id else None,
        simulate_ev_on_remote_start=row.simulate_ev_on_remote_start,
        reject_triggered_boot=row.reject_triggered_boot,
        firmware_failure=row.firmware_failure,
        diagnostics_upload_method=row.diagnostics_upload_method,
        power_sharing=row.power_sharing,
        auto_connect=row.auto_connect,
        backlog_limit=settings.CHARGESIM_OFFLINE_QUEUE_LIMIT,
        impairments=stored_impairments(row),
        db_id=row.pk,
        location_id=row.location_id,
    )


def stored_impairments(row: ChargerRow) -> StoredImpairments:
    """The row's answer overrides, network conditions and clock skew. Rules the model
    would refuse (a row written around it) are left out with a warning, never a crash."""
    try:
        rules = overrides.check_rules(row.answer_overrides)
    except ValueError as exc:
        log.warning("%s: stored answer overrides ignored: %s", row.charge_point_id, exc)
        rules = []
    return StoredImpairments(
        answer_overrides=tuple(Override.from_rule(rule) for rule in rules),
        latency_ms=max(0, min(row.network_latency_ms, overrides.LATENCY_MAX_MS)),
        jitter_ms=max(0, min(row.network_jitter_ms, overrides.LATENCY_MAX_MS)),
        drop_rate=min(max(row.network_drop_rate, 0.0), 1.0),
        clock_skew_s=min(max(row.clock_skew_seconds, -overrides.SKEW_MAX_S), overrides.SKEW_MAX_S),
    )


def custom_readonly(keys: Iterable[ConfigurationKey]) -> frozenset[str]:
    """The operator's own keys (outside the key table) marked read-only."""
    return frozenset(k.key for k in keys if k.readonly and k.key not in config_keys.KEYS)


def build_charger(
    row: ChargerRow,
    vehicles: dict[int, VehicleSpec],
    listener: Listener | None,
    transfers: Transfers | None = None,
) -> Charger:
    evses = []
    for evse_row in sorted(row.evses.all(), key=lambda e: e.connector_id):
        inoperative = evse_row.availability == EvseRow.Availability.INOPERATIVE
        evse = Evse(
            connector_id=evse_row.connector_id,
            max_power_w=evse_row.max_power_kw * 1000,
            status=ConnectorStatus.UNAVAILABLE if inoperative else ConnectorStatus.AVAILABLE,
            register_wh=evse_row.register_wh,
            db_id=evse_row.pk,
        )
        evses.append(evse)
    keys = row.configuration.all()
    config = {item.key: item.value for item in keys}
    charger = Charger(
        charger_spec(row, vehicles),
        evses,
        config,
        listener,
        vehicles=list(vehicles.values()),
        messages=OCPP16,
        transfers=transfers,
    )
    charger.config.custom_readonly = custom_readonly(keys)
    runtime = getattr(row, "runtime", None)
    if runtime is not None:
        # Its real-time clock kept the time the CSMS set through the power cut; before
        # anything reads that clock.
        charger.clock_offset = runtime.clock_offset_s
    if runtime is not None and runtime.charger_unavailable:
        charger.restore_availability(True)
    entries = _stored_entries(row.local_list.all())
    if entries or (runtime is not None and runtime.local_list_version):
        charger.restore_local_list(runtime.local_list_version if runtime else 0, entries)
    charger.auth_cache.restore(_stored_entries(row.auth_cache.all()))
    reservations = [
        {
            "reservation_id": r.reservation_id,
            "connector_id": r.connector_id,
            "id_tag": r.id_tag,
            "parent_id_tag": r.parent_id_tag,
            "expiry": r.expiry,
        }
        for r in row.reservations.all()
    ]
    if reservations:
        charger.restore_reservations(reservations)
    stored = getattr(row, "certificate_store", None)
    if stored is not None:
        charger.certificates = CertificateStore.restore(stored.certificates, stored.secrets())
    records = []
    for r in row.profiles.all():
        # One by one: a profile this version refuses (stored by an earlier one, whose rules
        # were looser) is dropped alone, not with every other profile of the charger.
        try:
            ChargingProfile.from_dict(r.body)
        except ValueError as exc:
            log.warning(
                "%s: stored charging profile %s not loaded: %s",
                row.charge_point_id,
                r.profile_id,
                exc,
            )
            continue
        records.append({"connectorId": r.connector_id, "csChargingProfiles": r.body})
    if records:
        try:
            charger.profiles.load(records)
        except ValueError as exc:
            log.warning("%s: stored charging profiles not loaded: %s", row.charge_point_id, exc)
    return charger


def charger_rows() -> QuerySet[ChargerRow]:
    """Charger rows with everything a runtime charger is built from (a few queries)."""
    return (
        ChargerRow.objects.select_related("location", "runtime", "certificate_store")
        .prefetch_related(
            "evses", "configuration", "profiles", "reservations", "local_list", "auth_cache"
        )
        .order_by("charge_point_id")
    )


def read_chargers(pks: Iterable[int]) -> dict[int, ChargerRow]:
    """The rows of these chargers (enabled or not; a deleted one is absent), read in
    batches: a bulk change of thousands costs a few queries per 500 chargers."""
    wanted = sorted(set(pks))
    rows: dict[int, ChargerRow] = {}
    for start in range(0, len(wanted), READ_BATCH):
        for row in charger_rows().filter(pk__in=wanted[start : start + READ_BATCH]):
            rows[row.pk] = row
    return rows


def let_go(rows: Iterable[ChargerRow]) -> None:
    """Done with these rows: break the reference cycles that prefetching made (a row and
    its EVSEs, configuration keys..., each pointing back at it; a row and its runtime
    state), so that they are freed as soon as nothing else holds them. Left to the
    collector, under the gc policy's thresholds a fleet change's rows outlived the
    chunks it read them in (about 40 MiB traced at 1,000 chargers)."""
    for row in rows:
        row.__dict__.pop("_prefetched_objects_cache", None)
        row._state.fields_cache = {}


READ_BATCH = 500
# A security event as stored: (type, timestamp, techInfo, pushed to the CSMS)
SecurityRow = tuple[str, str, str | None, bool]
# Configuration keys that are columns of the charger row (write-only or charger-level).
_CHARGER_COLUMNS = frozenset({"AuthorizationKey", "SecurityProfile"})


def held_elsewhere(pks: Iterable[int]) -> dict[int, bool]:
    """The chargers among these that a worker may still be ending, each with whether a
    session is concerned: a transaction still open or its messages still in the outbox
    (True), or only other durable messages there (a SecurityEventNotification). The
    StopTransaction a worker sends when it lets a charger go stays there until its next
    checkpoint after the CSMS confirmed it; a worker that loaded the charger meanwhile
    sent it a second time, under the charger's new identity."""
    wanted = list(pks)
    sessions = TransactionRow.objects.open_on(wanted)
    held = OutboxMessage.objects.held_for(wanted)
    sessions |= OutboxMessage.objects.held_for(held, sessions=True)
    return {pk: pk in sessions for pk in sessions | held}


def load_fleet(
    listener: Listener | None = None,
    *,
    shard: int = 0,
    shards: int = 1,
    ids: Iterable[str] | None = None,
    pks: Iterable[int] | None = None,
    transfers: Transfers | None = None,
    plugged: bool = True,
    progress: LoadProgress | None = None,
) -> list[Charger]:
    """Runtime chargers for every enabled charger of this shard, in a constant number of
    queries (only those of `ids` or `pks` when given); `plugged`: with their parked
    vehicles (see `restore`); `progress`: kept up to date as the rows are read."""
    vehicles = load_vehicles()
    rows = charger_rows().filter(enabled=True)
    if ids is not None:
        rows = rows.filter(charge_point_id__in=list(ids))
    if pks is not None:
        rows = rows.filter(pk__in=list(pks))
    chargers = []
    if progress is not None:
        progress.total = rows.count()
    for row in rows.iterator(chunk_size=2000):
        if progress is not None:
            progress.read += 1
        if shards > 1 and contract.shard_of(row.charge_point_id, shards) != shard:
            continue
        if not row.evses.all():
            log.warning("%s has no EVSE; not loaded", row.charge_point_id)
            continue
        chargers.append(build_charger(row, vehicles, listener, transfers))
        # Its row's cycles are not broken here (`let_go`): the collection before each
        # freeze (`gc_policy.fleet_loaded`, `freeze_batch`) frees the rows, and freed one by
        # one as their chargers were built, the fleet then ran 6 % slower at saturation
        # (2,000 chargers at 1 s, bench/RESULTS.md session 37; the allocator's reuse of
        # their memory, as far as measured).
    if progress is not None:
        progress.restoring = True
    if isinstance(listener, Checkpointer):
        restore(chargers, listener, plugged=plugged)
    return chargers


def build_loaded(
    rows: Iterable[ChargerRow],
    vehicles: dict[int, VehicleSpec],
    checkpointer: Checkpointer,
    transfers: Transfers | None = None,
) -> list[Charger]:
    """Runtime chargers for rows read while running (a charger added or enabled), with
    their durable outbox restored as at startup."""
    chargers = [
        build_charger(row, vehicles, checkpointer, transfers) for row in rows if row.evses.all()
    ]
    restore(chargers, checkpointer)
    return chargers


def restore(chargers: list[Charger], checkpointer: Checkpointer, *, plugged: bool = True) -> None:
    """After a restart: attach the durable outbox, put back unconfirmed transaction
    messages in order, end transactions that were open when the process stopped, and
    plug the parked vehicles back in (unless `plugged` is False: a power cycle carries
    them over itself).

    A restart of the simulator is a power cycle of its chargers (they boot again), so an
    open transaction is ended with reason PowerLoss and the last checkpointed register,
    dated at the last time that register is known true (when the engine last metered it,
    or for a connector not charging, the last time the charger was known alive; never the
    restart), queued behind whatever was still unconfirmed. As after a
    power cycle, the vehicles stay, and a session one was charging in starts again for
    the same idTag once the boot is accepted.
    """
    by_pk = {c.spec.db_id: c for c in chargers if c.spec.db_id is not None}
    if checkpointer.fenced and by_pk:
        # Claimed before anything is read: a worker that ran them before and writes now is
        # refused from here on, and what it wrote until now is read below.
        RuntimeState.objects.claim(by_pk, checkpointer.lease_pk())
        checkpointer.lease.lost.difference_update(by_pk)  # taken back, if it had lost them
    for charger in by_pk.values():
        charger.queue.sink = checkpointer.sink_for(charger)
        # Loaded is powered up: its first boot reports the firmware's startup, as a real
        # charge point's does at every start (a reboot in this process says why instead).
        charger.startup_after = POWER_UP
    outbox = OutboxMessage.objects.order_by("charger_id", "seq")
    open_q = Q(state=TransactionRow.State.OPEN)
    if len(by_pk) <= READ_BATCH:  # a few chargers loaded while running: read only theirs
        outbox = outbox.filter(charger_id__in=list(by_pk))
        open_q &= Q(charger_id__in=list(by_pk))
    rows = [r for r in outbox if r.charger_id in by_pk]
    referenced = {r.local_tx_id for r in rows if r.local_tx_id}
    tx_rows = TransactionRow.objects.filter(open_q | Q(local_id__in=referenced))
    txs: dict[str, LocalTransaction] = {}
    open_txs: list[tuple[Charger, LocalTransaction]] = []
    for tx_row in tx_rows:
        owner = by_pk.get(tx_row.charger_id)
        if owner is None:
            continue
        tx = LocalTransaction(
            connector_id=tx_row.connector_id,
            id_tag=tx_row.id_tag,
            meter_start=tx_row.meter_start,
            started_at=tx_row.started_at,
            local_id=tx_row.local_id,
            transaction_id=tx_row.transaction_id,
            meter_stop=tx_row.meter_stop,
            stopped_at=tx_row.stopped_at or None,
            stop_reason=tx_row.stop_reason or None,
        )
        txs[tx_row.local_id] = tx
        if tx_row.state == TransactionRow.State.OPEN:
            open_txs.append((owner, tx))
    for row in rows:
        by_pk[row.charger_id].restore_message(
            row.action,
            row.payload,
            row.seq,
            row.attempts,
            txs.get(row.local_tx_id),
            queued_at=row.created.timestamp(),
        )
    last_alive = _last_checkpoints({pk for c, _tx in open_txs if (pk := c.spec.db_id) is not None})
    ended: dict[tuple[str, int], str] = {}
    for owner, tx in open_txs:
        if 1 <= tx.connector_id <= len(owner.evses) and owner.spec.db_id is not None:
            at = last_alive.get((owner.spec.db_id, tx.connector_id))
            shift = owner.clock_offset + owner.impairments.clock_skew_s
            owner.end_interrupted(tx, timestamp=_power_loss_time(tx, at, shift))
            ended[(owner.id, tx.connector_id)] = tx.id_tag
    _read_security_logs(by_pk)
    if plugged:
        _plug_back(by_pk, ended)
    if rows or open_txs:
        # The outbox holds other durable messages too (a SecurityEventNotification, say):
        # every edit reboot said "restored 1 unconfirmed transaction messages" for a charger
        # without any (905 lines in one bulk reboot). Worth an INFO line only when a
        # transaction is concerned.
        transactional = sum(1 for row in rows if row.local_tx_id)
        others = Counter(row.action for row in rows if not row.local_tx_id)
        log.log(
            logging.INFO if transactional or open_txs else logging.DEBUG,
            "restored %d unconfirmed transaction message(s) and %d other durable message(s)%s; "
            "ended %d interrupted transaction(s) (PowerLoss)",
            transactional,
            sum(others.values()),
            f" ({', '.join(f'{n} {action}' for action, n in sorted(others.items()))})"
            if others
            else "",
            len(open_txs),
        )


def _read_security_logs(by_pk: dict[int, Charger]) -> None:
    """Each charger's stored security log, oldest first, as its flash gives it back."""
    rows = SecurityLogEntry.objects.order_by("charger_id", "pk")
    if len(by_pk) <= READ_BATCH:  # a few chargers loaded while running: read only theirs
        rows = rows.filter(charger_id__in=list(by_pk))
    fields = ("charger_id", "kind", "timestamp", "tech_info", "sent")
    for pk, kind, timestamp, tech_info, sent in rows.values_list(*fields).iterator():
        charger = by_pk.get(pk)
        if charger is not None:
            charger.security_log.add(LoggedEvent(kind, timestamp, tech_info or None, sent=sent))


def _plug_back(by_pk: dict[int, Charger], ended: dict[tuple[str, int], str]) -> None:
    """Plug the stored vehicles back in, each with the SoC its register says; one whose
    session was just ended (PowerLoss) charges on in a new one after the boot."""
    evses = {
        evse.db_id: (charger, evse)
        for charger in by_pk.values()
        for evse in charger.evses
        if evse.db_id is not None
    }
    rows = PluggedVehicle.objects.all()
    if len(by_pk) <= READ_BATCH:  # a few chargers loaded while running: read only theirs
        rows = rows.filter(evse_id__in=list(evses))
    count = 0
    for row in rows:
        found = evses.get(row.evse_id)
        if found is None:
            continue
        charger, evse = found
        cid = evse.connector_id
        try:
            battery = Battery.from_record(row.record, evse.register_wh)
            charger.plug_in(cid, battery.spec, battery.soc, battery.target_soc)
        except (ActionError, KeyError, TypeError, ValueError) as exc:
            log.warning(
                "%s: the vehicle on connector %d not plugged back in: %s", charger.id, cid, exc
            )
            continue
        count += 1
        if battery.paused:
            charger.pause_ev(cid)
        # Its session ended now (PowerLoss), or by an earlier restart whose boot never came.
        id_tag = ended.get((charger.id, cid)) or battery.resume_id_tag
        if id_tag is not None and not battery.is_full() and not battery.paused:
            charger.resume_after_boot_for(cid, id_tag)
    if count:
        log.info("plugged %d parked vehicle%s back in", count, "" if count == 1 else "s")


def _last_checkpoints(charger_pks: set[int]) -> dict[tuple[int, int], datetime]:
    """(charger pk, connector id) -> the last time its stored register is known true: when
    the engine last metered it (its row's time), or later, for a connector not charging,
    the last stamp of the lease its row names (the writer kept that register unchanged
    while stamping it). Not for a charging one: the event-driven meter moves its register
    only at its events (a sample, a status change) and the car drew power in between, so
    its register at the lease's time is unknown (a stop dated there reported too little)."""
    if not charger_pks:
        return {}
    stored = EvseRow.objects.filter(
        charger_id__in=charger_pks, checkpointed_at__isnull=False
    ).values_list("charger_id", "connector_id", "checkpointed_at", "lease_id", "status")
    rows = [
        (pk, connector, at, None if status == _CHARGING else lease)
        for pk, connector, at, lease, status in stored
    ]
    leases = EngineLease.objects.alive({lease for *_, lease in rows if lease is not None})
    found: dict[tuple[int, int], datetime] = {}
    for pk, connector, at, lease in rows:
        if at is None:  # filtered above; the column is nullable for rows never saved
            continue
        alive = leases.get(lease) if lease is not None else None
        found[(pk, connector)] = alive if alive is not None and alive > at else at
    return found


def _power_loss_time(tx: LocalTransaction, at: datetime | None, shift: float = 0.0) -> str | None:
    """The stop time of an interrupted transaction: its last checkpoint, never before its
    start (None, i.e. now, for a register written before checkpoint times were kept). On
    the charger's clock, as its start is: the checkpoint's time is the host's, and the
    charger's clock is `shift` seconds ahead of it."""
    if at is None:
        return None
    at += timedelta(seconds=shift)
    try:
        if at < parse_iso(tx.started_at):
            return tx.started_at
    except ValueError:
        pass
    return now_iso(at.astimezone(UTC))


class _MeteredAt:
    """Charger pk -> when the engine last metered it (`Charger.registers_at`), as the
    checkpoint's datetimes: the chargers of one tick share one."""

    __slots__ = ("_seen", "by_pk")

    def __init__(self) -> None:
        self.by_pk: dict[int, datetime] = {}
        self._seen: dict[float, datetime] = {}

    def add(self, pk: int, charger: Charger) -> None:
        at = charger.registers_at
        if at is not None:
            found = self._seen.get(at)
            if found is None:
                found = self._seen[at] = datetime.fromtimestamp(at, UTC)
            self.by_pk[pk] = found


class Lease:
    """This process's `EngineLease` row (made by the writer thread when first needed).

    In the scaled-out mode it is also what this engine claims its chargers with
    (`RuntimeState.holder`); the writer keeps the claims version it last saw and the
    chargers found claimed by another engine since (`_leave_out_lost`)."""

    __slots__ = ("claims_seen", "lost", "pk")

    def __init__(self) -> None:
        self.pk: int | None = None
        self.claims_seen: int | None = None
        self.lost: set[int] = set()


class SinkOwner:
    """The charger whose transaction messages an `OutboxSink` hands over, as the writer's
    calls name it (its pk for the rows, the charger to wake once they are written)."""

    __slots__ = ("charger", "charger_pk")

    def __init__(self, charger_pk: int, charger: Charger) -> None:
        self.charger_pk = charger_pk
        self.charger = charger


class OutboxSink(SinkOwner):
    """Group commit of one charger's transaction messages and transactions.

    Items handed over are written by the next flush (one database transaction for every
    charger's pending rows); only then are they marked durable and may be sent. The flush
    loop runs as soon as something is pending, so the latency is one batched write.
    """

    def __init__(self, writer: Checkpointer, charger_pk: int, charger_ref: Charger) -> None:
        super().__init__(charger_pk, charger_ref)
        self.writer = writer
        # `DurabilitySink.outbox_added` and `outbox_removed`, bound once: the queue's calls
        # for every transaction message go straight to the writer's. Bound to an owner of
        # their own, not to this sink: over the sink they made it a reference cycle that
        # kept its charger alive once gone (a reboot), until a full collection.
        owner = SinkOwner(charger_pk, charger_ref)
        self.outbox_added: Callable[[Outgoing], None] = functools.partial(
            writer.outbox_added, owner
        )
        self.outbox_removed: Callable[[Outgoing], None] = functools.partial(
            writer.outbox_removed, owner
        )
        self.held_for_state: Callable[[Outgoing], None] = functools.partial(
            writer.held_for_state, owner
        )


class Checkpointer(Listener):
    """Collects what changed and writes it in one batch per flush (group commit).

    The engine thread only records values under a lock; `write()` runs in a worker thread.
    Transaction messages and transactions are flushed at once (they hold back sending);
    registers and statuses ride along, or go every `checkpoint_seconds`. Registers are
    written with GREATEST(stored, new), so a checkpoint can never wind a register back.
    """

    def __init__(
        self, downstream: Listener | None = None, log_policy: FrameLogPolicy | None = None
    ) -> None:
        self.downstream = downstream
        # The dashboard's log, when it is what hears frames downstream: it takes this
        # frame's time and redacted text (`EventPublisher.log_frame`) instead of its own.
        self._log_frame = _shared_frame_log(downstream)
        self.log_policy = log_policy or FrameLogPolicy()
        # The message log's entries since the last full checkpoint (None: not stored).
        # Appended and taken on the event loop thread only, so without the lock: this is
        # the one thing done for every frame.
        self._frames: list[frame_log.Pending] | None = [] if self.log_policy.enabled else None
        self._lock = threading.Lock()
        self._dirty: dict[str, Charger] = {}
        self._config: dict[tuple[int, str], str] = {}
        self._key_writes: list[tuple[int, str, str]] = []
        # The transaction messages handed over since the last batch, kept as the batch
        # takes them (its rows, what it makes durable, whose they are): built once per
        # message when it is queued, nothing per message left for `take`. Like `_frames`,
        # these four are changed and taken on the event loop thread only (the outbox's
        # `DurabilitySink` calls and `take`), so without the lock.
        self._outbox_new: list[tuple[int, int, str, str | dict[str, Any], str]] = []
        self._made_durable: list[tuple[SinkOwner, Outgoing]] = []
        self._owners: dict[str, Charger] = {}
        self._outbox_gone: list[tuple[int, int]] = []
        self._transactions: dict[str, TransactionValues] = {}
        self._profiles: dict[int, list[dict[str, Any]]] = {}
        self._availability: dict[int, tuple[bool, dict[int, str]]] = {}
        self._reservations: dict[int, list[dict[str, Any]]] = {}
        self._local_lists: dict[int, LocalListChange] = {}
        # charger pk -> the charger whose authorization cache changed (its changes taken
        # with the batch, on the loop thread: `take`)
        self._auth_caches: dict[int, Charger] = {}
        self._clocks: dict[int, float] = {}  # charger pk -> its clock's offset, stepped
        self._certificates: dict[int, tuple[dict[str, Any], dict[str, str]]] = {}
        self._firmware: dict[int, str] = {}
        # charger pk -> {EVSE pk: the record of the vehicle plugged in, None: none}
        self._vehicles: dict[int, dict[int, dict[str, Any] | None]] = {}
        # charger pk -> its new security events; the chargers whose log was full (the
        # stored log drops its oldest too)
        self._security: dict[int, list[SecurityRow]] = {}
        self._security_full: set[int] = set()
        # Chargers with an open transaction ride along in every full checkpoint, so that
        # how long they are known to have lived is the last full checkpoint's time. Their
        # rows name this process's lease and are written again only when their register or
        # status changed: the full checkpoint stamps the lease instead (one row, not one
        # per EVSE of every open transaction).
        self._open: dict[str, Charger] = {}  # transaction local id -> its charger
        self._open_chargers: dict[str, Charger] = {}  # charger id -> charger
        self._open_counts: dict[str, int] = {}  # charger id -> its open transactions
        # EVSE pk -> (register, status) as last written naming the lease (taken, that is:
        # batches are written in the order taken).
        self._leased: dict[int, tuple[float, Any]] = {}
        # Chargers the meter settled since the last full checkpoint (`on_metered`): a
        # register moves only so or at a visit (`on_change`, `_dirty`), so the full
        # checkpoint compares these with `_leased`, not every open transaction's (20,000
        # EVSEs a second at 10,000 chargers with two sessions each).
        self._metered: dict[str, Charger] = {}
        self._lease = Lease()
        # The scaled-out mode: chargers are claimed at load (`restore`), and a batch writes
        # nothing of a charger another worker has claimed since (it took the charger on
        # while this one stalled, or before this one heard it moved); `on_lost` hears of
        # those chargers (their pks) and of those among them whose session rows it dropped.
        self.fenced = False
        self.on_lost: Callable[[set[int], set[int]], None] | None = None
        self.urgent = asyncio.Event()

    @property
    def lease(self) -> Lease:
        return self._lease

    def lease_pk(self) -> int:
        """This engine's lease (made now if the writer has not made it yet); in a thread
        that may use the ORM."""
        lease = self._lease
        if lease.pk is None:
            lease.pk = EngineLease.objects.stamp(None, datetime.now(UTC))
        return lease.pk

    def forget(self, charger: Charger) -> None:
        """Another worker runs this charger now: nothing of it is written any more."""
        charger.forget_storage(self.downstream)
        cid = charger.id
        with self._lock:
            self._dirty.pop(cid, None)
            self._metered.pop(cid, None)
            if charger.spec.db_id is not None:
                self._auth_caches.pop(charger.spec.db_id, None)
                self._clocks.pop(charger.spec.db_id, None)
        self._owners.pop(cid, None)
        self._open_chargers.pop(cid, None)
        self._open_counts.pop(cid, None)
        for local_id in [k for k, owner in self._open.items() if owner is charger]:
            del self._open[local_id]

    def sink_for(self, charger: Charger) -> OutboxSink | None:
        if charger.spec.db_id is None:
            return None
        return OutboxSink(self, charger.spec.db_id, charger)

    # -- listener side (event loop thread) ---------------------------------------------------

    def on_change(self, charger: Charger) -> None:
        # The meter calls this at every visit of a charging charger, mostly while it is
        # marked already: then without the lock. Safe: `take` swaps `_dirty` for a new dict
        # (or pops from it) under the lock and only then reads the chargers' values, so a
        # charger found marked here, in either dict, has this change read by a later read.
        if self._dirty.get(charger.id) is not charger:
            with self._lock:
                self._dirty[charger.id] = charger
        if self.downstream is not None:
            self.downstream.on_change(charger)

    def on_metered(self, charger: Charger) -> None:
        # As `on_change`, without the lock while marked already; only the full checkpoint
        # reads these, to compare their registers with what was last written.
        if self._metered.get(charger.id) is not charger:
            with self._lock:
                self._metered[charger.id] = charger
        if self.downstream is not None:
            self.downstream.on_metered(charger)

    def on_config(self, charger: Charger, key: str, value: str) -> None:
        if charger.spec.db_id is not None:
            with self._lock:
                if key in _CHARGER_COLUMNS:  # kept on the charger row, not in its table
                    self._key_writes.append((charger.spec.db_id, key, value))
                else:
                    self._config[(charger.spec.db_id, key)] = value
        if self.downstream is not None:
            self.downstream.on_config(charger, key, value)

    def stored_already(self, charger: Charger, key: str) -> None:
        """The value just set for `key` came from the charger's row (an edit applied live):
        it is not written back. Written with the next checkpoint, it could overwrite a newer
        value stored meanwhile (a second edit), and the charger and its row kept the older."""
        if charger.spec.db_id is not None:
            with self._lock:
                self._config.pop((charger.spec.db_id, key), None)

    def on_frame(
        self, charger: Charger, direction: str, text: str, message_id: str = "", action: str = ""
    ) -> None:
        # One entry for both logs: one clock read, one secret test (and for the rare frame
        # that may hold one, one redaction); the stored entries are redacted here.
        at = time.time()
        # `may_hold_secret(text)` inlined (its five memchr; a Python call less per frame).
        if "@" in text or "?" in text or "K" in text or "k" in text or "\\" in text:
            shown = redact_frame(text)
        else:
            shown = text
        frames = self._frames
        if frames is not None:
            pk = charger.spec.db_id
            if pk is not None:
                frames.append((pk, at, FRAME, direction, message_id, action, len(shown), shown))
        if self._log_frame is not None:
            self._log_frame(charger, direction, text, message_id, action, at, shown)
        elif self.downstream is not None:
            self.downstream.on_frame(charger, direction, text, message_id, action)

    def on_connection(self, charger: Charger, event: str, detail: dict[str, Any]) -> None:
        frames = self._frames
        pk = charger.spec.db_id
        if frames is not None and pk is not None:
            text = orjson.dumps(detail, default=str).decode()
            if may_hold_secret(text):  # the stored entries are redacted (`on_frame`)
                text = redact_frame(text)
            frames.append((pk, time.time(), CONNECTION, "", "", event, len(text), text))
        if self.downstream is not None:
            self.downstream.on_connection(charger, event, detail)

    def trim_frames(self) -> None:
        """While the database is down the log's entries pile up: keep the newest."""
        frames = self._frames
        if frames is not None and len(frames) > frame_log.BACKLOG:
            excess = len(frames) - frame_log.BACKLOG
            del frames[:excess]
            dropped("message_log_unsaved", excess)
            log.warning("message log: %d entries dropped while the database is down", excess)

    def on_transaction(self, charger: Charger, tx: LocalTransaction) -> None:
        if charger.spec.db_id is not None:
            with self._lock:
                self._dirty[charger.id] = charger
                self._transactions[tx.local_id] = TransactionValues(
                    charger_id=charger.spec.db_id,
                    connector_id=tx.connector_id,
                    local_id=tx.local_id,
                    id_tag=tx.id_tag,
                    transaction_id=tx.transaction_id,
                    meter_start=tx.meter_start,
                    meter_stop=tx.meter_stop,
                    started_at=tx.started_at,
                    stopped_at=tx.stopped_at or "",
                    stop_reason=tx.stop_reason or "",
                    state="stopped" if tx.stopped_at else "open",
                )
                if tx.stopped_at:
                    closed = self._open.pop(tx.local_id, None)
                    if closed is not None:
                        self._closed(closed.id)
                else:
                    if tx.local_id not in self._open:
                        counts = self._open_counts
                        counts[charger.id] = counts.get(charger.id, 0) + 1
                    self._open[tx.local_id] = charger
                    self._open_chargers[charger.id] = charger
                    # Compared at the next full checkpoint: a transaction loaded at start
                    # has its rows written once, naming this process's lease.
                    self._metered[charger.id] = charger
            self._signal()
        if self.downstream is not None:
            self.downstream.on_transaction(charger, tx)

    def _closed(self, charger_id: str) -> None:
        counts = self._open_counts
        left = counts.get(charger_id, 0) - 1
        if left > 0:
            counts[charger_id] = left
        else:
            counts.pop(charger_id, None)
            self._open_chargers.pop(charger_id, None)

    def on_profiles(self, charger: Charger) -> None:
        if charger.spec.db_id is not None:
            with self._lock:
                self._profiles[charger.spec.db_id] = charger.profiles.all()
            self._signal()
        if self.downstream is not None:
            self.downstream.on_profiles(charger)

    def on_availability(self, charger: Charger) -> None:
        if charger.spec.db_id is not None:
            with self._lock:
                self._availability[charger.spec.db_id] = (
                    charger.charger_unavailable,
                    dict(charger.availability),
                )
            self._signal()
        if self.downstream is not None:
            self.downstream.on_availability(charger)

    def on_reservations(self, charger: Charger) -> None:
        if charger.spec.db_id is not None:
            with self._lock:
                self._reservations[charger.spec.db_id] = charger.reservations.records()
            self._signal()
        if self.downstream is not None:
            self.downstream.on_reservations(charger)

    def on_local_list(self, charger: Charger, change: ListChange) -> None:
        pk = charger.spec.db_id
        if pk is not None:
            entries = _entry_rows(change.entries)
            with self._lock:
                pending = self._local_lists.get(pk)
                if change.full or pending is None:
                    self._local_lists[pk] = LocalListChange(
                        version=change.version, full=change.full, entries=entries
                    )
                else:  # a differential on top of one not written yet: one write of both
                    pending["entries"].update(entries)
                    pending["version"] = change.version
            self._signal()
        if self.downstream is not None:
            self.downstream.on_local_list(charger, change)

    def on_auth_cache(self, charger: Charger) -> None:
        # No urgent write: an entry lost with the last second before a crash is one
        # Authorize more, as after any cache miss.
        pk = charger.spec.db_id
        if pk is not None:
            with self._lock:
                self._auth_caches[pk] = charger
        if self.downstream is not None:
            self.downstream.on_auth_cache(charger)

    def on_clock(self, charger: Charger) -> None:
        pk = charger.spec.db_id
        if pk is not None:
            with self._lock:
                self._clocks[pk] = charger.clock_offset
        if self.downstream is not None:
            self.downstream.on_clock(charger)

    def on_firmware(self, charger: Charger) -> None:
        if charger.spec.db_id is not None:
            with self._lock:
                self._firmware[charger.spec.db_id] = charger.spec.firmware_version
            self._signal()
        if self.downstream is not None:
            self.downstream.on_firmware(charger)

    def on_certificates(self, charger: Charger) -> None:
        if charger.spec.db_id is not None:
            store = charger.certificates
            with self._lock:
                self._certificates[charger.spec.db_id] = (store.records(), store.secret_record())
            self._signal()
        if self.downstream is not None:
            self.downstream.on_certificates(charger)

    def on_vehicle(self, charger: Charger, evse: Evse) -> None:
        # Rare (a plug-in, a pause): written with the next full checkpoint. A car of the
        # background traffic is not kept: its driver's plan does not survive a restart, so
        # it would stay parked for ever.
        pk, evse_pk = charger.spec.db_id, evse.db_id
        if pk is not None and evse_pk is not None:
            battery = evse.battery
            record = None
            if battery is not None and battery.brought_by is None:
                record = battery.record(evse.register_wh)
            with self._lock:
                self._vehicles.setdefault(pk, {})[evse_pk] = record
        if self.downstream is not None:
            self.downstream.on_vehicle(charger, evse)

    def on_security_event(self, charger: Charger, event: LoggedEvent) -> None:
        # Rare (a reboot, a lost link, a key changed): written with the next full checkpoint.
        pk = charger.spec.db_id
        if pk is not None:
            row = (event.kind, event.timestamp, event.tech_info, event.sent)
            with self._lock:
                self._security.setdefault(pk, []).append(row)
                if charger.security_log.full:
                    self._security_full.add(pk)
        if self.downstream is not None:
            self.downstream.on_security_event(charger, event)

    def outbox_added(self, sink: SinkOwner, item: Outgoing) -> None:
        # Encoded here, on the loop thread, as the payload is at this moment: the row stores
        # this text, and the adapter's own MeterValues goes on the wire framed from it
        # (`Checked.text`) instead of being encoded a second time.
        payload = item.payload
        stored: str | dict[str, Any]
        try:
            stored = orjson.dumps(payload).decode()
        except TypeError:  # orjson's JSONEncodeError: the writer drops the row, logged
            stored = dict(payload)
        else:
            if type(payload) is Checked:
                payload.text = stored
        # On the loop thread, as `take`: no lock (see `__init__`).
        tx = item.tx
        self._outbox_new.append(
            (sink.charger_pk, item.seq, item.action, stored, tx.local_id if tx is not None else "")
        )
        self._made_durable.append((sink, item))
        charger = sink.charger
        self._owners[charger.id] = charger
        self.urgent.set()  # `_signal()` without its call

    def outbox_removed(self, sink: SinkOwner, item: Outgoing) -> None:
        # On the loop thread, as `take`: no lock (see `__init__`).
        self._outbox_gone.append((sink.charger_pk, item.seq))

    def held_for_state(self, sink: SinkOwner, item: Outgoing) -> None:
        """A message that may go only once its charger's registers as of now are stored (a
        triggered sample reads the live register): the next urgent batch carries them (its
        charger is an owner) and makes it sendable (`written`), with no outbox row."""
        # On the loop thread, as `take`: no lock (see `__init__`).
        self._made_durable.append((sink, item))
        charger = sink.charger
        self._owners[charger.id] = charger
        self.urgent.set()

    def _signal(self) -> None:
        self.urgent.set()

    def mark_all(self, chargers: Iterable[Charger]) -> None:
        with self._lock:
            for charger in chargers:
                self._dirty[charger.id] = charger

    # -- flushing ----------------------------------------------------------------------------

    def take(self, *, full: bool = True) -> Batch:
        """Snapshot of pending writes, taken on the event loop thread (consistent values).

        An urgent (not `full`) batch carries the registers only of the chargers whose
        transaction messages it makes durable (so no register on the wire is ever above the
        stored one); the others wait for the next periodic checkpoint.

        A full batch also carries the registers of the chargers with an open transaction
        whose register or status changed since last written, and stamps the lease: the
        unchanged ones are known alive with their stored register until the batch's time.
        """
        with self._lock:
            owners = self._owners
            if full:
                dirty, self._dirty = self._dirty, {}
                dirty.update(owners)
                metered, self._metered = self._metered, {}
            else:
                dirty = owners
                for charger_id in owners:
                    self._dirty.pop(charger_id, None)
            batch = Batch(
                config=self._config,
                key_writes=self._key_writes,
                outbox_new=self._outbox_new,
                outbox_gone=self._outbox_gone,
                transactions=list(self._transactions.values()),
                profiles=self._profiles,
                availability=self._availability,
                reservations=self._reservations,
                local_lists=self._local_lists,
                auth_caches=_cache_changes(self._auth_caches),
                clocks=self._clocks,
                firmware=self._firmware,
                certificates=self._certificates,
                vehicles=self._vehicles,
                security=self._security,
                security_full=self._security_full,
            )
            if full and self._frames:
                batch.frames, self._frames = self._frames, []
                batch.frame_chars = self.log_policy.payload_chars
            batch.made_durable = self._made_durable
            batch.owners = list(owners.values())
            self._config, self._key_writes, self._outbox_new = {}, [], []
            self._made_durable, self._owners = [], {}
            self._outbox_gone, self._transactions = [], {}
            self._profiles, self._availability = {}, {}
            self._reservations, self._local_lists, self._firmware = {}, {}, {}
            self._auth_caches, self._clocks = {}, {}
            self._certificates, self._vehicles = {}, {}
            self._security, self._security_full = {}, set()
        open_chargers, leased = self._open_chargers, self._leased
        rows: list[tuple[int, float, str, int]] = []
        leased_now: set[int] = set()
        metered_at = _MeteredAt()
        for charger in dirty.values():
            pk = charger.spec.db_id
            if pk is None:
                continue
            metered_at.add(pk, charger)
            on = charger.id in open_chargers
            for evse in charger.evses:
                evse_pk = evse.db_id
                if evse_pk is None:
                    continue
                register, status = evse.register_wh, evse.status
                # `_value_`: the member's value without the enum's `value` property call.
                rows.append((pk, register, status._value_, evse_pk))
                if on:
                    leased[evse_pk] = (register, status)
                    leased_now.add(evse_pk)
                else:  # no open transaction: the row is its own last word
                    leased.pop(evse_pk, None)
        if full:
            for charger_id, charger in metered.items():
                pk = charger.spec.db_id
                if pk is None or charger_id in dirty or charger_id not in open_chargers:
                    continue
                for evse in charger.evses:
                    evse_pk = evse.db_id
                    if evse_pk is None:
                        continue
                    # The status as its member: an enum's `.value` is a property call.
                    state = (evse.register_wh, evse.status)
                    if leased.get(evse_pk) != state:
                        metered_at.add(pk, charger)
                        rows.append((pk, state[0], state[1]._value_, evse_pk))
                        leased[evse_pk] = state
                        leased_now.add(evse_pk)
            batch.stamp = bool(leased)
        batch.evses, batch.metered = rows, metered_at.by_pk
        batch.lease, batch.leased = self._lease, leased_now
        batch.fenced = self.fenced
        batch.at = datetime.now(UTC)  # the instant these registers were read
        return batch

    def written(self, batch: Batch) -> None:
        """After a successful write: the batch's transaction messages may now be sent.

        A message whose row was rejected is not sent either (only what is stored may go
        out): it leaves the queue so that the charger's later messages are not held up.
        """
        if batch.isolated:  # a row may have been refused: write every open one again
            self._leased.clear()
            with self._lock:
                self._metered.update(self._open_chargers)
        if batch.lost:
            self._lost(batch)
        gone, rejected = batch.gone, batch.rejected
        if not (gone or rejected):  # nearly always: every row was stored
            for _sink, item in batch.made_durable:
                item.durable = True
        else:
            for sink, item in batch.made_durable:
                if gone and sink.charger_pk in gone:  # deleted: its rows and messages go too
                    sink.charger.queue.remove(item)
                elif rejected and (sink.charger_pk, item.seq) in rejected:
                    log.error(
                        "%s: %s #%d could not be saved; dropped unsent",
                        sink.charger.id,
                        item.action,
                        item.seq,
                    )
                    dropped("outbox_unsaved")
                    sink.charger.queue.remove(item)
                else:
                    item.durable = True
        for charger in batch.owners:
            charger.outbox.wake()  # `Charger.wake`, without its call

    def _lost(self, batch: Batch) -> None:
        """Chargers another worker claimed: their messages of this batch are not stored,
        so never sent from here; the service drops the chargers (`on_lost`)."""
        lost = batch.lost
        kept = []
        chargers = {c.spec.db_id: c for c in batch.owners if c.spec.db_id in lost}
        for sink, item in batch.made_durable:
            if sink.charger_pk in lost:
                sink.charger.queue.remove(item)
                chargers[sink.charger_pk] = sink.charger
            else:
                kept.append((sink, item))
        batch.made_durable = kept
        for charger in chargers.values():
            self.forget(charger)
        if self.on_lost is not None:
            self.on_lost(set(lost), set(batch.lost_sessions))

    @staticmethod
    def write(batch: Batch) -> None:
        """Write one batch in one database transaction; runs in the writer thread.

        A batch the database refuses because of what is in it (a value out of range, a
        payload that cannot be encoded, a row of a charger deleted meanwhile) is written
        again charger by charger, and the failing charger's rows one by one, so that one
        bad value costs only its own row: it is logged, repaired or dropped, and everything
        else is saved. Only an error of the database itself (locked, gone) fails the
        batch, which is then written again before anything newer.

        The writer thread keeps its connection between batches (opening a SQLite
        connection re-reads the schema and registers Django's functions: a few ms, twice a
        second); a connection that failed is closed and opened afresh next time.
        """
        try:
            lease = batch.lease
            if lease is not None and lease.pk is None and (batch.stamp or batch.leased):
                lease.pk = EngineLease.objects.stamp(None, batch.at)
            try:
                with transaction.atomic():
                    if batch.fenced:
                        _leave_out_lost(batch)
                    _write_batch(batch)
                    frame_log.write(batch.frames, batch.frame_chars, redacted=True)
                    if batch.stamp and lease is not None:
                        EngineLease.objects.stamp(lease.pk, batch.at)
            except _DATABASE_DOWN:
                raise
            except Exception as exc:
                log.warning("checkpoint refused (%s); saving charger by charger", _brief(exc))
                # Not stamped: a register refused here must not be vouched for later.
                batch.isolated = True
                _write_isolating(batch.parts(), batch)
                frame_log.write(batch.frames, batch.frame_chars, redacted=True)
        except BaseException:
            connection.close()
            raise
        finally:
            forget_queries()  # DEBUG's query log: see chargers.orm_threads

    @staticmethod
    def prune_log(policy: FrameLogPolicy) -> int:
        """One bounded step of the message log's retention (in the writer thread)."""
        try:
            return frame_log.prune(policy)
        except BaseException:
            connection.close()
            raise
        finally:
            forget_queries()

    @staticmethod
    def close() -> None:
        """Close the writer thread's connection (run in that thread, at shutdown)."""
        connection.close()


def _shared_frame_log(downstream: Listener | None) -> Callable[..., None] | None:
    """`EventPublisher.log_frame` of the publisher whose own `on_frame` is what the
    downstream listener does with a frame (the publisher itself, or a `Fanout` in which it
    alone hears frames); None for any other listener, which hears `on_frame` as before."""
    hears = getattr(downstream, "on_frame", None)
    owner = getattr(hears, "__self__", None)
    if isinstance(owner, EventPublisher) and getattr(hears, "__func__", None) is (
        EventPublisher.on_frame
    ):
        return owner.log_frame
    return None


@dataclass
class Batch:
    config: dict[tuple[int, str], str]
    key_writes: list[tuple[int, str, str]]  # (charger pk, key, value): AuthorizationKey...
    outbox_new: list[tuple[int, int, str, str | dict[str, Any], str]]
    outbox_gone: list[tuple[int, int]]
    transactions: list[TransactionValues]
    profiles: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    availability: dict[int, tuple[bool, dict[int, str]]] = field(default_factory=dict)
    reservations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    local_lists: dict[int, LocalListChange] = field(default_factory=dict)
    auth_caches: dict[int, TagEntriesChange] = field(default_factory=dict)
    clocks: dict[int, float] = field(default_factory=dict)  # charger pk -> clock offset
    firmware: dict[int, str] = field(default_factory=dict)
    # charger pk -> (its certificates, its private keys: sealed by the manager)
    certificates: dict[int, tuple[dict[str, Any], dict[str, str]]] = field(default_factory=dict)
    # charger pk -> {EVSE pk: the record of its vehicle, None: none plugged in}
    vehicles: dict[int, dict[int, dict[str, Any] | None]] = field(default_factory=dict)
    # charger pk -> its new security events; those whose stored log drops its oldest
    security: dict[int, list[SecurityRow]] = field(default_factory=dict)
    security_full: set[int] = field(default_factory=set)
    # (charger pk, register Wh, status, EVSE pk)
    evses: list[tuple[int, float, str, int]] = field(default_factory=list)
    # charger pk -> when its registers were true (last metered); absent: `at`
    metered: dict[int, datetime] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    made_durable: list[tuple[SinkOwner, Outgoing]] = field(default_factory=list)
    owners: list[Charger] = field(default_factory=list)
    # (charger pk, seq) of outbox rows the database refused (filled by the writer thread)
    rejected: set[tuple[int, int]] = field(default_factory=set)
    gone: set[int] = field(default_factory=set)  # chargers deleted before it was written
    charger_pk: int | None = None  # set on a part of one charger
    # The message log's entries (full checkpoints only), and how much of a payload to keep.
    frames: list[frame_log.Pending] = field(default_factory=list)
    frame_chars: int = 65_536
    # The writer's lease, the EVSE pks whose rows name it, and whether to stamp it (full
    # checkpoints with any charger whose transaction is open).
    lease: Lease | None = None
    leased: set[int] = field(default_factory=set)
    stamp: bool = False
    isolated: bool = False  # written charger by charger (set by the writer thread)
    # The scaled-out mode's check (`Checkpointer.fenced`), and the chargers it found claimed
    # by another worker: none of their rows written (set by the writer thread).
    fenced: bool = False
    lost: set[int] = field(default_factory=set)
    lost_sessions: set[int] = field(default_factory=set)  # of `lost`, with session rows

    def __bool__(self) -> bool:
        return bool(
            self.frames
            or self.config
            or self.key_writes
            or self.outbox_new
            or self.outbox_gone
            or self.transactions
            or self.evses
            or self.profiles
            or self.availability
            or self.reservations
            or self.local_lists
            or self.auth_caches
            or self.clocks
            or self.firmware
            or self.certificates
            or self.vehicles
            or self.security
            or self.stamp
        )

    def parts(self) -> list[Batch]:
        """The batch split per charger (each part's rows in the batch's order)."""
        by_charger: dict[int, Batch] = {}

        def part(pk: int) -> Batch:
            found = by_charger.get(pk)
            if found is None:
                found = by_charger[pk] = Batch(
                    {},
                    [],
                    [],
                    [],
                    [],
                    at=self.at,
                    metered=self.metered,
                    charger_pk=pk,
                    lease=self.lease,
                    leased=self.leased,
                )
            return found

        for row in self.transactions:
            part(row["charger_id"]).transactions.append(row)
        for new in self.outbox_new:
            part(new[0]).outbox_new.append(new)
        for gone in self.outbox_gone:
            part(gone[0]).outbox_gone.append(gone)
        for evse in self.evses:
            part(evse[0]).evses.append(evse)
        for key, value in self.config.items():
            part(key[0]).config[key] = value
        for pk, profiles in self.profiles.items():
            part(pk).profiles[pk] = profiles
        for pk, availability in self.availability.items():
            part(pk).availability[pk] = availability
        for write in self.key_writes:
            part(write[0]).key_writes.append(write)
        for pk, reservations in self.reservations.items():
            part(pk).reservations[pk] = reservations
        for pk, change in self.local_lists.items():
            part(pk).local_lists[pk] = change
        for pk, cache in self.auth_caches.items():
            part(pk).auth_caches[pk] = cache
        for pk, offset in self.clocks.items():
            part(pk).clocks[pk] = offset
        for pk, version in self.firmware.items():
            part(pk).firmware[pk] = version
        for pk, store in self.certificates.items():
            part(pk).certificates[pk] = store
        for pk, vehicles in self.vehicles.items():
            part(pk).vehicles[pk] = vehicles
        for pk, events in self.security.items():
            own = part(pk)
            own.security[pk] = events
            if pk in self.security_full:
                own.security_full.add(pk)
        return list(by_charger.values())


# Errors of the database itself, not of a row: the batch is written again later.
_DATABASE_DOWN = (OperationalError, InterfaceError)


def _write_batch(batch: Batch) -> None:
    TransactionRow.objects.upsert(batch.transactions)
    OutboxMessage.objects.add(batch.outbox_new)
    OutboxMessage.objects.remove(batch.outbox_gone)
    EvseRow.objects.checkpoint(
        batch.evses,
        batch.at,
        lease=_lease_pk(batch),
        leased=batch.leased,
        metered=batch.metered,
    )
    ConfigurationKey.objects.write_values(batch.config)
    ChargingProfileRecord.objects.store(batch.profiles)
    _write_availability(batch.availability)
    for charger_pk, key, value in batch.key_writes:
        ChargerRow.objects.set_key_column(charger_pk, key, value)
    # Rare writes: not even a manager call (it builds a queryset) when there is none.
    if batch.reservations:
        ReservationRecord.objects.store(batch.reservations)
    if batch.local_lists:
        LocalAuthEntry.objects.apply(batch.local_lists)
    if batch.auth_caches:
        AuthCacheEntry.objects.apply_entries(batch.auth_caches)
    if batch.clocks:
        RuntimeState.objects.set_clock_offsets(batch.clocks)
    if batch.firmware:
        ChargerRow.objects.set_firmware_versions(batch.firmware)
    if batch.certificates:
        CertificateStoreRecord.objects.store(batch.certificates)
    if batch.vehicles:
        PluggedVehicle.objects.store(batch.vehicles)
    if batch.security:
        SecurityLogEntry.objects.store(batch.security, LOG_SIZE, full=batch.security_full)


def _leave_out_lost(batch: Batch) -> None:
    """Drop the rows of the chargers another worker has claimed since this one loaded them
    (inside the writing transaction: see `ChargerClaimsManager.read`). Its message log
    stays: those frames did go over this worker's connections."""
    lease = batch.lease
    if lease is None or lease.pk is None:
        return
    version, claimed = RuntimeState.objects.claimed_since(lease.claims_seen, lease.pk)
    lease.claims_seen = version
    lease.lost |= claimed
    if not lease.lost:
        return
    lost = _batch_chargers(batch) & lease.lost
    if not lost:
        return
    # Transaction rows or messages dropped are a sign of a stall: the other worker took the
    # charger on before they were stored (`on_lost` tells). The other last rows (its link
    # gone offline, its EVSEs) of a charger this worker let go itself, renamed to another
    # shard, or of an idle one the other worker loaded before this one heard of the move,
    # are dropped too, as the hand-over means.
    batch.lost_sessions |= lost & _session_chargers(batch)
    batch.lost |= lost
    batch.leased -= {row[3] for row in batch.evses if row[0] in lost}
    batch.transactions = [t for t in batch.transactions if t["charger_id"] not in lost]
    batch.outbox_new = [row for row in batch.outbox_new if row[0] not in lost]
    batch.outbox_gone = [row for row in batch.outbox_gone if row[0] not in lost]
    batch.evses = [row for row in batch.evses if row[0] not in lost]
    batch.key_writes = [row for row in batch.key_writes if row[0] not in lost]
    batch.config = {key: v for key, v in batch.config.items() if key[0] not in lost}
    for rows in _per_charger(batch):
        for pk in lost & rows.keys():
            del rows[pk]


def _per_charger(batch: Batch) -> tuple[dict[int, Any], ...]:
    return (
        batch.profiles,
        batch.availability,
        batch.reservations,
        batch.local_lists,
        batch.auth_caches,
        batch.clocks,
        batch.firmware,
        batch.certificates,
        batch.vehicles,
        batch.security,
    )


def _transaction_chargers(batch: Batch) -> set[int]:
    """The chargers a batch writes transactions or transaction messages of."""
    pks = {t["charger_id"] for t in batch.transactions}
    pks.update(row[0] for row in batch.outbox_new)
    pks.update(row[0] for row in batch.outbox_gone)
    return pks


def _session_chargers(batch: Batch) -> set[int]:
    """The chargers a batch writes transactions or new transaction messages of (a
    confirmed message's removal does not say which it was)."""
    pks = {t["charger_id"] for t in batch.transactions}
    pks.update(row[0] for row in batch.outbox_new if row[4])
    return pks


def _batch_chargers(batch: Batch) -> set[int]:
    """The chargers a batch writes rows of (its message log aside)."""
    pks = _transaction_chargers(batch)
    pks.update(row[0] for row in batch.evses)
    pks.update(row[0] for row in batch.key_writes)
    pks.update(key[0] for key in batch.config)
    for rows in _per_charger(batch):
        pks.update(rows)
    return pks


def _lease_pk(batch: Batch) -> int | None:
    return batch.lease.pk if batch.lease is not None else None


def _write_availability(availability: dict[int, tuple[bool, dict[int, str]]]) -> None:
    for charger_pk, (whole, connectors) in availability.items():
        RuntimeState.objects.set_unavailable(charger_pk, whole)
        EvseRow.objects.set_availability(charger_pk, connectors)


def _write_isolating(parts: list[Batch], batch: Batch) -> None:
    """Write per-charger parts, halving a group that fails until the failing charger is
    alone, then write that charger's rows one at a time.

    Each group is its own database transaction (not a savepoint): PostgreSQL and SQLite
    check deferred foreign keys only at commit, and a committed group stays written. A
    batch is idempotent, so a group written twice (after a later error) does no harm.
    One bad charger among n costs about 2·log2(n) transactions.
    """
    if len(parts) == 1:
        try:
            with transaction.atomic():
                _write_batch(parts[0])
        except _DATABASE_DOWN:
            raise
        except Exception:
            if _deleted(parts[0], batch):
                return
            _write_rows(parts[0], batch)
        return
    middle = len(parts) // 2
    for group in (parts[:middle], parts[middle:]):
        try:
            with transaction.atomic():
                for part in group:
                    _write_batch(part)
        except _DATABASE_DOWN:
            raise
        except Exception:
            _write_isolating(group, batch)


def _deleted(part: Batch, batch: Batch) -> bool:
    """A charger deleted after this batch was taken (the admin, the API, a scenario's
    temporary chargers): its rows have nowhere to go. They are dropped with one line, not
    logged row by row as errors, since nothing the charger did was wrong."""
    pk = part.charger_pk
    if pk is None or ChargerRow.objects.filter(pk=pk).exists():
        return False
    batch.gone.add(pk)
    log.info("checkpoint: charger pk %s was deleted meanwhile; its last rows dropped", pk)
    return True


def _write_rows(part: Batch, batch: Batch) -> None:
    """One charger's rows, each in its own transaction: find the bad one, log it with its
    charger, and repair it (a transaction row without the CSMS's id) or drop it."""
    for what, write, repair, seq in _rows(part):
        try:
            with transaction.atomic():
                write()
            continue
        except _DATABASE_DOWN:
            raise
        except Exception as exc:
            error = exc
        outcome = "dropped"
        if repair is not None:
            try:
                with transaction.atomic():
                    repair()
                outcome = "saved without it"
            except _DATABASE_DOWN:
                raise
            except Exception:
                pass
        if seq is not None and outcome == "dropped":
            batch.rejected.add((seq[0], seq[1]))
        log.error(
            "checkpoint: %s: %s not saved (%s); %s",
            _charger_name(part.charger_pk),
            what,
            _brief(error),
            outcome,
        )


_Row = tuple[str, Callable[[], None], Callable[[], None] | None, tuple[int, int] | None]


def _rows(part: Batch) -> Iterator[_Row]:
    """(what, write, repair or None, outbox key or None) for each row of one charger's part,
    in the order a whole batch writes them."""
    for tx in part.transactions:
        yield (
            f"transaction {tx['local_id']} (CSMS id {tx['transaction_id']})",
            functools.partial(TransactionRow.objects.upsert, [tx]),
            # The CSMS's id is the one value of the row that comes from outside.
            functools.partial(TransactionRow.objects.upsert, [{**tx, "transaction_id": None}])
            if tx["transaction_id"] is not None
            else None,
            None,
        )
    for new in part.outbox_new:
        yield (
            f"{new[2]} #{new[1]}",
            functools.partial(OutboxMessage.objects.add, [new]),
            None,
            (new[0], new[1]),
        )
    if part.outbox_gone:
        yield (
            "confirmed messages",
            functools.partial(OutboxMessage.objects.remove, part.outbox_gone),
            None,
            None,
        )
    for evse in part.evses:
        yield (
            f"register of EVSE {evse[3]}",
            functools.partial(
                EvseRow.objects.checkpoint,
                [evse],
                part.at,
                lease=_lease_pk(part),
                leased=part.leased,
                metered=part.metered,
            ),
            None,
            None,
        )
    for key, value in part.config.items():
        yield (
            f"configuration {key[1]}",
            functools.partial(ConfigurationKey.objects.write_values, {key: value}),
            None,
            None,
        )
    for pk, profiles in part.profiles.items():
        yield (
            "charging profiles",
            functools.partial(ChargingProfileRecord.objects.store, {pk: []}),
            None,
            None,
        )
        for profile in profiles:
            yield (
                f"charging profile {str(profile.get('csChargingProfiles'))[:80]}",
                functools.partial(
                    ChargingProfileRecord.objects.store, {pk: [profile]}, replace=False
                ),
                None,
                None,
            )
    for pk, availability in part.availability.items():
        yield "availability", functools.partial(_write_availability, {pk: availability}), None, None
    for charger_pk, column, value in part.key_writes:
        yield (
            column,  # never the value: an AuthorizationKey is a secret
            functools.partial(ChargerRow.objects.set_key_column, charger_pk, column, value),
            None,
            None,
        )
    for pk, reservations in part.reservations.items():
        yield (
            "reservations",
            functools.partial(ReservationRecord.objects.store, {pk: reservations}),
            None,
            None,
        )
    for pk, change in part.local_lists.items():
        yield (
            f"local authorization list version {change['version']}",
            functools.partial(LocalAuthEntry.objects.apply, {pk: change}),
            None,
            None,
        )
    for pk, cache in part.auth_caches.items():
        yield (
            "authorization cache",
            functools.partial(AuthCacheEntry.objects.apply_entries, {pk: cache}),
            None,
            None,
        )
    for pk, offset in part.clocks.items():
        yield (
            "clock",
            functools.partial(RuntimeState.objects.set_clock_offsets, {pk: offset}),
            None,
            None,
        )
    for pk, version in part.firmware.items():
        yield (
            "firmware version",
            functools.partial(ChargerRow.objects.set_firmware_versions, {pk: version}),
            None,
            None,
        )
    for pk, store in part.certificates.items():
        yield (
            "certificate store",  # never its content: it holds private keys
            functools.partial(CertificateStoreRecord.objects.store, {pk: store}),
            None,
            None,
        )
    for pk, vehicles in part.vehicles.items():
        yield (
            "plugged-in vehicles",
            functools.partial(PluggedVehicle.objects.store, {pk: vehicles}),
            None,
            None,
        )
    for pk, events in part.security.items():
        yield (
            "security log",
            functools.partial(
                SecurityLogEntry.objects.store, {pk: events}, LOG_SIZE, full=part.security_full
            ),
            None,
            None,
        )


_AUTH_STATUSES = {str(s): s for s in AuthStatus}


def _entry_rows(entries: dict[str, IdTagAnswer | None]) -> dict[str, dict[str, str] | None]:
    """idTag -> its columns (None: its row goes)."""
    return {
        tag: None
        if answer is None
        else {
            "status": str(answer.status),
            "expiry": _stored_date(answer.expiry),
            "parent_id_tag": answer.parent_id_tag or "",
        }
        for tag, answer in entries.items()
    }


def _cache_changes(chargers: dict[int, Charger]) -> dict[int, TagEntriesChange]:
    """What changed in these chargers' authorization caches since last taken."""
    changes: dict[int, TagEntriesChange] = {}
    for pk, charger in chargers.items():
        full, entries = charger.auth_cache.take_changes()
        if full or entries:
            changes[pk] = TagEntriesChange(full=full, entries=_entry_rows(entries))
    return changes


def _stored_entries(rows: Iterable[Any]) -> dict[str, IdTagAnswer]:
    """idTag -> its answer, from stored local list or cache rows."""
    return {
        row.id_tag: IdTagAnswer(
            _AUTH_STATUSES.get(row.status, AuthStatus.INVALID),
            row.expiry or None,
            row.parent_id_tag or None,
        )
        for row in rows
    }


def _stored_date(text: str | None) -> str:
    """A date as its column holds it: as sent, or normalised when longer than the column
    (a CSMS may send any number of fraction digits)."""
    if not text:
        return ""
    if len(text) <= 40:
        return text
    try:
        return now_iso(parse_iso(text).astimezone(UTC))
    except ValueError:
        return ""


def _charger_name(pk: int | None) -> str:
    """The charge point id of a charger pk, for a log line (pk if the row is gone)."""
    if pk is None:
        return "charger ?"
    name = ChargerRow.objects.filter(pk=pk).values_list("charge_point_id", flat=True).first()
    return f"charger {name or '?'} (pk {pk})"
