"""A small, exact compiler from the OCPP 1.6 JSON schemas to straight-line Python validators.

The 78 schema files shipped with the `ocpp` library use a small subset of JSON Schema
draft-04. `compile_schema` turns one schema into the source of a Python function
specialised for it (one `if` per keyword, a nested `for` per array), compiles it once and
returns it. The function returns None for a valid instance and raises `SchemaError` (with
the path of the offending value and the keyword that failed) otherwise.

Verdicts are exactly those of `jsonschema.Draft4Validator(schema)` without a format
checker, except `multipleOf`, which is decided exactly on decimal values (a float is read
as `Decimal(repr(x))`, as the central system side reads numbers as decimals), where
jsonschema's float division would reject `0.3` as a multiple of `0.1`.

A keyword the compiler does not know raises `NotImplementedError`: a schema is either
checked completely or not compiled at all.
"""

from __future__ import annotations

import itertools
import json
import linecache
import math
import re
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from decimal import Context, Decimal, InvalidOperation
from fractions import Fraction
from functools import cache
from numbers import Number
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

import ocpp.v16

SCHEMA_DIR = Path(ocpp.v16.__file__).parent / "schemas"


class Validator(Protocol):
    """A compiled schema: returns for a valid instance, raises SchemaError otherwise."""

    __name__: str
    __qualname__: str
    __source__: str  # the generated Python, for tests and tracebacks

    def __call__(self, instance: Any, /) -> None: ...


class SchemaError(ValueError):
    """An instance does not satisfy its schema.

    `path` locates the offending value (`meterValue[0].sampledValue[3].measurand`, or the
    root name, `payload` by default); `rule` is the JSON-schema keyword that failed.
    """

    def __init__(self, path: str, rule: str, what: str) -> None:
        super().__init__(f"{path}: {what}")
        self.path = path
        self.rule = rule
        self.what = what

    def __reduce__(self) -> tuple[type[SchemaError], tuple[str, str, str]]:
        return (type(self), (self.path, self.rule, self.what))


# --------------------------------------------------------------------------------------
# Run-time helpers used by the generated code (the error path, and rare slow paths).

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = 4
_short.maxdict = 4
_short_repr = _short.repr


def _format_path(name: str, parts: Iterable[Any]) -> str:
    """Render path parts: a str is a key, an int an index, (seq, item, start) an index
    found by identity (the generated loops do not count, to keep the valid path cheap).

    The first failing item of a loop is also the first item that is the same object, so
    the identity search cannot name an earlier index.
    """
    out: list[str] = []
    for part in parts:
        if type(part) is tuple:
            seq, item, start = part
            index = next((i for i in range(start, len(seq)) if seq[i] is item), "?")
            out.append(f"[{index}]")
        elif type(part) is int:
            out.append(f"[{part}]")
        else:
            out.append(f".{part}" if out else str(part))
    if not out or out[0].startswith("["):
        out.insert(0, name)
    return "".join(out)


def _fail(name: str, parts: tuple[Any, ...], rule: str, what: str) -> SchemaError:
    return SchemaError(_format_path(name, parts), rule, what)


def _missing(
    name: str, parts: tuple[Any, ...], instance: Mapping[Any, Any], required: tuple[str, ...]
) -> SchemaError:
    key = next(key for key in required if key not in instance)
    return _fail(name, (*parts, key), "required", "required property missing")


def _extra(
    name: str, parts: tuple[Any, ...], instance: Mapping[Any, Any], allowed: frozenset[str]
) -> SchemaError:
    key = next(key for key in instance if key not in allowed)
    return _fail(name, (*parts, key), "additionalProperties", "additional property not allowed")


def _first(
    name: str,
    enclosing: tuple[tuple[Mapping[Any, Any], frozenset[str], tuple[Any, ...]], ...],
    error: SchemaError,
) -> SchemaError:
    """`error`, unless an enclosing object has a property it does not allow: that is
    reported instead, outermost first, as when unknown properties were checked before
    the known ones (they are counted after them now: see `object_keywords`)."""
    for instance, allowed, parts in enclosing:
        if not instance.keys() <= allowed:
            return _extra(name, parts, instance, allowed)
    return error


def _unbool(element: Any, true: object = object(), false: object = object()) -> Any:
    if element is True:
        return true
    if element is False:
        return false
    return element


def _json_equal(one: Any, two: Any) -> bool:
    """jsonschema's `_utils.equal`: Python equality, except that True != 1 and False != 0."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(
            _json_equal(i, j) for i, j in zip(one, two, strict=True)
        )
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return len(one) == len(two) and all(
            key in two and _json_equal(value, two[key]) for key, value in one.items()
        )
    return bool(_unbool(one) == _unbool(two))


def _enum_ok(instance: Any, members: tuple[Any, ...]) -> bool:
    return any(_json_equal(member, instance) for member in members)


# Our own context: a caller's decimal context (precision, traps) must not change verdicts.
_DECIMAL = Context(prec=28, traps=[InvalidOperation])


def _not_multiple(instance: Any, step: Decimal, exact_step: Fraction) -> bool:
    """Whether a number is not a multiple of `step`, decided on its decimal value."""
    if isinstance(instance, float):
        if not math.isfinite(instance):
            return True
        value = Decimal(float.__repr__(instance))
    elif isinstance(instance, int):
        value = Decimal(int(instance))
    elif isinstance(instance, Decimal):
        if not instance.is_finite():
            return True
        value = instance
    else:
        try:
            return Fraction(instance) % exact_step != 0
        except (TypeError, ValueError, OverflowError):
            return True
    try:
        return _DECIMAL.remainder(value, step) != 0
    except InvalidOperation:  # the quotient has more digits than the context: go exact
        return Fraction(value) % exact_step != 0


_RUNTIME: dict[str, Any] = {
    "isinstance": isinstance,
    "type": type,
    "len": len,
    "str": str,
    "int": int,
    "float": float,
    "dict": dict,
    "list": list,
    "Number": Number,
    "_r": _short_repr,
    "_fail": _fail,
    "_missing": _missing,
    "_extra": _extra,
    "_first": _first,
    "_enum_ok": _enum_ok,
    "_not_multiple": _not_multiple,
}

# --------------------------------------------------------------------------------------
# The compiler.

# Keywords without effect on validity: annotations, `definitions` (reached through
# `$ref` only) and `format` (Draft4Validator checks formats only with a format checker).
_IGNORED = frozenset(
    {"$schema", "$id", "id", "title", "description", "javaType", "definitions", "format"}
)
# `id`/`$id` below the root would change what a `$ref` resolves against.
_ROOT_ONLY = frozenset({"$id", "id"})

_GROUPS: dict[str, tuple[str, ...]] = {
    "object": ("required", "additionalProperties", "properties"),
    "array": ("minItems", "maxItems", "items", "additionalItems"),
    "string": ("maxLength", "minLength", "pattern"),
    "number": ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf"),
}
_KNOWN = _IGNORED | {"$ref", "type", "enum"} | {kw for kws in _GROUPS.values() for kw in kws}

_GROUP_OF_TYPE: dict[str, str | None] = {
    "object": "object",
    "array": "array",
    "string": "string",
    "integer": "number",
    "number": "number",
    "boolean": None,
    "null": None,
}

# "{v} is not of this type", as in jsonschema's draft-04 type checker: bool is neither an
# integer nor a number; 1.0 is a number but not an integer; subclasses count.
_NOT_TYPE = {
    "object": "not isinstance({v}, dict)",
    "array": "not isinstance({v}, list)",
    "string": "not isinstance({v}, str)",
    "boolean": "{v} is not True and {v} is not False",
    "null": "{v} is not None",
    "integer": "type({v}) is not int and (not isinstance({v}, int) or {v} is True or {v} is False)",
    "number": (
        "type({v}) is not int and type({v}) is not float"
        " and (not isinstance({v}, Number) or {v} is True or {v} is False)"
    ),
}

# "{v} is of a type the keywords of this group apply to".
_IS_GROUP = {
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "string": "isinstance({v}, str)",
    "number": (
        "(type({v}) is int or type({v}) is float"
        " or isinstance({v}, Number) and {v} is not True and {v} is not False)"
    ),
}


def _indent(lines: list[str], levels: int = 1) -> list[str]:
    pad = "    " * levels
    return [pad + line for line in lines]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _Generator:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.consts: dict[str, Any] = {}
        self.ids = itertools.count(1)
        self.refs: list[str] = []
        # The objects whose properties are being checked and whose unknown properties are
        # counted after them: (variable, allowed keys constant, path parts), outermost first.
        self.enclosing: list[tuple[str, str, str]] = []

    # -- helpers --------------------------------------------------------------------

    def const(self, prefix: str, value: Any) -> str:
        name = f"{prefix}_{next(self.ids)}"
        self.consts[name] = value
        return name

    def var(self, prefix: str = "v") -> str:
        return f"{prefix}{next(self.ids)}"

    @staticmethod
    def parts(parts: list[str]) -> str:
        if len(parts) == 1:
            return f"({parts[0]},)"
        return f"({', '.join(parts)})"

    def raise_(self, parts: list[str], rule: str, what: str) -> str:
        """`what` is a Python expression for the message, evaluated only when raising."""
        return self.raising(f"_fail(NAME, {self.parts(parts)}, {rule!r}, {what})")

    def raising(self, error: str) -> str:
        """Raise `error` (an expression), or what an enclosing object reports first."""
        if not self.enclosing:
            return f"raise {error}"
        enclosing = ", ".join(f"({v}, {keys}, {parts})" for v, keys, parts in self.enclosing)
        return f"raise _first(NAME, ({enclosing},), {error})"

    def resolve(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise NotImplementedError(f"$ref {ref!r}: only local references are supported")
        pointer = unquote(ref[1:])
        target: Any = self.root
        if pointer:
            if not pointer.startswith("/"):
                raise NotImplementedError(f"$ref {ref!r}: not a JSON pointer")
            for token in pointer[1:].split("/"):
                token = token.replace("~1", "/").replace("~0", "~")
                try:
                    target = target[int(token) if isinstance(target, list) else token]
                except (KeyError, IndexError, ValueError, TypeError):
                    raise ValueError(f"$ref {ref!r} does not resolve") from None
        return target

    # -- schemas --------------------------------------------------------------------

    def node(self, schema: Any, v: str, parts: list[str], *, root: bool = False) -> list[str]:
        """Lines (at indentation 0) that check the value in variable `v`."""
        if not isinstance(schema, dict):
            raise NotImplementedError(
                f"a schema must be an object in draft-04, got {type(schema).__name__}"
            )
        for keyword in schema:
            if keyword not in _KNOWN:
                raise NotImplementedError(f"JSON-schema keyword {keyword!r} is not supported")
            if keyword in _ROOT_ONLY and not root:
                raise NotImplementedError(
                    f"JSON-schema keyword {keyword!r} is only supported at the root"
                )

        if "$ref" in schema:  # draft-04: the siblings of $ref are ignored
            ref = schema["$ref"]
            if ref in self.refs:
                raise NotImplementedError(f"recursive $ref {ref!r} is not supported")
            self.refs.append(ref)
            try:
                return self.node(self.resolve(ref), v, parts)
            finally:
                self.refs.pop()

        out: list[str] = []
        types = self.types(schema)
        enum = schema.get("enum")
        if enum is not None and not isinstance(enum, list):
            raise TypeError(f"enum must be an array, got {enum!r}")

        enum_done = False
        if types is not None:
            type_error = self.raise_(
                parts, "type", f"_r({v}) + {' is not of type ' + ', '.join(map(repr, types))!r}"
            )
            if not types:
                return [type_error]
            if types == ["string"] and enum is not None and all(type(m) is str for m in enum):
                # The hot case: a string enumeration. Subclasses of str (StrEnum members)
                # compare as jsonschema does, with ==.
                members = self.const("ENUM", frozenset(enum))
                ordered = self.const("ENUM", tuple(enum))
                enum_error = self.enum_error(v, parts)
                out += [
                    f"if type({v}) is not str:",
                    f"    if not isinstance({v}, str):",
                    f"        {type_error}",
                    f"    if not _enum_ok({v}, {ordered}):",
                    f"        {enum_error}",
                    f"elif {v} not in {members}:",
                    f"    {enum_error}",
                ]
                enum_done = True
            else:
                tests = [_NOT_TYPE[t].format(v=v) for t in types]
                condition = tests[0] if len(tests) == 1 else " and ".join(f"({t})" for t in tests)
                out += [f"if {condition}:", f"    {type_error}"]

        if enum is not None and not enum_done:
            ordered = self.const("ENUM", tuple(enum))
            enum_error = self.enum_error(v, parts)
            strings = [m for m in enum if type(m) is str]
            if strings:
                # A plain str equals no member but a str one, so a set lookup is exact.
                members = self.const("ENUM", frozenset(strings))
                out += [
                    f"if type({v}) is str:",
                    f"    if {v} not in {members}:",
                    f"        {enum_error}",
                    f"elif not _enum_ok({v}, {ordered}):",
                    f"    {enum_error}",
                ]
            else:
                out += [f"if not _enum_ok({v}, {ordered}):", f"    {enum_error}"]

        for group, keywords in _GROUPS.items():
            if not any(keyword in schema for keyword in keywords):
                continue
            generate = getattr(self, f"{group}_keywords")
            if types is None:
                applies = "sometimes"
            else:
                in_group = [t for t in types if _GROUP_OF_TYPE[t] == group]
                if not in_group:  # e.g. additionalProperties on a string: a no-op
                    # Generated and dropped all the same, so that keywords nested in it
                    # are known ones.
                    consts = dict(self.consts)
                    generate(schema, v, parts)
                    self.consts = consts
                    continue
                applies = "always" if len(in_group) == len(types) else "sometimes"
            body = generate(schema, v, parts)
            if not body:
                continue
            if applies == "always":
                out += body
            else:
                out += [f"if {_IS_GROUP[group].format(v=v)}:", *_indent(body)]
        return out

    def types(self, schema: dict[str, Any]) -> list[str] | None:
        if "type" not in schema:
            return None
        declared = schema["type"]
        types = [declared] if isinstance(declared, str) else declared
        if not isinstance(types, list):
            raise TypeError(f"type must be a string or an array, got {declared!r}")
        for name in types:
            if name not in _NOT_TYPE:
                raise NotImplementedError(f"type {name!r} is not supported")
        return list(dict.fromkeys(types))

    def enum_error(self, v: str, parts: list[str]) -> str:
        return self.raise_(parts, "enum", f"_r({v}) + ' is not one of the allowed values'")

    # -- keywords by instance type ----------------------------------------------------

    def object_keywords(self, schema: dict[str, Any], v: str, parts: list[str]) -> list[str]:
        out: list[str] = []
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise TypeError(f"properties must be an object, got {properties!r}")
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
            raise TypeError(f"required must be an array of strings, got {required!r}")
        required = list(dict.fromkeys(required))
        additional = schema.get("additionalProperties", True)
        if not isinstance(additional, (bool, dict)):
            raise TypeError(f"additionalProperties must be a boolean or a schema: {additional!r}")

        if required:
            names = self.const("REQUIRED", tuple(required))
            condition = " or ".join(f"{key!r} not in {v}" for key in required)
            error = f"_missing(NAME, {self.parts(parts)}, {v}, {names})"
            out += [f"if {condition}:", f"    {self.raising(error)}"]
        # Without unknown properties, an object has as many keys as known ones present.
        # Counting those costs a fraction of `v.keys() <= allowed` (a MeterValues has an
        # object per sampled value), so the count is compared once the properties are
        # checked, and `raising` reports an unknown property first, as it was before.
        counted = additional is False and bool(properties) and set(required) <= set(properties)
        allowed = self.const("KEYS", frozenset(properties)) if additional is False else ""
        if additional is False and not counted:
            condition = f"not {v}.keys() <= {allowed}" if properties else v
            error = f"_extra(NAME, {self.parts(parts)}, {v}, {allowed})"
            out += [f"if {condition}:", f"    {self.raising(error)}"]
        count: str | int = len(required)  # the known keys present: a variable if it varies
        if counted:
            if len(properties) > len(required):
                count = self.var("n")
                out.append(f"{count} = {len(required)}")
            self.enclosing.append((v, allowed, self.parts(parts)))
        for key, subschema in properties.items():
            w = self.var()
            body = self.node(subschema, w, [*parts, repr(key)])
            if key in required:  # present: checked just above
                if body:
                    out += [f"{w} = {v}[{key!r}]", *body]
            elif counted:
                fetch = [f"{w} = {v}[{key!r}]", *body] if body else []
                out += [f"if {key!r} in {v}:", f"    {count} += 1", *_indent(fetch)]
            elif body:
                out += [f"if {key!r} in {v}:", f"    {w} = {v}[{key!r}]", *_indent(body)]
        if counted:
            self.enclosing.pop()
            error = f"_extra(NAME, {self.parts(parts)}, {v}, {allowed})"
            out += [f"if len({v}) != {count}:", f"    {self.raising(error)}"]
        if isinstance(additional, dict):
            k, w = self.var("k"), self.var()
            body = self.node(additional, w, [*parts, k])
            if body:
                known = self.const("KEYS", frozenset(properties))
                out += [
                    f"for {k} in {v}:",
                    f"    if {k} not in {known}:",
                    f"        {w} = {v}[{k}]",
                    *_indent(body, 2),
                ]
        return out

    def length_keywords(
        self,
        schema: dict[str, Any],
        v: str,
        parts: list[str],
        shown: str,
        checks: tuple[tuple[str, str, str], ...],
    ) -> list[str]:
        """min/max on len(): minItems/maxItems, minLength/maxLength (a minimum of 0 is no
        check at all)."""
        out: list[str] = []
        for keyword, comparison, message in checks:
            if keyword in schema:
                limit = schema[keyword]
                if not _is_count(limit):
                    raise TypeError(f"{keyword} must be a non-negative integer, got {limit!r}")
                if keyword.startswith("min") and limit == 0:
                    continue
                out += [
                    f"if len({v}) {comparison} {limit}:",
                    "    " + self.raise_(parts, keyword, f"{shown} + {message.format(limit)}"),
                ]
        return out

    def array_keywords(self, schema: dict[str, Any], v: str, parts: list[str]) -> list[str]:
        out = self.length_keywords(
            schema,
            v,
            parts,
            f"str(len({v}))",
            (
                ("minItems", "<", "' items, fewer than the minimum of {}'"),
                ("maxItems", ">", "' items, more than the maximum of {}'"),
            ),
        )

        items = schema.get("items", {})
        additional = schema.get("additionalItems", True)
        if not isinstance(additional, (bool, dict)):
            raise TypeError(f"additionalItems must be a boolean or a schema: {additional!r}")
        if isinstance(items, dict):
            w = self.var()
            body = self.node(items, w, [*parts, f"({v}, {w}, 0)"])
            if body:
                out += [f"for {w} in {v}:", *_indent(body)]
            if isinstance(additional, dict):  # no-op next to a single items schema
                self.node(additional, "_", parts)
        elif isinstance(items, list):
            for index, subschema in enumerate(items):
                w = self.var()
                body = self.node(subschema, w, [*parts, str(index)])
                if body:
                    out += [f"if len({v}) > {index}:", f"    {w} = {v}[{index}]", *_indent(body)]
            count = len(items)
            if additional is False:
                what = f"str(len({v})) + ' items, more than the {count} allowed'"
                out += [
                    f"if len({v}) > {count}:",
                    "    " + self.raise_(parts, "additionalItems", what),
                ]
            elif isinstance(additional, dict):
                w = self.var()
                body = self.node(additional, w, [*parts, f"({v}, {w}, {count})"])
                if body:
                    out += [f"for {w} in {v}[{count}:]:", *_indent(body)]
        else:
            raise TypeError(f"items must be a schema or an array of schemas, got {items!r}")
        return out

    def string_keywords(self, schema: dict[str, Any], v: str, parts: list[str]) -> list[str]:
        out = self.length_keywords(
            schema,
            v,
            parts,
            f"_r({v})",
            (
                ("maxLength", ">", "' is longer than {} characters'"),
                ("minLength", "<", "' is shorter than {} characters'"),
            ),
        )
        if "pattern" in schema:
            pattern = schema["pattern"]
            if not isinstance(pattern, str):
                raise TypeError(f"pattern must be a string, got {pattern!r}")
            compiled = self.const("PATTERN", re.compile(pattern))
            what = f"_r({v}) + {' does not match ' + repr(pattern)!r}"
            out += [
                f"if {compiled}.search({v}) is None:",
                "    " + self.raise_(parts, "pattern", what),
            ]
        return out

    def number_keywords(self, schema: dict[str, Any], v: str, parts: list[str]) -> list[str]:
        out: list[str] = []
        for keyword in ("exclusiveMinimum", "exclusiveMaximum"):
            if not isinstance(schema.get(keyword, False), bool):
                # draft-06's numeric form: Draft4Validator would silently ignore the bound.
                raise NotImplementedError(f"{keyword} must be a boolean in draft-04")
        for keyword, exclusive, inclusive_op, exclusive_op, words in (
            ("minimum", "exclusiveMinimum", "<", "<=", "less than"),
            ("maximum", "exclusiveMaximum", ">", ">=", "greater than"),
        ):
            if keyword not in schema:
                continue
            bound = schema[keyword]
            if not _is_number(bound) or (isinstance(bound, float) and not math.isfinite(bound)):
                raise TypeError(f"{keyword} must be a number, got {bound!r}")
            literal = repr(bound) if isinstance(bound, (int, float)) else self.const("BOUND", bound)
            if schema.get(exclusive, False):
                operator, relation = exclusive_op, f"{words} or equal to"
            else:
                operator, relation = inclusive_op, words
            what = f"_r({v}) + {f' is {relation} the {keyword} of {bound}'!r}"
            out += [f"if {v} {operator} {literal}:", "    " + self.raise_(parts, keyword, what)]
        if "multipleOf" in schema:
            step = schema["multipleOf"]
            if not _is_number(step) or not step > 0 or not math.isfinite(step):
                raise TypeError(f"multipleOf must be a positive number, got {step!r}")
            decimal_step = Decimal(str(step))
            exact_step = Fraction(decimal_step)
            condition = (
                f"_not_multiple({v}, {self.const('STEP', decimal_step)},"
                f" {self.const('STEP', exact_step)})"
            )
            if exact_step.numerator == 1:  # every integer is a multiple: skip them quickly
                condition = f"type({v}) is not int and {condition}"
            what = f"_r({v}) + {f' is not a multiple of {step}'!r}"
            out += [f"if {condition}:", "    " + self.raise_(parts, "multipleOf", what)]
        return out


def _generate(schema: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    generator = _Generator(schema)
    body = generator.node(schema, "v0", [], root=True)
    consts = {"NAME": name, **generator.consts}
    params = ", ".join([*_RUNTIME, *consts])
    lines = [f"# Validator for {schema.get('title') or name!r}, generated by {__name__}."]
    lines += [f"#   {key} = {value!r}" for key, value in consts.items()]
    lines += [
        f"def _make({params}):",
        "    def validate(v0):",
        *_indent(body, 2),
        "        return None",
        "",
        "    return validate",
        "",
    ]
    return "\n".join(lines), consts


def compile_source(schema: dict[str, Any], *, name: str = "payload") -> str:
    """The Python source `compile_schema` would compile for this schema."""
    return _generate(schema, name)[0]


_filenames = itertools.count(1)


def compile_schema(schema: dict[str, Any], *, name: str = "payload") -> Validator:
    """Compile a draft-04 schema into `validate(instance) -> None`, raising SchemaError.

    `name` labels the root in error paths. Raises NotImplementedError for a keyword this
    compiler does not know. The generated source is in the function's `__source__`.
    """
    source, consts = _generate(schema, name)
    filename = f"<schema_check {next(_filenames)}: {schema.get('title') or name}>"
    # Register the source so that tracebacks and inspect show the generated lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)
    validate = namespace["_make"](**_RUNTIME, **consts)
    validate.__source__ = source
    return validate


@cache
def _schema(name: str) -> dict[str, Any]:
    """`<SCHEMA_DIR>/<name>.json` as read (shared: not to be changed)."""
    with open(SCHEMA_DIR / f"{name}.json", encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


@cache
def load_validator(name: str, *, open_objects: bool = False) -> Validator:
    """The compiled validator of `<SCHEMA_DIR>/<name>.json`, e.g. "MeterValuesResponse".

    `open_objects`: every object of the schema takes properties it does not name (its
    `additionalProperties: false` dropped); the ones it names are checked as ever."""
    schema = _schema(name)
    if open_objects:
        schema = _opened(schema)
    validate = compile_schema(schema)
    validate.__name__ = validate.__qualname__ = f"validate_{name}" + "_open" * open_objects
    return validate


def _opened(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _opened(v) for k, v in schema.items() if k != "additionalProperties"}
    if isinstance(schema, list):
        return [_opened(item) for item in schema]
    return schema


def drop_optional_nulls(name: str, instance: Any) -> list[str]:
    """Remove from `instance` (in place) every null the `<name>` schema allows to be left
    out: a property that its object does not require. The paths of those removed, in the
    form of `SchemaError.path`; a null where a value is required stays (the schema then
    refuses it as ever)."""
    root = _schema(name)
    dropped: list[str] = []
    _drop_nulls(root, root, instance, "", dropped)
    return dropped


def _drop_nulls(
    root: dict[str, Any], node: Any, instance: Any, path: str, dropped: list[str]
) -> None:
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        node = root.get("definitions", {}).get(ref.rpartition("/")[2], {})
    if isinstance(instance, dict):
        properties = node.get("properties", {})
        required = node.get("required", ())
        for key in [k for k, v in instance.items() if v is None and k not in required]:
            if key in properties:  # one it does not name is another rule's to judge
                del instance[key]
                dropped.append(f"{path}.{key}" if path else key)
        for key, child in properties.items():
            if key in instance:
                _drop_nulls(root, child, instance[key], f"{path}.{key}" if path else key, dropped)
    elif isinstance(instance, list) and isinstance(node.get("items"), dict):
        for index, item in enumerate(instance):
            _drop_nulls(root, node["items"], item, f"{path or 'payload'}[{index}]", dropped)


def ints_for_integral_floats(name: str, instance: Any) -> list[str]:
    """Replace in `instance` (in place) every integral float (`300.0`; a Decimal too, as
    a reader with `parse_float=Decimal` gives one) where the `<name>` schema says
    "integer" by the integer it is. The paths of those replaced, in the form of
    `SchemaError.path`; a float with a fraction (`300.5`), beyond 2^53, an infinity or a
    NaN stays (the schema then refuses it as ever).

    Draft-04 has no integral floats among its integers, but JSON does not tell 300.0 from
    300, and the serialisers of many CSMSs (C#, Python) write an integral number that way."""
    root = _schema(name)
    replaced: list[str] = []
    _replace_floats(root, root, instance, "", replaced)
    return replaced


# Beyond 2^53 a float is no exact integer: orjson reads an integer beyond 64 bits as one
# (-2^63 - 1 becomes -2^63.0), which must stay refused, not become the integer next to it.
_EXACT_FLOAT_INTS = 2**53


def _integral(value: Any) -> bool:
    if type(value) is float:
        return value.is_integer() and abs(value) <= _EXACT_FLOAT_INTS
    return (
        type(value) is Decimal
        and value.is_finite()
        and value == value.to_integral_value()
        and abs(value) <= _EXACT_FLOAT_INTS
    )


def _says_integer(root: dict[str, Any], node: Any) -> bool:
    node = _resolved(root, node)
    declared = node.get("type") if isinstance(node, dict) else None
    types = [declared] if isinstance(declared, str) else declared
    # ["integer", "number"] takes 300.0 as a number already.
    return isinstance(types, list) and "integer" in types and "number" not in types


def _resolved(root: dict[str, Any], node: Any) -> Any:
    ref = node.get("$ref") if isinstance(node, dict) else None
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        return root.get("definitions", {}).get(ref.rpartition("/")[2], {})
    return node


def _replace_floats(
    root: dict[str, Any], node: Any, instance: Any, path: str, replaced: list[str]
) -> None:
    node = _resolved(root, node)
    if not isinstance(node, dict):
        return
    if isinstance(instance, dict):
        for key, child in node.get("properties", {}).items():
            if key not in instance:
                continue
            where = f"{path}.{key}" if path else key
            value = instance[key]
            if _integral(value) and _says_integer(root, child):
                instance[key] = int(value)
                replaced.append(where)
            else:
                _replace_floats(root, child, value, where, replaced)
    elif isinstance(instance, list) and isinstance(node.get("items"), dict):
        items = node["items"]
        integer = _says_integer(root, items)
        for index, item in enumerate(instance):
            where = f"{path or 'payload'}[{index}]"
            if integer and _integral(item):
                instance[index] = int(item)
                replaced.append(where)
            else:
                _replace_floats(root, items, item, where, replaced)
