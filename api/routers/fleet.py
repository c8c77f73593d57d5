"""Fleet resources: locations, vehicle models, chargers with their EVSEs and configuration
keys. List (filtered, paged), retrieve, create, update (PUT replaces, PATCH changes the
fields given) and delete, with the admin's permissions, validation and messages
(api/fleet_writes.py does the writes). Chargers are named by their charge point id.

A charger write answers with what the simulator workers did with it, as the admin shows
after a save; like the admin it waits for them (a few seconds at most, see
fleet_io.fleet_changes) unless the request says `wait=false`.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from ninja import Query, Router
from ninja.pagination import paginate
from ninja.responses import Status

from api import fleet_writes as writes
from api.auth import check_perms, require
from api.errors import READ_ERRORS, WRITE_ERRORS, ApiError, ErrorBody, ErrorItem
from api.fleet_schemas import (
    ChargerDeleted,
    ChargerDetail,
    ChargerFilters,
    ChargerIn,
    ChargerOut,
    ChargerPatch,
    ChargerPut,
    ChargersCreated,
    ChargersIn,
    ChargerWritten,
    ConfigurationKeyIn,
    ConfigurationKeyOut,
    ConfigurationKeyWritten,
    EvseCreate,
    EvseOut,
    EvsePatch,
    EvseReplace,
    EvseWritten,
    LocationFilters,
    LocationIn,
    LocationOut,
    LocationPatch,
    LocationPut,
    VehicleModelFilters,
    VehicleModelIn,
    VehicleModelOut,
    VehicleModelPatch,
    VehicleModelPut,
    nullable,
)
from api.pagination import Paged
from api.query_params import path_id
from chargers.models import Charger, ConfigurationKey, Evse
from locations.models import Location
from vehicles.models import VehicleModel

router = Router(tags=["fleet"])

WAIT = Query(
    True,
    description="Wait (a few seconds at most) for the simulator workers to say what they did "
    "with the change, and answer it in `workers`; false answers at once.",
)
FORCE_RENAME = Query(
    False,
    description="Rename a charger into another shard (another worker runs its new id) even "
    "though a transaction is in progress on it or its CSMS has not confirmed its transaction "
    "messages (refused with 409 otherwise).",
)
RENAME_NOTE = (
    "With several workers, a new `charge_point_id` that another shard's worker runs is "
    "refused (409) while a transaction is in progress or transaction messages are not "
    "confirmed (with the worker that runs it now not running, the new id would end the "
    "session its CSMS opened under the old one); `?force=true` renames it anyway."
)
FORCE = Query(
    False,
    description="Delete a charger even though a transaction is in progress on it or its "
    "CSMS has not confirmed its transaction messages (what would be lost is answered in "
    "`forced`).",
)
CONFLICT = {**WRITE_ERRORS, 409: ErrorBody}
# A list's filters, from the query string.
FILTERS = Query(...)


def found(queryset: QuerySet[Any], what: str, **lookup: Any) -> Any:
    obj = queryset.filter(**lookup).first()
    if obj is None:
        value = next(iter(lookup.values()))
        raise Http404(f"No {what} {value!r}.")
    return obj


def _given(
    payload: Any, *, partial: bool, model: type[models.Model] | None = None
) -> dict[str, Any]:
    if not partial:
        return payload.dict()
    given: dict[str, Any] = payload.dict(exclude_unset=True)
    if model is not None:
        # A PATCH's null for a field that cannot be empty: said as such, not as the form's
        # "This field is required" for a field the caller did give.
        nulls = [
            ErrorItem(field=name, message=f"{name} cannot be null: leave it out to keep it.")
            for name, value in given.items()
            if value is None and not nullable(model, name)
        ]
        if nulls:
            raise ApiError(422, writes.INVALID, nulls)
    return given


# -- locations ----------------------------------------------------------------------------

LOCATIONS = ["locations"]


@router.get(
    "/locations",
    response={200: list[LocationOut], **READ_ERRORS},
    tags=LOCATIONS,
    summary="List locations",
    description="Paged (`limit`, `offset`), by name. Needs `locations.view_location`.",
)
@require("locations.view_location")
@paginate(Paged)
def list_locations(request: HttpRequest, filters: LocationFilters = FILTERS) -> Any:
    return filters.filter(writes.locations())


@router.post(
    "/locations",
    response={201: LocationOut, **WRITE_ERRORS},
    tags=LOCATIONS,
    summary="Create a location",
    description="Checked as the admin's form checks it. Needs `locations.add_location`.",
)
@require("locations.add_location")
def create_location(request: HttpRequest, payload: LocationIn) -> Any:
    return Status(201, writes.save_location(None, payload.dict()))


@router.get(
    "/locations/{location_id}",
    response={200: LocationOut, **READ_ERRORS},
    tags=LOCATIONS,
    summary="Get a location",
    description="Needs `locations.view_location`.",
)
@require("locations.view_location")
def get_location(request: HttpRequest, location_id: int = path_id()) -> Any:
    return found(writes.locations(), "location", pk=location_id)


@router.put(
    "/locations/{location_id}",
    response={200: LocationOut, **WRITE_ERRORS},
    tags=LOCATIONS,
    summary="Replace a location",
    description="Fields not given take their defaults. What a GET answers may be sent "
    "back: a read-only field (`id`, `chargers`) with its value is taken, with another "
    "refused (422). Needs `locations.change_location`.",
)
@require("locations.change_location")
def replace_location(
    request: HttpRequest, payload: LocationPut, location_id: int = path_id()
) -> Any:
    location = found(Location.objects.all(), "location", pk=location_id)
    given = writes.location_put(location, _given(payload, partial=False))
    return writes.save_location(location, given)


@router.patch(
    "/locations/{location_id}",
    response={200: LocationOut, **WRITE_ERRORS},
    tags=LOCATIONS,
    summary="Change a location",
    description="Only the fields given change. Needs `locations.change_location`.",
)
@require("locations.change_location")
def change_location(
    request: HttpRequest, payload: LocationPatch, location_id: int = path_id()
) -> Any:
    location = found(Location.objects.all(), "location", pk=location_id)
    return writes.save_location(location, _given(payload, partial=True, model=Location))


@router.delete(
    "/locations/{location_id}",
    response={204: None, **CONFLICT},
    tags=LOCATIONS,
    summary="Delete a location",
    description="Refused (409) while chargers are at the location. Needs "
    "`locations.delete_location`.",
)
@require("locations.delete_location")
def delete_location(request: HttpRequest, location_id: int = path_id()) -> Any:
    writes.delete_location(found(Location.objects.all(), "location", pk=location_id))
    return Status(204, None)


# -- vehicle models -----------------------------------------------------------------------

VEHICLES = ["vehicle models"]


@router.get(
    "/vehicle-models",
    response={200: list[VehicleModelOut], **READ_ERRORS},
    tags=VEHICLES,
    summary="List vehicle models",
    description="Paged (`limit`, `offset`), by make and model. Needs `vehicles.view_vehiclemodel`.",
)
@require("vehicles.view_vehiclemodel")
@paginate(Paged)
def list_vehicle_models(request: HttpRequest, filters: VehicleModelFilters = FILTERS) -> Any:
    return filters.filter(VehicleModel.objects.all())


@router.post(
    "/vehicle-models",
    response={201: VehicleModelOut, **WRITE_ERRORS},
    tags=VEHICLES,
    summary="Create a vehicle model",
    description="Checked as the admin's form checks it (charging curve, DC voltages). Needs "
    "`vehicles.add_vehiclemodel`.",
)
@require("vehicles.add_vehiclemodel")
def create_vehicle_model(request: HttpRequest, payload: VehicleModelIn) -> Any:
    return Status(201, writes.save_vehicle_model(None, payload.dict()))


@router.get(
    "/vehicle-models/{vehicle_model_id}",
    response={200: VehicleModelOut, **READ_ERRORS},
    tags=VEHICLES,
    summary="Get a vehicle model",
    description="Needs `vehicles.view_vehiclemodel`.",
)
@require("vehicles.view_vehiclemodel")
def get_vehicle_model(request: HttpRequest, vehicle_model_id: int = path_id()) -> Any:
    return found(VehicleModel.objects.all(), "vehicle model", pk=vehicle_model_id)


@router.put(
    "/vehicle-models/{vehicle_model_id}",
    response={200: VehicleModelOut, **WRITE_ERRORS},
    tags=VEHICLES,
    summary="Replace a vehicle model",
    description="Fields not given take their defaults. What a GET answers may be sent "
    "back: `id` with its value is taken, with another refused (422). Needs "
    "`vehicles.change_vehiclemodel`.",
)
@require("vehicles.change_vehiclemodel")
def replace_vehicle_model(
    request: HttpRequest, payload: VehicleModelPut, vehicle_model_id: int = path_id()
) -> Any:
    vehicle = found(VehicleModel.objects.all(), "vehicle model", pk=vehicle_model_id)
    given = writes.vehicle_model_put(vehicle, _given(payload, partial=False))
    return writes.save_vehicle_model(vehicle, given)


@router.patch(
    "/vehicle-models/{vehicle_model_id}",
    response={200: VehicleModelOut, **WRITE_ERRORS},
    tags=VEHICLES,
    summary="Change a vehicle model",
    description="Only the fields given change. Needs `vehicles.change_vehiclemodel`.",
)
@require("vehicles.change_vehiclemodel")
def change_vehicle_model(
    request: HttpRequest, payload: VehicleModelPatch, vehicle_model_id: int = path_id()
) -> Any:
    vehicle = found(VehicleModel.objects.all(), "vehicle model", pk=vehicle_model_id)
    return writes.save_vehicle_model(vehicle, _given(payload, partial=True, model=VehicleModel))


@router.delete(
    "/vehicle-models/{vehicle_model_id}",
    response={204: None, **READ_ERRORS, 409: ErrorBody},
    tags=VEHICLES,
    summary="Delete a vehicle model",
    description="Refused (409, naming the locations) while a location's arrival profile "
    "names it in its vehicle mix: take it out of the mix first (deleted, it would change the "
    "site's traffic unsaid; a mix left empty draws every vehicle model alike). Chargers that "
    "had it as their default vehicle keep none (their simulated drivers then plug in any "
    "model that fits); a vehicle of this model plugged in now keeps charging as it was "
    "plugged in. Needs `vehicles.delete_vehiclemodel`.",
)
@require("vehicles.delete_vehiclemodel")
def delete_vehicle_model(request: HttpRequest, vehicle_model_id: int = path_id()) -> Any:
    writes.delete_vehicle_model(
        found(VehicleModel.objects.all(), "vehicle model", pk=vehicle_model_id)
    )
    return Status(204, None)


# -- chargers -------------------------------------------------------------------------

CHARGERS = ["chargers"]


def _write_perms(request: HttpRequest, given: dict[str, Any], *, creating: bool) -> None:
    """A charger write that sets EVSEs or configuration keys needs their permissions too
    (as the admin's inlines, and the import, do)."""
    perms = ["chargers.add_charger" if creating else "chargers.change_charger"]
    if given.get("evses") is not None:
        perms += ["chargers.add_evse"]
        if not creating:
            perms += ["chargers.change_evse", "chargers.delete_evse"]
    if given.get("configuration") is not None:
        perms += ["chargers.add_configurationkey", "chargers.change_configurationkey"]
    check_perms(request, *perms)


def _charger(charge_point_id: str, queryset: QuerySet[Charger] | None = None) -> Charger:
    queryset = Charger.objects.all() if queryset is None else queryset
    return found(queryset, "charger", charge_point_id=charge_point_id)


def _written(charger: Charger, report: writes.WorkerReport) -> dict[str, Any]:
    return {"charger": charger, "workers": report.notes}


def _with_workers(
    schema: type[EvseOut] | type[ConfigurationKeyOut], row: Any, report: writes.WorkerReport
) -> dict[str, Any]:
    """An EVSE's or a configuration key's answer, with what the workers did with it."""
    return {**schema.model_validate(row).model_dump(), "workers": report.notes}


@router.get(
    "/chargers",
    response={200: list[ChargerOut], **READ_ERRORS},
    tags=CHARGERS,
    summary="List chargers",
    description="With their EVSEs, paged (`limit`, `offset`), by charge point id. The "
    "AuthorizationKey is never returned (`authorization_key_set` says whether one is "
    "stored). Needs `chargers.view_charger`.",
)
@require("chargers.view_charger")
@paginate(Paged)
def list_chargers(request: HttpRequest, filters: ChargerFilters = FILTERS) -> Any:
    queryset = filters.filter(writes.chargers())
    return queryset.distinct() if filters.status else queryset


@router.post(
    "/chargers",
    response={201: ChargerWritten, **WRITE_ERRORS},
    tags=CHARGERS,
    summary="Create a charger",
    description="Checked as the admin's charger form checks it; `evses` and "
    "`configuration` as the import checks them. A running simulator worker starts it at "
    "once (if enabled and auto-connect). Needs `chargers.add_charger` (and "
    "`chargers.add_evse`, `chargers.add_configurationkey`, "
    "`chargers.change_configurationkey` when giving `evses` or `configuration`).",
)
@require("chargers.add_charger")
def create_charger(request: HttpRequest, payload: ChargerIn, wait: bool = WAIT) -> Any:
    given = payload.dict()
    _write_perms(request, given, creating=True)
    report = writes.WorkerReport(wait)
    return Status(201, _written(writes.create_charger(given, report), report))


@router.post(
    "/bulk/chargers",
    response={201: ChargersCreated, **WRITE_ERRORS},
    tags=CHARGERS,
    summary="Create many chargers",
    description=f"All or none: if any item is not valid, nothing is created and every "
    f"problem is answered with its item's index (`row`, from 0) and field. At most "
    f"{writes.MAX_BULK:,} items; import a file for more. Needs what creating one needs.",
)
@require("chargers.add_charger")
def create_chargers(request: HttpRequest, payload: ChargersIn, wait: bool = WAIT) -> Any:
    items = [item.dict() for item in payload.items]
    for given in items:
        _write_perms(request, given, creating=True)
    report = writes.WorkerReport(wait)
    created = writes.create_many(items, report)
    return Status(201, {"items": created, "workers": report.notes})


@router.get(
    "/chargers/{charge_point_id}",
    response={200: ChargerDetail, **READ_ERRORS},
    tags=CHARGERS,
    summary="Get a charger",
    description="With its EVSEs and OCPP configuration keys. Needs `chargers.view_charger`.",
)
@require("chargers.view_charger")
def get_charger(request: HttpRequest, charge_point_id: str) -> Any:
    return _charger(charge_point_id, writes.charger_detail())


@router.put(
    "/chargers/{charge_point_id}",
    response={200: ChargerWritten, **WRITE_ERRORS},
    tags=CHARGERS,
    summary="Replace a charger",
    description="Fields not given take their defaults (the AuthorizationKey, EVSEs and "
    "configuration are kept unless given). A running charger takes the change as after an "
    "admin save (reconnect, reboot or a configuration change). What a GET answers may be "
    "sent back: a read-only field (`id`, `created`, an EVSE's `register_wh`, ...) with its "
    "value is taken, with another refused (422), and `configuration` may be the GET's list "
    "(the keys whose value it changes are set). Needs `chargers.change_charger` (and the "
    "EVSE and configuration key permissions when giving `evses` or `configuration`). "
    + RENAME_NOTE,
)
@require("chargers.change_charger")
def replace_charger(
    request: HttpRequest,
    charge_point_id: str,
    payload: ChargerPut,
    wait: bool = WAIT,
    force: bool = FORCE_RENAME,
) -> Any:
    charger = _charger(charge_point_id)
    given = writes.charger_put(charger, _given(payload, partial=False))
    _write_perms(request, given, creating=False)
    report = writes.WorkerReport(wait)
    charger = writes.update_charger(charger, given, report, force=force)
    return _written(charger, report)


@router.patch(
    "/chargers/{charge_point_id}",
    response={200: ChargerWritten, **WRITE_ERRORS},
    tags=CHARGERS,
    summary="Change a charger",
    description="Only the fields given change. Needs `chargers.change_charger` (and the EVSE "
    "and configuration key permissions when giving `evses` or `configuration`). " + RENAME_NOTE,
)
@require("chargers.change_charger")
def change_charger(
    request: HttpRequest,
    charge_point_id: str,
    payload: ChargerPatch,
    wait: bool = WAIT,
    force: bool = FORCE_RENAME,
) -> Any:
    given = _given(payload, partial=True, model=Charger)
    _write_perms(request, given, creating=False)
    report = writes.WorkerReport(wait)
    charger = writes.update_charger(_charger(charge_point_id), given, report, force=force)
    return _written(charger, report)


@router.delete(
    "/chargers/{charge_point_id}",
    response={200: ChargerDeleted, **READ_ERRORS, 409: ErrorBody},
    tags=CHARGERS,
    summary="Delete a charger",
    description="With its EVSEs, configuration, sessions and stored message log (fetch "
    "`/chargers/{id}/log.jsonl` first if you need it: afterwards it is a 404); a running "
    "charger stops. "
    "Refused (409) while the charger has a transaction in progress or transaction messages "
    "its CSMS has not confirmed (a deleted charger's outbox goes with it: a StopTransaction "
    "it could not send at once would never be sent): stop the session, or disable the "
    "charger, and delete it once the CSMS has confirmed. `?force=true` deletes it anyway "
    "and answers what it went past in `forced`. Needs "
    "`chargers.delete_charger`, `chargers.delete_evse` and "
    "`chargers.delete_configurationkey` (as the admin's delete does).",
)
@require("chargers.delete_charger", "chargers.delete_evse", "chargers.delete_configurationkey")
def delete_charger(
    request: HttpRequest, charge_point_id: str, wait: bool = WAIT, force: bool = FORCE
) -> Any:
    charger = _charger(charge_point_id)
    report = writes.WorkerReport(wait)
    forced = writes.delete_charger(charger, report, force=force)
    return ChargerDeleted(charge_point_id=charge_point_id, workers=report.notes, forced=forced)


# -- EVSEs --------------------------------------------------------------------------------

EVSES = ["EVSEs"]


def _evse(charger: Charger, connector_id: int) -> Evse:
    evse = charger.evses.filter(connector_id=connector_id).first()
    if evse is None:
        raise Http404(f"Charger {charger.charge_point_id!r} has no EVSE {connector_id}.")
    return evse


@router.get(
    "/chargers/{charge_point_id}/evses",
    response={200: list[EvseOut], **READ_ERRORS},
    tags=EVSES,
    summary="List a charger's EVSEs",
    description="By connector id. Needs `chargers.view_evse`.",
)
@require("chargers.view_evse")
def list_evses(request: HttpRequest, charge_point_id: str) -> Any:
    return list(_charger(charge_point_id).evses.order_by("connector_id"))


@router.post(
    "/chargers/{charge_point_id}/evses",
    response={201: EvseWritten, **WRITE_ERRORS},
    tags=EVSES,
    summary="Add an EVSE",
    description="As the next connector, N + 1: a charger's connectors are numbered 1..N "
    "without gaps, as OCPP 1.6 numbers them, so another `connector_id` is refused (422). "
    "NumberOfConnectors follows. Needs `chargers.add_evse`.",
)
@require("chargers.add_evse")
def create_evse(
    request: HttpRequest, charge_point_id: str, payload: EvseCreate, wait: bool = WAIT
) -> Any:
    report = writes.WorkerReport(wait)
    saved = writes.save_evse(_charger(charge_point_id), None, payload.dict(), report)
    return Status(201, _with_workers(EvseOut, saved, report))


@router.get(
    "/chargers/{charge_point_id}/evses/{connector_id}",
    response={200: EvseOut, **READ_ERRORS},
    tags=EVSES,
    summary="Get an EVSE",
    description="Needs `chargers.view_evse`.",
)
@require("chargers.view_evse")
def get_evse(request: HttpRequest, charge_point_id: str, connector_id: int = path_id()) -> Any:
    return _evse(_charger(charge_point_id), connector_id)


@router.put(
    "/chargers/{charge_point_id}/evses/{connector_id}",
    response={200: EvseWritten, **WRITE_ERRORS},
    tags=EVSES,
    summary="Replace an EVSE's connector type and power",
    description="The meter register, status and availability are the simulator's, and the "
    "connector id the path's (PATCH renumbers): they may be sent back as a GET answers "
    "them, but another value is refused (422). Needs `chargers.change_evse`.",
)
@require("chargers.change_evse")
def replace_evse(
    request: HttpRequest,
    charge_point_id: str,
    payload: EvseReplace,
    connector_id: int = path_id(),
    wait: bool = WAIT,
) -> Any:
    charger = _charger(charge_point_id)
    evse = _evse(charger, connector_id)
    given = writes.evse_put(evse, payload.dict())
    report = writes.WorkerReport(wait)
    saved = writes.save_evse(charger, evse, given, report)
    return _with_workers(EvseOut, saved, report)


@router.patch(
    "/chargers/{charge_point_id}/evses/{connector_id}",
    response={200: EvseWritten, **WRITE_ERRORS},
    tags=EVSES,
    summary="Change an EVSE",
    description="Only the fields given change. A new `connector_id` that would leave a gap "
    "in the charger's connectors 1..N is refused (422). Needs `chargers.change_evse`.",
)
@require("chargers.change_evse")
def change_evse(
    request: HttpRequest,
    charge_point_id: str,
    payload: EvsePatch,
    connector_id: int = path_id(),
    wait: bool = WAIT,
) -> Any:
    charger = _charger(charge_point_id)
    report = writes.WorkerReport(wait)
    given = _given(payload, partial=True, model=Evse)
    saved = writes.save_evse(charger, _evse(charger, connector_id), given, report)
    return _with_workers(EvseOut, saved, report)


@router.delete(
    "/chargers/{charge_point_id}/evses/{connector_id}",
    response={204: None, **READ_ERRORS, 409: ErrorBody},
    tags=EVSES,
    summary="Remove an EVSE",
    description="Only the charger's last connector (the highest number) may go; another is "
    "refused (409), as a charger's connectors are numbered 1..N without gaps, and so is its "
    "only EVSE (a charger keeps at least one: delete the charger instead), and one with a "
    "transaction in progress (stop it first). NumberOfConnectors follows. Needs "
    "`chargers.delete_evse`.",
)
@require("chargers.delete_evse")
def delete_evse(request: HttpRequest, charge_point_id: str, connector_id: int = path_id()) -> Any:
    charger = _charger(charge_point_id)
    writes.delete_evse(charger, _evse(charger, connector_id))
    return Status(204, None)


# -- configuration keys -------------------------------------------------------------------

CONFIGURATION = ["configuration keys"]


def _key(charger: Charger, key: str) -> ConfigurationKey | None:
    return charger.configuration.filter(key=key).first()


# OCPP keys kept as fields of the charger, not as configuration keys (a PUT says so too).
_CHARGER_FIELDS = {
    "AuthorizationKey": "it is the charger's authorization_key, which is write-only: "
    "never read back",
    "SecurityProfile": "it is the charger's security_profile",
}


def _no_such_key(charge_point_id: str, key: str) -> Http404:
    """The 404 of a key the charger does not have; for an OCPP key kept on the charger
    itself, where it is (a GET of AuthorizationKey said only "no configuration key", while
    a PUT of it said it is write-only)."""
    text = f"Charger {charge_point_id!r} has no configuration key {key!r}"
    where = _CHARGER_FIELDS.get(key)
    return Http404(f"{text}: {where}." if where else f"{text}.")


@router.get(
    "/chargers/{charge_point_id}/configuration",
    response={200: list[ConfigurationKeyOut], **READ_ERRORS},
    tags=CONFIGURATION,
    summary="List a charger's OCPP configuration keys",
    description="By key. Needs `chargers.view_configurationkey`.",
)
@require("chargers.view_configurationkey")
def list_configuration(request: HttpRequest, charge_point_id: str) -> Any:
    return list(_charger(charge_point_id).configuration.order_by("key"))


@router.get(
    "/chargers/{charge_point_id}/configuration/{key}",
    response={200: ConfigurationKeyOut, **READ_ERRORS},
    tags=CONFIGURATION,
    summary="Get a configuration key",
    description="Needs `chargers.view_configurationkey`.",
)
@require("chargers.view_configurationkey")
def get_configuration_key(request: HttpRequest, charge_point_id: str, key: str) -> Any:
    charger = _charger(charge_point_id)
    row = _key(charger, key)
    if row is None:
        raise _no_such_key(charge_point_id, key)
    return row


@router.put(
    "/chargers/{charge_point_id}/configuration/{key}",
    response={200: ConfigurationKeyWritten, 201: ConfigurationKeyWritten, **WRITE_ERRORS},
    tags=CONFIGURATION,
    summary="Set a configuration key",
    description="Creates the key (201) or changes its value (200); a known OCPP key's value "
    "is checked and normalised as ChangeConfiguration does. A running charger uses the new "
    "value. Needs `chargers.add_configurationkey` for a new key, "
    "`chargers.change_configurationkey` for a stored one.",
)
def set_configuration_key(
    request: HttpRequest,
    charge_point_id: str,
    key: str,
    payload: ConfigurationKeyIn,
    wait: bool = WAIT,
) -> Any:
    charger = _charger(charge_point_id)
    existing = _key(charger, key)
    action = "add" if existing is None else "change"
    check_perms(request, f"chargers.{action}_configurationkey")
    report = writes.WorkerReport(wait)
    try:
        saved = writes.save_configuration_key(
            charger, key, existing, payload.value, payload.readonly, report
        )
    except IntegrityError:
        # Created by a request made at the same moment: a PUT sets it all the same.
        raced = _key(charger, key) if existing is None else None
        if raced is None:
            raise
        check_perms(request, "chargers.change_configurationkey")
        saved = writes.save_configuration_key(
            charger, key, raced, payload.value, payload.readonly, report
        )
        return Status(200, _with_workers(ConfigurationKeyOut, saved, report))
    status = 201 if existing is None else 200
    return Status(status, _with_workers(ConfigurationKeyOut, saved, report))


@router.delete(
    "/chargers/{charge_point_id}/configuration/{key}",
    response={204: None, **READ_ERRORS, 409: ErrorBody},
    tags=CONFIGURATION,
    summary="Delete a configuration key",
    description="A custom key. A standard OCPP key, which every charger has, is refused "
    "(409): PUT a value instead. Needs `chargers.delete_configurationkey`.",
)
@require("chargers.delete_configurationkey")
def delete_configuration_key(request: HttpRequest, charge_point_id: str, key: str) -> Any:
    charger = _charger(charge_point_id)
    row = _key(charger, key)
    if row is None:
        raise _no_such_key(charge_point_id, key)
    writes.delete_configuration_key(charger, row)
    return Status(204, None)
