"""An ASGI app for tests/test_daphne_reasons.py, run by a real Daphne: GET /<code> answers
that status. It installs ChargeSim's reason phrases as chargesim_site.asgi does (not
imported here: that would need Django set up)."""

from __future__ import annotations

from typing import Any

from chargesim_site.daphne_reasons import name_every_status

name_every_status()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    status = int(scope["path"].strip("/"))
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})
