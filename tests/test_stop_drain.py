"""A graceful stop lets the messages in progress be answered before the connections close
(simulator/runtime/draining.py), against the built-in CSMS over a real WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chargers.models import OutboxMessage
from locations.models import ArrivalProfile
from simulator.core.charge_point import Charger
from simulator.core.outbox import Outgoing
from simulator.runtime import draining
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.cast import make_charger, make_location
from tests.engine import (
    COMPACT,
    boot_reports_answered,
    connected,
    loaded,
    register_now,
    runtime_charger,
    started,
    wait_until,
)


def stops_seen(csms, cp_id: str) -> list[int]:
    """The message types of every StopTransaction frame the CSMS saw or sent for cp_id."""
    return [
        entry.message_type
        for entry in csms.log
        if entry.cp_id == cp_id and entry.action == "StopTransaction"
    ]


def outbox_actions(cp_id: str) -> list[str]:
    return list(
        OutboxMessage.objects.filter(charger__charge_point_id=cp_id).values_list(
            "action", flat=True
        )
    )


async def charging(csms, cp_id: str):
    await database_sync_to_async(make_charger)(cp_id, evses=1, csms_url=csms.url, max_power_kw=22)
    service = await started(cp_id)
    charger = loaded(service, cp_id)
    charger.plug_in(1, COMPACT, soc=20)
    assert await charger.present_id_tag(1, "TAG1") == "Accepted"
    await wait_until(lambda: register_now(charger) > 0, message="energy flowing")
    # And what the start sent answered (StartTransaction, its StatusNotification): energy
    # flows from the start's instant, before those answers, and a test that then stops its
    # CSMS answering would find the StopTransaction queued behind them.
    await boot_reports_answered(charger)
    return service, charger


@pytest.mark.django_db(transaction=True)
async def test_a_stop_transaction_made_as_the_worker_stops_reaches_the_csms(csms, caplog):
    """Ended in the same instant as the stop (a driver leaving as the user presses Ctrl-C):
    the StopTransaction is made durable, sent and answered before the connection closes,
    and nothing is left in the outbox for the next start."""
    service, charger = await charging(csms, "CP-DRAIN")
    caplog.set_level(logging.INFO, logger="simulator.runtime.lifecycle")
    charger.stop_transaction(1)
    await service.stop()
    assert stops_seen(csms, "CP-DRAIN") == [2, 3]  # the CALL, and the CSMS's CALLRESULT
    assert await database_sync_to_async(outbox_actions)("CP-DRAIN") == []
    assert "messages in progress were answered" in caplog.text
    assert "not answered" not in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_a_csms_that_does_not_answer_holds_the_stop_only_briefly(csms, caplog):
    """The wait is bounded, says what it left, and the transaction message stays durable
    for the next start."""
    service, charger = await charging(csms, "CP-MUTE")
    csms.respond = False
    charger.stop_transaction(1)
    await service.stop(timeout=2.0)
    assert stops_seen(csms, "CP-MUTE") == [2]  # sent, never answered
    assert await database_sync_to_async(outbox_actions)("CP-MUTE") == ["StopTransaction"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not answered within 0.4 s (CP-MUTE)" in text for text in warned), warned


@pytest.mark.django_db(transaction=True)
async def test_a_second_signal_skips_the_wait(csms):
    service, charger = await charging(csms, "CP-FORCE")
    service.handle_exit()
    service.handle_exit()  # the second: stop now
    charger.stop_transaction(1)
    await service.stop()
    assert stops_seen(csms, "CP-FORCE") == []
    assert await database_sync_to_async(outbox_actions)("CP-FORCE") == ["StopTransaction"]


async def test_what_a_stop_waits_for_ends_before_a_retry_it_cannot_live_to_see(csms):
    """A transaction message that waits for a retry later than the wait's bound, and what
    is queued behind it, is not waited for; what is before it is."""
    charger = runtime_charger("CP-RETRY", csms.url, evses=1)
    async with connected(charger):
        await boot_reports_answered(charger)
        csms.respond = False  # nothing is answered: the queue stays as built
        before = Outgoing("DataTransfer", {"vendorId": "before"})
        retry = Outgoing("DataTransfer", {"vendorId": "retry"}, transactional=True)
        retry.not_before = charger.clock.monotonic() + 60
        behind = Outgoing("DataTransfer", {"vendorId": "behind"})
        for item in (before, retry, behind):
            charger.outbox.queue.append(item)
        assert charger.outbox.finishing(5.0) == [before]
        assert charger.outbox.finishing(120.0) == [before, retry, behind]
        drained = await draining.drain([charger], 0.1, asyncio.Event())
        assert (drained.finished, drained.left, drained.chargers_left) == (0, 1, ("CP-RETRY",))


async def test_a_charger_that_cannot_send_is_not_waited_for(csms):
    charger = runtime_charger("CP-OFF", csms.url, evses=1)
    charger.outbox.queue.append(Outgoing("DataTransfer", {"vendorId": "x"}))
    assert charger.outbox.finishing(5.0) == []  # never connected
    drained = await draining.drain([charger], 5.0, asyncio.Event())
    assert drained == draining.Drained(0, 0, ())


@contextlib.asynccontextmanager
async def one_unanswered(csms, cp_id: str) -> AsyncIterator[Charger]:
    """A connected charger with one message sent that its CSMS will never answer."""
    charger = runtime_charger(cp_id, csms.url, evses=1)
    async with connected(charger):
        await boot_reports_answered(charger)
        csms.respond = False
        charger.outbox.queue.append(Outgoing("DataTransfer", {"vendorId": "x"}))
        charger.outbox.wake()
        yield charger


async def test_a_charger_that_goes_offline_during_the_wait_is_given_up_on(csms):
    async with one_unanswered(csms, "CP-GONE") as charger:
        waiting = asyncio.ensure_future(draining.drain([charger], 30.0, asyncio.Event()))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await csms.disconnect("CP-GONE")
        drained = await asyncio.wait_for(waiting, 10)
    assert (drained.finished, drained.left) == (0, 1)


async def test_a_second_signal_ends_the_wait_at_once(csms):
    async with one_unanswered(csms, "CP-SIG") as charger:
        forced = asyncio.Event()
        waiting = asyncio.ensure_future(draining.drain([charger], 30.0, forced))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        forced.set()
        drained = await asyncio.wait_for(waiting, 10)
    assert (drained.finished, drained.left) == (0, 1)


@pytest.mark.django_db(transaction=True)
async def test_the_simulated_drivers_have_stopped_when_the_wait_begins(csms, monkeypatch):
    """A driver leaving during the wait would make a StopTransaction it does not wait for:
    the background traffic (as `runsimulator --traffic` starts it) has ended before the
    wait takes stock."""

    def site() -> None:
        location = make_location("Drain Site", time_zone="UTC")
        make_charger("CP-TRAFFIC", location=location, evses=2, csms_url=csms.url)
        ArrivalProfile.objects.create(location=location, hourly_arrivals=[60.0] * 24)

    await database_sync_to_async(site)()
    service = Simulator(
        RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, traffic=True, traffic_speed=600.0)
    )
    await service.startup()
    await wait_until(lambda: service.traffic is not None and service.traffic.tasks())
    assert service.traffic is not None
    drivers = [*service.traffic.tasks(), *service._drivers]
    assert [t.get_name() for t in service._drivers] == ["traffic"]
    seen: list[bool] = []

    async def taking_stock(*args: Any) -> draining.Drained:
        seen.extend(task.done() for task in drivers)
        return await draining.drain(*args)

    monkeypatch.setattr("simulator.runtime.lifecycle.drain", taking_stock)
    await service.stop()
    assert len(seen) >= 2 and all(seen), seen


@pytest.mark.django_db(transaction=True)
async def test_a_driver_is_halted_before_the_wait_whatever_its_name(monkeypatch):
    """What marks a driver is how it was spawned, not its name; the simulator's other
    tasks (the meter, the checkpoints) still run during the wait."""
    service = Simulator(RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1))
    await service.start(connect=False)

    async def forever() -> None:
        await asyncio.Event().wait()

    driver = service.spawn(forever(), "fleet-operator-script", driver=True)
    other = service.spawn(forever(), "traffic")
    seen: list[tuple[bool, bool]] = []

    async def taking_stock(*args: Any) -> draining.Drained:
        seen.append((driver.done(), other.done()))
        return await draining.drain(*args)

    monkeypatch.setattr("simulator.runtime.lifecycle.drain", taking_stock)
    await service.stop()
    assert seen == [(True, False)]
    assert other.cancelled() and not service._drivers


@pytest.mark.django_db(transaction=True)
async def test_a_stop_saves_each_register_as_of_its_last_tick_not_its_last_sample(csms):
    """The engine meters a charging connector at its events (a sample, a status change);
    the stop saved the register as of the last one, and the next start's
    StopTransaction(PowerLoss) reported the energy since as never delivered (nine
    seconds of a DC session here in a QA run; all of it with sampling off)."""
    from chargers.models import ConfigurationKey, Evse

    await database_sync_to_async(make_charger)("CP-REG", evses=1, csms_url=csms.url)
    await database_sync_to_async(
        ConfigurationKey.objects.filter(
            charger__charge_point_id="CP-REG", key="MeterValueSampleInterval"
        ).update
    )(value="0")
    service = await started("CP-REG")
    charger = loaded(service, "CP-REG")
    charger.plug_in(1, COMPACT, soc=20)
    assert await charger.present_id_tag(1, "TAG1") == "Accepted"
    await wait_until(lambda: charger.evse(1).power_w > 0, message="charging")
    before, power_w = register_now(charger), charger.evse(1).power_w
    await asyncio.sleep(2.0)
    await service.stop()
    stored = await database_sync_to_async(
        lambda: Evse.objects.get(charger__charge_point_id="CP-REG").register_wh
    )()
    # At least 1.5 of the 2 s (ticks are 0.1 s apart; the power is steady at 20 %).
    assert stored - before >= power_w * 1.5 / 3600, (before, stored, power_w)
