from django.contrib import admin
from django.db.models import Count

from fleet_io.import_admin import FleetImportExportAdmin
from locations.models import Location
from locations.resources import LocationResource


@admin.register(Location)
class LocationAdmin(FleetImportExportAdmin):
    resource_classes = [LocationResource]
    import_job_resource = "locations"
    list_display = [
        "name",
        "city",
        "country",
        "time_zone",
        "grid_limit_kw",
        "load_management",
        "charger_count",
    ]
    list_filter = ["country", "time_zone"]
    search_fields = ["name", "city", "address"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_charger_count=Count("chargers"))

    @admin.display(description="chargers", ordering="_charger_count")
    def charger_count(self, obj: Location) -> int:
        return obj._charger_count  # type: ignore[attr-defined]  # annotated by get_queryset
