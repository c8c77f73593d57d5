"""A small HTTP client for the built-in CSMS's control endpoint, as a scenario's trigger step
would call it: one request per connection, JSON both ways."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import orjson


async def request(
    url: str,
    method: str = "POST",
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw_body: bytes | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """(HTTP status, decoded JSON answer) of one request to that URL."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    data = raw_body if raw_body is not None else b"" if body is None else orjson.dumps(body)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {parts.hostname}:{parts.port}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
            await writer.drain()
            answer = await reader.read()
        finally:
            writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, orjson.loads(payload) if payload else None
