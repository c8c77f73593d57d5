"""The durable outbox's table: what its lean schema relies on.

The table has no index on charger alone (the unique (charger, seq) index serves a charger's
look-ups) and its payload column no `JSON_VALID` CHECK on SQLite (the writer stores only
JSON it encoded): these tests fail if either reliance stops holding.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargers.models import Charger, OutboxMessage
from simulator.core.outbox import Outgoing
from simulator.runtime.persistence import Checkpointer, OutboxSink
from tests.cast import make_charger
from tests.engine import runtime_charger

pytestmark = pytest.mark.django_db


def test_the_unique_index_leads_with_the_charger_so_it_serves_a_chargers_look_ups():
    table = OutboxMessage._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    leading = [c["columns"] for c in constraints.values() if c["index"] or c["unique"]]
    assert ["charger_id", "seq"] in leading, leading
    assert ["charger_id"] not in leading, leading  # each index costs every INSERT and DELETE
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN SELECT id FROM {table} WHERE charger_id = 1")
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        assert "INDEX" in plan and not plan.startswith("SCAN"), plan


def test_a_deleted_chargers_outbox_rows_go_with_it():
    kept, gone = make_charger("CP-KEEP", evses=1), make_charger("CP-GONE", evses=1)
    OutboxMessage.objects.add(
        [(c.pk, seq, "MeterValues", {"connectorId": 1}, "") for c in (kept, gone) for seq in (1, 2)]
    )
    Charger.objects.filter(pk=gone.pk).delete()
    assert sorted(OutboxMessage.objects.values_list("charger_id", "seq")) == [
        (kept.pk, 1),
        (kept.pk, 2),
    ]


# What a payload may hold: JSON's values, and Python's that JSON has no text for (a float
# that is not finite, a 65-bit integer, a lone surrogate, a non-str key).
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**66), max_value=2**66)
    | st.floats()
    | st.text(max_size=12)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(0, 9), inner, max_size=4)
    ),
    max_leaves=12,
)


def _stored_as_json(value: Any) -> Any:
    """The value as JSON holds it (orjson writes a float that is not finite as null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_stored_as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _stored_as_json(v) for k, v in value.items()}
    return value


def _numbers_as_floats(value: Any) -> Any:
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.dictionaries(st.text(max_size=8), _values, max_size=4))
def test_every_stored_payload_is_valid_json_read_back_as_what_was_sent(payload):
    """The column has no JSON_VALID CHECK on SQLite: only the writer fills it, and what it
    stores (the text the engine encoded, or a payload it encodes itself) is JSON that reads
    back as the payload; a payload JSON cannot hold is refused, never stored."""
    row = Charger.objects.first() or make_charger("CP-JSON", evses=1)
    OutboxMessage.objects.all().delete()
    checkpointer = Checkpointer()
    charger = runtime_charger("CP-JSON", "ws://127.0.0.1:1/ocpp", evses=1)
    charger.spec.db_id = row.pk
    checkpointer.outbox_added(
        OutboxSink(checkpointer, row.pk, charger), Outgoing("DataTransfer", payload, seq=1)
    )
    batch = checkpointer.take(full=False)
    Checkpointer.write(batch)  # in the test's transaction: its connection stays open
    stored = list(OutboxMessage.objects.all())
    try:
        encoded = orjson.dumps(payload)
    except TypeError:  # no JSON text for it: dropped, logged, nothing stored
        encoded = None
    # PostgreSQL's jsonb holds no NUL character either.
    if encoded is None or (connection.vendor == "postgresql" and b"\\u0000" in encoded):
        assert stored == [] and batch.rejected == {(row.pk, 1)}
        return
    read, sent = stored[0].payload, _stored_as_json(payload)
    if connection.vendor == "postgresql":  # jsonb keeps a number's value, not its spelling
        read, sent = _numbers_as_floats(read), _numbers_as_floats(sent)
    assert len(stored) == 1 and read == sent
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT json_valid(payload) FROM {OutboxMessage._meta.db_table}")
            assert cursor.fetchall() == [(1,)]
