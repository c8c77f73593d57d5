"""The engine's side of the API's event stream: nothing collected while nobody subscribes;
a subscription gets the status changes, transactions, frames and connection events it
asked for, until its lease runs out or it unsubscribes."""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from simulator import contract
from simulator.core.drops import DROPPED
from simulator.core.evse import ConnectorStatus
from simulator.core.transactions import LocalTransaction
from simulator.ocpp16 import wire
from simulator.runtime import event_stream
from simulator.runtime.event_stream import EventStream
from simulator.runtime.events import EventPublisher
from tests.engine import runtime_charger

GROUP = "events.test1"


def charger(cp_id: str, pk: int, location: int | None = 1) -> Any:
    made = runtime_charger(cp_id, "ws://127.0.0.1:1", evses=2)
    made.spec.db_id, made.spec.location_id = pk, location
    return made


def subscribe(stream: EventStream, chargers: list[Any], **fields: Any) -> None:
    message = contract.events_subscribe(
        fields.pop("group", GROUP),
        chargers=fields.pop("pks", None),
        locations=fields.pop("locations", None),
        kinds=fields.pop("kinds", contract.STREAM_KINDS),
        lease=fields.pop("lease", 90.0),
    )
    assert stream.subscribe(dict(message), chargers)


async def batches(layer: InMemoryChannelLayer, channel: str) -> list[dict[str, Any]]:
    found = []
    while True:
        try:
            found.append(layer.channels[channel].get_nowait()[1])
        except Exception:
            return found


async def listening(group: str = GROUP) -> tuple[InMemoryChannelLayer, str]:
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return layer, channel


def test_nothing_is_collected_while_nobody_subscribes(monkeypatch):
    publisher = EventPublisher()
    one = charger("ES-1", 1)
    touched = []
    for name in ("on_change", "on_transaction", "on_frame", "on_connection"):
        monkeypatch.setattr(EventStream, name, lambda *args, n=name: touched.append(n))
    publisher.on_change(one)
    publisher.on_frame(one, "out", '[2,"1","Heartbeat",{}]', "1", "Heartbeat")
    publisher.on_transaction(one, LocalTransaction(1, "TAG", 0, "2026-01-01T00:00:00Z"))
    publisher.on_connection(one, "connected", {})
    assert touched == []
    assert not publisher.stream.active and publisher.stream.subscriptions == {}


async def test_a_subscription_gets_what_it_asked_for_and_only_that():
    layer, channel = await listening()
    stream = EventStream(shard=3)
    one, two, elsewhere = charger("ES-1", 1), charger("ES-2", 2), charger("ES-3", 3, location=9)
    subscribe(stream, [one, two, elsewhere], pks=[1, 3], kinds=["status", "transaction", "frame"])

    one.evses[0].status = ConnectorStatus.PREPARING
    stream.on_change(one)
    stream.on_change(one)  # nothing changed since: no event
    two.evses[0].status = ConnectorStatus.PREPARING
    stream.on_change(two)  # not asked for
    tx = LocalTransaction(1, "TAG-1", 1234, "2026-01-01T00:00:00Z")
    stream.on_transaction(one, tx)
    tx.transaction_id = 77
    stream.on_transaction(one, tx)
    start = '[2,"m1","StartTransaction",{}]'
    stream.on_frame(one, "out", start, "m1", "StartTransaction")
    stream.on_connection(one, "closed", {"code": 1000})  # kind not asked for
    await stream.flush(layer)

    [batch] = await batches(layer, channel)
    assert batch["type"] == contract.EVENT_EVENTS_BATCH and batch["shard"] == 3
    assert batch["dropped"] == 0
    events = batch["events"]
    assert [(e["kind"], e["charge_point_id"]) for e in events] == [
        ("status", "ES-1"),
        ("transaction", "ES-1"),
        ("transaction", "ES-1"),
        ("frame", "ES-1"),
    ]
    assert events[0]["data"] == {
        "connector_id": 1,
        "status": "Preparing",
        "previous": "Available",
        "error_code": "NoError",
    }
    assert events[0]["charger_id"] == 1 and events[0]["location_id"] == 1
    assert [e["data"]["event"] for e in events[1:3]] == ["started", "confirmed"]
    assert events[2]["data"]["transaction_id"] == 77
    assert events[2]["data"]["meter_start"] == 1234
    assert events[3]["data"] == {
        "direction": "out",
        "message_id": "m1",
        "action": "StartTransaction",
        "payload": start,
        "size": len(start),
    }
    await stream.flush(layer)
    assert await batches(layer, channel) == []  # nothing new: nothing sent


async def test_a_location_filter_and_a_charger_loaded_later():
    layer, channel = await listening()
    stream = EventStream()
    north = charger("ES-N", 1, location=1)
    south = charger("ES-S", 2, location=2)
    subscribe(stream, [north], locations=[2], kinds=["status", "connection"])
    stream.on_connection(north, "connected", {"url": "ws://x"})
    stream.on_connection(south, "connected", {"url": "ws://x"})
    stream.on_change(south)  # loaded after the subscription: its statuses are news
    await stream.flush(layer)
    [batch] = await batches(layer, channel)
    assert [(e["kind"], e["charge_point_id"]) for e in batch["events"]] == [
        ("connection", "ES-S"),
        ("status", "ES-S"),
        ("status", "ES-S"),
    ]
    assert batch["events"][0]["data"] == {"event": "connected", "detail": {"url": "ws://x"}}
    assert [e["data"]["previous"] for e in batch["events"][1:]] == [None, None]


async def test_a_frame_carries_no_authorization_key_and_a_huge_one_is_cut(monkeypatch):
    layer, channel = await listening()
    stream = EventStream()
    one = charger("ES-K", 1)
    subscribe(stream, [one], kinds=["frame"])
    secret = '[2,"k","ChangeConfiguration",{"key":"AuthorizationKey","value":"hunter22"}]'
    stream.on_frame(one, "in", secret, "k", "ChangeConfiguration")
    monkeypatch.setattr(event_stream, "PAYLOAD_CHARS", 10)
    stream.on_frame(one, "in", "x" * 50, "", "")
    await stream.flush(layer)
    [batch] = await batches(layer, channel)
    key, huge = (e["data"] for e in batch["events"])
    assert "hunter22" not in str(batch)
    assert '"value":"********"' in key["payload"]
    assert huge["payload"] == "x" * 10 and huge["size"] == 50


async def test_a_frame_the_charger_could_not_read_or_refused_says_why():
    """What the charger made of each frame from the CSMS, for a reader that has only the
    frame (a scenario's verdict): no OCPP-J message at all (`malformed`, quoting none of
    it), an answer it threw away (`refused`), or neither."""
    layer, channel = await listening()
    stream = EventStream()
    one = charger("ES-M", 1)
    subscribe(stream, [one], kinds=["frame"])
    stream.on_frame(one, "in", '[3,"m1",{', "", "")
    stream.on_frame(one, "in", '[3,"m2"]', "m2", "Heartbeat")
    stream.on_frame(one, "in", "\x07\x1b[2J", "", "")
    stream.on_frame(one, "in", wire.BINARY_FRAME_NOTE.format(size=3), "", "")
    stream.on_frame(one, "in", '[3,"m3",{"currentTime":123}]', "m3", "Heartbeat")
    stream.on_frame(one, "in", '[3,"m4",{"currentTime":"2026-01-01T00:00:00Z"}]', "m4", "Heartbeat")
    stream.on_frame(one, "out", "[2,", "", "")  # the charger's own frames are not judged
    await stream.flush(layer)
    [batch] = await batches(layer, channel)
    said = [(e["data"].get("malformed"), e["data"].get("refused")) for e in batch["events"]]
    assert said == [
        ("is not JSON (unexpected end of data at character 9)", None),
        ("is a CALLRESULT of 2 elements (3 expected)", None),
        ("is not JSON (unexpected character, expected a JSON value at character 0)", None),
        ("is a binary frame (OCPP-J uses text frames)", None),
        (None, "breaks the OCPP 1.6 schema: currentTime: 123 is not of type 'string'"),
        (None, None),
        (None, None),
    ]


async def test_publishing_stops_when_the_lease_runs_out_or_on_unsubscribe():
    layer, channel = await listening()
    stream = EventStream()
    one = charger("ES-L", 1)
    subscribe(stream, [one], lease=0.000001)
    await stream.flush(layer)  # the lease ran out: forgotten
    assert not stream.active and stream.subscriptions == {}
    subscribe(stream, [one])
    subscribe(stream, [one], group="events.other")
    stream.unsubscribe(GROUP)
    assert stream.active  # the other one still listens
    stream.unsubscribe("events.other")
    assert not stream.active
    stream.on_connection(one, "connected", {})  # (callers test `active` first anyway)
    await stream.flush(layer)
    assert await batches(layer, channel) == []


async def test_a_stream_that_falls_behind_loses_its_oldest_events_counted(monkeypatch):
    monkeypatch.setattr(event_stream, "PENDING_LIMIT", 5)
    layer, channel = await listening()
    stream = EventStream()
    one = charger("ES-D", 1)
    subscribe(stream, [one], kinds=["frame"])
    before = DROPPED["event_stream"]
    for n in range(8):
        stream.on_frame(one, "out", f"[{n}]", str(n), "Heartbeat")
    await stream.flush(layer)
    [batch] = await batches(layer, channel)
    assert [e["data"]["message_id"] for e in batch["events"]] == ["3", "4", "5", "6", "7"]
    assert batch["dropped"] == 3
    assert DROPPED["event_stream"] - before == 3  # the metric counts them too
    # The running count, dropped ones included: the web side reads a batch lost on the
    # way as a gap in it.
    assert batch["through"] == 8
    stream.on_frame(one, "out", "[8]", "8", "Heartbeat")
    await stream.flush(layer)
    [batch] = await batches(layer, channel)
    assert (batch["through"], batch["dropped"], batch.get("stopping")) == (9, 0, None)


@pytest.mark.parametrize(
    "change",
    [
        {"subscription": "charger.1"},  # not a stream's group
        {"subscription": "events.bad name"},
        {"kinds": ["status", "gossip"]},
        {"lease": 0},
        {"lease": "long"},
        {"chargers": ["one"]},
        {"locations": "all"},
    ],
)
def test_a_malformed_subscription_changes_nothing(change):
    stream = EventStream()
    message = dict(
        contract.events_subscribe(GROUP, chargers=None, locations=None, kinds=["frame"], lease=9)
    )
    message.update(change)
    assert not stream.subscribe(message, [])
    assert not stream.active


def test_a_lease_is_capped():
    stream = EventStream()
    message = contract.events_subscribe(GROUP, chargers=None, locations=None, kinds=[], lease=1e9)
    assert stream.subscribe(dict(message), [])
    import time

    left = stream.subscriptions[GROUP].expires - time.monotonic()
    assert left <= event_stream.MAX_LEASE_SECONDS


async def test_the_last_flush_tells_every_subscription_that_the_worker_stops():
    layer, channel = await listening()
    stream = EventStream(shard=1)
    one = charger("ES-S", 1)
    subscribe(stream, [one], kinds=["frame"])
    await stream.flush(layer)  # nothing pending: nothing sent
    assert await batches(layer, channel) == []
    await stream.flush(layer, stopping=True)
    [batch] = await batches(layer, channel)
    assert (batch["shard"], batch["events"], batch.get("stopping")) == (1, [], True)
