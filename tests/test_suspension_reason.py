"""Why a connector is SuspendedEVSE, said once per change: a charging profile, the charger's
power share or the site's load limit that leaves a car under 6 A a phase (IEC 61851-1) is
named in the StatusNotification's info and the log. Over real loopback WebSockets against
the built-in CSMS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from simulator.core.charge_point import Charger
from simulator.core.evse import ConnectorStatus
from tests.engine import connected, runtime_charger, wait_until
from tests.test_evse_offer import install, profile, reported, session, statuses_heard

Status = ConnectorStatus


@contextlib.asynccontextmanager
async def charging(csms, ticking, cp_id) -> AsyncIterator[Charger]:
    """A one-connector 22 kW AC charger on the CSMS, its car charging, the meter ticking."""
    charger = runtime_charger(cp_id, csms.url, evses=1)
    async with connected(charger):
        ticking(charger)
        await session(charger, 1, "A")
        await wait_until(lambda: charger.evse(1).power_w > 0, message="charging")
        yield charger


async def test_a_tx_profile_under_6_a_suspends_the_car_saying_why_until_it_rises(
    csms, ticking, caplog
):
    why = "charging profile allows 4.0 A per phase (6 A min)"
    async with charging(csms, ticking, "SR-AMP") as charger:
        tx = charger.evse(1).transaction_id
        mark = len(csms.log)
        await install(csms, "SR-AMP", 1, profile("TxProfile", 4, transactionId=tx))
        suspended = await reported(csms, "SR-AMP", 1, "SuspendedEVSE", mark)
        assert suspended.payload["info"] == why
        assert charger.evse(1).info == why
        await asyncio.sleep(0.3)  # a few meter visits: said once, not on every one
        assert statuses_heard(csms, 1, mark) == ["SuspendedEVSE"]
        assert caplog.messages.count(f"SR-AMP: connector 1 suspends the car: {why}") == 1
        mark = len(csms.log)
        await install(csms, "SR-AMP", 1, profile("TxProfile", 16, transactionId=tx))
        resumed = await reported(csms, "SR-AMP", 1, "Charging", mark)
        assert "info" not in resumed.payload
        assert charger.evse(1).info is None
        await wait_until(lambda: charger.evse(1).power_w > 0, message="flowing again")


async def test_a_power_share_that_leaves_a_car_nothing_says_so(csms, ticking):
    # 11 kW for three 11 kW connectors and cars: two charge at 5.5 kW, the last waits.
    charger = runtime_charger("SR-SUP", csms.url, evses=3, max_kw=11.0)
    async with connected(charger):
        ticking(charger)
        mark = len(csms.log)
        for connector, tag in ((1, "A"), (2, "B"), (3, "C")):
            await session(charger, connector, tag)
        suspended = await reported(csms, "SR-SUP", 3, "SuspendedEVSE", mark)
        assert suspended.payload["info"] == "power share allows 0.0 A per phase (6 A min)"


async def test_a_site_load_limit_under_6_a_says_so_and_lifting_it_resumes(csms, ticking):
    async with charging(csms, ticking, "SR-SITE") as charger:
        mark = len(csms.log)
        charger.set_site_caps({1: 3.0 * 230.0 * 3})  # what the site's controller hands out
        suspended = await reported(csms, "SR-SITE", 1, "SuspendedEVSE", mark)
        assert suspended.payload["info"] == "site load limit allows 3.0 A per phase (6 A min)"
        mark = len(csms.log)
        charger.set_site_caps({})
        await reported(csms, "SR-SITE", 1, "Charging", mark)
        assert charger.evse(1).status is Status.CHARGING and charger.evse(1).info is None


async def test_the_reason_follows_a_limit_that_changes_while_the_car_waits(csms, ticking):
    """4 A, then 3 A: the car stays SuspendedEVSE, and the reason said its first figure
    (4.0 A) until it resumed. A changed reason is a new StatusNotification (the same status,
    the new info), as a real charger reports a changed error; an equal limit again is none."""
    async with charging(csms, ticking, "SR-MOVE") as charger:
        tx = charger.evse(1).transaction_id
        mark = len(csms.log)
        await install(csms, "SR-MOVE", 1, profile("TxProfile", 4, transactionId=tx))
        first = await reported(csms, "SR-MOVE", 1, "SuspendedEVSE", mark)
        assert first.payload["info"] == "charging profile allows 4.0 A per phase (6 A min)"
        mark = len(csms.log)
        await install(csms, "SR-MOVE", 1, profile("TxProfile", 3, transactionId=tx))
        why = "charging profile allows 3.0 A per phase (6 A min)"
        again = await csms.wait_for(
            "SR-MOVE",
            "StatusNotification",
            after=mark,
            predicate=lambda e: e.payload["connectorId"] == 1 and e.payload.get("info") == why,
        )
        assert again.payload["status"] == "SuspendedEVSE"
        assert charger.evse(1).status is Status.SUSPENDED_EVSE and charger.evse(1).info == why
        mark = len(csms.log)
        # The same limit once more (a new profile object, an equal limit): nothing to say;
        # then 2 A, which is: the CSMS hears the 2 A reason alone.
        await install(csms, "SR-MOVE", 1, profile("TxProfile", 3, transactionId=tx))
        await install(csms, "SR-MOVE", 1, profile("TxProfile", 2, transactionId=tx))
        last = await reported(csms, "SR-MOVE", 1, "SuspendedEVSE", mark)
        assert last.payload["info"] == "charging profile allows 2.0 A per phase (6 A min)"
        assert statuses_heard(csms, 1, mark) == ["SuspendedEVSE"]
