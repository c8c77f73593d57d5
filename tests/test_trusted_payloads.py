"""The adapter's own MeterValues skip the per-message schema check: the proof that they may.

`Ocpp16Messages.meter_values` marks a payload `wire.Checked` only when it is valid by
construction, and `ChargePointClient.send_call` checks every other payload in full. The
property tests here show that every payload the builder can mark (every context, quantity,
phase, location and unit, any connector, with or without a transaction id, confirmed or
not, through `at_send`) passes the full compiled check, that inputs the builder cannot
vouch for give a plain dict, and that a payload from anywhere else is still rejected.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.core.protocol import QUANTITIES, SampleContext
from simulator.ocpp16 import wire
from simulator.ocpp16.client import ChargePointClient
from simulator.ocpp16.messages import OCPP16, _templates_check
from simulator.ocpp16.wire import Checked, SchemaViolation, validate_request
from tests.engine import runtime_charger
from tests.test_meter_values_wire import Capture


@dataclass
class Tx:
    local_id: str
    transaction_id: Any


quantities = st.sampled_from(list(QUANTITIES.values()))
readings = st.lists(st.tuples(st.text(max_size=12), quantities), min_size=1, max_size=20)
contexts = st.sampled_from(list(SampleContext))
ints = st.integers(min_value=-(2**70), max_value=2**70)  # the schema's integer has no bound
txs = st.none() | st.builds(Tx, st.just("L-1"), st.none() | ints)
# The ids a payload can hold once it is encoded: answers' integers are bounded to 64 bits
# (`value_ranges.INT64`) before any id reaches a message, and orjson encodes no wider.
int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
tx64s = st.none() | st.builds(Tx, st.just("L-1"), st.none() | int64s)


@given(
    st.integers(min_value=0, max_value=64) | ints,
    txs,
    contexts,
    st.text(),
    readings,
    st.none() | ints,
)
def test_every_payload_the_builder_marks_passes_the_full_check(
    connector: int,
    tx: Tx | None,
    context: SampleContext,
    stamp: str,
    values: Any,
    later: int | None,
) -> None:
    action, payload = OCPP16.meter_values(connector, tx, context, stamp, values)
    assert type(payload) is Checked  # well-typed inputs: always marked
    validate_request(action, payload)
    if tx is not None and later is not None:
        tx.transaction_id = later  # confirmed before it goes out
    sent = OCPP16.at_send(action, payload, tx)
    if type(sent) is Checked:
        validate_request(action, sent)


@given(
    contexts,
    st.lists(
        st.tuples(st.one_of(st.text(max_size=3), st.floats(), st.integers()), quantities),
        min_size=1,
        max_size=6,
    ),
)
def test_a_value_not_text_is_never_vouched_for_also_when_met_again(
    context: SampleContext, values: Any
) -> None:
    # The builder looks at the type of a reading's value only when it is not one of the
    # shared SampledValues, which hold text values only: met again, an untyped one still
    # gives a plain dict, checked in full.
    for _ in range(2):
        action, payload = OCPP16.meter_values(1, None, context, "t", values)
        texts = all(type(value) is str for value, _quantity in values)
        assert (type(payload) is Checked) == texts
        if texts:
            validate_request(action, payload)


@given(contexts, readings)
def test_the_stop_transaction_samples_share_the_templates(
    context: SampleContext, values: Any
) -> None:
    # StopTransaction's transactionData is made by the same `sampled_values`; it is not
    # marked (it is checked in full), but its samples are valid for the same reasons.
    from simulator.core.protocol import MeterSample, StopReason

    sample = MeterSample("2026-01-01T00:00:00Z", context, values)
    action, payload = OCPP16.transaction_ended(
        Tx("L-1", 7), 10, "2026-01-01T00:00:00Z", StopReason.LOCAL, "TAG", [sample]
    )
    assert type(payload) is dict
    validate_request(action, OCPP16.at_send(action, payload, Tx("L-1", 7)))


def test_the_templates_pass_the_full_check() -> None:
    assert _templates_check()


@pytest.mark.parametrize(
    "connector, tx, stamp, values",
    [
        (1.0, None, "t", [("1", QUANTITIES[next(iter(QUANTITIES))])]),  # a float connector
        (True, None, "t", [("1", QUANTITIES[next(iter(QUANTITIES))])]),  # a bool is no int
        (1, None, 5, [("1", QUANTITIES[next(iter(QUANTITIES))])]),  # a timestamp not text
        (1, None, "t", [(1.5, QUANTITIES[next(iter(QUANTITIES))])]),  # a value not text
        (1, None, "t", []),  # no sampled value: minItems
        (1, Tx("L-1", "7"), "t", [("1", QUANTITIES[next(iter(QUANTITIES))])]),  # a str id
    ],
)
async def test_inputs_the_builder_cannot_vouch_for_give_a_plain_dict_that_fails(
    connector: Any, tx: Any, stamp: Any, values: Any
) -> None:
    action, payload = OCPP16.meter_values(connector, tx, SampleContext.PERIODIC, stamp, values)
    assert type(payload) is dict
    with pytest.raises(SchemaViolation):
        validate_request(action, payload)
    with pytest.raises(SchemaViolation):
        sink_client().send_call(action, payload, lambda result, error: None)


async def test_at_send_drops_the_mark_when_the_id_is_no_int() -> None:
    quantity = next(iter(QUANTITIES.values()))
    tx = Tx("L-1", None)
    action, payload = OCPP16.meter_values(1, tx, SampleContext.PERIODIC, "t", [("1", quantity)])
    assert type(payload) is Checked and payload["transactionId"] == -1
    tx.transaction_id = "42"
    sent = OCPP16.at_send(action, payload, tx)
    assert type(sent) is dict
    with pytest.raises(SchemaViolation):
        sink_client().send_call(action, sent, lambda result, error: None)


def sink_client() -> ChargePointClient:
    charger = runtime_charger("TRUST-1", "ws://127.0.0.1:1/ocpp", evses=1)
    return ChargePointClient(charger, Capture(), timeout=30)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    check = wire.validate_request

    def counting(action: str, payload: dict[str, Any]) -> None:
        seen.append(action)
        check(action, payload)

    monkeypatch.setattr(wire, "validate_request", counting)
    return seen


async def test_a_payload_from_outside_is_checked_and_rejected(checks: list[str]) -> None:
    client = sink_client()
    quantity = next(iter(QUANTITIES.values()))
    _, built = OCPP16.meter_values(1, None, SampleContext.PERIODIC, "t", [("1", quantity)])
    outside = dict(built)  # equal, but not the builder's: a scenario's or the API's
    client.send_call("MeterValues", outside, lambda result, error: None)
    assert checks == ["MeterValues"]
    outside["meterValue"] = [{"timestamp": "t", "sampledValue": [{"value": 1}]}]
    with pytest.raises(SchemaViolation):
        client.send_call("MeterValues", outside, lambda result, error: None)
    # A marked payload under another action name is checked in full too.
    with pytest.raises(SchemaViolation):
        client.send_call("StatusNotification", built, lambda result, error: None)


async def test_the_builders_payload_skips_the_check_and_frames_the_same(
    checks: list[str],
) -> None:
    client = sink_client()
    values = [(str(n), q) for n, q in enumerate(QUANTITIES.values())]
    _, built = OCPP16.meter_values(2, Tx("L-1", 9), SampleContext.CLOCK, "t", values)
    client.send_call("MeterValues", built, lambda result, error: None)
    client.send_call("MeterValues", dict(built), lambda result, error: None)
    assert checks == ["MeterValues"]  # the plain copy only
    fast, slow = client._connection.frames
    assert fast.split(",", 2)[2] == slow.split(",", 2)[2]  # byte for byte but the unique id


# -- encoded once: the durable row's text is the wire's payload ------------------------------


def frames_of(payload: Any, tx: Tx | None, confirm: int | None) -> tuple[str, str, str]:
    """Queue `payload` as the worker does (the Checkpointer takes it for its row), confirm
    the transaction (or not), send it: (the row's payload text, the frame sent, the frame
    encoded afresh from what `at_send` gives, with the same unique id)."""
    from simulator.core.outbox import Outgoing
    from simulator.runtime.persistence import Checkpointer, OutboxSink

    async def run() -> tuple[str, str, str]:
        client = sink_client()
        checkpointer = Checkpointer()
        item = Outgoing("MeterValues", payload, transactional=True, tx=tx, seq=1)
        checkpointer.outbox_added(OutboxSink(checkpointer, 1, client.charger), item)
        ((_, _, _, stored, _),) = checkpointer.take(full=False).outbox_new
        if tx is not None and confirm is not None:
            tx.transaction_id = confirm
        sent = OCPP16.at_send("MeterValues", payload, tx)
        client.send_call("MeterValues", sent, lambda result, error: None)
        (frame,) = client._connection.frames
        (unique_id,) = client._pending
        assert isinstance(stored, str)
        return stored, frame, orjson.dumps([2, unique_id, "MeterValues", sent]).decode()

    return asyncio.run(run())


@given(
    st.integers(min_value=0, max_value=64), tx64s, contexts, st.text(), readings, st.none() | int64s
)
def test_the_frame_made_from_the_stored_text_is_the_frame_encoded_afresh(
    connector: int,
    tx: Tx | None,
    context: SampleContext,
    stamp: str,
    values: Any,
    confirm: int | None,
) -> None:
    _, payload = OCPP16.meter_values(connector, tx, context, stamp, values)
    before = orjson.dumps(payload).decode()
    stored, frame, afresh = frames_of(payload, tx, confirm)
    assert stored == before  # the row: the payload as queued
    assert frame == afresh  # the wire: byte for byte what encoding it again gives
    if type(payload) is Checked and payload.text is not None:
        assert frame.endswith(f",{stored}]")  # framed from the row's text, not re-encoded


def test_an_id_confirmed_after_the_row_was_stored_is_encoded_afresh() -> None:
    quantity = next(iter(QUANTITIES.values()))
    tx = Tx("L-1", None)
    _, payload = OCPP16.meter_values(1, tx, SampleContext.PERIODIC, "t", [("1", quantity)])
    stored, frame, afresh = frames_of(payload, tx, 4711)
    assert '"transactionId":-1' in stored
    assert frame == afresh and '"transactionId":4711' in frame


def test_a_payload_that_cannot_be_encoded_goes_to_the_writer_as_a_dict() -> None:
    # As before: the writer cannot store it, logs it and drops it unsent (test_persistence).
    from simulator.core.outbox import Outgoing
    from simulator.runtime.persistence import Checkpointer, OutboxSink

    checkpointer = Checkpointer()
    payload = {"connectorId": 1, "transactionId": 2**64, "meterValue": []}
    item = Outgoing("MeterValues", payload, transactional=True, seq=1)
    charger = runtime_charger("TRUST-2", "ws://127.0.0.1:1/ocpp", evses=1)
    checkpointer.outbox_added(OutboxSink(checkpointer, 1, charger), item)
    ((_, _, _, stored, _),) = checkpointer.take(full=False).outbox_new
    assert stored == payload and stored is not payload


def test_a_durable_meter_values_is_not_encoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def encode_call(*args: Any) -> str:
        raise AssertionError("encoded a second time")

    quantity = next(iter(QUANTITIES.values()))
    tx = Tx("L-1", 7)
    _, payload = OCPP16.meter_values(1, tx, SampleContext.PERIODIC, "t", [("1", quantity)])
    monkeypatch.setattr(wire, "encode_call", encode_call)
    stored, frame, _ = frames_of(payload, tx, None)
    assert frame.startswith('[2,"') and frame.endswith(f'","MeterValues",{stored}]')


def test_ids_made_inline_for_a_stored_text_share_new_message_ids_counter() -> None:
    # `send_call` builds a durable MeterValues' id itself: it must take the next number of
    # the one counter every other id comes from, or ids could repeat within the process.
    quantity = next(iter(QUANTITIES.values()))
    ids = []
    for _ in range(3):
        ids.append(wire.new_message_id())
        tx = Tx("L-1", 7)
        _, payload = OCPP16.meter_values(1, tx, SampleContext.PERIODIC, "t", [("1", quantity)])
        stored, frame, _ = frames_of(payload, tx, None)
        assert frame.endswith(f",{stored}]")  # the inline path
        ids.append(orjson.loads(frame)[1])
    prefix, first = ids[0].rsplit("-", 1)
    assert ids == [f"{prefix}-{int(first) + n}" for n in range(6)]
