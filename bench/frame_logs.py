"""The two frame logs' Python work per CALL, for callgrind: the worker's listener chain
(`Checkpointer` in front of `Fanout(EventPublisher, Conditions)`) hearing a MeterValues CALL
and its answer from 200 chargers in turn, taken every 1,000 CALLs as a full checkpoint
does, then (with `values`) the writer thread's row building without the database.

    PYTHONHASHSEED=0 valgrind --tool=callgrind .venv/bin/python bench/frame_logs.py N [values]

per CALL = (Ir(6000) - Ir(2000)) / 4000 (N is rounded down to thousands; no rounds, no
warm-up: the difference takes start-up out). Run from the checkout measured.
"""

from __future__ import annotations

import os
import sys
from itertools import chain
from pathlib import Path

ROOT = Path.cwd()


def main() -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    import django

    django.setup()
    from message_log import ANSWER, METER_VALUES

    from simulator.core.charge_point import Fanout
    from simulator.runtime import frame_log
    from simulator.runtime.conditions import Conditions
    from simulator.runtime.events import EventPublisher
    from simulator.runtime.persistence import Checkpointer
    from simulator.runtime.store import Store
    from tests.engine import runtime_charger

    count = int(sys.argv[1])
    writer = sys.argv[2:] == ["values"]
    checkpointer = Checkpointer(downstream=Fanout(EventPublisher(), Conditions(Store())))
    chargers = []
    for n in range(200):
        charger = runtime_charger(f"C{n}", "ws://127.0.0.1:1/ocpp", evses=1, listener=checkpointer)
        charger.spec.db_id = n + 1
        chargers.append(charger)
    frames = []
    for n in range(1000):
        message_id = f"{n:x}-abc"
        call = METER_VALUES.format(id=message_id, tx=n, s=n % 60, wh=1000 + n, soc=40)
        frames.append((chargers[n % 200], message_id, call, ANSWER.format(id=message_id)))
    on_frame = checkpointer.on_frame
    taken = []
    for _ in range(count // 1000):
        for charger, message_id, call, answer in frames:
            on_frame(charger, "out", call, message_id, "MeterValues")
            on_frame(charger, "in", answer, message_id, "MeterValues")
        taken.append(checkpointer.take().frames)
    if writer:
        for pending in taken:
            if hasattr(frame_log, "values"):
                frame_log.values(pending, 65_536, redacted=True)
            else:  # before: rows of tuples, flattened for the statement
                list(chain.from_iterable(frame_log.rows(pending, 65_536)))


if __name__ == "__main__":
    main()
