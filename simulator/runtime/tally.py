"""The fleet's counts, for the fleet and location pages (`CommandServer.summaries`) and the
terminal's status line (`Simulator.status`), in one pass over the fleet, kept until
something they count changes.

Both are read every second; an idle fleet changes nothing they count, so a pass runs only
once `revision.FLEET` moved (see there for who moves it) and otherwise the last counts are
returned as they are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from simulator import contract
from simulator.contract import ConnectorStatus
from simulator.core.link import BootState, LinkState
from simulator.core.revision import FLEET
from simulator.runtime.load_management import Site, SiteController
from simulator.runtime.store import Store


@dataclass(frozen=True, slots=True)
class Counts:
    fleet: contract.FleetCounts
    locations: dict[int, contract.SiteCounts]
    # The status line's, counted as `Simulator.progress` does (an online charger not yet
    # accepted is in none of them).
    accepted: int
    connecting: int  # not online, no error, with a connection task
    failing: int  # not online, the last attempt failed
    charging: int  # chargers with a connector in Charging
    # Online, their last BootNotification answered Pending or Rejected: a CSMS that does not
    # know the chargers yet. Counted in none of the above, the status line read "0/2
    # accepted, 0 connecting, 0 failing" and did not say what the chargers were doing.
    pending: int = 0
    rejected: int = 0


class Tally:
    def __init__(
        self, store: Store, sites: SiteController, connections: Container[str] = ()
    ) -> None:
        self.store = store
        self.sites = sites
        self.connections = connections
        self.passes = 0  # how many times the fleet was walked (for tests)
        self._counts: Counts | None = None
        self._revision = -1

    def counts(self) -> Counts:
        """The counts as of now: the last ones while nothing they count has changed.

        The result is shared and must not be changed; a caller may tell an unchanged one
        by identity."""
        revision = FLEET.value
        if self._counts is None or revision != self._revision:
            self._counts = self._count()
            self._revision = revision
        return self._counts

    def _count(self) -> Counts:
        # Over every charger and connector (20,000 at 10,000 chargers), so the loop counts
        # enum members (hashing a member is cheap, `.value` and `str()` are not) and turns
        # them into names once, at the end; no generator or Counter per charger.
        self.passes += 1
        statuses: Counter[Any] = Counter()
        links: Counter[Any] = Counter()
        power_w = 0.0
        sites: dict[int, _Site] = {}
        accepted = connecting = failing = charging = pending = rejected = 0
        connections = self.connections
        online, boot_accepted = LinkState.ONLINE, BootState.ACCEPTED
        boot_pending, boot_rejected = BootState.PENDING, BootState.REJECTED
        charging_status = ConnectorStatus.CHARGING
        for charger in self.store:
            link = charger.link
            links[link] += 1
            if link is online:
                boot = charger.boot
                if boot is boot_accepted:
                    accepted += 1
                elif boot is boot_pending:
                    pending += 1
                elif boot is boot_rejected:
                    rejected += 1
            elif charger.link_error:
                failing += 1
            elif charger.id in connections:
                connecting += 1
            location_id = charger.spec.location_id
            site = None
            if location_id is not None:
                site = sites.get(location_id)
                if site is None:
                    site = sites[location_id] = _Site()
                site.chargers += 1
                site.links[link] += 1
            is_charging = False
            for evse in charger.evses:
                status, power = evse.status, evse.power_w
                statuses[status] += 1
                power_w += power
                if status is charging_status:
                    is_charging = True
                if site is not None:
                    site.power_w += power
                    site.statuses[status] += 1
                    if power > 0:
                        site.charging += 1
            charging += is_charging
        held_back = self.sites.held_back
        settings = self.sites.sites
        return Counts(
            fleet=contract.FleetCounts(
                chargers=len(self.store),
                statuses=_names(statuses),
                links=_names(links),
                power_w=round(power_w, 1),
            ),
            locations={
                pk: contract.SiteCounts(
                    power_w=round(site.power_w, 1),
                    chargers=site.chargers,
                    charging=site.charging,
                    statuses=_names(site.statuses),
                    links=_names(site.links),
                    held_back=held_back.get(pk, 0),
                    grid_limit_w=settings.get(pk, _UNKNOWN_SITE).grid_limit_w,
                    load_management=settings.get(pk, _UNKNOWN_SITE).load_management,
                )
                for pk, site in sites.items()
            },
            accepted=accepted,
            connecting=connecting,
            failing=failing,
            charging=charging,
            pending=pending,
            rejected=rejected,
        )


# A location the worker has not read yet (created after its last reload): as a new one is.
_UNKNOWN_SITE = Site(None, False)


class _Site:
    """One location's counts while the pass walks the fleet."""

    __slots__ = ("chargers", "charging", "links", "power_w", "statuses")

    def __init__(self) -> None:
        self.power_w = 0.0
        self.chargers = 0
        self.charging = 0
        self.statuses: Counter[Any] = Counter()
        self.links: Counter[Any] = Counter()


def _names(counts: Counter[Any]) -> dict[str, int]:
    """Counts keyed by enum members (StrEnum: their str() is the value) -> by name."""
    return {str(member): n for member, n in counts.items()}
