"""Garbage-collector settings for a process that hosts a fleet.

A fleet is hundreds of thousands of long-lived objects (chargers, EVSEs, configuration,
connections). CPython's default thresholds run a young collection every 700 allocations
and, every so often, a full collection that walks all of them: at 2,000 chargers each full
collection took 100–350 ms, about a quarter of the worker's CPU at 1 s sampling and the
whole tail of the RemoteStart latency. The process therefore moves the fleet out of the
collector's sight once it is loaded and once it is connected (`gc.freeze`), and collects
the young generations less often.

Trade-off: a reference cycle that was alive at a freeze and dies later is never freed
(e.g. the first connection of a charger that reconnects). That is bounded (once per
charger, a few KiB) and is what the speed costs; set CHARGESIM_GC_TUNING=false to keep
CPython's defaults. Only the process owner (`runsimulator`) applies this, never a library
caller or the test suite.
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


def fleet_up() -> None:
    """The fleet is connected: freeze the connections' objects too.

    No collection first: a pause here lands on whatever the CSMS does right after boot
    (79 ms at 1,000 chargers); the young garbage frozen with them is a one-time cost."""
    gc.freeze()
    log.info("garbage collector: the connected fleet frozen too")
