from typing import Any

from django.apps import AppConfig


class LocationsConfig(AppConfig):
    name = "locations"
    verbose_name = "Locations"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from locations.models import Location

        # Every write of a location, whatever makes it (admin, import, shell), tells the
        # simulator workers after commit; they use it from the next session.
        for signal in (post_save, post_delete):
            signal.connect(_tell_workers, sender=Location, dispatch_uid="locations-fleet-changed")

        from fleet_io.registry import Importable, register
        from locations.resources import LocationResource

        register(
            Importable(
                name="locations",
                resource=LocationResource,
                permissions=("locations.add_location", "locations.change_location"),
                changelist="admin:locations_location_changelist",
            )
        )


def _tell_workers(sender: type, instance: Any, **kwargs: Any) -> None:
    from fleet_io.fleet_changes import notify_fleet_change

    notify_fleet_change(locations=[instance.pk])
