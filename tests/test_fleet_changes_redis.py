"""The wait for the workers' answers to a fleet change on the Redis channel layer, as a
scaled-out web process or Celery worker waits: no answer is lost to the wait itself.

QA (scaled out, an admin import): a worker loaded its chargers at once, yet the result said
it was "still applying" the change. The wait polled its reply channel in 50 ms slices,
cancelling the Redis receive each time; a receive cancelled after Redis had popped the
answer lost it (about 1 answer in 100 in a side-by-side run)."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest

from fleet_io import fleet_changes
from scripts.reachable import reachable
from simulator import contract
from simulator.runtime.channel_layers import CountingRedisChannelLayer
from tests.process import redis_database

REDIS_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379")
# A worker checkpoints and reads the rows before it answers: long enough for a wait
# polling in slices to have given up many receives meanwhile.
APPLY_TAKES = 0.5

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not reachable(REDIS_URL), reason=f"no Redis at {REDIS_URL}"),
]


class WatchedRedisLayer(CountingRedisChannelLayer):
    """The project's Redis layer, counting the receives given up while they ran."""

    cancelled_receives = 0

    async def receive(self, channel: str) -> dict[str, Any]:
        try:
            return await super().receive(channel)
        except asyncio.CancelledError:
            WatchedRedisLayer.cancelled_receives += 1
            raise


class Worker(threading.Thread):
    """Shard 0's worker on its own layer and loop, as in its own process: it says it got
    each change at once and what it did `APPLY_TAKES` later."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self.serve())

    async def serve(self) -> None:
        # Any: the layers type messages as plain dicts, the contract as TypedDicts.
        layer: Any = CountingRedisChannelLayer(hosts=[{"address": self.url}])
        channel = await layer.new_channel()
        await layer.group_add(contract.engine_group(0), channel)
        self.ready.set()
        receiving = asyncio.ensure_future(layer.receive(channel))
        while not self.stop.is_set():
            done, _ = await asyncio.wait({receiving}, timeout=0.1)
            if not done:
                continue
            message, receiving = receiving.result(), asyncio.ensure_future(layer.receive(channel))
            reply_to, request_id = message.get("reply_channel"), message.get("request_id")
            if message["type"] != contract.FLEET_CHANGED or not reply_to:
                continue
            await layer.send(reply_to, contract.fleet_received(request_id, 0, 1))
            await asyncio.sleep(APPLY_TAKES)
            outcomes: list[contract.ChargerOutcome] = [
                {"charger_id": pk, "charge_point_id": f"CP-{pk}", "outcome": "applied live"}
                for pk in message["chargers"]
            ]
            await layer.send(reply_to, contract.fleet_applied(request_id, 0, 1, outcomes))
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)
        await layer.flush()


def test_the_wait_for_a_workers_answer_gives_up_no_receive_in_flight(settings):
    url = redis_database(REDIS_URL)
    settings.CHARGESIM_SHARDS = 1
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": f"{__name__}.WatchedRedisLayer",
            "CONFIG": {"hosts": [{"address": url}]},
        }
    }
    WatchedRedisLayer.cancelled_receives = 0
    worker = Worker(url)
    worker.start()
    assert worker.ready.wait(10)
    reports: list[fleet_changes.Applied] = []
    try:
        for pk in (1, 2, 3):
            fleet_changes.notify_fleet_change([(pk, f"CP-{pk}")], report=reports.append)
    finally:
        worker.stop.set()
        worker.join(10)
    said = [fleet_changes.describe(applied) for applied in reports]
    assert said == [[(True, f"CP-{pk} applied live.")] for pk in (1, 2, 3)]
    # Each receive given up in flight could have taken an answer with it.
    assert WatchedRedisLayer.cancelled_receives == 0
