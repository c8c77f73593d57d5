"""Scenario benchmark: one scenario across N template chargers at once, and what the
scenario machinery costs.

    python bench/scenario_fleet.py --chargers 1000 [--runs 3] [--logs DIR]

Set-up (once): a PostgreSQL database of its own (created on PG_URL, default
postgres://postgres@127.0.0.1:5432/postgres, dropped at the end), a Redis database of its
own (REDIS_URL, default redis://127.0.0.1:6379/6; the tests take 8..15), the built-in CSMS as a
process (`python -m simulator.csms`), one `runsimulator --no-web` worker (one shard).

Each run has two phases on the same worker, one after the other:

1. **scenario**: `manage.py runscenario` of the scenario below (N template chargers: they
   connect and boot, plug in, present an idTag, wait Charging, expect StartTransaction
   Accepted, a fleet-wide response-time expectation, stop, unplug, wait Available).
2. **bulk**: the same actions with no scenario: a driver process (this file with
   --bulk-driver) makes N chargers as the runner does (`create_chargers`, auto-connect
   off), waits until the worker runs them, then sends each action as ONE bulk command to
   the worker with the same wait condition (connect/Accepted, plug_in/Preparing,
   present_id_tag/Charging, stop/Finishing, unplug/Available), and deletes the chargers.

CPU is read from outside: the worker's and the CSMS's utime+stime (/proc/<pid>/stat)
before and after each phase; the runscenario or driver process's own rusage at its exit
(`os.wait4`). Both phases make and delete the chargers, wait for the worker to load them,
and do the same charger work against the same CSMS, so

    overhead_cpu_s = (runscenario + worker during the scenario)
                   - (bulk driver + worker during the bulk phase)

is what the scenario layer costs on top of the bare actions: per-charger commands and
waits instead of bulk ones, the frame subscription (the worker publishes every frame of the
run's chargers; runscenario parses and keeps them), the checks, the stored run with its
frames. Python's start-up and Django's set-up are in both the runscenario and the driver
figures. Wall times are from launching the process to its exit.

Figures (the last line printed is one JSON object; with --runs > 1 each figure is the
median of the runs, and `runs` holds every run's): chargers, scenario_status,
scenario_wall_s, bulk_wall_s, step timing percentiles from the stored result
(`steps`: kind -> p50/p99/max seconds of the step's duration over the chargers),
runscenario_cpu_s, worker_cpu_scenario_s, csms_cpu_scenario_s, driver_cpu_s,
worker_cpu_bulk_s, csms_cpu_bulk_s, overhead_cpu_s, overhead_ms_per_charger,
overhead_share (overhead / the scenario phase's runscenario + worker CPU).

Binds 127.0.0.1 only; raises RLIMIT_NOFILE for itself and its children; always stops its
children.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/6")
ID_TAG = "BENCH-1"
TIMEOUT = 300  # seconds, the longest wait a step (and a bulk wait) may have
CLOCK_TICK = os.sysconf("SC_CLK_TCK")

SCENARIO = """\
name: bench-fleet
description: >
  The scenario benchmark: every charger connects, starts a session with a local idTag,
  stops it and leaves; the CSMS's answers are timed across the fleet.
chargers:
  template: {{count: {chargers}, prefix: BENCH, connectors: 1}}
steps:
  - plug_in: {{wait: Preparing, timeout: {timeout}}}
  - present_id_tag: {{id_tag: {id_tag}}}
  - wait: {{status: Charging, timeout: {timeout}}}
  - expect: {{answer: StartTransaction, status: Accepted}}
  - expect: {{response_time: {{p99: 10, fleet: true}}}}
  - stop: {{wait: Finishing, timeout: {timeout}}}
  - unplug: {{}}
  - wait: {{status: Available, timeout: {timeout}}}
"""


# -- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of a running process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


class Child:
    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.log_path = logs / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_for(self, text: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise SystemExit(f"{text!r} not seen in {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def timed(args: list[str], env: dict[str, str], log: Path) -> tuple[int, float, float]:
    """Run a child to its end: (exit code, wall seconds, its own CPU seconds)."""
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.monotonic() - started, usage.ru_utime + usage.ru_stime


# -- one run ------------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[max(int(-(-q * len(ordered) // 100)), 1) - 1]

    return {"p50": round(at(50), 3), "p99": round(at(99), 3), "max": round(ordered[-1], 3)}


def step_timings(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    by_step: dict[int, list[float]] = {}
    labels: dict[int, str] = {}
    for charger in result["chargers"]:
        for step in charger["steps"]:
            by_step.setdefault(step["index"], []).append(step["duration"])
            labels[step["index"]] = f"{step['index']} {step['kind']}"
    return {labels[i]: percentiles(v) for i, v in sorted(by_step.items())}


def one_run(
    n: int, env: dict[str, str], csms_url: str, worker: Child, csms: Child, logs: Path
) -> dict[str, Any]:
    scenario = logs / "bench-fleet.yaml"
    scenario.write_text(SCENARIO.format(chargers=n, timeout=TIMEOUT, id_tag=ID_TAG))
    report = logs / "result.json"
    w0, c0 = cpu_seconds(worker.proc.pid), cpu_seconds(csms.proc.pid)
    code, scenario_wall, runscenario_cpu = timed(
        [
            sys.executable,
            "manage.py",
            "runscenario",
            str(scenario),
            "--csms-url",
            csms_url,
            "--json",
            str(report),
        ],
        env,
        logs / "runscenario.log",
    )
    w1, c1 = cpu_seconds(worker.proc.pid), cpu_seconds(csms.proc.pid)
    [result] = json.loads(report.read_text()) if report.exists() else [{"chargers": []}]
    time.sleep(3)  # the worker drops the deleted chargers
    w2, c2 = cpu_seconds(worker.proc.pid), cpu_seconds(csms.proc.pid)
    driver_code, bulk_wall, driver_cpu = timed(
        [sys.executable, str(Path(__file__)), "--bulk-driver", str(n), "--csms-url", csms_url],
        env,
        logs / "bulk-driver.log",
    )
    w3, c3 = cpu_seconds(worker.proc.pid), cpu_seconds(csms.proc.pid)
    time.sleep(3)
    scenario_side = runscenario_cpu + (w1 - w0)
    bulk_side = driver_cpu + (w3 - w2)
    overhead = scenario_side - bulk_side
    return {
        "chargers": n,
        "scenario_status": result.get("status", f"exit {code}"),
        "scenario_message": result.get("message", ""),
        "bulk_status": "passed" if driver_code == 0 else f"exit {driver_code}",
        "scenario_wall_s": round(scenario_wall, 2),
        "scenario_run_s": result.get("duration"),
        "bulk_wall_s": round(bulk_wall, 2),
        "runscenario_cpu_s": round(runscenario_cpu, 2),
        "worker_cpu_scenario_s": round(w1 - w0, 2),
        "csms_cpu_scenario_s": round(c1 - c0, 2),
        "driver_cpu_s": round(driver_cpu, 2),
        "worker_cpu_bulk_s": round(w3 - w2, 2),
        "csms_cpu_bulk_s": round(c3 - c2, 2),
        "overhead_cpu_s": round(overhead, 2),
        "overhead_ms_per_charger": round(overhead / n * 1000, 2),
        "overhead_share": round(overhead / scenario_side, 3) if scenario_side else None,
        "frames": result.get("frames"),
        "steps": step_timings(result) if result["chargers"] else {},
        "failed_steps": sorted(
            {
                s["message"].split(": ", 1)[-1][:120]
                for c in result["chargers"]
                for s in c["steps"]
                if s["status"] not in ("passed", "skipped")
            }
        )[:5],
    }


# -- the bulk driver (a process of its own) -------------------------------------------------------


def bulk_driver(n: int, csms_url: str) -> int:
    """Make N chargers as the runner does, drive them with bulk commands, delete them."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    import asyncio

    import django

    django.setup()
    from channels.db import database_sync_to_async
    from django.db import transaction

    from chargers.engine_client import EngineClient
    from chargers.evse_layout import EvseSpec
    from chargers.fleet import ChargerPlan, create_chargers
    from chargers.models import Charger, Evse
    from fleet_io.fleet_changes import notify_fleet_change
    from locations.models import Location
    from simulator import contract
    from vehicles.models import VehicleModel

    prefix = f"BULK-{uuid.uuid4().hex[:6]}"

    def make() -> dict[int, str]:
        location, _ = Location.objects.get_or_create(name="Scenarios")
        vehicle = VehicleModel.objects.order_by("pk").first()
        plans = [
            ChargerPlan(
                Charger(
                    charge_point_id=f"{prefix}-{k}",
                    location=location,
                    csms_url=csms_url,
                    power_type="AC",
                    max_power_kw=22,
                    auto_connect=False,
                    default_vehicle=vehicle,
                ),
                [EvseSpec(Evse.ConnectorType.TYPE2, 22.0)],
                {},
            )
            for k in range(1, n + 1)
        ]
        return {c.pk: c.charge_point_id for c in create_chargers(plans)}

    def delete(made: dict[int, str]) -> None:
        with transaction.atomic():
            notify_fleet_change(made.items())
            Charger.objects.filter(pk__in=list(made)).delete()

    async def drive() -> int:
        made = await database_sync_to_async(make)()
        client = EngineClient()
        failures = 0
        try:
            deadline = time.monotonic() + 60  # as the runner's wait until they are loaded

            async def loaded(pk: int, cp_id: str) -> bool:
                while not (await client.state(pk, cp_id)).get("ok"):
                    if time.monotonic() > deadline:
                        return False
                    await asyncio.sleep(0.2)
                return True

            ready = await asyncio.gather(*(loaded(pk, cp) for pk, cp in made.items()))
            if not all(ready):
                print(f"the worker did not load the {n} chargers", flush=True)
                return 1
            steps: list[tuple[str, dict[str, Any], str]] = [
                ("connect", {}, contract.ACCEPTED),
                ("plug_in", {}, "Preparing"),
                ("present_id_tag", {"id_tag": ID_TAG}, "Charging"),
                ("stop", {}, "Finishing"),
                ("unplug", {}, "Available"),
            ]
            for command, args, condition in steps:
                if command in contract.CONNECTOR_COMMANDS:
                    args = {"connector_id": 1, **args}
                wait = contract.WaitFor(condition=condition, timeout=float(TIMEOUT))
                started = time.monotonic()
                outcome = await client.bulk(command, args, chargers=made, wait_for=wait)
                bad = [r for r in outcome.results if not r.get("ok")]
                failures += len(bad) + len(outcome.refused)
                print(
                    f"{command}: {len(outcome.results)} results, {len(bad)} not ok, "
                    f"{time.monotonic() - started:.2f} s"
                    + (f" ({bad[0].get('message')})" if bad else ""),
                    flush=True,
                )
        finally:
            await database_sync_to_async(delete)(made)
        return 1 if failures else 0

    return asyncio.run(drive())


# -- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--logs", type=Path, help="keep the processes' output here")
    parser.add_argument("--bulk-driver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--csms-url", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.bulk_driver:
        return bulk_driver(options.bulk_driver, options.csms_url)

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import psycopg

    logs = options.logs or Path(tempfile.mkdtemp(prefix="scenario-bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    name = f"chargesim_scenbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database = urllib.parse.urlsplit(PG_URL)._replace(path=f"/{name}").geturl()
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "REDIS_URL": REDIS_URL,
        "CHARGESIM_SHARDS": "1",
        "CHARGESIM_VAR_DIR": str(logs),
        "SECRET_KEY": "scenario-bench-" + uuid.uuid4().hex,
        "PYTHONUNBUFFERED": "1",
    }
    children: list[Child] = []
    runs: list[dict[str, Any]] = []
    try:
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
        setup = "from vehicles.models import VehicleModel; VehicleModel.objects.seed_catalogue()"
        subprocess.run([*manage, "shell", "-c", setup], cwd=ROOT, env=env, check=True)
        port = free_port()
        csms = Child(
            "csms", [sys.executable, "-m", "simulator.csms", "--port", str(port)], env, logs
        )
        children.append(csms)
        worker = Child("worker", [*manage, "runsimulator", "--no-web", "--no-migrate"], env, logs)
        children.append(worker)
        worker.wait_for("loaded 0 chargers")
        csms_url = f"ws://127.0.0.1:{port}/ocpp"
        for _ in range(options.runs):
            run = one_run(options.chargers, env, csms_url, worker, csms, logs)
            print(textwrap.shorten(json.dumps(run), 600), flush=True)
            runs.append(run)
    finally:
        for child in reversed(children):
            child.stop()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    summary = dict(runs[len(runs) // 2]) if len(runs) == 1 else median_of(runs)
    summary["runs"] = runs if len(runs) > 1 else []
    summary["logs"] = str(logs)
    print(json.dumps(summary))
    return 0


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each number the median of the runs'; the rest (and the step timings) from the run
    whose scenario wall time is the median."""
    middle = sorted(runs, key=lambda r: r["scenario_wall_s"])[len(runs) // 2]
    summary = dict(middle)
    for key, value in middle.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            summary[key] = round(statistics.median(r[key] for r in runs), 3)
    return summary


if __name__ == "__main__":
    sys.exit(main())
