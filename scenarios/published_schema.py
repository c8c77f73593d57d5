"""The scenario schema as published (docs/scenario.schema.json, GET /api/v1/scenarios/schema),
made from the loader's own (scenarios/scenario.schema.json).

An editor checks a file as written, `${var}` and all; the loader replaces the variables in
`chargers` and `steps` first and checks the values they give against its schema. So the
published schema is the loader's with, wherever those parts want a scalar that a variable
reference is not (a number, a boolean, one of an enum, a pattern), a string that is exactly
one (`${name}`) as well. The loader's schema is the one edited; this is made from it:

    python -m scenarios.published_schema
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema

HERE = Path(__file__).resolve().parent
STRICT = HERE / "scenario.schema.json"
PUBLISHED = HERE.parent / "docs" / "scenario.schema.json"

#: The parts of a scenario the loader replaces variables in (`format.parse`).
SUBSTITUTED = ("chargers", "steps")

VARIABLE = {
    "type": "string",
    "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$",
    "description": "a variable (${name}): its value is checked where it is used, once replaced",
}
_VARIABLE_REF = {"$ref": "#/$defs/variable"}
_SAMPLE = "${name}"  # what a variable reference looks like to a schema
_DEFS = "#/$defs/"


def published(strict: dict[str, Any]) -> dict[str, Any]:
    """`strict` with a variable reference allowed in each typed value it substitutes."""
    made = _Maker(strict)
    schema = copy.deepcopy(strict)
    for part in SUBSTITUTED:
        schema["properties"][part] = made.admit(strict["properties"][part])
    shared = made.defs & _refs_outside(strict)
    if shared:
        # Such a definition would need two forms, with and without variables.
        raise ValueError(f"$defs used inside and outside {SUBSTITUTED}: {sorted(shared)}")
    done: set[str] = set()
    while made.defs - done:
        name = min(made.defs - done)
        schema["$defs"][name] = made.admit(strict["$defs"][name])
        done.add(name)
    schema["$defs"]["variable"] = VARIABLE
    schema["description"] += (
        f" In {' and '.join(SUBSTITUTED)}, a value may be a variable (${{name}}), checked "
        "once replaced."
    )
    return schema


class _Maker:
    def __init__(self, strict: dict[str, Any]) -> None:
        self.strict = strict
        self.validator = jsonschema.Draft202012Validator(strict)
        self.defs: set[str] = set()  # the object definitions used by the substituted parts

    def admit(self, node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if self._scalar(node):
            if self.validator.evolve(schema=node).is_valid(_SAMPLE):
                return node
            return {"anyOf": [node, _VARIABLE_REF]}
        if "$ref" in node:
            self.defs.add(_def_name(node["$ref"]))
            return node
        out = dict(node)
        if "properties" in node:
            out["properties"] = {k: self.admit(v) for k, v in node["properties"].items()}
        for key in ("additionalProperties", "items"):
            if key in node:
                out[key] = self.admit(node[key])
        for key in ("anyOf", "oneOf"):
            if key in node:
                out[key] = [self.admit(branch) for branch in node[key]]
        # propertyNames is not touched: a key is never a variable.
        return out

    def _scalar(self, node: dict[str, Any]) -> bool:
        """Whether `node` takes no object and no array: a value a variable may stand for."""
        if "$ref" in node:
            return self._scalar(self.strict["$defs"][_def_name(node["$ref"])])
        if "type" in node:
            types = {node["type"]} if isinstance(node["type"], str) else set(node["type"])
            return not types & {"object", "array"}
        if "enum" in node:
            return not any(isinstance(v, dict | list) for v in node["enum"])
        if "const" in node:
            return not isinstance(node["const"], dict | list)
        branches: list[Any] = node.get("anyOf") or node.get("oneOf") or []
        return bool(branches) and all(self._scalar(b) for b in branches)


def _def_name(ref: str) -> str:
    if not ref.startswith(_DEFS):
        raise ValueError(f"only references into $defs are understood: {ref}")
    return ref.removeprefix(_DEFS)


def _refs_outside(strict: dict[str, Any]) -> set[str]:
    """The definitions the parts without variables use, directly or through others."""
    found: set[str] = set()
    todo = [v for k, v in strict["properties"].items() if k not in SUBSTITUTED]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and _def_name(ref) not in found:
                found.add(_def_name(ref))
                todo.append(strict["$defs"][_def_name(ref)])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return found


def text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    PUBLISHED.write_text(
        text(published(json.loads(STRICT.read_text(encoding="utf-8")))), encoding="utf-8"
    )
    print(f"wrote {PUBLISHED.relative_to(HERE.parent)}")
