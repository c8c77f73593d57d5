"""A fleet page open while one of two workers dies and comes back: it says how many workers
report and which rows have no live data, then, with the worker restarted, shows them live
again without a reload; the rows of a worker that only has not reported yet stay live, and
the page does not call its figures partial while the second worker's summary is on its way.
Headless Chromium against the scaled-out mode (Daphne, two
`runsimulator --no-web --shard K/2` workers, the built-in CSMS) on this machine's Redis and
PostgreSQL."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests import test_scaled_out
from tests.browser import ARTIFACTS, NEEDS_CHROMIUM, chromium
from tests.process import Process
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
