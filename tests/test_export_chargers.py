"""Exports from the admin: every resource, CSV and JSON, and never the AuthorizationKey."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

from fleet_io.import_admin import FleetImportExportAdmin
from tests.cast import make_charger, make_location, make_vehicle

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-AuthKey-never-exported"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("admin:chargers_charger_export", "CP-1"),
        ("admin:locations_location_export", "Depot"),
        ("admin:vehicles_vehiclemodel_export", "Volkswagen"),
    ],
)
@pytest.mark.parametrize("file_format", ["csv", "json"])
def test_the_admin_exports_each_resource_without_the_authorization_key(
    admin_client_logged_in, url, expected, file_format
):
    make_vehicle()
    make_charger(
        "CP-1",
        location=make_location("Depot"),
        security_profile=1,
        authorization_key=SECRET,
        csms_url="ws://h/ocpp",
    )
    body = admin_export(admin_client_logged_in, url, file_format).decode()
    assert expected in body
    assert SECRET not in body
    if file_format == "json":
        assert isinstance(json.loads(body), list)


@pytest.mark.parametrize(
    "url", ["admin:chargers_charger_export", "admin:locations_location_export"]
)
def test_an_export_address_with_a_parameter_that_is_no_filter_says_so(admin_client_logged_in, url):
    response = admin_client_logged_in.get(reverse(url) + "?format=json", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == reverse(url.replace("_export", "_changelist"))
    shown = [str(message) for message in response.context["messages"]]
    assert shown == [
        "The export was not made: its address has parameters that are not filters of this "
        "list (format). Choose the filters on the list, then Export."
    ]
    # A real filter of the list still narrows the export.
    assert admin_client_logged_in.get(reverse(url) + "?id__exact=1").status_code == 200


# (A leading tab or CR is neutralised too, see below, but an import strips it as whitespace.)
FORMULAE = ["=cmd|' /C calc'!A0", "+1+cmd|x", "-2+3", "@SUM(A1)", "-1e5x"]


def formula_fleet() -> None:
    from chargers.models import Charger

    depot = make_location('=HYPERLINK("http://evil")', latitude=-33.87, longitude=-151.2)
    for n, vendor in enumerate(FORMULAE):
        make_charger(f"-CP-{n}", location=depot, vendor=vendor, model="=1+1")
    assert Charger.objects.count() == len(FORMULAE)


def test_csv_export_neutralises_formula_cells_and_reimports_unchanged():
    from chargers.models import Charger
    from chargers.resources import ChargerResource
    from fleet_io.file_formats import CSV, read_dataset
    from locations.resources import LocationResource

    formula_fleet()
    before = sorted(Charger.objects.values_list("charge_point_id", "vendor", "model"))
    text = CSV().export_data(ChargerResource().export())
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))], cells
    assert "'=cmd|' /C calc'!A0" in cells and "'-CP-0" in cells and "'@SUM(A1)" in cells
    # Plain negative numbers are numbers, not formulae: they stay as they are.
    locations = CSV().export_data(LocationResource().export())
    assert "-33.87,-151.2" in locations
    assert "'=HYPERLINK" in locations

    Charger.objects.all().delete()
    result = ChargerResource().import_data(read_dataset(text.encode(), "csv"))
    assert not result.has_errors(), result.problems()
    assert sorted(Charger.objects.values_list("charge_point_id", "vendor", "model")) == before


def test_xlsx_export_neutralises_formula_cells_and_reimports_unchanged():
    openpyxl = pytest.importorskip("openpyxl")
    from chargers.models import Charger
    from chargers.resources import ChargerResource
    from fleet_io.file_formats import XLSX, read_dataset

    formula_fleet()
    before = sorted(Charger.objects.values_list("charge_point_id", "vendor", "model"))
    data = XLSX().export_data(ChargerResource().export())
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    values = [c.value for c in cells if isinstance(c.value, str)]
    assert not [v for v in values if v.startswith(("=", "+", "-", "@", "\t", "\r"))], values
    assert "'=cmd|' /C calc'!A0" in values

    Charger.objects.all().delete()
    result = ChargerResource().import_data(read_dataset(data, "xlsx"))
    assert not result.has_errors(), result.problems()
    assert sorted(Charger.objects.values_list("charge_point_id", "vendor", "model")) == before


def test_the_admin_csv_export_neutralises_formula_cells(admin_client_logged_in):
    formula_fleet()
    body = admin_export(admin_client_logged_in, "admin:chargers_charger_export", "csv").decode()
    cells = [cell for row in csv.reader(io.StringIO(body)) for cell in row]
    assert "'=cmd|' /C calc'!A0" in cells
    assert "=cmd|' /C calc'!A0" not in cells


def test_the_admin_csv_export_opens_in_a_spreadsheet_and_imports_again(admin_client_logged_in):
    """Excel reads a CSV without a byte order mark in the machine's code page, so the
    admin's download starts with one; the file imports again unchanged, and the command
    line's export (for scripts) has none."""
    from django.core.management import call_command

    from fleet_io.file_formats import read_dataset
    from locations.resources import LocationResource

    make_location("Zürich Hauptbahnhof – Süd")
    data = admin_export(admin_client_logged_in, "admin:locations_location_export", "csv")
    assert data.startswith(b"\xef\xbb\xbf")
    assert "Zürich Hauptbahnhof – Süd" in data.decode("utf-8-sig")
    dataset = read_dataset(data, "csv")
    assert dataset.headers[0] == "name"
    result = LocationResource().import_data(dataset, dry_run=True)
    assert not result.has_errors()
    assert [row.import_type for row in result.rows] == ["skip"]  # nothing to change
    out = io.StringIO()
    call_command("export", "CSV", "locations.resources.LocationResource", stdout=out)
    assert out.getvalue().startswith("name,")


@pytest.mark.parametrize("cell", ["\t=1+1", "\r=1+1", "=1", "+x", "-x", "@x", "-", "+"])
def test_every_formula_start_is_neutralised_and_restored(cell):
    from fleet_io.file_formats import neutralise, restore

    assert neutralise(cell) == "'" + cell
    assert restore(neutralise(cell)) == cell


@pytest.mark.parametrize("cell", ["-33.87", "+5", "-1e-3", "12", "a=b", "'quoted", 5.0, None])
def test_numbers_and_harmless_cells_are_exported_as_they_are(cell):
    from fleet_io.file_formats import neutralise, restore

    assert neutralise(cell) == cell
    assert restore(cell) == cell


@pytest.mark.parametrize("file_format", ["csv", "json"])
def test_an_export_keeps_every_digit_of_its_numbers(file_format):
    """A text export re-imports to the same numbers: a latitude of 52.530234 is not cut to
    52.5302 (4 m away), nor a grid limit of 1,234,567 kW to 1.23457e+06."""
    from chargers.models import Charger, Evse
    from chargers.resources import ChargerResource
    from fleet_io.file_formats import CSV, JSON, read_dataset
    from locations.models import Location
    from locations.resources import LocationResource
    from vehicles.models import VehicleModel
    from vehicles.resources import VehicleModelResource

    site = make_location(
        "Precise", latitude=52.530234, longitude=13.3720815, grid_limit_kw=1234567.0
    )
    make_vehicle(capacity_kwh=77.123456, charging_curve=[[0.0, 100.123456], [33.3333333, 90.0]])
    charger = make_charger("CP-1", location=site, max_power_kw=22.1234567)
    Evse.objects.filter(charger=charger).update(max_power_kw=11.0617283)
    writer: CSV | JSON = CSV() if file_format == "csv" else JSON()

    def numbers() -> list[object]:
        return [
            *Location.objects.values_list("latitude", "longitude", "grid_limit_kw").get(),
            *VehicleModel.objects.values_list("capacity_kwh", "charging_curve").get(),
            Charger.objects.values_list("max_power_kw", flat=True).get(),
            sorted(Evse.objects.values_list("connector_id", "max_power_kw")),
        ]

    before = numbers()
    for resource in (LocationResource, VehicleModelResource, ChargerResource):
        exported = writer.export_data(resource().export())
        data = exported if isinstance(exported, bytes) else exported.encode()
        result = resource().import_data(read_dataset(data, file_format))
        assert not result.has_errors(), result.problems()
    assert numbers() == before


def post_admin_export(client, url: str, file_format: str, **kwargs):
    """The admin's answer to an export of this list, every column chosen."""
    formats = [f().get_extension() for f in FleetImportExportAdmin.formats]
    form = client.get(reverse(url)).context["form"]
    columns = [name for name, field in form.fields.items() if field.initial is True]
    assert not any("authorization_key" in name for name in columns)
    return client.post(
        reverse(url),
        {"format": formats.index(file_format), "resource": 0} | dict.fromkeys(columns, "on"),
        **kwargs,
    )


def admin_export(client, url: str, file_format: str) -> bytes:
    """What the admin's export writes for this list, every column chosen."""
    response = post_admin_export(client, url, file_format)
    assert response.status_code == 200, response.content[:2000]
    return b"".join(response) if response.streaming else response.content


def test_json_and_xlsx_exports_hold_numbers_and_booleans_as_such(admin_client_logged_in):
    """They held every cell as text ("22", "true"): a script reading the JSON had to
    convert, and a spreadsheet summed nothing. A CSV has only text; an empty number is
    JSON's null. Each export still imports back to the same rows."""
    openpyxl = pytest.importorskip("openpyxl")
    from chargers.models import Charger
    from chargers.resources import ChargerResource
    from fleet_io.file_formats import read_dataset

    make_vehicle()
    make_charger("CP-1", location=make_location("Depot", grid_limit_kw=400), max_power_kw=22.5)
    client = admin_client_logged_in
    (site,) = json.loads(admin_export(client, "admin:locations_location_export", "json"))
    assert (site["grid_limit_kw"], site["latitude"], site["load_management"]) == (400, None, False)
    (charger,) = json.loads(admin_export(client, "admin:chargers_charger_export", "json"))
    assert (charger["max_power_kw"], charger["phases"], charger["enabled"]) == (22.5, 3, True)
    assert charger["charge_point_id"] == "CP-1" and charger["evses"] == "2*Type2:22.5"
    (vehicle,) = json.loads(admin_export(client, "admin:vehicles_vehiclemodel_export", "json"))
    assert isinstance(vehicle["capacity_kwh"], float) and isinstance(vehicle["ac_phases"], int)

    workbook = admin_export(client, "admin:chargers_charger_export", "xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(workbook)).active
    header, row = [[cell.value for cell in line] for line in sheet.iter_rows()]
    cells = dict(zip(header, row, strict=True))
    assert (cells["max_power_kw"], cells["phases"], cells["enabled"]) == (22.5, 3, True)

    def stored() -> list[dict]:  # but when each row was saved
        return [
            {k: v for k, v in row.items() if k != "updated"} for row in Charger.objects.values()
        ]

    before = stored()
    for data, name in ((workbook, "xlsx"), (json.dumps([charger]).encode(), "json")):
        result = ChargerResource().import_data(read_dataset(data, name))
        assert not result.has_errors(), result.problems()
        assert stored() == before


def test_the_export_command_writes_json_numbers_as_such():
    from django.core.management import call_command

    make_charger("CP-1", location=make_location("Depot"))
    out = io.StringIO()
    call_command("export", "JSON", "chargers.resources.ChargerResource", stdout=out)
    (charger,) = json.loads(out.getvalue())
    assert (charger["max_power_kw"], charger["auto_connect"]) == (22, True)


def test_an_export_reads_the_configuration_as_values_each_charger_its_own(monkeypatch):
    """10,000 chargers: their ~400,000 configuration rows were built as model instances,
    12.8 of the export's 20 s. Read as (key, value) pairs a chunk of chargers at once, each
    charger still exports its own keys, across chunks."""
    from django.db.models.signals import post_init

    from chargers.models import ConfigurationKey
    from chargers.resources import ChargerResource

    location = make_location("Depot")
    for n in range(5):
        charger = make_charger(f"CFG-{n}", location=location, evses=1)
        ConfigurationKey.objects.update_or_create(
            charger=charger, key="HeartbeatInterval", defaults={"value": str(100 + n)}
        )
    monkeypatch.setattr(ChargerResource, "get_chunk_size", lambda self: 2)
    built = []

    def count(sender, instance, **kwargs):
        built.append(instance)

    post_init.connect(count, sender=ConfigurationKey)
    try:
        dataset = ChargerResource().export()
    finally:
        post_init.disconnect(count, sender=ConfigurationKey)
    cells = dict(zip(dataset["charge_point_id"], dataset["configuration"], strict=True))
    assert cells == {f"CFG-{n}": f"HeartbeatInterval={100 + n}" for n in range(5)}
    assert built == []


def test_an_xlsx_export_names_a_control_character_it_cannot_hold(admin_client_logged_in):
    """QA: a vendor with an ESC in it (which an import takes) made every XLSX export fail,
    "Export failed due to IllegalCharacterError" in the admin, a traceback from the
    command, naming nothing to correct."""
    pytest.importorskip("openpyxl")
    from django.core.management import call_command
    from django.core.management.base import CommandError

    depot = make_location("Depot")
    make_charger("CP-1", location=depot)
    make_charger("CP-2", location=depot, vendor="Acme\x1bX")
    message = (
        "A workbook (XLSX) cannot hold a control character: the vendor of charge_point_id "
        "'CP-2' holds the control character 0x1b ('Acme\\x1bX'). Correct it there, or "
        "export as CSV or JSON, which hold it."
    )
    with pytest.raises(CommandError) as raised:
        call_command("export", "XLSX", "chargers.resources.ChargerResource", stdout=io.BytesIO())
    assert str(raised.value) == message
    response = post_admin_export(
        admin_client_logged_in, "admin:chargers_charger_export", "xlsx", follow=True
    )
    assert [str(m) for m in response.context["messages"]] == [message]
