"""The engine's steady-state cost per second, in one process, without sockets.

    .venv/bin/python bench/steady_state.py [N]      (default 5000)

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

import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The checkout to measure is the working directory (run it from a repository root): a copy
# of this script then measures an older commit's engine just as well.
ROOT = Path.cwd()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    sys.path.insert(0, str(ROOT))
    os.environ["CHARGESIM_VAR_DIR"] = tempfile.mkdtemp()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from locations.models import Location
    from tests.engine import COMPACT
    from vehicles.models import VehicleModel

    call_command("migrate", verbosity=0)
    Location.objects.seed_defaults()
    VehicleModel.objects.seed_catalogue()
    spec = importlib.util.spec_from_file_location("fleet", ROOT / "bench" / "fleet.py")  # its own
    assert spec is not None and spec.loader is not None
    fleet = importlib.util.module_from_spec(spec)
    sys.modules["fleet"] = fleet
    spec.loader.exec_module(fleet)
    fleet.create_fleet(count, "ws://127.0.0.1:1/ocpp", 60)
    try:
        from simulator.runtime import persistence
        from simulator.runtime.meter_engine import MeterEngine
    except ImportError:  # the layout before issue 13
        from simulator.meter_engine import MeterEngine  # type: ignore[import-not-found, no-redef]  # old layout

        from simulator import persistence  # type: ignore[attr-defined, no-redef]  # old layout

    checkpointer = persistence.Checkpointer()
    chargers = persistence.load_fleet(checkpointer)
    persistence.restore(chargers, checkpointer)
    for charger in chargers:
        charger.plug_in(1, COMPACT, soc=20)
        charger.start_transaction(1, "TAG")
    engine = MeterEngine(chargers, tick_seconds=1.0)
    now = time.monotonic()
    engine.tick(now=now)

    def one_second() -> float:
        nonlocal now
        started = time.process_time()
        now += 1.0
        engine.tick(now=now)
        batch = checkpointer.take(full=True)
        checkpointer.write(batch)
        checkpointer.written(batch)
        return (time.process_time() - started) * 1000

    for _ in range(3):
        one_second()  # warm-up: first writes, caches
    seconds = [one_second() for _ in range(9)]
    print(
        f"tick + checkpoint of {count} charging chargers: median "
        f"{statistics.median(seconds):.1f} ms CPU per second "
        f"({', '.join(f'{s:.1f}' for s in seconds)})"
    )


if __name__ == "__main__":
    main()
