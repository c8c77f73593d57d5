"""The CPU cost of `Charger.refresh_limits` on an AC charger that shares its rated power: the
meter pays it at each visit of such a charger (every tick while a car waits its turn).

    .venv/bin/python bench/shared_limits.py [N]     (default 20,000 calls a repeat)

Run from a checkout (the working directory is the code measured). A charger rated 11 kW with
an 11 kW car in a session on each connector: with 2 connectors both cars fit (5.5 kW each);
with 3 the last one waits (the 6 A minimum). Prints the median over 7 repeats of the best of
3 timings, in µs per call. A checkout from before the turns (cedae99) is called without
their arguments.
"""

from __future__ import annotations

import inspect
import statistics
import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path.cwd()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    sys.path.insert(0, str(ROOT))
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


if __name__ == "__main__":
    main()
