"""A charger deleted while its worker writes one of its rows is deleted, on PostgreSQL too.

PostgreSQL checks Django's foreign keys at COMMIT (DEFERRABLE INITIALLY DEFERRED). A
delete collects the charger's rows, deletes them, then deletes the charger: an outbox row
the worker's checkpoint committed in between was not collected, and the delete's COMMIT
failed its foreign-key check (the admin showed a 500, the API a 409 "send it again"). The
race is real here and made to happen every time: a second connection commits the row,
as the worker's checkpoint does, at the moment the delete has deleted the charger's EVSE
(after its outbox rows, before its own row)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import pytest
from django.db import connection, connections
from django.db.models.signals import post_delete
from django.test import Client
from django.urls import reverse

from chargers.models import Charger, Evse, OutboxMessage, PluggedVehicle
from chargers.resources import ChargerResource
from fleet_io.file_formats import read_dataset
from scenarios.models import delete_chargers
from tests.admin_forms import form_values
from tests.api_client import TokenClient, user_with_token
from tests.cast import make_charger

pytestmark = pytest.mark.django_db(transaction=True)

BOOT_REPORT = {"type": "StartupOfTheFirmware", "timestamp": "2026-12-01T10:00:00Z"}


@pytest.fixture(autouse=True)
def postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL only: its foreign keys are checked at COMMIT; SQLite lets one writer "
            "at a time (set DATABASE_URL to a PostgreSQL server to run it)"
        )


@contextlib.contextmanager
def worker_writes_during_the_delete(
    charger: Charger, row: tuple[str, str] = ("SecurityEventNotification", "")
) -> Iterator[list[int]]:
    """While `charger` is being deleted, once: the worker commits a new outbox row of it,
    `row` (action, local transaction id; by default a boot's SecurityEventNotification, no
    transaction message: nothing the delete must refuse for). Yields the pks of the EVSEs
    deleted, one per attempt of the delete."""
    deleted: list[int] = []
    errors: list[BaseException] = []

    def commit_a_row() -> None:
        try:
            OutboxMessage.objects.add([(charger.pk, 1, row[0], BOOT_REPORT, row[1])])
        except BaseException as exc:  # the test reports it
            errors.append(exc)
        finally:
            connections.close_all()

    def on_evse_deleted(sender: type[Evse], instance: Evse, **kwargs: object) -> None:
        if instance.charger_id != charger.pk:
            return
        deleted.append(instance.pk)
        if len(deleted) == 1:
            # Its own connection, committed before the delete goes on: the worker's.
            worker = threading.Thread(target=commit_a_row)
            worker.start()
            worker.join(10)
            assert not worker.is_alive(), "the worker's insert waited on the delete"

    post_delete.connect(on_evse_deleted, sender=Evse, weak=False)
    try:
        yield deleted
    finally:
        post_delete.disconnect(on_evse_deleted, sender=Evse)
    assert errors == []  # the worker's row was committed (and then went with the charger)


def delete_in_the_admin_page(charger: Charger, client: TokenClient, admin: Client) -> None:
    url = reverse("admin:chargers_charger_delete", args=[charger.pk])
    assert admin.post(url, {"post": "yes"}).status_code == 302


def delete_with_the_admin_action(charger: Charger, client: TokenClient, admin: Client) -> None:
    changelist = reverse("admin:chargers_charger_changelist")
    selected = {"action": "delete_selected", "_selected_action": [charger.pk], "post": "yes"}
    assert admin.post(changelist, selected).status_code == 302


def delete_through_the_api(charger: Charger, client: TokenClient, admin: Client) -> None:
    response = client.delete(f"/api/v1/chargers/{charger.charge_point_id}?wait=false")
    assert response.status_code == 200, response.content
    assert response.json()["forced"] == []


def delete_as_a_scenario_run(charger: Charger, client: TokenClient, admin: Client) -> None:
    delete_chargers([(charger.pk, charger.charge_point_id)])


@pytest.mark.parametrize(
    "delete",
    [
        delete_in_the_admin_page,
        delete_with_the_admin_action,
        delete_through_the_api,
        delete_as_a_scenario_run,
    ],
    ids=["admin-page", "admin-action", "api", "scenario"],
)
def test_a_charger_is_deleted_while_its_worker_writes_an_outbox_row(
    delete: Callable[[Charger, TokenClient, Client], None], admin_client_logged_in
):
    _, token = user_with_token(
        "deleter", "view_charger", "delete_charger", "delete_evse", "delete_configurationkey"
    )
    charger = make_charger("RACE-1", evses=1)
    with worker_writes_during_the_delete(charger) as deleted:
        delete(charger, TokenClient(token), admin_client_logged_in)
    assert not Charger.objects.filter(pk=charger.pk).exists()
    # The worker's row went with it (the charger's messages go with it, as documented)...
    assert not OutboxMessage.objects.filter(charger_id=charger.pk).exists()
    # ... collected by a second attempt, the first having lost the race.
    assert len(deleted) == 2


def refused_in_the_admin_page(charger: Charger, client: TokenClient, admin: Client) -> str:
    url = reverse("admin:chargers_charger_delete", args=[charger.pk])
    return admin.post(url, {"post": "yes"}, follow=True).content.decode()


def refused_by_the_admin_action(charger: Charger, client: TokenClient, admin: Client) -> str:
    changelist = reverse("admin:chargers_charger_changelist")
    selected = {"action": "delete_selected", "_selected_action": [charger.pk], "post": "yes"}
    return admin.post(changelist, selected, follow=True).content.decode()


def refused_by_the_api(charger: Charger, client: TokenClient, admin: Client) -> str:
    response = client.delete(f"/api/v1/chargers/{charger.charge_point_id}?wait=false")
    assert response.status_code == 409, response.content
    return str(response.json()["detail"])


@pytest.mark.parametrize(
    "delete",
    [refused_in_the_admin_page, refused_by_the_admin_action, refused_by_the_api],
    ids=["admin-page", "admin-action", "api"],
)
def test_a_transaction_message_written_during_the_delete_refuses_it_unless_forced(
    delete: Callable[[Charger, TokenClient, Client], str], admin_client_logged_in
):
    """The row the worker wrote meanwhile is a transaction message (the session's
    StopTransaction, say): the second attempt, which would delete it, finds it and refuses
    as the page or the API would have had it been there before; nothing is deleted."""
    _, token = user_with_token(
        "deleter", "view_charger", "delete_charger", "delete_evse", "delete_configurationkey"
    )
    charger = make_charger("RACE-3", evses=1)
    with worker_writes_during_the_delete(charger, ("StopTransaction", "L-1")) as deleted:
        said = delete(charger, TokenClient(token), admin_client_logged_in)
    assert "RACE-3 has 1 transaction message its CSMS has not confirmed yet" in said
    assert Charger.objects.filter(pk=charger.pk).exists()
    assert OutboxMessage.objects.filter(charger_id=charger.pk, local_tx_id="L-1").exists()
    assert len(deleted) == 1  # the first attempt lost the race, the second refused


# -- an EVSE: the worker stores the car plugged into it (`PluggedVehicle`) ---------------


@contextlib.contextmanager
def worker_plugs_in_during_the_delete(evse: Evse) -> Iterator[list[str]]:
    """Once, just before the delete deletes `evse`'s row (after the rows that reference it,
    Django deletes those first), the worker commits the record of a car plugged into it.
    Yields the EVSE deletes made, one per attempt."""
    deletes: list[str] = []
    errors: list[BaseException] = []

    def commit_a_row() -> None:
        try:
            PluggedVehicle.objects.store({evse.charger_id: {evse.pk: {"soc": 20.0}}})
        except BaseException as exc:  # the test reports it
            errors.append(exc)
        finally:
            connections.close_all()

    def wrapper(execute, sql, params, many, context):
        if sql.startswith(f'DELETE FROM "{Evse._meta.db_table}"'):
            deletes.append(sql)
            if len(deletes) == 1:
                worker = threading.Thread(target=commit_a_row)
                worker.start()
                worker.join(10)
                assert not worker.is_alive(), "the worker's insert waited on the delete"
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield deletes
    assert errors == []


def delete_evse_in_the_admin_page(evse: Evse, client: TokenClient, admin: Client) -> None:
    url = reverse("admin:chargers_evse_delete", args=[evse.pk])
    assert admin.post(url, {"post": "yes"}).status_code == 302


def delete_evse_with_the_admin_action(evse: Evse, client: TokenClient, admin: Client) -> None:
    changelist = reverse("admin:chargers_evse_changelist")
    selected = {"action": "delete_selected", "_selected_action": [evse.pk], "post": "yes"}
    assert admin.post(changelist, selected).status_code == 302


def delete_evse_through_the_api(evse: Evse, client: TokenClient, admin: Client) -> None:
    cp_id = evse.charger.charge_point_id
    response = client.delete(f"/api/v1/chargers/{cp_id}/evses/{evse.connector_id}")
    assert response.status_code == 204, response.content


@pytest.mark.parametrize(
    "delete",
    [delete_evse_in_the_admin_page, delete_evse_with_the_admin_action, delete_evse_through_the_api],
    ids=["admin-page", "admin-action", "api"],
)
def test_an_evse_is_deleted_while_its_worker_stores_the_car_plugged_into_it(
    delete: Callable[[Evse, TokenClient, Client], None], admin_client_logged_in
):
    _, token = user_with_token("deleter", "view_charger", "view_evse", "delete_evse")
    charger = make_charger("RACE-2", evses=2)
    evse = charger.evses.get(connector_id=2)
    with worker_plugs_in_during_the_delete(evse) as deletes:
        delete(evse, TokenClient(token), admin_client_logged_in)
    assert list(charger.evses.values_list("connector_id", flat=True)) == [1]
    assert not PluggedVehicle.objects.filter(evse_id=evse.pk).exists()
    assert len(deletes) == 2  # the first attempt lost the race; the second collected the row


# -- a reshape: a charger given fewer EVSEs deletes the others (`update_chargers`) -------


def reshape_through_the_api_patch(evse: Evse, client: TokenClient, admin: Client) -> None:
    kept = {"connector_type": evse.connector_type, "max_power_kw": evse.max_power_kw}
    cp_id = evse.charger.charge_point_id
    response = client.patch(f"/api/v1/chargers/{cp_id}?wait=false", {"evses": [kept]})
    assert response.status_code == 200, response.content
    assert [e["connector_id"] for e in response.json()["charger"]["evses"]] == [1]


def reshape_through_the_api_put(evse: Evse, client: TokenClient, admin: Client) -> None:
    charger = evse.charger
    kept = {"connector_type": evse.connector_type, "max_power_kw": evse.max_power_kw}
    body = {
        "charge_point_id": charger.charge_point_id,
        "location": charger.location_id,
        "evses": [kept],
    }
    response = client.put(f"/api/v1/chargers/{charger.charge_point_id}?wait=false", body)
    assert response.status_code == 200, response.content


def reshape_by_an_import(evse: Evse, client: TokenClient, admin: Client) -> None:
    """An import row giving the charger one EVSE: the import's outer transaction holds
    the reshape's."""
    charger = evse.charger
    rows = (
        "charge_point_id,location,power_type,max_power_kw,evses\n"
        f"{charger.charge_point_id},{charger.location.name},{charger.power_type},"
        f"{charger.max_power_kw},{evse.connector_type}:{evse.max_power_kw:g}\n"
    )
    result = ChargerResource().import_data(read_dataset(rows.encode(), "csv"))
    assert not result.has_errors(), result.problems()
    assert result.totals["update"] == 1


def reshape_in_the_charger_admin(evse: Evse, client: TokenClient, admin: Client) -> None:
    """The charger's change page, its other connectors ticked "Delete" in the inline."""
    url = reverse("admin:chargers_charger_change", args=[evse.charger_id])
    data = form_values(admin.get(url).content.decode())
    for n in range(int(data["evses-TOTAL_FORMS"])):
        if data[f"evses-{n}-id"] != str(evse.pk):
            data[f"evses-{n}-DELETE"] = "on"
    response = admin.post(url, data)
    assert response.status_code == 302, response.context and response.context["errors"]


@pytest.mark.parametrize(
    "reshape",
    [
        reshape_through_the_api_patch,
        reshape_through_the_api_put,
        reshape_by_an_import,
        reshape_in_the_charger_admin,
    ],
    ids=["api-patch", "api-put", "import", "charger-admin"],
)
def test_a_charger_loses_an_evse_while_its_worker_stores_the_car_plugged_into_it(
    reshape: Callable[[Evse, TokenClient, Client], None], admin_client_logged_in
):
    """The EVSE the reshape drops gets a car plugged in meanwhile: the reshape deletes the
    EVSE again, the car's record with it, instead of failing at COMMIT (the API's 409
    "send it again", an import's error row)."""
    _, token = user_with_token(
        "reshaper", "view_charger", "change_charger", "add_evse", "change_evse", "delete_evse"
    )
    charger = make_charger("RACE-4", evses=2)
    dropped = charger.evses.get(connector_id=2)
    with worker_plugs_in_during_the_delete(dropped) as deletes:
        reshape(charger.evses.get(connector_id=1), TokenClient(token), admin_client_logged_in)
    assert list(charger.evses.values_list("connector_id", flat=True)) == [1]
    assert charger.configuration.get(key="NumberOfConnectors").value == "1"
    assert not PluggedVehicle.objects.filter(evse_id=dropped.pk).exists()
    assert len(deletes) == 2  # the first attempt lost the race; the second collected the row
