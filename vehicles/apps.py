from django.apps import AppConfig


class VehiclesConfig(AppConfig):
    name = "vehicles"
    verbose_name = "Vehicles"

    def ready(self) -> None:
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
