"""Edit reboots benchmark: an edit that reboots N running chargers at once (an import that
changes their vendor), until all have booted again.

    python bench/edit_reboots.py [--chargers 1000]

What it does: a throwaway SQLite database gets N chargers (bench/fleet.py's fleet, one
EVSE each); the engine (`Simulator`) and the built-in CSMS run in this process, and the
chargers boot. Then every row's vendor changes in one UPDATE (as an import's commit), and
the worker applies it as it applies a `fleet.changed` (`FleetReloader.apply`): each charger
reboots and sends a BootNotification with the new vendor.

Figures (the last line is one JSON object):

- apply_seconds: the apply, during which the worker's fleet lock is held, so that every
  other edit (an admin save of another charger) waits for it;
- all_booted_seconds: from the edit until the CSMS has every new BootNotification;
- cpu_seconds: this process's CPU time over that (the CSMS's share included);
- outcomes: the outcomes the apply gave, counted.

QA (session 33) saw a 1,000-row import that changed the vendor reboot about 17 chargers a
second, and an admin save of another charger wait 13 s behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from typing import Any

from fleet import create_fleet, prepare_database, raise_open_files, say, setup_django
from in_process import throwaway_var_dir  # bench/ is the script's directory


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(n: int) -> dict[str, Any]:
    from asgiref.sync import sync_to_async
    from django.utils import timezone

    from chargers.models import Charger as ChargerRow
    from simulator.csms.server import CentralSystem
    from simulator.runtime.lifecycle import RunOptions, Simulator

    csms = CentralSystem()
    await csms.start("127.0.0.1", 0)
    await sync_to_async(create_fleet)(n, csms.url, 300)
    service = Simulator(RunOptions(reconnect_cap=1.0))
    await service.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while csms.counts["BootNotification"] < n:
            if loop.time() > deadline:
                raise RuntimeError(f"only {csms.counts['BootNotification']} of {n} booted")
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # the boots' status reports answered
        boots = csms.counts["BootNotification"]
        pks = await sync_to_async(lambda: list(ChargerRow.objects.values_list("pk", flat=True)))()
        await sync_to_async(ChargerRow.objects.update)(vendor="Edited", updated=timezone.now())
        cpu0, started = cpu(), time.monotonic()
        outcomes = await service.reloader.apply(pks)
        applied = time.monotonic()
        deadline = loop.time() + 300
        while csms.counts["BootNotification"] < boots + n:
            if loop.time() > deadline:
                raise RuntimeError("not every charger booted again")
            await asyncio.sleep(0.01)
        booted = time.monotonic()
        return {
            "chargers": n,
            "apply_seconds": round(applied - started, 2),
            "all_booted_seconds": round(booted - started, 2),
            "cpu_seconds": round(cpu() - cpu0, 2),
            "outcomes": dict(Counter(o["outcome"] for o in outcomes)),
        }
    finally:
        await service.stop()
        await csms.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chargers", type=int, default=1000, metavar="N")
    args = parser.parse_args(argv)
    raise_open_files(4 * args.chargers + 2048)
    setup_django(throwaway_var_dir("chargesim-edit-reboots-"))
    prepare_database()
    figures = asyncio.run(run(args.chargers))
    say(
        f"{figures['chargers']} chargers: apply {figures['apply_seconds']} s, all booted "
        f"again {figures['all_booted_seconds']} s, CPU {figures['cpu_seconds']} s"
    )
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
