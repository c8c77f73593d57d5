"""Garbage-collector settings for a process that hosts a fleet.

A fleet is hundreds of thousands of long-lived objects (chargers, EVSEs, configuration,
connections). CPython's default thresholds run a young collection every 700 allocations
and, every so often, a full collection that walks all of them: at 2,000 chargers each full
collection took 100–350 ms, about a quarter of the worker's CPU at 1 s sampling and the
whole tail of the RemoteStart latency. The process therefore moves the fleet out of the
collector's sight once it is loaded and once it is connected (`gc.freeze`), and collects
the young generations less often.

Trade-off: a reference cycle that was alive at a freeze and dies later is not freed while
it stays frozen. A charger replaced by a reboot (or retired) was such a cycle, with its
connection and protocol objects: an import that rebooted a frozen fleet of 5,000 kept the
whole old fleet (QA: RSS 383 MiB after a fresh start, 1.8-2.6 GB after two re-imports), and
freeing it took a full collection of the whole heap every tenth of the fleet replaced, a
0.9-8.7 s pause of the event loop each at 5,000. Now a charger gone for good breaks its own
cycles (`Charger.dispose`) and reference counting frees it at once, frozen or not; a
large change's batches are frozen in turn once booted (`freeze_batch`), a large import's
new chargers too. What still dies
frozen is small: a replaced charger's last connection (asyncio's transport and websockets'
connection are reference cycles of their own). That garbage is bounded: once a large change
is applied and the freezes hold `GROWTH_SHARE` more objects than after the last full
collection (`frozen_grown`), or the chargers replaced one at a time add up to the fleet
(`Simulator._bound_frozen`), one full collection frees it (`collect_frozen`): every few
re-imports of the whole fleet, not every tenth of one.
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
# What the freezes may hold beyond what they held after the fleet was up (or the last full
# collection) before one full collection frees the garbage among it (`frozen_grown`). Each
# re-import of the whole fleet leaves a few percent (its old connections, bench/RESULTS.md
# session 37): a full collection every few re-imports, the frozen garbage a quarter at most.
GROWTH_SHARE = 0.25
# gc.get_freeze_count() after the last full collection (or the connected fleet's freeze),
# and what batches of new chargers froze since (`freeze_batch`): module state, as the
# collector's own is the process's.
_held_after_collection = 0


def before_load() -> None:
    """Loading builds the fleet (and ORM rows by the ten thousand): collect young objects
    less often from now on; each full collection during a 2,000-charger load took 100-200 ms.
    """
    gc.set_threshold(*THRESHOLDS)


def fleet_loaded() -> None:
    """The fleet's objects exist: stop walking them, and collect young objects less often."""
    global _held_after_collection
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    _held_after_collection = gc.get_freeze_count()
    gc.set_threshold(*THRESHOLDS)  # also when before_load() was not called
    log.info(
        "garbage collector: %d objects frozen after loading (%.0f ms)",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )


def freeze_batch(*, grows_fleet: bool = False) -> None:
    """A batch of a large fleet change has booted: freeze what it built, as `fleet_up` froze
    the fleet's, so that full collections stay cheap; no thaw (the chargers it replaced were
    freed by reference counting, `Charger.dispose`).

    First a collection of what is not frozen, about one batch's objects since the last
    freeze (20-50 ms at 250 chargers, whatever the fleet): frozen with them, the young
    garbage the reboots left (reference cycles no collection had visited yet) doubled
    what each re-import left frozen (bench/RESULTS.md, session 37). Not counted here: counting what the
    freezes hold (`frozen_grown`) walks the whole frozen heap.

    `grows_fleet`: a batch of new chargers only (a large import's). What it freezes is
    fleet from now on, as what `fleet_up` froze: added to what the freezes may hold before
    `frozen_grown` sees garbage worth a full collection. Counted from what the collection
    left, the batch's objects alone (all in the oldest generation after it), not by a
    walk of the frozen heap. A batch that also rebooted chargers is not counted so: its
    growth counts as garbage, which brings a full collection sooner, never later."""
    global _held_after_collection
    gc.collect()
    if grows_fleet:
        _held_after_collection += len(gc.get_objects(generation=2))
    gc.freeze()


def frozen_grown() -> bool:
    """Whether the freezes hold `GROWTH_SHARE` more objects than after the last full
    collection (or the connected fleet's freeze): then the garbage among them is worth one
    full collection (`collect_frozen`). A walk of every frozen object (30-100 ms at 1,000
    chargers): once per large change, not per batch."""
    return gc.get_freeze_count() > _held_after_collection * (1 + GROWTH_SHARE)


def collect_frozen(why: str) -> None:
    """Free what died frozen (replaced chargers' last connections): thaw, one full
    collection of the whole heap (a pause of the event loop: 0.2-0.3 s at 1,000 chargers,
    1-5 s at 5,000 on a 2-core host), and freeze again. Rare by design: see the module."""
    global _held_after_collection
    started = time.perf_counter()
    gc.unfreeze()
    freed = gc.collect()
    gc.freeze()
    _held_after_collection = gc.get_freeze_count()
    log.info(
        "garbage collector: what died frozen freed (%s; %d objects, %.0f ms)",
        why,
        freed,
        (time.perf_counter() - started) * 1000,
    )


def fleet_up() -> None:
    """The fleet is connected: freeze the connections' objects too.

    No collection first: a pause here lands on whatever the CSMS does right after boot
    (79 ms at 1,000 chargers); the young garbage frozen with them is a one-time cost."""
    global _held_after_collection
    gc.freeze()
    _held_after_collection = gc.get_freeze_count()
    log.info("garbage collector: the connected fleet frozen too")
