"""A simulator worker for one charger of the test database, as the restart tests use it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from simulator.core.charge_point import BootState, Charger
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.engine import loaded, wait_until


@contextlib.asynccontextmanager
async def running(charge_point_id: str) -> AsyncIterator[Charger]:
    """A worker that loads only this charger from the database (fast ticks and
    checkpoints) until its charger is booted; stopped, with its final checkpoint, after."""
    options = RunOptions(
        tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5, only_ids=[charge_point_id]
    )
    service = Simulator(options)
    await service.start()
    try:
        charger = loaded(service, charge_point_id)
        await wait_until(
            lambda: charger.online and charger.boot is BootState.ACCEPTED,
            message=f"{charge_point_id} to boot",
        )
        yield charger
    finally:
        await service.stop()
