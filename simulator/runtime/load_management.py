"""Site load management: a local controller keeps a location under its grid limit.

For each location whose load management is on (and that has a grid limit), once per meter
tick, before the chargers step: every connector in a transaction there says what it would
draw (`_wants`: its vehicle's demand, `Charger.demand_w`, under its charging profiles, then
its charger's rated power shared as that charger shares it), and the grid limit is shared
among them with `distribute` (equal shares, what one connector does not use goes to the
others). An AC share is never below the 6 A per phase that IEC 61851-1 lets a charger offer
(no car charges on less): when the limit cannot give every connector that, connectors are
admitted first come first served while it can, and the others get nothing (their cars
pause, SuspendedEVSE) until a session ends or the limit rises (`_shares`). A connector held to 3 kW by a TxProfile wants 3 kW: the rest of its share goes to
the others in the same tick. Each share becomes a cap in watts on that connector
(`Charger.set_site_caps`), applied like a profile limit, so Power.Offered and
Power.Active.Import follow it from this tick on. Locations without load management are left
alone: they draw what they want, and the location page shows the overload.

Scaled out (`--shards N`), each worker runs its own controller over the chargers it owns: a
location whose chargers live on several workers is kept under its limit per worker, not in
total (each worker gives its part of the site the whole limit). Run such sites in one worker,
or split their limit, until the workers share their demand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from simulator.core import power_sharing
from simulator.core.charge_point import Charger
from simulator.core.revision import FLEET
from simulator.core.smart_charging import distribute


class Site(NamedTuple):
    """A location's settings as the controller and the location pages use them."""

    grid_limit_w: float | None
    load_management: bool


class SiteController:
    def __init__(self) -> None:
        self.sites: dict[int, Site] = {}  # location pk -> its settings, every location
        self.grid_limits_w: dict[int, float] = {}  # location pk -> limit, managed sites only
        self.held_back: dict[int, int] = {}  # location pk -> connectors below their demand
        self._capped: set[Charger] = set()

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

    def apply(self, chargers: Iterable[Charger]) -> None:
        """Cap each charging connector of a managed location at its share of the limit."""
        limits = self.grid_limits_w
        if not limits and not self._capped:
            return
        wants: dict[int, dict[tuple[Charger, int], float]] = {}
        for charger in chargers:
            location = charger.spec.location_id
            if location is None or location not in limits or not charger.transactions:
                continue
            site = wants.setdefault(location, {})
            for connector_id, watts in _wants(charger).items():
                site[(charger, connector_id)] = watts
        capped: set[Charger] = set()
        held_back: dict[int, int] = {}
        for location, site in wants.items():
            given = _shares(limits[location], site)
            caps: dict[Charger, dict[int, float]] = {}
            for (charger, connector_id), want in site.items():
                share = given[(charger, connector_id)]
                caps.setdefault(charger, {})[connector_id] = share
                if share < want - 1e-6:
                    held_back[location] = held_back.get(location, 0) + 1
            for charger, charger_caps in caps.items():
                charger.set_site_caps(charger_caps)
                capped.add(charger)
        for charger in self._capped - capped:  # no longer managed, or no longer charging
            charger.set_site_caps({})
        self._capped = capped
        if held_back != self.held_back:  # applied on every tick; counted only on a change
            self.held_back = held_back
            FLEET.bump()


# The least current a charger may offer on an AC phase (IEC 61851-1's control pilot: 6 A).
MIN_AC_AMPS = 6.0

Connector = tuple[Charger, int]


def _shares(limit_w: float, wants: dict[Connector, float]) -> dict[Connector, float]:
    """The site's limit shared with no AC connector held below its minimum.

    First come first served: in the order their sessions started, a connector is admitted
    while the limit still covers the minimum of every one admitted (its minimum, or what
    its car wants if that is less); one that does not fit gets 0 (its car pauses) and a
    later, smaller one may still fit. The admitted share the limit in `distribute`'s equal
    shares; where those would leave one below its minimum (cars of different phases), each
    gets its minimum and they share what is left."""
    floor = {key: min(_minimum_w(*key), wants[key]) for key in wants}
    admitted: list[Connector] = []
    covered = 0.0
    for key in sorted(wants, key=_arrival):
        if covered + floor[key] <= limit_w + 1e-6:
            admitted.append(key)
            covered += floor[key]
    shares = distribute(limit_w, {n: wants[key] for n, key in enumerate(admitted)})
    given = {key: shares[n] for n, key in enumerate(admitted)}
    if any(given[key] < floor[key] - 1e-6 for key in admitted):
        extra = distribute(
            limit_w - covered, {n: wants[key] - floor[key] for n, key in enumerate(admitted)}
        )
        given = {key: floor[key] + extra[n] for n, key in enumerate(admitted)}
    return {key: given.get(key, 0.0) for key in wants}


def _minimum_w(charger: Charger, connector_id: int) -> float:
    """The least power the connector's car can draw: 6 A on each phase it uses (AC); DC
    regulates down to nothing."""
    spec = charger.spec
    if spec.power_type != "AC":
        return 0.0
    battery = charger.evse(connector_id).battery
    phases = max(1, spec.phases)
    if battery is not None:
        phases = max(1, min(battery.spec.ac_phases, phases))
    return MIN_AC_AMPS * spec.voltage_v * phases


def _arrival(key: Connector) -> tuple[str, str, int]:
    charger, connector_id = key
    tx = charger.transactions.get(connector_id)
    return (tx.started_at if tx is not None else "", charger.id, connector_id)


def _wants(charger: Charger) -> dict[int, float]:
    """What each connector could draw now without the site: its vehicle's demand under the
    charger's charging profiles (Tx/TxDefault, the ChargePointMax shared among them), then the
    charger's rated power shared as it shares it. What a profile holds back is not wanted, so
    `distribute` gives it to the other connectors of the site in the same tick."""
    demand = charger.demand_w()
    if demand and len(charger.profiles) > 0:
        starts = charger.transaction_starts()
        charging = {c: starts.get(c) for c in demand}
        limits = charger.profiles.allocate(charger.now(), charging, demand_watts=demand)
        # The vehicle's draw under the limit, not the limit: an amp limit on a car with
        # fewer phases than the EVSE, or a limit below the car's own maximum, binds as the
        # meter will apply it.
        demand = {
            c: min(w, charger.operating_point(charger.evse(c), limits[c]).power_w)
            if c in limits
            else w
            for c, w in demand.items()
        }
    rated = charger.spec.max_power_w
    if sum(demand.values()) <= rated:
        return demand
    starts = charger.transaction_starts()
    first = sorted(starts, key=lambda c: (starts[c], c))
    return power_sharing.share(rated, demand, charger.spec.power_sharing, first)
