from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Count
from django.template.response import TemplateResponse

from chargers.fleet import copy_charger
from chargers.fleet_generator import FleetGeneratorForm, suggest_first_id
from chargers.forms import ChargerForm
from chargers.models import Charger, ConfigurationKey, Evse
from chargers.resources import ChargerResource
from fleet_io.import_admin import FleetImportExportAdmin
from simulator import contract


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
        return [(s, s) for s in contract.CONNECTOR_STATUSES]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(evses__status=self.value()).distinct()
        return queryset


@admin.register(Charger)
class ChargerAdmin(FleetImportExportAdmin):
    form = ChargerForm
    resource_classes = [ChargerResource]
    import_job_resource = "chargers"
    actions = ["generate_fleet"]
    inlines = [EvseInline, ConfigurationKeyInline]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        form.instance.sync_number_of_connectors()

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
        return obj._evse_count  # type: ignore[attr-defined]  # annotated by get_queryset

    @admin.action(description="Create a fleet like the selected charger")
    def generate_fleet(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(
                request, "Select exactly one charger to copy.", level=messages.WARNING
            )
            return None
        template = queryset.get()
        data = request.POST if "generate" in request.POST else None
        form = FleetGeneratorForm(
            data,
            initial={"first_id": suggest_first_id(template), "location": template.location_id},
        )
        if form.is_valid():
            ids = form.cleaned_data["charge_point_ids"]
            copy_charger(template, ids, form.cleaned_data["location"].pk)
            self.message_user(
                request,
                f"Created {len(ids)} chargers {ids[0]}..{ids[-1]} like {template} at "
                f"{form.cleaned_data['location']}.",
                level=messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Create a fleet like {template}",
            "opts": self.model._meta,
            "form": form,
            "template_charger": template,
            "evse_count": template.evses.count(),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/chargers/charger/generate_fleet.html", context)


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
