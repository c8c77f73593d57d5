"""Issue 15's end-to-end path, all through the API against a running worker and the built-in
CSMS over real sockets: create a charger (it connects with no restart), plug in and present
an idTag with wait_for=Charging, the CSMS receives StartTransaction, stop, and then the log
download holds the session's frames and the metrics count them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import ThreadSensitiveContext
from channels.db import database_sync_to_async
from django.http import StreamingHttpResponse

from chargers.models import Charger
from tests.api_client import user_with_token
from tests.scrape import Scrape
from tests.test_api_live import Api
from tests.test_api_live import _close_connections as close_connections
from tests.test_live_fleet import worker  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("flushed_layer")]

SENT = "chargesim_ocpp_calls_sent_total"
PERMISSIONS = ("add_charger", "add_evse", "add_vehiclemodel", "change_charger", "view_charger")


async def log_lines(api: Api, cp_id: str) -> list[dict[str, Any]]:
    async with ThreadSensitiveContext():
        try:
            response = await api.client.get(
                f"/api/v1/chargers/{cp_id}/log.jsonl", headers=api.headers
            )
            assert isinstance(response, StreamingHttpResponse), response.content
            content: Any = response.streaming_content  # async: an ASGI response streams async
            body = b"".join([chunk async for chunk in content])
        finally:
            await close_connections()
    return [json.loads(line) for line in body.decode().splitlines()]


async def scrape(api: Api) -> Scrape:
    page = await api.get("/metrics")
    assert page.status_code == 200, page.content
    return Scrape.parse(page.content.decode())


async def test_create_connect_charge_stop_then_the_log_and_the_metrics_show_it(
    worker,  # noqa: F811
    csms,
    settings,
):
    # As the README's CSMS test runs: the simulator's default CSMS is the one under test,
    # and the charger is created without a URL of its own.
    settings.CHARGESIM_DEFAULT_CSMS_URL = csms.url
    _, token = await database_sync_to_async(user_with_token)("pipeline", *PERMISSIONS)
    api = Api(token)
    before = await scrape(api)

    # 1. Created through the API, the charger connects with no restart.
    location = await database_sync_to_async(
        lambda: Charger.objects.get(charge_point_id="CP-LIVE").location_id
    )()
    created = await api.post(
        "/api/v1/chargers",
        {
            "charge_point_id": "CP-E2E",
            "location": location,
            "evses": [{"connector_type": "Type2", "max_power_kw": 11}],
        },
    )
    assert created.status_code == 201, created.content
    assert created.json()["charger"]["csms_url"] == csms.url
    await csms.wait_for("CP-E2E", "BootNotification")
    state = await api.get("/api/v1/chargers/CP-E2E/state?wait_for=Accepted&timeout=30")
    assert state.status_code == 200, state.content

    # 2. A vehicle model, then plug in, present an idTag and wait for Charging: no polling.
    vehicle = await api.post(
        "/api/v1/vehicle-models",
        {
            "make": "Test",
            "model": "E2E",
            "capacity_kwh": 60,
            "ac_max_kw": 11,
            "ac_phases": 3,
            "charging_curve": "0:11 80:11 100:3",
        },
    )
    assert vehicle.status_code == 201, vehicle.content
    plugged = await api.post(
        "/api/v1/chargers/CP-E2E/actions/plug-in",
        {"soc": 30, "vehicle_model_id": vehicle.json()["id"]},
    )
    assert plugged.status_code == 200, plugged.content
    charging = await api.post(
        "/api/v1/chargers/CP-E2E/actions/present-id-tag?wait_for=Charging&timeout=30",
        {"id_tag": "TAG-E2E"},
    )
    assert charging.status_code == 200, charging.content
    assert charging.json()["wait"]["met"] is True, charging.json()

    # 3. The CSMS received the StartTransaction.
    start = await csms.wait_for("CP-E2E", "StartTransaction", message_type=2)
    assert start.payload["idTag"] == "TAG-E2E"

    # 4. Stop the session.
    stopped = await api.post("/api/v1/chargers/CP-E2E/actions/stop?wait_for=Finishing&timeout=30")
    assert stopped.status_code == 200, stopped.content
    assert stopped.json()["wait"]["met"] is True, stopped.json()
    await csms.wait_for("CP-E2E", "StopTransaction", message_type=2)

    # 5. The log download holds the frames (written with the checkpoints)...
    wanted = {"BootNotification", "StartTransaction", "StopTransaction"}

    async def logged() -> set[str]:
        return {line["action"] for line in await log_lines(api, "CP-E2E")}

    actions: set[str] = set()
    for _ in range(100):
        actions = await logged()
        if wanted <= actions:
            break
        await asyncio.sleep(0.1)
    assert wanted <= actions, actions
    lines = await log_lines(api, "CP-E2E")
    start_frames = [line for line in lines if line["action"] == "StartTransaction"]
    assert {line["direction"] for line in start_frames} == {"out", "in"}  # CALL and answer
    assert any("TAG-E2E" in line["payload"] for line in start_frames)

    # ...and the metrics count them.
    added = (await scrape(api)) - before
    assert added.value(SENT, action="StartTransaction", result="accepted") == 1
    assert added.total(SENT, action="StopTransaction") == 1
    assert added.value("chargesim_ocpp_response_seconds_count", action="StartTransaction") == 1
