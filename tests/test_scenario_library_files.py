"""The built-in scenario library (scenarios/library/*.yaml, issue 16): every file is a
well-formed case with a name and a description, the names are unique, and each trigger
aimed at the built-in CSMS names a route and an operation its control endpoint has.

That the whole library passes against the built-in CSMS is the runner's test."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from simulator.csms.control import OPERATIONS
from tests.broken_csms import KINDS

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "scenarios" / "library"
FILES = sorted(LIBRARY.glob("*.yaml"))
SCHEMA = ROOT / "docs" / "scenario.schema.json"
CONTROL_ROUTE = re.compile(
    r"^\$\{csms_control\}(/behaviour|/chargers/\$\{charge_point_id\}/(?P<operation>\w+))$"
)


def load(path: Path) -> dict[str, Any]:
    case = yaml.safe_load(path.read_text())
    assert isinstance(case, dict), f"{path.name}: not a mapping"
    return case


def triggers(case: dict[str, Any]) -> list[dict[str, Any]]:
    return [step["trigger"] for step in case.get("steps", []) if "trigger" in step]


def test_the_library_has_at_least_30_cases() -> None:
    assert len(FILES) >= 30, [p.name for p in FILES]
    assert all(p.suffix == ".yaml" for p in LIBRARY.iterdir()), "only YAML files in the library"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_case_parses_and_says_what_it_checks_and_why_a_csms_fails_it(path: Path) -> None:
    case = load(path)
    assert isinstance(case.get("name"), str) and case["name"] == path.stem
    description = case.get("description")
    assert isinstance(description, str) and len(description) > 80, path.name
    assert "Checks" in description and "fails" in description, path.name
    assert isinstance(case.get("steps"), list) and case["steps"], path.name
    assert "template" in case.get("chargers", {}), f"{path.name}: library cases bring chargers"


def test_names_are_unique() -> None:
    names = [load(path)["name"] for path in FILES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_its_triggers_use_the_control_endpoint_as_it_is(path: Path) -> None:
    for hook in triggers(load(path)):
        found = CONTROL_ROUTE.match(hook["url"])
        assert found, f"{path.name}: {hook['url']} is not a route of the control endpoint"
        operation = found.group("operation")
        if operation is not None and operation != "behaviour":
            assert operation in OPERATIONS, f"{path.name}: no operation {operation}"
            assert hook.get("http", "POST") == "POST", path.name
            assert isinstance(hook.get("body", {}), dict), path.name


# What the runner sets for each charger (docs/scenarios.md), with values of the right type.
RUNTIME = {
    "charge_point_id": "LIB-R1-1",
    "charger_id": 1,
    "csms_url": "ws://127.0.0.1:9000",
    "csms_control": "http://127.0.0.1:9001",
}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute(value: Any, variables: dict[str, Any]) -> Any:
    """As the runner does: a string that is one ${name} takes the value with its type,
    inside a longer string it is written as text."""
    if isinstance(value, dict):
        return {key: substitute(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, variables) for item in value]
    if not isinstance(value, str):
        return value
    whole = VARIABLE.fullmatch(value)
    if whole:
        return variables[whole.group(1)]
    return VARIABLE.sub(lambda m: str(variables[m.group(1)]), value)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_variable_it_uses_is_defined(path: Path) -> None:
    case = load(path)
    variables = {**RUNTIME, **case.get("variables", {})}
    for key in ("chargers", "steps"):
        substitute(case[key], variables)  # KeyError names an undefined one


@pytest.mark.skipif(not SCHEMA.exists(), reason="the scenario format is not in this tree yet")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_case_follows_the_scenario_schema(path: Path) -> None:
    schema = json.loads(SCHEMA.read_text())
    case = load(path)
    variables = {**RUNTIME, **case.get("variables", {})}
    for key in ("chargers", "steps"):
        case[key] = substitute(case[key], variables)
    jsonschema.validate(case, schema)


def test_each_broken_csms_kind_names_cases_of_the_library() -> None:
    names = {path.stem for path in FILES}
    for kind, (_, cases) in KINDS.items():
        assert cases and set(cases) <= names, (kind, cases)
