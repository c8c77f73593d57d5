"""Background traffic in a worker: drivers arrive at each site, charge, and leave.

For each location with chargers in this worker, an `ArrivalStream` (simulator.core.arrivals)
seeded from the run's seed and the location's id says who arrives when. An arrival takes
a free connector at the site (Available, nothing plugged in, the charger booted, and DC
only for a vehicle that charges on DC), chosen by the arrival's own `pick`; with none free
the driver is turned away. Otherwise the driver plugs in with the drawn SoC and target and
presents the idTag, as a person at the charger would (the charger's own runtime methods,
as the dashboard's actions use them). A refused idTag: the driver unplugs and leaves. After
the dwell the driver presents the idTag again (the charger stops the transaction, reason
Local) and unplugs; a driver who never unplugs leaves the car where it is, its session
going on (SuspendedEV once full), the connector taken for the rest of the run.

Time is simulated: `speed` simulated seconds pass per real second (60: an hour a minute),
from the wall-clock time the traffic starts (so the day's curve matches the site's clock)
unless a start is given. Each site counts what happened (`SiteTally`); the totals go to
the status line and to `chargesim_traffic_arrivals_total` / `..._departures_total`.

With --traffic, the sites' stored profiles are read again every few seconds (`refresh`): an
edited profile applies from then on, a disabled one stops the site's arrivals. A site can
also be driven on its own (`start_site` with a profile override, a duration, a seed and a
speed; `stop_site`, after which the drivers there still finish and leave): what the
`engine.traffic` command (simulator.contract.traffic) does for a scenario's traffic step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.contract import ConnectorStatus
from simulator.contract.traffic import ProfileDict, ProfileError, TrafficTally, default_profile
from simulator.core.arrivals import Arrival, ArrivalProfile, ArrivalStream, choose
from simulator.core.charge_point import ActionError, BootState, Charger
from simulator.core.evse import Evse
from simulator.core.vehicle import VehicleSpec
from simulator.runtime.metrics import TRAFFIC_ARRIVALS, TRAFFIC_DEPARTURES
from simulator.runtime.store import Store

log = logging.getLogger(__name__)

# How long the chargers-by-site index is used before it is read again (a charger added or
# moved to a site is seen by its traffic within this time).
INDEX_SECONDS = 1.0

# What became of an arrival, and of a session at the end of its dwell.
STARTED, REFUSED, TURNED_AWAY, FAILED = "started", "refused", "turned_away", "failed"
LEFT, STAYED = "left", "stayed"
ARRIVING = "arriving"  # in the log until the arrival's outcome is known


@dataclass
class SiteTally:
    arrivals: int = 0
    started: int = 0  # plugged in and the idTag accepted
    refused: int = 0  # the idTag was not accepted: unplugged and gone
    turned_away: int = 0  # no free connector that fits the vehicle
    failed: int = 0  # the charger refused the action (a fault, a race with the CSMS)
    left: int = 0  # stopped and unplugged after the dwell
    stayed: int = 0  # never-unplug drivers at the end of their dwell
    # Each arrival with what became of it, in the order they arrived (kept for tests and
    # scenario reports; bounded so that a week-long run does not grow without end).
    log: list[tuple[Arrival, str]] = field(default_factory=list)
    # The worker's counts since it started (the status line's), counted with these: a
    # site's tally starts again at a command's start, its drivers there still counting.
    run: SiteTally | None = None

    LOG_LIMIT = 10_000

    def arrived(self, arrival: Arrival) -> int | None:
        """Count an arrival; its place in the log (None past the bound). Its outcome comes
        later: one driver may wait for an Authorize answer while the next, arriving a
        moment after, is turned away at once, and the log stays in arrival order."""
        self.arrivals += 1
        if self.run is not None:
            self.run.arrivals += 1
        if len(self.log) >= self.LOG_LIMIT:
            return None
        self.log.append((arrival, ARRIVING))
        return len(self.log) - 1

    def count(self, arrival: Arrival, outcome: str, slot: int | None) -> None:
        self._add(outcome)
        TRAFFIC_ARRIVALS.labels(outcome=outcome).inc()
        if slot is not None:
            self.log[slot] = (arrival, outcome)

    def departed(self, how: str) -> None:
        self._add(how)
        TRAFFIC_DEPARTURES.labels(kind=how).inc()

    def _add(self, name: str) -> None:
        for tally in (self, self.run):
            if tally is not None:
                setattr(tally, name, getattr(tally, name) + 1)

    def as_dict(self) -> TrafficTally:
        return {
            "arrivals": self.arrivals,
            "started": self.started,
            "refused": self.refused,
            "turned_away": self.turned_away,
            "failed": self.failed,
            "left": self.left,
            "stayed": self.stayed,
        }

    def text(self) -> str:
        # Failures are rare (a fault, no vehicle model at all), shown when there are some:
        # without them the arrivals would not add up and nothing would say why.
        failed = f"{self.failed} failed, " if self.failed else ""
        return (
            f"{self.arrivals} arrived, {self.started} charging sessions, "
            f"{self.turned_away} turned away, {self.refused} refused, {failed}"
            f"{self.left} left, {self.stayed} stayed plugged in"
        )


class SimClock:
    """Simulated epoch seconds: `speed` of them per second of the event loop's clock."""

    def __init__(self, speed: float, start: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"traffic speed must be more than 0, not {speed}")
        self.speed = speed
        self._loop_start = asyncio.get_running_loop().time()
        self.start = time.time() if start is None else start

    def now(self) -> float:
        return self.start + (asyncio.get_running_loop().time() - self._loop_start) * self.speed

    async def sleep_until(self, t: float, interrupt: asyncio.Event | None = None) -> bool:
        """Wait until simulated time `t`; False if `interrupt` was set first."""
        while (left := t - self.now()) > 0:
            if interrupt is None:
                await asyncio.sleep(left / self.speed)
                continue
            if interrupt.is_set():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(interrupt.wait(), left / self.speed)
        return interrupt is None or not interrupt.is_set()


def seeded(seed: int, location_id: int) -> random.Random:
    """The random source of one site's traffic: the same for a seed on every machine."""
    return random.Random(f"traffic:{seed}:{location_id}")


class SiteTraffic:
    """One site's arrivals and the sessions they start."""

    def __init__(
        self,
        driver: TrafficDriver,
        location_id: int,
        profile: ArrivalProfile,
        clock: SimClock,
        seed: int,
        until: float | None,
    ) -> None:
        self.driver = driver
        self.location_id = location_id
        self.seed = seed
        self.stream = ArrivalStream(profile, seeded(seed, location_id), clock.start)
        self.clock = clock
        self.until = until  # simulated epoch time the arrivals end (None: never)
        self.tally = SiteTally()
        # Started from the site's stored profile by --traffic (so a profile edited or
        # disabled while running applies), not by a command with its own.
        self.managed = False
        self.paused = False  # its arrivals stopped because its profile was disabled
        # Started by a command for a duration: once its arrivals end, the stored profile
        # takes the site back (`TrafficDriver.refresh`), as if no command had come.
        self.hand_back = False
        self.stopped = asyncio.Event()  # no more arrivals; the drivers there finish
        # Set to wake the wait for the next arrival: stopped, or the profile changed.
        self._wake = asyncio.Event()
        self._sessions: set[asyncio.Task[None]] = set()

    def arrivals_over(self) -> bool:
        """No driver arrives any more (stopped, or its duration is over); those there may
        still be finishing their dwell."""
        return self.stopped.is_set() or (self.until is not None and self.clock.now() >= self.until)

    def stop_arrivals(self) -> None:
        self.stopped.set()
        self._wake.set()

    def use(self, profile: ArrivalProfile) -> None:
        """Go on with an edited profile from now. The next arrival, drawn at the old rates,
        may be hours away (a night's 0.1 an hour): it is drawn again from now at the new
        ones, which a Poisson process, memoryless, allows."""
        self.stream.use(profile)
        self._wake.set()

    async def run(self) -> None:
        try:
            while (arrival := self.stream.next()) is not None:
                if self.until is not None and arrival.at >= self.until:
                    break
                if not await self.clock.sleep_until(arrival.at, self._wake):
                    if self.stopped.is_set():
                        break
                    self._wake.clear()  # edited while this driver was still to come
                    self.stream.now = self.clock.now()
                    continue
                slot = self.tally.arrived(arrival)
                task = asyncio.create_task(
                    self._session(arrival, slot), name=f"traffic:{self.location_id}"
                )
                self._sessions.add(task)
                task.add_done_callback(self._session_done)
            # The last drivers finish their dwell before the site's traffic is over.
            while self._sessions:
                await asyncio.gather(*self._sessions, return_exceptions=True)
        finally:
            for task in self._sessions:
                task.cancel()

    def _session_done(self, task: asyncio.Task[None]) -> None:
        self._sessions.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("traffic session failed", exc_info=task.exception())

    def free_connectors(self, vehicle: VehicleSpec) -> list[tuple[Charger, Evse]]:
        """Connectors at this site a driver of `vehicle` could take now, in a stable order."""
        free = []
        for charger in self.driver.chargers_at(self.location_id):
            if charger.boot is not BootState.ACCEPTED or charger.charger_unavailable:
                continue
            if not vehicle.takes(charger.spec.power_type):  # a DC-only car on AC too
                continue
            for evse in charger.evses:
                if (
                    evse.status is ConnectorStatus.AVAILABLE
                    and evse.battery is None
                    and evse.connector_id not in charger.transactions
                    and evse.connector_id not in charger.pending_authorizations
                ):
                    free.append((charger, evse))
        return free

    async def _session(self, arrival: Arrival, slot: int | None) -> None:
        tally = self.tally
        vehicle = self.driver.vehicle(arrival.vehicle)
        if vehicle is None:
            if not tally.failed:  # once: every arrival of the site fails alike
                log.warning(
                    "location %d: a driver arrived with no vehicle: add vehicle models "
                    "(admin: Vehicle models), or give the site's arrival profile a mix",
                    self.location_id,
                )
            tally.count(arrival, FAILED, slot)
            return
        free = self.free_connectors(vehicle)
        if not free:
            tally.count(arrival, TURNED_AWAY, slot)
            return
        charger, evse = free[choose(free, arrival.pick)]
        cid = evse.connector_id
        try:
            charger.plug_in(
                cid, vehicle, soc=arrival.soc, target_soc=arrival.target_soc, brought_by=arrival
            )
            status = await charger.present_id_tag(cid, arrival.id_tag)
        except ActionError as exc:
            log.info("%s/%d: traffic session not started: %s", charger.id, cid, exc)
            tally.count(arrival, FAILED, slot)
            self._leave(charger, cid, arrival)
            return
        if status != "Accepted":
            tally.count(arrival, REFUSED, slot)
            self._leave(charger, cid, arrival)
            return
        tally.count(arrival, STARTED, slot)
        await self.clock.sleep_until(arrival.at + arrival.dwell_s)
        if arrival.never_unplug:
            tally.departed(STAYED)
            return
        # The charger as it is now: a power cycle during the dwell (an edit, the API's
        # reboot) built it afresh, with this car plugged into the new one.
        charger = self.driver.current(charger) or charger
        if self._brought(charger, cid, arrival):
            tx = charger.transactions.get(cid)
            if tx is not None and tx.id_tag == arrival.id_tag:
                with contextlib.suppress(ActionError):
                    await charger.present_id_tag(cid, arrival.id_tag)  # stops it: reason Local
        self._leave(charger, cid, arrival)
        tally.departed(LEFT)

    @staticmethod
    def _brought(charger: Charger, connector_id: int, arrival: Arrival) -> bool:
        """Is the car on this connector the one `arrival` brought?"""
        if connector_id > len(charger.evses):  # connectors removed by an edit
            return False
        battery = charger.evse(connector_id).battery
        return battery is not None and battery.brought_by is arrival

    @classmethod
    def _leave(cls, charger: Charger, connector_id: int, arrival: Arrival) -> None:
        """Unplug this driver's vehicle, if it is still the one plugged in."""
        if cls._brought(charger, connector_id, arrival):
            with contextlib.suppress(ActionError):
                charger.unplug(connector_id)


class TrafficDriver:
    """The background traffic of every site of a worker (`runsimulator --traffic`)."""

    def __init__(
        self,
        store: Store,
        vehicles: Mapping[int, VehicleSpec],
        *,
        seed: int = 0,
        speed: float = 1.0,
        start: float | None = None,
        duration: float | None = None,
        site_connectors: Mapping[int, int] | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.store = store
        # Connectors of each site over every shard: a worker that runs part of a site gets
        # that part's share of its arrivals (from a random source of its own), so that N
        # workers together give the site its profile's rate, not N times it.
        self.site_connectors = dict(site_connectors or {})
        self.shard = shard
        self.duration = duration  # simulated seconds of arrivals at each site; None: no end
        self.vehicles = dict(vehicles)
        self.seed = seed
        self.speed = speed
        self.start = start  # simulated epoch time each site starts at; None: when it starts
        self.sites: dict[int, SiteTraffic] = {}
        self.run_tally = SiteTally()  # every site's, since the worker started
        # The profile each site was started with (None: the default), read again against
        # a new vehicle catalogue (`use_vehicles`): an empty mix draws from the catalogue.
        self._given: dict[int, Mapping[str, Any] | None] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        # Sites stopped or replaced whose drivers are still finishing their dwell.
        self._draining: set[asyncio.Task[None]] = set()
        self._index: dict[int, list[Charger]] | None = None
        self._index_at = 0.0

    def _sites_index(self) -> dict[int, list[Charger]]:
        """The worker's chargers by location, in a stable order: read once per
        `INDEX_SECONDS` rather than a pass over the whole fleet per arrival."""
        now = time.monotonic()
        if self._index is None or now - self._index_at >= INDEX_SECONDS:
            index: dict[int, list[Charger]] = {}
            for charger in self.store:
                if charger.spec.location_id is not None:
                    index.setdefault(charger.spec.location_id, []).append(charger)
            for chargers in index.values():
                chargers.sort(key=lambda c: c.id)
            self._index, self._index_at = index, now
        return self._index

    def chargers_at(self, location_id: int) -> list[Charger]:
        # A charger removed since the index was read is left out (the store is the truth).
        return [c for c in self._sites_index().get(location_id, ()) if self.store.get(c.id) is c]

    def current(self, charger: Charger) -> Charger | None:
        """The live charger `charger` is now (by its row: a power cycle builds a new one,
        with a new id if it was renamed); None if it left this worker."""
        pk = charger.spec.db_id
        return self.store.get(charger.id) if pk is None else self.store.by_pk(pk)

    def locations(self) -> list[int]:
        return sorted(self._sites_index())

    def vehicle(self, vehicle_id: int | None) -> VehicleSpec | None:
        return None if vehicle_id is None else self.vehicles.get(vehicle_id)

    def use_vehicles(self, vehicles: Mapping[int, VehicleSpec]) -> None:
        """The vehicle models were edited: the next arrival brings one as it is now, and a
        site whose mix is the whole catalogue draws from the new one (a deleted model no
        longer arrives). A car plugged in keeps the battery it came with."""
        self.vehicles = dict(vehicles)
        for location_id, given in self._given.items():
            site = self.sites.get(location_id)
            if site is None or not self.running(location_id):
                continue
            try:
                arrivals = self.arrival_profile(location_id, given)
            except ProfileError:  # it was checked at its start; a vehicle cannot break it
                continue
            if arrivals != site.stream.profile:
                site.use(arrivals)

    def start_site(
        self,
        location_id: int,
        profile: Mapping[str, Any] | None = None,
        *,
        duration: float | None = None,
        start: float | None = None,
        seed: int | None = None,
        speed: float | None = None,
    ) -> SiteTraffic:
        """Start (or restart) a site's traffic with `profile` (a `ProfileDict`, checked:
        `ProfileError` names a bad field; None: the default profile) for `duration`
        simulated seconds (None: until stopped), its arrivals drawn from simulated time
        `start` on (None: the driver's start, else now); `seed` and `speed` default to the
        driver's. Its tally starts from zero."""
        arrivals = self.arrival_profile(location_id, profile)
        share = self.share_of(location_id)
        if duration is not None and not duration > 0:
            raise ProfileError("duration", f"The duration must be more than 0, not {duration}.")
        speed = self.speed if speed is None else speed
        if not speed > 0:
            raise ProfileError("speed", f"The speed must be more than 0, not {speed}.")
        self._retire(location_id)
        clock = SimClock(speed, self.start if start is None else start)
        until = None if duration is None else clock.start + duration
        site = SiteTraffic(
            self, location_id, arrivals, clock, self.seed if seed is None else seed, until
        )
        site.tally.run = self.run_tally
        if share < 1.0:
            k, n = self.shard
            site.stream.rng = random.Random(f"traffic:{site.seed}:{location_id}:{k}/{n}")
        self.sites[location_id] = site
        self._given[location_id] = profile
        self._tasks[location_id] = asyncio.create_task(
            site.run(), name=f"traffic-site:{location_id}"
        )
        return site

    def arrival_profile(
        self, location_id: int, profile: Mapping[str, Any] | None
    ) -> ArrivalProfile:
        """The engine's profile for this worker's part of the site (`ProfileError`)."""
        given: Mapping[str, Any] = profile if profile is not None else default_profile()
        arrivals = ArrivalProfile.from_dict(given, catalogue=sorted(self.vehicles))
        share = self.share_of(location_id)
        if share < 1.0:
            arrivals = dataclasses.replace(
                arrivals, hourly=tuple(rate * share for rate in arrivals.hourly)
            )
        return arrivals

    def _retire(self, location_id: int) -> None:
        """End a site's arrivals; its task goes on until its drivers have left."""
        task = self._tasks.pop(location_id, None)
        site = self.sites.get(location_id)
        if site is not None:
            site.stop_arrivals()
        if task is not None and not task.done():
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)

    def share_of(self, location_id: int) -> float:
        """This worker's part of a site: its connectors there over the site's (1 when the
        site's count is unknown or the worker runs all of it)."""
        total = self.site_connectors.get(location_id, 0)
        here = sum(len(c.evses) for c in self.chargers_at(location_id))
        return min(here / total, 1.0) if total > 0 else 1.0

    def tasks(self) -> list[asyncio.Task[None]]:
        """Every site's task, finishing ones too (each cancels its sessions when
        cancelled): the simulator's stop ends them with its own."""
        return [*self._tasks.values(), *self._draining]

    def running(self, location_id: int) -> bool:
        """Whether drivers still arrive at the site."""
        task = self._tasks.get(location_id)
        site = self.sites.get(location_id)
        return (
            task is not None and not task.done() and site is not None and not site.stopped.is_set()
        )

    def going_on(self, location_id: int) -> bool:
        """Whether the site's traffic is not over yet: arrivals to come, or its last drivers
        still finishing their dwell (what `wait_site` waits for)."""
        task = self._tasks.get(location_id)
        return task is not None and not task.done()

    async def stop_site(self, location_id: int) -> SiteTally | None:
        """Stop a site's arrivals; the drivers there finish their dwell and leave as they
        would. Its tally (still counting them), or None if it had no traffic."""
        site = self.sites.get(location_id)
        if site is not None:
            site.managed = False  # stopped on purpose: a profile reload does not restart it
            site.hand_back = False  # nor the end of a command's run
        self._retire(location_id)
        return None if site is None else site.tally

    async def wait_site(self, location_id: int) -> SiteTally | None:
        """Wait until a site's traffic with a duration is over (its last drivers gone)."""
        task = self._tasks.get(location_id)
        if task is not None:
            await asyncio.shield(task)
        site = self.sites.get(location_id)
        return None if site is None else site.tally

    async def run(
        self,
        profiles: Mapping[int, ProfileDict | None],
        reload: Callable[[], Awaitable[Mapping[int, ProfileDict | None]]] | None = None,
        every: float = 10.0,
    ) -> None:
        """Every site in `profiles` (None: the default profile) whose chargers this worker
        runs, until cancelled; with `reload`, the profiles are read again `every` seconds
        and an edited one applies from then on (`refresh`)."""
        try:
            self.refresh(profiles)
            while True:
                await asyncio.sleep(every)
                if reload is not None:
                    try:
                        self.refresh(await reload())
                    except Exception:
                        log.exception("reading the arrival profiles failed; keeping them")
        finally:
            tasks = self.tasks()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def refresh(self, profiles: Mapping[int, ProfileDict | None]) -> None:
        """Apply the sites' stored profiles: start the sites that have none running, go on
        with an edited profile where one runs, stop the arrivals of a site left out
        (disabled). Sites a command started or stopped are left alone, but for one a
        command ran for a duration: when its arrivals are over, its stored profile takes
        it back, as a new site's (its last drivers finish their dwell meanwhile)."""
        for location_id in self.locations():
            site = self.sites.get(location_id)
            if site is not None and not site.managed:
                if not (site.hand_back and site.arrivals_over()):
                    continue
                site.hand_back = False
                del self.sites[location_id]
                site = None
                log.info(
                    "location %d: the command's traffic is over: its profile applies", location_id
                )
            if location_id not in profiles:
                if site is not None and self.running(location_id):
                    self._retire(location_id)
                    site.paused = True
                continue
            try:
                arrivals = self.arrival_profile(location_id, profiles[location_id])
            except ProfileError as exc:
                log.warning("location %d: no traffic: %s: %s", location_id, exc.field, exc)
                continue
            if site is not None and self.running(location_id):
                if arrivals != site.stream.profile:
                    site.use(arrivals)
                    log.info("location %d: traffic follows its edited profile", location_id)
            elif site is None or site.paused or arrivals != site.stream.profile:
                # New, enabled again, or edited after its arrivals ended (a profile of
                # zeros): from now on, counting on where it left off, until the end of the
                # run's --traffic-hours (not as many hours again; none if they are over).
                start, duration = None, self.duration
                if site is not None:
                    start = site.clock.now()  # the same timeline
                    if site.until is not None:
                        duration = site.until - start
                        if duration <= 0:
                            continue
                started = self.start_site(
                    location_id, profiles[location_id], duration=duration, start=start
                )
                started.managed = True
                if site is not None:
                    started.tally = site.tally

    def totals(self) -> SiteTally:
        """What every site's traffic did since the worker started (the status line's
        figures, as the counters'): a site a command started again counts on."""
        return self.run_tally


def load_profiles(
    location_id: int | None = None, *, disabled: bool = False
) -> dict[int, ProfileDict | None]:
    """Each location's arrival profile (database, sync): its own if it has one (left out
    when disabled, unless `disabled`), otherwise the default profile in the site's time
    zone; of one location if given."""
    from locations.models import ArrivalProfile as ProfileRow
    from locations.models import Location

    profiles: dict[int, ProfileDict | None] = {}
    rows = {
        row.location_id: row
        for row in ProfileRow.objects.select_related("location").prefetch_related("vehicle_mix")
    }
    locations = Location.objects.all()
    if location_id is not None:
        locations = locations.filter(pk=location_id)
    for location in locations:
        row = rows.get(location.pk)
        if row is None:
            profile = default_profile()
            profile["time_zone"] = location.time_zone
            profiles[location.pk] = profile
        elif row.enabled or disabled:
            try:
                profiles[location.pk] = row.to_profile()
            except ValueError as exc:
                log.warning("%s: arrival profile not usable: %s", location, exc)
    return profiles


def site_time_zone(location_id: int) -> str:
    """The site's IANA time zone (UTC for a location that no longer exists)."""
    from locations.models import Location

    found = Location.objects.filter(pk=location_id).values_list("time_zone", flat=True).first()
    return found or "UTC"


def load_site_connectors() -> dict[int, int]:
    """The connectors of each location's enabled chargers, over every shard (database)."""
    from django.db.models import Count

    from chargers.models import Charger as ChargerRow

    counted = (
        ChargerRow.objects.filter(enabled=True)
        .values("location_id")
        .annotate(connectors=Count("evses"))
    )
    return {row["location_id"]: row["connectors"] for row in counted}
