"""The bulk reboot benchmarks run end to end (correctness only: timings are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def figures_of(script: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


@pytest.mark.slow
def test_a_bulk_reboot_through_the_api_reboots_every_charger_once():
    figures = figures_of("bulk_reboot.py", "--chargers", "20", "--settle", "0.5")
    assert figures["status"] == 200
    assert figures["results"] == {"reboots now (1 connector)": 20}
    assert figures["ping_errors"] == 0
    assert figures["worker_log"] == {}


@pytest.mark.slow
def test_the_power_cycles_in_process_load_their_chargers_a_batch_at_a_time():
    figures = figures_of("power_cycle_stalls.py", "--chargers", "20")
    assert figures["loads"] == 1  # 20 chargers: one batch
