"""`manage.py import` (the README's command) on hostile files: a message, never a traceback.

Each file of the corpus is generated here. A bad file exits 1 with a message that names
its row and column (or the file), and leaves every table as it was; a good one (Excel's
BOM, formula-like text) imports. The whole corpus runs in-process through call_command,
and a few files also through a real `manage.py import` subprocess, as a user runs it.
"""

from __future__ import annotations

import io
import json
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
import tablib
from django.core.management import call_command

from chargers.configuration_overrides import MAX_ITEMS
from chargers.models import Charger, ConfigurationKey, Evse
from fleet_io.file_formats import XLSX
from locations.models import Location
from simulator.contract import config_keys
from tests.cast import make_charger
from tests.process import run_manage
from vehicles.models import VehicleModel

RESOURCES = {
    "chargers": "chargers.resources.ChargerResource",
    "locations": "locations.resources.LocationResource",
    "vehicles": "vehicles.resources.VehicleModelResource",
}
HEADER = "charge_point_id,location,power_type,max_power_kw,evses,vendor,configuration"
GOOD_ROW = "CP-1,Depot,AC,22,2*Type2:11,Acme,HeartbeatInterval=60"
TABLES = (Location, VehicleModel, Charger, Evse, ConfigurationKey)


@dataclass(frozen=True)
class Hostile:
    name: str  # the file name; its extension gives the format
    data: bytes
    message: str  # a line of the report starts with this
    resource: str = "chargers"


def csv_file(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def json_file(*rows: dict) -> bytes:
    return json.dumps(list(rows)).encode()


def broken_xlsx() -> bytes:
    """A real workbook, cut in half (as by an interrupted download)."""
    dataset = tablib.Dataset(headers=HEADER.split(","))
    dataset.append(GOOD_ROW.split(","))
    workbook = XLSX().export_data(dataset)
    return workbook[: len(workbook) // 2]


def one_column_xlsx(header: str, *rows: str) -> bytes:
    """A workbook whose sheet has one column: a semicolon CSV opened unsplit and saved."""
    dataset = tablib.Dataset(headers=[header])
    for row in rows:
        dataset.append([row])
    return XLSX().export_data(dataset)


def hostile_files() -> list[Hostile]:
    not_utf8 = "File: The file is not UTF-8 (save it as CSV UTF-8)"
    text = csv_file(GOOD_ROW, "CP-2,Düsseldorf,AC,22,Type2:22,“Acme”,").decode()
    return [
        Hostile("latin-1.csv", text.replace("“Acme”", "Acme").encode("latin-1"), not_utf8),
        Hostile("cp1252.csv", text.encode("cp1252"), not_utf8),
        Hostile("utf-16.csv", text.encode("utf-16"), "File: The file is not UTF-8 (it is UTF-16)"),
        Hostile("binary.csv", random.Random(12).randbytes(4096), not_utf8),
        Hostile(
            "nul.csv", b"charge_point_id\nCP-\x00\x01\x02\n", "Row 2, column charge_point_id: "
        ),
        Hostile(
            "huge-field.csv",
            csv_file(GOOD_ROW, "CP-2,Depot,AC,22,Type2:22," + "x" * 200_000 + ","),
            "File: Line 3 has a cell longer than 131,072 characters",
        ),
        Hostile(
            "ragged.csv",
            csv_file(GOOD_ROW, "CP-2,Depot"),
            "File: Line 3 has 2 cells but the header line has 7",
        ),
        Hostile(
            "not-a-list.json",
            b'{"charge_point_id": "CP-1", "location": "Depot"}',
            "File: A JSON import must be a list of objects",
        ),
        Hostile("deep.json", b"[" * 200_000 + b"]" * 200_000, "File: The file is not a list"),
        Hostile(
            "deep-cell.json",
            json_file({"charge_point_id": "CP-1", "location": [[[["Depot"]]]]}),
            "File: Row 1, column location: the value is nested too deeply",
        ),
        Hostile("broken.xlsx", broken_xlsx(), "File: The file is not an Excel workbook (.xlsx)"),
        # A semicolon CSV converted to JSON or saved as a workbook unsplit: advice for
        # that format, not "save the file as 'CSV (comma delimited)'".
        Hostile(
            "semicolons.json",
            json_file({"charge_point_id;location": "CP-1;Depot"}),
            "File: The rows have one key, 'charge_point_id;location', which joins column names "
            "with semicolons: in a JSON import each column is a key of its own",
        ),
        Hostile(
            "semicolons.xlsx",
            one_column_xlsx("charge_point_id;location", "CP-1;Depot"),
            "File: The sheet's first row has one cell, 'charge_point_id;location', which joins "
            "column names with semicolons: in a workbook each column name has a cell of its own",
        ),
        Hostile(
            "nan.csv",
            csv_file(GOOD_ROW, "CP-2,Depot,AC,22,Type2:nan,,", "CP-3,Depot,AC,inf,Type2:22,,"),
            "Row 3, column evses: 'Type2:nan': 'nan' is not a number of kW.",
        ),
        Hostile(
            "inf.csv",
            csv_file(GOOD_ROW, "CP-3,Depot,AC,-inf,Type2:22,,"),
            "Row 3, column max_power_kw: '-inf' is not a number",
        ),
        Hostile(
            "huge-evses.csv",
            csv_file(GOOD_ROW, "CP-2,Depot,AC,22,100000000000*Type2:22,,"),
            "Row 3, column evses: '100000000000*Type2:22' makes more than 99 EVSEs",
        ),
        Hostile(
            "million-keys.json",
            json_file(
                {"charge_point_id": "CP-1", "location": "Depot"},
                {
                    "charge_point_id": "CP-2",
                    "location": "Depot",
                    "configuration": ";".join(f"K{n}=1" for n in range(1_000_000)),
                },
            ),
            "Row 2, column configuration: The cell has 9,888,889 characters; at most 131,072",
        ),
        Hostile(
            "many-keys.csv",
            csv_file(
                GOOD_ROW, "CP-2,Depot,AC,22,Type2:22,," + ";".join(f"K{n}=1" for n in range(500))
            ),
            "Row 3, column configuration: 500 keys; a charger has at most "
            f"{MAX_ITEMS} ({len(config_keys.KEYS)} OCPP keys",
        ),
        Hostile(
            "object.json",
            json_file(
                {"charge_point_id": "CP-1", "location": "Depot"},
                {"charge_point_id": "CP-2", "location": "Depot", "vendor": {"name": "Acme"}},
            ),
            "Row 2, column vendor: The cell holds an object",
        ),
        Hostile(
            "nan-latitude.csv",
            csv_file("Yard,NaN,13.4", header="name,latitude,longitude"),
            "Row 2, column latitude: 'NaN' is not a number",
            resource="locations",
        ),
        Hostile(
            "inf-curve.json",
            b'[{"make": "Acme", "model": "X", "capacity_kwh": 60, "ac_max_kw": 11,'
            b' "charging_curve": [[0, Infinity], [100, 7]]}]',
            "Row 1, column charging_curve: Point 1:",
            resource="vehicles",
        ),
    ]


HOSTILE = hostile_files()


def report_lines(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if line.strip()]


def counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in TABLES)


@pytest.mark.django_db
@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_a_hostile_file_gets_a_message_naming_where_and_changes_nothing(depot, tmp_path, hostile):
    make_charger("CP-0", location=depot)  # an existing charger must stay as it is, too
    before = counts()
    path = tmp_path / hostile.name
    path.write_bytes(hostile.data)
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("import", RESOURCES[hostile.resource], str(path), stderr=stderr)
    assert exit_info.value.code == 1
    lines = report_lines(stderr.getvalue())
    assert "Traceback" not in stderr.getvalue()
    assert any(line.startswith(hostile.message) for line in lines), lines
    assert lines[-1].endswith("nothing was imported.")
    assert counts() == before


@pytest.mark.django_db
def test_excel_csv_utf8_with_a_byte_order_mark_imports(depot, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + csv_file(GOOD_ROW).replace(b"\n", b"\r\n"))
    stderr = io.StringIO()
    call_command("import", RESOURCES["chargers"], str(path), stderr=stderr)
    assert "1 new, 0 updated, 0 unchanged chargers" in stderr.getvalue()
    assert Charger.objects.get().evses.count() == 2


@pytest.mark.django_db
def test_formula_like_text_imports_as_text_and_exports_neutralised(depot, tmp_path):
    path = tmp_path / "formula.csv"
    path.write_bytes(csv_file("-CP-1,Depot,AC,22,Type2:22,\"=cmd|' /C calc'!A0\",@x=1"))
    call_command("import", RESOURCES["chargers"], str(path), stderr=io.StringIO())
    charger = Charger.objects.get()
    assert (charger.charge_point_id, charger.vendor) == ("-CP-1", "=cmd|' /C calc'!A0")
    assert charger.configuration.get(key="@x").value == "1"

    exported = tmp_path / "export.csv"
    with exported.open("w") as out:
        call_command("export", "CSV", RESOURCES["chargers"], stdout=out)
    text = exported.read_text()
    assert "'-CP-1,Depot," in text and ",'=cmd|' /C calc'!A0," in text and ",'@x=1" in text
    Charger.objects.all().delete()
    call_command("import", RESOURCES["chargers"], str(exported), stderr=io.StringIO())
    assert Charger.objects.get().vendor == "=cmd|' /C calc'!A0"


@pytest.mark.django_db
def test_the_dry_run_writes_nothing(depot, tmp_path):
    path = tmp_path / "fleet.csv"
    path.write_bytes(csv_file(GOOD_ROW))
    stderr = io.StringIO()
    call_command("import", RESOURCES["chargers"], str(path), "--dry-run", stderr=stderr)
    assert "Would import" in stderr.getvalue() and "nothing was written" in stderr.getvalue()
    assert Charger.objects.count() == 0


@pytest.mark.django_db
def test_it_says_which_csms_new_chargers_without_a_csms_url_column_get(depot, tmp_path, settings):
    """QA F5: under `runsimulator --demo --csms-port 9100` the admin's import gave a file
    without the column ws://127.0.0.1:9100/ocpp, this command :9000, without a word."""
    settings.CHARGESIM_DEFAULT_CSMS_URL = "ws://127.0.0.1:9000/ocpp"
    settings.CHARGESIM_DEFAULT_CSMS_URL_GIVEN = False
    path = tmp_path / "fleet.csv"
    path.write_bytes(csv_file(GOOD_ROW, GOOD_ROW.replace("CP-1", "CP-2")))
    stderr = io.StringIO()
    call_command("import", RESOURCES["chargers"], str(path), stderr=stderr)
    said = stderr.getvalue()
    assert (
        "The file has no csms_url column: 2 new chargers connect to ws://127.0.0.1:9000/ocpp, "
        "CHARGESIM_DEFAULT_CSMS_URL's default. The built-in CSMS of a simulator started with "
        "--csms-port P is at ws://127.0.0.1:P/ocpp" in said
    )
    assert "--csms-url" in said

    path.write_bytes(csv_file(GOOD_ROW.replace("CP-1", "CP-3")))
    stderr = io.StringIO()
    call_command(
        "import",
        RESOURCES["chargers"],
        str(path),
        "--csms-url",
        "ws://127.0.0.1:9100/ocpp",
        stderr=stderr,
    )
    assert Charger.objects.get(charge_point_id="CP-3").csms_url == "ws://127.0.0.1:9100/ocpp"
    assert (
        "The file has no csms_url column: 1 new charger connects to ws://127.0.0.1:9100/ocpp "
        "(--csms-url)." in stderr.getvalue()
    )


@pytest.mark.django_db
def test_a_bad_csms_url_option_is_refused_before_anything_is_read(depot, tmp_path):
    from django.core.management import CommandError

    path = tmp_path / "fleet.csv"
    path.write_bytes(csv_file(GOOD_ROW))
    with pytest.raises(CommandError, match="--csms-url: .*ws://"):
        call_command("import", RESOURCES["chargers"], str(path), "--csms-url", "http://x/ocpp")
    with pytest.raises(CommandError, match="--csms-url is for chargers"):
        call_command("import", RESOURCES["locations"], str(path), "--csms-url", "ws://x/ocpp")
    assert Charger.objects.count() == 0


@pytest.mark.django_db
def test_a_file_in_another_encoding_imports_when_named(depot, tmp_path):
    path = tmp_path / "cp1252.csv"
    path.write_bytes(csv_file("CP-1,Depot,AC,22,Type2:22,“Acme”,").decode().encode("cp1252"))
    call_command("import", RESOURCES["chargers"], str(path), "--encoding", "cp1252")
    assert Charger.objects.get().vendor == "“Acme”"


@pytest.mark.django_db
def test_an_unknown_format_is_named_as_given(tmp_path):
    """--format yaml was answered "Cannot tell the format of 'fleet.csv': give --format",
    as if no --format had been given."""
    from django.core.management.base import CommandError

    path = tmp_path / "fleet.csv"
    path.write_bytes(csv_file(GOOD_ROW))
    with pytest.raises(CommandError, match=r"^Unknown format 'yaml': use csv, json or xlsx\.$"):
        call_command("import", RESOURCES["chargers"], str(path), "--format", "yaml")
    with pytest.raises(CommandError, match=r"^Cannot tell the format of .*: give --format"):
        call_command("import", RESOURCES["chargers"], str(tmp_path / "fleet.txt"))


# -- the README's command, as a user runs it ------------------------------------------------

SUBPROCESS_CASES = [
    "latin-1.csv",
    "utf-16.csv",
    "deep.json",
    "broken.xlsx",
    "nan.csv",
    "object.json",
]


def table_counts(var_dir: Path) -> tuple[int, ...]:
    tables: tuple[str, ...] = ("locations_location", "vehicles_vehiclemodel", "chargers_charger")
    tables += ("chargers_evse", "chargers_configurationkey")
    with sqlite3.connect(var_dir / "db.sqlite3") as db:
        return tuple(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables)


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory):
    """A migrated SQLite database with one location and one charger, for subprocesses."""
    var_dir = tmp_path_factory.mktemp("var")
    assert run_manage(var_dir, "migrate", "--verbosity", "0").returncode == 0
    locations = var_dir / "locations.csv"
    locations.write_bytes(b"\xef\xbb\xbfname,time_zone\r\nDepot,Europe/Berlin\r\n")  # Excel's BOM
    fleet = var_dir / "fleet.csv"
    fleet.write_bytes(csv_file("CP-0,Depot,AC,22,Type2:22,,"))
    for resource, path in (("locations", locations), ("chargers", fleet)):
        done = run_manage(var_dir, "import", RESOURCES[resource], str(path))
        assert done.returncode == 0, done.stderr
    return var_dir


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_the_readme_import_command_reports_a_hostile_file_without_a_traceback(
    var_dir, tmp_path, name
):
    [hostile] = [h for h in HOSTILE if h.name == name]
    path = tmp_path / name
    path.write_bytes(hostile.data)
    before = table_counts(var_dir)
    assert before == (1, 0, 1, 1, len(config_keys.defaults(1)))
    done = run_manage(var_dir, "import", RESOURCES[hostile.resource], str(path))
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    lines = report_lines(done.stderr)
    assert any(line.startswith(hostile.message) for line in lines), lines
    assert table_counts(var_dir) == before


@pytest.mark.slow
def test_the_readme_export_command_writes_a_file_the_import_command_reads(var_dir, tmp_path):
    done = run_manage(var_dir, "export", "CSV", RESOURCES["chargers"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("charge_point_id,location,")
    path = tmp_path / "fleet.csv"
    path.write_text(done.stdout)
    again = run_manage(var_dir, "import", RESOURCES["chargers"], str(path))
    assert again.returncode == 0, again.stderr
    assert "0 new, 0 updated, 1 unchanged chargers" in again.stderr
