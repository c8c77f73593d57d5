"""The engine's steady-state cost per second, in one process, without sockets.

    .venv/bin/python bench/steady_state.py [N] [--sample S] [--idle]     (N: default 5000)

`--sample S` sets MeterValueSampleInterval to S seconds (the fleet is created with 60);
`--idle` leaves the chargers without a transaction (idle, as connected chargers between
sessions). The tick's and the checkpoint's parts are printed too.

N single-EVSE AC chargers (created as bench/fleet.py creates them, in a throwaway SQLite
file) are loaded as the worker loads them, each starts a transaction offline, and then one
"second" of steady state is run nine times: a meter tick (`MeterEngine.tick`) and a full
checkpoint (`Checkpointer.take` + `write`, as the writer thread does). Prints the CPU time
(process_time) of each second and their median.

Unlike `fleet.py`, nothing else shares the measurement (no CSMS, no sockets, no event
loop), so two commits can be compared within a few per cent on a busy machine. It imports
the engine from either layout (before and after issue 13 moved `simulator/*.py` into
packages), so it runs on both sides of that change.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The checkout to measure is the working directory (run it from a repository root): a copy
# of this script then measures an older commit's engine just as well.
ROOT = Path.cwd()


def fleet_database(count: int, sample_interval: int, connectors: int = 1) -> None:
    """Set Django up on a throwaway SQLite file holding `count` chargers with `connectors`
    EVSEs each, created as bench/fleet.py creates them (also used by checkpoint_full.py)."""
    sys.path.insert(0, str(ROOT))
    var_dir = tempfile.mkdtemp()
    # Removed when the bench ends: 10,000 chargers left a 46 MB file per run in /tmp.
    atexit.register(shutil.rmtree, var_dir, ignore_errors=True)
    os.environ["CHARGESIM_VAR_DIR"] = var_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from locations.models import Location
    from vehicles.models import VehicleModel

    call_command("migrate", verbosity=0)
    Location.objects.seed_defaults()
    VehicleModel.objects.seed_catalogue()
    spec = importlib.util.spec_from_file_location("fleet", ROOT / "bench" / "fleet.py")  # its own
    assert spec is not None and spec.loader is not None
    fleet = importlib.util.module_from_spec(spec)
    sys.modules["fleet"] = fleet
    spec.loader.exec_module(fleet)
    if connectors == 1:  # the call of older copies of fleet.py, which had no connectors
        fleet.create_fleet(count, "ws://127.0.0.1:1/ocpp", sample_interval)
    else:
        fleet.create_fleet(count, "ws://127.0.0.1:1/ocpp", sample_interval, connectors)


def main() -> None:
    args = sys.argv[1:]
    idle = "--idle" in args
    sample = None
    if "--sample" in args:
        sample = args[args.index("--sample") + 1]
        del args[args.index("--sample") : args.index("--sample") + 2]
    args = [a for a in args if a != "--idle"]
    count = int(args[0]) if args else 5000
    fleet_database(count, 60)
    try:
        from simulator.runtime import persistence
        from simulator.runtime.meter_engine import MeterEngine
    except ImportError:  # the layout before issue 13
        from simulator.meter_engine import MeterEngine  # type: ignore[import-not-found, no-redef]  # old layout

        from simulator import persistence  # type: ignore[attr-defined, no-redef]  # old layout

    from tests.engine import COMPACT

    checkpointer = persistence.Checkpointer()
    chargers = persistence.load_fleet(checkpointer)
    persistence.restore(chargers, checkpointer)
    for charger in chargers:
        if sample is not None:
            charger.config["MeterValueSampleInterval"] = sample
        if not idle:
            charger.plug_in(1, COMPACT, soc=20)
            charger.start_transaction(1, "TAG")
    engine = MeterEngine(chargers, tick_seconds=1.0)
    now = time.monotonic()
    engine.tick(now=now)

    ticks: list[float] = []

    def one_second() -> float:
        nonlocal now
        started = time.process_time()
        now += 1.0
        engine.tick(now=now)
        ticks.append((time.process_time() - started) * 1000)
        batch = checkpointer.take(full=True)
        checkpointer.write(batch)
        checkpointer.written(batch)
        return (time.process_time() - started) * 1000

    for _ in range(3):
        one_second()  # warm-up: first writes, caches
    del ticks[:]
    # 30 "seconds": at --sample 10 every charger samples three times (the meter's events).
    seconds = [one_second() for _ in range(30 if sample is not None else 9)]
    what = "idle" if idle else "charging"
    print(
        f"tick + checkpoint of {count} {what} chargers (sample {sample or 'as created'}): "
        f"median {statistics.median(seconds):.1f} ms CPU per second (mean "
        f"{statistics.mean(seconds):.1f}; the samples of chargers started together fall due "
        f"in the same second), the tick alone median "
        f"{statistics.median(ticks):.1f} ms, mean {statistics.mean(ticks):.1f} ms "
        f"({', '.join(f'{s:.1f}' for s in seconds)})"
    )


if __name__ == "__main__":
    main()
