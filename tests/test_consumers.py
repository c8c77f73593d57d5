"""The dashboard's WebSocket consumers against a real engine on the in-memory channel layer:
who may connect, the snapshot on connect, live changes, commands and their answers."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.test import Client

from chargers.dashboard import consumers
from chargers.dashboard.routing import websocket_urlpatterns
from scripts.reachable import reachable
from simulator import contract
from simulator.core.charge_point import BootState
from simulator.runtime.events import EventPublisher
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.cast import make_charger, make_location, make_superuser, make_vehicle
from tests.engine import COMPACT, loaded, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("flushed_layer")]

SITE = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]


@pytest.fixture
async def user():
    return await sync_to_async(make_superuser)()


@pytest.fixture
async def engine(csms):
    """A simulator worker with CP-DASH (online) and CP-IDLE (never connected)."""
    await sync_to_async(make_vehicle)()
    await sync_to_async(make_charger)("CP-DASH", evses=2, csms_url=csms.url)
    await sync_to_async(make_charger)("CP-IDLE", evses=1, csms_url=csms.url, auto_connect=False)
    service = Simulator(
        RunOptions(
            tick_seconds=0.1,
            checkpoint_seconds=0.1,
            reconnect_cap=0.5,
            only_ids=["CP-DASH", "CP-IDLE"],
        ),
        listener=EventPublisher(rate=20),
    )
    await service.start(channels=True)  # events and commands too; stop() ends them
    charger = loaded(service, "CP-DASH")
    await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="CP-DASH boot")
    try:
        yield service
    finally:
        await service.stop()


def page(path: str, user: Any) -> WebsocketCommunicator:
    """A page's socket as the auth middleware would hand it to the consumer."""
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path, headers=SITE)
    communicator.scope["user"] = user
    return communicator


async def receive_until(
    communicator: WebsocketCommunicator, matches: Callable[[dict], bool], timeout: float = 5.0
) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError("the expected message did not arrive")
        try:
            message = await communicator.receive_json_from(timeout=left)
        except TimeoutError:
            raise AssertionError("the expected message did not arrive") from None
        if matches(message):
            return message


async def drain(communicator: WebsocketCommunicator, seconds: float) -> list[dict]:
    """Every message that arrives within `seconds` (a receive timeout would end the app)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    messages = []
    while loop.time() < deadline:
        if not await communicator.receive_nothing(timeout=0.05, interval=0.01):
            messages.append(await communicator.receive_json_from())
    return messages


def evse_status(connector_id: int, status: str) -> Callable[[dict], bool]:
    def matches(message: dict) -> bool:
        return message["type"] == "charger.state" and any(
            e["connector_id"] == connector_id and e["status"] == status
            for e in message["charger"]["evses"]
        )

    return matches


def result_of(request_id: str) -> Callable[[dict], bool]:
    return lambda m: m["type"] == "command.result" and m["request_id"] == request_id


async def session_cookie(user) -> bytes:
    client = Client()
    await sync_to_async(client.force_login)(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


# -- who may connect -----------------------------------------------------------------------


async def refused_with(communicator: WebsocketCommunicator) -> int:
    """The close code of a socket refused as the consumer refuses one: accepted, then
    closed at once with a code, because a close before the accept reaches a browser as
    Daphne's bare HTTP 403 (tests/test_dashboard_socket_codes.py sees it over TCP)."""
    connected, _ = await communicator.connect()
    assert connected
    closed = await communicator.receive_output()
    assert closed["type"] == "websocket.close", closed
    return closed["code"]


async def test_an_anonymous_connection_is_refused():
    from chargesim_site.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/fleet/", headers=SITE)
    assert await refused_with(communicator) == 4401


async def test_what_a_refused_socket_sends_before_its_close_subscribes_nothing(engine):
    """The page sends its watch list as soon as the socket opens: on a refused socket it
    arrives after the close went out, and must neither subscribe a logged-out page nor
    break the consumer (Daphne logs that as an error)."""
    from django.contrib.auth.models import AnonymousUser

    from chargers.models import Charger

    pk = await sync_to_async(lambda: Charger.objects.get(charge_point_id="CP-DASH").pk)()
    communicator = page(f"/ws/chargers/{pk}/", AnonymousUser())
    assert await refused_with(communicator) == 4401
    await communicator.send_json_to({"type": "watch", "chargers": [pk]})
    await communicator.send_json_to(
        {"type": "command", "request_id": "r1", "charger": pk, "command": "plug_in"}
    )
    # A watch would bring the charger's snapshot within a tick; a command, its result.
    assert await communicator.receive_nothing(timeout=1.0)
    assert not get_channel_layer().groups.get(contract.charger_group(pk))
    await communicator.disconnect()  # raises what the consumer raised meanwhile, if anything


async def test_a_logged_in_session_connects_from_the_site_but_not_from_another_origin(user):
    from chargesim_site.asgi import application

    cookie = await session_cookie(user)
    good = WebsocketCommunicator(application, "/ws/fleet/", headers=[*SITE, (b"cookie", cookie)])
    connected, _ = await good.connect()
    assert connected
    assert (await good.receive_json_from())["type"] == "hello"
    await good.disconnect()

    evil = WebsocketCommunicator(
        application,
        "/ws/fleet/",
        headers=[(b"origin", b"http://evil.example"), (b"cookie", cookie)],
    )
    connected, _ = await evil.connect()
    assert not connected


async def handshake(user, host: bytes, origin: bytes, scheme: str = "ws") -> bool:
    """Whether the whole ASGI app accepts a logged-in page's socket with these headers."""
    from chargesim_site.asgi import application

    cookie = await session_cookie(user)
    communicator = WebsocketCommunicator(
        application,
        "/ws/fleet/",
        headers=[(b"host", host), (b"origin", origin), (b"cookie", cookie)],
    )
    communicator.scope["scheme"] = scheme
    connected, _ = await communicator.connect()
    if connected:
        await communicator.disconnect()
    return connected


async def test_a_socket_from_a_page_on_another_port_of_the_same_host_is_refused(user):
    assert not await handshake(user, b"127.0.0.1:8000", b"http://127.0.0.1:8001")
    assert not await handshake(user, b"localhost:8000", b"http://localhost")


async def test_a_socket_from_the_same_scheme_host_and_port_is_accepted(user):
    assert await handshake(user, b"127.0.0.1:8000", b"http://127.0.0.1:8000")
    assert await handshake(user, b"localhost:8000", b"https://localhost:8000", scheme="wss")
    # The right host and port, but a plain-HTTP page talking to the secure socket.
    assert not await handshake(user, b"localhost:8000", b"http://localhost:8000", scheme="wss")


async def test_a_socket_from_an_origin_in_csrf_trusted_origins_is_accepted(user, settings):
    assert not await handshake(user, b"127.0.0.1:8000", b"https://console.example.com")
    settings.CSRF_TRUSTED_ORIGINS = ["https://console.example.com"]
    assert await handshake(user, b"127.0.0.1:8000", b"https://console.example.com")


async def test_a_socket_to_a_host_not_in_allowed_hosts_or_without_origin_is_refused(user):
    assert not await handshake(user, b"evil.example:8000", b"http://evil.example:8000")
    from chargesim_site.asgi import application

    communicator = WebsocketCommunicator(
        application,
        "/ws/fleet/",
        headers=[(b"host", b"127.0.0.1"), (b"cookie", await session_cookie(user))],
    )
    assert not (await communicator.connect())[0]


async def test_a_page_of_a_charger_that_does_not_exist_is_refused(user):
    communicator = page("/ws/chargers/999999/", user)
    assert await refused_with(communicator) == 4404


# -- engine to page ------------------------------------------------------------------------


async def test_the_charger_page_gets_a_full_snapshot_and_the_message_log_on_connect(engine, user):
    pk = engine.store.get("CP-DASH").spec.db_id
    communicator = page(f"/ws/chargers/{pk}/", user)
    assert (await communicator.connect())[0]
    state = await receive_until(communicator, lambda m: m["type"] == "charger.state")
    assert state["charger"]["charge_point_id"] == "CP-DASH"
    assert state["charger"]["link"] == "online"
    assert state["charger"]["boot"] == "Accepted"
    assert [e["status"] for e in state["charger"]["evses"]] == ["Available", "Available"]
    log = await receive_until(communicator, lambda m: m["type"] == "charger.log" and m["full"])
    assert any('"BootNotification"' in text for _t, _d, text in log["frames"])
    await communicator.disconnect()


async def test_an_engine_state_change_reaches_the_page_watching_that_charger(engine, user):
    charger = engine.store.get("CP-DASH")
    communicator = page("/ws/fleet/", user)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "watch", "chargers": [charger.spec.db_id]})
    await receive_until(communicator, evse_status(1, "Available"))

    charger.plug_in(2, COMPACT, soc=35)

    state = await receive_until(communicator, evse_status(2, "Preparing"))
    assert state["charger"]["evses"][1]["soc"] == 35.0
    assert state["charger"]["evses"][1]["vehicle"] == COMPACT.name
    await communicator.disconnect()


async def test_a_page_that_stopped_watching_a_charger_gets_no_more_of_its_changes(engine, user):
    charger = engine.store.get("CP-DASH")
    communicator = page("/ws/fleet/", user)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "watch", "chargers": [charger.spec.db_id]})
    await receive_until(communicator, lambda m: m["type"] == "charger.state")
    await communicator.send_json_to({"type": "watch", "chargers": []})
    await asyncio.sleep(0.1)  # let the consumer leave the group before the change

    charger.plug_in(1, COMPACT, soc=50)

    # Long enough for several publisher flushes at 20 a second.
    arrived = await drain(communicator, 0.5)
    assert [m for m in arrived if m["type"] == "charger.state"] == []
    assert charger.evse(1).status == "Preparing"
    await communicator.disconnect()


async def test_a_page_held_up_past_the_layers_expiry_joins_its_groups_again(
    engine, user, monkeypatch
):
    """The in-memory layer drops a channel from all its groups once a message has waited in
    it past its expiry (a minute): a web process held up that long (a laptop asleep with
    `make run`'s dashboard open, a consumer busy) left its pages without live updates for
    good. The renewal renewed the workers' lease, but the page was in no group any more."""
    import time

    monkeypatch.setattr(contract, "WATCH_RENEW_SECONDS", 0.2)
    layer = get_channel_layer()
    monkeypatch.setattr(layer, "expiry", 0.5)
    dropped: list[str] = []
    drop = layer._remove_from_groups

    def remove_from_groups(channel: str) -> None:  # the layer's own, seen doing it
        dropped.append(channel)
        drop(channel)

    monkeypatch.setattr(layer, "_remove_from_groups", remove_from_groups)
    charger = engine.store.get("CP-DASH")
    pk = charger.spec.db_id
    communicator = page("/ws/fleet/", user)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "watch", "chargers": [pk]})
    state = await receive_until(communicator, evse_status(1, "Available"))
    (channel,) = layer.groups[contract.charger_group(pk)]
    # They wait in its channel while the process is held up. Sent to the channel itself:
    # the layer's group_send yields to the page's consumer, which may take them first.
    for _ in range(3):
        await layer.send(channel, state)
    time.sleep(1.0)  # noqa: ASYNC251 - the whole process held up, as a laptop asleep

    def joined_again() -> bool:
        groups = (contract.charger_group(pk), contract.FLEET_SUMMARY_GROUP)
        return channel in dropped and all(channel in layer.groups.get(g, {}) for g in groups)

    await wait_until(joined_again, message="the page to join its groups again")
    charger.plug_in(2, COMPACT, soc=35)
    await receive_until(communicator, evse_status(2, "Preparing"))
    await communicator.disconnect()


async def test_the_fleet_page_adds_up_the_counts_of_every_shard(user):
    communicator = page("/ws/fleet/", user)
    assert (await communicator.connect())[0]
    layer = get_channel_layer()
    for shard, charging in ((0, 3), (1, 4)):
        await layer.group_send(
            contract.FLEET_SUMMARY_GROUP,
            {
                "type": contract.EVENT_FLEET_SUMMARY,
                "shard": shard,
                "shards": 2,
                "chargers": 5,
                "statuses": {"Charging": charging, "Available": 10 - charging},
                "links": {"online": 5},
                "power_w": 1000.0 * charging,
            },
        )
    totals = await receive_until(communicator, lambda m: m["type"] == "fleet.counts")
    totals = await receive_until(communicator, lambda m: m["type"] == "fleet.counts")
    assert totals["shards"] == 2
    assert totals["chargers"] == 10
    assert totals["statuses"] == {"Charging": 7, "Available": 13}
    assert totals["links"] == {"online": 10}
    assert totals["power_w"] == 7000.0
    await communicator.disconnect()


def one_charger_summary(shard: int, started: float) -> dict[str, Any]:
    """A fleet summary of one of two workers, with one idle charger online."""
    return {
        "type": contract.EVENT_FLEET_SUMMARY,
        "shard": shard,
        "shards": 2,
        "chargers": 1,
        "statuses": {"Available": 1},
        "links": {"online": 1},
        "power_w": 0.0,
        "started": started,
    }


async def asked_of_worker(layer, engine: str, timeout: float = 5) -> dict:
    """The next command a page sent a worker, past the summary it asks for as it opens."""
    async with asyncio.timeout(timeout):
        while (message := await layer.receive(engine))["command"] == contract.SUMMARY:
            pass
    return message


REDIS_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379")


@pytest.mark.redis
@pytest.mark.skipif(not reachable(REDIS_URL), reason=f"no Redis at {REDIS_URL}")
async def test_a_page_open_past_redis_group_expiry_is_still_in_its_groups(user, monkeypatch):
    """channels-redis forgets a group's members after its group expiry (a day): a
    dashboard page left open that long got no more live updates, saying nothing."""
    from channels.layers import channel_layers

    from simulator.runtime.channel_layers import CountingRedisChannelLayer
    from tests.process import redis_database

    monkeypatch.setattr(contract, "WATCH_RENEW_SECONDS", 0.2)
    layer = CountingRedisChannelLayer(
        hosts=[redis_database(REDIS_URL)], group_expiry=1, prefix=f"lease{os.getpid()}"
    )
    monkeypatch.setitem(channel_layers.backends, "default", layer)
    row = await sync_to_async(make_charger)("CP-DAY", evses=1)
    state = {"type": "charger.state", "charger": {"id": row.pk, "evses": []}}
    communicator = page("/ws/fleet/", user)
    try:
        assert (await communicator.connect())[0]
        await communicator.send_json_to({"type": "watch", "chargers": [row.pk]})

        async def published() -> bool:
            await layer.group_send(contract.charger_group(row.pk), state)
            return not await communicator.receive_nothing(timeout=0.2)

        async with asyncio.timeout(10):
            while not await published():  # until the page is in its charger's group
                pass
        await communicator.receive_json_from()
        await asyncio.sleep(2.5)  # past the group expiry, as a day for a page left open
        assert await published(), "the page is no longer in its charger's group"
    finally:
        await communicator.disconnect()
        await layer.flush()


async def test_a_page_renews_its_watch_after_a_renewal_the_layer_failed(user, monkeypatch):
    """Redis away for a moment as a renewal was sent: the error ended the page's renewals
    for good, and 90 s later the workers stopped publishing its chargers, the page still
    open and saying nothing."""
    monkeypatch.setattr(contract, "WATCH_RENEW_SECONDS", 0.2)
    row = await sync_to_async(make_charger)("CP-LEASE", evses=1)
    layer = get_channel_layer()
    engine = await layer.new_channel()  # hears what the page asks the worker of its shard
    await layer.group_add(contract.engine_group(0), engine)
    send = layer.group_send
    failed: list[str] = []

    async def group_send(group: str, message: dict) -> None:
        if message.get("command") == contract.WATCH and not failed:
            failed.append(group)  # Redis away this once: what redis-py raises then
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        await send(group, message)

    monkeypatch.setattr(layer, "group_send", group_send)
    communicator = page("/ws/fleet/", user)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "watch", "chargers": [row.pk]})
    assert (await asked_of_worker(layer, engine))["command"] == contract.SNAPSHOT
    renewed = await asked_of_worker(layer, engine)
    assert failed, "no renewal failed"
    assert (renewed["command"], renewed["args"]["chargers"]) == (contract.WATCH, [row.pk])
    await communicator.disconnect()


async def test_a_worker_restarted_is_asked_again_for_the_chargers_a_page_shows(user, settings):
    """The page's watch lived in the killed worker's memory: the restarted one sent the
    page nothing of its chargers until the next renewal (30 s), and the page showed their
    state from before the crash, green and online."""
    settings.CHARGESIM_SHARDS = 2
    ids = {
        shard: next(f"R-{n}" for n in range(100) if contract.shard_of(f"R-{n}", 2) == shard)
        for shard in (0, 1)
    }
    rows = {
        shard: await sync_to_async(make_charger)(cp_id, evses=1) for shard, cp_id in ids.items()
    }
    layer = get_channel_layer()
    engine = await layer.new_channel()  # hears what the page asks the worker of shard 1
    await layer.group_add(contract.engine_group(1), engine)
    communicator = page("/ws/fleet/", user)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "watch", "chargers": [r.pk for r in rows.values()]})
    asked = await asked_of_worker(layer, engine)
    assert asked["command"] == contract.SNAPSHOT and asked["args"]["chargers"] == [rows[1].pk]

    async def summary(shard: int, started: float) -> dict:
        await layer.group_send(contract.FLEET_SUMMARY_GROUP, one_charger_summary(shard, started))
        return await receive_until(communicator, lambda m: m["type"] == "fleet.counts")

    only_zero = await summary(0, 100.0)
    # Not heard yet is not gone: the worker of shard 1 answers the page's snapshots.
    assert (only_zero["shards"], only_zero.get("unreported", [])) == (1, [])
    both = await summary(1, 100.0)
    assert both["shards"] == 2 and "unreported" not in both
    # The same worker: nothing asked again (the page's counts go out after any request, and
    # the in-memory layer queues a message as it is sent: none is waiting).
    await summary(1, 100.0)
    with pytest.raises(TimeoutError):
        await asked_of_worker(layer, engine, 0.1)
    await summary(1, 200.0)  # restarted
    again = await asked_of_worker(layer, engine)
    assert again["command"] == contract.SNAPSHOT and again["args"]["chargers"] == [rows[1].pk]
    await communicator.disconnect()


async def test_the_rows_of_a_worker_silent_for_the_stale_time_say_no_live_data(
    user, settings, monkeypatch
):
    """A worker not heard yet on a page just opened only has not sent its summary yet (one
    every 5 s): its rows, live from its snapshots, were marked "no live data" and stayed so
    while it reported. Only a worker silent for the stale time, since its last summary or
    since the page connected, is gone."""
    settings.CHARGESIM_SHARDS = 2
    now = 1000.0
    clock = SimpleNamespace(monotonic=lambda: now)
    monkeypatch.setattr(consumers, "time", clock)
    ids = {
        shard: next(f"S-{n}" for n in range(100) if contract.shard_of(f"S-{n}", 2) == shard)
        for shard in (0, 1)
    }
    rows = {
        shard: await sync_to_async(make_charger)(cp_id, evses=1) for shard, cp_id in ids.items()
    }
    layer = get_channel_layer()
    communicator = page("/ws/fleet/", user)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "watch", "chargers": [r.pk for r in rows.values()]})

    async def summary(shard: int) -> dict:
        await layer.group_send(contract.FLEET_SUMMARY_GROUP, one_charger_summary(shard, 100.0))
        return await receive_until(communicator, lambda m: m["type"] == "fleet.counts")

    assert (await summary(0)).get("unreported", []) == []
    now += consumers.SUMMARY_STALE_SECONDS - 1
    assert (await summary(0))["unreported"] == []
    now += 1  # shard 1 silent since the page connected: gone
    assert (await summary(0))["unreported"] == [rows[1].pk]
    assert "unreported" not in await summary(1)
    now += consumers.SUMMARY_STALE_SECONDS  # shard 0 silent since its last summary
    assert (await summary(1))["unreported"] == [rows[0].pk]
    await communicator.disconnect()


async def test_the_fleet_counts_with_a_worker_gone_say_how_many_chargers_there_are_in_all(
    user, settings, monkeypatch
):
    """With shard 0 stopped the page's counters showed only shard 1's chargers, and "1 of 2
    workers reporting" did not say how many chargers that left out: the database knows."""
    settings.CHARGESIM_SHARDS = 2
    now = 1000.0
    monkeypatch.setattr(consumers, "time", SimpleNamespace(monotonic=lambda: now))
    on = {
        shard: [f"T-{n}" for n in range(40) if contract.shard_of(f"T-{n}", 2) == shard]
        for shard in (0, 1)
    }
    for cp_id in on[0][:3] + on[1][:1]:
        await sync_to_async(make_charger)(cp_id, evses=1)
    await sync_to_async(make_charger)(on[0][3], evses=1, enabled=False)  # runs nowhere
    layer = get_channel_layer()
    communicator = page("/ws/fleet/", user)
    assert (await communicator.connect())[0]
    now += consumers.SUMMARY_STALE_SECONDS  # shard 0 silent since the page connected
    await layer.group_send(contract.FLEET_SUMMARY_GROUP, one_charger_summary(1, 100.0))
    counts = await receive_until(communicator, lambda m: m["type"] == "fleet.counts")
    assert (counts["chargers"], counts["shards"], counts["of"]) == (1, 1, 2)
    assert counts["missing_shards"] == [0]
    assert (counts["chargers_enabled"], counts["chargers_on_missing_shards"]) == (4, 3)
    await communicator.disconnect()


async def test_a_page_just_opened_waits_for_each_workers_first_summary_before_partial(
    user, settings, monkeypatch
):
    """Each worker sends its summary at least every 5 s, one after the other: a page with
    two said "1 of 2 workers reporting: the figures are partial" at every opening, until
    the second one's came. A worker not heard yet is awaited once it had its turn
    (FIRST_SUMMARY_SECONDS after the page connected), and its rows only once it is gone
    (SUMMARY_STALE_SECONDS, as before)."""
    settings.CHARGESIM_SHARDS = 2
    now = 1000.0
    clock = SimpleNamespace(monotonic=lambda: now)
    monkeypatch.setattr(consumers, "time", clock)
    ids = {
        shard: next(f"F-{n}" for n in range(100) if contract.shard_of(f"F-{n}", 2) == shard)
        for shard in (0, 1)
    }
    depot = await sync_to_async(make_location)("Depot")
    rows = {
        shard: await sync_to_async(make_charger)(cp_id, evses=1, location=depot)
        for shard, cp_id in ids.items()
    }
    layer = get_channel_layer()
    fleet = page("/ws/fleet/", user)
    assert (await fleet.connect())[0]
    await fleet.send_json_to({"type": "watch", "chargers": [r.pk for r in rows.values()]})
    site = page(f"/ws/locations/{depot.pk}/", user)
    assert (await site.connect())[0]
    monkeypatch.setattr(consumers.LocationsConsumer, "ack_timeout", 0.2)
    listing = page("/ws/locations/", user)
    assert (await listing.connect())[0]
    await receive_until(listing, lambda m: m["type"] == "locations.unknown")

    async def counts(shard: int) -> dict:
        await layer.group_send(contract.FLEET_SUMMARY_GROUP, one_charger_summary(shard, 100.0))
        return await receive_until(fleet, lambda m: m["type"] == "fleet.counts")

    async def power(shard: int) -> tuple[dict, dict]:
        await layer.group_send(
            contract.location_group(depot.pk), site_summary(shard, depot.pk, 7000, 1)
        )
        return (
            await receive_until(site, lambda m: m["type"] == "location.power"),
            await receive_until(listing, lambda m: m["type"] == "location.power"),
        )

    def partial(total: dict) -> bool:  # what the pages show the note for
        return total["of"] > 1 and total["shards"] < total["of"]

    first = await counts(0)
    assert not partial(first) and "unreported" not in first
    assert not any(partial(total) for total in await power(0))
    now += consumers.FIRST_SUMMARY_SECONDS - 0.1
    assert not partial(await counts(0))
    both = await counts(1)
    assert (both["shards"], both["of"]) == (2, 2)

    # A worker that never reports after the page opened: the figures are partial once it
    # had its turn; its rows say "no live data" once it counts as gone.
    for communicator in (fleet, site, listing):
        await communicator.disconnect()
    now = 2000.0
    fleet = page("/ws/fleet/", user)
    assert (await fleet.connect())[0]
    await fleet.send_json_to({"type": "watch", "chargers": [r.pk for r in rows.values()]})
    site = page(f"/ws/locations/{depot.pk}/", user)
    assert (await site.connect())[0]
    listing = page("/ws/locations/", user)
    assert (await listing.connect())[0]
    await receive_until(listing, lambda m: m["type"] == "locations.unknown")
    assert not partial(await counts(0))
    now += consumers.FIRST_SUMMARY_SECONDS
    late = await counts(0)
    assert (late["shards"], late["of"], late["unreported"]) == (1, 2, [])
    assert all(partial(total) for total in await power(0))
    now += consumers.SUMMARY_STALE_SECONDS
    assert (await counts(0))["unreported"] == [rows[1].pk]
    for communicator in (fleet, site, listing):
        await communicator.disconnect()


def site_summary(
    shard: int, location_id: int, power_w: float, charging: int, limit_w: float | None = 50_000.0
) -> dict:
    return {
        "type": contract.EVENT_LOCATION_SUMMARY,
        "shard": shard,
        "shards": 2,
        "location_id": location_id,
        "power_w": power_w,
        "chargers": 3,
        "charging": charging,
        "statuses": {"Charging": charging},
        "links": {"online": 2, "offline": 1},
        "held_back": 1,
        "grid_limit_w": limit_w,
        "load_management": True,
        "at": 0.0,
    }


async def answer_summaries(layer, shard: int, location_id: int, power_w: float) -> None:
    """A worker of shard `shard` of 2, answering the pages' summary requests: one charger
    online at the site, drawing `power_w`."""
    channel = await layer.new_channel()
    await layer.group_add(contract.engine_group(shard), channel)
    site = {
        key: value
        for key, value in site_summary(shard, location_id, power_w, 1).items()
        if key not in ("type", "shard", "shards", "location_id", "at")
    }
    counts = {"chargers": 1, "statuses": {"Charging": 1}, "links": {"online": 1}}
    while True:
        asked = await layer.receive(channel)
        if asked["command"] == contract.SUMMARY:
            answer = contract.shard_summary(
                asked["request_id"],
                shard,
                2,
                {**counts, "power_w": power_w},  # type: ignore[typeddict-item]
                {location_id: site},  # type: ignore[dict-item]
                0.0,
                started=100.0,
            )
            await layer.send(asked["reply_channel"], answer)


async def test_a_page_opened_asks_every_worker_so_its_first_totals_are_whole(user, settings):
    """Each worker publishes its summary at least every 5 s: a page just opened heard one
    worker first and showed its share alone ("1 of 2 workers reporting", or, while waiting
    for the second, one worker's power as the site's). Pages ask every worker as they open,
    and add up what later summaries say with those answers."""
    settings.CHARGESIM_SHARDS = 2
    depot = await sync_to_async(make_location)("Depot")
    for cp_id in ("W-0", "W-1", "W-2", "W-3", "W-4", "W-5"):  # chargers on both shards
        await sync_to_async(make_charger)(cp_id, evses=1, location=depot)
    assert {contract.shard_of(f"W-{n}", 2) for n in range(6)} == {0, 1}
    layer = get_channel_layer()
    workers = [
        asyncio.create_task(answer_summaries(layer, shard, depot.pk, power))
        for shard, power in ((0, 7000.0), (1, 11000.0))
    ]
    try:
        fleet = page("/ws/fleet/", user)
        assert (await fleet.connect())[0]
        counts = await receive_until(fleet, lambda m: m["type"] == "fleet.counts")
        assert (counts["shards"], counts["of"], counts["power_w"]) == (2, 2, 18000.0)
        assert counts["chargers"] == 2 and counts["statuses"] == {"Charging": 2}

        site = page(f"/ws/locations/{depot.pk}/", user)
        assert (await site.connect())[0]
        power = await receive_until(site, lambda m: m["type"] == "location.power")
        assert (power["shards"], power["of"], power["power_w"]) == (2, 2, 18000.0)

        listing = page("/ws/locations/", user)
        assert (await listing.connect())[0]
        first = await receive_until(listing, lambda m: m["type"] == "location.power")
        assert (first["shards"], first["of"], first["power_w"]) == (2, 2, 18000.0)

        # Worker 0 publishes a change: the totals add it to worker 1's answer, not alone.
        await layer.group_send(
            contract.location_group(depot.pk), site_summary(0, depot.pk, 9000.0, 1)
        )
        for communicator in (site, listing):
            later = await receive_until(communicator, lambda m: m["type"] == "location.power")
            assert (later["shards"], later["power_w"]) == (2, 20000.0)
        for communicator in (fleet, site, listing):
            await communicator.disconnect()
    finally:
        for worker in workers:
            worker.cancel()


async def test_the_locations_list_adds_up_each_sites_power_over_the_shards(user, monkeypatch):
    monkeypatch.setattr(consumers.LocationsConsumer, "ack_timeout", 0.2)
    depot = await sync_to_async(make_location)("Depot")
    other = await sync_to_async(make_location)("Elsewhere")
    communicator = page("/ws/locations/", user)
    assert (await communicator.connect())[0]
    # No worker answers the first summary: the page says so rather than "connecting…".
    unknown = await receive_until(communicator, lambda m: m["type"] == "locations.unknown")
    assert unknown["message"] == "no simulator worker"

    layer = get_channel_layer()
    await layer.group_send(contract.location_group(depot.pk), site_summary(0, depot.pk, 7000, 1))
    await layer.group_send(contract.location_group(depot.pk), site_summary(1, depot.pk, 11000, 2))
    await layer.group_send(contract.location_group(other.pk), site_summary(0, other.pk, 500, 1))
    # A page gets a site's newest figures: the first shard's alone may be replaced by the
    # sum of both before it is written (backlog.py), so they are read until both count.
    latest: dict[int, dict] = {}
    while latest.get(depot.pk, {}).get("shards") != 2 or other.pk not in latest:
        message = await receive_until(communicator, lambda m: m["type"] == "location.power")
        latest[message["location_id"]] = message
    assert latest[depot.pk] == {
        "type": "location.power",
        "location_id": depot.pk,
        "power_w": 18000.0,
        "charging": 3,
        "chargers": 6,
        "online": 4,
        "shards": 2,
        "of": 2,
        # The site's settings as its newest summary says: every worker reports the same.
        "grid_limit_w": 50_000.0,
        "load_management": True,
    }
    assert (latest[other.pk]["power_w"], latest[other.pk]["shards"]) == (500, 1)
    await communicator.disconnect()


async def test_a_location_page_adds_up_power_but_takes_the_sites_settings_as_they_are(user):
    """Two workers each report the site's 50 kW limit: the page shows 50 kW, not 100; a
    limit edited meanwhile (the newer summary) replaces it, and null means none."""
    depot = await sync_to_async(make_location)("Depot")
    communicator = page(f"/ws/locations/{depot.pk}/", user)
    assert (await communicator.connect())[0]
    layer = get_channel_layer()
    group = contract.location_group(depot.pk)
    await layer.group_send(group, site_summary(0, depot.pk, 7000, 1))
    await layer.group_send(group, site_summary(1, depot.pk, 11000, 2))
    # The first shard's figures alone may be replaced by both's before they are written.
    both = await receive_until(
        communicator, lambda m: m["type"] == "location.power" and m["shards"] == 2
    )
    assert (both["power_w"], both["charging"], both["held_back"]) == (18000.0, 3, 2)
    assert (both["grid_limit_w"], both["load_management"]) == (50_000.0, True)
    await layer.group_send(group, site_summary(0, depot.pk, 7000, 1, limit_w=None))
    edited = await receive_until(communicator, lambda m: m["type"] == "location.power")
    assert (edited["power_w"], edited["grid_limit_w"]) == (18000.0, None)
    await communicator.disconnect()


async def test_a_site_counts_only_the_workers_that_run_its_chargers(user, settings, monkeypatch):
    """A worker reports a site only while it runs a charger there: a site whose chargers
    all ran on one of two workers said "1 of 2 workers reporting: the figures are partial"
    for ever, on the Locations list and on its own page."""
    settings.CHARGESIM_SHARDS = 2
    # Pages open for longer than their workers' first summaries take.
    monkeypatch.setattr(consumers, "FIRST_SUMMARY_SECONDS", 0.0)
    ids = [f"O-{n}" for n in range(100)]
    on = {shard: [i for i in ids if contract.shard_of(i, 2) == shard] for shard in (0, 1)}
    solo = await sync_to_async(make_location)("Solo")
    split = await sync_to_async(make_location)("Split")
    for cp_id, where in ((on[0][0], solo), (on[0][1], split), (on[1][0], split)):
        await sync_to_async(make_charger)(cp_id, evses=1, location=where)
    layer = get_channel_layer()
    listing = page("/ws/locations/", user)
    assert (await listing.connect())[0]
    own = page(f"/ws/locations/{solo.pk}/", user)
    assert (await own.connect())[0]
    await layer.group_send(contract.location_group(solo.pk), site_summary(0, solo.pk, 7000, 1))
    await layer.group_send(contract.location_group(split.pk), site_summary(0, split.pk, 500, 1))

    def power_of(pk: int) -> Callable[[dict[str, Any]], bool]:
        return lambda m: m["type"] == "location.power" and m.get("location_id") == pk

    whole = await receive_until(listing, power_of(solo.pk))
    assert (whole["shards"], whole["of"]) == (1, 1)
    partial = await receive_until(listing, power_of(split.pk))
    assert (partial["shards"], partial["of"]) == (1, 2)
    page_total = await receive_until(own, lambda m: m["type"] == "location.power")
    assert (page_total["shards"], page_total["of"]) == (1, 1)
    assert "unreported" not in page_total
    await listing.disconnect()
    await own.disconnect()


async def test_the_locations_list_starts_with_every_site_from_the_running_engine(engine, user):
    site = engine.store.get("CP-DASH").spec.location_id
    communicator = page("/ws/locations/", user)
    assert (await communicator.connect())[0]
    first = await receive_until(
        communicator, lambda m: m["type"] == "location.power" and m["location_id"] == site
    )
    assert (first["chargers"], first["online"], first["shards"], first["of"]) == (2, 1, 1, 1)
    assert (first["grid_limit_w"], first["load_management"]) == (None, False)
    await communicator.disconnect()


# -- page to engine ------------------------------------------------------------------------


async def command(communicator, request_id: str, charger_pk: int, name: str, **args) -> dict:
    await communicator.send_json_to(
        {
            "type": "command",
            "request_id": request_id,
            "charger": charger_pk,
            "command": name,
            "args": args,
        }
    )
    return await receive_until(communicator, result_of(request_id))


async def test_a_command_from_the_page_reaches_the_engine_and_is_answered(engine, user):
    charger = engine.store.get("CP-DASH")
    vehicle = await sync_to_async(make_vehicle)()
    pk = charger.spec.db_id
    communicator = page(f"/ws/chargers/{pk}/", user)
    assert (await communicator.connect())[0]

    answer = await command(
        communicator, "r1", pk, "plug_in", connector_id="1", vehicle_id=str(vehicle.pk), soc="42"
    )

    assert answer["ok"], answer
    assert answer["message"] == f"{vehicle} plugged into connector 1 at 42 %"
    assert charger.evse(1).battery is not None
    assert charger.evse(1).soc == 42.0
    await receive_until(communicator, evse_status(1, "Preparing"))

    answer = await command(communicator, "r2", pk, "present_id_tag", connector_id=1, id_tag="T-1")
    assert answer["ok"], answer
    await receive_until(communicator, evse_status(1, "Charging"))
    await communicator.disconnect()


async def test_a_page_left_open_after_its_user_logged_out_can_no_longer_drive(engine, user):
    """Logging out (in another tab) flushed the session, but a page already open kept its
    socket: it still received the charger's state and log and drove it. Its next command
    now closes the socket as logged out (4401), and the engine does nothing."""
    from chargesim_site.asgi import application

    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    charger = engine.store.get("CP-DASH")
    pk = charger.spec.db_id
    communicator = WebsocketCommunicator(
        application, f"/ws/chargers/{pk}/", headers=[*SITE, (b"cookie", cookie)]
    )
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from())["type"] == "hello"

    await sync_to_async(client.logout)()  # the same session, logged out elsewhere
    await communicator.send_json_to(
        {
            "type": "command",
            "request_id": "r1",
            "charger": pk,
            "command": "plug_in",
            "args": {"connector_id": 1, "soc": 30},
        }
    )
    while True:  # snapshots and log frames may come first
        output = await communicator.receive_output(5)
        assert output.get("type") != "websocket.send" or '"command.result"' not in output.get(
            "text", ""
        ), output
        if output["type"] == "websocket.close":
            break
    assert output["code"] == 4401
    assert charger.evse(1).battery is None


async def test_a_command_that_cannot_be_done_answers_with_a_clear_error(engine, user):
    dash = engine.store.get("CP-DASH").spec.db_id
    idle = engine.store.get("CP-IDLE").spec.db_id
    communicator = page("/ws/fleet/", user)
    assert (await communicator.connect())[0]

    unplug = await command(communicator, "u", dash, "unplug", connector_id=1)
    cut = await command(communicator, "c", idle, "cut_network", seconds=10)
    stop = await command(communicator, "s", dash, "stop", connector_id=2)
    fault = await command(communicator, "f", dash, "inject_fault", error_code="Broken")

    assert (unplug["ok"], unplug["message"]) == (False, "no vehicle plugged in")
    assert (cut["ok"], cut["message"]) == (False, "charger is offline")
    assert (stop["ok"], stop["message"]) == (False, "connector 2 has no transaction")
    assert (fault["ok"], fault["message"]) == (False, "'Broken' is not an OCPP 1.6 error code")
    await communicator.disconnect()


async def test_a_command_for_a_charger_no_worker_runs_says_so(user, monkeypatch):
    monkeypatch.setattr(consumers.DashboardConsumer, "ack_timeout", 0.2)
    charger = await sync_to_async(make_charger)("CP-ORPHAN", evses=1)
    communicator = page("/ws/fleet/", user)
    assert (await communicator.connect())[0]

    answer = await command(communicator, "r1", charger.pk, "connect")

    assert (answer["ok"], answer["message"]) == (
        False,
        "no simulator worker answered for this charger (none runs it, or it is stalled)",
    )
    await communicator.disconnect()


async def test_a_user_without_change_permission_may_watch_but_not_drive(engine, django_user_model):
    viewer = await sync_to_async(django_user_model.objects.create_user)("viewer", password="pw-1")
    charger = engine.store.get("CP-DASH")
    communicator = page(f"/ws/chargers/{charger.spec.db_id}/", viewer)
    assert (await communicator.connect())[0]
    hello = await communicator.receive_json_from()
    assert hello == {"type": "hello", "can_drive": False}

    answer = await command(communicator, "r1", charger.spec.db_id, "unplug", connector_id=1)

    assert not answer["ok"]
    assert "watch but not drive" in answer["message"]
    await communicator.disconnect()
    # With the permission the same user drives.
    permission = await sync_to_async(Permission.objects.get)(codename="change_charger")
    await sync_to_async(viewer.user_permissions.add)(permission)
    viewer = await sync_to_async(django_user_model.objects.get)(pk=viewer.pk)
    communicator = page(f"/ws/chargers/{charger.spec.db_id}/", viewer)
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from())["can_drive"] is True
    await communicator.disconnect()


async def test_a_user_without_the_view_permission_gets_no_message_log(engine, django_user_model):
    plain = await sync_to_async(django_user_model.objects.create_user)("plain", password="pw-1")
    charger = engine.store.get("CP-DASH")
    communicator = page(f"/ws/chargers/{charger.spec.db_id}/", plain)
    assert (await communicator.connect())[0]
    await receive_until(communicator, lambda m: m["type"] == "charger.state")
    charger.plug_in(1, COMPACT, soc=35)  # new frames: StatusNotification
    arrived = await drain(communicator, 0.5)
    assert any(m["type"] == "charger.state" for m in arrived)
    assert [m for m in arrived if m["type"] == "charger.log"] == []
    await communicator.disconnect()

    permission = await sync_to_async(Permission.objects.get)(codename="view_charger")
    await sync_to_async(plain.user_permissions.add)(permission)
    plain = await sync_to_async(django_user_model.objects.get)(pk=plain.pk)
    communicator = page(f"/ws/chargers/{charger.spec.db_id}/", plain)
    assert (await communicator.connect())[0]
    await receive_until(communicator, lambda m: m["type"] == "charger.log" and m["full"])
    await communicator.disconnect()


async def test_the_page_log_holds_a_key_the_csms_set_only_redacted(engine, csms, user):
    NEW_KEY = "4e3e5ec2e74e3e5ec2e74e3e5ec2e716"  # 16 bytes in hex: a key the charger takes
    from ocpp.v16 import call

    charger = engine.store.get("CP-DASH")
    result = await csms.call(
        "CP-DASH", call.ChangeConfiguration(key="AuthorizationKey", value=NEW_KEY)
    )
    assert result.status == "Accepted"
    communicator = page(f"/ws/chargers/{charger.spec.db_id}/", user)
    assert (await communicator.connect())[0]
    log = await receive_until(communicator, lambda m: m["type"] == "charger.log" and m["full"])
    texts = [text for _t, _d, text in log["frames"]]
    assert any('"AuthorizationKey","value":"********"' in text for text in texts)
    assert all(NEW_KEY not in text for text in texts)
    await communicator.disconnect()


async def test_engine_events_reach_a_page_while_the_database_thread_is_busy(user):
    """Channels hops to the process's one database thread before every handler. While
    that thread was busy (a connect ramp of 3,000 chargers in the same process), each
    event for a page waited behind it: the fleet page's counts came in a burst 6 s late
    (QA, with a browser). The page's handlers need no database: they run at once."""
    communicator = page("/ws/fleet/", user)
    assert (await communicator.connect())[0]
    busy = threading.Event()
    held = asyncio.ensure_future(sync_to_async(busy.wait)())  # the database thread, held
    try:
        await get_channel_layer().group_send(
            contract.FLEET_SUMMARY_GROUP, {**one_charger_summary(0, 1.0), "shards": 1}
        )
        totals = await receive_until(communicator, lambda m: m["type"] == "fleet.counts")
        assert totals["links"] == {"online": 1}
        assert not held.done()  # it came while the thread was still held
    finally:
        busy.set()
        await held
        await communicator.disconnect()


async def test_a_page_takes_the_messages_waiting_in_its_channel_in_one_go(user):
    """Channels' consumer loop takes one message of the layer per `receive`, at about three
    turns of the event loop each. In the embedded mode a connect ramp keeps the loop busy,
    so a fleet page watching fifty chargers got each second's counts, queued behind their
    states, seconds late (bench/page_counts_lag.py). Counted in turns of the loop, not
    timed: the counts behind 60 waiting messages reach the page in fewer turns than
    there are messages ahead of them."""
    communicator = page("/ws/fleet/", user)
    assert (await communicator.connect())[0]
    layer = get_channel_layer()
    (channel,) = layer.groups[contract.FLEET_SUMMARY_GROUP]
    ahead = 60
    for n in range(ahead):  # states of chargers the page does not show: each dropped
        await layer.send(channel, contract.charger_state({"id": 10_000 + n}))  # type: ignore[typeddict-item]
    await layer.send(channel, {**one_charger_summary(0, 1.0), "shards": 1})
    loop = asyncio.get_running_loop()
    turns = 0
    counting = True

    def turn() -> None:  # runs once per turn of the loop, from the next on
        nonlocal turns
        if counting:
            turns += 1
            loop.call_soon(turn)

    loop.call_soon(turn)
    try:
        totals = await receive_until(communicator, lambda m: m["type"] == "fleet.counts")
    finally:
        counting = False
    assert totals["links"] == {"online": 1}
    assert turns < ahead
    await communicator.disconnect()


async def test_a_page_opened_while_redis_is_away_is_told_to_retry_without_a_traceback(
    user, monkeypatch, caplog
):
    """QA (scaled out, Redis away): every page's reconnect, every few seconds, failed its
    handshake with a 500 and put Daphne's 120-line traceback in the web log. The socket is
    now closed with 4503 (try again later), which the page answers by reconnecting, and
    the web log says it once."""
    import logging

    from channels.layers import channel_layers
    from channels_redis.core import RedisChannelLayer

    from tests.process import free_port

    away = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}/0"])
    monkeypatch.setattr(consumers, "_layer_down_said", -consumers.LAYER_DOWN_LOG_SECONDS)
    in_memory = get_channel_layer()
    channel_layers.backends["default"] = away
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                communicator = page("/ws/fleet/", user)
                assert await refused_with(communicator) == consumers.LAYER_DOWN == 4503
                await communicator.wait()
    finally:
        channel_layers.backends["default"] = in_memory
    said = [
        r for r in caplog.records if "channel layer (Redis) cannot be reached" in r.getMessage()
    ]
    assert len(said) == 1 and said[0].exc_info is None, caplog.records
