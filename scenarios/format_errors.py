"""The problems of a scenario file, each said where the file says it (line and column) and
by its place in the file (`steps[2].plug_in.connector`): what the loader (`scenarios.format`)
and the checks beside it (`scenarios.template_checks`) report through."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# A value's place in the file: its keys and list indexes from the top.
Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class FormatError:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class ScenarioError(Exception):
    """A file that cannot run; `errors` lists every problem found, in file order."""

    def __init__(self, errors: Iterable[FormatError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.file, e.line, e.column, e.message))
        super().__init__("\n".join(str(error) for error in self.errors))


def shown_path(path: Path_) -> str:
    """A value's place in the file as an error names it: chargers.template.count,
    steps[2].plug_in."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class Errors:
    """The problems found in one file, each where the file says it (its line and column),
    said once."""

    def __init__(
        self,
        file: str,
        marks: dict[Path_, tuple[int, int]],
        key_marks: dict[Path_, tuple[int, int]],
    ) -> None:
        self.file = file
        self.marks = marks
        self.key_marks = key_marks
        self.found: list[FormatError] = []
        # Where an unknown variable was said: the schema's word on the `${...}` text left
        # there (not a duration, not a number) would only say it again, worse.
        self.unknown_variables: set[Path_] = set()
        # Where a value is a variable's, whole (`timeout: "${timeout}"`): an error there is
        # about what `--var` or the API gave, and says which (never its value: it may be a
        # secret).
        self.from_variable: dict[Path_, str] = {}
        # The values of the secret variables hidden (`texts.hiding`): a check that quotes
        # the value it refuses ("'X' is not a status of ...") must not show a secret's,
        # on the terminal or in the API's answer, as the run shows none anywhere.
        self.hide: Callable[[Any], Any] = lambda value: value

    def add(self, path: Path_, message: str, *, at_key: bool = False) -> None:
        given = self.from_variable.get(path)  # a variable's value is a scalar: no deeper
        if given is not None and message == "must be a string":
            # `--var id_tag=12345678` is read as YAML: a number. How to give it as text.
            message = (
                f"{message} (from ${{{given}}}, which is no text here: quote it to "
                f'make it text, --var \'{given}="..."\' or "..." in the file)'
            )
        elif given is not None:
            message = f"{message} (from ${{{given}}})"
        mark = (self.key_marks.get(path) if at_key else None) or self._mark(path)
        error = FormatError(self.file, mark[0], mark[1], shown_path(path), str(self.hide(message)))
        if error not in self.found:
            self.found.append(error)

    def said_at(self, path: Path_) -> bool:
        """Whether a problem of the value at `path` was said already (the schema's)."""
        shown = shown_path(path)
        return any(error.path == shown for error in self.found)

    def _mark(self, path: Path_) -> tuple[int, int]:
        while path and path not in self.marks:
            path = path[:-1]
        return self.marks.get(path, (1, 1))
