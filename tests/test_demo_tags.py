"""The demo's built-in CSMS answers the demo's idTags as the local list it sends says."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from simulator.csms import CentralSystem
from simulator.csms.showcase import DEMO_TAGS
from simulator.runtime.lifecycle import Simulator
from tests.engine import COMPACT, connected, demo_simulator, loaded, runtime_charger, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def demo() -> AsyncIterator[Simulator]:
    """`runsimulator --demo` in-process with one charger, no drivers and no demo
    operations: no local list, so every idTag goes to the CSMS."""
    simulator = demo_simulator(demo_chargers=1, demo_share=0)
    serving = asyncio.create_task(simulator.serve())
    try:
        await wait_until(lambda: simulator.progress()["accepted"] == 1, message="demo", timeout=30)
        yield simulator
    finally:
        simulator.request_stop()
        await serving


def built_in(simulator: Simulator) -> CentralSystem:
    assert simulator.csms is not None
    return simulator.csms


async def test_the_demo_csms_answers_authorize_for_each_demo_tag_as_its_list_says(demo):
    charger = loaded(demo, "DEMO-0001")
    assert await charger.present_id_tag(1, "DEMO-BLOCKED") == "Blocked"
    assert DEMO_TAGS["DEMO-BLOCKED"] == "Blocked"
    accepted = next(tag for tag, status in DEMO_TAGS.items() if status == "Accepted")
    assert await charger.present_id_tag(2, accepted) == "Accepted"


async def test_the_demo_csms_answers_start_transaction_for_a_blocked_tag_as_blocked(demo):
    """A charger that starts without asking (offline, or from its own cache) learns from
    StartTransaction's idTagInfo that the tag is blocked."""
    csms = built_in(demo)
    charger = runtime_charger("DEMO-TAGS-1", f"{csms.url}/ocpp", evses=1)
    async with connected(charger):
        charger.plug_in(1, COMPACT)
        charger.start_transaction(1, "DEMO-BLOCKED")
        await wait_until(
            lambda: any(t.cp_id == charger.id for t in csms.transactions.values()),
            message="the StartTransaction",
        )
    (started,) = [t for t in csms.transactions.values() if t.cp_id == charger.id]
    assert (started.id_tag, started.id_tag_status) == ("DEMO-BLOCKED", "Blocked")
