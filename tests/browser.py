"""Shared set-up for browser tests: Debian's Chromium driven by Playwright, never a download,
against a real `runsimulator` process."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.process import ManagePy, free_port, run_manage, wait_for_port

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Without the background-networking flags Chromium keeps dialling out on a closed network.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class DemoSite:
    url: str  # the web server, http://127.0.0.1:<port>
    csms_url: str  # the built-in CSMS the demo chargers connect to
    sim: ManagePy


@contextmanager
def demo_site(
    var_dir: Path, password: str, chargers: int, setup: str = "", *, operations: bool = False
) -> Iterator[DemoSite]:
    """`runsimulator --demo` (built-in CSMS, no simulated drivers) in its own SQLite
    database, with a superuser "admin", the default sites, `chargers` demo chargers and
    then `setup` (Python, run by `manage.py shell`, with `csms_url` defined); killed at the
    end whatever happens. With `operations`, the CSMS runs its demo operations (local
    lists, a reservation, diagnostics, a firmware update)."""
    port, csms_port = free_port(), free_port()
    csms_url = f"ws://127.0.0.1:{csms_port}/ocpp"
    assert run_manage(var_dir, "migrate", "--verbosity", "0").returncode == 0
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from locations.models import Location\n"
        "from simulator.runtime.demo import ensure_demo_fleet\n"
        f"csms_url = {csms_url!r}\n"
        "Location.objects.seed_defaults()\n"
        f"get_user_model().objects.create_superuser('admin', 'admin@example.com', {password!r})\n"
        f"ensure_demo_fleet({chargers}, csms_url)\n"
    ) + textwrap.dedent(setup)
    result = run_manage(var_dir, "shell", "-c", script)
    assert result.returncode == 0, result.stderr
    sim = ManagePy(
        var_dir,
        "runsimulator",
        *("--demo", "--demo-chargers", str(chargers), "--demo-share", "0"),
        *(() if operations else ("--no-demo-operations",)),
        *("--port", str(port), "--csms-port", str(csms_port)),
    )
    try:
        wait_for_port(port, proc=sim.proc)
        sim.wait_for_output(f"fleet: {chargers}/{chargers} accepted")
        yield DemoSite(f"http://127.0.0.1:{port}", csms_url, sim)
    finally:
        sim.stop()
