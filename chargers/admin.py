from __future__ import annotations

from collections import Counter
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import actions as admin_actions
from django.contrib.admin import helpers
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.admin.utils import model_ngettext, unquote
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy

from chargers.deadlocks import retrying_races
from chargers.default_csms import default_csms_url
from chargers.evse_layout import numbering_problem
from chargers.fleet import copy_charger, default_evses
from chargers.fleet_generator import FleetGeneratorForm, suggest_first_id
from chargers.forms import FAULT_INJECTION_FIELDS, ChargerForm, KeepsLaterWrites
from chargers.models import Charger, ChargerQuerySet, ConfigurationKey, Evse, Transaction
from chargers.resources import ChargerResource
from fleet_io.admin_deletes import CountedDeletes
from fleet_io.fleet_changes import DELETED, DISABLED, Applied, describe, notify_fleet_change
from fleet_io.import_admin import FleetImportExportAdmin
from simulator import contract
from simulator.contract import config_keys


def register_text(register_wh: float) -> str:
    """The meter register as a person reads it: kWh to the Wh (the engine keeps fractions
    of a Wh, which say nothing on a page)."""
    return f"{register_wh / 1000:,.3f} kWh"


class LossFound(Exception):
    """A charger delete, not forced, found in its own transaction what it would lose (a
    transaction message written after its page checked: one that made a first attempt
    lose its race with the worker, say). Raised to roll it back; the view says it."""


def refuse_losses(chargers: ChargerQuerySet, forced: bool) -> None:
    """Raise `LossFound` unless `forced` if deleting `chargers` (a queryset) now would lose
    a transaction message, as `ChargerQuerySet.deletion_losses` says."""
    losses = [] if forced else chargers.deletion_losses()
    if losses:
        raise LossFound(" ".join(losses))


def recent_csms_url(user: Any) -> str:
    """The CSMS URL of the last charger this user added in the admin that still has one, or
    the built-in CSMS's: what a new charger most likely connects to."""
    added = (
        LogEntry.objects.filter(
            user_id=user.pk,
            content_type=ContentType.objects.get_for_model(Charger),
            action_flag=ADDITION,
        )
        .order_by("-action_time")
        .values_list("object_id", flat=True)[:50]
    )
    ids = [int(pk) for pk in added if pk.isdigit()]
    urls = dict(
        Charger.objects.filter(pk__in=ids).exclude(csms_url="").values_list("pk", "csms_url")
    )
    for pk in ids:
        if pk in urls:
            return urls[pk]
    return default_csms_url()


def deletion_problem(evses: list[Evse]) -> str | None:
    """Why these EVSEs may not be deleted (a transaction in progress on one, a charger
    left with a gap in its connectors 1..N, or with no EVSE), or None."""
    gone: dict[Charger, set[int]] = {}
    for evse in evses:
        gone.setdefault(evse.charger, set()).add(evse.connector_id)
    # Two reads for the whole selection, not two per EVSE: "select all 10,000" took some
    # 20,000 queries and 17 s before it was refused.
    pks = [charger.pk for charger in gone]
    open_on = set(
        Transaction.objects.filter(charger_id__in=pks, state=Transaction.State.OPEN).values_list(
            "charger_id", "connector_id"
        )
    )
    stored_ids: dict[int, list[int]] = {}
    for charger_id, connector_id in Evse.objects.filter(charger_id__in=pks).values_list(
        "charger_id", "connector_id"
    ):
        stored_ids.setdefault(charger_id, []).append(connector_id)
    problems = [
        evse.deletion_refused()
        for evse in evses
        if (evse.charger_id, evse.connector_id) in open_on  # says which transaction
    ]
    for charger, ids in gone.items():
        stored = stored_ids.get(charger.pk, [])
        after = [n for n in stored if n not in ids]
        problems.append(numbering_problem(charger.charge_point_id, stored, after))
    return " ".join(p for p in problems if p) or None


def say_overtaken(request: HttpRequest, forms_saved: list[forms.BaseForm]) -> None:
    """Tell the user which of their edits replaced a value changed since the page was
    loaded (a CSMS's ChangeConfiguration, say): saved, not silently."""
    for saved in forms_saved:
        if isinstance(saved, KeepsLaterWrites) and not saved.cleaned_data.get("DELETE"):
            for overtaken in saved.overtaken:
                messages.warning(request, str(overtaken))


class EvseForm(forms.ModelForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance._state.adding:
            # "Add another EVSE" (and a page without JavaScript): left blank, the next
            # number (`EvseFormSet.clean`), as the API numbers a new EVSE N+1 itself.
            field = self.fields["connector_id"]
            field.required = False
            field.widget.attrs["placeholder"] = "next"

    def has_changed(self) -> bool:
        # A new charger's pre-filled connector row is saved as shown, typed over or not
        # (an untouched extra row is otherwise dropped, leaving a charger without EVSEs).
        return super().has_changed() or (
            self.instance._state.adding and "connector_id" in self.initial
        )


class NamedRepeats(BaseInlineFormSet):
    """An inline whose rows must differ in `repeat_field`: Django's "Please correct the
    duplicate data for <field>." named neither the value nor what to do."""

    repeat_field = ""
    row_error = ""  # beside the row that repeats a value (the page's message names it)

    def repeated(self, value: Any, rows: int) -> str:
        raise NotImplementedError

    def validate_unique(self) -> None:
        # The rows Django compares, read first: it takes the value out of a repeat's data.
        kept = [
            form.cleaned_data[self.repeat_field]
            for form in self.forms
            if form.is_valid() and form not in self.deleted_forms
            if form.cleaned_data.get(self.repeat_field)
        ]
        try:
            super().validate_unique()
        except forms.ValidationError:
            twice = [(value, rows) for value, rows in Counter(kept).items() if rows > 1]
            if not twice:
                raise
            raise forms.ValidationError(
                [self.repeated(value, rows) for value, rows in twice]
            ) from None

    def get_form_error(self) -> str:
        return self.row_error


class EvseFormSet(NamedRepeats):
    repeat_field = "connector_id"
    row_error = "This connector id is on another row too."

    def repeated(self, value: Any, rows: int) -> str:
        return (
            f"Connector {value} is on {rows} rows: each connector id once (connectors 1, 2, ...)."
        )

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return  # each row's own problems first (a connector id given twice, say)
        charger = self.instance
        stored = dict(Evse.objects.filter(charger_id=charger.pk).values_list("pk", "connector_id"))
        after = dict(stored)
        new = []
        for form in self.forms:
            deleted = self.can_delete and form.cleaned_data.get("DELETE", False)
            if form.instance.pk in stored:
                if deleted:
                    del after[form.instance.pk]
                else:
                    after[form.instance.pk] = form.cleaned_data["connector_id"]
            elif form.has_changed() and not deleted:  # as the formset saves new rows
                new.append(form)
        given = [f.cleaned_data["connector_id"] for f in new if f.cleaned_data["connector_id"]]
        last = max([*after.values(), *given], default=0)
        for form in new:
            if form.cleaned_data["connector_id"] is None:  # left blank: the next number
                last += 1
                form.cleaned_data["connector_id"] = form.instance.connector_id = last
        added = [form.cleaned_data["connector_id"] for form in new]
        name = charger.charge_point_id or "this charger"
        problem = numbering_problem(name, stored.values(), [*after.values(), *added])
        if problem:
            raise forms.ValidationError(problem)
        # A connector with a session in progress stays, as the EVSE admin keeps it.
        removed = [
            form.instance
            for form in self.forms
            if form.instance.pk in stored and form.instance.pk not in after
        ]
        refused = [why for evse in removed if (why := evse.deletion_refused())]
        if refused:
            raise forms.ValidationError(refused)

    def delete_existing(self, obj, commit=True):
        if not commit:
            return

        def delete() -> None:
            # Not `obj.delete()`: it sets `obj.pk` to None, and a second attempt would
            # have nothing to delete.
            Evse.objects.filter(pk=obj.pk).delete()

        retrying_races(delete)  # its worker may be storing the car plugged into it

    def save_existing(self, form, obj, commit=True):
        # Only the columns a person edits: the register, status and availability in the
        # row were read with the page and may be behind the engine by now.
        instance = form.save(commit=False)
        if commit:
            instance.save(update_fields=Evse.WEB_FIELDS)
        return instance


class EvseInline(admin.TabularInline):
    model = Evse
    form = EvseForm
    formset = EvseFormSet
    extra = 0
    min_num = 1
    fields = [
        "connector_id",
        "connector_type",
        "max_power_kw",
        "availability",
        "register",
        "status",
    ]
    # Engine-owned: the simulated charger changes them (a CSMS's ChangeAvailability, the
    # meter, the status table); a form never posts them back.
    readonly_fields = ["availability", "register", "status"]

    @admin.display(description="meter register")
    def register(self, obj: Evse) -> str:
        return register_text(obj.register_wh) if obj.pk else "–"

    @staticmethod
    def first_row(charger: Charger) -> dict[str, Any]:
        """Connector 1 as the import makes it for a charger that names no EVSEs."""
        spec = default_evses(charger)[0]
        return {
            "connector_id": 1,
            "connector_type": spec.connector_type,
            "max_power_kw": spec.max_power_kw,
        }


class ConfigurationKeyForm(KeepsLaterWrites):
    # A CSMS's ChangeConfiguration writes the value (`KeepsLaterWrites`).
    LATER_WRITES = ("value",)
    # Keys the charger sets from its other fields: an edit here was saved as "no change
    # for the running charger" and quietly put back, where the API refuses it (422).
    FOLLOWS = {
        "NumberOfConnectors": "NumberOfConnectors follows the number of EVSEs: add or "
        "remove EVSEs above instead.",
        "SecurityProfile": "SecurityProfile follows the charger's security profile: "
        "change that field above instead.",
    }

    class Meta:
        model = ConfigurationKey
        fields = ["key", "value", "readonly"]

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        key = self.cleaned_data.get("key")
        stored = self.initial.get("key") if self.instance.pk else None
        if stored and key != stored:  # renamed: the stored key goes
            refused = ConfigurationKey.deletion_refused(stored, INSTEAD, done="renamed")
            if refused:
                self.add_error("key", refused)
        if key in self.FOLLOWS and (self.instance.pk is None or self.has_changed()):
            raise forms.ValidationError(self.FOLLOWS[key])
        if cleaned is not None:
            self.keep_later_writes(cleaned)
        return cleaned

    def later_write_label(self, name: str) -> str:
        return self.instance.key if name == "value" else super().later_write_label(name)


# What to do rather than delete a standard key, in the admin's words.
INSTEAD = "change its value instead"


class ConfigurationKeyFormSet(NamedRepeats):
    repeat_field = "key"
    row_error = "This key is on another row too."

    def clean(self) -> None:
        super().clean()
        refused = [
            ConfigurationKey.deletion_refused(form.initial["key"], INSTEAD)
            for form in self.forms
            if form.instance.pk and self.can_delete and form.cleaned_data.get("DELETE", False)
        ]
        if any(refused):
            raise forms.ValidationError([message for message in refused if message])
        self._refuse_case_twins()

    def repeated(self, value: Any, rows: int) -> str:
        # On a page of some forty keys.
        return f"The key {value} is on {rows} rows: a charger has each key once, so keep one."

    def _refuse_case_twins(self) -> None:
        """Two rows of this page whose keys differ only in case, one of them new or
        renamed (the model's check sees only stored rows: two new ones pass it)."""
        kept = [
            form
            for form in self.forms
            if form.has_changed() or form.instance.pk
            if not (self.can_delete and form.cleaned_data.get("DELETE", False))
            if form.cleaned_data.get("key")
        ]
        keys = [form.cleaned_data["key"] for form in kept]
        for n, form in enumerate(kept):
            if form.instance.pk and "key" not in form.changed_data:
                continue  # stored as it is: an older pair is let be
            if "key" in form.errors:
                continue  # said already (by the model's check against stored rows)
            twin = config_keys.custom_twin_problem(keys[n], keys[:n] + keys[n + 1 :])
            if twin is not None:
                form.add_error("key", twin)

    def save_new(self, form, commit=True):
        # On the add page the standard keys' defaults are created with the charger row,
        # after this row was checked (no charger to check it against then): a standard key
        # given here updates its default, the value given winning as in the API's
        # `configuration`, where a second row for the key was an IntegrityError (HTTP 500).
        row = super().save_new(form, commit=False)
        default = (
            ConfigurationKey.objects.filter(charger_id=row.charger_id, key=row.key)
            .values_list("pk", flat=True)
            .first()
        )
        if default is not None:
            row.pk = default
            row._state.adding = False
        if commit:
            row.save()
        return row


class ConfigurationKeyInline(admin.TabularInline):
    model = ConfigurationKey
    form = ConfigurationKeyForm
    formset = ConfigurationKeyFormSet
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
class ChargerAdmin(CountedDeletes, FleetImportExportAdmin):
    form = ChargerForm
    resource_classes = [ChargerResource]
    import_job_resource = "chargers"
    actions = ["generate_fleet", "enable", "disable", "reset_registers", "delete_selected"]
    inlines = [EvseInline, ConfigurationKeyInline]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or settings.CHARGESIM_SHARDS == 1:
            return fieldsets
        # Several workers: a rename may move the charger to another (`ChargerForm`).
        (name, first), *rest = fieldsets
        fields = list(first["fields"])
        fields.insert(fields.index("charge_point_id") + 1, "move_anyway")
        return [(name, {**first, "fields": fields}), *rest]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("csms_url", recent_csms_url(request.user))
        return initial

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, EvseInline) and obj is not None and obj._state.adding:
            kwargs["initial"] = [inline.first_row(obj)]
        return kwargs

    def save_model(self, request, obj, form, change):
        # The id the charger had: a new one may belong to another shard's worker.
        obj._stored_charge_point_id = (  # read by save_related
            Charger.objects.filter(pk=obj.pk).values_list("charge_point_id", flat=True).first()
            if change
            else None
        )
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        say_overtaken(request, [form, *(f for formset in formsets for f in formset.forms)])
        charger = form.instance
        if not change and not charger.evses.exists():
            # A form posted without EVSE rows (a script, say): one default connector, as
            # the import gives a charger that names none; the engine needs one to run.
            spec = default_evses(charger)[0]
            Evse.objects.create(
                charger=charger,
                connector_id=1,
                connector_type=spec.connector_type,
                max_power_kw=spec.max_power_kw,
            )
        charger.sync_number_of_connectors()
        ids = {charger.charge_point_id, getattr(charger, "_stored_charge_point_id", None)}
        notify_fleet_change(
            [(charger.pk, cp_id) for cp_id in ids if cp_id], report=self._reporter(request)
        )

    def delete_view(self, request, object_id, extra_context=None):
        # A charger whose deletion would lose a transaction message is deleted only from a
        # confirmation page that said so (its form sends `force`): one confirmed on a page
        # that did not (a session began since) is shown the page again, saying it.
        charger = self.get_object(request, unquote(object_id))
        losses = [] if charger is None else Charger.objects.filter(pk=charger.pk).deletion_losses()
        if losses and request.method == "POST" and request.POST.get("force") != "yes":
            self.message_user(request, " ".join(losses), level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        context = {**(extra_context or {}), "deletion_losses": losses}
        try:
            return super().delete_view(request, object_id, context)
        except LossFound as found:  # since the check above; nothing was deleted
            self.message_user(request, str(found), level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    @admin.action(
        permissions=["delete"], description=gettext_lazy("Delete selected %(verbose_name_plural)s")
    )
    def delete_selected(self, request, queryset):
        """Django's delete action; chargers whose deletion would lose a transaction message
        only from a confirmation page that said so, as `delete_view`."""
        losses = queryset.deletion_losses()
        if losses and request.POST.get("post") and request.POST.get("force") != "yes":
            self.message_user(request, " ".join(losses), level=messages.ERROR)
            return None
        try:
            # Atomic: the action logs the deletions before it deletes.
            with transaction.atomic():
                response = admin_actions.delete_selected(self, request, queryset)
        except LossFound as found:  # since the check above; nothing was deleted
            self.message_user(request, str(found), level=messages.ERROR)
            return None
        if isinstance(response, TemplateResponse) and response.context_data is not None:
            response.context_data["deletion_losses"] = losses  # the confirmation page
        return response

    def delete_model(self, request, obj):
        forced = request.POST.get("force") == "yes"

        def delete() -> None:
            refuse_losses(Charger.objects.filter(pk=obj.pk), forced)
            notify_fleet_change(
                [(obj.pk, obj.charge_point_id)], report=self._reporter(request), change=DELETED
            )
            # Not `obj.delete()` (the base's): it sets `obj.pk` to None, and a second
            # attempt would have nothing to delete.
            Charger.objects.filter(pk=obj.pk).delete()

        retrying_races(delete)  # a running charger's worker may be writing its rows

    def delete_queryset(self, request, queryset):
        forced = request.POST.get("force") == "yes"

        def delete() -> None:
            refuse_losses(queryset, forced)
            notify_fleet_change(
                queryset.values_list("pk", "charge_point_id"),
                report=self._reporter(request),
                change=DELETED,
            )
            super(ChargerAdmin, self).delete_queryset(request, queryset)

        retrying_races(delete)

    def _reporter(self, request: HttpRequest):
        """Show, after commit, what the workers did with the change (or that none runs)."""

        def report(applied: Applied) -> None:
            # Past ten chargers, a line per outcome: deleting the 3,000 chargers of an
            # import said "QA-0001 stopped: deleted." 3,000 times above the list.
            for reached, text in describe(applied, named_up_to=10):
                self.message_user(
                    request, text, level=messages.INFO if reached else messages.WARNING
                )

        return report

    def _update_and_notify(self, request, queryset, **values) -> int:
        with transaction.atomic():
            rows = list(queryset.values_list("pk", "charge_point_id"))
            # `updated` too: a worker compares it with the version it applied, and one
            # that had applied a later version of a row (by its reconciliation) took this
            # message for that version and left the charger running.
            count = Charger.objects.filter(pk__in=[pk for pk, _ in rows]).update(
                **values, updated=timezone.now()
            )
            change = DISABLED if values.get("enabled") is False else ""
            notify_fleet_change(rows, report=self._reporter(request), change=change)
        return count

    @admin.action(description="Enable the selected chargers (they start)")
    def enable(self, request, queryset):
        count = self._update_and_notify(request, queryset, enabled=True)
        self.message_user(
            request, f"Enabled {count} {model_ngettext(self.opts, count)}.", level=messages.SUCCESS
        )

    @admin.action(description="Disable the selected chargers (they go offline)")
    def disable(self, request, queryset):
        count = self._update_and_notify(request, queryset, enabled=False)
        self.message_user(
            request, f"Disabled {count} {model_ngettext(self.opts, count)}.", level=messages.SUCCESS
        )

    @admin.action(description="Reset the meter registers of the selected idle chargers to 0")
    def reset_registers(self, request, queryset):
        """The register is the engine's; resetting it is an explicit act, and only while no
        session is open (an open transaction's meterStart and MeterValues count on it)."""
        with transaction.atomic():
            rows = list(queryset.values_list("pk", "charge_point_id"))
            busy = set(
                Transaction.objects.filter(
                    charger_id__in=[pk for pk, _ in rows], state=Transaction.State.OPEN
                ).values_list("charger__charge_point_id", flat=True)
            )
            idle = [(pk, cp_id) for pk, cp_id in rows if cp_id not in busy]
            Evse.objects.filter(charger_id__in=[pk for pk, _ in idle]).update(register_wh=0)
            Charger.objects.mark_changed([pk for pk, _ in idle])
            notify_fleet_change(idle, report=self._reporter(request))
        if busy:
            self.message_user(
                request,
                f"Not reset (a session is open): {', '.join(sorted(busy))}.",
                level=messages.WARNING,
            )
        if idle:
            self.message_user(
                request,
                f"Reset the registers of {len(idle)} {model_ngettext(self.opts, len(idle))}.",
                level=messages.SUCCESS,
            )

    # Chosen to fit 1,400 px beside the admin's two sidebars (issue 19): short headers,
    # model over vendor, type and power in one cell, the security profile as its number
    # (its name in a tooltip); auto-connect stays a filter. chargers/admin.css keeps ids,
    # numbers and names on their lines.
    list_display = [
        "charge_point",
        "location",
        "hardware",
        "power",
        "evse_count",
        "security",
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
        (
            # Issue 17. Feature profiles and ReserveConnectorZeroSupported are read-only
            # OCPP configuration keys: set them in the configuration below.
            "Firmware and diagnostics",
            {"fields": ["firmware_failure", "diagnostics_upload_method"]},
        ),
        ("Power sharing", {"fields": ["power_sharing"]}),  # issue 18
        (
            # Issue 16: what a CSMS test needs of a misbehaving charger, kept with it.
            "Fault injection",
            {"fields": tuple(FAULT_INJECTION_FIELDS)},
        ),
    ]

    class Media:
        css = {"all": ["chargers/admin.css"]}
        js = ["chargers/evse_inline.js"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_evse_count=Count("evses"))

    @admin.display(description="charge point", ordering="charge_point_id")
    def charge_point(self, obj: Charger) -> str:
        return obj.charge_point_id

    @admin.display(description="model", ordering="model")
    def hardware(self, obj: Charger) -> str:
        # Two short lines (each at most 20 characters), never a narrow column of letters.
        return format_html('{}<br><span class="vendor">{}</span>', obj.model, obj.vendor)

    @admin.display(description="power", ordering="max_power_kw")
    def power(self, obj: Charger) -> str:
        return f"{obj.power_type} {obj.max_power_kw:g} kW"

    @admin.display(description="security", ordering="security_profile")
    def security(self, obj: Charger) -> str:
        label = Charger.SecurityProfile(obj.security_profile).label
        return format_html('<span title="{}">{}</span>', label, obj.security_profile)

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
            with transaction.atomic():
                copy_charger(template, ids, form.cleaned_data["location"].pk)
                notify_fleet_change(report=self._reporter(request))  # joins copy's batch
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


class EvseAdminForm(forms.ModelForm):
    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        # (Read-only on a change: the stored one.)
        charger = self.cleaned_data.get("charger") or (
            self.instance.charger if self.instance.charger_id else None
        )
        connector = self.cleaned_data.get("connector_id")
        if charger is not None and connector is not None:
            stored = Evse.objects.connector_ids(charger.pk)
            old = self.initial.get("connector_id") if self.instance.pk else None
            after = [n for n in stored if n != old] + [connector]
            problem = numbering_problem(charger.charge_point_id, stored, after)
            if problem:
                self.add_error("connector_id", problem)
        return cleaned


@admin.register(Evse)
class EvseAdmin(CountedDeletes):
    form = EvseAdminForm
    actions = ["delete_selected"]
    list_display = [
        "__str__",
        "connector_type",
        "max_power_kw",
        "availability",
        "status",
        "register",
    ]
    list_filter = ["connector_type", "availability", "status", "charger__location"]
    list_select_related = ["charger"]
    search_fields = ["charger__charge_point_id"]
    readonly_fields = ["availability", "register", "status"]
    exclude = ["register_wh"]  # the engine's; shown rounded as `register`

    @admin.display(description="meter register", ordering="register_wh")
    def register(self, obj: Evse) -> str:
        return register_text(obj.register_wh)

    def get_readonly_fields(self, request, obj=None):
        # Moved to another charger, an EVSE would renumber two chargers' connectors.
        fields = list(super().get_readonly_fields(request, obj))
        return fields if obj is None else ["charger", *fields]

    def delete_view(self, request, object_id, extra_context=None):
        evse = self.get_object(request, unquote(object_id))
        if evse is not None and (problem := deletion_problem([evse])):
            self.message_user(request, problem, level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:chargers_evse_change", args=[evse.pk]))
        return super().delete_view(request, object_id, extra_context)

    @admin.action(
        permissions=["delete"], description=gettext_lazy("Delete selected %(verbose_name_plural)s")
    )
    def delete_selected(self, request, queryset):
        """Django's delete action, refused as `deletion_problem` says."""
        problem = deletion_problem(list(queryset.select_related("charger")))
        if problem:
            self.message_user(request, problem, level=messages.ERROR)
            return None
        return admin_actions.delete_selected(self, request, queryset)

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=Evse.WEB_FIELDS)
        else:
            super().save_model(request, obj, form, change)
        obj.charger.sync_number_of_connectors()
        Charger.objects.mark_changed([obj.charger_id])
        notify_fleet_change([(obj.charger_id, obj.charger.charge_point_id)])

    def delete_model(self, request, obj):
        def delete() -> None:
            # Through a queryset: `obj.delete()` sets `obj.pk` to None, and a second
            # attempt would delete nothing.
            Evse.objects.filter(pk=obj.pk).delete()
            obj.charger.sync_number_of_connectors()
            Charger.objects.mark_changed([obj.charger_id])
            notify_fleet_change([(obj.charger_id, obj.charger.charge_point_id)])

        retrying_races(delete)  # its worker may be storing the car plugged into it

    def delete_queryset(self, request, queryset):
        def delete() -> None:
            chargers = list(Charger.objects.filter(evses__in=queryset).distinct())
            super(EvseAdmin, self).delete_queryset(request, queryset)
            for charger in chargers:
                charger.sync_number_of_connectors()
            Charger.objects.mark_changed(c.pk for c in chargers)
            notify_fleet_change((c.pk, c.charge_point_id) for c in chargers)

        retrying_races(delete)


@admin.register(ConfigurationKey)
class ConfigurationKeyAdmin(CountedDeletes):
    form = ConfigurationKeyForm
    # The form is the charger page's inline one, which gets its charger from the page: here
    # the add page asks for it (without, saving was an IntegrityError), and a stored key
    # stays the charger's (`get_readonly_fields`).
    fields = ["charger", "key", "value", "readonly"]
    autocomplete_fields = ["charger"]
    actions = ["delete_selected"]
    list_display = ["charger", "key", "value", "readonly"]
    list_filter = ["key", "readonly"]
    list_select_related = ["charger"]
    search_fields = ["charger__charge_point_id", "key"]

    def get_readonly_fields(self, request, obj=None):
        return ["charger"] if obj is not None else []

    def delete_view(self, request, object_id, extra_context=None):
        row = self.get_object(request, unquote(object_id))
        if row is not None and (refused := ConfigurationKey.deletion_refused(row.key, INSTEAD)):
            self.message_user(request, refused, level=messages.ERROR)
            url = reverse("admin:chargers_configurationkey_change", args=[row.pk])
            return HttpResponseRedirect(url)
        return super().delete_view(request, object_id, extra_context)

    @admin.action(
        permissions=["delete"], description=gettext_lazy("Delete selected %(verbose_name_plural)s")
    )
    def delete_selected(self, request, queryset):
        """Django's delete action, refused for a standard key."""
        keys = sorted(set(queryset.values_list("key", flat=True)))
        refused = [ConfigurationKey.deletion_refused(key, INSTEAD) for key in keys]
        if any(refused):
            self.message_user(request, " ".join(m for m in refused if m), level=messages.ERROR)
            return None
        return admin_actions.delete_selected(self, request, queryset)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        say_overtaken(request, [form])
        Charger.objects.mark_changed([obj.charger_id])
        notify_fleet_change([(obj.charger_id, obj.charger.charge_point_id)])

    def delete_model(self, request, obj):
        with transaction.atomic():
            super().delete_model(request, obj)
            Charger.objects.mark_changed([obj.charger_id])
            notify_fleet_change([(obj.charger_id, obj.charger.charge_point_id)])

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            rows = set(queryset.values_list("charger_id", "charger__charge_point_id"))
            super().delete_queryset(request, queryset)
            Charger.objects.mark_changed(pk for pk, _ in rows)
            notify_fleet_change(rows)
