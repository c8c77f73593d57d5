"""Reading fleet files (CSV, JSON, XLSX) into a tablib Dataset with messages a person can act on.

The format classes plug into django-import-export (admin and the `import` command with
`--format chargers.file_formats.CSV`); `read_dataset` is what the background import job uses.
They read bytes, so that a file in the wrong encoding is reported as such, not as a traceback.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import tablib
from import_export.formats import base_formats


class FileProblem(ValueError):
    """The file as a whole cannot be read: wrong encoding, delimiter, syntax or shape."""

    def __repr__(self) -> str:  # the `import` command prints repr() of each error
        return str(self)


def decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileProblem(
            f"The file is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} cannot be "
            "read. Save it as UTF-8 (in Excel: 'CSV UTF-8 (comma delimited)')."
        ) from None


def parse_csv(text: str) -> tablib.Dataset:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise FileProblem(f"Line {reader.line_num} is not valid CSV: {exc}.") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise FileProblem("The file is empty: the first line must name the columns.")
    headers = [cell.strip() for cell in rows[0]]
    dataset = tablib.Dataset(headers=headers)
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines, e.g. at the end of a spreadsheet export
        if len(row) != len(headers):
            raise FileProblem(
                f"Line {line} has {len(row)} cells but the header line has {len(headers)}: "
                "check that the file is separated by commas and that cells containing a "
                'comma are quoted ("...").'
            )
        dataset.append(row)
    return dataset


def parse_json(text: str) -> tablib.Dataset:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileProblem(
            f"The file is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise FileProblem(
            'A JSON import must be a list of objects, one per row: [{"name": ...}, ...].'
        )
    headers: list[str] = []
    for item in data:
        headers.extend(key for key in item if key not in headers)
    dataset = tablib.Dataset(headers=headers)
    for item in data:
        dataset.append([_json_cell(item.get(key, "")) for key in headers])
    return dataset


def _json_cell(value: Any) -> Any:
    # Nested values (a curve as a list, for example) stay as they are; cells are parsed later.
    return "" if value is None else value


class CSV(base_formats.CSV):
    def is_binary(self) -> bool:
        return True

    def get_read_mode(self) -> str:
        return "rb"

    def create_dataset(self, in_stream: bytes | str, **kwargs: Any) -> tablib.Dataset:
        return parse_csv(decode(in_stream))


class JSON(base_formats.JSON):
    def is_binary(self) -> bool:
        return True

    def get_read_mode(self) -> str:
        return "rb"

    def create_dataset(self, in_stream: bytes | str, **kwargs: Any) -> tablib.Dataset:
        return parse_json(decode(in_stream))


class XLSX(base_formats.XLSX):
    def create_dataset(self, in_stream: bytes) -> tablib.Dataset:
        try:
            dataset = super().create_dataset(in_stream)
        except Exception as exc:  # openpyxl raises zipfile, KeyError, InvalidFileException...
            raise FileProblem(f"The file is not an Excel workbook (.xlsx): {exc}") from None
        dataset.headers = [str(h).strip() if h is not None else "" for h in dataset.headers]
        return dataset


def fleet_formats() -> list[type[base_formats.Format]]:
    """The formats offered in the admin: CSV and JSON, and XLSX when openpyxl is installed."""
    return [fmt for fmt in (CSV, JSON, XLSX) if fmt.is_available()]


FORMATS_BY_NAME: dict[str, type[base_formats.Format]] = {"csv": CSV, "json": JSON, "xlsx": XLSX}


def read_dataset(data: bytes, format_name: str) -> tablib.Dataset:
    try:
        format_class = FORMATS_BY_NAME[format_name]
    except KeyError:
        raise FileProblem(f"Unknown file format {format_name!r}: use csv, json or xlsx.") from None
    return format_class().create_dataset(data)
