"""A fleet page open while one of two workers dies and comes back: it says how many workers
report and which rows have no live data, then, with the worker restarted, shows them live
again without a reload; the rows of a worker that only has not reported yet stay live, and
the page does not call its figures partial while the second worker's summary is on its way.
A bulk action whose worker is killed while it runs it names that worker in its summary.
Headless Chromium against the scaled-out mode (Daphne, two
`runsimulator --no-web --shard K/2` workers, the built-in CSMS) on this machine's Redis and
PostgreSQL."""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from simulator.contract.overrides import LATENCY_MAX_MS
from tests import test_scaled_out
from tests.browser import ARTIFACTS, NEEDS_CHROMIUM, chromium
from tests.process import Process, daphne, free_port, wait_for_port
from tests.test_api_scaled_out import http
from tests.test_scaled_out import PASSWORD, REDIS_URL, Deployment, deploy

pytestmark = [pytest.mark.browser, *test_scaled_out.pytestmark, NEEDS_CHROMIUM]
database = test_scaled_out.database

# A Redis database of this test's own: the other scaled-out tests draw theirs from 8..15
# and flush it first, so one running beside this (another checkout on the same Redis)
# would empty this one's groups under it.
REDIS_DB = 5
# A page hears a worker is gone once its summaries are SUMMARY_STALE_SECONDS (15 s) old,
# at the next summary of another worker (every 5 s at most).
GONE_MS = 30_000
LIVE_MS = 15_000


@pytest.fixture
def deployment(tmp_path, database) -> Iterator[Deployment]:
    import redis

    url = f"{REDIS_URL.rstrip('/')}/{REDIS_DB}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    with deploy(tmp_path, database, redis_url=url, evses=1) as running:
        yield running


# Every time the workers note shows, what it says: a note shown for a moment is recorded
# even if it is hidden again by the time the test looks.
NOTE_WATCH = """
window.shardsNotes = [];
document.addEventListener("DOMContentLoaded", function () {
  const note = document.getElementById("shards-note");
  if (!note) return;
  new MutationObserver(function () {
    if (!note.hidden) window.shardsNotes.push(note.textContent);
  }).observe(note, { attributes: true, childList: true, characterData: true, subtree: true });
});
"""


def row_of(page: Any, cp_id: str) -> Any:
    return page.locator(f'tr[data-charger]:has(a:text-is("{cp_id}"))')


def test_the_fleet_page_says_which_worker_stopped_reporting_until_it_is_back(deployment, tmp_path):
    from playwright.sync_api import expect

    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.add_init_script(NOTE_WATCH)
        page.goto(f"http://{deployment.host}/admin/login/?next=/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(re.compile(r"^(?!.*/admin/login/)"))
        page.evaluate("window.sameDocument = true")  # gone if the page reloads

        note = page.locator("#shards-note")
        rows = {shard: row_of(page, cp_id) for shard, cp_id in deployment.by_shard.items()}
        online = page.locator("[data-link-count=online]")

        def live(row: Any) -> None:
            expect(row.locator("[data-field=link]")).to_have_text("online", timeout=LIVE_MS)
            expect(row.locator("[data-field=status]")).to_have_text("Available")

        # Both workers report: the counts add up both, no note, every row live. The rows
        # are looked at once both summaries arrived: the first came alone, and once marked
        # the other worker's rows "no live data" for good, live as they were.
        expect(online).to_have_text("2", timeout=LIVE_MS)
        expect(note).to_be_hidden()
        for row in rows.values():
            live(row)
        # Nor did the note show meanwhile: the first worker's summary came alone, and the
        # page said "1 of 2 workers reporting: the counts are partial" at every opening.
        assert page.evaluate("window.shardsNotes") == []
        page.screenshot(path=ARTIFACTS / "workers-1-both.png", full_page=True)

        # The worker of shard 1 is killed: after its summaries went stale the page says so,
        # and its row shows no live data while the other stays live.
        deployment.workers[1].stop()
        expect(note).to_be_visible(timeout=GONE_MS)
        expect(note).to_have_text(
            "1 of 2 chargers reporting (shard 1 not answering): the counts are partial"
        )
        gone = rows[1]
        expect(gone.locator("[data-field=link]")).to_have_text("no live data")
        expect(gone.locator("[data-field=status]")).to_have_text("no live data")
        expect(gone.locator("[data-field=status]")).to_have_class(
            re.compile(r"\bstatus-not-running\b")
        )
        expect(gone.locator("[data-field=power]")).to_have_text("–")  # not its last kW
        expect(online).to_have_text("1")
        live(rows[0])
        page.screenshot(path=ARTIFACTS / "workers-2-one-gone.png", full_page=True)

        # Restarted as `deploy` started it: the note goes and its row is live again, on
        # the same page.
        worker = [sys.executable, "manage.py", "runsimulator", "--no-web", "--no-migrate"]
        again = Process("worker-1-again", [*worker, "--shard", "1/2"], deployment.env, tmp_path)
        try:
            again.wait_for_output("fleet: 1/1 accepted")
            expect(note).to_be_hidden(timeout=LIVE_MS)
            expect(online).to_have_text("2", timeout=LIVE_MS)
            for row in rows.values():
                live(row)
            assert page.evaluate("window.sameDocument") is True
            page.screenshot(path=ARTIFACTS / "workers-3-back.png", full_page=True)
        finally:
            again.stop()


def test_the_bulk_panel_names_the_worker_that_went_away_before_it_answered(tmp_path, database):
    """A bulk action whose worker is killed while it runs the action: the API's answer
    names the shard (`gone_shards`), its chargers' results fail `worker_gone`. The panel
    said only "0 of 1 succeeded", as if the action had not been done, when it may have
    been: it now names the worker that went away and says to read the chargers' state.

    The worker is held inside the action by the charger's own network conditions
    (`held_present_id_tag`). It is killed once the message log shows the charger's
    Authorize sent: it has acknowledged the action and is running it."""
    from playwright.sync_api import expect

    with deploy(tmp_path, database, evses=1) as live:
        token = live.token()
        cp_id = live.by_shard[1]
        with chromium() as browser:
            page = held_present_id_tag(browser, live.host, token, cp_id)
            summary = page.locator("#bulk-summary")
            expect(summary).to_have_text("running present-id-tag…")

            deadline = time.monotonic() + 30
            while not authorize_sent(live.host, token, cp_id):
                assert time.monotonic() < deadline, "the worker sent no Authorize"
                time.sleep(0.2)
            live.workers[1].signal(signal.SIGKILL)

            # The shard's probe names it within seconds; the 30 s only keep a hang from
            # blocking the run.
            expect(summary).to_have_text(
                "✗ present-id-tag: 0 of 1 succeeded; the worker of shard 1 went away before "
                "it answered: read those chargers' state",
                timeout=30_000,
            )
            expect(summary).to_have_class(re.compile(r"\berror\b"))
            result = page.locator(f'#bulk-results tr[data-charger="{cp_id}"]')
            expect(result).to_contain_text("stopped answering before it answered")
            page.screenshot(path=ARTIFACTS / "workers-bulk-gone.png", full_page=True)


def test_the_bulk_panel_says_a_worker_that_did_not_answer_in_time_may_still_finish(
    tmp_path, database
):
    """A bulk action whose worker acknowledged and did not answer within the web tier's
    wait: the API lists the shard in `unfinished_shards` and its chargers' results say
    `timeout`. The panel said only "0 of 1 succeeded", with no reason, when the action may
    still finish: it now names the worker, says so and to read the chargers' state, as a
    warning rather than a failure.

    The worker is held inside the action as in the test above (`held_present_id_tag`);
    the web tier waits 2 s for the result (`tests.short_waits`), well inside the 30 s the
    worker takes, and its probe finds the worker still there."""
    from playwright.sync_api import expect

    with deploy(tmp_path, database, evses=1, web=False) as live:
        port = free_port()
        web = daphne(port, live.env, tmp_path, result_seconds=2.0)
        try:
            wait_for_port(port, proc=web.proc)
            cp_id = live.by_shard[1]
            with chromium() as browser:
                page = held_present_id_tag(browser, f"127.0.0.1:{port}", live.token(), cp_id)
                summary = page.locator("#bulk-summary")
                expect(summary).to_have_text(
                    "⚠ present-id-tag: 0 of 1 succeeded; the worker of shard 1 did not answer "
                    "in time: the action may still finish, read those chargers' state",
                    timeout=30_000,
                )
                expect(summary).to_have_class(re.compile(r"\bwarning\b"))
                result = page.locator(f'#bulk-results tr[data-charger="{cp_id}"]')
                expect(result).to_contain_text("the simulator did not finish in time")
                page.screenshot(path=ARTIFACTS / "workers-bulk-unfinished.png", full_page=True)
        finally:
            web.stop()


def held_present_id_tag(browser: Any, host: str, token: str, cp_id: str) -> Any:
    """The fleet page, logged in as admin, just after it asked for a bulk present-id-tag on
    `cp_id` alone, which its worker then runs for a while: with a minute's latency (set
    here through the API) the charger's Authorize reaches the CSMS only after a minute, so
    the worker answers only at the charger's MessageTimeout (30 s)."""
    held = http(
        host,
        token,
        "POST",
        f"/api/v1/chargers/{cp_id}/actions/set-network",
        json.dumps({"latency_ms": LATENCY_MAX_MS}).encode(),
        "application/json",
    )
    assert f"latency {LATENCY_MAX_MS} ms" in held["message"], held
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(10_000)
    page.goto(f"http://{host}/admin/login/?next=/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/admin/login/)"))
    row_of(page, cp_id).locator("input[name=pick]").check()
    page.select_option("#bulk select[name=action]", "present-id-tag")
    page.click("#bulk button[type=submit]")
    return page


def authorize_sent(host: str, token: str, cp_id: str) -> bool:
    """Whether the charger's message log holds an Authorize it sent (its worker writes
    the log about every second)."""
    page = http(host, token, "GET", f"/api/v1/chargers/{cp_id}/log?limit=50")
    return any(
        item["direction"] == "out" and item["action"] == "Authorize" for item in page["items"]
    )
