"""`manage.py import RESOURCE FILE`: a fleet file imported as the admin imports it.

It replaces django-import-export's command of the same name (fleet_io comes before
import_export in INSTALLED_APPS), which reads the file with tablib and prints a
traceback for a file in the wrong encoding, a ragged row or broken JSON. This one
reads through `fleet_io.file_formats`, imports all or nothing, prints every problem as
`Row N, column C: message` (or `File: message`) and exits 1 when there is one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from import_export.command_utils import get_resource_class

from fleet_io.file_formats import FORMATS_BY_NAME, FileProblem, check_size
from fleet_io.management.database import check_database
from fleet_io.resource import FleetImportResult, FleetResource, Problem


class Command(BaseCommand):
    help = (
        "Import locations, vehicle models or chargers from a CSV, JSON or XLSX file: all "
        "rows or none; every problem is listed by row and column."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "resource", help="e.g. chargers.resources.ChargerResource (see docs/import-formats.md)"
        )
        parser.add_argument("import_file_name", help='the file, or "-" for standard input')
        parser.add_argument(
            "--format",
            help="csv, json or xlsx (default: from the file name's extension); "
            "fleet_io.file_formats.CSV and the like are accepted too",
        )
        parser.add_argument(
            "--encoding", help="the file's text encoding, when it is not UTF-8 (e.g. cp1252)"
        )
        parser.add_argument(
            "-n", "--dry-run", action="store_true", help="check the file; write nothing"
        )
        parser.add_argument(
            "--csms-url",
            help="chargers: the CSMS URL of new chargers when the file has no csms_url "
            "column (default: CHARGESIM_DEFAULT_CSMS_URL; this command cannot see the "
            "built-in CSMS of a running `runsimulator --demo --csms-port P`, whose URL is "
            "ws://127.0.0.1:P/ocpp)",
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="accepted for compatibility: the import never asks (it is all or nothing)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run = FileImport(
            resource_path=options["resource"],
            file_name=options["import_file_name"],
            format_name=options["format"],
            encoding=options["encoding"],
            csms_url=options["csms_url"],
        )
        # Before the file is read: a database never migrated is not a problem of the file.
        check_database(migrated=True)
        try:
            result = run.import_file(dry_run=options["dry_run"])
        except FileProblem as exc:
            self._fail([Problem(None, None, str(exc))])
        except CommandError:
            raise
        except Exception as exc:
            if options["traceback"]:
                raise
            # Nothing was written (the import is one transaction); say so without a traceback.
            self._fail(
                [Problem(None, None, f"The import stopped: {exc} (--traceback shows where).")]
            )
        problems = result.problems()
        if problems:
            self._fail(problems, rows=result.failed_rows())
        totals = result.totals
        verb = "Would import" if options["dry_run"] else "Imported"
        self.stderr.write(
            self.style.SUCCESS(
                f"{verb} {run.file_name}: {totals['new']} new, {totals['update']} updated, "
                f"{totals['skip']} unchanged "
                f"{run.resource_class._meta.model._meta.verbose_name_plural}."
                + (" Dry run: nothing was written." if options["dry_run"] else "")
            )
        )
        for note in run.notes(dry_run=options["dry_run"]):
            self.stderr.write(note)

    def _fail(self, problems: list[Problem], rows: int = 0) -> None:
        for problem in problems:
            self.stderr.write(self.style.ERROR(str(problem)))
        where = f" in {rows} row(s)" if rows else ""
        self.stderr.write(
            self.style.ERROR(f"{len(problems)} problem(s){where}; nothing was imported.")
        )
        sys.exit(1)


class FileImport:
    """One file into one resource, read the way the admin and the background job read it."""

    def __init__(
        self,
        resource_path: str,
        file_name: str,
        format_name: str | None,
        encoding: str | None,
        csms_url: str | None = None,
    ) -> None:
        self.resource_class = get_resource_class(resource_path)
        if not (
            isinstance(self.resource_class, type) and issubclass(self.resource_class, FleetResource)
        ):
            raise CommandError(
                f"{resource_path} is not a fleet resource: use locations.resources."
                "LocationResource, vehicles.resources.VehicleModelResource or "
                "chargers.resources.ChargerResource."
            )
        options: dict[str, Any] = {}
        if csms_url is not None:
            if not self.resource_class.takes_csms_url:
                raise CommandError(
                    "--csms-url is for chargers (chargers.resources.ChargerResource)."
                )
            options["csms_url"] = csms_url
        try:
            self.resource = self.resource_class(**options)
        except ValidationError as exc:
            raise CommandError(f"--csms-url: {' '.join(exc.messages)}") from None
        self.file_name = file_name
        self.format_class = self._format(format_name, file_name)
        self.encoding = encoding

    def notes(self, *, dry_run: bool) -> list[str]:
        return self.resource.import_notes(dry_run=dry_run)

    @staticmethod
    def _format(format_name: str | None, file_name: str) -> type:
        name = format_name or Path(file_name).suffix.lstrip(".")
        name = name.rsplit(".", 1)[-1].lower()  # "fleet_io.file_formats.CSV" -> "csv"
        try:
            return FORMATS_BY_NAME[name]
        except KeyError:
            if format_name:  # it did not tell "--format yaml" from no --format at all
                raise CommandError(
                    f"Unknown format {format_name!r}: use csv, json or xlsx."
                ) from None
            raise CommandError(
                f"Cannot tell the format of {file_name!r}: give --format csv, json or xlsx."
            ) from None

    def read(self) -> bytes | str:
        if self.file_name == "-":
            data = sys.stdin.buffer.read()
        else:
            path = Path(self.file_name)
            try:
                check_size(path.stat().st_size)
                data = path.read_bytes()
            except OSError as exc:
                raise CommandError(f"Cannot read {self.file_name}: {exc.strerror}.") from None
        check_size(len(data))
        if self.encoding and self.format_class is not FORMATS_BY_NAME["xlsx"]:
            try:
                return data.decode(self.encoding)
            except LookupError:
                raise CommandError(f"Unknown encoding {self.encoding!r}.") from None
            except UnicodeDecodeError as exc:
                raise FileProblem(f"The file is not {self.encoding} text: {exc.reason}.") from None
        return data

    def import_file(self, *, dry_run: bool) -> FleetImportResult:
        dataset = self.format_class().create_dataset(self.read())
        return self.resource.import_data(dataset, dry_run=dry_run)
