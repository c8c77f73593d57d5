"""The writer thread's cost per durable outbox row, for callgrind: N rounds in which each of
2,000 chargers (created as bench/fleet.py creates them, in a throwaway SQLite file) adds its
MeterValues row (the 5-measurand payload `fleet.py`'s chargers send, as the engine encodes
it) and removes the one of the round before (answered meanwhile), in group-commit batches
of `--batch` chargers (default 2,000), each written through the real writer
(`Checkpointer.write`: the outbox managers' INSERT and DELETE in one transaction). With
`--registers` each batch also carries its chargers' EVSE registers, as an urgent batch does
for the chargers whose messages it makes durable.

    PYTHONHASHSEED=0 valgrind --tool=callgrind .venv/bin/python bench/outbox_rows.py N \\
        [--batch B] [--registers]

per row (one INSERT and one DELETE) = (Ir(N2) - Ir(N1)) / ((N2 - N1) * 2000) (the
difference takes start-up, the fleet's creation and the migrations out).
"""

from __future__ import annotations

import argparse

import orjson
from message_log import METER_VALUES  # bench/ is the script's directory
from steady_state import fleet_database

CHARGERS = 2_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("rounds", type=int)
    parser.add_argument("--batch", type=int, default=CHARGERS)
    parser.add_argument("--registers", action="store_true")
    args = parser.parse_args()
    fleet_database(CHARGERS, 1)
    from chargers.models import Evse, OutboxMessage
    from simulator.runtime.persistence import Batch, Checkpointer

    evses = sorted(Evse.objects.values_list("charger_id", "pk"))
    payloads = [
        orjson.dumps(
            orjson.loads(METER_VALUES.format(id="x", tx=n, s=n % 60, wh=1000 + n, soc=40))[3]
        ).decode()
        for n in range(CHARGERS)
    ]
    # One round before the measured ones: from the first measured round on, each row added
    # has its predecessor to remove (the steady state: the table holds one round).
    for seq in range(args.rounds + 1):
        for start in range(0, CHARGERS, args.batch):
            chunk = range(start, min(start + args.batch, CHARGERS))
            batch = Batch(
                {},
                [],
                [(evses[n][0], seq, "MeterValues", payloads[n], f"tx-{n}") for n in chunk],
                [(evses[n][0], seq - 1) for n in chunk] if seq else [],
                [],
            )
            if args.registers:
                batch.evses = [(evses[n][0], 1000.0 + seq, "Charging", evses[n][1]) for n in chunk]
            Checkpointer.write(batch)
    assert OutboxMessage.objects.count() == CHARGERS
    assert set(OutboxMessage.objects.values_list("seq", flat=True)) == {args.rounds}


if __name__ == "__main__":
    main()
