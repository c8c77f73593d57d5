"""Issue 14 as a person sees it, in headless Chromium against a real `runsimulator --demo`
with the built-in CSMS: a charger added or enabled in the admin comes online on the fleet
page without a reload, the admin says what the worker did, and a charging charger saves."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import ARTIFACTS, NEEDS_CHROMIUM, DemoSite, chromium, demo_site

PASSWORD = "pw-live-fleet-1"
# Waits on what the page shows: long enough for a busy machine, short enough that a page
# which only catches up on the dashboard's 30 s watch renewal (or a reload) fails.
LIVE_MS = 8_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    NEEDS_CHROMIUM,
]


@pytest.fixture
def site(tmp_path) -> Iterator[DemoSite]:
    """One demo charger sampling every 300 s (no MeterValues for minutes unless that
    changes), and a disabled charger OFF-0001 that no worker runs."""
    setup = """
        from chargers.models import Charger, ConfigurationKey, Evse
        ConfigurationKey.objects.filter(key="MeterValueSampleInterval").update(value="300")
        off = Charger.objects.create(
            charge_point_id="OFF-0001", location=Location.objects.first(), enabled=False,
            csms_url=csms_url,
        )
        Evse.objects.create(charger=off, connector_id=1, max_power_kw=22)
        off.sync_number_of_connectors()
    """
    with demo_site(tmp_path, PASSWORD, 1, setup) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def logged_in(browser: Any, site: DemoSite, path: str = "/") -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(10_000)  # a missing element fails fast, not after 30 s
    page = context.new_page()
    page.goto(f"{site.url}/admin/login/?next={path}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    return page


def admin_messages(page: Any) -> Any:
    return page.locator("ul.messagelist li")


def saved(page: Any, button: str) -> None:
    """Click an admin form's submit button and wait for the answer, which comes after the
    admin has waited (up to 2 s) for the worker: the page it lands on has no form error."""
    with page.expect_navigation():
        page.click(button)
    errors = page.locator(".errornote, .errorlist")
    assert errors.count() == 0, errors.all_inner_texts()


def row_of(page: Any, cp_id: str) -> Any:
    return page.locator(f'tr[data-charger]:has(a:text-is("{cp_id}"))')


def test_a_charger_added_in_the_admin_comes_online_on_the_fleet_page(site, browser):
    from playwright.sync_api import expect

    admin = logged_in(browser, site, "/admin/chargers/charger/add/")
    expect(admin.locator("h1")).to_contain_text("Add charger")
    admin.fill("#id_charge_point_id", "NEW-0001")
    # The location is an autocomplete (select2): open it, pick the first site.
    admin.click("#id_location + .select2 .select2-selection")
    admin.locator(".select2-results__option:not(.loading-results)").first.click()
    admin.fill("#id_csms_url", site.csms_url)
    expect(admin.locator("#id_enabled")).to_be_checked()
    expect(admin.locator("#id_auto_connect")).to_be_checked()
    admin.fill("#id_evses-0-connector_id", "1")
    admin.fill("#id_evses-0-max_power_kw", "11")
    saved(admin, "input[name=_save]")

    # The worker's answer, not a generic "saved".
    expect(admin_messages(admin)).to_contain_text(["NEW-0001 loaded, connecting."])
    expect(admin_messages(admin).filter(has_text="No simulator worker")).to_have_count(0)
    admin.screenshot(path=ARTIFACTS / "live-fleet-1-added.png", full_page=True)

    # The fleet page: the new charger is online and its connector Available, live.
    admin.goto(f"{site.url}/")
    row = row_of(admin, "NEW-0001")
    expect(row.locator("[data-field=link]")).to_have_text("online", timeout=LIVE_MS)
    expect(row.locator("[data-field=status]")).to_have_text("Available")
    expect(admin.locator("[data-link-count=online]")).to_have_text("2", timeout=LIVE_MS)
    admin.screenshot(path=ARTIFACTS / "live-fleet-2-online.png", full_page=True)


def test_a_charger_no_worker_runs_shows_not_running_until_enabled_then_comes_online(site, browser):
    from playwright.sync_api import expect

    fleet = logged_in(browser, site, "/")
    off = row_of(fleet, "OFF-0001")
    demo = row_of(fleet, "DEMO-0001")
    expect(demo.locator("[data-field=link]")).to_have_text("online", timeout=LIVE_MS)
    expect(off.locator("[data-field=status]")).to_have_text("not running")
    expect(off.locator("[data-field=status]")).to_have_class(re.compile(r"\bstatus-not-running\b"))
    # Once the engine's counts are in, still not running (the page's own timer has run out
    # too); the header counts only the demo charger's two connectors as Available.
    expect(off.locator("[data-field=link]")).to_have_text("not running", timeout=LIVE_MS)
    expect(fleet.locator('[data-count="Available"] b')).to_have_text("2", timeout=LIVE_MS)
    expect(fleet.locator('[data-count="Available"]')).to_have_class(re.compile(r"\blive\b"))
    fleet.screenshot(path=ARTIFACTS / "live-fleet-3-not-running.png", full_page=True)

    # Enabled in the admin, in a second tab; the fleet tab is never reloaded.
    admin = fleet.context.new_page()
    admin.goto(f"{site.url}/admin/chargers/charger/")
    admin.locator('tr:has(a:text-is("OFF-0001")) input[name=_selected_action]').check()
    admin.select_option("select[name=action]", "enable")
    saved(admin, "button[name=index]")
    expect(admin_messages(admin)).to_contain_text(["OFF-0001 loaded, connecting."])

    expect(off.locator("[data-field=link]")).to_have_text("online", timeout=LIVE_MS)
    expect(off.locator("[data-field=status]")).to_have_text("Available")
    expect(off.locator("[data-field=status]")).not_to_have_class(re.compile("not-running"))
    expect(fleet.locator('[data-count="Available"] b')).to_have_text("3", timeout=LIVE_MS)
    fleet.screenshot(path=ARTIFACTS / "live-fleet-4-enabled.png", full_page=True)


def test_a_charging_charger_saves_and_a_new_sample_interval_applies_live(site, browser):
    from playwright.sync_api import expect

    # A session on DEMO-0001, started from its charger page as a person would.
    charger = logged_in(browser, site, "/")
    row_of(charger, "DEMO-0001").locator("a", has_text="DEMO-0001").click()
    expect(charger.locator("#link")).to_have_text("online", timeout=LIVE_MS)
    card = charger.locator('.evse-card[data-evse="1"]')
    card.locator("form[data-command=plug_in] button").click()
    expect(card.locator("[data-result]")).to_contain_text("plugged into connector 1")
    card.locator("form[data-command=present_id_tag] input[name=id_tag]").fill("DRIVER-1")
    card.locator("form[data-command=present_id_tag] button").click()
    expect(card.locator("[data-result]")).to_contain_text("transaction started on connector 1")
    expect(card.locator("[data-field=status]")).to_have_text("Charging")
    # At 300 s, the next MeterValues is minutes away.
    meter_values = charger.locator('#message-log tr.call[data-action="MeterValues"]')
    seen = meter_values.count()

    # The admin's change page of the charging charger: the register is shown, not an input.
    admin = charger.context.new_page()
    admin.goto(f"{site.url}/admin/chargers/charger/")
    admin.locator("a", has_text="DEMO-0001").click()
    expect(admin.locator("#id_charge_point_id")).to_have_value("DEMO-0001")
    expect(admin.locator("input[name='evses-0-register_wh']")).to_have_count(0)
    key_row = admin.locator(
        "#configuration-group tr.form-row:has(input[value=MeterValueSampleInterval])"
    )
    key_row.locator("input[name$='-value']:not([type=hidden])").fill("1")
    saved(admin, "input[name=_save]")
    expect(admin_messages(admin)).to_contain_text(
        [re.compile("was changed successfully"), "DEMO-0001 applied live."]
    )
    admin.screenshot(path=ARTIFACTS / "live-fleet-5-saved-charging.png", full_page=True)

    # The running session samples at the new interval: MeterValues arrive within seconds.
    expect(meter_values.nth(seen + 1)).to_be_attached(timeout=LIVE_MS)
    expect(card.locator("[data-field=status]")).to_have_text("Charging")


def test_an_open_charger_page_says_when_its_set_up_was_changed(site, browser):
    from playwright.sync_api import expect

    # The page shows the set-up as it was read: edited meanwhile (a new rated power), it
    # kept showing the old one, as current, until someone happened to reload it.
    charger = logged_in(browser, site, "/")
    row_of(charger, "DEMO-0001").locator("a", has_text="DEMO-0001").click()
    expect(charger.locator("#link")).to_have_text("online", timeout=LIVE_MS)
    notice = charger.locator("#setup-changed")
    identity = charger.locator("section.identity")
    expect(identity).to_contain_text("AC, 22 kW")
    expect(notice).to_be_hidden()

    admin = charger.context.new_page()
    admin.goto(f"{site.url}/admin/chargers/charger/")
    admin.locator("a", has_text="DEMO-0001").click()
    admin.fill("#id_max_power_kw", "11")
    saved(admin, "input[name=_save]")
    expect(admin_messages(admin)).to_contain_text(["DEMO-0001 applied live."])

    expect(notice).to_be_visible(timeout=LIVE_MS)
    expect(notice).to_have_attribute("role", "status")
    charger.screenshot(path=ARTIFACTS / "live-fleet-6-setup-changed.png", full_page=True)
    with charger.expect_navigation():
        notice.locator("a", has_text="reload the page").click()
    expect(charger.locator("section.identity")).to_contain_text("AC, 11 kW")
    expect(charger.locator("#link")).to_have_text("online", timeout=LIVE_MS)
    expect(charger.locator("#setup-changed")).to_be_hidden()
