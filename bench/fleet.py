"""Fleet benchmark: one `runsimulator --no-web` worker against a load CSMS, measured from outside.

    python bench/fleet.py --chargers N --duration S [--sample-interval SEC] [--csms-url URL]
        [--connectors C] [--idle]

What it does, in order:

1. a throwaway database (SQLite in a temp dir through CHARGESIM_VAR_DIR, or DATABASE_URL
   when set: it must hold no chargers) gets N chargers, bulk-created: --connectors EVSEs
   (default 1), each AC 22 kW, the charger rated 22 kW per EVSE (so that power sharing never
   lowers a connector), simulate_ev_on_remote_start, MeterValueSampleInterval = --sample-interval,
   MeterValuesSampledData = Energy.Active.Import.Register,Power.Active.Import,
   Current.Import,Voltage,SoC, with their ConfigurationKey rows;
2. unless --csms-url is given, `bench/load_csms.py` runs as a child process (orjson,
   fixed answers) and is driven over its stdin/stdout;
3. the worker with 0 chargers is started once to measure its baseline RSS (skip with
   --no-baseline), then `manage.py runsimulator --no-web` runs as a child with the fleet,
   event publishing on (the default), and is measured through /proc/<pid>;
4. every connector of every charger gets a RemoteStartTransaction (all N x C of them
   spread over --remote-start-spread s, every charger's connector 1 first); once the
   StartTransactions are in, the steady window of --duration s is measured. With --idle no
   RemoteStart is sent: the chargers stay connected and idle (Available), and the window
   measures heartbeats (--heartbeat-interval) and the idle engine. --warmup S waits S
   seconds before the window, so that the worker's one-off work after the boot stays out.

So "10,000 chargers each with 2 connectors charging, MeterValues every 10 s" is
`--chargers 10000 --connectors 2 --sample-interval 10`, and "10,000 idle connected
chargers" is `--chargers 10000 --idle`.

Figures (the last line printed is one JSON object; keys in this order):

- boot_seconds: worker process start -> every charger's BootNotification Accepted and
  StatusNotification Available for connectors 0 to C seen at the CSMS (null if not all
  booted within --boot-timeout);
- peak_handshakes_per_second (extra, with the load CSMS): the most WebSocket connections
  the CSMS accepted in any 1 s window, and handshake_span_seconds: from its first accepted
  connection to its last (--connect-rate N spreads them, `runsimulator --connect-rate`);
- rss_mb: the worker's VmRSS at the end of the steady window; rss_kib_per_charger:
  (VmRSS - VmRSS of the same worker with 0 chargers) / N, or VmRSS / N with --no-baseline;
- cpu_percent: the worker's utime+stime (all threads) over the steady window / wall time,
  100 = one core (cpu_user_percent and cpu_system_percent: the two apart; system is mostly
  the sockets' kernel work);
- msgs_per_s: charger -> CSMS CALLs counted at the CSMS over the steady window (each also
  costs the worker one CALLRESULT read; frames_per_s counts every frame both ways);
- msgs_per_cpu_second: those CALLs / worker CPU seconds in the window;
- remote_start_p50_ms / p99_ms: RemoteStartTransaction written by the CSMS -> the
  StartTransaction of that connector read by the CSMS (null with --idle).

With --csms-url (an external CSMS) the CSMS-side figures are null; boot_seconds then comes
from the worker's own progress line (1 s resolution) and no RemoteStart is sent.

Binds 127.0.0.1 only; raises RLIMIT_NOFILE for itself and its children; always stops its
child processes (also on Ctrl-C or an exception).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
MEASURANDS = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC"
KEYS = (
    "chargers",
    "booted",
    "boot_seconds",
    "rss_mb",
    "rss_kib_per_charger",
    "cpu_percent",
    "msgs_per_s",
    "msgs_per_cpu_second",
    "remote_start_p50_ms",
    "remote_start_p99_ms",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- /proc readings ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of the process so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_split_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of every thread of the process so far: Python and the kernel's
    socket work apart."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine spent busy so far (/proc/stat)."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, amount, _unit = line.split()
                values[name.rstrip(":")] = int(amount)
    return values


def raise_open_files(wanted: int) -> int:
    """Raise RLIMIT_NOFILE (inherited by the children); returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    for new_hard in (max(hard, wanted), hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, new_hard), new_hard))
            break
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- child processes ---------------------------------------------------------------------------


@dataclass
class Children:
    """Every process the bench started, stopped by id whatever happens."""

    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def add(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 30.0) -> float | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; returns the seconds it took to exit
        after SIGTERM (None if it had to be killed)."""
        if proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
            return time.monotonic() - started
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            return None

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc, timeout=10.0)


class CsmsControl:
    """The load CSMS child, driven by JSON lines over its stdin/stdout."""

    def __init__(
        self,
        children: Children,
        heartbeat_interval: int,
        ping_interval: float = 0.0,
        port: int = 0,  # 0: a free one; a CSMS back after an outage takes its old one
    ) -> None:
        self.proc = children.add(
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "bench" / "load_csms.py"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--heartbeat-interval",
                    str(heartbeat_interval),
                    "--ping-interval",
                    str(ping_interval),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
        )
        self._lock = threading.Lock()
        first = self._read()
        if first.get("event") != "listening":
            raise RuntimeError(f"load CSMS did not start: {first}")
        self.url: str = first["url"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load CSMS exited (code {self.proc.poll()})")
        return json.loads(line)

    def ask(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
            self.proc.stdin.flush()
            return self._read()

    def quit(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("quit")


# -- the fleet in the database -----------------------------------------------------------------


def setup_django(var_dir: Path) -> None:
    os.environ["CHARGESIM_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def prepare_database() -> None:
    from django.core.management import call_command

    from chargers.models import Charger
    from locations.models import Location
    from vehicles.models import VehicleModel

    call_command("migrate", interactive=False, verbosity=0)
    if Charger.objects.exists():
        raise SystemExit(
            "The database already holds chargers: the bench wants a throwaway database "
            "(unset DATABASE_URL to use a temporary SQLite file)."
        )
    Location.objects.seed_defaults()
    VehicleModel.objects.seed_catalogue()


def py_spy_record(
    pid: int,
    seconds: int,
    output: str,
    *,
    rate: int = 200,
    fmt: str = "raw",
    native: bool = False,
    gil: bool = True,
    py_spy: str = "",
) -> list[str]:
    """The py-spy command that samples the worker for `seconds` into `output` (`py_spy`, or
    the one in the venv beside this Python)."""
    return [
        py_spy or str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        str(rate),
        "--format",
        fmt,
        "-o",
        output,
        *(["--native"] if native else []),
        *(["--gil"] if gil else []),
    ]


def create_fleet(count: int, csms_url: str, sample_interval: int, connectors: int = 1) -> float:
    """Bulk-create `count` chargers with `connectors` EVSEs each and their configuration;
    returns seconds."""
    from django.db import close_old_connections, transaction

    from chargers.models import Charger, ConfigurationKey, Evse
    from locations.models import Location
    from simulator.contract import config_keys
    from vehicles.models import VehicleModel

    started = time.monotonic()
    location = Location.objects.order_by("pk").first()
    vehicle = (
        VehicleModel.objects.filter(ac_max_kw__gte=11).order_by("pk").first()
        or VehicleModel.objects.order_by("pk").first()
    )
    config = config_keys.defaults(connectors)
    config["MeterValueSampleInterval"] = str(sample_interval)
    config["MeterValuesSampledData"] = MEASURANDS
    width = max(5, len(str(count)))
    with transaction.atomic():
        rows = Charger.objects.bulk_create(
            [
                Charger(
                    charge_point_id=f"BENCH-{n:0{width}d}",
                    serial_number=f"SN{n:0{width}d}",
                    location=location,
                    csms_url=csms_url,
                    max_power_kw=22.0 * connectors,
                    power_type="AC",
                    phases=3,
                    default_vehicle=vehicle,
                    simulate_ev_on_remote_start=True,
                )
                for n in range(1, count + 1)
            ],
            batch_size=1000,
        )
        Evse.objects.bulk_create(
            [
                Evse(charger=row, connector_id=connector, max_power_kw=22.0)
                for row in rows
                for connector in range(1, connectors + 1)
            ],
            batch_size=1000,
        )
        ConfigurationKey.objects.bulk_create(
            [
                ConfigurationKey(
                    charger=row,
                    key=key,
                    value=value,
                    readonly=config_keys.KEYS[key].readonly,
                )
                for row in rows
                for key, value in config.items()
            ],
            batch_size=2000,
        )
    close_old_connections()
    return time.monotonic() - started


# -- the worker --------------------------------------------------------------------------------

LOADED = re.compile(r"loaded (\d+) chargers")
PROGRESS = re.compile(r"fleet: (\d+)/(\d+) accepted")


class Worker:
    def __init__(
        self,
        children: Children,
        env: dict[str, str],
        logs: Path,
        name: str,
        options: tuple[str, ...] = ("--no-web",),
    ) -> None:
        self.stdout_path = logs / f"{name}.stdout"
        self.stderr_path = logs / f"{name}.stderr"
        self._out: TextIO = open(self.stdout_path, "w")  # noqa: SIM115 (closed in close())
        self._err: TextIO = open(self.stderr_path, "w")  # noqa: SIM115
        self.started_at = time.monotonic()
        self.proc = children.add(
            subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "runsimulator", *options],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._out,
                stderr=self._err,
            )
        )
        self.pid = self.proc.pid
        self.loaded_at: float | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def poll_loaded(self) -> bool:
        if self.loaded_at is None and LOADED.search(self.stderr_path.read_text(errors="replace")):
            self.loaded_at = time.monotonic()
        return self.loaded_at is not None

    def accepted_from_progress(self) -> int:
        text = self.stdout_path.read_text(errors="replace")
        found = PROGRESS.findall(text)
        return int(found[-1][0]) if found else 0

    def log_problems(self) -> Counter[str]:
        """ERROR / CRITICAL / WARNING lines and tracebacks in the worker's stderr."""
        counts: Counter[str] = Counter()
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            for level in ("CRITICAL", "ERROR", "WARNING"):
                if f" {level} " in line:
                    counts[level] += 1
            if line.startswith("Traceback"):
                counts["Traceback"] += 1
        return counts

    def close(self) -> None:
        self._out.close()
        self._err.close()


def worker_env(var_dir: Path, args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env["CHARGESIM_VAR_DIR"] = str(var_dir)
    env["DJANGO_SETTINGS_MODULE"] = "chargesim_site.settings"
    env["LOG_LEVEL"] = "INFO"  # the default; its "loaded N chargers" line ends loading
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["CHARGESIM_TICK_SECONDS"] = str(args.tick_seconds)
    return env


def baseline_rss(children: Children, env: dict[str, str], logs: Path) -> int:
    """VmRSS (KiB) of the worker with 0 chargers, once it has loaded its (empty) fleet."""
    worker = Worker(children, env, logs, "worker-baseline")
    try:
        deadline = time.monotonic() + 60
        while not worker.poll_loaded():
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"baseline worker did not start; see {worker.stderr_path}")
            time.sleep(0.05)
        time.sleep(1.0)
        return memory_kib(worker.pid)["VmRSS"]
    finally:
        children.stop(worker.proc)
        worker.close()


# -- the run -----------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def wait_until(predicate, timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.chargers
    limit = raise_open_files(2 * n + 2048)
    if limit < n + 512:
        say(f"warning: open-files limit {limit} is too low for {n} connections")
    var_dir = Path(tempfile.mkdtemp(prefix="chargesim-bench-"))
    logs = Path(args.logs) if args.logs else var_dir
    logs.mkdir(parents=True, exist_ok=True)
    children = Children()
    result: dict[str, Any] = dict.fromkeys(KEYS)
    result["chargers"] = n
    result["booted"] = 0
    extra: dict[str, Any] = {}
    errors: Counter[str] = Counter()
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        setup_django(var_dir)
        prepare_database()
        env = worker_env(var_dir, args)
        baseline = None
        if not args.no_baseline:
            baseline = baseline_rss(children, env, logs)
            say(f"worker baseline (0 chargers): RSS {baseline / 1024:.1f} MiB")
        csms = None
        if args.csms_url:
            url = args.csms_url
        else:
            csms = CsmsControl(children, args.heartbeat_interval, args.csms_ping_interval)
            url = csms.url
        made = create_fleet(n, url, args.sample_interval, args.connectors)
        say(f"created {n} chargers in {made:.1f} s -> {url}")
        extra["create_seconds"] = round(made, 2)
        if csms is not None:
            csms.ask("expect", n=n, connectors=args.connectors)

        options = ["--no-web"]
        if args.connect_rate is not None:
            options += ["--connect-rate", str(args.connect_rate)]
        worker = Worker(children, env, logs, "worker", tuple(options))
        say(f"worker pid {worker.pid}; logs in {logs}")
        boot_timeout = args.boot_timeout or max(30.0, n / 100)
        booted_at: float | None = None

        def booted() -> bool:
            nonlocal booted_at
            worker.poll_loaded()
            if not worker.alive():
                raise RuntimeError(f"worker exited ({worker.proc.returncode}) while booting")
            if csms is not None:
                status = csms.ask("status")
                result["booted"] = status["booted"]
                booted_at = status["all_booted_at"]
            else:
                result["booted"] = worker.accepted_from_progress()
                if result["booted"] >= n:
                    booted_at = time.monotonic()
            return booted_at is not None

        every = 0.05 if csms is not None else 0.5
        if wait_until(booted, boot_timeout, every):
            assert booted_at is not None
            result["boot_seconds"] = round(booted_at - worker.started_at, 3)
        if worker.loaded_at is not None:
            extra["load_seconds"] = round(worker.loaded_at - worker.started_at, 3)
        say(
            f"booted {result['booted']}/{n} in "
            + (f"{result['boot_seconds']:.2f} s" if result["boot_seconds"] else "(timed out)")
            + (
                f" (fleet loaded after {extra['load_seconds']:.2f} s)"
                if "load_seconds" in extra
                else ""
            )
        )
        if csms is not None:
            # How the boot looked to the CSMS: the most handshakes it took in any second,
            # and over how long the fleet's connections came (the connect ramp spreads them).
            handshakes = csms.ask("handshakes")
            extra["peak_handshakes_per_second"] = handshakes["peak_per_second"]
            if handshakes["n"]:
                span = handshakes["last_at"] - handshakes["first_at"]
                extra["handshake_span_seconds"] = round(span, 3)
            say(
                f"CSMS: {handshakes['n']} handshakes, at most {handshakes['peak_per_second']} "
                "in any second"
            )
        extra["connect_rate"] = args.connect_rate

        if csms is not None and result["booted"] and not args.idle:
            scheduled = csms.ask(
                "remote_start", spread=args.remote_start_spread, connectors=args.connectors
            )["scheduled"]
            wait_until(
                lambda: csms.ask("status")["started"] >= scheduled,
                args.remote_start_spread
                + (args.start_timeout or max(30.0, n * args.connectors / 50)),
                0.1,
            )
            latency = csms.ask("latencies")
            for key, name in (("p50_ms", "remote_start_p50_ms"), ("p99_ms", "remote_start_p99_ms")):
                result[name] = None if latency[key] is None else round(latency[key], 1)
            extra["remote_start_max_ms"] = (
                None if latency["max_ms"] is None else round(latency["max_ms"], 1)
            )
            extra["started"] = latency["n"]
            say(
                f"RemoteStart -> StartTransaction for {latency['n']}/{scheduled}: "
                f"p50 {result['remote_start_p50_ms']} ms, p99 {result['remote_start_p99_ms']} ms, "
                f"max {extra['remote_start_max_ms']} ms"
            )
            if latency["n"] < scheduled:
                errors["StartTransaction missing after RemoteStart"] += scheduled - latency["n"]

        # -- steady window
        if args.warmup:
            # What the worker does once after the fleet is up (checkpointing every charger's
            # new status, freezing the connected fleet for the collector) stays out of the
            # window: an idle fleet is idle long after its boot.
            say(f"warm-up: {args.warmup:g} s")
            time.sleep(args.warmup)
        say(f"steady window: {args.duration:g} s")
        profiler = None
        if args.profile:
            profiler = children.add(
                subprocess.Popen(
                    py_spy_record(
                        worker.pid,
                        int(args.duration),
                        args.profile,
                        rate=args.profile_rate,
                        fmt=args.profile_format,
                        native=args.profile_native,
                        gil=args.profile_gil,
                        py_spy=args.py_spy,
                    ),
                    stdout=subprocess.DEVNULL,
                    stderr=open(logs / "py-spy.stderr", "w"),  # noqa: SIM115
                )
            )
        before = csms.ask("status") if csms is not None else None
        t0, cpu0, busy0 = time.monotonic(), cpu_seconds(worker.pid), machine_busy_seconds()
        split0 = cpu_split_seconds(worker.pid)
        per_second: list[float] = []
        last_t, last_cpu = t0, cpu0
        while time.monotonic() - t0 < args.duration:
            time.sleep(min(1.0, max(0.0, args.duration - (time.monotonic() - t0))))
            if not worker.alive():
                raise RuntimeError(f"worker exited ({worker.proc.returncode}) in the steady window")
            now, cpu = time.monotonic(), cpu_seconds(worker.pid)
            if now - last_t > 0.5:
                per_second.append((cpu - last_cpu) / (now - last_t) * 100)
            last_t, last_cpu = now, cpu
        t1, cpu1, busy1 = time.monotonic(), cpu_seconds(worker.pid), machine_busy_seconds()
        split1 = cpu_split_seconds(worker.pid)
        memory = memory_kib(worker.pid)
        after = csms.ask("status") if csms is not None else None
        wall, cpu = t1 - t0, cpu1 - cpu0
        result["cpu_percent"] = round(cpu / wall * 100, 1)
        result["rss_mb"] = round(memory["VmRSS"] / 1024, 1)
        net = memory["VmRSS"] - baseline if baseline is not None else memory["VmRSS"]
        result["rss_kib_per_charger"] = round(net / n, 1) if n else None
        extra["rss_gross_kib_per_charger"] = round(memory["VmRSS"] / n, 1) if n else None
        extra["rss_baseline_mb"] = None if baseline is None else round(baseline / 1024, 1)
        extra["rss_peak_mb"] = round(memory["VmHWM"] / 1024, 1)
        extra["cpu_user_percent"] = round((split1[0] - split0[0]) / wall * 100, 1)
        extra["cpu_system_percent"] = round((split1[1] - split0[1]) / wall * 100, 1)
        extra["cpu_percent_max_1s"] = round(max(per_second), 1) if per_second else None
        # The second by second figures, to tell a steady load from one that comes in bursts.
        extra["cpu_percent_per_second"] = [round(share, 1) for share in per_second]
        if before is not None and after is not None:
            calls = after["calls_in"] - before["calls_in"]
            frames = (
                after["frames_in"]
                + after["frames_out"]
                - before["frames_in"]
                - before["frames_out"]
            )
            result["msgs_per_s"] = round(calls / wall, 1)
            result["msgs_per_cpu_second"] = round(calls / cpu, 1) if cpu > 0 else None
            extra["frames_per_s"] = round(frames / wall, 1)
            csms_cpu = after["cpu_seconds"] - before["cpu_seconds"]
            extra["csms_cpu_percent"] = round(csms_cpu / wall * 100, 1)
            # Anything else running on the machine competes for its cores: say how much.
            extra["other_cpu_percent"] = round(
                max(busy1 - busy0 - cpu - csms_cpu, 0.0) / wall * 100, 1
            )
            extra["calls_by_action"] = {
                action: count - before["by_action"].get(action, 0)
                for action, count in sorted(after["by_action"].items())
                if count - before["by_action"].get(action, 0)
            }
            for problem, count in after["errors"].items():
                errors[problem] += count
            assert csms is not None  # before and after come from it
            timeline = csms.ask("timeline")["per_second"]
            extra["calls_per_second_in_window"] = [
                timeline.get(str(second), 0) for second in range(int(t0), int(t1) + 1)
            ]
            extra["open_connections"] = after["open"]
            extra["connects"] = after["connects"]
        if profiler is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(30)
            extra["profile"] = args.profile
        extra["window_seconds"] = round(wall, 2)
        extra["loadavg_1m"] = float(Path("/proc/loadavg").read_text().split()[0])

        # -- shutdown
        stop_seconds = children.stop(worker.proc, timeout=60.0)
        extra["stop_seconds"] = None if stop_seconds is None else round(stop_seconds, 2)
        if stop_seconds is None:
            errors["worker had to be killed"] += 1
        elif worker.proc.returncode not in (0, -signal.SIGTERM):
            errors[f"worker exit code {worker.proc.returncode}"] += 1
        problems = worker.log_problems()
        worker.close()
        for level in ("CRITICAL", "ERROR", "Traceback"):
            if problems[level]:
                errors[f"worker log {level}"] += problems[level]
        extra["worker_warnings"] = problems["WARNING"]
        if csms is not None:
            csms.quit()
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        tear_down(children, var_dir, keep=args.keep)
    extra["errors"] = sum(errors.values())
    extra["error_details"] = dict(errors)
    extra["connectors"] = args.connectors
    extra["idle"] = args.idle
    extra["warmup"] = args.warmup
    extra["csms_ping_interval"] = args.csms_ping_interval
    extra["sample_interval"] = args.sample_interval
    extra["duration"] = args.duration
    return {**result, **extra}


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def tear_down(children: Children, var_dir: Path | str, *, keep: bool = False) -> None:
    """The end of a bench's run, whatever happened: its processes stopped, this process's
    database connections closed (the throwaway file can then go), and the file removed
    unless `keep`."""
    children.stop_all()
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()
    if not keep:
        shutil.rmtree(var_dir, ignore_errors=True)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a bench as Ctrl-C does, so that its `finally` blocks stop the worker and
    CSMS it started (a CI job's timeout or `kill` left them running)."""
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def summary(figures: dict[str, Any]) -> str:
    def show(key: str, unit: str = "") -> str:
        value = figures.get(key)
        return "n/a" if value is None else f"{value}{unit}"

    lines = [
        f"chargers            {figures['chargers']} (booted {figures['booted']})",
        f"boot                {show('boot_seconds', ' s')} (process start -> all Available)",
        f"worker RSS          {show('rss_mb', ' MiB')}; "
        f"{show('rss_kib_per_charger', ' KiB')}/charger net of the 0-charger baseline "
        f"({show('rss_baseline_mb', ' MiB')}); gross {show('rss_gross_kib_per_charger', ' KiB')}",
        f"worker CPU          {show('cpu_percent', ' %')} of one core "
        f"(max 1 s: {show('cpu_percent_max_1s', ' %')}); CSMS {show('csms_cpu_percent', ' %')}; "
        f"other processes {show('other_cpu_percent', ' %')}",
        f"messages            {show('msgs_per_s', '/s')} charger CALLs "
        f"({show('frames_per_s', '/s')} frames both ways); "
        f"{show('msgs_per_cpu_second')} CALLs per worker CPU-second",
        f"RemoteStart->Start  p50 {show('remote_start_p50_ms', ' ms')}, "
        f"p99 {show('remote_start_p99_ms', ' ms')}, max {show('remote_start_max_ms', ' ms')}",
        f"errors              {figures['errors']} {figures['error_details'] or ''}",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chargers", type=int, required=True, metavar="N")
    parser.add_argument("--duration", type=float, default=30.0, metavar="S", help="steady window")
    parser.add_argument("--sample-interval", type=int, default=60, metavar="SEC")
    parser.add_argument(
        "--connectors", type=int, default=1, metavar="C", help="EVSEs per charger, each started"
    )
    parser.add_argument(
        "--idle", action="store_true", help="no RemoteStart: the chargers stay connected, idle"
    )
    parser.add_argument("--csms-url", help="an external CSMS (ws://...) instead of load_csms.py")
    parser.add_argument("--heartbeat-interval", type=int, default=300, metavar="SEC")
    parser.add_argument(
        "--csms-ping-interval",
        type=float,
        default=0.0,
        metavar="SEC",
        help="the load CSMS pings every connection this often, as many CSMSs do (0: never)",
    )
    parser.add_argument("--tick-seconds", type=float, default=1.0, help="CHARGESIM_TICK_SECONDS")
    parser.add_argument("--remote-start-spread", type=float, default=1.0, metavar="SEC")
    parser.add_argument(
        "--boot-timeout", type=float, default=0.0, metavar="SEC", help="default max(30, N/100)"
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=0.0,
        metavar="SEC",
        help="wait for the StartTransactions after the spread (default max(30, N/50))",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        metavar="SEC",
        help="wait this long after the fleet is up (and started) before the window",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the 0-charger worker")
    parser.add_argument(
        "--connect-rate",
        type=float,
        metavar="N",
        help="runsimulator --connect-rate: the worker connects its fleet N chargers a second "
        "(default: the worker's own default, all at once)",
    )
    parser.add_argument("--profile", metavar="FILE", help="py-spy record the steady window")
    parser.add_argument("--profile-format", default="speedscope", help="py-spy --format")
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="sample only threads holding the GIL (py-spy --gil): where the CPU goes, "
        "without threads that merely wait for the GIL",
    )
    parser.add_argument("--profile-rate", type=int, default=100)
    parser.add_argument("--profile-native", action="store_true")
    parser.add_argument(
        "--py-spy", default="", metavar="PATH", help="the py-spy to run (default: the venv's)"
    )
    parser.add_argument("--logs", metavar="DIR", help="keep the child processes' logs here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)
    if args.chargers < 1:
        parser.error("--chargers must be at least 1")
    if args.connectors < 1:
        parser.error("--connectors must be at least 1")
    if args.csms_url and not args.csms_url.startswith(("ws://", "wss://")):
        parser.error("--csms-url must start with ws:// or wss://")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        figures = run(args)
    except KeyboardInterrupt:
        say("interrupted; child processes stopped")
        return 130
    say(summary(figures))
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
