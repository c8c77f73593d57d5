"""The garbage-collector policy of a fleet process (run in a child: it changes the process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import gc
    from simulator.runtime import gc_policy
    defaults = gc.get_threshold()
    fleet = [{"charger": n, "evses": [{}]} for n in range(1000)]
    gc_policy.fleet_loaded()
    loaded = gc.get_freeze_count()
    connections = [[n] for n in range(1000)]
    gc_policy.fleet_up()
    print(defaults, gc.get_threshold(), loaded >= 2000, gc.get_freeze_count() >= loaded + 1000)
    """
)


def test_the_fleet_is_frozen_when_loaded_and_again_when_connected():
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split("\n")[0] == "(700, 10, 10) (50000, 20, 20) True True"


# A fleet process's child: its database migrated, the policy's checks every 50 ms.
FLEET_CHILD = textwrap.dedent(
    """
    import asyncio, gc, weakref
    import django
    django.setup()
    from asgiref.sync import sync_to_async
    from django.core.management import call_command
    call_command("migrate", interactive=False, verbosity=0)
    from chargers.models import Charger as ChargerRow
    from simulator.csms.server import CentralSystem
    from simulator.runtime import gc_policy, lifecycle
    from simulator.runtime.lifecycle import RunOptions, Simulator
    from tests.cast import make_charger

    lifecycle.REFREEZE_CHECK_SECONDS = 0.05

    async def until(condition, what):
        for _ in range(1200):
            if condition():
                return
            await asyncio.sleep(0.05)
        raise SystemExit(f"not within 60 s: {what}")
    """
)

REBOOT_CHILD = FLEET_CHILD + textwrap.dedent(
    """
    collected = []
    original = gc_policy.collect_frozen
    def counted(why):
        collected.append(why)
        original(why)
    gc_policy.collect_frozen = counted

    async def main():
        csms = CentralSystem()
        await csms.start("127.0.0.1", 0)
        await sync_to_async(make_charger)("GC-1", evses=1, csms_url=csms.url)
        service = Simulator(
            RunOptions(web=False, migrate=False, gc_tuning=True, reconnect_cap=1.0),
            write=lambda text: None,
        )
        await service.startup()
        try:
            await until(lambda: csms.counts["BootNotification"] == 1, "the first boot")
            frozen = gc.get_freeze_count()
            await until(lambda: gc.get_freeze_count() > frozen, "the connected fleet frozen")
            gc.disable()  # only reference counting frees it (and the policy's collections)
            old = weakref.ref(service.store.get("GC-1"))
            await service.reloader.power_cycle(old())
            await until(lambda: csms.counts["BootNotification"] == 2, "the boot after it")
            assert service.store.get("GC-1") is not old()
            await until(lambda: old() is None, "the old charger freed")
            print("old charger freed")
            # A fleet's worth (1) replaced one at a time: what they left frozen is freed.
            await until(lambda: collected, "the frozen garbage collected")
            print("collected")
        finally:
            gc.enable()
            await service.stop()
            await csms.stop()

    asyncio.run(main())
    """
)


def run_child(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a child process with a database of its own in `tmp_path`; it succeeded."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CHARGESIM_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "chargesim_site.settings",
        "LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_frozen_charger_replaced_by_a_reboot_is_freed(tmp_path):
    # A rebooted charger is built afresh; the old one, frozen with the fleet, was kept for
    # ever (an import that rebooted 5,000 chargers kept the whole old fleet), then until a
    # full collection. Let go (`Charger.dispose`), reference counting frees it; what its
    # connection left frozen is collected once a fleet's worth were replaced one at a time.
    done = run_child(REBOOT_CHILD, tmp_path)
    assert done.stdout.split() == ["old", "charger", "freed", "collected"], (
        done.stdout + done.stderr[-2000:]
    )


BATCHES_CHILD = FLEET_CHILD + textwrap.dedent(
    """
    FLEET = 20

    calls = []
    for name in ("freeze_batch", "frozen_grown", "collect_frozen"):
        def timed(*args, _original=getattr(gc_policy, name), _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)
        setattr(gc_policy, name, timed)
    # A collection of the whole heap needs the fleet unfrozen first.
    thaws = []
    unfreeze = gc.unfreeze
    def counted_unfreeze():
        thaws.append(1)
        unfreeze()
    gc.unfreeze = counted_unfreeze

    async def main():
        csms = CentralSystem()
        await csms.start("127.0.0.1", 0)
        for n in range(FLEET):
            await sync_to_async(make_charger)(f"GC-{n}", evses=1, csms_url=csms.url)
        service = Simulator(
            RunOptions(web=False, migrate=False, gc_tuning=True, reconnect_cap=1.0),
            write=lambda text: None,
        )
        await service.startup()
        try:
            await until(lambda: csms.counts["BootNotification"] == FLEET, "the first boots")
            frozen = gc.get_freeze_count()
            await until(lambda: gc.get_freeze_count() > frozen, "the connected fleet frozen")
            old = weakref.WeakSet(service.store)
            service.reloader.batch = 1
            calls.clear()
            thaws.clear()
            # From here only reference counting frees what the collector does not see;
            # the policy's own collections (`collect_frozen`) would still run.
            gc.disable()
            await sync_to_async(ChargerRow.objects.update)(vendor="Edited")
            pks = await sync_to_async(
                lambda: list(ChargerRow.objects.values_list("pk", flat=True))
            )()
            await service.reloader.apply(pks)
            await until(lambda: csms.counts["BootNotification"] == 2 * FLEET, "the reboots")
            await until(lambda: "frozen_grown" in calls, "the frozen garbage counted")
            print(calls.count("freeze_batch"), calls.count("collect_frozen"), len(thaws), len(old))
        finally:
            gc.enable()
            await service.stop()
            await csms.stop()

    asyncio.run(main())
    """
)


def test_a_large_change_frees_what_its_batches_replaced_without_a_full_collection(tmp_path):
    # Freeing the replaced chargers took a thaw, a full collection of the whole heap,
    # every tenth of the fleet: a pause of the event loop of 0.6-2 s at 1,000 chargers and
    # 0.9-8.7 s at 5,000. Let go (`Charger.dispose`), they are freed by reference counting
    # as each batch reboots; each batch is frozen once booted, and once the change is
    # applied the policy counts what the freezes hold (a full collection only once they
    # grew by a quarter: not for 20 chargers). Here 20 chargers reboot one a batch.
    done = run_child(BATCHES_CHILD, tmp_path)
    frozen_batches, collections, thaws, alive_at_end = map(int, done.stdout.split())
    assert frozen_batches == 20, done.stdout
    assert collections == thaws == 0, done.stdout
    assert alive_at_end == 0, done.stdout


IMPORT_CHILD = FLEET_CHILD + textwrap.dedent(
    """
    FLEET = 20
    # The import is more than this share of what the empty worker froze: counted as
    # garbage, it would make the next large change's check collect the whole heap.
    gc_policy.GROWTH_SHARE = 0.01

    calls = []
    for name in ("fleet_up", "freeze_batch"):
        def counted(*args, _original=getattr(gc_policy, name), _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)
        setattr(gc_policy, name, counted)

    async def main():
        csms = CentralSystem()
        await csms.start("127.0.0.1", 0)
        service = Simulator(
            RunOptions(web=False, migrate=False, gc_tuning=True, reconnect_cap=1.0),
            write=lambda text: None,
        )
        await service.startup()
        try:
            await until(lambda: "fleet_up" in calls, "the (empty) connected fleet frozen")
            service.reloader.batch = 5
            for n in range(FLEET):
                await sync_to_async(make_charger)(f"GC-{n}", evses=1, csms_url=csms.url)
            pks = await sync_to_async(
                lambda: list(ChargerRow.objects.values_list("pk", flat=True))
            )()
            await service.reloader.apply(pks)
            await until(lambda: csms.counts["BootNotification"] == FLEET, "the new chargers' boots")
            await until(lambda: not service.reloader.busy(), "the import applied")
            unfrozen = {id(thing) for thing in gc.get_objects()}
            frozen = sum(1 for charger in service.store if id(charger) not in unfrozen)
            print(calls.count("freeze_batch"), frozen, gc_policy.frozen_grown())
        finally:
            await service.stop()
            await csms.stop()

    asyncio.run(main())
    """
)


def test_new_chargers_a_large_import_loads_in_batches_are_frozen_as_fleet(tmp_path):
    # A large change's batches of rebooted chargers were frozen once booted, its batches
    # of new chargers never: each later full collection (a young generation's too, once
    # promoted) walked them. Frozen as each batch boots, and counted as fleet, not as
    # garbage the freezes hold: no full collection for having grown the fleet.
    done = run_child(IMPORT_CHILD, tmp_path)
    frozen_batches, frozen_chargers, grown = done.stdout.split()
    assert (frozen_batches, frozen_chargers, grown) == ("4", "20", "False"), done.stdout
