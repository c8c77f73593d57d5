"""A database outage as the worker's log tells it: the first failure in full, then a line
now and then while it lasts, and one when it ends (not a traceback a second)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels.db import database_sync_to_async

from simulator.core.charge_point import BootState
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.cast import make_charger
from tests.database_away import database_away
from tests.engine import loaded, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


async def test_a_database_outage_is_logged_once_in_full_then_now_and_then(csms, caplog) -> None:
    await database_sync_to_async(make_charger)("CP-OUT", evses=1, csms_url=csms.url)
    service = Simulator(
        RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5, only_ids=["CP-OUT"])
    )
    await service.start()
    service.checkpoint_outage.every = 0.5
    try:
        charger = loaded(service, "CP-OUT")
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot")
        async with database_away(service):

            async def failing_again() -> bool:
                service.checkpointer.on_change(charger)  # something to write, as a visit
                return len(_lines(caplog, "still failing")) >= 2

            while not await failing_again():
                await asyncio.sleep(0.05)
        await wait_until(lambda: _lines(caplog, "works again"), message="the end of it")
    finally:
        await service.stop()
    first = _lines(caplog, "checkpoint failed; retrying")
    assert len(first) == 1 and first[0].exc_info is not None
    still = _lines(caplog, "checkpoint still failing after")
    assert all(r.exc_info is None and "OperationalError" in r.getMessage() for r in still)
    ended = _lines(caplog, "checkpoint works again after")[0].getMessage()
    attempts = int(ended.split("(")[1].split()[0])
    # Every attempt failed (about ten a second here), but only these lines say so.
    assert attempts > len(first) + len(still), (ended, len(still))
