"""What to tell a caller whom no simulator worker answered: what to start, or why this
process cannot reach the one that runs.

"No simulator worker is running" alone left the reader to guess. The cases differ in what
to do: the channel layer is in memory and no engine runs in this process (`manage.py mcp`
over stdio, a web process started without REDIS_URL), where a worker in another process can
never be reached, whatever runs; the engine in this process listens but did not answer
(paused or far behind), which only waiting fixes; or no worker answered for the shard,
which starting one fixes if none runs. That last one cannot be told, from here, from a
worker that runs but is paused, overloaded or cut off from Redis (QA, scaled out: a worker
stopped with SIGSTOP got "start it with ...", and the start was refused, the paused one
holding the shard's lock), so the text names both. The API's 503 and the MCP tools (which
run the API's code) say the same.
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
    here = _here(engine, [shard])
    if here is not None:
        return here
    within = f"within {engine.ack_seconds:g} s"
    if engine.shards == 1:
        return (
            f"No simulator worker answered for this charger {within}. If none runs, "
            f"{_start_one()}. {_stalled()}"
        )
    of = f"{shard}/{engine.shards}"
    return (
        f"No simulator worker answered for this charger's shard ({of}) {within}. If none "
        f"runs, start it with `python manage.py runsimulator --no-web --shard {of}`. "
        f"{_stalled()}"
    )


def for_fleet(engine: EngineClient, missing: Iterable[int]) -> str:
    """The 503's text when no shard's worker answered (the summary, a bulk action)."""
    shards = sorted(missing)
    here = _here(engine, shards)
    if here is not None:
        return here
    within = f"within {engine.ack_seconds:g} s"
    if engine.shards == 1:
        return f"No simulator worker answered {within}. If none runs, {_start_one()}. {_stalled()}"
    listed = ", ".join(f"{shard}/{engine.shards}" for shard in shards)
    return (
        f"No simulator worker answered {within} (shards {listed}). For a shard none runs, "
        f"start one with `python manage.py runsimulator --no-web --shard K/{engine.shards}`. "
        f"{_stalled()}"
    )


def _start_one() -> str:
    return "start one with `python manage.py runsimulator` (`--no-web` beside a separate web tier)"


def _stalled() -> str:
    return (
        "If one runs, it is paused, overloaded or cannot reach the channel layer (Redis): see "
        "its log and status line (a second one for the same shard is refused while it holds "
        "the shard's lock)."
    )


def _here(engine: EngineClient, shards: Iterable[int]) -> str | None:
    """The text when the layer is this process's own memory, which no other process shares:
    UNREACHABLE when no engine here listens on any of `shards` (no worker anywhere can
    answer), and a worker here that listens but did not answer is this process's own, paused
    or far behind; None for a layer that other processes share."""
    layer = engine.layer
    if not isinstance(layer, InMemoryChannelLayer):
        return None
    groups = layer.groups
    if not any(groups.get(contract.engine_group(shard)) for shard in shards):
        return UNREACHABLE
    return (
        f"The simulator worker in this process did not answer within {engine.ack_seconds:g} s: "
        "it is paused or far behind (see its log and status line). Send it again later."
    )
