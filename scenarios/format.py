"""The scenario file format (docs/scenarios.md): YAML, checked against a JSON Schema.

A file is composed into YAML nodes first (not loaded straight into Python values) so that
every value keeps where it was written: each problem, the schema's or ours, is reported as
`file:line:col: path: message`, line and column counted from 1, the path written as in
the file (`steps[2].wait.timeout`). The schema (scenarios/scenario.schema.json) is the
one authority on shape and types; what it cannot say well (which keys go together in a `wait`
or an `expect`, which variables exist) is checked here, reported the same way.

Variables (`${name}`) are replaced before the schema check, so a `timeout: "${timeout}"`
is checked as the number it becomes. The schema published for editors, who check the file
as written (docs/scenario.schema.json), is made from this one (`scenarios.published_schema`). The runtime variables (the charger's id, its CSMS
URL, ...) are left in place and replaced per charger by the runner.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeGuard

import jsonschema
import yaml
from django.conf import settings

from scenarios.format_errors import Errors as _Errors
from scenarios.format_errors import FormatError, Path_, ScenarioError
from scenarios.format_errors import shown_path as _shown
from scenarios.published_schema import published
from scenarios.template_checks import check_template, check_template_connectors
from scenarios.texts import hiding, storable
from simulator.contract.overrides import (
    ANSWER_STATUSES,
    CALL_ERROR_CODES,
    CUT_MAX_S,
    CUT_MIN_S,
    DELAY_MAX_S,
    check_close,
    check_network,
    check_skew,
    number,
)
from simulator.contract.statuses import FAULT_CODES, fault_info_problem
from simulator.contract.traffic import id_tag_problem

# Filled in per charger by the runner; a file may use them without defining them.
RUNTIME_VARIABLES = frozenset({"charge_point_id", "charger_id", "csms_url", "csms_control"})
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# Which keys go with which variant of a `wait` and an `expect` (the first key found names
# the variant; `status` alone, in an expect, is the connector's status now).
WAIT_VARIANTS: dict[str, frozenset[str]] = {
    "status": frozenset({"connector", "timeout"}),
    "csms_call": frozenset({"payload", "timeout"}),
    "seconds": frozenset(),
}
EXPECT_VARIANTS: dict[str, frozenset[str]] = {
    "csms_call": frozenset({"payload", "within"}),
    "no_csms_call": frozenset({"payload", "within"}),
    "answer": frozenset({"status", "payload", "call_error", "within"}),
    "heartbeat_interval_at_least": frozenset(),
    "answers_within": frozenset(),
    "response_time": frozenset(),
    "connection_kept": frozenset(),
    "status": frozenset({"connector"}),
}
# The percentiles a `response_time` expectation may bound (name -> q); `max` is the slowest.
PERCENTILES: dict[str, float] = {
    "p50": 50.0,
    "p90": 90.0,
    "p95": 95.0,
    "p99": 99.0,
    "p999": 99.9,
    "max": 100.0,
}
TRAFFIC_START_KEYS = frozenset({"duration", "speed", "profile", "wait", "timeout"})
# Step arguments that are durations.
MAX_WAIT_SECONDS = 3600
DURATION_KEYS = frozenset(
    {"timeout", "within", "seconds", "delay", "cut", "answers_within", "duration"}
)
OVERRIDE_ANSWERS = ("status", "call_error", "delay", "no_answer")
# A network step: one of these groups (the conditions go together).
NETWORK_GROUPS: dict[str, frozenset[str]] = {
    "cut": frozenset({"cut"}),
    "close_code": frozenset({"close_code"}),
    "clear": frozenset({"clear"}),
    "conditions": frozenset({"latency_ms", "jitter_ms", "drop_rate"}),
}


# The values (mappings, lists and scalars) a file may hold once its aliases are expanded: a
# 10,000-charger `ids` list fits many times over, and a "billion laughs" file (each alias
# naming a list of the one before) is refused here instead of filling the memory.
MAX_VALUES = 100_000
# How deep a file may nest; PyYAML's composer recurses, and deeper input would exhaust the
# interpreter's stack before our own check could say so.
MAX_DEPTH = 50


@dataclass(frozen=True)
class Step:
    index: int
    kind: str
    args: dict[str, Any]
    line: int
    column: int

    @property
    def label(self) -> str:
        return f"steps[{self.index}] {self.kind}"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int | None
    variables: dict[str, Any]
    chargers: dict[str, Any]
    spread: float
    steps: list[Step]
    source: str
    file: str = "<scenario>"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    # The variables the file declares or names (`${name}`), runtime ones included: what
    # a `--var` may set here.
    uses: frozenset[str] = frozenset()


# -- public ---------------------------------------------------------------------------------


def load(
    path: str | Path, variables: Mapping[str, Any] | None = None, *, shown: str | None = None
) -> Scenario:
    """Read and check a scenario file; raises ScenarioError (with every problem). `shown`:
    the name its messages and results give it (its file name by default: a built-in case's
    path on the server is nobody's business)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ScenarioError(
            [FormatError(str(path), 1, 1, "", f"cannot read it: {reason}")]
        ) from None
    return parse(text, file=shown or path.name, variables=variables)


def parse(
    text: str, *, file: str = "<scenario>", variables: Mapping[str, Any] | None = None
) -> Scenario:
    """Check a scenario's text; `variables` override the file's own (`--var`)."""
    marks: dict[Path_, tuple[int, int]] = {}
    key_marks: dict[Path_, tuple[int, int]] = {}
    data = _compose(text, file, marks, key_marks)
    errors = _Errors(file, marks, key_marks)
    if not isinstance(data, dict):
        errors.add((), "a scenario is a mapping (name, description, chargers, steps)")
        raise ScenarioError(errors.found)
    given = data.get("variables")
    values: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
    said_nul: set[str] = set()  # given variables whose NUL is said at them
    for name, value in (variables or {}).items():
        # The file's own text cannot hold a raw NUL (YAML refuses it); a variable given
        # through the API can, and the run's row could not be stored (PostgreSQL refuses it).
        if _holds_nul(name) or _holds_nul(value):
            errors.add(("variables", storable(str(name))), "holds a NUL character (U+0000)")
            said_nul.add(str(name))
        values[name] = value  # also when refused: no second error, "unknown variable"
    errors.hide = hiding(values)
    written_steps = data.get("steps")  # before the variables are replaced
    uses = set(given) if isinstance(given, dict) else set()
    used_in_file: set[str] = set()  # variables the chargers or steps name
    for part in ("chargers", "steps"):
        if part in data:
            used_in_file.update(unresolved(data[part]))
            uses.update(unresolved(data[part]))
            data[part] = _substitute(data[part], values, (part,), errors)
    broken: set[int] = set()
    for error in _schema_errors(data):
        _add_schema(errors, error)
        path = tuple(error.absolute_path)
        if path[:1] == ("steps",) and len(path) > 1 and isinstance(path[1], int):
            broken.add(path[1])
    steps = data.get("steps")
    if isinstance(steps, list):
        _check_steps(
            steps,
            errors,
            skip=broken,
            id_tags_said=_id_tags_said(written_steps, said_nul),
        )
        _check_traffic_steps(steps, data.get("chargers"), errors, skip=broken)
        check_template_connectors(steps, data.get("chargers"), errors, skip=broken)
    check_template(data.get("chargers"), errors)
    _check_spread(data, errors)
    for part in ("chargers", "steps"):
        _check_finite(data.get(part), (part,), errors)
    # A variable no step uses is still stored with the run (as JSON, which holds no NaN):
    # said at its line. One that is used was said where it is used.
    for name, value in values.items():
        if isinstance(given, dict) and name in given and name not in used_in_file:
            _check_finite(value, ("variables", name), errors)
    if errors.found:
        raise ScenarioError(errors.found)
    spread = duration(data.get("spread", 0))
    steps = [
        Step(
            index=n,
            kind=next(iter(item)),
            args=_args(next(iter(item.values()))),
            line=marks[("steps", n)][0],
            column=marks[("steps", n)][1],
        )
        for n, item in enumerate(data["steps"])
    ]
    return Scenario(
        name=data["name"],
        description=data["description"],
        seed=data.get("seed"),
        variables=values,
        chargers=data["chargers"],
        spread=spread,
        steps=steps,
        source=text,
        file=file,
        raw=data,
        uses=frozenset(str(name) for name in uses),
    )


def duration(value: Any) -> float:
    """Seconds of a checked duration: a number, or "500ms", "30s", "2m", "1h"."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or e.g. '30s'")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a duration")
    return float(match.group(1)) * _UNITS[match.group(2)]


def substitute_runtime(value: Any, values: Mapping[str, Any]) -> Any:
    """Replace the runtime variables left in a step's arguments (per charger)."""
    if isinstance(value, str):
        whole = _VARIABLE.fullmatch(value)
        if whole and whole.group(1) in values:
            return values[whole.group(1)]
        return _VARIABLE.sub(
            lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), value
        )
    if isinstance(value, dict):
        return {key: substitute_runtime(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute_runtime(item, values) for item in value]
    return value


def unresolved(value: Any) -> set[str]:
    """The names of the variables a value's strings hold, at any depth: those a file
    names, or those still left after `substitute_runtime`."""
    if isinstance(value, str):
        return set(_VARIABLE.findall(value))
    if isinstance(value, dict):
        return set().union(*(unresolved(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(unresolved(item) for item in value))
    return set()


def nearest_name(given: str, known: Iterable[str]) -> str | None:
    """The known name a misspelt one most likely meant (None: none is close), for a "did
    you mean" hint: here for variables and OCPP names, in the API for query parameters."""
    close = difflib.get_close_matches(given, list(known), n=1)
    return close[0] if close else None


def unknown_variables(
    variables: Iterable[str], scenarios: Iterable[Scenario]
) -> list[tuple[str, str]]:
    """(name, why) for each given variable no scenario declares or names, said with the
    nearest name that one does: a misspelt override is ignored otherwise, and the run uses
    the file's own value without a word. The runtime variables (`csms_control`, ...)
    describe the CSMS, not a file: a job may give them to every case, used or not."""
    known = set(RUNTIME_VARIABLES).union(*(s.uses for s in scenarios))
    problems = []
    for name in variables:
        if name in known:
            continue
        near = nearest_name(name, sorted(known))
        hint = f" (did you mean {near}?)" if near else ""
        problems.append((name, f"no scenario declares or uses ${{{name}}}{hint}"))
    return problems


def parse_var(text: str) -> tuple[str, Any]:
    """A `--var name=value` option; the value read as a YAML scalar (5 is a number)."""
    name, sep, raw = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"--var {text!r}: use NAME=VALUE (NAME: letters, digits, _)")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, dict | list):
        value = raw
    return name, value


@cache
def schema() -> dict[str, Any]:
    """The loader's schema: for the values once the variables are replaced."""
    path = Path(settings.BASE_DIR) / "scenarios" / "scenario.schema.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@cache
def published_schema() -> dict[str, Any]:
    """The schema for a file as written (docs/scenario.schema.json): a `${var}` in a typed
    value is taken too; the loader's schema refused it, and editors marked valid files."""
    return published(schema())


def step_kinds() -> list[str]:
    return sorted(schema()["$defs"]["step"]["properties"])


# -- YAML nodes -> values, with marks ---------------------------------------------------------


def _compose(
    text: str,
    file: str,
    marks: dict[Path_, tuple[int, int]],
    key_marks: dict[Path_, tuple[int, int]],
) -> Any:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        problem = f"nested too deeply (more than {MAX_DEPTH} levels)"
        raise ScenarioError([FormatError(file, 1, 1, "", problem)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "not valid YAML"
        raise ScenarioError(
            [FormatError(file, line, column, "", f"not valid YAML: {problem}")]
        ) from None
    except yaml.reader.ReaderError as exc:
        # A character YAML does not allow (a control character): where it is, as the other
        # errors say it, rather than PyYAML's character offset.
        at = exc.position
        line = text.count("\n", 0, at) + 1
        column = at - (text.rfind("\n", 0, at) + 1) + 1
        problem = f"not valid YAML: character U+{exc.character:04X} is not allowed"
        raise ScenarioError([FormatError(file, line, column, "", problem)]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([FormatError(file, 1, 1, "", f"not valid YAML: {exc}")]) from None
    if node is None:
        raise ScenarioError([FormatError(file, 1, 1, "", "the file is empty")])
    problems: list[FormatError] = []
    try:
        value = _value(node, (), marks, key_marks, problems, file, 0, [MAX_VALUES])
    except _TooLarge as exc:
        message = f"more than {MAX_VALUES:,} values in all, aliases expanded: too large"
        line, column = exc.mark
        raise ScenarioError([FormatError(file, line, column, _shown(exc.path), message)]) from None
    if problems:
        raise ScenarioError(problems)
    return value


class _TooLarge(Exception):
    """The file's values, aliases expanded, went over MAX_VALUES at `path`."""

    def __init__(self, path: Path_, mark: tuple[int, int]) -> None:
        super().__init__()
        self.path = path
        self.mark = mark


_CONSTRUCTOR = yaml.SafeLoader("")


def _value(
    node: yaml.Node,
    path: Path_,
    marks: dict[Path_, tuple[int, int]],
    key_marks: dict[Path_, tuple[int, int]],
    problems: list[FormatError],
    file: str,
    depth: int,
    left: list[int],
) -> Any:
    """The value of `node`; `left` counts down the values still allowed (MAX_VALUES)."""
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    left[0] -= 1
    if left[0] < 0:
        raise _TooLarge(path, marks[path])
    if depth > MAX_DEPTH:  # an alias loop or absurd nesting
        problems.append(FormatError(file, *marks[path], _shown(path), "nested too deeply"))
        return None
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                problems.append(
                    FormatError(file, line, column, _shown(path), "keys must be plain names")
                )
                continue
            key = str(key_node.value)  # as written: `no:` is the key "no", not False
            child = (*path, key)
            key_marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in result:
                problems.append(
                    FormatError(file, *key_marks[child], _shown(child), "duplicate key")
                )
                continue
            result[key] = _value(
                value_node, child, marks, key_marks, problems, file, depth + 1, left
            )
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _value(item, (*path, n), marks, key_marks, problems, file, depth + 1, left)
            for n, item in enumerate(node.value)
        ]
    try:
        return _CONSTRUCTOR.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        problems.append(FormatError(file, *marks[path], _shown(path), f"not a valid value: {exc}"))
        return None


# -- variables --------------------------------------------------------------------------------


def variable_path(name: object) -> str:
    """The `path` of an error about the given (not the file's) variable `name`."""
    return _shown(("variables", storable(str(name))))


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def _substitute(value: Any, values: Mapping[str, Any], path: Path_, errors: _Errors) -> Any:
    if isinstance(value, str):
        for name in _VARIABLE.findall(value):
            if name not in values and name not in RUNTIME_VARIABLES:
                known = ", ".join(sorted({*values, *RUNTIME_VARIABLES}))
                errors.add(path, f"unknown variable ${{{name}}} (known: {known})")
                errors.unknown_variables.add(path)
        whole = _VARIABLE.fullmatch(value)
        if whole and whole.group(1) in values:
            errors.from_variable[path] = whole.group(1)
            return values[whole.group(1)]
        return _VARIABLE.sub(
            lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), value
        )
    if isinstance(value, dict):
        return {k: _substitute(v, values, (*path, k), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values, (*path, n), errors) for n, v in enumerate(value)]
    return value


# -- checks -----------------------------------------------------------------------------------


def _schema_errors(data: Any) -> list[jsonschema.ValidationError]:
    validator = jsonschema.Draft202012Validator(schema())
    # A text holding a runtime variable (`TAG-${charge_point_id}`) is as long as it becomes
    # per charger, not as written: its length is checked then (an idTag's, by the charger).
    return [
        error
        for error in validator.iter_errors(data)
        if not (
            error.validator == "maxLength"
            and isinstance(error.instance, str)
            and "${" in error.instance
        )
    ]


def _add_schema(errors: _Errors, error: jsonschema.ValidationError) -> None:
    """A schema error said as the file's reader needs it (`_Errors.add`)."""
    path: Path_ = tuple(error.absolute_path)
    if path in errors.unknown_variables:
        return
    custom = error.schema.get("x-error") if isinstance(error.schema, dict) else None
    if custom and _negative_duration(error):
        errors.add(path, "must not be negative")
        return
    kind = error.validator
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        for key in _extra_keys(error):
            errors.add(
                (*path, key),
                f"unknown key '{key}' (expected one of: {', '.join(allowed)})",
                at_key=True,
            )
        return
    if kind == "required":
        missing = str(error.message).split("'")[1] if "'" in str(error.message) else "?"
        errors.add(path, f"missing key '{missing}'")
        return
    if "propertyNames" in error.absolute_schema_path and isinstance(error.instance, str):
        key = error.instance
        if path[:1] == ("steps",) and kind == "enum":
            kinds = ", ".join(str(v) for v in value_list(error.validator_value))
            errors.add((*path, key), f"unknown step kind '{key}' (one of: {kinds})", at_key=True)
        else:
            errors.add((*path, key), custom or f"key '{key}' {_message(error)}", at_key=True)
        return
    if kind in ("minProperties", "maxProperties") and custom:
        errors.add(path, custom)
        return
    if custom:
        errors.add(path, custom)
        return
    errors.add(path, _message(error))


_NEGATIVE_DURATION = re.compile(r"^-[0-9]+(\.[0-9]+)?(ms|s|m|h)$")


def _negative_duration(error: jsonschema.ValidationError) -> bool:
    """A duration refused for its minus sign alone: said so, not "must be a duration"."""
    if error.schema != schema()["$defs"]["duration"]:
        return False
    value = error.instance
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value < 0
    return isinstance(value, str) and _NEGATIVE_DURATION.match(value.strip()) is not None


def value_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _extra_keys(error: jsonschema.ValidationError) -> list[str]:
    allowed = set(error.schema.get("properties", {}))
    return [key for key in error.instance if key not in allowed]


_TYPE_WORDS = {
    "number": "a number",
    "integer": "a whole number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}


def _message(error: jsonschema.ValidationError) -> str:
    kind = error.validator
    value = error.validator_value
    if kind == "type":
        types = value if isinstance(value, list) else [value]
        return "must be " + " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)
    if kind == "enum":
        return f"must be one of: {', '.join(str(v) for v in value)}"
    if kind == "const":
        return f"must be {json.dumps(value)}"
    if kind == "minimum":
        return f"must be at least {value}"
    if kind == "maximum":
        return f"must be at most {value}"
    if kind == "exclusiveMinimum":
        return f"must be more than {value}"
    if kind == "minItems":
        return f"needs at least {value} item{'s' if value != 1 else ''}"
    if kind == "uniqueItems":
        return "lists an item twice"
    if kind == "minLength":
        return "must not be empty"
    if kind == "maxLength":
        return f"must be at most {value} characters"
    if kind == "pattern":
        return f"does not match the pattern {value}"
    if kind == "minProperties":
        return "must not be empty"
    return str(error.message)


def _id_tags_said(written: Any, said_nul: set[str]) -> set[int]:
    """The steps whose idTag, as written, takes a variable whose NUL is said at it."""
    found: set[int] = set()
    if not isinstance(written, list) or not said_nul:
        return found
    for n, item in enumerate(written):
        args = next(iter(item.values()), None) if isinstance(item, dict) and item else None
        tag = args.get("id_tag") if isinstance(args, dict) else None
        if isinstance(tag, str) and said_nul & set(_VARIABLE.findall(tag)):
            found.add(n)
    return found


def _check_steps(
    steps: list[Any],
    errors: _Errors,
    *,
    skip: set[int],
    id_tags_said: AbstractSet[int] = frozenset(),
) -> None:
    """What the schema cannot say well: which keys of a step go together (for the steps
    the schema found nothing wrong with). `id_tags_said`: steps whose idTag's problem
    (a NUL) is said at the variable it came from."""
    for n, item in enumerate(steps):
        if n in skip or not isinstance(item, dict) or len(item) != 1:
            continue
        kind, args = next(iter(item.items()))
        path: Path_ = ("steps", n, kind)
        args = args or {}
        if kind == "wait":
            _check_variant(args, WAIT_VARIANTS, path, errors, "wait")
            _check_actions(args, path, errors)
        elif kind == "expect":
            _check_variant(args, EXPECT_VARIANTS, path, errors, "expect")
            _check_actions(args, path, errors)
            if isinstance(args.get("response_time"), dict):
                _check_response_time(args["response_time"], (*path, "response_time"), errors)
        elif kind == "network":
            _check_network(args, path, errors)
        elif kind == "override":
            _check_override(args, path, errors)
        elif kind == "present_id_tag":
            if "expect" in args and "wait" in args:
                errors.add(path, "expect and wait do not go together: a refused tag starts nothing")
            tag = args.get("id_tag")
            # Said with its line here, not at run time by the charger (one set at run time,
            # `${...}` still in it, is checked when sent; a NUL a given variable brought is
            # said at that variable, one written in the file, "\u0000", here).
            if isinstance(tag, str) and "${" not in tag and n not in id_tags_said:
                problem = id_tag_problem(tag)
                if problem is not None:
                    errors.add((*path, "id_tag"), problem)
        elif kind == "fault":
            # The engine refuses any other code: said here, before the run's chargers are
            # set up, as a typo rather than a step in error (exit code 2, not 3).
            code = args.get("error_code")
            if _literal(code) and code not in FAULT_CODES:
                errors.add(
                    (*path, "error_code"),
                    _unknown(code, "an error code a fault reports", FAULT_CODES),
                )
            info = args.get("info")
            if isinstance(info, str) and "${" not in info:
                problem = fault_info_problem(info)
                if problem is not None:
                    errors.add((*path, "info"), problem)
        if kind in ENGINE_CHECKED:
            _check_engine_bounds(kind, args, path, errors)
        for key in DURATION_KEYS & set(args):
            try:
                seconds = duration(args[key])
            except ValueError:
                continue  # the schema said so already
            if not math.isfinite(seconds):
                errors.add((*path, key), "must be a finite number of seconds")
            elif key in ("timeout", "within") and seconds > 300:
                errors.add((*path, key), "must be at most 300 seconds")
            elif kind == "wait" and key == "seconds" and seconds > MAX_WAIT_SECONDS:
                # A typo (100000 for 100) held one of the CHARGESIM_SCENARIO_RUNS slots for
                # a day; a longer pause is several waits.
                errors.add(
                    (*path, key),
                    f"must be at most {MAX_WAIT_SECONDS} seconds (an hour): for longer, "
                    "wait several times",
                )


def _check_variant(
    args: dict[str, Any],
    variants: dict[str, frozenset[str]],
    path: Path_,
    errors: _Errors,
    kind: str,
) -> None:
    main = [key for key in variants if key in args]
    if kind == "expect" and len(main) > 1 and "status" in main:
        main.remove("status")  # status goes with answer; alone it is the connector's
    if not main:
        errors.add(path, f"needs one of: {', '.join(variants)}")
        return
    if len(main) > 1:
        errors.add(path, f"{' and '.join(main)} do not go together: one {kind} per step")
        return
    allowed = variants[main[0]] | {main[0]}
    for key in args:
        if key not in allowed:
            errors.add((*path, key), f"'{key}' does not go with {kind}: {main[0]}", at_key=True)


# The CALLs a charger makes (OCPP 1.6 and its security whitepaper), with the statuses their
# answers carry (idTagInfo.status for Authorize, StartTransaction and StopTransaction; none:
# the answer has no status). The CSMS's CALLs are `overrides.ANSWER_STATUSES`' keys. Both are
# closed sets: a misspelt name or status is a format error, not a CSMS failing a check.
_ID_TAG_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
CHARGER_CALLS: dict[str, tuple[str, ...]] = {
    "Authorize": _ID_TAG_STATUSES,
    "BootNotification": ("Accepted", "Pending", "Rejected"),
    "DataTransfer": ("Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId"),
    "DiagnosticsStatusNotification": (),
    "FirmwareStatusNotification": (),
    "Heartbeat": (),
    "LogStatusNotification": (),
    "MeterValues": (),
    "SecurityEventNotification": (),
    "SignCertificate": ("Accepted", "Rejected"),
    "SignedFirmwareStatusNotification": (),
    "StartTransaction": _ID_TAG_STATUSES,
    "StatusNotification": (),
    "StopTransaction": _ID_TAG_STATUSES,
}


def _check_actions(args: dict[str, Any], path: Path_, errors: _Errors) -> None:
    """The action a wait or expect names, and the answer status it expects, are OCPP's."""
    for key in ("csms_call", "no_csms_call"):
        action = args.get(key)
        if _literal(action) and action not in ANSWER_STATUSES:
            errors.add((*path, key), _unknown(action, "an action a CSMS sends", ANSWER_STATUSES))
    action = args.get("answer")
    if action is not None and args.get("call_error") is True and "status" in args:
        errors.add(
            (*path, "status"),
            "a CALLERROR has no status: expect call_error: true, or a status, not both",
        )
    if not _literal(action):
        return
    if action not in CHARGER_CALLS:
        errors.add((*path, "answer"), _unknown(action, "an action a charger sends", CHARGER_CALLS))
        return
    status = args.get("status")
    if not _literal(status):
        return
    statuses = CHARGER_CALLS[action]
    if not statuses:
        errors.add((*path, "status"), f"the answer to {action} has no status: check its payload")
    elif status not in statuses:
        errors.add((*path, "status"), _unknown(status, f"a status of {action}'s answer", statuses))


def _literal(value: Any) -> TypeGuard[str]:
    """A string as written (a variable's `${...}` is checked once it is filled in, at run)."""
    return isinstance(value, str) and "${" not in value


def _unknown(given: str, what: str, known: Iterable[str]) -> str:
    close = nearest_name(given, known)
    hint = f"; did you mean {close}?" if close else f" (one of: {', '.join(known)})"
    return f"{given!r} is not {what} in OCPP 1.6{hint}"


def _check_response_time(spec: dict[str, Any], path: Path_, errors: _Errors) -> None:
    if not PERCENTILES.keys() & set(spec):
        errors.add(path, f"needs at least one of: {', '.join(PERCENTILES)}")


def _check_traffic_steps(
    steps: list[Any], chargers: Any, errors: _Errors, *, skip: set[int]
) -> None:
    """A traffic step acts on a location: the scenario's chargers must be one (a location,
    or a template's chargers, made at one); `stop` goes alone; `wait` needs a duration."""
    for n, item in enumerate(steps):
        if n in skip or not isinstance(item, dict) or "traffic" not in item:
            continue
        path: Path_ = ("steps", n, "traffic")
        args = item["traffic"] if isinstance(item["traffic"], dict) else {}
        if isinstance(chargers, dict) and not {"location", "template"} & set(chargers):
            errors.add(
                path,
                "traffic runs at a location: give the scenario's chargers as "
                "`location: NAME` or a `template` (at its location)",
            )
        if args.get("stop"):
            extra = sorted(TRAFFIC_START_KEYS & set(args))
            if extra:
                errors.add(path, f"stop goes alone, not with {', '.join(extra)}")
        elif "stop" in args:
            errors.add((*path, "stop"), "stop: true, or leave it out to start", at_key=True)
        elif args.get("wait") and "duration" not in args:
            errors.add(path, "wait: true needs a duration (traffic without one never ends)")


def _check_finite(value: Any, path: Path_, errors: _Errors) -> None:
    """YAML's .nan and .inf are numbers that the schema's bounds let through (NaN
    compares false with any bound): a response-time bound of .nan passed whatever the
    CSMS did, a power of .inf broke the run's setup. None is a value a scenario can mean.
    A value said wrong already (a duration's "finite number of seconds") is not said twice."""
    if isinstance(value, float) and not math.isfinite(value):
        if not errors.said_at(path):
            errors.add(path, "must be a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, (*path, key), errors)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _check_finite(item, (*path, n), errors)


def _check_spread(data: dict[str, Any], errors: _Errors) -> None:
    """`spread` is bounded as a wait is: an infinite one made a start delay no JSON can
    store (the run crashed and stayed "running"), a typo of 100000 held the run a day."""
    if "spread" not in data or errors.said_at(("spread",)):
        return
    try:
        seconds = duration(data["spread"])
    except ValueError:
        return  # the schema said so already
    if not math.isfinite(seconds):
        errors.add(("spread",), "must be a finite number of seconds")
    elif seconds > MAX_WAIT_SECONDS:
        errors.add(("spread",), f"must be at most {MAX_WAIT_SECONDS} seconds (an hour)")


ENGINE_CHECKED = frozenset({"close", "network", "clock_skew", "override"})


def _check_engine_bounds(kind: str, args: dict[str, Any], path: Path_, errors: _Errors) -> None:
    """The engine's own checks of a fault in the CSMS's way (`simulator.contract.overrides`):
    a value it refuses (close code 1005, a delay of two hours) would error the step only
    once the run's chargers are up (exit code 3); said here with its line instead. A value
    still holding a runtime `${...}` is checked when the step runs."""
    checks: list[tuple[str, Callable[[Any], object]]] = []
    if kind == "close":
        checks.append(("code", lambda code: check_close({"code": code})))
    elif kind == "network":
        checks.append(("close_code", lambda code: check_close({"code": code})))
        for name in ("latency_ms", "jitter_ms", "drop_rate"):
            checks.append((name, partial(_check_network_value, name)))
        checks.append(("cut", _check_cut))
    elif kind == "clock_skew":
        checks.append(("seconds", check_skew))
    elif kind == "override":
        checks.append(("delay", lambda value: number(duration(value), "delay", 0.001, DELAY_MAX_S)))
    for key, check in checks:
        value = args.get(key)
        if value is None or isinstance(value, bool) or (isinstance(value, str) and "${" in value):
            continue
        try:
            if not math.isfinite(duration(value)):
                continue  # said as not finite already
        except ValueError:
            continue  # the schema said so already
        try:
            check(value)
        except ValueError as exc:
            errors.add((*path, key), str(exc))


def _check_network_value(name: str, value: Any) -> None:
    check_network({name: value})


def _check_cut(value: Any) -> None:
    if not CUT_MIN_S <= duration(value) <= CUT_MAX_S:
        raise ValueError(f"a network cut lasts {CUT_MIN_S:g} to {CUT_MAX_S:g} seconds")


def _check_network(args: dict[str, Any], path: Path_, errors: _Errors) -> None:
    groups = [name for name, keys in NETWORK_GROUPS.items() if keys & set(args)]
    if len(groups) > 1:
        shown = [", ".join(sorted(NETWORK_GROUPS[name] & set(args))) for name in groups]
        errors.add(path, f"{' and '.join(shown)} do not go together: one network change per step")


def _check_override(args: dict[str, Any], path: Path_, errors: _Errors) -> None:
    _check_override_values(args, path, errors)
    answers = [key for key in OVERRIDE_ANSWERS if key in args]
    modes = [key for key in ("next", "every") if key in args]
    if args.get("clear"):
        extra = answers + modes
        if extra:
            errors.add(path, f"clear goes alone with action, not with {', '.join(extra)}")
        return
    if len(answers) != 1:
        errors.add(path, f"needs exactly one of: {', '.join(OVERRIDE_ANSWERS)} (or clear: true)")
    if len(modes) != 1:
        errors.add(path, "needs exactly one of: next: true, every: true")


def _check_override_values(args: dict[str, Any], path: Path_, errors: _Errors) -> None:
    """The action, status and CALLERROR code of an override are closed sets, which the
    engine checks (`overrides.check_rule`) only once the run's chargers are up: a typo is
    said here with its line and the nearest right name, as in a `wait` or an `expect`."""
    action = args.get("action")
    if not _literal(action):
        return
    if action not in ANSWER_STATUSES:
        errors.add((*path, "action"), _unknown(action, "an action a CSMS sends", ANSWER_STATUSES))
        return
    if args.get("clear"):
        return
    status = args.get("status")
    if _literal(status):
        statuses = ANSWER_STATUSES[action]
        if not statuses:
            errors.add(
                (*path, "status"),
                f"the answer to {action} has no status: use call_error, delay or no_answer",
            )
        elif status not in statuses:
            errors.add(
                (*path, "status"), _unknown(status, f"a status of {action}'s answer", statuses)
            )
    code = args.get("call_error")
    if _literal(code) and code not in CALL_ERROR_CODES:
        errors.add((*path, "call_error"), _unknown(code, "a CALLERROR code", CALL_ERROR_CODES))


def _args(raw: Any) -> dict[str, Any]:
    return dict(raw) if isinstance(raw, dict) else {}
