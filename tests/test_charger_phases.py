"""A charger's AC phases when none are given (admin, import, API): by its power, so that a
3.7 or 7.4 kW wallbox is the single-phase one it is in real life. As three phases, 3.7 kW
is 5.4 A a phase, below the 6 A a car can charge on: no car could charge on it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from chargers.models import Charger
from tests.api_client import TokenClient, user_with_token
from tests.cast import make_location
from tests.test_admin_charger_form import add_form
from tests.test_import_chargers import csv_bytes, run_import

pytestmark = pytest.mark.django_db

ADD = reverse("admin:chargers_charger_add")
BY_POWER = [(3.7, 1), (7.4, 1), (11, 3), (22, 3)]


@pytest.mark.parametrize(("kw", "phases"), BY_POWER)
def test_the_admin_add_form_left_at_by_its_power_wires_a_wallbox_to_one_phase(
    admin_client_logged_in, kw, phases
):
    location = make_location()
    data = add_form(admin_client_logged_in)
    assert data["phases"] == ""  # "by its power", not 3 whatever the power
    data.update(charge_point_id="WB-1", location=str(location.pk), max_power_kw=str(kw))
    data["evses-0-max_power_kw"] = str(kw)
    response = admin_client_logged_in.post(ADD, data)
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    assert Charger.objects.get(charge_point_id="WB-1").phases == phases


def test_phases_given_are_kept_whatever_the_power(admin_client_logged_in):
    location = make_location()
    data = add_form(admin_client_logged_in)
    data.update(charge_point_id="WB-3", location=str(location.pk), max_power_kw="3.7")
    data.update({"phases": "3", "evses-0-max_power_kw": "3.7"})
    assert admin_client_logged_in.post(ADD, data).status_code == 302
    assert Charger.objects.get(charge_point_id="WB-3").phases == 3


def test_an_import_without_phases_wires_a_wallbox_to_one_phase():
    make_location("Depot")
    header = "charge_point_id,location,power_type,max_power_kw,evses"
    rows = [f"WB-{kw},Depot,AC,{kw},Type2:{kw}" for kw, _ in BY_POWER]
    result = run_import(csv_bytes(*rows, header=header))
    assert not result.has_errors(), result.problems()
    stored = dict(Charger.objects.values_list("charge_point_id", "phases"))
    assert stored == {f"WB-{kw}": phases for kw, phases in BY_POWER}
    # An empty cell says the same; a given one is kept.
    cells = ["WB-3.7,Depot,AC,3.7,Type2:3.7,3", "WB-7.4,Depot,AC,7.4,Type2:7.4,"]
    result = run_import(csv_bytes(*cells, header=header + ",phases"))
    assert not result.has_errors(), result.problems()
    stored = dict(Charger.objects.values_list("charge_point_id", "phases"))
    assert (stored["WB-3.7"], stored["WB-7.4"]) == (3, 1)


def test_an_empty_phases_cell_is_not_reported_beside_another_cells_error():
    """QA: a row with an empty phases cell and any other problem was also told "This field
    cannot be null." for phases, a cell that was fine."""
    make_location("Depot")
    header = "charge_point_id,location,power_type,max_power_kw,evses,phases,model"
    result = run_import(csv_bytes("WB-X,Nowhere,AC,3.7,Type2:3.7,,", header=header))
    assert [problem.column for problem in result.problems()] == ["location"]


def test_the_api_without_phases_wires_a_wallbox_to_one_phase():
    location = make_location()
    _, token = user_with_token("fleet", "add_charger", "view_charger")
    api = TokenClient(token)
    for kw, _ in BY_POWER:
        body = {"charge_point_id": f"WB-{kw}", "location": location.pk, "max_power_kw": kw}
        created = api.post("/api/v1/chargers?wait=false", body)
        assert created.status_code == 201, created.json()
    given = {"charge_point_id": "WB-3", "location": location.pk, "max_power_kw": 3.7}
    assert api.post("/api/v1/chargers?wait=false", {**given, "phases": 3}).status_code == 201
    stored = dict(Charger.objects.values_list("charge_point_id", "phases"))
    assert stored == {**{f"WB-{kw}": phases for kw, phases in BY_POWER}, "WB-3": 3}
