"""The checkpoint writer's CPU per MeterValues CALL on SQLite, by page size.

    .venv/bin/python bench/sqlite_pages.py [--sizes 4096,16384] [--rounds 5] [--seconds 20]

What the writer thread does for the fleet at 2,000 chargers / 1 s sampling, through the
real writer (`Checkpointer.write`) into a fresh SQLite file per run, made by the real
settings with `CHARGESIM_SQLITE_PAGE_SIZE` set: every simulated second, an urgent batch
(2,000 MeterValues outbox rows and the EVSE registers of their chargers) and a full one
(the previous second's 2,000 outbox rows removed, 2,000 message-log rows, a CALL and its
answer each). The frames are `bench/message_log.py`'s. Each run is a child process; the
figure is its CPU time (user + system, from getrusage) over the simulated seconds only,
per CALL. System time counts here: most of SQLite's cost per page is the kernel's copy of
each WAL frame (pwrite) and of each checkpointed page, which an instruction count does not
see. Sizes alternate run by run; the medians are printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path.cwd()
CHARGERS = 2_000


def child(seconds: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    import django

    django.setup()
    from django.db import connection
    from fleet import create_fleet, prepare_database
    from message_log import ANSWER, METER_VALUES

    from chargers.models import Evse, OutboxMessage
    from simulator.runtime.persistence import Batch, Checkpointer
    from tests.engine import runtime_charger

    prepare_database()
    create_fleet(CHARGERS, "ws://127.0.0.1:1/ocpp", 1)
    evses = list(Evse.objects.order_by("charger_id").values_list("charger_id", "pk"))
    checkpointer = Checkpointer()
    chargers = []
    for n, (charger_pk, _evse_pk) in enumerate(evses):
        charger = runtime_charger(f"W{n}", "ws://127.0.0.1:1/ocpp", evses=1)
        charger.spec.db_id = charger_pk
        chargers.append(charger)
    payloads = []
    for n, charger in enumerate(chargers):
        message_id = f"{n:x}-abc"
        call = METER_VALUES.format(id=message_id, tx=n, s=n % 60, wh=1000 + n, soc=40)
        payloads.append(json.dumps(json.loads(call)[3], separators=(",", ":")))
        checkpointer.on_frame(charger, "out", call, message_id, "MeterValues")
        checkpointer.on_frame(charger, "in", ANSWER.format(id=message_id), message_id, "MV")
    frames = checkpointer.take().frames
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA page_size")
        (page_size,) = cursor.fetchone()
    start = resource.getrusage(resource.RUSAGE_SELF)
    for second in range(seconds):
        urgent = Batch(
            {},
            [],
            [(pk, second, "MeterValues", payloads[n], "") for n, (pk, _evse) in enumerate(evses)],
            [],
            [],
        )
        urgent.evses = [(pk, 1000.0 + second, "Charging", evse) for pk, evse in evses]
        Checkpointer.write(urgent)
        gone = [(pk, second - 1) for pk, _evse in evses] if second else []
        Checkpointer.write(Batch({}, [], [], gone, [], frames=frames))
    end = resource.getrusage(resource.RUSAGE_SELF)
    assert OutboxMessage.objects.count() == CHARGERS
    calls = seconds * CHARGERS
    return {
        "page_size": page_size,
        "us_per_call": 1e6
        * ((end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime))
        / calls,
        "user_us": 1e6 * (end.ru_utime - start.ru_utime) / calls,
        "system_us": 1e6 * (end.ru_stime - start.ru_stime) / calls,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4096,16384", help="page sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=20, help="simulated seconds per run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.seconds)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, list[float]] = {size: [] for size in sizes}
    for round_ in range(1, args.rounds + 1):
        for size in sizes:
            with tempfile.TemporaryDirectory() as var_dir:
                env = dict(os.environ, CHARGESIM_VAR_DIR=var_dir)
                env["CHARGESIM_SQLITE_PAGE_SIZE"] = str(size)
                env.pop("DATABASE_URL", None)  # SQLite only
                started = time.monotonic()
                out = subprocess.run(
                    [sys.executable, __file__, "--child", "--seconds", str(args.seconds)],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                ).stdout
            figures = json.loads(out.strip().splitlines()[-1])
            if figures["page_size"] != size:
                raise SystemExit(f"asked for {size}, the database has {figures['page_size']}")
            results[size].append(figures["us_per_call"])
            print(
                f"round {round_} page_size {size}: {figures['us_per_call']:.1f} us per CALL "
                f"(user {figures['user_us']:.1f}, system {figures['system_us']:.1f}; "
                f"{time.monotonic() - started:.0f} s)",
                flush=True,
            )
    for size in sizes:
        print(f"page_size {size}: median {statistics.median(results[size]):.1f} us per CALL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
