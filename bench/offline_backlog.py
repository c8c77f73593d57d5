"""The memory a long outage's queued messages take, with and without the queue's bound.

    .venv/bin/python bench/offline_backlog.py [--chargers C] [--samples S] [--limit L ...]

C runtime chargers (2 EVSEs, each in a transaction, never connected: an outage from the
start) each queue S periodic MeterValues per connector, as the meter engine sends them
(`send_meter_values`, the 5 measurands of `bench/fleet.py`'s chargers). For each limit
(`ChargerSpec.backlog_limit`, CHARGESIM_OFFLINE_QUEUE_LIMIT's value in the worker; 0: no
bound) it prints the messages still queued, the samples thinned, and the Python heap the
queues hold (tracemalloc, after a collection), in total and per queued message. Each
message goes through the worker's durability sink (`Checkpointer`), whose batches are taken
and settled each simulated minute but not written: the rows in the database are not
counted.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path

from in_process import in_process  # bench/ is the script's directory

MEASURANDS = [
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Voltage",
    "SoC",
]


def queued_heap(chargers: int, samples: int, limit: int) -> tuple[int, int, int]:
    """(messages queued, samples thinned, bytes the queues hold) for one limit."""
    from simulator.core.charge_point import BootState
    from simulator.core.drops import DROPPED
    from simulator.core.protocol import SampleContext
    from simulator.runtime.persistence import Checkpointer
    from tests.engine import COMPACT, runtime_charger

    # The worker's durability sink: it encodes each message as its row is queued, and the
    # queued message keeps that text (the frame goes on the wire from it). Its batches are
    # taken and settled below as the writer's would be, without writing them.
    checkpointer = Checkpointer()
    fleet = []
    for n in range(chargers):
        charger = runtime_charger(
            f"BACKLOG-{n}", "ws://127.0.0.1:1/ocpp", evses=2, backlog_limit=limit, db_id=n + 1
        )
        charger.queue.sink = checkpointer.sink_for(charger)
        charger.boot = BootState.ACCEPTED
        for connector in (1, 2):
            charger.plug_in(connector, COMPACT, soc=20)
            charger.start_transaction(connector, "TAG")
        fleet.append(charger)
    thinned = DROPPED["outbox_thinned"]
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for minute in range(samples):
        stamp = f"2026-12-07T{minute // 60 % 24:02d}:{minute % 60:02d}:00.000Z"
        for charger in fleet:
            for connector in (1, 2):
                charger.send_meter_values(connector, SampleContext.PERIODIC, MEASURANDS, stamp)
        checkpointer.written(checkpointer.take(full=False))
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    queued = sum(len(charger.queue) for charger in fleet)
    return queued, DROPPED["outbox_thinned"] - thinned, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chargers", type=int, default=100)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--limit", type=int, action="append")
    args = parser.parse_args()
    in_process(Path.cwd())
    sys.path.insert(0, str(Path.cwd()))
    tracemalloc.start()
    for limit in args.limit or [500, 0]:
        queued, thinned, held = queued_heap(args.chargers, args.samples, limit)
        print(
            f"limit {limit or 'none'}: {args.chargers} chargers x 2 connectors x "
            f"{args.samples} samples: {queued:,} queued, {thinned:,} thinned, "
            f"{held / 2**20:,.1f} MiB held ({held / max(queued, 1):,.0f} B a queued message)"
        )
        gc.collect()


if __name__ == "__main__":
    main()
