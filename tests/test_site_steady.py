"""A managed site's controller between its chargers' meter visits: what a charger wants is
kept until it is visited or settled, and a site whose wants, queue and limit did not move
keeps its shares. The meter must give what it gave when both were worked out every tick."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from simulator.core.charge_point import Charger
from simulator.core.operations import Operations
from simulator.core.protocol import StopReason
from simulator.runtime.load_management import Site, SiteController
from simulator.runtime.meter_engine import MeterEngine
from tests.engine import COMPACT, PHEV, runtime_charger, tx_default_profile
from tests.test_load_management import AC22
from tests.toy_protocol import FakeClock

SITES = (7, 8)
START = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


class EveryTick(SiteController):
    """The controller as it was: every charger asked, every site shared, on every tick."""

    def apply(self, chargers, now=None, due=None):
        self._kept, self._shared = {}, {}
        super().apply(chargers, now)


def fleet(seed: int, clock: FakeClock) -> list[Charger]:
    """Eight chargers at two managed sites, cars at random states of charge (some taper or
    fill up within the run), sample intervals from 1 s to 60 s."""
    rng = random.Random(seed)
    chargers = []
    for n in range(8):
        charger = runtime_charger(
            f"LM-EQ-{n}",
            "",
            evses=2,
            max_kw=rng.choice([11.0, 22.0]),
            location_id=SITES[n % 2],
            config={"MeterValueSampleInterval": str(rng.choice([1, 5, 10, 60]))},
            clock=clock,
        )
        for connector in (1, 2):
            if rng.random() < 0.75:
                car = rng.choice([COMPACT, PHEV, AC22])
                charger.plug_in(connector, car, soc=rng.choice([rng.uniform(20.0, 99.8), 99.9]))
                charger.start_transaction(connector, f"T-{n}-{connector}")
                started = START + timedelta(seconds=2 * n + connector)
                charger.transactions[connector].started_at = started.strftime("%Y-%m-%dT%H:%M:%SZ")
        chargers.append(charger)
    return chargers


def events(seed: int, ticks: int) -> dict[int, list[tuple[str, int, int, float]]]:
    """At random ticks: a session ends, a car arrives, a site's limit changes, a charger
    gets a TxDefaultProfile, a charger is moved to the other site (edited in the admin)."""
    rng = random.Random(seed * 7919 + 1)
    plan: dict[int, list[tuple[str, int, int, float]]] = {}
    for _ in range(12):
        kind = rng.choice(["stop", "arrive", "grid", "profile", "move"])
        plan.setdefault(rng.randrange(1, ticks), []).append(
            (
                kind,
                rng.randrange(8),
                rng.choice([1, 2]),
                rng.choice([8_000.0, 20_000.0, 60_000.0, 300_000.0]),
            )
        )
    return plan


def happen(event, chargers: list[Charger], sites: SiteController, tick: int) -> None:
    kind, n, connector, watts = event
    charger = chargers[n]
    if kind == "stop" and connector in charger.transactions:
        charger.stop_transaction(connector, StopReason.LOCAL)
        charger.unplug(connector)
    elif kind == "arrive" and charger.evse(connector).battery is None:
        charger.plug_in(connector, AC22, soc=30.0)
        charger.start_transaction(connector, f"T-{tick}")
    elif kind == "grid":
        sites.use({pk: Site(watts if pk == SITES[n % 2] else 30_000.0, True, 20.0) for pk in SITES})
    elif kind == "move":
        other = SITES[1] if charger.spec.location_id == SITES[0] else SITES[0]
        charger.respec(replace(charger.spec, location_id=other), {})
    elif kind == "profile":
        # `amps`, and 20 s later another limit (the charger is visited then, and its site
        # shares again).
        amps = watts / 2_000
        profile = tx_default_profile((0, amps), (20, max(6.0, 36.0 - amps)), start=charger.now())
        assert Operations(charger).on_set_charging_profile(0, profile) == "Accepted"


def run(controller: type[SiteController], seed: int, ticks: int) -> list:
    # The chargers' clock is the ticks' (their profiles' periods begin in simulated time).
    clock = FakeClock(start=100.0, wall=(START + timedelta(seconds=60)).timestamp())
    chargers = fleet(seed, clock)
    plan = events(seed, ticks)
    sites = controller()
    # One site tight from the start, the other with room for every car.
    sites.use({SITES[0]: Site(30_000.0, True, 20.0), SITES[1]: Site(300_000.0, True, 20.0)})
    engine = MeterEngine(chargers, tick_seconds=1.0, sites=sites)
    seen = []
    for tick in range(ticks):
        for event in plan.get(tick, []):
            happen(event, chargers, sites, tick)
        engine.tick(now=100.0 + tick, wall=START + timedelta(seconds=60 + tick))
        clock.advance(1.0)
        seen.append(
            [
                (
                    charger.id,
                    dict(charger.site_caps_w),
                    [(evse.status, evse.power_w, evse.register_wh) for evse in charger.evses],
                )
                for charger in chargers
            ]
            + [dict(sites.held_back)]
        )
    return seen


@pytest.mark.parametrize("seed", range(8))
def test_a_managed_site_meters_as_when_everything_was_worked_out_every_tick(seed):
    ticks = 400
    kept = run(SiteController, seed, ticks)
    fresh = run(EveryTick, seed, ticks)
    for tick in range(ticks):
        assert kept[tick] == fresh[tick], f"tick {tick}"


@pytest.mark.parametrize("limit_w", [200_000.0, 220_000.0])
def test_a_steady_site_asks_a_charger_what_it_wants_only_around_its_visits(limit_w):
    # Two cars charging steadily on each of 10 chargers (22 kW each), MeterValues every
    # 10 s. At a site whose 200 kW hold the 220 kW they want at 10 kW a car, each charger
    # is visited once in 10 ticks, and asked on the tick after it (the visit may have
    # changed what it wants), not on every tick. At 220 kW the limit cannot bind: nobody is
    # asked, and nothing capped.
    clock = FakeClock(start=100.0, wall=START.timestamp())
    chargers = []
    for n in range(10):
        charger = runtime_charger(
            f"LM-ASK-{n}",
            "",
            location_id=SITES[0],
            config={"MeterValueSampleInterval": "10"},
            clock=clock,
        )
        for connector in (1, 2):
            charger.plug_in(connector, COMPACT, soc=30.0)
            charger.start_transaction(connector, f"T-{n}-{connector}")
        chargers.append(charger)
    sites = SiteController()
    sites.use({SITES[0]: Site(limit_w, True, 0.0)})
    engine = MeterEngine(chargers, tick_seconds=1.0, sites=sites)
    for tick in range(20):  # settle in
        engine.tick(now=100.0 + tick, wall=START + timedelta(seconds=tick))
        clock.advance(1.0)
    visits = engine.visits
    asked = []
    for charger in chargers:
        wants = charger.site_wants_w

        def counted(wants=wants):
            asked.append(1)
            return wants()

        charger.site_wants_w = counted  # type: ignore[method-assign]
    for tick in range(20, 120):
        engine.tick(now=100.0 + tick, wall=START + timedelta(seconds=tick))
        clock.advance(1.0)
    assert engine.visits - visits == 10 * 100 // 10
    if limit_w < 220_000.0:
        # Once per visit (the tick after it), and once more for a visit still to come.
        assert len(asked) <= 10 * 100 // 10 + 10
        assert all(charger.site_caps_w == {1: 10_000.0, 2: 10_000.0} for charger in chargers)
    else:
        assert asked == []
        assert all(charger.site_caps_w == {} for charger in chargers)
