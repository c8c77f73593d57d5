from django.contrib import admin

from vehicles.models import VehicleModel


@admin.register(VehicleModel)
class VehicleModelAdmin(admin.ModelAdmin):
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
