"""The stored message log's cost per frame, in one process, without sockets.

    .venv/bin/python bench/message_log.py [N] [--seconds S]     (default 2000 chargers, 20 s)

Each simulated second, N chargers each send a MeterValues CALL (5 measurands, the frame
`fleet.py`'s chargers send) and receive its answer: 2N frames are recorded as the engine
records them (`Checkpointer.on_frame`, on what would be the event loop), taken and written
as a full checkpoint does (`take` + `write`, what the writer thread does), and the log is
pruned as the worker prunes it, kept to 10 s of frames so that every second prunes as much
as it writes (the steady state of a full log). Prints the CPU time (process_time) per frame
of each step, medians over the seconds after a warm-up. The database is a throwaway SQLite
file, or DATABASE_URL when set (it must be a database of its own: the log is emptied).

Unlike `fleet.py`, nothing else shares the measurement (no CSMS, no sockets, no event
loop), so the figures hold on a busy machine within a few per cent; compare them with
`fleet.py`'s CPU per CALL (its `msgs_per_cpu_second`) to see the log's share.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from in_process import throwaway_var_dir  # bench/ is the script's directory

ROOT = Path(__file__).resolve().parent.parent

METER_VALUES = (
    '[2,"{id}","MeterValues",{{"connectorId":1,"transactionId":{tx},"meterValue":[{{'
    '"timestamp":"2026-12-01T10:00:{s:02d}.000Z","sampledValue":['
    '{{"value":"{wh}","context":"Sample.Periodic","measurand":"Energy.Active.Import.Register",'
    '"unit":"Wh"}},{{"value":"11040.0","context":"Sample.Periodic",'
    '"measurand":"Power.Active.Import","unit":"W"}},{{"value":"16.0","context":"Sample.Periodic",'
    '"measurand":"Current.Import","phase":"L1","unit":"A"}},{{"value":"230.0",'
    '"context":"Sample.Periodic","measurand":"Voltage","phase":"L1-N","unit":"V"}},'
    '{{"value":"{soc}","context":"Sample.Periodic","measurand":"SoC","unit":"Percent"}}]}}]}}]'
)
ANSWER = '[3,"{id}",{{}}]'
# Seconds run before any is measured: the log holds 10 s of rows from the 11th on.
WARM_UP = 12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("chargers", type=int, nargs="?", default=2000)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    if args.seconds <= WARM_UP:
        parser.error(f"--seconds must be above the {WARM_UP} s of warm-up")
    sys.path.insert(0, str(ROOT))
    if "CHARGESIM_VAR_DIR" not in os.environ:
        os.environ["CHARGESIM_VAR_DIR"] = str(throwaway_var_dir())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from chargers.models import FrameLogEntry
    from simulator.runtime.frame_log import FrameLogPolicy
    from simulator.runtime.persistence import Checkpointer
    from tests.engine import runtime_charger

    call_command("migrate", verbosity=0)
    FrameLogEntry.objects.all().delete()
    # Rows of 2 frames, 10 s of them: from the 11th second on, each prunes what it adds.
    policy = FrameLogPolicy(max_rows=10 * args.chargers, prune_batch=10**9)
    checkpointer = Checkpointer(log_policy=policy)
    chargers = []
    for n in range(args.chargers):
        charger = runtime_charger(f"LOG-{n:05d}", "ws://127.0.0.1:1/ocpp", evses=1)
        charger.spec.db_id = n + 1
        chargers.append(charger)
    record, store, prune = [], [], []
    for second in range(args.seconds):
        frames = []
        for n, charger in enumerate(chargers):
            message_id = f"{second:x}-{n:x}"
            call = METER_VALUES.format(
                id=message_id, tx=n + 1, s=second % 60, wh=1000 + second * 3, soc=40 + n % 50
            )
            frames.append((charger, message_id, call, ANSWER.format(id=message_id)))
        started = time.process_time()
        for charger, message_id, call, answer in frames:
            checkpointer.on_frame(charger, "out", call, message_id, "MeterValues")
            checkpointer.on_frame(charger, "in", answer, message_id, "MeterValues")
        recorded = time.process_time()
        Checkpointer.write(checkpointer.take())
        stored = time.process_time()
        Checkpointer.prune_log(policy)
        pruned = time.process_time()
        if second >= WARM_UP:  # warmed up, and pruning as much as it writes
            per_frame = 1e6 / (2 * args.chargers)
            record.append((recorded - started) * per_frame)
            store.append((stored - recorded) * per_frame)
            prune.append((pruned - stored) * per_frame)
    figures = {
        "record": statistics.median(record),
        "store": statistics.median(store),
        "prune": statistics.median(prune),
    }
    total = sum(figures.values())
    print(
        f"{args.chargers} chargers, {len(record)} seconds measured, CPU us per frame (median): "
        + ", ".join(f"{name} {value:.2f}" for name, value in figures.items())
        + f"; total {total:.2f} us per frame, {2 * total:.2f} us per CALL and its answer"
    )


if __name__ == "__main__":
    main()
