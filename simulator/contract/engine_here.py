"""Whether an engine runs in this process, as the web side's /metrics needs to know.

Every process that imports the engine's code registers its metric families (`chargesim_*`)
with prometheus_client's registry, a web process of the scaled-out mode too, which runs no
engine: its page showed every one of them at 0, and a per-instance alert such as
`chargesim_chargers{link="online"} == 0` fired on it. The page shows them only while an
engine runs here (the embedded mode). The lifecycle announces each simulator's fleet (more
than one in tests); a worker's own metrics port always shows them.
"""

from __future__ import annotations

import asyncio
from typing import Final

METRIC_PREFIX: Final = "chargesim_"

# id(a simulator's store) -> the event loop it runs on.
_fleets: dict[int, asyncio.AbstractEventLoop] = {}


def running() -> bool:
    """Whether a fleet runs here: one whose loop has closed ended without stopping (a
    crash, a test's loop torn down) and runs nowhere, as the metrics' collector holds."""
    for key, loop in list(_fleets.items()):
        if loop.is_closed():
            _fleets.pop(key, None)
    return bool(_fleets)


def announce(fleet: object, loop: asyncio.AbstractEventLoop | None) -> None:
    """Called by the lifecycle only: `fleet` (a simulator's store) runs on `loop` now, or
    no longer (None)."""
    if loop is not None:
        _fleets[id(fleet)] = loop
    else:
        _fleets.pop(id(fleet), None)
