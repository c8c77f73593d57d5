"""Deleting many chargers from the admin: the confirmation lists a few and counts them all."""

import re

import pytest
from django.contrib import admin
from django.contrib.admin.utils import get_deleted_objects
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chargers.models import Charger, ConfigurationKey, Evse
from fleet_io import admin_deletes
from locations.models import Location
from tests.cast import make_charger, make_location

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:chargers_charger_changelist")


def select_all(model_pks):
    """The changelist's "select all N" then Delete, not yet confirmed."""
    return {
        "action": "delete_selected",
        "select_across": "1",
        "index": "0",
        "_selected_action": model_pks[:1],
    }


def listed_chargers(page: str) -> set[str]:
    return set(re.findall(r'href="/admin/chargers/charger/(\d+)/change/"', page))


def test_a_large_selection_lists_a_few_chargers_and_counts_all_it_deletes(
    admin_client_logged_in, monkeypatch
):
    monkeypatch.setattr(admin_deletes, "SHOWN", 3)
    chargers = [make_charger(f"MANY-{n}", evses=2) for n in range(8)]
    pks = [c.pk for c in chargers]
    expected = get_deleted_objects(Charger.objects.all(), _superuser_request(), admin.site)[1]

    page = admin_client_logged_in.post(CHANGELIST, select_all(pks)).content.decode()

    # Old code: a link for every charger, each with every row of its own nested under it.
    assert len(listed_chargers(page)) == 3
    assert "… and 5 more chargers, counted above" in page
    # The summary is the whole selection's, as Django's own (full) listing counts it.
    assert expected["chargers"] == 8 and expected["EVSEs"] == 16
    for name, count in expected.items():
        assert f"{name[0].upper()}{name[1:]}: {count}</li>" in page, name
    # Confirmed, as the page's form posts it: every selected id and `post`.
    assert 'name="post" value="yes"' in page
    confirmed = {"action": "delete_selected", "_selected_action": pks, "post": "yes"}
    assert admin_client_logged_in.post(CHANGELIST, confirmed).status_code == 302
    assert not Charger.objects.exists() and not Evse.objects.exists()


def test_the_confirmation_of_thousands_of_chargers_is_carried_out(admin_client_logged_in):
    """The confirmation page posts a field per selected charger: past Django's 1,000 the
    "Yes, I'm sure" of 3,000 imported chargers answered "Bad Request (400)" (too many
    fields) and deleted nothing. Posted as the page's form has it, every hidden field."""
    depot = make_location("Depot")
    Charger.objects.bulk_create(
        Charger(charge_point_id=f"HUGE-{n:04}", location=depot, csms_url="ws://127.0.0.1:9/x")
        for n in range(1_500)
    )
    pks = list(Charger.objects.values_list("pk", flat=True))
    page = admin_client_logged_in.post(CHANGELIST, select_all(pks)).content.decode()
    form = page[page.index('<form method="post">') :]
    form = form[: form.index("</form>")]
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
    assert len([name for name, _ in fields if name == "_selected_action"]) == 1_500
    confirmed: dict[str, list[str]] = {}
    for name, value in fields:
        confirmed.setdefault(name, []).append(value)
    response = admin_client_logged_in.post(CHANGELIST, confirmed)
    assert response.status_code == 302, response.content[:300]
    assert not Charger.objects.exists()


def test_a_selection_of_a_few_is_listed_in_full_as_before(admin_client_logged_in, monkeypatch):
    monkeypatch.setattr(admin_deletes, "SHOWN", 3)
    pks = [make_charger(f"FEW-{n}").pk for n in range(3)]
    page = admin_client_logged_in.post(CHANGELIST, select_all(pks)).content.decode()
    assert listed_chargers(page) == {str(pk) for pk in pks}
    assert "more chargers" not in page


def _superuser_request():
    request = RequestFactory().get("/")
    request.user = get_user_model().objects.get(is_superuser=True)
    return request


def test_deleting_every_evse_is_refused_in_the_same_queries_however_many(
    admin_client_logged_in,
):
    """Select all EVSEs, Delete: refused (a charger keeps one), after two reads per EVSE
    (some 20,000 queries for 10,000 EVSEs)."""
    changelist = reverse("admin:chargers_evse_changelist")

    def refused_in_queries() -> int:
        pks = list(Evse.objects.values_list("pk", flat=True))
        asked = {"action": "delete_selected", "select_across": "1", "index": "0"}
        with CaptureQueriesContext(connection) as queries:
            page = admin_client_logged_in.post(
                changelist, {**asked, "_selected_action": pks[:1]}, follow=True
            )
        assert "a charger keeps at least one" in page.content.decode()
        assert Evse.objects.count() == len(pks)
        return len(queries)

    for n in range(3):
        make_charger(f"EV-{n}", evses=1)
    few = refused_in_queries()
    for n in range(3, 12):
        make_charger(f"EV-{n}", evses=2)
    assert refused_in_queries() == few


def test_a_location_many_chargers_stand_at_lists_a_few_of_them_and_counts_the_rest(
    admin_client_logged_in, monkeypatch
):
    """Its delete page listed every charger that protects it: 10,000 links at 10,000."""
    monkeypatch.setattr(admin_deletes, "SHOWN", 3)
    site = make_location("Busy Site")
    for n in range(8):
        make_charger(f"AT-{n}", location=site)
    page = admin_client_logged_in.get(
        reverse("admin:locations_location_delete", args=[site.pk])
    ).content.decode()
    assert "would require deleting the following protected related objects" in page
    assert len(re.findall(r"<li>Charger: AT-\d+</li>", page)) == 3
    assert "… and 5 more" in page
    # Still refused, as before: a charger stands there.
    admin_client_logged_in.post(
        reverse("admin:locations_location_delete", args=[site.pk]), {"post": "yes"}
    )
    assert Location.objects.filter(pk=site.pk).exists()


def test_a_charger_with_many_rows_is_named_and_its_rows_counted_on_its_delete_page(
    admin_client_logged_in, monkeypatch
):
    monkeypatch.setattr(admin_deletes, "LISTED", 20)
    charger = make_charger("ROWS-1", evses=2)
    ConfigurationKey.objects.bulk_create(
        [ConfigurationKey(charger=charger, key=f"Vendor{n}", value="1") for n in range(30)]
    )
    delete = reverse("admin:chargers_charger_delete", args=[charger.pk])
    page = admin_client_logged_in.get(delete).content.decode()
    # Old code: a line (and a link) for each of its 30 keys.
    assert "Vendor7" not in page
    assert "<li>Charger: ROWS-1</li>" in page
    keys = ConfigurationKey.objects.filter(charger=charger).count()  # its defaults and 30
    assert f"OCPP configuration keys: {keys}</li>" in page
    assert "EVSEs: 2</li>" in page
    assert admin_client_logged_in.post(delete, {"post": "yes"}).status_code == 302
    assert not Charger.objects.filter(pk=charger.pk).exists()
    assert not ConfigurationKey.objects.filter(charger_id=charger.pk).exists()


def test_a_small_delete_page_is_django_s_own_listing(admin_client_logged_in):
    charger = make_charger("SMALL-1", evses=2)
    page = admin_client_logged_in.get(
        reverse("admin:chargers_charger_delete", args=[charger.pk])
    ).content.decode()
    assert f'href="/admin/chargers/charger/{charger.pk}/change/"' in page
    assert "/admin/chargers/evse/" in page  # each EVSE listed, with its link


def test_a_plugged_vehicle_is_named_on_the_delete_page(admin_client_logged_in):
    """The delete page of a charger with a car plugged in listed "Plugged vehicle: vehicle
    on EVSE 25", the row's internal key: neither the car nor its connector."""
    from chargers.models import PluggedVehicle

    charger = make_charger("CAR-1", evses=1)
    evse = charger.evses.get()
    spec = {"name": "Hyundai Ioniq 5 (77.4 kWh)", "capacity_kwh": 77.4}
    PluggedVehicle.objects.create(evse=evse, record={"spec": spec, "soc": 17.3})
    page = admin_client_logged_in.get(
        reverse("admin:chargers_charger_delete", args=[charger.pk])
    ).content.decode()
    assert "Plugged vehicle: Hyundai Ioniq 5 (77.4 kWh) plugged in at 17 %" in page
    assert f"vehicle on EVSE {evse.pk}" not in page
