"""The event-driven meter engine: a charger is visited at its events only (its samples, the
instant its vehicle fills, a change), and what it reports is what 1 s steps report."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from simulator.core.battery import DC_AMP_REVISIT_S, Battery, step
from simulator.core.evse import ConnectorStatus, Evse
from simulator.core.operations import Operations
from simulator.runtime.events import EventPublisher
from simulator.runtime.load_management import Site, SiteController
from simulator.runtime.meter_engine import MAX_SLEEP_S, SAFETY_SPREAD_S, MeterEngine
from tests.engine import COMPACT, PHEV, runtime_charger, tx_default_profile
from tests.toy_protocol import FakeClock

SAMPLED = {
    "MeterValueSampleInterval": "60",
    "MeterValuesSampledData": "Energy.Active.Import.Register,SoC",
    "ClockAlignedDataInterval": "0",
}
BASE = 1_796_200_000.0  # a wall clock start (epoch s) on a whole minute


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def samples(charger) -> list[tuple[float, int, float]]:
    """(epoch s, register Wh, SoC %) of each periodic MeterValues queued."""
    out = []
    for item in charger.queue:
        if item.action != "MeterValues":
            continue
        (value,) = item.payload["meterValue"]
        readings = {v.get("measurand"): v["value"] for v in value["sampledValue"]}
        stamp = datetime.fromisoformat(value["timestamp"].replace("Z", "+00:00"))
        out.append(
            (
                stamp.timestamp(),
                int(readings.get(None) or readings["Energy.Active.Import.Register"]),
                float(readings["SoC"]),
            )
        )
    return out


def reference(
    charger, vehicle, soc: float, target: float, seconds: int
) -> list[tuple[float, float]]:
    """The stepped engine's physics: 1 s Euler steps at the power of each step's start;
    (energy Wh, SoC %) after each whole second."""
    battery = Battery(vehicle, soc, target)
    evse = Evse(connector_id=1, max_power_w=charger.evses[0].max_power_w, battery=battery)
    energy, out = 0.0, []
    for _ in range(seconds + 1):
        out.append((energy, battery.soc))
        energy += step(battery, charger.operating_point(evse, None), 1.0)
    return out


def test_a_fleet_sampling_every_minute_is_visited_at_its_events_and_meters_as_1_s_steps():
    hours = 2
    seconds = hours * 3600
    fleet = [
        # DC through the taper to its target (a status change at an instant of its own).
        (runtime_charger("CP-DC", "ws://127.0.0.1:1", evses=1, power_type="DC", max_kw=150,
                         config=SAMPLED), COMPACT, 20.0, 90.0),
        # AC at a constant 11 kW for the whole run.
        (runtime_charger("CP-AC", "ws://127.0.0.1:1", evses=1, max_kw=11, config=SAMPLED),
         COMPACT, 10.0, 100.0),
        # A PHEV on one phase, filling within the run.
        (runtime_charger("CP-PHEV", "ws://127.0.0.1:1", evses=1, max_kw=22, config=SAMPLED),
         PHEV, 50.0, 100.0),
    ]  # fmt: skip
    for charger, vehicle, soc, target in fleet:
        charger.plug_in(1, vehicle, soc=soc, target_soc=target)
        charger.start_transaction(1, "TAG")
        charger.next_sample[1] = 1060.0  # on the test's monotonic clock: 60 s after start
    chargers = [c for c, *_ in fleet]
    engine = MeterEngine(chargers, tick_seconds=1.0)
    visits: Counter[str] = Counter()
    advance = engine.advance

    def counted(charger, *args, **kwargs):
        visits[charger.id] += 1
        advance(charger, *args, **kwargs)

    engine.advance = counted  # type: ignore[method-assign]  # counting visits
    for k in range(seconds + 1):
        engine.tick(now=1000.0 + k, wall=at(BASE + k))

    assert engine.ticks == seconds + 1
    for charger, vehicle, soc, target in fleet:
        taken = samples(charger)
        # One sample a minute (and none lost), at its own visit: the visits are the
        # samples, the first tick, and the instant the vehicle filled (then SuspendedEV).
        assert len(taken) == seconds // 60  # at 60, 120, ... 7200 s
        filled = charger.evse(1).status is ConnectorStatus.SUSPENDED_EV
        assert len(taken) + 1 <= visits[charger.id] <= len(taken) + 1 + (3 if filled else 0)
        steps = reference(charger, vehicle, soc, target, seconds)
        for stamp, register, reported_soc in taken:
            k = round(stamp - BASE)
            energy, ref_soc = steps[k]
            assert math.isclose(register, energy, rel_tol=0.005, abs_tol=1.0), (charger.id, k)
            assert math.isclose(reported_soc, ref_soc, rel_tol=0.005, abs_tol=0.05)
    assert chargers[0].evse(1).status is ConnectorStatus.SUSPENDED_EV  # the DC one filled
    assert chargers[2].evse(1).status is ConnectorStatus.SUSPENDED_EV  # the PHEV too


def test_an_idle_fleet_is_visited_at_its_heartbeats_only():
    chargers = [runtime_charger(f"CP-I{n}", "ws://127.0.0.1:1", evses=2) for n in range(5)]
    engine = MeterEngine(chargers, tick_seconds=1.0)
    for k in range(600):
        engine.tick(now=1000.0 + k, wall=at(BASE + k))
    # Offline, never booted: the first tick, then the safety net's visits only.
    assert engine.visits <= len(chargers) * (1 + 600 / 60 + 1)


def test_a_change_between_events_settles_the_register_up_to_the_latest_tick():
    charger = runtime_charger("CP-SET", "ws://127.0.0.1:1", evses=1, max_kw=11, config=SAMPLED)
    charger.plug_in(1, COMPACT, soc=30)
    tx = charger.start_transaction(1, "TAG")
    charger.next_sample[1] = 1060.0
    engine = MeterEngine([charger], tick_seconds=1.0)
    for k in range(31):  # 30 s of 11 kW, the charger asleep until its sample at 60 s
        engine.tick(now=1000.0 + k, wall=at(BASE + k))
    assert engine.visits < 5
    charger.stop_transaction(1)
    assert tx.meter_stop == int(11_000 * 30 / 3600)  # metered up to the latest tick


class SteppedEngine(MeterEngine):
    """The engine as it was: every charger visited on every tick."""

    def _next_wake(
        self, charger, now: float, wall_s: float, interval: int, profiled: bool
    ) -> float:
        return now + self.tick_seconds


def sharing_fleet(name: str, power_type: str, max_kw: float, vehicle, socs):
    charger = runtime_charger(name, "ws://127.0.0.1:1", evses=2, power_type=power_type,
                              max_kw=max_kw, config=SAMPLED)  # fmt: skip
    assert charger.power_shared  # 2 x max_kw on a max_kw charger
    for connector_id, soc in enumerate(socs, start=1):
        charger.plug_in(connector_id, vehicle, soc=soc, target_soc=100.0)
        charger.start_transaction(connector_id, "TAG")
        charger.next_sample[connector_id] = 1060.0
    return charger


def run(engine_class, charger, seconds: int) -> tuple[MeterEngine, list]:
    engine = engine_class([charger], tick_seconds=1.0)
    for k in range(seconds + 1):
        engine.tick(now=1000.0 + k, wall=at(BASE + k))
    return engine, samples(charger)


def both_ways(
    make_charger, seconds: int
) -> tuple[tuple[MeterEngine, list], tuple[MeterEngine, list]]:
    """The same charger run by the event-driven engine and by the per-tick reference."""
    return run(MeterEngine, make_charger(), seconds), run(SteppedEngine, make_charger(), seconds)


def test_two_connectors_sharing_a_dc_cabinet_meter_as_when_stepped_every_tick():
    # 150 kW shared by two ID.3s: equal shares while both want more, then the one that
    # tapers first leaves power to the other. An ID.3 on DC is on its curve at any SoC, so
    # its demand moves all the time and the charger is visited every tick, as before.
    seconds = 3600
    (events, taken), (stepped, reference_taken) = both_ways(
        lambda: sharing_fleet("CP-SH", "DC", 150, COMPACT, (10, 40)), seconds
    )
    assert len(taken) == len(reference_taken) == 2 * seconds // 60
    for (stamp, register, soc), (ref_stamp, ref_register, ref_soc) in zip(
        taken, reference_taken, strict=True
    ):
        assert stamp == ref_stamp
        assert math.isclose(register, ref_register, rel_tol=0.005, abs_tol=1.0)
        assert math.isclose(soc, ref_soc, rel_tol=0.005, abs_tol=0.05)
    assert stepped.visits == events.visits == seconds + 1


def test_two_ac_connectors_within_their_chargers_rating_are_visited_at_their_events_only():
    # Two 11 kW cars on a 22 kW charger with two 22 kW connectors: shared in principle,
    # but their demand never exceeds the rating nor moves (no taper before 97 %).
    seconds = 1800
    (events, taken), (_, reference_taken) = both_ways(
        lambda: sharing_fleet("CP-AC2", "AC", 22, COMPACT, (20, 30)), seconds
    )
    assert len(taken) == len(reference_taken) == 2 * seconds // 60
    for (_, register, _), (_, ref_register, _) in zip(taken, reference_taken, strict=True):
        assert abs(register - ref_register) <= 1  # the same, but for float sums and flooring
    assert events.visits <= seconds // 60 + 2


async def test_a_charger_a_page_shows_follows_the_meter_every_tick() -> None:
    # MeterValues every minute, but the page must not freeze for a minute: each flush of
    # the publisher settles a watched charger in a session, and the engine visits it.
    publisher = EventPublisher()
    charger = runtime_charger("CP-SHOWN", "ws://127.0.0.1:1", evses=1, max_kw=11, config=SAMPLED,
                              listener=publisher, db_id=7)  # fmt: skip
    charger.plug_in(1, COMPACT, soc=30)
    charger.start_transaction(1, "TAG")
    charger.next_sample[1] = 1060.0
    engine = MeterEngine([charger], tick_seconds=1.0)
    for k in range(5):
        engine.tick(now=1000.0 + k, wall=at(BASE + k))
    unwatched = engine.visits
    assert unwatched <= 2  # the first tick and the start's settle only
    publisher.watch(7)
    charger.listener.on_change(charger)
    registers = []
    for k in range(5, 10):
        await publisher.flush(FakeLayer())
        engine.tick(now=1000.0 + k, wall=at(BASE + k))
        registers.append(charger.evse(1).register_wh)
    assert engine.visits == unwatched + 5
    assert registers == sorted(registers) and registers[0] < registers[-1]


class FakeLayer:
    async def group_send(self, group: str, message: dict) -> None:
        pass


async def test_a_charger_shown_in_a_session_it_resumed_before_the_page_came_follows_at_once():
    """A session resumed at boot, before the page asked for the charger: nothing changed
    after the watch until the next sample, a minute away, and the page's chart stayed at
    its first point meanwhile."""
    publisher = EventPublisher()
    charger = runtime_charger("CP-RESUMED", "ws://127.0.0.1:1", evses=1, max_kw=11,
                              config=SAMPLED, listener=publisher, db_id=7)  # fmt: skip
    charger.plug_in(1, COMPACT, soc=30)
    charger.start_transaction(1, "TAG")
    charger.next_sample[1] = 1060.0
    engine = MeterEngine([charger], tick_seconds=1.0)
    for k in range(5):
        engine.tick(now=1000.0 + k, wall=at(BASE + k))
    await publisher.flush(FakeLayer())  # the changes of the start, published to nobody
    unwatched = engine.visits
    publisher.watch(7, charger=charger)  # the page's first snapshot: no change since
    for k in range(5, 10):
        await publisher.flush(FakeLayer())
        engine.tick(now=1000.0 + k, wall=at(BASE + k))
    assert engine.visits == unwatched + 5


def test_a_site_cap_set_while_a_charger_sleeps_applies_on_that_tick() -> None:
    # Load management turned on between two samples: the charger is settled up to the
    # tick at the old limit, then visited at once and shown (and metered) at its cap.
    charger = runtime_charger("CP-CAP", "ws://127.0.0.1:1", evses=1, max_kw=22, config=SAMPLED,
                              location_id=5)  # fmt: skip
    charger.plug_in(1, COMPACT, soc=20)
    charger.start_transaction(1, "TAG")
    charger.next_sample[1] = 1060.0
    sites = SiteController()
    engine = MeterEngine([charger], tick_seconds=1.0, sites=sites)
    for k in range(3):
        engine.tick(now=1000.0 + k, wall=at(BASE + k))
    assert charger.evse(1).power_w == 11_000  # shown from the first tick on
    sites.use({5: Site(6_000.0, True)})
    engine.tick(now=1003.0, wall=at(BASE + 3))
    assert charger.evse(1).power_w == 6_000
    assert math.isclose(charger.evse(1).register_wh, 11_000 * 3 / 3600)
    for k in range(4, 34):
        engine.tick(now=1000.0 + k, wall=at(BASE + k))
    charger.settle_meter()
    assert math.isclose(charger.evse(1).register_wh, (11_000 * 3 + 6_000 * 30) / 3600)


def test_an_evse_maximum_edited_in_a_session_applies_from_the_next_visit() -> None:
    # The meter keeps a connector's operating point while nothing it depends on changes;
    # the operator lowering the EVSE's power is such a change.
    charger = runtime_charger("CP-EDIT", "ws://127.0.0.1:1", evses=1, max_kw=11, config=SAMPLED)
    charger.plug_in(1, COMPACT, soc=20)
    charger.start_transaction(1, "TAG")
    engine = MeterEngine([charger], tick_seconds=1.0)
    for k in range(3):
        engine.tick(now=1000.0 + k, wall=at(BASE + k))
    assert charger.evse(1).power_w == 11_000
    charger.respec(replace(charger.spec, max_power_w=7_400.0), {1: 7_400.0})
    for k in range(3, 13):
        engine.tick(now=1000.0 + k, wall=at(BASE + k))
    assert charger.evse(1).power_w == 7_400
    charger.settle_meter()
    assert math.isclose(charger.evse(1).register_wh, (11_000 * 2 + 7_400 * 10) / 3600)


def profiled_charger(clock: FakeClock):
    """An AC charger on the test's clock charging an ID.3 (11 kW) under a TxDefaultProfile
    of 16 A, then 8 A from 10 min, then 32 A from 20 min, for 25 min; after it, nothing."""
    charger = runtime_charger(
        "CP-PRO", "ws://127.0.0.1:1", evses=1, max_kw=22, config=SAMPLED, clock=clock
    )
    answer = Operations(charger).on_set_charging_profile(
        0,
        {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": at(BASE).isoformat(),
                "duration": 1500,
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 16},
                    {"startPeriod": 600, "limit": 8},
                    {"startPeriod": 1200, "limit": 32},
                ],
            },
        },
    )
    assert answer == "Accepted"
    charger.plug_in(1, COMPACT, soc=20, target_soc=100)
    charger.start_transaction(1, "TAG")
    charger.next_sample[1] = 1060.0
    return charger


def assert_metered_alike(taken: list, reference_taken: list, *, soc_digit: bool = False) -> None:
    """The same samples as the stepped reference's: registers within 0.5 %, SoC within
    0.5 % or (`soc_digit`) one digit of the reported SoC, where a slow car's rounding
    may fall either side of a boundary."""
    for (stamp, register, soc), (ref_stamp, ref_register, ref_soc) in zip(
        taken, reference_taken, strict=True
    ):
        assert stamp == ref_stamp
        assert math.isclose(register, ref_register, rel_tol=0.005, abs_tol=1.0)
        if soc_digit:
            assert abs(soc - ref_soc) <= 0.1 + 1e-9
        else:
            assert math.isclose(soc, ref_soc, rel_tol=0.005, abs_tol=0.05)


def both_ways_on_clock(make_charger, seconds: int) -> list[tuple[MeterEngine, list]]:
    """`both_ways` for a charger on the test's clock (`make_charger(clock)`), which its
    profiles are read by: the engine's and the stepped reference's samples."""
    runs = []
    for engine_class in (MeterEngine, SteppedEngine):
        clock = FakeClock(start=1000.0, wall=BASE)
        charger = make_charger(clock)
        engine = engine_class([charger], tick_seconds=1.0)
        for k in range(seconds + 1):
            engine.tick(now=1000.0 + k, wall=at(BASE + k))
            clock.advance(1.0)
        runs.append((engine, samples(charger)))
    return runs


def test_a_charger_with_profiles_is_visited_at_their_periods_and_meters_as_every_tick():
    # A profile's limit changes at its periods' starts only: the charger is visited then
    # and at its samples, not every tick, and meters what the per-tick engine meters.
    seconds = 1800
    (events, taken), (stepped, reference_taken) = both_ways_on_clock(profiled_charger, seconds)
    assert len(taken) == len(reference_taken) == seconds // 60
    assert_metered_alike(taken, reference_taken)
    # 11 kW (the car's most, under 16 A), 5.52 kW (8 A x 3 x 230 V), 11 kW again.
    by_minute = {round(stamp - BASE) // 60: register for stamp, register, _ in taken}
    assert by_minute[10] - by_minute[9] == pytest.approx(11_000 / 60, abs=2)
    assert by_minute[15] - by_minute[14] == pytest.approx(5_520 / 60, abs=2)
    assert by_minute[25] - by_minute[24] == pytest.approx(11_000 / 60, abs=2)
    assert stepped.visits == seconds + 1
    # Its samples, the first tick, and a tick or two at each of its three changes.
    assert events.visits <= len(taken) + 1 + 2 * 3


def test_a_dc_car_under_an_amp_limit_meters_as_every_tick_as_its_voltage_rises():
    # 250 A into an ID.3 from 2 %: its power is the current at the pack voltage, which
    # rises steeply at the ends of the SoC range; the closed form holds the power of the
    # visit, so the engine looks again every `DC_AMP_REVISIT_S`.
    seconds = 1800

    def dc_charger(clock: FakeClock):
        charger = runtime_charger("CP-DCA", "ws://127.0.0.1:1", evses=1, power_type="DC",
                                  max_kw=150, config=SAMPLED, clock=clock)  # fmt: skip
        profile = tx_default_profile((0, 250), start=at(BASE))
        assert Operations(charger).on_set_charging_profile(0, profile) == "Accepted"
        charger.plug_in(1, COMPACT, soc=2, target_soc=100)
        charger.start_transaction(1, "TAG")
        charger.next_sample[1] = 1060.0
        return charger

    (events, taken), (stepped, reference_taken) = both_ways_on_clock(dc_charger, seconds)
    assert len(taken) == len(reference_taken) == seconds // 60
    assert_metered_alike(taken, reference_taken, soc_digit=True)
    # 250 A at 300-375 V: 75-94 kW, not the car's 100-120 kW unlimited.
    assert 75_000 * 0.49 < taken[-1][1] < 94_000 * 0.5
    assert stepped.visits == seconds + 1
    assert events.visits <= seconds // DC_AMP_REVISIT_S + len(taken) + 2


def test_an_idle_fleet_visited_in_one_tick_is_not_visited_in_one_tick_again():
    """The safety net's visits of chargers with no event of their own (idle, no heartbeat
    or clock-aligned sample due) spread over the seconds after it, by charger, instead of
    landing in one tick every minute; each charger is still visited once in that time."""
    idle = {"ClockAlignedDataInterval": "0"}
    fleet = [runtime_charger(f"CP-{n:04d}", "ws://127.0.0.1:1", evses=1, config=idle)
             for n in range(500)]  # fmt: skip
    engine = MeterEngine(fleet, tick_seconds=1.0)
    engine.tick(now=1000.0, wall=at(BASE))  # every one due: the fleet just came up
    assert engine.visits == len(fleet)
    wakes = [charger.meter_wake - 1000.0 for charger in fleet]
    assert all(MAX_SLEEP_S <= wake <= MAX_SLEEP_S + SAFETY_SPREAD_S for wake in wakes)
    per_tick = []
    for k in range(1, int(MAX_SLEEP_S + SAFETY_SPREAD_S) + 2):
        before = engine.visits
        engine.tick(now=1000.0 + k, wall=at(BASE + k))
        per_tick.append(engine.visits - before)
    assert sum(per_tick) == len(fleet)
    # About 42 a tick over 12 ticks; a quarter of the fleet in one tick would be a burst.
    assert max(per_tick) <= len(fleet) // 4, per_tick


def test_a_clock_stepped_by_the_csms_makes_a_charger_with_profiles_look_again():
    # Visited when its profile's next period begins by its clock: set an hour on, that
    # instant has passed, and the charger must not sleep until the safety net's visit.
    clock = FakeClock(start=1000.0, wall=BASE)
    charger = profiled_charger(clock)
    engine = MeterEngine([charger], tick_seconds=1.0)
    engine.tick(now=1000.0, wall=at(BASE))
    assert charger.meter_wake == 1060.0  # its first sample, before the period at 600 s
    charger._sync_clock(at(BASE + 3600).isoformat().replace("+00:00", "Z"))
    assert charger.meter_wake == 0.0  # visited on the next tick
    engine.tick(now=1001.0, wall=at(BASE + 1))
    # Now past the schedule's 25 minutes: no profile limits it, 11 kW flows.
    assert charger.limits.get(1) is None or charger.limits[1].watts >= 11_000


def test_a_period_that_begins_between_the_limits_and_the_next_wake_is_not_missed():
    # One visit reads the clock twice: for the limits, then for when to come back. A period
    # that begins between the two reads is in neither unless the second looks from the
    # first: the charger would sleep past it with the old limit (seen in a test under load).
    clock = FakeClock(start=1000.0, wall=BASE)
    charger = profiled_charger(clock)
    clock.advance(599.9995)  # half a millisecond before the 8 A period
    charger.refresh_limits(charger.demand_w())
    assert charger.limits[1].amps == 16
    clock.advance(0.001)
    assert charger.seconds_to_limit_change(60.0) == 0.0


class HostClock:
    """The host's monotonic clock, as the engine reads it when it runs on its own."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def host_driven(charger, host: HostClock, sites: SiteController | None = None) -> MeterEngine:
    engine = MeterEngine([charger], tick_seconds=1.0, sites=sites, monotonic=host)
    charger.plug_in(1, COMPACT, soc=20, target_soc=100)
    for k in range(2):  # ticks at 1000 and 1001, nothing flowing yet
        host.now = 1000.0 + k
        engine.tick(wall=at(BASE + k))
    return engine


def tick_at(engine: MeterEngine, host: HostClock, t: float) -> None:
    host.now = t
    engine.tick(wall=at(BASE + t - 1000.0))


def started_between_ticks(charger, host: HostClock) -> MeterEngine:
    """Ticks at 1000 and 1001, a session started at 1001.6, ticks at 1002 and 1003."""
    engine = host_driven(charger, host)
    host.now = 1001.6
    charger.start_transaction(1, "TAG")
    for t in (1002.0, 1003.0):
        tick_at(engine, host, t)
    return engine


def test_a_session_that_starts_between_ticks_meters_from_its_start_up_to_its_stop():
    """Its first visit stepped it from the tick before its start, which is not its time
    (QA: 11.5 Wh in the 1.03 s after meterStart at 22 kW, 6.3 Wh due); its stop settled only
    up to the latest tick."""
    charger = runtime_charger("CP-MID", "ws://127.0.0.1:1", evses=1, max_kw=22, config=SAMPLED)
    host = HostClock(1000.0)
    started_between_ticks(charger, host)
    assert charger.evse(1).power_w == 11_000
    charger.settle_meter()  # it sleeps until its sample: brought up to now (1003)
    assert math.isclose(charger.evse(1).register_wh, 11_000 * 1.4 / 3600)
    host.now = 1003.5
    charger.stop_transaction(1)
    assert math.isclose(charger.evse(1).register_wh, 11_000 * 1.9 / 3600)


def test_a_session_under_a_profile_draws_its_limit_from_its_start():
    """Its first step ran at no limit at all: the limits "as they were" before its first
    visit were none (QA: 22 kW until the first visit under a 6 A TxDefaultProfile)."""
    charger = runtime_charger("CP-LIM", "ws://127.0.0.1:1", evses=1, max_kw=22, config=SAMPLED)
    assert Operations(charger).on_set_charging_profile(0, tx_default_profile((0, 6))) == "Accepted"
    started_between_ticks(charger, HostClock(1000.0))
    watts = 6 * 230 * 3
    assert charger.evse(1).power_w == watts
    charger.settle_meter()
    assert math.isclose(charger.evse(1).register_wh, watts * 1.4 / 3600)


def test_a_connector_keeps_its_whole_share_until_a_second_session_starts():
    """Two 11 kW cars on an 11 kW charger share it from the second's start, not from the
    tick before it."""
    charger = runtime_charger("CP-SHR", "ws://127.0.0.1:1", evses=2, max_kw=11, config=SAMPLED)
    assert charger.power_shared
    host = HostClock(1000.0)
    engine = host_driven(charger, host)
    charger.start_transaction(1, "TAG")  # at 1001, on the tick
    tick_at(engine, host, 1002.0)
    assert charger.evse(1).power_w == 11_000
    charger.plug_in(2, COMPACT, soc=20, target_soc=100)
    host.now = 1002.25
    charger.start_transaction(2, "TAG2")
    for t in (1003.0, 1004.0):
        tick_at(engine, host, t)
    assert charger.evse(1).power_w == charger.evse(2).power_w == 5_500
    charger.settle_meter()
    assert math.isclose(charger.evse(1).register_wh, (11_000 * 1.25 + 5_500 * 1.75) / 3600)
    assert math.isclose(charger.evse(2).register_wh, 5_500 * 1.75 / 3600)


def test_a_settle_whose_step_changes_a_status_settles_once():
    """A car that fills inside a settle changes its status, which settles again: with the
    host's clock moved on by then, that settle stepped again, and so on without end."""

    class Creeping(HostClock):
        def __call__(self) -> float:
            self.now += 1e-6  # every read of the host's clock is a little later
            return self.now

    charger = runtime_charger("CP-FILL", "ws://127.0.0.1:1", evses=1, max_kw=22, config=SAMPLED)
    host = Creeping(1000.0)
    engine = MeterEngine([charger], tick_seconds=1.0, monotonic=host)
    charger.plug_in(1, PHEV, soc=99.99, target_soc=100)
    host.now = 1000.0
    engine.tick(wall=at(BASE))
    charger.start_transaction(1, "TAG")
    host.now = 1001.0
    engine.tick(wall=at(BASE + 1))
    host.now = 4600.0  # it fills within this hour
    charger.settle_meter()
    host.now = 4601.0  # and the next step finds it full
    charger.settle_meter()
    assert charger.evse(1).status is ConnectorStatus.SUSPENDED_EV


async def test_an_operation_settles_once_however_many_changes_it_makes():
    """Pausing a car settles, stops its flow, then changes its status, which settles
    again: a moment later, that settle stepped the car as if it still drew, and its power
    came back under SuspendedEV."""

    class Creeping(HostClock):
        def __call__(self) -> float:
            self.now += 1e-6
            return self.now

    charger = runtime_charger("CP-PAU", "ws://127.0.0.1:1", evses=1, max_kw=22, config=SAMPLED)
    host = Creeping(1000.0)
    engine = host_driven(charger, host)
    charger.start_transaction(1, "TAG")
    tick_at(engine, host, 1002.0)
    assert charger.evse(1).power_w == 11_000
    host.now = 1002.5
    charger.pause_ev(1)
    assert charger.evse(1).status is ConnectorStatus.SUSPENDED_EV
    assert charger.evse(1).power_w == 0.0
