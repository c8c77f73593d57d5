"""Background traffic in a real worker (simulator.runtime.traffic), against the built-in
CSMS over loopback WebSockets, at a high simulated speed.

The arrivals a site gets are checked exactly against the core's stream for the same seed
and start (timing-independent); what became of them (started, turned away, left, stayed)
depends on the event loop's timing only where two events fall within milliseconds, so it is
checked for consistency: the worker's tally, the CSMS's transactions and the connectors
left occupied must tell the same story.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from prometheus_client import REGISTRY

from locations.models import ArrivalProfile as ProfileRow
from locations.models import Location, VehicleShare
from simulator import contract
from simulator.contract import traffic
from simulator.contract.traffic import DEFAULT_HOURLY_ARRIVALS, default_profile, parse_id_tags
from simulator.core.arrivals import Arrival, ArrivalProfile, ArrivalStream
from simulator.core.charge_point import BootState
from simulator.runtime.lifecycle import RunOptions, Simulator
from simulator.runtime.store import Store
from simulator.runtime.traffic import (
    ARRIVING,
    STARTED,
    TURNED_AWAY,
    SiteTally,
    TrafficDriver,
    seeded,
)
from tests.cast import make_charger, make_location, make_vehicle
from tests.engine import COMPACT, runtime_charger, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SEED = 7
SPEED = 1200.0  # 20 simulated minutes a second
START = datetime(2026, 1, 5, 8, tzinfo=UTC).timestamp()
HOURS = 3
POOL = "TT01..TT40"


def site_with_chargers(csms_url: str) -> tuple[Location, dict[str, object]]:
    site = make_location("Traffic Site", time_zone="UTC")
    ac, phev = make_vehicle(0), make_vehicle(3)
    for n in range(1, 5):
        make_charger(f"TRF-{n}", location=site, evses=2, csms_url=csms_url)
    profile = ProfileRow.objects.create(
        location=site,
        hourly_arrivals=[12.0] * 24,
        soc_distribution="uniform",
        soc_a=20,
        soc_b=40,
        target_distribution="fixed",
        target_a=80,
        target_b=0,
        dwell_distribution="fixed",
        dwell_a=15,
        dwell_b=0,
        id_tags=POOL,
        never_unplug_share=0.15,
    )
    VehicleShare.objects.create(profile=profile, vehicle=ac, weight=3)
    VehicleShare.objects.create(profile=profile, vehicle=phev, weight=1)
    return site, dict(ProfileRow.objects.get(pk=profile.pk).to_profile())


def counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value("chargesim_traffic_arrivals_total", {"outcome": outcome})
    return value or 0.0


def traffic_options(duration: float) -> RunOptions:
    """A worker running --traffic for `duration` simulated seconds from START, at SPEED."""
    return RunOptions(
        tick_seconds=0.1,
        checkpoint_seconds=0.2,
        reconnect_cap=0.5,
        traffic=True,
        traffic_seed=SEED,
        traffic_speed=SPEED,
        traffic_start=START,
        traffic_duration=duration,
    )


async def traffic_run(service: Simulator, location_id: int) -> tuple[TrafficDriver, SiteTally]:
    """Run the service's traffic once its chargers have booted; its driver and the site's
    tally once the site's traffic is over (its last drivers gone)."""
    await wait_until(
        lambda: all(c.boot is BootState.ACCEPTED for c in service.store),
        timeout=30,
        message="the site's chargers to boot",
    )
    service.spawn(service.run_traffic(), "traffic")
    await wait_until(
        lambda: service.traffic is not None and location_id in service.traffic.sites,
        message="the traffic to start",
    )
    driver = service.traffic
    assert driver is not None
    tally = await driver.wait_site(location_id)
    assert tally is not None
    return driver, tally


async def test_drivers_arrive_charge_and_leave_as_the_seeded_profile_says(csms) -> None:
    site, profile = await database_sync_to_async(site_with_chargers)(csms.url)
    service = Simulator(traffic_options(HOURS * 3600.0))
    await service.start()
    started_before = counted(STARTED)
    try:
        driver, tally = await traffic_run(service, site.pk)

        # Exactly the core's arrivals for this seed, site and start.
        catalogue = sorted(driver.vehicles)
        expected = list(
            ArrivalStream(
                ArrivalProfile.from_dict(profile, catalogue), seeded(SEED, site.pk), START
            ).until(START + HOURS * 3600.0)
        )
        assert [arrival for arrival, _ in tally.log] == expected
        assert tally.arrivals == len(expected) > 20
        assert tally.failed == 0 and tally.refused == 0
        assert tally.started + tally.turned_away == len(expected)
        assert tally.started >= 10

        # Never-unplug drivers: those of the started arrivals the core marked so.
        stayers = [a for a, outcome in tally.log if outcome == STARTED and a.never_unplug]
        assert tally.stayed == len(stayers)
        assert tally.left == tally.started - tally.stayed
        assert counted(STARTED) - started_before == tally.started

        # The connectors still taken are the stayers'; everyone else unplugged.
        plugged = [e for c in service.store for e in c.evses if e.battery is not None]
        assert len(plugged) == tally.stayed
        assert sorted(e.id_tag or "" for e in plugged) == sorted(a.id_tag for a in stayers)
        assert f"{tally.turned_away} turned away" in driver.totals().text()

        # The CSMS saw a session per started arrival, idTags from the pool; the leavers'
        # sessions stopped (reason Local), the stayers' go on.
        await wait_until(
            lambda: (
                len(csms.transactions) == tally.started
                and sum(tx.stopped for tx in csms.transactions.values()) == tally.left
            ),
            timeout=15,
            message="the CSMS to see every session",
        )
        pool = set(parse_id_tags(POOL))
        assert {tx.id_tag for tx in csms.transactions.values()} <= pool
        assert sorted(tx.id_tag or "" for tx in csms.transactions.values()) == sorted(
            a.id_tag for a, outcome in tally.log if outcome == STARTED
        )
        assert {tx.reason for tx in csms.transactions.values() if tx.stopped} <= {"Local", None}
        open_tags = sorted(tx.id_tag or "" for tx in csms.transactions.values() if not tx.stopped)
        assert open_tags == sorted(a.id_tag for a in stayers)
    finally:
        await service.stop()


def profile_site(
    csms_url: str,
    name: str,
    cp_id: str,
    connectors: int = 1,
    time_zone: str = "UTC",
    **profile: Any,
) -> Location:
    """A site with one charger of `connectors` EVSEs, a vehicle model, and an arrival
    profile of `profile`'s fields."""
    site = make_location(name, time_zone=time_zone)
    make_vehicle(0)
    make_charger(cp_id, location=site, evses=connectors, csms_url=csms_url)
    ProfileRow.objects.create(location=site, **profile)
    return site


def one_charger_site(csms_url: str) -> Location:
    return profile_site(
        csms_url,
        "Opening Site",
        "OPEN-1",
        hourly_arrivals=[3600.0] * 24,
        dwell_distribution="fixed",
        dwell_a=600,
        dwell_b=0,
        id_tags=POOL,
        never_unplug_share=0,
    )


async def test_the_first_driver_arrives_once_the_sites_charger_has_booted(csms) -> None:
    """QA14: --traffic started its arrivals with the fleet's connections, so the first
    drivers found their chargers not booted yet and were turned away. A driver a second at
    3,600x: the first comes within a millisecond of the start, while the CSMS still keeps
    the charger Pending (for a second)."""
    site = await database_sync_to_async(one_charger_site)(csms.url)
    csms.boot_status, csms.boot_interval = "Pending", 1
    service = Simulator(
        RunOptions(
            tick_seconds=0.1,
            checkpoint_seconds=0.2,
            traffic=True,
            traffic_seed=SEED,
            traffic_speed=3600.0,
            traffic_start=START,
        )
    )
    await service.start()
    try:
        service.spawn(service.run_traffic(), "traffic")  # as runsimulator --traffic does
        await csms.wait_for("OPEN-1", "BootNotification", timeout=10)
        csms.boot_status = "Accepted"  # the next BootNotification, a second later
        await wait_until(
            lambda: (
                service.traffic is not None
                and site.pk in service.traffic.sites
                and service.traffic.sites[site.pk].tally.log
                and service.traffic.sites[site.pk].tally.log[0][1] != ARRIVING
            ),
            timeout=30,
            message="the first driver's outcome",
        )
        assert service.traffic is not None
        first = service.traffic.sites[site.pk].tally.log[0]
        assert first[1] == STARTED, service.traffic.totals().text()
    finally:
        await service.stop()


async def test_the_arrivals_wait_for_no_charger_that_never_connects_by_itself() -> None:
    """The wait for the fleet's first boots leaves out a charger without a CSMS URL or
    with auto-connect off: it would have held the arrivals back for the whole minute."""
    service = Simulator(RunOptions(traffic=True, traffic_start=START))
    service.store.add(runtime_charger("NOURL-1", "", evses=1, location_id=7))
    service.store.add(
        runtime_charger("MANUAL-1", "ws://127.0.0.1:1/ocpp", evses=1, auto_connect=False)
    )
    await asyncio.wait_for(service._first_boots(60.0), 5)


def busy_site(
    csms_url: str, time_zone: str = "UTC", connectors: int = 1, id_tags: str = "BAD1 OK1..OK3"
) -> Location:
    return profile_site(
        csms_url,
        "Busy Site",
        "BUSY-1",
        connectors,
        time_zone,
        hourly_arrivals=[20.0] * 24,
        dwell_distribution="uniform",
        dwell_a=5,
        dwell_b=25,
        id_tags=id_tags,
        never_unplug_share=0,
    )


async def test_a_full_site_turns_drivers_away_and_a_refused_idtag_leaves(csms) -> None:
    # Which arrivals find a free connector depends on how fast the sessions run in real
    # time (a loaded machine serves fewer): two connectors and two blocked tags of four,
    # so that some blocked driver finds a connector however busy the machine is.
    csms.authorize["BAD1"] = csms.authorize["BAD2"] = "Blocked"
    site = await database_sync_to_async(busy_site)(
        csms.url, connectors=2, id_tags="BAD1 BAD2 OK1 OK2"
    )
    service = Simulator(
        RunOptions(
            tick_seconds=0.1,
            checkpoint_seconds=0.2,
            reconnect_cap=0.5,
            traffic=True,
            traffic_seed=SEED,
            traffic_speed=SPEED,
            traffic_start=START,
            traffic_duration=2 * 3600.0,
        )
    )
    await service.start()
    try:
        await wait_until(
            lambda: all(c.boot is BootState.ACCEPTED for c in service.store),
            timeout=30,
            message="BUSY-1 to boot",
        )
        service.spawn(service.run_traffic(), "traffic")
        await wait_until(
            lambda: service.traffic is not None and site.pk in service.traffic.sites,
            message="the traffic to start",
        )
        assert service.traffic is not None
        tally = await service.traffic.wait_site(site.pk)
        assert tally is not None and tally.arrivals > 20

        log = tally.log
        assert tally.turned_away > 0 and tally.refused > 0
        assert {a.id_tag for a, outcome in log if outcome == "refused"} <= {"BAD1", "BAD2"}
        assert all(a.id_tag not in ("BAD1", "BAD2") for a, outcome in log if outcome == STARTED)
        # A driver was turned away only while a session held a connector (the other may be
        # held by a blocked driver on the way out). Slack for the event loop's own timing:
        # five simulated minutes, a quarter of a second at this speed (a minute, 50 ms, was
        # outrun once by a loaded machine's loop).
        sessions = [(a.at, a.at + a.dwell_s) for a, outcome in log if outcome == STARTED]
        for arrival, outcome in log:
            if outcome == "turned_away":
                assert any(s <= arrival.at <= e + 300 for s, e in sessions), arrival
        # Everyone left: the connectors are free again, the CSMS saw each session stop.
        charger = service.store.get("BUSY-1")
        assert charger is not None and all(evse.battery is None for evse in charger.evses)
        assert tally.left == tally.started
        await wait_until(
            lambda: (
                len(csms.transactions) == tally.started
                and all(tx.stopped for tx in csms.transactions.values())
            ),
            timeout=15,
            message="the CSMS to see every session stop",
        )
    finally:
        await service.stop()


# -- the traffic command (a scenario's `traffic` step) over the channel layer ---------------


async def ask(command: traffic.TrafficCommand) -> dict[str, Any]:
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(contract.engine_group(0), command)
    return await asyncio.wait_for(layer.receive(command["reply_channel"]), 10)


async def test_a_traffic_command_runs_a_sites_traffic_with_an_override(csms) -> None:
    site = await database_sync_to_async(busy_site)(csms.url, "Asia/Kolkata")
    layer = get_channel_layer()
    assert layer is not None
    reply = await layer.new_channel()
    service = Simulator(
        RunOptions(tick_seconds=0.1, checkpoint_seconds=0.2, reconnect_cap=0.5, traffic_start=START)
    )
    await service.start(channels=True)
    try:
        await wait_until(
            lambda: all(c.boot is BootState.ACCEPTED for c in service.store),
            timeout=30,
            message="BUSY-1 to boot",
        )
        bad = await ask(
            traffic.traffic_command(
                "start", site.pk, reply, "r1", profile={"hourly_arrivals": [1, 2]}
            )
        )
        assert bad["ok"] is False and bad["field"] == "hourly_arrivals"
        assert bad["message"].startswith("Give 24 numbers")
        unknown = await ask(
            traffic.traffic_command(
                "start", site.pk, reply, "r1b", profile={"vehicle_mix": [[999_999, 1]]}
            )
        )
        assert unknown["ok"] is False and unknown["field"] == "vehicle_mix"
        assert unknown["message"] == "There is no vehicle model 999999."
        assert site.pk not in service.traffic.sites  # type: ignore[union-attr]

        # Arrivals only from 13:00 to 15:00 in the site's zone (START is 13:30 there): a
        # worker that took the hours as UTC (08:00) would see none.
        hourly = [0.0] * 24
        hourly[13] = hourly[14] = 30.0
        # Everyone unplugs: a car left by a never-unplug driver would still hold the
        # connector when the second start below is stopped.
        override = {"hourly_arrivals": hourly, "id_tags": "OVR1..OVR9", "never_unplug_share": 0}
        answer = await ask(
            traffic.traffic_command(
                "start",
                site.pk,
                reply,
                "r2",
                profile=override,
                duration=3600.0,
                seed=99,
                speed=3600.0,
            )
        )
        assert answer["ok"] is True, answer
        assert answer["message"] == f"traffic at location {site.pk} started (1 chargers here)"
        assert service.traffic is not None
        tally = await service.traffic.wait_site(site.pk)
        assert tally is not None

        catalogue = sorted(service.traffic.vehicles)
        expected = list(
            ArrivalStream(
                ArrivalProfile.from_dict({**override, "time_zone": "Asia/Kolkata"}, catalogue),
                seeded(99, site.pk),
                START,
            ).until(START + 3600.0)
        )
        assert len(expected) > 10
        assert [a for a, _ in tally.log] == expected
        status = await ask(traffic.traffic_command("status", site.pk, reply, "r3"))
        assert status["message"].startswith(f"traffic at location {site.pk} not running")
        assert status["tally"]["arrivals"] == len(expected)
        assert status["tally"]["started"] == tally.started >= 1
        # A run for a duration: --traffic's stored profile takes the site back after it.
        assert service.traffic.sites[site.pk].hand_back
        assert {tx.id_tag for tx in csms.transactions.values()} <= {f"OVR{n}" for n in range(10)}

        # Stopped mid-way, the site gets no more drivers; those there finish and leave.
        again = await ask(
            traffic.traffic_command(
                "start", site.pk, reply, "r4", duration=30 * 86_400.0, speed=3600.0
            )
        )
        assert again["ok"] is True
        busy = service.store.get("BUSY-1")
        assert busy is not None
        await wait_until(lambda: busy.evses[0].battery is not None, timeout=30, message="a driver")
        stopped = await ask(traffic.traffic_command("stop", site.pk, reply, "r5"))
        assert stopped["message"] == f"traffic at location {site.pk} stopped"
        final = stopped["tally"]["arrivals"]
        driver = service.traffic
        assert driver is not None
        await wait_until(lambda: not driver.tasks(), timeout=30, message="the drivers to leave")
        assert driver.sites[site.pk].tally.arrivals == final
        assert busy.evses[0].battery is None  # the stored profile's drivers all unplug
        await wait_until(
            lambda: all(tx.stopped for tx in csms.transactions.values()),
            timeout=15,
            message="every session to stop",
        )
    finally:
        await service.stop()
        await layer.flush()


async def test_a_site_split_over_shards_gets_its_share_of_the_arrivals_in_each() -> None:
    """Like load management, traffic runs per worker: a worker with 2 of a site's 8
    connectors draws a quarter of its arrivals, from a random source of its own."""
    store = Store()
    store.add(runtime_charger("SPLIT-1", "ws://127.0.0.1:1/ocpp", evses=2, location_id=7))
    store.add(runtime_charger("ELSEWHERE", "ws://127.0.0.1:1/ocpp", evses=2, location_id=8))
    profile = dict(default_profile())
    driver = TrafficDriver(store, {}, seed=3, site_connectors={7: 8, 8: 2}, shard=(1, 2))
    assert (driver.share_of(7), driver.share_of(8)) == (0.25, 1.0)
    split = driver.start_site(7, profile, start=START)
    whole = driver.start_site(8, profile, start=START)
    try:
        assert split.stream.profile.hourly == tuple(r / 4 for r in DEFAULT_HOURLY_ARRIVALS)
        assert whole.stream.profile.hourly == DEFAULT_HOURLY_ARRIVALS
        # A site the worker runs whole draws as a single worker would.
        alone = ArrivalStream(ArrivalProfile.from_dict(profile), seeded(3, 8), START)
        assert whole.stream.next() == alone.next()
    finally:
        await driver.stop_site(7)
        await driver.stop_site(8)


async def test_a_split_site_counts_its_connectors_again_as_the_fleet_changes() -> None:
    """The share of a site a worker draws (its connectors over the site's) follows the
    fleet: a charger added to the site at another worker lowers this one's share, which
    the site's count read once at the start kept as it was (more than the profile's rate)."""
    site = await database_sync_to_async(make_location)("Split Site", time_zone="UTC")
    for n in (1, 2):
        await database_sync_to_async(make_charger)(f"SPL-{n}", location=site, evses=2)
    await database_sync_to_async(ProfileRow.objects.create)(
        location=site, hourly_arrivals=[4.0] * 24
    )
    service = Simulator(
        RunOptions(shards=2, shard=0, traffic=True, traffic_start=START, reconcile_seconds=0.1)
    )
    # Never connected here (no connection task runs): the traffic need not wait for its boot.
    service.store.add(
        runtime_charger(
            "SPL-1", "ws://127.0.0.1:1/ocpp", evses=2, location_id=site.pk, auto_connect=False
        )
    )
    task = asyncio.create_task(service.run_traffic())
    try:
        await wait_until(
            lambda: service.traffic is not None and site.pk in service.traffic.sites,
            message="the traffic to start",
        )
        driver = service.traffic
        assert driver is not None
        assert driver.sites[site.pk].stream.profile.hourly == (2.0,) * 24  # 2 of 4
        await database_sync_to_async(make_charger)("SPL-3", location=site, evses=4)
        await wait_until(
            lambda: driver.sites[site.pk].stream.profile.hourly == (1.0,) * 24,  # 2 of 8
            message="this worker's share to follow the site's connectors",
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_edited_or_disabled_profile_applies_while_the_traffic_runs() -> None:
    """`--traffic` reads the profiles again as it runs (`refresh`): an edit goes on from
    now, a disabled site gets no more arrivals, and a site a command stopped stays stopped.
    (The chargers here never boot: every driver is turned away, which is all it needs.)"""
    store = Store()
    store.add(runtime_charger("EDIT-1", "ws://127.0.0.1:1/ocpp", evses=2, location_id=7))
    driver = TrafficDriver(store, {1: COMPACT}, seed=1, speed=36_000.0)
    six: dict[str, Any] = {**default_profile(), "hourly_arrivals": [6.0] * 24}
    twelve: dict[str, Any] = {**six, "hourly_arrivals": [12.0] * 24}
    try:
        driver.refresh({7: six})  # type: ignore[dict-item]
        site = driver.sites[7]
        assert site.managed and driver.running(7)
        await wait_until(lambda: site.tally.arrivals >= 5, message="arrivals")
        assert site.tally.turned_away == site.tally.arrivals - len(site._sessions)

        driver.refresh({7: twelve})  # type: ignore[dict-item]
        assert driver.sites[7] is site and site.stream.profile.hourly == (12.0,) * 24

        driver.refresh({})  # disabled
        assert not driver.running(7) and site.paused
        await wait_until(lambda: not driver.tasks(), message="the site's task to end")
        before = site.tally.arrivals

        driver.refresh({7: twelve})  # type: ignore[dict-item]  # enabled again
        again = driver.sites[7]
        assert again is not site and driver.running(7)
        assert again.tally is site.tally  # counting on
        await wait_until(lambda: again.tally.arrivals > before, message="arrivals again")

        await driver.stop_site(7)  # as a command does
        driver.refresh({7: twelve})  # type: ignore[dict-item]
        assert driver.sites[7] is again and not driver.running(7)
    finally:
        for task in driver.tasks():
            task.cancel()


async def test_a_command_run_for_a_duration_hands_the_site_back_to_its_profile() -> None:
    """A site a command ran for a duration goes back to its stored profile once the run's
    arrivals are over; one a command stopped, or started without a duration, stays the
    command's."""
    store = Store()
    store.add(runtime_charger("BACK-1", "ws://127.0.0.1:1/ocpp", evses=2, location_id=7))
    driver = TrafficDriver(store, {1: COMPACT}, seed=1, speed=36_000.0, start=START)
    six: dict[str, Any] = {**default_profile(), "hourly_arrivals": [6.0] * 24}
    busy: dict[str, Any] = {**six, "hourly_arrivals": [60.0] * 24}
    try:
        driver.refresh({7: six})  # type: ignore[dict-item]
        command = driver.start_site(7, busy, duration=3600.0)
        command.hand_back = True  # as the command's handler marks a run with a duration
        driver.refresh({7: six})  # type: ignore[dict-item]
        assert driver.sites[7] is command  # its hour is not over yet
        await wait_until(lambda: command.clock.now() >= START + 3600.0, message="the hour")
        driver.refresh({7: six})  # type: ignore[dict-item]
        back = driver.sites[7]
        assert back is not command and back.managed and driver.running(7)
        assert back.stream.profile.hourly == (6.0,) * 24
        await wait_until(lambda: back.tally.arrivals >= 2, message="the profile's arrivals")

        command = driver.start_site(7, busy, duration=3600.0)
        command.hand_back = True
        await driver.stop_site(7)  # stopped before its hour is over: stays stopped
        await wait_until(lambda: command.clock.now() >= START + 3600.0, message="the hour")
        driver.refresh({7: six})  # type: ignore[dict-item]
        assert driver.sites[7] is command and not driver.running(7)

        forever = driver.start_site(7, busy)  # no duration: the command's until stopped
        driver.refresh({7: six})  # type: ignore[dict-item]
        assert driver.sites[7] is forever and driver.running(7)
        await driver.stop_site(7)
        driver.refresh({7: six})  # type: ignore[dict-item]
        assert driver.sites[7] is forever and not driver.running(7)
    finally:
        for task in driver.tasks():
            task.cancel()


async def test_a_profile_edited_to_more_arrivals_applies_before_the_next_one_drawn() -> None:
    """The next arrival is drawn ahead at the old rates: at a night's rate it may be hours
    away (here months). An edit draws it again from now, so a raised rate applies within
    seconds, not after that driver came."""
    store = Store()
    store.add(runtime_charger("EDIT-2", "ws://127.0.0.1:1/ocpp", evses=2, location_id=7))
    driver = TrafficDriver(store, {1: COMPACT}, seed=1, speed=3600.0, start=START)
    quiet: dict[str, Any] = {**default_profile(), "hourly_arrivals": [0.0001] * 24}
    busy: dict[str, Any] = {**quiet, "hourly_arrivals": [3600.0] * 24}
    drawn = ArrivalStream(ArrivalProfile.from_dict(quiet), seeded(1, 7), START).next()
    assert drawn is not None and drawn.at > START + 30 * 86400
    try:
        driver.refresh({7: quiet})  # type: ignore[dict-item]
        site = driver.sites[7]
        await asyncio.sleep(0.05)  # the site waits for the arrival drawn at the quiet rate
        assert site.tally.arrivals == 0
        driver.refresh({7: busy})  # type: ignore[dict-item]
        await wait_until(lambda: site.tally.arrivals >= 3, message="arrivals at the new rate")
        first = site.tally.log[0][0]
        assert first != drawn and first.at < drawn.at
    finally:
        for task in driver.tasks():
            task.cancel()


async def test_a_profile_enabled_again_runs_for_the_rest_of_the_traffic_hours() -> None:
    """With --traffic-hours, a site disabled and enabled again gets arrivals again until
    the run's hours end (not as many hours again), and none once they are over."""
    store = Store()
    store.add(runtime_charger("EDIT-3", "ws://127.0.0.1:1/ocpp", evses=2, location_id=7))
    hours = 1000.0
    driver = TrafficDriver(
        store, {1: COMPACT}, seed=1, speed=36_000.0, start=START, duration=hours * 3600
    )
    six: dict[str, Any] = {**default_profile(), "hourly_arrivals": [6.0] * 24}
    try:
        driver.refresh({7: six})  # type: ignore[dict-item]
        site = driver.sites[7]
        await wait_until(lambda: site.tally.arrivals >= 2, message="arrivals")
        driver.refresh({})  # disabled
        await wait_until(lambda: not driver.tasks(), message="the site's task to end")
        before = site.tally.arrivals

        driver.refresh({7: six})  # type: ignore[dict-item]  # enabled again
        again = driver.sites[7]
        assert again is not site and driver.running(7)
        assert again.until == pytest.approx(site.until) == START + hours * 3600
        await wait_until(lambda: again.tally.arrivals > before, message="arrivals again")

        driver.refresh({})
        await wait_until(lambda: not driver.tasks(), message="the site's task to end")
        again.clock.start += hours * 3600  # past the run's hours
        driver.refresh({7: six})  # type: ignore[dict-item]
        assert driver.sites[7] is again and not driver.running(7)
    finally:
        for task in driver.tasks():
            task.cancel()


async def test_drivers_with_no_vehicle_model_fail_and_the_status_line_says_so(caplog) -> None:
    """A fleet with no vehicle model (none is made but by --demo) and a profile without a
    mix: every driver comes without a car. The status line's figures add up and the log
    says why, once."""
    store = Store()
    store.add(runtime_charger("NOCAR-1", "ws://127.0.0.1:1/ocpp", evses=2, location_id=7))
    driver = TrafficDriver(store, {}, seed=1, speed=36_000.0, start=START)
    try:
        driver.refresh({7: {**default_profile(), "hourly_arrivals": [6.0] * 24}})
        site = driver.sites[7]
        await wait_until(lambda: site.tally.failed >= 3, message="arrivals")
        tally = site.tally
        assert tally.arrivals == tally.failed
        assert f"{tally.arrivals} arrived, 0 charging sessions, 0 turned away, 0 refused, " in (
            driver.totals().text()
        )
        assert f" {tally.failed} failed, 0 left" in driver.totals().text()
        warned = [r for r in caplog.records if "with no vehicle" in r.getMessage()]
        assert len(warned) == 1 and "location 7" in warned[0].getMessage()
    finally:
        for task in driver.tasks():
            task.cancel()


def empty_car_site(csms_url: str) -> Location:
    return profile_site(
        csms_url,
        "Empty Cars",
        "EMPTY-1",
        2,
        hourly_arrivals=[12.0] * 24,
        soc_distribution="fixed",
        soc_a=0,
        soc_b=0,
        target_distribution="fixed",
        target_a=0,
        target_b=0,
        dwell_distribution="fixed",
        dwell_a=15,
        dwell_b=0,
        id_tags=POOL,
        never_unplug_share=0,
    )


async def test_a_driver_whose_car_wants_nothing_plugs_in_and_draws_nothing(csms) -> None:
    """A profile whose SoC and target SoC are both 0 (the admin takes it, and a clipped
    normal can draw it): the car arrives empty and wants nothing. Its driver starts a
    session and leaves after the dwell, as with a full car; it is not a failed arrival."""
    site = await database_sync_to_async(empty_car_site)(csms.url)
    service = Simulator(traffic_options(3600.0))
    await service.start()
    try:
        driver, tally = await traffic_run(service, site.pk)
        assert tally.failed == 0 and tally.started >= 2, driver.totals().text()
        await wait_until(
            lambda: sum(tx.stopped for tx in csms.transactions.values()) == tally.left,
            timeout=15,
            message="the CSMS to see every session stop",
        )
        stopped = [tx for tx in csms.transactions.values() if tx.stopped]
        assert stopped and all(tx.meter_stop == tx.meter_start for tx in stopped)
    finally:
        await service.stop()


async def test_the_status_line_counts_on_when_a_command_starts_a_site_again() -> None:
    """A traffic command (a scenario's step) starts a site again with a tally of its own;
    the status line, like the counters, still counts what the site did before."""
    store = Store()
    store.add(runtime_charger("AGAIN-1", "ws://127.0.0.1:1/ocpp", evses=2, location_id=7))
    driver = TrafficDriver(store, {1: COMPACT}, seed=1, speed=36_000.0, start=START)
    six: dict[str, Any] = {**default_profile(), "hourly_arrivals": [6.0] * 24}
    try:
        driver.refresh({7: six})  # type: ignore[dict-item]
        first = driver.sites[7]
        await wait_until(lambda: first.tally.turned_away >= 3, message="arrivals")
        again = driver.start_site(7, six)  # as the command does
        await wait_until(lambda: again.tally.turned_away >= 1, message="arrivals again")
        total = driver.totals()
        assert total.arrivals == first.tally.arrivals + again.tally.arrivals
        assert total.turned_away == first.tally.turned_away + again.tally.turned_away >= 4
        assert f"{total.arrivals} arrived, 0 charging sessions, {total.turned_away} turned" in (
            total.text()
        )
    finally:
        for task in driver.tasks():
            task.cancel()


def test_the_log_keeps_arrival_order_when_a_later_outcome_is_known_first():
    # The first driver waits for its Authorize answer; the next, a moment later, finds the
    # connector taken and is turned away at once. The log is in the order they arrived.
    first, second = (
        Arrival(at, 1, 20.0, 80.0, 600.0, tag, False, 0.0)
        for at, tag in ((100.0, "A1"), (101.0, "A2"))
    )
    tally = SiteTally()
    first_slot, second_slot = tally.arrived(first), tally.arrived(second)
    assert tally.log == [(first, ARRIVING), (second, ARRIVING)]
    tally.count(second, TURNED_AWAY, second_slot)
    tally.count(first, STARTED, first_slot)
    assert tally.log == [(first, STARTED), (second, TURNED_AWAY)]
    assert (tally.arrivals, tally.started, tally.turned_away) == (2, 1, 1)


def test_past_its_bound_the_log_keeps_counting_without_entries():
    tally = SiteTally()
    tally.LOG_LIMIT = 1
    arrivals = [Arrival(float(n), 1, 20.0, 80.0, 60.0, f"T{n}", False, 0.0) for n in range(2)]
    slots = [tally.arrived(arrival) for arrival in arrivals]
    assert slots == [0, None]
    for arrival, slot in zip(arrivals, slots, strict=True):
        tally.count(arrival, STARTED, slot)
    assert tally.started == 2 and tally.log == [(arrivals[0], STARTED)]
