"""The fleet benchmark harness runs end to end (correctness only: timings are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEYS = [
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
]


@pytest.mark.slow
def test_it_boots_50_chargers_starts_their_transactions_and_reports_json(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "fleet.py"),
            "--chargers",
            "50",
            "--duration",
            "3",
            "--sample-interval",
            "1",
            "--logs",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(figures)[: len(KEYS)] == KEYS
    assert figures["chargers"] == 50
    assert figures["booted"] == 50
    assert figures["boot_seconds"] is not None
    assert figures["started"] == 50
    assert figures["calls_by_action"].get("MeterValues", 0) > 0
    assert figures["errors"] == 0, figures["error_details"]
