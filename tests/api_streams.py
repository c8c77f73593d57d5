"""Helpers of the API tests that read streamed answers: Server-Sent Events and chunked HTTP
bodies, and the clean-up the async test client needs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections


class SseReader:
    """Server-Sent Events from a byte stream, one parsed event (or comment) at a time."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks
        self.buffer = b""
        self.raw = b""

    async def next(self) -> dict[str, Any]:
        while b"\n\n" not in self.buffer:
            chunk = await anext(self.chunks)
            self.buffer += chunk
            self.raw += chunk
        block, self.buffer = self.buffer.split(b"\n\n", 1)
        fields: dict[str, Any] = {"comments": []}
        for line in block.decode().split("\n"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                fields["comments"].append(value)
            else:
                fields[name] = value
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
        return fields

    async def until(self, predicate, timeout: float, seen: list[dict[str, Any]]) -> None:
        async def read() -> None:
            while True:
                event = await self.next()
                seen.append(event)
                if predicate(seen):
                    return

        try:
            await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            shown = [(e.get("event"), e.get("data", {}).get("charge_point_id")) for e in seen]
            raise AssertionError(f"not seen within {timeout} s; got {shown}") from None


async def http_chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The body of an HTTP/1.1 response with chunked transfer encoding, chunk by chunk."""
    while True:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            return
        yield await reader.readexactly(size)
        await reader.readexactly(2)  # the CRLF after a chunk


@pytest.fixture(autouse=True)
async def close_request_connections():
    """Requests through the async test client run their ORM calls in asgiref's one shared
    thread, whose connection no request end closes (the test client keeps connections open
    on purpose): close it, or PostgreSQL cannot drop the test database at the end. Autouse
    in each module that imports it."""
    yield
    # Streams the test left are parked for a reconnect (`resume`): ended on this loop now,
    # not by a timer of a loop that is gone.
    from api import event_stream

    await event_stream.end_all()
    await sync_to_async(connections.close_all)()
