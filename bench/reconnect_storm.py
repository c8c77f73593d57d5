"""Reconnect storm benchmark: a CSMS outage of a few seconds under a booted fleet, and how
the fleet comes back to the CSMS, with and without a connect rate.

    python bench/reconnect_storm.py [--chargers 1000] [--outage 5] [--connect-rate N]
        [--reconnect-cap 60]

What it does: bench/fleet.py's fleet (N chargers, one EVSE each) in a throwaway SQLite
database, `bench/load_csms.py` as the CSMS and `manage.py runsimulator --no-web` as the
worker, both child processes. Once every charger has booted, the CSMS process is stopped
(SIGTERM: its sockets go without a close frame, as a crashed or unplugged CSMS's do), and
after --outage seconds a new one listens on the same port. Each charger reconnects on its
own backoff (full jitter, doubling up to --reconnect-cap, CHARGESIM_RECONNECT_CAP_SECONDS)
and, with --connect-rate, in its turn of the worker's connect ramp.

Figures (the last line is one JSON object), all from the returning CSMS's accept instants
(time.monotonic, comparable between processes on Linux):

- peak_reconnects_per_second: the most WebSocket connections it accepted in any 1 s window;
- first_reconnect_seconds, all_reconnected_seconds: from the moment it listened to its
  first and to its N-th accepted connection (null: not all within --timeout);
- worker_problems: WARNING / ERROR lines and tracebacks in the worker's log; ramp_lines:
  the worker's "connect ramp:" log lines after the outage began.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from fleet import (  # bench/ is the script's directory
    Children,
    CsmsControl,
    Worker,
    create_fleet,
    prepare_database,
    raise_open_files,
    say,
    setup_django,
    wait_until,
    worker_env,
)
from in_process import throwaway_var_dir


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.chargers
    raise_open_files(2 * n + 2048)
    var_dir = throwaway_var_dir()
    children = Children()
    result: dict[str, Any] = {
        "chargers": n,
        "connect_rate": args.connect_rate,
        "outage_seconds": args.outage,
        "reconnect_cap": args.reconnect_cap,
    }
    try:
        setup_django(var_dir)
        prepare_database()
        csms = CsmsControl(children, heartbeat_interval=300)
        port = int(csms.url.rsplit(":", 1)[1])
        create_fleet(n, csms.url, sample_interval=60)
        csms.ask("expect", n=n, connectors=1)
        options = ["--no-web"]
        if args.connect_rate:
            options += ["--connect-rate", str(args.connect_rate)]
        env = worker_env(var_dir, argparse.Namespace(tick_seconds=1.0))
        env["CHARGESIM_RECONNECT_CAP_SECONDS"] = str(args.reconnect_cap)
        worker = Worker(children, env, var_dir, "worker", tuple(options))
        if not wait_until(lambda: csms.ask("status")["all_booted_at"] is not None, args.timeout):
            raise RuntimeError(f"the fleet did not boot; see {worker.stderr_path}")
        say(f"{n} chargers booted; the CSMS goes away for {args.outage:g} s")
        time.sleep(1.0)  # the worker's boot-time work (checkpoints, the freeze) settles
        logged_before = len(worker.stderr_path.read_text(errors="replace").splitlines())
        children.stop(csms.proc)
        time.sleep(args.outage)
        back = CsmsControl(children, heartbeat_interval=300, port=port)
        listening = time.monotonic()

        def all_back() -> bool:
            return bool(back.ask("handshakes")["n"] >= n)

        done = wait_until(all_back, args.timeout, every=0.1)
        handshakes = back.ask("handshakes")
        result["reconnected"] = handshakes["n"]
        result["peak_reconnects_per_second"] = handshakes["peak_per_second"]
        if handshakes["n"]:
            result["first_reconnect_seconds"] = round(handshakes["first_at"] - listening, 3)
        result["all_reconnected_seconds"] = (
            round(handshakes["last_at"] - listening, 3) if done else None
        )
        lines = worker.stderr_path.read_text(errors="replace").splitlines()[logged_before:]
        result["ramp_lines"] = [line for line in lines if "connect ramp:" in line][:6]
        result["worker_problems"] = dict(worker.log_problems())
        back.quit()
        children.stop(worker.proc)
        worker.close()
    finally:
        children.stop_all()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=1000, metavar="N")
    parser.add_argument("--outage", type=float, default=5.0, metavar="S")
    parser.add_argument("--connect-rate", type=float, default=0.0, metavar="N")
    parser.add_argument("--reconnect-cap", type=float, default=60.0, metavar="S")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S")
    args = parser.parse_args(argv)
    result = run(args)
    say(
        f"after a {args.outage:g} s outage: at most {result['peak_reconnects_per_second']} "
        f"reconnects in any second; all {result['reconnected']}/{args.chargers} back after "
        f"{result['all_reconnected_seconds']} s"
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
