"""The demo's simulated drivers (`--demo-share`, simulator/runtime/demo.py) over a restart."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from simulator.runtime.lifecycle import Simulator
from tests.cast import make_vehicle
from tests.engine import demo_simulator, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CHARGERS = 4  # two connectors each


def plugged(simulator: Simulator) -> int:
    return sum(evse.battery is not None for charger in simulator.store for evse in charger.evses)


async def run_demo_once() -> int:
    """`runsimulator --demo --demo-share 0.5` until its drivers are done, then stopped as
    by Ctrl-C: how many connectors had a vehicle."""
    simulator = demo_simulator(demo_chargers=CHARGERS, demo_share=0.5)
    serving = asyncio.create_task(simulator.serve())
    try:
        await wait_until(
            lambda: simulator.progress()["accepted"] == CHARGERS, message="demo", timeout=30
        )
        drivers = [t for t in asyncio.all_tasks() if t.get_name() == "demo-driver"]
        await asyncio.wait_for(asyncio.gather(*drivers), 30)
        return plugged(simulator)
    finally:
        simulator.request_stop()
        await serving


async def test_a_restart_of_the_demo_only_tops_the_sessions_up_to_the_share():
    """The cars a restart plugs back in count: each restart used to start a new share of
    sessions on the connectors left free, until nearly every connector was charging."""
    await sync_to_async(make_vehicle)(0)
    first = await run_demo_once()
    assert first == CHARGERS  # half of the 2 * CHARGERS connectors
    assert await run_demo_once() == first
    assert await run_demo_once() == first
