"""Garbage-collector settings for a process that hosts a fleet.

A fleet is hundreds of thousands of long-lived objects (chargers, EVSEs, configuration,
connections). CPython's default thresholds run a young collection every 700 allocations
and, every so often, a full collection that walks all of them: at 2,000 chargers each full
collection took 100–350 ms, about a quarter of the worker's CPU at 1 s sampling and the
whole tail of the RemoteStart latency. The process therefore moves the fleet out of the
collector's sight once it is loaded and once it is connected (`gc.freeze`), and collects
the young generations less often.

Trade-off: a reference cycle that was alive at a freeze and dies later is not freed while
it stays frozen (e.g. the first connection of a charger that reconnects, a few KiB). A
charger replaced by a reboot is such a cycle too, with its connection and protocol objects:
about 50 KiB traced each, so an import that rebooted a frozen fleet of 5,000 kept the whole
old fleet (QA: RSS 383 MiB after a fresh start, 1.8-2.6 GB after two such re-imports). The
process therefore thaws and collects once enough frozen chargers have been replaced
(`thaw`, driven by the lifecycle), and freezes again once the fleet is up (`refreeze`).
Set CHARGESIM_GC_TUNING=false to keep CPython's defaults. Only the process owner
(`runsimulator`) applies this, never a library caller or the test suite.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

# Young collections every 50,000 net allocations instead of 700: each one stays a few ms.
THRESHOLDS = (50_000, 20, 20)


def before_load() -> None:
    """Loading builds the fleet (and ORM rows by the ten thousand): collect young objects
    less often from now on; each full collection during a 2,000-charger load took 100-200 ms.
    """
    gc.set_threshold(*THRESHOLDS)


def fleet_loaded() -> None:
    """The fleet's objects exist: stop walking them, and collect young objects less often."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)  # also when before_load() was not called
    log.info(
        "garbage collector: %d objects frozen after loading (%.0f ms)",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )


def thaw(replaced: int) -> None:
    """`replaced` frozen chargers are gone from the fleet (rebooted, retired): free what the
    freeze kept of them, now, before the chargers that replaced them connect (one full
    collection). The fleet stays unfrozen until `refreeze`."""
    started = time.perf_counter()
    gc.unfreeze()
    freed = gc.collect()
    log.info(
        "garbage collector: %d replaced chargers freed (%d objects, %.0f ms)",
        replaced,
        freed,
        (time.perf_counter() - started) * 1000,
    )


def refreeze() -> None:
    """After `thaw`, the fleet is up again: what the reboots left is garbage by now (the
    old chargers' last events and checkpoint written), so collect it and freeze the rest."""
    started = time.perf_counter()
    freed = gc.collect()
    gc.freeze()
    log.info(
        "garbage collector: the fleet frozen again (%d objects freed, %.0f ms)",
        freed,
        (time.perf_counter() - started) * 1000,
    )


def fleet_up() -> None:
    """The fleet is connected: freeze the connections' objects too.

    No collection first: a pause here lands on whatever the CSMS does right after boot
    (79 ms at 1,000 chargers); the young garbage frozen with them is a one-time cost."""
    gc.freeze()
    log.info("garbage collector: the connected fleet frozen too")
