"""End to end: chargers created, changed and deleted through the API reach a running worker
with no restart, seen at the built-in CSMS over real sockets (as tests/test_live_fleet.py,
with the API instead of a hand-made fleet_changed)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from chargers.models import Charger
from simulator.core.charge_point import BootState
from tests.api_client import user_with_token
from tests.engine import loaded, wait_until
from tests.test_live_fleet import worker  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("flushed_layer")]

V1 = "/api/v1"
PERMISSIONS = (
    "add_charger",
    "add_evse",
    "change_charger",
    "delete_charger",
    "delete_evse",
    "delete_configurationkey",
)


class Api:
    """Django's ASGI test client: the request is handled as Daphne hands it over, the sync
    handler in a thread and its wait for the worker on this (the worker's) event loop."""

    def __init__(self, token: str) -> None:
        self.client = AsyncClient()
        self.headers = {"Authorization": f"Bearer {token}"}

    async def __call__(self, method: str, path: str, body: Any = None) -> Any:
        send = getattr(self.client, method)
        if body is None:
            return await send(V1 + path, headers=self.headers)
        return await send(V1 + path, body, content_type="application/json", headers=self.headers)


@pytest.fixture
async def api() -> Api:
    _, token = await sync_to_async(user_with_token)("ci", *PERMISSIONS)
    return Api(token)


async def test_a_charger_created_through_the_api_boots_at_the_csms_without_a_restart(
    worker,  # noqa: F811
    csms,
    api,
):
    location = await sync_to_async(location_of)("CP-LIVE")
    body = {
        "charge_point_id": "CP-API",
        "location": location,
        "csms_url": csms.url,
        "evses": [{"connector_type": "Type2", "max_power_kw": 11}] * 2,
    }
    response = await api("post", "/chargers", body)
    assert response.status_code == 201, response.content
    # The worker said what it did, as the admin's save shows it.
    assert response.json()["workers"] == [
        {"reached": True, "message": "CP-API loaded, connecting."}
    ]
    boot = await csms.wait_for("CP-API", "BootNotification")
    assert boot.payload["chargePointVendor"] == "ChargeSim"
    charger = loaded(worker, "CP-API")
    await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="CP-API accepted")
    assert charger.config["NumberOfConnectors"] == "2"

    disabled = await api("patch", "/chargers/CP-API", {"enabled": False})
    assert disabled.status_code == 200, disabled.content
    assert disabled.json()["workers"][0]["reached"] is True
    await csms.wait_disconnected("CP-API")
    assert worker.store.get("CP-API") is None

    boots = csms.counts["BootNotification"]
    enabled = await api("patch", "/chargers/CP-API", {"enabled": True})
    assert enabled.status_code == 200, enabled.content
    await wait_until(lambda: csms.counts["BootNotification"] > boots, message="CP-API boots again")

    deleted = await api("delete", "/chargers/CP-API")
    assert deleted.status_code == 200, deleted.content
    await csms.wait_disconnected("CP-API")
    assert worker.store.get("CP-API") is None


def location_of(cp_id: str) -> int:
    return Charger.objects.get(charge_point_id=cp_id).location_id
