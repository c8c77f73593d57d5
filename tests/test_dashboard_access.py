"""A dashboard page left open stops watching when its user may no longer watch: logged
out elsewhere, the session gone, the account deactivated or, on a charger page opened with
the OCPP message log, the "view charger" permission taken away. It streamed on for as long
as it stayed open (chargers.dashboard.access)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from chargers.dashboard import consumers
from simulator import contract
from tests.cast import make_charger
from tests.test_consumers import SITE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("flushed_layer")]


@pytest.fixture
def often(monkeypatch):
    """The pages ask every 0.2 s, not every 5 s."""
    monkeypatch.setattr(consumers.DashboardConsumer, "access_check_seconds", 0.2, raising=False)


@pytest.fixture
async def charger_pk() -> int:
    return (await sync_to_async(make_charger)("CP-ACCESS", evses=1)).pk


async def watcher(django_user_model, *codenames: str) -> Any:
    user = await sync_to_async(django_user_model.objects.create_user)("w", password="pw-a-1")
    for codename in codenames:
        permission = await sync_to_async(Permission.objects.get)(codename=codename)
        await sync_to_async(user.user_permissions.add)(permission)
    return user


async def open_page(user: Any, path: str) -> tuple[WebsocketCommunicator, Client]:
    """The page's socket through the whole ASGI app, with the session cookie of a login."""
    from chargesim_site.asgi import application

    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(application, path, headers=[*SITE, (b"cookie", cookie)])
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from())["type"] == "hello"
    await communicator.receive_nothing(0.1)  # its watch, asked after the hello
    return communicator, client


async def last_words(communicator: WebsocketCommunicator, timeout: float = 3.0) -> tuple[str, int]:
    """The `access.ended` message the page got, and the close code that followed it."""
    said = ""
    while True:
        output = await communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            return said, output["code"]
        if '"access.ended"' in output.get("text", ""):
            said = output["text"]


def watching(pk: int) -> bool:
    return bool(get_channel_layer().groups.get(contract.charger_group(pk)))


async def test_a_page_whose_session_was_deleted_says_so_and_closes(
    often, charger_pk, django_user_model
):
    user = await watcher(django_user_model, "view_charger")
    communicator, _client = await open_page(user, f"/ws/chargers/{charger_pk}/")
    assert watching(charger_pk)

    await sync_to_async(Session.objects.all().delete)()  # expired, cleared, logged out

    said, code = await last_words(communicator)
    assert "You were logged out: log in again to watch." in said
    assert code == 4401
    assert not watching(charger_pk)


async def test_a_page_of_a_deactivated_user_says_so_and_closes(
    often, charger_pk, django_user_model
):
    user = await watcher(django_user_model, "view_charger")
    communicator, _client = await open_page(user, "/ws/fleet/")
    await communicator.send_json_to({"type": "watch", "chargers": [charger_pk]})
    assert await communicator.receive_nothing(0.1)
    assert watching(charger_pk)

    await sync_to_async(django_user_model.objects.filter(pk=user.pk).update)(is_active=False)

    said, code = await last_words(communicator)
    assert "Your account can no longer watch chargers." in said
    assert code == 4403
    assert not watching(charger_pk)


async def test_a_charger_page_whose_user_lost_the_view_permission_stops_its_log(
    often, charger_pk, django_user_model
):
    user = await watcher(django_user_model, "view_charger")
    communicator, _client = await open_page(user, f"/ws/chargers/{charger_pk}/")
    assert await communicator.receive_nothing(0.5)  # the checks pass meanwhile

    await sync_to_async(user.user_permissions.clear)()

    said, code = await last_words(communicator)
    assert "can no longer see this charger's OCPP messages" in said
    assert code == 4403
    assert not watching(charger_pk)


async def test_a_log_out_closes_the_pages_of_its_session_at_once(
    charger_pk, django_user_model, monkeypatch
):
    """Not at the next check (an hour here): the log-out tells the session's pages."""
    monkeypatch.setattr(consumers.DashboardConsumer, "access_check_seconds", 3600.0, raising=False)
    user = await watcher(django_user_model, "view_charger")
    communicator, client = await open_page(user, f"/ws/chargers/{charger_pk}/")
    other, _other_client = await open_page(user, "/ws/fleet/")  # another login: stays

    await sync_to_async(client.post)(reverse("logout"))

    said, code = await last_words(communicator)
    assert "You were logged out: log in again to watch." in said
    assert code == 4401
    assert await other.receive_nothing(0.3)
    await other.disconnect()


async def test_a_page_hears_at_once_when_its_user_loses_or_regains_the_change_permission(
    often, charger_pk, django_user_model
):
    """Its controls stayed enabled until a reload, and every command was refused."""
    user = await watcher(django_user_model, "view_charger", "change_charger")
    change = await sync_to_async(Permission.objects.get)(codename="change_charger")
    for path in (f"/ws/chargers/{charger_pk}/", "/ws/fleet/"):
        communicator, _client = await open_page(user, path)

        await sync_to_async(user.user_permissions.remove)(change)
        assert await access_said(communicator) == [False]
        await sync_to_async(user.user_permissions.add)(change)
        assert await access_said(communicator) == [True]  # and said once, not at every check
        await communicator.disconnect()


async def access_said(communicator: WebsocketCommunicator) -> list[bool]:
    """What the page's `access` messages said within a second (five access checks), the
    page's other messages (summaries, notes) left aside."""
    said: list[bool] = []
    while not await communicator.receive_nothing(1.0):
        message = await communicator.receive_json_from()
        if message["type"] == "access":
            said.append(message["can_drive"])
    return said
