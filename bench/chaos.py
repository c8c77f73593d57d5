"""Chaos: a worker killed with SIGKILL again and again under heavy traffic, and what its
CSMS saw checked for what the durability rules promise.

    .venv/bin/python bench/chaos.py [--chargers 60] [--rounds 15] [--up 5 25] \\
        [--down 0 3] [--speed 60] [--arrivals 240] [--sample-interval 5] [--seed 1]

The CSMS (`simulator.csms.CentralSystem`, its log kept) runs in this process, so it outlives
every worker. The demo fleet is made on a throwaway SQLite file (or on DATABASE_URL's
database, which must hold no chargers yet), every site with `--arrivals` drivers an hour
(sessions of 20–120 simulated minutes at `--speed`). Then, `--rounds` times:
`runsimulator --demo --traffic` starts, runs a random `--up` seconds after its fleet is
up (or, in an `--early` share of the rounds, 0.5–5 s after it started, while it boots and
delivers what the last one left), and is killed with SIGKILL; a random `--down` seconds
later the next one starts. A last worker runs 30 s and stops cleanly (SIGINT). Then, from
every frame the CSMS saw:

- **registers never go back:** per connector, the Energy.Active.Import.Register of every
  StartTransaction, MeterValues sample and StopTransaction, in the order of their
  timestamps (a message delivered twice counted once), never decreases;
- **no transaction is lost:** every transaction the CSMS opened is stopped, except each
  connector's last one if the last worker left its session running; a start delivered
  twice (at-least-once: killed after the CSMS answered, before the answer was stored) is
  counted apart, as it is allowed;
- **nothing overtakes a stop:** no MeterValues of a transaction arrives after its
  StopTransaction, unless it is a copy of one delivered before it;
- no StopTransaction names a transaction the CSMS never opened, and no CALLERROR passes
  either way;
- **no stop is dropped:** every transaction the database holds as stopped had its
  StopTransaction reach the CSMS, or has it waiting in the outbox.

It prints what it counted and each violation, and exits 1 if there was one.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path.cwd()
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from soak import prepare  # noqa: E402  # the same fleet, profiles and sampling as the soak

TRANSACTION_MESSAGES = ("StartTransaction", "MeterValues", "StopTransaction")


@dataclass
class Findings:
    counts: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def violation(self, text: str) -> None:
        self.violations.append(text)


def _when(text: str) -> datetime:
    from simulator.core.clock import parse_iso

    return parse_iso(text)


def _register_wh(sampled: list[dict[str, Any]]) -> float | None:
    for sv in sampled:
        if sv.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register":
            value = float(sv["value"])
            return value * 1000 if sv.get("unit") == "kWh" else value
    return None


@dataclass
class Stored:
    """What the database holds once the last worker has stopped."""

    open_sessions: set[tuple[str, int]]  # (charge point, connector) of open transactions
    stopped: list[tuple[str, int, str]]  # (charge point, CSMS transaction id, local id)
    stops_unsent: set[str]  # local ids whose StopTransaction waits in the outbox


def check(log: list[Any], db: Stored) -> Findings:
    """The rules above, over the CSMS's log (`LogEntry`s in arrival order) and what the
    database holds after the last worker's stop."""
    found = Findings()
    # Each CALL's answer: the next answer with its id on its charger's connection (ids
    # start again with each worker: they are unique only among a connection's open CALLs).
    answers: dict[int, Any] = {}  # index of a CALL in -> its answer
    waiting: dict[tuple[str, str | None], int] = {}
    for index, entry in enumerate(log):
        if entry.direction == "in" and entry.message_type == 2:
            waiting[(entry.cp_id, entry.unique_id)] = index
        elif entry.direction == "out" and entry.message_type in (3, 4):
            asked = waiting.pop((entry.cp_id, entry.unique_id), None)
            if asked is not None:
                answers[asked] = entry
    # (cp, connector) -> [(timestamp, register Wh, what)]
    readings: dict[tuple[str, int], list[tuple[datetime, float, str]]] = defaultdict(list)
    started: dict[int, tuple[str, int, str]] = {}  # transaction id -> (cp, connector, start ts)
    stopped: dict[int, int] = {}  # transaction id -> index of its first StopTransaction
    seen_payloads: set[tuple[str, str, str]] = set()
    for index, entry in enumerate(log):
        if entry.message_type == 4:
            found.counts[f"CALLERROR {entry.direction}"] += 1
            found.violation(f"CALLERROR {entry.direction} {entry.cp_id}: {entry.payload}")
            continue
        if entry.direction != "in" or entry.message_type != 2:
            continue
        action, p, cp = entry.action, entry.payload, entry.cp_id
        # Keys sorted: a copy read back from PostgreSQL's jsonb has its keys reordered.
        key = (cp, str(action), json.dumps(p, sort_keys=True))
        copy = key in seen_payloads
        seen_payloads.add(key)
        if copy and action in TRANSACTION_MESSAGES:
            found.counts[f"{action} delivered again"] += 1
        if action == "StartTransaction":
            found.counts["StartTransaction"] += 1
            answer = answers.get(index)
            if answer is None or answer.message_type != 3:
                continue  # never answered: the worker sends it again
            tx = int(answer.payload["transactionId"])
            started[tx] = (cp, int(p["connectorId"]), p["timestamp"])
            readings[(cp, int(p["connectorId"]))].append(
                (_when(p["timestamp"]), float(p["meterStart"]), f"start of {tx}")
            )
        elif action == "MeterValues":
            found.counts["MeterValues"] += 1
            tx = p.get("transactionId")
            if tx is not None and tx in stopped and not copy:
                found.violation(f"{cp}: MeterValues of transaction {tx} after its stop")
            for mv in p["meterValue"]:
                wh = _register_wh(mv["sampledValue"])
                if wh is not None:
                    readings[(cp, int(p["connectorId"]))].append(
                        (_when(mv["timestamp"]), wh, f"sample of {tx}")
                    )
        elif action == "StopTransaction":
            found.counts["StopTransaction"] += 1
            found.counts[f"stop reason {p.get('reason', 'Local')}"] += 1
            tx = int(p["transactionId"])
            if tx not in started:
                found.violation(f"{cp}: StopTransaction of transaction {tx}, never opened")
                continue
            stopped.setdefault(tx, index)
            connector = started[tx][1]
            readings[(cp, connector)].append(
                (_when(p["timestamp"]), float(p["meterStop"]), f"stop of {tx}")
            )
    for (cp, connector), values in readings.items():
        values = sorted(set(values), key=lambda r: (r[0], r[1]))
        for (t0, wh0, what0), (t1, wh1, what1) in itertools.pairwise(values):
            if wh1 < wh0 - 1e-6:
                found.violation(
                    f"{cp}#{connector}: register went back {wh0} ({what0}, {t0.isoformat()}) "
                    f"-> {wh1} ({what1}, {t1.isoformat()})"
                )
    # (charge point, CSMS transaction id) of those stopped in the database with their stop
    # still in the outbox (not answered within the last worker's stop, which waits a
    # bounded time for it: it goes at the next start).
    unsent = {(cp, tx) for cp, tx, local in db.stopped if local in db.stops_unsent}
    last_on: dict[tuple[str, int], int] = {}
    for tx, (cp, connector, _) in started.items():
        last_on[(cp, connector)] = max(tx, last_on.get((cp, connector), tx))
    by_start = Counter(started.values())
    for tx, (cp, connector, at) in started.items():
        if tx in stopped:
            continue
        if (cp, tx) in unsent:
            found.counts["stop waiting in the outbox"] += 1
        elif last_on[(cp, connector)] == tx and (cp, connector) in db.open_sessions:
            found.counts["open at the end"] += 1
        elif by_start[(cp, connector, at)] > 1:
            found.counts["start delivered twice (orphaned id)"] += 1
        else:
            found.violation(f"{cp}#{connector}: transaction {tx} (started {at}) never stopped")
    # Every transaction the database holds as stopped had its StopTransaction reach the
    # CSMS, or has it waiting in the outbox: a stop is never dropped on the way.
    for cp, tx, local in db.stopped:
        if tx not in stopped and local not in db.stops_unsent:
            found.violation(f"{cp}: transaction {tx} stopped in the database, its stop never sent")
    return found


def stored() -> Stored:
    from django.db import close_old_connections

    from chargers.models import OutboxMessage, Transaction

    close_old_connections()
    rows = Transaction.objects.values_list(
        "charger__charge_point_id", "connector_id", "state", "transaction_id", "local_id"
    )
    return Stored(
        open_sessions={(cp, c) for cp, c, state, _, _ in rows if state == Transaction.State.OPEN},
        stopped=[
            (cp, tx, local)
            for cp, _, state, tx, local in rows
            if state == Transaction.State.STOPPED and tx is not None
        ],
        stops_unsent=set(
            OutboxMessage.objects.filter(action="StopTransaction").values_list(
                "local_tx_id", flat=True
            )
        ),
    )


async def run(args: argparse.Namespace) -> int:
    from simulator.csms import CentralSystem

    rng = random.Random(args.seed)
    csms = CentralSystem()
    await csms.start(host="127.0.0.1", port=0)
    var_dir = Path(tempfile.mkdtemp(prefix="chargesim-chaos-"))
    await asyncio.to_thread(prepare, var_dir, args, csms.url)
    # Django's set-up (in `prepare`) configured logging: the CSMS's line per connection and
    # disconnection, at every kill, would drown the rounds.
    logging.getLogger("simulator.csms").setLevel(logging.WARNING)
    env = dict(
        os.environ,
        CHARGESIM_VAR_DIR=str(var_dir),
        CHARGESIM_RECONNECT_CAP_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    command = [
        sys.executable, "manage.py", "runsimulator", "--demo", "--no-migrate", "--no-web",
        "--demo-chargers", str(args.chargers), "--csms-url", csms.url, "--traffic",
        "--traffic-seed", str(args.seed), "--traffic-speed", str(args.speed),
        "--status-every", "5",
    ]  # fmt: skip
    outputs: list[Path] = []

    def start(n: int) -> subprocess.Popen[bytes]:
        path = var_dir / f"worker-{n}.log"
        outputs.append(path)
        with open(path, "w") as out:
            return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def up(worker: subprocess.Popen[bytes], path: Path) -> None:
        """Until the worker says its whole fleet is up (or 60 s); in a thread, while the
        CSMS answers on the loop."""
        deadline = time.monotonic() + 60
        want = f"fleet: {args.chargers}/{args.chargers} accepted"
        while time.monotonic() < deadline and worker.poll() is None:
            if want in path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise SystemExit(f"the worker did not come up: {path.read_text()[-2000:]}")

    began = time.monotonic()
    worker: subprocess.Popen[bytes] | None = None
    try:
        for n in range(args.rounds):
            worker = start(n)
            if rng.random() < args.early:
                # Killed while it boots, sends again what was not confirmed and ends the
                # last worker's sessions (PowerLoss).
                await asyncio.sleep(rng.uniform(0.5, 5.0))
            else:
                await asyncio.to_thread(up, worker, outputs[-1])
                await asyncio.sleep(rng.uniform(*args.up))
            worker.send_signal(signal.SIGKILL)
            await asyncio.to_thread(worker.wait, 10)
            print(
                f"round {n + 1}/{args.rounds}: killed after "
                f"{time.monotonic() - began:.0f} s; CSMS log {len(csms.log)} frames",
                flush=True,
            )
            await asyncio.sleep(rng.uniform(*args.down))
        worker = start(args.rounds)
        await asyncio.to_thread(up, worker, outputs[-1])
        await asyncio.sleep(30)
        worker.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(worker.wait, 60)
        print(f"last worker stopped cleanly: exit {code}", flush=True)
        await asyncio.sleep(1)  # the last frames in
        db = await asyncio.to_thread(stored)
    except BaseException:
        # A worker that did not come up, or an interrupted bench: no worker left running,
        # and no temp dir left behind unless asked.
        if not args.keep:
            shutil.rmtree(var_dir, ignore_errors=True)
        raise
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            await asyncio.to_thread(worker.wait, 10)
        await csms.stop()
    found = check(list(csms.log), db)
    for name, count in sorted(found.counts.items()):
        print(f"  {name}: {count}")
    problems = [
        line
        for path in outputs
        for line in path.read_text(errors="replace").splitlines()
        if " ERROR " in line or " WARNING " in line or "Traceback" in line
    ]
    print(f"worker WARNING/ERROR/Traceback lines: {len(problems)}")
    for line in problems[:10]:
        print("  " + line[:200])
    print(f"violations: {len(found.violations)}")
    for line in found.violations[:40]:
        print("  " + line)
    if not args.keep:
        shutil.rmtree(var_dir, ignore_errors=True)
    else:
        print(f"kept {var_dir}")
    return 1 if found.violations else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--chargers", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--up", type=float, nargs=2, default=(5.0, 25.0), metavar=("MIN", "MAX"))
    parser.add_argument("--down", type=float, nargs=2, default=(0.0, 3.0), metavar=("MIN", "MAX"))
    parser.add_argument(
        "--early", type=float, default=0.25, help="share of rounds killed 0.5–5 s after start"
    )
    parser.add_argument("--speed", type=float, default=60.0, help="--traffic-speed")
    parser.add_argument("--arrivals", type=float, default=240.0, help="per site and hour")
    parser.add_argument("--sample-interval", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
