"""The dashboard in headless Chromium against a running embedded simulator with the
built-in CSMS: log in, watch the fleet, drive a charger through a session, read the OCPP
log. Screenshots of each page go to test-artifacts/."""

from __future__ import annotations

import re

import pytest

from tests.browser import ARTIFACTS, NEEDS_CHROMIUM, chromium, demo_site

PASSWORD = "pw-dashboard-1"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    NEEDS_CHROMIUM,
]


@pytest.fixture
def simulator(tmp_path):
    """`runsimulator --demo` with a demo fleet whose chargers sample meter values every 2 s."""
    setup = """
        from chargers.models import ConfigurationKey
        ConfigurationKey.objects.filter(key="MeterValueSampleInterval").update(value="2")
    """
    with demo_site(tmp_path, PASSWORD, 3, setup) as site:
        yield site.url


def number(text: str) -> float:
    return float(text.replace("–", "nan"))


def test_a_user_drives_a_dc_session_from_the_charger_page_and_sees_it_live(simulator):
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{simulator}/")
        expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click(".login button[type=submit]")

        # Fleet: every charger online, live counts from the engine.
        expect(page.locator("h1")).to_contain_text("Fleet")
        row = page.locator('tr:has-text("DEMO-0003")')
        expect(row.locator("[data-field=link]")).to_have_text("online")
        expect(page.locator("[data-link-count=online]")).to_have_text("3")
        expect(page.locator('[data-count="Available"] b')).to_have_text("6")
        page.screenshot(path=ARTIFACTS / "dashboard-1-fleet.png", full_page=True)

        # Charger page of the DC demo charger.
        row.locator("a", has_text="DEMO-0003").click()
        expect(page.locator("#link")).to_have_text("online")
        expect(page.locator("[data-field=boot]")).to_have_text("Accepted")
        card = page.locator('.evse-card[data-evse="1"]')
        plug = card.locator("form[data-command=plug_in]")
        plug.locator("select[name=vehicle_id]").select_option(label="Volkswagen ID.3 Pro (58 kWh)")
        plug.locator("input[name=soc]").fill("20")
        plug.locator("button").click()
        expect(card.locator("[data-result]")).to_contain_text("plugged into connector 1 at 20 %")
        expect(card.locator("[data-field=status]")).to_have_text("Preparing")

        card.locator("form[data-command=present_id_tag] input[name=id_tag]").fill("DRIVER-1")
        card.locator("form[data-command=present_id_tag] button").click()
        expect(card.locator("[data-result]")).to_contain_text("transaction started on connector 1")
        expect(card.locator("[data-field=status]")).to_have_text("Charging")
        expect(card.locator("[data-field=transaction]")).not_to_have_text("–")

        # Power flows and the state of charge rises past where it started.
        expect(card.locator("[data-field=power]")).not_to_have_text(re.compile(r"^(–|0\.0)$"))
        expect(card.locator("[data-field=soc]")).to_have_text(
            re.compile(r"^(20\.[1-9]|2[1-9]\.\d|[3-9]\d\.\d)$"), timeout=20_000
        )
        assert number(card.locator("[data-field=power]").inner_text()) > 50  # kW, DC

        # The OCPP log: StartTransaction and MeterValues, filterable by action.
        log = page.locator("#message-log")
        expect(log.locator('tr[data-action="StartTransaction"]').first).to_be_visible()
        expect(log.locator('tr[data-action="MeterValues"]').first).to_be_visible(timeout=10_000)
        expect(log.locator('tr.call[data-action="StartTransaction"]')).to_contain_text(
            '"idTag": "DRIVER-1"'
        )
        page.select_option("#log-action", "MeterValues")
        expect(log.locator('tr[data-action="StartTransaction"]').first).to_be_hidden()
        expect(log.locator('tr.call[data-action="MeterValues"]').first).to_contain_text(
            "Power.Active.Import"
        )
        page.screenshot(path=ARTIFACTS / "dashboard-2-charger-charging.png", full_page=True)

        # The location's live power, in a second tab, while the session runs.
        location = browser.new_page(
            viewport={"width": 1400, "height": 900}, storage_state=page.context.storage_state()
        )
        href = page.locator(".identity dd a").first.get_attribute("href")
        location.goto(f"{simulator}{href}")
        expect(location.locator("#site-power")).not_to_have_text(re.compile(r"^(–|0\.0)$"))
        location.screenshot(path=ARTIFACTS / "dashboard-3-location.png", full_page=True)
        location.close()

        # Stop: the transaction ends, the vehicle is still plugged in.
        page.select_option("#log-action", "")
        card.locator("button[data-command=stop]").click()
        expect(card.locator("[data-result]")).to_contain_text("transaction on connector 1 stopped")
        expect(card.locator("[data-field=status]")).to_have_text("Finishing")
        expect(card.locator("[data-field=power]")).to_have_text("0.0")
        expect(log.locator('tr[data-action="StopTransaction"]').first).to_be_visible()

        # An action that cannot be done now says why.
        card.locator("button[data-command=unplug]").click()
        expect(card.locator("[data-result]")).to_contain_text("vehicle unplugged")
        card.locator("button[data-command=unplug]").click()
        expect(card.locator("[data-result]")).to_have_text("✗ no vehicle plugged in")
        expect(card.locator("[data-field=status]")).to_have_text("Available")
        page.screenshot(path=ARTIFACTS / "dashboard-4-charger-stopped.png", full_page=True)


def test_the_charger_page_shows_reservations_the_local_list_firmware_and_diagnostics(tmp_path):
    """The demo's CSMS sends every charger a local list, reserves a connector of the last,
    asks the first for diagnostics and updates the second's firmware (issue 17)."""
    from playwright.sync_api import expect

    with (
        demo_site(tmp_path, PASSWORD, 3, operations=True) as site,
        chromium() as browser,
    ):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{site.url}/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click(".login button[type=submit]")

        def open_charger(cp_id: str) -> None:
            page.goto(f"{site.url}/")
            page.locator(f'tr:has-text("{cp_id}") a', has_text=cp_id).click()
            expect(page.locator("#link")).to_have_text("online", timeout=20_000)

        open_charger("DEMO-0003")
        box = page.locator("#maintenance")
        expect(box.locator("[data-field=local_list]")).to_have_text("version 1, 21 idTags")
        expect(box.locator("[data-field=auth_cache]")).to_have_text(re.compile(r"^\d+ idTags?$"))
        expect(box.locator("[data-field=reservations] li")).to_contain_text(
            "connector 2 for DEMO-RESERVED until"
        )
        connector = page.locator('.evse-card[data-evse="2"] [data-field=status]')
        expect(connector).to_have_text("Reserved")
        page.screenshot(path=ARTIFACTS / "dashboard-5-reserved.png", full_page=True)

        open_charger("DEMO-0001")
        expect(box.locator("[data-field=diagnostics_status]")).to_have_text("Uploaded")
        expect(box.locator("[data-field=log_status]")).to_contain_text("Uploaded (request")

        open_charger("DEMO-0002")
        expect(page.locator(".identity [data-field=firmware_version]")).to_have_text(
            "1.1.0", timeout=20_000
        )
        expect(box.locator("[data-field=firmware_status]")).to_have_text("Installed")
        events = box.locator("[data-field=security_events]")
        expect(events).to_contain_text("StartupOfTheFirmware")
        expect(events).to_contain_text("FirmwareUpdated: 1.0.0 -> 1.1.0")
        page.screenshot(path=ARTIFACTS / "dashboard-6-firmware.png", full_page=True)
