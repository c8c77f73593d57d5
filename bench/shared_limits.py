"""The CPU cost of `Charger.refresh_limits` on an AC charger that shares its rated power: the
meter pays it at each visit of such a charger (every tick while a car waits its turn); and of
a managed site's controller, which asks each of its chargers what it wants every tick.

    .venv/bin/python bench/shared_limits.py [N]     (default 20,000 calls a repeat)

Run from a checkout (the working directory is the code measured). A charger rated 11 kW with
an 11 kW car in a session on each connector: with 2 connectors both cars fit (5.5 kW each);
with 3 the last one waits (the 6 A minimum). Prints the median over 7 repeats of the best of
3 timings, in µs per call. A checkout from before the turns (cedae99) is called without
their arguments.

Then `SiteController.apply` over 100 such chargers (3 connectors each) at one location with
load management on, a grid limit of 1 MW (ample) and of 500 kW (tight): µs per charger and
tick (N // 100 ticks a repeat).
"""

from __future__ import annotations

import inspect
import statistics
import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

from in_process import in_process  # bench/ is the script's directory

ROOT = Path.cwd()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    in_process(ROOT)
    from simulator.core.charge_point import Charger
    from tests.engine import COMPACT, runtime_charger

    def in_sessions(connectors: int) -> Charger:
        charger = runtime_charger("BENCH-SHARE", "", evses=connectors, max_kw=11.0)
        for connector in range(1, connectors + 1):
            charger.plug_in(connector, COMPACT, soc=20, target_soc=100)
            charger.start_transaction(connector, f"TAG-{connector}")
        return charger

    for connectors in (2, 3):
        charger = in_sessions(connectors)
        demand = charger.demand_w()
        with_turns = "turn_s" in inspect.signature(charger.refresh_limits).parameters
        args = (demand, 900.0, 0.0) if with_turns else (demand,)
        call: Callable[[], None] = partial(charger.refresh_limits, *args)
        runs = [min(timeit.repeat(call, number=count, repeat=3)) / count * 1e6 for _ in range(7)]
        waiting = [c for c, limit in charger.limits.items() if limit.watts <= 0]
        print(
            f"{connectors} connectors, waiting {waiting or 'none'}: "
            f"{statistics.median(runs):.2f} µs per refresh_limits"
        )
    site(count)


def site(count: int) -> None:
    from simulator.runtime.load_management import Site, SiteController
    from tests.engine import COMPACT, runtime_charger

    chargers = []
    for n in range(100):
        charger = runtime_charger(f"BENCH-SITE-{n}", "", evses=3, max_kw=11.0, location_id=1)
        for connector in (1, 2, 3):
            charger.plug_in(connector, COMPACT, soc=20, target_soc=100)
            charger.start_transaction(connector, f"TAG-{n}-{connector}")
        chargers.append(charger)
    ticks = max(1, count // 100)
    for grid_w in (1_000_000.0, 500_000.0):
        sites = SiteController()
        sites.use({1: Site(grid_w, True, 0.0)})
        call = partial(sites.apply, chargers, 0.0)
        runs = [
            min(timeit.repeat(call, number=ticks, repeat=3)) / ticks / 100 * 1e6 for _ in range(7)
        ]
        print(
            f"site of 100 chargers, grid {grid_w / 1000:.0f} kW: "
            f"{statistics.median(runs):.2f} µs per charger and tick"
        )


if __name__ == "__main__":
    main()
