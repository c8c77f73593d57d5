"""The charging curve in the admin (issue 19): typed as the import writes it or as JSON,
drawn as a small chart, one clear message when it is wrong, and required everywhere of a
vehicle that charges on DC (an AC-only one may do without; one that charges on neither is
refused)."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from fleet_io.file_formats import read_dataset
from tests.admin_forms import form_values
from tests.api_client import TokenClient, user_with_token
from tests.cast import make_vehicle
from vehicles.forms import curve_chart
from vehicles.models import CANNOT_CHARGE, CURVE_REQUIRED, VehicleModel
from vehicles.resources import VehicleModelResource

pytestmark = pytest.mark.django_db

ADD = reverse("admin:vehicles_vehiclemodel_add")
DC = {"dc_max_kw": 50, "dc_min_v": 300, "dc_nominal_v": 350, "dc_max_v": 400}


def post_vehicle(client, curve: str, **fields: object):
    data = form_values(client.get(ADD).content.decode())
    data.update(make="Acme", model="Van", capacity_kwh="60", ac_max_kw="11", charging_curve=curve)
    data.update({name: str(value) for name, value in fields.items()})
    return client.post(ADD, data)


def curve_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form was accepted"
    return dict(response.context["adminform"].form.errors)


@pytest.mark.parametrize(
    "typed",
    [
        "0:100 80:50",
        " 0:100, 80:50 ",
        "[[0, 100], [80, 50]]",
        '[{"soc": 0, "kw": 100}, {"soc": 80, "kw": 50}]',
    ],
)
def test_the_curve_is_typed_in_the_short_form_or_as_json(admin_client_logged_in, typed):
    response = post_vehicle(admin_client_logged_in, typed)
    assert response.status_code == 302, curve_errors(response)
    assert VehicleModel.objects.get(make="Acme").charging_curve == [[0, 100], [80, 50]]


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("0:100 80", "Point 2: '80' is not of the form SoC:kW (e.g. 80:50)."),
        ("0:100 50:90 40:50", "Point 3: SoC 40 % does not increase (the point before is at 50 %)."),
        ("[[0, 100], [80, 50]", "This looks like JSON but is not valid JSON"),
        ("0:100", "The charging curve needs at least two points."),
        ("", CURVE_REQUIRED),
    ],
)
def test_a_wrong_curve_gets_one_message_and_no_other(admin_client_logged_in, typed, message):
    errors = curve_errors(post_vehicle(admin_client_logged_in, typed, **DC))
    assert list(errors) == ["charging_curve"]
    assert len(errors["charging_curve"]) == 1
    assert errors["charging_curve"][0].startswith(message)
    assert VehicleModel.objects.count() == 0


def test_the_change_form_shows_the_short_form_and_a_chart(admin_client_logged_in):
    vehicle = make_vehicle(0)  # ID.3: 8 points, peak 120 kW
    html = admin_client_logged_in.get(
        reverse("admin:vehicles_vehiclemodel_change", args=[vehicle.pk])
    ).content.decode()
    assert (
        form_values(html)["charging_curve"] == "0:100 10:120 30:115 50:90 70:65 80:50 90:30 100:7"
    )
    svg = re.search(r'<svg class="curve-chart".*?</svg>', html, re.S)
    assert svg, "no chart"
    assert svg.group().count("<circle") == 8
    assert "120 kW" in svg.group()


def test_a_wrong_curve_typed_back_is_shown_as_typed_without_a_chart(admin_client_logged_in):
    html = post_vehicle(admin_client_logged_in, "0:100 80").content.decode()
    assert form_values(html)["charging_curve"] == "0:100 80"
    assert 'class="curve-chart"' not in html


def test_the_chart_puts_the_peak_at_the_top_and_full_soc_at_the_right():
    svg = str(curve_chart([(0, 50), (100, 100)]))
    found = re.search(r'<polyline points="([^"]+)"', svg)
    assert found
    points = found.group(1).split()
    (x0, y0), (x1, y1) = (tuple(map(float, p.split(","))) for p in points)
    assert x0 < x1 and y1 < y0  # rising to the right; SVG's y grows downwards
    assert y1 == 4.0  # the peak touches the top margin


def test_the_model_import_and_api_refuse_an_empty_curve_of_a_dc_car_with_the_same_words():
    vehicle = VehicleModel(make="Acme", model="Van", capacity_kwh=60, ac_max_kw=11, **DC)
    with pytest.raises(ValidationError) as refused:
        vehicle.full_clean()
    assert refused.value.message_dict == {"charging_curve": [CURVE_REQUIRED]}

    rows = (
        b"make,model,capacity_kwh,ac_max_kw,dc_max_kw,dc_min_v,dc_nominal_v,dc_max_v,"
        b"charging_curve\nAcme,Van,60,11,50,300,350,400,\n"
    )
    problems = VehicleModelResource().import_data(read_dataset(rows, "csv")).problems()
    assert [(p.row, p.column, p.message) for p in problems] == [
        (2, "charging_curve", CURVE_REQUIRED)
    ]

    _, token = user_with_token("fleet", "add_vehiclemodel", "view_vehiclemodel")
    api = TokenClient(token)
    body = {"make": "Acme", "model": "Van", "capacity_kwh": 60, "ac_max_kw": 11, **DC}
    curves: tuple[object, ...] = (None, [], "")
    for curve in curves:
        sent = body if curve is None else {**body, "charging_curve": curve}
        empty = api.post("/api/v1/vehicle-models", sent)
        assert empty.status_code == 422
        assert [(e["field"], e["message"]) for e in empty.json()["errors"]] == [
            ("charging_curve", CURVE_REQUIRED)
        ]
    assert VehicleModel.objects.count() == 0


AC_ONLY = {"make": "Acme", "model": "City", "capacity_kwh": 40, "ac_max_kw": 7.4}


def test_the_admin_saves_an_ac_only_car_without_a_curve(admin_client_logged_in):
    """DC 0 kW says "cannot charge on DC": the curve, which the DC power follows, was
    required of it all the same."""
    response = post_vehicle(admin_client_logged_in, "", dc_max_kw=0)
    assert response.status_code == 302, curve_errors(response)
    assert VehicleModel.objects.get(make="Acme").charging_curve == []


def test_an_import_and_the_api_save_an_ac_only_car_without_a_curve():
    rows = b"make,model,capacity_kwh,ac_max_kw,dc_max_kw,charging_curve\nAcme,City,40,7.4,0,\n"
    result = VehicleModelResource().import_data(read_dataset(rows, "csv"))
    assert [(p.row, p.column, p.message) for p in result.problems()] == []
    assert VehicleModel.objects.get(model="City").charging_curve == []

    _, token = user_with_token("fleet", "add_vehiclemodel", "view_vehiclemodel")
    api = TokenClient(token)
    created = api.post("/api/v1/vehicle-models", {**AC_ONLY, "model": "Town"})
    assert created.status_code == 201, created.json()
    assert created.json()["charging_curve"] == []


def test_the_admin_refuses_a_car_that_charges_on_neither_ac_nor_dc(admin_client_logged_in):
    errors = curve_errors(post_vehicle(admin_client_logged_in, "0:7 100:7", ac_max_kw=0))
    assert errors == {"ac_max_kw": [CANNOT_CHARGE]}
    assert not VehicleModel.objects.exists()


def test_an_import_and_the_api_refuse_a_car_that_charges_on_neither_ac_nor_dc():
    rows = b"make,model,capacity_kwh,ac_max_kw,dc_max_kw,charging_curve\nAcme,Brick,40,0,0,\n"
    result = VehicleModelResource().import_data(read_dataset(rows, "csv"))
    assert [(p.row, p.column, p.message) for p in result.problems()] == [
        (2, "ac_max_kw", CANNOT_CHARGE)
    ]

    vehicle = make_vehicle(3)  # the plug-in hybrid: AC only
    _, token = user_with_token(
        "fleet", "add_vehiclemodel", "change_vehiclemodel", "view_vehiclemodel"
    )
    api = TokenClient(token)
    created = api.post("/api/v1/vehicle-models", {**AC_ONLY, "ac_max_kw": 0})
    assert created.status_code == 422
    assert [(e["field"], e["message"]) for e in created.json()["errors"]] == [
        ("ac_max_kw", CANNOT_CHARGE)
    ]
    changed = api.patch(f"/api/v1/vehicle-models/{vehicle.pk}", {"ac_max_kw": 0})
    assert changed.status_code == 422
    assert VehicleModel.objects.get().ac_max_kw == vehicle.ac_max_kw


ZERO_AT_80 = (
    "Point 3: 0 kW at 80 % SoC would stop a car charging at 80 %, and it would never reach "
    "a higher target. Give every point more than 0 kW (a car stops at its target SoC by "
    "itself)."
)


@pytest.mark.parametrize("typed", ["0:100 50:60 80:0", "[[0, 100], [50, 60], [80, 0]]"])
def test_the_admin_refuses_a_curve_that_falls_to_0_kw(admin_client_logged_in, typed):
    """Accepted, it left a car in SuspendedEV below its target for ever."""
    errors = curve_errors(post_vehicle(admin_client_logged_in, typed))
    assert errors == {"charging_curve": [ZERO_AT_80]}
    assert not VehicleModel.objects.exists()


def test_an_import_refuses_a_curve_with_a_0_kw_point_by_row_and_column_and_imports_nothing():
    rows = (
        b"make,model,capacity_kwh,ac_max_kw,charging_curve\n"
        b"Acme,Van,60,11,0:100 80:50 100:7\n"
        b"Acme,Truck,90,11,0:100 50:60 80:0 100:5\n"
    )
    result = VehicleModelResource().import_data(read_dataset(rows, "csv"))
    assert [(p.row, p.column, p.message) for p in result.problems()] == [
        (3, "charging_curve", ZERO_AT_80)
    ]
    assert not VehicleModel.objects.exists()  # not the good row either


def test_the_api_refuses_a_curve_with_a_0_kw_point_with_422_on_the_field():
    vehicle = make_vehicle(0)
    _, token = user_with_token(
        "fleet", "add_vehiclemodel", "change_vehiclemodel", "view_vehiclemodel"
    )
    api = TokenClient(token)
    body = {"make": "Acme", "model": "Van", "capacity_kwh": 60, "ac_max_kw": 11}
    for sent in ("0:100 50:60 80:0", [[0, 100], [50, 60], [80, 0]]):
        created = api.post("/api/v1/vehicle-models", {**body, "charging_curve": sent})
        assert created.status_code == 422
        errors = created.json()["errors"]
        assert [(e["field"], e["message"]) for e in errors] == [("charging_curve", ZERO_AT_80)]
    changed = api.patch(
        f"/api/v1/vehicle-models/{vehicle.pk}", {"charging_curve": "0:100 50:60 80:0"}
    )
    assert changed.status_code == 422
    assert [e["field"] for e in changed.json()["errors"]] == ["charging_curve"]
    assert VehicleModel.objects.get().charging_curve == vehicle.charging_curve
