"""The message log and the event stream in the scaled-out mode: two workers
(`runsimulator --no-web --shard K/2`) and Daphne on this machine's Redis and PostgreSQL,
chargers on the test's CSMS. Both workers write the one log; one stream hears both."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from ocpp.v16 import call

from tests import test_scaled_out
from tests.api_streams import SseReader, http_chunks
from tests.test_scaled_out import deploy

pytestmark = test_scaled_out.pytestmark
database = test_scaled_out.database


def get(host: str, path: str, token: str, **query: Any) -> tuple[int, bytes]:
    url = f"http://{host}{path}?{urllib.parse.urlencode(query, doseq=True)}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, response.read()


async def test_both_workers_log_to_the_one_table_and_one_stream_hears_both(
    tmp_path, database, csms
):
    since = datetime.now(UTC).isoformat()
    stack = deploy(
        tmp_path,
        database,
        csms_port=csms.port,
        evses=1,
        simulate_ev_on_remote_start=True,
    )
    # In a thread: the CSMS on this loop must answer the workers while they boot.
    running = await asyncio.to_thread(stack.__enter__)
    writer = None
    try:
        token = running.shell(
            """
            from api.models import ApiToken
            from tests.cast import make_user
            print(ApiToken.objects.issue(make_user("watcher", "view_charger"), "t")[1])
            """
        ).splitlines()[-1]
        host, port = running.host.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (
                "GET /api/v1/events?kind=transaction&kind=frame HTTP/1.1\r\n"
                f"Host: {running.host}\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 200")
        while await reader.readline() != b"\r\n":
            pass
        stream = SseReader(http_chunks(reader))
        assert (await asyncio.wait_for(stream.next(), 10))["comments"] == ["subscribed"]
        seen: list[dict[str, Any]] = []

        def frames_of(events: list[dict[str, Any]]) -> set[str]:
            return {e["data"]["charge_point_id"] for e in events if e.get("event") == "frame"}

        # Over Redis, each worker gets the subscription in its own time: poke both
        # chargers until frames of both come through.
        async def poke() -> None:
            while True:
                for cp_id in running.by_shard.values():
                    await csms.call(cp_id, call.GetConfiguration(key=["HeartbeatInterval"]))
                await asyncio.sleep(0.3)

        poking = asyncio.create_task(poke())
        try:
            await stream.until(lambda s: frames_of(s) == set(running.by_shard.values()), 30, seen)
        finally:
            poking.cancel()
            await asyncio.gather(poking, return_exceptions=True)
        for cp_id in running.by_shard.values():
            await csms.call(cp_id, call.RemoteStartTransaction(id_tag="TAG-" + cp_id))

        def started(events: list[dict[str, Any]]) -> set[str]:
            return {
                e["data"]["charge_point_id"]
                for e in events
                if e.get("event") == "transaction" and e["data"]["data"]["event"] == "confirmed"
            }

        await stream.until(lambda s: started(s) == set(running.by_shard.values()), 30, seen)
        # `<stream>:<n>`: one stream, n counting up from 1.
        ids = [e["id"].split(":") for e in seen if "id" in e]
        assert len({stream_id for stream_id, _ in ids}) == 1
        assert [int(n) for _, n in ids] == list(range(1, len(ids) + 1))

        # The log: each charger's frames, written by its own worker, in the one table.
        for cp_id in running.by_shard.values():
            await csms.wait_for(cp_id, "StartTransaction", direction="out", timeout=20)
            deadline = time.monotonic() + 15
            while True:
                status, body = await asyncio.to_thread(
                    get, running.host, f"/api/v1/chargers/{cp_id}/log", token, limit=1000
                )
                assert status == 200
                actions = {(i["direction"], i["action"]) for i in json.loads(body)["items"]}
                if ("in", "StartTransaction") in actions or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.3)
            assert {("out", "BootNotification"), ("in", "StartTransaction")} <= actions
        status, body = await asyncio.to_thread(
            get, running.host, "/api/v1/log.jsonl", token, since=since
        )
        lines = [json.loads(line) for line in body.decode().splitlines()]
        assert {line["charge_point_id"] for line in lines} == set(running.by_shard.values())
        connected = [line for line in lines if line["action"] == "connected"]
        assert {line["charge_point_id"] for line in connected} == set(running.by_shard.values())
    finally:
        if writer is not None:
            writer.close()
        await asyncio.to_thread(stack.__exit__, None, None, None)
