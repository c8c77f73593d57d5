"""Power cycle stalls benchmark: how long the worker's event loop stands still while a bulk
reboot power-cycles every charger.

    python bench/power_cycle_stalls.py [--chargers 1000]

What it does: a throwaway SQLite database gets N chargers (bench/fleet.py's fleet, one EVSE
each); `bench/load_csms.py` runs as a child process; the engine runs in this process as
`runsimulator --no-web` runs it (its gc policy too). Once every charger has booted, every
charger is power-cycled at once, as a bulk reboot asks the reloader for each
(`FleetReloader.power_cycle`, all in the same turn of the loop), until the load CSMS has N
more BootNotifications. bench/bulk_reboot.py measures the same through the API, where a
request's latency also waits for the database; this one measures the loop alone
(`LoopStalls` of bench/reimport_memory.py: a task sleeping 10 ms, how late it wakes, and
which collections of the garbage collector overlapped).

Figures (the last line is one JSON object): power_cycles_seconds (all power cycles
answered), all_booted_seconds, longest_stall_ms with the stalls of 100 ms or more (and
what overlapped them), the collections by generation, and the loads of chargers from the
database (`load_fleet`) the power cycles made, with the longest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from fleet import (
    Children,
    CsmsControl,
    create_fleet,
    prepare_database,
    raise_open_files,
    say,
    setup_django,
)
from in_process import throwaway_var_dir  # bench/ is the script's directory
from reimport_memory import LoopStalls


async def run(n: int) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    from simulator.runtime import live_fleet
    from simulator.runtime.lifecycle import RunOptions, Simulator

    children = Children()
    try:
        csms = CsmsControl(children, heartbeat_interval=300)
        await sync_to_async(create_fleet)(n, csms.url, 300)
        csms.ask("expect", n=n, connectors=1)
        # As `runsimulator --no-web` runs it (its gc policy too), as bench/reimport_memory.py.
        options = RunOptions.from_settings(web=False, migrate=False, status_seconds=3600.0)
        service = Simulator.for_process(options, write=lambda _: None)
        await service.startup()
        try:
            while csms.ask("status")["all_booted_at"] is None:
                await asyncio.sleep(0.2)
            await asyncio.sleep(3.0)  # the boots' status reports answered, the fleet frozen
            loads: list[float] = []
            load = live_fleet.load_fleet

            def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return load(*args, **kwargs)
                finally:
                    loads.append(time.perf_counter() - started)

            live_fleet.load_fleet = timed
            boots = csms.ask("status")["by_action"]["BootNotification"]
            stalls = LoopStalls()
            stalls.start()
            started = time.perf_counter()
            cycles = (service.reloader.power_cycle(c, paced=True) for c in list(service.store))
            await asyncio.gather(*cycles)
            cycled = time.perf_counter()
            while csms.ask("status")["by_action"]["BootNotification"] < boots + n:
                await asyncio.sleep(0.05)
            booted = time.perf_counter()
            figures = stalls.take()
            stalls.stop()
            live_fleet.load_fleet = load
        finally:
            await service.stop()
        csms.quit()
    finally:
        children.stop_all()
    return {
        "chargers": n,
        "power_cycles_seconds": round(cycled - started, 2),
        "all_booted_seconds": round(booted - started, 2),
        **figures,
        "loads": len(loads),
        "longest_load_ms": round(max(loads, default=0.0) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chargers", type=int, default=1000, metavar="N")
    args = parser.parse_args(argv)
    raise_open_files(4 * args.chargers + 2048)
    setup_django(throwaway_var_dir("chargesim-power-cycle-stalls-"))
    prepare_database()
    figures = asyncio.run(run(args.chargers))
    for line in LoopStalls.summary(figures):
        say(line)
    say(
        f"{figures['chargers']} chargers: power cycles {figures['power_cycles_seconds']} s, "
        f"all booted {figures['all_booted_seconds']} s, {figures['loads']} loads"
    )
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
