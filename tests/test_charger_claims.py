"""Charger claims (the scaled-out mode's fence): a worker claims the chargers it loads, and
a batch of another that ran them before writes nothing more of theirs."""

from __future__ import annotations

import pytest
from django.utils import timezone

from chargers.models import EngineLease, OutboxMessage, RuntimeState
from simulator.runtime.persistence import Batch, Checkpointer, restore
from tests.cast import make_charger
from tests.engine import runtime_charger

pytestmark = pytest.mark.django_db(transaction=True)


def lease() -> int:
    return EngineLease.objects.stamp(None, timezone.now())


def test_claimed_since_names_only_what_another_engine_claimed_after_a_version():
    one, two = make_charger("CL-1", evses=1), make_charger("CL-2", evses=1)
    mine, other = lease(), lease()
    RuntimeState.objects.claim([one.pk, two.pk], mine)
    seen, found = RuntimeState.objects.claimed_since(None, mine)
    assert found == set()
    assert RuntimeState.objects.claimed_since(seen, mine) == (seen, set())  # nothing since
    RuntimeState.objects.claim([two.pk], other)
    now, found = RuntimeState.objects.claimed_since(seen, mine)
    assert (now > seen, found) == (True, {two.pk})
    RuntimeState.objects.claim([two.pk], mine)  # taken back: nobody else's since
    assert RuntimeState.objects.claimed_since(now, mine)[1] == set()


def test_a_batch_writes_nothing_of_a_charger_claimed_by_another_and_a_reload_takes_it_back():
    row = make_charger("CL-3", evses=1)
    checkpointer = Checkpointer()
    checkpointer.fenced = True
    charger = runtime_charger("CL-3", "ws://127.0.0.1:1", evses=1)
    charger.spec.db_id = row.pk
    restore([charger], checkpointer)
    mine = checkpointer.lease.pk
    assert RuntimeState.objects.get(charger_id=row.pk).holder == mine
    RuntimeState.objects.claim([row.pk], lease())  # another worker took it on

    def write_one(seq: int) -> Batch:
        batch = Batch({}, [], [(row.pk, seq, "Heartbeat", "{}", "")], [], [])
        batch.lease, batch.fenced = checkpointer.lease, True
        Checkpointer.write(batch)
        return batch

    assert write_one(1).lost == {row.pk}
    assert not OutboxMessage.objects.filter(charger_id=row.pk).exists()
    restore([charger], checkpointer)  # loaded here again: claimed again
    assert write_one(2).lost == set()
    assert list(OutboxMessage.objects.filter(charger_id=row.pk).values_list("seq", flat=True)) == [
        2
    ]
