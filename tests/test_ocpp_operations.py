"""CSMS-initiated operations, smart charging, configuration keys and 1.6 error codes,
over real loopback WebSockets against the built-in CSMS."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest
from ocpp.exceptions import InternalError
from ocpp.v16 import call
from ocpp.v16.datatypes import IdTagInfo

from simulator.core.charge_point import ActionError, BootState
from simulator.core.clock import now_iso, parse_iso
from simulator.core.evse import ConnectorStatus
from simulator.core.operations import RESET_GRACE_SECONDS
from simulator.core.protocol import StopReason
from simulator.runtime.events import snapshot
from simulator.runtime.meter_engine import MeterEngine
from tests.engine import COMPACT, PHEV, connected, runtime_charger, wait_until
from tests.timeline import StoppedClock, Timeline


def calls(csms, cp_id, action, after=0):
    return [
        e
        for e in csms.log[after:]
        if e.cp_id == cp_id and e.direction == "in" and e.message_type == 2 and e.action == action
    ]


def tx_default(profile_id, stack_level, limit, unit="W", **extra):
    return {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
        },
        **extra,
    }


async def charging(csms, charger, connector=1, tag="T1", soc=20):
    charger.plug_in(connector, COMPACT, soc=soc)
    assert await charger.present_id_tag(connector, tag) == "Accepted"
    await wait_until(
        lambda: charger.evse(connector).transaction_id is not None, message="StartTransaction.conf"
    )
    return charger.evse(connector).transaction_id


# -- smart charging ----------------------------------------------------------------------


async def test_a_tx_profile_without_a_transaction_is_rejected(csms):
    charger = runtime_charger("SC-1", csms.url, evses=1)
    profile = tx_default(1, 0, 5000)
    profile["chargingProfilePurpose"] = "TxProfile"
    async with connected(charger):
        answer = await csms.call(
            "SC-1", call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
        )
    assert answer.status == "Rejected"


async def test_the_limit_in_force_drives_the_physics_and_is_reported_as_offered(csms, ticking):
    charger = runtime_charger("SC-2", csms.url, evses=1)
    charger.config.update(
        MeterValueSampleInterval="1",
        MeterValuesSampledData="Power.Active.Import,Power.Offered,Current.Offered",
    )
    async with connected(charger):
        ticking(charger)
        await charging(csms, charger)
        await wait_until(lambda: charger.evse(1).power_w > 10_000, message="11 kW")
        answer = await csms.call(
            "SC-2",
            call.SetChargingProfile(
                connector_id=0, cs_charging_profiles=tx_default(10, 1, 8.0, unit="A")
            ),
        )
        assert answer.status == "Accepted"
        await wait_until(
            lambda: 0 < charger.evse(1).power_w <= 8 * 230 * 3 + 1, message="power capped at 8 A"
        )
        mark = len(csms.log)
        meter = await csms.wait_for("SC-2", "MeterValues", after=mark, timeout=3)
        values = {
            sv["measurand"]: float(sv["value"])
            for sv in meter.payload["meterValue"][0]["sampledValue"]
        }
        assert values["Current.Offered"] == pytest.approx(8.0)
        assert values["Power.Offered"] == pytest.approx(8 * 230 * 3)
        assert values["Power.Active.Import"] <= 8 * 230 * 3 + 1


async def test_an_amp_limit_holds_a_single_phase_car_to_that_current(csms, ticking):
    # A 3-phase 22 kW EVSE under 10 A: a 1-phase 3.7 kW car gets 10 A on its one phase
    # (2.3 kW), and the offer it is told about says the same.
    charger = runtime_charger("SC-1PH", csms.url, evses=1)
    charger.config.update(
        MeterValueSampleInterval="1",
        MeterValuesSampledData="Power.Active.Import,Power.Offered,Current.Offered,Current.Import",
    )
    async with connected(charger):
        ticking(charger)
        answer = await csms.call(
            "SC-1PH",
            call.SetChargingProfile(
                connector_id=0, cs_charging_profiles=tx_default(11, 1, 10.0, unit="A")
            ),
        )
        assert answer.status == "Accepted"
        charger.plug_in(1, PHEV, soc=20)
        assert await charger.present_id_tag(1, "T1") == "Accepted"
        await wait_until(lambda: charger.evse(1).power_w > 0, message="charging")
        assert charger.evse(1).power_w == pytest.approx(2_300, abs=1)
        assert charger.evse(1).current_a == pytest.approx((10.0,))
        mark = len(csms.log)
        meter = await csms.wait_for("SC-1PH", "MeterValues", after=mark, timeout=3)
        values = {
            (sv["measurand"], sv.get("phase")): float(sv["value"])
            for sv in meter.payload["meterValue"][0]["sampledValue"]
        }
        assert values[("Current.Offered", None)] == pytest.approx(10.0)
        assert values[("Power.Offered", None)] == pytest.approx(2_300)
        assert values[("Power.Active.Import", None)] == pytest.approx(2_300, abs=1)
        assert [v for (m, _), v in values.items() if m == "Current.Import"] == [
            pytest.approx(10.0, abs=0.01)
        ]


async def test_the_higher_stack_level_wins_and_the_lower_one_applies_when_it_ends(csms, ticking):
    charger = runtime_charger("SC-3", csms.url, evses=1)
    async with connected(charger):
        ticking(charger)
        await charging(csms, charger)
        low = tx_default(1, 1, 7000)
        # (5 kW: 7.2 A a phase for this three-phase car; below 6 A it would not charge.)
        high = tx_default(2, 5, 5000)
        high["chargingSchedule"]["duration"] = 2
        for profile in (low, high):
            answer = await csms.call(
                "SC-3", call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
            )
            assert answer.status == "Accepted"
        await wait_until(
            lambda: charger.evse(1).power_w == pytest.approx(5000, abs=1),
            message="the stack level 5 limit",
        )
        await wait_until(
            lambda: charger.evse(1).power_w == pytest.approx(7000, abs=1),
            timeout=5,
            message="the stack level 1 limit after 2 s",
        )


async def test_a_charge_point_max_profile_is_shared_by_two_charging_connectors(csms, ticking):
    charger = runtime_charger("SC-4", csms.url, evses=2)
    cap = tx_default(7, 0, 12_000)
    cap["chargingProfilePurpose"] = "ChargePointMaxProfile"
    async with connected(charger):
        ticking(charger)
        on_one = await csms.call(
            "SC-4", call.SetChargingProfile(connector_id=1, cs_charging_profiles=cap)
        )
        assert on_one.status == "Rejected"  # ChargePointMax only on connector 0
        answer = await csms.call(
            "SC-4", call.SetChargingProfile(connector_id=0, cs_charging_profiles=cap)
        )
        assert answer.status == "Accepted"
        await charging(csms, charger, 1, "A")
        await charging(csms, charger, 2, "B")
        await wait_until(lambda: all(e.power_w > 0 for e in charger.evses), message="both")
        await asyncio.sleep(0.2)
        total = sum(e.power_w for e in charger.evses)
        assert total <= 12_000 + 1
        assert charger.evse(1).power_w == pytest.approx(6000, abs=1)


async def test_get_composite_schedule_on_connector_0_and_on_a_connector(csms):
    charger = runtime_charger("SC-5", csms.url, evses=2)
    async with connected(charger):
        cap = tx_default(8, 0, 20_000)
        cap["chargingProfilePurpose"] = "ChargePointMaxProfile"
        await csms.call("SC-5", call.SetChargingProfile(connector_id=0, cs_charging_profiles=cap))
        await csms.call(
            "SC-5",
            call.SetChargingProfile(connector_id=1, cs_charging_profiles=tx_default(9, 0, 5000)),
        )
        one = await csms.call(
            "SC-5", call.GetCompositeSchedule(connector_id=1, duration=3600, charging_rate_unit="W")
        )
        grid = await csms.call(
            "SC-5", call.GetCompositeSchedule(connector_id=0, duration=3600, charging_rate_unit="W")
        )
        bad = await csms.call("SC-5", call.GetCompositeSchedule(connector_id=5, duration=60))
    assert one.status == "Accepted" and one.connector_id == 1
    assert one.charging_schedule["charging_schedule_period"][0]["limit"] == 5000
    assert grid.status == "Accepted"
    assert grid.charging_schedule["charging_schedule_period"][0]["limit"] <= 20_000
    assert bad.status == "Rejected"


async def test_get_composite_schedule_of_duration_0_answers_the_limit_in_force_now(csms):
    """duration is an integer without a minimum (1.6, 6.25): 0 asks for the instant now,
    and the charger can report it, so it is not Rejected (it was: QA20). A negative
    window is one it cannot report."""
    charger = runtime_charger("SC-ZERO", csms.url, evses=1)
    async with connected(charger):
        await csms.call(
            "SC-ZERO",
            call.SetChargingProfile(connector_id=1, cs_charging_profiles=tx_default(9, 0, 5000)),
        )
        now = await csms.call(
            "SC-ZERO", call.GetCompositeSchedule(connector_id=1, duration=0, charging_rate_unit="W")
        )
        negative = await csms.send_raw(
            "SC-ZERO", '[2,"neg","GetCompositeSchedule",{"connectorId":1,"duration":-1}]'
        )
        negative_reply = await csms.wait_for("SC-ZERO", direction="in", unique_id=negative)
    assert now.status == "Accepted" and now.connector_id == 1
    assert now.charging_schedule["duration"] == 0
    assert now.charging_schedule["charging_schedule_period"] == [{"start_period": 0, "limit": 5000}]
    assert negative_reply.payload == {"status": "Rejected"}


async def test_a_recurring_daily_profile_applies_in_its_current_period(csms):
    charger = runtime_charger("SC-6", csms.url, evses=1)
    start = datetime.now(UTC) - timedelta(days=3, minutes=30)
    profile = tx_default(11, 2, 0, unit="A")
    profile.update(chargingProfileKind="Recurring", recurrencyKind="Daily")
    profile["chargingSchedule"] = {
        "chargingRateUnit": "A",
        "startSchedule": start.isoformat().replace("+00:00", "Z"),
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 6.0},
            {"startPeriod": 3600, "limit": 16.0},
        ],
    }
    async with connected(charger):
        answer = await csms.call(
            "SC-6", call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile)
        )
        assert answer.status == "Accepted"
        schedule = await csms.call(
            "SC-6", call.GetCompositeSchedule(connector_id=1, duration=7200, charging_rate_unit="A")
        )
    periods = schedule.charging_schedule["charging_schedule_period"]
    assert periods[0]["limit"] == 6.0
    assert any(p["limit"] == 16.0 for p in periods[1:])


async def test_a_daily_profile_that_lasts_longer_than_a_day_is_rejected(csms):
    """A Daily profile cannot recur daily if its schedule (its duration, or its last
    period's start) runs past one day: Rejected, as other invalid profiles are."""
    charger = runtime_charger("SC-DAY", csms.url, evses=1)
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")

    def daily(profile_id: int, last_start: int, duration: int | None) -> dict:
        profile = tx_default(profile_id, 2, 0, unit="A")
        profile.update(chargingProfileKind="Recurring", recurrencyKind="Daily")
        profile["chargingSchedule"] = {
            "chargingRateUnit": "A",
            "startSchedule": start,
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 6.0},
                {"startPeriod": last_start, "limit": 16.0},
            ],
        }
        if duration is not None:
            profile["chargingSchedule"]["duration"] = duration
        return profile

    async def install(profile: dict) -> str:
        answer = await csms.call(
            "SC-DAY", call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile)
        )
        return answer.status

    async with connected(charger):
        too_long = await install(daily(50, 3600, 86_400 + 3600))
        too_late = await install(daily(51, 86_400, None))
        one_day = await install(daily(52, 3600, 86_400))
    assert (too_long, too_late, one_day) == ("Rejected", "Rejected", "Accepted")
    assert [profile.id for _connector, profile in charger.profiles.installed()] == [52]


async def test_tx_profile_from_remote_start_applies_and_is_removed_when_it_ends(csms, ticking):
    charger = runtime_charger(
        "SC-7", csms.url, evses=1, simulate_ev_on_remote_start=True, default_vehicle=COMPACT
    )
    profile = tx_default(21, 1, 5000)
    profile["chargingProfilePurpose"] = "TxProfile"
    async with connected(charger):
        ticking(charger)
        answer = await csms.call(
            "SC-7",
            call.RemoteStartTransaction(id_tag="T", connector_id=1, charging_profile=profile),
        )
        assert answer.status == "Accepted"
        await wait_until(
            lambda: charger.evse(1).power_w == pytest.approx(5000, abs=1),
            message="the TxProfile's 5 kW",
        )
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="tx id")
        await csms.call(
            "SC-7", call.RemoteStopTransaction(transaction_id=charger.evse(1).transaction_id)
        )
        await wait_until(lambda: len(charger.profiles) == 0, message="TxProfile removed")


async def test_profiles_with_decimal_limits_and_bad_periods(csms):
    charger = runtime_charger("SC-8", csms.url, evses=1)
    bad = tx_default(31, 0, 10.0, unit="A")
    bad["chargingSchedule"]["chargingSchedulePeriod"] = [{"startPeriod": 5, "limit": 10.0}]
    async with connected(charger):
        odd = await csms.call(
            "SC-8",
            call.SetChargingProfile(
                connector_id=1, cs_charging_profiles=tx_default(30, 0, 10.3, unit="A")
            ),
        )
        rejected = await csms.call(
            "SC-8", call.SetChargingProfile(connector_id=1, cs_charging_profiles=bad)
        )
        cleared = await csms.call("SC-8", call.ClearChargingProfile(id=30))
        nothing = await csms.call("SC-8", call.ClearChargingProfile(id=30))
    assert odd.status == "Accepted"
    assert rejected.status == "Rejected"
    assert (cleared.status, nothing.status) == ("Accepted", "Unknown")


@pytest.mark.parametrize("field", ["chargingProfileId", "stackLevel"])
async def test_a_profile_with_a_negative_id_or_stack_level_is_rejected(csms, field):
    """The schema says integer; neither can be negative in any meaning 1.6 gives them.
    Rejected as other invalid profiles are, on SetChargingProfile and RemoteStart alike."""
    charger = runtime_charger("SC-NEG", csms.url, evses=1)
    negative = tx_default(40, 1, 5000) | {field: -1}
    tx_profile = negative | {"chargingProfilePurpose": "TxProfile"}
    async with connected(charger):
        answer = await csms.call(
            "SC-NEG", call.SetChargingProfile(connector_id=0, cs_charging_profiles=negative)
        )
        start = await csms.call(
            "SC-NEG",
            call.RemoteStartTransaction(id_tag="T1", connector_id=1, charging_profile=tx_profile),
        )
    assert answer.status == "Rejected"
    assert start.status == "Rejected"
    assert len(charger.profiles) == 0
    assert not charger.transactions and not charger.pending_authorizations


# -- core operations ----------------------------------------------------------------------


async def test_reset_during_a_transaction_stops_it_and_boots_again(csms, ticking):
    charger = runtime_charger("OP-RST", csms.url, evses=1)
    async with connected(charger):
        ticking(charger)
        await charging(csms, charger)
        mark = len(csms.log)
        answer = await csms.call("OP-RST", call.Reset(type="Soft"))
        assert answer.status == "Accepted"
        stop = await csms.wait_for("OP-RST", "StopTransaction", after=mark)
        assert stop.payload["reason"] == "SoftReset"
        await csms.wait_for("OP-RST", "BootNotification", after=mark, timeout=10)
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot again")
    assert list(csms.connects.elements()).count("OP-RST") == 2


def note_the_close(charger, timeline: Timeline) -> None:
    """Note on `timeline` when the charger closes its socket ("close")."""
    transport = charger.transport
    assert transport is not None
    close = transport.close

    async def noted_close() -> None:
        timeline.events.append("close")
        await close()

    transport.close = noted_close  # notes when


async def test_a_reset_is_answered_and_the_socket_stays_open_for_a_grace(csms):
    # The grace is a wait on the charger's clock, counted from the answer: on a clock that
    # stands still, the whole grace (whatever the host took to send the answer), before
    # the close. Read on the charger's timeline, not timed on the host.
    timeline = Timeline()
    charger = runtime_charger("OP-GRACE", csms.url, evses=1, clock=StoppedClock(timeline))
    grace = f"{RESET_GRACE_SECONDS:g}"
    async with connected(charger):
        note_the_close(charger, timeline)
        answer = await csms.call("OP-GRACE", call.Reset(type="Hard"))
        assert answer.status == "Accepted"
        await wait_until(lambda: "close" in timeline.events, message="the reboot's close")
    assert timeline.of(f"wait {grace}", f"waited {grace}", "close") == [
        f"wait {grace}",
        f"waited {grace}",
        "close",
    ]


async def test_a_reset_while_pending_closes_after_the_grace_and_keeps_its_event(csms):
    # While Pending the charger may not send its queue: the ResetOrReboot event waits for
    # the next accepted boot. The reboot used to wait for it all the same, its socket open
    # for the whole patience (5 s) instead of the grace. Read on the charger's timeline:
    # no wait for the queue ("wait 0.05", the drain's look), only the grace, then the close.
    csms.boot_status, csms.boot_interval = "Pending", 60
    timeline = Timeline()
    charger = runtime_charger("OP-GRP", csms.url, evses=1, clock=StoppedClock(timeline))
    grace = f"{RESET_GRACE_SECONDS:g}"
    async with connected(charger, booted=False):
        await wait_until(lambda: charger.boot is BootState.PENDING, message="Pending")
        note_the_close(charger, timeline)
        answer = await csms.call("OP-GRP", call.Reset(type="Soft"))
        assert answer.status == "Accepted"
        await wait_until(lambda: "close" in timeline.events, message="the reboot's close")
        assert timeline.of("wait 0.05", f"wait {grace}", f"waited {grace}", "close") == [
            f"wait {grace}",
            f"waited {grace}",
            "close",
        ]
        assert not calls(csms, "OP-GRP", "SecurityEventNotification")
        csms.boot_status = "Accepted"
        # The boot after the reboot is accepted: the event kept in the queue goes out.
        event = await csms.wait_for("OP-GRP", "SecurityEventNotification", timeout=10)
    assert event.payload["type"] == "ResetOrReboot"


async def test_after_a_reset_the_plugged_in_vehicle_charges_again_in_a_new_session(csms, ticking):
    charger = runtime_charger("OP-RESUME", csms.url, evses=1)
    async with connected(charger):
        ticking(charger)
        await charging(csms, charger, tag="DRIVER-7")
        first = charger.evse(1).transaction_id
        mark = len(csms.log)
        await csms.call("OP-RESUME", call.Reset(type="Soft"))
        boot = await csms.wait_for("OP-RESUME", "BootNotification", after=mark, timeout=10)
        start = await csms.wait_for(
            "OP-RESUME", "StartTransaction", after=csms.log.index(boot), timeout=10
        )
        assert start.payload["idTag"] == "DRIVER-7"
        # The boot reports the plugged-in car as it is after the reboot (Preparing), not
        # the Finishing of the session the reset ended.
        booted = csms.log[csms.log.index(boot) : csms.log.index(start)]
        assert [
            e.payload["status"]
            for e in booted
            if e.action == "StatusNotification" and e.payload.get("connectorId") == 1
        ] == ["Preparing"]
        await wait_until(
            lambda: (
                charger.evse(1).status is ConnectorStatus.CHARGING
                and charger.evse(1).transaction_id not in (None, first)
            ),
            message="a new session, charging",
        )


async def test_hard_reset_gives_reason_hard_reset(csms, ticking):
    charger = runtime_charger("OP-HRD", csms.url, evses=1)
    async with connected(charger):
        ticking(charger)
        await charging(csms, charger)
        mark = len(csms.log)
        await csms.call("OP-HRD", call.Reset(type="Hard"))
        stop = await csms.wait_for("OP-HRD", "StopTransaction", after=mark)
    assert stop.payload["reason"] == "HardReset"


async def test_a_triggered_meter_values_with_no_measurand_configured_sends_the_register(csms):
    """MeterValuesSampledData may be empty (no periodic samples); a TriggerMessage for
    MeterValues answered Accepted still sends one, with the register. It sent nothing."""
    charger = runtime_charger("OP-TRG0", csms.url, evses=1, config={"MeterValuesSampledData": ""})
    async with connected(charger):
        mark = len(csms.log)
        answer = await csms.call(
            "OP-TRG0", call.TriggerMessage(requested_message="MeterValues", connector_id=1)
        )
        assert answer.status == "Accepted"
        meter = await csms.wait_for("OP-TRG0", "MeterValues", after=mark, timeout=3)
    [sampled] = meter.payload["meterValue"][0]["sampledValue"]
    assert sampled["measurand"] == "Energy.Active.Import.Register"
    assert sampled["context"] == "Trigger"


async def test_trigger_message_answers_first_then_sends(csms, ticking):
    charger = runtime_charger("OP-TRG", csms.url, evses=2)
    async with connected(charger):
        ticking(charger)
        await charging(csms, charger)
        mark = len(csms.log)
        answer = await csms.call(
            "OP-TRG", call.TriggerMessage(requested_message="MeterValues", connector_id=1)
        )
        assert answer.status == "Accepted"
        meter = await csms.wait_for("OP-TRG", "MeterValues", after=mark)
        contexts = {sv["context"] for sv in meter.payload["meterValue"][0]["sampledValue"]}
        assert contexts == {"Trigger"}
        reply = next(
            e for e in csms.log[mark:] if e.action == "TriggerMessage" and e.message_type == 3
        )
        assert csms.log.index(reply) < csms.log.index(meter)
        for requested in (
            "Heartbeat",
            "BootNotification",
            "DiagnosticsStatusNotification",
            "FirmwareStatusNotification",
        ):
            mark = len(csms.log)
            answer = await csms.call("OP-TRG", call.TriggerMessage(requested_message=requested))
            assert answer.status == "Accepted"
            await csms.wait_for("OP-TRG", requested, after=mark)
        mark = len(csms.log)
        answer = await csms.call(
            "OP-TRG", call.TriggerMessage(requested_message="StatusNotification", connector_id=2)
        )
        status = await csms.wait_for("OP-TRG", "StatusNotification", after=mark)
        assert status.payload["connectorId"] == 2
        bad = await csms.call(
            "OP-TRG", call.TriggerMessage(requested_message="StatusNotification", connector_id=9)
        )
        assert bad.status == "Rejected"


async def test_a_triggered_boot_can_be_rejected_per_charger(csms):
    charger = runtime_charger("OP-TRB", csms.url, evses=1, reject_triggered_boot=True)
    async with connected(charger):
        answer = await csms.call(
            "OP-TRB", call.TriggerMessage(requested_message="BootNotification")
        )
    assert answer.status == "Rejected"


async def test_a_charger_that_rejects_triggered_boots_takes_one_while_pending(csms):
    # The errata's "reject it" is for a charger already Accepted. While Pending, a
    # triggered BootNotification is how a CSMS ends its provisioning: refused, the
    # charger would stay unregistered until the Pending interval (an hour here) ran out.
    csms.boot_status, csms.boot_interval = "Pending", 3600
    charger = runtime_charger("OP-TRBP", csms.url, evses=1, reject_triggered_boot=True)
    async with connected(charger, booted=False):
        await wait_until(lambda: charger.boot is BootState.PENDING, message="Pending")
        csms.boot_status = "Accepted"
        answer = await csms.call(
            "OP-TRBP", call.TriggerMessage(requested_message="BootNotification")
        )
        assert answer.status == "Accepted"
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="Accepted")
        again = await csms.call(
            "OP-TRBP", call.TriggerMessage(requested_message="BootNotification")
        )
    assert again.status == "Rejected"
    assert csms.counts["BootNotification"] == 2


@pytest.mark.parametrize("answer", ["Pending", "Rejected"])
async def test_a_triggered_boot_answered_pending_or_rejected_is_retried_until_accepted(
    csms, answer
):
    # A charger whose BootNotification is not accepted is not registered: it sends
    # nothing but BootNotifications, retried after the interval, until one is accepted;
    # then the statuses of connector 0 and every connector.
    charger = runtime_charger("OP-TBR", csms.url, evses=1)
    async with connected(charger):
        await wait_until(
            lambda: len(calls(csms, "OP-TBR", "StatusNotification")) == 2,
            message="the statuses of the first boot",
        )
        csms.boot_status, csms.boot_interval = answer, 1
        mark = len(csms.log)
        status = await csms.call(
            "OP-TBR", call.TriggerMessage(requested_message="BootNotification")
        )
        assert status.status == "Accepted"
        await wait_until(
            lambda: len(calls(csms, "OP-TBR", "BootNotification", mark)) >= 2,
            message="a BootNotification again after the interval",
            timeout=5,
        )
        assert charger.boot is BootState(answer)
        csms.boot_status = "Accepted"
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="Accepted", timeout=5)
        await wait_until(
            lambda: len(calls(csms, "OP-TBR", "StatusNotification", mark)) == 2,
            message="the statuses once Accepted",
        )
    sent = [
        e.action
        for e in csms.log[mark:]
        if e.cp_id == "OP-TBR" and e.direction == "in" and e.message_type == 2
    ]
    last_boot = max(i for i, action in enumerate(sent) if action == "BootNotification")
    assert set(sent[:last_boot]) == {"BootNotification"}
    assert sent[last_boot + 1 :] == ["StatusNotification", "StatusNotification"]


async def test_the_whole_charger_goes_unavailable_only_after_a_scheduled_change(csms, ticking):
    # ChangeAvailability(0, Inoperative) during a transaction is Scheduled: it happens
    # after the transaction, so connector 0 is not reported Unavailable while connector 1
    # still charges (1.6 section 5.2); the idle connector goes Unavailable at once.
    charger = runtime_charger("OP-AV0", csms.url, evses=2)
    async with connected(charger):
        ticking(charger)
        tx_id = await charging(csms, charger)
        mark = len(csms.log)
        answer = await csms.call(
            "OP-AV0", call.ChangeAvailability(connector_id=0, type="Inoperative")
        )
        assert answer.status == "Scheduled"
        await wait_until(
            lambda: charger.evse(2).status is ConnectorStatus.UNAVAILABLE, message="idle one"
        )
        await csms.call("OP-AV0", call.RemoteStopTransaction(transaction_id=tx_id))
        await csms.wait_for(
            "OP-AV0",
            "StatusNotification",
            after=mark,
            predicate=lambda e: e.payload["connectorId"] == 0,
        )
        await wait_until(
            lambda: charger.evse(1).status is ConnectorStatus.UNAVAILABLE, message="connector 1"
        )
    sent = [
        (e.payload["connectorId"], e.payload["status"])
        for e in calls(csms, "OP-AV0", "StatusNotification", mark)
    ]
    stop = next(i for i, e in enumerate(csms.log) if e.action == "StopTransaction")
    before_stop = [
        (e.payload["connectorId"], e.payload["status"])
        for e in calls(csms, "OP-AV0", "StatusNotification", mark)
        if csms.log.index(e) < stop
    ]
    assert (0, "Unavailable") not in before_stop
    assert sent[-1] == (0, "Unavailable")


async def test_remote_stop_is_not_allowed_while_pending(csms, ticking):
    # 1.6 section 4.2: while Pending, RemoteStart and RemoteStop are not allowed; here a
    # transaction runs when a triggered BootNotification is answered Pending.
    charger = runtime_charger("OP-RSP", csms.url, evses=1)
    async with connected(charger):
        ticking(charger)
        tx_id = await charging(csms, charger)
        csms.boot_status, csms.boot_interval = "Pending", 60
        await csms.call("OP-RSP", call.TriggerMessage(requested_message="BootNotification"))
        await wait_until(lambda: charger.boot is BootState.PENDING, message="Pending")
        answer = await csms.call("OP-RSP", call.RemoteStopTransaction(transaction_id=tx_id))
        assert answer.status == "Rejected"
        assert charger.evse(1).transaction_id == tx_id


async def test_a_pending_charger_sends_the_meter_values_a_trigger_asks_for(csms):
    # While Pending a charger sends only what TriggerMessage asks for, and that it sends.
    csms.boot_status, csms.boot_interval = "Pending", 60
    charger = runtime_charger("OP-TMP", csms.url, evses=2)
    async with connected(charger, booted=False):
        await wait_until(lambda: charger.boot is BootState.PENDING, message="Pending")
        answer = await csms.call(
            "OP-TMP", call.TriggerMessage(requested_message="MeterValues", connector_id=2)
        )
        assert answer.status == "Accepted"
        meter = await csms.wait_for("OP-TMP", "MeterValues", timeout=5)
    assert meter.payload["connectorId"] == 2
    contexts = {sv["context"] for sv in meter.payload["meterValue"][0]["sampledValue"]}
    assert contexts == {"Trigger"}
    assert charger.boot is BootState.PENDING


async def test_change_availability_is_scheduled_during_a_transaction(csms, ticking):
    charger = runtime_charger("OP-AV", csms.url, evses=2)
    async with connected(charger):
        ticking(charger)
        tx_id = await charging(csms, charger)
        answer = await csms.call(
            "OP-AV", call.ChangeAvailability(connector_id=1, type="Inoperative")
        )
        assert answer.status == "Scheduled"
        assert charger.evse(1).status is ConnectorStatus.CHARGING
        other = await csms.call(
            "OP-AV", call.ChangeAvailability(connector_id=2, type="Inoperative")
        )
        assert other.status == "Accepted"
        assert charger.evse(2).status is ConnectorStatus.UNAVAILABLE
        await csms.call("OP-AV", call.RemoteStopTransaction(transaction_id=tx_id))
        await wait_until(
            lambda: charger.evse(1).status is ConnectorStatus.UNAVAILABLE,
            message="Unavailable after the transaction",
        )
        back = await csms.call("OP-AV", call.ChangeAvailability(connector_id=0, type="Operative"))
        assert back.status == "Accepted"
        assert charger.evse(2).status is ConnectorStatus.AVAILABLE
        whole = await csms.call(
            "OP-AV", call.ChangeAvailability(connector_id=0, type="Inoperative")
        )
        assert whole.status == "Accepted"
        await csms.wait_for(
            "OP-AV",
            "StatusNotification",
            predicate=lambda e: (
                e.payload["connectorId"] == 0 and e.payload["status"] == "Unavailable"
            ),
        )
        refused = await csms.call("OP-AV", call.RemoteStartTransaction(id_tag="X"))
    assert refused.status == "Rejected"
    assert all(e.status is ConnectorStatus.UNAVAILABLE for e in charger.evses)


async def next_status(csms, cp_id, connector_id, *, after):
    """The first StatusNotification of that connector from log index `after` on."""
    return await csms.wait_for(
        cp_id,
        "StatusNotification",
        after=after,
        predicate=lambda e: e.payload["connectorId"] == connector_id,
    )


@pytest.mark.parametrize("whole", [False, True], ids=["connector", "charger"])
@pytest.mark.parametrize("car", [False, True], ids=["no-car", "car"])
async def test_a_fault_cleared_while_inoperative_leaves_the_connector_unavailable(csms, whole, car):
    """QA: ChangeAvailability(Inoperative), then a fault injected and cleared: the charger
    reported Available (or Preparing) while it still refused RemoteStart. Once made
    Operative again it is Available, or Preparing with a car plugged in."""
    cp_id = f"OP-AVF-{int(whole)}{int(car)}"
    charger = runtime_charger(cp_id, csms.url, evses=1)
    async with connected(charger):
        if car:
            charger.plug_in(1, COMPACT, soc=30)
        answer = await csms.call(
            cp_id, call.ChangeAvailability(connector_id=0 if whole else 1, type="Inoperative")
        )
        assert answer.status == "Accepted"
        assert charger.evse(1).status is ConnectorStatus.UNAVAILABLE
        charger.inject_fault(1, "GroundFailure")
        faulted = await csms.wait_for(
            cp_id,
            "StatusNotification",
            predicate=lambda e: e.payload["connectorId"] == 1 and e.payload["status"] == "Faulted",
        )
        charger.clear_fault(1)
        status = await next_status(csms, cp_id, 1, after=csms.log.index(faulted) + 1)
        assert status.payload["status"] == "Unavailable"
        assert charger.evse(1).status is ConnectorStatus.UNAVAILABLE
        refused = await csms.call(cp_id, call.RemoteStartTransaction(id_tag="X", connector_id=1))
        assert refused.status == "Rejected"
        mark = len(csms.log)
        await csms.call(
            cp_id, call.ChangeAvailability(connector_id=0 if whole else 1, type="Operative")
        )
        back = await next_status(csms, cp_id, 1, after=mark)
    assert back.payload["status"] == ("Preparing" if car else "Available")


@pytest.mark.parametrize("whole", [False, True], ids=["connector", "charger"])
@pytest.mark.parametrize("car", [False, True], ids=["no-car", "car"])
async def test_a_faulted_connector_made_inoperative_reports_faulted_until_the_fault_clears(
    csms, whole, car
):
    """Faulted is the more specific inoperative state: ChangeAvailability(Inoperative) of a
    faulted connector (or of the whole charger) is Accepted but does not hide the fault
    behind Unavailable; the connector is Unavailable once the fault clears, and Available
    (Preparing with a car) once made Operative."""
    cp_id = f"OP-FAV-{int(whole)}{int(car)}"
    charger = runtime_charger(cp_id, csms.url, evses=2)
    target = 0 if whole else 1
    async with connected(charger):
        if car:
            charger.plug_in(1, COMPACT, soc=30)
        charger.inject_fault(1, "GroundFailure")
        faulted = await csms.wait_for(
            cp_id,
            "StatusNotification",
            predicate=lambda e: e.payload["connectorId"] == 1 and e.payload["status"] == "Faulted",
        )
        answer = await csms.call(
            cp_id, call.ChangeAvailability(connector_id=target, type="Inoperative")
        )
        assert answer.status == "Accepted"
        assert charger.evse(1).status is ConnectorStatus.FAULTED
        if whole:  # the rest of the charger is Unavailable, connector 0 with it
            await wait_until(lambda: charger.evse(2).status is ConnectorStatus.UNAVAILABLE)
            await csms.wait_for(
                cp_id,
                "StatusNotification",
                predicate=lambda e: (
                    e.payload["connectorId"] == 0 and e.payload["status"] == "Unavailable"
                ),
            )
        charger.clear_fault(1)
        cleared = await next_status(csms, cp_id, 1, after=csms.log.index(faulted) + 1)
        assert cleared.payload["status"] == "Unavailable"  # the first since the fault
        await csms.call(cp_id, call.ChangeAvailability(connector_id=target, type="Operative"))
        back = await next_status(csms, cp_id, 1, after=csms.log.index(cleared) + 1)
    assert back.payload["status"] == ("Preparing" if car else "Available")


async def test_unlock_connector_stops_the_transaction_first(csms, ticking):
    charger = runtime_charger("OP-UL", csms.url, evses=1)
    async with connected(charger):
        ticking(charger)
        await charging(csms, charger)
        mark = len(csms.log)
        answer = await csms.call("OP-UL", call.UnlockConnector(connector_id=1))
        stop = await csms.wait_for("OP-UL", "StopTransaction", after=mark)
        bad = await csms.call("OP-UL", call.UnlockConnector(connector_id=4))
    assert answer.status == "Unlocked"
    assert stop.payload["reason"] == "UnlockCommand"
    assert bad.status == "NotSupported"


async def test_clear_cache_and_data_transfer(csms):
    charger = runtime_charger("OP-DT", csms.url, evses=1)
    async with connected(charger):
        cleared = await csms.call("OP-DT", call.ClearCache())
        unknown = await csms.call("OP-DT", call.DataTransfer(vendor_id="Other"))
        echo = await csms.call(
            "OP-DT", call.DataTransfer(vendor_id="ChargeSim", message_id="echo", data="hi")
        )
        ours = await charger.data_transfer("Somebody", "ping")
    assert cleared.status == "Accepted"
    assert unknown.status == "UnknownVendorId"
    assert (echo.status, echo.data) == ("Accepted", "hi")
    assert ours["status"] == "UnknownVendorId"


# -- configuration keys ---------------------------------------------------------------------


async def test_connection_timeout_returns_preparing_to_available(csms):
    charger = runtime_charger("CK-CT", csms.url, evses=1, config={"ConnectionTimeOut": "1"})
    async with connected(charger):
        assert await charger.present_id_tag(1, "T") == "Accepted"
        assert charger.evse(1).status is ConnectorStatus.PREPARING
        await wait_until(
            lambda: charger.evse(1).status is ConnectorStatus.AVAILABLE,
            timeout=4,
            message="Available after ConnectionTimeOut",
        )
    assert not calls(csms, "CK-CT", "StartTransaction")


async def test_a_fault_ends_an_authorization_waiting_for_its_cable(csms):
    """An idTag accepted with no vehicle survived a fault: after the fault cleared the
    connector was Available with the countdown still running, and a plug-in then started
    a transaction at once."""
    charger = runtime_charger("CK-CF", csms.url, evses=1, config={"ConnectionTimeOut": "60"})
    async with connected(charger):
        assert await charger.present_id_tag(1, "T") == "Accepted"
        assert charger.evse(1).status is ConnectorStatus.PREPARING
        charger.inject_fault(1)
        charger.clear_fault(1)
        assert charger.evse(1).status is ConnectorStatus.AVAILABLE
        assert 1 not in charger.pending_authorizations
        assert snapshot(charger)["evses"][0]["authorization_expires_at"] is None
        charger.plug_in(1, COMPACT, soc=50)
        assert charger.evse(1).status is ConnectorStatus.PREPARING
        assert 1 not in charger.transactions
    assert not calls(csms, "CK-CF", "StartTransaction")


async def test_ev_side_disconnect_without_stopping_suspends(csms, ticking):
    charger = runtime_charger(
        "CK-EV", csms.url, evses=1, config={"StopTransactionOnEVSideDisconnect": "false"}
    )
    async with connected(charger):
        ticking(charger)
        await charging(csms, charger)
        charger.unplug(1)
        assert charger.evse(1).status is ConnectorStatus.SUSPENDED_EV
        assert 1 in charger.transactions
        charger.plug_in(1, COMPACT, soc=50)
        assert charger.evse(1).status is ConnectorStatus.CHARGING


async def test_an_invalid_id_at_start_stops_with_deauthorized(csms):
    csms.authorize = {}
    charger = runtime_charger("CK-INV", csms.url, evses=1)
    async with connected(charger):
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "GOOD") == "Accepted"
        await csms.wait_for("CK-INV", "StartTransaction")
    # Same tag now invalid at StartTransaction time:
    csms.authorize = {"LATE": "Invalid"}
    charger2 = runtime_charger(
        "CK-INV2", csms.url, evses=1, config={"AuthorizationCacheEnabled": "false"}
    )
    async with connected(charger2):
        charger2.plug_in(1, COMPACT, soc=20)
        charger2.start_transaction(1, "LATE")
        stop = await csms.wait_for("CK-INV2", "StopTransaction")
    assert stop.payload["reason"] == "DeAuthorized"


async def test_a_refused_id_that_may_not_stop_the_transaction_gets_no_energy(csms, ticking):
    """StopTransactionOnInvalidId=false: a StartTransaction answered Blocked goes on, but the
    charger "SHALL only stop energy delivery" (OCPP 1.6, 5.16). It used to say
    SuspendedEVSE once, and the meter's next visit charged on."""
    csms.start_transaction_status = "Blocked"
    charger = runtime_charger(
        "CK-BLK",
        csms.url,
        evses=1,
        config={"StopTransactionOnInvalidId": "false", "MeterValueSampleInterval": "1"},
    )
    async with connected(charger):
        ticking(charger)
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "LATE") == "Accepted"  # Authorize says so
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="the answer")
        evse = charger.evse(1)
        mark = len(csms.log)
        register = evse.register_wh
        await csms.wait_for("CK-BLK", "MeterValues", after=mark, timeout=3)
        await csms.wait_for("CK-BLK", "MeterValues", after=len(csms.log), timeout=3)
        assert 1 in charger.transactions
        assert evse.status is ConnectorStatus.SUSPENDED_EVSE
        assert evse.power_w == 0.0
        assert evse.register_wh == register
        statuses = [
            e.payload["status"]
            for e in csms.log[mark:]
            if e.cp_id == "CK-BLK" and e.action == "StatusNotification" and e.direction == "in"
        ]
        assert "Charging" not in statuses
        # Its end frees the connector: the next session, accepted, charges.
        charger.stop_transaction(1)
        csms.start_transaction_status = None
        charger.unplug(1)
        await charging(csms, charger, tag="T2")
        await wait_until(lambda: charger.evse(1).power_w > 0, message="the next session charging")


async def test_authorize_remote_tx_requests_authorizes_before_starting(csms):
    charger = runtime_charger(
        "CK-ART",
        csms.url,
        evses=1,
        simulate_ev_on_remote_start=True,
        config={"AuthorizeRemoteTxRequests": "true"},
    )
    async with connected(charger):
        mark = len(csms.log)
        await csms.call("CK-ART", call.RemoteStartTransaction(id_tag="R1", connector_id=1))
        await csms.wait_for("CK-ART", "StartTransaction", after=mark)
    order = [
        e.action
        for e in csms.log[mark:]
        if e.direction == "in"
        and e.message_type == 2
        and e.action in ("Authorize", "StartTransaction")
    ]
    assert order == ["Authorize", "StartTransaction"]


async def test_a_remote_start_is_authorized_like_a_local_action(csms):
    """QA: AuthorizeRemoteTxRequests authorizes a remote start "like a local action to
    start a transaction" (1.6): with LocalPreAuthorize, an idTag on the local list starts
    without an Authorize, as at the reader. The charger always sent one."""
    charger = runtime_charger(
        "CK-ARL",
        csms.url,
        evses=1,
        simulate_ev_on_remote_start=True,
        config={"AuthorizeRemoteTxRequests": "true", "LocalPreAuthorize": "true"},
    )
    async with connected(charger):
        assert await csms.send_local_list("CK-ARL", 1, {"LISTED": "Accepted"}) == "Accepted"
        mark = len(csms.log)
        await csms.call("CK-ARL", call.RemoteStartTransaction(id_tag="LISTED", connector_id=1))
        await csms.wait_for("CK-ARL", "StartTransaction", after=mark)
        assert not calls(csms, "CK-ARL", "Authorize", mark)


async def test_an_id_tag_of_the_same_group_stops_the_transaction(csms):
    """QA: an idTag with the parentIdTag of the one that started a transaction may stop it
    (OCPP 1.6; the compliance test TC_069_CS: an Authorize for the new idTag, then the
    StopTransaction with it). It was refused as "a transaction of another idTag"."""
    csms.authorize["DRIVER"] = IdTagInfo(status="Accepted", parent_id_tag="FLEET")
    csms.authorize["COLLEAGUE"] = IdTagInfo(status="Accepted", parent_id_tag="FLEET")
    csms.authorize["OUTSIDER"] = IdTagInfo(status="Accepted", parent_id_tag="OTHER")
    csms.authorize["BLOCKED"] = IdTagInfo(status="Blocked", parent_id_tag="FLEET")
    charger = runtime_charger("CK-GRP", csms.url, evses=1)
    async with connected(charger):
        await charging(csms, charger, tag="DRIVER")
        for other in ("OUTSIDER", "BLOCKED"):
            with pytest.raises(ActionError, match="another idTag"):
                await charger.present_id_tag(1, other)
        assert 1 in charger.transactions
        mark = len(csms.log)
        assert await charger.present_id_tag(1, "COLLEAGUE") == "Stopped"
        stop = await csms.wait_for("CK-GRP", "StopTransaction", after=mark)
    assert (stop.payload["idTag"], stop.payload["reason"]) == ("COLLEAGUE", "Local")
    sent = [e.action for e in csms.log[mark:] if e.direction == "in" and e.message_type == 2]
    assert sent[:2] == ["Authorize", "StopTransaction"]
    assert 1 not in charger.transactions


async def test_offline_authorization_uses_the_cache_or_allows_unknown_ids(csms):
    charger = runtime_charger(
        "CK-OFF", csms.url, evses=2, config={"AllowOfflineTxForUnknownId": "true"}
    )
    charger.auth_cache["KNOWN"] = "Accepted"
    charger.plug_in(1, COMPACT, soc=20)
    charger.plug_in(2, COMPACT, soc=20)
    assert await charger.present_id_tag(1, "KNOWN") == "Accepted"
    assert await charger.present_id_tag(2, "STRANGER") == "Accepted"
    strict = runtime_charger(
        "CK-OFF2", csms.url, evses=1, config={"LocalAuthorizeOffline": "false"}
    )
    strict.auth_cache["KNOWN"] = "Accepted"
    strict.plug_in(1, COMPACT, soc=20)
    assert await strict.present_id_tag(1, "KNOWN") == "Invalid"
    async with connected(charger):
        await csms.wait_for(
            "CK-OFF", "StartTransaction", predicate=lambda e: e.payload["idTag"] == "STRANGER"
        )
    charger.cancel_timers()


async def test_local_pre_authorize_starts_without_waiting_for_authorize(csms):
    charger = runtime_charger("CK-LPA", csms.url, evses=1, config={"LocalPreAuthorize": "true"})
    charger.auth_cache["CACHED"] = "Accepted"
    async with connected(charger):
        charger.plug_in(1, COMPACT, soc=20)
        await charger.present_id_tag(1, "CACHED")
        await csms.wait_for("CK-LPA", "StartTransaction")
    assert not calls(csms, "CK-LPA", "Authorize")


async def test_stop_transaction_carries_stop_txn_sampled_data(csms, ticking):
    charger = runtime_charger(
        "CK-STD",
        csms.url,
        evses=1,
        config={"StopTxnSampledData": "Energy.Active.Import.Register,SoC"},
    )
    async with connected(charger):
        ticking(charger)
        await charging(csms, charger)
        await asyncio.sleep(0.3)
        charger.stop_transaction(1, StopReason.LOCAL)
        stop = await csms.wait_for("CK-STD", "StopTransaction")
    data = stop.payload["transactionData"]
    contexts = [sv["context"] for mv in data for sv in mv["sampledValue"]]
    assert "Transaction.Begin" in contexts and "Transaction.End" in contexts
    assert {sv["measurand"] for mv in data for sv in mv["sampledValue"]} == {
        "Energy.Active.Import.Register",
        "SoC",
    }


async def test_stop_txn_sampled_data_is_sampled_every_interval_up_to_the_maximum(csms, ticking):
    # StopTxnSampledData (1.6 section 9.1): the measurands in StopTransaction's
    # transactionData every MeterValueSampleInterval from the start of the transaction;
    # at most StopTransactionMaxMeterValues of them, the begin and the end kept.
    charger = runtime_charger(
        "CK-STP",
        csms.url,
        evses=1,
        config={
            "MeterValueSampleInterval": "1",
            "StopTxnSampledData": "Energy.Active.Import.Register",
            "StopTransactionMaxMeterValues": "4",
        },
    )
    async with connected(charger):
        ticking(charger)
        await charging(csms, charger)
        await wait_until(
            lambda: len(calls(csms, "CK-STP", "MeterValues")) >= 3,
            message="three periodic samples",
        )
        charger.stop_transaction(1, StopReason.LOCAL)
        stop = await csms.wait_for("CK-STP", "StopTransaction")
    data = stop.payload["transactionData"]
    contexts = [mv["sampledValue"][0]["context"] for mv in data]
    assert contexts == [
        "Transaction.Begin",
        "Sample.Periodic",
        "Sample.Periodic",
        "Transaction.End",
    ]
    stamps = [mv["timestamp"] for mv in data]
    assert stamps == sorted(stamps)
    registers = [int(mv["sampledValue"][0]["value"]) for mv in data]
    assert registers == sorted(registers)


async def test_clock_aligned_values_are_sent_at_interval_boundaries(csms, ticking):
    charger = runtime_charger(
        "CK-CLK",
        csms.url,
        evses=1,
        config={
            "ClockAlignedDataInterval": "1",
            "MeterValuesAlignedData": "Energy.Active.Import.Register",
        },
    )
    async with connected(charger):
        ticking(charger)
        meter = await csms.wait_for("CK-CLK", "MeterValues", timeout=4)
    value = meter.payload["meterValue"][0]
    assert value["sampledValue"][0]["context"] == "Sample.Clock"
    assert value["timestamp"].endswith(".000Z")


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def test_a_boundary_before_the_transaction_start_is_not_a_sample_of_the_transaction(csms):
    config = {
        "ClockAlignedDataInterval": "1",
        "MeterValuesAlignedData": "Energy.Active.Import.Register",
        "MeterValueSampleInterval": "0",
        "StopTxnAlignedData": "SoC",
    }
    charger = runtime_charger("CP-ALIGN-ST", csms.url, evses=1, config=config)
    async with connected(charger):
        charger.plug_in(1, COMPACT, soc=30)
        tx = charger.start_transaction(1, "TAG")
        started = parse_iso(tx.started_at).timestamp()
        boundary = math.floor(started)
        if boundary == started:  # a start exactly on a boundary belongs to the transaction
            boundary -= 1
        # The tick before the boundary, then the first tick after the start: the boundary
        # lies between the two, before the transaction began.
        engine = MeterEngine([charger], tick_seconds=1.0)
        engine.tick(now=1000.0, wall=_utc(boundary - 0.5))
        engine.tick(now=1000.5 + started - boundary, wall=_utc(started + 0.05))
        engine.tick(now=1001.5 + started - boundary, wall=_utc(boundary + 1.05))
        charger.stop_transaction(1, StopReason.LOCAL)
        stop = await csms.wait_for("CP-ALIGN-ST", "StopTransaction")
        await wait_until(lambda: not charger.queue, message="queue drained")
    clock = [
        e.payload
        for e in csms.log
        if e.direction == "in" and e.message_type == 2 and e.action == "MeterValues"
    ]
    assert [p["meterValue"][0]["timestamp"] for p in clock] == [
        now_iso(_utc(boundary)),
        now_iso(_utc(boundary + 1)),
    ]
    assert "transactionId" not in clock[0]  # before the start: not the transaction's
    assert int(clock[0]["meterValue"][0]["sampledValue"][0]["value"]) == tx.meter_start
    assert clock[1]["transactionId"] == tx.transaction_id
    aligned = [
        v["timestamp"]
        for v in stop.payload["transactionData"]
        if v["sampledValue"][0]["context"] == "Sample.Clock"
    ]
    assert aligned == [now_iso(_utc(boundary + 1))]


async def test_transaction_messages_are_dropped_after_the_attempts(csms, caplog):
    csms.fail_actions = {"StartTransaction": "InternalError"}
    charger = runtime_charger(
        "CK-ATT",
        csms.url,
        evses=1,
        config={"TransactionMessageAttempts": "2", "TransactionMessageRetryInterval": "0"},
    )
    async with connected(charger):
        charger.plug_in(1, COMPACT, soc=20)
        await charger.present_id_tag(1, "T")
        await wait_until(
            lambda: len(calls(csms, "CK-ATT", "StartTransaction")) == 2, message="two attempts"
        )
        await wait_until(lambda: not charger.queue, message="dropped")
    assert "dropping StartTransaction after 2 failed attempts" in caplog.text


async def test_minimum_status_duration_hides_short_lived_statuses(csms):
    charger = runtime_charger("CK-MSD", csms.url, evses=1, config={"MinimumStatusDuration": "1"})
    async with connected(charger):
        await wait_until(
            lambda: len(calls(csms, "CK-MSD", "StatusNotification")) == 2, message="boot statuses"
        )
        mark = len(csms.log)
        charger.plug_in(1, COMPACT, soc=20)  # Preparing ...
        charger.unplug(1)  # ... and back to Available within the minimum duration
        await asyncio.sleep(1.5)
        charger.plug_in(1, COMPACT, soc=20)
        await csms.wait_for("CK-MSD", "StatusNotification", after=mark, timeout=3)
    sent = [e.payload["status"] for e in calls(csms, "CK-MSD", "StatusNotification", mark)]
    assert sent == ["Preparing"]


# -- 1.6 error codes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('[2,"e1","NoSuchAction",{}]', "NotImplemented"),
        (
            '[2,"e2","ReserveNow",{"connectorId":1,"expiryDate":"2030-01-01T00:00:00Z",'
            '"idTag":"T","reservationId":1}]',
            "NotSupported",
        ),
        ('[2,"e3","Reset",{}]', "OccurenceConstraintViolation"),
        ('[2,"e4","Reset",{"type":5}]', "TypeConstraintViolation"),
        ('[2,"e5","Reset",{"type":"Sometimes"}]', "PropertyConstraintViolation"),
        (
            '[2,"e6","ChangeConfiguration",{"key":"' + "K" * 60 + '","value":"1"}]',
            "PropertyConstraintViolation",
        ),
        ('[2,"e7","Reset",["Soft"]]', "FormationViolation"),
        ('[2,"e8","Reset"]', "ProtocolError"),
        ('[2,"e9","Reset",{"type":"Soft","extra":1}]', "FormationViolation"),
        # Not the CALL's structure (OCPP-J 4.2.3), but nothing of the payload is missing:
        # FormationViolation, not ProtocolError (QA20).
        ('[2,"e10","Heartbeat",{},"extra"]', "FormationViolation"),
        ('[2,"e11","Reset",{"type":"Soft"},{}]', "FormationViolation"),
    ],
)
async def test_malformed_frames_get_the_1_6_callerror_and_the_charger_keeps_running(
    csms, frame, code
):
    # Without the Reservation profile: ReserveNow is a known action it does not support.
    profiles = {"SupportedFeatureProfiles": "Core,SmartCharging,RemoteTrigger"}
    charger = runtime_charger("ERR-1", csms.url, evses=1, config=profiles)
    async with connected(charger):
        unique_id = await csms.send_raw("ERR-1", frame)
        reply = await csms.wait_for("ERR-1", direction="in", unique_id=unique_id)
        assert reply.message_type == 4
        assert reply.error_code == code
        still = await csms.call("ERR-1", call.GetConfiguration(key=["HeartbeatInterval"]))
        assert still.configuration_key[0]["value"] == "300"


async def test_frames_that_cannot_be_answered_are_ignored(csms):
    charger = runtime_charger("ERR-2", csms.url, evses=1)
    async with connected(charger):
        for text in ("not json", "{}", '[7,"x",1]', "[2]", '[3,"nobody-asked",{}]'):
            await csms.send_raw("ERR-2", text)
        still = await csms.call("ERR-2", call.GetConfiguration(key=["HeartbeatInterval"]))
    assert still.configuration_key[0]["value"] == "300"
    assert not [e for e in csms.log if e.cp_id == "ERR-2" and e.message_type == 4]


async def test_a_cable_stays_locked_after_ev_disconnect_until_unlocked(csms, ticking):
    charger = runtime_charger(
        "CK-ULK", csms.url, evses=2, config={"UnlockConnectorOnEVSideDisconnect": "false"}
    )
    async with connected(charger):
        ticking(charger)
        await charging(csms, charger, 1, "A")
        await charging(csms, charger, 2, "B")
        charger.unplug(1)
        charger.unplug(2)
        stop = await csms.wait_for("CK-ULK", "StopTransaction")
        assert stop.payload["reason"] == "EVDisconnected"
        assert charger.evse(1).status is ConnectorStatus.FINISHING  # cable still locked
        answer = await csms.call("CK-ULK", call.UnlockConnector(connector_id=1))
        assert answer.status == "Unlocked"
        assert charger.evse(1).status is ConnectorStatus.AVAILABLE
        assert await charger.present_id_tag(2, "B") == "Unlocked"
        assert charger.evse(2).status is ConnectorStatus.AVAILABLE
    unlocked = runtime_charger("CK-ULK2", csms.url, evses=1)
    async with connected(unlocked):
        ticking(unlocked)
        await charging(csms, unlocked)
        unlocked.unplug(1)
        assert unlocked.evse(1).status is ConnectorStatus.AVAILABLE


# -- the order of what a charger sends ------------------------------------------------------


def _sent_by(csms, cp_id, after):
    """What the charger sent after `after`: ("answer", action) or ("call", action, payload)."""
    out: list[tuple[str, str | None, dict]] = []
    for entry in csms.log[after:]:
        if entry.cp_id != cp_id or entry.direction != "in":
            continue
        if entry.message_type in (3, 4):  # CALLRESULT or CALLERROR
            out.append(("answer", entry.action, {}))
        elif entry.message_type == 2:
            out.append(("call", entry.action, entry.payload))
    return out


def _position(sent, kind, action, **fields):
    return next(
        i
        for i, (k, a, payload) in enumerate(sent)
        if k == kind and a == action and all(payload.get(f) == v for f, v in fields.items())
    )


async def test_a_call_is_answered_before_the_status_it_causes(csms, ticking):
    charger = runtime_charger("ORD-1", csms.url, evses=2)
    async with connected(charger):
        ticking(charger)
        tx = await charging(csms, charger)
        mark = len(csms.log)
        await csms.call("ORD-1", call.RemoteStopTransaction(transaction_id=tx))
        await csms.call("ORD-1", call.ChangeAvailability(connector_id=2, type="Inoperative"))
        await csms.wait_for(
            "ORD-1",
            "StatusNotification",
            after=mark,
            predicate=lambda e: e.payload.get("status") == "Unavailable",
        )
        await csms.wait_for("ORD-1", "StopTransaction", after=mark)
        sent = _sent_by(csms, "ORD-1", mark)
    answered = _position(sent, "answer", "RemoteStopTransaction")
    assert answered < _position(
        sent, "call", "StatusNotification", connectorId=1, status="Finishing"
    )
    assert answered < _position(sent, "call", "StopTransaction", transactionId=tx)
    assert _position(sent, "answer", "ChangeAvailability") < _position(
        sent, "call", "StatusNotification", connectorId=2, status="Unavailable"
    )


async def test_a_handler_that_breaks_still_answers_before_what_it_queued(
    csms, ticking, monkeypatch
):
    # The handler stopped the session, then broke: its InternalError answer still goes
    # before the StopTransaction and StatusNotification(Finishing) it queued.
    charger = runtime_charger("ORD-2", csms.url, evses=1)
    async with connected(charger):
        ticking(charger)
        tx = await charging(csms, charger)
        stop = charger.remote_stop

        def stop_then_break(transaction_id: int) -> str:
            stop(transaction_id)
            raise RuntimeError("the handler breaks after stopping the session")

        monkeypatch.setattr(charger, "remote_stop", stop_then_break)
        mark = len(csms.log)
        with pytest.raises(InternalError):
            await csms.call("ORD-2", call.RemoteStopTransaction(transaction_id=tx))
        await csms.wait_for("ORD-2", "StopTransaction", after=mark)
        await csms.wait_for(
            "ORD-2",
            "StatusNotification",
            after=mark,
            predicate=lambda e: e.payload.get("status") == "Finishing",
        )
        sent = _sent_by(csms, "ORD-2", mark)
    answered = _position(sent, "answer", "RemoteStopTransaction")
    assert answered < _position(sent, "call", "StopTransaction", transactionId=tx)
    assert answered < _position(sent, "call", "StatusNotification", status="Finishing")


@pytest.mark.parametrize("why", ["refused", "no car in time"])
async def test_a_remote_start_that_never_starts_leaves_its_profile_to_no_later_session(
    csms, ticking, why
):
    """RemoteStartTransaction with a TxProfile that starts no transaction (its idTag
    refused by Authorize under AuthorizeRemoteTxRequests, or no car plugged in within
    ConnectionTimeOut): the profile goes with it. It was kept for the connector and
    installed on the next driver's own session, holding a local start at the remote
    start's 5 kW."""
    cp_id = f"SC-STALE-{why.split()[0]}"
    config = (
        {"AuthorizeRemoteTxRequests": "true"}
        if why == "refused"
        else {"AuthorizeRemoteTxRequests": "false", "ConnectionTimeOut": "1"}
    )
    charger = runtime_charger(cp_id, csms.url, evses=1, config=config)
    csms.authorize = {"REMOTE": "Invalid"} if why == "refused" else {}
    profile = tx_default(22, 1, 5000)
    profile["chargingProfilePurpose"] = "TxProfile"
    async with connected(charger):
        ticking(charger)
        mark = len(csms.log)
        answer = await csms.call(
            cp_id,
            call.RemoteStartTransaction(id_tag="REMOTE", connector_id=1, charging_profile=profile),
        )
        assert answer.status == "Accepted"
        if why == "refused":
            await csms.wait_for(cp_id, "Authorize", after=mark, direction="out")
        else:
            await wait_until(
                lambda: 1 not in charger.pending_authorizations, timeout=5, message="time out"
            )
        charger.plug_in(1, COMPACT, soc=20)
        assert await charger.present_id_tag(1, "DRIVER") == "Accepted"
        await wait_until(lambda: charger.evse(1).power_w > 0, message="the driver charging")
        await asyncio.sleep(0.2)
        assert len(charger.profiles) == 0
        assert charger.evse(1).power_w == pytest.approx(11_000, rel=1e-3)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"stackLevel": 11}, "above ChargeProfileMaxStackLevel"),
        (
            {
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [
                        {"startPeriod": 60 * n, "limit": 16} for n in range(25)
                    ],
                }
            },
            "more periods than ChargingScheduleMaxPeriods",
        ),
    ],
)
async def test_a_remote_start_with_a_profile_the_charger_cannot_install_is_rejected(
    csms, change, why
):
    """The remote start was Accepted and its profile dropped at the start without a word:
    the car charged unlimited while the CSMS took the session as limited."""
    charger = runtime_charger("SC-NOFIT", csms.url, evses=1)
    profile = tx_default(23, 1, 5000)
    profile["chargingProfilePurpose"] = "TxProfile"
    profile.update(change)
    async with connected(charger):
        answer = await csms.call(
            "SC-NOFIT",
            call.RemoteStartTransaction(id_tag="T", connector_id=1, charging_profile=profile),
        )
        assert answer.status == "Rejected", why
        assert not charger.pending_authorizations and not charger.pending_profiles
