from django.contrib import admin
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from fleet_io.admin_deletes import CountedDeletes
from fleet_io.import_admin import FleetImportExportAdmin
from locations.models import ArrivalProfile, Location, VehicleShare
from locations.resources import LocationResource
from simulator.contract import traffic


@admin.register(Location)
class LocationAdmin(CountedDeletes, FleetImportExportAdmin):
    resource_classes = [LocationResource]
    import_job_resource = "locations"
    list_display = [
        "name",
        "city",
        "country",
        "time_zone",
        "grid_limit_kw",
        "load_management",
        "rotation_minutes",
        "charger_count",
        "traffic",
    ]
    list_filter = ["country", "time_zone"]
    search_fields = ["name", "city", "address"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_charger_count=Count("chargers"))
            .select_related("arrival_profile")
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        count = obj.chargers.count()
        what = (
            f"{obj} has no chargers: no running charger changes."
            if not count
            else f"The running chargers at {obj} ({count}) use its grid limit, load "
            "management and rotation from the next tick, within a second."
        )
        self.say_what_running_chargers_do(request, what, locations=(obj.pk,))

    @admin.display(description="chargers", ordering="_charger_count")
    def charger_count(self, obj: Location) -> int:
        return obj._charger_count  # type: ignore[attr-defined]  # annotated by get_queryset

    @admin.display(description="background traffic")
    def traffic(self, obj: Location) -> str:
        """The site's arrival profile: a link to it, or to add one (until then, --traffic
        uses the default profile)."""
        try:
            profile = obj.arrival_profile
        except ArrivalProfile.DoesNotExist:
            url = reverse("admin:locations_arrivalprofile_add")
            return format_html('<a href="{}?location={}">default profile</a>', url, obj.pk)
        url = reverse("admin:locations_arrivalprofile_change", args=[profile.pk])
        return format_html('<a href="{}">{}</a>', url, "own profile" if profile.enabled else "off")


class VehicleShareInline(admin.TabularInline):
    model = VehicleShare
    extra = 0
    autocomplete_fields = ["vehicle"]
    verbose_name = "vehicle in the mix"
    verbose_name_plural = (
        "vehicle mix (weights over vehicle models; none listed: every vehicle model alike)"
    )


@admin.register(ArrivalProfile)
class ArrivalProfileAdmin(admin.ModelAdmin):
    """Background traffic of a site (`runsimulator --traffic`)."""

    list_display = ["location", "enabled", "arrivals_per_day", "never_unplug_share"]
    list_filter = ["enabled"]
    search_fields = ["location__name"]
    autocomplete_fields = ["location"]
    inlines = [VehicleShareInline]
    fieldsets = [
        (None, {"fields": ["location", "enabled", "hourly_arrivals"]}),
        ("Initial SoC (%)", {"fields": ["soc_distribution", ("soc_a", "soc_b")]}),
        ("Target SoC (%)", {"fields": ["target_distribution", ("target_a", "target_b")]}),
        ("Dwell time (minutes)", {"fields": ["dwell_distribution", ("dwell_a", "dwell_b")]}),
        ("Drivers", {"fields": ["id_tags", "never_unplug_share"]}),
    ]

    @admin.display(description="arrivals a day")
    def arrivals_per_day(self, obj: ArrivalProfile) -> str:
        try:
            return f"{sum(traffic.check_hourly(obj.hourly_arrivals)):g}"
        except ValueError:
            return "?"
