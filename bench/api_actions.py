"""API actions benchmark: action latency through the HTTP API with a busy fleet, and bulk.

    python bench/api_actions.py [--chargers 1000] [--actions 200] [--sample-interval 10]

What it does, in order:

1. a throwaway database (SQLite in a temp dir, or DATABASE_URL when set: it must hold no
   chargers) gets N chargers (bench/fleet.py's fleet: 1 EVSE AC 22 kW, a default vehicle,
   MeterValues every --sample-interval s), a user with the view and change charger
   permissions and an API token of theirs; `bench/load_csms.py` runs as a child process;
2. `manage.py runsimulator` (the web tier and the engine on one event loop, the in-memory
   channel layer: `make run`'s process) serves the API on 127.0.0.1;
3. every charger boots and gets a RemoteStartTransaction (it plugs in its vehicle): the
   whole fleet charges, MeterValues flowing;
4. --actions single actions through the HTTP API, one at a time on one keep-alive
   connection: pause-ev then resume-ev on a random charger, alternately; then as many
   GET state requests;
5. bulk actions on the whole fleet: pause-ev with the filter status=Charging, resume-ev
   with status=SuspendedEV, and pause-ev by a list of every charge point id (then resumed).

Figures (the last line is one JSON object):

- action_p50_ms / action_p99_ms / action_max_ms: request sent -> response read, for the
  single actions (each answered by the worker with the charger's state after it);
- state_p50_ms / state_p99_ms: the same for GET /chargers/{id}/state;
- bulk_by_status_seconds, bulk_resume_seconds, bulk_by_ids_seconds: request -> response
  of each bulk action, with `bulk_results` per charger counted (each must be ok);
- worker_cpu_percent (100 = one core) and msgs_per_s (charger CALLs at the CSMS) over the
  single-action phase, other_cpu_percent (the rest of the machine);
- errors: non-2xx answers, failed per-charger results, the load CSMS's error counts, and
  ERROR lines or tracebacks in the worker's log.

Binds 127.0.0.1 only; raises RLIMIT_NOFILE; always stops its children.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

# Run as a script: its directory (bench/) is on the path, as for the other benches.
from fleet import (
    Children,
    CsmsControl,
    Worker,
    cpu_seconds,
    create_fleet,
    machine_busy_seconds,
    prepare_database,
    raise_open_files,
    say,
    setup_django,
    sigterm_as_interrupt,
    tear_down,
    wait_until,
)
from load_csms import percentile

API = "/api/v1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def api_token() -> str:
    """A user who may view and drive chargers, and a token of theirs."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.db import close_old_connections

    from api.models import ApiToken

    user = get_user_model().objects.create_user("bench", password=None)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_charger", "change_charger"])
    )
    _, token = ApiToken.objects.issue(user, "bench/api_actions.py")
    close_old_connections()
    return token


def api_worker(
    children: Children,
    var_dir: Path,
    logs: Path,
    csms: CsmsControl,
    n: int,
    options: tuple[str, ...] = (),
) -> tuple[Worker, int]:
    """`manage.py runsimulator` with its web server (the API and the engine in one process,
    as `make run` runs) on a free port of 127.0.0.1, and that port, once the load CSMS has
    seen the `n` chargers of the database boot."""
    env = {
        **os.environ,
        "CHARGESIM_VAR_DIR": str(var_dir),
        "DJANGO_SETTINGS_MODULE": "chargesim_site.settings",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    csms.ask("expect", n=n, connectors=1)
    port = free_port()
    web = ("--no-migrate", "--host", "127.0.0.1", "--port", str(port))
    worker = Worker(children, env, logs, "worker", options=web + options)
    say(f"worker pid {worker.pid}, API on http://127.0.0.1:{port}{API}; logs in {logs}")

    def booted() -> bool:
        if not worker.alive():
            raise RuntimeError(f"worker exited; see {worker.stderr_path}")
        return csms.ask("status")["all_booted_at"] is not None

    if not wait_until(booted, max(60.0, n / 20), 0.1):
        raise RuntimeError(f"the fleet did not boot; see {worker.stderr_path}")
    return worker, port


class Http:
    """One keep-alive connection to the API, with the token."""

    def __init__(self, port: int, token: str, timeout: float = 120.0) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
        """Status, JSON body and the seconds from sending to the body read."""
        data = None if body is None else json.dumps(body)
        started = time.perf_counter()
        self.connection.request(method, f"{API}{path}", body=data, headers=self.headers)
        response = self.connection.getresponse()
        raw = response.read()
        elapsed = time.perf_counter() - started
        return response.status, json.loads(raw) if raw else None, elapsed

    def close(self) -> None:
        self.connection.close()


def ms(values: list[float], pct: float) -> float | None:
    found = percentile(sorted(v * 1000 for v in values), pct)
    return None if found is None else round(found, 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.chargers
    raise_open_files(2 * n + 2048)
    var_dir = Path(tempfile.mkdtemp(prefix="chargesim-api-bench-"))
    logs = Path(args.logs) if args.logs else var_dir
    logs.mkdir(parents=True, exist_ok=True)
    children = Children()
    result: dict[str, Any] = {"chargers": n, "actions": args.actions}
    errors: Counter[str] = Counter()
    try:
        setup_django(var_dir)
        prepare_database()
        csms = CsmsControl(children, heartbeat_interval=300)
        create_fleet(n, csms.url, args.sample_interval)
        token = api_token()
        worker, port = api_worker(children, var_dir, logs, csms, n)
        scheduled = csms.ask("remote_start", spread=1.0)["scheduled"]
        if not wait_until(lambda: csms.ask("status")["started"] >= scheduled, 60, 0.1):
            raise RuntimeError("not every charger started its transaction")
        say(f"{n} chargers booted and charging; MeterValues every {args.sample_interval} s")

        api = Http(port, token)
        status, me, _ = api.request("GET", "/whoami")
        if status != 200:
            raise RuntimeError(f"the API refused the bench's token ({status}: {me})")
        ids = [f"BENCH-{k:0{max(5, len(str(n)))}d}" for k in range(1, n + 1)]
        time.sleep(args.settle)

        # -- single actions
        rng = random.Random(15)
        before = csms.ask("status")
        t0, cpu0, busy0 = time.monotonic(), cpu_seconds(worker.pid), machine_busy_seconds()
        latencies: list[float] = []
        for k in range(args.actions):
            action = "pause-ev" if k % 2 == 0 else "resume-ev"
            if k % 2 == 0:
                cp_id = rng.choice(ids)
            status, body, elapsed = api.request("POST", f"/chargers/{cp_id}/actions/{action}")
            latencies.append(elapsed)
            if status != 200:
                errors[f"{action} answered {status}"] += 1
                say(f"{action} on {cp_id}: {status} {body}")
        t1, cpu1, busy1 = time.monotonic(), cpu_seconds(worker.pid), machine_busy_seconds()
        after = csms.ask("status")
        reads: list[float] = []
        for _ in range(args.actions):
            status, body, elapsed = api.request("GET", f"/chargers/{rng.choice(ids)}/state")
            reads.append(elapsed)
            if status != 200:
                errors[f"state answered {status}"] += 1
        wall, cpu = t1 - t0, cpu1 - cpu0
        result["action_p50_ms"] = ms(latencies, 50)
        result["action_p99_ms"] = ms(latencies, 99)
        result["action_max_ms"] = round(max(latencies) * 1000, 1)
        result["state_p50_ms"] = ms(reads, 50)
        result["state_p99_ms"] = ms(reads, 99)
        result["worker_cpu_percent"] = round(cpu / wall * 100, 1)
        result["other_cpu_percent"] = round(max(busy1 - busy0 - cpu, 0.0) / wall * 100, 1)
        result["msgs_per_s"] = round((after["calls_in"] - before["calls_in"]) / wall, 1)
        say(
            f"{args.actions} single actions: p50 {result['action_p50_ms']} ms, "
            f"p99 {result['action_p99_ms']} ms, max {result['action_max_ms']} ms; "
            f"GET state p50 {result['state_p50_ms']} ms, p99 {result['state_p99_ms']} ms"
        )

        # -- bulk actions on the whole fleet
        def bulk(name: str, action: str, chosen: dict[str, Any]) -> None:
            status, body, elapsed = api.request(
                "POST", f"/fleet/actions/{action}", {"filter": chosen}
            )
            result[f"{name}_seconds"] = round(elapsed, 3)
            done = body.get("succeeded", 0) if isinstance(body, dict) else 0
            result[f"{name}_results"] = body.get("total") if isinstance(body, dict) else None
            if status != 200 or done != n:
                errors[f"{name}: {status}, {done}/{n} ok"] += 1
            say(f"bulk {action} {json.dumps(chosen)[:60]}: {done}/{n} ok in {elapsed:.3f} s")

        bulk("bulk_by_status", "pause-ev", {"status": "Charging"})
        bulk("bulk_resume", "resume-ev", {"status": "SuspendedEV"})
        bulk("bulk_by_ids", "pause-ev", {"charge_point_ids": ids})
        bulk("bulk_resume_by_ids", "resume-ev", {"charge_point_ids": ids})
        api.close()

        for problem, count in csms.ask("status")["errors"].items():
            errors[problem] += count
        if children.stop(worker.proc, timeout=60.0) is None:
            errors["worker had to be killed"] += 1
        problems = worker.log_problems()
        for level in ("CRITICAL", "ERROR", "Traceback"):
            if problems[level]:
                errors[f"worker log {level}"] += problems[level]
        worker.close()
        csms.quit()
    finally:
        tear_down(children, var_dir, keep=args.keep)
    result["errors"] = sum(errors.values())
    result["error_details"] = dict(errors)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--actions", type=int, default=200, help="single actions (and reads)")
    parser.add_argument("--sample-interval", type=int, default=10, help="MeterValues, seconds")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds charging first")
    parser.add_argument("--logs", help="keep the worker's and CSMS's output here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with sigterm_as_interrupt():
        result = run(args)
    print(json.dumps(result))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
