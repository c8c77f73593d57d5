"""Every web write of fleet data tells the owning worker once per shard, after commit; the
admin never posts engine-owned state back and says what the workers did with a change."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.urls import reverse

from chargers.models import Charger, ConfigurationKey, Evse, Transaction
from chargers.resources import ChargerResource
from fleet_io import fleet_changes
from fleet_io.file_formats import read_dataset
from simulator import contract
from tests.cast import make_charger, make_location, make_superuser, make_vehicle
from tests.test_admin_pages import change_form_data

SHARDS = 2


def cp_ids_in_shard(shard: int, count: int, prefix: str = "CP-") -> list[str]:
    found: list[str] = []
    n = 0
    while len(found) < count:
        n += 1
        if contract.shard_of(f"{prefix}{n:04d}", SHARDS) == shard:
            found.append(f"{prefix}{n:04d}")
    return found


class Inbox:
    """A channel in each shard's engine group: what the workers would receive."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channels = {}
        for shard in range(SHARDS):
            channel = async_to_sync(self.layer.new_channel)()
            async_to_sync(self.layer.group_add)(contract.engine_group(shard), channel)
            self.channels[shard] = channel

    def take(self) -> dict[int, list[dict[str, Any]]]:
        return {shard: async_to_sync(self._drain)(ch) for shard, ch in self.channels.items()}

    async def _drain(self, channel: str) -> list[dict[str, Any]]:
        messages = []
        while True:
            try:
                messages.append(await asyncio.wait_for(self.layer.receive(channel), 0.02))
            except TimeoutError:
                return messages


@pytest.fixture
def inbox(settings, django_capture_on_commit_callbacks) -> Iterator[Inbox]:
    settings.CHARGESIM_SHARDS = SHARDS
    box = Inbox()
    box.committed = django_capture_on_commit_callbacks  # type: ignore[attr-defined]
    yield box
    async_to_sync(box.layer.flush)()


@contextmanager
def setup(inbox: Inbox) -> Iterator[None]:
    """The test's own rows, "committed" and their messages dropped before the write."""
    with inbox.committed(execute=True):  # type: ignore[attr-defined]
        yield
    inbox.take()


def charger_pks(messages: dict[int, list[dict[str, Any]]]) -> dict[int, list[list[int]]]:
    return {shard: [m["chargers"] for m in found] for shard, found in messages.items()}


def open_session(charger: Charger) -> None:
    Transaction.objects.create(
        charger=charger,
        connector_id=1,
        local_id=f"t-{charger.pk}",
        id_tag="TAG",
        meter_start=0,
        started_at="2025-01-01T00:00:00Z",
    )


def admin_url(name: str, *args: Any) -> str:
    return reverse(f"admin:chargers_charger_{name}", args=args)


def evse_form_data(charger: Charger) -> dict[str, Any]:
    evses = list(charger.evses.all())
    data: dict[str, Any] = {
        "evses-TOTAL_FORMS": len(evses),
        "evses-INITIAL_FORMS": len(evses),
    }
    for i, evse in enumerate(evses):
        data.update(
            {
                f"evses-{i}-id": evse.pk,
                f"evses-{i}-charger": charger.pk,
                f"evses-{i}-connector_id": evse.connector_id,
                f"evses-{i}-connector_type": evse.connector_type,
                f"evses-{i}-max_power_kw": evse.max_power_kw,
            }
        )
    return data


# -- the admin's save of a charging charger -------------------------------------------------


@pytest.mark.django_db
def test_saving_a_charging_charger_succeeds_while_its_register_moves(
    admin_client_logged_in, django_capture_on_commit_callbacks
):
    charger = make_charger("CP-1", evses=2)
    Evse.objects.filter(charger=charger).update(register_wh=2015.17, status="Charging")
    open_session(charger)
    page = admin_client_logged_in.get(admin_url("change", charger.pk)).content.decode()
    assert 'name="evses-0-register_wh"' not in page  # shown, never posted
    data = {**change_form_data(charger, vendor="NewVendor"), **evse_form_data(charger)}
    # The engine checkpoints between the page's GET and its POST.
    Evse.objects.filter(charger=charger).update(register_wh=2100.5)
    data["evses-0-register_wh"] = "2015.17"  # a stale value a hand-made POST might carry

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged_in.post(admin_url("change", charger.pk), data)

    assert response.status_code == 302, response.content.decode()[:3000]
    charger.refresh_from_db()
    assert charger.vendor == "NewVendor"
    assert set(charger.evses.values_list("register_wh", flat=True)) == {2100.5}
    assert set(charger.evses.values_list("status", flat=True)) == {"Charging"}


@pytest.mark.django_db
def test_the_evse_admin_does_not_write_the_register_back(admin_client_logged_in):
    charger = make_charger("CP-1", evses=1)
    evse = charger.evses.get()
    Evse.objects.filter(pk=evse.pk).update(register_wh=500)
    response = admin_client_logged_in.post(
        reverse("admin:chargers_evse_change", args=[evse.pk]),
        {
            "charger": charger.pk,
            "connector_id": 1,
            "connector_type": "Type2",
            "max_power_kw": 11,
            "register_wh": 0,
            "availability": "Inoperative",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    evse.refresh_from_db()
    assert (evse.max_power_kw, evse.register_wh, evse.availability) == (11, 500, "Operative")


# -- one message per shard, after commit ----------------------------------------------------


@pytest.mark.django_db
def test_an_admin_save_tells_the_owning_shard_once(
    inbox, admin_client_logged_in, django_capture_on_commit_callbacks
):
    (cp_id,) = cp_ids_in_shard(1, 1)
    with setup(inbox):
        charger = make_charger(cp_id)
    data = {**change_form_data(charger, vendor="V2"), **evse_form_data(charger)}
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged_in.post(admin_url("change", charger.pk), data)
    assert response.status_code == 302
    messages = inbox.take()
    assert charger_pks(messages) == {0: [], 1: [[charger.pk]]}
    assert messages[1][0]["type"] == contract.FLEET_CHANGED
    assert messages[1][0]["reply_channel"]  # the admin waits for the answer


@pytest.mark.django_db
def test_a_new_charge_point_id_tells_the_old_and_the_new_shard(
    inbox, admin_client_logged_in, django_capture_on_commit_callbacks
):
    old = cp_ids_in_shard(0, 1)[0]
    new = cp_ids_in_shard(1, 1, prefix="NEW-")[0]
    with setup(inbox):
        charger = make_charger(old)
    data = {**change_form_data(charger, charge_point_id=new), **evse_form_data(charger)}
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client_logged_in.post(admin_url("change", charger.pk), data).status_code == 302
    assert charger_pks(inbox.take()) == {0: [[charger.pk]], 1: [[charger.pk]]}


@pytest.mark.django_db
def test_an_import_of_many_chargers_is_one_message_per_shard(
    inbox, django_capture_on_commit_callbacks, tmp_path
):
    with setup(inbox):
        make_location("Depot")
    ids = [f"IMP-{n:04d}" for n in range(1, 201)]
    path = tmp_path / "chargers.csv"
    path.write_text(
        "charge_point_id,location,evses\n" + "".join(f"{i},Depot,2*Type2:11\n" for i in ids)
    )
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "import", "chargers.resources.ChargerResource", str(path), stderr=io.StringIO()
        )

    messages = charger_pks(inbox.take())
    pks = dict(Charger.objects.values_list("charge_point_id", "pk"))
    for shard in range(SHARDS):
        owned = sorted(pks[i] for i in ids if contract.shard_of(i, SHARDS) == shard)
        assert messages[shard] == [owned]
    assert set(
        ConfigurationKey.objects.filter(
            charger__charge_point_id__in=ids, key="NumberOfConnectors"
        ).values_list("value", flat=True)
    ) == {"2"}


@pytest.mark.django_db
def test_a_dry_run_or_a_rolled_back_write_tells_nobody(inbox, django_capture_on_commit_callbacks):
    make_location("Depot")
    data = b"charge_point_id,location,evses\nCP-9,Depot,Type2:22\n"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ChargerResource().import_data(read_dataset(data, "csv"), dry_run=True)
        with pytest.raises(RuntimeError), transaction.atomic():
            make_charger("CP-8")
            from fleet_io.fleet_changes import notify_fleet_change

            notify_fleet_change([(1, "CP-8")])
            raise RuntimeError("rolled back")
    assert callbacks == []
    assert charger_pks(inbox.take()) == {0: [], 1: []}


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["enable", "disable", "delete_selected"])
def test_an_admin_action_on_many_chargers_is_one_message_per_shard(
    inbox, admin_client_logged_in, django_capture_on_commit_callbacks, action
):
    with setup(inbox):
        chargers = [make_charger(cp_id) for cp_id in cp_ids_in_shard(0, 3) + cp_ids_in_shard(1, 2)]
    data = {"action": action, "_selected_action": [c.pk for c in chargers]}
    if action == "delete_selected":
        data["post"] = "yes"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged_in.post(admin_url("changelist"), data)
    assert response.status_code == 302
    assert charger_pks(inbox.take()) == {
        0: [sorted(c.pk for c in chargers[:3])],
        1: [sorted(c.pk for c in chargers[3:])],
    }
    if action == "delete_selected":
        assert not Charger.objects.exists()
    else:
        assert set(Charger.objects.values_list("enabled", flat=True)) == {action == "enable"}


@pytest.mark.django_db
def test_deleting_one_charger_in_the_admin_tells_its_shard(
    inbox, admin_client_logged_in, django_capture_on_commit_callbacks
):
    with setup(inbox):
        (cp_id,) = cp_ids_in_shard(1, 1)
        charger = make_charger(cp_id)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged_in.post(admin_url("delete", charger.pk), {"post": "yes"})
    assert response.status_code == 302
    assert charger_pks(inbox.take()) == {0: [], 1: [[charger.pk]]}
    assert not Charger.objects.filter(pk=charger.pk).exists()


@pytest.mark.django_db
def test_the_fleet_generator_tells_the_shards_and_counts_connectors(
    inbox, admin_client_logged_in, django_capture_on_commit_callbacks
):
    with setup(inbox):
        template = make_charger("GEN-0001", evses=2)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged_in.post(
            admin_url("changelist"),
            {
                "action": "generate_fleet",
                "_selected_action": [template.pk],
                "generate": "1",
                "first_id": "GEN-0002",
                "count": 20,
                "location": template.location_id,
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    made = dict(Charger.objects.exclude(pk=template.pk).values_list("charge_point_id", "pk"))
    assert len(made) == 20
    messages = charger_pks(inbox.take())
    for shard in range(SHARDS):
        assert messages[shard] == [
            sorted(pk for cp, pk in made.items() if contract.shard_of(cp, SHARDS) == shard)
        ]
    assert set(
        ConfigurationKey.objects.filter(key="NumberOfConnectors").values_list("value", flat=True)
    ) == {"2"}


@pytest.mark.django_db
def test_a_location_or_vehicle_change_tells_every_shard(inbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        site = make_location("Depot")
        site.grid_limit_kw = 50
        site.save()
        vehicle = make_vehicle()
    messages = inbox.take()
    for shard in range(SHARDS):
        assert len(messages[shard]) == 1
        assert messages[shard][0]["locations"] == [site.pk]
        assert messages[shard][0]["vehicles"] == [vehicle.pk]


# -- what the admin says --------------------------------------------------------------------


class FakeWorker(threading.Thread):
    """A worker of shard 0 that answers fleet_changed as the engine would (own loop)."""

    def __init__(self, outcome: str | None, *, receipt: bool = False, delay: float = 0) -> None:
        super().__init__(daemon=True)
        self.outcome = outcome  # None: never finishes applying
        self.receipt = receipt  # say fleet_received at once, as the engine does
        self.delay = delay  # seconds the apply takes
        self.names: dict[int, str] = {}
        self.ready = threading.Event()
        self.done = False

    def run(self) -> None:
        asyncio.run(self.serve())

    async def serve(self) -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(contract.engine_group(0), channel)
        self.ready.set()
        while not self.done:
            try:
                message = await asyncio.wait_for(layer.receive(channel), 0.05)
            except TimeoutError:
                continue
            if message["type"] == contract.FLEET_CHANGED and message.get("reply_channel"):
                if self.receipt:
                    await layer.send(
                        message["reply_channel"],
                        contract.fleet_received(
                            message["request_id"], 0, django_settings.CHARGESIM_SHARDS
                        ),
                    )
                await asyncio.sleep(self.delay)
                if self.outcome is None:
                    continue
                outcomes: list[contract.ChargerOutcome] = [
                    {"charger_id": pk, "charge_point_id": self.names[pk], "outcome": self.outcome}
                    for pk in message["chargers"]
                ]
                await layer.send(
                    message["reply_channel"],
                    contract.fleet_applied(
                        message["request_id"], 0, django_settings.CHARGESIM_SHARDS, outcomes
                    ),
                )
        await layer.group_discard(contract.engine_group(0), channel)


@pytest.fixture
def admin_client(db: None) -> Client:
    client = Client()
    client.force_login(make_superuser())
    return client


@pytest.mark.django_db(transaction=True)
def test_the_admin_shows_what_the_worker_did(admin_client):
    charger = make_charger("DEMO-0001")
    worker = FakeWorker("reconnects now")
    worker.names[charger.pk] = charger.charge_point_id
    worker.start()
    worker.ready.wait(5)
    try:
        data = {
            **change_form_data(charger, csms_url="ws://127.0.0.1:9/x"),
            **evse_form_data(charger),
        }
        response = admin_client.post(admin_url("change", charger.pk), data, follow=True)
    finally:
        worker.done = True
        worker.join(5)
    shown = [str(m) for m in response.context["messages"]]
    assert "DEMO-0001 reconnects now." in shown
    assert not any("No simulator worker" in m for m in shown)


def save_with_worker(admin_client: Client, worker: FakeWorker, charger: Any) -> list[str]:
    worker.names[charger.pk] = charger.charge_point_id
    worker.start()
    worker.ready.wait(5)
    try:
        data = {**change_form_data(charger, vendor="Y"), **evse_form_data(charger)}
        response = admin_client.post(admin_url("change", charger.pk), data, follow=True)
    finally:
        worker.done = True
        worker.join(5)
    return [str(m) for m in response.context["messages"]]


@pytest.mark.django_db(transaction=True)
def test_a_busy_worker_that_got_the_change_is_waited_for_beyond_the_first_wait(admin_client):
    # It says it got the change at once and answers after the first wait (2 s) has passed.
    worker = FakeWorker("applied live", receipt=True, delay=fleet_changes.REPLY_SECONDS + 1)
    shown = save_with_worker(admin_client, worker, make_charger("CP-SLOW"))
    assert "CP-SLOW applied live." in shown
    assert not any("No simulator worker" in m for m in shown)


@pytest.mark.django_db(transaction=True)
def test_a_worker_still_applying_is_not_reported_as_missing(admin_client, monkeypatch):
    monkeypatch.setattr(fleet_changes, "APPLY_SECONDS", 0.5)
    shown = save_with_worker(admin_client, FakeWorker(None, receipt=True), make_charger("CP-BUSY"))
    assert any("still applying it" in m for m in shown), shown
    assert not any("No simulator worker" in m or "did not answer" in m for m in shown)


@pytest.mark.django_db(transaction=True)
def test_the_admin_says_so_when_no_worker_runs(admin_client):
    charger = make_charger("CP-1")
    data = {**change_form_data(charger, vendor="X"), **evse_form_data(charger)}
    response = admin_client.post(admin_url("change", charger.pk), data, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    # Not "no worker is running": a paused one does not answer either.
    assert (
        "CP-1 saved; its worker did not answer: it takes the change when it next reads the "
        "fleet, or when it starts." in shown
    )
    charger.refresh_from_db()
    assert charger.vendor == "X"


@pytest.mark.django_db(transaction=True)
def test_the_admins_disable_and_delete_say_what_a_worker_that_did_not_answer_does(admin_client):
    ids = [make_charger("CP-1").pk, make_charger("CP-2").pk]
    url = reverse("admin:chargers_charger_changelist")
    response = admin_client.post(
        url, {"action": "disable", "_selected_action": ids[:1]}, follow=True
    )
    shown = [str(m) for m in response.context["messages"]]
    assert (
        "CP-1 disabled; its worker did not answer: it stops the charger when it next reads "
        "the fleet." in shown
    )
    response = admin_client.post(admin_url("delete", ids[1]), {"post": "yes"}, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert (
        "CP-2 deleted; its worker did not answer: it drops the charger when it next reads "
        "the fleet." in shown
    )


@pytest.mark.django_db(transaction=True)
def test_several_chargers_whose_workers_did_not_answer_are_said_in_the_plural(admin_client):
    """QA: "QA-0091, ... saved; their workers did not answer: it takes the change ..."."""
    ids = [make_charger(f"CP-{n}").pk for n in (1, 2)]
    url = reverse("admin:chargers_charger_changelist")
    response = admin_client.post(url, {"action": "disable", "_selected_action": ids}, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert (
        "CP-1, CP-2 disabled; their workers did not answer: they stop the chargers when they "
        "next read the fleet." in shown
    ), shown


# -- an import says what the running chargers did ------------------------------------------


def run_with(worker: FakeWorker, job: Any) -> None:
    """Run the import job while the worker answers; `job` as it ended."""
    worker.start()
    worker.ready.wait(5)
    try:
        job.__class__.objects.run_queued(job.pk)
    finally:
        worker.done = True
        worker.join(5)
    job.refresh_from_db()


@pytest.mark.django_db(transaction=True)
def test_an_import_job_says_what_the_running_chargers_did(admin_client):
    """QA F6: the result page said only "Import finished. created 0 updated 1", and the
    API's job body nothing either, while a charger's own admin save says it per charger."""
    from fleet_io.models import ImportJob
    from tests.api_client import TokenClient, user_with_token

    location = make_location("Depot")
    chargers = [make_charger(f"CP-{n:03d}", location=location) for n in range(1, 8)]
    rows = "\n".join(f"CP-{n:03d},RebootMe" for n in range(1, 8))
    user, token = user_with_token("importer", is_superuser=True, is_staff=True)
    job = ImportJob.objects.create(
        resource="chargers",
        file_name="vendor.csv",
        file_format="csv",
        data=f"charge_point_id,vendor\n{rows}\n".encode(),
        created_by=user,
    )
    worker = FakeWorker("reboots now (2 connectors)", receipt=True)
    worker.names.update({c.pk: c.charge_point_id for c in chargers})
    run_with(worker, job)
    assert job.updated_count == 7
    assert job.running_chargers == {
        "outcomes": [
            {
                "outcome": "reboots now (2 connectors)",
                "count": 7,
                "chargers": ["CP-001", "CP-002", "CP-003", "CP-004", "CP-005"],
            }
        ],
        "notes": [],
    }
    admin_client.force_login(user)
    page = admin_client.get(job.get_absolute_url()).content.decode()
    assert (
        "<li>reboots now (2 connectors): 7 chargers (CP-001, CP-002, CP-003, CP-004, CP-005 "
        "and 2 more)</li>" in page
    )
    body = TokenClient(token).get(f"/api/v1/imports/{job.pk}").json()
    assert body["running_chargers"] == job.running_chargers
    schema = TokenClient(token).get("/api/v1/openapi.json").json()
    assert "running_chargers" in schema["components"]["schemas"]["ImportJobOut"]["properties"]


@pytest.mark.django_db(transaction=True)
def test_an_import_job_says_when_no_worker_runs(depot):
    from fleet_io.models import ImportJob

    make_charger("CP-001", location=depot)
    job = ImportJob.objects.create(
        resource="chargers",
        file_name="vendor.csv",
        file_format="csv",
        data=b"charge_point_id,vendor\nCP-001,X\n",
    )
    ImportJob.objects.run_queued(job.pk)
    job.refresh_from_db()
    assert job.running_lines() == [
        "CP-001 saved; its worker did not answer: it takes the change when it next reads the "
        "fleet, or when it starts."
    ]


@pytest.mark.django_db(transaction=True)
def test_an_import_names_the_chargers_whose_worker_did_not_answer(depot, settings):
    """With one of two workers stopped, an import reported the outcomes of the running
    worker's chargers and "1 of 2 simulator workers did not answer", naming none."""
    from fleet_io.models import ImportJob

    settings.CHARGESIM_SHARDS = 2
    ids = {contract.shard_of(f"CP-{n:03}", 2): f"CP-{n:03}" for n in range(1, 20)}
    answered = make_charger(ids[0], location=depot)
    make_charger(ids[1], location=depot)
    worker = FakeWorker("applied live", receipt=True)
    worker.names[answered.pk] = ids[0]
    job = ImportJob.objects.create(
        resource="chargers",
        file_name="vendor.csv",
        file_format="csv",
        data=f"charge_point_id,vendor\n{ids[0]},X\n{ids[1]},X\n".encode(),
    )
    run_with(worker, job)
    assert job.running_lines() == [
        f"applied live: 1 charger ({ids[0]})",
        f"{ids[1]} saved; its worker did not answer: it takes the change when it next reads "
        "the fleet, or when it starts.",
    ]


# -- a location's or vehicle model's save says what the running chargers do ----------------


def save_in_admin(client: Client, url: str, **changes: str) -> list[str]:
    from tests.admin_forms import form_values

    data = {**form_values(client.get(url).content.decode()), **changes}
    response = client.post(url, data, follow=True)
    assert response.redirect_chain, response.context["errors"]
    return [str(m) for m in response.context["messages"]]


@pytest.mark.django_db(transaction=True)
def test_a_location_save_says_when_its_running_chargers_use_it(admin_client):
    """QA F7: the grid limit reached the chargers within 1.5 s; the admin said only
    "changed successfully"."""
    location = make_location("Depot")
    make_charger("CP-001", location=location)
    url = reverse("admin:locations_location_change", args=[location.pk])
    worker = FakeWorker("unused", receipt=True)
    worker.start()
    worker.ready.wait(5)
    try:
        shown = save_in_admin(admin_client, url, grid_limit_kw="8", load_management="on")
    finally:
        worker.done = True
        worker.join(5)
    assert (
        "The running chargers at Depot (1) use its grid limit, load management and rotation "
        "from the next tick, within a second." in shown
    )
    assert not any("No simulator worker" in m for m in shown)


@pytest.mark.django_db(transaction=True)
def test_a_vehicle_model_save_says_it_applies_from_the_next_plug_in(admin_client):
    vehicle = make_vehicle()
    url = reverse("admin:vehicles_vehiclemodel_change", args=[vehicle.pk])
    worker = FakeWorker("unused", receipt=True)
    worker.start()
    worker.ready.wait(5)
    try:
        shown = save_in_admin(admin_client, url, capacity_kwh="70")
    finally:
        worker.done = True
        worker.join(5)
    assert (
        f"The running chargers use {vehicle} as it is now from their next plug-in; a car "
        "plugged in now keeps the battery it came with." in shown
    )


@pytest.mark.django_db(transaction=True)
def test_a_location_save_without_a_worker_says_none_runs(admin_client):
    location = make_location("Depot")
    url = reverse("admin:locations_location_change", args=[location.pk])
    shown = save_in_admin(admin_client, url, grid_limit_kw="8")
    assert (
        "No simulator worker answered: saved; a worker takes the change when it next reads "
        "the fleet, or when it starts." in shown
    )
    assert not any("use its grid limit" in m for m in shown)


# -- register reset -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_register_reset_works_only_on_an_idle_charger(admin_client_logged_in):
    idle, busy = make_charger("CP-1"), make_charger("CP-2")
    Evse.objects.update(register_wh=900)
    open_session(busy)
    response = admin_client_logged_in.post(
        admin_url("changelist"),
        {"action": "reset_registers", "_selected_action": [idle.pk, busy.pk]},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert "Not reset (a session is open): CP-2." in shown
    assert set(idle.evses.values_list("register_wh", flat=True)) == {0}
    assert set(busy.evses.values_list("register_wh", flat=True)) == {900}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "said"),
    [
        ("enable", "Enabled 1 charger."),
        ("disable", "Disabled 1 charger."),
        ("reset_registers", "Reset the registers of 1 charger."),
    ],
)
def test_an_admin_action_on_one_charger_says_charger_not_chargers(
    admin_client_logged_in, action, said
):
    """QA: disabling one charger from the list said "Disabled 1 chargers."."""
    charger = make_charger("CP-1")
    response = admin_client_logged_in.post(
        admin_url("changelist"), {"action": action, "_selected_action": [charger.pk]}, follow=True
    )
    assert said in [str(m) for m in response.context["messages"]]


class LoopInThisThread:
    """An event loop driven here, whose `sync_to_async` runs `write` in a thread: as the
    simulator's loop runs a scenario run's or an admin save's ORM work."""

    def __init__(self, write: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.write = write
        self.started = threading.Event()
        self.done = threading.Event()
        self.outcome: dict[str, Any] = {}
        self.task: asyncio.Future[None] | None = None

    def _run(self) -> None:
        self.started.set()
        try:
            self.outcome["applied"] = self.write()
        finally:
            self.done.set()

    async def _start(self) -> None:
        self.task = asyncio.ensure_future(sync_to_async(self._run, thread_sensitive=False)())
        while not self.started.is_set():
            await asyncio.sleep(0.01)

    def start(self) -> None:
        self.loop.run_until_complete(self._start())

    def finish(self) -> bool:
        """Whether the write ended by itself; then the loop is run again to end it (the old
        hang's hand-off runs then) and closed."""
        ended = self.done.wait(30)
        while not self.done.is_set() or not (self.task and self.task.done()):
            self.loop.run_until_complete(asyncio.sleep(0.05))
        self.loop.close()
        return ended


def test_a_change_committed_after_the_writers_loop_stopped_does_not_hang(caplog):
    # runsimulator stopped while a scenario run's clean-up deleted its chargers in a
    # thread: the commit's send was handed to the stopped loop, and the process said
    # "Stopped" and never exited.
    loop_stopped = threading.Event()

    def write() -> fleet_changes.Applied:
        loop_stopped.wait(30)
        return fleet_changes.send(fleet_changes._Batch(chargers={0: {7: "SCN-1"}}))

    writer = LoopInThisThread(write)
    caplog.set_level("INFO", logger="fleet_io.fleet_changes")
    writer.start()  # returns with the loop stopped, not closed: as at the end of a stop
    loop_stopped.set()
    assert writer.finish(), "the send waited for a loop that had stopped"
    applied = writer.outcome["applied"]
    assert applied.unsent == fleet_changes.STOPPING
    assert fleet_changes.notes(applied) == [
        (
            False,
            "Saved, but the simulator is stopping: its workers take the change when they "
            "start again.",
        )
    ]
    assert "not sent to the simulator workers: the simulator is stopping" in caplog.text


def test_a_send_waiting_for_answers_gives_up_when_its_loop_stops():
    def write() -> fleet_changes.Applied:
        # Stopped while the send waits for the workers' answers (a report waits 2 s).
        writer.loop.call_soon_threadsafe(writer.loop.call_later, 0.3, writer.loop.stop)
        batch = fleet_changes._Batch(chargers={0: {7: "CP-7"}}, reports=[lambda _a: None])
        return fleet_changes.send(batch)

    writer = LoopInThisThread(write)
    writer.start()
    writer.loop.run_forever()  # until the write stops it
    assert writer.finish(), "the send waited for a loop that had stopped"
    assert writer.outcome["applied"].unsent == fleet_changes.STOPPING


def test_a_change_written_in_a_running_loops_thread_reaches_that_loops_workers():
    layer = get_channel_layer()
    got: list[dict[str, Any]] = []

    async def worker() -> None:
        channel = await layer.new_channel()
        await layer.group_add(contract.engine_group(0), channel)
        started.set()
        got.append(await layer.receive(channel))

    started = threading.Event()

    def write() -> fleet_changes.Applied:
        started.wait(10)
        return fleet_changes.send(fleet_changes._Batch(chargers={0: {7: "CP-7"}}))

    writer = LoopInThisThread(write)
    receiving = writer.loop.create_task(worker())
    writer.start()
    writer.loop.run_until_complete(asyncio.wait_for(receiving, 10))
    assert writer.finish()
    assert not writer.outcome["applied"].unsent
    async_to_sync(layer.flush)()
    assert got == [contract.fleet_changed([7])]


@pytest.mark.django_db(transaction=True)
def test_an_embedded_import_job_tells_the_workers_of_the_loop_that_started_it(depot, settings):
    """Without a broker the import job runs in a thread of its own. Its fleet change went
    out on a loop of that thread's own, into the in-memory layer's queues of the
    simulator's loop from a foreign thread: not thread-safe (asyncio's debug mode refuses
    it), and the worker heard it only at its next wake-up."""
    from fleet_io import jobs
    from fleet_io.models import ImportJob

    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded mode's: no broker
    charger = make_charger("CP-001", location=depot)
    job = ImportJob.objects.create(
        resource="chargers",
        file_name="vendor.csv",
        file_format="csv",
        data=b"charge_point_id,vendor\nCP-001,X\n",
    )
    layer = get_channel_layer()
    got: list[dict[str, Any]] = []
    started = threading.Event()

    async def worker() -> None:
        channel = await layer.new_channel()
        await layer.group_add(contract.engine_group(0), channel)
        started.set()
        got.append(await layer.receive(channel))

    def request() -> None:  # the view that made the job, in the loop's thread
        started.wait(10)
        jobs.dispatch(job.pk)  # as on its commit

    writer = LoopInThisThread(request)
    writer.loop.set_debug(True)
    receiving = writer.loop.create_task(worker())
    writer.start()
    for _ in range(200):  # a bound, not a timing: on the old code it never came
        if got:
            break
        writer.loop.run_until_complete(asyncio.sleep(0.05))
    assert [(m["type"], m["chargers"]) for m in got] == [(contract.FLEET_CHANGED, [charger.pk])]
    assert receiving.done()
    job_thread = next(t for t in threading.enumerate() if t.name == f"import-job-{job.pk}")
    while job_thread.is_alive():  # it waits for an answer on that loop: nobody gives one
        writer.loop.run_until_complete(asyncio.sleep(0.05))
    assert writer.finish()
    async_to_sync(layer.flush)()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE, job.status
