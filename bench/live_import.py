"""Live import benchmark: N chargers imported into a running worker, until all are Accepted.

    python bench/live_import.py [--chargers 5000] [--existing 10] [--redis URL]

What it does, in order (each run on a fresh database):

1. a throwaway database (SQLite in a temp dir, or DATABASE_URL when set: it must hold no
   chargers) gets --existing chargers (bench/fleet.py's fleet), and `bench/load_csms.py`
   runs as a child process;
2. `manage.py runsimulator --no-web` starts with them and boots them all;
3. a CSV of N new chargers (1 EVSE Type2 22 kW each, the load CSMS's URL, auto-connect)
   is imported with `manage.py import chargers.resources.ChargerResource FILE`, the
   real command-line path: it writes the rows and, after commit, sends fleet.changed;
4. the load CSMS notes when each new charger booted (BootNotification Accepted and
   StatusNotification Available for connectors 0 and 1).

Without --redis the channel layer is in-memory: the import process cannot reach the worker,
so the worker finds the rows by its reconciliation (every 3 s). With --redis URL (a Redis
database of its own, e.g. redis://127.0.0.1:6379/9) the worker gets the message.

Figures (the last line is one JSON object; times from the launch of the import command):

- import_seconds: the import command's run, Python start to exit;
- first_connected_seconds: the first new charger's WebSocket connection;
- all_booted_seconds: the last new charger booted (null if not all within --timeout);
- after_import_seconds: all_booted_seconds - import_seconds;
- boot_p50_s / boot_p99_s: per new charger, import launch -> booted;
- worker_cpu_percent (100 = one core), other_cpu_percent (the rest of the machine, the
  load CSMS and the import process included), from the import launch to all booted;
- errors: the load CSMS's error counts and ERROR lines or tracebacks in the worker's log.

--profile FILE records the worker with py-spy (`--format raw`, GIL holders only) from the
import launch for --profile-seconds. Binds 127.0.0.1 only; always stops its children.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

# Run as a script: its directory (bench/) is on the path, as for the other benches.
from fleet import (
    ROOT,
    Children,
    CsmsControl,
    Worker,
    cpu_seconds,
    create_fleet,
    machine_busy_seconds,
    prepare_database,
    py_spy_record,
    raise_open_files,
    say,
    setup_django,
    sigterm_as_interrupt,
    tear_down,
    wait_until,
)
from load_csms import percentile

PREFIX = "LIVE-"


def charger_csv(count: int, location: str, csms_url: str) -> str:
    lines = ["charge_point_id,location,evses,csms_url,auto_connect"]
    lines += [f"{PREFIX}{n:05d},{location},1*Type2:22,{csms_url},true" for n in range(count)]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict[str, Any]:
    n, existing = args.chargers, args.existing
    raise_open_files(2 * (n + existing) + 2048)
    var_dir = Path(tempfile.mkdtemp(prefix="chargesim-live-import-"))
    logs = Path(args.logs) if args.logs else var_dir
    logs.mkdir(parents=True, exist_ok=True)
    children = Children()
    result: dict[str, Any] = {"chargers": n, "existing": existing, "redis": bool(args.redis)}
    errors: Counter[str] = Counter()
    try:
        setup_django(var_dir)
        prepare_database()
        from django.db import close_old_connections

        from locations.models import Location

        location = Location.objects.order_by("pk").values_list("name", flat=True).first()
        close_old_connections()
        env = {
            **os.environ,
            "CHARGESIM_VAR_DIR": str(var_dir),
            "DJANGO_SETTINGS_MODULE": "chargesim_site.settings",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        if args.redis:
            env["REDIS_URL"] = args.redis
        csms = CsmsControl(children, heartbeat_interval=300)
        create_fleet(existing, csms.url, 60)
        csms.ask("expect", n=existing, connectors=1)
        worker = Worker(children, env, logs, "worker")
        if not wait_until(lambda: csms.ask("status")["all_booted_at"] is not None, 60, 0.1):
            raise RuntimeError(f"the existing fleet did not boot; see {worker.stderr_path}")
        say(f"worker pid {worker.pid} runs {existing} chargers; logs in {logs}")
        csv_path = var_dir / "live.csv"
        csv_path.write_text(charger_csv(n, str(location), csms.url))
        time.sleep(args.settle)  # the worker idle, as a running fleet is

        profiler = None
        if args.profile:
            profiler = children.add(
                subprocess.Popen(
                    py_spy_record(worker.pid, args.profile_seconds, args.profile),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        started = time.monotonic()
        cpu0, busy0 = cpu_seconds(worker.pid), machine_busy_seconds()
        importer = children.add(
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "manage.py"),
                    "import",
                    "chargers.resources.ChargerResource",
                    str(csv_path),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        imported_at: float | None = None
        first_connect: float | None = None
        wanted = existing + n

        def all_booted() -> bool:
            nonlocal imported_at, first_connect
            if imported_at is None and importer.poll() is not None:
                imported_at = time.monotonic()
            if not worker.alive():
                raise RuntimeError(f"worker exited ({worker.proc.returncode})")
            status = csms.ask("status")
            if first_connect is None and status["connects"] > existing:
                first_connect = time.monotonic()
            return status["booted"] >= wanted and imported_at is not None

        done = wait_until(all_booted, args.timeout, 0.05)
        cpu1, busy1, ended = cpu_seconds(worker.pid), machine_busy_seconds(), time.monotonic()
        out, err = importer.communicate()
        if importer.returncode != 0:
            raise RuntimeError(f"the import failed ({importer.returncode}): {err[-2000:]}")
        say(out.strip().splitlines()[-1] if out.strip() else "(the import printed nothing)")
        times = csms.ask("boot_times", prefix=PREFIX)
        booted = [t - started for t in times["booted_at"]]
        assert imported_at is not None
        result["import_seconds"] = round(imported_at - started, 2)
        result["first_connected_seconds"] = (
            None if first_connect is None else round(first_connect - started, 2)
        )
        result["booted"] = len(booted)
        result["all_booted_seconds"] = round(booted[-1], 2) if done and booted else None
        result["after_import_seconds"] = (
            round(booted[-1] - result["import_seconds"], 2) if done and booted else None
        )
        p50, p99 = percentile(booted, 50), percentile(booted, 99)
        result["boot_p50_s"] = None if p50 is None else round(p50, 2)
        result["boot_p99_s"] = None if p99 is None else round(p99, 2)
        wall = ended - started
        worker_cpu = cpu1 - cpu0
        result["worker_cpu_percent"] = round(worker_cpu / wall * 100, 1)
        result["other_cpu_percent"] = round(max(busy1 - busy0 - worker_cpu, 0.0) / wall * 100, 1)
        result["loadavg_1m"] = float(Path("/proc/loadavg").read_text().split()[0])
        status = csms.ask("status")
        result["connects"] = status["connects"] - existing
        for problem, count in status["errors"].items():
            errors[problem] += count
        if profiler is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(args.profile_seconds + 30)
            result["profile"] = args.profile
        stopped = children.stop(worker.proc, timeout=60.0)
        if stopped is None:
            errors["worker had to be killed"] += 1
        problems = worker.log_problems()
        worker.close()
        for level in ("CRITICAL", "ERROR", "Traceback"):
            if problems[level]:
                errors[f"worker log {level}"] += problems[level]
        csms.quit()
    finally:
        tear_down(children, var_dir, keep=args.keep)
    result["errors"] = sum(errors.values())
    result["error_details"] = dict(errors)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chargers", type=int, default=5000, metavar="N")
    parser.add_argument("--existing", type=int, default=10, metavar="N")
    parser.add_argument("--redis", metavar="URL", help="REDIS_URL for the worker and the import")
    parser.add_argument("--settle", type=float, default=2.0, metavar="SEC")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SEC")
    parser.add_argument("--profile", metavar="FILE", help="py-spy record (raw) into FILE")
    parser.add_argument("--profile-seconds", type=int, default=30)
    parser.add_argument("--logs", metavar="DIR", help="keep the worker's output here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)
    if args.chargers < 1 or args.existing < 1:
        parser.error("--chargers and --existing must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with sigterm_as_interrupt():
            figures = run(args)
        say(
            f"import {figures['import_seconds']} s; first connected "
            f"{figures['first_connected_seconds']} s; all {figures['booted']}/{args.chargers} "
            f"booted {figures['all_booted_seconds']} s ({figures['after_import_seconds']} s "
            f"after the import ended); per charger p50 {figures['boot_p50_s']} s, p99 "
            f"{figures['boot_p99_s']} s; worker CPU {figures['worker_cpu_percent']} %, "
            f"other {figures['other_cpu_percent']} %; errors {figures['errors']} "
            f"{figures['error_details'] or ''}"
        )
        print(json.dumps(figures), flush=True)
    except KeyboardInterrupt:
        say("interrupted; child processes stopped")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
