"""Engine events: snapshots are published only for chargers a page watches."""

from __future__ import annotations

from channels.layers import InMemoryChannelLayer

from simulator import contract
from simulator.events import EventPublisher
from tests.engine import runtime_charger


async def received(layer, channel):
    messages = []
    while True:
        try:
            messages.append(layer.channels[channel].get_nowait()[1])
        except Exception:
            return messages


async def test_only_watched_chargers_are_published_until_the_lease_runs_out():
    layer = InMemoryChannelLayer()
    publisher = EventPublisher()
    watched = runtime_charger("EV-W", "ws://127.0.0.1:1", evses=1)
    unwatched = runtime_charger("EV-U", "ws://127.0.0.1:1", evses=1)
    watched.spec.db_id, unwatched.spec.db_id = 1, 2
    channel = await layer.new_channel()
    for pk in (1, 2):
        await layer.group_add(contract.charger_group(pk), channel)

    publisher.watch("EV-W")
    for charger in (watched, unwatched):
        publisher.on_change(charger)
        publisher.on_frame(charger, "out", '[2,"1","Heartbeat",{}]')
    await publisher.flush(layer)
    messages = await received(layer, channel)
    assert {m["type"] for m in messages} == {"charger.state", "charger.log"}
    assert {m.get("charger", {}).get("charge_point_id") for m in messages} >= {"EV-W"}
    assert all(m.get("charger", {}).get("charge_point_id") != "EV-U" for m in messages)
    assert len(publisher.frames["EV-U"]) == 1  # kept for a page that connects later

    publisher.watch("EV-W", lease=-1)  # the page went away and never renewed
    publisher.on_change(watched)
    await publisher.flush(layer)
    assert await received(layer, channel) == []
