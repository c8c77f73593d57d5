"""Reply wait benchmark: how many workers' answers a wait on the Redis channel layer loses.

    python bench/reply_wait.py [--replies 300] [--redis-url redis://127.0.0.1:6379/7]

An admin save or an import waits for each worker's answer on a reply channel (the
fleet_changes module). Side by side, one reply after another, each sent after a random
0-0.3 s (a worker checkpointing first) and awaited up to 2 s:

- `polled`: as that wait did before 5663fec, `asyncio.wait_for(layer.receive(...), 0.05)`
  in a loop: the Redis receive is cancelled every 50 ms;
- `kept`: `fleet_changes._Replies`, one receive kept across the waits.

The last line is one JSON object: replies sent per way, and how many were lost. Uses (and
flushes) the Redis database of --redis-url: give it one nothing else uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")

SLICE_SECONDS = 0.05
WAIT_SECONDS = 2.0


async def polled(layer: Any, channel: str) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            await asyncio.wait_for(layer.receive(channel), SLICE_SECONDS)
            return True
        except TimeoutError:
            continue
    return False


async def kept(layer: Any, channel: str) -> bool:
    from fleet_io.fleet_changes import _Replies

    replies = _Replies(layer, channel)
    deadline = time.monotonic() + WAIT_SECONDS
    try:
        while (left := deadline - time.monotonic()) > 0:
            if await replies.next(left) is not None:
                return True
        return False
    finally:
        await replies.close()


async def run(replies: int, url: str, seed: int) -> dict[str, Any]:
    from simulator.runtime.channel_layers import CountingRedisChannelLayer

    rng = random.Random(seed)
    waiting = CountingRedisChannelLayer(hosts=[{"address": url}])
    sending = CountingRedisChannelLayer(hosts=[{"address": url}])
    lost = {"polled": 0, "kept": 0}
    for _ in range(replies):
        for name, wait in (("polled", polled), ("kept", kept)):
            channel = await waiting.new_channel()
            delay = rng.uniform(0.0, 0.3)

            async def send(channel: str = channel, delay: float = delay) -> None:
                await asyncio.sleep(delay)
                await sending.send(channel, {"type": "fleet.applied"})

            sender = asyncio.create_task(send())
            if not await wait(waiting, channel):
                lost[name] += 1
            await sender
    await waiting.flush()
    return {"replies_each": replies, "lost_polled": lost["polled"], "lost_kept": lost["kept"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=300)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import django

    django.setup()
    print(json.dumps(asyncio.run(run(args.replies, args.redis_url, args.seed))))


if __name__ == "__main__":
    main()
