"""The writer thread's cost per stored message-log row, for callgrind: N batches of 2,000
rows (a MeterValues CALL and its answer from each of 2,000 chargers: 4,000 frames, the
same ones every batch) written
through the real writer (`Checkpointer.write`) into a throwaway SQLite file.

    PYTHONHASHSEED=0 valgrind --tool=callgrind .venv/bin/python bench/frame_log_writer.py N

per row = (Ir(N2) - Ir(N1)) / ((N2 - N1) * 2000) (the difference takes start-up and the
migrations out). Run from the checkout measured; DATABASE_URL, when set, names the database
instead (it must be one of its own: the log is emptied).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path.cwd()
CHARGERS = 2_000


def main() -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    os.environ.setdefault("CHARGESIM_VAR_DIR", tempfile.mkdtemp())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from message_log import ANSWER, METER_VALUES

    from chargers.models import FrameLogEntry
    from simulator.runtime.persistence import Batch, Checkpointer
    from tests.engine import runtime_charger

    call_command("migrate", verbosity=0)
    FrameLogEntry.objects.all().delete()
    checkpointer = Checkpointer()
    chargers = []
    for n in range(CHARGERS):
        charger = runtime_charger(f"W{n}", "ws://127.0.0.1:1/ocpp", evses=1)
        charger.spec.db_id = n + 1
        chargers.append(charger)
    for n, charger in enumerate(chargers):
        message_id = f"{n:x}-abc"
        call = METER_VALUES.format(id=message_id, tx=n, s=n % 60, wh=1000 + n, soc=40)
        answer = ANSWER.format(id=message_id)
        checkpointer.on_frame(charger, "out", call, message_id, "MeterValues")
        checkpointer.on_frame(charger, "in", answer, message_id, "MeterValues")
    # The same frames every batch: what varies with N is the writer's work only.
    frames = checkpointer.take().frames
    for _ in range(int(sys.argv[1])):
        Checkpointer.write(Batch({}, [], [], [], [], frames=frames))
    assert FrameLogEntry.objects.count() == int(sys.argv[1]) * CHARGERS


if __name__ == "__main__":
    main()
