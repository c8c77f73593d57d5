"""The meter's visits of an idle fleet: how they fall on the ticks, and the longest tick.

    .venv/bin/python bench/idle_visits.py [N]     (default 10,000 chargers)

N runtime chargers of one EVSE each, idle (no transaction, no heartbeat or clock-aligned
sample due), that came up together: a `MeterEngine` ticks every simulated second for 150 s
after their first visit, so each is visited by its safety net (`MAX_SLEEP_S`, spread by
`SAFETY_SPREAD_S` where the engine has it) twice at most. Prints the visits of the busiest
tick and the CPU time of the longest tick (a tick is one synchronous loop: the event loop
waits for it), the median of 5 rounds.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from in_process import in_process  # bench/ is the script's directory

ROOT = Path.cwd()
SECONDS = 150
ROUNDS = 5


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    in_process(ROOT)
    from simulator.runtime.meter_engine import MeterEngine
    from tests.engine import runtime_charger

    idle = {"ClockAlignedDataInterval": "0"}
    longest, busiest = [], []
    for round_ in range(ROUNDS):
        fleet = [
            runtime_charger(f"IDLE-{round_}-{n:05d}", "ws://127.0.0.1:1", evses=1, config=idle)
            for n in range(count)
        ]
        for charger in fleet:
            charger.next_heartbeat = math.inf  # not due within the run
        engine = MeterEngine(fleet, tick_seconds=1.0)
        now, wall = 1000.0, datetime(2026, 1, 1, tzinfo=UTC)
        engine.tick(now, wall)  # the fleet came up: every one visited
        ticks, visits = [], []
        for _ in range(SECONDS):
            now, wall = now + 1.0, wall + timedelta(seconds=1)
            before, started = engine.visits, time.process_time()
            engine.tick(now, wall)
            ticks.append(time.process_time() - started)
            visits.append(engine.visits - before)
        longest.append(max(ticks))
        busiest.append(max(visits))
        print(
            f"round {round_ + 1}: {sum(visits)} visits in {SECONDS} s, at most {max(visits)} "
            f"in one tick; longest tick {max(ticks) * 1000:.1f} ms"
        )
    print(
        f"{count} idle chargers: busiest tick {statistics.median(busiest):.0f} visits, "
        f"longest tick {statistics.median(longest) * 1000:.1f} ms (medians of {ROUNDS})"
    )


if __name__ == "__main__":
    main()
