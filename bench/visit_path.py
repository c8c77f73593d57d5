"""The CPU cost of the meter's visit of a charging connector whose sample is due, with its
MeterValues built, in one process, without sockets or an outbox.

    .venv/bin/python bench/visit_path.py [N] [ac|dc]     (default 900 ticks, both kinds)

Runtime chargers of one EVSE each, in a transaction, MeterValueSampleInterval 1 and the
measurands `bench/fleet.py` configures, heartbeats not due (as online ones between two):
20 AC 22 kW chargers with a vehicle held at its on-board charger's maximum (the fleet's
case), and 20 DC 150 kW chargers whose vehicle follows its curve (a large battery, so that
N ticks stay inside the session). A `MeterEngine` ticks every simulated second, so each
tick visits every charger and each builds one MeterValues (the tick's own work, such as
its timestamp, is shared as in a fleet); `Charger.send` takes the message and drops it
(the outbox and the wire are the send path's, `bench/call_path.py`). 100 warm-up ticks,
then N; prints the CPU time per visit.

For instruction counts (deterministic on a busy machine):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/tmp/v.%p \\
        .venv/bin/python bench/visit_path.py 300 ac      (and 900)

per visit = (Ir(900) - Ir(300)) / (600 x 20) with `ac` or `dc` (only those chargers are
ticked), / (600 x 40) with both.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from in_process import in_process  # bench/ is the script's directory

ROOT = Path.cwd()
MEASURANDS = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC"
WARMUP = 100
EACH = 20  # chargers of each kind


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 900
    only = sys.argv[2] if len(sys.argv) > 2 else None
    in_process(ROOT)
    from simulator.core.charge_point import Charger
    from simulator.core.vehicle import VehicleSpec
    from simulator.runtime.meter_engine import MeterEngine
    from tests.engine import COMPACT, runtime_charger

    config = {"MeterValueSampleInterval": "1", "MeterValuesSampledData": MEASURANDS}
    big = dataclasses.replace(COMPACT, name="bench truck", capacity_kwh=1500.0)
    sent: list[Any] = []

    def send(message: Any, **kwargs: Any) -> None:
        sent.append(message)
        if len(sent) > 64:
            sent.clear()

    def charging(name: str, vehicle: VehicleSpec, **kind: Any) -> Charger:
        charger = runtime_charger(
            name, "ws://127.0.0.1:1/ocpp", evses=1, config=dict(config), **kind
        )
        charger.plug_in(1, vehicle, soc=20.0)
        charger.start_transaction(1, "BENCH")
        charger.send = send  # type: ignore[method-assign,assignment]
        charger.next_heartbeat = math.inf  # not due within the run
        return charger

    ac = [charging(f"VISIT-AC-{n}", COMPACT) for n in range(EACH)]
    dc = [charging(f"VISIT-DC-{n}", big, power_type="DC", max_kw=150.0) for n in range(EACH)]
    chargers = {"ac": ac, "dc": dc}.get(only or "", ac + dc)
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
    print(f"AC SoC {ac[0].evse(1).soc:.2f} %, DC SoC {dc[0].evse(1).soc:.2f} %")


if __name__ == "__main__":
    main()
