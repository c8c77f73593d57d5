from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from chargers.forms import ChargerForm
from chargers.models import Charger, ConfigurationKey, Evse


class EvseInline(admin.TabularInline):
    model = Evse
    extra = 0
    min_num = 1
    fields = [
        "connector_id",
        "connector_type",
        "max_power_kw",
        "availability",
        "register_wh",
        "status",
    ]
    readonly_fields = ["status"]


class ConfigurationKeyInline(admin.TabularInline):
    model = ConfigurationKey
    extra = 0
    fields = ["key", "value", "readonly"]


class EvseStatusFilter(admin.SimpleListFilter):
    title = "EVSE status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        statuses = [
            "Available",
            "Preparing",
            "Charging",
            "SuspendedEV",
            "SuspendedEVSE",
            "Finishing",
            "Reserved",
            "Unavailable",
            "Faulted",
        ]
        return [(s, s) for s in statuses]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(evses__status=self.value()).distinct()
        return queryset


@admin.register(Charger)
class ChargerAdmin(admin.ModelAdmin):
    form = ChargerForm
    inlines = [EvseInline, ConfigurationKeyInline]
    list_display = [
        "charge_point_id",
        "location",
        "power_type",
        "max_power_kw",
        "evse_count",
        "vendor",
        "model",
        "security_profile",
        "auto_connect",
        "enabled",
    ]
    list_filter = [
        "location",
        "power_type",
        EvseStatusFilter,
        "auto_connect",
        "enabled",
        "security_profile",
    ]
    list_select_related = ["location"]
    search_fields = ["charge_point_id", "vendor", "model", "serial_number"]
    list_per_page = 100
    autocomplete_fields = ["location"]
    fieldsets = [
        (None, {"fields": ["charge_point_id", "location", "enabled", "auto_connect"]}),
        (
            "Hardware",
            {
                "fields": [
                    "vendor",
                    "model",
                    "serial_number",
                    "firmware_version",
                    "power_type",
                    "max_power_kw",
                    "phases",
                    "nominal_voltage",
                ]
            },
        ),
        (
            "Central system",
            {
                "fields": [
                    "csms_url",
                    "security_profile",
                    "authorization_key",
                    "clear_authorization_key",
                    "ca_bundle_path",
                    "client_cert_path",
                    "client_key_path",
                ]
            },
        ),
        (
            "Simulation",
            {"fields": ["default_vehicle", "simulate_ev_on_remote_start", "reject_triggered_boot"]},
        ),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_evse_count=Count("evses"))

    @admin.display(description="EVSEs", ordering="_evse_count")
    def evse_count(self, obj: Charger) -> int:
        return obj._evse_count


@admin.register(Evse)
class EvseAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "connector_type",
        "max_power_kw",
        "availability",
        "status",
        "register_wh",
    ]
    list_filter = ["connector_type", "availability", "status", "charger__location"]
    list_select_related = ["charger"]
    search_fields = ["charger__charge_point_id"]


@admin.register(ConfigurationKey)
class ConfigurationKeyAdmin(admin.ModelAdmin):
    list_display = ["charger", "key", "value", "readonly"]
    list_filter = ["key", "readonly"]
    list_select_related = ["charger"]
    search_fields = ["charger__charge_point_id", "key"]
