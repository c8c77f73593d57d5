"""Site load management: a local controller keeps a location under its grid limit.

For each location whose load management is on (and that has a grid limit), once per meter
tick, before the chargers step: every connector in a transaction there says what it would
draw (`_wants`: its vehicle's demand under its charger's own limits, shared as that charger
shares them, `Charger.site_wants_w`: a car its charger holds back wants nothing), and the
grid limit is shared among them with `distribute` (equal shares, what one connector does
not use goes to the others). An AC share is never below the 6 A per phase that IEC 61851-1
lets a charger offer (no car charges on less): when the limit cannot give every connector
that, connectors are admitted first come first served while it can, and the others get
nothing (their cars pause, SuspendedEVSE) until a session ends or the limit rises
(`_shares`). A connector held to 3 kW by a TxProfile wants 3 kW: the rest of its share goes
to the others in the same tick. Each share becomes a cap in watts on that connector
(`Charger.set_site_caps`), applied like a profile limit, so Power.Offered and
Power.Active.Import follow it from this tick on. Locations without load management are left
alone: they draw what they want, and the location page shows the overload. So is a managed
site whose limit cannot bind (its connectors in a transaction, each at its EVSE's maximum
and no charger above its rating, draw no more than the limit): no cap until a session makes
it able to, so its chargers meter, and offer, as unmanaged ones do.

What a charger wants is kept between its meter visits (it is worked out from what only a
visit or a settle moves), and a site whose wants and limit are those of the last tick keeps
its shares: a steady managed site costs a loop over its chargers a tick, not their physics.

Waiting cars take turns when the site says so (`Site.rotation_s`, the location's
`rotation_minutes`): once someone has waited that long, as many of the connectors at the head
of the site's queue as there are waiting ones go to its back, so each waiting car gets its
turn and gives it up a turn later (round robin, the way site controllers queue sessions).
Without turns (0), a waiting car waits until a session ends. The same turns serve the cars
that wait on one charger (its rated power or ChargePointMax cannot give each 6 A:
`Charger.refresh_limits`), whether the site's load management is on or off (`turn_s`).

Scaled out (`--shards N`), each worker runs its own controller over the chargers it owns: a
location whose chargers live on several workers is kept under its limit per worker, not in
total (each worker gives its part of the site the whole limit). Run such sites in one worker,
or split their limit, until the workers share their demand.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from simulator.core.charge_point import Charger
from simulator.core.revision import FLEET
from simulator.core.smart_charging import distribute_above
from simulator.runtime.site_history import SiteHistory


class Site(NamedTuple):
    """A location's settings as the controller and the location pages use them."""

    grid_limit_w: float | None
    load_management: bool
    rotation_s: float = 0.0  # waiting cars take turns this often (0: first come, first served)


# How often cars waiting on a charger without a location take turns: the locations' default
# (`Location.rotation_minutes`).
UNPLACED_TURN_S = 15 * 60.0


class SiteController:
    def __init__(self) -> None:
        self.sites: dict[int, Site] = {}  # location pk -> its settings, every location
        self.grid_limits_w: dict[int, float] = {}  # location pk -> limit, managed sites only
        self.held_back: dict[int, int] = {}  # location pk -> connectors below their demand
        self._capped: set[Charger] = set()
        # Managed location pk -> its connectors in a transaction, in the order they are
        # admitted (arrival order, changed by turns), and when the current turn began
        # (someone is waiting).
        self._queues: dict[int, list[Connector]] = {}
        self._turn_started: dict[int, float] = {}
        # Charger -> what its connectors wanted (`_wants`), with its `metered_at` and
        # location then: kept while the charger is not visited (see `_gather`).
        self._kept: dict[Charger, _Kept] = {}
        self._shared: dict[int, _Shared] = {}  # managed location pk -> its last shares
        # Every site's power and limit over the last hour (the location page's chart).
        self.history = SiteHistory()

    def use(self, sites: Mapping[int, Site]) -> None:
        """The locations' grid limits and load management, as the database says now.

        A change is counted (`FLEET`), so that the location pages' summaries carry it at
        once: a page left open follows a limit edited in the admin."""
        sites = dict(sites)
        if sites != self.sites:
            self.sites = sites
            FLEET.bump()
        self.grid_limits_w = {
            pk: site.grid_limit_w
            for pk, site in sites.items()
            if site.load_management and site.grid_limit_w is not None
        }

    def turn_s(self, location: int | None) -> float:
        """How often cars waiting on one charger at this location take turns (s; 0: never)."""
        site = self.sites.get(location) if location is not None else None
        return UNPLACED_TURN_S if site is None else site.rotation_s

    def apply(
        self, chargers: Iterable[Charger], now: float | None = None, due: float | None = None
    ) -> None:
        """Cap each charging connector of a managed location at its share of the limit.
        `now`: the meter's monotonic clock (turns are timed on it). `due`: the meter visits
        the chargers whose `meter_wake` is no later this tick (None: it is not known, and
        what each charger wants is worked out again)."""
        limits = self.grid_limits_w
        if not limits and not self._capped:
            return
        now = time.monotonic() if now is None else now
        wants, changed = self._gather(chargers, limits, due)
        capped: set[Charger] = set()
        held_back: dict[int, int] = {}
        queues: dict[int, list[Connector]] = {}
        shared: dict[int, _Shared] = {}
        for location, site in wants.items():
            limit_w = limits[location]
            last = self._shared.get(location)
            # The same wants and limit as on the last tick: the same queue and shares, and
            # the caps they set are in force. The queue moves only with the connectors
            # wanting (the keys of `site`) or by a turn.
            same = last is not None and location not in changed and last.limit_w == limit_w
            if same:
                assert last is not None
                queue = queues[location] = self._queues[location]
                given, waiting = last.given, last.waiting
            else:
                queue = queues[location] = _queue(self._queues.get(location, []), site)
                given, waiting = _shares(limit_w, site, queue)
            if self._take_turns(location, queue, site, waiting, now):
                same = False
                given, waiting = _shares(limit_w, site, queue)
            if same:
                assert last is not None
                held, mine = last.held, last.chargers
            else:
                held = 0
                caps: dict[Charger, dict[int, float]] = {}
                for (charger, connector_id), want in site.items():
                    share = given[(charger, connector_id)]
                    caps.setdefault(charger, {})[connector_id] = share
                    if share < want - 1e-6:
                        held += 1
                for charger, charger_caps in caps.items():
                    charger.set_site_caps(charger_caps)
                mine = set(caps)
            capped.update(mine)
            if held:
                held_back[location] = held
            shared[location] = _Shared(limit_w, site, given, waiting, held, mine)
        self._shared = shared  # only the sites managed this tick: a reuse needs two in a row
        for charger in self._capped - capped:  # no longer managed, or no longer charging
            charger.set_site_caps({})
        self._capped = capped
        self._queues = queues
        for location in [pk for pk in self._turn_started if pk not in queues]:
            del self._turn_started[location]
        if held_back != self.held_back:  # applied on every tick; counted only on a change
            self.held_back = held_back
            FLEET.bump()

    def _gather(
        self, chargers: Iterable[Charger], limits: Mapping[int, float], due: float | None
    ) -> tuple[dict[int, dict[Connector, float]], set[int]]:
        """What each connector in a transaction at a managed site wants, by site, and the
        sites where that changed since the last tick (the others keep their last dict).
        Only sites whose limit can bind are listed: where the connectors in a transaction,
        each at its EVSE's maximum and no charger above its rating (`_most_w`), can draw no
        more than the limit together, nobody is asked and nothing is capped. Such a site's
        chargers draw, offer and are metered as unmanaged ones, until a session makes the
        limit able to bind.

        A charger's wants (`_wants`) are kept while it is not visited: what they are worked
        out from (the cars' state of charge and status, the sessions, the charger's limits
        and queue) moves only at a meter visit (which moves `metered_at`), when something
        settles the meter first (which makes the charger due at once: `meter_wake` 0) or,
        for a charger with profiles, when a period begins (it is due then). With `due` None
        (not known) each charger is asked again. A steady managed fleet thus costs a few
        comparisons per charger and tick, and one question per visit."""
        old = self._kept
        kept: dict[Charger, _Kept] = {}
        changed: set[int] = set()
        carried = 0
        most: dict[int, float] = {}  # location -> what its connectors can draw at most
        fresh: list[tuple[Charger, _Kept | None]] = []  # (charger, its last entry): to ask
        for charger in chargers:
            location = charger.spec.location_id
            if location is None or location not in limits or not charger.transactions:
                continue
            last = old.get(charger)
            at = charger.metered_at
            if last is not None:
                carried += 1
                wake = charger.meter_wake
                if (
                    due is not None
                    and last.at == at
                    and last.location == location
                    # Not due, or due only for a sample or a heartbeat (0: settled): only a
                    # profile's limits move with time alone (a period begins).
                    and (wake > due or (wake > 0.0 and not len(charger.profiles)))
                ):
                    kept[charger] = last
                    most[location] = most.get(location, 0.0) + last.most_w
                    continue
            entry = kept[charger] = _Kept(at, None, location, _most_w(charger))
            most[location] = most.get(location, 0.0) + entry.most_w
            fresh.append((charger, last))
            if last is not None and last.location != location:
                changed.add(last.location)
        if carried < len(old):  # a charger left its site, stopped charging or was removed
            changed.update(k.location for c, k in old.items() if c not in kept)
        binding = {pk for pk, watts in most.items() if watts > limits[pk]}
        # A site whose limit could not bind on the last tick asked nobody: all of its
        # chargers not asked yet are asked now (it is rebuilt whatever they answer).
        newly = {pk for pk in binding if pk not in self._shared}
        if newly:
            changed |= newly
            fresh += [(c, None) for c, k in kept.items() if k.location in newly]
        for charger, last in fresh:
            entry = kept[charger]
            location = entry.location
            if location not in binding or entry.wants is not None:
                continue
            wanted = _wants(charger)
            kept[charger] = entry._replace(wants=wanted)
            if last is None or last.location != location or last.wants != wanted:
                changed.add(location)
        self._kept = kept
        sites = {
            pk: last.wants
            for pk, last in self._shared.items()
            if pk not in changed and pk in binding
        }
        changed &= binding
        if changed:
            for charger, k in kept.items():  # in the fleet's order, as the shares were
                if k.location in changed:
                    assert k.wants is not None
                    site = sites.setdefault(k.location, {})
                    for connector_id, watts in k.wants.items():
                        site[(charger, connector_id)] = watts
        return sites, changed

    def _take_turns(
        self,
        location: int,
        queue: list[Connector],
        wants: dict[Connector, float],
        waiting: list[Connector],
        now: float,
    ) -> bool:
        """Move the head of the queue to its back once a turn is over; True if it moved.

        A turn begins when someone starts waiting and lasts the site's `rotation_s`. Then as
        many connectors as wait, taken from the head among those that draw (a full car
        frees nothing), go to the back: the waiting ones move up and are admitted."""
        rotation_s = self.sites.get(location, _UNMANAGED).rotation_s
        if not waiting or rotation_s <= 0:
            self._turn_started.pop(location, None)
            return False
        started = self._turn_started.setdefault(location, now)
        if now - started < rotation_s:
            return False
        self._turn_started[location] = now
        parked = set(waiting)
        drawing = [key for key in queue if key not in parked and wants[key] > 0]
        leaving = set(drawing[: len(waiting)])
        if not leaving:
            return False
        queue[:] = [key for key in queue if key not in leaving] + [
            key for key in queue if key in leaving
        ]
        return True


_UNMANAGED = Site(None, False)

Connector = tuple[Charger, int]


class _Kept(NamedTuple):
    """What a charger's connectors wanted (None: not asked, its site's limit could not
    bind), and when (its `metered_at`) and where; and the most they can draw (`_most_w`)."""

    at: float | None
    wants: dict[int, float] | None
    location: int
    most_w: float


class _Shared(NamedTuple):
    """A managed site's shares on the last tick, and what they were worked out from."""

    limit_w: float
    wants: dict[Connector, float]
    given: dict[Connector, float]
    waiting: list[Connector]
    held: int  # connectors held below what they want
    chargers: set[Charger]  # the chargers capped (none where the limit cannot bind)


def _queue(previous: list[Connector], wants: dict[Connector, float]) -> list[Connector]:
    """The site's queue now: the previous one without the connectors whose session ended,
    then the new ones in the order their sessions started."""
    kept = [key for key in previous if key in wants]
    known = set(kept)
    return kept + sorted((key for key in wants if key not in known), key=_arrival)


def _shares(
    limit_w: float, wants: dict[Connector, float], queue: list[Connector]
) -> tuple[dict[Connector, float], list[Connector]]:
    """The site's limit shared with no AC connector held below its minimum, and the
    connectors left waiting (`distribute_above`, in the queue's order: the order their
    sessions started, unless turns changed it)."""
    floors = {key: key[0].minimum_draw_w(key[1]) for key in wants}
    return distribute_above(limit_w, wants, floors, queue)


def _most_w(charger: Charger) -> float:
    """The most that the charger's connectors in a transaction can draw together, whatever
    their cars: each at its EVSE's maximum, and not above the charger's rated power (its own
    sharing holds them there)."""
    evses = charger.evses
    watts = 0.0
    for connector_id in charger.transactions:
        watts += evses[connector_id - 1].max_power_w
    return min(charger.spec.max_power_w, watts)


def _arrival(key: Connector) -> tuple[str, str, int]:
    charger, connector_id = key
    tx = charger.transactions.get(connector_id)
    return (tx.started_at if tx is not None else "", charger.id, connector_id)


def _wants(charger: Charger) -> dict[int, float]:
    """What each connector could draw now without the site: its vehicle's demand under the
    charger's own limits, shared as the charger shares them (`Charger.site_wants_w`). What a
    profile holds back is not wanted, so `distribute` gives it to the other connectors of the
    site in the same tick; a car the charger itself holds back (not enough for every car's
    6 A) wants nothing from the site."""
    return charger.site_wants_w()
