import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chargers.models import Charger, ConfigurationKey, Evse
from locations.models import Location
from tests.cast import make_charger, make_location, make_vehicle
from vehicles.models import VehicleModel

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-AuthKey-never-shown"


@pytest.fixture
def fleet():
    location = make_location()
    make_vehicle()
    return [
        make_charger(
            f"CP-{n}",
            location=location,
            security_profile=1,
            authorization_key=SECRET,
            csms_url="ws://127.0.0.1:9000/ocpp",
        )
        for n in range(3)
    ]


MODELS = [Location, VehicleModel, Charger, Evse, ConfigurationKey]


def admin_url(model, action, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{action}", args=args)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_list_page_loads_with_a_constant_number_of_queries(
    admin_client_logged_in, fleet, model
):
    url = admin_url(model, "changelist")
    with CaptureQueriesContext(connection) as few:
        assert admin_client_logged_in.get(url).status_code == 200
    location = fleet[0].location
    for n in range(3, 40):
        make_charger(f"CP-{n}", location=location)
    with CaptureQueriesContext(connection) as many:
        response = admin_client_logged_in.get(url)
    assert response.status_code == 200
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_change_and_add_page_loads(admin_client_logged_in, fleet, model):
    obj = model.objects.first()
    assert admin_client_logged_in.get(admin_url(model, "change", obj.pk)).status_code == 200
    assert admin_client_logged_in.get(admin_url(model, "add")).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        lambda cp: admin_url(Charger, "changelist"),
        lambda cp: admin_url(Charger, "change", cp.pk),
        lambda cp: admin_url(Charger, "history", cp.pk),
        lambda cp: admin_url(Charger, "delete", cp.pk),
        lambda cp: admin_url(ConfigurationKey, "changelist"),
        lambda cp: admin_url(Evse, "changelist"),
    ],
)
def test_the_authorization_key_never_appears_in_admin_html(admin_client_logged_in, fleet, url):
    response = admin_client_logged_in.get(url(fleet[0]))
    assert response.status_code == 200
    assert SECRET not in response.content.decode()


def change_form_data(cp: Charger, **overrides):
    data = {
        "charge_point_id": cp.charge_point_id,
        "location": cp.location_id,
        "enabled": "on",
        "auto_connect": "on",
        "vendor": cp.vendor,
        "model": cp.model,
        "serial_number": "",
        "firmware_version": cp.firmware_version,
        "power_type": cp.power_type,
        "max_power_kw": cp.max_power_kw,
        "phases": cp.phases,
        "nominal_voltage": cp.nominal_voltage,
        "csms_url": cp.csms_url,
        "security_profile": cp.security_profile,
        "authorization_key": "",
        "ca_bundle_path": "",
        "client_cert_path": "",
        "client_key_path": "",
        "default_vehicle": "",
        "firmware_failure": "",
        "diagnostics_upload_method": "PUT",
        "power_sharing": cp.power_sharing,
        "evses-TOTAL_FORMS": 0,
        "evses-INITIAL_FORMS": 0,
        "evses-MIN_NUM_FORMS": 0,
        "evses-MAX_NUM_FORMS": 1000,
        "configuration-TOTAL_FORMS": 0,
        "configuration-INITIAL_FORMS": 0,
        "configuration-MIN_NUM_FORMS": 0,
        "configuration-MAX_NUM_FORMS": 1000,
    }
    data.update(overrides)
    return data


def evse_forms(cp: Charger) -> dict[str, object]:
    """The EVSE inline's rows of a change form, as the page posts them back."""
    evses = list(cp.evses.all())
    data: dict[str, object] = {"evses-TOTAL_FORMS": len(evses), "evses-INITIAL_FORMS": len(evses)}
    for i, evse in enumerate(evses):
        data.update(
            {
                f"evses-{i}-id": evse.pk,
                f"evses-{i}-charger": cp.pk,
                f"evses-{i}-connector_id": evse.connector_id,
                f"evses-{i}-connector_type": evse.connector_type,
                f"evses-{i}-max_power_kw": evse.max_power_kw,
            }
        )
    return data


def test_saving_the_form_with_an_empty_password_keeps_the_stored_one(admin_client_logged_in, fleet):
    cp = fleet[0]
    data = change_form_data(cp, vendor="NewVendor")
    data.update(evse_forms(cp))
    for i, evse in enumerate(cp.evses.all()):
        data.update(
            {
                f"evses-{i}-availability": evse.availability,
                f"evses-{i}-register_wh": evse.register_wh,
            }
        )
    response = admin_client_logged_in.post(admin_url(Charger, "change", cp.pk), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    cp.refresh_from_db()
    assert cp.vendor == "NewVendor"
    assert cp.authorization_key == SECRET


def test_a_bad_csms_url_is_reported_on_the_form(admin_client_logged_in, fleet):
    cp = fleet[0]
    response = admin_client_logged_in.post(
        admin_url(Charger, "change", cp.pk), change_form_data(cp, csms_url="http://x/ocpp")
    )
    assert response.status_code == 200
    assert "must start with ws:// or wss://" in response.content.decode()
    assert SECRET not in response.content.decode()


def test_a_charger_added_with_evses_reports_their_number(admin_client_logged_in, fleet):
    data = change_form_data(
        fleet[0], charge_point_id="CP-NEW", security_profile=0, csms_url="ws://127.0.0.1:9000/ocpp"
    )
    data.update({"evses-TOTAL_FORMS": 3, "evses-INITIAL_FORMS": 0})
    for i in range(3):
        data.update(
            {
                f"evses-{i}-connector_id": i + 1,
                f"evses-{i}-connector_type": "Type2",
                f"evses-{i}-max_power_kw": 11,
                f"evses-{i}-availability": "Operative",
                f"evses-{i}-register_wh": 0,
            }
        )
    response = admin_client_logged_in.post(admin_url(Charger, "add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    created = Charger.objects.get(charge_point_id="CP-NEW")
    assert created.configuration.get(key="NumberOfConnectors").value == "3"


def test_the_firmware_failure_and_upload_method_are_set_on_the_form(admin_client_logged_in, fleet):
    cp = fleet[0]
    data = change_form_data(cp, firmware_failure="DownloadFailed", diagnostics_upload_method="POST")
    data.update(evse_forms(cp))
    response = admin_client_logged_in.post(admin_url(Charger, "change", cp.pk), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    cp.refresh_from_db()
    assert (cp.firmware_failure, cp.diagnostics_upload_method) == ("DownloadFailed", "POST")
    bad = change_form_data(cp, diagnostics_upload_method="PATCH")
    response = admin_client_logged_in.post(admin_url(Charger, "change", cp.pk), bad)
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


HEX_RULE = "AuthorizationKey takes 16 to 20 bytes written as 32 to 40 hexadecimal digits."
VALID_KEY = "0011223344556677889900AABBCCDDEEFF001122"  # 20 bytes, kept as written


@pytest.mark.parametrize(
    "key", ["short-key", "s3cr3t-not-hex-but-long-enough-for-it", "00" * 15, "00" * 21, "0" * 33]
)
def test_a_new_authorization_key_must_be_16_to_20_bytes_in_hex(
    admin_client_logged_in, fleet, caplog, key
):
    """As the charger checks one its CSMS sets (ChangeConfiguration): a key the operator
    types is the same HTTP Basic password."""
    cp = fleet[0]
    url = admin_url(Charger, "change", cp.pk)
    response = admin_client_logged_in.post(url, change_form_data(cp, authorization_key=key))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors == {"authorization_key": [HEX_RULE]}
    assert key not in response.content.decode()
    assert key not in caplog.text
    cp.refresh_from_db()
    assert cp.authorization_key == SECRET
    # A valid one is taken as written; empty keeps the stored one (not checked again).
    data = {**change_form_data(cp, authorization_key=VALID_KEY), **evse_forms(cp)}
    assert admin_client_logged_in.post(url, data).status_code == 302
    cp.refresh_from_db()
    assert cp.authorization_key == VALID_KEY
