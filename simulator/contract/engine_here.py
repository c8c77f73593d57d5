"""Whether an engine runs in this process, as the web side's /metrics needs to know.

Every process that imports the engine's code registers its metric families (`chargesim_*`)
with prometheus_client's registry, a web process of the scaled-out mode too, which runs no
engine: its page showed every one of them at 0, and a per-instance alert such as
`chargesim_chargers{link="online"} == 0` fired on it. The page shows them only while an
engine runs here (the embedded mode). The lifecycle announces each simulator's fleet (more
than one in tests); a worker's own metrics port always shows them.
"""

from __future__ import annotations

from typing import Final

METRIC_PREFIX: Final = "chargesim_"

_fleets: set[int] = set()


def running() -> bool:
    return bool(_fleets)


def announce(fleet: object, running: bool) -> None:
    """Called by the lifecycle only: `fleet` (a simulator's store) runs here now, or no longer."""
    if running:
        _fleets.add(id(fleet))
    else:
        _fleets.discard(id(fleet))
