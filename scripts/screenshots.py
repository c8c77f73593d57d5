"""Screenshots of the dashboard for the README, taken from a running demo.

    .venv/bin/python manage.py runsimulator --demo     # in one terminal (or `make run`)
    .venv/bin/python scripts/screenshots.py --password <the admin password it printed>

Give the demo a minute first: its simulated drivers start sessions, which the charger
page's chart then shows.

Logs in, waits until the pages show live values, and writes docs/screenshots/fleet.png,
charger.png and location.png at 1,400 px wide (Debian's Chromium through Playwright). The
charger shown is the first one with a session, so that its chart has something to draw;
the location is that charger's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def log_in(page: Any, url: str, user: str, password: str) -> None:
    page.goto(f"{url}/admin/login/?next=/")
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#fleet-table")


def take(url: str, user: str, password: str, width: int, out: Path) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.set_default_timeout(20_000)
            log_in(page, url, user, password)
            expect(page.locator("#live-state")).to_have_text("live")
            expect(page.locator("[data-field=link]").first).to_have_text("online")
            expect(page.locator("[data-link-count=online]")).not_to_have_text("–")
            page.screenshot(path=out / "fleet.png", full_page=True)
            written.append(out / "fleet.png")

            charging = page.locator('tr[data-charger]:has([data-field=status]:text-is("Charging"))')
            row = charging.first if charging.count() else page.locator("tr[data-charger]").first
            row.locator("td a").first.click()
            expect(page.locator("#link")).to_have_text("online")
            page.wait_for_timeout(3_000)  # the chart and the log fill in
            page.screenshot(path=out / "charger.png", full_page=True)
            written.append(out / "charger.png")

            page.locator(".identity dd a").first.click()
            expect(page.locator("#site-power")).not_to_have_text("–")
            page.wait_for_timeout(6_000)  # a few seconds of the site's chart
            page.screenshot(path=out / "location.png", full_page=True)
            written.append(out / "location.png")
        finally:
            browser.close()
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # A demo on a port of its own (`runsimulator --demo --port P`) needs --url: say so.
    parser.add_argument(
        "--url",
        default="http://127.0.0.1:8000",
        help="the running simulator's dashboard (default: %(default)s, as `make run` serves it)",
    )
    parser.add_argument(
        "--user", default="admin", help="the account to log in as (default: %(default)s)"
    )
    parser.add_argument(
        "--password",
        required=True,
        help="its password (the first start prints the admin's, also in var/admin-credentials.txt)",
    )
    parser.add_argument(
        "--width", type=int, default=1400, help="page width in pixels (default: %(default)s)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=OUT,
        help="folder the PNG files are written to (default: docs/screenshots/)",
    )
    options = parser.parse_args(argv)
    for path in take(options.url, options.user, options.password, options.width, options.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
