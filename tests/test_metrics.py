"""The engine's Prometheus metrics, scraped from a worker's metrics port over HTTP while a
charger runs a session against the built-in CSMS over real sockets; parsed with
prometheus_client's own text parser. Counters are process-wide, so each test compares
the page after with the page before."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.exceptions import ChannelFull
from ocpp.v16 import call

from chargers.models import ConfigurationKey
from scripts.reachable import reachable
from simulator.contract import engine_here
from simulator.core.charge_point import CallFailed
from simulator.core.drops import DROPPED
from simulator.runtime import channel_layers
from simulator.runtime.channel_layers import (
    CountGroupDrops,
    CountingInMemoryChannelLayer,
    CountingRedisChannelLayer,
)
from simulator.runtime.events import EventPublisher
from simulator.runtime.lifecycle import RunOptions, Simulator
from simulator.runtime.metrics import FleetCollector, MetricsServerError, serve_http
from tests.cast import make_charger
from tests.engine import COMPACT, loaded, runtime_charger, wait_until
from tests.process import ManagePy, free_port, run_manage
from tests.scrape import Scrape, fetch

SENT = "chargesim_ocpp_calls_sent_total"
RECEIVED = "chargesim_ocpp_calls_received_total"
RESPONSE = "chargesim_ocpp_response_seconds"
REDIS_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379")


@pytest.fixture
async def metrics_url():
    port = free_port()
    stop = serve_http(port)
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        stop()


async def scrape(url: str) -> Scrape:
    # From a thread, as Prometheus is another process: the server's thread asks this
    # test's event loop to count the fleet, so the loop must stay free meanwhile.
    status, content_type, text = await asyncio.to_thread(fetch, url)
    assert status == 200 and content_type.startswith("text/plain")
    return Scrape.parse(text)


def settled(charger) -> bool:
    return not charger.queue and charger.outbox.in_flight is None


@pytest.mark.django_db(transaction=True)
async def test_a_session_is_counted_frame_by_frame_on_the_worker_port(csms, metrics_url):
    await sync_to_async(make_charger)("CP-METRICS", evses=2, csms_url=csms.url)
    service = Simulator(
        RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5),
        listener=EventPublisher(log_limit=4),
    )
    await service.start()
    try:
        charger = loaded(service, "CP-METRICS")
        await csms.wait_for("CP-METRICS", "StatusNotification", direction="out", message_type=3)
        await wait_until(lambda: settled(charger), message="boot messages answered")
        before = await scrape(metrics_url)
        assert before.value("chargesim_chargers", link="online", boot="Accepted") == 1
        assert before.value("chargesim_connectors", status="Available") == 2
        assert before.value("chargesim_connectors", status="Charging") == 0
        assert before.types[SENT.removesuffix("_total")] == "counter"
        assert before.types[RESPONSE] == "histogram"

        # The CSMS's own CALLs: one the charger accepts, one it does not know.
        changed = await csms.call(
            "CP-METRICS", call.ChangeConfiguration(key="MeterValueSampleInterval", value="1")
        )
        assert changed.status == "Accepted"
        unknown = await csms.send_raw("CP-METRICS", '[2, "m-1", "Frobnicate", {}]')
        await csms.wait_for("CP-METRICS", unique_id=unknown, direction="in", message_type=4)
        # A CALLERROR from the CSMS.
        csms.fail_actions["DataTransfer"] = "NotSupported"
        with pytest.raises(CallFailed):
            await charger.data_transfer("Vendor")

        mark = len(csms.log)
        charger.plug_in(1, COMPACT, soc=30)
        assert await charger.present_id_tag(1, "TAG-1") == "Accepted"
        await csms.wait_for("CP-METRICS", "StartTransaction", direction="out", message_type=3)
        await wait_until(lambda: charger.evses[0].status.value == "Charging", message="Charging")
        during = await scrape(metrics_url)
        assert during.value("chargesim_connectors", status="Charging") == 1
        assert during.value("chargesim_connectors", status="Available") == 1
        for _ in range(2):
            await csms.wait_for("CP-METRICS", "MeterValues", after=mark, message_type=2, timeout=10)
            mark = len(csms.log)
        charger.stop_transaction(1)
        await csms.wait_for("CP-METRICS", "StopTransaction", direction="out", message_type=3)
        await wait_until(lambda: settled(charger), message="the outbox to empty")
        after = await scrape(metrics_url)
    finally:
        await service.stop()

    meter_values = sum(
        1
        for e in csms.log
        if e.cp_id == "CP-METRICS" and e.action == "MeterValues" and e.message_type == 2
    )
    assert meter_values >= 2
    added = after - before
    assert added.value(SENT, action="Authorize", result="accepted") == 1
    assert added.value(SENT, action="StartTransaction", result="accepted") == 1
    assert added.value(SENT, action="MeterValues", result="ok") == meter_values
    assert added.total(SENT, action="StopTransaction") == 1
    assert added.value(SENT, action="DataTransfer", result="callerror") == 1
    assert added.value("chargesim_ocpp_callerrors_received_total", code="NotSupported") == 1
    assert added.value(RECEIVED, action="ChangeConfiguration", result="accepted") == 1
    assert added.value(RECEIVED, action="unknown", result="callerror") == 1
    assert added.value("chargesim_ocpp_callerrors_sent_total", code="NotImplemented") == 1
    # The response time of every answered CALL, in the histogram of its action.
    assert added.value(f"{RESPONSE}_count", action="StartTransaction") == 1
    assert added.value(f"{RESPONSE}_count", action="MeterValues") == meter_values
    assert added.value(f"{RESPONSE}_bucket", action="MeterValues", le="30.0") == meter_values
    assert added.value(f"{RESPONSE}_bucket", action="MeterValues", le="+Inf") == meter_values
    assert added.value(f"{RESPONSE}_sum", action="MeterValues") > 0
    assert added.value(f"{RESPONSE}_count", action="DataTransfer") == 1  # a CALLERROR too
    # The frame log of 4 frames per charger dropped the older ones, and said so.
    assert added.value("chargesim_dropped_events_total", reason="message_log") > 0
    assert after.value("chargesim_connectors", status="Charging") == 0
    assert after.value("chargesim_outbox_messages") == 0
    assert after.value("chargesim_outbox_oldest_age_seconds") == 0
    assert added.value("chargesim_tick_lag_seconds_count") > 0
    assert added.value("chargesim_tick_duration_seconds_count") > 0
    assert after.value("process_cpu_seconds_total") > 0  # prometheus_client's own collector


@pytest.mark.django_db(transaction=True)
async def test_timeouts_lost_calls_reconnects_and_a_waiting_outbox(csms, metrics_url):
    row = await sync_to_async(make_charger)("CP-SILENT", evses=1, csms_url=csms.url)
    await sync_to_async(ConfigurationKey.objects.filter(charger=row, key="MessageTimeout").update)(
        value="1"
    )
    service = Simulator(RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.3))
    await service.start()
    try:
        charger = loaded(service, "CP-SILENT")
        await csms.wait_for("CP-SILENT", "StatusNotification", direction="out", message_type=3)
        await wait_until(lambda: settled(charger), message="boot messages answered")
        before = await scrape(metrics_url)
        csms.respond = False
        with pytest.raises(CallFailed, match="Timeout"):
            await charger.data_transfer("Vendor")
        # A transaction message waits in the outbox while the CSMS is silent.
        charger.plug_in(1, COMPACT, soc=30)
        charger.start_transaction(1, "TAG-1")
        await csms.wait_for("CP-SILENT", "StartTransaction", message_type=2)
        await asyncio.sleep(0.2)
        waiting = await scrape(metrics_url)
        assert waiting.value("chargesim_outbox_messages") >= 1
        assert waiting.value("chargesim_outbox_oldest_age_seconds") >= 0.2
        # The connection drops while the StartTransaction waits: lost, then reconnected.
        connects = csms.connects["CP-SILENT"]
        await csms.disconnect("CP-SILENT")
        csms.respond = True
        await wait_until(lambda: csms.connects["CP-SILENT"] > connects, message="reconnect")
        await wait_until(lambda: settled(charger), timeout=10, message="the outbox to empty")
        after = await scrape(metrics_url)
        # A Reset reconnects after the charger's own close (its reboot), as a reboot from
        # the API or a disconnect does: not counted (it was, and they were not).
        boots = csms.counts["BootNotification"]
        assert (await csms.call("CP-SILENT", call.Reset(type="Soft"))).status == "Accepted"
        await wait_until(lambda: csms.counts["BootNotification"] > boots, message="the reboot")
        rebooted = await scrape(metrics_url)
    finally:
        await service.stop()
    added = after - before
    assert added.value(SENT, action="DataTransfer", result="timeout") == 1
    assert added.value(f"{RESPONSE}_count", action="DataTransfer") == 0  # no answer, no time
    assert added.value(SENT, action="StartTransaction", result="lost") == 1
    assert added.value(SENT, action="StartTransaction", result="accepted") == 1  # sent again
    assert added.value("chargesim_reconnects_total") == 1  # after the CSMS's close
    assert (rebooted - after).value("chargesim_reconnects_total") == 0


async def test_the_counting_channel_layer_counts_what_full_channels_refuse():
    layer = CountingInMemoryChannelLayer(capacity=1)
    channel = await layer.new_channel()
    await layer.group_add("watchers", channel)
    before = DROPPED["channel_layer_full"]
    await layer.send(channel, {"type": "a"})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "b"})
    await layer.group_send("watchers", {"type": "c"})  # swallowed by the layer, counted
    assert DROPPED["channel_layer_full"] - before == 2
    assert (await layer.receive(channel))["type"] == "a"
    await layer.flush()


@pytest.mark.redis
@pytest.mark.skipif(not reachable(REDIS_URL), reason=f"no Redis at {REDIS_URL}")
async def test_a_redis_group_send_that_full_channels_refuse_is_counted(monkeypatch):
    """channels-redis drops a group message for a full member inside Redis and only logs
    how many: the settings' filter on its logger counts them. Two layers, as two processes
    (a channel's capacity is its process's, which its channels share).

    CI counted 3 where 2 were made: logging configured a second time (dictConfig adds a
    logger's filters without removing the old ones) had attached the filter twice. The test
    attaches a second one itself, and counts only the drops made in its own task (the
    process-wide counter also takes those of tasks other tests leave running)."""
    mine: list[int] = []
    count_drop = channel_layers.dropped

    def recording(reason: str, count: int = 1) -> None:
        if reason == "channel_layer_full" and asyncio.current_task() is test_task:
            mine.append(count)
        count_drop(reason, count)

    test_task = asyncio.current_task()
    monkeypatch.setattr(channel_layers, "dropped", recording)
    channels_redis_log = logging.getLogger("channels_redis.core")
    second = CountGroupDrops()
    channels_redis_log.addFilter(second)
    prefix = f"chargesim-test-{uuid.uuid4().hex[:8]}"
    # As the settings: a read timeout longer than the layer's 5 s blocking receive.
    hosts = [{"address": REDIS_URL, "socket_timeout": 30}]
    busy = CountingRedisChannelLayer(hosts=hosts, capacity=1, prefix=prefix)
    idle = CountingRedisChannelLayer(hosts=hosts, capacity=1, prefix=prefix)
    try:
        full, roomy = await busy.new_channel(), await idle.new_channel()
        await busy.group_add("watchers", full)
        await idle.group_add("watchers", roomy)
        await busy.send(full, {"type": "a"})
        before = DROPPED["channel_layer_full"]
        with pytest.raises(ChannelFull):
            await busy.send(full, {"type": "b"})
        await busy.group_send("watchers", {"type": "c"})  # reaches `roomy` only
        assert mine == [1, 1]  # the refused send, then the group message's one full member
        assert DROPPED["channel_layer_full"] - before >= 2
        assert (await asyncio.wait_for(idle.receive(roomy), 10))["type"] == "c"
    finally:
        channels_redis_log.removeFilter(second)
        await busy.flush()
        for layer in (busy, idle):
            await layer.close_pools()


async def test_a_scrape_while_no_simulator_runs_shows_an_empty_fleet(metrics_url):
    page = await scrape(metrics_url)
    assert page.value("chargesim_chargers", link="online", boot="Accepted") == 0
    assert page.value("chargesim_connectors", status="Available") == 0
    # Every reason is on the page from the start, so a rate() over it needs no gap filling.
    assert ("chargesim_dropped_events_total", frozenset({("reason", "message_log")})) in (
        page.samples
    )


async def test_known_label_values_show_from_the_start_and_no_created_series(metrics_url):
    """A series born at its first increment hides that first event from rate(); the
    `_created` series came with some counters and not others, doubling the page."""
    _, _, text = await asyncio.to_thread(fetch, metrics_url)
    page = Scrape.parse(text)
    for name in (
        "chargesim_ocpp_callerrors_received_total",
        "chargesim_ocpp_callerrors_sent_total",
    ):
        for code in ("FormationViolation", "InternalError", "NotSupported", "other"):
            assert (name, frozenset({("code", code)})) in page.samples, (name, code)
    for outcome in ("started", "turned_away", "refused", "failed"):
        labels = frozenset({("outcome", outcome)})
        assert ("chargesim_traffic_arrivals_total", labels) in page.samples
    for kind in ("left", "stayed"):
        assert ("chargesim_traffic_departures_total", frozenset({("kind", kind)})) in page.samples
    assert not [line for line in text.splitlines() if "_created" in line.split(" ")[0]]


async def test_a_metrics_port_in_use_is_refused_clearly():
    port = free_port()
    stop = serve_http(port)
    try:
        with pytest.raises(MetricsServerError, match=rf"--metrics-port {port}: cannot listen"):
            serve_http(port)
    finally:
        stop()


@pytest.mark.slow
def test_runsimulator_serves_a_workers_metrics_on_its_port(tmp_path):
    port, csms_port = free_port(), free_port()
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        "--no-web",
        "--demo",
        "--demo-chargers",
        "2",
        "--demo-share",
        "0",
        "--no-demo-operations",  # no firmware-update reboot: the counts stay exact
        "--csms-port",
        str(csms_port),
        "--metrics-port",
        str(port),
    )
    try:
        sim.wait_for_output(f"Metrics on http://127.0.0.1:{port}/metrics")
        sim.wait_for_output("fleet: 2/2 accepted")
        _status, _type, text = fetch(f"http://127.0.0.1:{port}/metrics")
        page = Scrape.parse(text)
        assert page.value("chargesim_chargers", link="online", boot="Accepted") == 2
        assert page.value(SENT, action="BootNotification", result="accepted") == 2
        assert page.value("chargesim_connectors", status="Available") == 4
        sim.signal(signal.SIGTERM)
        assert sim.wait(30) == 0
    finally:
        sim.stop()


@pytest.mark.slow
def test_runsimulator_refuses_a_metrics_port_in_use(tmp_path):
    port = free_port()
    stop = serve_http(port)
    try:
        result = run_manage(tmp_path, "runsimulator", "--no-web", "--metrics-port", str(port))
    finally:
        stop()
    assert result.returncode != 0
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_manage(tmp_path, "runsimulator", "--help")
    assert "--metrics-port PORT" in result.stdout and "--metrics-bind ADDRESS" in result.stdout


def test_a_fleet_whose_event_loop_has_closed_is_not_counted():
    """A simulator that ended without `stop()` (its loop torn down) leaves its store attached
    to the process's collector; its chargers run nowhere, so a later scrape ignores them."""
    collector = FleetCollector()
    loop = asyncio.new_event_loop()
    charger = runtime_charger("METRICS-GONE-1", "ws://127.0.0.1:1/ocpp")
    collector.attach([charger], loop)

    def chargers_counted() -> float:
        (family,) = [m for m in collector.collect() if m.name == "chargesim_chargers"]
        return sum(sample.value for sample in family.samples)

    assert chargers_counted() == 1  # a loop not running yet (loading) is counted on the spot
    loop.close()
    assert chargers_counted() == 0


def test_the_readme_names_every_reason_a_drop_is_counted_under():
    """Four reasons were counted that its metrics table did not list."""
    from pathlib import Path

    from simulator.core.drops import REASONS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if "`chargesim_dropped_events_total`" in line]
    assert [reason for reason in REASONS if f"`{reason}`" not in row] == []


def test_a_fleet_whose_event_loop_has_closed_is_no_engine_of_this_process(monkeypatch):
    """The web side's /metrics shows the engine's families only while one runs here: a
    simulator that ended without `stop()` (its loop torn down) runs nowhere."""
    monkeypatch.setattr(engine_here, "_fleets", {})
    loop = asyncio.new_event_loop()
    store = object()
    engine_here.announce(store, loop)
    assert engine_here.running()
    loop.close()
    assert not engine_here.running()
    other = asyncio.new_event_loop()
    try:
        engine_here.announce(store, other)
        engine_here.announce(store, None)  # stopped
        assert not engine_here.running()
    finally:
        other.close()
