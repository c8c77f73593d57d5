"""Shared cast for engine tests: runtime chargers (no database) and a live connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from simulator.core.charge_point import BootState, Charger, ChargerSpec, LinkState, Listener
from simulator.core.evse import Evse
from simulator.core.timers import Clock
from simulator.core.transfer import Transfers
from simulator.core.vehicle import VehicleSpec
from simulator.ocpp16.client import run_connection
from simulator.ocpp16.messages import OCPP16
from simulator.runtime.lifecycle import RunOptions, Simulator
from simulator.runtime.transfers import FileTransfers

COMPACT = VehicleSpec(
    name="Volkswagen ID.3 Pro (58 kWh)",
    capacity_kwh=58.0,
    ac_max_kw=11.0,
    ac_phases=3,
    dc_max_kw=120.0,
    dc_min_v=300.0,
    dc_nominal_v=370.0,
    dc_max_v=410.0,
    curve=((0, 100), (10, 120), (30, 115), (50, 90), (70, 65), (80, 50), (90, 30), (100, 7)),
    efficiency=0.92,
)
PHEV = VehicleSpec(
    name="BMW 330e",
    capacity_kwh=10.3,
    ac_max_kw=3.7,
    ac_phases=1,
    dc_max_kw=0.0,
    dc_min_v=0.0,
    dc_nominal_v=0.0,
    dc_max_v=0.0,
    curve=((0, 3.7), (90, 3.7), (100, 1.5)),
    efficiency=0.88,
)


def tx_default_profile(*periods: tuple[int, float], start: datetime | None = None) -> dict:
    """A TxDefaultProfile (id 1, stack level 0) in amps: (startPeriod s, limit A) periods,
    Absolute, from `start` (None: no startSchedule, from when it is installed)."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": a} for s, a in periods],
    }
    if start is not None:
        schedule["startSchedule"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": schedule,
    }


def runtime_charger(
    cp_id: str,
    csms_url: str,
    *,
    evses: int = 2,
    power_type: str = "AC",
    max_kw: float = 22.0,
    listener: Listener | None = None,
    config: dict[str, str] | None = None,
    transfers: Transfers | None = None,
    clock: Clock | None = None,
    **spec_fields: Any,
) -> Charger:
    spec = ChargerSpec(
        charge_point_id=cp_id,
        csms_url=csms_url,
        power_type=power_type,
        max_power_w=max_kw * 1000,
        **spec_fields,
    )
    return Charger(
        spec,
        [Evse(connector_id=n, max_power_w=max_kw * 1000) for n in range(1, evses + 1)],
        config=config,
        listener=listener,
        vehicles=[COMPACT, PHEV],
        messages=OCPP16,
        transfers=transfers if transfers is not None else FileTransfers(timeout=5.0),
        clock=clock,
    )


def loaded(service: Simulator, charge_point_id: str) -> Charger:
    """The service's live charger of that id; a test that expects one fails clearly without."""
    charger = service.store.get(charge_point_id)
    assert charger is not None, f"{charge_point_id} is not loaded"
    return charger


def register_now(charger: Charger, connector_id: int = 1) -> float:
    """A connector's register as of the meter engine's latest tick. The engine meters a
    charging connector at its events only (a sample, a status change), so a reader of
    "now" settles the charger first, as the charge point's own readers do."""
    charger.settle_meter()
    return charger.evse(connector_id).register_wh


async def wait_until(
    # Callable[..., object]: tests bind loop variables as defaults (lambda c=charger: ...).
    predicate: Callable[..., object],
    timeout: float = 5.0,
    message: str = "condition",
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def connected(charger: Charger, *, booted: bool = True) -> AsyncIterator[Charger]:
    task = asyncio.create_task(run_connection(charger, reconnect_cap=0.2))
    try:
        if booted:
            await wait_until(
                lambda: charger.boot is BootState.ACCEPTED and charger.link is LinkState.ONLINE,
                message=f"{charger.id} to boot",
            )
        yield charger
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        charger.cancel_timers()


async def boot_reports_answered(charger: Charger) -> None:
    """What a charger sends after its boot (its startup security event, then a status a
    connector, one CALL at a time) is answered. A test that stops its CSMS answering, or
    builds a queue of its own, waits for this first: on a busy machine those reports were
    still queued, and the queue was not the one the test built."""
    await wait_until(lambda: not charger.queue, message=f"{charger.id}'s boot reports answered")


async def started(*ids: str) -> Simulator:
    """A simulator of the database's chargers of these ids, quick to tick and checkpoint,
    once every one of them is booted (its CSMS is each charger's own csms_url)."""
    service = Simulator(
        RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5, only_ids=list(ids))
    )
    await service.start()
    for cp_id in ids:
        charger = loaded(service, cp_id)
        await wait_until(lambda c=charger: c.boot is BootState.ACCEPTED, message=f"{cp_id} boot")
    return service


def demo_simulator(**options: Any) -> Simulator:
    """`runsimulator --demo` in-process, quick to tick, with no web server, its built-in
    CSMS on a free port and no demo operations; `options` add to or override these."""
    settings: dict[str, Any] = {
        "web": False,
        "demo": True,
        "demo_operations": False,
        "csms_port": 0,
        "csms_control_port": -1,
        "tick_seconds": 0.1,
    }
    return Simulator(RunOptions(**(settings | options)), write=lambda _text: None)
