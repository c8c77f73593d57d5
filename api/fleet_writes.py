"""Fleet writes of the API, with the admin's and the import's rules and effects.

Each write is checked by what checks the same write elsewhere: the admin's ModelForms (a
charger's fields by `ChargerForm`, a location, vehicle model, EVSE or configuration key by
the form the admin builds for it, so model validation and uniqueness included), and the
import's rules for what only the import takes in one go (a charger's EVSE list and its
configuration overrides: `chargers.evse_layout`, `chargers.configuration_overrides`).
Chargers are then written by the import's own row execution (`chargers.fleet`), so that a
charger made through the API is one the import or the admin could have made, and every
write ends with `notify_fleet_change` as the admin's saves do, answering with what the
simulator workers did when the caller waits for it.

These functions take plain values and no request, so that the MCP tools can call them too.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, transaction
from django.db.models import Count, Prefetch, ProtectedError, QuerySet
from django.forms.models import model_to_dict, modelform_factory

from api.errors import CONFLICT_TEXT, ApiError, ErrorItem, errors_from_mapping
from api.fleet_schemas import (
    ChargerDetail,
    ChargerPut,
    EvseOut,
    EvseReplace,
    LocationOut,
    LocationPut,
    VehicleModelOut,
    VehicleModelPut,
    WorkerNote,
    default,
    evse_problems,
    read_only_fields,
)
from chargers.configuration_overrides import (
    RESERVED,
    OverrideError,
    check_against_stored,
    check_overrides,
)
from chargers.deadlocks import retrying_races
from chargers.evse_layout import (
    MAX_EVSES,
    EvseSpec,
    next_connector_id,
    numbering_problem,
    power_type_problems,
    removal_problems,
)
from chargers.fleet import ChargerPlan, create_chargers, update_chargers
from chargers.forms import ChargerForm, rename_losses
from chargers.models import Charger, ConfigurationKey, Evse
from fleet_io.fleet_changes import DELETED, DISABLED, Applied, describe, notify_fleet_change
from locations.models import ArrivalProfile, Location, VehicleShare
from simulator.contract import config_keys, traffic
from vehicles.forms import VehicleModelForm as VehicleCurveForm
from vehicles.models import VehicleModel

INVALID = "The request is not valid."
#: Chargers one bulk request may create; a larger fleet is an import job.
MAX_BULK = 1000

# The forms the admin builds for these models (ModelAdmin's default form, all fields).
LocationForm = modelform_factory(Location, fields="__all__")
ArrivalProfileForm = modelform_factory(ArrivalProfile, exclude=["location"])
# The vehicle's is the admin's own: it reads a curve in the import's text form too.
VehicleModelForm = modelform_factory(VehicleModel, form=VehicleCurveForm, fields="__all__")
EvseForm = modelform_factory(Evse, fields=["charger", *Evse.WEB_FIELDS])
ConfigurationKeyForm = modelform_factory(
    ConfigurationKey, fields=["charger", "key", "value", "readonly"]
)


def _attname(model: type[models.Model], name: str) -> str:
    column = model._meta.get_field(name)
    assert isinstance(column, models.Field)  # a form's field is a column of the model
    return column.attname


#: The charger's fields a write sets (the admin form's), and the columns they are.
CHARGER_FIELDS = [name for name in ChargerForm.Meta.fields if name != "authorization_key"]
CHARGER_COLUMNS = [_attname(Charger, name) for name in ChargerForm.Meta.fields]


class WorkerReport:
    """What the workers did with a change, as the admin's save reports it (`describe`);
    called after commit. `notes` stays None when nobody waits for the answer."""

    def __init__(self, wait: bool) -> None:
        self.wait = wait
        self.notes: list[WorkerNote] | None = None

    def __call__(self, applied: Applied) -> None:
        self.notes = [WorkerNote(reached=r, message=text) for r, text in describe(applied)]

    @property
    def callback(self) -> WorkerReport | None:
        return self if self.wait else None


def form_errors(form: forms.BaseForm, *, row: int | None = None) -> list[ErrorItem]:
    messages = {
        name: [_message(form, name, error) for error in found]
        for name, found in form.errors.as_data().items()
    }
    return errors_from_mapping(messages, row=row)


def _message(form: forms.BaseForm, name: str, error: ValidationError) -> str:
    field = form.fields.get(name)
    if (
        error.code == "invalid_choice"
        and isinstance(field, forms.ModelChoiceField)
        and field.queryset is not None
    ):
        # The admin's "Select a valid choice" fits a drop-down, not an id in a request.
        model = field.queryset.model
        return f"No {model._meta.verbose_name} with id {form.data.get(name)!r}."
    return " ".join(error.messages)


def _invalid(errors: Sequence[ErrorItem]) -> ApiError:
    return ApiError(422, INVALID, errors)


def _data(
    model: type[models.Model],
    instance: models.Model | None,
    fields: Sequence[str],
    given: Mapping[str, Any],
) -> dict[str, Any]:
    """A form's data: the stored values (an update) or the model's defaults (a create, as
    the admin's add form starts from them), under what the request gives."""
    data = model_to_dict(model() if instance is None else instance, fields=fields)
    data.update({name: value for name, value in given.items() if name in fields})
    return data


def _save(form_class: type[forms.ModelForm], instance: Any, given: Mapping[str, Any]) -> Any:
    fields = list(form_class.base_fields)
    form = form_class(
        data=_data(form_class._meta.model, instance, fields, given), instance=instance
    )
    if not form.is_valid():
        raise _invalid(form_errors(form))
    with transaction.atomic():
        return form.save()


# -- a PUT of what a GET answered -----------------------------------------------------


def _shown(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder)


def _answered(value: Any) -> Any:
    """A value as a GET's answer carries it: a time to the millisecond (DjangoJSONEncoder)."""
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond - value.microsecond % 1000)
    return value


def read_only_problems(
    given: dict[str, Any],
    stored: Mapping[str, Any],
    names: Sequence[str],
    *,
    prefix: str = "",
    ignored: Collection[str] = (),
) -> list[ErrorItem]:
    """Take the read-only fields `names` out of `given` (a PUT's body, as a GET answered
    it), and say which of them differ from what is `stored` (None: not given), but for
    the `ignored` ones (they change as the simulator runs). None of them is a secret, so
    the stored value is named."""
    problems = []
    for name in names:
        value = given.pop(name, None)
        if name in ignored or value is None or _answered(value) == _answered(stored.get(name)):
            continue
        message = (
            f"{name} is read-only here: it is {_shown(stored.get(name))}, not {_shown(value)}. "
            "Send it as a GET answers it, or leave it out."
        )
        problems.append(ErrorItem(field=f"{prefix}{name}", message=message))
    return problems


def _put_given(
    given: dict[str, Any], stored: Mapping[str, Any], schema: type[Any]
) -> dict[str, Any]:
    problems = read_only_problems(
        given, stored, read_only_fields(schema), ignored=read_only_fields(schema, live=True)
    )
    if problems:
        raise _invalid(problems)
    return given


def location_put(location: Location, given: dict[str, Any]) -> dict[str, Any]:
    """A location PUT's fields, its read-only ones checked against `location` and taken out."""
    stored = LocationOut.model_validate(locations().get(pk=location.pk)).model_dump()
    return _put_given(given, stored, LocationPut)


def vehicle_model_put(vehicle: VehicleModel, given: dict[str, Any]) -> dict[str, Any]:
    return _put_given(given, VehicleModelOut.model_validate(vehicle).model_dump(), VehicleModelPut)


def evse_put(evse: Evse, given: dict[str, Any]) -> dict[str, Any]:
    return _put_given(given, EvseOut.model_validate(evse).model_dump(), EvseReplace)


#: What a new EVSE starts with: an item of a charger's PUT past its stored EVSEs has these.
NEW_EVSE = {
    "availability": Evse.Availability.OPERATIVE,
    "status": default(Evse, "status"),
    "register_wh": 0.0,
}


def charger_put(charger: Charger, given: dict[str, Any]) -> dict[str, Any]:
    """A charger PUT's fields as `update_charger` takes them: its read-only fields (its
    EVSEs' too) checked against `charger` and taken out, and a configuration given as the
    GET's list turned into the keys whose value it changes."""
    stored = ChargerDetail.model_validate(charger_detail().get(pk=charger.pk)).model_dump()
    problems = read_only_problems(
        given,
        stored,
        read_only_fields(ChargerPut),
        ignored=read_only_fields(ChargerPut, live=True),
    )
    evses = {evse["connector_id"]: evse for evse in stored["evses"]}
    for n, item in enumerate(given.get("evses") or ()):
        was = evses.get(n + 1, {**NEW_EVSE, "connector_id": n + 1})
        problems += read_only_problems(
            item,
            was,
            read_only_fields(EvseReplace),
            prefix=f"evses.{n}.",
            ignored=read_only_fields(EvseReplace, live=True),
        )
    listed = given.get("configuration")
    if isinstance(listed, list):
        keys = {row["key"]: row for row in stored["configuration"]}
        changed: dict[str, str] = {}
        for n, item in enumerate(listed):
            known = config_keys.KEYS.get(item["key"])
            was = keys.get(item["key"], {"readonly": bool(known and known.readonly)})
            problems += read_only_problems(item, was, ["readonly"], prefix=f"configuration.{n}.")
            if item["value"] != was.get("value"):
                changed[item["key"]] = item["value"]
        # None when it changes nothing: as if not given (no key permission needed).
        given["configuration"] = changed or None
    if problems:
        raise _invalid(problems)
    return given


# -- locations and vehicle models (their saves tell the workers through signals) -------


def locations() -> QuerySet[Location]:
    # Ordered here: Django leaves Meta.ordering out of a query with GROUP BY (the count).
    return (
        Location.objects.annotate(charger_count=Count("chargers"))
        .select_related("arrival_profile")
        .prefetch_related("arrival_profile__vehicle_mix")
        .order_by("name")
    )


# The API's nested distributions and the profile's columns: name -> column prefix.
DISTRIBUTIONS = {"soc": "soc", "target_soc": "target", "dwell_minutes": "dwell"}


def _profile_field(column: str) -> str:
    """The API's name of a profile column, for an error: `soc_b` -> `arrival_profile.soc.b`."""
    for name, prefix in DISTRIBUTIONS.items():
        if column == f"{prefix}_distribution":
            return f"arrival_profile.{name}.kind"
        if column in (f"{prefix}_a", f"{prefix}_b"):
            return f"arrival_profile.{name}.{column[-1]}"
    return f"arrival_profile.{column}"


@dataclass
class ProfilePlan:
    form: forms.ModelForm
    mix: list[tuple[int, float]]

    def save(self, location: Location) -> None:
        profile = self.form.save(commit=False)
        profile.location = location
        profile.save()
        profile.vehicle_mix.all().delete()
        VehicleShare.objects.bulk_create(
            VehicleShare(profile=profile, vehicle_id=vehicle, weight=weight)
            for vehicle, weight in self.mix
        )


def check_arrival_profile(
    instance: ArrivalProfile | None, given: Mapping[str, Any]
) -> tuple[ProfilePlan | None, list[ErrorItem]]:
    """A whole profile as the admin's form checks it, its vehicle mix as the engine does."""
    fields = list(ArrivalProfileForm.base_fields)
    data = model_to_dict(ArrivalProfile(), fields=fields)
    data.update({k: v for k, v in given.items() if k in fields})
    for name, prefix in DISTRIBUTIONS.items():
        if name in given:
            value = given[name]
            data[f"{prefix}_distribution"] = value.get("kind")
            data[f"{prefix}_a"] = value.get("a")
            data[f"{prefix}_b"] = value.get("b", 0)
    form = ArrivalProfileForm(data=data, instance=instance)
    errors: list[ErrorItem] = []
    if not form.is_valid():
        errors += [
            ErrorItem(field=_profile_field(name), message=str(message))
            for name, found in form.errors.items()
            for message in found
        ]
    mix: list[tuple[int, float]] = []
    try:
        mix = traffic.check_vehicle_mix(given.get("vehicle_mix") or [])
    except ValueError as exc:
        errors.append(ErrorItem(field="arrival_profile.vehicle_mix", message=str(exc)))
    known = set(
        VehicleModel.objects.filter(pk__in=[v for v, _ in mix]).values_list("pk", flat=True)
    )
    for vehicle, _ in mix:
        if vehicle not in known:
            errors.append(
                ErrorItem(
                    field="arrival_profile.vehicle_mix",
                    message=f"There is no vehicle model {vehicle}.",
                )
            )
    return (None, errors) if errors else (ProfilePlan(form, mix), [])


def save_location(instance: Location | None, given: Mapping[str, Any]) -> Location:
    """A location, and its arrival profile when `given` names one (None removes it)."""
    fields = list(LocationForm.base_fields)
    form = LocationForm(data=_data(Location, instance, fields, given), instance=instance)
    errors = [] if form.is_valid() else form_errors(form)
    plan = None
    profile_given = given.get("arrival_profile")
    if profile_given is not None:
        stored = ArrivalProfile.objects.filter(location=instance).first() if instance else None
        plan, problems = check_arrival_profile(stored, profile_given)
        errors += problems
    if errors:
        raise _invalid(errors)
    with transaction.atomic():
        saved = form.save()
        if plan is not None:
            plan.save(saved)
        elif "arrival_profile" in given:
            ArrivalProfile.objects.filter(location=saved).delete()
    return locations().get(pk=saved.pk)


def delete_location(location: Location) -> None:
    try:
        with transaction.atomic():
            location.delete()
    except ProtectedError as exc:
        names = sorted(str(obj) for obj in exc.protected_objects)
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise ApiError(
            409,
            f"The location {location.name!r} still has {len(names)} charger(s) ({shown}): "
            "delete them or move them to another location first.",
        ) from None


def save_vehicle_model(instance: VehicleModel | None, given: Mapping[str, Any]) -> VehicleModel:
    return _save(VehicleModelForm, instance, given)


def delete_vehicle_model(vehicle: VehicleModel) -> None:
    """Refused (409) while a site's arrival profile names it in its vehicle mix: deleted,
    it would leave the mix unsaid (one that held only it draws every model alike). A
    charger whose default vehicle it is keeps none; a vehicle plugged in keeps charging
    as it was plugged in (the engine holds its own copy of the model)."""
    try:
        with transaction.atomic():
            vehicle.delete()
    except ProtectedError as exc:
        names = sorted(
            {
                share.profile.location.name
                for share in exc.protected_objects
                if isinstance(share, VehicleShare)
            }
        )
        shown = ", ".join(repr(n) for n in names[:10])
        if len(names) > 10:
            shown += f" and {len(names) - 10} more"
        raise ApiError(
            409,
            f"The vehicle model {str(vehicle)!r} is in the vehicle mix of the arrival profile "
            f"of {len(names)} location(s) ({shown}): take it out of their mix first.",
        ) from None


# -- chargers ---------------------------------------------------------------------------


def chargers() -> QuerySet[Charger]:
    return Charger.objects.select_related("location").prefetch_related(
        Prefetch("evses", queryset=Evse.objects.order_by("connector_id"))
    )


def charger_detail() -> QuerySet[Charger]:
    return chargers().prefetch_related("configuration")


@dataclass
class CheckedCharger:
    plan: ChargerPlan | None
    errors: list[ErrorItem] = field(default_factory=list)


def check_charger(
    given: Mapping[str, Any],
    instance: Charger | None = None,
    *,
    row: int | None = None,
    force: bool = False,
) -> CheckedCharger:
    """Check a charger as the admin's form checks it, with its EVSE list and configuration
    as the import checks them; `given` are the request's fields (an update: those to
    change). On success, the plan the import's row execution writes."""
    data = _data(Charger, instance, CHARGER_FIELDS, given)
    if given.get("phases") is None and (instance is None or "phases" in given):
        data["phases"] = ""  # by its power (`ChargerForm.clean_phases`), not the model's 3
    if not given.get("model") and (instance is None or "model" in given):
        data["model"] = ""  # by its power type and power (`ChargerForm.clean`)
    key = given.get("authorization_key")
    if key == "":
        data["clear_authorization_key"] = True  # the admin's "Clear the AuthorizationKey"
    elif key is not None:
        data["authorization_key"] = key
    if force:
        data["move_anyway"] = True  # a rename into another shard, refused without it
    form = ChargerForm(data=data, instance=instance)
    errors = [] if form.is_valid() else form_errors(form, row=row)

    # The power type the EVSEs must fit (None: its own field is wrong, and said so).
    power_type = None if "power_type" in form.errors else form.instance.power_type
    specs: list[EvseSpec] | None = None
    if given.get("evses") is not None:
        specs, problems = _check_evses(given["evses"], power_type, row=row)
        errors += problems
        if instance is not None and specs:
            errors += [
                ErrorItem(field="evses", message=message, row=row)
                for message in removal_problems(instance.pk, len(specs))
            ]
    elif power_type is not None:
        # A new power type the stored EVSEs no longer fit.
        errors += [
            ErrorItem(field="power_type", message=f"Connector {n}: {why}", row=row)
            for n, why in power_type_problems(power_type, None, instance.pk if instance else None)
        ]
    overrides: dict[str, str] = {}
    if given.get("configuration") is not None:
        try:
            overrides = check_overrides(list(given["configuration"].items()))
            if instance is not None:
                stored = instance.configuration.values_list("key", flat=True)
                check_against_stored(overrides, stored)
        except OverrideError as exc:
            errors.append(ErrorItem(field="configuration", message=str(exc), row=row))
    if errors:
        return CheckedCharger(None, errors)
    return CheckedCharger(ChargerPlan(form.instance, specs, overrides))


def _check_evses(
    items: Sequence[Mapping[str, Any]], power_type: str | None, *, row: int | None
) -> tuple[list[EvseSpec], list[ErrorItem]]:
    if not items:
        return [], [ErrorItem(field="evses", message="Give at least one EVSE.", row=row)]
    if len(items) > MAX_EVSES:
        message = f"{len(items)} EVSEs; a charger has at most {MAX_EVSES} (MAX_EVSES)."
        return [], [ErrorItem(field="evses", message=message, row=row)]
    specs, errors = [], []
    for n, item in enumerate(items):
        spec, problems = evse_problems(item, power_type)
        errors += [ErrorItem(field=f"evses.{n}", message=p, row=row) for p in problems]
        if spec is not None:
            specs.append(spec)
    return specs, errors


def create_charger(given: Mapping[str, Any], report: WorkerReport) -> Charger:
    return create_many([given], report, bulk=False)[0]


def create_many(
    items: Sequence[Mapping[str, Any]], report: WorkerReport, *, bulk: bool = True
) -> list[Charger]:
    """Create chargers, all or none: every problem of every item is reported, with the
    item's index (`row`, from 0) in a bulk request."""
    if len(items) > MAX_BULK:
        raise ApiError(
            422,
            f"{len(items):,} chargers in one request; at most {MAX_BULK:,}: use an import job "
            "(POST /api/v1/imports) for more.",
            [ErrorItem(field="items", message=f"At most {MAX_BULK:,} items.")],
        )
    plans, errors = _checked_new(items, bulk=bulk)
    if errors:
        raise _invalid(errors)
    try:
        with transaction.atomic():
            created = create_chargers(plans)
            notify_fleet_change(report=report.callback)  # joins the batch create_chargers began
    except IntegrityError:
        # A concurrent request took one of the ids between the check and the insert: the
        # check, made again, names it as it would have ("... already exists").
        _, errors = _checked_new(items, bulk=bulk)
        if errors:
            raise _invalid(errors) from None
        raise
    return _reloaded(charger_detail(), [c.pk for c in created])


def _checked_new(
    items: Sequence[Mapping[str, Any]], *, bulk: bool
) -> tuple[list[ChargerPlan], list[ErrorItem]]:
    """The plans of new chargers and every problem of every item."""
    plans: list[ChargerPlan] = []
    errors: list[ErrorItem] = []
    # By lower-cased id: CP-1 and cp-1 are one charger to a CSMS matching ids regardless
    # of case (the model refuses the second against a stored one, not against an item).
    first: dict[str, tuple[int, str]] = {}
    for index, given in enumerate(items):
        row = index if bulk else None
        checked = check_charger(given, row=row)
        errors += checked.errors
        cp_id = str(given.get("charge_point_id") or "")
        seen, seen_id = first.setdefault(cp_id.lower(), (index, cp_id))
        if cp_id and seen != index:
            where = (
                f"is already item {seen}"
                if seen_id == cp_id
                else (f"differs from {seen_id!r} of item {seen} only in case")
            )
            errors.append(
                ErrorItem(
                    field="charge_point_id",
                    message=f"{cp_id!r} {where}; each may appear only once.",
                    row=row,
                )
            )
        if checked.plan is not None:
            plans.append(checked.plan)
    return plans, errors


def update_charger(
    charger: Charger, given: Mapping[str, Any], report: WorkerReport, *, force: bool = False
) -> Charger:
    """Change a charger; a rename into another shard is refused (409) while it would break
    a transaction (`ChargerQuerySet.move_losses`) unless `force`."""
    stored_id = charger.charge_point_id
    new_id = given.get("charge_point_id")
    if not force and isinstance(new_id, str):
        losses = rename_losses(charger.pk, stored_id, new_id)
        if losses:
            text = f"{' '.join(losses)} {FORCE_RENAME}"
            raise ApiError(409, text, [ErrorItem(field="charge_point_id", message=text)])
    # The form's own check of a move: made above, as a 409 (a conflict with the charger's
    # state, as a delete's), not a 422.
    # Before the form's check, which sets the instance's fields to the values given.
    change = DISABLED if charger.enabled and given.get("enabled") is False else ""
    checked = check_charger(given, charger, force=True)
    if checked.plan is None:
        raise _invalid(checked.errors)
    try:
        with transaction.atomic():
            update_chargers([checked.plan], CHARGER_COLUMNS)
            # A new id may belong to another shard's worker: the old one is told too.
            notify_fleet_change([(charger.pk, stored_id)], report=report.callback, change=change)
    except IntegrityError:
        # Renamed onto an id a concurrent request took meanwhile: as create_many says it.
        again = check_charger(given, Charger.objects.get(pk=charger.pk), force=True)
        if again.errors:
            raise _invalid(again.errors) from None
        raise
    return charger_detail().get(pk=charger.pk)


def delete_charger(charger: Charger, report: WorkerReport, *, force: bool = False) -> list[str]:
    """Delete the charger, refused (409) while that would lose a transaction message
    (`ChargerQuerySet.deletion_losses`) unless `force`; what `force` went past."""
    losses: list[str] = []

    def delete() -> None:
        nonlocal losses
        # Checked again by a second attempt: the worker may have written a transaction
        # message meanwhile (what made the first attempt lose the race, say).
        losses = Charger.objects.filter(pk=charger.pk).deletion_losses()
        if losses and not force:
            text = f"{' '.join(losses)} {FORCE_DELETE}"
            raise ApiError(409, text, [ErrorItem(field="charge_point_id", message=text)])
        notify_fleet_change(
            [(charger.pk, charger.charge_point_id)], report=report.callback, change=DELETED
        )
        Charger.objects.filter(pk=charger.pk).delete()

    retrying_races(delete)
    return losses


FORCE_RENAME = "(With ?force=true it is renamed anyway.)"
FORCE_DELETE = (
    "(DELETE with ?force=true deletes it anyway: a StopTransaction it cannot send at once "
    "is then never sent.)"
)


def _reloaded(queryset: QuerySet[Charger], pks: Sequence[int]) -> list[Charger]:
    found = queryset.in_bulk(pks)
    return [found[pk] for pk in pks]


# -- EVSEs and configuration keys: as the EVSE and configuration key admins save them --


def save_evse(
    charger: Charger,
    evse: Evse | None,
    given: Mapping[str, Any],
    report: WorkerReport | None = None,
) -> Evse:
    values = {"charger": charger.pk, **{k: v for k, v in given.items() if v is not None}}
    numbered = evse is None and values.get("connector_id") is None
    if numbered:
        stored = list(charger.evses.values_list("connector_id", flat=True))
        values["connector_id"] = next_connector_id(stored)
    old_id = None if evse is None else evse.connector_id
    form = EvseForm(data=_data(Evse, evse, ["charger", *Evse.WEB_FIELDS], values), instance=evse)
    if not form.is_valid():
        if numbered and _taken(form):
            # The number this request chose was free when counted: a create at the same
            # moment saved it first. The caller gave none, so nothing of theirs is wrong:
            # the retryable 409 a concurrent insert gets, not a 422 naming no field.
            raise ApiError(409, CONFLICT_TEXT)
        raise _invalid(form_errors(form))
    with transaction.atomic():
        saved = form.save(commit=False)
        if evse is None:
            saved.save()
        else:
            # Only what a person edits: the register and status are the engine's.
            saved.save(update_fields=Evse.WEB_FIELDS)
        problem = _numbering_problem(charger, old=old_id, new=saved.connector_id)
        if problem:
            raise _invalid([ErrorItem(field="connector_id", message=problem)])
        charger.sync_number_of_connectors()
        notify_fleet_change(
            [(charger.pk, charger.charge_point_id)], report=report and report.callback
        )
    return saved


def _taken(form: forms.BaseForm) -> bool:
    """Whether the form refused its row as another's (charger, connector_id)."""
    return any(
        error.code == "unique_together"
        for errors in form.errors.as_data().values()
        for error in errors
    )


def delete_evse(charger: Charger, evse: Evse) -> None:
    refused = evse.deletion_refused()
    if refused:
        raise ApiError(409, refused, [ErrorItem(field="connector_id", message=refused)])

    def delete() -> None:
        # Not `evse.delete()`: it sets `evse.pk` to None, and a second attempt would have
        # nothing to delete.
        Evse.objects.filter(pk=evse.pk).delete()
        problem = _numbering_problem(charger, old=evse.connector_id, new=None)
        if problem:
            raise ApiError(409, problem, [ErrorItem(field="connector_id", message=problem)])
        charger.sync_number_of_connectors()
        notify_fleet_change([(charger.pk, charger.charge_point_id)])

    retrying_races(delete)  # its worker may be storing the car plugged into it


def _numbering_problem(charger: Charger, *, old: int | None, new: int | None) -> str | None:
    """Whether the EVSE write just made (connector `old` became `new`; None: no EVSE was,
    or is) leaves the charger's connectors numbered 1..N; the caller rolls it back if not.
    Checked after the write and after `updated` is set, which locks the charger row: two
    writes of one charger's EVSEs are checked one after the other (both checked before
    writing, an EVSE added while another is deleted would leave a gap). The worker's
    checkpoints write EVSE rows before charger rows too."""
    Charger.objects.mark_changed([charger.pk])
    after = Evse.objects.connector_ids(charger.pk)
    before = [n for n in after if n != new] + ([] if old is None else [old])
    return numbering_problem(charger.charge_point_id, before, after)


def save_configuration_key(
    charger: Charger,
    key: str,
    existing: ConfigurationKey | None,
    value: str,
    readonly: bool,
    report: WorkerReport | None = None,
) -> ConfigurationKey:
    if key in RESERVED and key != "AuthorizationKey":  # (the model's check says that one)
        # Kept by the charger itself: a value stored here would never take effect.
        raise _invalid([ErrorItem(field="key", message=RESERVED[key])])
    data = {"charger": charger.pk, "key": key, "value": value, "readonly": readonly}
    form = ConfigurationKeyForm(data=data, instance=existing)
    if not form.is_valid():
        raise _invalid(form_errors(form))
    with transaction.atomic():
        saved = form.save()
        Charger.objects.mark_changed([charger.pk])
        notify_fleet_change(
            [(charger.pk, charger.charge_point_id)], report=report and report.callback
        )
    return saved


def delete_configuration_key(charger: Charger, row: ConfigurationKey) -> None:
    refused = ConfigurationKey.deletion_refused(row.key, "PUT a value instead")
    if refused:
        raise ApiError(409, refused, [ErrorItem(field="key", message=refused)])
    with transaction.atomic():
        row.delete()
        Charger.objects.mark_changed([charger.pk])
        notify_fleet_change([(charger.pk, charger.charge_point_id)])
