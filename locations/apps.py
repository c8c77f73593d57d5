from django.apps import AppConfig


class LocationsConfig(AppConfig):
    name = "locations"
    verbose_name = "Locations"

    def ready(self) -> None:
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
