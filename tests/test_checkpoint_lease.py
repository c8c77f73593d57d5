"""The full checkpoint's liveness lease: registers of open transactions are rewritten only when
they changed, and one lease row a second says how long they are known alive with them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from chargers.models import EngineLease, Evse
from simulator.contract import ConnectorStatus
from simulator.core.clock import now_iso
from simulator.core.transactions import LocalTransaction
from simulator.runtime.persistence import (
    Batch,
    Checkpointer,
    _last_checkpoints,
    _power_loss_time,
)
from tests.cast import make_charger
from tests.engine import COMPACT, connected, register_now, runtime_charger, wait_until


@dataclass
class FakeEvse:
    db_id: int
    register_wh: float = 0.0
    status: Any = ConnectorStatus.AVAILABLE


class FakeCharger:
    """What `Checkpointer.take` reads of a runtime charger."""

    def __init__(self, cp_id: str, pk: int, evse_pks: list[int]) -> None:
        self.id = cp_id
        self.spec = SimpleNamespace(db_id=pk)
        self.evses = [FakeEvse(evse_pk) for evse_pk in evse_pks]
        self.registers_at: float | None = None  # never metered: the batch's time


def transaction(connector_id: int, local_id: str) -> LocalTransaction:
    return LocalTransaction(
        connector_id=connector_id,
        id_tag="TAG",
        meter_start=0,
        started_at=now_iso(),
        local_id=local_id,
    )


def stop(tx: LocalTransaction) -> None:
    tx.stopped_at, tx.meter_stop, tx.stop_reason = now_iso(), 0, "Local"


class Stored:
    """The database as the batches leave it: per EVSE (register, status, at, leased)."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[float, str, datetime, bool]] = {}
        self.lease_at: datetime | None = None

    def apply(self, batch: Batch) -> None:
        for _pk, register, status, evse_pk in batch.evses:
            old = self.rows.get(evse_pk)
            highest = register if old is None else max(old[0], register)
            self.rows[evse_pk] = (highest, status, batch.at, evse_pk in batch.leased)
        if batch.stamp:
            self.lease_at = batch.at

    def alive(self, evse_pk: int) -> tuple[float, str, datetime]:
        register, status, at, leased = self.rows[evse_pk]
        if leased and self.lease_at is not None and self.lease_at > at:
            at = self.lease_at
        return register, status, at


def test_unchanged_registers_are_not_rewritten_but_stay_known_alive():
    checkpointer = Checkpointer()
    charger = FakeCharger("CP-1", 1, [11, 12])
    tx = transaction(1, "a")
    checkpointer.on_transaction(charger, tx)  # type: ignore[arg-type]  # a stand-in charger
    stored = Stored()
    first = checkpointer.take()
    stored.apply(first)
    assert [row[3] for row in first.evses] == [11, 12] and first.leased == {11, 12}
    assert first.stamp
    second = checkpointer.take()  # nothing changed: only the lease moves
    stored.apply(second)
    assert second.evses == [] and second.stamp and bool(second)
    assert stored.alive(11)[2] == second.at and stored.alive(12)[2] == second.at
    charger.evses[1].register_wh = 5.0
    checkpointer.on_metered(charger)  # type: ignore[arg-type]  # as the meter says it
    third = checkpointer.take()
    stored.apply(third)
    assert [row[3] for row in third.evses] == [12] and third.stamp
    assert stored.alive(12) == (5.0, "Available", third.at)
    stop(tx)
    checkpointer.on_transaction(charger, tx)  # type: ignore[arg-type]
    fourth = checkpointer.take()  # written once more, naming no lease
    stored.apply(fourth)
    assert {row[3] for row in fourth.evses} == {11, 12} and fourth.leased == set()
    assert not fourth.stamp
    assert stored.alive(11)[2] == fourth.at
    fifth = checkpointer.take()
    assert not fifth  # nothing open, nothing changed: no write at all


def test_an_urgent_batch_names_the_lease_only_for_open_transactions():
    checkpointer = Checkpointer()
    charging = FakeCharger("CP-1", 1, [11])
    idle = FakeCharger("CP-2", 2, [21])
    checkpointer.on_transaction(charging, transaction(1, "a"))  # type: ignore[arg-type]
    checkpointer.take()
    checkpointer.on_change(idle)  # type: ignore[arg-type]
    charging.evses[0].register_wh = 3.0
    checkpointer.on_change(charging)  # type: ignore[arg-type]
    batch = checkpointer.take()
    assert {row[3] for row in batch.evses} == {11, 21}
    assert batch.leased == {11}


def test_a_charger_marked_again_after_a_batch_is_in_the_next_one():
    """`on_change` skips the lock for a charger marked already: a batch taken in between
    unmarks it, and its next change is in the next batch; a charger that replaced one of
    the same id (a reboot) is marked in its place."""
    checkpointer = Checkpointer()
    charger = FakeCharger("CP-1", 1, [11])
    checkpointer.on_change(charger)  # type: ignore[arg-type]
    checkpointer.on_change(charger)  # type: ignore[arg-type]  # marked already
    assert [row[1:] for row in checkpointer.take().evses] == [(0.0, "Available", 11)]
    charger.evses[0].register_wh = 2.0
    checkpointer.on_change(charger)  # type: ignore[arg-type]
    assert [row[1:] for row in checkpointer.take().evses] == [(2.0, "Available", 11)]
    assert checkpointer.take().evses == []  # nothing changed since
    checkpointer.on_change(charger)  # type: ignore[arg-type]
    replaced = FakeCharger("CP-1", 1, [11])
    replaced.evses[0].register_wh = 7.0
    checkpointer.on_change(replaced)  # type: ignore[arg-type]
    assert [row[1:] for row in checkpointer.take().evses] == [(7.0, "Available", 11)]


# An operation: (kind, charger index, connector index, value)
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["start", "stop", "meter", "status", "change", "urgent", "full"]),
        st.integers(0, 2),
        st.integers(0, 1),
        st.floats(0, 50, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_every_full_checkpoint_leaves_each_open_register_known_alive_at_its_time(ops):
    """Whatever happens between checkpoints: after each full one, every EVSE of a charger with
    an open transaction is stored with its register and status as read and known alive at the
    batch's time; and, when the lease is stamped, no stored row is vouched for by it whose
    charger has none open (so a stamp never dates an old register later than it was known).
    Only full batches stamp the lease, so an urgent one may leave that for the next."""
    checkpointer = Checkpointer()
    chargers = [
        FakeCharger(f"CP-{n}", n + 1, [10 * (n + 1) + 1, 10 * (n + 1) + 2]) for n in range(3)
    ]
    open_txs: dict[tuple[int, int], LocalTransaction] = {}
    stored = Stored()
    serial = 0
    for kind, which, connector, value in ops:
        charger = chargers[which]
        evse = charger.evses[connector]
        if kind == "start" and (which, connector) not in open_txs:
            serial += 1
            tx = open_txs[(which, connector)] = transaction(connector + 1, f"t{serial}")
            checkpointer.on_transaction(charger, tx)
        elif kind == "stop" and (which, connector) in open_txs:
            tx = open_txs.pop((which, connector))
            stop(tx)
            checkpointer.on_transaction(charger, tx)
        # The meter tells that it moved a register or a status: `on_change` at a visit,
        # `on_metered` at a settle; the weaker of the two here.
        elif kind == "meter":
            evse.register_wh += value
            checkpointer.on_metered(charger)
        elif kind == "status":
            evse.status = ConnectorStatus.CHARGING if value > 25 else ConnectorStatus.SUSPENDED_EV
            checkpointer.on_metered(charger)
        elif kind == "change":
            checkpointer.on_change(charger)
        elif kind in ("urgent", "full"):
            batch = checkpointer.take(full=kind == "full")
            stored.apply(batch)
            if kind == "urgent":
                assert not batch.stamp
                continue
            open_ids = {chargers[n].id for n, _c in open_txs}
            for other in chargers:
                for each in other.evses:
                    row = stored.rows.get(each.db_id)
                    if other.id not in open_ids:
                        assert row is None or not row[3], (other.id, each.db_id)
                    else:
                        assert stored.alive(each.db_id) == (
                            each.register_wh,
                            each.status.value,
                            batch.at,
                        )


@pytest.mark.django_db(transaction=True)
def test_the_lease_dates_a_power_loss_at_the_last_full_checkpoint():
    row = make_charger("CP-LEASE", evses=2)
    evse_pks = list(
        Evse.objects.filter(charger=row).order_by("connector_id").values_list("pk", flat=True)
    )
    charger = FakeCharger("CP-LEASE", row.pk, evse_pks)
    charger.evses[0].register_wh = 120.0
    checkpointer = Checkpointer()
    tx = transaction(1, "lease-1")
    checkpointer.on_transaction(charger, tx)  # type: ignore[arg-type]
    try:
        first = checkpointer.take()
        Checkpointer.write(first)
        second = checkpointer.take()
        second.at = first.at + timedelta(seconds=5)  # clearly later than the rows' time
        assert second.evses == []
        Checkpointer.write(second)
    finally:
        Checkpointer.close()
    evse = Evse.objects.get(pk=evse_pks[0])
    assert evse.register_wh == 120.0 and evse.checkpointed_at == first.at
    assert evse.lease_id is not None
    assert EngineLease.objects.get(pk=evse.lease_id).alive_at == second.at
    alive = _last_checkpoints({row.pk})
    assert alive == {(row.pk, 1): second.at, (row.pk, 2): second.at}
    assert _power_loss_time(tx, alive[(row.pk, 1)]) == now_iso(second.at)

    # The transaction ends: the rows are written once more without the lease, and a later
    # stamp of the lease (another charger still charging) no longer dates them.
    stop(tx)
    checkpointer.on_transaction(charger, tx)  # type: ignore[arg-type]
    other = FakeCharger("CP-OTHER", row.pk, [])  # no EVSE rows: only keeps the lease going
    checkpointer.on_transaction(other, transaction(1, "lease-2"))  # type: ignore[arg-type]
    try:
        third = checkpointer.take()
        third.at = second.at + timedelta(seconds=5)
        Checkpointer.write(third)
        fourth = checkpointer.take()
        fourth.at = third.at + timedelta(seconds=5)
        assert fourth.evses == []
        Checkpointer.write(fourth)
    finally:
        Checkpointer.close()
    assert Evse.objects.get(pk=evse_pks[0]).lease_id is None
    assert _last_checkpoints({row.pk}) == {(row.pk, 1): third.at, (row.pk, 2): third.at}


@pytest.mark.django_db(transaction=True)
def test_a_charging_register_is_dated_when_it_was_metered_not_by_the_lease():
    """The meter moves a charging connector's register only at its events: the car draws
    power in between, so its stored register was true when metered, not at the checkpoint
    that read it, nor at a later stamp of the lease (a stop dated there reports too little
    energy for its time)."""
    row = make_charger("CP-METERED", evses=2)
    evse_pks = list(
        Evse.objects.filter(charger=row).order_by("connector_id").values_list("pk", flat=True)
    )
    charger = FakeCharger("CP-METERED", row.pk, evse_pks)
    charger.evses[0].register_wh = 120.0
    charger.evses[0].status = ConnectorStatus.CHARGING
    checkpointer = Checkpointer()
    tx = transaction(1, "metered-1")
    checkpointer.on_transaction(charger, tx)  # type: ignore[arg-type]
    metered = timezone.now() - timedelta(seconds=30)
    charger.registers_at = metered.timestamp()
    try:
        first = checkpointer.take()
        Checkpointer.write(first)
        second = checkpointer.take()  # the register unchanged: only the lease moves
        second.at = first.at + timedelta(seconds=5)
        assert second.evses == []
        Checkpointer.write(second)
    finally:
        Checkpointer.close()
    evse = Evse.objects.get(pk=evse_pks[0])
    assert evse.register_wh == 120.0 and evse.checkpointed_at == metered
    # Connector 2 draws nothing: its register is true as long as the charger lived.
    assert _last_checkpoints({row.pk}) == {(row.pk, 1): metered, (row.pk, 2): second.at}


def test_the_rows_named_by_the_lease_go_again_after_a_refused_batch():
    checkpointer = Checkpointer()
    charger = FakeCharger("CP-1", 1, [11])
    checkpointer.on_transaction(charger, transaction(1, "a"))  # type: ignore[arg-type]
    batch = checkpointer.take()
    batch.isolated = True  # the writer saved it charger by charger: a row may be missing
    checkpointer.written(batch)
    again = checkpointer.take()
    assert [row[3] for row in again.evses] == [11]


@pytest.mark.django_db(transaction=True)
def test_a_refused_batch_does_not_stamp_the_lease():
    """Written charger by charger, a register row may have been refused: the lease is not
    moved, so it never vouches for a register that is not stored."""
    row = make_charger("CP-REFUSED", evses=1)
    start = timezone.now() - timedelta(seconds=30)
    lease = EngineLease.objects.create(alive_at=start)
    checkpointer = Checkpointer()
    checkpointer._lease.pk = lease.pk
    charger = FakeCharger("CP-REFUSED", row.pk, [Evse.objects.get(charger=row).pk])
    checkpointer.on_transaction(charger, transaction(1, "refused-1"))  # type: ignore[arg-type]
    batch = checkpointer.take()
    batch.outbox_new.append((row.pk + 1000, 1, "MeterValues", {"connectorId": 1}, ""))
    try:
        Checkpointer.write(batch)  # the row of a charger that does not exist is refused
    finally:
        Checkpointer.close()
    assert batch.isolated and batch.gone == {row.pk + 1000}
    assert EngineLease.objects.get(pk=lease.pk).alive_at == start
    assert Evse.objects.get(charger=row).checkpointed_at == batch.at  # its row still saved


async def test_whatever_the_meter_advances_is_in_the_next_full_checkpoint(csms, ticking):
    """A register moves only when the meter advances its charger, at a visit (which tells
    `on_change`) or at a settle between visits (`on_metered`): the full checkpoint looks
    only at the chargers so named, so a register moved either way is in the next one, as
    it stands."""
    checkpointer = Checkpointer()
    charger = runtime_charger(
        "CP-METERED",
        csms.url,
        evses=1,
        listener=checkpointer,
        config={"MeterValueSampleInterval": "1"},  # a visit every second
        db_id=1,
    )
    evse = charger.evses[0]
    evse.db_id = 11
    ticking(charger, tick=0.05)
    async with connected(charger):
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "TAG1") == "Accepted"
        await wait_until(lambda: evse.status is ConnectorStatus.CHARGING, message="charging")
        assert [row[3] for row in checkpointer.take().evses] == [11]
        # A visit (the next sample) moves the register, and nothing visible changes.
        written = evse.register_wh
        await wait_until(lambda: evse.register_wh > written, message="a visit")
        assert [row[1:] for row in checkpointer.take().evses] == [
            (evse.register_wh, "Charging", 11)
        ]
        # A settle between visits (what a reader of "now" does) moves it too.
        written = evse.register_wh
        await asyncio.sleep(0.15)  # ticks without a visit: the meter's latest tick moves on
        assert register_now(charger) > written
        assert [row[1:] for row in checkpointer.take().evses] == [
            (evse.register_wh, "Charging", 11)
        ]
        assert checkpointer.take().evses == []  # nothing moved since
