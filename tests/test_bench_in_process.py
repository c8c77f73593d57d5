"""The benches that run the engine in their own process still run: they import the runtime
through `tests.engine`, which needs Django set up first (without it all four failed at
import, unnoticed, until a before/after measurement needed them). Their figures are a
benchmark's, not a test's: only that each runs to its report is checked here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("script", "args", "report"),
    [
        ("visit_path.py", ["10", "dc"], r"\d+ visits, [\d.]+ us per visit"),
        ("shared_limits.py", ["100"], r"site of 100 chargers, grid 500 kW: [\d.]+ µs"),
        ("profiled_meter.py", ["20", "3"], r"20 profiled chargers: [\d.]+ ms CPU"),
        ("managed_meter.py", ["20", "3"], r"load management on, 300 kW: [\d.]+ ms CPU"),
        ("edit_reboots.py", ["--chargers", "5"], r'"chargers": 5, "apply_seconds": [\d.]+'),
        (
            "reimport_memory.py",
            ["--chargers", "5", "--rounds", "2", "--settle", "1"],
            r'"chargers": 5, "rounds": 2, .*"after": "re-import 2[^"]*", "rss_mib": [\d.]+',
        ),
        (
            "fence_check.py",
            ["--chargers", "5", "--repeat", "3"],
            r'"us_unchanged": [\d.]+, "us_after_a_claim": [\d.]+',
        ),
    ],
)
def test_an_in_process_bench_runs_to_its_report(tmp_path, script, args, report):
    """It also leaves nothing in the temporary directory: the fleet benches each left a
    var directory there, a fleet's database (one per run, in CI too)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CHARGESIM_VAR_DIR": str(tmp_path),
        "TMPDIR": str(temp),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(report, done.stdout), done.stdout
    assert sorted(path.name for path in temp.iterdir()) == []
