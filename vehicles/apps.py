from typing import Any

from django.apps import AppConfig


class VehiclesConfig(AppConfig):
    name = "vehicles"
    verbose_name = "Vehicles"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from vehicles.models import VehicleModel

        # Every write of a vehiclemodel, whatever makes it (admin, import, shell), tells the
        # simulator workers after commit; they use it from the next session.
        for signal in (post_save, post_delete):
            signal.connect(
                _tell_workers, sender=VehicleModel, dispatch_uid="vehicles-fleet-changed"
            )

        from fleet_io.registry import Importable, register
        from vehicles.resources import VehicleModelResource

        register(
            Importable(
                name="vehicles",
                resource=VehicleModelResource,
                permissions=("vehicles.add_vehiclemodel", "vehicles.change_vehiclemodel"),
                changelist="admin:vehicles_vehiclemodel_changelist",
            )
        )


def _tell_workers(sender: type, instance: Any, **kwargs: Any) -> None:
    from fleet_io.fleet_changes import notify_fleet_change

    notify_fleet_change(vehicles=[instance.pk])
