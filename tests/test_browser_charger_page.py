"""The charger page's own controls and what it explains, in headless Chromium against a
real `runsimulator --demo` with the built-in CSMS: reboot, pause and resume as the fleet
page has them, the network conditions the API sets, and a user who only watches."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import ARTIFACTS, NEEDS_CHROMIUM, DemoSite, chromium, demo_site

PASSWORD = "pw-charger-page-1"
LIVE_MS = 10_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    NEEDS_CHROMIUM,
]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[DemoSite, str]]:
    """Three demo chargers (DEMO-0003 DC in Berlin), an API token of "admin" and a
    "watcher" with the view permissions only."""
    var_dir = tmp_path_factory.mktemp("charger-page")
    token_file = var_dir / "token"
    setup = f"""
        from api.models import ApiToken
        from django.contrib.auth.models import Permission
        admin = get_user_model().objects.get(username="admin")
        _, token = ApiToken.objects.issue(admin, "charger page tests")
        open({str(token_file)!r}, "w").write(token)
        watcher = get_user_model().objects.create_user("watcher", password={PASSWORD!r})
        watcher.user_permissions.add(
            *Permission.objects.filter(codename__in=["view_charger", "view_location"])
        )
    """
    with demo_site(var_dir, PASSWORD, 3, setup) as running:
        yield running, token_file.read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def api(site: tuple[DemoSite, str], path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST to the automation API with admin's token."""
    running, token = site
    sent = urllib.request.Request(
        f"{running.url}/api/v1{path}",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(sent, timeout=LIVE_MS / 1000) as answer:
        result: dict[str, Any] = json.load(answer)
        return result


def idle(site: tuple[DemoSite, str], cp_id: str, connector: int = 1) -> None:
    """The connector left as the tests found it: no transaction, no vehicle (either may
    be gone already: a refusal is no failure here)."""
    for action in ("stop", "unplug"):
        try:
            api(site, f"/chargers/{cp_id}/actions/{action}", {"connector_id": connector})
        except urllib.error.HTTPError as refused:
            if refused.code != 409:
                raise


def charger_page(
    browser: Any, site: tuple[DemoSite, str], cp_id: str, user: str = "admin", **options: Any
) -> Any:
    from playwright.sync_api import expect

    running, _ = site
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, **options)
    context.set_default_timeout(LIVE_MS)
    page = context.new_page()
    page.goto(f"{running.url}/accounts/login/?next=/")
    page.fill("#id_username", user)
    page.fill("#id_password", PASSWORD)
    page.click(".login button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/login/)"))
    page.locator(f'tr[data-charger]:has(a:text-is("{cp_id}"))').locator("a", has_text=cp_id).click()
    expect(page.locator("#link")).to_have_text("online")
    return page


def test_the_charger_page_shows_the_network_conditions_the_api_sets_and_sets_them(site, browser):
    """Latency, jitter and loss set over the API (or a scenario) were nowhere on the page;
    a cut only as the link's error."""
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0001")
    network = page.locator(".identity [data-field=network]")
    expect(network).to_have_text("normal (no latency, loss or cut)")

    api(site, "/chargers/DEMO-0001/actions/set-network", {"latency_ms": 200, "jitter_ms": 50})
    expect(network).to_have_text("latency 200 ms ± 50 ms")
    api(site, "/chargers/DEMO-0001/actions/set-network", {"drop_rate": 0.1})
    expect(network).to_have_text("latency 200 ms ± 50 ms; 10 % of its frames lost")
    page.screenshot(path=ARTIFACTS / "charger-page-network.png", full_page=True)

    # The page's own form: the same action; the loss in %, an empty field left as it is.
    form = page.locator("form[data-command=set_network]")
    form.locator("input[name=drop_rate]").fill("25")
    form.locator("button").click()
    expect(page.locator(".identity [data-result]")).to_have_text(
        "✓ network of DEMO-0001: latency 200 ms, jitter 50 ms, drop rate 0.25"
    )
    expect(network).to_have_text("latency 200 ms ± 50 ms; 25 % of its frames lost")
    for name in ("latency_ms", "jitter_ms", "drop_rate"):
        form.locator(f"input[name={name}]").fill("0")
    form.locator("button").click()
    expect(network).to_have_text("normal (no latency, loss or cut)")

    api(site, "/chargers/DEMO-0001/actions/cut-network", {"seconds": 3})
    expect(network).to_have_text(re.compile(r"^cut \((\d s left|ending now)\)$"))
    expect(page.locator("#link")).to_have_text("online", timeout=30_000)
    expect(network).to_have_text("normal (no latency, loss or cut)")
    page.context.close()


def test_the_charger_page_reboots_pauses_and_resumes_as_the_fleet_page_does(site, browser):
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0003")
    card = page.locator('.evse-card[data-evse="1"]')
    card.locator("form[data-command=plug_in] button").click()
    expect(card.locator("[data-result]")).to_contain_text("plugged into connector 1")
    card.locator("form[data-command=present_id_tag] button").click()
    expect(card.locator("[data-field=status]")).to_have_text("Charging")

    card.locator("button[data-command=pause_ev]").click()
    expect(card.locator("[data-result]")).to_have_text(
        "✓ the EV on connector 1 stopped drawing power (SuspendedEV)"
    )
    expect(card.locator("[data-field=status]")).to_have_text("SuspendedEV")
    card.locator("button[data-command=resume_ev]").click()
    expect(card.locator("[data-result]")).to_have_text(
        "✓ the EV on connector 1 requests power again (Charging)"
    )
    expect(card.locator("[data-field=status]")).to_have_text("Charging")

    # A reboot interrupts the session: asked first, as on the fleet page; declined, nothing.
    reboot = page.locator(".identity button[data-command=reboot]")
    asked: list[str] = []

    def answer(accept: bool) -> Any:
        def handle(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        return handle

    page.once("dialog", answer(False))
    reboot.click()
    expect(page.locator(".identity [data-result]")).to_have_text(
        "not run: reboot was not confirmed"
    )
    expect(card.locator("[data-field=status]")).to_have_text("Charging")
    page.once("dialog", answer(True))
    reboot.click()
    expect(page.locator(".identity [data-result]")).to_have_text(re.compile(r"^✓ DEMO-0003 "))
    assert (
        asked
        == [
            "Reboot DEMO-0003? It goes down as after a power loss: its transactions end (PowerLoss)."
        ]
        * 2
    )
    stop = page.locator('#message-log tr.call[data-action="StopTransaction"]').first
    expect(stop).to_contain_text('"reason": "PowerLoss"', timeout=30_000)
    expect(page.locator("#link")).to_have_text("online", timeout=30_000)
    expect(page.locator("[data-field=boot]")).to_have_text("Accepted")
    idle(site, "DEMO-0003")  # the car stays plugged in through a reboot
    page.context.close()


def test_a_user_who_only_watches_sees_the_new_controls_disabled_and_why(site, browser):
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0002", user="watcher")
    for control in (
        ".identity button[data-command=reboot]",
        "form[data-command=set_network] button",
        "form[data-command=set_network] input[name=latency_ms]",
        '.evse-card[data-evse="1"] button[data-command=pause_ev]',
        '.evse-card[data-evse="1"] button[data-command=resume_ev]',
    ):
        expect(page.locator(control)).to_be_disabled()
    expect(page.locator("#watch-only")).to_be_visible()
    expect(page.locator(".identity [data-field=network]")).to_have_text(
        "normal (no latency, loss or cut)"
    )
    page.context.close()


# Run before the page's script: its sockets kept, and `__lose()` closes the live one with
# every reconnect failing (a server that went away), so the page stays "not live".
LOSE_SOCKETS = """
  window.__sockets = [];
  const Real = window.WebSocket;
  window.WebSocket = class extends Real {
    constructor(...args) { super(...args); window.__sockets.push(this); }
  };
  window.__lose = function () {
    window.WebSocket = class { send() {} close() {} };
    window.__sockets.at(-1).close();
  };
"""


@pytest.mark.parametrize(
    ("page_of", "zone"),
    [
        ("charger", "Europe/Berlin"),  # a site's page: the site's zone, as its chart and log
        ("location", "Europe/Berlin"),
        ("fleet", "America/New_York"),  # many sites: the browser's zone
    ],
)
def test_not_live_since_names_its_zone_by_one_rule_on_every_page(site, browser, page_of, zone):
    """The charger page said its time in the site's zone and the others in the browser's,
    neither saying which: "Not live since 07:00:03" in New York of a Berlin charger."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0003", timezone_id="America/New_York")
    page.context.add_init_script(LOSE_SOCKETS)
    if page_of == "location":
        page.locator(".identity dd a").first.click()
    elif page_of == "fleet":
        page.goto(site[0].url + "/")
    else:
        page.reload()
    expect(page.locator("#live-state")).to_have_text("live")
    page.evaluate("() => window.__lose()")
    note = page.locator("#stale-note")
    expect(note).to_be_visible()
    found = re.match(r"^Not live since (\d\d):(\d\d):(\d\d) (\S+?)[:.] ", note.inner_text())
    assert found, note.inner_text()
    assert found.group(4) == zone
    now = datetime.now(ZoneInfo(zone))
    shown = now.replace(
        hour=int(found.group(1)), minute=int(found.group(2)), second=int(found.group(3))
    )
    # The hour of that zone (New York's is 6 hours off Berlin's); a minute for the test's pace.
    assert abs((now - shown).total_seconds()) % 86_400 < 120 or (
        86_400 - abs((now - shown).total_seconds()) % 86_400 < 120
    )
    page.context.close()


def test_a_bulk_pause_says_which_connectors_had_no_session_to_pause(site, browser):
    """It said "2 of 3 succeeded" though one of the two had no transaction to pause."""
    from playwright.sync_api import expect

    running, _ = site
    for cp_id in ("DEMO-0001", "DEMO-0002", "DEMO-0003"):
        idle(site, cp_id)
    try:
        for cp_id in ("DEMO-0001", "DEMO-0002"):
            api(site, f"/chargers/{cp_id}/actions/plug-in", {"connector_id": 1, "soc": 20})
        start = {"connector_id": 1, "id_tag": "P-1"}
        api(site, "/chargers/DEMO-0001/actions/present-id-tag", start)
        page = charger_page(browser, site, "DEMO-0001")
        page.goto(f"{running.url}/")

        def pick(cp_id: str, on: bool = True) -> None:
            box = page.locator(f'tr[data-charger]:has(a:text-is("{cp_id}")) input[name=pick]')
            box.set_checked(on)

        for cp_id in ("DEMO-0001", "DEMO-0002", "DEMO-0003"):
            pick(cp_id)
        page.select_option("#bulk select[name=action]", "pause-ev")
        page.click("#bulk button[type=submit]")
        summary = page.locator("#bulk-summary")
        # DEMO-0003 has no vehicle: refused; DEMO-0002's car is plugged in, no transaction.
        expect(summary).to_have_text(
            "✗ pause-ev: paused 1 of 3; 1 had no session; 1 failed", timeout=20_000
        )
        expect(page.locator('#bulk-results tr[data-charger="DEMO-0002"]')).to_contain_text(
            "⚠ pause-ev: the EV on connector 1 has no session to pause (Preparing)"
        )
        expect(page.locator('#bulk-results tr[data-charger="DEMO-0001"]')).to_contain_text(
            "✓ pause-ev: the EV on connector 1 stopped drawing power (SuspendedEV)"
        )

        pick("DEMO-0003", False)
        page.select_option("#bulk select[name=action]", "resume-ev")
        page.click("#bulk button[type=submit]")
        expect(summary).to_have_text("✓ resume-ev: 2 of 2 succeeded", timeout=20_000)
        page.select_option("#bulk select[name=action]", "pause-ev")
        pick("DEMO-0001", False)
        page.click("#bulk button[type=submit]")
        expect(summary).to_have_text("⚠ pause-ev: paused 0 of 1; 1 had no session", timeout=20_000)
        page.screenshot(path=ARTIFACTS / "charger-page-bulk-pause.png", full_page=True)
        page.context.close()
    finally:
        for cp_id in ("DEMO-0001", "DEMO-0002"):
            idle(site, cp_id)


def control(site: tuple[DemoSite, str], path: str, body: dict[str, Any]) -> None:
    """POST to the built-in CSMS's control endpoint (the port the demo announced)."""
    running, _ = site
    found = re.search(r"control endpoint \(scenarios' csms_control\) on (\S+)", running.sim.output)
    assert found is not None, running.sim.output[-2000:]
    sent = urllib.request.Request(
        found.group(1) + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(sent, timeout=LIVE_MS / 1000) as answer:
        assert answer.status == 200


def test_a_40_kb_frame_wraps_in_the_log_and_shows_whole_on_request(site, browser):
    """A DataTransfer of 40 kB on one line made the log table 40 kB of text wide."""
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0002")
    data = "QUJD" * 10_000  # base64-like: no space to break at
    control(site, "/chargers/DEMO-0002/DataTransfer", {"vendorId": "ChargeSim", "data": data})
    row = page.locator('#message-log tr.call[data-action="DataTransfer"]').first
    expect(row).to_be_visible()
    message = row.locator("td").last
    wrap = page.locator("#message-log").evaluate(
        "t => [t.scrollWidth, t.parentElement.clientWidth, document.documentElement.scrollWidth,"
        " window.innerWidth]"
    )
    assert wrap[0] <= wrap[1] + 1 and wrap[2] <= wrap[3], wrap
    show = message.locator("button.show-all")
    expect(show).to_have_text(re.compile(r"^show all \d{2},\d{3} characters$"))
    assert len(message.locator("pre").inner_text()) < 5_000
    show.click()
    expect(show).to_have_text("show less")
    assert data in message.locator("pre").inner_text().replace("\n", "")
    wrap = page.locator("#message-log").evaluate(
        "t => [t.scrollWidth, t.parentElement.clientWidth]"
    )
    assert wrap[0] <= wrap[1] + 1, wrap
    page.screenshot(path=ARTIFACTS / "charger-page-long-frame.png", full_page=True)
    show.click()
    expect(show).to_have_text(re.compile(r"^show all "))
    page.context.close()


def test_a_firmware_update_says_what_it_waits_for(site, browser, tmp_path):
    """An update waiting for its retrieveDate showed "Idle", one waiting for a session to
    end "Downloaded", with no word of why nothing happened."""
    from datetime import UTC, datetime, timedelta

    from playwright.sync_api import expect

    from tests.file_servers import ftp_server

    idle(site, "DEMO-0001")
    page = charger_page(browser, site, "DEMO-0001")
    status = page.locator("#maintenance [data-field=firmware_status]")
    waiting = page.locator("#maintenance [data-field=firmware_waiting]")
    expect(status).to_have_text("Idle")
    expect(waiting).to_be_hidden()

    (tmp_path / "chargesim-9.9.0.bin").write_text("ChargeSim firmware 9.9.0\n")
    with ftp_server(tmp_path) as ftp:
        later = (datetime.now(UTC) + timedelta(minutes=10)).isoformat(timespec="seconds")
        update = {"location": ftp.url("chargesim-9.9.0.bin"), "retrieveDate": later}
        control(site, "/chargers/DEMO-0001/UpdateFirmware", update)
        expect(waiting).to_have_text(
            re.compile(
                r"^\(waiting: the download starts at its retrieveDate, \d\d:\d\d:\d\d, "
                r"in (59\d|600) s\)$"
            )
        )
        expect(status).to_have_text("Idle")
        page.screenshot(path=ARTIFACTS / "charger-page-firmware-waiting.png", full_page=True)

        # Now, during a session: downloaded, it waits for the session to end.
        api(site, "/chargers/DEMO-0001/actions/plug-in", {"connector_id": 1, "soc": 20})
        api(site, "/chargers/DEMO-0001/actions/present-id-tag", {"connector_id": 1, "id_tag": "F"})
        update = {"location": ftp.url("chargesim-9.9.0.bin")}
        control(site, "/chargers/DEMO-0001/UpdateFirmware", update)
        expect(status).to_have_text("Downloaded")
        expect(waiting).to_have_text(
            "(waiting: the installation starts once the transaction on connector 1 ends "
            "(never during a session))"
        )
        idle(site, "DEMO-0001")
        expect(page.locator("[data-field=firmware_version]")).to_have_text("9.9.0", timeout=30_000)
        expect(waiting).to_be_hidden()
    page.context.close()
