"""Country codes are ISO 3166-1 alpha-2 codes (pycountry), checked alike by the admin, the
import and the API (issue 19); a code in lower case is stored in upper case."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from fleet_io.file_formats import read_dataset
from locations.models import Location
from locations.resources import LocationResource
from tests.admin_forms import form_values
from tests.api_client import TokenClient, user_with_token

pytestmark = pytest.mark.django_db

MESSAGE = "'XX' is not an ISO 3166-1 country code (two letters, for example DE)."
V1 = "/api/v1"


def location(country: str) -> Location:
    return Location(name="Hub", time_zone="UTC", country=country)


@pytest.mark.parametrize("code", ["XX", "UK", "D1", "D", "EU"])
def test_the_model_refuses_codes_iso_3166_does_not_assign(code):
    with pytest.raises(ValidationError) as refused:
        location(code).full_clean()
    assert refused.value.message_dict == {
        "country": [f"{code!r} is not an ISO 3166-1 country code (two letters, for example DE)."]
    }


@pytest.mark.parametrize(("given", "stored"), [("DE", "DE"), ("de", "DE"), ("gB", "GB"), ("", "")])
def test_the_model_takes_assigned_codes_in_any_case_and_stores_them_upper(given, stored):
    place = location(given)
    place.full_clean()
    assert place.country == stored


def test_the_admin_form_says_so(admin_client_logged_in):
    url = reverse("admin:locations_location_add")
    data = form_values(admin_client_logged_in.get(url).content.decode())
    data.update(name="Hub", country="XX", time_zone="UTC")
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"country": [MESSAGE]}
    data["country"] = "nl"
    assert admin_client_logged_in.post(url, data).status_code == 302
    assert Location.objects.get(name="Hub").country == "NL"


def test_the_import_says_so_on_the_row_and_column():
    rows = b"name,country,time_zone\nHub,XX,UTC\nGarage,nl,UTC\n"
    result = LocationResource().import_data(read_dataset(rows, "csv"), dry_run=True)
    assert [(p.row, p.column, p.message) for p in result.problems()] == [(2, "country", MESSAGE)]
    result = LocationResource().import_data(read_dataset(rows.replace(b"XX", b"de"), "csv"))
    assert not result.has_errors(), result.problems()
    assert dict(Location.objects.values_list("name", "country")) == {"Hub": "DE", "Garage": "NL"}


def test_the_api_says_so():
    _, token = user_with_token("geo", "add_location", "change_location", "view_location")
    api = TokenClient(token)
    response = api.post(f"{V1}/locations", {"name": "Hub", "country": "XX"})
    assert response.status_code == 422, response.content
    assert [(e["field"], e["message"]) for e in response.json()["errors"]] == [("country", MESSAGE)]
    created = api.post(f"{V1}/locations", {"name": "Hub", "country": "fr"})
    assert created.status_code == 201, created.content
    url = f"{V1}/locations/{created.json()['id']}"
    assert created.json()["country"] == "FR"
    patched = api.patch(url, {"country": "XX"})
    assert patched.status_code == 422
    assert Location.objects.get().country == "FR"
