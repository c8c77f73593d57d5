"""The API's event stream (Server-Sent Events): over a real HTTP connection to the Daphne
server of a real `runsimulator` process whose chargers talk to the test's CSMS; and in
process, through Django's ASGI request path, for keep-alives and the end of a stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from django.utils import timezone
from ocpp.v16 import call

from api import event_stream
from api.models import ApiToken
from simulator import contract
from simulator.core.charge_point import BootState
from simulator.runtime.events import EventPublisher
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.api_client import bearer, user_with_token
from tests.api_streams import SseReader, close_request_connections, http_chunks  # noqa: F401  (a fixture, found by name)
from tests.cast import make_charger, make_location
from tests.engine import loaded, wait_until
from tests.process import ManagePy, free_port, run_manage, wait_for_port

SECRET = "57ea3a57ea3a57ea3a57ea3a57ea3a59"  # 16 bytes in hex: a key the charger takes


# -- over HTTP, against a runsimulator process (Daphne and the engine on one loop) ------------


SETUP = """
from api.models import ApiToken
from tests.cast import make_charger, make_user
for cp_id in ("SSE-1", "SSE-2"):
    make_charger(cp_id, evses=1, csms_url={csms_url!r}, simulate_ev_on_remote_start=True)
user = make_user("watcher", "view_charger")
print(ApiToken.objects.issue(user, "stream test")[1])
"""


@dataclass
class Site:
    port: int
    token: str  # a watcher's
    process: ManagePy


@pytest.fixture
async def site(csms, tmp_path) -> AsyncIterator[Site]:
    """A runsimulator process (Daphne and the engine on one loop) whose chargers SSE-1 and
    SSE-2 have booted at the test's CSMS."""
    assert run_manage(tmp_path, "migrate", "--verbosity", "0").returncode == 0
    made = run_manage(tmp_path, "shell", "-c", SETUP.format(csms_url=csms.url))
    assert made.returncode == 0, made.stderr
    port = free_port()
    process = ManagePy(tmp_path, "runsimulator", "--no-migrate", "--port", str(port))
    try:
        await asyncio.to_thread(wait_for_port, port, 60.0, process.proc)
        for cp_id in ("SSE-1", "SSE-2"):
            await csms.wait_for(cp_id, "StatusNotification", timeout=30)
        yield Site(port, made.stdout.strip().splitlines()[-1], process)
    finally:
        process.stop()


@pytest.mark.slow
@pytest.mark.django_db  # the test's own database stays empty: the process has its own
async def test_the_stream_over_http_shows_a_session_of_one_charger_and_not_the_other(csms, site):
    port, token = site.port, site.token
    writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                "GET /api/v1/events?charger=SSE-1&kind=status&kind=transaction&kind=frame "
                f"HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.startswith(b"HTTP/1.1 200"), status
        headers = {}
        while (line := await reader.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["transfer-encoding"] == "chunked"
        stream = SseReader(http_chunks(reader))
        hello = await asyncio.wait_for(stream.next(), 10)
        assert hello["comments"] == ["subscribed"] and hello["retry"] == "3000"

        seen: list[dict[str, Any]] = []

        # The subscription reaches the worker through the channel layer: wait until a frame
        # of SSE-1 comes through, then start sessions on both chargers.
        async def poke() -> None:
            while True:
                await csms.call("SSE-1", call.GetConfiguration(key=["HeartbeatInterval"]))
                await asyncio.sleep(0.3)

        poking = asyncio.create_task(poke())
        try:
            await stream.until(lambda s: any(e.get("event") == "frame" for e in s), 15, seen)
        finally:
            poking.cancel()
            await asyncio.gather(poking, return_exceptions=True)
        for cp_id in ("SSE-2", "SSE-1"):
            answer = await csms.call(
                cp_id, call.RemoteStartTransaction(id_tag="TAG-" + cp_id, connector_id=1)
            )
            assert answer.status == "Accepted"
        await csms.call("SSE-1", call.ChangeConfiguration(key="AuthorizationKey", value=SECRET))

        def session_seen(events: list[dict[str, Any]]) -> bool:
            data = [e["data"] for e in events if "data" in e]
            return (
                any(d["kind"] == "status" and d["data"]["status"] == "Charging" for d in data)
                and any(
                    d["kind"] == "transaction" and d["data"]["event"] == "confirmed" for d in data
                )
                and any(
                    d["kind"] == "frame"
                    and d["data"]["action"] == "StartTransaction"
                    and d["data"]["direction"] == "out"
                    for d in data
                )
                and any(
                    d["kind"] == "frame" and d["data"]["action"] == "ChangeConfiguration"
                    for d in data
                )
            )

        await stream.until(session_seen, 30, seen)
        # SSE-2 started a session too, before SSE-1: had the filter let it through, its
        # events would be here by now.
        await csms.wait_for("SSE-2", "StartTransaction", direction="in", timeout=10)

        # Stopped, the process ends the stream with its last chunk (QA13: it was cut, a
        # broken transfer to the client).
        before_stop = len(seen)
        site.process.signal(signal.SIGTERM)

        async def to_the_end() -> None:
            with contextlib.suppress(StopAsyncIteration):
                while True:
                    seen.append(await stream.next())

        await asyncio.wait_for(to_the_end(), 30)
        assert await asyncio.to_thread(site.process.wait, 30) == 0
    finally:
        if writer is not None:
            writer.close()
    events = [e for e in seen[:before_stop] if "data" in e]
    assert {e["data"]["charge_point_id"] for e in events} == {"SSE-1"}
    # `<stream>:<n>`: one stream, n counting up from 1.
    assert len({e["id"].split(":")[0] for e in events}) == 1
    assert [int(e["id"].split(":")[1]) for e in events] == list(range(1, len(events) + 1))
    assert all(e["event"] == e["data"]["kind"] for e in events)
    started = next(e["data"] for e in events if e["event"] == "transaction")
    assert started["data"]["event"] == "started" and started["data"]["id_tag"] == "TAG-SSE-1"
    charging = next(
        e["data"]["data"]
        for e in events
        if e["event"] == "status" and e["data"]["data"]["status"] == "Charging"
    )
    assert charging["connector_id"] == 1 and charging["previous"] == "Preparing"
    frame = next(
        e["data"]["data"]
        for e in events
        if e["event"] == "frame" and e["data"]["data"]["action"] == "StartTransaction"
    )
    assert json.loads(frame["payload"])[3]["idTag"] == "TAG-SSE-1"
    key = next(
        e["data"]["data"]
        for e in events
        if e["event"] == "frame"
        and e["data"]["data"]["action"] == "ChangeConfiguration"
        and e["data"]["data"]["direction"] == "in"
    )
    assert json.loads(key["payload"])[3]["value"] == "********"
    assert SECRET.encode() not in stream.raw


async def open_http_stream(
    port: int, token: str, query: str, last_event_id: str = ""
) -> tuple[SseReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    writer.write(
        (
            f"GET /api/v1/events?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n{extra}\r\n"
        ).encode()
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    assert status.startswith(b"HTTP/1.1 200"), status
    while await reader.readline() != b"\r\n":
        pass
    return SseReader(http_chunks(reader)), writer


@pytest.mark.slow
@pytest.mark.django_db  # the test's own database stays empty: the process has its own
async def test_a_client_that_reconnects_over_http_gets_what_it_missed(csms, site):
    """Over Daphne: the client's connection closed, the server noticed, and the client's
    reconnect with its Last-Event-ID took the stream up, the events of the time between
    first (a new stream, the header unread, before)."""
    port, token = site.port, site.token
    writers: list[asyncio.StreamWriter] = []
    try:
        query = "charger=SSE-1&kind=frame"
        stream, writer = await open_http_stream(port, token, query)
        writers.append(writer)
        assert (await asyncio.wait_for(stream.next(), 10))["comments"] == ["subscribed"]
        seen: list[dict[str, Any]] = []

        async def poke(n: int) -> None:
            await csms.call("SSE-1", call.GetConfiguration(key=[f"Key{n}"]))

        async def first_frame() -> None:
            seen.append(await stream.next())

        # Until the worker has the subscription: a frame comes through.
        reading = asyncio.create_task(first_frame())
        for n in range(50):
            await poke(n)
            await asyncio.wait([reading], timeout=0.3)
            if reading.done():
                break
        await reading
        had = seen[-1]["id"]
        writer.close()  # the connection drops
        for n in range(100, 103):  # meanwhile: three calls, six frames
            await poke(n)
        stream, writer = await open_http_stream(port, token, query, last_event_id=had)
        writers.append(writer)
        assert (await asyncio.wait_for(stream.next(), 10))["comments"] == ["resumed"]
        keys: list[str] = []

        async def read() -> None:
            while "Key102" not in keys:
                frame = (await stream.next())["data"]["data"]
                if frame["direction"] == "in":  # the CSMS's GetConfiguration, not its answer
                    keys.append(json.loads(frame["payload"])[-1]["key"][0])

        await asyncio.wait_for(read(), 30)
    finally:
        for writer in writers:
            writer.close()
    # What the first connection had not shown (its last event's answer, maybe more of the
    # first round), then the three calls of the time between, in order.
    meanwhile = [k for k in keys if k in {"Key100", "Key101", "Key102"}]
    assert meanwhile == ["Key100", "Key101", "Key102"]


# -- in process: Django's ASGI request path and the engine on the test's loop --------------


@pytest.fixture
async def worker(csms):
    await database_sync_to_async(make_charger)("SSE-IN", evses=1, csms_url=csms.url)
    publisher = EventPublisher(rate=20)
    service = Simulator(
        RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, only_ids=["SSE-IN"]),
        listener=publisher,
    )
    await service.start(channels=True)
    charger = loaded(service, "SSE-IN")
    await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot")
    try:
        yield publisher
    finally:
        await service.stop()


@pytest.mark.django_db(transaction=True)
async def test_keep_alives_and_the_workers_stop_when_the_client_leaves(worker, csms, monkeypatch):
    monkeypatch.setattr(event_stream, "KEEPALIVE_SECONDS", 0.2)
    _, token = await database_sync_to_async(user_with_token)("watcher", "view_charger")
    # resume=0: nothing kept for a reconnect once the client leaves.
    response = await AsyncClient().get(
        "/api/v1/events", {"kind": "connection", "resume": "0"}, headers=bearer(token)
    )
    assert isinstance(response, StreamingHttpResponse) and response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    # Read in a task of its own, as the server does: when the client leaves, the server
    # cancels that task (Django's ASGI handler), which ends the stream's generator.
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def serve() -> None:
        async for chunk in response.streaming_content:
            await received.put(chunk)

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            yield await received.get()

    serving = asyncio.create_task(serve())
    stream = SseReader(chunks())
    assert (await stream.next())["comments"] == ["subscribed"]
    await wait_until(lambda: worker.stream.active, message="the worker to subscribe")
    assert (await asyncio.wait_for(stream.next(), 5))["comments"] == ["keep-alive"]
    await csms.disconnect("SSE-IN")
    seen: list[dict[str, Any]] = []
    await stream.until(
        lambda s: any(e.get("data", {}).get("data", {}).get("event") == "connected" for e in s),
        10,
        seen,
    )
    events = [e["data"] for e in seen if "data" in e]
    assert [e["data"]["event"] for e in events][:2] == ["closed", "reconnecting"]
    assert events[0]["data"]["detail"]["code"] == 1000
    # The client goes away: the worker hears of it at once, not when the lease runs out.
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)
    await wait_until(lambda: not worker.stream.active, message="the worker to unsubscribe")


class Served:
    """A stream's response read in a task of its own, as the server does (`leave`: the
    client goes away, and the server cancels that task)."""

    def __init__(self, response: Any) -> None:
        assert isinstance(response, StreamingHttpResponse) and response.status_code == 200
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.task = asyncio.create_task(self._serve(response))
        self.reader = SseReader(self._chunks())

    async def _serve(self, response: Any) -> None:
        async for chunk in response.streaming_content:
            await self.received.put(chunk)

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            yield await self.received.get()

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        return await asyncio.wait_for(self.reader.next(), timeout)

    async def until_connected(self) -> list[dict[str, Any]]:
        """The events up to a `connected` one."""
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1].get("data", {}).get("data", {}).get("event") != "connected":
            seen.append(await self.next(10))
        return seen

    async def leave(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def open_stream(token: str, query: dict[str, str], last_event_id: str = "") -> Served:
    headers = bearer(token)
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    return Served(await AsyncClient().get("/api/v1/events", query, headers=headers))


def number(event: dict[str, Any]) -> tuple[str, int]:
    stream, _, n = event["id"].partition(":")
    return stream, int(n)


@pytest.mark.django_db(transaction=True)
async def test_a_reconnect_with_its_last_event_id_takes_the_stream_up_where_it_was(worker, csms):
    """A client whose connection dropped reconnected (as EventSource does, with the
    Last-Event-ID header) to a new stream: the events of the time between, and those sent
    but lost with the connection, were gone (the header was not read)."""
    _, token = await database_sync_to_async(user_with_token)("watcher", "view_charger")
    query = {"kind": "connection"}
    first = await open_stream(token, query)
    assert (await first.next())["comments"] == ["subscribed"]
    await wait_until(lambda: worker.stream.active, message="the worker to subscribe")
    await csms.disconnect("SSE-IN")
    before = [e for e in await first.until_connected() if "id" in e]
    assert [e["data"]["data"]["event"] for e in before][:2] == ["closed", "reconnecting"]
    # The client had only the first of them when its connection dropped; the stream is kept
    # meanwhile (the worker still collects its events) and the charger's link drops again.
    await first.leave()
    had = before[0]["id"]
    await asyncio.sleep(0.3)
    assert worker.stream.active
    await csms.disconnect("SSE-IN")
    await wait_until(lambda: "SSE-IN" in csms.connected, message="the charger back")
    again = await open_stream(token, query, last_event_id=had)
    assert (await again.next())["comments"] == ["resumed"]
    after = [e for e in await again.until_connected() if "id" in e]
    after += [e for e in await again.until_connected() if "id" in e]
    # The events after the one it had, sent again, then the second drop's: none twice, none
    # missed, the ids going on where they were.
    assert {number(e)[0] for e in before + after} == {number(before[0])[0]}
    ids = [number(e)[1] for e in after]
    assert ids == list(range(number(before[0])[1] + 1, number(before[0])[1] + 1 + len(ids)))
    assert [e["data"]["data"]["event"] for e in after[: len(before) - 1]] == [
        e["data"]["data"]["event"] for e in before[1:]
    ]
    assert [e["event"] for e in after] == ["connection"] * len(after)
    await again.leave()


@pytest.mark.django_db(transaction=True)
async def test_a_reconnect_that_cannot_take_its_stream_up_is_told_so(worker, csms):
    """Too late (the stream's `resume` seconds ran out: the workers told at once), another
    caller's stream, other filters, an id never sent: a new stream, whose first event says
    that the events since that id are only in the message log."""
    _, token = await database_sync_to_async(user_with_token)("watcher", "view_charger")
    _, other = await database_sync_to_async(user_with_token)("other", "view_charger")
    query = {"kind": "connection", "resume": "0.5"}
    first = await open_stream(token, query)
    assert (await first.next())["comments"] == ["subscribed"]
    await wait_until(lambda: worker.stream.active, message="the worker to subscribe")
    await csms.disconnect("SSE-IN")
    had = (await first.next(10))["id"]
    stream = had.split(":")[0]
    await first.leave()
    tries = [
        (other, query, had),  # another caller
        (token, {"kind": "status", "resume": "0.5"}, had),  # other filters
        (token, query, f"{stream}:999"),  # an id it never sent
        (token, query, "17"),  # an id of no stream of this version
    ]
    for caller_token, asked, last in tries:
        refused = await open_stream(caller_token, {**asked, "resume": "0"}, last_event_id=last)
        assert (await refused.next())["comments"] == ["subscribed"], last
        said = await refused.next()
        assert said["event"] == "not_resumed" and said["data"]["last_event_id"] == last
        assert "message log" in said["data"]["detail"]
        assert number(said)[1] == 1 and number(said)[0] != stream
        await refused.leave()
    # None of those took it up: it ends when its half second is over, and the workers hear.
    await wait_until(lambda: not worker.stream.active, message="the worker to unsubscribe")
    late = await open_stream(token, {**query, "resume": "0"}, last_event_id=had)
    assert (await late.next())["comments"] == ["subscribed"]
    assert (await late.next())["event"] == "not_resumed"
    await late.leave()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ended", ["revoked", "expired"])
async def test_a_stream_ends_once_its_token_is_revoked_or_expires(worker, monkeypatch, ended):
    """A token revoked (or past its expiry) while its stream is open: the stream says so and
    ends, as a new request with it is refused (it went on streaming before)."""
    monkeypatch.setattr(event_stream, "ACCESS_CHECK_SECONDS", 0.2)
    monkeypatch.setattr(event_stream, "KEEPALIVE_SECONDS", 0.2)
    user, token = await database_sync_to_async(user_with_token)("watcher", "view_charger")
    response = await AsyncClient().get("/api/v1/events", headers=bearer(token))
    assert isinstance(response, StreamingHttpResponse) and response.status_code == 200
    chunks: list[bytes] = []

    async def read() -> None:
        async for chunk in response.streaming_content:
            chunks.append(chunk)

    reading = asyncio.create_task(read())
    try:
        await wait_until(lambda: len(chunks) >= 2, message="the stream to run")
        assert not reading.done()  # still allowed: keep-alives, no end
        if ended == "revoked":
            await database_sync_to_async(lambda: ApiToken.objects.get(user=user).revoke())()
        else:
            await ApiToken.objects.filter(user=user).aupdate(expires=timezone.now())
        await asyncio.wait_for(reading, 10)  # ends by itself
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    assert b"event: revoked" in chunks[-1]
    assert b"no longer valid" in chunks[-1]


@pytest.mark.django_db(transaction=True)
async def test_a_keep_alive_goes_after_the_quiet_time_not_at_every_access_check(
    worker, monkeypatch
):
    """The stream sent a keep-alive at each access check (every 5 s) and lease renewal,
    not after 15 s of quiet as documented. Load only makes them rarer."""
    monkeypatch.setattr(event_stream, "ACCESS_CHECK_SECONDS", 0.05)
    monkeypatch.setattr(event_stream, "KEEPALIVE_SECONDS", 0.5)
    _, token = await database_sync_to_async(user_with_token)("watcher", "view_charger")
    response = await AsyncClient().get(
        "/api/v1/events", {"kind": "transaction"}, headers=bearer(token)
    )
    assert isinstance(response, StreamingHttpResponse) and response.status_code == 200
    chunks: list[bytes] = []

    async def read() -> None:
        async for chunk in response.streaming_content:
            chunks.append(chunk)

    reading = asyncio.create_task(read())
    try:
        await wait_until(lambda: b"keep-alive" in b"".join(chunks), message="a keep-alive")
        await asyncio.sleep(1.2)
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    # 1.2 s after the first: two more at most (about 24 access checks meanwhile).
    assert 1 <= b"".join(chunks).count(b": keep-alive") <= 3, chunks


@pytest.mark.django_db(transaction=True)
async def test_a_layer_that_cannot_be_reached_is_a_503_not_a_stream_that_never_starts(
    monkeypatch,
):
    """A web process whose Redis is away answered other requests 503 at once, but a stream
    waited for headers that never came: joining the group failed inside the stream."""
    from channels_redis.core import RedisChannelLayer

    from api.routers import events

    port = free_port()  # nobody listens there
    monkeypatch.setattr(
        events,
        "get_channel_layer",
        lambda: RedisChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"]),
    )
    _, token = await database_sync_to_async(user_with_token)("watcher", "view_charger")
    response = await asyncio.wait_for(
        AsyncClient().get("/api/v1/events", headers=bearer(token)), 30
    )
    assert response.status_code == 503, response
    assert response.json()["detail"].startswith("The channel layer (Redis) cannot be reached (")


@pytest.mark.django_db(transaction=True)
async def test_a_restarted_worker_is_subscribed_again_and_the_stream_says_so():
    """The subscription lived in the killed worker's memory: the restarted one sent the
    stream nothing until the next renewal (30 s), and nothing said events were missed."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    engine = await layer.new_channel()  # hears what the stream asks the worker of shard 0
    await layer.group_add(contract.engine_group(0), engine)
    _, token = await database_sync_to_async(user_with_token)("watcher", "view_charger")
    response = await AsyncClient().get("/api/v1/events", headers=bearer(token))
    assert isinstance(response, StreamingHttpResponse) and response.status_code == 200
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    async def read() -> None:
        async for chunk in response.streaming_content:
            await chunks.put(chunk)

    reading = asyncio.create_task(read())

    async def summary(started: float) -> None:
        await layer.group_send(
            contract.FLEET_SUMMARY_GROUP,
            contract.fleet_summary(
                0, 1, {"chargers": 0, "statuses": {}, "links": {}, "power_w": 0.0}, 1.0, started
            ),
        )

    try:
        assert b"subscribed" in await asyncio.wait_for(chunks.get(), 5)
        first = await asyncio.wait_for(layer.receive(engine), 5)
        assert first["type"] == contract.EVENTS_SUBSCRIBE
        await summary(100.0)  # a worker new to the stream: told again, quietly
        again = await asyncio.wait_for(layer.receive(engine), 5)
        assert again["subscription"] == first["subscription"]
        await summary(100.0)  # the same worker
        await summary(200.0)  # restarted
        renewed = await asyncio.wait_for(layer.receive(engine), 5)
        assert renewed["subscription"] == first["subscription"]
        said = await asyncio.wait_for(chunks.get(), 5)
        assert b"event: restarted" in said and b'"shard":0' in said, said
        with pytest.raises(TimeoutError):  # the same worker's summary asked nothing
            await asyncio.wait_for(layer.receive(engine), 0.2)
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)


@pytest.mark.django_db(transaction=True)
async def test_a_reader_that_stopped_reading_is_told_how_many_events_it_missed():
    """Batches the channel layer dropped while the reader was not reading (its channel
    full) were lost without a word: the stream went on as if nothing was missing."""
    import time

    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    async with a_stream_and_its_worker(time.monotonic) as (reader, worker, charger, _):
        # One event a batch, far more batches than the stream holds while nobody reads.
        sent = event_stream.INBOX_BATCHES + layer.capacity + 50
        for n in range(sent):
            worker.on_connection(charger, "connected", {"n": n})
            await worker.flush(layer)
            await asyncio.sleep(0)  # the stream's receiver moves what it can to its inbox
        # The reader reads again (a task of its own: a cancelled read would end the stream).
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def read() -> None:
            while True:
                await events.put(await reader.next())

        reading = asyncio.create_task(read())
        seen: list[int] = []
        missed = 0

        async def take(until: int | None) -> None:
            nonlocal missed
            while not seen or seen[-1] != until:
                event = await events.get()
                if event["event"] == "dropped":
                    missed += event["data"]["dropped"]
                else:
                    seen.append(event["data"]["data"]["detail"]["n"])

        # First what the stream held, until nothing more comes ...
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(take(None), 2)
        assert missed == 0 and seen == list(range(len(seen)))
        # ... then the next batch that arrives says how many went missing before it.
        worker.on_connection(charger, "connected", {"n": sent})
        await worker.flush(layer)
        await asyncio.wait_for(take(sent), 5)
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        assert missed > 0 and seen == sorted(seen)
        assert len(seen) + missed == sent + 1  # every event read or counted as missed


@contextlib.asynccontextmanager
async def a_stream_and_its_worker(
    clock: Callable[[], float],
) -> AsyncIterator[tuple[SseReader, Any, Any, Callable[[], Awaitable[None]]]]:
    """A stream of connection events opened over the API, and the worker's side of it in
    this process on the leases' `clock`: (the reader, the worker's EventStream, a charger
    of it, the stream's subscription as the worker reads it again: a renewal)."""
    from channels.layers import get_channel_layer

    from simulator.runtime.event_stream import EventStream
    from tests.engine import runtime_charger

    layer = get_channel_layer()
    engine = await layer.new_channel()
    await layer.group_add(contract.engine_group(0), engine)
    _, token = await database_sync_to_async(user_with_token)("watcher", "view_charger")
    response = await AsyncClient().get("/api/v1/events?kind=connection", headers=bearer(token))
    assert isinstance(response, StreamingHttpResponse) and response.status_code == 200
    content = response.streaming_content
    reader = SseReader(aiter(content))
    try:
        assert "subscribed" in (await asyncio.wait_for(reader.next(), 5))["comments"][0]
        subscribe = dict(await asyncio.wait_for(layer.receive(engine), 5))
        charger = runtime_charger("SSE-LEASE", "ws://127.0.0.1:1", evses=1)
        charger.spec.db_id, charger.spec.location_id = 1, 1
        worker = EventStream(shard=0, clock=clock)

        async def renew() -> None:
            assert worker.subscribe(subscribe, [charger])

        await renew()
        yield reader, worker, charger, renew
    finally:
        await content.aclose()  # the stream's end: it unsubscribes


@pytest.mark.django_db(transaction=True)
async def test_a_worker_held_up_longer_than_the_lease_still_sends_what_it_does_on_its_return():
    """A worker stopped (`kill -STOP`) for longer than the lease came back with the
    stream's renewals unread in its channel, forgot the subscription on its own clock, and
    the stream silently missed the connections closing and retrying at its return."""
    from channels.layers import get_channel_layer

    now = [1_000.0]
    async with a_stream_and_its_worker(lambda: now[0]) as (reader, worker, charger, _):
        worker.on_connection(charger, "connected", {})
        await worker.flush(get_channel_layer())
        assert (await asyncio.wait_for(reader.next(), 5))["data"]["data"]["event"] == "connected"
        now[0] += contract.WATCH_LEASE_SECONDS + 10  # held up: no flush, no renewal read
        worker.on_connection(charger, "closed", {"by": "lost"})
        worker.on_connection(charger, "reconnecting", {})
        await worker.flush(get_channel_layer())
        seen = [(await asyncio.wait_for(reader.next(), 5))["data"] for _ in range(2)]
        assert [event["data"]["event"] for event in seen] == ["closed", "reconnecting"]


@pytest.mark.django_db(transaction=True)
async def test_a_subscription_that_lapsed_at_the_worker_and_was_renewed_says_what_was_missed():
    """A worker that ran on but heard no renewal (lost on the way) forgot the subscription
    and started it afresh at the next one: its count began again, which the stream took for
    nothing missed, and the events in between were gone without a word."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    now = [1_000.0]
    async with a_stream_and_its_worker(lambda: now[0]) as (reader, worker, charger, renew):
        worker.on_connection(charger, "connected", {})
        await worker.flush(layer)
        assert (await asyncio.wait_for(reader.next(), 5))["event"] == "connection"
        # The worker flushes every second, so it was not held up; the lease runs out.
        while worker.subscriptions:
            now[0] += 1
            if now[0] > 1_000 + contract.WATCH_LEASE_SECONDS:
                worker.on_connection(charger, "closed", {})  # held when the lease ran out
            await worker.flush(layer)
        worker.on_connection(charger, "reconnecting", {})  # nobody subscribed: not collected
        await renew()
        worker.on_connection(charger, "connected", {})
        await worker.flush(layer)
        seen = [await asyncio.wait_for(reader.next(), 5) for _ in range(3)]
        assert [event["event"] for event in seen] == ["dropped", "lapsed", "connection"]
        assert seen[0]["data"] == {"dropped": 1}
        assert seen[1]["data"]["shard"] == 0 and "message log" in seen[1]["data"]["detail"]
        assert seen[1]["data"]["since"].endswith("Z")


@pytest.mark.django_db(transaction=True)
async def test_a_stream_renews_its_lease_while_its_reader_does_not_read(monkeypatch):
    """QA: a reader that stopped reading for a few minutes lost its stream for good: the
    renewal ran in the stream's loop, which waited for the reader, so the workers let the
    lease lapse; and the in-memory layer had dropped the channel from its groups."""
    from channels.layers import get_channel_layer

    monkeypatch.setattr(contract, "WATCH_RENEW_SECONDS", 0.2)
    layer = get_channel_layer()
    engine = await layer.new_channel()
    await layer.group_add(contract.engine_group(0), engine)
    _, token = await database_sync_to_async(user_with_token)("watcher", "view_charger")
    response = await AsyncClient().get("/api/v1/events", headers=bearer(token))
    assert isinstance(response, StreamingHttpResponse)
    content = response.streaming_content
    try:
        assert b"subscribed" in await anext(aiter(content))
        first = await asyncio.wait_for(layer.receive(engine), 5)
        # The reader reads nothing from here: the renewals go on all the same.
        for _ in range(3):
            again = await asyncio.wait_for(layer.receive(engine), 5)
            assert (again["type"], again["subscription"]) == (
                contract.EVENTS_SUBSCRIBE,
                first["subscription"],
            )
    finally:
        await content.aclose()


@pytest.mark.django_db(transaction=True)
async def test_an_unknown_charger_location_or_kind_is_refused_before_streaming(worker):
    _, token = await database_sync_to_async(user_with_token)("watcher", "view_charger")
    client = AsyncClient()
    missing = await client.get("/api/v1/events", {"charger": "NOPE"}, headers=bearer(token))
    assert missing.status_code == 404 and missing.json()["detail"] == "No charger 'NOPE'."
    # A location that does not exist would stream nothing for ever: a 404 as for a charger.
    nowhere = await client.get("/api/v1/events", {"location": "99999"}, headers=bearer(token))
    assert nowhere.status_code == 404 and nowhere.json()["detail"] == "No location 99999."
    bad = await client.get("/api/v1/events", {"kind": "gossip"}, headers=bearer(token))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "kind.0"
    # A charger and a site it is not at: both filters hold for an event, so none would.
    elsewhere = await database_sync_to_async(make_location)("Elsewhere")
    query = {"charger": "SSE-IN", "location": str(elsewhere.pk)}
    apart = await client.get("/api/v1/events", query, headers=bearer(token))
    assert apart.status_code == 422, apart.content
    assert "None of the chargers named is at the locations named" in apart.json()["detail"]
    assert apart.json()["errors"][0]["field"] == "location"
    assert not worker.stream.active


def test_the_api_kinds_are_the_contracts():
    from typing import get_args

    from api.routers.events import Kind

    assert get_args(Kind) == contract.STREAM_KINDS
