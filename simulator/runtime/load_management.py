"""Site load management: a local controller keeps a location under its grid limit.

For each location whose load management is on (and that has a grid limit), once per meter
tick, before the chargers step: every connector in a transaction there says what it would
draw (`_wants`: its vehicle's demand, `Charger.demand_w`, under its charging profiles, then
its charger's rated power shared as that charger shares it), and the grid limit is shared
among them with `distribute` (equal shares, what one connector does not use goes to the
others). A connector held to 3 kW by a TxProfile wants 3 kW: the rest of its share goes to
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

from simulator.core import power_sharing
from simulator.core.charge_point import Charger
from simulator.core.revision import FLEET
from simulator.core.smart_charging import distribute


class SiteController:
    def __init__(self) -> None:
        self.grid_limits_w: dict[int, float] = {}  # location pk -> limit, managed sites only
        self.held_back: dict[int, int] = {}  # location pk -> connectors below their demand
        self._capped: set[Charger] = set()

    def use(self, grid_limits_w: Mapping[int, float]) -> None:
        """The managed locations and their grid limits (W), as the database says now."""
        self.grid_limits_w = dict(grid_limits_w)

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
            shares = distribute(limits[location], dict(enumerate(site.values())))
            caps: dict[Charger, dict[int, float]] = {}
            for index, ((charger, connector_id), want) in enumerate(site.items()):
                caps.setdefault(charger, {})[connector_id] = shares[index]
                if shares[index] < want - 1e-6:
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
