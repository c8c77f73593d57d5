"""What an EVSE offers a car: no AC offer below 6 A a phase (IEC 61851-1's control pilot), and
SuspendedEVSE over SuspendedEV when the charger offers nothing to a car that wants nothing
either (OCPP 1.6, 4.9). Over real loopback WebSockets against the built-in CSMS, plus
property tests of the sharing with a floor."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from ocpp.v16 import call

from simulator.core.battery import MIN_AC_AMPS
from simulator.core.dc_voltage import pack_voltage
from simulator.core.evse import ConnectorStatus
from simulator.core.operations import Operations
from simulator.core.power_sharing import FIRST, share
from simulator.core.smart_charging import distribute, distribute_above
from tests.engine import (
    COMPACT,
    PHEV,
    boot_reports_answered,
    connected,
    runtime_charger,
    wait_until,
)

Status = ConnectorStatus
THREE_PHASE_6A_W = MIN_AC_AMPS * 230.0 * 3  # 4,140 W


def profile(purpose, limit, unit="A", profile_id=1, **extra):
    return {
        "chargingProfileId": profile_id,
        "stackLevel": 0,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
        },
        **extra,
    }


async def install(csms, cp_id, connector, body):
    answer = await csms.call(
        cp_id, call.SetChargingProfile(connector_id=connector, cs_charging_profiles=body)
    )
    assert answer.status == "Accepted"


async def clear(csms, cp_id, profile_id):
    answer = await csms.call(cp_id, call.ClearChargingProfile(id=profile_id))
    assert answer.status == "Accepted"


async def session(charger, connector, tag, vehicle=COMPACT, soc=20.0, target=100.0):
    charger.plug_in(connector, vehicle, soc=soc, target_soc=target)
    assert await charger.present_id_tag(connector, tag) == "Accepted"
    await wait_until(
        lambda: charger.evse(connector).transaction_id is not None, message="StartTransaction.conf"
    )


async def reported(csms, cp_id, connector, status, after):
    """The CSMS hears this status of this connector (after log index `after`)."""
    return await csms.wait_for(
        cp_id,
        "StatusNotification",
        after=after,
        predicate=lambda e: e.payload["connectorId"] == connector and e.payload["status"] == status,
    )


def statuses_heard(csms, connector, after):
    """The statuses of this connector the CSMS heard (after log index `after`)."""
    return [
        e.payload["status"]
        for e in csms.log[after:]
        if e.action == "StatusNotification"
        and e.message_type == 2
        and e.payload["connectorId"] == connector
    ]


# -- the AC minimum ----------------------------------------------------------------------


async def test_an_ac_limit_below_6_a_suspends_the_car_and_6_a_lets_it_charge(csms, ticking):
    charger = runtime_charger("OF-AMP", csms.url, evses=1)
    async with connected(charger):
        ticking(charger)
        await session(charger, 1, "A")
        await wait_until(lambda: charger.evse(1).power_w > 10_000, message="charging")
        mark = len(csms.log)
        tx = charger.evse(1).transaction_id
        await install(csms, "OF-AMP", 1, profile("TxProfile", 5.9, transactionId=tx))
        await reported(csms, "OF-AMP", 1, "SuspendedEVSE", mark)
        assert charger.evse(1).power_w == 0.0 and not any(charger.evse(1).current_a)
        mark = len(csms.log)
        await install(csms, "OF-AMP", 1, profile("TxProfile", 6, transactionId=tx))
        await reported(csms, "OF-AMP", 1, "Charging", mark)
        await wait_until(lambda: charger.evse(1).power_w > 0, message="flowing again")
        assert charger.evse(1).current_a == pytest.approx((6.0, 6.0, 6.0))
        assert charger.evse(1).power_w == pytest.approx(THREE_PHASE_6A_W)


OFFERED = {
    "MeterValueSampleInterval": "1",
    "MeterValuesSampledData": "Power.Active.Import,Current.Offered,Power.Offered",
}


async def sampled(csms, cp_id, connector, after):
    """The readings of the next periodic MeterValues of `connector` (after log index `after`)."""
    meter = await csms.wait_for(
        cp_id,
        "MeterValues",
        after=after,
        predicate=lambda e: e.payload["connectorId"] == connector,
        timeout=4,
    )
    return {
        sv["measurand"]: float(sv["value"]) for sv in meter.payload["meterValue"][0]["sampledValue"]
    }


async def test_an_offer_below_6_a_is_reported_as_nothing_offered(csms, ticking):
    # The car draws nothing under 4 A: the EVSE offers nothing (it cannot signal 4 A), and
    # its Offered readings say so rather than report a limit nobody can use.
    charger = runtime_charger("OF-REP", csms.url, evses=1, config=OFFERED)
    async with connected(charger):
        ticking(charger)
        await session(charger, 1, "A")
        tx = charger.evse(1).transaction_id
        mark = len(csms.log)
        await install(csms, "OF-REP", 1, profile("TxProfile", 4, transactionId=tx))
        await reported(csms, "OF-REP", 1, "SuspendedEVSE", mark)
        held = await sampled(csms, "OF-REP", 1, len(csms.log))
        mark = len(csms.log)
        await install(csms, "OF-REP", 1, profile("TxProfile", 6, transactionId=tx))
        await reported(csms, "OF-REP", 1, "Charging", mark)
        await wait_until(lambda: charger.evse(1).power_w > 0, message="flowing again")
        flowing = await sampled(csms, "OF-REP", 1, len(csms.log))
    assert held == {"Power.Active.Import": 0.0, "Current.Offered": 0.0, "Power.Offered": 0.0}
    assert flowing == {
        "Power.Active.Import": pytest.approx(THREE_PHASE_6A_W),
        "Current.Offered": 6.0,
        "Power.Offered": pytest.approx(THREE_PHASE_6A_W),
    }


async def test_a_watt_limit_offers_the_current_on_the_phases_the_car_uses(csms, ticking):
    # 2 kW to a single-phase car is 8.7 A on its phase, and it draws that; to a three-phase
    # car it is 2.9 A a phase, no offer.
    charger = runtime_charger("OF-WREP", csms.url, evses=2, max_kw=44.0, config=OFFERED)
    async with connected(charger):
        ticking(charger)
        await install(csms, "OF-WREP", 0, profile("TxDefaultProfile", 2_000, unit="W"))
        await session(charger, 1, "A", vehicle=PHEV)
        await session(charger, 2, "B", vehicle=COMPACT)
        await wait_until(
            lambda: charger.evse(2).status is Status.SUSPENDED_EVSE, message="3-phase car held"
        )
        await wait_until(lambda: charger.evse(1).power_w > 0, message="1-phase car charging")
        mark = len(csms.log)
        one_phase = await sampled(csms, "OF-WREP", 1, mark)
        three_phase = await sampled(csms, "OF-WREP", 2, mark)
    assert one_phase == {
        "Power.Active.Import": pytest.approx(2_000),
        "Current.Offered": pytest.approx(8.7),
        "Power.Offered": pytest.approx(2_000),
    }
    assert three_phase == {"Power.Active.Import": 0.0, "Current.Offered": 0.0, "Power.Offered": 0.0}


async def test_a_watt_limit_counts_the_phases_the_car_uses(csms, ticking):
    # 2 kW is 2.9 A on each of three phases (no offer) but 8.7 A on one: a single-phase car
    # charges under it, a three-phase one does not.
    charger = runtime_charger("OF-W", csms.url, evses=2, max_kw=44.0)
    async with connected(charger):
        ticking(charger)
        await install(csms, "OF-W", 0, profile("TxDefaultProfile", 2_000, unit="W"))
        await session(charger, 1, "A", vehicle=PHEV)
        await session(charger, 2, "B", vehicle=COMPACT)
        await wait_until(
            lambda: charger.evse(2).status is Status.SUSPENDED_EVSE, message="3-phase car held"
        )
        await wait_until(lambda: charger.evse(1).power_w > 0, message="1-phase car charging")
        assert charger.evse(1).status is Status.CHARGING
        assert charger.evse(1).power_w == pytest.approx(2_000)
        assert charger.evse(2).power_w == 0.0


@pytest.mark.parametrize(
    ("limit", "unit", "drawn_w"),
    [
        (10, "A", 10 * 230.0),  # 10 A on its one phase
        (3_000, "W", 3_000.0),  # above its 6 A minimum (1,380 W), under its 3.7 kW
    ],
)
async def test_a_charge_point_max_binds_a_single_phase_car_on_the_phase_it_uses(
    csms, ticking, limit, unit, drawn_w
):
    """A ChargePointMax was converted over the EVSE's three phases: a single-phase car's
    3.7 kW wanted 5.3 A "a phase", under 6 A, and 3 kW fell short of a 4.1 kW minimum, so
    the car waited (SuspendedEVSE) where the same limit as a TxProfile let it charge."""
    charger = runtime_charger(f"OF-CPM1-{unit}", csms.url, evses=1, max_kw=22.0, config=OFFERED)
    async with connected(charger):
        ticking(charger)
        await install(csms, charger.id, 0, profile("ChargePointMaxProfile", limit, unit=unit))
        await session(charger, 1, "A", vehicle=PHEV)
        await wait_until(lambda: charger.evse(1).power_w > 0, message="the car charging")
        await asyncio.sleep(0.2)
        assert charger.evse(1).status is Status.CHARGING
        assert charger.evse(1).power_w == pytest.approx(drawn_w, rel=1e-3)


@pytest.mark.parametrize(("limit", "unit"), [(16, "A"), (7_000, "W")])
async def test_a_profile_of_one_phase_has_a_three_phase_car_draw_on_one(csms, ticking, limit, unit):
    """numberPhases 1 (OCPP 1.6: the phases that can be used): 16 A was 3.7 kW spread
    over three phases (5.3 A each: SuspendedEVSE), and 7 kW was drawn on three phases,
    where GetCompositeSchedule said one. On one phase the car takes a third of its 11 kW
    on-board charger: 16 A, 3.68 kW, under either limit."""
    charger = runtime_charger(f"OF-1PH-{unit}", csms.url, evses=1, max_kw=22.0)
    async with connected(charger):
        ticking(charger)
        body = profile("TxDefaultProfile", limit, unit=unit)
        body["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"] = 1
        await install(csms, charger.id, 0, body)
        await session(charger, 1, "A", vehicle=COMPACT)
        await wait_until(lambda: charger.evse(1).power_w > 0, message="the car charging")
        await asyncio.sleep(0.2)
        assert charger.evse(1).status is Status.CHARGING
        assert charger.evse(1).current_a == pytest.approx((11_000 / 3 / 230.0,))
        assert charger.evse(1).power_w == pytest.approx(11_000 / 3)


async def test_a_profile_of_one_phase_offers_its_current_on_that_phase(csms, ticking):
    # 10 A on one phase: the car drew 2.3 kW on L1 while the offer read 0 (10 A counted
    # over three phases is 2.3 kW, under the 6 A x 3 phase minimum).
    charger = runtime_charger("OF-1PHO", csms.url, evses=1, max_kw=22.0, config=OFFERED)
    async with connected(charger):
        ticking(charger)
        body = profile("TxDefaultProfile", 10)
        body["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"] = 1
        await install(csms, charger.id, 0, body)
        await session(charger, 1, "A", vehicle=COMPACT)
        await wait_until(lambda: charger.evse(1).power_w > 0, message="the car charging")
        read = await sampled(csms, charger.id, 1, len(csms.log))
    assert read == {
        "Power.Active.Import": pytest.approx(2_300),
        "Current.Offered": pytest.approx(10.0),
        "Power.Offered": pytest.approx(2_300),
    }


async def test_a_charge_point_max_lets_a_single_phase_and_a_three_phase_car_charge(csms, ticking):
    """8 kW covers a single-phase car's 6 A minimum (1.4 kW) and a three-phase one's
    (4.1 kW): both charge. The single-phase minimum was counted over three phases, and the
    second car waited."""
    from dataclasses import replace

    # A single-phase car that could take 7.4 kW (32 A): it does not leave room by itself.
    strong = replace(PHEV, ac_max_kw=7.4, curve=((0, 7.4), (90, 7.4), (100, 1.5)))
    charger = runtime_charger("OF-CPM2", csms.url, evses=2, max_kw=44.0)
    async with connected(charger):
        ticking(charger)
        await install(csms, "OF-CPM2", 0, profile("ChargePointMaxProfile", 8_000, unit="W"))
        await session(charger, 1, "A", vehicle=strong)
        await session(charger, 2, "B", vehicle=COMPACT)
        await wait_until(
            lambda: charger.evse(1).power_w > 0 and charger.evse(2).power_w > 0, message="both"
        )
        await asyncio.sleep(0.2)
        assert charger.evse(1).power_w + charger.evse(2).power_w <= 8_000 + 1e-6
        assert charger.evse(2).status is Status.CHARGING


async def test_a_charge_point_max_too_small_for_every_car_lets_the_first_ones_charge(csms, ticking):
    # 16 A for three cars: 5.3 A each would charge none of them. The first two charge at 8 A,
    # the last one waits, and charges when a place is free.
    charger = runtime_charger("OF-CPM", csms.url, evses=3, max_kw=66.0)
    async with connected(charger):
        ticking(charger)
        await install(csms, "OF-CPM", 0, profile("ChargePointMaxProfile", 16))
        for connector, tag in ((1, "A"), (2, "B"), (3, "C")):
            await session(charger, connector, tag)
        await wait_until(
            lambda: charger.evse(3).status is Status.SUSPENDED_EVSE, message="the last waits"
        )
        await wait_until(
            lambda: charger.evse(1).power_w > 0 and charger.evse(2).power_w > 0, message="two"
        )
        await asyncio.sleep(0.2)
        assert [e.current_a for e in charger.evses[:2]] == [
            pytest.approx((8.0, 8.0, 8.0)),
            pytest.approx((8.0, 8.0, 8.0)),
        ]
        assert charger.evse(3).power_w == 0.0
        mark = len(csms.log)
        charger.stop_transaction(1)
        await reported(csms, "OF-CPM", 3, "Charging", mark)
        await wait_until(lambda: charger.evse(3).power_w > 0, message="the third charging")
        assert charger.evse(3).current_a == pytest.approx((8.0, 8.0, 8.0))


async def test_a_shared_ac_supply_too_small_for_every_car_admits_as_many_as_it_can(csms, ticking):
    # 11 kW for three 11 kW connectors and cars: thirds (3.7 kW, 5.3 A a phase) would charge
    # none; two charge at 5.5 kW and the last waits.
    charger = runtime_charger("OF-SUP", csms.url, evses=3, max_kw=11.0)
    async with connected(charger):
        ticking(charger)
        for connector, tag in ((1, "A"), (2, "B"), (3, "C")):
            await session(charger, connector, tag)
        await wait_until(
            lambda: charger.evse(3).status is Status.SUSPENDED_EVSE, message="the last waits"
        )
        await asyncio.sleep(0.2)
        drawn = [e.power_w for e in charger.evses]
        assert drawn == [pytest.approx(5_500), pytest.approx(5_500), 0.0]


@pytest.mark.parametrize("policy", ["equal", FIRST])
async def test_a_shared_ac_supply_gives_no_car_less_than_6_a(csms, ticking, policy):
    # 11 kW for two single-phase cars (3.67 kW each) and a three-phase one, which needs
    # 4.14 kW to charge at all. Equal shares: each gets its minimum and they share the rest.
    # First come: the first two take what they want and the 3.6 kW left is no offer.
    charger = runtime_charger("OF-MIX", csms.url, evses=3, max_kw=11.0, power_sharing=policy)
    async with connected(charger):
        ticking(charger)
        for connector, tag, vehicle in ((1, "A", PHEV), (2, "B", PHEV), (3, "C", COMPACT)):
            await session(charger, connector, tag, vehicle=vehicle)
        await wait_until(lambda: charger.evse(2).power_w > 0, message="sharing")
        await asyncio.sleep(0.3)
        drawn = [e.power_w for e in charger.evses]
        assert sum(drawn) <= 11_000 + 1
        if policy == "equal":
            assert drawn[2] >= THREE_PHASE_6A_W - 1e-6
            assert charger.evse(3).status is Status.CHARGING
        else:
            # A single-phase car on this EVSE: a third of its 11 kW.
            assert drawn[:2] == [pytest.approx(11_000 / 3), pytest.approx(11_000 / 3)]
            assert drawn[2] == 0.0
            assert charger.evse(3).status is Status.SUSPENDED_EVSE


async def test_dc_charges_under_a_small_limit(csms, ticking):
    charger = runtime_charger("OF-DC", csms.url, evses=1, power_type="DC", max_kw=150.0)
    async with connected(charger):
        ticking(charger)
        await session(charger, 1, "A")
        tx = charger.evse(1).transaction_id
        await install(csms, "OF-DC", 1, profile("TxProfile", 1_000, unit="W", transactionId=tx))
        await wait_until(
            lambda: 0 < charger.evse(1).power_w <= 1_000 + 1e-6, message="held to 1 kW"
        )
        assert charger.evse(1).status is Status.CHARGING


DC_SAMPLED = {
    "MeterValueSampleInterval": "1",
    "MeterValuesSampledData": (
        "Power.Active.Import,Current.Import,Voltage,Current.Offered,Power.Offered"
    ),
}


@pytest.mark.parametrize("amps", [100, 250])
async def test_a_dc_amp_limit_is_the_dc_current_at_the_pack_voltage(csms, ticking, amps):
    # It was converted into watts over 230 V x 3: 100 A were 69 kW, which an ID.3 at 350 V
    # draws at 198 A.
    (read,) = await dc_draws(csms, ticking, "OF-DCA", (1, profile("TxDefaultProfile", amps)))
    volts = read["Voltage"]
    assert 300 < volts < 410
    drawn = min(amps, 120_000 / volts)  # the car's own 120 kW bind above ~340 A
    assert read["Current.Import"] == pytest.approx(drawn, abs=0.02)
    assert read["Power.Active.Import"] == pytest.approx(drawn * volts, rel=1e-3)
    assert read["Current.Offered"] == pytest.approx(amps, abs=0.1)
    assert read["Power.Offered"] == pytest.approx(amps * volts, rel=1e-3)


async def test_a_dc_watt_limit_offers_its_current_at_the_pack_voltage(csms, ticking):
    # Current.Offered was the watts over 230 V x 3 (72.5 A for 50 kW) while the car drew
    # 50 kW at its pack voltage (~140 A).
    (read,) = await dc_draws(
        csms, ticking, "OF-DCW", (1, profile("TxDefaultProfile", 50_000, unit="W"))
    )
    volts = read["Voltage"]
    assert read["Power.Active.Import"] == pytest.approx(50_000, rel=1e-3)
    assert read["Current.Import"] == pytest.approx(50_000 / volts, abs=0.02)
    assert read["Power.Offered"] == pytest.approx(50_000, abs=0.1)
    assert read["Current.Offered"] == pytest.approx(50_000 / volts, abs=0.1)


@pytest.mark.parametrize(
    ("policy", "full_first", "left_w"),
    [
        ("equal", True, 50_000.0),
        ("equal", False, 50_000.0),
        ("first", True, 100_000.0),  # its session came first: it would get all it asks
        ("first", False, 0.0),  # the other came first and takes all of it
    ],
)
async def test_a_connector_drawing_nothing_is_offered_what_the_others_leave(
    csms, ticking, policy, full_first, left_w
):
    # A 100 kW cabinet with two 100 kW connectors: one car is full, the other draws all
    # of the cabinet. Both were offered 100 kW. The full one is offered what it would get
    # if it asked: half under equal shares; under first come first served, all of it or
    # nothing, by whose session started first.
    charger = runtime_charger("OF-LEFT", csms.url, evses=2, power_type="DC", max_kw=100.0,
                              config=OFFERED, power_sharing=policy)  # fmt: skip
    async with connected(charger):
        ticking(charger)
        if not full_first:
            await session(charger, 1, "A", soc=20.0)
        mark = len(csms.log)
        await session(charger, 2, "B", soc=50.0, target=50.0)
        await reported(csms, "OF-LEFT", 2, "SuspendedEV", mark)
        if full_first:
            await session(charger, 1, "A", soc=20.0)
        await wait_until(lambda: charger.evse(1).power_w == 100_000, message="first at 100 kW")
        mark = len(csms.log)
        drawing = await sampled(csms, "OF-LEFT", 1, mark)
        full = await sampled(csms, "OF-LEFT", 2, mark)
    assert drawing["Power.Offered"] == pytest.approx(100_000)
    assert full["Power.Active.Import"] == 0.0
    assert full["Power.Offered"] == pytest.approx(left_w)


@pytest.mark.parametrize(
    ("policy", "offers_w"),
    [
        ("equal", (11_000.0, 11_000.0)),  # half the rated power each
        # The first would get all its EVSE gives if its car asked; the second, what the
        # first's car leaves.
        ("first", (22_000.0, 11_000.0)),
    ],
)
async def test_cars_that_fit_the_rated_power_are_offered_their_shares_of_it(
    csms, ticking, policy, offers_w
):
    # A 22 kW charger with two 22 kW EVSEs, an 11 kW car on each: both fit, so nothing
    # was shared, and each was offered its EVSE's 22 kW, 44 kW in all of 22 kW.
    charger = runtime_charger("OF-FIT", csms.url, config=OFFERED, power_sharing=policy)
    async with connected(charger):
        ticking(charger)
        await session(charger, 1, "A")
        await wait_until(lambda: charger.evse(1).power_w > 0, message="the first charging")
        await session(charger, 2, "B")
        await wait_until(lambda: charger.evse(2).power_w > 0, message="the second charging")
        mark = len(csms.log)
        reads = [await sampled(csms, "OF-FIT", c, mark) for c in (1, 2)]
    for read, offer_w in zip(reads, offers_w, strict=True):
        assert read["Power.Active.Import"] == pytest.approx(11_000, abs=1)
        assert read["Power.Offered"] == pytest.approx(offer_w, abs=0.1)
        assert read["Current.Offered"] == pytest.approx(offer_w / (230 * 3), abs=0.01)


async def dc_draws(csms, ticking, cp_id, *profiles, sessions=((1, 20.0),)):
    """A DC charger rated 150 kW (each EVSE too) on the built-in CSMS: install `profiles`
    ((connector, body), ...), start a car on each of `sessions` ((connector, SoC), ...),
    and return each connector's readings of a MeterValues sampled once the limits are in
    force, with its status then (`status`)."""
    charger = runtime_charger(cp_id, csms.url, evses=max(c for c, _ in sessions),
                              power_type="DC", max_kw=150.0, config=DC_SAMPLED)  # fmt: skip
    async with connected(charger):
        ticking(charger)
        for connector, body in profiles:
            await install(csms, cp_id, connector, body)
        for connector, soc in sessions:
            await session(charger, connector, f"T{connector}", soc=soc)
        await wait_until(
            lambda: all(charger.limits.get(c) is not None for c, _ in sessions), message="limits"
        )
        await sampled(csms, cp_id, sessions[-1][0], len(csms.log))  # past any change
        mark = len(csms.log)
        reads = [await sampled(csms, cp_id, c, mark) for c, _ in sessions]
        for read, (connector, _) in zip(reads, sessions, strict=True):
            read["status"] = str(charger.evse(connector).status)
    return reads


async def test_a_dc_charge_point_max_in_amps_that_does_not_bind_changes_nothing(csms, ticking):
    # Its shares were worked out over 230 V x 3 and then applied as DC current: under a
    # 400 A ChargePointMax an ID.3 that draws 336 A got 170 A.
    (read,) = await dc_draws(csms, ticking, "OF-CPA", (0, profile("ChargePointMaxProfile", 400)))
    assert read["Power.Active.Import"] == pytest.approx(117_500, rel=0.01)  # its curve at 20 %
    assert read["Current.Import"] - 0.1 <= read["Current.Offered"] <= 400


async def test_a_dc_charge_point_max_in_amps_is_shared_as_dc_current(csms, ticking):
    # A 150 kW cabinet gives two ID.3s 75 kW each (~215 A), and a 300 A ChargePointMax
    # holds them to 150 A each: they got 108.7 A (75 kW over 690 V, as DC current).
    reads = await dc_draws(
        csms, ticking, "OF-CPS", (0, profile("ChargePointMaxProfile", 300)),
        sessions=((1, 20.0), (2, 20.0)),
    )  # fmt: skip
    for read in reads:
        assert read["Current.Import"] == pytest.approx(150, abs=0.05)
        assert read["Power.Active.Import"] == pytest.approx(150 * read["Voltage"], rel=1e-3)


async def test_a_dc_watt_profile_under_a_charge_point_max_in_amps_keeps_its_watts(csms, ticking):
    # 90 kW under a 300 A cap that does not bind: it drew 45.6 kW (90 kW over 690 V, as amps).
    (read,) = await dc_draws(
        csms, ticking, "OF-CPW",
        (0, profile("ChargePointMaxProfile", 300, profile_id=2)),
        (1, profile("TxDefaultProfile", 90_000, unit="W", profile_id=3)),
    )  # fmt: skip
    assert read["Power.Active.Import"] == pytest.approx(90_000, rel=1e-3)
    assert read["Current.Import"] == pytest.approx(90_000 / read["Voltage"], abs=0.05)


async def test_a_dc_least_rate_in_amps_is_dc_current(csms, ticking):
    # 100 A with minChargingRate 50 A under a 30 kW ChargePointMax: 30 kW is ~86 A at the
    # pack's ~350 V, above the least rate, so it charges (it was 43.5 A "nominal": suspended).
    (read,) = await dc_draws(
        csms, ticking, "OF-MIN",
        (0, profile("ChargePointMaxProfile", 30_000, unit="W", profile_id=2)),
        (1, with_least(profile("TxDefaultProfile", 100, profile_id=3), 50)),
    )  # fmt: skip
    assert read["status"] == "Charging"
    assert read["Power.Active.Import"] == pytest.approx(30_000, rel=1e-3)


async def test_a_dc_least_rate_above_the_offer_suspends_the_car(csms, ticking):
    # 100 A offered, 120 A the least the car may take: it does not charge.
    charger = runtime_charger("OF-MIN2", csms.url, evses=1, power_type="DC", max_kw=150.0,
                              config=DC_SAMPLED)  # fmt: skip
    tx_default = with_least(profile("TxDefaultProfile", 100, profile_id=3), 120)
    async with connected(charger):
        ticking(charger)
        await install(csms, "OF-MIN2", 1, tx_default)
        mark = len(csms.log)
        await session(charger, 1, "A", soc=20.0)
        await reported(csms, "OF-MIN2", 1, "SuspendedEVSE", mark)
        assert charger.evse(1).power_w == 0.0


async def test_a_dc_charge_point_max_too_small_for_every_car_lets_the_first_charge(csms, ticking):
    # 100 A for two cars that may take no less than 60 A: 50 A each suspended both.
    charger = runtime_charger("OF-DCQ", csms.url, evses=2, power_type="DC", max_kw=150.0)
    tx_default = with_least(profile("TxDefaultProfile", 200, profile_id=3), 60)
    async with connected(charger):
        ticking(charger)
        await install(csms, "OF-DCQ", 0, tx_default)
        await install(csms, "OF-DCQ", 0, profile("ChargePointMaxProfile", 100, profile_id=2))
        await session(charger, 1, "A", soc=20.0)
        mark = len(csms.log)
        await session(charger, 2, "B", soc=20.0)
        await reported(csms, "OF-DCQ", 2, "SuspendedEVSE", mark)
        await wait_until(
            lambda: (
                charger.evse(1).current_a
                and charger.evse(1).current_a[0] == pytest.approx(100, abs=0.05)
            ),
            message="the first car at 100 A",
        )
        assert charger.evse(1).status is Status.CHARGING
        assert charger.evse(2).power_w == 0.0


def with_least(body, rate, **period):
    body["chargingSchedule"]["minChargingRate"] = rate
    body["chargingSchedule"]["chargingSchedulePeriod"][0].update(period)
    return body


@pytest.mark.parametrize(
    ("profiles", "charges_w"),
    [
        # 15 kW offered, 20 kW the least: no charge (it charged, the 20 kW taken for
        # 29 A over 690 V and tested at the pack's ~350 V as 10 kW).
        ([(1, with_least(profile("TxDefaultProfile", 15_000, unit="W"), 20_000))], None),
        # 40 A is 14 kW at the pack voltage, under the 20 kW least.
        (
            [
                (1, with_least(profile("TxDefaultProfile", 40_000, unit="W"), 20_000)),
                (0, profile("ChargePointMaxProfile", 40, profile_id=2)),
            ],
            None,
        ),
        # numberPhases means nothing on DC: 25 kW above a 20 kW least charges (the least
        # was taken over 230 V, as 87 A, and tested as 30 kW).
        ([(1, with_least(profile("TxDefaultProfile", 25_000, unit="W"), 20_000, numberPhases=1))],
         25_000.0),
    ],
)  # fmt: skip
async def test_a_dc_least_rate_in_watts_is_compared_in_watts(csms, ticking, profiles, charges_w):
    charger = runtime_charger("OF-LW", csms.url, evses=1, power_type="DC", max_kw=150.0)
    async with connected(charger):
        ticking(charger)
        for connector, body in profiles:
            await install(csms, "OF-LW", connector, body)
        mark = len(csms.log)
        await session(charger, 1, "A", soc=20.0)
        if charges_w is None:
            await reported(csms, "OF-LW", 1, "SuspendedEVSE", mark)
            assert charger.evse(1).power_w == 0.0
        else:
            await wait_until(lambda: charger.evse(1).power_w > 0, message="charging")
            assert charger.evse(1).power_w == pytest.approx(charges_w)
            assert charger.evse(1).status is Status.CHARGING


@pytest.mark.parametrize("policy", ["equal", "first"])
@pytest.mark.parametrize("paused_first", [True, False])
@pytest.mark.parametrize(
    "cap",
    [profile("ChargePointMaxProfile", 300), profile("ChargePointMaxProfile", 120_000, unit="W")],
)
async def test_a_paused_car_is_offered_what_it_draws_when_it_resumes(
    csms, ticking, policy, paused_first, cap
):
    # A 150 kW cabinet, two ID.3s that want ~117 kW each, a ChargePointMax. The offer was
    # an equal share of the cap taken before the cabinet's policy, where the sharing takes
    # it after: under "first" 150 A offered, 207 A drawn on resuming.
    charger = runtime_charger("OF-RES", csms.url, evses=2, power_type="DC", max_kw=150.0,
                              config=DC_SAMPLED, power_sharing=policy)  # fmt: skip
    paused, other = (2, 1) if paused_first else (1, 2)
    async with connected(charger):
        ticking(charger)
        await install(csms, "OF-RES", 0, cap)
        await session(charger, paused, "P", soc=20.0)
        charger.pause_ev(paused)
        await session(charger, other, "O", soc=20.0)
        await wait_until(lambda: charger.evse(other).power_w > 0, message="the other charging")
        await sampled(csms, "OF-RES", paused, len(csms.log))
        offered = (await sampled(csms, "OF-RES", paused, len(csms.log)))["Power.Offered"]
        charger.resume_ev(paused)
        await wait_until(lambda: charger.evse(paused).power_w > 0, message="resumed")
        await sampled(csms, "OF-RES", paused, len(csms.log))
        drawn = (await sampled(csms, "OF-RES", paused, len(csms.log)))["Power.Active.Import"]
    assert drawn == pytest.approx(offered, rel=0.01, abs=1.0)


async def test_a_full_car_is_offered_what_its_profile_allows(csms, ticking):
    # A connector drawing nothing had no limit in force: its offer was the EVSE's 22 kW
    # whatever its profiles said.
    charger = runtime_charger("OF-IDLE", csms.url, evses=1, max_kw=22.0, config=OFFERED)
    async with connected(charger):
        ticking(charger)
        await install(csms, "OF-IDLE", 0, profile("TxDefaultProfile", 10))
        mark = len(csms.log)
        await session(charger, 1, "A", soc=80.0, target=80.0)
        await reported(csms, "OF-IDLE", 1, "SuspendedEV", mark)
        read = await sampled(csms, "OF-IDLE", 1, len(csms.log))
    assert read == {
        "Power.Active.Import": 0.0,
        "Current.Offered": pytest.approx(10.0),
        "Power.Offered": pytest.approx(10 * 230.0 * 3),
    }


# -- SuspendedEVSE wins over SuspendedEV --------------------------------------------------


async def test_a_full_car_shows_suspended_evse_while_the_charger_offers_nothing(csms, ticking):
    charger = runtime_charger("OF-FULL", csms.url, evses=1)
    async with connected(charger):
        ticking(charger)
        mark = len(csms.log)
        await session(charger, 1, "A", soc=80.0, target=80.0)
        await reported(csms, "OF-FULL", 1, "SuspendedEV", mark)
        mark = len(csms.log)
        await install(csms, "OF-FULL", 1, profile("TxDefaultProfile", 0, profile_id=7))
        await reported(csms, "OF-FULL", 1, "SuspendedEVSE", mark)
        mark = len(csms.log)
        await clear(csms, "OF-FULL", 7)
        await reported(csms, "OF-FULL", 1, "SuspendedEV", mark)


async def test_a_car_that_starts_full_under_a_zero_limit_is_suspended_evse(csms, ticking):
    charger = runtime_charger("OF-START", csms.url, evses=1)
    async with connected(charger):
        ticking(charger)
        await install(csms, "OF-START", 0, profile("TxDefaultProfile", 0))
        mark = len(csms.log)
        await session(charger, 1, "A", soc=80.0, target=80.0)
        await reported(csms, "OF-START", 1, "SuspendedEVSE", mark)
        assert "SuspendedEV" not in statuses_heard(csms, 1, mark)


async def test_a_paused_car_shows_suspended_evse_while_the_charger_offers_nothing(csms, ticking):
    charger = runtime_charger("OF-PAUSE", csms.url, evses=1)
    async with connected(charger):
        ticking(charger)
        await session(charger, 1, "A")
        mark = len(csms.log)
        charger.pause_ev(1)
        await reported(csms, "OF-PAUSE", 1, "SuspendedEV", mark)
        mark = len(csms.log)
        await install(csms, "OF-PAUSE", 0, profile("ChargePointMaxProfile", 0, profile_id=3))
        await reported(csms, "OF-PAUSE", 1, "SuspendedEVSE", mark)
        mark = len(csms.log)
        await clear(csms, "OF-PAUSE", 3)
        await reported(csms, "OF-PAUSE", 1, "SuspendedEV", mark)
        mark = len(csms.log)
        charger.resume_ev(1)
        await reported(csms, "OF-PAUSE", 1, "Charging", mark)


async def test_a_full_car_sharing_the_rated_power_stays_suspended_ev(csms, ticking):
    # Shares go by what the cars ask for: a full car's is 0, yet the charger would give it
    # power if it asked. It is the car that suspends, not the charger.
    charger = runtime_charger("OF-SHARE", csms.url, evses=2, max_kw=11.0)
    async with connected(charger):
        ticking(charger)
        await session(charger, 1, "A")
        mark = len(csms.log)
        await session(charger, 2, "B", soc=50.0, target=50.003)
        await reported(csms, "OF-SHARE", 2, "SuspendedEV", mark)
        await asyncio.sleep(0.3)
        assert charger.evse(2).status is Status.SUSPENDED_EV
        assert "SuspendedEVSE" not in statuses_heard(csms, 2, mark)


# -- properties ---------------------------------------------------------------------------

wants_st = st.dictionaries(
    st.integers(1, 8), st.floats(0, 100_000, allow_nan=False), min_size=1, max_size=8
)


@given(
    total=st.floats(0, 100_000, allow_nan=False),
    wants=wants_st,
    floor=st.floats(0, 20_000, allow_nan=False),
    order=st.permutations(list(range(1, 9))),
)
def test_a_share_is_never_below_its_floor_and_nothing_is_wasted_on_waiting(
    total, wants, floor, order
):
    floors = dict.fromkeys(wants, floor)
    shares, waiting = distribute_above(total, wants, floors, order)
    assert shares.keys() == wants.keys()
    assert sum(shares.values()) <= total + 1e-6
    for key, given_w in shares.items():
        assert 0.0 <= given_w <= wants[key] + 1e-6
        if key in waiting:
            assert given_w == 0.0
        else:
            assert given_w >= min(floor, wants[key]) - 1e-6
    # One waits only when, with those admitted before it in the order, its floor did not fit.
    for key in waiting:
        before = [k for k in order[: order.index(key)] if k in wants and k not in waiting]
        assert sum(min(floor, wants[k]) for k in before) + min(floor, wants[key]) > total


@given(total=st.floats(0, 100_000, allow_nan=False), wants=wants_st)
def test_with_no_floor_the_shares_are_the_plain_ones(total, wants):
    shares, waiting = distribute_above(total, wants, {}, sorted(wants))
    assert waiting == []
    assert shares == pytest.approx(distribute(total, wants))


@given(
    total=st.floats(0, 100_000, allow_nan=False),
    wants=wants_st,
    floor=st.floats(0, 20_000, allow_nan=False),
)
def test_first_come_with_a_floor_gives_each_its_floor_or_nothing(total, wants, floor):
    order = sorted(wants)
    shares = share(total, wants, FIRST, order, dict.fromkeys(wants, floor))
    assert sum(shares.values()) <= total + 1e-6
    for key, given_w in shares.items():
        assert given_w == 0.0 or given_w >= min(floor, wants[key]) - 1e-6


# -- GetCompositeSchedule on AC -----------------------------------------------------------


async def composite(csms, cp_id, connector, unit):
    """The (limit, numberPhases) periods of a 600 s GetCompositeSchedule, as the CSMS reads them."""
    answer = await csms.call(
        cp_id,
        call.GetCompositeSchedule(connector_id=connector, duration=600, charging_rate_unit=unit),
    )
    assert answer.status == "Accepted"
    return [
        (float(p["limit"]), p.get("number_phases"))
        for p in answer.charging_schedule["charging_schedule_period"]
    ]


async def test_an_ac_composite_schedule_converts_on_the_phases_the_car_uses(csms, ticking):
    """2 kW to a single-phase car: it draws 8.7 A on its phase and its meter says so. The
    composite schedule said 2.8 A with no numberPhases (three phases: below 6 A, no
    charging to a reader); it is 8.6 A (rounded down to 0.1) on one phase."""
    charger = runtime_charger("OF-CSW", csms.url, evses=1, config=OFFERED)
    async with connected(charger):
        ticking(charger)
        await session(charger, 1, "A", vehicle=PHEV)
        tx = charger.evse(1).transaction_id
        await install(csms, charger.id, 1, profile("TxProfile", 2_000, "W", transactionId=tx))
        await wait_until(lambda: charger.evse(1).power_w == pytest.approx(2_000), message="2 kW")
        read = await sampled(csms, charger.id, 1, len(csms.log))
        amps = await composite(csms, charger.id, 1, "A")
        watts = await composite(csms, charger.id, 1, "W")
        grid = await composite(csms, charger.id, 0, "A")
    assert read["Current.Offered"] == pytest.approx(8.7)
    assert amps == [(8.6, 1)]
    assert amps[0][0] >= MIN_AC_AMPS
    assert watts == [(2_000.0, 1)]
    assert grid == [(8.6, 1)]


async def test_an_ac_composite_in_watts_is_what_the_car_draws_under_an_amp_limit(csms, ticking):
    """A 16 A TxDefaultProfile and a single-phase car on a three-phase EVSE: it draws 3.68 kW.
    Connector 1 and connector 0 said 11,040 W (16 A on three phases). Without a car both
    still say 11,040 W: the EVSE's phases."""
    charger = runtime_charger("OF-CSA", csms.url, evses=1, config=OFFERED)
    async with connected(charger):
        ticking(charger)
        await install(csms, charger.id, 0, profile("TxDefaultProfile", 16))
        empty = [await composite(csms, charger.id, c, "W") for c in (1, 0)]
        await session(charger, 1, "A", vehicle=PHEV)
        await wait_until(lambda: charger.evse(1).power_w > 0, message="the car charging")
        read = await sampled(csms, charger.id, 1, len(csms.log))
        plugged = [await composite(csms, charger.id, c, "W") for c in (1, 0)]
        amps = await composite(csms, charger.id, 1, "A")
    assert empty == [[(11_040.0, None)], [(11_040.0, None)]]
    assert read["Power.Active.Import"] == pytest.approx(3_680)
    assert read["Power.Offered"] == pytest.approx(3_680)
    assert plugged == [[(3_680.0, 1)], [(3_680.0, 1)]]
    assert amps == [(16.0, 1)]


async def test_an_ac_composite_of_connector_0_sums_each_car_on_its_phases(csms, ticking):
    """16 A on each connector: a single-phase car (3.68 kW) and a three-phase one (11.04 kW)
    draw 14.72 kW in all, at most 32 A on a phase. It said 22,080 W. With two single-phase
    cars it is 7,360 W and 32 A, both on one phase."""
    charger = runtime_charger("OF-CS0", csms.url, evses=2, max_kw=44.0)
    async with connected(charger):
        await install(csms, charger.id, 0, profile("TxDefaultProfile", 16))
        charger.plug_in(1, PHEV, soc=20.0)
        charger.plug_in(2, COMPACT, soc=20.0)
        mixed = [await composite(csms, charger.id, 0, unit) for unit in ("W", "A")]
        charger.unplug(2)
        charger.plug_in(2, PHEV, soc=20.0)
        single = [await composite(csms, charger.id, 0, unit) for unit in ("W", "A")]
    assert mixed == [[(14_720.0, None)], [(32.0, None)]]
    assert single == [[(7_360.0, 1)], [(32.0, 1)]]


# -- GetCompositeSchedule on DC -----------------------------------------------------------


def dc_composite(charger, connector, unit, *profiles):
    operations = Operations(charger)
    for target, body in profiles:
        assert operations.on_set_charging_profile(target, body) == "Accepted"
    status, schedule = operations.on_get_composite_schedule(connector, 600, unit)
    assert status == "Accepted" and schedule is not None
    return schedule["chargingSchedulePeriod"]


@pytest.mark.parametrize(
    ("body", "unit", "expected"),
    [
        # It converted over 230 V x 3: 100 A were 69 kW, 40 kW were 57.9 A.
        (profile("TxDefaultProfile", 100), "W", lambda volts: 100 * volts),
        (profile("TxDefaultProfile", 100), "A", lambda volts: 100.0),
        (profile("TxDefaultProfile", 40_000, unit="W"), "A", lambda volts: 40_000 / volts),
        # More current than the EVSE's 150 kW give at the pack voltage: that binds.
        (profile("TxDefaultProfile", 600), "A", lambda volts: 150_000 / volts),
    ],
)
def test_a_dc_composite_schedule_converts_at_the_pack_voltage(body, unit, expected):
    charger = runtime_charger("CS-DC", "", evses=1, power_type="DC", max_kw=150.0)
    charger.plug_in(1, COMPACT, soc=20.0)
    volts = pack_voltage(COMPACT, 20.0)
    (period,) = dc_composite(charger, 1, unit, (0, body))
    assert period["limit"] == pytest.approx(expected(volts), abs=0.1)
    assert "numberPhases" not in period  # no phases on DC


def test_a_dc_composite_schedule_of_connector_0_sums_the_connectors_as_dc():
    # One car at its pack voltage under 100 A, one connector idle (400 V) under 40 kW; a
    # 300 A ChargePointMax: 100 A + 100 A = 200 A, under it. It said 109 kW, and 217 A for
    # the cabinet's 150 kW with no profile.
    charger = runtime_charger("CS-DC0", "", evses=2, power_type="DC", max_kw=150.0)
    charger.plug_in(1, COMPACT, soc=20.0)
    volts = pack_voltage(COMPACT, 20.0)
    # The cabinet's 150 kW at the connectors' average voltage (the car's and 400 V).
    average = 300_000 / (150_000 / volts + 150_000 / 400)
    (rated,) = dc_composite(charger, 0, "A")
    assert rated["limit"] == pytest.approx(150_000 / average, abs=0.1)
    periods = dc_composite(
        charger, 0, "A",
        (1, profile("TxDefaultProfile", 100, profile_id=1)),
        (2, profile("TxDefaultProfile", 40_000, unit="W", profile_id=2)),
        (0, profile("ChargePointMaxProfile", 300, profile_id=3)),
    )  # fmt: skip
    assert periods == [{"startPeriod": 0, "limit": pytest.approx(200.0, abs=0.1)}]
    (watts,) = dc_composite(charger, 0, "W")
    assert watts["limit"] == pytest.approx(100 * volts + 40_000, abs=0.1)


# -- a charger rated below its EVSEs ------------------------------------------------------


async def test_an_idle_connector_is_offered_no_more_than_the_charger_is_rated(csms, ticking):
    """An AC charger rated 11 kW with two 22 kW EVSEs: a car charging alone draws 11 kW, and
    a connector with no car is offered 11 kW, in its MeterValues and in its composite
    schedule. Both said 22 kW (the EVSE's) while nothing else drew."""
    charger = runtime_charger("OF-RATED", csms.url, evses=2, config=OFFERED)
    charger.respec(dataclasses.replace(charger.spec, max_power_w=11_000.0), {})
    async with connected(charger):
        ticking(charger)
        mark = len(csms.log)
        answer = await csms.call(
            "OF-RATED", call.TriggerMessage(requested_message="MeterValues", connector_id=1)
        )
        assert answer.status == "Accepted"
        meter = await csms.wait_for("OF-RATED", "MeterValues", after=mark, timeout=3)
        idle = {
            sv["measurand"]: float(sv["value"])
            for sv in meter.payload["meterValue"][0]["sampledValue"]
        }
        assert idle["Power.Offered"] == pytest.approx(11_000)
        assert idle["Current.Offered"] == pytest.approx(11_000 / 690, abs=0.05)
        for unit, expected in (("W", 11_000), ("A", 15.9)):
            answer = await csms.call(
                "OF-RATED",
                call.GetCompositeSchedule(connector_id=1, duration=600, charging_rate_unit=unit),
            )
            assert answer.status == "Accepted"
            periods = answer.charging_schedule["charging_schedule_period"]
            assert [float(p["limit"]) for p in periods] == [pytest.approx(expected)]
        await session(charger, 1, "A")
        await wait_until(lambda: charger.evse(1).power_w > 0, message="charging")
        assert charger.evse(1).power_w == pytest.approx(11_000)
        drawing = await sampled(csms, "OF-RATED", 1, len(csms.log))
    assert drawing["Power.Offered"] == pytest.approx(11_000)


async def test_a_transaction_whose_id_tag_was_refused_is_offered_nothing(csms, ticking):
    """StopTransactionOnInvalidId=false and a Blocked StartTransaction: no energy flows, and
    the offer it reports says so (it said the EVSE's 22 kW while drawing 0)."""
    csms.start_transaction_status = "Blocked"
    charger = runtime_charger(
        "OF-BLK", csms.url, evses=1, config={**OFFERED, "StopTransactionOnInvalidId": "false"}
    )
    async with connected(charger):
        ticking(charger)
        await session(charger, 1, "LATE")
        await sampled(csms, "OF-BLK", 1, len(csms.log))  # past the answer
        read = await sampled(csms, "OF-BLK", 1, len(csms.log))
    assert read["Power.Active.Import"] == 0.0
    assert read["Power.Offered"] == 0.0
    assert read["Current.Offered"] == 0.0


# -- a 3.7 kW wallbox --------------------------------------------------------------------

CURRENTS = {"MeterValueSampleInterval": "1", "MeterValuesSampledData": "Current.Import"}


def currents(meter) -> dict[str, float]:
    """Current.Import by phase of one MeterValues request."""
    values = meter.payload["meterValue"][0]["sampledValue"]
    return {v.get("phase", ""): float(v["value"]) for v in values}


@pytest.mark.parametrize("vehicle", [COMPACT, PHEV], ids=["three-phase car", "one-phase car"])
async def test_a_single_phase_3_7_kw_wallbox_charges_any_car_at_16_a_on_one_phase(
    csms, ticking, vehicle
):
    charger = runtime_charger("OF-WB1", csms.url, evses=1, max_kw=3.7, phases=1, config=CURRENTS)
    async with connected(charger):
        ticking(charger)
        await boot_reports_answered(charger)  # its Available, before the mark (CI, loaded)
        mark = len(csms.log)
        await session(charger, 1, "A", vehicle=vehicle)
        meter = await csms.wait_for("OF-WB1", "MeterValues", after=mark, timeout=4)
        assert list(currents(meter)) == ["L1"]
        assert currents(meter)["L1"] == pytest.approx(16, abs=0.2)
        assert statuses_heard(csms, 1, mark) == ["Preparing", "Charging"]


@pytest.mark.parametrize("vehicle", [COMPACT, PHEV], ids=["three-phase car", "one-phase car"])
async def test_a_three_phase_3_7_kw_evse_suspends_the_car_and_says_why(
    csms, ticking, caplog, vehicle
):
    """5.4 A a phase: no car charges (IEC 61851-1). It went Charging, then SuspendedEVSE
    with no word of why, which read as the car's doing; now SuspendedEVSE at once, its
    StatusNotification's info and the log saying what the EVSE offers."""
    why = "offered 5.4 A per phase, below the 6 A minimum"
    charger = runtime_charger("OF-WB3", csms.url, evses=1, max_kw=3.7, phases=3)
    async with connected(charger):
        ticking(charger)
        mark = len(csms.log)
        await session(charger, 1, "A", vehicle=vehicle)
        suspended = await reported(csms, "OF-WB3", 1, "SuspendedEVSE", mark)
        assert suspended.payload["info"] == why
        await asyncio.sleep(0.3)  # a few meter visits: it stays so, saying nothing new
        assert statuses_heard(csms, 1, mark) == ["Preparing", "SuspendedEVSE"]
        assert charger.evse(1).power_w == 0.0
        assert f"OF-WB3: connector 1 cannot charge a car: {why}" in caplog.messages


async def test_a_charge_point_max_gives_what_a_single_phase_cars_amp_profile_leaves(csms, ticking):
    """A single-phase car held at 10 A by its TxProfile draws 2.3 kW; of an 11 kW
    ChargePointMax the other car gets the 8.7 kW left. Its want was counted over the EVSE's
    three phases (6.9 kW, capped by its 3.7 kW on-board charger), so 1.4 kW stayed unused."""
    charger = runtime_charger("OF-CPM1TX", csms.url, evses=2, max_kw=22.0)
    async with connected(charger):
        ticking(charger)
        await install(csms, charger.id, 0, profile("ChargePointMaxProfile", 11_000, unit="W"))
        await session(charger, 1, "A", vehicle=PHEV)
        await install(csms, charger.id, 1, profile("TxProfile", 10, profile_id=2))
        await session(charger, 2, "B", vehicle=COMPACT)
        await wait_until(
            lambda: charger.evse(1).power_w > 0 and charger.evse(2).power_w > 0, message="both"
        )
        await asyncio.sleep(0.2)
        assert charger.evse(1).power_w == pytest.approx(2_300, rel=1e-3)
        assert charger.evse(2).power_w == pytest.approx(8_700, rel=1e-3)


async def test_a_charge_point_max_in_amps_lets_a_single_phase_car_draw_its_watt_profile(
    csms, ticking
):
    """2 kW to a single-phase car is 8.7 A on its phase: of a 16 A ChargePointMax each car
    wants more than half, so each gets 8 A. The want was that 2 kW over three phases,
    2.9 A, and a share of 2.9 A, under the 6 A minimum, left the car SuspendedEVSE while
    the other took 13.1 A."""
    charger = runtime_charger("OF-CPMA1W", csms.url, evses=2, max_kw=22.0)
    async with connected(charger):
        ticking(charger)
        await install(csms, charger.id, 0, profile("ChargePointMaxProfile", 16))
        await session(charger, 1, "A", vehicle=PHEV)
        await install(csms, charger.id, 1, profile("TxProfile", 2_000, unit="W", profile_id=2))
        await session(charger, 2, "B", vehicle=COMPACT)
        await wait_until(
            lambda: charger.evse(1).power_w > 0 and charger.evse(2).power_w > 0, message="both"
        )
        await asyncio.sleep(0.2)
        assert charger.evse(1).status is Status.CHARGING
        assert charger.evse(1).current_a == pytest.approx((8.0,), rel=1e-3)
        assert charger.evse(2).current_a == pytest.approx((8.0,) * 3, rel=1e-3)


@given(
    total=st.floats(0, 100_000, allow_nan=False),
    wants=wants_st,
    more=st.floats(0, 100_000, allow_nan=False),
    policy=st.sampled_from(["equal", FIRST]),
    floor=st.floats(0, 20_000, allow_nan=False),
    order=st.permutations(list(range(1, 9))),
)
def test_a_connector_asking_for_more_is_never_given_less(total, wants, more, policy, floor, order):
    # Why a charging car's offer (what it would be given asking for all its EVSE can give)
    # is never below what it draws. A car that draws at all wants at least its floor.
    asking = min(wants)
    assume(wants[asking] >= floor)
    floors = dict.fromkeys(wants, floor)
    before = share(total, wants, policy, order, floors)[asking]
    after = share(total, {**wants, asking: wants[asking] + more}, policy, order, floors)[asking]
    assert after >= before - 1e-6
