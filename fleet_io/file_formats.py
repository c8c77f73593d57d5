"""Reading fleet files (CSV, JSON, XLSX) into a tablib Dataset with messages a person can act on.

The format classes plug into django-import-export (the admin, and the project's own
`import` and `export` commands); `read_dataset` is what the background import job uses.
They read bytes, so that a file in the wrong encoding is reported as such, not as a traceback,
and every size is checked before the thing it measures is built (docs/import-formats.md
names the limits). On export, CSV and XLSX cells that a spreadsheet would run as a formula
are neutralised with a leading quote (OWASP's "CSV injection" rule), and an import drops
that quote again so that an export re-imports unchanged.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from typing import Any, TypeGuard

import tablib
from import_export.formats import base_formats

#: The largest file read at all (bytes), checked before it is parsed.
MAX_FILE_BYTES = 50 * 1024 * 1024
#: The longest cell (characters): the csv module's own default field limit.
MAX_CELL_CHARS = 131_072
#: An XLSX file is a zip: the most its parts may expand to, checked before openpyxl reads it.
MAX_XLSX_UNZIPPED_BYTES = 200 * 1024 * 1024
#: Columns read from an XLSX sheet (a charger row has 24).
MAX_XLSX_COLUMNS = 64
#: Rows read from an XLSX sheet, blank ones included (50 MiB of CSV is about 300,000 chargers).
MAX_XLSX_ROWS = 200_000
#: Rows read from a CSV file after its header line, blank ones included, as in a sheet.
MAX_CSV_ROWS = MAX_XLSX_ROWS
#: Rows (objects) read from a JSON file, as from a sheet.
MAX_JSON_ROWS = MAX_XLSX_ROWS
#: A JSON cell may be a list of lists (a charging curve), not anything deeper.
MAX_JSON_CELL_DEPTH = 2

# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# ...except a plain number such as -33.87, which it reads as the number it is.
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class FileProblem(ValueError):
    """The file as a whole cannot be read: wrong encoding, delimiter, syntax or shape."""

    def __repr__(self) -> str:  # the `import` command prints repr() of each error
        return str(self)


def check_size(size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise FileProblem(
            f"The file has {size:,} bytes; at most {MAX_FILE_BYTES:,} are read "
            "(MAX_FILE_BYTES). Split it into smaller files."
        )


# How to save a file as UTF-8, by the format it was uploaded as: a JSON file was told to
# save itself as "CSV UTF-8" from Excel.
SAVE_AS_UTF8 = {
    "CSV": "save it as CSV UTF-8 (in Excel: 'CSV UTF-8 (comma delimited)')",
    "JSON": "save it as UTF-8, as JSON must be",
}
# A zip archive starts so; an Excel workbook (.xlsx) is one.
ZIP_MAGIC = b"PK\x03\x04"


def decode(data: bytes | str, kind: str = "CSV") -> str:
    """UTF-8 text, with or without Excel's byte order mark; anything else is named, with
    advice for the `kind` of file it was uploaded as (CSV or JSON)."""
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    check_size(len(data))
    if data.startswith(ZIP_MAGIC):
        raise FileProblem(
            f"The file is a zip archive, such as an Excel workbook, not {kind} text: import "
            "a workbook as XLSX (a file name ending in .xlsx, or the format xlsx)."
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileProblem(f"The file is not UTF-8 (it is UTF-16): {SAVE_AS_UTF8[kind]}.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        if kind == "CSV":  # as it always said, Excel being where most CSV files come from
            raise FileProblem(
                f"The file is not UTF-8 (save it as CSV UTF-8): byte 0x{data[exc.start]:02x} "
                f"on line {line} cannot be read. In Excel: 'CSV UTF-8 (comma delimited)'."
            ) from None
        raise FileProblem(
            f"The file is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} cannot "
            f"be read. Is it a {kind} file? {SAVE_AS_UTF8[kind][0].upper()}"
            f"{SAVE_AS_UTF8[kind][1:]}."
        ) from None


def no_rows(where: str) -> FileProblem:
    """The same problem, whichever the format, for a file that names columns but has no
    row: a header-only CSV imported nothing and said so as a success, an empty JSON list
    was told a column was missing."""
    return FileProblem(f"The file has no rows to import: {where}.")


class FileRows(tablib.Dataset):
    """A file's rows with the format they were read from (CSV, JSON or XLSX), so that
    advice about the file's shape fits the file (`joined_columns`), and with each row's
    number as a spreadsheet shows the file (`sheet_rows`: the header is row 1, blank rows
    count), so that a problem sends the reader to the row they see."""

    def __init__(
        self, *args: Any, kind: str = "CSV", sheet_rows: list[int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.sheet_rows = sheet_rows or []


def sheet_row(sheet_rows: list[int], number: int) -> int:
    """Data row `number` (from 1) as the file's reader sees it: its row in the sheet, or the
    number itself (a JSON file's Nth object is row N)."""
    return sheet_rows[number - 1] if 0 < number <= len(sheet_rows) else number


def file_kind(dataset: Any) -> str:
    """The format `dataset` was read from; CSV for rows made otherwise (as it always said)."""
    return dataset.kind if isinstance(dataset, FileRows) else "CSV"


# What joins a file's column names into one when a file is read with the wrong separator.
JOINING_SEPARATORS = ((";", "semicolons"), ("\t", "tabs"))


def joined_columns(headers: list[str], kind: str) -> str | None:
    """Advice for a file whose one column's name joins several names with semicolons or
    tabs (a CSV file saved by a spreadsheet set for a country that separates with ';'),
    worded for its format: a CSV file is saved again comma-separated; that file converted
    to JSON carelessly, or opened in a spreadsheet unsplit and saved as a workbook, has
    one key or one header cell "charge_point_id;csms_url", and saving it as 'CSV (comma
    delimited)' is no advice for it."""
    if len(headers) != 1:
        return None
    header = headers[0]
    found = [(sep, name) for sep, name in JOINING_SEPARATORS if sep in header]
    if not found:
        return None
    separator, name = found[0]
    if kind == "JSON":
        keys = ", ".join(f'"{part.strip()[:40]}": ...' for part in header.split(separator)[:3])
        return (
            f"The rows have one key, {header[:60]!r}, which joins column names with {name}: "
            "in a JSON import each column is a key of its own, one object per row "
            f"([{{{keys}}}, ...]). If the file was converted from a CSV file separated by "
            f"{name}, convert it again with that separator, or import the CSV file itself "
            "once saved as 'CSV (comma delimited)'."
        )
    if kind == "XLSX":
        return (
            f"The sheet's first row has one cell, {header[:60]!r}, which joins column names "
            f"with {name}: in a workbook each column name has a cell of its own, and each "
            f"row its values in the cells below them. Split the column at the {name} (in "
            "Excel or LibreOffice: Data > Text to Columns) and save the workbook again."
        )
    return (
        f"The header line is separated by {name}, not commas: save the file as "
        "'CSV (comma delimited)'."
    )


def neutralise(value: Any) -> Any:
    """The cell as text a spreadsheet shows rather than runs: `=1+2` becomes `'=1+2`."""
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_START)
        and not PLAIN_NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def restore(value: Any) -> Any:
    """The inverse of `neutralise`, applied to every imported cell."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_START):
        return value[1:]
    return value


def neutralised(dataset: tablib.Dataset) -> tablib.Dataset:
    safe = tablib.Dataset(headers=[neutralise(h) for h in dataset.headers or []])
    for row in dataset:
        safe.append([neutralise(cell) for cell in row])
    return safe


def parse_csv(text: str) -> tablib.Dataset:
    if text.lstrip().startswith(("[", "{")) and _is_json(text):
        raise FileProblem(
            "The file is JSON, not CSV: import it as JSON (a file name ending in .json, or "
            "the format json)."
        )
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    headers: list[str] = []
    data: list[list[str]] = []
    numbers: list[int] = []  # each data row's record as a spreadsheet numbers it
    # Read record by record: a list of every record first held a 2-byte line ("x") as a
    # list and a string, 380 bytes; a 50 MiB file of them took some 9 GiB.
    # Excel's "sep=," line before the header, which files written for Excel start with;
    # its "sep=;" is told to save the file comma-separated, as the header line would be.
    skip = 1 if text.split("\n", 1)[0].rstrip("\r") == "sep=," else 0
    try:
        for number, row in enumerate(reader, start=-skip):
            if number < 0:
                continue
            if number == 0:
                if not any(cell.strip() for cell in row):
                    break
                headers = [cell.strip() for cell in row]
                continue
            if number > MAX_CSV_ROWS:
                raise FileProblem(
                    f"The file has more than {MAX_CSV_ROWS:,} rows after its header line "
                    "(MAX_CSV_ROWS), blank ones included: split it into smaller files."
                )
            if not any(cell.strip() for cell in row):
                continue  # blank lines, e.g. at the end of a spreadsheet export
            if len(row) != len(headers):
                # A semicolon-separated file with decimal commas ("22,5") splits its lines
                # where its header has no comma: the separator is what to fix, not the
                # quoting.
                raise FileProblem(
                    joined_columns(headers, "CSV")
                    or f"Line {reader.line_num} has {len(row)} cells but the header line has "
                    f"{len(headers)}: check that the file is separated by commas and that "
                    'cells containing a comma are quoted ("...").'
                )
            data.append(row)
            numbers.append(number + 1)  # the header is row 1 (Excel hides a "sep=," line)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise FileProblem(
                f"Line {reader.line_num} has a cell longer than {csv.field_size_limit():,} "
                "characters (MAX_CELL_CHARS)."
            ) from None
        raise FileProblem(f"Line {reader.line_num} is not valid CSV: {exc}.") from None
    if not headers:
        raise FileProblem("The file is empty: the first line must name the columns.")
    if not data:
        raise no_rows("it has only its header line")
    headers, data = named_columns(headers, data, "header line", numbers)
    dataset = FileRows(headers=headers, kind="CSV", sheet_rows=numbers)
    for row in data:
        dataset.append(row)
    return dataset


def _column_letter(index: int) -> str:
    """A spreadsheet's name of the column at 0-based `index`: A, ..., Z, AA, ..."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def named_columns(
    headers: list[str], rows: list[Any], header_row: str, numbers: list[int]
) -> tuple[list[str], list[Any]]:
    """The columns that have a name. A column without one and without a value in any row
    is left out: a spreadsheet saves the empty cells right of the data (`CP-1,Depot,,`) once
    a cell there was formatted or cleared, and a space typed in a header cell is invisible;
    each was refused as unknown columns '' appearing more than once. A nameless column
    holding a value is refused by its letter and first value (its data would be lost)."""
    unnamed = [index for index, header in enumerate(headers) if not header]
    if not unnamed:
        return headers, rows
    for number, row in zip(numbers, rows, strict=True):
        for index in unnamed:
            if index < len(row) and not _blank(row[index]):
                raise FileProblem(
                    f"Column {_column_letter(index)} has no name in the {header_row}, but row "
                    f"{number} has a value in it ({str(row[index])[:60]!r}): type the "
                    "column's name above it, or delete the column."
                )
    kept = [index for index, header in enumerate(headers) if header]
    return [headers[index] for index in kept], [
        [row[index] for index in kept if index < len(row)] for row in rows
    ]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


class _Object(dict[str, Any]):
    """A JSON object as read, with the keys it gave more than once (a plain dict keeps the
    last silently: a row naming charge_point_id twice imported the second)."""

    twice: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    found = _Object(pairs)
    if len(found) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        found.twice = tuple(key for key, count in counts.items() if count > 1)
    return found


def parse_json(text: str) -> tablib.Dataset:
    if not text.strip():
        raise FileProblem(
            'The file is empty: a JSON import is a list of objects, one per row: [{"name": '
            "...}, ...]."
        )
    try:
        data = json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise FileProblem(
            f"The file is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except RecursionError:
        raise FileProblem(
            "The file is not a list of rows: its JSON is nested too deeply."
        ) from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise FileProblem(f"The file is not valid JSON: {exc}.") from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise FileProblem(
            'A JSON import must be a list of objects, one per row: [{"name": ...}, ...].'
        )
    if not data:
        raise no_rows("its list is empty ([])")
    if len(data) > MAX_JSON_ROWS:
        # After parsing (the memory is spent), but before a row is imported: each costs
        # far more there, in a thread of the web process.
        raise FileProblem(
            f"The file has {len(data):,} rows; at most {MAX_JSON_ROWS:,} (MAX_JSON_ROWS): "
            "split it into smaller files."
        )
    headers: list[str] = []
    seen: set[str] = set()
    for number, item in enumerate(data, start=1):
        if getattr(item, "twice", ()):
            raise FileProblem(f"Row {number}: {item.twice[0]!r} is given twice.")
        for key, value in item.items():
            if key not in seen:
                seen.add(key)
                headers.append(key)
            if _depth(value) > MAX_JSON_CELL_DEPTH:
                raise FileProblem(
                    f"Row {number}, column {key}: the value is nested too deeply (at most a "
                    "list of lists, as a charging curve is)."
                )
    if not headers:
        # Checked here, not as a missing key column later: tablib appends a row to a
        # dataset of no columns in time that grows with its length, and 4 MB of `{}`
        # held a CPU of the web process for hours.
        raise FileProblem(
            "The rows name no columns: each row is an object of column names and values, "
            '[{"name": ...}, ...], not {}.'
        )
    dataset = FileRows(headers=headers, kind="JSON")
    for item in data:
        dataset.append([_json_cell(item.get(key, "")) for key in headers])
    return dataset


def _depth(value: Any) -> int:
    """How many lists or objects deep a JSON value goes (0 for a scalar), without recursion;
    counting stops one past the limit."""
    depth, level = 0, [value]
    while depth <= MAX_JSON_CELL_DEPTH:
        containers = [node for node in level if isinstance(node, (list, dict))]
        if not containers:
            break
        depth += 1
        level = [
            child
            for node in containers
            for child in (node.values() if isinstance(node, dict) else node)
        ]
    return depth


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

    def export_data(self, dataset: tablib.Dataset, **kwargs: Any) -> str:
        return super().export_data(neutralised(dataset), **kwargs)


class JSON(base_formats.JSON):
    def is_binary(self) -> bool:
        return True

    def get_read_mode(self) -> str:
        return "rb"

    def create_dataset(self, in_stream: bytes | str, **kwargs: Any) -> tablib.Dataset:
        return parse_json(decode(in_stream, "JSON"))


class XLSX(base_formats.XLSX):
    def create_dataset(self, in_stream: bytes) -> tablib.Dataset:
        check_size(len(in_stream))
        _check_unzipped_size(in_stream)
        try:
            rows, numbers = _xlsx_rows(in_stream)
        except FileProblem:
            raise
        except Exception as exc:  # openpyxl raises zipfile, KeyError, InvalidFileException...
            raise FileProblem(f"The file is not an Excel workbook (.xlsx): {exc}") from None
        if not rows or not any(cell is not None for cell in rows[0]):
            raise FileProblem("The file is empty: the first row must name the columns.")
        if len(rows) == 1:
            raise no_rows("its sheet has only its header row")
        headers, data = named_columns(
            [str(h).strip() if h is not None else "" for h in rows[0]],
            rows[1:],
            "first row",
            numbers[1:],
        )
        dataset = FileRows(headers=headers, kind="XLSX", sheet_rows=numbers[1:])
        for row in data:
            dataset.append(row)
        return dataset

    def export_data(self, dataset: tablib.Dataset, **kwargs: Any) -> bytes:
        _check_writable(dataset)
        return super().export_data(neutralised(dataset), **kwargs)


#: Cells named in the message about cells a workbook cannot hold.
NAMED_UNWRITABLE = 10


def _first_ones(found: list[str], most: int) -> str:
    """The first `most` of `found`, and how many more: a message names some, not thousands."""
    shown = "; ".join(found[:most])
    if len(found) > most:
        shown += f"; and {len(found) - most:,} more"
    return shown


def _check_writable(dataset: tablib.Dataset) -> None:
    """Refuses, naming each, the cells holding a control character that XML, and so a
    workbook, cannot hold (the import and the API take them in a vendor or a model): the
    whole export failed with "Export failed due to IllegalCharacterError" in the admin and
    a traceback from the `export` command, naming nothing to correct."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    headers = [str(h) for h in dataset.headers or []]
    found = []
    for row in dataset:
        for header, cell in zip(headers, row, strict=False):
            match = ILLEGAL_CHARACTERS_RE.search(cell) if isinstance(cell, str) else None
            if match is not None:
                found.append(
                    f"the {header} of {headers[0]} {row[0]!r} holds the control character "
                    f"0x{ord(match.group()):02x} ({cell[:40]!r})"
                )
    if found:
        shown = _first_ones(found, NAMED_UNWRITABLE)
        raise FileProblem(
            f"A workbook (XLSX) cannot hold a control character: {shown}. Correct it there, "
            "or export as CSV or JSON, which hold it."
        )


def _check_unzipped_size(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        if not data.startswith(ZIP_MAGIC):
            raise FileProblem(
                "The file is not an Excel workbook (.xlsx), which is a zip archive: is it a "
                "CSV or JSON file? Import it in that format (a file name ending in .csv or "
                ".json)."
            ) from None
        raise FileProblem(
            f"The file is not an Excel workbook (.xlsx): it is not a complete zip file ({exc})."
        ) from None
    if unzipped > MAX_XLSX_UNZIPPED_BYTES:
        raise FileProblem(
            f"The workbook unpacks to {unzipped:,} bytes; at most {MAX_XLSX_UNZIPPED_BYTES:,} "
            "are read (MAX_XLSX_UNZIPPED_BYTES)."
        )


def _xlsx_rows(data: bytes) -> tuple[list[tuple[Any, ...]], list[int]]:
    """The first sheet's cell values, at most MAX_XLSX_COLUMNS wide and MAX_XLSX_ROWS long,
    but blank rows, and each row's number in the sheet.

    A sheet may claim to span XFD1048576 in a few bytes; reading row by row within the
    bounds keeps such a file from being expanded in memory. A formula cell gives the value
    the spreadsheet computed and saved with it; a formula saved without one (a workbook
    written by a script, never opened in a spreadsheet) is refused by its cell, not read as
    an empty cell, which would mean the default."""
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    # The same sheet's formulae, read only when the workbook has any.
    formulae = (
        openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
        if _has_formulae(data)
        else None
    )
    try:
        sheet = book.active
        if sheet is None:
            raise FileProblem("The workbook has no sheet.")
        if (sheet.max_row or 0) > MAX_XLSX_ROWS:  # as the sheet's <dimension> claims
            raise FileProblem(
                f"The sheet has {sheet.max_row:,} rows; at most {MAX_XLSX_ROWS:,} (MAX_XLSX_ROWS)."
            )
        # One column more than is read, to tell a wider sheet from a sheet of that width.
        values = sheet.iter_rows(max_col=MAX_XLSX_COLUMNS + 1, values_only=True)
        texts = (
            formulae.worksheets[book.worksheets.index(sheet)].iter_rows(
                max_col=MAX_XLSX_COLUMNS + 1, values_only=True
            )
            if formulae is not None
            else None
        )
        rows: list[tuple[Any, ...]] = []
        numbers: list[int] = []
        uncomputed: list[str] = []
        # Sheet row number -> index in rows, of rows whose cells are read again for their
        # format: those with a date, and with a number if the book pads any with zeros.
        dated: dict[int, int] = {}
        padded = any(_ZERO_PADDED.fullmatch(str(f)) for f in getattr(book, "_number_formats", ()))
        for number, row in enumerate(values, start=1):
            if number > MAX_XLSX_ROWS:
                raise FileProblem(
                    f"The sheet has more than {MAX_XLSX_ROWS:,} rows (MAX_XLSX_ROWS)."
                )
            cells = list(row)
            if len(cells) > MAX_XLSX_COLUMNS and cells[MAX_XLSX_COLUMNS] is not None:
                raise FileProblem(
                    f"Row {number} of the sheet has more than {MAX_XLSX_COLUMNS} columns "
                    "(MAX_XLSX_COLUMNS)."
                )
            if texts is not None:
                uncomputed += _uncomputed(number, cells, next(texts, ()), rows)
            while cells and cells[-1] is None:
                cells.pop()
            if cells or not rows:  # blank rows are skipped, as blank lines are in CSV
                if any(
                    isinstance(cell, _DATE_TYPES) or (padded and _is_number(cell)) for cell in cells
                ):
                    dated[number] = len(rows)
                rows.append(tuple(cells))
                numbers.append(number)
        if dated:
            _read_dates(sheet, dated, rows)
        if uncomputed:
            shown = _first_ones(uncomputed, NAMED_FORMULAE)
            raise FileProblem(
                f"Formula cells without a computed value: {shown}. Open the workbook in a "
                "spreadsheet and save it (which stores the values), or type the values."
            )
        width = max((len(row) for row in rows), default=0)
        return [row + (None,) * (width - len(row)) for row in rows], numbers
    finally:
        book.close()
        if formulae is not None:
            formulae.close()


def _read_dates(sheet: Any, dated: dict[int, int], rows: list[tuple[Any, ...]]) -> None:
    """The date cells of the `dated` rows, read again as cells: whether a date's shown
    text is certain is its format's to say (`_sheet_value`). A second pass, only for a
    sheet with dates: reading every sheet cell by cell rather than by values took 40 %
    longer."""
    last = max(dated)
    for number, row in enumerate(sheet.iter_rows(max_col=MAX_XLSX_COLUMNS), start=1):
        if number > last:
            break
        index = dated.get(number)
        if index is not None:
            cells = rows[index]
            rows[index] = (
                tuple(
                    _sheet_value(cell)
                    if isinstance(value, _DATE_TYPES) or _is_number(value)
                    else value
                    for cell, value in zip(row, cells, strict=False)
                )
                + cells[len(row) :]
            )


#: Formula cells named in the message about uncomputed formulae.
NAMED_FORMULAE = 10
# A formula element (<f>, or <x:f> with a namespace prefix) in a sheet's XML.
_FORMULA_ELEMENT = re.compile(rb"<(?:\w+:)?f[\s>/]")


def _has_formulae(data: bytes) -> bool:
    """Whether any sheet of the workbook holds a formula, read in slices (the parts' sizes
    are bounded by MAX_XLSX_UNZIPPED_BYTES already)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if not name.startswith("xl/worksheets/"):
                continue
            with archive.open(name) as part:
                tail = b""
                while chunk := part.read(1 << 20):
                    if _FORMULA_ELEMENT.search(tail + chunk):
                        return True
                    tail = chunk[-8:]
    return False


def _uncomputed(
    number: int, cells: list[Any], texts: tuple[Any, ...], rows: list[tuple[Any, ...]]
) -> list[str]:
    """The cells of sheet row `number` that hold a formula but no value, named by their
    cell (its row is the sheet's, as every problem's) and column."""
    from openpyxl.utils import get_column_letter

    found = []
    for index, (value, text) in enumerate(zip(cells, texts, strict=False)):
        if value is None and isinstance(text, str) and text.startswith("="):
            where = f"{get_column_letter(index + 1)}{number}"
            if rows:  # a data row: name it as every other problem is named
                header = rows[0][index] if index < len(rows[0]) else None
                where += f" (column {header})"
            found.append(f"{where} holds {text[:60]}")
    return found


# Cell formats whose shown text is the same in every spreadsheet and locale: a date cell
# in one of them reads as that text (LibreOffice keeps an ISO date typed as such). Excel's
# own date formats show the date as the machine's locale says (2026-01-01 typed, 1/1/2026
# shown), so what the person meant is not certain: the cell is refused (`SheetDate`).
CERTAIN_DATE_FORMATS = {
    "yyyy-mm-dd": "%Y-%m-%d",
    "yyyy-mm-dd hh:mm": "%Y-%m-%d %H:%M",
    "yyyy-mm-dd hh:mm:ss": "%Y-%m-%d %H:%M:%S",
    "hh:mm": "%H:%M",
    "hh:mm:ss": "%H:%M:%S",
}
_DATE_TYPES = (dt.datetime, dt.date, dt.time, dt.timedelta)


@dataclass(frozen=True, slots=True)
class SheetDate:
    """A date or time cell of a workbook whose shown text is not certain. No column takes a
    date: Excel turns "2026-01-01" or "12:30" typed in a General cell into one, which was
    stored as "2026-01-01 00:00:00". The import refuses it by row and column
    (`fleet_io.resource.FleetResource.cell_problems`)."""

    value: dt.datetime | dt.date | dt.time | dt.timedelta

    @property
    def kind(self) -> str:
        if isinstance(self.value, dt.datetime):
            midnight = self.value.time() == dt.time(0)
            return "a date" if midnight else "a date and time"
        if isinstance(self.value, dt.date):
            return "a date"
        return "a time" if isinstance(self.value, dt.time) else "a duration"

    def __str__(self) -> str:
        """The value in ISO form (what the sheet shows depends on the cell's format)."""
        value = self.value
        if isinstance(value, dt.datetime) and value.time() == dt.time(0):
            return value.date().isoformat()
        if isinstance(value, dt.datetime | dt.time):
            text = value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
            return text.removesuffix(":00") if value.second == 0 else text
        return str(value)


# A number format that pads a whole number with zeros ("0000" shows 7 as 0007), as a
# sheet of ids such as 0007 is given: the value alone is 7, which named another charger.
_ZERO_PADDED = re.compile(r"0{2,}")


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _sheet_value(cell: Any) -> Any:
    """A cell's value; a date or time as its certain text, or as a `SheetDate`; a whole
    number in a zero-padded format as the text shown (0007)."""
    value = getattr(cell, "value", None)
    if _is_number(value):
        shown = str(getattr(cell, "number_format", ""))
        if _ZERO_PADDED.fullmatch(shown) and value >= 0 and float(value).is_integer():
            return str(int(value)).zfill(len(shown))
        return value
    if not isinstance(value, _DATE_TYPES):
        return value
    pattern = CERTAIN_DATE_FORMATS.get(str(getattr(cell, "number_format", "")).lower())
    if pattern is not None and isinstance(value, dt.datetime | dt.time):
        return value.strftime(pattern)
    return SheetDate(value)


def fleet_formats() -> list[type[base_formats.Format]]:
    """The formats offered in the admin: CSV and JSON, and XLSX when openpyxl is installed."""
    return [fmt for fmt in (CSV, JSON, XLSX) if fmt.is_available()]


FORMATS_BY_NAME: dict[str, type[base_formats.Format]] = {"csv": CSV, "json": JSON, "xlsx": XLSX}


def typed_cells(file_format: base_formats.Format) -> bool:
    """Whether an export in this format writes numbers and booleans as such (JSON, XLSX),
    not as text, as a CSV must. django-import-export decides it by its own classes, which
    ours only subclass: every JSON and XLSX cell was text ("22", "true")."""
    return isinstance(file_format, JSON | XLSX)


def read_dataset(data: bytes, format_name: str) -> tablib.Dataset:
    try:
        format_class = FORMATS_BY_NAME[format_name]
    except KeyError:
        raise FileProblem(f"Unknown file format {format_name!r}: use csv, json or xlsx.") from None
    return format_class().create_dataset(data)
