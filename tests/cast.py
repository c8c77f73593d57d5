"""The small shared cast of objects that tests build on (no JSON fixtures)."""

from __future__ import annotations

from typing import Any

from chargers.models import Charger, Evse
from locations.models import Location
from vehicles.models import CATALOGUE, VehicleModel


def make_location(name: str = "Test Site", **fields: Any) -> Location:
    fields.setdefault("city", "Berlin")
    fields.setdefault("country", "DE")
    fields.setdefault("time_zone", "Europe/Berlin")
    return Location.objects.create(name=name, **fields)


def make_vehicle(index: int = 0, **overrides: Any) -> VehicleModel:
    values = dict(CATALOGUE[index])
    values.update(overrides)
    vehicle, _ = VehicleModel.objects.get_or_create(
        make=values.pop("make"), model=values.pop("model"), defaults=values
    )
    return vehicle


def make_charger(
    charge_point_id: str = "CP-1",
    *,
    location: Location | None = None,
    evses: int = 2,
    **fields: Any,
) -> Charger:
    if location is None:
        location = Location.objects.first() or make_location()
    charger = Charger.objects.create(charge_point_id=charge_point_id, location=location, **fields)
    per_evse = charger.max_power_kw
    connector_type = (
        Evse.ConnectorType.CCS2
        if charger.power_type == Charger.PowerType.DC
        else Evse.ConnectorType.TYPE2
    )
    Evse.objects.bulk_create(
        [
            Evse(
                charger=charger,
                connector_id=n,
                connector_type=connector_type,
                max_power_kw=per_evse,
            )
            for n in range(1, evses + 1)
        ]
    )
    charger.sync_number_of_connectors()
    return charger
