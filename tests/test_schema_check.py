"""The compiled schema validators give Draft4Validator's verdicts on the OCPP 1.6 schemas."""

from __future__ import annotations

import copy
import enum
import json
import pickle
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator

from simulator.ocpp16.schema_check import (
    SCHEMA_DIR,
    SchemaError,
    compile_schema,
    compile_source,
    load_validator,
)
from simulator.ocpp16.wire import SchemaViolation, validate_request

SCHEMA_NAMES = sorted(path.stem for path in SCHEMA_DIR.glob("*.json"))

# Each example checks a valid instance and MUTANTS mutations of it: a few seconds in all.
MAX_EXAMPLES = 12
MUTANTS = 3


@cache
def read_schema(name: str, parse_float: Any = float) -> dict[str, Any]:
    text = (SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text, parse_float=parse_float)


def as_decimals(value: Any) -> Any:
    """The value as the incoming-frame checker sees it: every float a Decimal."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: as_decimals(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_decimals(item) for item in value]
    return value


@cache
def reference(name: str) -> Draft4Validator:
    return Draft4Validator(read_schema(name, parse_float=Decimal))


def ours_accepts(validate: Any, instance: Any) -> bool:
    try:
        validate(instance)
    except SchemaError:
        return False
    return True


def resolve(root: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = root
        for token in schema["$ref"].removeprefix("#/").split("/"):
            target = target[token]
        schema = target
    return schema


# -- valid instances, built from the schema --------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.5, 1.0, 0.3, -2.5])
    | st.text(alphabet="ab1", max_size=3),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3)
    ),
    max_leaves=6,
)


def strings(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if "pattern" in schema:
        text = st.from_regex(schema["pattern"], fullmatch=True)
        return text.filter(lambda s: low <= len(s) and (high is None or len(s) <= high))
    options = [st.text(min_size=low, max_size=min(high, low + 20) if high is not None else None)]
    if high is not None:
        options.append(st.just("é" * high))  # at the limit, counted in code points
    return st.one_of(options)


def numbers(schema: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    step = schema.get("multipleOf")
    options: list[st.SearchStrategy[Any]] = []
    if step is not None:
        exact = Decimal(str(step))
        multiples = st.integers(-100_000, 100_000).map(lambda k: k * exact)
        if integer:
            options.append(multiples.filter(lambda d: d == d.to_integral_value()).map(int))
        else:
            options.append(multiples.map(float))
            if Decimal(1) % exact == 0:
                options.append(st.integers(-(2**40), 2**40))
    elif integer:
        options.append(st.integers(-(2**63), 2**63))
    else:
        options += [
            st.integers(-(2**40), 2**40),
            st.floats(-1e12, 1e12, allow_nan=False),
            st.integers(-10_000, 10_000).map(lambda k: k / 10),
        ]

    def within(x: Any) -> bool:
        if "minimum" in schema:
            low = schema["minimum"]
            if x < low or (schema.get("exclusiveMinimum") and x == low):
                return False
        if "maximum" in schema:
            high = schema["maximum"]
            if x > high or (schema.get("exclusiveMaximum") and x == high):
                return False
        return True

    return st.one_of(options).filter(within)


def valid(root: dict[str, Any], schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    schema = resolve(root, schema)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([valid(root, {**schema, "type": each}) for each in kind])
    if kind == "object":
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        needed = {key: valid(root, properties.get(key, {})) for key in required}
        optional = {
            key: valid(root, subschema)
            for key, subschema in properties.items()
            if key not in needed
        }
        objects = st.fixed_dictionaries(needed, optional=optional)
        extra = schema.get("additionalProperties", True)
        if extra is False:
            return objects
        extras = st.dictionaries(
            st.sampled_from(["extra1", "extra2"]),
            json_values if extra is True else valid(root, extra),
            max_size=2,
        )
        return st.builds(lambda o, e: {**e, **o}, objects, extras)
    if kind == "array":
        items = schema.get("items", {})
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", max(low, 3))
        if isinstance(items, dict):
            return st.lists(valid(root, items), min_size=low, max_size=high)
        head = st.tuples(*(valid(root, item) for item in items)).map(list)
        extra = schema.get("additionalItems", True)
        if extra is False:
            tail: st.SearchStrategy[list[Any]] = st.just([])
        else:
            tail = st.lists(json_values if extra is True else valid(root, extra), max_size=2)
        return st.builds(lambda h, t: h + t, head, tail).filter(lambda a: low <= len(a) <= high)
    if kind == "string":
        return strings(schema)
    if kind in ("integer", "number"):
        return numbers(schema, integer=kind == "integer")
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return json_values


@cache
def valid_instances(name: str) -> st.SearchStrategy[Any]:
    root = read_schema(name)
    return valid(root, root)


# -- mutations -------------------------------------------------------------------------


def sites(
    root: dict[str, Any], schema: dict[str, Any] | None, value: Any, path: tuple[Any, ...]
) -> list[tuple[tuple[Any, ...], dict[str, Any], Any]]:
    """(path, schema, value) for the value and everything inside it."""
    schema = resolve(root, schema) if schema is not None else {}
    found = [(path, schema, value)]
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            found += sites(root, sub, item, (*path, key))
    elif isinstance(value, list):
        items = schema.get("items")
        for index, item in enumerate(value):
            if isinstance(items, dict):
                sub = items
            elif isinstance(items, list) and index < len(items):
                sub = items[index]
            else:
                extra = schema.get("additionalItems")
                sub = extra if isinstance(extra, dict) else None
            found += sites(root, sub, item, (*path, index))
    return found


def replaced(instance: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copied = copy.copy(instance)
    copied[head] = replaced(instance[head], tuple(rest), value)
    return copied


WRONG = [
    "x",
    "Foo",
    "",
    0,
    1,
    -1,
    2**64,
    1.0,
    0.5,
    0.3,
    0.05,
    1e-7,
    12345.678,
    True,
    False,
    None,
    [],
    {},
    ["x"],
    {"k": 1},
]
WRONG_VALUES = st.sampled_from(WRONG)


def replacements(schema: dict[str, Any], value: Any) -> list[Any]:
    """Values aimed at the keywords that apply there (some of them are right)."""
    options: list[Any] = []
    for member in schema.get("enum", [])[:3]:
        if isinstance(member, str):
            options += [member + "X", member.lower(), member.upper(), member]
    if "maxLength" in schema:
        limit = schema["maxLength"]
        options += ["x" * (limit + 1), "é" * limit]
    if "minLength" in schema:
        options.append("x" * max(0, schema["minLength"] - 1))
    if isinstance(value, bool):
        options += [int(value), not value]
    elif isinstance(value, int):
        options += [float(value), value + 1, -value, str(value), True]
    elif isinstance(value, float):
        options += [value + 0.05, value + 0.1, value * 10, int(value), str(value)]
    elif isinstance(value, str):
        options += [value + "x", value[:-1], [value], {value: value}]
    elif isinstance(value, list):
        options += [[], value + value[:1], [*value, None], value[:-1], value[1:]]
    elif isinstance(value, dict):
        options += [{**value, "unknownKey": 1}, dict(list(value.items())[1:])]
    return options


def is_rare(schema: dict[str, Any], value: Any) -> bool:
    if isinstance(value, (list, float)):
        return True
    return "maxLength" in schema or "multipleOf" in schema or "minimum" in schema


@st.composite
def mutated(draw: st.DrawFn, root: dict[str, Any], instance: Any) -> Any:
    for _ in range(draw(st.integers(1, 2))):
        everywhere = sites(root, root, instance, ())
        # Arrays, numbers and bounded strings are few: aim at them half of the time.
        rare = [site for site in everywhere if is_rare(*site[1:])]
        where = st.sampled_from(everywhere)
        path, schema, value = draw(where | st.sampled_from(rare) if rare else where)
        how = draw(st.sampled_from(["replace", "drop", "add"]))
        if how == "drop" and isinstance(value, dict) and value:
            key = draw(st.sampled_from(sorted(value)))
            value = {k: v for k, v in value.items() if k != key}
        elif how == "add" and isinstance(value, dict):
            key = draw(st.sampled_from(["unknownKey", *schema.get("properties", {})]))
            value = {**value, key: draw(st.sampled_from(WRONG))}
        elif how == "add" and isinstance(value, list):
            value = [*value, draw(st.sampled_from([*value[:1], *WRONG]))]
        else:
            aimed = st.sampled_from(replacements(schema, value) or WRONG)
            value = draw(st.one_of(aimed, aimed, WRONG_VALUES))
        instance = replaced(instance, path, value)
    return instance


def reported_by_reference(ref: Draft4Validator, instance: Any) -> set[tuple[str, str]]:
    """(path, keyword) of every error Draft4Validator finds, the path written as ours are
    (ours name the missing or unknown property itself: the reference names its object)."""
    found = set()
    for each in ref.iter_errors(as_decimals(instance)):
        path = "payload"
        for part in each.absolute_path:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        found.add((path.replace("payload.", "", 1), str(each.validator)))
    return found


def check_agreement(validate: Any, ref: Draft4Validator, instance: Any) -> bool:
    expected = ref.is_valid(as_decimals(instance))
    assert ours_accepts(validate, instance) == expected, instance
    if not expected:  # and what ours reports is one of the reference's errors
        with pytest.raises(SchemaError) as caught:
            validate(instance)
        path, rule = caught.value.path, caught.value.rule
        if rule in ("required", "additionalProperties"):
            path = path.rpartition(".")[0] or "payload"
        assert (path, rule) in reported_by_reference(ref, instance), instance
    return expected


# -- every schema file -----------------------------------------------------------------


def test_the_library_ships_78_schemas() -> None:
    assert len(SCHEMA_NAMES) == 78


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_schema_compiles(name: str) -> None:
    validate = load_validator(name)
    assert "def validate(v0):" in validate.__source__
    assert load_validator(name) is validate


@pytest.mark.parametrize("name", SCHEMA_NAMES)
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_verdicts_agree_with_draft4validator(name: str, data: st.DataObject) -> None:
    root = read_schema(name)
    validate, ref = load_validator(name), reference(name)
    instance = data.draw(valid_instances(name), label="valid")
    assert check_agreement(validate, ref, instance), "the strategy should build valid instances"
    for _ in range(MUTANTS):
        check_agreement(validate, ref, data.draw(mutated(root, instance), label="mutated"))


# -- keywords the files do not use (or use in one place only) --------------------------

SYNTHETIC = [
    {"type": ["string", "null"], "minLength": 2, "maxLength": 4},
    {"type": "string", "pattern": "^[A-Z]{2}[0-9]?$"},
    {"type": "integer", "minimum": -2, "maximum": 3, "exclusiveMaximum": True},
    {"type": "number", "minimum": 0.5, "exclusiveMinimum": True, "maximum": 2.5},
    {"type": "number", "multipleOf": 0.25},
    {"type": "integer", "multipleOf": 3},
    {"type": ["integer", "string", "array"], "minimum": 1, "maxLength": 1, "maxItems": 1},
    {"type": "array", "items": [{"type": "integer"}, {"type": "string"}]},
    {"type": "array", "items": [{"type": "boolean"}], "additionalItems": False},
    {"type": "array", "items": [{"type": "string"}], "additionalItems": {"type": "integer"}},
    {"type": "array", "minItems": 2, "maxItems": 3},
    {"type": "object", "additionalProperties": {"type": "integer"}},
    {
        "type": "object",
        "properties": {"a": {"type": "null"}, "b": {"enum": [1, "1", True]}},
        "required": ["a", "c"],
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    },
    {"properties": {"a": {"type": "integer"}}, "required": ["a"], "maxLength": 2},
    {"items": {"type": "string"}, "minItems": 1, "minimum": 2},
    {"enum": [1, 2.5, "a", None, False, [1, True], {"k": 0}]},
    {"type": "object", "properties": {}, "additionalProperties": False},
]


@pytest.mark.parametrize("schema", SYNTHETIC, ids=lambda s: json.dumps(s)[:60])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_verdicts_agree_on_other_draft4_keywords(
    schema: dict[str, Any], data: st.DataObject
) -> None:
    validate, ref = compile_schema(schema), Draft4Validator(as_decimals(schema))
    instance = data.draw(valid(schema, schema) | json_values, label="instance")
    check_agreement(validate, ref, instance)
    for _ in range(MUTANTS):
        check_agreement(validate, ref, data.draw(mutated(schema, instance), label="mutated"))


# -- errors name the path and the keyword ----------------------------------------------


def sampled(measurand: str, **more: str) -> dict[str, str]:
    return {"value": "1", "context": "Sample.Periodic", "measurand": measurand, **more}


def meter_values(*samples: dict[str, str]) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "transactionId": 5,
        "meterValue": [{"timestamp": "2026-11-24T12:00:00.000Z", "sampledValue": list(samples)}],
    }


def error(name: str, instance: Any) -> SchemaError:
    with pytest.raises(SchemaError) as caught:
        load_validator(name)(instance)
    return caught.value


STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}


def test_a_good_frame_passes() -> None:
    assert load_validator("MeterValues")(meter_values(sampled("Voltage", phase="L1-N"))) is None
    assert load_validator("StatusNotification")(STATUS) is None


def test_a_bad_measurand_is_reported_with_its_path() -> None:
    exc = error("MeterValues", meter_values(sampled("SoC"), sampled("Foo"), sampled("Voltage")))
    assert (exc.path, exc.rule) == ("meterValue[0].sampledValue[1].measurand", "enum")
    assert str(exc) == (
        "meterValue[0].sampledValue[1].measurand: 'Foo' is not one of the allowed values"
    )


def test_the_index_is_that_of_the_first_bad_item_even_if_items_are_shared() -> None:
    bad = sampled("Foo")
    exc = error("MeterValues", meter_values(sampled("SoC"), bad, sampled("SoC"), bad))
    assert exc.path == "meterValue[0].sampledValue[1].measurand"


def test_a_missing_property_is_reported() -> None:
    exc = error("StatusNotification", {k: v for k, v in STATUS.items() if k != "connectorId"})
    assert (exc.path, exc.rule, str(exc)) == (
        "connectorId",
        "required",
        "connectorId: required property missing",
    )


@pytest.mark.parametrize("value", [True, 1.0, "1", None])
def test_an_integer_must_be_an_int(value: Any) -> None:
    exc = error("StatusNotification", {**STATUS, "connectorId": value})
    assert (exc.path, exc.rule) == ("connectorId", "type")
    assert not reference("StatusNotification").is_valid({**STATUS, "connectorId": value})


def test_an_unknown_property_is_reported() -> None:
    exc = error("StatusNotification", {**STATUS, "vendor": "x"})
    assert (exc.path, exc.rule) == ("vendor", "additionalProperties")


def test_the_root_is_named_payload_or_as_asked() -> None:
    exc = error("StatusNotification", [])
    assert (exc.path, exc.rule) == ("payload", "type")
    validate = compile_schema({"type": "array", "items": {"type": "integer"}}, name="frame")
    with pytest.raises(SchemaError) as caught:
        validate([1, "2"])
    assert (caught.value.path, caught.value.rule) == ("frame[1]", "type")


@pytest.mark.parametrize(
    ("instance", "path", "rule"),
    [
        ({"status": "Accepted", "certificateHashData": []}, "certificateHashData", "minItems"),
        (
            {
                "status": "Accepted",
                "certificateHashData": [
                    {
                        "hashAlgorithm": "SHA256",
                        "issuerNameHash": "a",
                        "issuerKeyHash": "b",
                        "serialNumber": "s" * 41,
                    }
                ],
            },
            "certificateHashData[0].serialNumber",
            "maxLength",
        ),
        ({"status": "accepted"}, "status", "enum"),
    ],
)
def test_keywords_reached_through_ref(instance: Any, path: str, rule: str) -> None:
    exc = error("GetInstalledCertificateIdsResponse", instance)
    assert (exc.path, exc.rule) == (path, rule)


# An object that allows no unknown property counts its known ones after checking them
# (cheaper than comparing its keys with the allowed ones first): what is reported stays
# what it was when unknown properties were looked for first.

UNKNOWN = ("additionalProperties", "additional property not allowed")
BAD_SAMPLED_VALUES = [
    ({"measurand": "Foo"}, "measurand", ("enum", "'Foo' is not one of the allowed values")),
    ({"unit": 5}, "unit", ("type", "5 is not of type 'string'")),
    ({"value": 1.5}, "value", ("type", "1.5 is not of type 'string'")),
    ({"value": None, "format": "Raw"}, "value", ("type", "None is not of type 'string'")),
    ({"phase": None}, "phase", ("type", "None is not of type 'string'")),
    ({"bogus": "x"}, "bogus", UNKNOWN),
    ({"location": "EV", "extra": 1}, "extra", UNKNOWN),
]


@pytest.mark.parametrize(("change", "key", "reported"), BAD_SAMPLED_VALUES)
def test_a_bad_sampled_value_is_reported_as_before(
    change: dict[str, Any], key: str, reported: tuple[str, str]
) -> None:
    bad = {**sampled("Voltage", unit="V", location="Outlet", phase="L1-N"), **change}
    instance = meter_values(sampled("SoC"), bad, sampled("Voltage"))
    assert not reference("MeterValues").is_valid(instance)
    rule, what = reported
    path = f"meterValue[0].sampledValue[1].{key}"
    with pytest.raises(SchemaViolation) as caught:
        validate_request("MeterValues", instance)
    assert str(caught.value) == f"MeterValues: {path}: {what}"
    assert (error("MeterValues", instance).rule, error("MeterValues", instance).path) == (
        rule,
        path,
    )


def test_a_missing_sampled_value_value_is_reported_as_before() -> None:
    bad = {k: v for k, v in sampled("Voltage", phase="L1-N").items() if k != "value"}
    exc = error("MeterValues", meter_values(sampled("SoC"), {**bad, "bogus": "x"}))
    assert (exc.path, exc.rule) == ("meterValue[0].sampledValue[1].value", "required")


def test_an_unknown_property_is_reported_before_a_bad_known_one() -> None:
    bad = {**sampled("Foo", unit="Watts"), "bogus": "x"}  # also two bad enums
    exc = error("MeterValues", meter_values(sampled("SoC"), bad))
    assert (exc.path, exc.rule) == ("meterValue[0].sampledValue[1].bogus", "additionalProperties")


def test_an_unknown_property_of_an_enclosing_object_is_reported_first() -> None:
    instance = {**meter_values(sampled("SoC"), sampled("Foo")), "vendor": "x"}
    assert (error("MeterValues", instance).path, error("MeterValues", instance).rule) == (
        "vendor",
        "additionalProperties",
    )
    instance = meter_values(sampled("Foo"))
    instance["meterValue"] = [{**instance["meterValue"][0], "note": 1}]
    assert error("MeterValues", instance).path == "meterValue[0].note"
    instance["meterValue"] = [{"timestamp": 5, "note": 1}]  # missing and bad, and unknown
    assert error("MeterValues", instance).rule == "required"
    instance["meterValue"] = [{"timestamp": 5, "sampledValue": [], "note": 1}]
    assert error("MeterValues", instance).path == "meterValue[0].note"


def test_a_required_property_that_is_not_allowed_is_unknown() -> None:
    validate = compile_schema(
        {
            "properties": {"a": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        }
    )
    with pytest.raises(SchemaError) as caught:
        validate({"a": "x", "b": 1})
    assert (caught.value.path, caught.value.rule) == ("b", "additionalProperties")


def test_a_schema_error_survives_pickling() -> None:
    exc = error("StatusNotification", {**STATUS, "status": "Broken"})
    again = pickle.loads(pickle.dumps(exc))
    assert (again.path, again.rule, str(again)) == (exc.path, exc.rule, str(exc))


# -- semantics worth pinning down ------------------------------------------------------


def profile_response(limit: Any) -> dict[str, Any]:
    period = {"startPeriod": 0, "limit": limit}
    schedule = {"chargingRateUnit": "A", "chargingSchedulePeriod": [period]}
    return {"status": "Accepted", "connectorId": 1, "chargingSchedule": schedule}


@pytest.mark.parametrize(
    ("limit", "ok"),
    [
        (16, True),
        (16.0, True),
        (0.3, True),
        (7.7, True),
        (1e30, True),
        (0.35, False),
        (1e-30, False),
        (float("nan"), False),
        (float("inf"), False),
    ],
)
def test_multiple_of_is_decided_on_decimal_values(limit: float, ok: bool) -> None:
    validate = load_validator("GetCompositeScheduleResponse")
    assert ours_accepts(validate, profile_response(limit)) is ok
    if abs(limit) < 1e20:  # beyond, Decimal's 28 digits make jsonschema raise
        assert (
            reference("GetCompositeScheduleResponse").is_valid(as_decimals(profile_response(limit)))
            is ok
        )


def test_jsonschema_on_floats_would_reject_0_3_as_a_multiple_of_0_1() -> None:
    # Why we do not mirror Draft4Validator on float instances for multipleOf.
    with_floats = Draft4Validator(read_schema("GetCompositeScheduleResponse"))
    assert not with_floats.is_valid(profile_response(0.3))


class Phase(enum.StrEnum):
    L1 = "L1"


class Connector(enum.IntEnum):
    FIRST = 1


class Status(enum.StrEnum):
    FAULTED = "Faulted"


def test_str_and_int_subclasses_count_as_their_json_types() -> None:
    frame = {**STATUS, "connectorId": Connector.FIRST, "status": Status.FAULTED}
    assert load_validator("StatusNotification")(frame) is None
    assert reference("StatusNotification").is_valid(frame)
    samples = meter_values(sampled("Voltage", phase=Phase.L1))
    assert load_validator("MeterValues")(samples) is None


ENUM_PROBES = [1, 1.0, True, False, 0, 2.5, "a", "A", None, [1, True], [1, 1], [True, True]]


@pytest.mark.parametrize("value", [*ENUM_PROBES, {}, [], {"k": 0}, {"k": False}, {"k": 0, "j": 0}])
def test_enum_with_non_string_members_compares_like_jsonschema(value: Any) -> None:
    schema = {"enum": [1, 2.5, "a", None, False, [1, True], {"k": 0}]}
    expected = Draft4Validator(schema).is_valid(value)
    assert ours_accepts(compile_schema(schema), value) is expected


def test_object_keywords_on_a_string_are_a_no_op() -> None:
    schema = {"type": "string", "additionalProperties": False, "enum": ["A"]}
    source = compile_source(schema)
    assert "keys()" not in source
    assert compile_schema(schema)("A") is None


def test_additional_items_beside_a_single_items_schema_is_a_no_op() -> None:
    schema = {"type": "array", "items": {"type": "integer"}, "additionalItems": False}
    assert compile_schema(schema)([1, 2, 3]) is None
    assert Draft4Validator(schema).is_valid([1, 2, 3])


def test_siblings_of_ref_are_ignored_as_in_draft4() -> None:
    schema = {"definitions": {"s": {"type": "string"}}, "$ref": "#/definitions/s", "maxLength": 1}
    assert compile_schema(schema)("long") is None
    assert Draft4Validator(schema).is_valid("long")


def test_the_source_is_inspectable() -> None:
    schema = read_schema("StatusNotification")
    validate = compile_schema(schema)
    assert validate.__source__ == compile_source(schema)
    assert "isinstance(" in compile_source(schema)


# -- what it cannot check, it refuses to compile -----------------------------------------


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"type": "object", "patternProperties": {"^a": {}}}, "patternProperties"),
        ({"anyOf": [{"type": "string"}]}, "anyOf"),
        ({"properties": {"a": {"type": "array", "uniqueItems": True}}}, "uniqueItems"),
        ({"type": "string", "additionalProperties": {"not": {}}}, "not"),
        ({"items": {"frobnicate": 1}}, "frobnicate"),
        ({"definitions": {"x": {"const": 1}}, "$ref": "#/definitions/x"}, "const"),
        ({"type": "number", "minimum": 1, "exclusiveMinimum": 1}, "exclusiveMinimum"),
        ({"properties": {"a": {"$id": "x", "type": "string"}}}, "[$]id"),
    ],
)
def test_an_unknown_keyword_raises(schema: dict[str, Any], keyword: str) -> None:
    with pytest.raises(NotImplementedError, match=keyword):
        compile_schema(schema)


def test_a_recursive_or_remote_ref_raises() -> None:
    with pytest.raises(NotImplementedError, match="recursive"):
        compile_schema(
            {"definitions": {"a": {"$ref": "#/definitions/a"}}, "$ref": "#/definitions/a"}
        )
    with pytest.raises(NotImplementedError, match="local"):
        compile_schema({"$ref": "http://example.com/schema.json"})
