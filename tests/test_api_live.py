"""The live API (api/routers/live.py): charger state, actions with wait_for, the fleet
summary and bulk actions, answered by real engine workers on the in-memory channel layer
whose chargers talk to the built-in CSMS over real sockets. Auth, permissions, validation
and every error status; the end-to-end session; a bulk action across two shards."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import ThreadSensitiveContext
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connections
from django.test import AsyncClient, Client
from openapi_spec_validator import validate

from api import no_worker
from api.routers import live
from chargers import engine_client
from chargers.engine_client import EngineClient
from chargers.models import Evse
from fleet_io.models import ImportJob
from locations.models import Location
from scripts.reachable import reachable
from simulator import contract
from simulator.core.evse import ERROR_CODES
from simulator.core.link import BootState, LinkState
from simulator.csms import CentralSystem
from simulator.ocpp16 import client as client_module
from simulator.runtime.lifecycle import Simulator
from tests.api_client import bearer, user_with_token
from tests.cast import make_charger, make_location, make_vehicle
from tests.engine import loaded, wait_until
from tests.process import free_port, redis_database
from tests.test_engine_client import (
    REDIS_URL,
    booted,
    ids_on_both_shards,
    start_worker,
    worker_gone,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("flushed_layer")]

STATE = "/api/v1/chargers/{}/state"
ACTION = "/api/v1/chargers/{}/actions/{}"
SUMMARY = "/api/v1/fleet/summary"
BULK = "/api/v1/fleet/actions/{}"


class Api:
    """Async requests with one user's token (the handlers await the engine on this loop).

    Each in a ThreadSensitiveContext of its own, as Django's ASGI handler runs a request:
    the test client does not, and then a request that waits (wait_for) holds the one thread
    that every other request's sync parts (a sync middleware, the ORM) need."""

    def __init__(self, token: str | None) -> None:
        self.client = AsyncClient()
        self.headers = bearer(token) if token else {}

    async def get(self, path: str, **query: Any) -> Any:
        async with ThreadSensitiveContext():
            try:
                return await self.client.get(path, query, headers=self.headers)
            finally:
                await _close_connections()

    async def post(
        self, path: str, body: Any = None, *, raw: str | None = None, **query: Any
    ) -> Any:
        """POST `body` as JSON (none: an empty body), or the text `raw` as it is."""
        if query:
            path = f"{path}?" + "&".join(f"{k}={v}" for k, v in query.items())
        data = raw if raw is not None else "" if body is None else json.dumps(body)
        async with ThreadSensitiveContext():
            try:
                return await self.client.post(
                    path, data, content_type="application/json", headers=self.headers
                )
            finally:
                await _close_connections()


@database_sync_to_async
def _close_connections() -> None:
    """The request's thread ends with its context: close its database connections (the
    test client keeps Django from closing them at the end of a request)."""
    connections.close_all()


async def api_as(username: str, *codenames: str) -> Api:
    _, token = await database_sync_to_async(user_with_token)(username, *codenames)
    return Api(token)


@pytest.fixture
async def driver() -> Api:
    return await api_as("driver", "view_charger", "change_charger")


@pytest.fixture
async def site(csms: CentralSystem) -> Location:
    await database_sync_to_async(make_vehicle)()
    location = await database_sync_to_async(make_location)("API Site")
    for cp_id, evses in (("API-1", 2), ("API-2", 1)):
        await database_sync_to_async(make_charger)(
            cp_id, evses=evses, csms_url=csms.url, location=location
        )
    await database_sync_to_async(make_charger)(
        "API-OFF", evses=1, csms_url=csms.url, enabled=False, location=location
    )
    return location


@pytest.fixture
async def worker(site: Location) -> AsyncIterator[Simulator]:
    service = await start_worker(["API-1", "API-2", "API-OFF"])
    await booted(service, "API-1", "API-2")
    try:
        yield service
    finally:
        await service.stop()


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body: dict[str, Any] = response.json()
    assert set(body) == {"detail", "errors"}
    return body


def fields_of(body: dict[str, Any]) -> set[str | None]:
    return {error["field"] for error in body["errors"]}


# -- the OpenAPI document -------------------------------------------------------------------------


def test_every_drive_command_of_the_engine_is_an_action_of_the_api():
    assert {a.command for a in live.ACTIONS} == contract.DRIVE_COMMANDS
    assert len({a.path for a in live.ACTIONS}) == len(live.ACTIONS)


def test_the_openapi_document_validates_and_describes_every_live_operation():
    _, token = user_with_token("reader", "view_charger")
    spec = Client().get("/api/v1/openapi.json", headers=bearer(token)).json()
    validate(spec)
    operations = {op["operationId"]: op for ops in spec["paths"].values() for op in ops.values()}
    # One id per operation, named as a client's method would be (not ninja's module path).
    assert len(operations) == sum(len(ops) for ops in spec["paths"].values())
    assert {"list_chargers", "upload_import", "stream_events", "start_run"} <= set(operations)
    assert not [name for name in operations if name.startswith("api_")]
    for action in live.ACTIONS:
        for name in (f"charger_{action.command}", f"bulk_{action.command}"):
            assert operations[name]["summary"] and operations[name]["description"]
    plug_in = spec["components"]["schemas"]["PlugInArgs"]["properties"]
    assert set(plug_in) == {"connector_id", "vehicle_model_id", "soc", "target_soc"}
    wait_for = next(
        p for p in operations["charger_plug_in"]["parameters"] if p["name"] == "wait_for"
    )
    for condition in contract.WAIT_CONDITIONS:  # listed as an enum
        assert f'"{condition}"' in json.dumps(wait_for["schema"])
    fault = spec["components"]["schemas"]["InjectFaultArgs"]["properties"]["error_code"]
    assert fault["enum"] == list(contract.FAULT_CODES)
    assert set(operations["charger_plug_in"]["responses"]) >= {
        "200",
        "401",
        "403",
        "404",
        "409",
        "422",
        "503",
        "504",
    }


def test_the_answers_closed_value_sets_are_enums_of_the_values_the_code_gives():
    """A generated client got a plain string for a link, a boot state, an error code, a
    status, an availability, a job's status or a bulk result's error: each lists what the
    code that fills it can give (read from that code, so that they cannot drift apart)."""
    _, token = user_with_token("reader", "view_charger")
    spec = Client().get("/api/v1/openapi.json", headers=bearer(token)).json()
    validate(spec)
    schemas = spec["components"]["schemas"]

    def values(schema: str, field: str) -> set[str]:
        found = schemas[schema]["properties"][field]
        arms = found.get("anyOf", [found])
        return {v for arm in arms for v in arm.get("enum", [])} | (
            {"<string>"}
            if any(arm.get("type") == "string" and "enum" not in arm for arm in arms)
            else set()
        )

    assert values("ChargerState", "link") == {str(s) for s in LinkState}
    assert values("ChargerState", "boot") == {str(s) for s in BootState}
    assert values("EvseState", "error_code") == set(ERROR_CODES)
    assert values("EvseState", "status") == set(contract.CONNECTOR_STATUSES)
    assert values("EvseOut", "status") == set(contract.CONNECTOR_STATUSES)
    assert values("EvseOut", "availability") == set(Evse.Availability.values)
    assert values("ImportJobOut", "status") == set(ImportJob.Status.values)
    engine = {
        contract.ERROR_INVALID,
        contract.ERROR_REFUSED,
        contract.ERROR_NOT_RUNNING,
        contract.ERROR_FAILED,
        contract.ERROR_SKIPPED,
    }
    client_side = {
        engine_client.ERROR_NO_WORKER,
        engine_client.ERROR_TIMEOUT,
        engine_client.ERROR_WORKER_GONE,
        "not_found",
    }
    assert values("BulkItem", "error") == engine | client_side


# -- who may call -------------------------------------------------------------------------------

# (method, path, a valid body): ninja validates the request before the permission check.
ENDPOINTS = [
    ("get", STATE.format("API-1"), None),
    ("get", SUMMARY, None),
    ("post", ACTION.format("API-1", "plug-in"), {}),
    ("post", BULK.format("plug-in"), {"filter": {"status": "Available"}}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_anonymous_callers_get_401(method, path, body):
    anonymous = Api(None)
    response = await (anonymous.get(path) if method == "get" else anonymous.post(path, body))
    assert error_of(response, 401)["detail"].startswith("Authentication required")


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_a_caller_without_the_permission_gets_403(method, path, body):
    nobody = await api_as("nobody")
    response = await (nobody.get(path) if method == "get" else nobody.post(path, body))
    wanted = "view_charger" if method == "get" else "change_charger"
    assert wanted in error_of(response, 403)["detail"]


async def test_viewing_is_not_driving(worker):
    viewer = await api_as("viewer", "view_charger")
    assert (await viewer.get(STATE.format("API-1"))).status_code == 200
    assert (await viewer.get(SUMMARY)).status_code == 200
    error_of(await viewer.post(ACTION.format("API-1", "connect")), 403)
    error_of(await viewer.post(BULK.format("connect"), {"filter": {"status": "Available"}}), 403)


async def test_a_browser_session_drives_with_its_csrf_token(worker):
    from tests.cast import make_superuser

    admin = await database_sync_to_async(make_superuser)()
    browser = AsyncClient(enforce_csrf_checks=True)
    await database_sync_to_async(browser.force_login)(admin)
    path = ACTION.format("API-2", "plug-in")
    error_of(await browser.post(path, "{}", content_type="application/json"), 403)
    browser.cookies["csrftoken"] = "t" * 32
    ok = await browser.post(
        path, "{}", content_type="application/json", headers={"X-CSRFToken": "t" * 32}
    )
    assert ok.status_code == 200, ok.content


# -- validation and errors ----------------------------------------------------------------------


async def test_bad_values_are_422_naming_the_field(driver):
    plug_in = ACTION.format("API-1", "plug-in")
    assert fields_of(error_of(await driver.post(plug_in, {"soc": 150}), 422)) == {"soc"}
    assert fields_of(error_of(await driver.post(plug_in, {"connector_id": 0}), 422)) == {
        "connector_id"
    }
    bad_wait = await driver.post(plug_in, {}, wait_for="Sleeping")
    assert fields_of(error_of(bad_wait, 422)) == {"wait_for"}
    too_long = await driver.post(plug_in, {}, wait_for="Charging", timeout=301)
    assert fields_of(error_of(too_long, 422)) == {"timeout"}
    tag = ACTION.format("API-1", "present-id-tag")
    assert fields_of(error_of(await driver.post(tag, {"id_tag": "x" * 21}), 422)) == {"id_tag"}
    assert fields_of(error_of(await driver.post(tag), 422)) == {None}  # the body is required
    fault = ACTION.format("API-1", "inject-fault")
    assert fields_of(error_of(await driver.post(fault, {"error_code": "Broken"}), 422)) == {
        "error_code"
    }
    bulk = BULK.format("plug-in")
    nothing = error_of(await driver.post(bulk, {"filter": {}}), 422)
    assert "choose the chargers" in nothing["errors"][0]["message"]
    not_every = error_of(await driver.post(bulk, {"filter": {"every": False}}), 422)
    assert "choose the chargers" in not_every["errors"][0]["message"]
    bad_status = await driver.post(bulk, {"filter": {"status": "Sleeping"}})
    assert fields_of(error_of(bad_status, 422)) == {"filter.status"}
    # A name an action or a filter does not take is refused, not ignored: a typo must not
    # plug in the default car, nor widen a bulk action to a whole site.
    typo = error_of(await driver.post(plug_in, {"vehicle_id": 3}), 422)
    assert fields_of(typo) == {"vehicle_id"}
    assert typo["errors"][0]["message"].startswith("Not an argument of this request")
    wider = await driver.post(bulk, {"filter": {"location_id": 1, "statuss": "Available"}})
    assert fields_of(error_of(wider, 422)) == {"filter.statuss"}
    extra = await driver.post(bulk, {"filter": {"location_id": 1}, "arg": {"soc": 50}})
    assert fields_of(error_of(extra, 422)) == {"arg"}
    close = ACTION.format("API-1", "close-connection")
    assert fields_of(error_of(await driver.post(close, {"code": 99999}), 422)) == {"code"}
    assert fields_of(error_of(await driver.post(close, {"reason": "x" * 200}), 422)) == {"reason"}
    # A NaN is no number at all: said so, not as a range it misses.
    skew = error_of(
        await driver.post(ACTION.format("API-1", "set-clock-skew"), raw='{"seconds": NaN}'), 422
    )
    assert fields_of(skew) == {"seconds"}
    assert skew["errors"][0]["message"] == "Input should be a finite number"


async def test_a_null_or_empty_body_is_the_actions_own_422_not_a_500(driver):
    """A body left out (or `null`, which the document allows) means "no arguments": for
    an action that needs one of them, that is its own refusal, as MCP words it."""
    for charger in ("API-1", "NOPE"):
        network = ACTION.format(charger, "set-network")
        for response in (await driver.post(network), await driver.post(network, raw="null")):
            body = error_of(response, 422)
            assert body["errors"][0]["message"] == "give latency_ms, jitter_ms, drop_rate or seed"
        override = error_of(await driver.post(ACTION.format(charger, "set-answer-override")), 422)
        assert fields_of(override) == {"action"}
        assert "is required" in override["errors"][0]["message"]
    bulk = await driver.post(BULK.format("set-network"), {"filter": {"location_id": 1}})
    assert "give latency_ms" in error_of(bulk, 422)["errors"][0]["message"]


@pytest.mark.parametrize("args", [[1, 2], "hello", 5, {"bogus": 1}])
async def test_arguments_an_action_does_not_take_are_refused_not_ignored(driver, args):
    """An action without arguments runs on none: anything given is a 422 naming `args`
    (the fleet's) or the body, not an action run as if nothing had been sent."""
    for action in ("request-certificate", "connect", "disconnect", "reboot", "stop"):
        bulk = {"filter": {"charge_point_ids": ["NOPE"]}, "args": args}
        fields = fields_of(error_of(await driver.post(BULK.format(action), bulk), 422))
        assert {(field or "").split(".")[0] for field in fields} == {"args"}, action
        one = error_of(await driver.post(ACTION.format("NOPE", action), args), 422)
        assert one["errors"], action


async def test_a_boolean_or_a_string_for_a_number_is_refused(driver):
    """`{"connector_id": true}` acted on connector 1 and a fleet clock skew of `false` was
    0 s: JSON numbers only, in the actions' bodies (query parameters are text)."""
    cases = [
        (ACTION.format("NOPE", "stop"), {"connector_id": True}, "connector_id"),
        (ACTION.format("NOPE", "cut-network"), {"seconds": "1"}, "seconds"),
        (ACTION.format("NOPE", "plug-in"), {"soc": "50"}, "soc"),
        (
            BULK.format("set-clock-skew"),
            {"filter": {"location_id": 1}, "args": {"seconds": False}},
            "args.seconds",
        ),
        (BULK.format("stop"), {"filter": {"location_id": True}}, "filter.location_id"),
    ]
    for path, body, field in cases:
        assert field in fields_of(error_of(await driver.post(path, body), 422)), path
    # A query parameter is text on the wire: `?timeout=5` is a number.
    assert (await driver.post(ACTION.format("NOPE", "stop"), timeout="5")).status_code == 404


async def test_an_argument_of_an_action_that_takes_none_is_refused_saying_so(driver):
    """It said "Not an argument of this request: it takes ." (nothing after "takes")."""
    none = "Not an argument of this request: it takes no arguments."
    one = error_of(await driver.post(ACTION.format("NOPE", "connect"), {"x": 1}), 422)
    assert one["errors"] == [{"field": "x", "message": none, "row": None}]
    bulk = {"filter": {"location_id": 1}, "args": {"x": 1}}
    many = error_of(await driver.post(BULK.format("connect"), bulk), 422)
    assert many["errors"] == [{"field": "args.x", "message": none, "row": None}]


async def test_a_string_or_a_number_for_a_boolean_is_refused(driver):
    """`{"clear": "true"}` cleared the rules, `{"no_answer": 1}` set one: JSON booleans
    only, as for numbers."""
    cases = [
        (ACTION.format("NOPE", "set-answer-override"), {"clear": "true"}, "clear"),
        (
            ACTION.format("NOPE", "set-answer-override"),
            {"action": "Reset", "no_answer": 1},
            "no_answer",
        ),
        (
            BULK.format("set-answer-override"),
            {"filter": {"location_id": 1}, "args": {"clear": "yes"}},
            "args.clear",
        ),
    ]
    for path, body, field in cases:
        refused = error_of(await driver.post(path, body), 422)
        assert {
            "field": field,
            "message": "Input should be a JSON boolean: true or false",
            "row": None,
        } in refused["errors"], refused
    # true itself is past the arguments, to the unknown charger's 404.
    error_of(await driver.post(ACTION.format("NOPE", "set-answer-override"), {"clear": True}), 404)


async def test_a_target_below_the_soc_or_an_id_tag_beyond_ascii_is_a_422(driver):
    plug_in = ACTION.format("NOPE", "plug-in")
    below = error_of(await driver.post(plug_in, {"soc": 80, "target_soc": 50}), 422)
    assert fields_of(below) == {"target_soc"} and "below" in below["errors"][0]["message"]
    tag = ACTION.format("NOPE", "present-id-tag")
    for id_tag in ("Zoë-1", "TAG\u00a01"):
        refused = error_of(await driver.post(tag, {"id_tag": id_tag}), 422)
        assert fields_of(refused) == {"id_tag"}
        assert "printable ASCII" in refused["errors"][0]["message"]
    # Equal is a full battery's session, not a mistake: past the arguments, to the 404.
    error_of(await driver.post(plug_in, {"soc": 80, "target_soc": 80}), 404)


async def test_an_unknown_charger_or_location_is_404(driver):
    for response in (
        await driver.get(STATE.format("NOPE")),
        await driver.post(ACTION.format("NOPE", "connect")),
        await driver.post(BULK.format("connect"), {"filter": {"location_id": 999999}}),
    ):
        # The words of the rest of the API (its CRUD, the log, the event stream).
        assert error_of(response, 404)["detail"] in ("No charger 'NOPE'.", "No location 999999.")


async def test_a_refused_action_is_409_with_the_workers_reason(worker, driver):
    stop = error_of(await driver.post(ACTION.format("API-2", "stop")), 409)
    assert stop["detail"] == "connector 1 has no transaction"
    unplug = error_of(await driver.post(ACTION.format("API-2", "unplug"), {"connector_id": 1}), 409)
    assert unplug["detail"] == "no vehicle plugged in"
    no_such = error_of(
        await driver.post(ACTION.format("API-2", "unplug"), {"connector_id": 5}), 422
    )
    assert "no connector 5" in no_such["detail"]
    assert fields_of(no_such) == {"connector_id"}  # found by the worker, named all the same
    no_vehicle = error_of(
        await driver.post(ACTION.format("API-2", "plug-in"), {"vehicle_model_id": 424242}), 422
    )
    assert no_vehicle["detail"] == "there is no vehicle model #424242"
    assert fields_of(no_vehicle) == {"vehicle_model_id"}  # as the API calls it


async def test_a_charger_no_worker_runs_is_409(worker, driver):
    body = error_of(await driver.get(STATE.format("API-OFF")), 409)
    # Named as the caller named it, not by its row's number ("charger #13 is ..."), and
    # why: not a guess among disabled, deleted or a shard setting.
    assert body["detail"] == "API-OFF is disabled"


async def test_without_a_worker_the_answer_is_503(site, driver, monkeypatch):
    """No engine in this process and the layer in memory: no worker anywhere can answer,
    and the 503 says what to use instead (QA: "No simulator worker is running" from
    `manage.py mcp` over stdio, beside a running simulator, said nothing to do)."""
    monkeypatch.setattr(live, "client", lambda: EngineClient(ack_seconds=0.2))
    body = error_of(await driver.post(ACTION.format("API-1", "connect")), 503)
    assert body["detail"] == no_worker.UNREACHABLE
    assert "REDIS_URL" in body["detail"] and "python manage.py runsimulator" in body["detail"]
    assert error_of(await driver.get(STATE.format("API-1")), 503) == body
    assert error_of(await driver.get(SUMMARY), 503) == body
    bulk = await driver.post(BULK.format("connect"), {"filter": {"location_id": site.pk}})
    assert error_of(bulk, 503) == body


async def test_a_worker_of_this_process_that_listens_but_does_not_answer_is_503_saying_so(
    site, driver, monkeypatch
):
    """The engine's group has a member in this process, whose layer is its own memory: the
    worker is this process's, paused or far behind. The caller was told to start a worker,
    which the running one's lock refuses; now, that it is stalled and to send it again."""
    monkeypatch.setattr(live, "client", lambda: EngineClient(ack_seconds=0.2))
    await get_channel_layer().group_add(contract.engine_group(0), "stuck-worker!1")
    body = error_of(await driver.get(STATE.format("API-1")), 503)
    assert body["detail"] == (
        "The simulator worker in this process did not answer within 0.2 s: it is paused or "
        "far behind (see its log and status line). Send it again later."
    )
    assert error_of(await driver.get(SUMMARY), 503) == body


@pytest.mark.skipif(not reachable(REDIS_URL), reason=f"no Redis at {REDIS_URL}")
async def test_a_shard_without_a_worker_is_503_naming_the_shard_and_how_to_start_it(
    site, driver, monkeypatch
):
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[redis_database(REDIS_URL)])
    monkeypatch.setattr(live, "client", lambda: EngineClient(layer, shards=2, ack_seconds=0.3))
    shard = contract.shard_of("API-1", 2)
    body = error_of(await driver.get(STATE.format("API-1")), 503)
    # Not "no worker is running": one that is paused (SIGSTOP), overloaded or cut off from
    # Redis does not answer either, and a second one for its shard is refused (QA).
    stalled = (
        "If one runs, it is paused, overloaded or cannot reach the channel layer (Redis): "
        "see its log and status line (a second one for the same shard is refused while it "
        "holds the shard's lock)."
    )
    assert body["detail"] == (
        f"No simulator worker answered for this charger's shard ({shard}/2) within 0.3 s. "
        f"If none runs, start it with `python manage.py runsimulator --no-web --shard "
        f"{shard}/2`. {stalled}"
    )
    summary = error_of(await driver.get(SUMMARY), 503)
    assert summary["detail"] == (
        "No simulator worker answered within 0.3 s (shards 0/2, 1/2). For a shard none "
        "runs, start one with `python manage.py runsimulator --no-web --shard K/2`. "
        f"{stalled}"
    )
    await layer.flush()


async def test_a_worker_gone_during_a_wait_is_a_503_its_operation_documents(
    worker, driver, monkeypatch
):
    """The operations documented 503 as "no worker runs its shard" only: a worker that went
    away during a wait answers it too, as do a channel layer and a database out of reach."""
    from simulator.runtime import commands

    monkeypatch.setattr(commands, "REJOIN_SECONDS", 3600.0)  # gone for good, as if killed
    monkeypatch.setattr(live, "client", lambda: EngineClient(ack_seconds=1.0, probe_seconds=0.5))
    waiting = asyncio.create_task(
        driver.post(ACTION.format("API-2", "plug-in"), {}, wait_for="Charging", timeout=30)
    )
    await wait_until(lambda: len(worker.conditions) == 1, message="the wait to register")
    await worker_gone()
    body = error_of(await asyncio.wait_for(waiting, 10), 503)
    assert body["detail"].startswith(
        "The worker of shard 0 stopped answering before it answered; the action was carried out"
    ), body
    spec = (await driver.get("/api/v1/openapi.json")).json()
    operations = {op["operationId"]: op for ops in spec["paths"].values() for op in ops.values()}
    cases = ("no worker runs", "stopped answering or restarted", "channel layer", "database")
    for name in ("charger_plug_in", "get_state"):
        operation = operations[name]
        for said in (operation["description"], operation["responses"]["503"]["description"]):
            assert [case for case in cases if case not in said] == [], (name, said)


async def test_a_worker_that_does_not_answer_in_time_is_504(worker, driver, csms, monkeypatch):
    monkeypatch.setattr(live, "client", lambda: EngineClient(result_seconds=0.3))
    csms.respond = False  # the Authorize of the idTag is never answered
    body = error_of(
        await driver.post(ACTION.format("API-2", "present-id-tag"), {"id_tag": "SLOW"}), 504
    )
    assert body["detail"] == "The simulator did not finish in time."


class CountingLayer:
    """The channel layer the worker uses, as the API's engine clients see it: the most
    single-charger commands in flight at once (sent, result not yet received) and the most
    of their sends under way at once. A send takes a moment, as one to Redis does, so that
    sends made at once overlap."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.in_flight: set[str] = set()
        self.most_in_flight = 0
        self.sending = 0
        self.most_sending = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.layer, name)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if message.get("charger_id") is None:  # a probe's or a summary's question
            await self.layer.group_send(group, message)
            return
        self.in_flight.add(message["request_id"])
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        self.sending += 1
        self.most_sending = max(self.most_sending, self.sending)
        try:
            await asyncio.sleep(0.2)
            await self.layer.group_send(group, message)
        finally:
            self.sending -= 1

    async def receive(self, channel: str) -> Any:
        message = await self.layer.receive(channel)
        if message.get("type") == contract.EVENT_COMMAND_RESULT:
            self.in_flight.discard(message.get("request_id"))
        return message


async def test_the_in_flight_limits_hold_for_the_process_not_per_request(
    worker, driver, monkeypatch
):
    """The API makes an engine client per request, and the limits were kept on the client:
    a thousand requests at once (a scenario across 1,000 chargers) each took a Redis pooled
    connection and waited on the process's one reply list (capacity 1,500), whose overflow
    drops replies, read as "no worker". Past the limits requests queue, and all answer."""
    monkeypatch.setattr(engine_client, "MAX_IN_FLIGHT", 2)
    monkeypatch.setattr(engine_client, "MAX_CONCURRENT_SENDS", 1)
    layer = CountingLayer(get_channel_layer())
    monkeypatch.setattr(live, "client", lambda: EngineClient(layer))
    # Each holds its worker's answer for its wait, never met: the requests overlap.
    asked = [driver.get(STATE.format("API-1"), wait_for="Charging", timeout=1) for _ in range(5)]
    answers = await asyncio.gather(*asked)
    assert [a.status_code for a in answers] == [200] * 5, [a.content for a in answers]
    assert all(a.json()["wait"]["met"] is False for a in answers)
    assert (layer.most_in_flight, layer.most_sending) == (2, 1)


# -- actions and state --------------------------------------------------------------------------


async def test_a_session_end_to_end_plug_in_id_tag_wait_for_charging_then_stop(
    worker, driver, csms
):
    plugged = await driver.post(
        ACTION.format("API-1", "plug-in"),
        {"connector_id": 1, "soc": 30, "target_soc": 80},
        wait_for="Preparing",
    )
    assert plugged.status_code == 200, plugged.content
    assert plugged.json()["wait"]["met"] is True

    started = await driver.post(
        ACTION.format("API-1", "present-id-tag"),
        {"connector_id": 1, "id_tag": "E2E-TAG"},
        wait_for="Charging",
        timeout=10,
    )
    assert started.status_code == 200, started.content
    answer = started.json()
    assert answer["wait"] == {
        "condition": "Charging",
        "met": True,
        "status": "Charging",
        "waited": answer["wait"]["waited"],
    }
    assert answer["charger"]["evses"][0]["id_tag"] == "E2E-TAG"
    start = await csms.wait_for("API-1", "StartTransaction", message_type=2)
    assert start.payload["idTag"] == "E2E-TAG"
    assert start.payload["connectorId"] == 1
    await wait_until(lambda: any(t.cp_id == "API-1" for t in csms.transactions.values()))

    state = (await driver.get(STATE.format("API-1"))).json()
    assert state["charger"]["evses"][0]["status"] == "Charging"

    stopped = await driver.post(ACTION.format("API-1", "stop"), wait_for="Finishing")
    assert stopped.status_code == 200, stopped.content
    assert stopped.json()["wait"]["met"] is True
    stop = await csms.wait_for("API-1", "StopTransaction", message_type=2)
    assert stop.payload["reason"] == "Local"
    transaction = next(t for t in csms.transactions.values() if t.cp_id == "API-1")
    await wait_until(lambda: transaction.stopped, message="the CSMS to record the stop")

    unplugged = await driver.post(ACTION.format("API-1", "unplug"), wait_for="Available")
    assert unplugged.json()["charger"]["evses"][0]["status"] == "Available"


async def test_a_state_request_reads_the_register_as_of_now_not_the_last_sample(worker, driver):
    """The meter visits a steadily charging AC connector only at its events: between two
    samples (60 s) the state's register and SoC stood still, then jumped."""
    # No wait_for: a charger someone waits on is watched, and a watched one is brought up
    # to date at every flush for its page anyway.
    await driver.post(ACTION.format("API-1", "plug-in"), {"connector_id": 1, "soc": 30})
    await driver.post(
        ACTION.format("API-1", "present-id-tag"), {"connector_id": 1, "id_tag": "NOW-TAG"}
    )
    charger = loaded(worker, "API-1")
    await wait_until(lambda: charger.evse(1).power_w > 0, timeout=10, message="charging")
    assert charger.config.as_int("MeterValueSampleInterval") >= 30

    async def register() -> float:
        state = (await driver.get(STATE.format("API-1"))).json()
        return float(state["charger"]["evses"][0]["register_wh"])

    first = await register()
    deadline = asyncio.get_running_loop().time() + 10  # a sample is 30 s or more away
    while await register() <= first:
        assert asyncio.get_running_loop().time() < deadline, "the register stood still"
        await asyncio.sleep(0.2)


async def test_a_chargers_state_gives_its_network_conditions_and_a_cut(worker, driver):
    """What the charger page shows of them: a script that set them reads them back."""
    before = (await driver.get(STATE.format("API-1"))).json()["charger"]
    assert before["network"] == {"latency_ms": 0, "jitter_ms": 0, "drop_rate": 0.0}
    assert before["offline_until"] is None
    assert before["firmware_status"] == "Idle" and before["firmware_waiting"] is None
    args = {"latency_ms": 120, "jitter_ms": 30, "drop_rate": 0.25}
    await driver.post(ACTION.format("API-1", "set-network"), args)
    state = (await driver.get(STATE.format("API-1"))).json()["charger"]
    assert state["network"] == args
    asked = time.time()
    cut = await driver.post(ACTION.format("API-1", "cut-network"), {"seconds": 30})
    answered = time.time()
    # 30 s after the cut, which the worker made between the request and its answer (the
    # snapshot gives it to 0.1 s).
    offline_until = cut.json()["charger"]["offline_until"]
    assert offline_until is not None
    assert asked + 30 - 0.06 <= offline_until <= answered + 30 + 0.06


async def test_a_suspended_connectors_state_says_why(worker, driver, csms):
    """The reason a connector is in its status (the StatusNotification's info) was on the
    charger page only: a script reading the state saw SuspendedEVSE and no cause."""
    from tests.test_evse_offer import install, profile

    await driver.post(ACTION.format("API-1", "plug-in"), {"connector_id": 1, "soc": 30})
    await driver.post(
        ACTION.format("API-1", "present-id-tag"), {"connector_id": 1, "id_tag": "WHY-TAG"}
    )
    charger = loaded(worker, "API-1")
    await wait_until(lambda: charger.evse(1).power_w > 0, timeout=10, message="charging")
    state = (await driver.get(STATE.format("API-1"))).json()["charger"]["evses"][0]
    assert (state["status"], state["info"]) == ("Charging", None)
    await install(csms, "API-1", 1, profile("TxDefaultProfile", 4))
    answer = await driver.get(
        STATE.format("API-1"), wait_for="SuspendedEVSE", connector_id=1, timeout=10
    )
    state = answer.json()["charger"]["evses"][0]
    assert state["status"] == "SuspendedEVSE"
    assert state["info"] == "charging profile allows 4.0 A per phase (6 A min)"
    # A lower limit while the car waits: the state says the new figure, not the first.
    await install(csms, "API-1", 1, profile("TxDefaultProfile", 3))
    why = "charging profile allows 3.0 A per phase (6 A min)"
    await wait_until(lambda: charger.evse(1).info == why, timeout=10, message="the new reason")
    state = (await driver.get(STATE.format("API-1"))).json()["charger"]["evses"][0]
    assert (state["status"], state["info"]) == ("SuspendedEVSE", why)


async def test_a_stopped_transaction_is_no_longer_the_connectors(worker, driver, csms):
    """Once stopped, a connector's state names no transaction: neither its idTag nor the
    CSMS's id of the transaction that ended (the dashboard showed "– / 6" under a
    connector back to Available)."""
    plugged = await driver.post(
        ACTION.format("API-1", "plug-in"), {"connector_id": 1, "soc": 30}, wait_for="Preparing"
    )
    assert plugged.status_code == 200, plugged.content
    started = await driver.post(
        ACTION.format("API-1", "present-id-tag"),
        {"connector_id": 1, "id_tag": "ENDED-TAG"},
        wait_for="Charging",
        timeout=10,
    )
    assert started.status_code == 200, started.content
    charger = loaded(worker, "API-1")
    await wait_until(
        lambda: charger.evses[0].transaction_id is not None, message="the CSMS's transaction id"
    )
    state = (await driver.get(STATE.format("API-1"))).json()
    assert state["charger"]["evses"][0]["transaction_id"] is not None

    stopped = await driver.post(ACTION.format("API-1", "stop"), wait_for="Finishing")
    assert stopped.status_code == 200, stopped.content
    evse = stopped.json()["charger"]["evses"][0]
    assert (evse["status"], evse["id_tag"], evse["transaction_id"]) == ("Finishing", None, None)

    unplugged = await driver.post(ACTION.format("API-1", "unplug"), wait_for="Available")
    evse = unplugged.json()["charger"]["evses"][0]
    assert (evse["status"], evse["id_tag"], evse["transaction_id"]) == ("Available", None, None)


async def test_a_wait_that_times_out_is_200_with_met_false(worker, driver):
    response = await driver.post(
        ACTION.format("API-2", "plug-in"), {}, wait_for="Charging", timeout=0.3
    )
    assert response.status_code == 200
    wait = response.json()["wait"]
    assert (wait["met"], wait["status"]) == (False, "Preparing")


async def test_a_state_request_waits_until_the_status_holds(worker, driver):
    waiting = asyncio.create_task(driver.get(STATE.format("API-2"), wait_for="Faulted", timeout=10))
    await wait_until(lambda: len(worker.conditions) == 1, message="the wait to register")
    fault = await driver.post(
        ACTION.format("API-2", "inject-fault"), {"error_code": "HighTemperature"}
    )
    assert fault.status_code == 200
    state = (await asyncio.wait_for(waiting, 10)).json()
    assert state["wait"]["met"] is True
    assert state["charger"]["evses"][0]["error_code"] == "HighTemperature"
    cleared = await driver.post(ACTION.format("API-2", "clear-fault"), wait_for="Available")
    assert cleared.json()["wait"]["met"] is True


async def test_a_repeated_fault_is_a_409_saying_it_is_already_faulted(worker, driver, csms):
    """QA: the same fault injected again answered 200 as if it had done something (no
    StatusNotification went out). Refused as a second pause-ev is; another error code on
    the faulted connector is a change, and is done."""

    def status_of(code: str) -> Any:
        return csms.wait_for(
            "API-2",
            "StatusNotification",
            predicate=lambda entry: entry.payload.get("errorCode") == code,
            message_type=2,
        )

    fault = ACTION.format("API-2", "inject-fault")
    first = await driver.post(fault, {"error_code": "HighTemperature"}, wait_for="Faulted")
    assert first.status_code == 200 and first.json()["wait"]["met"] is True
    faulted = await status_of("HighTemperature")
    again = error_of(await driver.post(fault, {"error_code": "HighTemperature"}), 409)
    assert again["detail"] == "connector 1 is already faulted (HighTemperature)"
    other = await driver.post(fault, {"error_code": "GroundFailure"})
    assert other.status_code == 200, other.content
    assert other.json()["charger"]["evses"][0]["error_code"] == "GroundFailure"
    changed = await status_of("GroundFailure")
    # Nothing went to the CSMS for the repeat: the next StatusNotification is the change's.
    between = csms.log[csms.log.index(faulted) + 1 : csms.log.index(changed)]
    assert not [
        e
        for e in between
        if e.cp_id == "API-2" and e.action == "StatusNotification" and e.message_type == 2
    ]
    cleared = await driver.post(ACTION.format("API-2", "clear-fault"), wait_for="Available")
    assert cleared.json()["wait"]["met"] is True


async def test_a_state_request_for_a_connector_the_charger_lacks_is_a_422(worker, driver):
    response = await driver.get(STATE.format("API-2"), connector_id=5)
    assert response.status_code == 422, response.content
    assert response.json()["errors"][0]["message"] == "API-2 has no connector 5"
    assert (await driver.get(STATE.format("API-1"), connector_id=2)).status_code == 200


async def test_pause_resume_cut_network_reboot_disconnect_connect(worker, driver, csms):
    await driver.post(ACTION.format("API-2", "plug-in"), {})
    await driver.post(
        ACTION.format("API-2", "present-id-tag"), {"id_tag": "T"}, wait_for="Charging"
    )
    paused = await driver.post(ACTION.format("API-2", "pause-ev"), wait_for="SuspendedEV")
    assert paused.json()["wait"]["met"] is True
    resumed = await driver.post(ACTION.format("API-2", "resume-ev"), wait_for="Charging")
    assert resumed.json()["wait"]["met"] is True

    connects = csms.connects["API-2"]
    cut = await driver.post(ACTION.format("API-2", "cut-network"), {"seconds": 1})
    assert cut.json()["message"] == "network of API-2 cut for 1 s"
    # Answered once the link is down: its snapshot said "online" while the network was cut.
    assert cut.json()["charger"]["link"] == "offline"
    assert cut.json()["charger"]["link_error"].startswith("network cut (")
    back = await driver.get(STATE.format("API-2"), wait_for="Accepted", timeout=15)
    assert back.json()["wait"]["met"] is True
    assert csms.connects["API-2"] == connects + 1
    # Waiting for Accepted is waiting for the reconnect (it was met at once, still online).
    again = await driver.post(
        ACTION.format("API-2", "cut-network"), {"seconds": 1}, wait_for="Accepted", timeout=15
    )
    assert again.json()["wait"]["met"] is True
    assert csms.connects["API-2"] == connects + 2

    rebooted = await driver.post(ACTION.format("API-2", "reboot"), wait_for="Accepted")
    assert rebooted.json()["wait"]["met"] is True
    stop = await csms.wait_for("API-2", "StopTransaction", message_type=2)
    assert stop.payload["reason"] == "PowerLoss"

    gone = await driver.post(ACTION.format("API-2", "disconnect"))
    assert gone.json()["charger"]["link"] == "offline"
    again = await driver.post(ACTION.format("API-2", "connect"), wait_for="Accepted")
    assert again.json()["wait"]["met"] is True


async def test_a_reboot_does_to_a_plugged_in_vehicle_what_its_description_says(worker, driver):
    """QA: the reboot's description (the API's, the MCP tool's) said the plugged-in vehicles
    were gone; they stay, and an agent that read it took a Preparing connector for a bug."""
    await driver.post(ACTION.format("API-2", "plug-in"), {})
    rebooted = await driver.post(ACTION.format("API-2", "reboot"), wait_for="Accepted")
    assert rebooted.json()["wait"]["met"] is True
    back = await driver.get(STATE.format("API-2"), wait_for="Preparing", timeout=15)
    assert back.json()["wait"]["met"] is True
    assert back.json()["charger"]["evses"][0]["vehicle"]
    reboot = next(action for action in live.ACTIONS if action.command == "reboot")
    assert "gone" not in reboot.description
    assert "the plugged-in vehicles stay" in reboot.description


async def test_a_stop_during_a_network_cut_says_its_stop_transaction_waits(worker, driver, csms):
    """QA: "transaction on connector 1 stopped" while the StopTransaction reached the CSMS
    only after the reconnect, 3 s later."""
    await driver.post(ACTION.format("API-2", "plug-in"), {})
    await driver.post(
        ACTION.format("API-2", "present-id-tag"), {"id_tag": "T"}, wait_for="Charging"
    )
    await csms.wait_for("API-2", "StartTransaction", direction="out", message_type=3)
    await driver.post(ACTION.format("API-2", "cut-network"), {"seconds": 2})
    stopped = await driver.post(ACTION.format("API-2", "stop"), {"connector_id": 1})
    assert stopped.json()["message"] == (
        "transaction on connector 1 stopped; its StopTransaction is sent once the charger is "
        "back online"
    )
    assert not [e for e in csms.log if e.action == "StopTransaction"]
    stop = await csms.wait_for("API-2", "StopTransaction", message_type=2, timeout=15)
    assert stop.payload["reason"] == "Local"


async def test_a_network_cuts_count_is_as_of_each_state_request(worker, driver):
    """The state said "network cut (11 s left)" for the whole of a 12 s cut: the count was
    the one of the moment the link went down."""
    await driver.post(ACTION.format("API-2", "cut-network"), {"seconds": 8})
    left = []
    for _ in range(2):
        state = (await driver.get(STATE.format("API-2"))).json()["charger"]
        found = re.fullmatch(r"network cut \((\d+) s left\)", state["link_error"])
        assert found is not None, state["link_error"]
        left.append(int(found.group(1)))
        await asyncio.sleep(2.5)
    assert left[1] < left[0] <= 8
    back = await driver.get(STATE.format("API-2"), wait_for="Accepted", timeout=20)
    assert back.json()["wait"]["met"] is True


async def test_connect_tries_at_once_a_charger_waiting_out_its_backoff(driver, monkeypatch):
    """A charger whose CSMS was down waits longer and longer between tries (up to a
    minute): `connect`, say after the CSMS came back, answered "already connected" and it
    waited on; it now tries at once."""
    monkeypatch.setattr(client_module.Backoff, "next_delay", lambda self: 120.0)
    port = free_port()
    location = await database_sync_to_async(make_location)("Backoff Site")
    await database_sync_to_async(make_charger)(
        "API-DEAD", evses=1, csms_url=f"ws://127.0.0.1:{port}/ocpp", location=location
    )
    service = await start_worker(["API-DEAD"])
    csms = CentralSystem()
    try:
        charger = loaded(service, "API-DEAD")
        await wait_until(lambda: charger.link_error != "", message="a failed connection")
        await csms.start(host="127.0.0.1", port=port)
        answer = await driver.post(
            ACTION.format("API-DEAD", "connect"), wait_for="Accepted", timeout=15
        )
        assert answer.status_code == 200, answer.content
        assert "was waiting to retry" in answer.json()["message"]
        assert answer.json()["wait"]["met"] is True
        again = await driver.post(ACTION.format("API-DEAD", "connect"))
        assert again.json()["message"] == "API-DEAD is already connected"
    finally:
        await service.stop()
        await csms.stop()


async def test_request_certificate_gets_the_charger_a_certificate_from_its_csms(
    worker, driver, csms
):
    asked = await driver.post(ACTION.format("API-1", "request-certificate"))
    assert asked.json()["message"] == "API-1 asked its CSMS for a certificate (SignCertificate)"
    await csms.wait_for("API-1", "CertificateSigned", message_type=3, direction="in")
    assert csms.certificate_signed_answers["API-1"] == ["Accepted"]
    assert "PRIVATE KEY" not in str(asked.json())


# -- the fleet ----------------------------------------------------------------------------------


async def test_the_fleet_summary_counts_every_connector_and_site(worker, driver, site):
    await driver.post(ACTION.format("API-1", "inject-fault"), {"connector_id": 2})
    summary = (await driver.get(SUMMARY)).json()
    assert (summary["shards"], summary["answered"], summary["missing"]) == (1, [0], [])
    assert summary["chargers"] == 2
    # API-OFF is disabled: not a charger of the fleet's running count nor of any shard's.
    assert (summary["chargers_enabled"], summary["chargers_on_missing_shards"]) == (2, 0)
    assert summary["statuses"] == {"Available": 2, "Faulted": 1}
    located = summary["locations"][0]
    assert (located["location_id"], located["chargers"], located["held_back"]) == (site.pk, 2, 0)
    # The site's settings as the worker applies them (make_location: no limit).
    assert (located["grid_limit_w"], located["load_management"]) == (None, False)


async def test_a_bulk_plug_in_on_every_available_connector_of_a_site(worker, driver, site):
    await driver.post(ACTION.format("API-1", "inject-fault"), {"connector_id": 2})
    response = await driver.post(
        BULK.format("plug-in"),
        {"filter": {"location_id": site.pk, "status": "Available"}, "args": {"soc": 60}},
        wait_for="Preparing",
    )
    assert response.status_code == 200, response.content
    bulk = response.json()
    assert (bulk["total"], bulk["succeeded"], bulk["failed"]) == (2, 2, 0)
    assert [(r["charge_point_id"], r["connector_id"]) for r in bulk["results"]] == [
        ("API-1", 1),
        ("API-2", 1),
    ]
    assert all(r["status"] == "Preparing" and r["wait"]["met"] for r in bulk["results"])
    assert loaded(worker, "API-2").evses[0].soc == 60.0


async def test_a_bulk_on_every_charger_reaches_each_enabled_one(worker, driver):
    """What the fleet page's "every charger of the fleet" sends: no list of ids, which a
    request caps at 10,000."""
    response = await driver.post(
        BULK.format("cut-network"), {"filter": {"every": True}, "args": {"seconds": 1}}
    )
    assert response.status_code == 200, response.content
    bulk = response.json()
    assert [r["charge_point_id"] for r in bulk["results"]] == ["API-1", "API-2"]
    assert (bulk["total"], bulk["succeeded"]) == (2, 2)
    # Narrowed by a status, as any filter: only the chargers with an Available connector.
    await driver.post(BULK.format("plug-in"), {"filter": {"charge_point_ids": ["API-2"]}})
    busy = await driver.post(
        BULK.format("unplug"), {"filter": {"every": True, "status": "Preparing"}}
    )
    assert [r["charge_point_id"] for r in busy.json()["results"]] == ["API-2"]


async def test_a_bulk_by_ids_answers_for_each_one_known_or_not(worker, driver):
    response = await driver.post(
        BULK.format("cut-network"),
        {"filter": {"charge_point_ids": ["API-1", "API-OFF", "NOPE"]}, "args": {"seconds": 1}},
    )
    bulk = response.json()
    by_id = {r["charge_point_id"]: r for r in bulk["results"]}
    assert by_id["API-1"]["ok"] is True
    assert (by_id["API-OFF"]["ok"], by_id["API-OFF"]["error"]) == (False, "not_running")
    assert by_id["API-OFF"]["message"] == "API-OFF is disabled"
    assert (by_id["NOPE"]["ok"], by_id["NOPE"]["error"]) == (False, "not_found")
    assert (bulk["total"], bulk["succeeded"], bulk["failed"]) == (3, 1, 2)
    refused = await driver.post(BULK.format("stop"), {"filter": {"charge_point_ids": ["API-2"]}})
    assert refused.json()["results"][0]["message"] == "connector 1 has no transaction"


async def test_a_bulk_action_gets_a_result_per_charger_from_both_shards(csms, driver, settings):
    settings.CHARGESIM_SHARDS = 2
    by_shard = ids_on_both_shards("API-SHARD-")
    location = await database_sync_to_async(make_location)("Two Workers")
    await database_sync_to_async(make_vehicle)()
    every = sorted(cp_id for ids in by_shard.values() for cp_id in ids)
    for cp_id in every:
        await database_sync_to_async(make_charger)(
            cp_id, evses=1, csms_url=csms.url, location=location
        )
    workers = [await start_worker(by_shard[shard], shard, 2) for shard in (0, 1)]
    try:
        for shard, service in enumerate(workers):
            await booted(service, *by_shard[shard])
        response = await driver.post(
            BULK.format("plug-in"), {"filter": {"location_id": location.pk}}, wait_for="Preparing"
        )
        bulk = response.json()
        assert [r["charge_point_id"] for r in bulk["results"]] == every
        assert bulk["succeeded"] == len(every)
        summary = (await driver.get(SUMMARY)).json()
        assert (summary["answered"], summary["statuses"]) == ([0, 1], {"Preparing": 4})

        await workers[0].stop()
        half = (
            await driver.post(BULK.format("unplug"), {"filter": {"location_id": location.pk}})
        ).json()
        assert half["missing_shards"] == [0]
        results = {r["charge_point_id"]: r for r in half["results"]}
        assert set(results) == set(every)
        assert all(results[cp_id]["error"] == "no_worker" for cp_id in by_shard[0])
        assert all(results[cp_id]["ok"] for cp_id in by_shard[1])
        # The totals say how many chargers there are in all, not only the running shard's.
        partial = (await driver.get(SUMMARY)).json()
        assert (partial["missing"], partial["chargers"]) == ([0], len(by_shard[1]))
        assert partial["chargers_enabled"] == len(every)
        assert partial["chargers_on_missing_shards"] == len(by_shard[0])
    finally:
        for service in workers:
            await service.stop()
