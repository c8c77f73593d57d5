"""`--demo` is idempotent, and NumberOfConnectors equals the EVSE count (also repaired)."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from chargers.models import Charger, ConfigurationKey, Evse
from simulator.runtime.demo import ensure_demo_fleet
from tests.cast import make_charger, make_location

pytestmark = pytest.mark.django_db

URL = "ws://127.0.0.1:9000/ocpp"


def placements() -> dict[str, tuple]:
    return {
        c.charge_point_id: (c.location_id, c.max_power_kw, c.vendor) for c in Charger.objects.all()
    }


def test_a_restart_keeps_every_demo_charger_where_it_was():
    make_location("A9 Highway Hub")
    make_location("Depot")
    assert ensure_demo_fleet(6, URL) == 6
    before = placements()
    Charger.objects.filter(charge_point_id="DEMO-0004").update(vendor="Edited")
    before["DEMO-0004"] = (*before["DEMO-0004"][:2], "Edited")
    Evse.objects.filter(charger__charge_point_id="DEMO-0004").update(register_wh=2015.17)
    make_location("New Site")  # used to re-spread the fleet over the sites

    assert ensure_demo_fleet(8, "ws://127.0.0.1:9001/ocpp") == 2

    after = placements()
    assert {k: after[k] for k in before} == before
    assert set(
        Evse.objects.filter(charger__charge_point_id="DEMO-0004").values_list(
            "register_wh", flat=True
        )
    ) == {2015.17}
    # The CSMS the demo runs against this time.
    assert set(Charger.objects.values_list("csms_url", flat=True)) == {"ws://127.0.0.1:9001/ocpp"}


def test_demo_chargers_report_as_many_connectors_as_they_have():
    ensure_demo_fleet(3, URL)
    for charger in Charger.objects.all():
        assert (
            charger.configuration.get(key="NumberOfConnectors").value
            == str(charger.evses.count())
            == "2"
        )


def test_the_migration_repairs_number_of_connectors():
    charger = make_charger("CP-1", evses=2)
    ConfigurationKey.objects.filter(charger=charger, key="NumberOfConnectors").update(value="1")
    migration = importlib.import_module("chargers.migrations.0007_repair_number_of_connectors")
    migration.repair_number_of_connectors(apps, None)
    assert charger.configuration.get(key="NumberOfConnectors").value == "2"
