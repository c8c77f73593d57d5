"""The `ocpp` package's OCPP 1.6 JSON schemas, read by tests that hold a table of our own
(written out: the contract and the web apps import no protocol library) to them."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import ocpp

FOLDER = pathlib.Path(ocpp.__file__).parent / "v16" / "schemas"


def schema(name: str) -> dict[str, Any]:
    """The schema of one message, e.g. "ResetResponse"."""
    loaded: dict[str, Any] = json.loads((FOLDER / f"{name}.json").read_text())
    return loaded


def answer_statuses(action: str) -> tuple[str, ...] | None:
    """The `status` enum of an action's answer (`idTagInfo.status` for the answers that
    carry an idTagInfo), or None when the answer has none."""
    answer = schema(f"{action}Response")
    props = answer.get("properties", {})
    status = props.get("status") or props.get("idTagInfo", {}).get("properties", {}).get("status")
    if status is None:
        return None
    if "$ref" in status:
        status = answer["definitions"][status["$ref"].rsplit("/", 1)[-1]]
    return tuple(status["enum"])


def requests() -> set[str]:
    """Every action's name (the schemas of the requests, not of their answers)."""
    names = {path.name.removesuffix(".json") for path in FOLDER.glob("*.json")}
    return {name for name in names if not name.endswith("Response")}
