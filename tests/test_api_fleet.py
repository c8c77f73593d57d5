"""The fleet resources of the API: locations, vehicle models, chargers with their EVSEs and
configuration keys. Auth and permissions on every endpoint, the admin's validation and
messages, pagination and filters, secrets never returned, changes told to the workers."""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from api import fleet_writes
from api.fleet_writes import MAX_BULK
from chargers.models import Charger, ConfigurationKey, Evse, OutboxMessage, Transaction
from locations.models import Location
from simulator import contract
from tests.api_client import TokenClient, user_with_token
from tests.cast import (
    make_charger,
    make_location,
    make_open_transaction,
    make_superuser,
    make_vehicle,
)
from tests.test_admin_pages import change_form_data
from tests.test_fleet_changes import SHARDS, FakeWorker, charger_pks, inbox, setup  # noqa: F401
from vehicles.models import VehicleModel

pytestmark = pytest.mark.django_db

V1 = "/api/v1"
# A valid AuthorizationKey (16 bytes in hex), as the API takes one.
SECRET = "5ec2e75ec2e75ec2e75ec2e75ec2e700"
HEX_KEY = "00112233445566778899aabbccddeeff"
FLEET_MODELS = ("location", "vehiclemodel", "charger", "evse", "configurationkey")
EVERY_PERMISSION = [
    f"{action}_{model}" for model in FLEET_MODELS for action in ("view", "add", "change", "delete")
]


@pytest.fixture
def depot() -> Location:
    return make_location("Depot")


@pytest.fixture
def api() -> TokenClient:
    """A user with every fleet permission (not a superuser)."""
    _, token = user_with_token("fleet-admin", *EVERY_PERMISSION)
    return TokenClient(token)


def client_with(*codenames: str) -> TokenClient:
    _, token = user_with_token(f"user-{len(codenames)}-{'-'.join(codenames)[:60]}", *codenames)
    return TokenClient(token)


def errors_of(response: Any, status: int = 422) -> list[tuple[str | None, str, int | None]]:
    assert response.status_code == status, response.content
    return [(e["field"], e["message"], e["row"]) for e in response.json()["errors"]]


def fields_of(response: Any) -> dict[str | None, list[str]]:
    found: dict[str | None, list[str]] = {}
    for field, message, _ in errors_of(response):
        found.setdefault(field, []).append(message)
    return found


def charger_body(cp_id: str, location: Location, **fields: Any) -> dict[str, Any]:
    return {"charge_point_id": cp_id, "location": location.pk, **fields}


# -- every endpoint: anonymous 401, no permission 403 --------------------------------------

ENDPOINTS = [
    ("get", "/locations", "view_location"),
    ("post", "/locations", "add_location"),
    ("get", "/locations/{location}", "view_location"),
    ("put", "/locations/{location}", "change_location"),
    ("patch", "/locations/{location}", "change_location"),
    ("delete", "/locations/{location}", "delete_location"),
    ("get", "/vehicle-models", "view_vehiclemodel"),
    ("post", "/vehicle-models", "add_vehiclemodel"),
    ("get", "/vehicle-models/{vehicle}", "view_vehiclemodel"),
    ("put", "/vehicle-models/{vehicle}", "change_vehiclemodel"),
    ("patch", "/vehicle-models/{vehicle}", "change_vehiclemodel"),
    ("delete", "/vehicle-models/{vehicle}", "delete_vehiclemodel"),
    ("get", "/chargers", "view_charger"),
    ("post", "/chargers", "add_charger"),
    ("post", "/bulk/chargers", "add_charger"),
    ("get", "/chargers/CP-1", "view_charger"),
    ("put", "/chargers/CP-1", "change_charger"),
    ("patch", "/chargers/CP-1", "change_charger"),
    ("delete", "/chargers/CP-1", "delete_charger"),
    ("get", "/chargers/CP-1/evses", "view_evse"),
    ("post", "/chargers/CP-1/evses", "add_evse"),
    ("get", "/chargers/CP-1/evses/1", "view_evse"),
    ("put", "/chargers/CP-1/evses/1", "change_evse"),
    ("patch", "/chargers/CP-1/evses/1", "change_evse"),
    ("delete", "/chargers/CP-1/evses/2", "delete_evse"),  # the last: only it may go
    ("get", "/chargers/CP-1/configuration", "view_configurationkey"),
    ("get", "/chargers/CP-1/configuration/HeartbeatInterval", "view_configurationkey"),
    ("put", "/chargers/CP-1/configuration/HeartbeatInterval", "change_configurationkey"),
    ("put", "/chargers/CP-1/configuration/NewKey", "add_configurationkey"),
    ("delete", "/chargers/CP-1/configuration/VendorKey", "delete_configurationkey"),
]

# A valid body for each write, so that what answers is the permission check.
CURVE = "0:11 100:11"
BODIES: dict[tuple[str, str], Any] = {
    ("post", "/locations"): lambda ids: {"name": "New"},
    ("put", "/locations/{location}"): lambda ids: {"name": "Renamed"},
    ("patch", "/locations/{location}"): lambda ids: {"city": "Bonn"},
    ("post", "/vehicle-models"): lambda ids: {
        "make": "M",
        "model": "X",
        "capacity_kwh": 50,
        "ac_max_kw": 11,
        "charging_curve": CURVE,
    },
    ("put", "/vehicle-models/{vehicle}"): lambda ids: {
        "make": "M",
        "model": "Y",
        "capacity_kwh": 50,
        "ac_max_kw": 11,
        "charging_curve": CURVE,
    },
    ("patch", "/vehicle-models/{vehicle}"): lambda ids: {"capacity_kwh": 40},
    ("post", "/chargers"): lambda ids: {"charge_point_id": "CP-NEW", "location": ids["depot"]},
    ("post", "/bulk/chargers"): lambda ids: {
        "items": [{"charge_point_id": "CP-NEW", "location": ids["depot"]}]
    },
    ("put", "/chargers/CP-1"): lambda ids: {"charge_point_id": "CP-1", "location": ids["depot"]},
    ("patch", "/chargers/CP-1"): lambda ids: {"vendor": "Other"},
    ("post", "/chargers/CP-1/evses"): lambda ids: {"connector_type": "Type2", "max_power_kw": 11},
    ("put", "/chargers/CP-1/evses/1"): lambda ids: {"connector_type": "Type2", "max_power_kw": 11},
    ("patch", "/chargers/CP-1/evses/1"): lambda ids: {"max_power_kw": 7.4},
    ("put", "/chargers/CP-1/configuration/HeartbeatInterval"): lambda ids: {"value": "30"},
    ("put", "/chargers/CP-1/configuration/NewKey"): lambda ids: {"value": "x"},
}


@pytest.fixture
def cast(depot: Location) -> dict[str, int]:
    charger = make_charger("CP-1", location=depot, evses=2)
    ConfigurationKey.objects.create(charger=charger, key="VendorKey", value="on")
    vehicle = make_vehicle()
    spare = make_location("Spare")
    return {"location": spare.pk, "vehicle": vehicle.pk, "depot": depot.pk}


def takes_wait(method: str, path: str) -> bool:
    """Whether a write waits for the workers (`?wait=`): a charger's writes and its EVSE and
    configuration key writes, but for the last two's deletes, which answer at once."""
    if method == "get" or not path.startswith(("/chargers", "/bulk")):
        return False
    return not (method == "delete" and path.count("/") > 2)


def call(client: Any, method: str, path: str, ids: dict[str, int]) -> Any:
    url = V1 + path.format(**ids) + ("?wait=false" if takes_wait(method, path) else "")
    make_body = BODIES.get((method, path))
    body = None if make_body is None else make_body(ids)
    if isinstance(client, TokenClient):
        if method in ("get", "delete"):
            return getattr(client, method)(url)
        return getattr(client, method)(url, body)
    if method in ("get", "delete"):
        return getattr(client, method)(url)
    return getattr(client, method)(url, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize(("method", "path", "perm"), ENDPOINTS)
def test_every_fleet_endpoint_refuses_anonymous_callers(client, cast, method, path, perm):
    response = call(client, method, path, cast)
    assert response.status_code == 401, response.content
    assert set(response.json()) == {"detail", "errors"}


@pytest.mark.parametrize(("method", "path", "perm"), ENDPOINTS)
def test_every_fleet_endpoint_needs_its_permission(cast, method, path, perm):
    others = [p for p in EVERY_PERMISSION if p != perm]
    response = call(client_with(*others), method, path, cast)
    assert response.status_code == 403, response.content
    assert perm in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "perm"), ENDPOINTS)
def test_every_fleet_endpoint_answers_with_only_its_permission(cast, method, path, perm):
    needs = {perm}
    if (method, path) == ("delete", "/chargers/CP-1"):
        needs |= {"delete_evse", "delete_configurationkey"}  # as the admin's delete
    response = call(client_with(*needs), method, path, cast)
    assert response.status_code in (200, 201, 204), response.content


def test_a_browser_session_writes_with_its_csrf_token():
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_superuser())
    refused = browser.post(f"{V1}/locations", {"name": "Hub"}, content_type="application/json")
    assert refused.status_code == 403
    browser.get(reverse("admin:index"))  # the csrftoken cookie, as any admin page sets it
    created = browser.post(
        f"{V1}/locations",
        {"name": "Hub"},
        content_type="application/json",
        headers={"X-CSRFToken": browser.cookies["csrftoken"].value},
    )
    assert created.status_code == 201, created.content
    assert Location.objects.filter(name="Hub").exists()


# -- locations ------------------------------------------------------------------------------


def test_locations_are_listed_in_pages_by_name(api):
    for name in ("Delta", "Alpha", "Echo", "Charlie", "Bravo"):
        make_location(name)
    page = api.get(f"{V1}/locations", limit=2, offset=1).json()
    assert page["count"] == 5
    assert [item["name"] for item in page["items"]] == ["Bravo", "Charlie"]
    last = api.get(f"{V1}/locations", limit=2, offset=4).json()
    assert [item["name"] for item in last["items"]] == ["Echo"]


@pytest.mark.parametrize("limit", [0, -1, 1001, "many"])
def test_a_page_size_out_of_range_is_refused_naming_limit(api, limit):
    assert [f for f, _, _ in errors_of(api.get(f"{V1}/locations", limit=limit))] == ["limit"]


@pytest.mark.parametrize("number", [str(2**63), "99999999999999999999999", "-1"])
def test_an_offset_or_id_past_the_databases_integers_is_a_422_naming_it(depot, number):
    """Past 2**63 - 1 no database column holds it: SQLite refused the query with an
    IntegrityError (answered as the retryable 409, which a script retried for ever) and
    PostgreSQL with a 500. It is the caller's mistake, said as such."""
    make_charger("BIG-1", location=depot)
    _, token = user_with_token("big-admin", is_superuser=True)
    api = TokenClient(token)
    reads = {
        f"/chargers?offset={number}": "offset",
        f"/locations?offset={number}": "offset",
        f"/vehicle-models?offset={number}": "offset",
        f"/imports?offset={number}": "offset",
        f"/scenarios/runs?offset={number}": "offset",
        f"/chargers?location={number}": "location",
        f"/log.jsonl?since=2026-01-01T00:00:00&location={number}": "location.0",
        f"/locations/{number}": "location_id",
        f"/vehicle-models/{number}": "vehicle_model_id",
        f"/chargers/BIG-1/evses/{number}": "connector_id",
        f"/imports/{number}": "job_id",
        f"/scenarios/runs/{number}": "run_id",
    }
    for path, field in reads.items():
        assert [f for f, _, _ in errors_of(api.get(V1 + path))] == [field], path
    for path in ("/locations/", "/vehicle-models/", "/chargers/BIG-1/evses/", "/imports/"):
        assert len(errors_of(api.delete(f"{V1}{path}{number}"))) == 1, path
    # The largest offset a database takes is a page past the end, as any other.
    last = api.get(f"{V1}/locations", offset=2**63 - 1).json()
    assert last["items"] == [] and last["count"] == 1


def test_locations_are_filtered_by_name_city_and_country(api):
    make_location("Depot North", city="Hamburg", country="DE")
    make_location("Garage", city="Amsterdam", country="NL")
    names = lambda **q: [i["name"] for i in api.get(f"{V1}/locations", **q).json()["items"]]  # noqa: E731
    assert names(q="north") == ["Depot North"]
    assert names(q="amster") == ["Garage"]
    assert names(country="nl") == ["Garage"]


def test_a_location_is_created_read_changed_and_deleted(api):
    created = api.post(f"{V1}/locations", {"name": "Hub", "city": "Köln", "country": "de"})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["country"] == "DE"  # the model's own clean()
    assert body["chargers"] == 0
    url = f"{V1}/locations/{body['id']}"
    assert api.get(url).json()["name"] == "Hub"
    assert body["load_management"] is False
    patched = api.patch(url, {"grid_limit_kw": 250, "load_management": True}).json()
    assert (patched["city"], patched["load_management"]) == ("Köln", True)
    replaced = api.put(url, {"name": "Hub 2"}).json()
    assert (replaced["city"], replaced["grid_limit_kw"]) == ("", None)
    assert replaced["load_management"] is False
    assert replaced["rotation_minutes"] == 15  # the default
    turns = api.patch(url, {"rotation_minutes": 5}).json()
    assert turns["rotation_minutes"] == 5
    for bad in (-1, 1441, 2.5):
        refused = api.patch(url, {"rotation_minutes": bad})
        assert refused.status_code == 422, (bad, refused.content)
    deleted = api.delete(url)
    # No body, so no type for it: a 204 carried `null` as application/json, which HTTP
    # does not allow and a strict client rejects.
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert "Content-Type" not in deleted.headers
    assert api.get(url).status_code == 404


def test_a_location_is_checked_as_the_admin_checks_it(api, depot):
    response = api.post(
        f"{V1}/locations",
        {"name": "Depot", "time_zone": "Mars/Olympus", "latitude": 95, "country": "Deutschland"},
    )
    found = fields_of(response)
    assert found["name"] == ["Location with this Name already exists."]
    assert found["time_zone"] == [
        "Mars/Olympus is not an IANA time zone (for example Europe/Berlin)."
    ]
    assert found["latitude"] == ["Ensure this value is less than or equal to 90."]
    assert found["country"] == ["Ensure this value has at most 2 characters (it has 11)."]


def test_a_location_with_chargers_is_not_deleted(api, depot):
    make_charger("CP-1", location=depot)
    response = api.delete(f"{V1}/locations/{depot.pk}")
    assert response.status_code == 409
    assert "CP-1" in response.json()["detail"]
    assert Location.objects.filter(pk=depot.pk).exists()


# -- vehicle models -------------------------------------------------------------------------


def test_a_vehicle_model_takes_its_curve_as_a_list_or_the_imports_text(api):
    body = {"make": "Kia", "model": "EV6", "capacity_kwh": 77.4, "ac_max_kw": 11}
    as_list = api.post(f"{V1}/vehicle-models", {**body, "charging_curve": [[0, 200], [80, 90]]})
    assert as_list.status_code == 201, as_list.content
    assert as_list.json()["charging_curve"] == [[0, 200], [80, 90]]
    as_text = api.post(
        f"{V1}/vehicle-models", {**body, "model": "EV9", "charging_curve": "0:200 80:90"}
    )
    assert as_text.json()["charging_curve"] == [[0, 200], [80, 90]]
    changed = api.patch(
        f"{V1}/vehicle-models/{as_text.json()['id']}", {"charging_curve": "0:50 100:5"}
    )
    assert changed.json()["charging_curve"] == [[0, 50], [100, 5]]


def test_a_vehicle_model_is_checked_as_the_admin_checks_it(api):
    make_vehicle(0)
    response = api.post(
        f"{V1}/vehicle-models",
        {
            "make": "Volkswagen",
            "model": "ID.3 Pro (58 kWh)",
            "capacity_kwh": 58,
            "ac_max_kw": 11,
            "dc_max_kw": 120,
            "charging_curve": "50:10 20:5",
        },
    )
    found = fields_of(response)
    assert found["charging_curve"] == [
        "Point 2: SoC 20 % does not increase (the point before is at 50 %)."
    ]
    assert found["dc_nominal_v"] == ["A DC-capable vehicle needs min, nominal and max voltage."]
    assert found[None] == ["Vehicle model with this Make and Model already exists."]


def test_vehicle_models_are_filtered_and_deleted(api, depot):
    for index in range(3):
        make_vehicle(index)
    listed = api.get(f"{V1}/vehicle-models", make="hyundai").json()
    assert [v["model"] for v in listed["items"]] == ["Ioniq 5 (77.4 kWh)"]
    assert api.get(f"{V1}/vehicle-models", q="transit").json()["count"] == 1
    ford = VehicleModel.objects.get(make="Ford")
    charger = make_charger("CP-1", location=depot, default_vehicle=ford)
    assert api.delete(f"{V1}/vehicle-models/{ford.pk}").status_code == 204
    charger.refresh_from_db()
    assert charger.default_vehicle is None


def test_a_vehicle_model_in_a_sites_vehicle_mix_is_not_deleted(api, depot, admin_client_logged_in):
    """Deleting it took its share out of the mix unsaid: a site whose mix held only it drew
    every vehicle model alike from then on (an empty mix). Refused, naming the sites, in
    the API and in the admin, as a location with chargers is."""
    only = make_vehicle(0)
    other = make_vehicle(1)
    for site, mix in ((depot, [only]), (make_location("Harbour"), [only, other])):
        written = api.patch(
            f"{V1}/locations/{site.pk}",
            {"arrival_profile": {"vehicle_mix": [{"vehicle": v.pk, "weight": 1} for v in mix]}},
        )
        assert written.status_code == 200, written.content
    refused = api.delete(f"{V1}/vehicle-models/{only.pk}")
    assert refused.status_code == 409, refused.content
    detail = refused.json()["detail"]
    assert "2 location(s) ('Depot', 'Harbour')" in detail and "out of their mix" in detail
    assert VehicleModel.objects.filter(pk=only.pk).exists()
    mix = api.get(f"{V1}/locations/{depot.pk}").json()["arrival_profile"]["vehicle_mix"]
    assert mix == [{"vehicle": only.pk, "weight": 1.0}]
    # The admin's delete page says the same and deletes nothing.
    page = html.unescape(
        admin_client_logged_in.get(
            reverse("admin:vehicles_vehiclemodel_delete", args=[only.pk])
        ).content.decode()
    )
    assert "Cannot delete vehicle model" in page
    assert "Depot's vehicle mix" in page and "Harbour's vehicle mix" in page
    posted = admin_client_logged_in.post(
        reverse("admin:vehicles_vehiclemodel_delete", args=[only.pk]), {"post": "yes"}
    )
    assert posted.status_code in (200, 403)
    assert VehicleModel.objects.filter(pk=only.pk).exists()
    # Out of every mix, it goes; a model no mix names goes at once.
    for site in Location.objects.all():
        api.patch(f"{V1}/locations/{site.pk}", {"arrival_profile": {"vehicle_mix": []}})
    assert api.delete(f"{V1}/vehicle-models/{only.pk}").status_code == 204
    assert api.delete(f"{V1}/vehicle-models/{other.pk}").status_code == 204


# -- chargers ------------------------------------------------------------------------------


def test_a_field_the_api_does_not_know_is_refused_not_ignored(api, depot):
    """A misspelt field must not answer 200 for a change that did not happen."""
    charger = make_charger("CP-TYPO", location=depot)
    unknown = "Not an argument of this request: "
    patched = api.patch(f"{V1}/chargers/CP-TYPO", {"enabeld": False})
    assert errors_of(patched) == [("enabeld", unknown + "did you mean 'enabled'?", None)]
    charger.refresh_from_db()
    assert charger.enabled is True
    assert errors_of(api.patch(f"{V1}/locations/{depot.pk}", {"grid_limt_kw": 50})) == [
        ("grid_limt_kw", unknown + "did you mean 'grid_limit_kw'?", None)
    ]
    # A null for a field that cannot be empty is named as such, not "This field is required".
    assert errors_of(api.patch(f"{V1}/locations/{depot.pk}", {"name": None})) == [
        ("name", "name cannot be null: leave it out to keep it.", None)
    ]
    assert errors_of(api.patch(f"{V1}/chargers/CP-TYPO", {"location": None})) == [
        ("location", "location cannot be null: leave it out to keep it.", None)
    ]
    cleared = api.patch(f"{V1}/chargers/CP-TYPO", {"default_vehicle": None})
    assert cleared.status_code == 200, cleared.content  # this one may be null
    created = api.post(f"{V1}/locations", {"name": "Typo", "bogus": 1})
    ((field, message, row),) = errors_of(created)
    # Nothing near: the names it takes.
    assert (field, row) == ("bogus", None)
    assert message.startswith(unknown + "it takes ") and "grid_limit_kw" in message
    nested = api.post(
        f"{V1}/chargers?wait=false",
        charger_body("CP-NEW", depot, evses=[{"connector_type": "Type2", "max_kw": 11}]),
    )
    # A nested body's typo is named with its own names.
    assert ("evses.0.max_kw", unknown + "did you mean 'max_power_kw'?", None) in errors_of(nested)
    assert not Charger.objects.filter(charge_point_id="CP-NEW").exists()


def test_a_charger_created_without_a_csms_url_gets_the_simulators_default(api, depot, settings):
    settings.CHARGESIM_DEFAULT_CSMS_URL = "ws://csms.example:9000/ocpp"
    given = api.post(f"{V1}/chargers?wait=false", charger_body("CP-DEFAULT", depot))
    assert given.status_code == 201, given.content
    assert given.json()["charger"]["csms_url"] == "ws://csms.example:9000/ocpp"
    # Empty says "none": such a charger is kept off the network.
    empty = api.post(f"{V1}/chargers?wait=false", charger_body("CP-NONE", depot, csms_url=""))
    assert empty.status_code == 201, empty.content
    assert Charger.objects.get(charge_point_id="CP-NONE").csms_url == ""
    # In bulk too (the MCP tool takes the same schema).
    bulk = api.post(f"{V1}/bulk/chargers?wait=false", {"items": [charger_body("CP-BULK", depot)]})
    assert bulk.status_code == 201, bulk.content
    assert Charger.objects.get(charge_point_id="CP-BULK").csms_url == "ws://csms.example:9000/ocpp"


def test_a_charger_is_created_as_the_import_makes_one(api, depot):
    response = api.post(
        f"{V1}/chargers?wait=false",
        charger_body(
            "CP-0001",
            depot,
            security_profile=1,
            authorization_key=SECRET,
            evses=[
                {"connector_type": "type2", "max_power_kw": 11},
                {"connector_type": "Type2Cable", "max_power_kw": 22},
            ],
            configuration={"HeartbeatInterval": "60", "VendorKey": "x"},
        ),
    )
    assert response.status_code == 201, response.content
    assert response.json()["workers"] is None  # wait=false
    body = response.json()["charger"]
    assert body["authorization_key_set"] is True
    assert SECRET not in response.content.decode()
    assert [(e["connector_id"], e["connector_type"]) for e in body["evses"]] == [
        (1, "Type2"),
        (2, "Type2Cable"),
    ]
    keys = {row["key"]: row["value"] for row in body["configuration"]}
    assert keys["NumberOfConnectors"] == "2"
    assert keys["HeartbeatInterval"] == "60"
    assert keys["VendorKey"] == "x"
    charger = Charger.objects.get(charge_point_id="CP-0001")
    assert charger.authorization_key == SECRET
    # As the model's save gives a new charger: every default configuration key.
    admin_made = make_charger("CP-ADMIN", location=depot, evses=2)
    assert set(charger.configuration.values_list("key", flat=True)) == set(
        admin_made.configuration.values_list("key", flat=True)
    ) | {"VendorKey"}


def test_a_charger_without_evses_gets_one_of_its_power(api, depot):
    body = api.post(
        f"{V1}/chargers?wait=false", charger_body("CP-DC", depot, power_type="DC", max_power_kw=150)
    ).json()["charger"]
    assert [(e["connector_type"], e["max_power_kw"]) for e in body["evses"]] == [("CCS2", 150)]


def admin_form_errors(data: dict[str, Any]) -> dict[str, list[str]]:
    admin = Client()
    admin.force_login(make_superuser("form-admin"))
    response = admin.post(reverse("admin:chargers_charger_add"), data)
    assert response.status_code == 200  # the form again, with its errors
    return {k: list(v) for k, v in response.context["adminform"].form.errors.items()}


INVALID_CHOICE = "Select a valid choice. That choice is not one of the available choices."


@pytest.mark.parametrize(
    "changes",
    [
        {"charge_point_id": "CP 1/x"},
        {"charge_point_id": "C" * 60},
        {"charge_point_id": "CP-TAKEN"},
        {"csms_url": "http://example.com/ocpp"},
        {"csms_url": "ws://host/ocpp?x=1"},
        {"security_profile": 1},
        {"security_profile": 2, "csms_url": "ws://csms.example/ocpp", "authorization_key": "k"},
        {"security_profile": 3, "csms_url": "wss://csms.example/ocpp"},
        {"security_profile": 7},
        {"max_power_kw": 5000, "nominal_voltage": 20},
        {"power_type": "XX", "phases": 2},
        {"location": 99999},
        {"default_vehicle": 99999},
    ],
    ids=lambda changes: ",".join(changes),
)
def test_a_charger_gets_the_admins_messages_for_the_admins_rules(api, depot, changes):
    make_charger("CP-TAKEN", location=depot)
    body = {**charger_body("CP-NEW", depot), **changes}
    found = fields_of(api.post(f"{V1}/chargers?wait=false", body))
    form_data = {
        **change_form_data(Charger(charge_point_id="CP-NEW", location=depot)),
        **{k: v for k, v in changes.items()},
    }
    expected = admin_form_errors(form_data)
    assert expected, "the admin found nothing wrong either"
    # An id that names nothing: the admin's drop-down says "Select a valid choice", the
    # API names the id it was given.
    for name, model in (("location", "location"), ("default_vehicle", "vehicle model")):
        if name in changes and expected.get(name) == [INVALID_CHOICE]:
            expected[name] = [f"No {model} with id {changes[name]!r}."]
    assert {("__all__" if k is None else k): v for k, v in found.items()} == expected


def test_the_evse_list_and_configuration_get_the_imports_messages(api, depot):
    response = api.post(
        f"{V1}/chargers?wait=false",
        charger_body(
            "CP-1",
            depot,
            evses=[
                {"connector_type": "Type2", "max_power_kw": 22},
                {"connector_type": "Type9", "max_power_kw": 22},
                {"connector_type": "CCS2", "max_power_kw": 5000},
            ],
            configuration={"NumberOfConnectors": "3"},
        ),
    )
    found = fields_of(response)
    assert found["evses.1"] == [
        "Unknown connector type 'Type9'; use one of Type2, Type2Cable, Type1, CCS2, CCS1, "
        "CHAdeMO, Schuko."
    ]
    assert found["evses.2"] == [
        "'CCS2:5000': Ensure this value is less than or equal to 1000.",
        "CCS2 is a DC connector; an AC charger takes AC connectors only (Type2, Type2Cable, "
        "Type1, Schuko).",
    ]
    # (the body's field, not an import's "column")
    assert found["configuration"] == [
        "NumberOfConnectors follows the number of EVSEs: give the charger's evses instead."
    ]
    assert api.post(f"{V1}/chargers?wait=false", charger_body("CP-2", depot, evses=[])).json()[
        "errors"
    ] == [{"field": "evses", "message": "Give at least one EVSE.", "row": None}]
    bad_value = api.post(
        f"{V1}/chargers?wait=false",
        charger_body("CP-3", depot, configuration={"HeartbeatInterval": "soon"}),
    )
    assert fields_of(bad_value) == {
        "configuration": ["HeartbeatInterval takes a whole number, not 'soon'."]
    }
    assert not Charger.objects.exists()


def test_a_connector_that_does_not_fit_the_chargers_power_type_is_refused(api, depot):
    """A CCS2 on an AC charger (or a Type 2 socket on a DC one) was stored, and the
    engine ran it as the charger's power type."""
    response = api.post(
        f"{V1}/chargers?wait=false",
        charger_body(
            "CP-AC",
            depot,
            power_type="AC",
            evses=[
                {"connector_type": "Type2", "max_power_kw": 22},
                {"connector_type": "CCS2", "max_power_kw": 150},
                {"connector_type": "CHAdeMO", "max_power_kw": 50},
            ],
        ),
    )
    dc_on_ac = "is a DC connector; an AC charger takes AC connectors only (Type2, Type2Cable, "
    assert fields_of(response) == {
        "evses.1": [f"CCS2 {dc_on_ac}Type1, Schuko)."],
        "evses.2": [f"CHAdeMO {dc_on_ac}Type1, Schuko)."],
    }
    response = api.post(
        f"{V1}/chargers?wait=false",
        charger_body(
            "CP-DC", depot, power_type="DC", evses=[{"connector_type": "Type2", "max_power_kw": 22}]
        ),
    )
    assert fields_of(response) == {
        "evses.0": [
            "Type2 is an AC connector; a DC charger takes DC connectors only (CCS2, CCS1, CHAdeMO)."
        ]
    }
    assert not Charger.objects.exists()
    # A stored AC charger: neither a DC EVSE nor a power type its EVSEs do not fit.
    charger = make_charger("CP-1", location=depot, evses=1)
    added = api.post(
        f"{V1}/chargers/CP-1/evses?wait=false", {"connector_type": "CCS2", "max_power_kw": 150}
    )
    assert fields_of(added) == {"connector_type": [f"CCS2 {dc_on_ac}Type1, Schuko)."]}
    changed = api.patch(f"{V1}/chargers/CP-1/evses/1?wait=false", {"connector_type": "CCS1"})
    assert list(fields_of(changed)) == ["connector_type"]
    to_dc = api.patch(f"{V1}/chargers/CP-1?wait=false", {"power_type": "DC"})
    assert fields_of(to_dc) == {
        "power_type": [
            "Connector 1: Type2 is an AC connector; a DC charger takes DC connectors only "
            "(CCS2, CCS1, CHAdeMO)."
        ]
    }
    charger.refresh_from_db()
    assert charger.power_type == "AC"
    assert list(charger.evses.values_list("connector_type", flat=True)) == ["Type2"]
    # Both at once is a consistent change.
    both = api.patch(
        f"{V1}/chargers/CP-1?wait=false",
        {"power_type": "DC", "evses": [{"connector_type": "CCS2", "max_power_kw": 150}]},
    )
    assert both.status_code == 200, both.content


DC_ON_AC = (
    "CCS2 is a DC connector; an AC charger takes AC connectors only (Type2, Type2Cable, "
    "Type1, Schuko)."
)
UNKNOWN_TYPE9 = (
    "Unknown connector type 'Type9'; use one of Type2, Type2Cable, Type1, CCS2, CCS1, "
    "CHAdeMO, Schuko."
)
TWO_BAD_EVSES = [
    {"connector_type": "Type9", "max_power_kw": 5000},
    {"connector_type": "CCS2", "max_power_kw": 5000},
]
BAD_EVSE_PROBLEMS = {
    "evses.0": [UNKNOWN_TYPE9, "'Type9:5000': Ensure this value is less than or equal to 1000."],
    "evses.1": ["'CCS2:5000': Ensure this value is less than or equal to 1000.", DC_ON_AC],
}


def test_every_problem_of_an_evse_is_answered(api, depot):
    """An EVSE with an unknown connector type and too much power was answered with the
    first only; a DC connector of too much power on an AC charger, with its power only."""
    created = api.post(
        f"{V1}/chargers?wait=false", charger_body("CP-1", depot, evses=TWO_BAD_EVSES)
    )
    assert fields_of(created) == BAD_EVSE_PROBLEMS
    make_charger("CP-2", location=depot, evses=1)
    patched = api.patch(f"{V1}/chargers/CP-2?wait=false", {"evses": TWO_BAD_EVSES})
    assert fields_of(patched) == BAD_EVSE_PROBLEMS
    assert not Charger.objects.filter(charge_point_id="CP-1").exists()


def test_a_wrong_type_does_not_hide_the_evse_problems(api, depot):
    """A wrong type is answered before the rules are checked: the EVSEs' were not."""
    body = charger_body("CP-1", depot, phases=2.5, evses=TWO_BAD_EVSES)
    assert fields_of(api.post(f"{V1}/chargers?wait=false", body)) == {
        "phases": ["Enter a whole number."],
        **BAD_EVSE_PROBLEMS,
    }
    bulk = api.post(
        f"{V1}/bulk/chargers?wait=false",
        {"items": [charger_body("CP-0", depot), {**body, "enabled": "maybe"}]},
    )
    assert {(f, row) for f, _, row in errors_of(bulk)} == {
        ("phases", 1),
        ("enabled", 1),
        ("evses.0", 1),
        ("evses.1", 1),
    }
    make_charger("CP-2", location=depot, evses=1)
    put = api.put(f"{V1}/chargers/CP-2?wait=false", {**body, "charge_point_id": "CP-2"})
    assert fields_of(put) == {"phases": ["Enter a whole number."], **BAD_EVSE_PROBLEMS}
    # A PATCH without a power type: the stored one is not known before the types pass, so
    # a DC connector is not said then (it is once the types are right).
    patched = api.patch(
        f"{V1}/chargers/CP-2?wait=false", {"max_power_kw": "lots", "evses": TWO_BAD_EVSES}
    )
    assert fields_of(patched) == {
        "max_power_kw": ["Enter a number."],
        "evses.0": BAD_EVSE_PROBLEMS["evses.0"],
        "evses.1": ["'CCS2:5000': Ensure this value is less than or equal to 1000."],
    }
    # With a wrong type in an EVSE, its own type error and the other EVSEs' problems.
    typed = api.post(
        f"{V1}/chargers?wait=false",
        charger_body(
            "CP-3", depot, evses=[{"connector_type": "CCS2", "max_power_kw": "x"}, TWO_BAD_EVSES[0]]
        ),
    )
    assert fields_of(typed) == {
        "evses.0.max_power_kw": ["Enter a number."],
        "evses.1": BAD_EVSE_PROBLEMS["evses.0"],
    }
    assert list(Charger.objects.values_list("charge_point_id", flat=True)) == ["CP-2"]


def test_a_wrong_type_names_the_field_in_the_admins_words(api, depot):
    response = api.post(
        f"{V1}/chargers?wait=false",
        {"location": depot.pk, "max_power_kw": "lots", "phases": 2.5},
    )
    assert fields_of(response) == {
        "charge_point_id": ["This field is required."],
        "max_power_kw": ["Enter a number."],
        "phases": ["Enter a whole number."],
    }


def test_a_boolean_or_a_string_for_a_number_is_refused_not_read_as_one(api, depot):
    """JSON has numbers: `false` is not 0 (pydantic's lax mode read it so, and a location
    got rotation_minutes 0), nor "22" a number; a query parameter is text on the wire and
    stays read as one (`?limit=2`)."""
    vehicle = make_vehicle()
    refusals = [
        (api.post(f"{V1}/locations", {"name": "L", "rotation_minutes": False}), "rotation_minutes"),
        (api.post(f"{V1}/locations", {"name": "L", "latitude": "52.5"}), "latitude"),
        (
            api.put(
                f"{V1}/vehicle-models/{vehicle.pk}",
                {
                    "make": "M",
                    "model": "X",
                    "capacity_kwh": 50,
                    "ac_max_kw": 11,
                    "charging_curve": "0:100",
                    "dc_max_v": False,
                },
            ),
            "dc_max_v",
        ),
        (api.patch(f"{V1}/vehicle-models/{vehicle.pk}", {"efficiency": True}), "efficiency"),
        (
            api.post(
                f"{V1}/chargers?wait=false",
                {
                    "charge_point_id": "B-1",
                    "location": depot.pk,
                    "phases": True,
                },
            ),
            "phases",
        ),
        (
            api.post(
                f"{V1}/chargers?wait=false",
                {
                    "charge_point_id": "B-1",
                    "location": str(depot.pk),
                },
            ),
            "location",
        ),
        (
            api.patch(
                f"{V1}/locations/{depot.pk}",
                {
                    "arrival_profile": {"soc": {"kind": "fixed", "a": True}},
                },
            ),
            "arrival_profile.soc.a",
        ),
    ]
    for response, field in refusals:
        assert field in fields_of(response), response.content
    assert not Location.objects.filter(name="L").exists()
    assert not Charger.objects.filter(charge_point_id="B-1").exists()
    assert api.get(f"{V1}/locations", limit="1", offset="0").status_code == 200


BOOLEAN = "Input should be a JSON boolean: true or false"


@pytest.mark.parametrize("value", ["false", "no", "off", "0", 0, 1, "yes", "true"])
def test_a_boolean_field_takes_only_true_or_false(api, depot, value):
    """pydantic's lax mode read "no", "off", "0" and 0 as false and 1 or "yes" as true: a
    script's `{"auto_connect": "false"}` went through as whatever it happened to mean. As
    for numbers, a JSON body's booleans are JSON's; a query parameter is text and keeps
    its reading (`?enabled=false`)."""
    charger = make_charger("CP-1", location=depot)
    refusals = [
        (api.patch(f"{V1}/chargers/CP-1?wait=false", {"auto_connect": value}), "auto_connect"),
        (
            api.post(f"{V1}/chargers?wait=false", charger_body("B-1", depot, enabled=value)),
            "enabled",
        ),
        (api.patch(f"{V1}/locations/{depot.pk}", {"load_management": value}), "load_management"),
        (
            api.post(f"{V1}/locations", {"name": "L", "arrival_profile": {"enabled": value}}),
            "arrival_profile.enabled",
        ),
        (
            api.put(f"{V1}/chargers/CP-1/configuration/K", {"value": "v", "readonly": value}),
            "readonly",
        ),
    ]
    for response, field in refusals:
        assert (field, BOOLEAN, None) in errors_of(response), response.content
    charger.refresh_from_db()
    depot.refresh_from_db()
    assert (charger.auto_connect, depot.load_management) == (True, False)
    assert not Charger.objects.filter(charge_point_id="B-1").exists()
    assert not Location.objects.filter(name="L").exists()
    assert not ConfigurationKey.objects.filter(key="K").exists()
    # true and false themselves, and a query string's text.
    patched = api.patch(f"{V1}/chargers/CP-1?wait=false", {"auto_connect": False})
    assert patched.json()["charger"]["auto_connect"] is False
    assert api.get(f"{V1}/chargers", auto_connect="false").json()["count"] == 1


def test_an_empty_body_is_said_to_be_empty(api, depot):
    """It was `{"field": null, "message": "This field is required."}`: no field named, and
    the caller did not know what was required."""
    empty = "The body is empty: this request takes a JSON object ({...})."
    for path in (f"{V1}/locations", f"{V1}/chargers", f"{V1}/locations/{depot.pk}"):
        send = api.client.patch if path.endswith(str(depot.pk)) else api.client.post
        response = send(path, b"", content_type="application/json", headers=api.headers)
        assert errors_of(response) == [(None, empty, None)], path
    # A body that is there, missing a field, still names the field.
    assert fields_of(api.post(f"{V1}/locations", {})) == {"name": ["This field is required."]}


def test_chargers_are_listed_with_filters_and_pages(api, depot):
    elsewhere = make_location("Elsewhere")
    for n in range(1, 6):
        make_charger(f"CP-{n}", location=depot if n <= 3 else elsewhere, enabled=n != 2)
    make_charger("DC-1", location=depot, power_type="DC")
    Evse.objects.filter(charger__charge_point_id="CP-3").update(status="Charging")
    ids = lambda **q: [c["charge_point_id"] for c in api.get(f"{V1}/chargers", **q).json()["items"]]  # noqa: E731
    assert ids(location=elsewhere.pk) == ["CP-4", "CP-5"]
    assert ids(charge_point_id="cp-") == ["CP-1", "CP-2", "CP-3", "CP-4", "CP-5"]
    assert ids(enabled="false") == ["CP-2"]
    assert ids(power_type="dc") == ["DC-1"]
    assert ids(status="Charging") == ["CP-3"]  # once, though both its EVSEs charge
    # A status that does not exist (a wrong letter case) is refused, not an empty page.
    assert [f for f, _, _ in errors_of(api.get(f"{V1}/chargers", status="charging"))] == ["status"]
    page = api.get(f"{V1}/chargers", limit=2, offset=2).json()
    assert page["count"] == 6
    assert [c["charge_point_id"] for c in page["items"]] == ["CP-3", "CP-4"]
    assert [e["connector_id"] for e in page["items"][0]["evses"]] == [1, 2]


def test_a_query_parameter_a_list_does_not_take_is_refused_not_ignored(api, depot):
    """A misspelt filter answered the whole fleet, and a script acted on all of it."""
    make_charger("CP-1", location=depot)
    make_charger("CP-2", location=make_location("Elsewhere"))
    assert errors_of(api.get(f"{V1}/chargers", locaton=depot.pk)) == [
        ("locaton", "Not a query parameter of this request: did you mean 'location'?", None)
    ]
    # Nothing close: the parameters it takes; with another problem, both.
    assert errors_of(api.get(f"{V1}/locations", sort="name", limit=0)) == [
        (
            "sort",
            "Not a query parameter of this request: it takes country, limit, offset, q.",
            None,
        ),
        ("limit", "Input should be greater than or equal to 1", None),
    ]
    # What a list does take works as before: its filters and its paging.
    page = api.get(f"{V1}/chargers", location=depot.pk, limit=1, offset=0).json()
    assert [c["charge_point_id"] for c in page["items"]] == ["CP-1"]
    # A write's too: `?wiat=false` must not wait for the workers unnoticed.
    assert [f for f, _, _ in errors_of(api.delete(f"{V1}/chargers/CP-2?wiat=false"))] == ["wiat"]
    assert Charger.objects.filter(charge_point_id="CP-2").exists()


def test_a_one_value_query_parameter_given_twice_is_refused(api, depot):
    """QA: ninja took the last value: `?location=1&location=2` answered one site's chargers
    to a caller who asked for both, and `?limit=1&limit=2` two items."""
    other = make_location("Elsewhere")
    make_charger("CP-1", location=depot)
    make_charger("CP-2", location=other)
    both = api.get(f"{V1}/chargers?location={depot.pk}&location={other.pk}")
    assert errors_of(both) == [("location", "Given 2 times: it takes one value.", None)]
    assert [f for f, _, _ in errors_of(api.get(f"{V1}/chargers?limit=1&limit=2"))] == ["limit"]
    # A parameter that takes several still does.
    log = api.get(f"{V1}/log.jsonl?since=0&location={depot.pk}&location={other.pk}")
    assert log.status_code == 200, log.content


def test_a_query_parameter_is_refused_by_an_operation_that_takes_none(depot):
    """They were ignored: `/fleet/summary?location=3` answered the whole fleet's counts to
    a script reading one site's, `?wait_for=` on a GET did not wait, `?force=true` on a
    location's delete looked taken. Refused before the handler runs (no worker needed)."""
    api = client_with(*EVERY_PERMISSION, "view_charger", "change_charger")
    make_charger("CP-1", location=depot)
    none = "Not a query parameter of this request: it takes no query parameters."
    for path, name in [
        ("/fleet/summary?location=3", "location"),
        ("/chargers/CP-1?wait_for=Available", "wait_for"),
        ("/chargers/CP-1/evses?status=Charging", "status"),
        ("/chargers/CP-1/configuration?key=HeartbeatInterval", "key"),
        ("/whoami?x=1", "x"),
        ("/scenarios/library?name=boot", "name"),
    ]:
        assert errors_of(api.get(V1 + path)) == [(name, none, None)], path
    assert errors_of(api.delete(f"{V1}/locations/{depot.pk}?force=true")) == [("force", none, None)]
    assert Location.objects.filter(pk=depot.pk).exists()
    # With a path parameter that fails too, both are said.
    assert [f for f, _, _ in errors_of(api.get(f"{V1}/locations/0?x=1"))] == ["x", "location_id"]
    # Without one, they answer as before.
    assert api.get(f"{V1}/chargers/CP-1/evses").status_code == 200
    assert api.get(f"{V1}/whoami").status_code == 200


def test_no_response_carries_the_authorization_key(api, depot):
    charger = make_charger("CP-1", location=depot, security_profile=1, authorization_key=SECRET)
    responses = [
        api.get(f"{V1}/chargers"),
        api.get(f"{V1}/chargers/CP-1"),
        api.get(f"{V1}/chargers/CP-1/configuration"),
        api.patch(f"{V1}/chargers/CP-1?wait=false", {"vendor": "V"}),
        api.put(
            f"{V1}/chargers/CP-1?wait=false",
            charger_body("CP-1", depot, security_profile=1, authorization_key=SECRET + "22"),
        ),
        api.post(
            f"{V1}/bulk/chargers?wait=false",
            {"items": [charger_body("CP-2", depot, security_profile=1, authorization_key=SECRET)]},
        ),
        api.post(
            f"{V1}/chargers?wait=false", charger_body("CP-1", depot, authorization_key=SECRET)
        ),
        api.get(f"{V1}/openapi.json"),
    ]
    for response in responses:
        assert response.status_code < 500
        assert SECRET not in response.content.decode()
    charger.refresh_from_db()
    assert charger.authorization_key == SECRET + "22"


def test_the_authorization_key_is_kept_set_or_cleared(api, depot):
    make_charger("CP-1", location=depot, security_profile=1, authorization_key=SECRET)
    url = f"{V1}/chargers/CP-1?wait=false"
    assert api.patch(url, {"vendor": "V"}).json()["charger"]["authorization_key_set"] is True
    assert Charger.objects.get().authorization_key == SECRET
    api.patch(url, {"authorization_key": HEX_KEY})
    assert Charger.objects.get().authorization_key == HEX_KEY
    cleared = api.patch(url, {"authorization_key": ""})
    # Profile 1 needs a key: the admin's rule refuses the clear.
    assert fields_of(cleared) == {
        "authorization_key": ["Security profile 1 needs an AuthorizationKey (HTTP Basic password)."]
    }
    api.patch(url, {"authorization_key": "", "security_profile": 0})
    assert Charger.objects.get().authorization_key == ""


HEX_RULE = "AuthorizationKey takes 16 to 20 bytes written as 32 to 40 hexadecimal digits."


@pytest.mark.parametrize("key", ["new-key-1", "0" * 31, "0" * 41, "00" * 21, "g" * 32])
def test_an_authorization_key_must_be_16_to_20_bytes_in_hex(api, depot, caplog, key):
    """As the charger checks one its CSMS sets (ChangeConfiguration)."""
    make_charger("CP-1", location=depot, security_profile=1, authorization_key=SECRET)
    url = f"{V1}/chargers/CP-1?wait=false"
    answers = [
        api.patch(url, {"authorization_key": key}),
        api.put(url, charger_body("CP-1", depot, security_profile=1, authorization_key=key)),
        api.post(f"{V1}/chargers?wait=false", charger_body("CP-2", depot, authorization_key=key)),
    ]
    for answer in answers:
        assert errors_of(answer) == [("authorization_key", HEX_RULE, None)]
        assert key not in answer.content.decode()
    bulk = api.post(
        f"{V1}/bulk/chargers?wait=false",
        {
            "items": [
                charger_body("CP-3", depot),
                charger_body("CP-4", depot, authorization_key=key),
            ]
        },
    )
    assert errors_of(bulk) == [("authorization_key", HEX_RULE, 1)]
    assert key not in caplog.text
    assert Charger.objects.get().authorization_key == SECRET
    # 16 and 20 bytes, in either letter case, are taken as written; empty still clears.
    for valid in (HEX_KEY, "00112233445566778899AABBCCDDEEFF00112233"):
        assert api.patch(url, {"authorization_key": valid}).status_code == 200
        assert Charger.objects.get().authorization_key == valid
    assert api.patch(url, {"authorization_key": "", "security_profile": 0}).status_code == 200
    assert Charger.objects.get().authorization_key == ""


def test_a_charger_is_changed_renamed_and_reshaped_keeping_registers(api, depot):
    charger = make_charger("CP-1", location=depot, evses=2)
    Evse.objects.filter(charger=charger, connector_id=1).update(register_wh=1234)
    changed = api.patch(
        f"{V1}/chargers/CP-1?wait=false",
        {
            "charge_point_id": "CP-ONE",
            "enabled": False,
            "evses": [{"connector_type": "Type2", "max_power_kw": 11}],
            "configuration": {"MeterValueSampleInterval": "15"},
        },
    )
    assert changed.status_code == 200, changed.content
    body = changed.json()["charger"]
    assert (body["charge_point_id"], body["enabled"], body["vendor"]) == (
        "CP-ONE",
        False,
        "ChargeSim",
    )
    assert [(e["connector_id"], e["register_wh"]) for e in body["evses"]] == [(1, 1234)]
    keys = {row["key"]: row["value"] for row in body["configuration"]}
    assert (keys["NumberOfConnectors"], keys["MeterValueSampleInterval"]) == ("1", "15")
    assert api.get(f"{V1}/chargers/CP-1").status_code == 404

    replaced = api.put(
        f"{V1}/chargers/CP-ONE?wait=false", charger_body("CP-ONE", depot, vendor="Acme")
    )
    assert replaced.json()["charger"]["enabled"] is True  # PUT: not given takes its default
    assert [e["connector_id"] for e in replaced.json()["charger"]["evses"]] == [1]  # kept


def test_a_rename_onto_a_taken_id_is_refused(api, depot):
    make_charger("CP-1", location=depot)
    make_charger("CP-2", location=depot)
    response = api.patch(f"{V1}/chargers/CP-2?wait=false", {"charge_point_id": "CP-1"})
    assert fields_of(response) == {
        "charge_point_id": ["Charger with this Charge point id already exists."]
    }


def case_twin_of(stored: str, given: str) -> dict[str | None, list[str]]:
    return {
        "charge_point_id": [
            f"Charger {stored} exists, whose id differs from {given} only in letter case: a "
            "CSMS may match charge point ids regardless of case and take the two for one "
            "charger. Choose an id that differs in more than case."
        ]
    }


def test_an_id_differing_from_another_only_in_case_is_refused_naming_it(api, depot):
    """A CSMS that matches ids regardless of case would take the two for one charger: a
    create, a PUT and a PATCH onto such an id are refused, naming the field and the other."""
    make_charger("CP-1", location=depot)
    make_charger("CP-2", location=depot)
    response = api.post(f"{V1}/chargers?wait=false", charger_body("cp-1", depot))
    assert fields_of(response) == case_twin_of("CP-1", "cp-1")
    response = api.put(f"{V1}/chargers/CP-2?wait=false", charger_body("Cp-1", depot))
    assert fields_of(response) == case_twin_of("CP-1", "Cp-1")
    response = api.patch(f"{V1}/chargers/CP-2?wait=false", {"charge_point_id": "cp-1"})
    assert fields_of(response) == case_twin_of("CP-1", "cp-1")
    assert sorted(Charger.objects.values_list("charge_point_id", flat=True)) == ["CP-1", "CP-2"]
    # Its own id in other letters is no other charger's.
    response = api.patch(f"{V1}/chargers/CP-2?wait=false", {"charge_point_id": "cp-2"})
    assert response.status_code == 200, response.content
    assert response.json()["charger"]["charge_point_id"] == "cp-2"


def test_bulk_create_refuses_items_differing_only_in_case(api, depot):
    items = [charger_body("CP-A", depot), charger_body("cp-a", depot)]
    response = api.post(f"{V1}/bulk/chargers?wait=false", {"items": items})
    assert errors_of(response) == [
        (
            "charge_point_id",
            "'cp-a' differs from 'CP-A' of item 0 only in case; each may appear only once.",
            1,
        )
    ]
    assert not Charger.objects.exists()


def test_an_id_taken_in_other_case_between_the_check_and_the_write_is_a_422(
    api, depot, monkeypatch
):
    """The database's index refuses what the check could not see yet."""
    another_request_takes("cp-1", depot, monkeypatch)
    response = api.post(f"{V1}/chargers?wait=false", charger_body("CP-1", depot))
    assert fields_of(response) == case_twin_of("cp-1", "CP-1")
    assert list(Charger.objects.values_list("charge_point_id", flat=True)) == ["cp-1"]


def another_request_takes(cp_id: str, location: Location, monkeypatch: Any) -> None:
    """A concurrent request creates `cp_id` right after this one's check found it free (the
    race of two scripts creating the same charger at once, made certain)."""
    check = fleet_writes.check_charger
    taken: list[Charger] = []

    def checked_then_taken(*args: Any, **kwargs: Any) -> Any:
        result = check(*args, **kwargs)
        if not taken:
            taken.append(make_charger(cp_id, location=location))
        return result

    monkeypatch.setattr(fleet_writes, "check_charger", checked_then_taken)


def checked_then_written_meanwhile(form_class: Any, write: Any, monkeypatch: Any) -> None:
    """A request made at the same moment writes (`write()`) right after this one's form
    found everything free: the race of two scripts, made certain."""
    is_valid = form_class.is_valid
    done: list[bool] = []

    def valid_then_raced(form: Any) -> bool:
        valid = is_valid(form)
        if not done:
            done.append(True)
            write()
        return valid

    monkeypatch.setattr(form_class, "is_valid", valid_then_raced)


def test_a_unique_value_taken_by_a_concurrent_write_is_a_409_not_a_500(api, monkeypatch):
    checked_then_written_meanwhile(
        fleet_writes.LocationForm, lambda: make_location("Hub"), monkeypatch
    )
    response = api.post(f"{V1}/locations", {"name": "Hub"})
    assert response.status_code == 409, response.content
    assert "send this one again" in response.json()["detail"]
    assert Location.objects.filter(name="Hub").count() == 1
    # Sent again, it is refused as any taken name is, naming the field.
    assert fields_of(api.post(f"{V1}/locations", {"name": "Hub"})) == {
        "name": ["Location with this Name already exists."]
    }


def test_a_put_of_a_key_created_by_a_concurrent_request_sets_it(api, depot, monkeypatch):
    charger = make_charger("CP-1", location=depot)
    checked_then_written_meanwhile(
        fleet_writes.ConfigurationKeyForm,
        lambda: ConfigurationKey.objects.create(charger=charger, key="MyKey", value="theirs"),
        monkeypatch,
    )
    response = api.put(f"{V1}/chargers/CP-1/configuration/MyKey", {"value": "mine"})
    assert response.status_code == 200, response.content
    assert response.json()["value"] == "mine"
    assert list(charger.configuration.filter(key="MyKey").values_list("value", flat=True)) == [
        "mine"
    ]


def test_an_id_taken_between_the_check_and_the_write_is_a_422_not_a_500(api, depot, monkeypatch):
    another_request_takes("CP-1", depot, monkeypatch)
    response = api.post(f"{V1}/chargers?wait=false", charger_body("CP-1", depot))
    assert fields_of(response) == {
        "charge_point_id": ["Charger with this Charge point id already exists."]
    }
    assert Charger.objects.count() == 1  # the other request's

    make_charger("CP-2", location=depot)
    another_request_takes("CP-3", depot, monkeypatch)
    response = api.patch(f"{V1}/chargers/CP-2?wait=false", {"charge_point_id": "CP-3"})
    assert fields_of(response) == {
        "charge_point_id": ["Charger with this Charge point id already exists."]
    }
    assert Charger.objects.filter(charge_point_id="CP-2").exists()


def test_a_charger_is_deleted(api, depot):
    make_charger("CP-1", location=depot)
    response = api.delete(f"{V1}/chargers/CP-1?wait=false")
    assert response.status_code == 200
    assert response.json() == {"charge_point_id": "CP-1", "workers": None, "forced": []}
    assert not Charger.objects.exists()
    assert api.delete(f"{V1}/chargers/CP-1").status_code == 404


def test_a_charger_in_a_session_is_not_deleted_unless_forced(api, depot):
    """Deleted, a charger's rows go, its outbox with them: a StopTransaction it could not
    send at once (offline, no worker running it) would never be sent, while the answer said
    its transaction ended. Read from the database: no worker runs here."""
    charger = make_charger("CP-1", location=depot)
    make_open_transaction(charger, connector_id=2, transaction_id=77)
    refused = api.delete(f"{V1}/chargers/CP-1?wait=false")
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert detail.startswith(
        "CP-1 has transaction 77 in progress: deleted now, its StopTransaction may never "
        "be sent. Stop the session (or disable the charger) and delete it once its "
        "CSMS has confirmed the StopTransaction."
    )
    assert "?force=true" in detail
    assert Charger.objects.filter(pk=charger.pk).exists()
    forced = api.delete(f"{V1}/chargers/CP-1?wait=false&force=true")
    assert forced.status_code == 200
    assert forced.json()["forced"] == [detail.removesuffix(f" {fleet_writes.FORCE_DELETE}")]
    assert not Charger.objects.exists()


def test_a_charger_with_unconfirmed_transaction_messages_is_not_deleted_unless_forced(api, depot):
    """Its session ended (disabled while its CSMS was out of reach, say): the StopTransaction
    waits in the outbox for the CSMS, and would go with the row."""
    charger = make_charger("CP-1", location=depot)
    event = {"type": "StartupOfTheFirmware", "timestamp": "2026-12-01T10:00:00Z"}
    OutboxMessage.objects.add([(charger.pk, 1, "SecurityEventNotification", event, "")])
    assert Charger.objects.filter(pk=charger.pk).deletion_losses() == []  # no transaction's
    stop = {"transactionId": 77, "meterStop": 1500, "timestamp": "2026-12-01T11:00:00Z"}
    OutboxMessage.objects.add([(charger.pk, 2, "StopTransaction", stop, "CP-1-1")])
    refused = api.delete(f"{V1}/chargers/CP-1?wait=false")
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(
        "CP-1 has 1 transaction message its CSMS has not confirmed yet: deleted now, it "
        "may never be sent."
    )
    assert api.delete(f"{V1}/chargers/CP-1?wait=false&force=true").status_code == 200
    assert not OutboxMessage.objects.exists()


def _other_shard(cp_id: str, shards: int = 2) -> tuple[str, str]:
    """A new id of `cp_id`'s shard and one of the other."""
    mine = contract.shard_of(cp_id, shards)
    ids = [f"MOVED-{n}" for n in range(100)]
    same = next(i for i in ids if contract.shard_of(i, shards) == mine)
    other = next(i for i in ids if contract.shard_of(i, shards) != mine)
    return same, other


def test_a_rename_into_another_shard_mid_session_is_refused_unless_forced(api, depot, settings):
    """The worker running it ends the session under the old id; with that worker not
    running, the new shard's took it on after 20 s and ended the session as after a power
    loss under the new id, a transaction its CSMS opened under the old one."""
    settings.CHARGESIM_SHARDS = 2
    charger = make_charger("CP-1", location=depot)
    make_open_transaction(charger, connector_id=1, transaction_id=77)
    same, other = _other_shard("CP-1")
    refused = api.patch(f"{V1}/chargers/CP-1?wait=false", {"charge_point_id": other})
    assert refused.status_code == 409, refused.content
    detail = refused.json()["detail"]
    assert detail.startswith(
        f"CP-1 has transaction 77 in progress: renamed to {other}, it moves to the worker of "
        f"shard {contract.shard_of(other, 2)}, and if the worker running it now is not there "
        f"to end the session under CP-1, {other} would"
    )
    assert detail.endswith(fleet_writes.FORCE_RENAME)
    assert refused.json()["errors"][0]["field"] == "charge_point_id"
    body = {**api.get(f"{V1}/chargers/CP-1").json(), "charge_point_id": other}
    put = api.put(f"{V1}/chargers/CP-1?wait=false", body)
    assert put.status_code == 409, put.content
    assert Charger.objects.get(pk=charger.pk).charge_point_id == "CP-1"

    # Within its shard the rename waits for the session's end (the worker says so).
    assert api.patch(f"{V1}/chargers/CP-1?wait=false", {"charge_point_id": same}).status_code == 200
    forced = api.patch(f"{V1}/chargers/{same}?wait=false&force=true", {"charge_point_id": other})
    assert forced.status_code == 200, forced.content
    assert Charger.objects.get(pk=charger.pk).charge_point_id == other


def test_a_rename_into_another_shard_waits_for_unconfirmed_transaction_messages(
    api, depot, settings
):
    settings.CHARGESIM_SHARDS = 2
    charger = make_charger("CP-1", location=depot)
    stop = {"transactionId": 77, "meterStop": 1500, "timestamp": "2026-12-01T11:00:00Z"}
    OutboxMessage.objects.add([(charger.pk, 2, "StopTransaction", stop, "CP-1-1")])
    _, other = _other_shard("CP-1")
    refused = api.patch(f"{V1}/chargers/CP-1?wait=false", {"charge_point_id": other})
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(
        "CP-1 has 1 transaction message its CSMS has not confirmed yet: renamed to "
    )
    OutboxMessage.objects.all().delete()  # confirmed
    assert (
        api.patch(f"{V1}/chargers/CP-1?wait=false", {"charge_point_id": other}).status_code == 200
    )


def test_one_worker_runs_every_id_so_any_rename_goes_through(api, depot, settings):
    settings.CHARGESIM_SHARDS = 1
    charger = make_charger("CP-1", location=depot)
    make_open_transaction(charger, connector_id=1, transaction_id=77)
    _, other = _other_shard("CP-1")
    assert (
        api.patch(f"{V1}/chargers/CP-1?wait=false", {"charge_point_id": other}).status_code == 200
    )


def test_setting_evses_or_configuration_needs_their_permissions(depot):
    make_charger("CP-1", location=depot)
    adder = client_with("add_charger")
    body = charger_body("CP-2", depot, evses=[{"connector_type": "Type2", "max_power_kw": 11}])
    refused = adder.post(f"{V1}/chargers?wait=false", body)
    assert refused.status_code == 403
    assert "chargers.add_evse" in refused.json()["detail"]
    plain = adder.post(f"{V1}/chargers?wait=false", charger_body("CP-2", depot))
    assert plain.status_code == 201
    changer = client_with("change_charger", "add_evse", "change_evse")
    reshaped = changer.patch(f"{V1}/chargers/CP-1?wait=false", {"evses": body["evses"]})
    assert "chargers.delete_evse" in reshaped.json()["detail"]
    configured = changer.patch(f"{V1}/chargers/CP-1?wait=false", {"configuration": {"A": "1"}})
    assert "chargers.add_configurationkey" in configured.json()["detail"]


# -- bulk create --------------------------------------------------------------------------


def test_bulk_create_makes_every_charger(api, depot):
    items = [charger_body(f"CP-{n}", depot, max_power_kw=11) for n in range(1, 4)]
    response = api.post(f"{V1}/bulk/chargers?wait=false", {"items": items})
    assert response.status_code == 201, response.content
    assert [c["charge_point_id"] for c in response.json()["items"]] == ["CP-1", "CP-2", "CP-3"]
    assert Charger.objects.count() == 3
    assert ConfigurationKey.objects.filter(key="NumberOfConnectors", value="1").count() == 3


def test_bulk_create_is_all_or_nothing_with_every_rows_errors(api, depot):
    make_charger("CP-OLD", location=depot)
    items = [
        charger_body("CP-1", depot),
        charger_body("CP-OLD", depot),
        charger_body("CP 3", depot, security_profile=1),
        charger_body("CP-1", depot, evses=[{"connector_type": "Nope", "max_power_kw": 1}]),
    ]
    response = api.post(f"{V1}/bulk/chargers?wait=false", {"items": items})
    found = errors_of(response)
    assert ("charge_point_id", "Charger with this Charge point id already exists.", 1) in found
    assert any(f == "charge_point_id" and "URL-safe" in m and r == 2 for f, m, r in found)
    assert (
        "authorization_key",
        "Security profile 1 needs an AuthorizationKey (HTTP Basic password).",
        2,
    ) in found
    assert ("charge_point_id", "'CP-1' is already item 0; each may appear only once.", 3) in found
    assert any(f == "evses.0" and r == 3 for f, _, r in found)
    assert not any(r == 0 for _, _, r in found)
    assert Charger.objects.count() == 1


def test_bulk_create_names_the_row_of_a_wrong_type(api, depot):
    items = [charger_body("CP-1", depot), charger_body("CP-2", depot, max_power_kw="x")]
    assert errors_of(api.post(f"{V1}/bulk/chargers", {"items": items})) == [
        ("max_power_kw", "Enter a number.", 1)
    ]


NUL_FIELDS = [
    (
        "answer_overrides",
        [{"action": "Reset", "call_error": "InternalError", "description": "a\u0000b"}],
        "rule 1: description holds a NUL character (U+0000), which cannot be stored",
    ),
    (
        "configuration",
        {"VendorKey": "a\u0000b"},
        "'VendorKey' holds a NUL character (U+0000), which no text field can store.",
    ),
    (
        "configuration",
        {"Vendor\u0000Key": "x"},
        "'Vendor\\x00Key' holds a NUL character (U+0000), which no text field can store.",
    ),
]


@pytest.mark.parametrize(("field", "value", "message"), NUL_FIELDS)
def test_a_nul_inside_a_chargers_json_values_is_refused_by_field(api, depot, field, value, message):
    # PostgreSQL stores no NUL in text or jsonb: before, these were a 500 from the write.
    # (The client sends JSON: the NUL travels as "\u0000", as any client's would.)
    body = charger_body("CP-N", depot, **{field: value})
    assert errors_of(api.post(f"{V1}/chargers", body)) == [(field, message, None)]
    items = {"items": [charger_body("CP-1", depot), body]}
    assert errors_of(api.post(f"{V1}/bulk/chargers", items)) == [(field, message, 1)]
    make_charger("CP-OLD", location=depot)
    assert errors_of(api.patch(f"{V1}/chargers/CP-OLD", {field: value})) == [(field, message, None)]
    assert not Charger.objects.exclude(charge_point_id="CP-OLD").exists()
    assert not ConfigurationKey.objects.filter(key__startswith="Vendor").exists()
    assert Charger.objects.get().answer_overrides == []


def test_a_percent_sign_in_a_refused_answer_override_is_shown_as_sent(api, depot):
    rule = [{"action": "Reset", "mode": "every", "status": "50%"}]
    found = errors_of(
        api.post(f"{V1}/chargers", charger_body("CP-P", depot, answer_overrides=rule))
    )
    assert found == [
        (
            "answer_overrides",
            "rule 1: status '50%' is not valid in a Reset answer (one of Accepted, Rejected)",
            None,
        )
    ]


def test_bulk_create_has_a_limit(api, depot):
    items = [charger_body(f"CP-{n}", depot) for n in range(MAX_BULK + 1)]
    response = api.post(f"{V1}/bulk/chargers?wait=false", {"items": items})
    assert response.status_code == 422
    assert "import job" in response.json()["detail"]
    assert not Charger.objects.exists()


# -- EVSEs and configuration keys -----------------------------------------------------------


def test_an_evse_is_added_changed_and_removed_and_number_of_connectors_follows(api, depot):
    charger = make_charger("CP-1", location=depot, evses=1)
    url = f"{V1}/chargers/CP-1/evses"
    added = api.post(url, {"connector_type": "Type2Cable", "max_power_kw": 11})
    assert added.status_code == 201, added.content
    assert added.json()["connector_id"] == 2
    number = lambda: charger.configuration.get(key="NumberOfConnectors").value  # noqa: E731
    assert number() == "2"
    assert [e["connector_id"] for e in api.get(url).json()] == [1, 2]
    assert api.patch(f"{url}/2", {"max_power_kw": 7.4}).json()["max_power_kw"] == 7.4
    assert (
        api.put(f"{url}/2", {"connector_type": "Schuko", "max_power_kw": 3.7}).json()[
            "connector_type"
        ]
        == "Schuko"
    )
    assert api.delete(f"{url}/2").status_code == 204
    assert number() == "1"
    assert api.get(f"{url}/2").status_code == 404


def test_an_evse_gets_the_admins_messages(api, depot):
    make_charger("CP-1", location=depot, evses=1)
    url = f"{V1}/chargers/CP-1/evses"
    taken = api.post(url, {"connector_id": 1, "connector_type": "Type2", "max_power_kw": 11})
    assert fields_of(taken) == {None: ["EVSE with this Charger and Connector id already exists."]}
    bad = api.post(url, {"connector_id": 100, "connector_type": "Type9", "max_power_kw": 0})
    assert fields_of(bad) == {
        "connector_id": ["Ensure this value is less than or equal to 99."],
        "connector_type": ["Select a valid choice. Type9 is not one of the available choices."],
        "max_power_kw": ["Ensure this value is greater than or equal to 0.1."],
    }


def connector_ids(charger: Charger) -> list[int]:
    return list(charger.evses.order_by("connector_id").values_list("connector_id", flat=True))


def test_only_the_last_evse_can_be_removed_so_connectors_stay_numbered_without_gaps(api, depot):
    # OCPP 1.6 numbers connectors 1..NumberOfConnectors, and the engine finds connector n
    # at position n: deleting connector 2 of 3 left [1, 3], and connector 3 unreachable.
    charger = make_charger("CP-1", location=depot, evses=3)
    url = f"{V1}/chargers/CP-1/evses"
    refused = api.delete(f"{url}/2")
    assert errors_of(refused, 409) == [
        (
            "connector_id",
            "Connector 2 is not CP-1's last: a charger's connectors are numbered 1..N "
            "without gaps (OCPP 1.6), so delete connector 3 first.",
            None,
        )
    ]
    assert connector_ids(charger) == [1, 2, 3]
    assert api.delete(f"{url}/3").status_code == 204
    assert api.delete(f"{url}/2").status_code == 204
    assert connector_ids(charger) == [1]
    assert charger.configuration.get(key="NumberOfConnectors").value == "1"


def test_an_evse_with_a_transaction_in_progress_is_not_removed(api, depot):
    """It answered 204 and said nothing, while the session went on on a connector whose
    row (and register) was gone."""
    charger = make_charger("CP-1", location=depot, evses=2)
    session = make_open_transaction(charger, connector_id=2, transaction_id=4711)
    refused = api.delete(f"{V1}/chargers/CP-1/evses/2")
    message = "Connector 2 of CP-1 has transaction 4711 in progress; stop it first."
    assert refused.json()["detail"] == message
    assert errors_of(refused, 409) == [("connector_id", message, None)]
    assert connector_ids(charger) == [1, 2]
    # Before the CSMS confirmed it, it is named by the charger's own id.
    Transaction.objects.filter(pk=session.pk).update(transaction_id=None)
    assert (
        "has transaction CP-1-2 in progress"
        in api.delete(f"{V1}/chargers/CP-1/evses/2").json()["detail"]
    )
    # Once it has ended, the connector may go.
    Transaction.objects.filter(pk=session.pk).update(state=Transaction.State.STOPPED)
    assert api.delete(f"{V1}/chargers/CP-1/evses/2").status_code == 204
    assert connector_ids(charger) == [1]


def test_a_charger_write_with_fewer_evses_keeps_a_connector_in_session(api, depot):
    """The EVSE endpoint refused it, but a PUT or PATCH of the charger with a shorter
    `evses` list removed the connector of a session in progress all the same."""
    charger = make_charger("CP-1", location=depot, evses=2)
    make_open_transaction(charger, connector_id=2, transaction_id=4711)
    shorter = {"evses": [{"connector_type": "Type2", "max_power_kw": 22}]}
    refused = api.patch(f"{V1}/chargers/CP-1?wait=false", shorter)
    message = "Connector 2 of CP-1 has transaction 4711 in progress; stop it first."
    assert ("evses", message, None) in errors_of(refused, 422)
    assert connector_ids(charger) == [1, 2]


def test_the_last_evse_cannot_be_removed(api, depot):
    # One by one, every EVSE went (204 each time), leaving a charger the engine cannot run.
    charger = make_charger("CP-1", location=depot, evses=1)
    refused = api.delete(f"{V1}/chargers/CP-1/evses/1")
    assert errors_of(refused, 409) == [
        (
            "connector_id",
            "Connector 1 is CP-1's only EVSE: a charger keeps at least one (delete the "
            "charger instead).",
            None,
        )
    ]
    assert connector_ids(charger) == [1]


def test_a_new_evse_is_the_next_connector(api, depot):
    # connector_id 7 on a 2-EVSE charger answered 201, giving [1, 2, 7].
    charger = make_charger("CP-1", location=depot, evses=2)
    url = f"{V1}/chargers/CP-1/evses"
    refused = api.post(url, {"connector_id": 7, "connector_type": "Type2", "max_power_kw": 11})
    assert fields_of(refused) == {
        "connector_id": [
            "The next connector of CP-1 is 3: a charger's connectors are numbered 1..N "
            "without gaps (OCPP 1.6)."
        ]
    }
    assert connector_ids(charger) == [1, 2]
    given = api.post(url, {"connector_id": 3, "connector_type": "Type2", "max_power_kw": 11})
    assert given.status_code == 201, given.content
    assert connector_ids(charger) == [1, 2, 3]


def test_an_evse_cannot_be_renumbered_into_a_gap(api, depot):
    charger = make_charger("CP-1", location=depot, evses=2)
    refused = api.patch(f"{V1}/chargers/CP-1/evses/2", {"connector_id": 5})
    assert fields_of(refused) == {
        "connector_id": [
            "Connector 2 of CP-1 cannot become 5: a charger's connectors are numbered 1..N "
            "without gaps (OCPP 1.6)."
        ]
    }
    assert connector_ids(charger) == [1, 2]
    # Other fields of the same EVSE still change.
    assert (
        api.patch(f"{V1}/chargers/CP-1/evses/2", {"connector_id": 2, "max_power_kw": 7}).json()[
            "max_power_kw"
        ]
        == 7
    )


def test_a_gap_left_by_an_earlier_version_can_be_closed(api, depot):
    # Chargers saved before the numbering was checked may have one: renumbering the
    # connector after the gap closes it, and the rest of the EVSE can still be edited.
    charger = make_charger("CP-1", location=depot, evses=2)
    charger.evses.filter(connector_id=2).update(connector_id=3)
    url = f"{V1}/chargers/CP-1/evses"
    assert api.patch(f"{url}/3", {"max_power_kw": 7}).status_code == 200
    assert api.patch(f"{url}/3", {"connector_id": 2}).status_code == 200
    assert connector_ids(charger) == [1, 2]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "evses", {"connector_type": "Type2", "max_power_kw": 11}),
        ("patch", "evses/2", {"max_power_kw": 11}),
        ("put", "evses/2", {"connector_type": "Type1", "max_power_kw": 7.4}),
        ("delete", "evses/2", None),
        ("put", "configuration/HeartbeatInterval", {"value": "30"}),
        ("put", "configuration/VendorKey", {"value": "on"}),
        ("delete", "configuration/VendorKey", None),
    ],
)
def test_an_evse_or_configuration_write_marks_the_charger_changed(api, depot, method, path, body):
    # A worker that missed the change message finds it by the charger's `updated` time
    # (README, "Editing the fleet while it runs"): these writes left it as it was.
    charger = make_charger("CP-1", location=depot, evses=2)
    ConfigurationKey.objects.create(charger=charger, key="VendorKey", value="off")
    before = timezone.now() - timedelta(hours=1)
    Charger.objects.filter(pk=charger.pk).update(updated=before)
    url = f"{V1}/chargers/CP-1/{path}"
    # A delete answers 204 without waiting for the workers: it takes no `wait`.
    response = (
        api.delete(url) if method == "delete" else getattr(api, method)(url + "?wait=false", body)
    )
    assert response.status_code in (200, 201, 204), response.content
    charger.refresh_from_db()
    assert charger.updated > before


def test_a_configuration_key_is_set_read_and_deleted(api, depot):
    make_charger("CP-1", location=depot)
    url = f"{V1}/chargers/CP-1/configuration"
    changed = api.put(f"{url}/HeartbeatInterval", {"value": " 120 "})
    assert changed.status_code == 200
    assert changed.json() == {
        "key": "HeartbeatInterval",
        "value": "120",
        "readonly": False,
        "workers": None,  # (no commit in this test: nobody was told)
    }
    created = api.put(f"{url}/VendorSpecific", {"value": "on", "readonly": True})
    assert created.status_code == 201
    assert api.get(f"{url}/VendorSpecific").json()["readonly"] is True
    assert "VendorSpecific" in [row["key"] for row in api.get(url).json()]
    assert api.delete(f"{url}/VendorSpecific").status_code == 204
    assert api.get(f"{url}/VendorSpecific").status_code == 404


def test_a_configuration_value_may_be_sent_as_a_json_number_or_boolean(api, depot):
    """OCPP sends configuration values as strings; a script's `{"value": 60}` got a 422."""
    charger = make_charger("CP-1", location=depot)
    url = f"{V1}/chargers/CP-1/configuration"
    for key, value, stored in [
        ("HeartbeatInterval", 60, "60"),
        ("MeterValueSampleInterval", 30.0, "30"),
        ("LocalAuthorizeOffline", False, "false"),
        ("LocalPreAuthorize", True, "true"),
        ("VendorRatio", 0.25, "0.25"),
    ]:
        response = api.put(f"{url}/{key}", {"value": value})
        assert response.status_code in (200, 201), response.content
        assert response.json()["value"] == stored
        assert charger.configuration.get(key=key).value == stored
    # Still checked as the key's text: 1.5 is not a whole number of seconds.
    assert fields_of(api.put(f"{url}/HeartbeatInterval", {"value": 1.5})) == {
        "value": ["HeartbeatInterval takes a whole number, not '1.5'."]
    }
    for other in (None, [60], {"seconds": 60}):
        assert list(fields_of(api.put(f"{url}/HeartbeatInterval", {"value": other}))) == ["value"]
    # A charger write's `configuration` takes them alike.
    patched = api.patch(
        f"{V1}/chargers/CP-1?wait=false",
        {"configuration": {"HeartbeatInterval": 90, "LocalAuthorizeOffline": True}},
    )
    assert patched.status_code == 200, patched.content
    keys = {row["key"]: row["value"] for row in patched.json()["charger"]["configuration"]}
    assert (keys["HeartbeatInterval"], keys["LocalAuthorizeOffline"]) == ("90", "true")
    # The OpenAPI document says so.
    spec = api.get(f"{V1}/openapi.json").json()
    value = spec["components"]["schemas"]["ConfigurationKeyIn"]["properties"]["value"]
    assert value["anyOf"] == [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
    assert '60 as "60", true as "true"' in value["description"]


def test_a_configuration_key_gets_the_admins_messages(api, depot):
    make_charger("CP-1", location=depot)
    url = f"{V1}/chargers/CP-1/configuration"
    assert fields_of(api.put(f"{url}/HeartbeatInterval", {"value": "often"})) == {
        "value": ["HeartbeatInterval takes a whole number, not 'often'."]
    }
    assert fields_of(api.put(f"{url}/AuthorizationKey", {"value": SECRET})) == {
        "key": ["AuthorizationKey is set on the charger itself (it is write-only)."]
    }
    assert not ConfigurationKey.objects.filter(key="AuthorizationKey").exists()
    # Read back, it says where it is, not only that there is no such key.
    unread = api.get(f"{url}/AuthorizationKey")
    assert unread.status_code == 404
    assert "authorization_key, which is write-only" in unread.json()["detail"]
    assert api.get(f"{url}/NoSuchKey").json()["detail"] == (
        "Charger 'CP-1' has no configuration key 'NoSuchKey'."
    )


@pytest.mark.parametrize(
    "key", ["HeartbeatInterval", "NumberOfConnectors", "SupportedFeatureProfiles"]
)
def test_a_standard_configuration_key_cannot_be_deleted(api, depot, key):
    # The DELETE answered 204 and the key was gone from the API while the running charger
    # went on reporting it (GetConfiguration): every charger has the OCPP keys.
    make_charger("CP-1", location=depot)
    url = f"{V1}/chargers/CP-1/configuration/{key}"
    refused = api.delete(url)
    assert errors_of(refused, 409) == [
        (
            "key",
            f"{key} is a standard OCPP key (every charger has it): it cannot be deleted; "
            "PUT a value instead.",
            None,
        )
    ]
    assert refused.json()["detail"] == errors_of(refused, 409)[0][1]
    assert api.get(url).status_code == 200


def test_an_ocpp_keys_readonly_flag_is_the_protocols_and_the_chargers_own_keys_are_refused(
    api, depot
):
    make_charger("CP-1", location=depot, evses=2)
    url = f"{V1}/chargers/CP-1/configuration"
    # The charger reports SupportedFeatureProfiles read-only whatever is stored: a PUT
    # (readonly left out: false) must not store, and then show, that it is writable.
    put = api.put(f"{url}/SupportedFeatureProfiles", {"value": "Core"})
    assert put.status_code == 200, put.content
    assert put.json()["readonly"] is True
    assert (
        api.put(f"{url}/HeartbeatInterval", {"value": "60", "readonly": True}).json()["readonly"]
        is False
    )
    # NumberOfConnectors follows the EVSEs: a value stored here would never take effect.
    assert fields_of(api.put(f"{url}/NumberOfConnectors", {"value": "7"})) == {
        "key": ["NumberOfConnectors follows the number of EVSEs: give the charger's evses instead."]
    }
    assert api.get(f"{url}/NumberOfConnectors").json()["value"] == "2"
    assert fields_of(api.put(f"{url}/SecurityProfile", {"value": "1"})) == {
        "key": [
            "SecurityProfile is set on the charger itself: give the charger's "
            "security_profile instead."
        ]
    }


# -- changes reach the workers --------------------------------------------------------------


@pytest.fixture
def site(inbox):  # noqa: F811
    """The location, "committed" with its own message dropped (see test_fleet_changes)."""
    with setup(inbox):
        return make_location("Site")


def test_every_charger_write_tells_the_owning_shard(api, site, inbox):  # noqa: F811
    with inbox.committed(execute=True):
        created = api.post(f"{V1}/chargers?wait=false", charger_body("CP-A", site)).json()
    pk = created["charger"]["id"]
    shard = contract.shard_of("CP-A", SHARDS)
    assert charger_pks(inbox.take())[shard] == [[pk]]
    with inbox.committed(execute=True):
        api.patch(f"{V1}/chargers/CP-A?wait=false", {"max_power_kw": 11})
    assert charger_pks(inbox.take())[shard] == [[pk]]
    with inbox.committed(execute=True):
        api.put(f"{V1}/chargers/CP-A/configuration/HeartbeatInterval", {"value": "30"})
    assert charger_pks(inbox.take())[shard] == [[pk]]
    with inbox.committed(execute=True):
        api.delete(f"{V1}/chargers/CP-A?wait=false")
    assert charger_pks(inbox.take())[shard] == [[pk]]


def test_a_bulk_create_is_one_message_per_shard(api, site, inbox):  # noqa: F811
    items = [charger_body(f"CP-{n:04d}", site) for n in range(40)]
    with inbox.committed(execute=True):
        api.post(f"{V1}/bulk/chargers?wait=false", {"items": items})
    messages = inbox.take()
    assert all(len(found) == 1 for found in messages.values()), messages
    assert sum(len(found[0]["chargers"]) for found in messages.values()) == 40


def test_a_new_charge_point_id_tells_the_old_and_the_new_shard(api, site, inbox):  # noqa: F811
    old, new = (
        "CP-0001",
        next(
            f"CP-{n:04d}"
            for n in range(2, 100)
            if contract.shard_of(f"CP-{n:04d}", SHARDS) != contract.shard_of("CP-0001", SHARDS)
        ),
    )
    with inbox.committed(execute=True):
        charger = make_charger(old, location=site)
    inbox.take()
    with inbox.committed(execute=True):
        api.patch(f"{V1}/chargers/{old}?wait=false", {"charge_point_id": new})
    assert charger_pks(inbox.take()) == {0: [[charger.pk]], 1: [[charger.pk]]}


@contextlib.contextmanager
def worker_answering(charger: Charger, outcome: str) -> Iterator[None]:
    """A worker that answers every change of `charger` with `outcome`, for the block."""
    worker = FakeWorker(outcome)
    worker.names[charger.pk] = charger.charge_point_id
    worker.start()
    worker.ready.wait(5)
    try:
        yield
    finally:
        worker.done = True
        worker.join(5)


@pytest.mark.django_db(transaction=True)
def test_a_charger_write_answers_what_the_worker_did(depot):
    _, token = user_with_token("writer", *EVERY_PERMISSION)
    api = TokenClient(token)
    charger = make_charger("DEMO-0001", location=depot)
    with worker_answering(charger, "reconnects now"):
        response = api.patch(f"{V1}/chargers/DEMO-0001", {"csms_url": "ws://127.0.0.1:9/x"})
    assert response.status_code == 200, response.content
    assert response.json()["workers"] == [{"reached": True, "message": "DEMO-0001 reconnects now."}]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("put", "configuration/MeterValueSampleInterval", {"value": "10"}),
        ("patch", "evses/1", {"max_power_kw": 11}),
        ("put", "evses/1", {"connector_type": "Type2", "max_power_kw": 11}),
        ("post", "evses", {"connector_type": "Type2", "max_power_kw": 11}),
    ],
)
def test_an_evse_or_configuration_write_answers_what_the_worker_did(depot, method, path, body):
    # They answered the row alone: a script could not tell whether the running charger
    # took the change (a value it refused shows only in the worker's answer).
    _, token = user_with_token("writer", *EVERY_PERMISSION)
    api = TokenClient(token)
    charger = make_charger("DEMO-0001", location=depot)
    with worker_answering(charger, "applied live"):
        response = getattr(api, method)(f"{V1}/chargers/DEMO-0001/{path}", body)
        quiet = getattr(api, method)(f"{V1}/chargers/DEMO-0001/{path}?wait=false", body)
    assert response.status_code in (200, 201), response.content
    assert response.json()["workers"] == [{"reached": True, "message": "DEMO-0001 applied live."}]
    assert quiet.json()["workers"] is None


@pytest.mark.django_db(transaction=True)
def test_a_charger_write_says_so_when_no_worker_runs(depot):
    _, token = user_with_token("writer", *EVERY_PERMISSION)
    response = TokenClient(token).post(f"{V1}/chargers", charger_body("CP-1", depot))
    assert response.status_code == 201
    assert response.json()["workers"] == [
        {
            "reached": False,
            "message": "CP-1 saved; its worker did not answer: it takes the change when it "
            "next reads the fleet, or when it starts.",
        }
    ]


@pytest.mark.django_db(transaction=True)
def test_a_delete_or_disable_no_worker_answers_says_what_the_worker_does_later(depot):
    """A forced delete while the worker was paused answered "No simulator worker is
    running: saved; it starts with the worker.": a deleted charger does not start, and a
    paused worker is running. A disable said the same."""
    _, token = user_with_token("writer", *EVERY_PERMISSION)
    api = TokenClient(token)
    make_charger("CP-1", location=depot)
    make_charger("CP-2", location=depot)
    disabled = api.patch(f"{V1}/chargers/CP-1", {"enabled": False})
    assert disabled.json()["workers"] == [
        {
            "reached": False,
            "message": "CP-1 disabled; its worker did not answer: it stops the charger when "
            "it next reads the fleet.",
        }
    ]
    deleted = api.delete(f"{V1}/chargers/CP-2?force=true")
    assert deleted.json()["workers"] == [
        {
            "reached": False,
            "message": "CP-2 deleted; its worker did not answer: it drops the charger when "
            "it next reads the fleet.",
        }
    ]


@pytest.mark.django_db(transaction=True)
def test_a_charger_write_says_so_when_the_channel_layer_cannot_be_reached(
    depot, monkeypatch, caplog
):
    """It answered `"workers": []`, which reads as "nothing to tell": the change is saved,
    but the workers learn it only at their next look at the database. The log says so in
    one line: its traceback (four of them as runsimulator seeded its demo fleet with Redis
    away) ended in redis-py and began with an unrelated DoesNotExist."""
    from channels_redis.core import RedisChannelLayer

    from fleet_io import fleet_changes
    from tests.process import free_port

    port = free_port()  # nobody listens there
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"])
    monkeypatch.setattr(fleet_changes, "get_channel_layer", lambda: layer)
    _, token = user_with_token("writer", *EVERY_PERMISSION)
    response = TokenClient(token).post(f"{V1}/chargers", charger_body("CP-1", depot))
    assert response.status_code == 201, response.content
    (note,) = response.json()["workers"]
    assert note["reached"] is False
    assert note["message"].startswith("Saved, but the simulator workers could not be told (")
    assert "next check of the database" in note["message"]
    assert Charger.objects.filter(charge_point_id="CP-1").exists()
    (record,) = [r for r in caplog.records if r.name == "fleet_io.fleet_changes"]
    assert record.exc_info is None
    assert record.getMessage().startswith(
        "could not tell the simulator workers about a fleet change (ConnectionError: "
    )


def test_every_field_the_admin_form_writes_can_be_written_and_read_through_the_api():
    """A new charger field (a model and admin-form change) is not silently left out of the
    API: create, update and read all carry it (AuthorizationKey is write-only)."""
    from api.fleet_schemas import ChargerIn, ChargerOut, ChargerPatch
    from chargers.forms import ChargerForm

    written = set(ChargerForm.Meta.fields) - {"clear_authorization_key"}
    assert written <= set(ChargerIn.model_fields)
    assert written <= set(ChargerPatch.model_fields)
    assert written - {"authorization_key"} <= set(ChargerOut.model_fields)


# -- GET then PUT: what a GET answers may be sent back ------------------------------------

READ_ONLY_CHANGED = "is read-only here"


def test_an_evse_put_takes_back_what_its_get_answered(api, depot):
    """A script reads an EVSE, changes its power and sends it back whole: the fields it
    cannot change (the path's connector id, the simulator's register, status and
    availability) came back as they were, and were refused as unknown."""
    make_charger("CP-1", location=depot, evses=2)
    Evse.objects.filter(charger__charge_point_id="CP-1", connector_id=2).update(
        register_wh=1234.5, status="Charging"
    )
    url = f"{V1}/chargers/CP-1/evses/2"
    body = api.get(url).json()
    body["max_power_kw"] = 11
    put = api.put(f"{url}?wait=false", body)
    assert put.status_code == 200, put.content
    assert (put.json()["max_power_kw"], put.json()["register_wh"]) == (11, 1234.5)


def test_a_key_differing_from_an_ocpp_key_only_in_case_is_refused(api, depot):
    make_charger("CP-1", location=depot)
    found = errors_of(
        api.put(f"{V1}/chargers/CP-1/configuration/heartbeatinterval", {"value": "5"})
    )
    assert [f for f, _, _ in found] == ["key"]
    assert "differs from the OCPP key HeartbeatInterval only in case" in found[0][1]
    body = {**charger_body("CP-2", depot), "configuration": {"AUTHORIZATIONKEY": "00"}}
    found = errors_of(api.post(f"{V1}/chargers", body))
    assert "differs from the OCPP key AuthorizationKey only in case" in found[0][1]
    assert (
        not ConfigurationKey.objects.filter(key__iexact="heartbeatinterval")
        .exclude(key="HeartbeatInterval")
        .exists()
    )


def test_a_key_differing_from_another_custom_key_only_in_case_is_refused(api, depot):
    """Keys are CiString50: a CSMS names VendorX and vendorx the same way and reaches only
    one. Each way the API writes keys refuses the second, naming the field."""
    twin = "'vendorx' differs from the key VendorX this charger has only in case"
    charger = make_charger("CP-1", location=depot)
    ConfigurationKey.objects.create(charger=charger, key="VendorX", value="1")
    found = errors_of(api.put(f"{V1}/chargers/CP-1/configuration/vendorx", {"value": "2"}))
    assert [(field, twin in message) for field, message, _ in found] == [("key", True)]
    found = errors_of(api.patch(f"{V1}/chargers/CP-1", {"configuration": {"vendorx": "2"}}))
    assert [(field, twin in message) for field, message, _ in found] == [("configuration", True)]
    body = {**charger_body("CP-2", depot), "configuration": {"VendorX": "1", "vendorx": "2"}}
    found = errors_of(api.post(f"{V1}/chargers", body))
    assert [(field, twin in message) for field, message, _ in found] == [("configuration", True)]
    bulk = {"items": [charger_body("CP-3", depot), body]}
    found = errors_of(api.post(f"{V1}/bulk/chargers?wait=false", bulk))
    assert [(f, row, twin in message) for f, message, row in found] == [("configuration", 1, True)]
    assert list(ConfigurationKey.objects.filter(key__iexact="vendorx").values_list("key")) == [
        ("VendorX",)
    ]
    assert not Charger.objects.filter(charge_point_id__in=["CP-2", "CP-3"]).exists()
    # The key as it is stored is set like any other.
    assert api.put(f"{V1}/chargers/CP-1/configuration/VendorX", {"value": "3"}).status_code == 200


def test_an_evse_put_refuses_another_connector_id(api, depot):
    make_charger("CP-1", location=depot, evses=2)
    url = f"{V1}/chargers/CP-1/evses/2"
    body = {**api.get(url).json(), "max_power_kw": 11, "connector_id": 1}
    found = errors_of(api.put(f"{url}?wait=false", body))
    assert [(f, row) for f, _, row in found] == [("connector_id", None)]
    assert READ_ONLY_CHANGED in found[0][1]
    evse = Evse.objects.get(charger__charge_point_id="CP-1", connector_id=2)
    assert (evse.max_power_kw, evse.register_wh) == (22, 0)  # nothing changed


def test_a_put_ignores_what_the_simulator_moved_on_since_the_get(api, depot):
    """The register, status and availability of a running charger (its `updated`, a
    location's charger count) may change between a script's GET and its PUT: a PUT must
    not fail for it, nor wind the register back."""
    make_charger("CP-1", location=depot, evses=2)
    url = f"{V1}/chargers/CP-1/evses/2"
    body = api.get(url).json()
    Evse.objects.filter(charger__charge_point_id="CP-1", connector_id=2).update(
        register_wh=1234.5, status="Charging"
    )
    body["max_power_kw"] = 11
    put = api.put(f"{url}?wait=false", {**body, "availability": "Inoperative"})
    assert put.status_code == 200, put.content
    evse = Evse.objects.get(charger__charge_point_id="CP-1", connector_id=2)
    assert (evse.max_power_kw, evse.register_wh, evse.status) == (11, 1234.5, "Charging")
    assert evse.availability == Evse.Availability.OPERATIVE

    charger_url = f"{V1}/chargers/CP-1"
    body = api.get(charger_url).json()
    Evse.objects.filter(charger__charge_point_id="CP-1").update(register_wh=2000.0)
    Charger.objects.filter(charge_point_id="CP-1").update(vendor="ChargeSim")  # a later edit
    body["vendor"] = "Elsewhere"
    body["updated"] = "2020-01-01T00:00:00Z"
    put = api.put(f"{charger_url}?wait=false", body)
    assert put.status_code == 200, put.content
    assert set(
        Evse.objects.filter(charger__charge_point_id="CP-1").values_list("register_wh", flat=True)
    ) == {2000.0}

    location_url = f"{V1}/locations/{depot.pk}"
    body = api.get(location_url).json()
    make_charger("CP-2", location=depot)
    put = api.put(location_url, {**body, "city": "Bonn"})
    assert put.status_code == 200, put.content
    assert put.json()["chargers"] == 2


def test_a_charger_put_takes_back_what_its_get_answered(api, depot):
    make_charger("CP-1", location=depot, evses=2, security_profile=1, authorization_key=HEX_KEY)
    url = f"{V1}/chargers/CP-1"
    body = api.get(url).json()
    body["vendor"] = "Elsewhere"
    put = api.put(f"{url}?wait=false", body)
    assert put.status_code == 200, put.content
    charger = Charger.objects.get(charge_point_id="CP-1")
    assert (charger.vendor, charger.authorization_key, charger.evses.count()) == (
        "Elsewhere",
        HEX_KEY,
        2,
    )
    # A configuration value changed in the list the GET answered is set, as in the object form.
    body = api.get(url).json()
    for row in body["configuration"]:
        if row["key"] == "HeartbeatInterval":
            row["value"] = "120"
    put = api.put(f"{url}?wait=false", body)
    assert put.status_code == 200, put.content
    assert charger.configuration.get(key="HeartbeatInterval").value == "120"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda body: body.update(id=body["id"] + 1), "id"),
        (lambda body: body.update(location_name="Elsewhere"), "location_name"),
        (lambda body: body.update(authorization_key_set=True), "authorization_key_set"),
        (lambda body: body.update(created="2020-01-01T00:00:00Z"), "created"),
        (lambda body: body["evses"][1].update(connector_id=3), "evses.1.connector_id"),
        (lambda body: body["configuration"][0].update(readonly=True), "configuration.0.readonly"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_a_charger_put_refuses_a_read_only_field_with_another_value(api, depot, change, field):
    make_charger("CP-1", location=depot, evses=2)
    url = f"{V1}/chargers/CP-1"
    body = api.get(url).json()
    body["vendor"] = "Elsewhere"
    body["configuration"].sort(key=lambda row: row["readonly"])  # a writable key first
    change(body)
    found = errors_of(api.put(f"{url}?wait=false", body))
    assert [(f, row) for f, _, row in found] == [(field, None)]
    assert READ_ONLY_CHANGED in found[0][1]
    assert Charger.objects.get(charge_point_id="CP-1").vendor == "ChargeSim"


def test_a_location_put_takes_back_what_its_get_answered(api, depot):
    make_charger("CP-1", location=depot)
    url = f"{V1}/locations/{depot.pk}"
    assert api.put(url, {"name": "Depot", "arrival_profile": {}}).status_code == 200
    body = api.get(url).json()
    body["city"] = "Bonn"
    put = api.put(url, body)
    assert put.status_code == 200, put.content
    assert put.json()["city"] == "Bonn"
    for field, value in (("id", depot.pk + 1),):
        found = errors_of(api.put(url, {**body, "city": "Köln", field: value}))
        assert [(f, row) for f, _, row in found] == [(field, None)]
        assert READ_ONLY_CHANGED in found[0][1]
    assert Location.objects.get(pk=depot.pk).city == "Bonn"


def test_a_vehicle_model_put_takes_back_what_its_get_answered(api):
    vehicle = make_vehicle(0)
    url = f"{V1}/vehicle-models/{vehicle.pk}"
    body = api.get(url).json()
    body["capacity_kwh"] = 60
    put = api.put(url, body)
    assert put.status_code == 200, put.content
    assert put.json()["capacity_kwh"] == 60
    found = errors_of(api.put(url, {**body, "capacity_kwh": 61, "id": vehicle.pk + 1}))
    assert [(f, row) for f, _, row in found] == [("id", None)]
    assert READ_ONLY_CHANGED in found[0][1]
    vehicle.refresh_from_db()
    assert vehicle.capacity_kwh == 60


def test_a_patch_schema_allows_null_exactly_where_the_server_takes_it(api, depot):
    """A generated client follows the document: a field it says may be null must not be
    refused for it ("cannot be null: leave it out"), nor one it says may not be taken."""
    make_charger("CP-1", location=depot)
    vehicle = make_vehicle()
    spec = api.get(f"{V1}/openapi.json").json()["components"]["schemas"]
    paths = {
        "LocationPatch": f"{V1}/locations/{depot.pk}",
        "VehicleModelPatch": f"{V1}/vehicle-models/{vehicle.pk}",
        "ChargerPatch": f"{V1}/chargers/CP-1?wait=false",
        "EvsePatch": f"{V1}/chargers/CP-1/evses/1?wait=false",
    }
    for schema, path in paths.items():
        for name, field in spec[schema]["properties"].items():
            documented = {"type": "null"} in field.get("anyOf", ())
            answer = api.patch(path, {name: None})
            refused = answer.status_code == 422 and any(
                "cannot be null" in e["message"] for e in answer.json()["errors"]
            )
            assert documented != refused, (schema, name, answer.content)
            assert documented or field.get("default", "none") is not None, (schema, name)


def test_a_body_sent_as_another_type_than_json_is_a_415(api, depot):
    """ninja parsed any body as JSON: a form post (`curl -d` without the header) or
    text/plain holding JSON created a location. A body without a Content-Type is still
    read as JSON, and an empty one is no body, whatever its type."""
    client, headers = api.client, api.headers
    body = json.dumps({"name": "Typed"})
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=XX",
    ):
        answer = client.post(f"{V1}/locations", body, content_type=content_type, headers=headers)
        assert answer.status_code == 415, (content_type, answer.content)
        assert "Content-Type: application/json" in answer.json()["detail"]
    assert not Location.objects.filter(name="Typed").exists()
    untyped = client.post(f"{V1}/locations", body, content_type="", headers=headers)
    assert untyped.status_code == 201, untyped.content
    typed = client.post(
        f"{V1}/locations",
        json.dumps({"name": "Typed 2"}),
        content_type="application/json; charset=utf-8",
        headers=headers,
    )
    assert typed.status_code == 201, typed.content
    spec = api.get(f"{V1}/openapi.json").json()
    assert "415" in spec["paths"]["/api/v1/locations"]["post"]["responses"]


def test_a_key_given_twice_in_a_body_is_a_422_naming_it_not_the_last_one_taken(api, depot):
    """QA: `{"enabled": true, "enabled": false}` disabled the charger (the parser keeps the
    last value), and the script that sent it never learnt that one of its values was
    dropped."""
    make_charger("CP-1", location=depot, evses=1)
    client, headers = api.client, api.headers
    twice = '{"enabled": true, "enabled": false}'
    answer = client.patch(
        f"{V1}/chargers/CP-1?wait=false", twice, content_type="application/json", headers=headers
    )
    assert answer.status_code == 422, answer.content
    assert answer.json()["errors"] == [
        {
            "field": "enabled",
            "message": "Given 2 times in one object: give each key once.",
            "row": None,
        }
    ]
    assert Charger.objects.get(charge_point_id="CP-1").enabled is True
    # Inside a bulk body's items: named with its row, as the other problems of a row are.
    first = f'{{"charge_point_id": "CP-2", "location": {depot.pk}}}'
    second = f'{{"charge_point_id": "CP-3", "location": {depot.pk}, "location": {depot.pk}}}'
    nested = f'{{"items": [{first}, {second}]}}'
    bulk = client.post(
        f"{V1}/bulk/chargers?wait=false", nested, content_type="application/json", headers=headers
    )
    assert bulk.status_code == 422, bulk.content
    assert [(e["row"], e["field"]) for e in bulk.json()["errors"]] == [(1, "location")]
    assert not Charger.objects.filter(charge_point_id__in=["CP-2", "CP-3"]).exists()
    # The same key in two objects is no duplicate.
    fine = client.post(
        f"{V1}/bulk/chargers?wait=false",
        nested.replace(f', "location": {depot.pk}}}]', "}]"),
        content_type="application/json",
        headers=headers,
    )
    assert fine.status_code == 201, fine.content


def test_an_evse_whose_next_number_a_concurrent_create_took_is_a_retryable_409(
    api, depot, monkeypatch
):
    """Two creates at once both count N EVSEs and take N + 1: the one that saves second
    lost a race, not sent a bad connector_id (it sent none), so it gets the 409 to send
    it again, not a 422 about a field it never gave."""
    make_charger("CP-1", location=depot, evses=2)
    # As the loser saw the charger: before the winner's connector 2 was saved.
    monkeypatch.setattr(fleet_writes, "next_connector_id", lambda stored: 2)
    body = {"connector_type": "Type2", "max_power_kw": 22}
    lost = api.post(f"{V1}/chargers/CP-1/evses?wait=false", body)
    assert lost.status_code == 409, lost.content
    assert "send this one again" in lost.json()["detail"]
    monkeypatch.undo()
    again = api.post(f"{V1}/chargers/CP-1/evses?wait=false", body)
    assert again.status_code == 201 and again.json()["connector_id"] == 3
    # A connector_id the caller gives is still the caller's to fix.
    given = api.post(f"{V1}/chargers/CP-1/evses?wait=false", {**body, "connector_id": 2})
    assert given.status_code == 422


def test_a_location_name_is_one_line_of_printable_text(api, depot):
    for name in ("Two\nlines", "Bell\x07", "Tab\there", "Line\u2028separator"):
        answer = api.post(f"{V1}/locations", {"name": name})
        assert "name" in fields_of(answer), answer.content
        renamed = api.patch(f"{V1}/locations/{depot.pk}", {"name": name})
        assert "name" in fields_of(renamed), renamed.content
    # The admin's and the import's check: the model's own.
    with pytest.raises(ValidationError) as refused:
        Location(name="Two\nlines").full_clean()
    assert "name" in refused.value.message_dict
    assert api.post(f"{V1}/locations", {"name": "München Süd"}).status_code == 201
    # QA: a non-breaking space pasted from a web page is a space, not "unprintable".
    assert api.post(f"{V1}/locations", {"name": "Depot\u00a0Nord"}).status_code == 201
    # Its address and city alike, each named.
    both = api.patch(f"{V1}/locations/{depot.pk}", {"address": "Line 1\nLine 2", "city": "B\x00n"})
    assert set(fields_of(both)) == {"address", "city"}, both.content
    assert api.patch(f"{V1}/locations/{depot.pk}", {"city": "Köln"}).status_code == 200
    # A site's idTag pool takes only what a charger may send: printable ASCII.
    profile = api.patch(f"{V1}/locations/{depot.pk}", {"arrival_profile": {"id_tags": "TAG1 TÄG2"}})
    [message] = fields_of(profile)["arrival_profile.id_tags"]
    assert "'TÄG2'" in message and "printable ASCII" in message
