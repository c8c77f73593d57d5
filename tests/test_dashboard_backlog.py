"""What a dashboard page's socket keeps for a page that does not read (backlog.py), and how
its consumer writes it: in order, snapshots coalesced, log frames bounded, a failed write
seen and the socket closed, and a page whose access ends told so even while it was held up.

A page that stops reading is played by the ASGI `send` of its socket holding each frame
until the page reads again, as Daphne's does (chargesim_site/daphne_backpressure.py): the
frame is written at once, then the send waits while the socket's buffer is full."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse

from chargers.dashboard import backlog as backlog_module
from chargers.dashboard import consumers
from chargers.dashboard.backlog import LOG_FRAMES_WAITING, MAX_BEHIND, Backlog, Close
from simulator import contract
from tests.cast import make_charger, make_superuser
from tests.engine import wait_until
from tests.test_consumers import SITE

# -- the backlog alone --------------------------------------------------------------------


def state(pk: int, power: float) -> dict[str, Any]:
    return {"type": "charger.state", "charger": {"id": pk, "power_w": power}}


def log(pk: int, *texts: str, full: bool = False) -> dict[str, Any]:
    frames = [[float(i), "out", text] for i, text in enumerate(texts)]
    return {"type": "charger.log", "charger": pk, "frames": frames, "full": full}


async def taken(backlog: Backlog) -> list[Any]:
    """Everything waiting, in the order the socket would send it."""
    out = []
    while backlog._waiting:
        out.append(await backlog.take())
    return out


async def test_a_newer_snapshot_takes_the_place_of_the_waiting_one_of_the_same_thing():
    backlog = Backlog()
    counts = {"type": "fleet.counts", "chargers": 1}
    backlog.put(state(1, 10.0))
    backlog.put(state(2, 20.0))
    backlog.put(counts)
    backlog.put(state(1, 11.0))
    backlog.put({**counts, "chargers": 2})
    backlog.put({"type": "location.power", "location_id": 5, "power_w": 1.0})
    backlog.put({"type": "location.power", "location_id": 6, "power_w": 2.0})
    backlog.put({"type": "location.power", "location_id": 5, "power_w": 3.0})

    # The order of first arrival; of each thing the newest value.
    assert await taken(backlog) == [
        state(1, 11.0),
        state(2, 20.0),
        {**counts, "chargers": 2},
        {"type": "location.power", "location_id": 5, "power_w": 3.0},
        {"type": "location.power", "location_id": 6, "power_w": 2.0},
    ]


async def test_messages_that_are_not_snapshots_all_wait_in_their_order():
    backlog = Backlog()
    results = [{"type": "command.result", "request_id": f"r{i}", "ok": True} for i in range(3)]
    backlog.put(results[0])
    backlog.put(state(1, 1.0))
    backlog.put(results[1])
    backlog.put(results[1])  # the same again is a message again
    backlog.put(results[2])
    assert await taken(backlog) == [results[0], state(1, 1.0), results[1], results[1], results[2]]


async def test_a_page_is_too_far_behind_after_max_behind_updates_and_no_longer_once_it_takes():
    backlog = Backlog(max_behind=3)
    for power in range(3):
        backlog.put(state(1, float(power)))  # coalesced: each one counts all the same
    assert not backlog.too_far_behind
    backlog.put(state(1, 3.0))
    assert backlog.too_far_behind
    assert await backlog.take() == state(1, 3.0)
    assert not backlog.too_far_behind
    assert Backlog().max_behind == MAX_BEHIND


async def test_take_waits_for_a_message():
    backlog = Backlog()
    taking = asyncio.create_task(backlog.take())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not taking.done()
    backlog.put(state(1, 1.0))
    assert await taking == state(1, 1.0)


async def test_a_close_is_not_a_dict_a_message_could_equal():
    backlog = Backlog()
    backlog.put({"close": 1000})
    backlog.close(4401)
    first, second = await taken(backlog)
    assert first == {"close": 1000}
    assert second == Close(4401)


async def test_a_chargers_log_frames_wait_together_and_only_the_newest_the_page_shows():
    backlog = Backlog()
    backlog.put(log(1, "a", "b"))
    backlog.put(state(1, 1.0))
    backlog.put(log(2, "other"))
    for i in range(LOG_FRAMES_WAITING):
        backlog.put(log(1, f"f{i}"))

    first, snapshot, other = await taken(backlog)
    assert snapshot == state(1, 1.0)
    assert other == log(2, "other")
    assert first["charger"] == 1
    assert [frame[2] for frame in first["frames"]] == [f"f{i}" for i in range(LOG_FRAMES_WAITING)]
    assert first["skipped"] == 2  # "a" and "b": the page says that some were left out
    assert first["full"] is False


async def test_a_chargers_waiting_log_frames_are_bounded_in_text_too(monkeypatch):
    monkeypatch.setattr(backlog_module, "LOG_BYTES_WAITING", 10)
    backlog = Backlog()
    backlog.put(log(1, "12345"))
    backlog.put(log(1, "6789"))
    backlog.put(log(1, "a" * 20))  # larger than the bound alone: the newest stays
    (merged,) = await taken(backlog)
    assert [frame[2] for frame in merged["frames"]] == ["a" * 20]
    assert merged["skipped"] == 2


async def test_a_whole_log_takes_the_place_of_the_frames_waiting_before_it():
    backlog = Backlog()
    backlog.put(log(1, "old"))
    backlog.put(log(1, "whole", full=True))
    backlog.put(log(1, "new"))
    (merged,) = await taken(backlog)
    assert [frame[2] for frame in merged["frames"]] == ["whole", "new"]
    assert merged["full"] is True
    assert "skipped" not in merged  # the page clears its table for a whole log anyway


# -- the consumer's writer --------------------------------------------------------------------


class Page:
    """A page's socket through the whole ASGI app, logged in, that reads or stops reading."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.reading.set()
        self.held = asyncio.Event()  # a frame waits for the page

    def app(self, application: Any) -> Any:
        async def paced(scope: Any, receive: Any, send: Any) -> None:
            async def send_paced(message: dict[str, Any]) -> None:
                await send(message)
                if message["type"] == "websocket.send" and not self.reading.is_set():
                    self.held.set()
                    await self.reading.wait()

            await application(scope, receive, send_paced)

        return paced

    async def open(self, user: Any, path: str) -> tuple[WebsocketCommunicator, Client]:
        from chargesim_site.asgi import application

        client = Client()
        await sync_to_async(client.force_login)(user)
        cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
        communicator = WebsocketCommunicator(
            self.app(application), path, headers=[*SITE, (b"cookie", cookie)]
        )
        assert (await communicator.connect())[0]
        assert (await communicator.receive_json_from())["type"] == "hello"
        return communicator, client


async def messages_until_closed(communicator: WebsocketCommunicator) -> tuple[list[str], int]:
    """The texts the page got, and its close code."""
    texts: list[str] = []
    while True:
        output = await communicator.receive_output(3)
        if output["type"] == "websocket.close":
            return texts, output["code"]
        texts.append(output["text"])


@pytest.mark.parametrize("reading", [True, False], ids=["reading", "stalled"])
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("flushed_layer")
async def test_a_page_whose_access_ends_gets_the_message_and_the_close_code(reading):
    """Held up when its user logged out, the page was closed at once: once it read again it
    got no `access.ended` (and over TCP, no close code either: autobahn drops a socket
    that does not answer its close within a second, with all that waited for it)."""
    user = await sync_to_async(make_superuser)()
    page = Page()
    communicator, client = await page.open(user, "/ws/fleet/")
    if not reading:
        page.reading.clear()
        await communicator.send_json_to({"type": "watch", "chargers": []})
        await get_channel_layer().group_send(
            contract.FLEET_SUMMARY_GROUP,
            {
                "type": contract.EVENT_FLEET_SUMMARY,
                "shard": 0,
                "shards": 1,
                "chargers": 1,
                "statuses": {"Available": 1},
                "links": {"online": 1},
                "power_w": 0.0,
            },
        )
        await asyncio.wait_for(page.held.wait(), 5)

    await sync_to_async(client.post)(reverse("logout"))
    layer = get_channel_layer()
    # The log-out reached the consumer (it left its groups) while the page was held up.
    await wait_until(lambda: not layer.groups.get(contract.FLEET_SUMMARY_GROUP))
    page.reading.set()

    texts, code = await messages_until_closed(communicator)
    assert texts and '"access.ended"' in texts[-1]
    assert "You were logged out" in texts[-1]
    assert code == 4401


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("flushed_layer")
async def test_a_message_the_socket_cannot_write_is_logged_once_and_the_socket_closed(caplog):
    """The writer's task died with the error unseen ("Task exception was never retrieved"
    at best), and the page waited on a socket that looked open and said nothing more."""
    user = await sync_to_async(make_superuser)()
    pk = (await sync_to_async(make_charger)("CP-UNWRITABLE", evses=1)).pk
    communicator, _client = await Page().open(user, "/ws/fleet/")
    await communicator.send_json_to({"type": "watch", "chargers": [pk]})
    await communicator.receive_nothing(0.2)
    layer = get_channel_layer()
    group = contract.charger_group(pk)
    with caplog.at_level(logging.ERROR, logger=consumers.__name__):
        # A value JSON cannot hold (a set), as a worker's bug might publish.
        await layer.group_send(group, {"type": "charger.state", "charger": {"id": pk, "x": {1}}})
        await layer.group_send(group, {"type": "charger.state", "charger": {"id": pk}})

        _texts, code = await messages_until_closed(communicator)

    assert code == consumers.WRITE_FAILED
    failures = [r for r in caplog.records if "could not be written to" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None  # with its traceback: what could not be encoded
    assert not get_channel_layer().groups.get(group)  # the page's groups are left


class PageSaysClose(consumers.FleetConsumer):
    """A page whose first message happens to be the dict the close used to be queued as."""

    async def page_connected(self) -> None:
        await self.send_json({"close": 4000})


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("flushed_layer")
async def test_a_message_that_looks_like_the_close_reaches_the_page_as_a_message():
    user = await sync_to_async(make_superuser)()
    communicator = WebsocketCommunicator(PageSaysClose.as_asgi(), "/ws/fleet/", headers=SITE)
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from())["type"] == "hello"
    assert await communicator.receive_json_from() == {"close": 4000}
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("flushed_layer")
async def test_a_stalled_charger_page_gets_its_newest_log_frames_and_how_many_were_skipped():
    user = await sync_to_async(make_superuser)()
    pk = (await sync_to_async(make_charger)("CP-LOGGED", evses=1)).pk
    page = Page()
    communicator, _client = await page.open(user, f"/ws/chargers/{pk}/")
    await communicator.receive_nothing(0.2)
    page.reading.clear()
    layer = get_channel_layer()
    group = contract.charger_group(pk)
    sent = LOG_FRAMES_WAITING + 100
    await layer.group_send(group, contract.charger_log(pk, [(0.0, "out", "first")]))
    await asyncio.wait_for(page.held.wait(), 5)  # "first" waits for the page
    for i in range(sent):
        await layer.group_send(group, contract.charger_log(pk, [(float(i), "out", f"f{i}")]))
    await wait_until(lambda: all(queue.empty() for queue in layer.channels.values()))

    page.reading.set()
    logs: list[dict[str, Any]] = []
    while len(logs) < 2:
        message = await communicator.receive_json_from(3)
        if message["type"] == "charger.log":
            logs.append(message)
    first, rest = logs
    assert [frame[2] for frame in first["frames"]] == ["first"]
    assert [frame[2] for frame in rest["frames"]] == [f"f{i}" for i in range(100, sent)]
    assert rest["skipped"] == 100
    await communicator.disconnect()
