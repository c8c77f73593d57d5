"""What every fleet import shares: strict columns, natural keys, all-or-nothing, clear reports.

`FleetResource` is the base of LocationResource, VehicleModelResource and ChargerResource.
It changes these things in django-import-export's workflow:

* a file with any bad row imports nothing: `FleetImportResult.has_errors()` counts
  validation errors too, so `import_data` rolls the whole transaction back, the admin
  offers no "Confirm import", and the `import` command prints every bad row and exits 1;
* every problem names its row and column (`Problem`), unknown columns included, so a
  typo in a header is not silently ignored;
* rows are matched on their natural key, loaded in one query, and a key that appears
  twice in one file is an error instead of a silent second update;
* a row that would change nothing of what is stored is reported as skipped ("unchanged")
  and not written: re-importing an export rewrote every row and told every running
  charger, and said "updated" of each (`FleetResource.unchanged`);
* a cell is one value: a JSON object or list where a column takes text or a number, or
  a cell longer than MAX_CELL_CHARS, is an error of its row and column (so a JSON object
  is never stored as its Python repr), and the quote an export puts before a formula-like
  cell is taken off again (`fleet_io.file_formats.neutralise`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from import_export import resources
from import_export.instance_loaders import ModelInstanceLoader
from import_export.results import Error, Result, RowResult

from fleet_io.cells import NumberCell
from fleet_io.file_formats import (
    MAX_CELL_CHARS,
    FileProblem,
    SheetDate,
    file_kind,
    joined_columns,
    restore,
    sheet_row,
)

Progress = Callable[[int, int], None]

# SQLite accepts 32766 parameters per query; stay well below for `key__in=[...]`.
LOOKUP_CHUNK = 5000
# Unknown columns named in the message; a JSON file can have a hundred thousand keys.
NAMED_UNKNOWN_COLUMNS = 10


# Problem.__str__'s shape; a column is a name from the resource's fields (no ": ").
_PROBLEM = re.compile(
    r"(?:File|Row (?P<row>\d+)(?:, column (?P<column>[^:]+?))?): (?P<message>.*)", re.DOTALL
)


@dataclass(frozen=True, slots=True)
class Problem:
    # The row as a spreadsheet shows the file (`sheet_row`: the header is row 1, blank rows
    # count; a JSON file's Nth object is row N); None: the whole file.
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = "File" if self.row is None else f"Row {self.row}"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.message}"

    @classmethod
    def parse(cls, text: str) -> Problem:
        """A problem back from its text (an import job stores the texts): "Row 3, column
        location: No location named 'X'." Any other text is a problem of the file."""
        match = _PROBLEM.match(text)
        if match is None:
            return cls(None, None, text)
        row, column, message = match.group("row", "column", "message")
        return cls(None if row is None else int(row), column, message)


class RowProblems(Exception):
    """The validation problems of one row, as one error the `import` command can print."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems

    def __repr__(self) -> str:
        return str(self)


class FleetImportResult(Result):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.columns: dict[str, str] = {}
        self.sheet_rows: list[int] = []  # each data row's row in the file (`sheet_row`)

    def _row(self, number: int) -> int:
        return sheet_row(self.sheet_rows, number)

    def has_errors(self) -> bool:
        return bool(self.base_errors or self.error_rows or self.invalid_rows)

    def row_errors(self) -> list[tuple[int, list[Error]]]:
        errors = [(self._row(row.number), row.errors) for row in self.error_rows]
        errors += [
            (self._row(invalid.number), [Error(RowProblems(self._invalid_row_problems(invalid)))])
            for invalid in self.invalid_rows
        ]
        return sorted(errors, key=lambda item: item[0])

    def problems(self) -> list[Problem]:
        found = [Problem(None, None, _message(error.error)) for error in self.base_errors]
        for row in self.error_rows:
            found += [
                Problem(self._row(row.number), None, _message(error.error)) for error in row.errors
            ]
        for invalid in self.invalid_rows:
            found += self._invalid_row_problems(invalid)
        return sorted(found, key=lambda p: p.row or 0)

    def failed_rows(self) -> int:
        return len({row.number for row in self.error_rows} | {r.number for r in self.invalid_rows})

    def _invalid_row_problems(self, invalid: Any) -> list[Problem]:
        found = []
        for key, messages in invalid.error_dict.items():
            column = None if key == NON_FIELD_ERRORS else self.columns.get(key, key)
            found += [Problem(self._row(invalid.number), column, str(m)) for m in messages]
        return found


def _message(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error)


class NaturalKeyLoader(ModelInstanceLoader):
    """Loads the existing objects named in the file in a few queries, not one per row."""

    def __init__(self, resource: FleetResource, dataset: Any = None) -> None:
        super().__init__(resource, dataset)
        self.resource: FleetResource = resource
        self.instances: dict[tuple, Any] = {}
        found = {resource.row_key(row) for row in dataset.dict} if dataset else set()
        keys = {key for key in found if key is not None}
        queryset = self.get_queryset()
        attributes = resource.key_attributes()
        if len(attributes) == 1:
            values = sorted(key[0] for key in keys)
            for start in range(0, len(values), LOOKUP_CHUNK):
                chunk = values[start : start + LOOKUP_CHUNK]
                self._remember(queryset.filter(**{f"{attributes[0]}__in": chunk}))
        elif keys:
            self._remember(queryset)  # a small table (vehicle models): load it whole

    def _remember(self, objects: Iterable[Any]) -> None:
        found = list(objects)
        for obj in found:
            self.instances[self.resource.instance_key(obj)] = obj
        self.resource.loaded(found)

    def get_instance(self, row: dict) -> Any:
        key = self.resource.row_key(row)
        return None if key is None else self.instances.get(key)


class FleetResource(resources.ModelResource):
    #: Model validation keys that are reported under another column name.
    error_columns: dict[str, str] = {}
    #: Fields whose model validation the resource has done itself (cached look-ups).
    clean_exclude: tuple[str, ...] = ()
    #: Columns that take a list from a JSON file (a charging curve); others take one value.
    list_columns: tuple[str, ...] = ()
    #: Whether the resource takes `csms_url=` (the `import` command's --csms-url).
    takes_csms_url = False
    #: Whether two rows whose keys differ only in letter case name one object (the model
    #: refuses such a pair), so that the second is refused as a repeat of the first.
    case_blind_key = False

    class Meta:
        clean_model_instances = True
        use_transactions = True
        # The library's skip_unchanged compares before validation (a curve cell as text
        # against the stored list) and not at all with skip_diff (our background jobs):
        # `unchanged` decides instead, after validation, the same way for both.
        skip_unchanged = False
        report_skipped = True
        instance_loader_class = NaturalKeyLoader

    def __init__(self, progress: Progress | None = None, fast: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.progress = progress
        if fast:
            # Background jobs show counts, not a row-by-row diff: skip building it.
            # _meta is set by the library's metaclass (untyped): read it as Any.
            options: Any = getattr(self, "_meta")  # noqa: B009
            meta = type(options)()
            meta.__dict__.update(options.__dict__)
            meta.skip_diff = True
            self._meta = meta
        # A row's key (lower-cased if `case_blind_key`) -> the first row and its key as given.
        self._first_row_of_key: dict[tuple, tuple[int, tuple]] = {}
        self._sheet_rows: list[int] = []  # the file's row of each data row (`sheet_row`)
        self._total = 0
        self._every = 1
        # The current row's stored object as loaded (`stored_values`), None for a new one;
        # and whether `save_instance` found that the row changes nothing.
        self._stored: dict[str, Any] | None = None
        self._unchanged = False

    def import_notes(self, *, dry_run: bool) -> list[str]:
        """What the `import` command says after a successful import beside its counts (a
        value the file did not give, and where it came from)."""
        return []

    # -- natural keys -------------------------------------------------------------------

    def key_attributes(self) -> list[str]:
        return [self.fields[name].attribute for name in self.get_import_id_fields()]

    def row_key(self, row: dict) -> tuple | None:
        try:
            key = tuple(self.fields[name].clean(row) for name in self.get_import_id_fields())
        except (KeyError, ValueError):
            return None
        if any(part in (None, "") or (isinstance(part, str) and "\x00" in part) for part in key):
            return None  # no stored key holds a NUL: nothing to look up (PostgreSQL refuses it)
        return key

    def instance_key(self, obj: Any) -> tuple:
        return tuple(getattr(obj, attribute) for attribute in self.key_attributes())

    # -- columns ------------------------------------------------------------------------

    def allowed_columns(self) -> list[str]:
        return [field.column_name for field in self.get_import_fields() if not field.readonly]

    def spelled_columns(self, headers: list[Any]) -> list[Any]:
        """The file's column names, each spelled as the resource spells it when it differs
        only in letter case or in spaces for underscores ("Charge Point ID", "Location"):
        a spreadsheet's headers are typed by hand, and such a file was refused as unknown
        columns. Any other name is kept, to be refused as unknown."""
        allowed = self.allowed_columns()
        by_fold = {_fold(name): name for name in allowed}
        return [
            header if header in allowed else by_fold.get(_fold(str(header)), header)
            for header in headers
        ]

    def check_columns(self, headers: list[str] | None, kind: str = "CSV") -> list[str]:
        """What is wrong with the file's columns; `kind`, the file's format, words the
        advice for a file whose column names are joined into one."""
        headers = [str(h) for h in headers or []]
        allowed = self.allowed_columns()
        joined = joined_columns(headers, kind)
        if joined:
            return [joined]
        problems = []
        unknown = [h for h in headers if h not in allowed]
        if unknown:
            named = ", ".join(repr(h[:60]) for h in unknown[:NAMED_UNKNOWN_COLUMNS])
            if len(unknown) > NAMED_UNKNOWN_COLUMNS:
                named += f" and {len(unknown) - NAMED_UNKNOWN_COLUMNS:,} more"
            problems.append(f"Unknown column(s) {named}; the columns are: {', '.join(allowed)}.")
        repeated = sorted({h for h in headers if headers.count(h) > 1})
        if repeated:
            problems.append(f"Column(s) {', '.join(repeated)} appear more than once.")
        missing = [
            self.fields[name].column_name
            for name in self.get_import_id_fields()
            if self.fields[name].column_name not in headers
        ]
        if missing:
            problems.append(f"Required column(s) missing: {', '.join(missing)}.")
        return problems

    # -- the workflow -------------------------------------------------------------------

    @classmethod
    def get_result_class(cls) -> type[FleetImportResult]:
        return FleetImportResult

    def import_data_inner(
        self,
        dataset: Any,
        dry_run: bool,
        raise_errors: bool,
        using_transactions: bool,
        collect_failed_rows: bool,
        **kwargs: Any,
    ) -> FleetImportResult:
        if dataset.headers:
            dataset.headers = self.spelled_columns(dataset.headers)
        problems = self.check_columns(dataset.headers, file_kind(dataset))
        if problems:
            result = self.get_result_class()()
            result.total_rows = len(dataset)
            for message in problems:
                self.handle_import_error(result, FileProblem(message), raise_errors)
            return result
        sheet_rows = getattr(dataset, "sheet_rows", [])
        self._sheet_rows = sheet_rows
        dataset = _restored(dataset)
        self._first_row_of_key = {}
        self._total = len(dataset)
        self._every = max(1, self._total // 100)
        result = super().import_data_inner(
            dataset, dry_run, raise_errors, using_transactions, collect_failed_rows, **kwargs
        )
        result.sheet_rows = sheet_rows
        result.columns = {
            field.attribute: field.column_name
            for field in self.fields.values()
            if field.attribute and field.column_name
        } | self.error_columns
        return result

    def import_row(self, row: dict, instance_loader: Any, **kwargs: Any) -> RowResult:
        self._stored = None
        self._unchanged = False
        row_result = super().import_row(row, instance_loader, **kwargs)
        if self._unchanged and row_result.import_type == RowResult.IMPORT_TYPE_UPDATE:
            row_result.import_type = RowResult.IMPORT_TYPE_SKIP
        number = kwargs["row_number"]
        if self.progress and (number % self._every == 0 or number == self._total):
            self.progress(number, self._total)
        return row_result

    def import_instance(self, instance: Any, row: dict, **kwargs: Any) -> None:
        if instance.pk is not None:
            self._stored = self.stored_values(instance)
        errors: dict[str, Any] = {}
        bad_cells = self.cell_problems(row)
        for column, message in bad_cells.items():
            field = next(f for f in self.get_import_fields() if f.column_name == column)
            errors[field.attribute or column] = [ValidationError(message)]
        try:
            # A bad cell is left out rather than parsed (and its message repeated).
            readable = {k: v for k, v in row.items() if k not in bad_cells} if bad_cells else row
            super().import_instance(instance, readable, **kwargs)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        key = self.row_key(row)
        if key is not None:
            folded = tuple(str(p).lower() for p in key) if self.case_blind_key else key
            first, first_key = self._first_row_of_key.setdefault(
                folded, (kwargs["row_number"], key)
            )
            if first != kwargs["row_number"]:
                column = self.fields[self.get_import_id_fields()[-1]].attribute
                shown = " ".join(str(part) for part in key)
                first_row = sheet_row(self._sheet_rows, first)
                if first_key == key:
                    message = f"{shown!r} is already on row {first_row}"
                else:
                    first_shown = " ".join(str(part) for part in first_key)
                    message = (
                        f"{shown!r} differs from {first_shown!r} of row {first_row} only in case"
                    )
                errors.setdefault(column, []).append(
                    ValidationError(f"{message}; each may appear only once in a file.")
                )
        if errors:
            raise ValidationError(errors)

    # -- unchanged rows -------------------------------------------------------------------

    def loaded(self, objects: list[Any]) -> None:
        """The stored objects the file names, as the loader read them (a chunk at a time):
        a resource whose rows write more than the model's columns reads what `unchanged`
        compares here, in a few queries rather than one per row."""

    def stored_values(self, instance: Any) -> dict[str, Any]:
        """The model's columns of a stored object before the row is applied to it."""
        # Copied only where a value can be changed in place (a JSON list or object): a
        # deep copy of every column cost more than the comparison it serves.
        values = {
            field.attname: getattr(instance, field.attname)
            for field in instance._meta.concrete_fields
            if not field.primary_key
        }
        return {
            name: copy.deepcopy(value) if isinstance(value, (list, dict)) else value
            for name, value in values.items()
        }

    def unchanged(self, instance: Any, row: dict) -> bool:
        """Whether the validated row leaves the stored object as it was. A resource that
        writes more than the model's columns (a charger's EVSEs) extends it."""
        return self._stored is not None and self.stored_values(instance) == self._stored

    def save_instance(self, instance: Any, is_create: bool, row: Any, **kwargs: Any) -> None:
        # After validation, so that values are compared as they would be stored (a
        # curve parsed, a number as a float).
        if not is_create and self.unchanged(instance, row):
            self._unchanged = True  # not written, so no running charger is told either
            return
        super().save_instance(instance, is_create, row, **kwargs)

    def cell_problems(self, row: dict) -> dict[str, str]:
        """Cells that are not one value of a sane size, by column."""
        problems = {}
        for field in self.get_import_fields():
            value = row.get(field.column_name)
            if isinstance(value, (dict, list)) and field.column_name not in self.list_columns:
                kind = "an object" if isinstance(value, dict) else "a list"
                problems[field.column_name] = (
                    f"The cell holds {kind}; this column takes one value (text or a number)."
                )
            elif isinstance(value, SheetDate):
                expected = "a number" if isinstance(field.widget, NumberCell) else "text"
                problems[field.column_name] = (
                    f"The cell is {value.kind} ({value}) in the workbook, where {expected} is "
                    "expected: Excel turns a value such as 2026-01-01 or 12:30 typed into a "
                    "General cell into a date. Format the column as Text (Home > Number "
                    "Format > Text) and type the value again, or type it after an "
                    f"apostrophe ('{value})."
                )
            elif isinstance(value, str) and "\x00" in value:
                problems[field.column_name] = (
                    "The cell holds a NUL character (0x00), which no text field can store."
                )
            elif isinstance(value, str) and len(value) > MAX_CELL_CHARS:
                problems[field.column_name] = (
                    f"The cell has {len(value):,} characters; at most {MAX_CELL_CHARS:,} "
                    "(MAX_CELL_CHARS)."
                )
        return problems

    def validate_instance(
        self, instance: Any, import_validation_errors: Any = None, validate_unique: bool = True
    ) -> None:
        errors = dict(import_validation_errors or {})
        try:
            # Uniqueness is the natural-key loader's job (and the in-file duplicate check's).
            instance.full_clean(exclude=[*errors, *self.clean_exclude], validate_unique=False)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        if errors:
            raise ValidationError(errors)


def _fold(column: str) -> str:
    return re.sub(r"\s+", "_", column.strip()).lower()


def _restored(dataset: Any) -> Any:
    """The dataset with the quotes an export put before formula-like cells taken off, so
    that a key such as `'-CP-1` is matched as `-CP-1` by the natural-key loader too."""
    if not any(isinstance(cell, str) and cell.startswith("'") for row in dataset for cell in row):
        return dataset
    restored = type(dataset)(headers=dataset.headers)
    for row in dataset:
        restored.append([restore(cell) for cell in row])
    return restored
