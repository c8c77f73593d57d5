"""The garbage-collector policy of a fleet process (run in a child: it changes the process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
