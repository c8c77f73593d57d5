"""Rows per second importing chargers from CSV, the way a background import job does.

    .venv/bin/python bench/import_chargers.py [--rows 10000]

Runs on a fresh SQLite file in a temporary directory (or on DATABASE_URL when set: its
tables are migrated and the benchmark's chargers and locations deleted afterwards).
Prints the time (wall and CPU) to parse + validate + write the file, then to import the
same file again (every row unchanged: compared with what is stored, not written).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def charger_csv(rows: int, locations: list[str]) -> bytes:
    lines = [
        "charge_point_id,location,power_type,max_power_kw,evses,csms_url,security_profile,"
        "auto_connect,configuration"
    ]
    for n in range(1, rows + 1):
        dc = n % 5 == 0
        lines.append(
            f"BENCH-{n:05d},{locations[n % len(locations)]},{'DC' if dc else 'AC'},"
            f"{150 if dc else 22},{'CCS2:150;CHAdeMO:50' if dc else '2*Type2:11'},"
            f"ws://127.0.0.1:9000/ocpp,0,{'true' if n % 2 else 'false'},"
            f"HeartbeatInterval={60 + n % 5};MeterValueSampleInterval=30"
        )
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        os.environ["CHARGESIM_VAR_DIR"] = tempfile.mkdtemp(prefix="chargesim-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from chargers.models import Charger, ConfigurationKey, Evse
    from chargers.resources import ChargerResource
    from fleet_io.file_formats import read_dataset
    from locations.models import Location

    call_command("migrate", verbosity=0)
    names = [f"Bench Site {i}" for i in range(10)]
    Location.objects.bulk_create([Location(name=name) for name in names])
    data = charger_csv(args.rows, names)
    print(f"database: {connection.vendor}; file: {len(data) / 1e6:.1f} MB, {args.rows} rows")
    try:
        for label in ("create", "update"):
            start, cpu = time.perf_counter(), time.process_time()
            result = ChargerResource(fast=True).import_data(read_dataset(data, "csv"))
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            assert not result.has_errors(), result.problems()[:5]
            # CPU time too: on a shared host the wall time is mostly the neighbours'.
            print(
                f"{label}: {args.rows} chargers in {elapsed:.2f} s = "
                f"{args.rows / elapsed:,.0f} rows/s (CPU {cpu:.2f} s; "
                f"{dict(result.totals)})"
            )
        bench = Charger.objects.filter(charge_point_id__startswith="BENCH-")
        print(
            f"rows written: {bench.count()} chargers, "
            f"{Evse.objects.filter(charger__in=bench).count()} EVSEs, "
            f"{ConfigurationKey.objects.filter(charger__in=bench).count()} configuration keys"
        )
    finally:
        Charger.objects.filter(charge_point_id__startswith="BENCH-").delete()
        Location.objects.filter(name__in=names).delete()


if __name__ == "__main__":
    main()
