"""What to tell a caller whom no simulator worker answered: what to start, or why this
process cannot reach the one that runs.

"No simulator worker is running" alone left the reader to guess. Two cases differ in what
to do: the channel layer is in memory and no engine runs in this process (`manage.py mcp`
over stdio, a web process started without REDIS_URL), where a worker in another process can
never be reached, whatever runs; or no worker runs the shard, which starting one fixes.
The API's 503 and the MCP tools (which run the API's code) say the same.
"""

from __future__ import annotations

from collections.abc import Iterable

from channels.layers import InMemoryChannelLayer

from chargers.engine_client import EngineClient
from simulator import contract

UNREACHABLE = (
    "No simulator worker can be reached from this process: it runs none, and its channel "
    "layer is in memory (REDIS_URL is not set), which no other process shares. Use the API "
    "or /mcp of the process that runs `python manage.py runsimulator`, or set REDIS_URL for "
    "both."
)


def for_charger(engine: EngineClient, charge_point_id: str) -> str:
    """The 503's text when the worker of the charger's shard did not acknowledge."""
    shard = engine.shard_of(charge_point_id)
    if _unreachable(engine, [shard]):
        return UNREACHABLE
    if engine.shards == 1:
        return f"No simulator worker is running for this charger: {_start_one()}."
    return (
        f"No simulator worker is running for this charger's shard ({shard}/{engine.shards}): "
        f"start it with `python manage.py runsimulator --no-web --shard {shard}/{engine.shards}`."
    )


def for_fleet(engine: EngineClient, missing: Iterable[int]) -> str:
    """The 503's text when no shard's worker answered (the summary, a bulk action)."""
    shards = sorted(missing)
    if _unreachable(engine, shards):
        return UNREACHABLE
    if engine.shards == 1:
        return f"No simulator worker is running: {_start_one()}."
    listed = ", ".join(f"{shard}/{engine.shards}" for shard in shards)
    return (
        f"No simulator worker is running (shards {listed}): start one per shard with "
        f"`python manage.py runsimulator --no-web --shard K/{engine.shards}`."
    )


def _start_one() -> str:
    return "start one with `python manage.py runsimulator` (`--no-web` beside a separate web tier)"


def _unreachable(engine: EngineClient, shards: Iterable[int]) -> bool:
    """Whether the layer is this process's own memory and no engine here listens on any of
    `shards`: then no worker anywhere can answer (an embedded engine that is paused still
    listens, and is only slow)."""
    layer = engine.layer
    if not isinstance(layer, InMemoryChannelLayer):
        return False
    groups = layer.groups
    return not any(groups.get(contract.engine_group(shard)) for shard in shards)
