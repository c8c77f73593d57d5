"""How late the fleet page's counts reach a browser while the fleet connects.

    .venv/bin/python bench/page_counts_lag.py [--chargers 3000] [--rate 500] [--runs 3]

One `runsimulator --demo` process (web, worker and the built-in CSMS in one, as `make run`
runs it) on a throwaway SQLite file, `--chargers` demo chargers and `--connect-rate`
`--rate`. Two readers of the fleet page's socket, logged in as the admin: the real page in
headless Chromium (`/usr/bin/chromium`, its frames seen through Playwright), which watches
the 50 chargers of its first page, and a bare socket that watches none. Each run
disconnects the whole fleet and connects it again through the API (`/fleet/actions/...`,
`every`), so that the connect ramp keeps the process busy for `--chargers / --rate`
seconds, and notes when each reader gets each `fleet.counts` (one a second).

Per run it prints, for each counts message the bare socket got during the ramp, how much
later the page got the same one; then the largest and the median. The bare socket is the
reference: the engine sends each second's counts on time (the status line agrees), so a
page that gets them later waited behind its own messages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PASSWORD = "bench-page-counts-lag"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=500.0, help="the connect rate (a second)")
    parser.add_argument("--runs", type=int, default=3)
    return parser.parse_args()


def post(url: str, token: str) -> None:
    body = json.dumps({"filter": {"every": True}}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers)
    urllib.request.urlopen(request, timeout=300).read()


async def one_run(base: str, session: str, token: str, ramp_s: float) -> list[float]:
    """The page's lag behind the bare socket, per counts message of the ramp (seconds)."""
    from playwright.async_api import async_playwright
    from websockets.asyncio.client import connect

    host = base.removeprefix("http://")
    page_got: dict[str, float] = {}
    bare_got: dict[str, float] = {}

    def note(seen: dict[str, float], text: str) -> None:
        if '"fleet.counts"' in text:
            seen.setdefault(json.dumps(json.loads(text).get("links"), sort_keys=True), time.time())

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium")
        context = await browser.new_context()
        await context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
        page = await context.new_page()
        page.on(
            "websocket",
            lambda ws: ws.on("framereceived", lambda text: note(page_got, str(text))),
        )
        await page.goto(f"{base}/")
        bare = await connect(
            f"ws://{host}/ws/fleet/",
            additional_headers={"Origin": base, "Cookie": f"sessionid={session}"},
            max_size=None,
        )

        async def read_bare() -> None:
            async for text in bare:
                note(bare_got, str(text))

        reader = asyncio.create_task(read_bare())
        await asyncio.sleep(3)
        await asyncio.to_thread(post, f"{base}/api/v1/fleet/actions/disconnect", token)
        await asyncio.sleep(3)
        page_got.clear()
        bare_got.clear()
        await asyncio.to_thread(post, f"{base}/api/v1/fleet/actions/connect", token)
        await asyncio.sleep(ramp_s + 5)
        reader.cancel()
        await bare.close()
        await browser.close()
    return [page_got[key] - at for key, at in bare_got.items() if key in page_got]


def main() -> int:
    from tests.browser import demo_site
    from tests.process import run_manage
    from tests.web_session import log_in

    args = parse()
    var_dir = Path(tempfile.mkdtemp(prefix="chargesim-page-lag-"))
    lags: list[list[float]] = []
    try:
        options = ("--connect-rate", f"{args.rate:g}")
        with demo_site(var_dir, PASSWORD, args.chargers, options=options, ready_within=600) as site:
            created = run_manage(
                var_dir, "apitoken", "create", "--user", "admin", "--name", "bench"
            )
            token = re.search(r"[A-Za-z0-9_\-]{30,}", created.stdout)
            assert token is not None, created.stdout
            session = log_in(site.url.removeprefix("http://"), PASSWORD)
            for run in range(1, args.runs + 1):
                ramp_s = args.chargers / args.rate
                lag = asyncio.run(one_run(site.url, session, token.group(0), ramp_s))
                lags.append(lag)
                shown = " ".join(f"{x:+.2f}" for x in lag)
                print(f"run {run}: the page's lag per counts message (s): {shown}", flush=True)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    every: list[Any] = [x for lag in lags for x in lag]
    if every:
        largest = [max(lag) for lag in lags if lag]
        print(
            f"largest lag per run (s): {' '.join(f'{x:.2f}' for x in largest)}; "
            f"median of all: {statistics.median(every):.2f} s over {len(every)} messages"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
