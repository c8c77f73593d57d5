"""The Scenarios pages as a person uses them, in headless Chromium against a real
`runsimulator --demo` with its built-in CSMS: a scenario pasted into the form starts a run
inside the simulator, its page follows the steps live until it passes, a format error is
shown with its line; and both pages fit the screen from 360 px to 1,920 px."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.broken_csms import broken_csms_process
from tests.browser import (
    ARTIFACTS,
    LAYOUT_PROBLEMS,
    NEEDS_CHROMIUM,
    DemoSite,
    chromium,
    demo_site,
)
from tests.junit_reports import valid_junit

PASSWORD = "pw-scenario-pages-1"
RUN_MS = 90_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    NEEDS_CHROMIUM,
]

SCENARIO = """\
name: browser-session
description: A session on a template charger, started from the dashboard.
chargers:
  template: {count: 2}
steps:
  - expect: {status: Accepted}
  - plug_in: {connector: 1, soc: 40}
  - present_id_tag: {id_tag: BROWSER-TAG}
  - wait: {status: Charging, timeout: 30}
  - expect: {answer: StartTransaction, status: Accepted}
  - stop: {connector: 1}
  - wait: {status: Finishing}
  - reboot: {wait: Accepted, timeout: 30}
  - expect: {answer: BootNotification, status: Accepted}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[DemoSite]:
    with demo_site(tmp_path_factory.mktemp("scenarios"), PASSWORD, 1) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def logged_in(browser: Any, site: DemoSite, path: str, width: int = 1400) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 1000})
    context.set_default_timeout(RUN_MS)
    page = context.new_page()
    page.goto(f"{site.url}/admin/login/?next={path}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/admin/login/)"))
    return page


def start(page: Any, site: DemoSite, source: str, csms_url: str | None = None) -> None:
    form = page.locator("#start-run")
    form.locator("textarea[name=source]").fill(source)
    form.locator("input[name=csms_url]").fill(csms_url or site.csms_url)
    form.locator("button[type=submit]").click()


def test_a_run_started_from_the_page_passes_live(site: DemoSite, browser: Any) -> None:
    from playwright.sync_api import expect

    page = logged_in(browser, site, "/scenarios/")
    start(page, site, SCENARIO)
    page.wait_for_url(re.compile(r"/scenarios/runs/\d+/$"))
    status = page.locator("#run-status")
    # Live: the steps show up while the run is still going.
    cards = page.locator(".scenario-charger")
    expect(cards).to_have_count(2)
    expect(status).to_have_text("running")
    expect(page.locator("tr.step-passed").first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "scenario-run-live.png", full_page=True)
    expect(status).to_have_text("passed")
    for n in range(2):
        card = cards.nth(n)
        expect(card.locator("h2 .badge")).to_have_text("passed")
        expect(card.locator("tr.step-passed")).to_have_count(9)
    expect(page.locator("#run-steps")).to_have_text("18 of 18")
    expect(page.locator("#live-state")).to_have_text("finished")
    junit = page.locator("a", has_text="JUnit XML")
    with page.expect_download() as download:
        junit.click()
    valid_junit(Path(download.value.path()))
    page.screenshot(path=ARTIFACTS / "scenario-run-passed.png", full_page=True)

    # The list shows it, passed, with both chargers.
    page.goto(f"{site.url}/scenarios/")
    row = page.locator("tr[data-run]").first
    expect(row.locator("[data-field=status]")).to_have_text("passed")
    expect(row).to_contain_text("2 / 0 of 2")

    # A second run, followed on the list: its row turns from running to passed in place.
    start(page, site, SCENARIO)
    page.wait_for_url(re.compile(r"/scenarios/runs/\d+/$"))
    second = page.url.rstrip("/").rsplit("/", 1)[-1]
    page.goto(f"{site.url}/scenarios/")
    row = page.locator(f'tr[data-run="{second}"]')
    expect(row.locator("[data-field=status]")).to_have_text("running")
    page.locator("#start-run textarea[name=source]").fill("typed, not lost")
    expect(row.locator("[data-field=status]")).to_have_text("passed")
    expect(row).to_contain_text("2 / 0 of 2")
    expect(page.locator("#start-run textarea[name=source]")).to_have_value("typed, not lost")


CLOSED_ON = """\
name: browser-closed-on
description: A session against a CSMS that closes the connection on a MeterValues.
chargers:
  template: {count: 1, connectors: 1, configuration: {MeterValueSampleInterval: "1"}}
steps:
  - plug_in: {wait: Preparing}
  - present_id_tag: {id_tag: BROWSER-TAG, wait: Charging}
  - wait: {seconds: 3}
  - expect: {answers_within: 5}
"""


def test_a_runs_page_shows_the_connections_the_csms_closed(site: DemoSite, browser: Any) -> None:
    """The JSON and the JUnit said that the CSMS closed the connection during a step (its
    notes, the charger's disconnects); the page showed only the verdicts. And the setup's
    time, which the JSON now has."""
    from playwright.sync_api import expect

    with broken_csms_process("closes-instead-of-answering") as (ws_url, _):
        page = logged_in(browser, site, "/scenarios/")
        start(page, site, CLOSED_ON, ws_url)
        page.wait_for_url(re.compile(r"/scenarios/runs/\d+/$"))
        expect(page.locator("#run-status")).to_have_text("failed", timeout=RUN_MS)
    said = re.compile(
        r'^the CSMS closed the connection \d+\.\d s into the run \(code 1011, "going away"\)'
    )
    card = page.locator(".scenario-charger")
    expect(card.locator('tr[data-step="2"] p.step-note')).to_have_text(said)
    expect(card.locator("p.step-note")).to_have_count(1)
    drops = card.locator(".scenario-disconnects li")
    expect(drops).to_have_count(1)
    expect(drops).to_have_attribute("data-by", "csms")
    expect(drops).to_have_text(re.compile(said.pattern + r" \(during steps\[2\]\)$"))
    expect(card.locator('tr[data-step="3"] td.message')).to_contain_text(
        "MeterValues sent", use_inner_text=True
    )
    expect(page.locator("#run-setup")).to_have_text(re.compile(r"^\d+\.\d s$"))
    page.screenshot(path=ARTIFACTS / "scenario-run-closed.png", full_page=True)


def test_a_format_error_is_shown_with_its_line(site: DemoSite, browser: Any) -> None:
    from playwright.sync_api import expect

    page = logged_in(browser, site, "/scenarios/")
    start(page, site, SCENARIO.replace("  - stop: {connector: 1}", "  - stpo: {connector: 1}"))
    expect(page.locator("#start-result")).to_have_text(re.compile("problem"))
    expect(page.locator("#start-errors li").first).to_contain_text("line 11")
    assert page.url.endswith("/scenarios/")


@pytest.mark.parametrize("width", [360, 1400, 1920])
def test_the_scenario_pages_fit_the_screen(site: DemoSite, browser: Any, width: int) -> None:
    from playwright.sync_api import expect

    page = logged_in(browser, site, "/scenarios/", width)
    run = page.locator("tr[data-run] a").first
    if not run.count():  # run alone: a run of its own to show
        start(page, site, SCENARIO)
        page.wait_for_url(re.compile(r"/scenarios/runs/\d+/$"))
        page.goto(f"{site.url}/scenarios/")
    paths = {"scenarios": "/scenarios/", "scenario-run": run.get_attribute("href")}
    for name, path in paths.items():
        page.goto(f"{site.url}{path}")
        expect(page.locator("#live-state")).not_to_have_text("connecting…")
        problems = page.evaluate(LAYOUT_PROBLEMS)
        page.screenshot(path=ARTIFACTS / f"layout-{name}-{width}.png", full_page=True)
        assert problems == [], f"{name} at {width} px: {problems}"
