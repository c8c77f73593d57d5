"""The CSMS of a charger created without one while `runsimulator --demo` runs the built-in
CSMS in this process: that CSMS, on whatever --csms-port it listens, unless the environment
names CHARGESIM_DEFAULT_CSMS_URL (new chargers went on pointing at port 9000)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.urls import reverse

from chargers.default_csms import choose_default_csms_url
from chargers.models import Charger
from simulator.contract import builtin_csms
from tests.admin_forms import form_values
from tests.api_client import TokenClient, user_with_token
from tests.cast import make_location, make_superuser
from tests.test_import_chargers import csv_bytes, run_import

SETTING = "ws://127.0.0.1:9000/ocpp"
MOVED = builtin_csms.BuiltinCsms("ws://127.0.0.1:9100/ocpp", "http://127.0.0.1:9101")


def test_the_built_in_csms_is_the_default_unless_the_environment_names_one():
    assert choose_default_csms_url(SETTING, given=False, builtin=None) == SETTING
    assert choose_default_csms_url(SETTING, given=False, builtin=MOVED) == MOVED.url
    named = "ws://csms.example/ocpp"
    assert choose_default_csms_url(named, given=True, builtin=MOVED) == named
    assert choose_default_csms_url("", given=True, builtin=MOVED) == ""  # "none", said so


@pytest.fixture
def moved_csms(settings) -> Iterator[builtin_csms.BuiltinCsms]:
    """The built-in CSMS announced as `--demo --csms-port 9100` does, the setting unnamed."""
    settings.CHARGESIM_DEFAULT_CSMS_URL = SETTING
    settings.CHARGESIM_DEFAULT_CSMS_URL_GIVEN = False
    assert builtin_csms.running() is None
    builtin_csms.announce(MOVED)
    try:
        yield MOVED
    finally:
        builtin_csms.announce(None)


@pytest.mark.django_db
@pytest.mark.parametrize("given", [False, True], ids=["unnamed", "named"])
def test_every_way_of_creating_a_charger_uses_it(moved_csms, settings, given, client):
    settings.CHARGESIM_DEFAULT_CSMS_URL_GIVEN = given
    expected = SETTING if given else moved_csms.url
    location = make_location("Depot")

    _, token = user_with_token("fleet", "add_charger", "view_charger")
    created = TokenClient(token).post(
        "/api/v1/chargers?wait=false", {"charge_point_id": "API-1", "location": location.pk}
    )
    assert created.status_code == 201, created.content
    assert created.json()["charger"]["csms_url"] == expected

    columns = "charge_point_id,location,power_type,max_power_kw,evses"
    result = run_import(csv_bytes("FILE-1,Depot,AC,22,1*Type2:22", header=columns))
    assert not result.has_errors(), result.problems()
    assert Charger.objects.get(charge_point_id="FILE-1").csms_url == expected

    client.force_login(make_superuser())
    page = client.get(reverse("admin:chargers_charger_add"))
    assert form_values(page.content.decode())["csms_url"] == expected


@pytest.mark.django_db
def test_the_admin_says_what_an_empty_csms_url_means(client):
    """QA: the admin's form offers a CSMS URL, and its help text did not say that emptying
    it leaves the charger off the network, as the README, the API and the import do."""
    client.force_login(make_superuser())
    page = client.get(reverse("admin:chargers_charger_add"))
    help_text = str(page.context["adminform"].form.fields["csms_url"].help_text)
    assert help_text.startswith("ws:// or wss:// endpoint")
    assert "Empty: none; the charger does not connect" in help_text
    assert help_text in page.content.decode()
