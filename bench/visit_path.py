"""The CPU cost of the meter's visit of a charging connector whose sample is due, with its
MeterValues built, in one process, without sockets or an outbox.

    .venv/bin/python bench/visit_path.py [N] [ac|dc]     (default 3000 ticks, both chargers)

Two runtime chargers, each one EVSE in a transaction, MeterValueSampleInterval 1 and the
measurands `bench/fleet.py` configures: an AC 22 kW charger with a vehicle held at its
on-board charger's maximum (the fleet's case), and a DC 150 kW charger whose vehicle follows
its curve (a large battery, so that N ticks stay inside the session). A `MeterEngine` ticks
every simulated second, so each tick visits both chargers and each builds one MeterValues;
`Charger.send` takes the message and drops it (the outbox and the wire are the send path's,
`bench/call_path.py`). 200 warm-up ticks, then N; prints the CPU time per visit.

For instruction counts (deterministic on a busy machine):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/tmp/v.%p \\
        .venv/bin/python bench/visit_path.py 1000      (and 3000)

per visit = (Ir(3000) - Ir(1000)) / 4000 (two visits a tick); with `ac` or `dc` only that
charger is ticked (one visit a tick: divide by 2000).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path.cwd()
MEASURANDS = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC"
WARMUP = 200


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    only = sys.argv[2] if len(sys.argv) > 2 else None
    sys.path.insert(0, str(ROOT))
    from simulator.runtime.meter_engine import MeterEngine
    from tests.engine import COMPACT, runtime_charger

    config = {"MeterValueSampleInterval": "1", "MeterValuesSampledData": MEASURANDS}
    ac = runtime_charger("VISIT-AC", "ws://127.0.0.1:1/ocpp", evses=1, config=dict(config))
    dc = runtime_charger(
        "VISIT-DC", "ws://127.0.0.1:1/ocpp", evses=1, power_type="DC", max_kw=150.0,
        config=dict(config),
    )  # fmt: skip
    big = dataclasses.replace(COMPACT, name="bench truck", capacity_kwh=1500.0)
    sent: list[Any] = []

    def send(message: Any, **kwargs: Any) -> None:
        sent.append(message)
        if len(sent) > 64:
            sent.clear()

    for charger, vehicle in ((ac, COMPACT), (dc, big)):
        charger.plug_in(1, vehicle, soc=20.0)
        charger.start_transaction(1, "BENCH")
        charger.send = send  # type: ignore[method-assign]
    chargers = {"ac": [ac], "dc": [dc]}.get(only or "", [ac, dc])
    engine = MeterEngine(chargers, tick_seconds=1.0)
    now, wall = time.monotonic(), datetime(2026, 1, 1, tzinfo=UTC)
    second = timedelta(seconds=1)
    for _ in range(WARMUP):
        now, wall = now + 1.0, wall + second
        engine.tick(now, wall)
    visits = engine.visits
    started = time.process_time()
    for _ in range(count):
        now, wall = now + 1.0, wall + second
        engine.tick(now, wall)
    spent = time.process_time() - started
    visits = engine.visits - visits
    assert visits == len(chargers) * count, visits
    print(f"{visits} visits, {spent / visits * 1e6:.2f} us per visit")
    print(f"AC SoC {ac.evse(1).soc:.2f} %, DC SoC {dc.evse(1).soc:.2f} %")


if __name__ == "__main__":
    main()
