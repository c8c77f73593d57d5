"""The admin's chargers list in headless Chromium at 1,400 px (issue 19): the table fits
beside both sidebars, and no model cell is squeezed into a letter-wide column."""

from __future__ import annotations

import pytest

from tests.browser import ARTIFACTS, NEEDS_CHROMIUM, chromium, demo_site

PASSWORD = "pw-admin-list-1"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    NEEDS_CHROMIUM,
]

# Real makers' names and models at the columns' full length (20 characters), some without
# a space to wrap at, at the longest of the default sites.
SETUP = """
    from chargers.models import Charger
    from locations.models import Location
    site = Location.objects.get(name="Amsterdam Zuidas Garage")
    for n, (vendor, model, kind, kw, profile) in enumerate([
        ("ABB E-mobility B.V.", "Terra 184 CJG-CJG-CT", "DC", 180, 2),
        ("Alfen N.V.", "Eve Double Pro-line", "AC", 22, 1),
        ("EVBox", "BusinessLine-Dual-22", "AC", 22, 0),
        ("Kempower", "SatelliteSystem-600k", "DC", 600, 3),
    ], start=1):
        Charger.objects.create(
            charge_point_id=f"LONG-MODEL-{n:04d}", location=site, vendor=vendor,
            model=model, power_type=kind, max_power_kw=kw, security_profile=profile,
            authorization_key="k" * 20, client_cert_path="/c.pem", client_key_path="/k.pem",
            csms_url="wss://csms.example.org/ocpp" if profile > 1 else csms_url,
            enabled=False,
        )
"""

MEASURE = """() => {
    const box = document.querySelector("#changelist-form .results");
    const table = document.querySelector("#result_list");
    const cells = [...document.querySelectorAll("#result_list td.field-hardware")];
    const line = parseFloat(getComputedStyle(cells[0]).lineHeight);
    const pad = (c) => parseFloat(getComputedStyle(c).paddingTop)
        + parseFloat(getComputedStyle(c).paddingBottom);
    return {
        box: box.clientWidth,
        table: table.scrollWidth,
        lines: cells.map((c) => (c.getBoundingClientRect().height - pad(c)) / line),
        headers: [...table.querySelectorAll("thead th")].map(
            (th) => th.innerText.trim().toLowerCase()),
        page: document.documentElement.scrollWidth,
        viewport: window.innerWidth,
    };
}"""


def test_the_chargers_list_fits_1400_px(tmp_path):
    from playwright.sync_api import expect

    with (
        demo_site(tmp_path, PASSWORD, 3, SETUP) as site,
        chromium() as browser,
    ):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{site.url}/admin/chargers/charger/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        expect(page.locator("#result_list tbody tr")).to_have_count(7)
        expect(page.locator("#nav-sidebar")).to_be_visible()  # both sidebars are open
        expect(page.locator("#changelist-filter")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "admin-chargers-1400.png", full_page=True)
        found = page.evaluate(MEASURE)
        assert found["table"] <= found["box"], found
        assert found["page"] <= found["viewport"], found
        assert max(found["lines"]) < 2.5, found  # model over vendor: two lines
        assert {"security", "enabled"} <= set(found["headers"]), found
        cell = page.locator('tr:has-text("LONG-MODEL-0001") td.field-power')
        expect(cell).to_have_text("DC 180 kW")


def test_add_another_evse_shows_the_next_connector_id(tmp_path):
    """QA F8: the new row's Connector ID was empty and required ("This field is
    required."); it shows the next number, 1..N without gaps."""
    from playwright.sync_api import expect

    with (
        demo_site(tmp_path, PASSWORD, 1) as site,
        chromium() as browser,
    ):
        page = browser.new_page()
        page.goto(f"{site.url}/admin/chargers/charger/add/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        expect(page.locator("#id_evses-0-connector_id")).to_have_value("1")
        page.click("#evses-group .add-row a")
        expect(page.locator("#id_evses-1-connector_id")).to_have_value("2")
        page.click("#evses-group .add-row a")
        expect(page.locator("#id_evses-2-connector_id")).to_have_value("3")
