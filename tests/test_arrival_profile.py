"""A location's arrival profile (locations.ArrivalProfile): its defaults, its validation with
the engine's own rules and messages, and editing it in the admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from locations.models import ArrivalProfile, Location, VehicleShare
from simulator.contract.traffic import DEFAULT_HOURLY_ARRIVALS, check_profile
from tests.admin_forms import form_values
from tests.api_client import TokenClient, user_with_token
from tests.cast import make_location, make_vehicle

pytestmark = pytest.mark.django_db

ADD = "/admin/locations/arrivalprofile/add/"


@pytest.fixture
def site() -> Location:
    return make_location("Profile Site", time_zone="Europe/Amsterdam")


def errors_of(profile: ArrivalProfile) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        profile.full_clean()
    return caught.value.message_dict


def test_the_defaults_are_a_valid_public_ac_site(site: Location) -> None:
    profile = ArrivalProfile(location=site)
    profile.full_clean()
    profile.save()
    given = profile.to_profile()
    assert given["hourly_arrivals"] == list(DEFAULT_HOURLY_ARRIVALS)
    assert given["time_zone"] == "Europe/Amsterdam"
    assert given["id_tags"][0] == "TRAFFIC0001" and len(given["id_tags"]) == 200
    assert given["vehicle_mix"] == []
    # What the model stores is what the engine accepts, unchanged.
    assert check_profile(given) == given


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"hourly_arrivals": [1] * 23},
            "hourly_arrivals",
            "Give 24 numbers, one per hour of the day from 00:00 to 23:00; got 23.",
        ),
        (
            {"hourly_arrivals": [1] * 23 + [-2]},
            "hourly_arrivals",
            "The rate at 23:00 is -2; it must be within 0 and 10000 arrivals per hour.",
        ),
        (
            {"soc_distribution": "uniform", "soc_a": 60, "soc_b": 20},
            "soc_b",
            "The max 20 is below the min 60.",
        ),
        (
            {"target_distribution": "normal", "target_a": 90, "target_b": -5},
            "target_b",
            "The standard deviation -5 must not be negative.",
        ),
        (
            {"dwell_distribution": "fixed", "dwell_a": 0},
            "dwell_a",
            "The value 0 must be within 1 and 10080 minutes.",
        ),
        (
            {"id_tags": "OK1 THIS-IDTAG-IS-FAR-TOO-LONG"},
            "id_tags",
            "The idTag 'THIS-IDTAG-IS-FAR-TOO-LONG' has 26 characters; OCPP 1.6 allows at most 20.",
        ),
        (
            {"never_unplug_share": 1.5},
            "never_unplug_share",
            "Ensure this value is less than or equal to 1.",
        ),
        (
            {"soc_distribution": "poisson"},
            "soc_distribution",
            "Value 'poisson' is not a valid choice.",
        ),
    ],
)
def test_a_bad_value_is_refused_on_its_field(
    site: Location, fields: dict[str, Any], field: str, message: str
) -> None:
    assert errors_of(ArrivalProfile(location=site, **fields))[field] == [message]


def test_a_vehicle_weight_must_be_positive(site: Location) -> None:
    profile = ArrivalProfile.objects.create(location=site)
    share = VehicleShare(profile=profile, vehicle=make_vehicle(0), weight=0)
    with pytest.raises(ValidationError) as caught:
        share.full_clean()
    assert "weight" in caught.value.message_dict


def test_the_vehicle_mix_reaches_the_engines_profile(site: Location) -> None:
    profile = ArrivalProfile.objects.create(location=site)
    ev, phev = make_vehicle(0), make_vehicle(3)
    VehicleShare.objects.create(profile=profile, vehicle=ev, weight=3)
    VehicleShare.objects.create(profile=profile, vehicle=phev, weight=1)
    assert sorted(profile.to_profile()["vehicle_mix"]) == sorted([(ev.pk, 3.0), (phev.pk, 1.0)])


# -- admin --------------------------------------------------------------------------------


def add_form(client: Client) -> dict[str, str]:
    page = client.get(ADD)
    assert page.status_code == 200
    return form_values(page.content.decode())


def test_the_admin_adds_a_profile_with_its_defaults_and_mix(
    admin_client_logged_in: Client, site: Location
) -> None:
    client = admin_client_logged_in
    page = client.get(ADD).content.decode()
    assert "24 numbers, the mean arrivals per hour" in page  # help text shown
    data = add_form(client)
    vehicle = make_vehicle(1)
    data.update(
        {
            "location": str(site.pk),
            "vehicle_mix-TOTAL_FORMS": "1",
            "vehicle_mix-0-vehicle": str(vehicle.pk),
            "vehicle_mix-0-weight": "2",
        }
    )
    response = client.post(ADD, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    profile = ArrivalProfile.objects.get(location=site)
    assert profile.hourly_arrivals == list(DEFAULT_HOURLY_ARRIVALS)
    assert profile.to_profile()["vehicle_mix"] == [(vehicle.pk, 2.0)]


def test_the_admin_shows_the_engines_message_for_a_bad_value(
    admin_client_logged_in: Client, site: Location
) -> None:
    client = admin_client_logged_in
    data = add_form(client)
    data.update(
        {
            "location": str(site.pk),
            "hourly_arrivals": "[1, 2, 3]",
            "dwell_distribution": "uniform",
            "dwell_a": "90",
            "dwell_b": "30",
        }
    )
    response = client.post(ADD, data)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Give 24 numbers, one per hour of the day from 00:00 to 23:00; got 3." in page
    assert "The max 30 is below the min 90." in page
    assert not ArrivalProfile.objects.exists()


def test_hours_given_as_a_text_are_kept_as_the_list_the_api_reads(
    admin_client_logged_in: Client, site: Location
) -> None:
    """The admin takes the 24 rates as a text too ("0 1 2 ...", as JSON a string): they are
    stored as numbers, not as that text, which made the API's locations answer 500."""
    data = add_form(admin_client_logged_in)
    data.update({"location": str(site.pk), "hourly_arrivals": '"' + " ".join(["2"] * 24) + '"'})
    response = admin_client_logged_in.post(ADD, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    profile = ArrivalProfile.objects.get(location=site)
    assert profile.hourly_arrivals == [2.0] * 24

    # A row saved as a text before: the API reads it as the numbers it stands for.
    ArrivalProfile.objects.filter(pk=profile.pk).update(hourly_arrivals="3 " * 24)
    _, token = user_with_token("reader", "view_location")
    answer = TokenClient(token).get(f"/api/v1/locations/{site.pk}")
    assert answer.status_code == 200, answer.content
    assert answer.json()["arrival_profile"]["hourly_arrivals"] == [3.0] * 24


def test_the_location_list_links_each_site_to_its_traffic(
    admin_client_logged_in: Client, site: Location
) -> None:
    other = make_location("Quiet Site")
    profile = ArrivalProfile.objects.create(location=other, enabled=False)
    page = admin_client_logged_in.get("/admin/locations/location/").content.decode()
    assert f'href="{ADD}?location={site.pk}">default profile</a>' in page
    assert f'href="/admin/locations/arrivalprofile/{profile.pk}/change/">off</a>' in page
    # The add page starts with the location the link names.
    form = admin_client_logged_in.get(f"{ADD}?location={site.pk}").content.decode()
    assert form_values(form)["location"] == str(site.pk)
