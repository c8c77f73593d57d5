"""Why a worker does not run a charger it is asked about: the reason its asker reads (a
409), from what the worker knows (a charger waiting for another shard's worker to let
it go) and from the charger's row (deleted, disabled, another shard's)."""

from __future__ import annotations

from collections.abc import Collection

from chargers.models import Charger as ChargerRow
from chargers.orm_threads import in_thread
from simulator import contract
from simulator.runtime.live_fleet import WAITING_HANDOVER, FleetReloader


def _rows(pks: Collection[int]) -> dict[int, tuple[str, bool]]:
    """pk -> (charge point id, enabled) of the rows that exist."""
    found = ChargerRow.objects.filter(pk__in=list(pks)).values_list(
        "pk", "charge_point_id", "enabled"
    )
    return {pk: (cp_id, enabled) for pk, cp_id, enabled in found}


async def why_not_running(
    pks: Collection[int], reloader: FleetReloader, shard: int, shards: int
) -> dict[int, str]:
    """pk -> why this worker (`shard` of `shards`) does not run that charger, each
    starting "charger #pk " (the web side puts the charge point id in its place)."""
    rows = await in_thread(_rows)(pks) if pks else {}
    return {pk: f"charger #{pk} {_reason(pk, rows.get(pk), reloader, shard, shards)}" for pk in pks}


def _reason(
    pk: int, row: tuple[str, bool] | None, reloader: FleetReloader, shard: int, shards: int
) -> str:
    waiting = reloader.handover_wait(pk)
    if waiting is not None:
        what, left = waiting
        # The worker knows the charger's new shard only: with two, the other one had it.
        previous = f"(shard {1 - shard}) " if shards == 2 else "(of another shard) "
        done = "end its session" if what == WAITING_HANDOVER else "deliver its last messages"
        return f"is waiting for its previous worker {previous}to {done} (up to {left:.0f} s)"
    if row is None:
        return "is deleted"
    cp_id, enabled = row
    if not enabled:
        return "is disabled"
    here = f"this simulator worker (shard {shard}/{shards})"
    owner = contract.shard_of(cp_id, shards)
    if owner != shard:
        return (
            f"belongs to shard {owner}, not to {here}: CHARGESIM_SHARDS differs from the "
            "workers' --shard N"
        )
    return (
        f"is not running on {here}: it has no EVSE, is being loaded, or CHARGESIM_SHARDS "
        "differs from the workers' --shard N"
    )
