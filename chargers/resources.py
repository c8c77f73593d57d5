"""Chargers in CSV, JSON or XLSX: one row per charge point, keyed on its charge point id.

A row names its location by name, its default vehicle by make and model, describes its
EVSEs in one cell (`chargers.evse_layout`) and its OCPP configuration overrides in
another (`chargers.configuration_overrides`). The AuthorizationKey may be imported (an
empty cell keeps the stored one) and is never exported. Rows are written in bulk, with
the same validation as one at a time (see `chargers.fleet`). A row that changes nothing
(its EVSEs and configuration keys included) is not written, and its running charger is not
told (`ChargerResource.unchanged`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from import_export.fields import Field
from import_export.widgets import Widget

from chargers.configuration_overrides import (
    OverrideError,
    check_against_stored,
    custom_keys,
    format_overrides,
    overrides_of,
    parse_overrides,
)
from chargers.default_csms import default_csms_url
from chargers.evse_layout import (
    EvseSpec,
    LayoutError,
    format_evses,
    parse_evses,
    power_type_problems,
    removal_problems,
    specs_of,
)
from chargers.fleet import ChargerPlan, create_chargers, update_chargers
from chargers.forms import without_missing_key
from chargers.models import Charger, ConfigurationKey, Evse
from chargers.validators import validate_authorization_key, validate_csms_url
from fleet_io.cells import BooleanCell, ChoiceCell, LookupCell, NumberCell, SecretCell, TextCell
from fleet_io.resource import FleetResource
from locations.models import Location
from vehicles.models import VehicleModel

COLUMNS = (
    "charge_point_id",
    "location",
    "power_type",
    "max_power_kw",
    "evses",
    "phases",
    "nominal_voltage",
    "vendor",
    "model",
    "serial_number",
    "firmware_version",
    "csms_url",
    "security_profile",
    "authorization_key",
    "ca_bundle_path",
    "client_cert_path",
    "client_key_path",
    "auto_connect",
    "enabled",
    "default_vehicle_make",
    "default_vehicle_model",
    "simulate_ev_on_remote_start",
    "reject_triggered_boot",
    "firmware_failure",
    "diagnostics_upload_method",
    "power_sharing",
    "configuration",
)

# The model fields a re-import may change (charge_point_id is the key).
UPDATE_FIELDS = [
    f.attname
    for f in Charger._meta.concrete_fields
    if f.editable and f.name not in ("id", "charge_point_id", "created", "updated")
]


def _default(name: str) -> Any:
    field = Charger._meta.get_field(name)
    assert isinstance(field, models.Field)  # a column of the charger, not a relation
    return field.default


class EvseCell(Widget):
    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Any:
        if value in (None, "") or (isinstance(value, str) and not value.strip()):
            return None
        # A LayoutError (a ValueError) is the resource's to report (`import_field`).
        return parse_evses(str(value))

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return format_evses(value) if value else ""


class AuthorizationKeyCell(SecretCell):
    """A new AuthorizationKey, checked as the admin's form and the API check it (an empty
    cell keeps the stored key, unchecked)."""

    def clean(  # type: ignore[override]  # as SecretCell's: None keeps the stored key
        self, value: Any, row: Any = None, **kwargs: Any
    ) -> str | None:
        key = super().clean(value, row, **kwargs)
        if key is not None:
            try:
                validate_authorization_key(key)
            except ValidationError as exc:
                raise ValueError(" ".join(exc.messages)) from None
        return key


class OverridesCell(Widget):
    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> dict[str, str]:
        if value in (None, ""):
            return {}
        try:
            return parse_overrides(str(value))
        except OverrideError as exc:
            raise ValueError(str(exc)) from None

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return format_overrides(value) if value else ""


class VehicleCell(LookupCell):
    """The default vehicle: make in its own column, model in this one."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Any:
        make = str((row or {}).get("default_vehicle_make") or "").strip()
        model = "" if value in (None, "") else str(value).strip()
        if not make and not model:
            return None
        if not (make and model):
            raise ValueError(
                "Give both default_vehicle_make and default_vehicle_model, or neither."
            )
        return super().clean(f"{make} {model}", row, **kwargs)


def _locations() -> dict[str, Location]:
    return {location.name: location for location in Location.objects.all()}


def _vehicles() -> dict[str, VehicleModel]:
    return {f"{v.make} {v.model}": v for v in VehicleModel.objects.all()}


def _field(name: str, widget: Widget, **kwargs: Any) -> Field:
    return Field(attribute=name, column_name=name, widget=widget, **kwargs)


class ChargerResource(FleetResource):
    charge_point_id = _field("charge_point_id", TextCell())
    location = _field("location", LookupCell(_locations, "location"))
    power_type = _field("power_type", ChoiceCell(Charger.PowerType), default=_default("power_type"))
    max_power_kw = _field("max_power_kw", NumberCell("kW"), default=_default("max_power_kw"))
    evses = Field(attribute="evse_layout", column_name="evses", widget=EvseCell())
    phases = _field("phases", NumberCell(integer=True))
    nominal_voltage = _field(
        "nominal_voltage", NumberCell("V"), default=_default("nominal_voltage")
    )
    vendor = _field("vendor", TextCell(), default=_default("vendor"))
    model = _field("model", TextCell())
    serial_number = _field("serial_number", TextCell())
    firmware_version = _field("firmware_version", TextCell(), default=_default("firmware_version"))
    csms_url = _field("csms_url", TextCell())
    security_profile = _field(
        "security_profile",
        ChoiceCell(Charger.SecurityProfile),
        default=_default("security_profile"),
    )
    authorization_key = _field("authorization_key", AuthorizationKeyCell(), saves_null_values=False)
    ca_bundle_path = _field("ca_bundle_path", TextCell())
    client_cert_path = _field("client_cert_path", TextCell())
    client_key_path = _field("client_key_path", TextCell())
    auto_connect = _field("auto_connect", BooleanCell(), default=_default("auto_connect"))
    enabled = _field("enabled", BooleanCell(), default=_default("enabled"))
    # Read by VehicleCell from the row; only exported through dehydrate_default_vehicle_make.
    default_vehicle_make = Field(column_name="default_vehicle_make", widget=TextCell())
    default_vehicle_model = Field(
        attribute="default_vehicle",
        column_name="default_vehicle_model",
        widget=VehicleCell(_vehicles, "vehicle model"),
    )
    simulate_ev_on_remote_start = _field(
        "simulate_ev_on_remote_start",
        BooleanCell(),
        default=_default("simulate_ev_on_remote_start"),
    )
    reject_triggered_boot = _field(
        "reject_triggered_boot", BooleanCell(), default=_default("reject_triggered_boot")
    )
    firmware_failure = _field(
        "firmware_failure",
        ChoiceCell(Charger.FirmwareFailure),
        default=_default("firmware_failure"),
    )
    diagnostics_upload_method = _field(
        "diagnostics_upload_method",
        ChoiceCell(Charger.UploadMethod),
        default=_default("diagnostics_upload_method"),
    )
    power_sharing = _field(
        "power_sharing", ChoiceCell(Charger.PowerSharing), default=_default("power_sharing")
    )
    configuration = Field(
        attribute="configuration_overrides", column_name="configuration", widget=OverridesCell()
    )

    clean_exclude = ("location", "default_vehicle")

    class Meta:
        model = Charger
        fields = COLUMNS
        import_id_fields = ("charge_point_id",)
        use_bulk = True
        batch_size = 2000
        chunk_size = 1000

    takes_csms_url = True
    # CP-1 and cp-1 would be one charger to a CSMS matching ids regardless of case
    # (`Charger.validate_constraints` refuses one differing from a stored charger's so).
    case_blind_key = True

    def __init__(self, *, csms_url: str | None = None, **kwargs: Any) -> None:
        """`csms_url`: the CSMS of a new charger whose file has no csms_url column (None:
        the simulator's default, `default_csms_url`)."""
        super().__init__(**kwargs)
        for field in self.fields.values():
            if isinstance(field.widget, LookupCell):
                field.widget.reset()  # each import sees the locations as they are now
        if csms_url is not None:
            validate_csms_url(csms_url)
        self.csms_url = csms_url
        self.csms_url_given: dict[str, int] = {}  # URL -> new chargers given it
        # The stored EVSEs of the chargers the file names, and their values of the keys its
        # configuration cells name and of NumberOfConnectors (`loaded`, a chunk at a time:
        # a query per row made an unchanged re-import slower than writing it had been).
        self._stored_evses: dict[int, list[tuple[int, EvseSpec]]] = {}
        self._stored_keys: dict[int, dict[str, str]] = {}
        self._file_keys: set[str] = {"NumberOfConnectors"}
        self._case_twins: dict[str, str] | None = None  # `before_import`
        self._location_column = True  # the file has one (`before_import`)

    def before_import(self, dataset: Any, **kwargs: Any) -> None:
        super().before_import(dataset, **kwargs)
        # The stored ids equal to the file's but for case, read at once: checked per row,
        # one query a row nearly doubled the CPU time of a 4,000-row import.
        keys = (self.row_key(row) for row in dataset.dict)
        self._case_twins = Charger.objects.case_twins(key[0] for key in keys if key is not None)
        self._location_column = "location" in (dataset.headers or ())
        if "configuration" not in (dataset.headers or ()):
            return
        cell = OverridesCell()
        for value in dataset["configuration"]:
            # A bad cell is the row's own problem, said when the row is imported.
            with contextlib.suppress(ValueError):
                self._file_keys.update(cell.clean(value))

    def import_notes(self, *, dry_run: bool) -> list[str]:
        """Which CSMS the new chargers of a file without a csms_url column connect to. The
        command runs in its own process: it cannot see the built-in CSMS of a running
        `runsimulator --demo --csms-port P`, which the admin's import uses (QA: the same
        file gave ws://127.0.0.1:9100/ocpp in the admin and :9000 on the command line)."""
        notes = []
        for url, count in self.csms_url_given.items():
            chargers = f"{count} new charger{'s' if count != 1 else ''}"
            verb = "would connect" if dry_run else "connects" if count == 1 else "connect"
            if self.csms_url is not None:
                source = "--csms-url"
            elif settings.CHARGESIM_DEFAULT_CSMS_URL_GIVEN:
                source = "CHARGESIM_DEFAULT_CSMS_URL"
            else:
                notes.append(
                    f"The file has no csms_url column: {chargers} {verb} to {url}, "
                    "CHARGESIM_DEFAULT_CSMS_URL's default. The built-in CSMS of a "
                    "simulator started with --csms-port P is at ws://127.0.0.1:P/ocpp: "
                    "give the file a csms_url column (and import it again to change these), "
                    "or choose the new chargers' CSMS with --csms-url or the "
                    "CHARGESIM_DEFAULT_CSMS_URL setting."
                )
                continue
            notes.append(f"The file has no csms_url column: {chargers} {verb} to {url} ({source}).")
        return notes

    # -- export -------------------------------------------------------------------------

    def get_export_order(self) -> tuple[str, ...]:
        return tuple(name for name in super().get_export_order() if name != "authorization_key")

    def filter_export(self, queryset: Any, **kwargs: Any) -> Any:
        # Not the configuration: `iter_queryset` reads it as pairs, not as model instances.
        return queryset.select_related("location", "default_vehicle").prefetch_related("evses")

    def iter_queryset(self, queryset: Any) -> Iterator[Any]:
        """The chargers, each with its configuration's (key, value) pairs read for a chunk of
        chargers at once. Prefetched, the ~40 rows a charger has were built as model
        instances: 12.8 of the 20 s an export of 10,000 chargers took (bench/RESULTS.md,
        session 38)."""
        chunk: list[Charger] = []
        for charger in super().iter_queryset(queryset):
            chunk.append(charger)
            if len(chunk) == self.get_chunk_size():
                yield from _with_configuration(chunk)
                chunk = []
        yield from _with_configuration(chunk)

    def dehydrate_location(self, charger: Charger) -> str:
        return charger.location.name

    def dehydrate_evses(self, charger: Charger) -> str:
        return format_evses(specs_of(charger.evses.all()))

    def dehydrate_default_vehicle_make(self, charger: Charger) -> str:
        return charger.default_vehicle.make if charger.default_vehicle else ""

    def dehydrate_default_vehicle_model(self, charger: Charger) -> str:
        return charger.default_vehicle.model if charger.default_vehicle else ""

    def dehydrate_configuration(self, charger: Charger) -> str:
        return format_overrides(overrides_of(charger.exported_configuration))  # type: ignore[attr-defined]  # set by iter_queryset

    # -- import -------------------------------------------------------------------------

    def import_instance(self, instance: Any, row: dict, **kwargs: Any) -> None:
        instance.known_case_twins = self._case_twins
        try:
            super().import_instance(instance, row, **kwargs)
        finally:
            # Also when another cell of the row failed: the row's report then names that
            # cell only, not an empty phases cell as "cannot be null" beside it (QA).
            self._by_power(instance, row)

    @staticmethod
    def _by_power(instance: Any, row: dict) -> None:
        # An empty phases cell, or a new charger's file without the column: by its power
        # (a 3.7 kW wallbox is single-phase), as the admin's form and the API decide it.
        if row.get("phases") in (None, "") and ("phases" in row or instance.pk is None):
            instance.phases = Charger.phases_for(instance.power_type, instance.max_power_kw)
        # So is its model: a DC charger's file without one must not boot "Virtual AC 22".
        if row.get("model") in (None, "") and ("model" in row or instance.pk is None):
            instance.model = Charger.model_for(instance.power_type, instance.max_power_kw)

    def after_init_instance(self, instance: Charger, new: bool, row: Any, **kwargs: Any) -> None:
        if new and "csms_url" not in row:
            # A file without the column, as the API without the field: the simulator's
            # default CSMS (an empty cell says "none", as an empty field does).
            instance.csms_url = self.csms_url or default_csms_url()
            given = self.csms_url_given
            given[instance.csms_url] = given.get(instance.csms_url, 0) + 1
        instance.evse_layout = None  # type: ignore[attr-defined]  # set per import row, not a model field
        instance.evse_problems = None  # type: ignore[attr-defined]  # set per import row, not a model field
        instance.configuration_overrides = {}  # type: ignore[attr-defined]  # set per import row, not a model field

    def import_field(
        self, field: Field, instance: Charger, row: Any, is_m2m: bool = False, **kwargs: Any
    ) -> None:
        try:
            super().import_field(field, instance, row, is_m2m, **kwargs)
        except LayoutError as exc:
            # Each problem of the evses cell said on its own, with the power type check
            # of the connectors it could read (validate_instance), not one joined message.
            instance.evse_problems = exc  # type: ignore[attr-defined]  # set per import row, not a model field

    def validate_instance(
        self, instance: Charger, import_validation_errors: Any = None, validate_unique: bool = True
    ) -> None:
        errors = dict(import_validation_errors or {})
        layout_error: LayoutError | None = instance.evse_problems  # type: ignore[attr-defined]  # set per import row, not a model field
        if layout_error is not None:
            errors["evse_layout"] = [ValidationError(p) for p in layout_error.problems]
            if "power_type" not in errors:
                errors["evse_layout"] += [
                    ValidationError(f"Connector {n}: {why}")
                    for n, connector_type in enumerate(layout_error.connector_types, start=1)
                    if connector_type
                    and (why := Evse.power_type_problem(connector_type, instance.power_type))
                ]
        if instance.location_id is None and "location" not in errors:
            errors["location"] = [
                ValidationError(
                    "A location is required: the name of an existing location."
                    # A file that updates chargers may leave the column out; one that adds
                    # chargers may not. Each new row says so, and why (QA: 3,000 rows of
                    # "A location is required" for a file without the column).
                    if self._location_column
                    else "A location is required for a new charger, and the file has no "
                    "location column: add one, with the name of an existing location."
                )
            ]
        custom = custom_keys(instance.configuration_overrides)  # type: ignore[attr-defined]  # set per import row, not a model field
        if instance.pk and custom and "configuration_overrides" not in errors:
            stored = ConfigurationKey.objects.filter(charger_id=instance.pk).values_list(
                "key", flat=True
            )
            try:
                check_against_stored(custom, stored)
            except OverrideError as exc:
                errors["configuration_overrides"] = [ValidationError(str(exc))]
        if not {"power_type", "evse_layout"} & set(errors):
            layout = instance.evse_layout  # type: ignore[attr-defined]  # set per import row, not a model field
            # Named on the evses cell when the row gives it, else on the power type that
            # no longer fits the stored EVSEs.
            column = "power_type" if layout is None else "evse_layout"
            problems = power_type_problems(instance.power_type, layout, instance.pk)
            if problems:
                errors[column] = [ValidationError(f"Connector {n}: {why}") for n, why in problems]
            elif layout is not None and instance.pk:
                removing = removal_problems(instance.pk, len(layout))
                if removing:
                    errors["evse_layout"] = [ValidationError(why) for why in removing]
        try:
            super().validate_instance(instance, errors, validate_unique)
        except ValidationError as exc:
            left = without_missing_key(exc) if "authorization_key" in errors else exc
            if left is not None:
                raise left from None

    def bulk_create(
        self,
        using_transactions: bool,
        dry_run: bool,
        raise_errors: bool,
        batch_size: int | None = None,
        result: Any = None,
    ) -> None:
        if self.create_instances and (using_transactions or not dry_run):
            try:
                create_chargers([self._plan(c) for c in self.create_instances])
            except Exception as exc:
                self.handle_import_error(result, exc, raise_errors)
            finally:
                self.create_instances.clear()

    def bulk_update(
        self,
        using_transactions: bool,
        dry_run: bool,
        raise_errors: bool,
        batch_size: int | None = None,
        result: Any = None,
    ) -> None:
        if self.update_instances and (using_transactions or not dry_run):
            try:
                update_chargers([self._plan(c) for c in self.update_instances], UPDATE_FIELDS)
            except Exception as exc:
                self.handle_import_error(result, exc, raise_errors)
            finally:
                self.update_instances.clear()

    # -- unchanged rows -----------------------------------------------------------------

    def loaded(self, objects: list[Any]) -> None:
        pks = [charger.pk for charger in objects]
        rows = Evse.objects.filter(charger_id__in=pks).values_list(
            "charger_id", "connector_id", "connector_type", "max_power_kw"
        )
        for charger_id, connector_id, connector_type, max_power_kw in rows:
            self._stored_evses.setdefault(charger_id, []).append(
                (connector_id, EvseSpec(connector_type, max_power_kw))
            )
        for found in self._stored_evses.values():
            found.sort(key=lambda item: item[0])
        keys = ConfigurationKey.objects.filter(charger_id__in=pks, key__in=self._file_keys)
        for charger_id, key, value in keys.values_list("charger_id", "key", "value"):
            self._stored_keys.setdefault(charger_id, {})[key] = value

    def unchanged(self, instance: Any, row: dict) -> bool:
        """The charger's columns as stored, and its EVSEs and configuration keys too: the
        same connectors (and NumberOfConnectors their count, as `update_chargers` would
        write it), and each key of the configuration cell stored with that value."""
        if not super().unchanged(instance, row) or instance.evse_problems is not None:
            return False
        layout = instance.evse_layout
        overrides = dict(instance.configuration_overrides)
        stored = self._stored_keys.get(instance.pk, {})
        if layout is not None:
            # Numbered as `update_chargers` numbers them: stored connectors 1 and 3 are
            # renumbered 1 and 2 by a re-import, which is a change.
            if list(enumerate(layout, start=1)) != self._stored_evses.get(instance.pk, []):
                return False
            if stored.get("NumberOfConnectors") != str(len(layout)):
                return False
        if not overrides.keys() <= self._file_keys:  # not read ahead (no such column?)
            stored = dict(
                ConfigurationKey.objects.filter(
                    charger_id=instance.pk, key__in=overrides
                ).values_list("key", "value")
            )
        return all(stored.get(key) == value for key, value in overrides.items())

    @staticmethod
    def _plan(charger: Charger) -> ChargerPlan:
        return ChargerPlan(charger, charger.evse_layout, charger.configuration_overrides)  # type: ignore[attr-defined]  # set per import row, not a model field


def _with_configuration(chargers: list[Charger]) -> list[Charger]:
    """These chargers, each with its configuration as (key, value) pairs in key order."""
    pairs: dict[int, list[tuple[str, str]]] = {charger.pk: [] for charger in chargers}
    rows = ConfigurationKey.objects.filter(charger_id__in=list(pairs)).order_by("charger", "key")
    for charger_id, key, value in rows.values_list("charger_id", "key", "value"):
        pairs[charger_id].append((key, value))
    for charger in chargers:
        charger.exported_configuration = pairs[charger.pk]  # type: ignore[attr-defined]
    return chargers
