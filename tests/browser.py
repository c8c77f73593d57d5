"""Shared set-up for browser tests: Debian's Chromium driven by Playwright, never a download,
against a real `runsimulator` process."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.process import ManagePy, free_port, run_manage, wait_for_port

CHROMIUM = "/usr/bin/chromium"

#: What a browser test needs: Debian's Chromium, or it is skipped saying how to get it.
NEEDS_CHROMIUM = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
)
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


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium under Playwright (never a browser download), closed afterwards;
    the artifacts folder for screenshots exists."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


# Run in the page: what does not fit. The page must not scroll sideways, and no visible
# element may stick out of its card (or the top bar, or a count box); a wide table may
# scroll inside its own box (.table-wrap), which is how it fits a phone. A value cut off
# by its own box (text-overflow) counts as not fitting too.
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth) {
    problems.push(`the page scrolls sideways: ${doc.scrollWidth} > ${window.innerWidth}`);
  }
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\\s+/).join(".") : "") +
    (el.dataset.field ? `[${el.dataset.field}]` : "");
  for (const el of document.querySelectorAll("body *")) {
    const rect = el.getBoundingClientRect();
    if (!rect.width || !rect.height || el.closest(".table-wrap, .uplot, pre, option, script")) continue;
    const box = el.parentElement && el.parentElement.closest(".card, .topbar, .count, main");
    if (box) {
      const outer = box.getBoundingClientRect();
      if (rect.right > outer.right + 1 || rect.left < outer.left - 1) {
        problems.push(`${name(el)} sticks out of ${name(box)}: ${Math.round(rect.left)}..${Math.round(rect.right)} not in ${Math.round(outer.left)}..${Math.round(outer.right)}`);
      }
    }
    const style = getComputedStyle(el);
    if (style.textOverflow === "ellipsis" && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`${name(el)} is cut off: "${el.textContent.trim()}"`);
    }
  }
  return problems;
}"""


@dataclass
class DemoSite:
    url: str  # the web server, http://127.0.0.1:<port>
    csms_url: str  # the built-in CSMS the demo chargers connect to
    sim: ManagePy


@contextmanager
def demo_site(
    var_dir: Path,
    password: str,
    chargers: int,
    setup: str = "",
    *,
    operations: bool = False,
    share: float = 0,
    options: Sequence[str] = (),
    ready_within: float = 60.0,
) -> Iterator[DemoSite]:
    """`runsimulator --demo` (built-in CSMS, no simulated drivers) in its own SQLite
    database, with a superuser "admin", the default sites, `chargers` demo chargers and
    then `setup` (Python, run by `manage.py shell`, with `csms_url` defined); killed at the
    end whatever happens. With `operations`, the CSMS runs its demo operations (local
    lists, a reservation, diagnostics, a firmware update). `share`: of the connectors, those
    a simulated driver charges a car on from the start (`--demo-share`). `options`: more of
    runsimulator's (a bench's `--connect-rate`); `ready_within`: how long the whole fleet
    may take to be accepted (thousands of chargers take more than the default)."""
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
        *("--demo", "--demo-chargers", str(chargers), "--demo-share", str(share)),
        *(() if operations else ("--no-demo-operations",)),
        *("--port", str(port), "--csms-port", str(csms_port)),
        *options,
    )
    try:
        wait_for_port(port, proc=sim.proc)
        sim.wait_for_output(f"fleet: {chargers}/{chargers} accepted", timeout=ready_within)
        yield DemoSite(f"http://127.0.0.1:{port}", csms_url, sim)
    finally:
        sim.stop()
