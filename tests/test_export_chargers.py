"""Exports from the admin: every resource, CSV and JSON, and never the AuthorizationKey."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from chargers.import_admin import FleetImportExportAdmin
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
    formats = [f().get_extension() for f in FleetImportExportAdmin.formats]
    form = admin_client_logged_in.get(reverse(url)).context["form"]
    columns = [name for name, field in form.fields.items() if field.initial is True]
    assert not any("authorization_key" in name for name in columns)
    response = admin_client_logged_in.post(
        reverse(url),
        {"format": formats.index(file_format), "resource": 0} | dict.fromkeys(columns, "on"),
    )
    body = b"".join(response).decode() if response.streaming else response.content.decode()
    assert response.status_code == 200, body[:2000]
    assert expected in body
    assert SECRET not in body
    if file_format == "json":
        assert isinstance(json.loads(body), list)
