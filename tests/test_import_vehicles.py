"""Vehicle model import: keyed on make + model; curves in the compact "SoC:kW" form."""

from __future__ import annotations

import pytest

from fleet_io.file_formats import read_dataset
from vehicles.models import VehicleModel
from vehicles.resources import VehicleModelResource

pytestmark = pytest.mark.django_db

HEADER = "make,model,capacity_kwh,ac_max_kw,ac_phases,dc_max_kw,dc_min_v,dc_nominal_v,dc_max_v,charging_curve"
GOOD = "Acme,Volt 60,60,11,3,120,300,370,410,0:100 50:90 80:50 100:7"


def run_import(*rows: str, file_format: str = "csv"):
    data = ("\n".join([HEADER, *rows]) + "\n").encode()
    return VehicleModelResource().import_data(read_dataset(data, file_format))


def snapshot() -> list[tuple]:
    return list(VehicleModel.objects.values_list(*HEADER.split(","), "efficiency"))


def test_an_export_reimports_to_the_same_vehicle_models():
    VehicleModel.objects.seed_catalogue()
    before = snapshot()
    for file_format in ("csv", "json"):
        exported = getattr(VehicleModelResource().export(), file_format).encode()
        VehicleModel.objects.all().delete()
        result = VehicleModelResource().import_data(read_dataset(exported, file_format))
        assert not result.has_errors(), result.problems()
        assert snapshot() == before


def test_importing_twice_updates_by_make_and_model():
    run_import(GOOD)
    result = run_import(GOOD.replace(",60,11,", ",64,11,"))
    assert result.totals["update"] == 1
    assert VehicleModel.objects.get().capacity_kwh == 64


def test_a_reimported_export_is_unchanged_though_its_curve_is_text():
    """The curve cell is text ("0:100 80:50"), the stored curve a list: compared as stored
    (after the model's clean() parsed it), an export's rows change nothing."""
    VehicleModel.objects.seed_catalogue()
    for file_format in ("csv", "json"):
        exported = getattr(VehicleModelResource().export(), file_format).encode()
        result = VehicleModelResource().import_data(read_dataset(exported, file_format))
        assert not result.has_errors(), result.problems()
        counts = (result.totals["new"], result.totals["update"], result.totals["skip"])
        assert counts == (0, 0, VehicleModel.objects.count()), file_format
    result = run_import(GOOD)
    result = run_import(GOOD.replace(" 80:50 ", " 80:45 "))
    assert (result.totals["update"], result.totals["skip"]) == (1, 0)


def test_a_json_curve_may_be_a_list_of_pairs():
    data = b'[{"make": "Acme", "model": "Mini", "capacity_kwh": 20, "ac_max_kw": 7.4, "ac_phases": 1, "charging_curve": [[0, 7.4], [100, 2]]}]'
    result = VehicleModelResource().import_data(read_dataset(data, "json"))
    assert not result.has_errors(), result.problems()
    assert VehicleModel.objects.get().charging_curve == [[0, 7.4], [100, 2]]


@pytest.mark.parametrize(
    ("curve", "message"),
    [
        ("0:100 50:90 40:50", "Point 3: SoC 40 % does not increase"),
        ("0:100 80", "Point 2: '80' is not of the form SoC:kW"),
        ("0:100 120:5", "Point 2: SoC 120 % is outside 0–100"),
        ("0:100", "needs at least two points"),
    ],
)
def test_bad_curve_points_are_reported_on_the_charging_curve_column(curve, message):
    result = run_import(GOOD.rsplit(",", 1)[0] + "," + curve)
    problems = result.problems()
    assert [(p.row, p.column) for p in problems] == [(2, "charging_curve")]
    assert message in problems[0].message
    assert VehicleModel.objects.count() == 0


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        (GOOD.replace(",3,120,", ",2,120,"), "ac_phases", "'2' is not one of 1, 3"),
        (GOOD.replace(",120,300,", ",-5,300,"), "dc_max_kw", "greater than or equal to 0"),
        (GOOD.replace(",300,370,", ",,370,"), "dc_nominal_v", "needs min, nominal and max"),
    ],
)
def test_a_bad_vehicle_row_names_its_column(row, column, message):
    problems = run_import(GOOD.replace("Volt 60", "Other"), row).problems()
    assert [(p.row, p.column) for p in problems] == [(3, column)], problems
    assert message in problems[0].message
    assert VehicleModel.objects.count() == 0


def test_a_whole_number_written_with_a_fraction_is_read_in_a_numbered_column():
    """QA: a CSV written from a float column (pandas writes 3.0) was told "'3.0' is not one
    of 1, 3" in ac_phases, while a number column took 60.0 and a workbook's 3.0 was read."""
    result = run_import(GOOD.replace(",60,11,3,", ",60.0,11,3.0,"))
    assert not result.has_errors(), [str(p) for p in result.problems()]
    assert VehicleModel.objects.get().ac_phases == 3
    result = run_import(GOOD.replace(",11,3,", ",11,3.5,").replace("Volt 60", "Volt 61"))
    assert [str(p) for p in result.problems()] == [
        "Row 2, column ac_phases: '3.5' is not one of 1, 3."
    ]


@pytest.mark.parametrize("column", ["make", "model"])
def test_a_control_character_in_a_make_or_model_is_refused(column):
    """QA: a model holding an ESC was stored, and every XLSX export of the vehicle models
    was refused for it from then on."""
    make, model = ("Ac\x1bme", "Volt 60") if column == "make" else ("Acme", "Volt\x1b60")
    result = run_import(GOOD.replace("Acme,Volt 60", f"{make},{model}"))
    assert [(p.row, p.column) for p in result.problems()] == [(2, column)]
    assert not VehicleModel.objects.exists()
