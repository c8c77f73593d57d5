"""A dashboard page left open while the simulator stops: it says it is not live (since
when) and greys its figures, instead of showing the last ones as if live; once the
simulator is back, the page reconnects by itself and the note goes. Headless Chromium
against a real `runsimulator --demo`."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.browser import NEEDS_CHROMIUM, chromium, demo_site
from tests.process import ManagePy, wait_for_port

PASSWORD = "pw-stale-page-1"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    NEEDS_CHROMIUM,
]


def test_a_page_open_while_the_simulator_stops_says_it_is_not_live(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with demo_site(tmp_path, PASSWORD, 1) as site, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{site.url}/admin/login/?next=/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(re.compile(r"^(?!.*/admin/login/)"))
        note = page.locator("#stale-note")
        expect(page.locator("#live-state")).to_have_text("live", timeout=15_000)
        expect(note).to_be_hidden()

        site.sim.signal(signal.SIGTERM)
        assert site.sim.wait(30) == 0
        expect(note).to_be_visible(timeout=15_000)
        expect(note).to_contain_text("Not live since ")
        expect(note).to_contain_text("the simulator stopped")
        assert "stale" in (page.locator("body").get_attribute("class") or "")

        port = int(site.url.rsplit(":", 1)[1])
        csms_port = int(site.csms_url.split(":")[2].split("/")[0])
        again = ManagePy(
            tmp_path,
            "runsimulator",
            *("--demo", "--demo-chargers", "1", "--demo-share", "0", "--no-demo-operations"),
            *("--port", str(port), "--csms-port", str(csms_port)),
        )
        try:
            wait_for_port(port, proc=again.proc)
            expect(page.locator("#live-state")).to_have_text("live", timeout=30_000)
            expect(note).to_be_hidden()
            assert "stale" not in (page.locator("body").get_attribute("class") or "")
        finally:
            again.stop()
