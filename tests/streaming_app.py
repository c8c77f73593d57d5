"""An ASGI app for tests/test_daphne_backpressure.py, run by a real Daphne.

GET /stream streams CHUNKS numbered chunks of CHUNK_BYTES as fast as `send` returns; GET
/count says how many it has handed to `send` so far. It installs ChargeSim's Daphne
pacing as chargesim_site.asgi does (not imported here: that would need Django set up).
"""

from __future__ import annotations

from typing import Any

from chargesim_site.daphne_backpressure import pace_responses_to_readers

CHUNK_BYTES = 64 * 1024
CHUNKS = 1024  # 64 MiB in all

pace_responses_to_readers()
sent = 0


def chunk(number: int) -> bytes:
    head = f"{number:08d}".encode()
    return head + b"x" * (CHUNK_BYTES - len(head))


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global sent
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/octet-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if scope["path"] == "/count":
        await send({"type": "http.response.body", "body": str(sent).encode()})
        return
    for number in range(CHUNKS):
        sent += 1
        await send({"type": "http.response.body", "body": chunk(number), "more_body": True})
    await send({"type": "http.response.body", "body": b""})
