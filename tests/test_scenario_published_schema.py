"""The published scenario schema (docs/scenario.schema.json, GET /api/v1/scenarios/schema)
as an editor uses it: on the file as written, `${var}` still in it. A `${var}` in a typed
field (`timeout: "${timeout}"`) was refused there, so yaml-language-server marked valid
library files as errors. The loader checks the values after substitution against the
strict schema it was made from, as strict as before."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from scenarios import format as scenario_format

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "docs" / "scenario.schema.json"
LIBRARY = sorted((ROOT / "scenarios" / "library").glob("*.yaml"))


def published_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(PUBLISHED.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(case: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in published_validator().iter_errors(case)]


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_a_library_file_as_written_follows_the_published_schema(path: Path) -> None:
    assert problems(yaml.safe_load(path.read_text(encoding="utf-8"))) == []


def doc_scenarios() -> list[Any]:
    """The YAML examples of docs/scenarios.md that are whole scenario files."""
    text = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    return [b for b in blocks if isinstance(b, dict) and {"name", "steps"} <= set(b)]


def test_the_docs_scenario_files_follow_the_published_schema() -> None:
    cases = doc_scenarios()
    assert cases, "docs/scenarios.md shows a whole scenario file"
    for case in cases:
        assert problems(case) == [], case["name"]


def test_the_published_file_is_made_from_the_loaders_schema() -> None:
    # Edit scenarios/scenario.schema.json, then: python -m scenarios.published_schema
    from scenarios.published_schema import published

    made = published(scenario_format.schema())
    assert json.loads(PUBLISHED.read_text(encoding="utf-8")) == made
    assert scenario_format.published_schema() == made


CASE = {
    "name": "vars",
    "description": "variables in typed fields",
    "chargers": {"template": {"count": 1}},
    "steps": [{"wait": {"status": "Available", "timeout": 5}}],
}


def with_(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    case = json.loads(json.dumps(CASE))
    node = case
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return case


@pytest.mark.parametrize(
    "path",
    [
        ("chargers", "template", "count"),
        ("chargers", "template", "connect"),
        ("chargers", "template", "power_type"),
        ("steps", 0, "wait", "timeout"),
        ("steps", 0, "wait", "status"),
    ],
)
def test_only_a_whole_variable_stands_for_a_typed_value(path: tuple[Any, ...]) -> None:
    assert problems(with_(path, "${value}")) == []
    assert problems(with_(path, "not-a-variable")) != []
    assert problems(with_(path, "${value} and more")) != []
    # The loader's own schema, for the values after substitution, still refuses it.
    strict = jsonschema.Draft202012Validator(scenario_format.schema())
    jsonschema.Draft202012Validator.check_schema(scenario_format.schema())
    assert not strict.is_valid(with_(path, "${value}"))


def test_a_variable_where_the_loader_replaces_none_is_still_refused() -> None:
    # Only chargers and steps are substituted: a `${var}` elsewhere stays as written.
    assert problems({**CASE, "spread": "${spread}"}) != []
    assert problems({**CASE, "seed": "${seed}"}) != []


def test_the_loader_still_checks_the_value_a_variable_gives() -> None:
    text = yaml.safe_dump(
        {**with_(("steps", 0, "wait", "timeout"), "${timeout}"), "variables": {"timeout": "x"}}
    )
    with pytest.raises(scenario_format.ScenarioError, match=r"steps\[0\]\.wait\.timeout"):
        scenario_format.parse(text)


@pytest.mark.django_db
def test_the_api_serves_the_published_schema(client: Any) -> None:
    from tests.api_client import bearer, user_with_token

    _, token = user_with_token("viewer", "view_charger")
    served = client.get("/api/v1/scenarios/schema", headers=bearer(token))
    assert served.status_code == 200
    assert served.json() == json.loads(PUBLISHED.read_text(encoding="utf-8"))
