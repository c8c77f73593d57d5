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


REBOOT_CHILD = textwrap.dedent(
    """
    import asyncio, gc, weakref
    import django
    django.setup()
    from asgiref.sync import sync_to_async
    from django.core.management import call_command
    call_command("migrate", interactive=False, verbosity=0)
    from simulator.csms.server import CentralSystem
    from simulator.runtime import lifecycle
    from simulator.runtime.lifecycle import RunOptions, Simulator
    from tests.cast import make_charger

    lifecycle.REFREEZE_CHECK_SECONDS = 0.05

    async def until(condition, what):
        for _ in range(600):
            if condition():
                return
            await asyncio.sleep(0.05)
        raise SystemExit(f"not within 30 s: {what}")

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
            old = weakref.ref(service.store.get("GC-1"))
            await service.reloader.power_cycle(old())
            await until(lambda: csms.counts["BootNotification"] == 2, "the boot after it")
            assert service.store.get("GC-1") is not old()
            for _ in range(200):
                gc.collect()
                if old() is None:
                    break
                await asyncio.sleep(0.05)
            print("old charger", "freed" if old() is None else "kept")
            # and the fleet is frozen again (its full collections stay rare)
            await until(lambda: gc.get_freeze_count() > 0, "the fleet frozen again")
            print("frozen again")
        finally:
            await service.stop()
            await csms.stop()

    asyncio.run(main())
    """
)


def test_a_frozen_charger_replaced_by_a_reboot_is_freed(tmp_path):
    # A rebooted charger is built afresh; the old one, frozen with the fleet, was kept for
    # ever: an import that rebooted 5,000 chargers kept the whole old fleet.
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CHARGESIM_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "chargesim_site.settings",
        "LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-c", REBOOT_CHILD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["old", "charger", "freed", "frozen", "again"], (
        done.stdout + done.stderr[-2000:]
    )
