"""Site load management (issue 18): a location's chargers kept under its grid limit by a
local controller, over real loopback WebSockets against the built-in CSMS."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from types import SimpleNamespace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from ocpp.v16 import call

from simulator.core.protocol import StopReason
from simulator.core.smart_charging import ChargingProfile, Limit
from simulator.runtime.commands import CommandServer
from simulator.runtime.load_management import Site, SiteController
from simulator.runtime.meter_engine import MeterEngine
from simulator.runtime.store import Store
from simulator.runtime.tally import Tally
from tests.engine import (
    COMPACT,
    PHEV,
    connected,
    runtime_charger,
    tx_default_profile,
    wait_until,
)

SITE = 7
GRID_W = 30_000.0
# A car that takes the full 22 kW of a three-phase AC connector.
AC22 = replace(COMPACT, name="AC 22 kW car", ac_max_kw=22.0)


@pytest.fixture
async def site(csms):
    """Two 22 kW AC chargers at one location, each with a 22 kW car charging, the meter
    ticking with a site controller (load management off until a test turns it on)."""
    async with running_site(csms, AC22, AC22) as running:
        yield running


@contextlib.asynccontextmanager
async def running_site(csms, *cars):
    store = Store()
    chargers = []
    for name in ("LM-A", "LM-B"):
        charger = runtime_charger(name, csms.url, evses=1, location_id=SITE)
        charger.config.update(
            MeterValueSampleInterval="1",
            MeterValuesSampledData="Power.Active.Import,Power.Offered",
        )
        store.add(charger)
        chargers.append(charger)
    sites = SiteController()
    engine = MeterEngine(store, tick_seconds=0.05, sites=sites)
    async with connected(chargers[0]), connected(chargers[1]):
        task = asyncio.get_running_loop().create_task(engine.run())
        try:
            for charger, car in zip(chargers, cars, strict=True):
                charger.plug_in(1, car, soc=20)
                assert await charger.present_id_tag(1, "T-" + charger.id) == "Accepted"
            await wait_until(
                lambda: all(c.evse(1).power_w > 0 for c in chargers), message="both charging"
            )
            yield SimpleNamespace(
                store=store, sites=sites, chargers=chargers, tally=Tally(store, sites)
            )
        finally:
            task.cancel()


def summary(site):
    _fleet, locations = CommandServer(site, layer=None).summaries()
    return locations[SITE]


async def sample(csms, cp_id, after):
    meter = await csms.wait_for(cp_id, "MeterValues", after=after, timeout=3)
    return {
        sv["measurand"]: float(sv["value"]) for sv in meter.payload["meterValue"][0]["sampledValue"]
    }


async def test_without_load_management_the_site_draws_over_its_limit(csms, site):
    await asyncio.sleep(0.2)
    assert [c.evse(1).power_w for c in site.chargers] == [
        pytest.approx(22_000, abs=1),
        pytest.approx(22_000, abs=1),
    ]
    counts = summary(site)
    assert counts["power_w"] == pytest.approx(44_000, abs=2)  # > 30 kW: the page shows it
    assert counts["held_back"] == 0


async def test_load_management_keeps_the_site_under_its_limit_from_the_next_tick(csms, site):
    site.sites.use({SITE: Site(GRID_W, True)})  # turned on while both are charging
    await wait_until(
        lambda: sum(c.evse(1).power_w for c in site.chargers) <= GRID_W + 1,
        message="the site under its limit",
    )
    await asyncio.sleep(0.2)
    for charger in site.chargers:
        assert charger.evse(1).power_w == pytest.approx(GRID_W / 2, abs=1)
    mark = len(csms.log)
    values = await sample(csms, "LM-A", mark)
    assert values["Power.Offered"] == pytest.approx(GRID_W / 2, abs=0.1)
    assert values["Power.Active.Import"] == pytest.approx(GRID_W / 2, abs=1)
    counts = summary(site)
    assert counts["power_w"] <= GRID_W + 1
    assert counts["held_back"] == 2
    # Off again: both draw what they want.
    site.sites.use({})
    await wait_until(
        lambda: all(c.evse(1).power_w > 21_000 for c in site.chargers), message="released"
    )
    assert all(not c.site_caps_w for c in site.chargers)


async def test_a_site_too_small_for_two_cars_charges_one_and_pauses_the_other(csms, site):
    # 6 kW for two three-phase cars: two 3 kW shares would be 4.3 A a phase, on which no
    # car charges. The first to arrive gets the 6 kW, the other pauses (SuspendedEVSE, as
    # a real car does when offered less than 6 A) and says so to the CSMS.
    first, second = sorted(site.chargers, key=lambda c: c.transactions[1].started_at)
    site.sites.use({SITE: Site(6_000.0, True)})
    await wait_until(
        lambda: second.evse(1).status.value == "SuspendedEVSE", message="the second paused"
    )
    assert first.evse(1).power_w == pytest.approx(6_000, abs=1)
    assert second.evse(1).power_w == 0
    await wait_until(
        lambda: (
            [
                m.payload["status"]
                for m in csms.log
                if m.cp_id == second.id and m.action == "StatusNotification" and m.message_type == 2
            ][-1:]
            == ["SuspendedEVSE"]
        ),
        message="the CSMS told",
    )
    # The limit raised: both charge again.
    site.sites.use({SITE: Site(GRID_W, True)})
    await wait_until(
        lambda: second.evse(1).status.value == "Charging", message="the second resumed"
    )


async def test_what_one_connector_does_not_use_goes_to_the_other(csms):
    # A 3.7 kW plug-in hybrid leaves 26.3 kW of the 30: the 22 kW car gets all it wants,
    # not an equal 15 kW.
    async with running_site(csms, PHEV, AC22) as site:
        site.sites.use({SITE: Site(GRID_W, True)})
        await wait_until(lambda: site.chargers[1].site_caps_w, message="capped")
        await asyncio.sleep(0.2)
        hybrid, full = (c.evse(1).power_w for c in site.chargers)
        assert hybrid == pytest.approx(3_700, abs=1)
        assert full == pytest.approx(22_000, abs=1)
        caps = [c.site_caps_w[1] for c in site.chargers]
        assert caps == [pytest.approx(3_700, abs=1), pytest.approx(22_000, abs=1)]
        assert summary(site)["held_back"] == 0


async def test_what_a_profile_holds_back_goes_to_the_others_in_the_same_tick(csms):
    # 20 kW for two 22 kW cars, one held to 5 kW by a TxProfile: the other gets the 15 kW
    # left, not the 10 kW of an equal share (the controller used to see demand only).
    # (5 kW: 7.2 A a phase, above the 6 A an AC charger can offer at the least.)
    grid_w, held_w = 20_000.0, 5_000.0
    async with running_site(csms, AC22, AC22) as site:
        held, other = site.chargers
        profile = {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "transactionId": held.evse(1).transaction_id,
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": held_w}],
            },
        }
        answer = await csms.call(
            "LM-A", call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
        )
        assert answer.status == "Accepted"
        await wait_until(lambda: held.evse(1).power_w <= held_w + 1, message="held to 5 kW")
        site.sites.use({SITE: Site(grid_w, True)})
        await wait_until(lambda: held.site_caps_w and other.site_caps_w, message="capped")
        assert held.site_caps_w[1] == pytest.approx(held_w, abs=1)
        assert other.site_caps_w[1] == pytest.approx(grid_w - held_w, abs=1)
        await wait_until(
            lambda: other.evse(1).power_w > grid_w / 2 + 1, message="the other above half"
        )
        assert other.evse(1).power_w == pytest.approx(grid_w - held_w, abs=1)
        assert held.evse(1).power_w == pytest.approx(held_w, abs=1)
        counts = summary(site)
        assert counts["power_w"] <= grid_w + 1
        assert counts["held_back"] == 1  # the site holds back only the other


def test_a_site_controller_without_managed_sites_leaves_chargers_alone():
    charger = runtime_charger("LM-X", "", evses=2, location_id=SITE)
    sites = SiteController()
    sites.apply([charger])
    assert charger.site_caps_w == {}
    assert sites.held_back == {}


def test_an_amp_limit_counts_on_the_phases_the_car_uses():
    # A 10 A TxDefaultProfile on a single-phase car: it can draw 10 A x 230 V = 2.3 kW (not
    # the 6.9 kW the limit gives three phases, nor the car's 3.7 kW); of a 10 kW site the
    # other connector gets the 7.7 kW left. No socket: the controller's arithmetic alone.
    hybrid, full = (runtime_charger(n, "", evses=1, location_id=SITE) for n in ("LM-1P", "LM-3P"))
    for charger, car in ((hybrid, PHEV), (full, AC22)):
        charger.plug_in(1, car, soc=20)
        charger.start_transaction(1, "T-" + charger.id)
    parsed = ChargingProfile.from_dict(tx_default_profile((0, 10)))
    assert hybrid.profiles.install(1, parsed, active_transaction_id=None) == "Accepted"
    sites = SiteController()
    sites.use({SITE: Site(10_000.0, True)})
    sites.apply([hybrid, full])
    voltage = hybrid.spec.voltage_v
    assert hybrid.site_caps_w == {1: pytest.approx(10 * voltage, abs=1)}
    assert full.site_caps_w == {1: pytest.approx(10_000 - 10 * voltage, abs=1)}
    assert sites.held_back == {SITE: 1}


def test_an_ac_share_is_never_below_6_a_the_last_to_arrive_pauses_instead():
    # 15 kW for five three-phase 22 kW cars: equal shares would be 3 kW, 4.3 A a phase,
    # which no car charges on (IEC 61851-1: 6 A at least, 4,140 W on three phases at 230 V).
    # The three that arrived first share the 15 kW; the last two get nothing (they pause).
    # No socket: the controller's arithmetic alone.
    chargers = [runtime_charger(f"LM-{n}", "", evses=1, location_id=SITE) for n in range(5)]
    for charger in chargers:
        charger.plug_in(1, AC22, soc=20)
        charger.start_transaction(1, "T-" + charger.id)
    starts = [f"2026-12-03T10:00:0{n}Z" for n in (4, 0, 3, 1, 2)]
    for charger, started in zip(chargers, starts, strict=True):
        charger.transactions[1].started_at = started  # arrival order: 1, 3, 4, 2, 0
    sites = SiteController()
    sites.use({SITE: Site(15_000.0, True)})
    sites.apply(chargers)
    caps = [charger.site_caps_w[1] for charger in chargers]
    assert caps == [0.0, 5_000.0, 0.0, 5_000.0, 5_000.0]
    assert min(c for c in caps if c) >= 6 * chargers[0].spec.voltage_v * 3
    assert sites.held_back == {SITE: 5}
    # One of the three leaves: the earlier of the paused two gets its share; the other waits.
    chargers[1].stop_transaction(1, StopReason.LOCAL)
    sites.apply(chargers)
    assert [c.site_caps_w.get(1) for c in chargers] == [0.0, None, 5_000.0, 5_000.0, 5_000.0]


def test_a_car_that_cannot_get_its_minimum_pauses_and_a_smaller_one_after_it_charges():
    # 3 kW: under the three-phase car's 4,140 W minimum though it came first, over the
    # one-phase hybrid's 1,380 W. The hybrid charges on the 3 kW; the other waits.
    hybrid, full = (runtime_charger(n, "", evses=1, location_id=SITE) for n in ("LM-1P", "LM-3P"))
    for charger, car, started in ((hybrid, PHEV, "10:00:01"), (full, AC22, "10:00:00")):
        charger.plug_in(1, car, soc=20)
        charger.start_transaction(1, "T-" + charger.id)
        charger.transactions[1].started_at = f"2026-12-03T{started}Z"
    sites = SiteController()
    sites.use({SITE: Site(3_000.0, True)})
    sites.apply([hybrid, full])
    assert (full.site_caps_w[1], hybrid.site_caps_w[1]) == (0.0, 3_000.0)
    # 6 kW covers both minima (5,520 W) but equal shares (3 kW each) would starve the
    # three-phase car: each gets its minimum and they share the 480 W left.
    sites.use({SITE: Site(6_000.0, True)})
    sites.apply([hybrid, full])
    voltage = full.spec.voltage_v
    assert full.site_caps_w[1] == pytest.approx(6 * voltage * 3 + 240, abs=1e-6)
    assert hybrid.site_caps_w[1] == pytest.approx(6 * voltage + 240, abs=1e-6)


def arrived(*names: str, socs: tuple[int, ...] = ()) -> list:
    """Chargers at the site, each with a 22 kW car in a session, arrived a second apart in
    the order named (no socket)."""
    chargers = [runtime_charger(name, "", evses=1, location_id=SITE) for name in names]
    for n, charger in enumerate(chargers):
        charger.plug_in(1, AC22, soc=socs[n] if socs else 20)
        charger.start_transaction(1, "T-" + charger.id)
        charger.transactions[1].started_at = f"2026-12-03T10:00:0{n}Z"
    return chargers


def test_waiting_cars_take_turns_round_the_queue():
    # 15 kW for five three-phase 22 kW cars: three charge (5 kW each), two wait. With turns
    # of 60 s: after 60 s of waiting the two that charged longest give their places to the
    # two waiting, and a turn later the next two go: round the queue, no car waits twice
    # in a row.
    # No socket: the controller's arithmetic alone, on its own clock.
    chargers = arrived(*(f"LM-{n}" for n in range(5)))
    sites = SiteController()
    sites.use({SITE: Site(15_000.0, True, 60.0)})

    def charging(now: float) -> list[int]:
        sites.apply(chargers, now)
        return [n for n, c in enumerate(chargers) if c.site_caps_w.get(1, 0.0) > 0]

    assert charging(0.0) == [0, 1, 2]
    assert charging(59.0) == [0, 1, 2]  # a turn is not over yet
    assert charging(60.0) == [2, 3, 4]
    assert charging(119.0) == [2, 3, 4]
    assert charging(120.0) == [0, 1, 4]
    assert charging(180.0) == [1, 2, 3]
    for now in (0.0, 60.0, 120.0, 180.0):  # the limit holds through every turn
        sites.apply(chargers, now)
        assert sum(c.site_caps_w[1] for c in chargers) <= 15_000.0 + 1e-6
    # A session ends: a waiting car takes its place at once, and nobody waits, so no turns.
    chargers[0].stop_transaction(1, StopReason.LOCAL)
    chargers[1].stop_transaction(1, StopReason.LOCAL)
    assert charging(181.0) == [2, 3, 4]
    assert charging(1_000.0) == [2, 3, 4]


def test_without_turns_a_waiting_car_waits_until_a_session_ends():
    chargers = arrived("LM-0", "LM-1", "LM-2")
    sites = SiteController()
    sites.use({SITE: Site(10_000.0, True, 0.0)})  # room for two
    for now in (0.0, 3_600.0, 86_400.0):
        sites.apply(chargers, now)
        assert [c.site_caps_w[1] > 0 for c in chargers] == [True, True, False]


def test_a_full_car_gives_up_no_turn_for_it_frees_nothing():
    # Room for one 22 kW car's minimum beside a full one (SuspendedEV, wanting nothing): the
    # turn goes from the car that draws, not from the full one at the head of the queue.
    full, drawing, waiting = arrived("LM-F", "LM-D", "LM-W", socs=(100, 20, 20))
    sites = SiteController()
    sites.use({SITE: Site(5_000.0, True, 60.0)})
    sites.apply([full, drawing, waiting], 0.0)
    assert (drawing.site_caps_w[1] > 0, waiting.site_caps_w[1]) == (True, 0.0)
    sites.apply([full, drawing, waiting], 60.0)
    assert (drawing.site_caps_w[1], waiting.site_caps_w[1] > 0) == (0.0, True)


async def test_the_csms_sees_two_cars_take_turns_on_a_site_too_small_for_both(csms, site):
    # 6 kW for two three-phase cars, turns of 1 s: the waiting car charges after its turn
    # and the other pauses; each says so to the CSMS (SuspendedEVSE, then Charging).
    first, second = sorted(site.chargers, key=lambda c: c.transactions[1].started_at)
    site.sites.use({SITE: Site(6_000.0, True, 1.0)})
    await wait_until(
        lambda: second.evse(1).status.value == "SuspendedEVSE", message="the second waits"
    )
    await wait_until(
        lambda: (
            second.evse(1).status.value == "Charging"
            and first.evse(1).status.value == "SuspendedEVSE"
        ),
        message="their turns swapped",
    )

    def told(charger) -> list[str]:
        return [
            m.payload["status"]
            for m in csms.log
            if m.cp_id == charger.id and m.action == "StatusNotification" and m.message_type == 2
        ]

    await wait_until(
        lambda: (
            told(second)[-2:] == ["SuspendedEVSE", "Charging"]
            and told(first)[-1:] == ["SuspendedEVSE"]
        ),
        message="the CSMS told",
    )
    assert sum(c.evse(1).power_w for c in site.chargers) <= 6_000.0 + 1


def on_three(*, max_kw: float, grid_w: float, cpmax_a: float | None = None, turn_s=0.0):
    """One charger at a managed site with an 11 kW three-phase car on each of 3 connectors,
    and a meter engine over it (no socket, ticked by the caller)."""
    charger = runtime_charger("LM-3", "", evses=3, max_kw=max_kw, location_id=SITE)
    if cpmax_a is not None:
        body = {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "ChargePointMaxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": cpmax_a}],
            },
        }
        status = charger.profiles.install(
            0, ChargingProfile.from_dict(body), active_transaction_id=None
        )
        assert status == "Accepted"
    for connector in (1, 2, 3):
        charger.plug_in(connector, COMPACT, soc=20, target_soc=100)
        charger.start_transaction(connector, f"T-{connector}")
        charger.transactions[connector].started_at = f"2026-12-04T10:00:0{connector}Z"
    sites = SiteController()
    sites.use({SITE: Site(grid_w, True, turn_s)})
    return charger, MeterEngine([charger], tick_seconds=1.0, sites=sites)


def charging_on_three(*, max_kw: float, grid_w: float, cpmax_a: float | None = None):
    """`on_three` after two meter ticks: the power each connector draws."""
    charger, engine = on_three(max_kw=max_kw, grid_w=grid_w, cpmax_a=cpmax_a)
    engine.tick(now=100.0)
    engine.tick(now=101.0)
    return [evse.power_w for evse in charger.evses]


@pytest.mark.parametrize("grid_w", [100_000.0, 9_000.0])
def test_a_managed_site_asks_a_charger_only_for_what_it_lets_its_cars_draw(grid_w):
    # 11 kW rated for three 11 kW cars: the charger lets two charge (no car below 6 A). The
    # site used to ask for a third each (3.7 kW, no offer) and cap them there, so no car
    # charged at all, with a grid limit to spare or a tight one.
    drawn = charging_on_three(max_kw=11.0, grid_w=grid_w)
    charging = [w for w in drawn if w > 0]
    assert len(charging) == 2 and drawn[2] == 0.0
    assert sum(drawn) <= min(11_000.0, grid_w) + 1e-6
    assert min(charging) >= 6 * 230 * 3 - 1e-6


def test_a_managed_site_asks_a_charger_only_for_what_its_charge_point_max_allows():
    # 16 A of ChargePointMax for three cars: two at 8 A, the third waits, as without a site.
    drawn = charging_on_three(max_kw=66.0, grid_w=100_000.0, cpmax_a=16.0)
    assert drawn == [pytest.approx(8 * 230 * 3), pytest.approx(8 * 230 * 3), 0.0]


@pytest.mark.parametrize("managed", [True, False])
def test_cars_held_back_by_their_charger_at_a_managed_site_take_turns(managed):
    # The site has room; the charger's 11 kW does not. With turns of 60 s, the car that
    # waited charges after its turn and the one that charged longest pauses: on the tick the
    # turn ends, with load management on as with it off (the site's limit cannot bind).
    charger, engine = on_three(max_kw=11.0, grid_w=100_000.0, turn_s=60.0)
    engine.sites.use({SITE: Site(100_000.0, managed, 60.0)})

    def drawing(now: float) -> list[int]:
        engine.tick(now=now)
        return [evse.connector_id for evse in charger.evses if evse.power_w > 0]

    assert drawing(100.0) == drawing(101.0) == [1, 2]
    assert drawing(159.0) == [1, 2]  # a turn is not over yet
    assert drawing(160.0) == [2, 3]
    assert drawing(219.0) == [2, 3]
    assert drawing(220.0) == [1, 3]
    assert sum(evse.power_w for evse in charger.evses) <= 11_000.0 + 1e-6


@settings(max_examples=400, deadline=None)
@given(
    dc=st.booleans(),
    charger_phases=st.sampled_from([1, 3]),
    evse_kw=st.floats(1.0, 350.0),
    car=st.sampled_from([COMPACT, PHEV, AC22]),
    soc=st.floats(0.0, 100.0),
    limit_w=st.floats(-10.0, 200_000.0),
    min_amps=st.none() | st.floats(0.0, 40.0),
)
def test_what_a_car_draws_under_a_limit_in_watts_is_its_operating_point(
    dc, charger_phases, evse_kw, car, soc, limit_w, min_amps
):
    """The site controller's closed form (`draw_under`) gives the operating point's power:
    the least of the car's demand and the limit, nothing under the 6 A AC minimum."""
    assume(not dc or car.dc_max_kw > 0)
    power_type = "DC" if dc else "AC"
    charger = runtime_charger(
        "LM-DRAW", "", evses=1, max_kw=evse_kw, power_type=power_type, phases=charger_phases
    )
    charger.plug_in(1, car, soc=soc, target_soc=100)
    evse = charger.evse(1)
    demand = charger.operating_point(evse, None).power_w
    limit = Limit(
        amps=max(0.0, limit_w) / (230 * charger_phases),
        watts=limit_w,
        phases=charger_phases,
        min_amps=min_amps,
        watt_cap=limit_w,
    )
    assert charger.draw_under(1, demand, limit) == min(
        demand, charger.operating_point(evse, limit).power_w
    )


def test_a_site_whose_limit_cannot_bind_caps_nothing_until_it_can():
    """While the connectors charging at a managed site can draw no more than its limit
    together (each EVSE at its maximum, no charger above its rating), they charge as at an
    unmanaged site: no cap, so no sharing at each meter visit, and Power.Offered is their
    EVSE's. A third session makes the limit able to bind: from the next tick all three are
    capped and the site stays under it; once it ends, the caps go."""
    chargers = [
        runtime_charger(f"LM-ROOM-{n}", "", evses=1, max_kw=22.0, location_id=SITE)
        for n in range(3)
    ]
    for charger in chargers[:2]:
        charger.plug_in(1, AC22, soc=20, target_soc=100)
        charger.start_transaction(1, "T")
    sites = SiteController()
    sites.use({SITE: Site(50_000.0, True, 0.0)})
    engine = MeterEngine(chargers, tick_seconds=1.0, sites=sites)
    for now in (100.0, 101.0, 102.0):
        engine.tick(now=now)
    for charger in chargers[:2]:
        assert charger.site_caps_w == {} and not charger.power_shared
        assert charger.evse(1).power_w == pytest.approx(22_000.0)
    assert sites.held_back == {}

    third = chargers[2]
    third.plug_in(1, AC22, soc=20, target_soc=100)
    third.start_transaction(1, "T")
    for now in (103.0, 104.0):
        engine.tick(now=now)
    assert all(charger.site_caps_w for charger in chargers)
    assert sum(charger.evse(1).power_w for charger in chargers) <= 50_000.0 + 1e-6
    assert sites.held_back == {SITE: 3}

    third.stop_transaction(1)
    for now in (105.0, 106.0):
        engine.tick(now=now)
    assert all(charger.site_caps_w == {} for charger in chargers)
    assert [charger.evse(1).power_w for charger in chargers[:2]] == [
        pytest.approx(22_000.0),
        pytest.approx(22_000.0),
    ]


def test_what_a_site_can_draw_counts_each_charger_at_most_at_its_rating():
    # Two 22 kW EVSEs on a charger rated 22 kW can draw 22 kW, not 44: a 30 kW site cannot
    # bind, so the charger shares its own rating (11 kW a car) with no cap from the site.
    charger = runtime_charger("LM-RATED", "", evses=2, max_kw=22.0, location_id=SITE)
    for connector in (1, 2):
        charger.plug_in(connector, AC22, soc=20, target_soc=100)
        charger.start_transaction(connector, f"T-{connector}")
    sites = SiteController()
    sites.use({SITE: Site(30_000.0, True, 0.0)})
    engine = MeterEngine([charger], tick_seconds=1.0, sites=sites)
    engine.tick(now=100.0)
    engine.tick(now=101.0)
    assert charger.site_caps_w == {}
    assert [evse.power_w for evse in charger.evses] == [
        pytest.approx(11_000.0),
        pytest.approx(11_000.0),
    ]
