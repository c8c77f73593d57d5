"""Soak: does a long run stay bounded? The demo worker under heavy background traffic.

    .venv/bin/python bench/soak.py [--chargers 300] [--minutes 40] [--speed 60] \\
        [--arrivals 60] [--sample-interval 10] [--log-rows 200000] [--every 60]

One `runsimulator --demo --traffic` process (web, worker and the built-in CSMS in one, as
`make run` runs it) on a throwaway SQLite file, or with DATABASE_URL (and REDIS_URL) set,
on that database, which must hold no chargers yet (the scaled-out mode's stores). Before it starts, every site's arrival
profile is set to `--arrivals` drivers an hour at every hour of the day (dwell 20–120
simulated minutes, so at `--speed` 60 a session lasts 20 s to 2 min and the fleet opens and
closes thousands of transactions), MeterValueSampleInterval to `--sample-interval`, and the
message log's cap to `--log-rows` rows (so its pruning runs within the soak).

Every `--every` seconds it prints what would grow if something leaked: the process's RSS,
open file descriptors and threads, its CPU, the transactions stored (all / open), the
message log's and the outbox's rows, the database's size on disk (with its WAL), and the
traffic's arrivals and the OCPP CALLs sent so far (from the worker's Prometheus metrics).
At the end it prints the RSS's growth per hour over the second half of the run (after the
fleet, the logs and the caches have filled), and the worker's errors and warnings.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path.cwd()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(var_dir: Path, args: argparse.Namespace, csms_url: str) -> None:
    """Migrate, seed, create the demo fleet as `--demo` would, and set the soak's
    profiles and sampling, before the worker starts (so that it loads them)."""
    os.environ["CHARGESIM_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from chargers.models import Charger, ConfigurationKey
    from locations.models import ArrivalProfile, Location
    from simulator.runtime.demo import ensure_demo_fleet
    from vehicles.models import VehicleModel

    call_command("migrate", interactive=False, verbosity=0)
    if Charger.objects.exists():
        raise SystemExit("The database already holds chargers: the soak wants a throwaway one.")
    Location.objects.seed_defaults()
    VehicleModel.objects.seed_catalogue()
    ensure_demo_fleet(args.chargers, csms_url)
    for location in Location.objects.all():
        ArrivalProfile.objects.update_or_create(
            location=location,
            defaults={
                "hourly_arrivals": [float(args.arrivals)] * 24,
                "dwell_distribution": "uniform",
                "dwell_a": 20.0,
                "dwell_b": 120.0,
                "never_unplug_share": 0.0,
            },
        )
    ConfigurationKey.objects.filter(key="MeterValueSampleInterval").update(
        value=str(args.sample_interval)
    )


def status_kib(pid: int) -> dict[str, int]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            found[key] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_counts() -> dict[str, int]:
    """Row counts and the database's size, read through this process's own connection
    (SQLite or PostgreSQL, as DATABASE_URL says; the worker keeps writing)."""
    from django.db import close_old_connections, connection

    from chargers.models import FrameLogEntry, OutboxMessage, Transaction

    close_old_connections()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            size = int(cursor.fetchone()[0])
    else:
        path = Path(connection.settings_dict["NAME"])
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return {
        "tx": Transaction.objects.count(),
        "open": Transaction.objects.filter(state=Transaction.State.OPEN).count(),
        "log": FrameLogEntry.objects.count(),
        "outbox": OutboxMessage.objects.count(),
        "size": size,
    }


def metric_sums(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if name in ("chargesim_traffic_arrivals_total", "chargesim_ocpp_calls_sent_total"):
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return sums


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chargers", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--speed", type=float, default=60.0, help="--traffic-speed")
    parser.add_argument("--arrivals", type=float, default=60.0, help="per site and hour")
    parser.add_argument("--sample-interval", type=int, default=10)
    parser.add_argument("--log-rows", type=int, default=200_000)
    parser.add_argument("--every", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="chargesim-soak-"))
    csms_port, web_port, metrics_port = free_port(), free_port(), free_port()
    prepare(var_dir, args, f"ws://127.0.0.1:{csms_port}/ocpp")
    env = dict(
        os.environ,
        CHARGESIM_VAR_DIR=str(var_dir),
        CHARGESIM_MESSAGE_LOG_MAX_ROWS=str(args.log_rows),
        PYTHONUNBUFFERED="1",
    )
    log_path = var_dir / "worker.log"
    command = [
        sys.executable, "manage.py", "runsimulator", "--demo", "--no-migrate",
        "--demo-chargers", str(args.chargers), "--traffic", "--traffic-seed", "1",
        "--traffic-speed", str(args.speed), "--port", str(web_port),
        "--csms-port", str(csms_port), "--csms-control-port", "0",
        "--metrics-port", str(metrics_port), "--status-every", "60",
    ]  # fmt: skip
    with open(log_path, "w") as log_file:
        worker = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    print(f"worker pid {worker.pid}, var dir {var_dir}, log {log_path}", flush=True)
    print(
        f"{'min':>5} {'RSS MiB':>8} {'fds':>5} {'thr':>4} {'CPU %':>6} {'tx':>8} {'open':>5} "
        f"{'log rows':>9} {'outbox':>6} {'db MiB':>7} {'arrivals':>9} {'CALLs':>9}",
        flush=True,
    )
    from django.db import DatabaseError

    started = time.monotonic()
    rss: list[tuple[float, float]] = []
    last_cpu, last_at = cpu_seconds(worker.pid), started
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(args.every)
            if worker.poll() is not None:
                print(f"worker ended early (exit {worker.returncode})")
                break
            now = time.monotonic()
            cpu = cpu_seconds(worker.pid)
            cpu_percent = 100 * (cpu - last_cpu) / (now - last_at)
            last_cpu, last_at = cpu, now
            proc = status_kib(worker.pid)
            fds = len(os.listdir(f"/proc/{worker.pid}/fd"))
            try:
                counts = database_counts()
                metrics = metric_sums(metrics_port)
            except (DatabaseError, OSError) as exc:
                print(f"  (not read: {exc})")
                continue
            minutes = (now - started) / 60
            rss.append((minutes, proc["VmRSS"] / 1024))
            print(
                f"{minutes:5.1f} {proc['VmRSS'] / 1024:8.1f} {fds:5d} {proc['Threads']:4d} "
                f"{cpu_percent:6.1f} {counts['tx']:8d} {counts['open']:5d} {counts['log']:9d} "
                f"{counts['outbox']:6d} {counts['size'] / 2**20:7.1f} "
                f"{metrics.get('chargesim_traffic_arrivals_total', 0):9.0f} "
                f"{metrics.get('chargesim_ocpp_calls_sent_total', 0):9.0f}",
                flush=True,
            )
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
    output = log_path.read_text(errors="replace")
    half = [(m, r) for m, r in rss if m >= rss[-1][0] / 2] if rss else []
    if len(half) >= 3:
        slope = statistics.linear_regression([m for m, _ in half], [r for _, r in half]).slope
        print(f"RSS over the second half: {slope * 60:+.1f} MiB per hour (least squares)")
    problems = [
        line for line in output.splitlines() if re.search(r"\b(ERROR|WARNING|Traceback)\b", line)
    ]
    print(f"worker exit {worker.returncode}; {len(problems)} warning/error lines")
    for line in problems[:20]:
        print("  " + line[:200])
    print("last lines:\n  " + "\n  ".join(output.splitlines()[-3:]))
    if not args.keep:
        import shutil

        shutil.rmtree(var_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
