"""With DEBUG on (the default), Django keeps each thread's SQL in its connection's query
log, up to 9,000 statements, and clears it only for a web request. A worker runs for days
and makes none: its threads must not keep what they ran."""

from __future__ import annotations

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async

from chargers.models import Charger as ChargerRow
from simulator.core.charge_point import BootState
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.cast import make_charger
from tests.engine import COMPACT, loaded, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _logged() -> tuple[str, int]:
    from django.db import connections

    return threading.current_thread().name, sum(
        len(conn.queries_log) for conn in connections.all(initialized_only=True)
    )


def _edit(charge_point_id: str) -> None:
    row = ChargerRow.objects.get(charge_point_id=charge_point_id)
    row.vendor = "Edited"
    row.save()


async def _every_pool_thread() -> list[tuple[str, int]]:
    """What each thread of the loop's default pool (where the worker's ORM calls run) has
    logged: one probe per thread, held at a barrier so that no thread takes two."""
    loop = asyncio.get_running_loop()
    pool = loop._default_executor  # type: ignore[attr-defined]
    threads = len(pool._threads) if pool is not None else 0
    assert threads, "the worker ran no ORM call in the pool"
    barrier = threading.Barrier(threads, timeout=10)

    def probe() -> tuple[str, int]:
        barrier.wait()
        return _logged()

    return list(await asyncio.gather(*(loop.run_in_executor(None, probe) for _ in range(threads))))


async def test_with_debug_on_the_workers_threads_keep_no_query_log(csms, settings) -> None:
    settings.DEBUG = True  # as `make run` and a deployment that leaves the default
    await database_sync_to_async(make_charger)("CP-LOG", evses=1, csms_url=csms.url)
    service = Simulator(
        RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5, only_ids=["CP-LOG"])
    )
    await service.start()
    try:
        charger = loaded(service, "CP-LOG")
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot")
        charger.plug_in(1, COMPACT, soc=30)
        assert await charger.present_id_tag(1, "TAG-1") == "Accepted"
        await csms.wait_for("CP-LOG", "StartTransaction", direction="out", message_type=3)
        # An edit, read by the live fleet's reconciliation in the pool.
        await database_sync_to_async(_edit)("CP-LOG")
        outcomes = await service.reloader.reconcile()
        assert [o["outcome"] for o in outcomes] == [
            "the new vendor takes effect when its session ends (it reboots then)"
        ]
        for _ in range(3):  # checkpoints of a running session (the loop's go on meanwhile)
            service.checkpointer.on_change(charger)
            await service.checkpoint()
        loop = asyncio.get_running_loop()
        writer = await loop.run_in_executor(service._writer, _logged)
        pool = await _every_pool_thread()
    finally:
        await service.stop()
    assert writer[1] == 0, writer
    assert all(count == 0 for _name, count in pool), pool
