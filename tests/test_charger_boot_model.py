"""A charger's BootNotification model when none is given (admin, import, API): by its power
type and power. Every charger given none booted as "Virtual AC 22", a DC one too."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse

from chargers.models import Charger
from tests.api_client import TokenClient, user_with_token
from tests.cast import make_location
from tests.engine import started
from tests.test_admin_charger_form import add_form
from tests.test_import_chargers import csv_bytes, run_import

ADD = reverse("admin:chargers_charger_add")
# (power type, kW, its EVSE, the model it is given)
BY_POWER = [
    ("DC", 150, "CCS2:150", "Virtual DC 150"),
    ("DC", 50, "CCS2:50", "Virtual DC 50"),
    ("AC", 22, "Type2:22", "Virtual AC 22"),
    ("AC", 7.4, "Type2:7.4", "Virtual AC 7.4"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("power_type", "kw", "evse", "model"), BY_POWER)
def test_the_admin_add_form_left_empty_names_the_model_by_its_power(
    admin_client_logged_in, power_type, kw, evse, model
):
    location = make_location()
    data = add_form(admin_client_logged_in)
    assert data["model"] == ""  # by its power, not "Virtual AC 22" whatever the power
    data.update(
        charge_point_id="CP-M",
        location=str(location.pk),
        power_type=power_type,
        max_power_kw=str(kw),
    )
    data.update({"evses-0-connector_type": evse.split(":")[0], "evses-0-max_power_kw": str(kw)})
    response = admin_client_logged_in.post(ADD, data)
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    assert Charger.objects.get(charge_point_id="CP-M").model == model


@pytest.mark.django_db
def test_a_model_given_is_kept_whatever_the_power(admin_client_logged_in):
    location = make_location()
    data = add_form(admin_client_logged_in)
    data.update(charge_point_id="CP-M", location=str(location.pk), power_type="DC")
    data.update({"model": "Terra 184", "max_power_kw": "150", "evses-0-connector_type": "CCS2"})
    data["evses-0-max_power_kw"] = "150"
    assert admin_client_logged_in.post(ADD, data).status_code == 302
    assert Charger.objects.get(charge_point_id="CP-M").model == "Terra 184"


@pytest.mark.django_db
def test_an_import_without_a_model_names_it_by_its_power():
    make_location("Depot")
    header = "charge_point_id,location,power_type,max_power_kw,evses"
    rows = [f"CP-{kw},Depot,{kind},{kw},{evse}" for kind, kw, evse, _ in BY_POWER]
    result = run_import(csv_bytes(*rows, header=header))
    assert not result.has_errors(), result.problems()
    stored = dict(Charger.objects.values_list("charge_point_id", "model"))
    assert stored == {f"CP-{kw}": model for _, kw, _, model in BY_POWER}
    # An empty cell says the same; a given one is kept.
    cells = ["CP-150,Depot,DC,150,CCS2:150,Terra 184", "CP-50,Depot,DC,60,CCS2:60,"]
    result = run_import(csv_bytes(*cells, header=header + ",model"))
    assert not result.has_errors(), result.problems()
    stored = dict(Charger.objects.values_list("charge_point_id", "model"))
    assert (stored["CP-150"], stored["CP-50"]) == ("Terra 184", "Virtual DC 60")
    # A re-import without the column leaves it as it is.
    result = run_import(csv_bytes("CP-22,Depot,AC,11,Type2:11", header=header))
    assert not result.has_errors(), result.problems()
    assert Charger.objects.get(charge_point_id="CP-22").model == "Virtual AC 22"


@pytest.mark.django_db(transaction=True)
async def test_a_dc_charger_made_through_the_api_without_a_model_boots_as_one(csms):
    def create() -> None:
        location = make_location()
        _, token = user_with_token("fleet", "add_charger", "view_charger")
        api = TokenClient(token)
        for kind, kw, _, _ in BY_POWER:
            body = {
                "charge_point_id": f"CP-{kw}",
                "location": location.pk,
                "power_type": kind,
                "max_power_kw": kw,
                "csms_url": csms.url,
            }
            created = api.post("/api/v1/chargers?wait=false", body)
            assert created.status_code == 201, created.json()
        given = {"charge_point_id": "CP-GIVEN", "location": location.pk, "power_type": "DC"}
        given.update(max_power_kw=150, model="Terra 184", csms_url=csms.url)
        assert api.post("/api/v1/chargers?wait=false", given).status_code == 201

    await database_sync_to_async(create)()
    service = await started("CP-150", "CP-GIVEN")
    try:
        booted = {
            cp_id: (await csms.wait_for(cp_id, "BootNotification")).payload["chargePointModel"]
            for cp_id in ("CP-150", "CP-GIVEN")
        }
    finally:
        await service.stop()
    assert booted == {"CP-150": "Virtual DC 150", "CP-GIVEN": "Terra 184"}
    stored = await database_sync_to_async(
        lambda: dict(Charger.objects.values_list("charge_point_id", "model"))
    )()
    assert stored == {
        **{f"CP-{kw}": model for _, kw, _, model in BY_POWER},
        "CP-GIVEN": "Terra 184",
    }
