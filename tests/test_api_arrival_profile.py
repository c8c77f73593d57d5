"""A location's arrival profile in the API's location resources: read, written with the
admin's (and the engine's) validation and messages, replaced whole, removed."""

from __future__ import annotations

from typing import Any

import pytest

from locations.models import ArrivalProfile
from simulator.contract.traffic import DEFAULT_HOURLY_ARRIVALS
from tests.api_client import TokenClient, user_with_token
from tests.cast import make_vehicle

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


@pytest.fixture
def api() -> TokenClient:
    _, token = user_with_token(
        "site-admin", "view_location", "add_location", "change_location", "delete_location"
    )
    return TokenClient(token)


def fields_of(response: Any) -> dict[str | None, list[str]]:
    assert response.status_code == 422, response.content
    found: dict[str | None, list[str]] = {}
    for error in response.json()["errors"]:
        found.setdefault(error["field"], []).append(error["message"])
    return found


def test_a_location_has_no_profile_until_given_one(api: TokenClient) -> None:
    created = api.post(f"{V1}/locations", {"name": "Plain"})
    assert created.status_code == 201, created.content
    assert created.json()["arrival_profile"] is None


def test_a_profile_is_created_with_the_defaults_for_what_it_leaves_out(api: TokenClient) -> None:
    vehicle = make_vehicle(0)
    created = api.post(
        f"{V1}/locations",
        {
            "name": "Mall",
            "arrival_profile": {
                "soc": {"kind": "uniform", "a": 10, "b": 30},
                "vehicle_mix": [{"vehicle": vehicle.pk, "weight": 2.5}],
                "id_tags": "MALL01..MALL05",
            },
        },
    )
    assert created.status_code == 201, created.content
    profile = created.json()["arrival_profile"]
    assert profile["soc"] == {"kind": "uniform", "a": 10.0, "b": 30.0}
    assert profile["vehicle_mix"] == [{"vehicle": vehicle.pk, "weight": 2.5}]
    assert profile["hourly_arrivals"] == list(DEFAULT_HOURLY_ARRIVALS)
    assert profile["target_soc"] == {"kind": "uniform", "a": 80.0, "b": 100.0}
    assert profile["never_unplug_share"] == 0.05 and profile["enabled"] is True
    stored = ArrivalProfile.objects.get(location__name="Mall")
    assert stored.to_profile()["id_tags"] == [f"MALL0{n}" for n in range(1, 6)]
    # Read back the same.
    url = f"{V1}/locations/{created.json()['id']}"
    assert api.get(url).json()["arrival_profile"] == profile


def test_patch_replaces_the_profile_keeps_it_when_omitted_and_null_removes_it(
    api: TokenClient,
) -> None:
    vehicle = make_vehicle(0)
    body = api.post(
        f"{V1}/locations",
        {
            "name": "Depot",
            "arrival_profile": {"vehicle_mix": [{"vehicle": vehicle.pk, "weight": 1}]},
        },
    ).json()
    url = f"{V1}/locations/{body['id']}"
    kept = api.patch(url, {"city": "Bonn"}).json()
    assert kept["arrival_profile"]["vehicle_mix"] == [{"vehicle": vehicle.pk, "weight": 1.0}]
    replaced = api.patch(url, {"arrival_profile": {"hourly_arrivals": [3] * 24}}).json()
    assert replaced["arrival_profile"]["hourly_arrivals"] == [3.0] * 24
    assert replaced["arrival_profile"]["vehicle_mix"] == []  # replaced whole
    assert ArrivalProfile.objects.count() == 1
    removed = api.patch(url, {"arrival_profile": None}).json()
    assert removed["arrival_profile"] is None
    assert not ArrivalProfile.objects.exists()


def test_a_bad_profile_gets_the_admins_messages_and_nothing_is_written(
    api: TokenClient,
) -> None:
    response = api.post(
        f"{V1}/locations",
        {
            "name": "Bad",
            "arrival_profile": {
                "hourly_arrivals": [1] * 12,
                "dwell_minutes": {"kind": "normal", "a": 60, "b": -1},
                "target_soc": {"kind": "gamma", "a": 80},
                "id_tags": "A1..A0",
                "never_unplug_share": 2,
                "vehicle_mix": [{"vehicle": 999_999, "weight": 1}, {"vehicle": 5, "weight": 0}],
            },
        },
    )
    found = fields_of(response)
    assert found["arrival_profile.hourly_arrivals"] == [
        "Give 24 numbers, one per hour of the day from 00:00 to 23:00; got 12."
    ]
    assert found["arrival_profile.dwell_minutes.b"] == [
        "The standard deviation -1 must not be negative."
    ]
    assert found["arrival_profile.target_soc.kind"] == [
        "Select a valid choice. gamma is not one of the available choices."
    ]
    assert found["arrival_profile.id_tags"] == [
        "The range 'A1..A0' counts down; put the smaller number first."
    ]
    assert found["arrival_profile.never_unplug_share"] == [
        "Ensure this value is less than or equal to 1."
    ]
    assert found["arrival_profile.vehicle_mix"] == [
        "The weight of vehicle 5 is 0; it must be more than 0 (leave a vehicle out to exclude it)."
    ]
    assert not ArrivalProfile.objects.exists()
    assert api.get(f"{V1}/locations", q="Bad").json()["count"] == 0


def test_an_unknown_vehicle_in_the_mix_is_named(api: TokenClient) -> None:
    response = api.post(
        f"{V1}/locations",
        {"name": "Unknown", "arrival_profile": {"vehicle_mix": [{"vehicle": 424242, "weight": 1}]}},
    )
    assert fields_of(response) == {
        "arrival_profile.vehicle_mix": ["There is no vehicle model 424242."]
    }
