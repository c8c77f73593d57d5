"""Re-import memory benchmark: the worker's memory over K fleet-wide edits that reboot every
charger (a re-import of the whole charger file with a new vendor, say).

    python bench/reimport_memory.py [--chargers 5000] [--rounds 3] [--no-tracemalloc]

What it does: a throwaway SQLite database gets N chargers (bench/fleet.py's fleet, one EVSE
each) pointed at `bench/load_csms.py`, run as a child process so that its memory is not
counted. The worker runs in this process as `runsimulator --no-web` runs it
(`Simulator.for_process(...).startup()`: the dashboard's event publisher, the command
server on the in-memory channel layer, the garbage-collector policy of the settings,
CHARGESIM_GC_TUNING, on by default), and the chargers boot. Then, K times, every row's
vendor changes in one UPDATE (as an import's commit) and the worker applies it as it
applies a `fleet.changed` (`FleetReloader.apply`): every charger reboots, and the round
ends when the CSMS has every new BootNotification and a few seconds more have passed (the
status reports answered, a checkpoint written).

After the first start and after each round, with `gc.collect()` first (what it cannot
reach, the frozen generation, it leaves, as the process does), one line:

- rss_mib (VmRSS) and hwm_mib (VmHWM, the process's peak RSS so far);
- unfrozen: the objects the collector still tracks (`gc.get_objects()`), and
  full_collection_ms: how long that `gc.collect()` took, what each full collection the
  collector runs on its own costs from then on (a pause of the event loop);
- traced_mib / traced_peak_mib: tracemalloc's current and peak (the peak since the
  previous line) traced memory; tracemalloc's own bookkeeping is in the RSS, not in these;
- frozen: objects in the collector's permanent generation (`gc.get_freeze_count()`);
- old_chargers_alive: charger objects of earlier rounds (replaced by a reboot) that are
  still alive, by weak reference (alive_by_generation: of the first start's, of the first
  round's, ...);
- then the 10 allocation sites that grew most since the first start (snapshot diff).

`--new` measures an import of N NEW chargers instead: the worker starts with none, and one
round bulk-creates the N rows (as an import's commit) and applies them; the round ends when
the CSMS has the N BootNotifications (and `--settle` more seconds), its loop stalls measured
as a re-import's are.

`--no-tracemalloc` leaves tracemalloc off (its traces add about as much as they trace to
the RSS): the RSS figures are then the worker's alone. The last line is one JSON object.

Each round also measures how long the worker's event loop stood still (`LoopStalls`): no
OCPP frame answered, no meter tick. A task sleeps 10 ms in a loop and records how late it
wakes (a lateness probe: asyncio's debug mode would slow every callback); the garbage
collector's collections are timed through `gc.callbacks`, and the gc policy's own calls
(`gc_policy.fleet_up`, `freeze_batch`, `frozen_grown`, `collect_frozen`; `thaw` and `refreeze` before
session 37) by wrapping them. Per round, from the apply to
the measurement (whose own `gc.collect()` is left out): the longest stall, the stalls of
100 ms or more and what ran in them (a policy call, a collection the collector started
itself, or neither), the collections by generation (count, longest, total ms; `policy`
those run by a policy call) and every policy call with its ms. Use `--no-tracemalloc` for
these figures: tracemalloc slows every allocation and free, the collections' too.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
import tracemalloc
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fleet import (
    Children,
    CsmsControl,
    create_fleet,
    prepare_database,
    raise_open_files,
    say,
    setup_django,
)
from in_process import throwaway_var_dir  # bench/ is the script's directory

MIB = 1024 * 1024


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(
    label: str, baseline: tracemalloc.Snapshot | None, old: list[weakref.WeakSet[Any]]
) -> dict[str, Any]:
    started = time.perf_counter()
    gc.collect()
    figures: dict[str, Any] = {
        "after": label,
        "rss_mib": round(proc_status_kib("VmRSS") / 1024, 1),
        "hwm_mib": round(proc_status_kib("VmHWM") / 1024, 1),
        # What each full collection the collector runs on its own walks from now on.
        "full_collection_ms": round((time.perf_counter() - started) * 1000, 1),
        "unfrozen": len(gc.get_objects()),
        "frozen": gc.get_freeze_count(),
        "old_chargers_alive": sum(len(generation) for generation in old),
        "alive_by_generation": [len(generation) for generation in old],
    }
    line = (
        f"{label}: RSS {figures['rss_mib']} MiB (peak {figures['hwm_mib']}), "
        f"frozen {figures['frozen']}, unfrozen {figures['unfrozen']} (a full collection of "
        f"them {figures['full_collection_ms']:.0f} ms), "
        f"old chargers alive {figures['old_chargers_alive']} "
        f"(by generation {figures['alive_by_generation']})"
    )
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        figures["traced_mib"] = round(current / MIB, 1)
        figures["traced_peak_mib"] = round(peak / MIB, 1)
        line += f", traced {figures['traced_mib']} MiB (peak {figures['traced_peak_mib']})"
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        if baseline is not None:
            top = snapshot.compare_to(baseline, "lineno")[:10]
            figures["top"] = [
                {
                    "site": f"{stat.traceback[0].filename}:{stat.traceback[0].lineno}",
                    "size_diff_kib": round(stat.size_diff / 1024),
                    "count_diff": stat.count_diff,
                }
                for stat in top
            ]
            for stat in top:
                line += (
                    f"\n    {stat.size_diff / 1024:+10.0f} KiB {stat.count_diff:+8d} blocks  "
                    f"{_short(stat.traceback[0].filename)}:{stat.traceback[0].lineno}"
                )
        figures["_snapshot"] = snapshot
    say(line)
    return figures


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/fixb/", "/main/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


class LoopStalls:
    """How late a task sleeping `TICK` in a loop wakes (the loop's stalls), and what ran:
    the collector's collections (`gc.callbacks`) and the gc policy's calls."""

    TICK = 0.010
    # A stall at least this long is listed, with what overlapped it.
    LISTED = 0.100

    def __init__(self) -> None:
        self.stalls: list[tuple[float, float]] = []  # (slept at, woke at), perf_counter
        self.longest = 0.0
        self.collections: list[tuple[int, float, float, str | None]] = []
        self.calls: list[tuple[str, float, float]] = []
        self._collecting: tuple[int, float] | None = None
        self._in_call: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._unwrap: list[Callable[[], None]] = []

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        from simulator.runtime import gc_policy

        # The calls of the policy before session 37 (thaw, refreeze) and after it
        # (freeze_batch, collect_frozen), whichever it has.
        policy = ("fleet_up", "freeze_batch", "frozen_grown", "collect_frozen")
        for name in ("thaw", "refreeze", *policy):
            if hasattr(gc_policy, name):
                self._wrap(gc_policy, name)
        self._task = asyncio.get_running_loop().create_task(self._probe())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        gc.callbacks.remove(self._on_gc)
        for unwrap in self._unwrap:
            unwrap()

    def _wrap(self, module: Any, name: str) -> None:
        original = getattr(module, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._in_call = name
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.calls.append((name, started, time.perf_counter()))
                self._in_call = None

        setattr(module, name, timed)
        self._unwrap.append(lambda: setattr(module, name, original))

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._collecting = (info["generation"], time.perf_counter())
        elif self._collecting is not None:
            generation, started = self._collecting
            self.collections.append((generation, started, time.perf_counter(), self._in_call))
            self._collecting = None

    async def _probe(self) -> None:
        while True:
            slept = time.perf_counter()
            await asyncio.sleep(self.TICK)
            woke = time.perf_counter()
            late = woke - slept - self.TICK
            self.longest = max(self.longest, late)
            if late >= self.LISTED:
                self.stalls.append((slept, woke))

    def reset(self) -> None:
        self.stalls, self.collections, self.calls = [], [], []
        self.longest = 0.0

    def take(self) -> dict[str, Any]:
        """The figures since the last `take` or `reset`, and reset."""
        by_generation: dict[str, dict[str, float]] = {}
        for generation, started, ended, call in self.collections:
            key = f"gen{generation}" + (f" ({call})" if call else "")
            entry = by_generation.setdefault(key, {"count": 0, "longest_ms": 0.0, "total_ms": 0.0})
            entry["count"] += 1
            entry["longest_ms"] = round(max(entry["longest_ms"], (ended - started) * 1000), 1)
            entry["total_ms"] = round(entry["total_ms"] + (ended - started) * 1000, 1)
        figures = {
            "longest_stall_ms": round(self.longest * 1000, 1),
            "stalls": [
                {"ms": round((woke - slept - self.TICK) * 1000, 1), "ran": self._ran(slept, woke)}
                for slept, woke in self.stalls
            ],
            "collections": by_generation,
            "policy_calls": [
                {"call": name, "ms": round((ended - started) * 1000, 1)}
                for name, started, ended in self.calls
            ],
        }
        self.reset()
        return figures

    def _ran(self, slept: float, woke: float) -> str:
        """What overlapped a stall: the policy calls, else the collector's own collections
        by generation, else "other" (the fleet's own work, or the host's)."""
        calls = [name for name, started, ended in self.calls if started < woke and ended > slept]
        if calls:
            return "+".join(calls)
        generations = [
            f"gen{generation}"
            for generation, started, ended, _ in self.collections
            if started < woke and ended > slept
        ]
        return "+".join(generations) or "other"

    @staticmethod
    def summary(figures: dict[str, Any]) -> Iterator[str]:
        listed = ", ".join(f"{stall['ms']:.0f} ({stall['ran']})" for stall in figures["stalls"])
        yield (
            f"    loop: longest stall {figures['longest_stall_ms']:.0f} ms; "
            f"stalls >= 100 ms: {listed or 'none'}"
        )
        for key, entry in sorted(figures["collections"].items()):
            yield (
                f"    collections {key}: {entry['count']:.0f}, longest "
                f"{entry['longest_ms']:.0f} ms, total {entry['total_ms']:.0f} ms"
            )
        calls = ", ".join(f"{call['call']} {call['ms']:.0f}" for call in figures["policy_calls"])
        yield f"    policy calls (ms): {calls or 'none'}"


async def wait_boots(csms: CsmsControl, wanted: int, timeout: float, service: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await asyncio.to_thread(csms.ask, "status")
        boots = status["by_action"].get("BootNotification", 0)
        if boots >= wanted:
            return
        if loop.time() > deadline:
            raise RuntimeError(
                f"only {boots} of {wanted} BootNotifications within {timeout} s; the "
                f"chargers: {dict(service.progress())} (on a loaded host, try --timeout)"
            )
        await asyncio.sleep(0.2)


async def applied(
    service: Any,
    csms: CsmsControl,
    pks: list[int],
    boots: int,
    args: argparse.Namespace,
    label: str,
    baseline: tracemalloc.Snapshot | None,
    old: list[weakref.WeakSet[Any]],
    stalls: LoopStalls | None = None,
) -> dict[str, Any]:
    """Apply the change to these rows as a fleet.changed does, wait until the CSMS has had
    `boots` BootNotifications in all and `--settle` more seconds, and measure (with the
    event loop's stalls meanwhile, if `stalls` probes them); `label` is formatted with the
    seconds all took to boot (`booted`)."""
    if stalls is not None:
        stalls.reset()  # the measurement's own gc.collect() is no stall of the fleet's
    started = time.monotonic()
    outcomes = await service.reloader.apply(pks)
    await wait_boots(csms, boots, args.timeout, service)
    booted = time.monotonic() - started
    await asyncio.sleep(args.settle)
    loop_figures = stalls.take() if stalls is not None else None
    figures = measure(label.format(booted=booted), baseline, old)
    figures.pop("_snapshot", None)
    figures["all_booted_seconds"] = round(booted, 1)
    figures["outcomes"] = dict(Counter(o["outcome"] for o in outcomes))
    if loop_figures is not None:
        figures["loop"] = loop_figures
        for text in LoopStalls.summary(loop_figures):
            say(text)
    return figures


async def run(args: argparse.Namespace, csms: CsmsControl) -> dict[str, Any]:
    from asgiref.sync import sync_to_async
    from django.utils import timezone

    from chargers.models import Charger as ChargerRow
    from simulator.runtime.lifecycle import RunOptions, Simulator

    n = args.chargers
    if args.new:
        return await run_new(args, csms)
    options = RunOptions.from_settings(web=False, migrate=False, status_seconds=3600.0)
    service = Simulator.for_process(options, write=lambda text: None)
    await service.startup()
    stalls = LoopStalls()
    stalls.start()
    rounds: list[dict[str, Any]] = []
    # The charger objects each reboot replaced, one weak set per generation.
    old: list[weakref.WeakSet[Any]] = []
    try:
        await wait_boots(csms, n, args.timeout, service)
        await asyncio.sleep(args.settle)  # boots answered, fleet frozen (gc policy), saved
        loop_figures = stalls.take()
        first = measure("first start", None, old)
        baseline = first.pop("_snapshot", None)
        first["loop"] = loop_figures
        for text in LoopStalls.summary(loop_figures):
            say(text)
        rounds.append(first)
        pks = await sync_to_async(lambda: list(ChargerRow.objects.values_list("pk", flat=True)))()
        for number in range(1, args.rounds + 1):
            old.append(weakref.WeakSet(service.store))
            await sync_to_async(ChargerRow.objects.update)(
                vendor=f"Edited-{number}", updated=timezone.now()
            )
            label = f"re-import {number} (all booted again in {{booted:.0f}} s)"
            boots = n * (number + 1)
            rounds.append(
                await applied(service, csms, pks, boots, args, label, baseline, old, stalls)
            )
    finally:
        stalls.stop()
        await service.stop()
    return {
        "chargers": n,
        "rounds": args.rounds,
        "tracemalloc": args.tracemalloc,
        "gc_tuning": options.gc_tuning,
        "figures": rounds,
    }


async def run_new(args: argparse.Namespace, csms: CsmsControl) -> dict[str, Any]:
    """One import of `args.chargers` new chargers into a worker running none."""
    from asgiref.sync import sync_to_async

    from chargers.models import Charger as ChargerRow
    from simulator.runtime.lifecycle import RunOptions, Simulator

    n = args.chargers
    options = RunOptions.from_settings(web=False, migrate=False, status_seconds=3600.0)
    service = Simulator.for_process(options, write=lambda text: None)
    await service.startup()
    stalls = LoopStalls()
    stalls.start()
    rounds: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(args.settle)
        first = measure("first start (no charger)", None, [])
        baseline = first.pop("_snapshot", None)
        rounds.append(first)
        await sync_to_async(create_fleet)(n, csms.url, 60)
        pks = await sync_to_async(lambda: list(ChargerRow.objects.values_list("pk", flat=True)))()
        label = f"import of {n} new chargers (all booted in {{booted:.0f}} s)"
        rounds.append(await applied(service, csms, pks, n, args, label, baseline, [], stalls))
    finally:
        stalls.stop()
        await service.stop()
    return {
        "chargers": n,
        "rounds": 1,
        "new": True,
        "tracemalloc": args.tracemalloc,
        "gc_tuning": options.gc_tuning,
        "figures": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chargers", type=int, default=5000, metavar="N")
    parser.add_argument("--rounds", type=int, default=3, metavar="K")
    parser.add_argument(
        "--no-tracemalloc", dest="tracemalloc", action="store_false", help="RSS figures only"
    )
    parser.add_argument("--new", action="store_true", help="one import of N new chargers")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc's frames per trace")
    parser.add_argument("--settle", type=float, default=15.0, metavar="S")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="S")
    args = parser.parse_args(argv)
    raise_open_files(4 * args.chargers + 2048)
    # Each charger logs a line or two per boot: at 5,000 that drowns the figures.
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    setup_django(throwaway_var_dir("chargesim-reimport-memory-"))
    prepare_database()
    children = Children()
    try:
        csms = CsmsControl(children, heartbeat_interval=300)
        if not args.new:
            create_fleet(args.chargers, csms.url, 60)
        if args.tracemalloc:
            tracemalloc.start(args.frames)
        figures = asyncio.run(run(args, csms))
    finally:
        children.stop_all()
    last = figures["figures"][-1]
    say(
        f"{figures['chargers']} chargers, "
        f"{'a new import' if args.new else str(figures['rounds']) + ' re-imports'}: RSS "
        f"{figures['figures'][0]['rss_mib']} -> {last['rss_mib']} MiB, old chargers alive "
        f"{last['old_chargers_alive']}"
    )
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
