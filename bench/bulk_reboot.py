"""Bulk reboot benchmark: one bulk reboot of the whole fleet through the HTTP API.

    python bench/bulk_reboot.py [--chargers 1000] [--connect-rate 0]

What it does: a throwaway SQLite database gets N chargers (bench/fleet.py's fleet, one EVSE
each), a user who may drive chargers and an API token of theirs (bench/api_actions.py's);
`bench/load_csms.py` runs as a child process, and `manage.py runsimulator` (the web tier and
the engine on one event loop, `make run`'s process) serves the API. Once every charger has
booted, ONE `POST /api/v1/fleet/actions/reboot` lists every charge point id, as a user
rebooting the fleet from the API (or the dashboard, or the MCP tool: the same endpoint)
would; meanwhile a second connection sends `GET /api/v1/whoami` back to back, whose answer
needs the worker's event loop (the API runs on it).

Figures (the last line is one JSON object):

- answer_seconds: the bulk request sent -> its answer read;
- results: the answer's per-charger results, counted by their message (the figure after a
  charger id stripped: "reboots now (1 connector)" for each, or a timeout);
- all_booted_seconds: the bulk request sent -> the load CSMS has had N more
  BootNotifications (one per charger);
- longest_ping_ms / pings: the slowest `whoami` answer from the bulk request until all
  booted, and how many were answered: the longest the worker's loop left the API waiting;
- worker_cpu_seconds / worker_cpu_percent: the worker's CPU over the same span (100 % =
  one core).

Binds 127.0.0.1 only; raises RLIMIT_NOFILE; always stops its children.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

# Run as a script: its directory (bench/) is on the path, as for the other benches.
from api_actions import Http, api_token, api_worker
from fleet import (
    Children,
    CsmsControl,
    cpu_seconds,
    create_fleet,
    prepare_database,
    raise_open_files,
    say,
    setup_django,
    sigterm_as_interrupt,
    tear_down,
    wait_until,
)


class Pinger(threading.Thread):
    """`GET /whoami` back to back on its own connection until stopped: the slowest answer."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(daemon=True)
        self.api = Http(port, token, timeout=600.0)
        self.stopping = threading.Event()
        self.longest = 0.0
        self.count = 0
        self.failed = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            status, _, elapsed = self.api.request("GET", "/whoami")
            self.longest = max(self.longest, elapsed)
            self.count += 1
            self.failed += status != 200
            time.sleep(0.01)
        self.api.close()


def boots(csms: CsmsControl) -> int:
    count: int = csms.ask("status")["by_action"].get("BootNotification", 0)
    return count


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.chargers
    raise_open_files(2 * n + 2048)
    var_dir = Path(tempfile.mkdtemp(prefix="chargesim-bulk-reboot-"))
    children = Children()
    result: dict[str, Any] = {"chargers": n, "connect_rate": args.connect_rate}
    try:
        setup_django(var_dir)
        prepare_database()
        csms = CsmsControl(children, heartbeat_interval=300)
        create_fleet(n, csms.url, 300)
        token = api_token()
        rate = ("--connect-rate", str(args.connect_rate))
        worker, port = api_worker(children, var_dir, var_dir, csms, n, rate)
        time.sleep(args.settle)  # the boots' status reports answered, the loop idle
        say(f"{n} chargers booted")

        api = Http(port, token, timeout=600.0)
        ids = [f"BENCH-{k:0{max(5, len(str(n)))}d}" for k in range(1, n + 1)]
        before = boots(csms)
        pinger = Pinger(port, token)
        pinger.start()
        cpu0, started = cpu_seconds(worker.pid), time.monotonic()
        status, body, elapsed = api.request(
            "POST", "/fleet/actions/reboot", {"filter": {"charge_point_ids": ids}}
        )
        api.close()
        result["status"] = status
        result["answer_seconds"] = round(elapsed, 2)
        messages = body.get("results", []) if isinstance(body, dict) else []
        result["results"] = dict(
            Counter(re.sub(r"^\S+ ", "", str(r.get("message"))) for r in messages)
        )
        say(f"bulk reboot answered {status} in {elapsed:.2f} s: {result['results']}")
        if not wait_until(lambda: boots(csms) >= before + n, args.patience, 0.05):
            raise RuntimeError(f"only {boots(csms) - before} of {n} booted again")
        booted_at = time.monotonic()
        cpu = cpu_seconds(worker.pid) - cpu0
        pinger.stopping.set()
        pinger.join(timeout=60)
        span = booted_at - started
        result["all_booted_seconds"] = round(span, 2)
        result["longest_ping_ms"] = round(pinger.longest * 1000, 1)
        result["pings"] = pinger.count
        result["ping_errors"] = pinger.failed
        result["worker_cpu_seconds"] = round(cpu, 2)
        result["worker_cpu_percent"] = round(cpu / span * 100, 1)
        problems = worker.log_problems()
        result["worker_log"] = {k: v for k, v in problems.items() if v}
        children.stop(worker.proc, timeout=60.0)
        worker.close()
        csms.quit()
    finally:
        tear_down(children, var_dir)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument(
        "--connect-rate", type=float, default=0.0, help="the worker's, chargers a second"
    )
    parser.add_argument("--settle", type=float, default=3.0, help="seconds idle first")
    parser.add_argument(
        "--patience", type=float, default=900.0, help="seconds for all to boot again"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with sigterm_as_interrupt():
        result = run(args)
    say(
        f"{result['chargers']} chargers: answer {result['answer_seconds']} s, all booted "
        f"{result['all_booted_seconds']} s, longest ping {result['longest_ping_ms']} ms, "
        f"worker CPU {result['worker_cpu_percent']} %"
    )
    print(json.dumps(result), flush=True)
    return 0 if result["status"] == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
