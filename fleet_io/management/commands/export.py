"""`manage.py export FORMAT RESOURCE > file`: what the admin's export writes.

It replaces django-import-export's command of the same name so that the command line
writes through `fleet_io.file_formats` too: formula-like CSV and XLSX cells are
neutralised there, as in the admin's export.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from import_export.command_utils import get_resource_class

from fleet_io.file_formats import FORMATS_BY_NAME, FileProblem, typed_cells
from fleet_io.management.database import check_database


class Command(BaseCommand):
    help = "Export locations, vehicle models or chargers as CSV, JSON or XLSX to standard output."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("format", help="CSV, JSON or XLSX")
        parser.add_argument("resource", help="e.g. chargers.resources.ChargerResource")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["format"].rsplit(".", 1)[-1].lower()
        try:
            format_class = FORMATS_BY_NAME[name]
        except KeyError:
            raise CommandError(
                f"Unknown format {options['format']!r}: use CSV, JSON or XLSX."
            ) from None
        if name == "xlsx" and self.stdout.isatty():
            raise CommandError("XLSX is binary: redirect the output to a file.")
        resource = get_resource_class(options["resource"])()
        # A fresh checkout's database would otherwise end the export in a driver's traceback.
        check_database(migrated=True)
        file_format = format_class()
        try:
            data = file_format.export_data(
                resource.export(force_native_type=typed_cells(file_format))
            )
        except FileProblem as exc:
            raise CommandError(str(exc)) from None
        stream = getattr(self.stdout, "buffer", None)  # OutputWrapper passes it on
        if isinstance(data, str):
            if stream is None:  # call_command(stdout=StringIO())
                self.stdout.write(data, ending="")
                return
            data = data.encode()
        (stream or sys.stdout.buffer).write(data)
        (stream or sys.stdout.buffer).flush()
