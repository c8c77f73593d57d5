"""GET /metrics: the embedded process's Prometheus page, behind the API's token auth.

In-process: the engine runs in the test's event loop (as in `runsimulator`, web and engine
share one loop), a charger runs a session against the built-in CSMS over real sockets, and
the page is read through Django's async client with a Bearer token. Then the same as a user
runs it: `runsimulator --demo` and a token from `manage.py apitoken create`, over HTTP."""

from __future__ import annotations

import signal
import urllib.error

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client

from simulator.contract import engine_here
from simulator.core.charge_point import BootState
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.api_client import bearer, user_with_token
from tests.cast import make_charger, make_user
from tests.engine import COMPACT, loaded, wait_until
from tests.process import ManagePy, free_port, run_manage, wait_for_port
from tests.scrape import Scrape, fetch

SENT = "chargesim_ocpp_calls_sent_total"


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"detail", "errors"}
    return str(body["detail"])


@pytest.mark.django_db
def test_anonymous_callers_get_401_and_callers_without_view_charger_403(
    client: Client, monkeypatch: pytest.MonkeyPatch
):
    # No engine runs in this process, whatever an earlier test of this process left
    # announced (one still running on a loop of its own).
    monkeypatch.setattr(engine_here, "_fleets", {})
    assert "Bearer" in error_of(client.get("/metrics"), 401)
    assert client.get("/metrics")["WWW-Authenticate"].startswith("Bearer")
    assert "not valid" in error_of(client.get("/metrics", headers=bearer("nope")), 401)
    _user, token = user_with_token("watcher")  # no permission at all
    detail = error_of(client.get("/metrics", headers=bearer(token)), 403)
    assert "chargers.view_charger" in detail
    _user, token = user_with_token("viewer", "view_charger")
    page = client.get("/metrics", headers=bearer(token))
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/plain; version=")
    assert "process_cpu_seconds_total" in page.content.decode()
    # No engine runs in this process (a web process of the scaled-out mode): none of the
    # engine's families, which showed at 0 and fired per-instance alerts on it.
    assert "chargesim_" not in page.content.decode()
    # A scraper that asks for OpenMetrics gets it, as from a worker's --metrics-port.
    page = client.get(
        "/metrics",
        headers={**bearer(token), "Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert page["Content-Type"].startswith("application/openmetrics-text; version=")
    assert page.content.decode().endswith("# EOF\n")


@pytest.mark.django_db
def test_a_logged_in_browser_with_the_permission_reads_it_and_only_get_and_head_are_allowed(
    client: Client,
):
    assert client.head("/metrics").status_code == 401  # HEAD asks as GET does
    client.force_login(make_user("browser", "view_charger"))
    assert client.get("/metrics").status_code == 200
    probed = client.head("/metrics")
    assert probed.status_code == 200 and probed["Content-Type"].startswith("text/plain")
    assert client.post("/metrics").status_code == 405
    # With the CSRF check a real server makes: a 405 saying what is allowed, not Django's
    # HTML CSRF page (403) for a method that would change nothing anyway.
    checked = Client(enforce_csrf_checks=True)
    for answer in (checked.post("/metrics"), checked.delete("/metrics"), checked.put("/metrics")):
        assert "GET" in error_of(answer, 405)
        assert answer["Allow"] == "GET, HEAD"


@pytest.mark.django_db(transaction=True)
async def test_the_embedded_page_counts_a_session_the_charger_ran(csms):
    await sync_to_async(make_charger)("CP-WEB-METRICS", evses=1, csms_url=csms.url)
    _user, token = await sync_to_async(user_with_token)("prometheus", "view_charger")
    web = AsyncClient()

    async def scrape() -> Scrape:
        page = await web.get("/metrics", headers=bearer(token))
        assert page.status_code == 200, page.content
        return Scrape.parse(page.content.decode())

    service = Simulator(RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1))
    await service.start()
    try:
        charger = loaded(service, "CP-WEB-METRICS")
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot")
        await csms.wait_for("CP-WEB-METRICS", "StatusNotification", direction="out")
        before = await scrape()
        charger.plug_in(1, COMPACT, soc=40)
        assert await charger.present_id_tag(1, "TAG-WEB") == "Accepted"
        await csms.wait_for("CP-WEB-METRICS", "StartTransaction", direction="out")
        await wait_until(lambda: charger.evses[0].status.value == "Charging", message="Charging")
        during = await scrape()
        charger.stop_transaction(1)
        await csms.wait_for("CP-WEB-METRICS", "StopTransaction", direction="out")
        await wait_until(lambda: not charger.queue, message="the outbox to empty")
        after = await scrape()
    finally:
        await service.stop()
    assert during.value("chargesim_chargers", link="online", boot="Accepted") == 1
    assert during.value("chargesim_connectors", status="Charging") == 1
    added = after - before
    assert added.value(SENT, action="StartTransaction", result="accepted") == 1
    assert added.total(SENT, action="StopTransaction") == 1
    assert added.value("chargesim_ocpp_response_seconds_count", action="StartTransaction") == 1


@pytest.mark.slow
def test_runsimulator_serves_metrics_to_a_token_from_apitoken_create(tmp_path):
    port, csms_port = free_port(), free_port()
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        "--demo",
        "--demo-chargers",
        "2",
        "--demo-share",
        "0",
        "--no-demo-operations",  # no firmware-update reboot: the counts stay exact
        "--port",
        str(port),
        "--csms-port",
        str(csms_port),
    )
    try:
        wait_for_port(port, proc=sim.proc)
        sim.wait_for_output("fleet: 2/2 accepted")
        created = run_manage(tmp_path, "apitoken", "create", "--user", "admin", "--name", "prom")
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        url = f"http://127.0.0.1:{port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as refused:
            fetch(url)
        refused.value.close()  # the error holds the response's socket
        assert refused.value.code == 401
        status, _type, text = fetch(url, bearer(token))
        assert status == 200
        page = Scrape.parse(text)
        assert page.value("chargesim_chargers", link="online", boot="Accepted") == 2
        assert page.value(SENT, action="BootNotification", result="accepted") == 2
        assert token not in sim.output  # never logged
        sim.signal(signal.SIGTERM)
        assert sim.wait(30) == 0
    finally:
        sim.stop()
