"""The built-in scenario cases: the YAML files of scenarios/library/ (if it is there),
each named by its file's stem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    path: Path


def folder() -> Path:
    return Path(__file__).resolve().parent / "library"


def cases() -> list[Case]:
    """Every case, by name; none if the folder is missing."""
    root = folder()
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.iterdir()):
        if path.suffix in SUFFIXES and path.is_file():
            found.append(Case(path.stem, _description(path), path))
    return found


def find(name: str) -> Case | None:
    return next((case for case in cases() if case.name == name), None)


def _description(path: Path) -> str:
    # Only for the list: a case that does not parse says so when it is run.
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return ""
    if isinstance(data, dict):
        return str(data.get("description") or "").strip()
    return ""
