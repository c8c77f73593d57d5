"""The meter engine's CPU for a fleet at sites whose load management is on, against the same
fleet with it off, in one process, without sockets or an outbox.

    .venv/bin/python bench/managed_meter.py [CHARGERS] [SECONDS]   (default 2000, 120)

Runtime chargers of two AC 22 kW EVSEs each, an 11 kW car charging on both, 20 chargers a
location, MeterValueSampleInterval 10 and the measurands `bench/fleet.py` configures,
heartbeats not due. A `MeterEngine` ticks every simulated second with a `SiteController`:
load management off, then on with a grid limit that leaves room (1 MW a location: nobody held
back) and one that binds (300 kW a location for 440 kW of cars). `Charger.send` takes each
message and drops it. 20 warm-up ticks, then SECONDS; prints the engine's CPU per simulated
second for each.
"""

from __future__ import annotations

import math
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from in_process import in_process  # bench/ is the script's directory

ROOT = Path.cwd()
MEASURANDS = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC"
WARMUP = 20
PER_LOCATION = 20


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 120
    in_process(ROOT)
    from simulator.runtime.load_management import Site, SiteController
    from simulator.runtime.meter_engine import MeterEngine
    from tests.engine import COMPACT, runtime_charger

    config = {"MeterValueSampleInterval": "10", "MeterValuesSampledData": MEASURANDS}
    sent: list[Any] = []

    def send(message: Any, **kwargs: Any) -> None:
        sent.append(message)
        if len(sent) > 64:
            sent.clear()

    locations = range(1, count // PER_LOCATION + 2)
    for label, grid_w in (("off", None), ("on, 1 MW", 1_000_000.0), ("on, 300 kW", 300_000.0)):
        chargers = []
        for n in range(count):
            charger = runtime_charger(
                f"LM-{n}", "ws://127.0.0.1:1/ocpp", config=config, location_id=n // PER_LOCATION + 1
            )
            for connector in (1, 2):
                charger.plug_in(connector, COMPACT, soc=20.0)
                charger.start_transaction(connector, "BENCH")
            charger.send = send  # type: ignore[method-assign,assignment]
            charger.next_heartbeat = math.inf  # not due within the run
            chargers.append(charger)
        sites = SiteController()
        sites.use({pk: Site(grid_w, grid_w is not None, 900.0) for pk in locations})
        engine = MeterEngine(chargers, tick_seconds=1.0, sites=sites)
        now, wall = time.monotonic(), datetime.now(UTC)
        second = timedelta(seconds=1)
        for _ in range(WARMUP):
            now, wall = now + 1.0, wall + second
            engine.tick(now, wall)
        visits = engine.visits
        started = time.process_time()
        for _ in range(seconds):
            now, wall = now + 1.0, wall + second
            engine.tick(now, wall)
        spent = time.process_time() - started
        visits = engine.visits - visits
        held = sum(sites.held_back.values())
        print(
            f"{count} chargers, load management {label}: {spent / seconds * 1e3:.2f} ms CPU "
            f"per simulated second ({spent / seconds * 100:.1f} % of a core at real time), "
            f"{visits / seconds:.0f} visits per second, {held} connectors held back"
        )


if __name__ == "__main__":
    main()
