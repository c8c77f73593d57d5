"""A worker's command receiver across a Redis outage, on the real Redis channel layer
reached through a TCP relay that the test cuts and restores, as a Redis restart or a lost
network does.

QA (scaled out, Redis away for 20 s): both workers logged "receiving commands failed;
retrying", but only the one that was sent a command afterwards ever logged "receiving
commands works again" (and then with the outage's length up to that command); a quiet
shard's worker said nothing more, as if it still could not reach Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from types import SimpleNamespace

import pytest

from scripts.reachable import reachable
from simulator.runtime.channel_layers import CountingRedisChannelLayer
from simulator.runtime.commands import CommandServer
from tests.process import redis_database

REDIS_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379")

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not reachable(REDIS_URL), reason=f"no Redis at {REDIS_URL}"),
]


class Relay:
    """A TCP relay on loopback to Redis: `cut()` closes every connection and stops
    listening, `restore()` listens again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[None]] = set()

    async def restore(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.writers -= {writer, up_writer}


async def _logged(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 30.0) -> None:
    async def seen() -> None:
        while not any(text in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(seen(), timeout)


async def test_a_quiet_worker_says_when_redis_answers_again(caplog) -> None:
    url = redis_database(REDIS_URL)
    base, database = url.rsplit("/", 1)
    host, port = base.removeprefix("redis://").split(":")
    relay = Relay(host, int(port))
    await relay.restore()
    layer = CountingRedisChannelLayer(
        hosts=[{"address": f"redis://127.0.0.1:{relay.port}/{database}"}]
    )
    server = CommandServer(SimpleNamespace(shard=0, shards=1), layer, summary_seconds=3600)
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(server.run())
        try:
            await _logged(caplog, "answering dashboard commands on")
            await relay.cut()
            await _logged(caplog, "receiving commands failed")
            await relay.restore()
            # No command is sent: the shard is quiet, yet the layer answers again.
            await _logged(caplog, "receiving commands works again")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await layer.flush()
            await relay.cut()
