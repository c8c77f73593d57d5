"""Background traffic: who arrives at a site, when, in which car, wanting what.

Plain Python and fully determined by the profile, the `random.Random` given and the start
time: the same seed gives the same arrivals, so a run (or a test) can be repeated.

Arrivals are a Poisson process whose rate is piecewise constant, one rate per hour of the
site's local day (`ProfileDict.hourly_arrivals`). The stream is exact, not thinned: each
arrival draws one unit exponential, the expected arrivals until it, and the clock walks
the hours, using up each hour's rate times its time, until that much is spent. One draw
per arrival wherever the hours begin: the same seed gives the same drivers in the same
order whenever a run starts, and at a flat rate the same gaps too (a fresh gap drawn at
each hour's start would make them depend on the start's minute). Each arrival then
draws, always in this order, its
vehicle (weights of the mix), initial SoC, target SoC, dwell, idTag (uniform from the
pool), whether the driver never unplugs, and a `pick` in [0, 1) with which the runtime
chooses among the free connectors: keeping every draw here keeps runs reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from simulator.contract.traffic import (
    DWELL_RANGE,
    SOC_RANGE,
    DistributionDict,
    check_profile,
)


@dataclass(frozen=True, slots=True)
class Distribution:
    kind: str  # fixed, uniform, normal (see simulator.contract.traffic)
    a: float
    b: float
    low: float
    high: float

    @classmethod
    def of(cls, given: DistributionDict, quantity: tuple[float, float, str]) -> Distribution:
        return cls(given["kind"], float(given["a"]), float(given["b"]), quantity[0], quantity[1])

    def draw(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        # normalvariate keeps no state between calls (gauss() caches its second value).
        return min(max(rng.normalvariate(self.a, self.b), self.low), self.high)


@dataclass(frozen=True, slots=True)
class ArrivalProfile:
    hourly: tuple[float, ...]  # arrivals per hour, by local hour of day
    vehicles: tuple[int, ...]  # vehicle model ids ...
    weights: tuple[float, ...]  # ... and their weights
    soc: Distribution
    target_soc: Distribution
    dwell_minutes: Distribution
    id_tags: tuple[str, ...]
    never_unplug_share: float
    tz: tzinfo

    @classmethod
    def from_dict(cls, given: Mapping[str, Any], catalogue: Sequence[int] = ()) -> ArrivalProfile:
        """Checked as the admin checks it (`ProfileError` otherwise). An empty vehicle mix
        is every vehicle of `catalogue` with the same weight."""
        profile = check_profile(given)
        mix = profile["vehicle_mix"] or [(vehicle, 1.0) for vehicle in catalogue]
        return cls(
            hourly=tuple(profile["hourly_arrivals"]),
            vehicles=tuple(v for v, _ in mix),
            weights=tuple(w for _, w in mix),
            soc=Distribution.of(profile["soc"], SOC_RANGE),
            target_soc=Distribution.of(profile["target_soc"], SOC_RANGE),
            dwell_minutes=Distribution.of(profile["dwell_minutes"], DWELL_RANGE),
            id_tags=tuple(profile["id_tags"]),
            never_unplug_share=profile["never_unplug_share"],
            tz=ZoneInfo(profile.get("time_zone", "UTC")),
        )

    def expected_arrivals(self, start: float, end: float) -> float:
        """The mean number of arrivals between two epoch times (the rate's integral)."""
        total, t = 0.0, start
        while t < end:
            hour, boundary = _hour_at(t, self.tz)
            step = min(boundary, end) - t
            total += self.hourly[hour] * step / 3600.0
            t += step
        return total


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # epoch seconds (simulated time)
    vehicle: int | None  # a vehicle model id; None when the mix and catalogue are empty
    soc: float  # %
    target_soc: float  # %, never below `soc`
    dwell_s: float  # how long the driver stays before stopping and unplugging
    id_tag: str
    never_unplug: bool  # stays plugged in after the dwell
    pick: float  # [0, 1): which free connector the driver takes


def _hour_at(t: float, tz: tzinfo) -> tuple[int, float]:
    """The local hour of day at epoch `t`, and the epoch time the next local hour begins."""
    local = datetime.fromtimestamp(t, tz)
    top = local.replace(minute=0, second=0, microsecond=0)
    # Wall-clock arithmetic in the zone, then back to UTC: a DST change makes an hour of
    # 0 or 2 real hours; the guard keeps the clock moving whatever the zone does.
    boundary = (top + timedelta(hours=1)).astimezone(UTC).timestamp()
    if boundary <= t:
        boundary = t + 3600.0 - (t % 3600.0)
    return local.hour, boundary


class ArrivalStream:
    """The arrivals at one site from `start` on, one at a time (`next`) or up to a time."""

    def __init__(self, profile: ArrivalProfile, rng: random.Random, start: float) -> None:
        self.profile = profile
        self.rng = rng
        self.now = start
        self._idle = not any(profile.hourly)
        self._pending: Arrival | None = None  # drawn by `until`, past its end

    def use(self, profile: ArrivalProfile) -> None:
        """Go on with another profile (an edited one) from the current time; an arrival
        already drawn keeps its time."""
        self.profile = profile
        self._idle = not any(profile.hourly)

    def next(self) -> Arrival | None:
        """The next arrival; None if the profile never has any."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return pending
        if self._idle:
            return None
        rng, t = self.rng, self.now
        need = rng.expovariate(1.0)  # the rate's integral until the next arrival
        while True:
            hour, boundary = _hour_at(t, self.profile.tz)
            rate = self.profile.hourly[hour] / 3600.0
            if rate > 0:
                if need < rate * (boundary - t):
                    t += need / rate
                    break
                need -= rate * (boundary - t)
            t = boundary
        self.now = t
        return self._arrival(t)

    def until(self, end: float) -> Iterator[Arrival]:
        """The arrivals before `end`; the one after it is kept for the next call."""
        while True:
            arrival = self.next()
            if arrival is None:
                return
            if arrival.at >= end:
                self._pending = arrival
                return
            yield arrival

    def _arrival(self, t: float) -> Arrival:
        profile, rng = self.profile, self.rng
        vehicle = rng.choices(profile.vehicles, profile.weights)[0] if profile.vehicles else None
        soc = round(profile.soc.draw(rng), 1)
        target = max(round(profile.target_soc.draw(rng), 1), soc)
        dwell_s = profile.dwell_minutes.draw(rng) * 60.0
        id_tag = rng.choice(profile.id_tags)
        never_unplug = rng.random() < profile.never_unplug_share
        pick = rng.random()
        return Arrival(t, vehicle, soc, target, dwell_s, id_tag, never_unplug, pick)


def choose(free: Sequence[object], pick: float) -> int:
    """The index among `free` connectors an arrival's `pick` chooses."""
    return min(math.floor(pick * len(free)), len(free) - 1)
