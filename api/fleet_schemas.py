"""The shapes of fleet resources in the API: what a caller sends and what it gets back.

The types are checked here (a number where a number belongs); everything else, ranges,
choices, uniqueness and the rules between fields, is checked by the admin's forms and the
models' own validation (api/fleet_writes.py), so that the messages are the admin's.
Descriptions come from the models' help texts. A secret (the AuthorizationKey) is a field
of the input only: an output says whether one is set, never what it is.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from ninja import Field, FilterLookup, FilterSchema, Schema
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ModelWrapValidatorHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from api.query_params import DB_INT_MAX, did_you_mean
from chargers.default_csms import default_csms_url
from chargers.evse_layout import EvseSpec, check_evse
from chargers.models import Charger, ConfigurationKey, Evse
from locations.models import MAX_ROTATION_MINUTES, ArrivalProfile, Location, VehicleShare
from simulator.contract import StatusName, overrides, traffic
from vehicles.models import VehicleModel


def doc(model: type[models.Model], name: str, extra: str = "") -> str:
    """The model field's label and help text, as the admin shows them."""
    field = model._meta.get_field(name)
    text = str(getattr(field, "verbose_name", name))
    help_text = str(getattr(field, "help_text", ""))
    text = f"{text[:1].upper()}{text[1:]}."
    if help_text:
        text += f" {help_text}"
    return f"{text} {extra}".strip()


def default(model: type[models.Model], name: str) -> Any:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)  # a column, not a relation
    return field.get_default()


READ_ONLY = (
    "Read-only here: a PUT may send it back as a GET answered it (the stored value is "
    "accepted), but another value is refused (422)."
)
LIVE = (
    "Read-only, and it changes as the simulator runs: a PUT may send back any value, which "
    "is ignored (a GET a moment earlier may have answered an older one)."
)


def read_only(description: str = "", *, live: bool = False) -> Any:
    """A field of a GET's answer that a PUT takes back unchanged (`read_only_fields`), so
    that a script may read a resource, change a field and send it back whole. A `live`
    one (a register, a status, a count) is ignored whatever its value: between the GET
    and the PUT the simulator may have moved it on, and the PUT must not fail for that."""
    extra: dict[str, Any] = {"readOnly": True}
    if live:
        extra["x-ignored"] = True
    return Field(
        None,
        description=f"{description} {LIVE if live else READ_ONLY}".strip(),
        json_schema_extra=extra,
    )


def read_only_fields(schema: type[Schema], *, live: bool = False) -> list[str]:
    """The read-only fields of a PUT's body; with `live`, only those ignored whatever
    their value."""
    return [
        name
        for name, info in schema.model_fields.items()
        if isinstance(info.json_schema_extra, dict)
        and info.json_schema_extra.get("readOnly")
        and (not live or info.json_schema_extra.get("x-ignored"))
    ]


def nullable(model: type[models.Model], name: str) -> bool:
    """Whether a PATCH may set a field to null: a column that may be empty (a location's
    coordinates, a charger's default vehicle); a field that is no column (a charger's
    evses and configuration, a location's arrival profile) is the writer's to decide."""
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return True
    return bool(getattr(field, "null", True))


def patch_schema(model: type[models.Model]) -> Any:
    """A PATCH body's `json_schema_extra`: its fields are optional (left out: unchanged),
    but only those `nullable` take null, as the API answers (a null `vendor` is refused:
    "leave it out to keep it"). pydantic writes each as `anyOf [type, null]` with default
    null; the document says what the server takes, so that a generated client does not
    send a null it will have refused."""

    def not_null(schema: dict[str, Any]) -> None:
        for name, field in schema.get("properties", {}).items():
            if nullable(model, name) or "anyOf" not in field:
                continue
            kinds = [kind for kind in field.pop("anyOf") if kind != {"type": "null"}]
            if len(kinds) == 1:
                field.update(kinds[0])
            else:
                field["anyOf"] = kinds
            if field.get("default", ...) is None:
                del field["default"]

    return not_null


def json_kind(annotation: Any) -> str | None:
    """ "int", "float" or "bool" for a field that takes only numbers, or only booleans (or
    null), else None: one that takes text too (a configuration value) is none of them."""
    if get_origin(annotation) is Annotated:
        return json_kind(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = {json_kind(arm) for arm in get_args(annotation) if arm is not type(None)}
        if len(kinds) == 1 and kinds <= {"int", "bool"}:
            return kinds.pop()
        return "float" if kinds and kinds <= {"int", "float"} else None
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    return "float" if annotation is float else None


# pydantic's own words for its type errors (the API's 422 gives the admin's for numbers);
# a boolean's says what it takes, as its lax mode read "no", "off", "0" and 0 as false.
_JSON_TYPE_ERRORS = {
    "int": "Input should be a valid integer",
    "float": "Input should be a valid number",
    "bool": "Input should be a JSON boolean: true or false",
}


def json_type(model: type[BaseModel], name: str, value: Any) -> None:
    """Refuse a boolean or a string for a number field of `model`, and anything but true or
    false for a boolean field: pydantic's lax mode reads `false` as 0 and "22" as 22
    (`{"connector_id": true}` acted on connector 1), and "no", "off", "0" or 0 as false
    (`{"auto_connect": "no"}`). A JSON body has numbers and booleans; a query parameter is
    text on the wire and keeps its conversion (its schemas are not these)."""
    field = model.model_fields.get(name)
    kind = None if field is None else json_kind(field.annotation)
    if kind is None or value is None:
        return
    wrong = not isinstance(value, bool) if kind == "bool" else isinstance(value, bool | str)
    if wrong:
        raise PydanticCustomError(f"{kind}_type", _JSON_TYPE_ERRORS[kind])


class JsonTypes(Schema):
    """A part of a request body whose numbers and booleans must be JSON's (`json_type`)."""

    @field_validator("*", mode="before")
    @classmethod
    def a_json_type(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is not None:
            json_type(cls, info.field_name, value)
        return value


class Strict(JsonTypes):
    """A request body: a name it does not know is refused (422, "Not an argument of this
    request"), as the actions' are, not ignored; a misspelt field would otherwise answer
    200 for a change that did not happen. Its numbers and booleans are JSON's."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="wrap")
    @classmethod
    def _named_typos(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        """A name this body does not take is answered with the nearest it does ("did you
        mean 'enabled'?"), as a query parameter's is: pydantic knows the names here only."""
        try:
            return handler(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if not any(_own_extra(e) for e in errors):
                raise
            known = {field.alias or name for name, field in cls.model_fields.items()}
            again: list[InitErrorDetails] = [
                {
                    "type": PydanticCustomError(
                        "unknown_name",
                        "Not an argument of this request: {hint}",
                        {"hint": did_you_mean(str(e["loc"][0]), known)},
                    )
                    if _own_extra(e)
                    else PydanticCustomError(e["type"], e["msg"]),
                    "loc": e["loc"],
                    "input": e["input"],
                }
                for e in errors
            ]
            raise ValidationError.from_exception_data(exc.title, again) from None


def _own_extra(error: Mapping[str, Any]) -> bool:
    """A name the model that raised `error` does not take (not one of a nested model's,
    which that model has named already)."""
    return error["type"] == "extra_forbidden" and len(error["loc"]) == 1


# -- locations ------------------------------------------------------------------------


class Distribution(JsonTypes):
    kind: str = Field(description="fixed, uniform or normal.", examples=["uniform"])
    a: float = Field(description="fixed: the value; uniform: the min; normal: the mean.")
    b: float = Field(0, description="uniform: the max; normal: the standard deviation.")


class VehicleWeight(JsonTypes):
    vehicle: int = Field(description="The id of a vehicle model.")
    weight: float = Field(description=doc(VehicleShare, "weight"))


def _distribution(prefix: str, given: traffic.DistributionDict, extra: str) -> Any:
    return Field(
        Distribution(**given),
        description=doc(ArrivalProfile, f"{prefix}_distribution", extra),
    )


class ArrivalProfileIn(Strict):
    """A location's background traffic (`runsimulator --traffic`); fields not given take
    the default profile's values (a typical public AC site)."""

    enabled: bool = Field(True, description=doc(ArrivalProfile, "enabled"))
    hourly_arrivals: list[float] = Field(
        default_factory=lambda: list(traffic.DEFAULT_HOURLY_ARRIVALS),
        description=doc(ArrivalProfile, "hourly_arrivals"),
    )
    vehicle_mix: list[VehicleWeight] = Field(
        default_factory=list,
        description="Weights over vehicle models; empty: every vehicle model alike.",
    )
    soc: Distribution = _distribution("soc", traffic.DEFAULT_SOC, "")
    target_soc: Distribution = _distribution("target", traffic.DEFAULT_TARGET_SOC, "")
    dwell_minutes: Distribution = _distribution("dwell", traffic.DEFAULT_DWELL, "")
    id_tags: str = Field(traffic.DEFAULT_ID_TAGS, description=doc(ArrivalProfile, "id_tags"))
    never_unplug_share: float = Field(
        traffic.DEFAULT_NEVER_UNPLUG, description=doc(ArrivalProfile, "never_unplug_share")
    )


class ArrivalProfileOut(Schema):
    enabled: bool
    hourly_arrivals: list[float]
    vehicle_mix: list[VehicleWeight]
    soc: Distribution
    target_soc: Distribution
    dwell_minutes: Distribution
    id_tags: str
    never_unplug_share: float

    @staticmethod
    def resolve_hourly_arrivals(obj: ArrivalProfile) -> list[float]:
        # A row the admin saved from a text of 24 numbers before they were kept as a list.
        return traffic.check_hourly(obj.hourly_arrivals)

    @staticmethod
    def resolve_vehicle_mix(obj: ArrivalProfile) -> list[dict[str, Any]]:
        return [{"vehicle": s.vehicle_id, "weight": s.weight} for s in obj.vehicle_mix.all()]

    @staticmethod
    def resolve_soc(obj: ArrivalProfile) -> dict[str, Any]:
        return {"kind": obj.soc_distribution, "a": obj.soc_a, "b": obj.soc_b}

    @staticmethod
    def resolve_target_soc(obj: ArrivalProfile) -> dict[str, Any]:
        return {"kind": obj.target_distribution, "a": obj.target_a, "b": obj.target_b}

    @staticmethod
    def resolve_dwell_minutes(obj: ArrivalProfile) -> dict[str, Any]:
        return {"kind": obj.dwell_distribution, "a": obj.dwell_a, "b": obj.dwell_b}


ARRIVAL_PROFILE = (
    "The site's background traffic (arrival profile), or null for none (then "
    "`runsimulator --traffic` uses the default profile). Given: replaces the stored one "
    "whole (its fields not given take the defaults)."
)


class LocationIn(Strict):
    name: str = Field(description=doc(Location, "name", "Unique."))
    address: str = Field("", description=doc(Location, "address"))
    city: str = Field("", description=doc(Location, "city"))
    country: str = Field("", description=doc(Location, "country"))
    latitude: float | None = Field(None, description=doc(Location, "latitude"))
    longitude: float | None = Field(None, description=doc(Location, "longitude"))
    time_zone: str = Field("UTC", description=doc(Location, "time_zone", "An IANA name."))
    grid_limit_kw: float | None = Field(None, description=doc(Location, "grid_limit_kw"))
    load_management: bool = Field(False, description=doc(Location, "load_management"))
    rotation_minutes: int = Field(
        15, ge=0, le=MAX_ROTATION_MINUTES, description=doc(Location, "rotation_minutes")
    )
    arrival_profile: ArrivalProfileIn | None = Field(
        None, description=ARRIVAL_PROFILE + " Omitted from a PUT: removed."
    )


class LocationPut(LocationIn):
    """A PUT's body: a location, and what a GET answers besides (read-only)."""

    id: int | None = read_only()
    chargers: int | None = read_only("How many chargers it has.", live=True)


class LocationPatch(Strict):
    model_config = ConfigDict(json_schema_extra=patch_schema(Location))

    name: str | None = Field(None, description=doc(Location, "name", "Unique."))
    address: str | None = Field(None, description=doc(Location, "address"))
    city: str | None = Field(None, description=doc(Location, "city"))
    country: str | None = Field(None, description=doc(Location, "country"))
    latitude: float | None = Field(None, description=doc(Location, "latitude"))
    longitude: float | None = Field(None, description=doc(Location, "longitude"))
    time_zone: str | None = Field(None, description=doc(Location, "time_zone"))
    grid_limit_kw: float | None = Field(None, description=doc(Location, "grid_limit_kw"))
    load_management: bool | None = Field(None, description=doc(Location, "load_management"))
    rotation_minutes: int | None = Field(
        None, ge=0, le=MAX_ROTATION_MINUTES, description=doc(Location, "rotation_minutes")
    )
    arrival_profile: ArrivalProfileIn | None = Field(
        None, description=ARRIVAL_PROFILE + " Omitted: unchanged; null: removed."
    )


class LocationOut(Schema):
    id: int
    name: str
    address: str
    city: str
    country: str
    latitude: float | None
    longitude: float | None
    time_zone: str
    grid_limit_kw: float | None
    load_management: bool
    rotation_minutes: int
    chargers: int = Field(alias="charger_count", description="How many chargers it has.")
    arrival_profile: ArrivalProfileOut | None = Field(description=ARRIVAL_PROFILE)

    @staticmethod
    def resolve_arrival_profile(obj: Location) -> ArrivalProfile | None:
        try:
            return obj.arrival_profile
        except ArrivalProfile.DoesNotExist:
            return None


class LocationFilters(FilterSchema):
    q: Annotated[str | None, FilterLookup(["name__icontains", "city__icontains"])] = Field(
        None, description="Part of the name or the city (any letter case)."
    )
    country: Annotated[str | None, FilterLookup("country__iexact")] = Field(
        None, description="A two-letter country code."
    )


# -- vehicle models -------------------------------------------------------------------


class VehicleModelIn(Strict):
    make: str = Field(description=doc(VehicleModel, "make"))
    model: str = Field(description=doc(VehicleModel, "model", "Make and model are unique."))
    capacity_kwh: float = Field(description=doc(VehicleModel, "capacity_kwh"))
    ac_max_kw: float = Field(description=doc(VehicleModel, "ac_max_kw"))
    ac_phases: int = Field(
        default(VehicleModel, "ac_phases"), description=doc(VehicleModel, "ac_phases", "1 or 3.")
    )
    dc_max_kw: float = Field(
        default(VehicleModel, "dc_max_kw"), description=doc(VehicleModel, "dc_max_kw")
    )
    dc_min_v: float | None = Field(None, description=doc(VehicleModel, "dc_min_v"))
    dc_nominal_v: float | None = Field(None, description=doc(VehicleModel, "dc_nominal_v"))
    dc_max_v: float | None = Field(None, description=doc(VehicleModel, "dc_max_v"))
    charging_curve: list[Any] | str = Field(
        [],  # an AC-only vehicle may do without; the model requires one of a DC-capable one
        description=doc(
            VehicleModel, "charging_curve", 'Or the import\'s text form, "0:100 80:50".'
        ),
    )
    efficiency: float = Field(
        default(VehicleModel, "efficiency"), description=doc(VehicleModel, "efficiency")
    )


class VehicleModelPut(VehicleModelIn):
    """A PUT's body: a vehicle model, and its id as a GET answers it (read-only)."""

    id: int | None = read_only()


class VehicleModelPatch(Strict):
    model_config = ConfigDict(json_schema_extra=patch_schema(VehicleModel))

    make: str | None = Field(None, description=doc(VehicleModel, "make"))
    model: str | None = Field(None, description=doc(VehicleModel, "model"))
    capacity_kwh: float | None = Field(None, description=doc(VehicleModel, "capacity_kwh"))
    ac_max_kw: float | None = Field(None, description=doc(VehicleModel, "ac_max_kw"))
    ac_phases: int | None = Field(None, description=doc(VehicleModel, "ac_phases"))
    dc_max_kw: float | None = Field(None, description=doc(VehicleModel, "dc_max_kw"))
    dc_min_v: float | None = Field(None, description=doc(VehicleModel, "dc_min_v"))
    dc_nominal_v: float | None = Field(None, description=doc(VehicleModel, "dc_nominal_v"))
    dc_max_v: float | None = Field(None, description=doc(VehicleModel, "dc_max_v"))
    charging_curve: list[Any] | str | None = Field(
        None, description=doc(VehicleModel, "charging_curve")
    )
    efficiency: float | None = Field(None, description=doc(VehicleModel, "efficiency"))


class VehicleModelOut(Schema):
    id: int
    make: str
    model: str
    capacity_kwh: float
    ac_max_kw: float
    ac_phases: int
    dc_max_kw: float
    dc_min_v: float | None
    dc_nominal_v: float | None
    dc_max_v: float | None
    charging_curve: list[list[float]]
    efficiency: float


class VehicleModelFilters(FilterSchema):
    q: Annotated[str | None, FilterLookup(["make__icontains", "model__icontains"])] = Field(
        None, description="Part of the make or the model (any letter case)."
    )
    make: Annotated[str | None, FilterLookup("make__iexact")] = Field(
        None, description="The make (any letter case)."
    )


# -- EVSEs and configuration keys -----------------------------------------------------

CONNECTOR_TYPES = ", ".join(Evse.ConnectorType.values)
# Evse.Availability's values (a test holds them equal).
EvseAvailability = Literal["Operative", "Inoperative"]


class EvseIn(Strict):
    connector_type: str = Field(
        description=f"One of {CONNECTOR_TYPES}.", examples=[Evse.ConnectorType.TYPE2]
    )
    max_power_kw: float = Field(description=doc(Evse, "max_power_kw"), examples=[22])


class EvseReplace(EvseIn):
    """An EVSE in a PUT (its own, or in its charger's list), with what a GET answers
    besides: the connector (the path's, or its place in the list) and what the simulator
    keeps (read-only)."""

    connector_id: int | None = read_only(
        "The connector: the path's, or for an item of a charger's list its place (1..N)."
    )
    availability: str | None = read_only("Operative or Inoperative (a CSMS sets it).", live=True)
    status: str | None = read_only(doc(Evse, "status"), live=True)
    register_wh: float | None = read_only(doc(Evse, "register_wh"), live=True)


class EvseCreate(EvseIn):
    connector_id: int | None = Field(
        None,
        description="The next connector, N + 1 (empty takes it): a charger's connectors are "
        "numbered 1..N without gaps.",
    )


class EvsePatch(Strict):
    model_config = ConfigDict(json_schema_extra=patch_schema(Evse))

    connector_id: int | None = Field(
        None,
        description="Renumber the connector, only so that the charger's connectors stay "
        "numbered 1..N without gaps (closing a gap an earlier version left).",
    )
    connector_type: str | None = Field(None, description=f"One of {CONNECTOR_TYPES}.")
    max_power_kw: float | None = Field(None, description=doc(Evse, "max_power_kw"))


class EvseOut(Schema):
    connector_id: int
    connector_type: str
    max_power_kw: float
    availability: EvseAvailability = Field(description="Operative or Inoperative (a CSMS sets it).")
    status: StatusName = Field(description=doc(Evse, "status"))
    register_wh: float = Field(description=doc(Evse, "register_wh"))


def ocpp_text(value: Any) -> Any:
    """A JSON number or boolean as the text OCPP 1.6 sends for it (configuration values
    are strings on the wire): 60 -> "60", 60.0 -> "60", 0.5 -> "0.5", true -> "true". A
    script writing `{"value": 60}` got a 422 for the type. Anything else is left for the
    string check to refuse."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return value


# A configuration value: a string, or a number or boolean taken as its OCPP text.
OcppValue = Annotated[
    str,
    BeforeValidator(ocpp_text),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}),
]
OCPP_TEXT = 'A number or a boolean is stored as OCPP sends it: 60 as "60", true as "true".'


class ConfigurationKeyIn(Strict):
    value: OcppValue = Field(description=doc(ConfigurationKey, "value", OCPP_TEXT))
    readonly: bool = Field(
        False,
        description="Whether the CSMS may not change it (ChangeConfiguration). An OCPP key "
        "ChargeSim knows keeps the protocol's flag, whatever is given (the charger reports it).",
    )


class ConfigurationKeyOut(Schema):
    key: str
    value: str
    readonly: bool


class ConfigurationKeyItem(Strict):
    """A configuration key in a charger's PUT, as a GET lists it: a value other than the
    stored one is set (as in the object form), the same is left as it is."""

    key: str
    value: OcppValue = Field(description=OCPP_TEXT)
    readonly: bool | None = read_only("Whether the CSMS may not change it.")


# -- chargers ------------------------------------------------------------------------

AUTHORIZATION_KEY = (
    "The HTTP Basic password (AuthorizationKey) for security profiles 1 and 2. Write-only: "
    "never returned; omit or null keeps the stored one, an empty string clears it."
)
EVSES = (
    "The charger's EVSEs, numbered from 1 in this order. Omitted: one EVSE of the charger's "
    "power (new charger) or the stored EVSEs (update); meter registers of the connectors "
    "that stay are kept."
)
CONFIGURATION = (
    'OCPP configuration keys to set, e.g. {"HeartbeatInterval": "60"}, checked as the '
    "import checks its configuration column; keys not named keep their values. " + OCPP_TEXT
)


def _charger(name: str, extra: str = "") -> Any:
    return Field(default(Charger, name), description=doc(Charger, name, extra))


def _default_csms_url() -> str:
    # Read at each request, not at import: the setting is the simulator's (a test or a
    # deployment may change it), and `runsimulator --demo` starts its CSMS after import.
    return default_csms_url()


def evse_problems(
    item: Mapping[str, Any], power_type: str | None
) -> tuple[EvseSpec | None, list[str]]:
    """An item of a charger's `evses` as the import checks its cell's (every problem of
    it), and whether it fits the charger's power type (None: unknown, not checked)."""
    connector, power = str(item["connector_type"]), item["max_power_kw"]
    return check_evse(connector, str(power), f"{connector}:{power:g}", power_type or None)


_FLOAT = TypeAdapter(float)


def _evse_rule_errors(data: Mapping[str, Any], power_type: str | None) -> list[InitErrorDetails]:
    """The EVSE rules' problems of a body that failed on types, as pydantic errors: the
    well-typed items of its `evses` checked as `fleet_writes.check_charger` checks them."""
    items = data.get("evses")
    if not isinstance(items, list):
        return []
    given = data.get("power_type", power_type)
    power_type = given if given in Charger.PowerType.values else None
    errors: list[InitErrorDetails] = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("connector_type"), str):
            continue
        try:
            power = _FLOAT.validate_python(item.get("max_power_kw"))
        except ValidationError:
            continue  # its own type error is said
        _, problems = evse_problems({**item, "max_power_kw": power}, power_type)
        errors += [
            {"type": PydanticCustomError("evse", p), "loc": ("evses", n), "input": item}
            for p in problems
        ]
    return errors


class ChargerBody(Strict):
    """A charger's body: a wrong type anywhere in it (answered before the EVSE rules are
    checked) does not hide what is wrong with its EVSEs; both are answered."""

    # The power type of a body that gives none (None: the stored one, not known here).
    default_power_type: ClassVar[str | None] = None

    @model_validator(mode="wrap")
    @classmethod
    def _evse_rules_too(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            rules = (
                _evse_rule_errors(data, cls.default_power_type) if isinstance(data, dict) else []
            )
            if not rules:
                raise
            again: list[InitErrorDetails] = [
                {
                    "type": PydanticCustomError(e["type"], e["msg"]),
                    "loc": e["loc"],
                    "input": e["input"],
                }
                for e in exc.errors(include_url=False)
            ]
            raise ValidationError.from_exception_data(exc.title, [*again, *rules]) from None


class ChargerFields(ChargerBody):
    """A charger's own fields, as a POST and a PUT take them."""

    default_power_type: ClassVar[str | None] = default(Charger, "power_type")

    charge_point_id: str = Field(description=doc(Charger, "charge_point_id"), examples=["CP-0001"])
    location: int = Field(description="The id of the charger's location.")
    enabled: bool = _charger("enabled")
    auto_connect: bool = _charger("auto_connect")
    vendor: str = _charger("vendor")
    model: str | None = Field(
        None,
        description=doc(
            Charger,
            "model",
            "Not given or empty: by its power type and power, such as Virtual DC 150 or "
            "Virtual AC 22.",
        ),
    )
    serial_number: str = _charger("serial_number")
    firmware_version: str = _charger("firmware_version")
    power_type: str = _charger("power_type", "AC or DC.")
    max_power_kw: float = _charger("max_power_kw")
    phases: int | None = Field(
        None,
        description=doc(
            Charger,
            "phases",
            f"1 or 3. Not given: 1 for AC up to {Charger.SINGLE_PHASE_MAX_KW:g} kW (a "
            "wallbox), else 3.",
        ),
    )
    nominal_voltage: float = _charger("nominal_voltage")
    csms_url: str = Field(
        default_factory=_default_csms_url,
        description=doc(
            Charger,
            "csms_url",
            "Not given: the simulator's default CSMS (the setting CHARGESIM_DEFAULT_CSMS_URL, "
            "as the admin's form suggests). Empty: none; the charger does not connect.",
        ),
    )
    security_profile: int = _charger("security_profile", "0 to 3.")
    authorization_key: str | None = Field(None, description=AUTHORIZATION_KEY)
    ca_bundle_path: str = _charger("ca_bundle_path")
    client_cert_path: str = _charger("client_cert_path")
    client_key_path: str = _charger("client_key_path")
    default_vehicle: int | None = Field(
        None, description="The id of a vehicle model: " + doc(Charger, "default_vehicle")
    )
    simulate_ev_on_remote_start: bool = _charger("simulate_ev_on_remote_start")
    reject_triggered_boot: bool = _charger("reject_triggered_boot")
    firmware_failure: str = _charger("firmware_failure")
    diagnostics_upload_method: str = _charger("diagnostics_upload_method")
    power_sharing: str = _charger("power_sharing")
    answer_overrides: list[dict[str, Any]] = Field(
        default_factory=list,
        description=doc(Charger, "answer_overrides"),
        examples=[[overrides.EXAMPLE_RULE]],
    )
    network_latency_ms: int = _charger("network_latency_ms")
    network_jitter_ms: int = _charger("network_jitter_ms")
    network_drop_rate: float = _charger("network_drop_rate")
    clock_skew_seconds: float = _charger("clock_skew_seconds")


class ChargerIn(ChargerFields):
    evses: list[EvseIn] | None = Field(None, description=EVSES)
    configuration: dict[str, OcppValue] | None = Field(None, description=CONFIGURATION)


_CONFIGURATION_FORMS: dict[type, TypeAdapter[Any]] = {
    dict: TypeAdapter(dict[str, OcppValue]),
    list: TypeAdapter(list[ConfigurationKeyItem]),
}


def _one_form(value: Any, handler: Any) -> Any:
    """A configuration's object or list form, checked as the one it is: a union's errors
    would name both forms ("configuration.dict[str,...].X") for a mistake in one."""
    form = _CONFIGURATION_FORMS.get(type(value))
    return handler(value) if form is None else form.validate_python(value)


class ChargerPut(ChargerFields):
    """A PUT's body: a charger, and what a GET answers besides (read-only), so that a GET's
    answer, changed, can be sent back. Its `configuration` may be the GET's list too."""

    id: int | None = read_only()
    location_name: str | None = read_only()
    authorization_key_set: bool | None = read_only(
        "Whether an AuthorizationKey is stored (set one with `authorization_key`)."
    )
    created: datetime | None = read_only()
    updated: datetime | None = read_only(live=True)
    evses: list[EvseReplace] | None = Field(None, description=EVSES)
    configuration: Annotated[
        dict[str, OcppValue] | list[ConfigurationKeyItem] | None, WrapValidator(_one_form)
    ] = Field(None, description=CONFIGURATION + " Or a list of keys as a GET answers it.")


class ChargerPatch(ChargerBody):
    """Only the fields given change."""

    model_config = ConfigDict(json_schema_extra=patch_schema(Charger))

    charge_point_id: str | None = Field(None, description=doc(Charger, "charge_point_id"))
    location: int | None = Field(None, description="The id of the charger's location.")
    enabled: bool | None = None
    auto_connect: bool | None = None
    vendor: str | None = None
    model: str | None = None
    serial_number: str | None = None
    firmware_version: str | None = None
    power_type: str | None = Field(None, description="AC or DC.")
    max_power_kw: float | None = None
    phases: int | None = Field(None, description="1 or 3.")
    nominal_voltage: float | None = None
    csms_url: str | None = Field(None, description=doc(Charger, "csms_url"))
    security_profile: int | None = Field(None, description="0 to 3.")
    authorization_key: str | None = Field(None, description=AUTHORIZATION_KEY)
    ca_bundle_path: str | None = None
    client_cert_path: str | None = None
    client_key_path: str | None = None
    default_vehicle: int | None = Field(None, description="The id of a vehicle model, or null.")
    simulate_ev_on_remote_start: bool | None = None
    reject_triggered_boot: bool | None = None
    firmware_failure: str | None = Field(None, description=doc(Charger, "firmware_failure"))
    diagnostics_upload_method: str | None = Field(
        None, description=doc(Charger, "diagnostics_upload_method")
    )
    power_sharing: str | None = Field(None, description=doc(Charger, "power_sharing"))
    answer_overrides: list[dict[str, Any]] | None = Field(
        None,
        description=doc(Charger, "answer_overrides", "Replaces the stored list ([] clears it)."),
        examples=[[overrides.EXAMPLE_RULE]],
    )
    network_latency_ms: int | None = Field(None, description=doc(Charger, "network_latency_ms"))
    network_jitter_ms: int | None = Field(None, description=doc(Charger, "network_jitter_ms"))
    network_drop_rate: float | None = Field(None, description=doc(Charger, "network_drop_rate"))
    clock_skew_seconds: float | None = Field(None, description=doc(Charger, "clock_skew_seconds"))
    evses: list[EvseIn] | None = Field(None, description=EVSES)
    configuration: dict[str, OcppValue] | None = Field(None, description=CONFIGURATION)


class ChargerOut(Schema):
    id: int
    charge_point_id: str
    location: int = Field(alias="location_id")
    location_name: str = Field(alias="location.name")
    enabled: bool
    auto_connect: bool
    vendor: str
    model: str
    serial_number: str
    firmware_version: str
    power_type: str
    max_power_kw: float
    phases: int
    nominal_voltage: float
    csms_url: str
    security_profile: int
    authorization_key_set: bool = Field(
        description="Whether an AuthorizationKey is stored (the key itself is never returned)."
    )
    ca_bundle_path: str
    client_cert_path: str
    client_key_path: str
    default_vehicle: int | None = Field(alias="default_vehicle_id")
    simulate_ev_on_remote_start: bool
    reject_triggered_boot: bool
    firmware_failure: str
    diagnostics_upload_method: str
    power_sharing: str
    answer_overrides: list[dict[str, Any]]
    network_latency_ms: int
    network_jitter_ms: int
    network_drop_rate: float
    clock_skew_seconds: float
    created: datetime
    updated: datetime
    evses: list[EvseOut]

    @staticmethod
    def resolve_authorization_key_set(obj: Charger) -> bool:
        return bool(obj.authorization_key)

    @staticmethod
    def resolve_evses(obj: Charger) -> list[Evse]:
        return list(obj.evses.all())


class ChargerDetail(ChargerOut):
    configuration: list[ConfigurationKeyOut]

    @staticmethod
    def resolve_configuration(obj: Charger) -> list[ConfigurationKey]:
        return list(obj.configuration.all())


class WorkerNote(Schema):
    reached: bool = Field(description="Whether the change reached a running simulator worker.")
    message: str = Field(examples=["CP-0001 connected."])


WORKERS = (
    "What the simulator workers did with the change, as the admin reports it after a save "
    "(null when the request asked not to wait: `wait=false`)."
)


class ChargerWritten(Schema):
    charger: ChargerDetail
    workers: list[WorkerNote] | None = Field(None, description=WORKERS)


class EvseWritten(EvseOut):
    workers: list[WorkerNote] | None = Field(None, description=WORKERS)


class ConfigurationKeyWritten(ConfigurationKeyOut):
    workers: list[WorkerNote] | None = Field(None, description=WORKERS)


class ChargerDeleted(Schema):
    charge_point_id: str
    workers: list[WorkerNote] | None = Field(None, description=WORKERS)
    forced: list[str] = Field(
        default_factory=list,
        description="What `?force=true` went past (a transaction in progress, transaction "
        "messages not confirmed), a sentence per charger; empty when nothing was. Whether "
        "the StopTransaction still left is in `workers` (a charger online sends it as it "
        "stops; one offline, or with no worker running it, never does).",
    )


class ChargersIn(Strict):
    items: list[ChargerIn] = Field(description="The chargers to create, all or none.")


class ChargersCreated(Schema):
    items: list[ChargerOut]
    workers: list[WorkerNote] | None = Field(None, description=WORKERS)


class ChargerFilters(FilterSchema):
    location: Annotated[int | None, FilterLookup("location_id")] = Field(
        None, ge=1, le=DB_INT_MAX, description="A location's id."
    )
    charge_point_id: Annotated[str | None, FilterLookup("charge_point_id__icontains")] = Field(
        None, description="Part of the charge point id (any letter case)."
    )
    enabled: bool | None = Field(None, description="Enabled (true) or disabled (false) ones.")
    auto_connect: bool | None = None
    power_type: Annotated[str | None, FilterLookup("power_type__iexact")] = Field(
        None, description="AC or DC."
    )
    # A Literal: a misspelt status (`charging`) is a 422 naming it, not an empty list.
    status: Annotated[StatusName | None, FilterLookup("evses__status")] = Field(
        None, description="Chargers with an EVSE in this status (e.g. Charging), as last saved."
    )
