"""Outages: transaction messages queue while offline and arrive once, in order, after."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings
from ocpp.v16 import call
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from chargers.models import OutboxMessage
from simulator.core.charge_point import ActionError, BootState, Charger, LinkState, Listener
from simulator.core.clock import parse_iso
from simulator.core.drops import DROPPED
from simulator.core.outbox import MessageQueue, Outbox, Outgoing
from simulator.core.protocol import SampleContext, StopReason
from simulator.core.timers import LoopClock
from simulator.csms import CentralSystem
from simulator.ocpp16.client import Backoff, run_connection
from simulator.runtime.lifecycle import RunOptions, Simulator
from simulator.runtime.meter_engine import MeterEngine
from tests.cast import make_charger
from tests.engine import COMPACT, connected, loaded, runtime_charger, wait_until
from tests.workers import running


def tx_messages(csms, cp_id):
    return [
        e
        for e in csms.log
        if e.cp_id == cp_id
        and e.direction == "in"
        and e.message_type == 2
        and e.action in ("StartTransaction", "StopTransaction", "MeterValues")
    ]


def register(entry):
    if entry.action == "StartTransaction":
        return float(entry.payload["meterStart"])
    if entry.action == "StopTransaction":
        return float(entry.payload["meterStop"])
    values = [
        float(sv["value"])
        for mv in entry.payload["meterValue"]
        for sv in mv["sampledValue"]
        if sv["measurand"] == "Energy.Active.Import.Register"
    ]
    return values[0]


async def test_an_outage_queues_transaction_messages_and_delivers_them_in_order(csms):
    port = csms.port
    chargers = [
        runtime_charger(
            f"OFF-{n}",
            csms.url,
            evses=1,
            config={
                "MeterValueSampleInterval": "1",
                "MeterValuesSampledData": "Energy.Active.Import.Register",
            },
        )
        for n in (1, 2)
    ]
    engine = MeterEngine(chargers, tick_seconds=0.1)
    ticking = asyncio.create_task(engine.run())
    try:
        async with connected(chargers[0]), connected(chargers[1]):
            for charger in chargers:
                charger.plug_in(1, COMPACT, soc=20)
                await charger.present_id_tag(1, "T")
                await wait_until(
                    lambda c=charger: c.evse(1).transaction_id is not None, message="tx id"
                )
            ids = [c.evse(1).transaction_id for c in chargers]
            before = {c.id: len(tx_messages(csms, c.id)) for c in chargers}
            old_log = list(csms.log)
            await csms.stop()  # the CSMS goes away ...
            await wait_until(
                lambda: all(c.link is not LinkState.ONLINE for c in chargers), message="offline"
            )
            await asyncio.sleep(2.5)  # ... while MeterValues are produced ...
            chargers[1].stop_transaction(1, StopReason.LOCAL)  # ... and a StopTransaction
            queued = {c.id: len(c.queue) for c in chargers}
            assert all(n >= 2 for n in queued.values()), queued
            back = CentralSystem()
            await back.start(host="127.0.0.1", port=port)  # ... and comes back
            try:
                await back.wait_for("OFF-2", "StopTransaction", timeout=10)
                for charger in chargers:
                    await wait_until(
                        lambda c=charger: not c.queue,
                        timeout=10,
                        message=f"{charger.id} queue drained",
                    )
                for charger, tx_id in zip(chargers, ids, strict=True):
                    after = tx_messages(back, charger.id)
                    assert len(after) >= queued[charger.id]
                    assert all(e.payload.get("transactionId", tx_id) == tx_id for e in after)
                    everything = [
                        e
                        for e in old_log
                        if e.cp_id == charger.id
                        and e.direction == "in"
                        and e.message_type == 2
                        and e.action in ("StartTransaction", "MeterValues", "StopTransaction")
                    ][: before[charger.id]]
                    everything += after
                    keys = [(e.action, str(e.payload)) for e in everything]
                    assert len(keys) == len(set(keys)), "a message arrived twice"
                    values = [register(e) for e in everything]
                    assert values == sorted(values), values
                    # A reconnect is not a reboot.
                    own = [
                        e.action
                        for e in back.log
                        if e.cp_id == charger.id and e.direction == "in" and e.message_type == 2
                    ]
                    assert "BootNotification" not in own
                    assert own[0] in ("StatusNotification", "MeterValues", "StopTransaction")
            finally:
                await back.stop()
    finally:
        ticking.cancel()


async def test_a_start_while_the_csms_is_down_gets_its_real_id_after(csms):
    port = csms.port
    charger = runtime_charger(
        "OFF-ST",
        csms.url,
        evses=1,
        config={"MeterValueSampleInterval": "1", "AllowOfflineTxForUnknownId": "true"},
    )
    engine = MeterEngine([charger], tick_seconds=0.1)
    ticking = asyncio.create_task(engine.run())
    try:
        async with connected(charger):
            await csms.stop()
            await wait_until(lambda: not charger.online, message="offline")
            charger.plug_in(1, COMPACT, soc=20)
            assert await charger.present_id_tag(1, "UNKNOWN") == "Accepted"
            await asyncio.sleep(1.5)
            assert [i.action for i in charger.queue][:2] == ["StartTransaction", "MeterValues"]
            assert charger.transactions[1].transaction_id is None
            back = CentralSystem()
            await back.start(host="127.0.0.1", port=port)
            try:
                start = await back.wait_for("OFF-ST", "StartTransaction", timeout=10)
                meter = await back.wait_for("OFF-ST", "MeterValues", timeout=10)
                real = back.transactions[max(back.transactions)].transaction_id
                assert meter.payload["transactionId"] == real
                assert start.payload["idTag"] == "UNKNOWN"
            finally:
                await back.stop()
    finally:
        ticking.cancel()


async def test_messages_of_a_transaction_whose_start_was_dropped_carry_minus_one(csms):
    csms.fail_actions = {"StartTransaction": "InternalError"}
    charger = runtime_charger(
        "OFF-M1",
        csms.url,
        evses=1,
        config={"TransactionMessageAttempts": "1", "MeterValueSampleInterval": "1"},
    )
    engine = MeterEngine([charger], tick_seconds=0.1)
    ticking = asyncio.create_task(engine.run())
    try:
        async with connected(charger):
            charger.plug_in(1, COMPACT, soc=20)
            await charger.present_id_tag(1, "T")
            meter = await csms.wait_for("OFF-M1", "MeterValues", timeout=5)
    finally:
        ticking.cancel()
    assert meter.payload["transactionId"] == -1


async def test_a_dropped_connection_fails_the_pending_call_at_once(csms):
    charger = runtime_charger("OFF-DROP", csms.url, evses=1)  # MessageTimeout 30 s
    async with connected(charger):
        charger.plug_in(1, COMPACT, soc=20)
        await wait_until(lambda: not charger.queue, message="Preparing reported")
        csms.respond = False
        charger.start_transaction(1, "T")
        await csms.wait_for("OFF-DROP", "StartTransaction")
        csms.respond = True
        await csms.disconnect("OFF-DROP")
        # Not 30 s later: the call fails with the connection, and the message is sent again
        # on the next connection.
        await wait_until(
            lambda: (
                len([e for e in csms.log if e.action == "StartTransaction" and e.message_type == 2])
                == 2
            ),
            timeout=8,
            message="StartTransaction sent again after reconnect",
        )
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="tx id")


async def test_cut_network_keeps_the_charger_offline_then_reconnects_without_a_boot(csms):
    charger = runtime_charger("OFF-CUT", csms.url, evses=1)
    async with connected(charger):
        mark = len(csms.log)
        with pytest.raises(ActionError):
            charger.cut_network(0)
        charger.cut_network(1.5)
        await csms.wait_disconnected("OFF-CUT")
        await asyncio.sleep(0.5)
        assert not charger.online
        assert "network cut" in charger.link_error
        await wait_until(lambda: charger.online, timeout=6, message="back online")
        await csms.wait_for("OFF-CUT", "StatusNotification", after=mark)
    assert charger.boot is BootState.ACCEPTED
    assert not [e for e in csms.log[mark:] if e.action == "BootNotification"]


async def test_refused_connections_are_retried_with_growing_capped_backoff(csms):
    csms.require_known = True  # unknown charge point ids get HTTP 404
    charger = runtime_charger("OFF-404", csms.url, evses=1)
    async with connected(charger, booted=False):
        await wait_until(
            lambda: len([r for r in csms.refusals if r.cp_id == "OFF-404"]) >= 2,
            timeout=6,
            message="a second attempt after the 404",
        )
        assert charger.link_error == "CSMS does not know this charge point (404)"
        csms.passwords["OFF-404"] = ""
        csms.require_known = False
        csms.passwords.clear()
        await wait_until(
            lambda: charger.boot is BootState.ACCEPTED,
            timeout=6,
            message="accepted once the CSMS knows it",
        )


def test_backoff_grows_with_jitter_up_to_the_cap():
    backoff = Backoff(base=1.0, cap=8.0)
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0


class Reconnects(Listener):
    def __init__(self) -> None:
        self.attempts: list[int] = []

    def on_connection(self, charger: Charger, event: str, detail: dict[str, Any]) -> None:
        if event == "reconnecting":
            self.attempts.append(detail["attempt"])


async def test_a_csms_that_drops_every_connection_at_once_is_retried_with_growing_backoff():
    """QA: a CSMS that accepts the WebSocket and closes it at once (crash-looping behind
    its proxy, or refusing the charger after the handshake) was retried every 0.5-1 s for
    ever: the backoff was reset as soon as a socket opened, before the connection had been
    any use. A fleet of chargers then hammered the CSMS at once per second each."""

    async def drop(websocket: ServerConnection) -> None:
        await websocket.close(1011, "restarting")

    async with serve(
        drop, "127.0.0.1", 0, compression=None, subprotocols=[Subprotocol("ocpp1.6")]
    ) as server:
        port = server.sockets[0].getsockname()[1]
        events = Reconnects()
        charger = runtime_charger("OFF-FLAP", f"ws://127.0.0.1:{port}", evses=1, listener=events)
        task = asyncio.create_task(run_connection(charger, reconnect_cap=0.05))
        try:
            await wait_until(lambda: len(events.attempts) >= 4, message="four reconnects")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            charger.cancel_timers()
    # Each failed connection counts as a failed attempt: the delays grow (up to the cap).
    assert events.attempts[:4] == [1, 2, 3, 4]


async def test_a_connection_the_csms_answered_on_starts_the_backoff_again(csms):
    events = Reconnects()
    charger = runtime_charger("OFF-USED", csms.url, evses=1, listener=events)
    async with connected(charger):
        # The boot's statuses answered first: one arriving after the mark would pass for the
        # reconnected charger's.
        await wait_until(lambda: not charger.queue, message="the boot's statuses answered")
        for n in (1, 2):
            mark = len(csms.log)
            await csms.disconnect("OFF-USED")
            await wait_until(lambda n=n: len(events.attempts) >= n, message="a reconnect")
            await wait_until(lambda n=n: csms.connects["OFF-USED"] == n + 1, message="connected")
            await csms.wait_for("OFF-USED", "StatusNotification", after=mark)
            await wait_until(lambda: not charger.queue, message="its statuses answered")
        await csms.disconnect("OFF-USED")
        await wait_until(lambda: len(events.attempts) >= 3, message="a third reconnect")
    # The first connection (booted) and the second (statuses answered) were of use.
    assert events.attempts[:3] == [1, 1, 1]


async def test_an_unreachable_csms_is_reported_in_plain_words():
    charger = runtime_charger("OFF-NONE", "ws://127.0.0.1:9", evses=1)
    async with connected(charger, booted=False):
        await wait_until(lambda: charger.link_error != "", message="an error")
    assert charger.link_error == "connection refused"
    assert calls_nothing(charger)


def calls_nothing(charger):
    return charger.boot is BootState.NONE


async def test_a_new_call_waits_behind_unconfirmed_transaction_messages(csms):
    charger = runtime_charger("OFF-ORD", csms.url, evses=1)
    async with connected(charger):
        await csms.call(
            "OFF-ORD", call.ChangeConfiguration(key="MeterValueSampleInterval", value="0")
        )
        await csms.stop()
        await wait_until(lambda: not charger.online, message="offline")
        charger.plug_in(1, COMPACT, soc=20)
        charger.start_transaction(1, "A")
        charger.stop_transaction(1, StopReason.LOCAL)
        assert [i.action for i in charger.queue] == ["StartTransaction", "StopTransaction"]
        assert [i.seq for i in charger.queue] == [1, 2]


async def test_clock_aligned_samples_of_an_outage_arrive_after_it_in_timestamp_order(csms):
    charger = runtime_charger(
        "OFF-CLK",
        csms.url,
        evses=1,
        config={
            "ClockAlignedDataInterval": "1",
            "MeterValuesAlignedData": "Energy.Active.Import.Register",
            "MeterValueSampleInterval": "1",
            "MeterValuesSampledData": "Energy.Active.Import.Register",
        },
    )
    engine = MeterEngine([charger], tick_seconds=0.1)
    ticking = asyncio.create_task(engine.run())
    try:
        async with connected(charger):
            charger.plug_in(1, COMPACT, soc=20)
            await charger.present_id_tag(1, "T")
            await wait_until(lambda: charger.evse(1).transaction_id is not None, message="tx id")
            charger.cut_network(2.5)
            await wait_until(lambda: not charger.online, message="offline")
            cut = datetime.now(UTC)
            await wait_until(lambda: charger.online, timeout=8, message="back online")
            back = datetime.now(UTC)
            await wait_until(lambda: not charger.queue, message="queue drained")
            charger.stop_transaction(1, StopReason.LOCAL)
            await csms.wait_for("OFF-CLK", "StopTransaction")
    finally:
        ticking.cancel()
    messages = tx_messages(csms, "OFF-CLK")
    start = parse_iso(messages[0].payload["timestamp"])
    clock = [
        e
        for e in messages
        if e.action == "MeterValues"
        and e.payload["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"
    ]
    offline = [e for e in clock if cut < parse_iso(e.payload["meterValue"][0]["timestamp"]) < back]
    assert len(offline) >= 2, "the clock-aligned samples of the outage were lost"
    tx_id = csms.transactions[max(csms.transactions)].transaction_id
    assert all(e.payload["transactionId"] == tx_id for e in clock)
    stamps = [
        parse_iso(
            e.payload["meterValue"][0]["timestamp"]
            if e.action == "MeterValues"
            else e.payload["timestamp"]
        )
        for e in messages
    ]
    assert stamps == sorted(stamps), "delivered out of timestamp order"
    assert all(s >= start for s in stamps)
    for e in clock:
        assert e.payload["meterValue"][0]["timestamp"].endswith(".000Z")  # at its boundary
    values = [register(e) for e in messages]
    assert values == sorted(values), values


class _SlowSink:
    """A durability sink whose group commit has not happened yet."""

    def outbox_added(self, item: Outgoing) -> None:
        pass

    def outbox_removed(self, item: Outgoing) -> None:
        pass

    def held_for_state(self, item: Outgoing) -> None:
        pass


def test_nothing_overtakes_a_transaction_message_waiting_to_be_durable():
    # StatusNotification(Charging) is queued a moment after its session's StartTransaction,
    # which waits for the writer's group commit: it used to go first.
    queue = MessageQueue(_SlowSink())
    start = Outgoing("StartTransaction", {}, transactional=True)
    queue.append(start)
    status = Outgoing("StatusNotification", {"status": "Charging"})
    queue.append(status)
    assert queue.next_ready(now=0.0) is None  # waiting for the commit, in order
    start.durable = True  # the commit
    assert queue.next_ready(now=0.0) is start


def test_a_transaction_message_waiting_to_retry_lets_a_status_go_ahead():
    queue = MessageQueue()
    stop = Outgoing("StopTransaction", {}, transactional=True, not_before=60.0)
    queue.append(stop)
    status = Outgoing("StatusNotification", {"status": "Available"})
    queue.append(status)
    assert queue.next_ready(now=0.0) is status


def test_a_status_does_not_overtake_a_transaction_message_never_sent():
    # Connector 1's StartTransaction failed and waits for its retry; connector 2's session
    # opened meanwhile. Its StatusNotification(Charging) may pass the retry, not its own
    # StartTransaction, which has not been sent yet (found by test_message_order_calls).
    queue = MessageQueue()
    first = Outgoing("StartTransaction", {"connectorId": 1}, transactional=True)
    queue.append(first)
    assert queue.retry_later(first, max_attempts=3, interval=10, now=0.0)
    second = Outgoing("StartTransaction", {"connectorId": 2}, transactional=True)
    queue.append(second)
    status = Outgoing("StatusNotification", {"connectorId": 2, "status": "Charging"})
    queue.append(status)
    assert queue.next_ready(now=5.0) is None  # nothing passes `second`, never sent
    assert queue.next_ready(now=10.0) is first  # the retry falls due


def context_of(entry) -> str:
    return entry.payload["meterValue"][0]["sampledValue"][0]["context"]


def minute_of(entry) -> int:
    return int(entry.payload["meterValue"][0]["timestamp"][14:16])


async def test_a_long_backlog_drops_every_second_periodic_sample_and_keeps_the_rest(csms):
    """A charger's storage is finite (CHARGESIM_OFFLINE_QUEUE_LIMIT): a long outage thins
    its periodic samples, each time the queue reaches the limit, so the outage keeps its
    shape at a coarser grain; Start, Stop and clock-aligned samples all arrive."""
    port = csms.port
    measurands = ["Energy.Active.Import.Register"]
    charger = runtime_charger(
        "OFF-THIN", csms.url, evses=1, backlog_limit=10, config={"MeterValueSampleInterval": "0"}
    )
    thinned_before = DROPPED["outbox_thinned"]
    async with connected(charger):
        charger.plug_in(1, COMPACT, soc=20)
        await charger.present_id_tag(1, "T")
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="tx id")
        await csms.stop()
        await wait_until(lambda: not charger.online, message="offline")
        for minute in range(40):  # a sample a minute, as the meter engine sends them
            stamp = f"2026-12-07T10:{minute:02d}:00.000Z"
            charger.send_meter_values(1, SampleContext.PERIODIC, measurands, stamp)
            if minute % 15 == 0:
                charger.send_meter_values(1, SampleContext.CLOCK, measurands, stamp)
            assert len(charger.queue) < 10
        charger.stop_transaction(1, StopReason.LOCAL)
        back = CentralSystem()
        await back.start(host="127.0.0.1", port=port)
        try:
            await back.wait_for("OFF-THIN", "StopTransaction", timeout=10)
            await wait_until(lambda: not charger.queue, message="queue drained")
        finally:
            await back.stop()
    delivered = tx_messages(back, "OFF-THIN")
    assert delivered[-1].action == "StopTransaction"
    samples = [e for e in delivered if e.action == "MeterValues"]
    assert [minute_of(e) for e in samples if context_of(e) == "Sample.Clock"] == [0, 15, 30]
    periodic = [minute_of(e) for e in samples if context_of(e) == "Sample.Periodic"]
    thinned = DROPPED["outbox_thinned"] - thinned_before
    assert len(periodic) + thinned == 40 and thinned >= 30
    # In order, the first kept, and the older part of the outage thinner than the newer.
    assert periodic == sorted(periodic) and periodic[0] == 0
    gaps = [b - a for a, b in pairwise(periodic)]
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > gaps[-1], periodic


class _Rows:
    """A durability sink that keeps the rows a store would hold."""

    def __init__(self) -> None:
        self.rows: set[int] = set()

    def outbox_added(self, item: Outgoing) -> None:
        self.rows.add(item.seq)

    def outbox_removed(self, item: Outgoing) -> None:
        self.rows.discard(item.seq)

    def held_for_state(self, item: Outgoing) -> None:
        pass


def test_a_thinned_sample_leaves_no_row_and_a_message_tried_or_in_flight_is_kept():
    outbox = Outbox("THIN", LoopClock(), lambda: None, lambda: False, lambda: (3, 10), _as_is, 6)
    rows = _Rows()
    outbox.queue.sink = rows
    start = Outgoing("StartTransaction", {}, transactional=True)
    outbox.enqueue(start)
    samples = [Outgoing("MeterValues", {"n": n}, transactional=True) for n in range(5)]
    for item in samples:
        item.thinnable = True
    tried, flying = samples[1], samples[3]
    tried.attempts = 1
    outbox.in_flight = flying
    for item in samples:
        outbox.enqueue(item)  # the sixth message queued is the limit: every second goes
    kept = list(outbox.queue)
    # Of the thinnable ones (0, 2, 4: 1 was tried, 3 is in flight) the second is gone.
    assert kept == [start, samples[0], tried, flying, samples[4]]
    assert rows.rows == {item.seq for item in kept}


def _as_is(action: str, payload: Any, tx: Any) -> Any:
    return payload


@pytest.mark.django_db(transaction=True)
async def test_periodic_samples_restored_after_a_restart_are_thinned_too(csms):
    """The stored row keeps no sample context: the periodic samples of an outage put back
    after a restart were never thinned, so a long outage across a restart grew to about
    twice the bound. They are known again by their payload."""
    await database_sync_to_async(make_charger)("OFF-RST", evses=1, csms_url=csms.url)
    measurands = ["Energy.Active.Import.Register"]
    with override_settings(CHARGESIM_OFFLINE_QUEUE_LIMIT=0):  # no bound before the restart
        async with running("OFF-RST") as charger:
            charger.config["MeterValueSampleInterval"] = "0"  # only the samples below
            charger.plug_in(1, COMPACT, soc=20)
            await charger.present_id_tag(1, "T")
            await wait_until(lambda: not charger.queue, message="the start answered")
            await csms.stop()
            await wait_until(lambda: not charger.online, message="offline")
            for minute in range(12):
                stamp = f"2026-12-07T10:{minute:02d}:00.000Z"
                charger.send_meter_values(1, SampleContext.PERIODIC, measurands, stamp)
            charger.send_meter_values(1, SampleContext.CLOCK, measurands, stamp)
            await wait_until(lambda: all(i.durable for i in charger.queue), message="stored")
    assert await stored_actions("OFF-RST") == ["MeterValues"] * 13

    thinned_before = DROPPED["outbox_thinned"]
    with override_settings(CHARGESIM_OFFLINE_QUEUE_LIMIT=8):
        service = Simulator(RunOptions(checkpoint_seconds=0.1, only_ids=["OFF-RST"]))
        await service.start()  # the CSMS is still away: the queue stays
        try:
            charger = loaded(service, "OFF-RST")
            # The interrupted session's StopTransaction reaches the bound: every second
            # restored periodic sample goes; the clock-aligned one and the Stop stay.
            assert [i.action for i in charger.queue][-1] == "StopTransaction"
            thinned = DROPPED["outbox_thinned"] - thinned_before
            assert thinned == 6
            contexts = [
                item.payload["meterValue"][0]["sampledValue"][0].get("context")
                for item in charger.queue
                if item.action == "MeterValues"
            ]
            assert contexts.count("Sample.Clock") == 1 and len(contexts) == 7
        finally:
            await service.stop()
    assert await stored_actions("OFF-RST") == ["MeterValues"] * 7 + ["StopTransaction"]


@database_sync_to_async
def stored_actions(cp_id: str) -> list[str]:
    rows = OutboxMessage.objects.filter(charger__charge_point_id=cp_id).order_by("seq")
    return [row.action for row in rows]
