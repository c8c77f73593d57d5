"""A charger's clock is the one the CSMS sets with currentTime (BootNotification and Heartbeat
answers): every timestamp it sends, its transaction's start, a relative profile's periods and
its clock-aligned boundaries go by it. Over real loopback WebSockets against the built-in
CSMS, whose answers carry a currentTime away from the host's clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ocpp.v16 import call

from simulator.core.clock import now_iso, parse_iso
from tests.engine import COMPACT, connected, runtime_charger, wait_until
from tests.timeline import Timeline, TimelineClock

AHEAD = timedelta(hours=1)


def csms_clock(csms, shift: timedelta) -> None:
    """The built-in CSMS answers with its clock `shift` away from the host's."""
    csms.current_time = now_iso(datetime.now(UTC) + shift)


def lead(event) -> float:
    """How far the timestamp a message carries is ahead of when the CSMS read it (s)."""
    return (parse_iso(event.payload["timestamp"]) - event.at).total_seconds()


def sent(csms, cp_id, action):
    return [e for e in csms.log if e.cp_id == cp_id and e.message_type == 2 and e.action == action]


async def test_a_charger_set_to_the_csms_clock_stamps_its_messages_by_it(csms, ticking):
    csms_clock(csms, AHEAD)
    charger = runtime_charger(
        "CLK-STAMP", csms.url, evses=1, config={"MeterValueSampleInterval": "1"}
    )
    async with connected(charger):
        ticking(charger)
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "TAG") == "Accepted"
        meter = await csms.wait_for("CLK-STAMP", "MeterValues", timeout=5)
        start = await csms.wait_for("CLK-STAMP", "StartTransaction")
    statuses = sent(csms, "CLK-STAMP", "StatusNotification")
    assert {e.payload["status"] for e in statuses} >= {"Available", "Preparing", "Charging"}
    for status in statuses:
        assert 3_590 < lead(status) < 3_605, status.payload
    assert 3_590 < lead(start) < 3_605
    stamp = parse_iso(meter.payload["meterValue"][0]["timestamp"])
    assert 3_590 < (stamp - meter.at).total_seconds() < 3_605
    # The transaction's own start is on that clock too: the one its profiles run from.
    tx = charger.transactions[1]
    assert (
        abs((parse_iso(tx.started_at) - parse_iso(start.payload["timestamp"])).total_seconds()) < 1
    )


async def test_a_relative_profile_runs_from_the_transaction_start_on_the_csms_clock(csms, ticking):
    """A Relative TxProfile's periods count from the transaction's start. The start and the
    clock that reads the schedule must be the same clock, or a CSMS an hour ahead of the host
    would find every session an hour old and its later periods in force at once."""
    csms_clock(csms, AHEAD)
    charger = runtime_charger("CLK-REL", csms.url, evses=1, max_kw=22.0)
    async with connected(charger):
        ticking(charger)
        charger.plug_in(1, COMPACT, soc=20, target_soc=100)
        assert await charger.present_id_tag(1, "TAG") == "Accepted"
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="the start")
        profile = {
            "chargingProfileId": 7,
            "transactionId": charger.evse(1).transaction_id,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 16},
                    {"startPeriod": 1800, "limit": 8},
                ],
            },
        }
        answer = await csms.call(
            "CLK-REL", call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
        )
        assert answer.status == "Accepted"
        await wait_until(lambda: 1 in charger.limits, message="the profile's limit applied")
        assert charger.limits[1].amps == 16  # the first half hour, not the period after it


async def test_a_csms_clock_within_a_second_of_the_host_leaves_the_host_clock(csms):
    csms_clock(csms, timedelta(milliseconds=400))
    charger = runtime_charger("CLK-NEAR", csms.url, evses=1)
    async with connected(charger):
        assert charger.clock_offset == 0.0
        csms_clock(csms, timedelta(seconds=-5))
        charger.send_heartbeat()
        await wait_until(lambda: charger.clock_offset != 0.0, message="the clock set")
        assert -5.5 < charger.clock_offset < -4.5
        # Within a second of its own clock: left as it was set (no step, no new boundary).
        kept = charger.clock_offset
        csms_clock(csms, timedelta(seconds=-5.6))
        beats = csms.counts["Heartbeat"]
        charger.send_heartbeat()
        await wait_until(lambda: csms.counts["Heartbeat"] > beats, message="the heartbeat")
        await wait_until(lambda: not charger.queue, message="its answer")
        assert charger.clock_offset == kept
        # And back within a second of the host's: the host's clock again, exactly.
        csms_clock(csms, timedelta(milliseconds=-300))
        charger.send_heartbeat()
        await wait_until(lambda: charger.clock_offset == 0.0, message="the host's clock")


async def test_clock_aligned_samples_fall_on_the_boundaries_of_the_charger_clock(csms, ticking):
    """Half a second off the host's boundaries: a sample aligned on the host's clock would
    carry x.500 on the charger's; it must carry the charger's whole seconds."""
    csms_clock(csms, AHEAD + timedelta(milliseconds=500))
    charger = runtime_charger(
        "CLK-ALIGN",
        csms.url,
        evses=1,
        config={
            "ClockAlignedDataInterval": "1",
            "MeterValuesAlignedData": "Energy.Active.Import.Register",
        },
    )
    async with connected(charger):
        ticking(charger)
        meter = await csms.wait_for("CLK-ALIGN", "MeterValues", timeout=5)
    value = meter.payload["meterValue"][0]
    assert value["sampledValue"][0]["context"] == "Sample.Clock"
    assert value["timestamp"].endswith(".000Z")
    assert 3_590 < (parse_iso(value["timestamp"]) - meter.at).total_seconds() < 3_605


async def test_a_triggered_heartbeats_answer_sets_the_clock_too(csms):
    csms_clock(csms, timedelta(milliseconds=200))
    charger = runtime_charger("CLK-TRIG", csms.url, evses=1)
    async with connected(charger):
        assert charger.clock_offset == 0.0
        csms_clock(csms, AHEAD)
        answer = await csms.call("CLK-TRIG", call.TriggerMessage(requested_message="Heartbeat"))
        assert answer.status == "Accepted"
        await wait_until(lambda: charger.clock_offset != 0.0, message="the clock set")
        assert 3_599 < charger.clock_offset < 3_601


def reservation_statuses(csms, cp_id, after):
    return [
        e.payload["status"]
        for e in sent(csms, cp_id, "StatusNotification")[after:]
        if e.payload["connectorId"] == 1
    ]


async def test_a_clock_step_forward_past_a_reservations_expiry_ends_it(csms):
    """A reservation ends at its expiryDate on the charger's clock. Its timer was the
    seconds left when it was made: a currentTime an hour ahead left the connector Reserved,
    for a reservation that had expired by the charger's own clock, until those ran out."""
    csms_clock(csms, timedelta(0))
    charger = runtime_charger("CLK-RSV", csms.url, evses=1)
    async with connected(charger):
        await wait_until(lambda: not charger.queue, message="the boot reports")
        mark = len(sent(csms, "CLK-RSV", "StatusNotification"))
        expiry = timedelta(minutes=30)
        assert await csms.reserve_now("CLK-RSV", 1, "ALICE", expiry, reservation_id=5) == "Accepted"
        await wait_until(
            lambda: reservation_statuses(csms, "CLK-RSV", mark) == ["Reserved"], message="Reserved"
        )
        csms_clock(csms, AHEAD)
        charger.send_heartbeat()
        await wait_until(
            lambda: reservation_statuses(csms, "CLK-RSV", mark) == ["Reserved", "Available"],
            message="the reservation to expire on the charger's clock",
        )
        assert len(charger.reservations) == 0


async def test_a_clock_step_back_keeps_a_reservation_until_its_expiry_on_the_new_clock(csms):
    """The other way: stepped an hour back, the charger is an hour further from the
    expiryDate, and the reservation holds that much longer (its timer went off at the old
    clock's expiry)."""
    csms_clock(csms, timedelta(0))
    charger = runtime_charger("CLK-RSB", csms.url, evses=1)
    async with connected(charger):
        await wait_until(lambda: not charger.queue, message="the boot reports")
        expiry = timedelta(minutes=1)
        assert await csms.reserve_now("CLK-RSB", 1, "ALICE", expiry, reservation_id=6) == "Accepted"
        csms_clock(csms, -AHEAD)
        charger.send_heartbeat()
        await wait_until(lambda: charger.clock_offset != 0.0, message="the clock set back")
        # Its timer runs for the hour and the minute left on the charger's clock.
        timer = charger.timers._handles[("reservation", 6)]
        assert isinstance(timer, asyncio.TimerHandle)
        left = timer.when() - asyncio.get_running_loop().time()
        assert 3_600 < left < 3_660 + 5
        assert len(charger.reservations) == 1


async def test_a_clock_step_forward_past_a_retrieve_date_starts_the_download(csms, files):
    """UpdateFirmware's retrieveDate is a date on the charger's clock. The wait for it was
    the seconds left when the request came: a currentTime an hour ahead, past that date,
    left the download waiting out the old clock's half hour."""
    csms_clock(csms, timedelta(0))
    url = files.publish("chargesim-2.5.0.bin", b"ChargeSim firmware 2.5.0\n")
    charger = runtime_charger("CLK-FW", csms.url, evses=1)
    async with connected(charger):
        await wait_until(lambda: not charger.queue, message="the boot reports")
        await csms.update_firmware("CLK-FW", url, timedelta(minutes=30))
        await wait_until(lambda: charger.firmware_waiting is not None, message="the wait")
        assert "Downloading" not in csms.firmware_statuses.get("CLK-FW", [])
        csms_clock(csms, AHEAD)
        charger.send_heartbeat()
        await wait_until(
            lambda: "Downloading" in csms.firmware_statuses.get("CLK-FW", []),
            message="the download, its retrieveDate passed on the charger's clock",
        )


async def test_a_clock_step_back_waits_for_the_retrieve_date_on_the_new_clock(csms, files):
    """Stepped an hour back, the charger is an hour further from the retrieveDate: the
    download waits that much longer (seen as the wait set on its clock), not the seconds
    that were left on the old one."""
    csms_clock(csms, timedelta(0))
    url = files.publish("chargesim-2.6.0.bin", b"ChargeSim firmware 2.6.0\n")
    timeline = Timeline()
    charger = runtime_charger("CLK-FWB", csms.url, evses=1, clock=TimelineClock(timeline))
    async with connected(charger):
        await wait_until(lambda: not charger.queue, message="the boot reports")
        await csms.update_firmware("CLK-FWB", url, timedelta(minutes=1))
        await wait_until(lambda: charger.firmware_waiting is not None, message="the wait")
        waits = len(timeline.events)
        csms_clock(csms, -AHEAD)
        charger.send_heartbeat()

        def waits_set() -> list[float]:
            return [float(e.split()[1]) for e in timeline.events[waits:] if e.startswith("wait ")]

        await wait_until(
            lambda: any(3_600 < wait < 3_660 + 5 for wait in waits_set()),
            message="a wait of the hour and the minute left on the new clock",
        )
        assert "Downloading" not in csms.firmware_statuses.get("CLK-FWB", [])


async def test_the_page_counts_down_to_the_retrieve_date_on_the_stepped_clock(csms, files):
    """QA18: the firmware's "waits until" on the charger page was the seconds left when
    the request came, so after a clock step an hour back it still said half an hour while
    the download waited an hour and a half."""
    import time

    from simulator.runtime.events import snapshot

    csms_clock(csms, timedelta(0))
    url = files.publish("chargesim-2.7.0.bin", b"ChargeSim firmware 2.7.0\n")
    charger = runtime_charger("CLK-FWP", csms.url, evses=1)
    async with connected(charger):
        await wait_until(lambda: not charger.queue, message="the boot reports")
        await csms.update_firmware("CLK-FWP", url, timedelta(minutes=30))
        await wait_until(lambda: charger.firmware_waiting is not None, message="the wait")
        until = snapshot(charger)["firmware_waiting_until"]
        assert until is not None
        left = until - time.time()
        assert 1_800 - 60 < left < 1_800 + 1
        csms_clock(csms, -AHEAD)
        charger.send_heartbeat()
        await wait_until(lambda: charger.clock_offset < -3_000, message="the clock stepped back")
        until = snapshot(charger)["firmware_waiting_until"]
        assert until is not None
        left = until - time.time()
        assert 5_400 - 60 < left < 5_400 + 1
