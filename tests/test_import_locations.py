"""Location import: keyed on the name, model validation messages by row and column."""

from __future__ import annotations

import pytest

from fleet_io.file_formats import read_dataset
from locations.models import Location
from locations.resources import LocationResource

pytestmark = pytest.mark.django_db

HEADER = "name,city,country,latitude,longitude,time_zone,grid_limit_kw"
ROWS = [
    "Depot,Berlin,DE,52.53,13.37,Europe/Berlin,400",
    "Garage,Amsterdam,nl,,,Europe/Amsterdam,",
]


def run_import(*rows: str):
    data = ("\n".join([HEADER, *rows]) + "\n").encode()
    return LocationResource().import_data(read_dataset(data, "csv"))


def snapshot() -> list[tuple]:
    return list(Location.objects.values_list(*HEADER.split(",")))


def test_an_export_reimports_to_the_same_locations():
    run_import(*ROWS)
    before = snapshot()
    exported = LocationResource().export().csv.encode()
    Location.objects.all().delete()
    result = LocationResource().import_data(read_dataset(exported, "csv"))
    assert not result.has_errors(), result.problems()
    assert snapshot() == before
    assert before[1][2] == "NL"  # the model's clean() normalised it


def test_a_reimported_export_is_unchanged_and_not_written():
    run_import(*ROWS)
    stamps = list(Location.objects.order_by("name").values_list("pk", "name", "country"))
    exported = LocationResource().export().csv.encode()
    result = LocationResource().import_data(read_dataset(exported, "csv"))
    assert (result.totals["update"], result.totals["skip"]) == (0, 2)
    # A row that differs from what is stored only as the model's clean() writes it
    # ("nl" for "NL") is unchanged too: rows are compared as they would be saved.
    result = run_import(ROWS[1])
    assert (result.totals["update"], result.totals["skip"]) == (0, 1)
    assert list(Location.objects.order_by("name").values_list("pk", "name", "country")) == stamps


def test_importing_twice_updates_by_name():
    run_import(*ROWS)
    result = run_import("Depot,Potsdam,DE,52.4,13.06,Europe/Berlin,500")
    assert result.totals["update"] == 1
    assert Location.objects.count() == 2
    assert Location.objects.get(name="Depot").city == "Potsdam"


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("Depot,Berlin,DE,52.5,13.3,Mars/Olympus,", "time_zone", "is not an IANA time zone"),
        ("Depot,Berlin,DE,95,13.3,UTC,", "latitude", "less than or equal to 90"),
        ("Depot,Berlin,DE,52.5,,UTC,", None, "Give both latitude and longitude"),
        # QA: also "Give both latitude and longitude, or neither." about the bad cell.
        ("Depot,Berlin,DE,abc,13.3,UTC,", "latitude", "'abc' is not a number."),
        ("Depot,Berlin,DE,52.5,13.3,UTC,-1", "grid_limit_kw", "greater than or equal to 0"),
        ("Depot,Berlin,DE,52.5,13.3,UTC,big", "grid_limit_kw", "'big' is not a number"),
        ("Garage,Berlin,DE,52.5,13.3,UTC,", "name", "'Garage' is already on row 2"),
    ],
)
def test_a_bad_location_row_names_row_and_column_and_nothing_is_written(row, column, message):
    result = run_import(ROWS[1], row)
    problems = result.problems()
    assert [(p.row, p.column) for p in problems] == [(3, column)], problems
    assert message in problems[0].message
    assert Location.objects.count() == 0


def test_turns_for_waiting_cars_import_as_whole_minutes_with_a_default():
    header = "name,load_management,rotation_minutes"
    data = f"{header}\nDepot,yes,5\nGarage,yes,\n".encode()
    result = LocationResource().import_data(read_dataset(data, "csv"))
    assert not result.has_errors(), result.problems()
    assert dict(Location.objects.values_list("name", "rotation_minutes")) == {
        "Depot": 5,
        "Garage": 15,  # empty: the default
    }
    for value, message in (("2.5", "is not a whole number"), ("1441", "less than or equal")):
        bad = LocationResource().import_data(
            read_dataset(f"{header}\nDepot,yes,{value}\n".encode(), "csv")
        )
        problems = bad.problems()
        assert [(p.row, p.column) for p in problems] == [(2, "rotation_minutes")], problems
        assert message in problems[0].message
    assert Location.objects.get(name="Depot").rotation_minutes == 5  # nothing half-written
