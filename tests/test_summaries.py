"""The once-a-second counts a worker publishes for the fleet and location pages."""

from __future__ import annotations

from types import SimpleNamespace

from simulator.contract.statuses import ConnectorStatus as S
from simulator.core.charge_point import LinkState
from simulator.runtime.commands import CommandServer
from simulator.runtime.load_management import Site, SiteController
from simulator.runtime.store import Store
from simulator.runtime.tally import Tally
from tests.engine import runtime_charger


def test_summaries_count_statuses_links_and_power_per_fleet_and_location():
    store = Store()
    a = runtime_charger("CP-A", "ws://x", evses=2, location_id=1)
    b = runtime_charger("CP-B", "ws://x", evses=1, location_id=1)
    c = runtime_charger("CP-C", "ws://x", evses=1)
    for charger in (a, b, c):
        store.add(charger)
    a.link = LinkState.ONLINE
    c.link = LinkState.CONNECTING
    a.set_status(a.evses[0], S.PREPARING)
    a.set_status(a.evses[0], S.CHARGING)
    a.evses[0].power_w = 7000.04
    c.set_status(c.evses[0], S.FAULTED, "GroundFailure")
    c.evses[0].power_w = 0.0

    sites = SiteController()
    sites.use({1: Site(22_000.0, False)})  # a limit shown, not managed
    server = CommandServer(SimpleNamespace(tally=Tally(store, sites)), layer=None)
    fleet, locations = server.summaries()

    assert fleet == {
        "chargers": 3,
        "statuses": {"Charging": 1, "Available": 2, "Faulted": 1},
        "links": {"online": 1, "offline": 1, "connecting": 1},
        "power_w": 7000.0,
    }
    assert locations == {
        1: {
            "power_w": 7000.0,
            "chargers": 2,
            "charging": 1,
            "statuses": {"Charging": 1, "Available": 2},
            "links": {"online": 1, "offline": 1},
            "held_back": 0,
            "grid_limit_w": 22_000.0,
            "load_management": False,
        }
    }
    assert all(type(key) is str for key in fleet["statuses"])  # JSON-safe names, not members
