"""The admin's charger pages as a person uses them (issue 19): a new charger's form starts
filled in, and the meter register reads as a number of kWh."""

import html
from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from chargers.admin import register_text
from chargers.models import Charger, ConfigurationKey, Evse
from locations.models import Location
from simulator.contract import shard_of
from tests.admin_forms import form_values
from tests.cast import make_charger, make_location, make_open_transaction

pytestmark = pytest.mark.django_db

ADD = reverse("admin:chargers_charger_add")


def add_form(client) -> dict[str, str]:
    response = client.get(ADD)
    assert response.status_code == 200
    return form_values(response.content.decode())


def test_the_add_form_starts_with_the_built_in_csms_and_one_connector(admin_client_logged_in):
    shown = add_form(admin_client_logged_in)
    assert shown["csms_url"] == settings.CHARGESIM_DEFAULT_CSMS_URL
    assert shown["evses-TOTAL_FORMS"] == "1"
    assert shown["evses-0-connector_id"] == "1"
    assert shown["evses-0-connector_type"] == Evse.ConnectorType.TYPE2
    assert float(shown["evses-0-max_power_kw"]) == Charger().max_power_kw


def test_posting_it_with_only_the_required_fields_makes_a_charger_with_one_connector(
    admin_client_logged_in,
):
    location = make_location()
    data = add_form(admin_client_logged_in)
    data.update(charge_point_id="NEW-1", location=str(location.pk))
    response = admin_client_logged_in.post(ADD, data)
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    charger = Charger.objects.get(charge_point_id="NEW-1")
    assert charger.csms_url == settings.CHARGESIM_DEFAULT_CSMS_URL
    assert [(e.connector_id, e.connector_type, e.max_power_kw) for e in charger.evses.all()] == [
        (1, "Type2", 22.0)
    ]
    assert charger.configuration.get(key="NumberOfConnectors").value == "1"


def test_a_form_posted_without_connector_rows_still_gets_one(admin_client_logged_in):
    location = make_location()
    data = add_form(admin_client_logged_in)
    data = {k: v for k, v in data.items() if not k.startswith("evses-0-")}
    data.update({"charge_point_id": "DC-1", "location": str(location.pk), "evses-TOTAL_FORMS": "0"})
    data.update(power_type="DC", max_power_kw="150")
    assert admin_client_logged_in.post(ADD, data).status_code == 302
    evses = Charger.objects.get(charge_point_id="DC-1").evses.all()
    assert [(e.connector_id, e.connector_type, e.max_power_kw) for e in evses] == [
        (1, "CCS2", 150.0)
    ]


def connector_errors(response) -> list[list[str]]:
    """The connector rows' errors on the connector type, as the form shows them again."""
    assert response.status_code == 200  # the form again, with its errors
    (evses,) = [
        f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == "evses"
    ]
    return [list(row.get("connector_type", [])) for row in evses.errors]


def test_a_connector_that_does_not_fit_the_power_type_is_a_form_error(admin_client_logged_in):
    location = make_location()
    data = add_form(admin_client_logged_in)
    data.update(charge_point_id="AC-1", location=str(location.pk), power_type="AC")
    data.update({"evses-0-connector_type": "CCS2", "evses-0-max_power_kw": "150"})
    assert connector_errors(admin_client_logged_in.post(ADD, data)) == [
        [
            "CCS2 is a DC connector; an AC charger takes AC connectors only "
            "(Type2, Type2Cable, Type1, Schuko)."
        ]
    ]
    assert not Charger.objects.exists()
    # A stored AC charger made DC keeps its Type 2 socket: refused on that connector's row.
    charger = make_charger("AC-2", location=location, evses=1)
    change = reverse("admin:chargers_charger_change", args=[charger.pk])
    data = form_values(admin_client_logged_in.get(change).content.decode())
    data.update(power_type="DC")
    assert connector_errors(admin_client_logged_in.post(change, data)) == [
        ["Type2 is an AC connector; a DC charger takes DC connectors only (CCS2, CCS1, CHAdeMO)."]
    ]
    charger.refresh_from_db()
    assert charger.power_type == "AC"
    # With its connector changed too, it saves.
    data.update({"evses-0-connector_type": "CCS2"})
    assert admin_client_logged_in.post(change, data).status_code == 302
    assert list(charger.evses.values_list("connector_type", flat=True)) == ["CCS2"]


def test_the_next_add_form_starts_with_the_users_last_csms_url(admin_client_logged_in):
    location = make_location()
    make_charger("OTHER-1", location=location, csms_url="ws://someone-else.example/ocpp")
    data = add_form(admin_client_logged_in)
    data.update(
        charge_point_id="MINE-1", location=str(location.pk), csms_url="wss://csms.example/ocpp"
    )
    assert admin_client_logged_in.post(ADD, data).status_code == 302
    assert add_form(admin_client_logged_in)["csms_url"] == "wss://csms.example/ocpp"


def test_the_meter_register_is_shown_in_kwh_to_the_wh(admin_client_logged_in):
    charger = make_charger("REG-1", evses=1)
    charger.evses.update(register_wh=1202.2277432561943)
    evse = charger.evses.get()
    pages = [
        reverse("admin:chargers_charger_change", args=[charger.pk]),
        reverse("admin:chargers_evse_changelist"),
        reverse("admin:chargers_evse_change", args=[evse.pk]),
    ]
    for url in pages:
        html = admin_client_logged_in.get(url).content.decode()
        assert "1.202 kWh" in html, url
        assert "1202.22" not in html, url


def test_the_register_text_groups_thousands():
    assert register_text(12_345_678.9) == "12,345.679 kWh"
    assert register_text(0) == "0.000 kWh"


def test_the_evse_form_does_not_post_the_register(admin_client_logged_in):
    charger = make_charger("REG-2", evses=1)
    charger.evses.update(register_wh=5000)
    evse = charger.evses.get()
    url = reverse("admin:chargers_evse_change", args=[evse.pk])
    data = form_values(admin_client_logged_in.get(url).content.decode())
    assert "register_wh" not in data
    data["max_power_kw"] = "11"
    assert admin_client_logged_in.post(url, data).status_code == 302
    evse.refresh_from_db()
    assert (evse.max_power_kw, evse.register_wh) == (11.0, 5000.0)


def test_an_edit_of_a_key_the_charger_sets_itself_is_refused_saying_where(admin_client_logged_in):
    """NumberOfConnectors set to 5 was saved as "no change for the running charger" and
    quietly put back to 2; the API refuses it."""
    from chargers.models import ConfigurationKey

    charger = make_charger("CFG-1", evses=2)
    url = reverse("admin:chargers_charger_change", args=[charger.pk])
    data = form_values(admin_client_logged_in.get(url).content.decode())
    rows = {
        data[f"configuration-{n}-key"]: n for n in range(int(data["configuration-TOTAL_FORMS"]))
    }
    data[f"configuration-{rows['NumberOfConnectors']}-value"] = "5"
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 200  # the form again, with the error
    assert "NumberOfConnectors follows the number of EVSEs" in response.content.decode()
    assert ConfigurationKey.objects.get(charger=charger, key="NumberOfConnectors").value == "2"

    # The same form with the key left alone saves; so does another key's edit.
    data[f"configuration-{rows['NumberOfConnectors']}-value"] = "2"
    data[f"configuration-{rows['HeartbeatInterval']}-value"] = "120"
    assert admin_client_logged_in.post(url, data).status_code == 302
    assert ConfigurationKey.objects.get(charger=charger, key="HeartbeatInterval").value == "120"


def test_an_edit_in_the_evse_or_configuration_key_admin_marks_the_charger_changed(
    admin_client_logged_in,
):
    # A worker that missed the change message finds it by the charger's `updated` time.
    charger = make_charger("UPD-1", evses=1)
    before = timezone.now() - timedelta(hours=1)
    edits = [
        (
            reverse("admin:chargers_evse_change", args=[charger.evses.get().pk]),
            "max_power_kw",
            "11",
        ),
        (
            reverse(
                "admin:chargers_configurationkey_change",
                args=[charger.configuration.get(key="HeartbeatInterval").pk],
            ),
            "value",
            "120",
        ),
    ]
    for url, name, value in edits:
        Charger.objects.filter(pk=charger.pk).update(updated=before)
        data = form_values(admin_client_logged_in.get(url).content.decode())
        data[name] = value
        assert admin_client_logged_in.post(url, data).status_code == 302
        charger.refresh_from_db()
        assert charger.updated > before, url


# -- connectors numbered 1..N without gaps (OCPP 1.6) ----------------------------------------


def change_page(client, charger: Charger) -> tuple[str, dict[str, str]]:
    url = reverse("admin:chargers_charger_change", args=[charger.pk])
    return url, form_values(client.get(url).content.decode())


def connector_ids(charger: Charger) -> list[int]:
    return list(charger.evses.order_by("connector_id").values_list("connector_id", flat=True))


def test_the_evse_inline_refuses_a_connector_that_leaves_a_gap(admin_client_logged_in):
    # Connector 5 on a 1-EVSE charger was saved: [1, 5], connector 5 unreachable by its id.
    charger = make_charger("GAP-1", evses=1)
    url, data = change_page(admin_client_logged_in, charger)
    data.update(
        {
            "evses-TOTAL_FORMS": "2",
            "evses-1-connector_id": "5",
            "evses-1-connector_type": "Type2",
            "evses-1-max_power_kw": "11",
        }
    )
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 200  # the form again, with the error
    assert "The next connector of GAP-1 is 2" in response.content.decode()
    assert connector_ids(charger) == [1]
    data["evses-1-connector_id"] = "2"
    assert admin_client_logged_in.post(url, data).status_code == 302
    assert connector_ids(charger) == [1, 2]
    assert charger.configuration.get(key="NumberOfConnectors").value == "2"


def test_a_connector_id_on_two_rows_is_named_in_the_error(admin_client_logged_in):
    """QA: two EVSE rows numbered 1 said Django's "Please correct the duplicate data for
    connector_id.", naming neither the connector nor what to do."""
    charger = make_charger("TWICE-1", evses=1)
    url, data = change_page(admin_client_logged_in, charger)
    data.update(
        {
            "evses-TOTAL_FORMS": "2",
            "evses-1-connector_id": "1",
            "evses-1-connector_type": "Type2",
            "evses-1-max_power_kw": "11",
        }
    )
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 200  # the form again, with the error
    page = html.unescape(response.content.decode())
    assert "Connector 1 is on 2 rows: each connector id once (connectors 1, 2, ...)." in page
    assert "duplicate data for connector_id" not in page
    assert "This connector id is on another row too." in page
    assert connector_ids(charger) == [1]


def test_a_new_evse_row_left_without_a_connector_id_takes_the_next(admin_client_logged_in):
    """QA F8: "Add another EVSE" gave a row whose Connector ID was empty and required:
    the save failed with "This field is required." (the API numbers a new EVSE itself)."""
    charger = make_charger("NEXT-1", evses=2)
    url, data = change_page(admin_client_logged_in, charger)
    for n in (2, 3):  # as a page without JavaScript posts two added rows
        data.update(
            {
                f"evses-{n}-connector_id": "",
                f"evses-{n}-connector_type": "Type2",
                f"evses-{n}-max_power_kw": "11",
            }
        )
    data["evses-TOTAL_FORMS"] = "4"
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 302, response.context["errors"]
    assert connector_ids(charger) == [1, 2, 3, 4]
    assert charger.configuration.get(key="NumberOfConnectors").value == "4"


def test_a_new_charger_with_a_second_evse_row_left_blank_numbers_it_2(admin_client_logged_in):
    location = make_location()
    data = add_form(admin_client_logged_in)
    data.update(
        {
            "charge_point_id": "NEXT-2",
            "location": str(location.pk),
            "evses-TOTAL_FORMS": "2",
            "evses-1-connector_type": "Type2",
            "evses-1-max_power_kw": "11",
        }
    )
    response = admin_client_logged_in.post(ADD, data)
    assert response.status_code == 302, response.context["errors"]
    assert connector_ids(Charger.objects.get(charge_point_id="NEXT-2")) == [1, 2]


def test_the_evse_inline_deletes_only_the_last_connector(admin_client_logged_in):
    charger = make_charger("GAP-2", evses=3)
    url, data = change_page(admin_client_logged_in, charger)
    rows = {data[f"evses-{n}-connector_id"]: n for n in range(3)}
    data[f"evses-{rows['2']}-DELETE"] = "on"
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 200
    assert "delete connector 3 first" in response.content.decode()
    assert connector_ids(charger) == [1, 2, 3]
    data[f"evses-{rows['3']}-DELETE"] = "on"  # 2 and 3 together: the last two
    assert admin_client_logged_in.post(url, data).status_code == 302
    assert connector_ids(charger) == [1]


def test_the_evse_inline_keeps_at_least_one_connector(admin_client_logged_in):
    charger = make_charger("GAP-3", evses=1)
    url, data = change_page(admin_client_logged_in, charger)
    data["evses-0-DELETE"] = "on"
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 200
    assert "only EVSE: a charger keeps at least one" in response.content.decode()
    assert connector_ids(charger) == [1]


def test_the_evse_admin_refuses_a_gap(admin_client_logged_in):
    charger = make_charger("GAP-4", evses=2)
    second = charger.evses.get(connector_id=2)
    url = reverse("admin:chargers_evse_change", args=[second.pk])
    data = form_values(admin_client_logged_in.get(url).content.decode())
    data["connector_id"] = "5"
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 200
    assert "Connector 2 of GAP-4 cannot become 5" in response.content.decode()

    add = reverse("admin:chargers_evse_add")
    data = form_values(admin_client_logged_in.get(add).content.decode())
    data.update(charger=str(charger.pk), connector_id="7", max_power_kw="11")
    response = admin_client_logged_in.post(add, data)
    assert response.status_code == 200
    assert "The next connector of GAP-4 is 3" in response.content.decode()
    assert connector_ids(charger) == [1, 2]


def test_the_evse_admin_deletes_only_the_last_connector(admin_client_logged_in):
    charger = make_charger("GAP-5", evses=2)
    first = charger.evses.get(connector_id=1)
    url = reverse("admin:chargers_evse_delete", args=[first.pk])
    response = admin_client_logged_in.post(url, {"post": "yes"}, follow=True)
    assert "delete connector 2 first" in response.content.decode()
    assert connector_ids(charger) == [1, 2]

    changelist = reverse("admin:chargers_evse_changelist")
    selected = {"action": "delete_selected", "_selected_action": [first.pk], "post": "yes"}
    response = admin_client_logged_in.post(changelist, selected, follow=True)
    assert "delete connector 2 first" in response.content.decode()
    assert connector_ids(charger) == [1, 2]

    every = [e.pk for e in charger.evses.all()]
    selected["_selected_action"] = every
    response = admin_client_logged_in.post(changelist, selected, follow=True)
    assert "would have no EVSE" in response.content.decode()
    assert connector_ids(charger) == [1, 2]

    last = charger.evses.get(connector_id=2)
    url = reverse("admin:chargers_evse_delete", args=[last.pk])
    assert admin_client_logged_in.post(url, {"post": "yes"}).status_code == 302
    assert connector_ids(charger) == [1]


def test_the_evse_admin_does_not_delete_a_connector_with_a_transaction_in_progress(
    admin_client_logged_in,
):
    charger = make_charger("BUSY-1", evses=2)
    make_open_transaction(charger, connector_id=2, transaction_id=12)
    last = charger.evses.get(connector_id=2)
    message = "Connector 2 of BUSY-1 has transaction 12 in progress; stop it first."
    url = reverse("admin:chargers_evse_delete", args=[last.pk])
    response = admin_client_logged_in.post(url, {"post": "yes"}, follow=True)
    assert message in response.content.decode()
    changelist = reverse("admin:chargers_evse_changelist")
    selected = {"action": "delete_selected", "_selected_action": [last.pk], "post": "yes"}
    response = admin_client_logged_in.post(changelist, selected, follow=True)
    assert message in response.content.decode()
    assert connector_ids(charger) == [1, 2]


def test_the_evse_inline_does_not_delete_a_connector_with_a_transaction_in_progress(
    admin_client_logged_in,
):
    charger = make_charger("BUSY-2", evses=2)
    make_open_transaction(charger, connector_id=2, transaction_id=13)
    url, data = change_page(admin_client_logged_in, charger)
    rows = {data[f"evses-{n}-connector_id"]: n for n in range(2)}
    data[f"evses-{rows['2']}-DELETE"] = "on"
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 200
    assert "Connector 2 of BUSY-2 has transaction 13 in progress" in response.content.decode()
    assert connector_ids(charger) == [1, 2]


# -- the standard OCPP configuration keys stay -----------------------------------------------


def test_the_configuration_inline_keeps_the_standard_keys(admin_client_logged_in):
    # Deleted here, HeartbeatInterval was gone from the admin and the API while the running
    # charger went on reporting it; renamed, the same.
    charger = make_charger("KEY-1", evses=1)
    ConfigurationKey.objects.create(charger=charger, key="VendorKey", value="on")
    url, data = change_page(admin_client_logged_in, charger)
    rows = {
        data[f"configuration-{n}-key"]: n for n in range(int(data["configuration-TOTAL_FORMS"]))
    }
    deleted = {**data, f"configuration-{rows['HeartbeatInterval']}-DELETE": "on"}
    response = admin_client_logged_in.post(url, deleted)
    assert response.status_code == 200
    assert (
        "HeartbeatInterval is a standard OCPP key (every charger has it): it cannot be "
        "deleted; change its value instead." in response.content.decode()
    )
    renamed = {**data, f"configuration-{rows['HeartbeatInterval']}-key": "HeartbeatIntervall"}
    response = admin_client_logged_in.post(url, renamed)
    assert response.status_code == 200
    assert (
        "HeartbeatInterval is a standard OCPP key (every charger has it): it cannot be "
        "renamed; change its value instead." in response.content.decode()
    )
    assert charger.configuration.filter(key="HeartbeatInterval").exists()
    assert not charger.configuration.filter(key="HeartbeatIntervall").exists()

    custom = {**data, f"configuration-{rows['VendorKey']}-DELETE": "on"}
    assert admin_client_logged_in.post(url, custom).status_code == 302
    assert not charger.configuration.filter(key="VendorKey").exists()


def test_the_configuration_key_admin_keeps_the_standard_keys(admin_client_logged_in):
    charger = make_charger("KEY-2", evses=1)
    standard = charger.configuration.get(key="SupportedFeatureProfiles")
    custom = ConfigurationKey.objects.create(charger=charger, key="VendorKey", value="on")
    delete = reverse("admin:chargers_configurationkey_delete", args=[standard.pk])
    response = admin_client_logged_in.post(delete, {"post": "yes"}, follow=True)
    assert "SupportedFeatureProfiles is a standard OCPP key" in response.content.decode()

    change = reverse("admin:chargers_configurationkey_change", args=[standard.pk])
    data = form_values(admin_client_logged_in.get(change).content.decode())
    data["key"] = "Other"
    response = admin_client_logged_in.post(change, data)
    assert response.status_code == 200
    assert "SupportedFeatureProfiles is a standard OCPP key" in response.content.decode()

    changelist = reverse("admin:chargers_configurationkey_changelist")
    selected = {
        "action": "delete_selected",
        "_selected_action": [standard.pk, custom.pk],
        "post": "yes",
    }
    response = admin_client_logged_in.post(changelist, selected, follow=True)
    assert "SupportedFeatureProfiles is a standard OCPP key" in response.content.decode()
    assert set(charger.configuration.values_list("key", flat=True)) >= {
        "SupportedFeatureProfiles",
        "VendorKey",
    }
    selected["_selected_action"] = [custom.pk]
    assert admin_client_logged_in.post(changelist, selected).status_code == 302
    assert not charger.configuration.filter(key="VendorKey").exists()
    assert charger.configuration.filter(key="SupportedFeatureProfiles").exists()


def test_the_add_form_takes_a_standard_key_given_in_the_configuration_inline(
    admin_client_logged_in,
):
    # The defaults are created with the charger row, after the inline was checked: a
    # standard key given here was a second row for the key (HTTP 500, IntegrityError).
    # The value given wins over the default, as in the API's `configuration`.
    location = make_location()
    data = add_form(admin_client_logged_in)
    data.update(
        {
            "charge_point_id": "CFG-1",
            "location": str(location.pk),
            "configuration-TOTAL_FORMS": "2",
            "configuration-0-key": "MeterValueSampleInterval",
            "configuration-0-value": "5",
            "configuration-1-key": "VendorKey",
            "configuration-1-value": "on",
        }
    )
    response = admin_client_logged_in.post(ADD, data)
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    charger = Charger.objects.get(charge_point_id="CFG-1")
    assert charger.configuration.filter(key="MeterValueSampleInterval").count() == 1
    assert charger.configuration.get(key="MeterValueSampleInterval").value == "5"
    assert charger.configuration.get(key="VendorKey").value == "on"
    assert charger.configuration.filter(key="HeartbeatInterval").exists()  # the other defaults


def test_a_charger_in_a_session_is_deleted_only_from_a_page_that_said_what_is_lost(
    admin_client_logged_in,
):
    """The charger's outbox goes with its row: a StopTransaction it could not send at once
    would never be sent. A delete confirmed without being told (the session began after the
    page was shown) is refused and shown the page again; the page that says it deletes."""
    charger = make_charger("BUSY-3", evses=2)
    make_open_transaction(charger, connector_id=1, transaction_id=14)
    lost = (
        "BUSY-3 has transaction 14 in progress: deleted now, its StopTransaction may never be sent"
    )
    url = reverse("admin:chargers_charger_delete", args=[charger.pk])
    response = admin_client_logged_in.post(url, {"post": "yes"}, follow=True)
    assert lost in response.content.decode()
    assert Charger.objects.filter(pk=charger.pk).exists()

    page = admin_client_logged_in.get(url).content.decode()
    assert lost in page
    # QA: "it would never send the StopTransaction" read against the paragraph below it,
    # which says that a charger online sends it as it stops.
    assert "would never" not in page
    confirmed = form_values(page)
    assert confirmed["force"] == "yes"
    assert admin_client_logged_in.post(url, confirmed).status_code == 302
    assert not Charger.objects.filter(pk=charger.pk).exists()


def test_the_delete_action_deletes_a_charger_in_a_session_only_from_a_page_that_said_so(
    admin_client_logged_in,
):
    charger = make_charger("BUSY-4", evses=1)
    make_open_transaction(charger, connector_id=1, transaction_id=15)
    lost = (
        "BUSY-4 has transaction 15 in progress: deleted now, its StopTransaction may never be sent"
    )
    changelist = reverse("admin:chargers_charger_changelist")
    selected = {"action": "delete_selected", "_selected_action": [charger.pk], "post": "yes"}
    response = admin_client_logged_in.post(changelist, selected, follow=True)
    assert lost in response.content.decode()
    assert Charger.objects.filter(pk=charger.pk).exists()

    asked = {"action": "delete_selected", "_selected_action": [charger.pk]}
    page = admin_client_logged_in.post(changelist, asked).content.decode()
    assert lost in page
    confirmed = form_values(page)
    assert confirmed["force"] == "yes"
    assert admin_client_logged_in.post(changelist, confirmed).status_code == 302
    assert not Charger.objects.filter(pk=charger.pk).exists()


def test_a_charger_with_nothing_to_lose_is_deleted_as_before(admin_client_logged_in):
    charger = make_charger("IDLE-1", evses=1)
    url = reverse("admin:chargers_charger_delete", args=[charger.pk])
    page = admin_client_logged_in.get(url).content.decode()
    assert "may never be sent" not in page and 'name="force"' not in page
    assert admin_client_logged_in.post(url, {"post": "yes"}).status_code == 302
    assert not Charger.objects.exists()


def test_a_rename_into_another_shard_mid_session_asks_to_be_ticked(
    admin_client_logged_in, settings
):
    """With several workers, a new id of another shard moves the charger to that shard's
    worker: refused while a session is in progress (the API's 409), unless ticked."""
    settings.CHARGESIM_SHARDS = 2
    charger = make_charger("BUSY-5", evses=1)
    make_open_transaction(charger, connector_id=1, transaction_id=16)
    moved = next(
        f"MOVED-{n}" for n in range(100) if shard_of(f"MOVED-{n}", 2) != shard_of("BUSY-5", 2)
    )
    url, data = change_page(admin_client_logged_in, charger)
    assert "move_anyway" not in data  # offered (unticked)...
    assert 'name="move_anyway"' in admin_client_logged_in.get(url).content.decode()
    data["charge_point_id"] = moved
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 200  # the form again, with the error
    page = response.content.decode()
    assert f"BUSY-5 has transaction 16 in progress: renamed to {moved}, it moves" in page
    assert "tick &#x27;Rename even so&#x27;" in page
    assert Charger.objects.get(pk=charger.pk).charge_point_id == "BUSY-5"
    data["move_anyway"] = "on"
    assert admin_client_logged_in.post(url, data).status_code == 302
    assert Charger.objects.get(pk=charger.pk).charge_point_id == moved


def test_one_worker_offers_no_rename_box(admin_client_logged_in, settings):
    settings.CHARGESIM_SHARDS = 1
    charger = make_charger("BUSY-6", evses=1)
    make_open_transaction(charger, connector_id=1, transaction_id=17)
    url, data = change_page(admin_client_logged_in, charger)
    assert 'name="move_anyway"' not in admin_client_logged_in.get(url).content.decode()
    data["charge_point_id"] = "BUSY-7"
    assert admin_client_logged_in.post(url, data).status_code == 302


# -- a form opened before the running charger changed a value --------------------------------


def config_rows(data: dict[str, str]) -> dict[str, int]:
    return {
        data[f"configuration-{n}-key"]: n for n in range(int(data["configuration-TOTAL_FORMS"]))
    }


def csms_changes(charger: Charger) -> None:
    """What the engine's checkpoint writes after a CSMS's ChangeConfiguration (a key, and
    SecurityProfile with the AuthorizationKey it needs), an UpdateFirmware and a session."""
    ConfigurationKey.objects.write_values({(charger.pk, "MeterValueSampleInterval"): "45"})
    Charger.objects.set_key_column(charger.pk, "AuthorizationKey", "ab" * 16)
    Charger.objects.set_key_column(charger.pk, "SecurityProfile", "1")
    Charger.objects.set_firmware_versions({charger.pk: "2.0.0"})
    Evse.objects.filter(charger=charger).update(register_wh=1234, status="Charging")


def test_a_stale_form_does_not_undo_what_the_csms_changed_since(admin_client_logged_in):
    """QA F2: the form posted every key as it showed it, and Django counts a row changed
    when it differs from the database at POST: MeterValueSampleInterval went back to 60."""
    charger = make_charger("STALE-1", evses=1)
    url, data = change_page(admin_client_logged_in, charger)
    assert data[f"configuration-{config_rows(data)['MeterValueSampleInterval']}-value"] == "60"
    csms_changes(charger)

    data["network_latency_ms"] = "25"  # the one edit on the page
    response = admin_client_logged_in.post(url, data, follow=True)
    assert response.redirect_chain, response.context["errors"]
    charger.refresh_from_db()
    assert charger.network_latency_ms == 25
    assert charger.configuration.get(key="MeterValueSampleInterval").value == "45"
    assert (charger.security_profile, charger.authorization_key) == (1, "ab" * 16)
    assert charger.firmware_version == "2.0.0"
    evse = charger.evses.get()
    assert (evse.register_wh, evse.status) == (1234, "Charging")
    assert "changed from" not in response.content.decode()


def test_an_edit_of_a_value_the_csms_changed_since_wins_and_says_so(admin_client_logged_in):
    charger = make_charger("STALE-2", evses=1)
    url, data = change_page(admin_client_logged_in, charger)
    csms_changes(charger)

    data[f"configuration-{config_rows(data)['MeterValueSampleInterval']}-value"] = "30"
    data["firmware_version"] = "3.0.0"
    response = admin_client_logged_in.post(url, data, follow=True)
    assert response.redirect_chain, response.context["errors"]
    charger.refresh_from_db()
    assert charger.configuration.get(key="MeterValueSampleInterval").value == "30"
    assert charger.firmware_version == "3.0.0"
    said = [str(m) for m in response.context["messages"]]
    assert (
        "MeterValueSampleInterval: changed from 60 to 45 after this page was loaded (by the "
        "charger's CSMS, or another edit); your 30 replaced it." in said
    )
    assert any(m.startswith("Firmware version: changed from 1.0.0 to 2.0.0") for m in said)
    assert not any("Security profile" in m for m in said)  # left alone: the CSMS's stays
    assert charger.security_profile == 1


def test_the_configuration_key_admin_keeps_what_the_csms_changed_since(admin_client_logged_in):
    charger = make_charger("STALE-3", evses=1)
    row = charger.configuration.get(key="MeterValueSampleInterval")
    url = reverse("admin:chargers_configurationkey_change", args=[row.pk])
    data = form_values(admin_client_logged_in.get(url).content.decode())
    csms_changes(charger)
    assert admin_client_logged_in.post(url, data).status_code == 302  # saved as shown
    row.refresh_from_db()
    assert row.value == "45"


# -- custom keys differing only in case (CiString50) -----------------------------------------

TWIN = "'vendorx' differs from the key VendorX this charger has only in case"


def with_new_row(data: dict[str, str], key: str, value: str = "1") -> dict[str, str]:
    n = int(data["configuration-TOTAL_FORMS"])
    return {
        **data,
        "configuration-TOTAL_FORMS": str(n + 1),
        f"configuration-{n}-key": key,
        f"configuration-{n}-value": value,
    }


def test_the_configuration_inline_refuses_a_key_differing_from_another_only_in_case(
    admin_client_logged_in,
):
    """A CSMS names VendorX and vendorx the same way and reaches one: the second was stored
    all the same, never to be read or changed."""
    charger = make_charger("TWIN-1", evses=1)
    ConfigurationKey.objects.create(charger=charger, key="VendorX", value="on")
    url, data = change_page(admin_client_logged_in, charger)
    response = admin_client_logged_in.post(url, with_new_row(data, "vendorx"))
    assert response.status_code == 200
    assert TWIN in html.unescape(response.content.decode())
    # Two new rows, neither stored yet; and a stored key renamed into a twin.
    twins = with_new_row(with_new_row(data, "VendorY"), "VENDORY")
    response = admin_client_logged_in.post(url, twins)
    assert response.status_code == 200
    assert "'VENDORY' differs from the key VendorY this charger has only in case" in (
        html.unescape(response.content.decode())
    )
    renamed = with_new_row(data, "Other")
    renamed[f"configuration-{config_rows(data)['VendorX']}-key"] = "OTHER"
    response = admin_client_logged_in.post(url, renamed)
    assert response.status_code == 200
    assert "differs from the key Other this charger has only in case" in (
        html.unescape(response.content.decode())
    )
    assert sorted(charger.configuration.filter(key__istartswith="v").values_list("key")) == [
        ("VendorX",)
    ]
    assert not charger.configuration.filter(key__iexact="other").exists()
    # A key of another spelling altogether is a key like any other.
    assert admin_client_logged_in.post(url, with_new_row(data, "VendorX2")).status_code == 302


def test_the_add_form_refuses_two_keys_differing_only_in_case(admin_client_logged_in):
    location = make_location()
    data = add_form(admin_client_logged_in)
    data.update({"charge_point_id": "TWIN-2", "location": str(location.pk)})
    data = with_new_row(with_new_row(data, "VendorX"), "vendorx")
    response = admin_client_logged_in.post(ADD, data)
    assert response.status_code == 200
    assert TWIN in html.unescape(response.content.decode())
    assert not Charger.objects.filter(charge_point_id="TWIN-2").exists()


def test_the_configuration_key_admin_refuses_a_key_differing_from_another_only_in_case(
    admin_client_logged_in,
):
    charger = make_charger("TWIN-3", evses=1)
    ConfigurationKey.objects.create(charger=charger, key="VendorX", value="on")
    other = ConfigurationKey.objects.create(charger=charger, key="Other", value="on")
    change = reverse("admin:chargers_configurationkey_change", args=[other.pk])
    data = form_values(admin_client_logged_in.get(change).content.decode())
    response = admin_client_logged_in.post(change, {**data, "key": "vendorx"})
    assert response.status_code == 200
    assert TWIN in html.unescape(response.content.decode())
    assert charger.configuration.get(pk=other.pk).key == "Other"


def test_an_older_pair_differing_only_in_case_stays_editable(admin_client_logged_in):
    """Stored before the check: changing a value is not adding a key, and the page saves."""
    charger = make_charger("TWIN-4", evses=1)
    ConfigurationKey.objects.create(charger=charger, key="VendorX", value="on")
    ConfigurationKey.objects.create(charger=charger, key="vendorx", value="on")
    url, data = change_page(admin_client_logged_in, charger)
    data[f"configuration-{config_rows(data)['vendorx']}-value"] = "off"
    assert admin_client_logged_in.post(url, data).status_code == 302
    assert charger.configuration.get(key="vendorx").value == "off"


def test_the_configuration_key_admin_adds_a_key_to_the_charger_chosen(admin_client_logged_in):
    """Its add page had no charger field: saving it was an IntegrityError (a 500)."""
    charger = make_charger("KEY-ADD", evses=1)
    add = reverse("admin:chargers_configurationkey_add")
    page = admin_client_logged_in.get(add)
    assert page.status_code == 200
    data = form_values(page.content.decode())
    assert "charger" in data
    chosen = {**data, "charger": str(charger.pk), "key": "VendorMode", "value": "eco"}
    response = admin_client_logged_in.post(add, chosen)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert charger.configuration.get(key="VendorMode").value == "eco"
    # Without a charger: the form says so, no 500.
    response = admin_client_logged_in.post(add, {**data, "charger": "", "key": "VendorTwo"})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    # A key is the charger's for good: its change page shows the charger, not a choice.
    row = charger.configuration.get(key="VendorMode")
    change = admin_client_logged_in.get(
        reverse("admin:chargers_configurationkey_change", args=[row.pk])
    )
    assert "charger" not in form_values(change.content.decode())
    assert "KEY-ADD" in change.content.decode()


@pytest.mark.parametrize("stored", [False, True])
def test_a_key_given_twice_in_the_configuration_inline_is_named(admin_client_logged_in, stored):
    """Two rows of one key (both new, or a new one beside the stored one) got Django's
    "Please correct the duplicate data for key, which must be unique.", not which key."""
    charger = make_charger("DUP-1", evses=1)
    if stored:
        ConfigurationKey.objects.create(charger=charger, key="VendorKey", value="on")
    url, data = change_page(admin_client_logged_in, charger)
    n = int(data["configuration-TOTAL_FORMS"])
    new_rows = 1 if stored else 2
    for row in range(n, n + new_rows):
        data[f"configuration-{row}-key"] = "VendorKey"
        data[f"configuration-{row}-value"] = f"v{row}"
    data["configuration-TOTAL_FORMS"] = str(n + new_rows)
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert "Please correct the duplicate" not in page
    assert "The key VendorKey is on 2 rows: a charger has each key once, so keep one." in page
    assert page.count("This key is on another row too.") == 1  # beside the repeat
    assert charger.configuration.filter(key="VendorKey").count() == (1 if stored else 0)


# -- charge point ids that differ only in letter case ----------------------------------------


def id_errors(response) -> list[str]:
    assert response.status_code == 200  # the form again, with its errors
    return list(response.context["adminform"].form.errors.get("charge_point_id", []))


def test_the_add_form_refuses_an_id_differing_from_another_only_in_case_naming_it(
    admin_client_logged_in,
):
    """A CSMS that matches ids regardless of case would take the two for one charger."""
    make_charger("CP-001", evses=1)
    data = add_form(admin_client_logged_in)
    data.update(charge_point_id="cp-001", location=str(Location.objects.get().pk))
    (error,) = id_errors(admin_client_logged_in.post(ADD, data))
    assert error.startswith("Charger CP-001 exists, whose id differs from cp-001 only in letter")
    assert list(Charger.objects.values_list("charge_point_id", flat=True)) == ["CP-001"]


def test_a_rename_onto_another_chargers_id_in_other_case_is_refused(admin_client_logged_in):
    make_charger("CP-001", evses=1)
    other = make_charger("CP-002", evses=1)
    url, data = change_page(admin_client_logged_in, other)
    data["charge_point_id"] = "Cp-001"
    (error,) = id_errors(admin_client_logged_in.post(url, data))
    assert "Charger CP-001 exists" in error
    assert Charger.objects.get(pk=other.pk).charge_point_id == "CP-002"


def test_a_charger_may_change_the_case_of_its_own_id(admin_client_logged_in):
    charger = make_charger("CP-001", evses=1)
    url, data = change_page(admin_client_logged_in, charger)
    data["charge_point_id"] = "cp-001"
    assert admin_client_logged_in.post(url, data).status_code == 302
    assert Charger.objects.get(pk=charger.pk).charge_point_id == "cp-001"
