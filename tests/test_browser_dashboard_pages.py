"""Issue 19's dashboard pages as a person uses them, in headless Chromium against a real
`runsimulator --demo` with the built-in CSMS: bulk actions on the fleet page, the whole
session's chart after a reload, live countdowns, the Locations list live, the location
gauge over the limit, and layouts that hold from 360 px to 1,920 px."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import (
    ARTIFACTS,
    LAYOUT_PROBLEMS,
    NEEDS_CHROMIUM,
    DemoSite,
    chromium,
    demo_site,
)
from tests.process import run_manage

PASSWORD = "pw-dashboard-pages-1"
LIVE_MS = 10_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    NEEDS_CHROMIUM,
]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[DemoSite]:
    """Six demo chargers over the three default sites (DEMO-0001 and -0004 on the A9,
    -0002 and -0005 in Amsterdam, -0003 and -0006, DC, in Berlin), sampling every 2 s.
    Amsterdam's grid limit is 1 kW, so one AC session is over it; ConnectionTimeOut 12 s.
    Besides "admin", "watcher": not staff, with the view permissions only, "leaver", the
    same, whose account a test deactivates, and "driver", with "change charger" too, which
    a test takes away and gives back."""
    setup = f"""
        from chargers.models import ConfigurationKey
        from django.contrib.auth.models import Permission
        ConfigurationKey.objects.filter(key="MeterValueSampleInterval").update(value="2")
        ConfigurationKey.objects.filter(key="ConnectionTimeOut").update(value="12")
        Location.objects.filter(name__startswith="Amsterdam").update(grid_limit_kw=1)
        watcher = get_user_model().objects.create_user("watcher", password={PASSWORD!r})
        watcher.user_permissions.add(
            *Permission.objects.filter(codename__in=["view_charger", "view_location"])
        )
        leaver = get_user_model().objects.create_user("leaver", password={PASSWORD!r})
        leaver.user_permissions.add(*watcher.user_permissions.all())
        driver = get_user_model().objects.create_user("driver", password={PASSWORD!r})
        driver.user_permissions.add(
            *watcher.user_permissions.all(), Permission.objects.get(codename="change_charger")
        )
    """
    with demo_site(tmp_path_factory.mktemp("pages"), PASSWORD, 6, setup) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def logged_in(
    browser: Any, site: DemoSite, path: str = "/", width: int = 1400, **context_options: Any
) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 1000}, **context_options)
    context.set_default_timeout(LIVE_MS)
    page = context.new_page()
    page.goto(f"{site.url}/admin/login/?next={path}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/admin/login/)"))
    return page


def row_of(page: Any, cp_id: str) -> Any:
    return page.locator(f'tr[data-charger]:has(a:text-is("{cp_id}"))')


def test_a_bulk_action_plugs_in_and_starts_sessions_on_the_selected_chargers(site, browser):
    from playwright.sync_api import expect

    page = logged_in(browser, site, "/?q=DEMO-000")
    expect(row_of(page, "DEMO-0004").locator("[data-field=link]")).to_have_text("online")
    for cp_id in ("DEMO-0001", "DEMO-0004"):
        row_of(page, cp_id).locator("input[name=pick]").check()
    expect(page.locator("#bulk [data-selected]")).to_have_text("2")
    page.select_option("#bulk select[name=action]", "plug-in+present-id-tag")
    expect(page.locator("#bulk input[name=id_tag]")).to_be_visible()
    expect(page.locator("#bulk input[name=seconds]")).to_be_hidden()
    page.fill("#bulk input[name=id_tag]", "BULK-1")
    page.click("#bulk button[type=submit]")

    summary = page.locator("#bulk-summary")
    expect(summary).to_have_text(
        "✓ plug-in: 2 of 2 succeeded; present-id-tag: 2 of 2 succeeded", timeout=20_000
    )
    results = page.locator("#bulk-results tbody tr")
    expect(results).to_have_count(4)  # a result per charger, per step
    expect(page.locator('#bulk-results tr[data-charger="DEMO-0004"]').last).to_contain_text(
        "transaction started on connector 1"
    )
    # Only the selected chargers charge, live in their rows.
    for cp_id in ("DEMO-0001", "DEMO-0004"):
        status = row_of(page, cp_id).locator('[data-evse="1"] [data-field=status]')
        expect(status).to_have_text("Charging")
    expect(row_of(page, "DEMO-0002").locator('[data-evse="1"] [data-field=status]')).to_have_text(
        "Available"
    )
    page.screenshot(path=ARTIFACTS / "pages-1-bulk-selected.png", full_page=True)

    # Over the current filter: every charger on the A9; a refusal is a result, not an error.
    a9 = page.locator("select[name=location] option", has_text="A9").get_attribute("value")
    page.goto(f"{site.url}/?location={a9}")
    page.select_option("#bulk select[name=action]", "plug-in")
    page.check("#bulk input[name=target][value=filter]")
    page.click("#bulk button[type=submit]")
    expect(summary).to_have_text(re.compile(r"^✗ plug-in: 0 of 2 succeeded"), timeout=20_000)
    expect(page.locator("#bulk-results tbody tr.failed")).to_have_count(2)
    expect(page.locator("#bulk-results tbody")).to_contain_text("already")
    page.screenshot(path=ARTIFACTS / "pages-2-bulk-filter.png", full_page=True)

    # A value the API refuses (past the browser's own checks): the refusal names the field.
    page.evaluate("document.getElementById('bulk').noValidate = true")
    page.fill("#bulk input[name=soc]", "150")
    page.click("#bulk button[type=submit]")
    expect(summary).to_contain_text("The request is not valid.", timeout=20_000)
    expect(summary).to_contain_text("soc: ")

    # An action that interrupts the chargers asks first, naming itself and how many it hits
    # (a Reboot of every charger ran at one click); declined, nothing runs.
    page.goto(f"{site.url}/")
    page.select_option("#bulk select[name=action]", "reboot")
    page.check("#bulk input[name=target][value=filter]")
    asked: list[str] = []

    def decline(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", decline)
    page.click("#bulk button[type=submit]")
    expect(summary).to_have_text("not run: reboot was not confirmed")
    assert asked == ["Run “Reboot” on 6 chargers?"]
    expect(page.locator("#bulk-results")).to_be_hidden()


def charger_page(browser: Any, site: DemoSite, cp_id: str, width: int = 1400) -> Any:
    from playwright.sync_api import expect

    page = logged_in(browser, site, "/", width)
    row_of(page, cp_id).locator("a", has_text=cp_id).click()
    expect(page.locator("#link")).to_have_text("online")
    return page


def start_session(page: Any, connector: int, id_tag: str) -> None:
    from playwright.sync_api import expect

    card = page.locator(f'.evse-card[data-evse="{connector}"]')
    card.locator("form[data-command=plug_in] button").click()
    expect(card.locator("[data-result]")).to_contain_text(f"plugged into connector {connector}")
    card.locator("form[data-command=present_id_tag] input[name=id_tag]").fill(id_tag)
    card.locator("form[data-command=present_id_tag] button").click()
    expect(card.locator("[data-result]")).to_contain_text(
        f"transaction started on connector {connector}"
    )
    expect(card.locator("[data-field=status]")).to_have_text("Charging")


def test_the_chart_shows_the_whole_session_after_a_reload_and_the_last_one_after_it_ended(
    site, browser
):
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0003")
    chart = page.locator('[data-chart="1"]')
    expect(chart).to_have_class(re.compile(r"\bempty\b"))  # no session yet
    start_session(page, 1, "CHART-1")
    expect(chart).to_have_attribute("data-session", "ongoing")
    expect(chart).to_have_attribute("data-points", re.compile(r"^([8-9]|\d{2,})$"), timeout=20_000)
    started = float(chart.get_attribute("data-from"))
    reloaded_at = page.evaluate("Date.now() / 1000")
    assert started < reloaded_at

    page.reload()
    # At once (from the snapshot the page gets when it connects), not point by point: the
    # chart starts where the session started, before the reload.
    expect(chart).to_have_attribute("data-from", str(started).removesuffix(".0"))
    # The engine's series (a point a second so far), not only the snapshots since.
    assert int(chart.get_attribute("data-points")) >= 4
    assert page.locator('[data-chart="1"] canvas').count() == 1
    page.screenshot(path=ARTIFACTS / "pages-3-chart-after-reload.png", full_page=True)

    card = page.locator('.evse-card[data-evse="1"]')
    card.locator("button[data-command=stop]").click()
    expect(chart).to_have_attribute("data-session", "ended")
    # The session's energy, beside the connector's lifetime register: the register's rise
    # since the start: more than nothing, and no more than the whole register.
    session_wh = int(card.locator("[data-field=session_energy]").inner_text())
    register_wh = int(card.locator("[data-field=energy]").inner_text())
    assert 0 < session_wh <= register_wh
    card.locator("button[data-command=unplug]").click()
    expect(card.locator("[data-field=status]")).to_have_text("Available")
    # Unplugged: no reading applies any more.
    expect(card.locator("[data-field=voltage]")).to_have_text("–")
    expect(card.locator("[data-field=current]")).to_have_text("–")
    expect(card.locator("[data-field=vehicle]")).to_have_text("–")
    page.reload()
    expect(chart).to_have_attribute("data-session", "ended")  # the last session, still shown
    expect(chart).to_have_attribute("data-from", str(started).removesuffix(".0"))
    assert int(chart.get_attribute("data-points")) >= 4  # the series, start to end


def test_a_connectors_command_answers_next_to_its_buttons_on_a_phone(site, browser):
    """The answer went to one line above the connector cards: off screen (by 447 px on a
    phone) when the user had scrolled down to the button."""
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0003", width=360)
    card = page.locator('.evse-card[data-evse="2"]')
    expect(card.locator("[data-field=status]")).to_have_text("Available")
    card.locator("button[data-command=unplug]").click()
    answer = page.get_by_text("✗ no vehicle plugged in")
    expect(answer).to_be_visible()
    expect(answer).to_be_in_viewport()
    assert card.locator("[data-result]").inner_text() == "✗ no vehicle plugged in"
    page.context.close()


def test_a_network_cut_and_an_authorization_without_a_vehicle_count_down_live(site, browser):
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0005")
    # Online: the main button is Disconnect.
    expect(page.locator("button[data-command=disconnect]")).to_be_visible()
    expect(page.locator("button[data-command=connect]")).to_be_hidden()

    page.fill("form[data-command=cut_network] input[name=seconds]", "25")
    page.click("form[data-command=cut_network] button")
    reason = page.locator("#link-error")
    expect(reason).to_have_text(re.compile(r"^network cut \(\d+ s left\)$"))
    first = int(re.findall(r"\d+", reason.inner_text())[0])
    # The same element counts down on its own, second by second.
    fewer = "|".join(str(n) for n in range(first - 4, first))
    expect(reason).to_have_text(re.compile(rf"^network cut \(({fewer}) s left\)$"), timeout=5_000)
    # Said once: the badge says offline, the line under the title says why.
    expect(page.locator("#link")).to_have_text("offline")
    expect(page.locator("button[data-command=connect]")).to_be_visible()
    expect(page.locator("button[data-command=disconnect]")).to_be_hidden()
    page.screenshot(path=ARTIFACTS / "pages-4-countdown.png", full_page=True)
    expect(page.locator("#link")).to_have_text("online", timeout=40_000)
    expect(reason).to_be_hidden()

    # An idTag with no vehicle plugged in: accepted until ConnectionTimeOut (12 s), shown.
    card = page.locator('.evse-card[data-evse="2"]')
    card.locator("form[data-command=present_id_tag] input[name=id_tag]").fill("NOCAR-1")
    card.locator("form[data-command=present_id_tag] button").click()
    expect(card.locator("[data-result]")).to_contain_text(
        re.compile(r"plug in a vehicle on connector 2 within \d+ s \(ConnectionTimeOut\)")
    )
    authorization = card.locator("[data-field=authorization]")
    expect(authorization).to_have_text(re.compile(r"lapses in \d+ s \(at \d\d:\d\d:\d\d"))
    left = int(re.findall(r"lapses in (\d+) s", authorization.inner_text())[0])
    fewer = "|".join(str(n) for n in range(max(left - 4, 0), left))
    expect(authorization).to_contain_text(re.compile(rf"lapses in ({fewer}) s"), timeout=5_000)
    page.screenshot(path=ARTIFACTS / "pages-5-authorization.png", full_page=True)
    # ...and then it lapses: the connector is free again.
    expect(authorization).to_be_hidden(timeout=20_000)
    expect(card.locator("[data-field=status]")).to_have_text("Available")


def test_the_locations_list_and_the_location_page_show_live_power_against_the_limit(site, browser):
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0002")  # Amsterdam: 1 kW grid limit
    start_session(page, 1, "SITE-1")
    charger_url = page.url

    page.goto(f"{site.url}/locations/")
    expect(page.locator("#live-state")).to_have_text("live")
    amsterdam = page.locator("tr[data-site]", has_text="Amsterdam")
    expect(amsterdam.locator("[data-field=power]")).not_to_have_text(re.compile(r"^(–|0\.0)$"))
    expect(amsterdam.locator("[data-field=charging]")).to_have_text("1")
    expect(amsterdam.locator("[data-field=online]")).to_have_text("2")
    expect(amsterdam).to_have_class(re.compile(r"\bover-limit\b"))
    expect(amsterdam.locator("[data-field=over]")).to_have_text(re.compile(r"kW over the limit$"))
    # Every site is live, whether something charges there or not.
    for row in page.locator("tr[data-site]").all():
        expect(row.locator("[data-field=online]")).to_have_text("2")
        expect(row.locator("[data-field=power]")).to_have_text(re.compile(r"^\d+\.\d$"))
    page.screenshot(path=ARTIFACTS / "pages-6-locations.png", full_page=True)

    amsterdam.locator("a").click()
    site_power = page.locator(".site-power")
    # The location page's first figure comes with the engine's next summary (every 5 s at
    # most): more than expect's default wait on a loaded machine.
    expect(site_power).to_have_class(re.compile(r"\bover-limit\b"), timeout=LIVE_MS)
    # The gauge is full (and red, by the class) and says by how much.
    fill = page.locator("#site-gauge .fill")
    expect(fill).to_have_attribute("style", re.compile(r"width: 100(\.0)?%"))
    expect(page.locator("#site-over")).to_have_text(re.compile(r"^\d+\.\d kW over the limit$"))
    facts = page.locator("#site-facts")
    expect(facts).to_have_text("of 1 kW grid limit · 1 charging")
    page.screenshot(path=ARTIFACTS / "pages-7-location-over-limit.png", full_page=True)
    page.goto(charger_url)  # the session ends with the test
    expect(page.locator("#link")).to_have_text("online")
    page.locator('.evse-card[data-evse="1"] button[data-command=stop]').click()
    expect(page.locator('.evse-card[data-evse="1"] [data-result]')).to_contain_text("stopped")


def test_load_management_turned_on_in_the_admin_holds_the_site_under_its_limit(site, browser):
    """Amsterdam (1 kW grid limit) with a session over it: the operator ticks "load
    management" in the admin, and the running session is held under the limit; the location
    page says so."""
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0005")  # Amsterdam too
    start_session(page, 2, "SITE-LM")
    charger_url = page.url

    def set_load_management(on: bool) -> None:
        page.goto(f"{site.url}/admin/locations/location/")
        page.locator("a", has_text="Amsterdam").first.click()
        box = page.locator("#id_load_management")
        box.set_checked(on)
        page.locator("input[name=_save]").click()
        expect(page.locator(".messagelist")).to_contain_text("changed successfully")

    set_load_management(True)
    try:
        page.goto(f"{site.url}/locations/")
        page.locator("tr[data-site]", has_text="Amsterdam").locator("a").click()
        facts = page.locator("#site-facts")
        expect(facts).to_contain_text("load management on: 1 held back", timeout=20_000)
        expect(page.locator(".site-power")).not_to_have_class(re.compile(r"\bover-limit\b"))
        power = float(page.locator("#site-power").inner_text())
        assert power <= 1.0
        page.screenshot(path=ARTIFACTS / "pages-7b-location-load-managed.png", full_page=True)
    finally:
        set_load_management(False)
        page.goto(charger_url)
        expect(page.locator("#link")).to_have_text("online")
        page.locator('.evse-card[data-evse="2"] button[data-command=stop]').click()
        expect(page.locator('.evse-card[data-evse="2"] [data-result]')).to_contain_text("stopped")


def test_an_open_location_page_follows_its_limit_edited_in_the_admin(site, browser):
    """The Locations list and Amsterdam's page stay open while the operator edits the
    site in the admin (another window): both show the new grid limit and load management
    with the engine's next summary, and no gauge once the limit is cleared."""
    from playwright.sync_api import expect

    watcher = logged_in(browser, site, "/locations/")
    amsterdam = watcher.locator("tr[data-site]", has_text="Amsterdam")
    expect(amsterdam.locator("[data-field=limit]")).to_have_text("of 1 kW")
    page = watcher.context.new_page()
    page.goto(f"{site.url}{amsterdam.locator('a').get_attribute('href')}")
    facts = page.locator("#site-facts")
    expect(facts).to_contain_text("of 1 kW grid limit", timeout=LIVE_MS)
    admin = logged_in(browser, site, "/admin/locations/location/")

    def edit(limit: str, load_management: bool) -> None:
        admin.goto(f"{site.url}/admin/locations/location/")
        admin.locator("a", has_text="Amsterdam").first.click()
        admin.fill("#id_grid_limit_kw", limit)
        admin.locator("#id_load_management").set_checked(load_management)
        admin.locator("input[name=_save]").click()
        expect(admin.locator(".messagelist")).to_contain_text("changed successfully")

    try:
        edit("2.5", True)
        expect(facts).to_contain_text("of 2.5 kW grid limit", timeout=LIVE_MS)
        expect(facts).to_contain_text("load management on")
        expect(page.locator("#site-gauge")).to_have_attribute("aria-valuemax", "2.5")
        expect(amsterdam.locator("[data-field=limit]")).to_have_text("of 2.5 kW", timeout=LIVE_MS)
        page.screenshot(path=ARTIFACTS / "pages-7c-location-limit-edited.png", full_page=True)
        edit("", False)
        expect(facts).to_contain_text("no grid limit", timeout=LIVE_MS)
        expect(facts).not_to_contain_text("load management")
        expect(page.locator("#site-gauge")).to_be_hidden()
        expect(amsterdam.locator("[data-field=limit]")).to_have_text("(no grid limit)")
        expect(amsterdam.locator("[data-field=gauge]")).to_be_hidden()
    finally:
        edit("1", False)
    expect(facts).to_contain_text("of 1 kW grid limit", timeout=LIVE_MS)
    expect(page.locator("#site-gauge")).to_be_visible()


def test_the_location_chart_draws_the_grid_limit_as_a_step(site, browser):
    """A limit raised from 1 to 3 kW between two summaries was drawn as a diagonal, as
    if it had been 2 kW half-way. Drawn here from samples at 0, 10 and 20 s: at 15 s the
    limit line is at 1 kW, and nothing of it is near 2 kW."""
    from playwright.sync_api import expect

    page = logged_in(browser, site, "/locations/")
    page.locator("tr[data-site]", has_text="Berlin").locator("a").click()
    expect(page.locator("#live-state")).to_have_text("live")
    rows = page.locator("#site-chart").evaluate(
        """async (el) => {
          const u = el.uplot;
          u.setData([[0, 10, 20], [0, 0, 0], [1, 1, 3]]);
          u.setScale("x", { min: 0, max: 20 });
          // uPlot draws in a microtask: after it, before any live summary (a task) can.
          await null;
          const ctx = u.ctx;
          const x0 = Math.round(u.valToPos(13, "x", true));
          const x1 = Math.round(u.valToPos(17, "x", true));
          const image = ctx.getImageData(x0, 0, x1 - x0, ctx.canvas.height).data;
          const width = x1 - x0;
          const red = new Set();
          for (let i = 0; i < image.length; i += 4) {
            const [r, g, b, a] = image.slice(i, i + 4);
            if (a > 128 && r > 180 && g < 100 && b < 100) red.add(Math.floor(i / 4 / width));
          }
          const at = (kw) => Math.round(u.valToPos(kw, "kW", true));
          return { red: [...red], one: at(1), two: at(2) };
        }"""
    )
    assert rows["red"], rows  # the limit is drawn there
    assert all(abs(y - rows["one"]) <= 2 for y in rows["red"]), rows
    page.context.close()


def test_the_location_chart_opened_mid_session_starts_with_the_power_drawn_before(site, browser):
    """The site's chart started empty whenever the page was opened or reloaded: a user
    opening it in the afternoon saw nothing of the hour before. A Berlin session runs for
    a while (two of the worker's 10 s steps and more), then the page opens: its chart
    holds points from before it opened, with the session's power in them."""
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0003")  # Berlin
    charger_url = page.url
    start_session(page, 2, "HISTORY-1")
    try:
        session_chart = page.locator('[data-chart="2"]')
        # The session's own series, a point a second: 25 of them, so 25 s of charging.
        expect(session_chart).to_have_attribute(
            "data-points", re.compile(r"^(2[5-9]|[3-9]\d|\d{3,})$"), timeout=60_000
        )
        berlin = page.locator("dt:text-is('Location') + dd a").get_attribute("href")
        page.goto(f"{site.url}{berlin}")
        opened_at = page.evaluate("performance.timeOrigin / 1000")
        chart = page.locator("#site-chart")
        page.wait_for_function(
            "(opened) => Number(document.getElementById('site-chart').dataset.from) < opened",
            arg=opened_at,
            timeout=LIVE_MS,
        )
        assert float(chart.get_attribute("data-from")) < opened_at
        before = chart.evaluate(
            """(el, opened) => {
              const [times, kw] = el.uplot.data;
              return times.map((t, i) => [t, kw[i]]).filter(([t]) => t < opened);
            }""",
            opened_at,
        )
        assert int(chart.get_attribute("data-points")) >= len(before)
        assert [kw for _t, kw in before if kw > 0], before  # the session's power, kept
        # ...and then the live points, after the history.
        expect(chart).not_to_have_attribute("data-points", str(len(before)), timeout=LIVE_MS)
    finally:
        page.goto(charger_url)
        card = page.locator('.evse-card[data-evse="2"]')
        card.locator("button[data-command=stop]").click()
        expect(card.locator("[data-result]")).to_contain_text("stopped")
        card.locator("button[data-command=unplug]").click()
        expect(card.locator("[data-field=status]")).to_have_text("Available")
        page.context.close()


def test_the_message_log_shows_message_ids_and_connection_events_and_what_it_keeps(site, browser):
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0006")
    expect(page.locator("#log-keeps")).to_contain_text(
        "keeps each charger's last 100 (at most 24 KB)"
    )
    page.click("button[data-command=disconnect]")
    log = page.locator("#message-log")
    closed = log.locator('tr.connection[data-action="closed"]').first
    expect(closed).to_contain_text(re.compile(r"code \d+"))
    page.click("button[data-command=connect]")
    expect(log.locator('tr.connection[data-action="connected"]').first).to_be_visible()
    expect(page.locator("#link")).to_have_text("online")
    boot = log.locator(
        'tr.call[data-action="BootNotification"], tr.call[data-action="StatusNotification"]'
    )
    message_id = boot.first.locator("td").nth(2).inner_text()
    assert message_id.strip()  # each frame shows its message id
    page.screenshot(path=ARTIFACTS / "pages-8-message-log.png", full_page=True)


def test_a_command_waiting_for_its_answer_is_named_in_words(site, browser):
    """Until the engine answers, the result line says which command runs, every underscore
    a space (it said "present id_tag…"). Nothing reaches the engine here."""
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0001")
    expect(page.locator("#live-state")).to_have_text("live")
    pending = page.evaluate(
        """() => {
          const send = WebSocket.prototype.send;
          WebSocket.prototype.send = function () {};  // the command stays unanswered
          try {
            document.querySelector(
              '.evse-card[data-evse="1"] form[data-command=present_id_tag]').requestSubmit();
            return document.querySelector(
              '.evse-card[data-evse="1"] [data-result]').textContent;
          } finally {
            WebSocket.prototype.send = send;
          }
        }"""
    )
    assert pending == "present id tag…"


def test_a_user_who_only_watches_logs_in_watches_live_and_cannot_drive(site, browser):
    """Not staff, no "change charger": the dashboard's own login lets them in (the admin's
    refuses them), the pages are live over their sockets, every control is disabled and a
    command sent anyway is refused; the admin stays closed, and logging out works."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(LIVE_MS)
    page = context.new_page()
    page.goto(f"{site.url}/locations/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/locations/$"))
    page.fill("#id_username", "watcher")
    page.fill("#id_password", PASSWORD)
    page.click(".login button[type=submit]")
    expect(page).to_have_url(f"{site.url}/locations/")
    expect(page.locator("#live-state")).to_have_text("live")
    expect(
        page.locator("tr[data-site]", has_text="Amsterdam").locator("[data-field=online]")
    ).to_have_text(re.compile(r"^\d+$"))  # live, "–" until then
    expect(page.locator(".topbar nav a", has_text="Set-up")).to_have_count(0)

    page.goto(f"{site.url}/")
    expect(row_of(page, "DEMO-0002").locator("[data-field=link]")).to_have_text("online")
    expect(page.locator("#bulk")).to_have_count(0)
    row_of(page, "DEMO-0002").locator("a", has_text="DEMO-0002").click()
    expect(page.locator("#link")).to_have_text("online")
    buttons = page.locator("[data-command] button, button[data-command]")
    expect(buttons.first).to_be_disabled()
    assert buttons.evaluate_all("all => all.every(b => b.disabled)")
    # Their inputs too, and the page says why (it did not).
    inputs = page.locator("form[data-command] input:not([type=hidden]), form[data-command] select")
    assert inputs.evaluate_all("all => all.length > 0 && all.every(i => i.disabled)")
    expect(page.locator("#watch-only")).to_be_visible()
    expect(page.locator("#watch-only")).to_have_text(
        "You can watch but not drive chargers (your account lacks the 'change charger' permission)."
    )
    # Enabled by hand, a control's command is refused by the server all the same.
    clear = page.locator('.evse-card[data-evse="1"] button[data-command=clear_fault]')
    clear.evaluate("b => { b.disabled = false; }")
    clear.click()
    expect(page.locator('.evse-card[data-evse="1"] [data-result]')).to_have_text(
        "✗ you may watch but not drive chargers (no change permission)"
    )
    page.screenshot(path=ARTIFACTS / "pages-watcher-charger.png", full_page=True)

    page.goto(f"{site.url}/admin/")
    expect(page.locator("#content")).to_contain_text("not authorized to access this page")
    page.goto(f"{site.url}/")
    with page.expect_navigation():
        page.click("form.logout button")
    expect(page).to_have_url(f"{site.url}/accounts/login/")
    page.goto(f"{site.url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))


def test_an_open_page_stops_being_live_when_its_user_logs_out_in_another_tab(site, browser):
    """It went on streaming snapshots and OCPP frames for as long as it stayed open."""
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0004")
    expect(page.locator("#live-state")).to_have_text("live")
    other = page.context.new_page()
    other.goto(f"{site.url}/")
    with other.expect_navigation():
        other.click("form.logout button")

    expect(page.locator("#live-state")).to_have_text("logged out")
    expect(page.locator("#stale-note")).to_contain_text(
        "You were logged out: log in again to watch. The figures below are as they were then."
    )
    page.screenshot(path=ARTIFACTS / "pages-logged-out-elsewhere.png", full_page=True)


def test_an_open_page_stops_being_live_when_its_users_account_is_deactivated(site, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(LIVE_MS)
    page = context.new_page()
    page.goto(f"{site.url}/accounts/login/?next=/")
    page.fill("#id_username", "leaver")
    page.fill("#id_password", PASSWORD)
    page.click(".login button[type=submit]")
    row_of(page, "DEMO-0005").locator("a", has_text="DEMO-0005").click()
    expect(page.locator("#live-state")).to_have_text("live")

    admin = logged_in(browser, site, "/admin/auth/user/?q=leaver")
    admin.locator("#result_list a", has_text="leaver").click()
    admin.locator("#id_is_active").set_checked(False)
    admin.locator("input[name=_save]").click()
    expect(admin.locator(".messagelist")).to_contain_text("changed successfully")

    # Within a check of the page's socket (every 5 s).
    expect(page.locator("#live-state")).to_have_text("no access", timeout=LIVE_MS)
    expect(page.locator("#stale-note")).to_contain_text(
        "Your account can no longer watch chargers."
    )


def set_change_permission(site: DemoSite, username: str, granted: bool) -> None:
    """Gives or takes "change charger" on the site's database, as an admin would."""
    verb = "add" if granted else "remove"
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from django.contrib.auth.models import Permission\n"
        f"user = get_user_model().objects.get(username={username!r})\n"
        f"user.user_permissions.{verb}(Permission.objects.get(codename='change_charger'))\n"
    )
    result = run_manage(site.sim.var_dir, "shell", "-c", script)
    assert result.returncode == 0, result.stderr


def test_open_pages_follow_a_user_losing_and_regaining_the_change_permission(site, browser):
    """The controls stayed enabled until a reload, and every click was refused; now the
    pages' sockets say so at their next access check (every 5 s) and the controls follow."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(LIVE_MS)
    fleet = context.new_page()
    fleet.goto(f"{site.url}/accounts/login/?next=/")
    fleet.fill("#id_username", "driver")
    fleet.fill("#id_password", PASSWORD)
    fleet.click(".login button[type=submit]")
    expect(fleet.locator("#live-state")).to_have_text("live")
    run = fleet.locator("#bulk button[type=submit]")
    expect(run).to_be_enabled()
    charger = context.new_page()
    charger.goto(fleet.url)
    row_of(charger, "DEMO-0002").locator("a", has_text="DEMO-0002").click()
    expect(charger.locator("#live-state")).to_have_text("live")
    clear = charger.locator('.evse-card[data-evse="1"] button[data-command=clear_fault]')
    expect(clear).to_be_enabled()
    expect(charger.locator("#watch-only")).to_be_hidden()

    set_change_permission(site, "driver", granted=False)
    expect(clear).to_be_disabled()
    expect(charger.locator("#watch-only")).to_be_visible()
    expect(run).to_be_disabled()
    expect(fleet.locator("#bulk-no-access")).to_be_visible()
    assert fleet.locator("#bulk select[name=action]").is_disabled()

    set_change_permission(site, "driver", granted=True)
    expect(clear).to_be_enabled()
    expect(charger.locator("#watch-only")).to_be_hidden()
    expect(run).to_be_enabled()
    expect(fleet.locator("#bulk-no-access")).to_be_hidden()
    # The fields of the chosen action only: the others stay off, as before.
    assert fleet.locator("#bulk input[name=id_tag]").is_disabled()
    context.close()


def test_a_command_from_a_page_whose_user_logged_out_says_so(site, browser):
    """Logged out in another tab, the page's next command closes its socket (4401): the
    result line says why instead of showing "clear fault…" for ever."""
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0001")
    other = page.context.new_page()
    other.goto(f"{site.url}/")
    # The logout done (its page loaded) before the command: the session is gone by then.
    # The tab stays open, as every page of this module does: a CI run hung for the whole
    # test timeout in `other.close()` right after the logout (not seen again since).
    with other.expect_navigation():
        other.click("form.logout button")
    page.locator('.evse-card[data-evse="1"] button[data-command=clear_fault]').click()
    # Whether the command's own socket is closed as logged out or its reconnect is (a CI
    # run once saw the socket lost another way first; the next test shows that path).
    expect(page.locator('.evse-card[data-evse="1"] [data-result]')).to_have_text(
        re.compile("^✗ logged out: log in again to drive this charger")
    )
    expect(page.locator("#live-state")).to_have_text("logged out")


# Keeps the page's sockets where a test can reach them.
KEEP_SOCKETS = """
  window.__sockets = [];
  window.WebSocket = class extends window.WebSocket {
    constructor(...args) { super(...args); window.__sockets.push(this); }
  };
"""


def test_a_page_whose_connection_drops_after_its_user_logged_out_says_logged_out(site, browser):
    """The reconnect is refused as logged out (4401) and the page says so, also of the
    command whose answer the lost connection took with it. Before, Daphne refused the
    reconnect with a bare HTTP 403 and the page said "reconnecting…" for ever. (The
    browser's cookies cleared: a log-out would close the open socket itself, at once.)"""
    from playwright.sync_api import expect

    page = logged_in(browser, site, "/")
    page.context.add_init_script(KEEP_SOCKETS)
    row_of(page, "DEMO-0001").locator("a", has_text="DEMO-0001").click()
    expect(page.locator("#live-state")).to_have_text("live")
    page.context.clear_cookies()
    page.evaluate("() => { window.__sockets.at(-1).send = function () {}; }")  # unanswered
    page.locator('.evse-card[data-evse="1"] button[data-command=clear_fault]').click()
    result = page.locator('.evse-card[data-evse="1"] [data-result]')
    expect(result).to_have_text("clear fault…")
    page.evaluate("() => window.__sockets.at(-1).close(4000)")  # lost, not as logged out
    expect(result).to_have_text(
        "✗ logged out: log in again to drive this charger; the connection was lost before "
        "the answer, so the command may or may not have run"
    )
    expect(page.locator("#live-state")).to_have_text("logged out")
    page.wait_for_timeout(1_500)  # longer than the reconnect's first two delays
    assert page.evaluate("() => window.__sockets.length") == 2  # no attempt after the 4401


def test_the_recent_transactions_follow_a_session_without_a_reload(site, browser):
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0006")
    newest = page.locator("#recent-transactions tbody tr").first
    start_session(page, 1, "TX-LIVE")
    expect(newest).to_contain_text("TX-LIVE", timeout=LIVE_MS)
    expect(newest).to_contain_text("open")
    # The CSMS's transaction id, once its answer is in.
    expect(newest.locator("td").nth(2)).to_have_text(re.compile(r"^\d+$"), timeout=LIVE_MS)
    card = page.locator('.evse-card[data-evse="1"]')
    card.locator("button[data-command=stop]").click()
    expect(card.locator("[data-result]")).to_contain_text("stopped")
    expect(newest).not_to_contain_text("open", timeout=LIVE_MS)
    expect(newest.locator("td").nth(5)).to_have_text(re.compile(r"^\d+ → \d+ Wh$"))
    page.screenshot(path=ARTIFACTS / "pages-8b-recent-transactions.png", full_page=True)
    card.locator("button[data-command=unplug]").click()
    expect(card.locator("[data-field=status]")).to_have_text("Available")


def control(site: DemoSite, path: str, body: dict[str, Any]) -> None:
    """POST to the built-in CSMS's control endpoint (the port the demo announced)."""
    found = re.search(r"control endpoint \(scenarios' csms_control\) on (\S+)", site.sim.output)
    assert found is not None, site.sim.output[-2000:]
    sent = urllib.request.Request(
        found.group(1) + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(sent, timeout=LIVE_MS / 1000) as answer:
        assert answer.status == 200


def test_a_suspended_connector_says_why_next_to_its_status(site, browser):
    """A TxProfile of 4 A from the CSMS holds the car back (SuspendedEVSE): the card says
    why beside the status, and nothing once the profile is cleared and the car charges."""
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0004")
    start_session(page, 2, "WHY-1")
    card = page.locator('.evse-card[data-evse="2"]')
    why = card.locator("[data-field=status_info]")
    expect(why).to_be_hidden()
    transaction = card.locator("[data-field=transaction]")
    expect(transaction).to_have_text(re.compile(r"^\d+$"))
    profile = {
        "chargingProfileId": 41,
        "transactionId": int(transaction.inner_text()),
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 4}],
        },
    }
    body = {"connectorId": 2, "csChargingProfiles": profile}
    control(site, "/chargers/DEMO-0004/SetChargingProfile", body)
    expect(card.locator("[data-field=status]")).to_have_text("SuspendedEVSE")
    expect(why).to_be_visible()
    expect(why).to_have_text("charging profile allows 4.0 A per phase (6 A min)")
    page.screenshot(path=ARTIFACTS / "pages-8c-suspended-why.png", full_page=True)
    control(site, "/chargers/DEMO-0004/ClearChargingProfile", {"id": 41})
    expect(card.locator("[data-field=status]")).to_have_text("Charging")
    expect(why).to_be_hidden()
    card.locator("button[data-command=stop]").click()
    expect(card.locator("[data-result]")).to_contain_text("stopped")
    card.locator("button[data-command=unplug]").click()
    expect(card.locator("[data-field=status]")).to_have_text("Available")


def test_a_charger_disabled_in_the_admin_says_why_on_the_open_pages(site, browser):
    """Its page and the fleet page stay open while the operator disables the charger in
    the admin: both say it is offline because it was disabled (not a lost link)."""
    from playwright.sync_api import expect

    page = charger_page(browser, site, "DEMO-0006")
    controls = page.locator(
        "button[data-command], form[data-command] button, "
        "form[data-command] input:not([type=hidden]), form[data-command] select"
    )
    expect(controls.first).to_be_enabled()
    fleet = page.context.new_page()
    fleet.goto(f"{site.url}/")
    link = row_of(fleet, "DEMO-0006").locator("[data-field=link]")
    expect(link).to_have_text("online")
    admin = logged_in(browser, site, "/admin/chargers/charger/")

    def set_enabled(on: bool) -> None:
        admin.goto(f"{site.url}/admin/chargers/charger/")
        admin.locator("a", has_text="DEMO-0006").first.click()
        admin.locator("#id_enabled").set_checked(on)
        admin.locator("input[name=_save]").click()
        expect(admin.locator(".messagelist")).to_contain_text("changed successfully")

    set_enabled(False)
    try:
        expect(page.locator("#link")).to_have_text("offline", timeout=LIVE_MS)
        expect(page.locator("#link-error")).to_have_text("disabled in the set-up")
        expect(link).to_have_text("offline: disabled in the set-up", timeout=LIVE_MS)
        # Its connectors no longer run (they kept their last status, as a reload did not).
        for status in (
            page.locator(".evse-card [data-field=status]"),
            row_of(fleet, "DEMO-0006").locator("[data-field=status]"),
        ):
            expect(status).to_have_text(["not running"] * 2)
            expect(status.first).to_have_class(re.compile(r"\bstatus-not-running\b"))
        # Its controls are off, the reason next to them (a click answered with the
        # worker's "not running on this simulator worker").
        expect(controls.first).to_be_disabled()
        assert controls.evaluate_all("all => all.every(c => c.disabled)")
        expect(page.locator("[data-out-of-service]")).to_have_text(
            [
                "This charger is not running (disabled in the set-up): nothing to drive "
                "until it runs again."
            ]
            * 3
        )
        page.screenshot(path=ARTIFACTS / "pages-9-charger-disabled.png", full_page=True)
    finally:
        set_enabled(True)
    expect(page.locator("#link")).to_have_text("online", timeout=30_000)
    expect(controls.first).to_be_enabled()
    assert controls.evaluate_all("all => all.every(c => !c.disabled)")
    expect(page.locator("[data-out-of-service]").first).to_be_hidden()
    expect(page.locator("#link-error")).to_be_hidden()
    expect(page.locator(".evse-card [data-field=status]").first).not_to_have_text("not running")


def test_the_charts_tell_the_time_in_the_sites_zone_not_the_browsers(site, browser):
    """A user in New York looking at a Berlin site saw its chart in New York's hours."""
    from playwright.sync_api import expect

    page = logged_in(browser, site, timezone_id="America/New_York")
    row = row_of(page, "DEMO-0003")  # Berlin
    charger = row.locator("a", has_text="DEMO-0003").get_attribute("href")
    berlin = row.locator("td a").nth(1).get_attribute("href")
    # 12:00 UTC on a winter's day: 13:00 in Berlin, 07:00 in New York.
    label_of_noon_utc = """(el) => {
      const u = el.uplot;
      return [u.axes[0].values(u, [Date.UTC(2026, 0, 5, 12) / 1000], 0, 50, 3600)[0],
              u.axes[0].label];
    }"""
    page.context.add_init_script(KEEP_SOCKETS)
    for path, chart in ((berlin, "#site-chart"), (charger, '.chart[data-chart="1"]')):
        page.goto(f"{site.url}{path}")
        expect(page.locator("#live-state")).to_have_text("live")
        tick, axis = page.locator(chart).evaluate(label_of_noon_utc)
        # 24-hour, the date as ISO under it, as every other time (it said "1pm", "1/5/26").
        assert (tick.splitlines(), axis) == (["13:00", "2026-01-05"], "time in Europe/Berlin")

    # Every time on the charger page in the site's zone, 24-hour, as the page says: the
    # log said New York's time, the security events UTC ("...T21:55:14Z").
    expect(page.locator(".identity .time-zone")).to_have_text(
        "(times on this page are in Europe/Berlin)"
    )
    expect(page.locator("#message-log th").first).to_have_text("time (Europe/Berlin)")
    events = page.locator("#maintenance [data-field=security_events] li").first
    expect(events).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d StartupOfTheFirmware"))
    page.evaluate(
        """() => window.__sockets.at(-1).onmessage({data: JSON.stringify({
          type: "charger.log", full: false,
          frames: [[Date.UTC(2026, 0, 5, 12) / 1000 + 0.25, "event", '{"event": "noon"}']],
        })})"""
    )
    noon = page.locator('#message-log tr[data-action="noon"] td').first
    expect(noon).to_have_text("13:00:00.250")
    page.context.close()


@pytest.mark.parametrize("width", [390, 1400])
def test_the_fleets_connectors_stay_in_place_and_on_screen(site, browser, width):
    """Connector 2 moved sideways whenever connector 1's status changed (the badge is as
    wide as its word); on a phone the table scrolled, with status and power off-screen."""
    from playwright.sync_api import expect

    page = logged_in(browser, site, "/", width)
    row = row_of(page, "DEMO-0001")
    expect(row.locator("[data-field=link]")).not_to_have_text("no live data")
    for connector in row.locator("[data-evse]").all():
        for field in ("status", "power"):
            expect(connector.locator(f"[data-field={field}]")).to_be_in_viewport(ratio=1)
    # Connector 2's place, for each status connector 1 can show.
    places = page.evaluate(
        """(statuses) => {
          const row = [...document.querySelectorAll("tr[data-charger]")]
            .find((tr) => tr.querySelector("a").textContent.trim() === "DEMO-0001");
          const first = row.querySelector('[data-evse="1"] [data-field=status]');
          const second = row.querySelector('[data-evse="2"]');
          return statuses.map((status) => {
            first.textContent = status;
            const box = second.getBoundingClientRect();
            return [Math.round(box.left), Math.round(box.top)];
          });
        }""",
        ["Available", "Charging", "SuspendedEVSE", "SuspendedEV", "Faulted", "not running"],
    )
    assert len(set(map(tuple, places))) == 1, places


@pytest.mark.parametrize("width", [360, 420, 1400, 1920])
def test_the_pages_fit_the_screen_from_360_to_1920_px(site, browser, width):
    from playwright.sync_api import expect

    page = logged_in(browser, site, "/", width)
    expect(row_of(page, "DEMO-0001").locator("[data-field=link]")).not_to_have_text("no live data")
    charger = row_of(page, "DEMO-0001").locator("a", has_text="DEMO-0001").get_attribute("href")
    berlin = row_of(page, "DEMO-0001").locator("td a").nth(1).get_attribute("href")
    for name, path in {
        "fleet": "/",
        "charger": charger,
        "locations": "/locations/",
        "location": berlin,
    }.items():
        page.goto(f"{site.url}{path}")
        expect(page.locator("#live-state")).to_have_text("live")
        if name == "charger":  # the longest error code must fit its card too
            card = page.locator('.evse-card[data-evse="2"]')
            expect(card.locator("[data-field=status]")).not_to_have_text("not running")
            if card.locator("[data-field=error]").inner_text() != "OverCurrentFailure":
                fault = card.locator("form[data-command=inject_fault]")
                fault.locator("select[name=error_code]").select_option("OverCurrentFailure")
                fault.locator("button").click()
            expect(card.locator("[data-field=error]")).to_have_text("OverCurrentFailure")
        page.wait_for_timeout(500)  # a frame or two of live values painted
        # What matters on the page is on screen, not past the right edge of a table that
        # scrolls sideways (at 360 px the Locations list showed only name and city, the
        # log only time, direction and id).
        key = {
            "locations": "tr[data-site] [data-field=power], tr[data-site] [data-field=charging]",
            "charger": "#message-log tbody tr:first-child td",
        }.get(name)
        if key:
            expect(page.locator(key).first).to_be_visible()
            off_screen = page.locator(key).evaluate_all(
                "(els) => els.filter((el) => el.getBoundingClientRect().right > innerWidth)"
                ".map((el) => el.textContent.slice(0, 40))"
            )
            assert off_screen == [], f"{name} at {width} px: {off_screen}"
        problems = page.evaluate(LAYOUT_PROBLEMS)
        page.screenshot(path=ARTIFACTS / f"layout-{name}-{width}.png", full_page=True)
        assert problems == [], f"{name} at {width} px: {problems}"
        # The topbar keeps "Log out" on screen.
        page.evaluate("window.scrollTo(0, 0)")
        expect(page.locator(".logout button")).to_be_in_viewport()

    # The check sees what does not fit: a value wider than its card.
    page.evaluate(
        """() => {
          const wide = document.createElement("b");
          wide.style.cssText = "display: inline-block; width: 3000px; height: 10px";
          document.querySelector(".card").appendChild(wide);
        }"""
    )
    problems = page.evaluate(LAYOUT_PROBLEMS)
    assert any("sticks out of" in problem for problem in problems), problems
    assert any("scrolls sideways" in problem for problem in problems), problems
