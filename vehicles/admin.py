from django.contrib import admin

from fleet_io.admin_deletes import CountedDeletes
from fleet_io.import_admin import FleetImportExportAdmin
from vehicles.forms import VehicleModelForm
from vehicles.models import VehicleModel
from vehicles.resources import VehicleModelResource


@admin.register(VehicleModel)
class VehicleModelAdmin(CountedDeletes, FleetImportExportAdmin):
    form = VehicleModelForm
    resource_classes = [VehicleModelResource]
    import_job_resource = "vehicles"
    list_display = [
        "__str__",
        "capacity_kwh",
        "ac_max_kw",
        "ac_phases",
        "dc_max_kw",
        "dc_nominal_v",
    ]
    list_filter = ["make", "ac_phases"]
    search_fields = ["make", "model"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self.say_what_running_chargers_do(
            request,
            f"The running chargers use {obj} as it is now from their next plug-in; a car "
            "plugged in now keeps the battery it came with.",
            vehicles=(obj.pk,),
        )
