"""The admin's confirmation page for deleting every charger of a large fleet.

    .venv/bin/python bench/admin_delete.py [--rows 10000]

Imports `--rows` chargers as bench/import_chargers.py does (2 EVSEs and ~31 configuration
keys each) into a fresh SQLite file in a temporary directory, then asks the charger
changelist for "select all, Delete" as a browser does (not confirmed: nothing is deleted)
and prints the page's size, the time, the queries and the process's peak memory. The
page is what a user waits for, in the process that, under `runsimulator`, runs the fleet.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    var_dir = tempfile.mkdtemp(prefix="chargesim-bench-")
    os.environ["CHARGESIM_VAR_DIR"] = var_dir
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    try:
        run(args.rows)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


def run(rows: int) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from import_chargers import charger_csv

    from chargers.models import Charger
    from chargers.resources import ChargerResource
    from fleet_io.file_formats import read_dataset
    from locations.models import Location

    call_command("migrate", verbosity=0)
    names = [f"Bench Site {i}" for i in range(10)]
    Location.objects.bulk_create([Location(name=name) for name in names])
    result = ChargerResource(fast=True).import_data(read_dataset(charger_csv(rows, names), "csv"))
    assert not result.has_errors(), result.problems()[:5]
    user = get_user_model().objects.create_superuser("bench", password="bench-not-secret")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    first = Charger.objects.order_by("pk").values_list("pk", flat=True)[0]
    asked = {
        "action": "delete_selected",
        "select_across": "1",
        "index": "0",
        "_selected_action": [first],
    }
    with CaptureQueriesContext(connection) as queries:
        start, cpu = time.perf_counter(), time.process_time()
        response = client.post("/admin/chargers/charger/", asked)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert response.status_code == 200, response.status_code
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"delete confirmation for {rows} chargers: {len(response.content) / 1e6:.2f} MB in "
        f"{elapsed:.2f} s (CPU {cpu:.2f} s), {len(queries)} queries, "
        f"process peak RSS {peak_mb:.0f} MB"
    )


if __name__ == "__main__":
    main()
