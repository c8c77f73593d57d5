"""The meter engine's CPU for a fleet whose chargers all have a charging profile (a CSMS
that sets a TxDefaultProfile at boot), in one process, without sockets or an outbox.

    .venv/bin/python bench/profiled_meter.py [CHARGERS] [SECONDS]   (default 2000, 300)

Runtime chargers of one AC 22 kW EVSE each, a vehicle charging at its on-board charger's
maximum (11 kW) in a transaction, a TxDefaultProfile of 16 A on connector 0 (one period,
no end), MeterValueSampleInterval 10 and the measurands `bench/fleet.py` configures,
heartbeats not due. A `MeterEngine` ticks every simulated second; `Charger.send` takes each
message and drops it. 20 warm-up ticks, then SECONDS; prints the engine's CPU per simulated
second and the visits per second (a charger visited every tick makes CHARGERS of them).
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
PROFILE = {
    "chargingProfileId": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Absolute",
    "chargingSchedule": {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
    },
}


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    in_process(ROOT)
    from simulator.core.operations import Operations
    from simulator.runtime.meter_engine import MeterEngine
    from tests.engine import COMPACT, runtime_charger

    config = {"MeterValueSampleInterval": "10", "MeterValuesSampledData": MEASURANDS}
    sent: list[Any] = []

    def send(message: Any, **kwargs: Any) -> None:
        sent.append(message)
        if len(sent) > 64:
            sent.clear()

    chargers = []
    for n in range(count):
        charger = runtime_charger(f"PROF-{n}", "ws://127.0.0.1:1/ocpp", evses=1, config=config)
        assert Operations(charger).on_set_charging_profile(0, PROFILE) == "Accepted"
        charger.plug_in(1, COMPACT, soc=20.0)
        charger.start_transaction(1, "BENCH")
        charger.send = send  # type: ignore[method-assign,assignment]
        charger.next_heartbeat = math.inf  # not due within the run
        chargers.append(charger)
    engine = MeterEngine(chargers, tick_seconds=1.0)
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
    print(
        f"{count} profiled chargers: {spent / seconds * 1e3:.2f} ms CPU per simulated second "
        f"({spent / seconds * 100:.1f} % of a core at real time), "
        f"{visits / seconds:.0f} visits per second"
    )


if __name__ == "__main__":
    main()
