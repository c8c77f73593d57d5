"""The full checkpoint's cost per second at scale, for instruction counts.

    .venv/bin/python bench/checkpoint_full.py N SECONDS [--connectors C]

N chargers with C EVSEs each (default 2, created as bench/fleet.py creates them, in a
throwaway SQLite file) are loaded as the worker loads them, and every EVSE starts a
transaction offline. Then SECONDS "seconds" are run, each: the registers of a tenth of the
EVSEs move (a rotating slice, as the event-driven meter visits each connector once per
10 s sampling interval, and tells the checkpointer so), then one full checkpoint
(`Checkpointer.take` + `write` + `written`, as the checkpoint loop and the writer thread
do). No meter tick, no sockets: only what the periodic checkpoint costs per charger.

Under callgrind the set-up cancels out of the difference of two runs:
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/tmp/cp.%p \\
        .venv/bin/python bench/checkpoint_full.py 2000 5     (and 25)
    per full checkpoint = (Ir(25) - Ir(5)) / 20
Without valgrind it prints the median CPU (process_time) per second.
"""

from __future__ import annotations

import statistics
import sys
import time

from steady_state import fleet_database  # bench/ is the script's directory


def main() -> None:
    args = sys.argv[1:]
    connectors = 2
    if "--connectors" in args:
        connectors = int(args[args.index("--connectors") + 1])
        del args[args.index("--connectors") : args.index("--connectors") + 2]
    count = int(args[0]) if args else 2000
    seconds = int(args[1]) if len(args) > 1 else 10
    fleet_database(count, 10, connectors)
    from simulator.runtime import persistence
    from tests.engine import COMPACT

    checkpointer = persistence.Checkpointer()
    chargers = persistence.load_fleet(checkpointer)
    persistence.restore(chargers, checkpointer)
    evses = []
    for charger in chargers:
        for evse in charger.evses:
            charger.plug_in(evse.connector_id, COMPACT, soc=20)
            charger.start_transaction(evse.connector_id, "TAG")
            evses.append((charger, evse))

    def checkpoint() -> None:
        batch = checkpointer.take(full=True)
        checkpointer.write(batch)
        checkpointer.written(batch)

    checkpoint()  # the transactions and first registers
    checkpoint()
    times = []
    for second in range(seconds):
        started = time.process_time()
        for charger, evse in evses[second % 10 :: 10]:
            evse.register_wh += 1.0
            checkpointer.on_change(charger)  # as the meter's visit tells it
        checkpoint()
        times.append((time.process_time() - started) * 1000)
    print(
        f"full checkpoint of {count} chargers x {connectors} charging EVSEs, a tenth of the "
        f"registers moved each second: median {statistics.median(times):.2f} ms CPU "
        f"per second ({seconds} seconds)"
    )


if __name__ == "__main__":
    main()
