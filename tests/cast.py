"""The small shared cast of database objects that tests build on (no JSON fixtures).

Runtime chargers, which need no database, are in tests/engine.py: the engine's tests import
that module without Django models.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User

from chargers.models import Charger, Evse, Transaction
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


def make_open_transaction(
    charger: Charger, connector_id: int = 1, transaction_id: int | None = None
) -> Transaction:
    """A session in progress as the engine stores it (`transaction_id` None: the CSMS has
    not confirmed it yet)."""
    return Transaction.objects.create(
        charger=charger,
        connector_id=connector_id,
        local_id=f"{charger.charge_point_id}-{connector_id}",
        id_tag="TAG-1",
        transaction_id=transaction_id,
        meter_start=1000,
        started_at="2026-12-01T10:00:00Z",
    )


ADMIN_PASSWORD = "pw-admin-1"


def make_superuser(username: str = "admin") -> User:
    return get_user_model().objects.create_superuser(
        username, f"{username}@example.com", ADMIN_PASSWORD
    )


def make_user(username: str, *codenames: str, **fields: Any) -> User:
    """A user with the named permissions (codenames such as "view_charger"), read back fresh
    from the database so that its permission cache holds them."""
    fields.setdefault("password", "pw-user-1")
    model = get_user_model()
    user = model.objects.create_user(username, **fields)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return model.objects.get(pk=user.pk)
