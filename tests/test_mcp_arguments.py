"""The MCP tools' arguments, called in this process through the server's own `call_tool`:
a name a tool does not take is refused with the nearest it does, never ignored."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult

from api.auth import Caller
from api.mcp_calls import CALLER
from api.mcp_server import build
from tests.cast import make_charger, make_location, make_open_transaction, make_superuser
from tests.test_api_fleet import _other_shard


def refusal_of(name: str, arguments: dict[str, Any]) -> str:
    """The text of the tool error a call is refused with."""
    server = build()

    async def call() -> None:
        await server.call_tool(name, arguments)

    with pytest.raises(ToolError) as refused:
        asyncio.run(call())
    return str(refused.value)


@pytest.mark.parametrize(
    ("tool", "arguments", "wanted"),
    [
        ("list_chargers", {"filters": {"locaton": 999}}, "filters.locaton: Not an argument"),
        ("list_chargers", {"filters": {"locaton": 999}}, "did you mean 'location'?"),
        (
            "list_chargers",
            {"location": 999},
            'location: a filter: give it inside filters, as {"filters": {"location": ...}}',
        ),
        (
            "list_locations",
            {"limt": 5},
            "limt: Not an argument of this tool: did you mean 'limit'?",
        ),
        (
            "get_charger",
            {"charge_point_id": "CP", "extra": 1},
            "extra: Not an argument of this tool",
        ),
        (
            "plug_in",
            {"charge_point_id": "CP", "socc": 99},
            "socc: Not an argument of this tool: did you mean 'soc'?",
        ),
        (
            "create_location",
            {"location": {"name": "X", "citty": "Y"}},
            "location.citty: Not an argument of this tool: did you mean 'city'?",
        ),
        (
            "create_chargers",
            {"chargers": [{"charge_point_id": "A", "locaton": 1}]},
            "chargers.0.locaton",
        ),
        (
            "bulk_action",
            {"action": "plug_in", "filter": {"location_id": 1}, "args": {"socc": 1}},
            # The action's, not the tool's: bulk_action takes arguments, connect none.
            "args.socc: Not an argument of the action plug_in: did you mean 'soc'?",
        ),
        (
            "bulk_action",
            {"action": "connect", "filter": {"every": True}, "args": {"x": 1}},
            "args.x: Not an argument of the action connect: it takes no arguments.",
        ),
    ],
)
def test_a_name_a_tool_does_not_take_is_refused_with_the_nearest_it_does(tool, arguments, wanted):
    text = refusal_of(tool, arguments)
    assert "The request is not valid." in text
    assert wanted in text


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("cut_network", {"charge_point_id": "CP", "seconds": "1"}, "seconds"),
        ("plug_in", {"charge_point_id": "CP", "connector_id": True}, "connector_id"),
        ("list_locations", {"limit": "5"}, "limit"),
        ("set_clock_skew", {"charge_point_id": "CP", "seconds": False}, "seconds"),
        (
            "create_location",
            {"location": {"name": "X", "rotation_minutes": False}},
            "location.rotation_minutes",
        ),
    ],
)
def test_a_boolean_or_a_string_for_a_number_is_refused(tool, arguments, field):
    text = refusal_of(tool, arguments)
    assert f"{field}: Input should be a valid " in text, text


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("set_answer_override", {"charge_point_id": "CP", "clear": "true"}, "clear"),
        ("set_answer_override", {"charge_point_id": "CP", "clear": 1}, "clear"),
        (
            "change_charger",
            {"charge_point_id": "CP", "changes": {"enabled": "no"}},
            "changes.enabled",
        ),
        (
            "create_charger",
            {"charger": {"charge_point_id": "CP", "location": 1}, "wait": "false"},
            "wait",
        ),
        (
            "bulk_action",
            {"action": "set_answer_override", "filter": {"location_id": 1}, "args": {"clear": 0}},
            "args.clear",
        ),
    ],
)
def test_a_string_or_a_number_for_a_boolean_is_refused(tool, arguments, field):
    text = refusal_of(tool, arguments)
    assert f"{field}: Input should be a JSON boolean: true or false" in text, text


def test_an_unknown_name_inside_an_object_argument_is_said_once():
    text = refusal_of("change_charger", {"charge_point_id": "CP", "changes": {"vendr": "x"}})
    assert text.count("vendr") == 1, text
    assert "changes.vendr: Not an argument of this tool: did you mean 'vendor'?" in text


def test_a_tool_that_takes_no_arguments_says_so():
    text = refusal_of("whoami", {"x": 1})
    assert "x: Not an argument of this tool: it takes no arguments." in text, text


@pytest.mark.parametrize(
    ("tool", "name"),
    [
        ("get_location", "location_id"),
        ("get_vehicle_model", "vehicle_model_id"),
        ("get_scenario_run", "run_id"),
        ("cancel_scenario_run", "run_id"),
    ],
)
def test_an_id_out_of_range_is_refused_as_the_rest_path_refuses_it(tool, name):
    """get_location -1 answered "No location -1." where REST answers 422 "greater than or
    equal to 1"."""
    text = refusal_of(tool, {name: -1})
    assert f"{name}: Input should be greater than or equal to 1" in text, text
    assert "The request is not valid." in text


def test_a_time_that_cannot_be_read_says_what_a_time_is():
    text = refusal_of("charger_log", {"charge_point_id": "CP", "since": "1e20"})
    assert "since: Enter a time: ISO 8601" in text, text


def test_the_actions_own_rules_hold_for_their_tools():
    below = refusal_of("plug_in", {"charge_point_id": "CP", "soc": 80, "target_soc": 50})
    assert "target_soc: " in below and "below" in below
    tag = refusal_of("present_id_tag", {"charge_point_id": "CP", "id_tag": "Zoë-1"})
    assert "id_tag: " in tag and "printable ASCII" in tag


def test_every_tools_schema_says_it_takes_no_other_names():
    tools = asyncio.run(build().list_tools())
    open_objects = []

    def walk(schema: Any, where: str) -> None:
        if isinstance(schema, dict):
            if "properties" in schema and schema.get("additionalProperties") is not False:
                open_objects.append(where)
            for key, value in schema.items():
                walk(value, f"{where}/{key}")
        elif isinstance(schema, list):
            for index, item in enumerate(schema):
                walk(item, f"{where}/{index}")

    for tool in tools:
        assert tool.input_schema["additionalProperties"] is False, tool.name
        walk(tool.input_schema, tool.name)
    assert open_objects == []


def test_every_argument_of_every_tool_says_what_it_is():
    """QA: an agent read connector_id, error_code, info, latency_ms, the list tools' filters
    and create_charger's charger with nothing but a type."""
    undescribed = [
        f"{tool.name}.{name}"
        for tool in asyncio.run(build().list_tools())
        for name, schema in tool.input_schema.get("properties", {}).items()
        if not schema.get("description")
    ]
    assert undescribed == []


def test_only_the_tools_that_add_to_the_fleet_say_they_destroy_nothing():
    """QA: every tool that writes said destructiveHint false ("only additive updates", which a
    client may run without asking), stop, reboot and cancel_scenario_run among them."""
    tools = {tool.name: tool for tool in asyncio.run(build().list_tools())}
    additive = {"create_location", "create_vehicle_model", "create_charger", "create_chargers"}
    for name, tool in tools.items():
        hints = tool.annotations
        assert hints is not None, name
        if hints.read_only_hint:
            continue
        assert hints.destructive_hint is (name not in additive), name
    for name in ("stop", "reboot", "change_charger", "bulk_action", "cancel_scenario_run"):
        assert tools[name].annotations.destructive_hint is True  # type: ignore[union-attr]


def test_no_tool_description_sends_the_agent_to_an_http_request():
    """QA: start_scenario_run said "follow it with GET /scenarios/runs/{id}", change_charger
    "`?force=true` renames it anyway", list_scenario_runs "`status=failed&status=error`"."""
    tools = {tool.name: tool for tool in asyncio.run(build().list_tools())}
    for tool in tools.values():
        for http_words in ("GET /", "POST /", "?force", "status=failed"):
            assert http_words not in (tool.description or ""), (tool.name, http_words)
    assert "follow it with get_scenario_run" in (tools["start_scenario_run"].description or "")
    assert "`force: true` renames it anyway" in (tools["change_charger"].description or "")
    assert '`["failed", "error"]`' in (tools["list_scenario_runs"].description or "")


@pytest.mark.django_db(transaction=True)
async def test_the_filters_a_tool_takes_still_filter():
    depot = await sync_to_async(make_location)("Depot")
    other = await sync_to_async(make_location)("Other")
    await sync_to_async(make_charger)("AT-DEPOT", location=depot)
    await sync_to_async(make_charger)("ELSEWHERE", location=other)
    admin = await sync_to_async(make_superuser)()
    token = CALLER.set(Caller(user=admin))
    try:
        result = await build().call_tool("list_chargers", {"filters": {"location": depot.pk}})
    finally:
        CALLER.reset(token)
    assert isinstance(result, CallToolResult) and result.structured_content is not None
    page = result.structured_content.get("result", result.structured_content)
    assert [c["charge_point_id"] for c in page["items"]] == ["AT-DEPOT"]


@pytest.mark.django_db(transaction=True)
async def test_a_scenario_that_is_not_yaml_is_refused_without_an_empty_path():
    """QA: "line 3, column 1: : not valid YAML": a problem of the whole text has no path."""
    admin = await sync_to_async(make_superuser)()
    token = CALLER.set(Caller(user=admin))
    try:
        with pytest.raises(ToolError) as refused:
            await build().call_tool("start_scenario_run", {"run": {"source": "steps: [\n"}})
    finally:
        CALLER.reset(token)
    text = str(refused.value)
    assert "line 2, column 1: not valid YAML" in text, text
    assert ": :" not in text


def test_no_tool_description_names_an_http_status():
    """QA13: charger_state listed "Errors: 404 no such charger; 409 ...", start_scenario_run
    "a 422", "a 429 (with Retry-After)": a tool's caller sees no status, only the error's
    words. Endpoint descriptions keep them (OpenAPI)."""
    tools = {tool.name: tool for tool in asyncio.run(build().list_tools())}
    status = re.compile(r"\b(?:20[0-4]|4[0-2][0-9]|50[0-4])\b|Retry-After")
    for tool in tools.values():
        assert status.search(tool.description or "") is None, (tool.name, tool.description)
    assert "Errors: no such charger; " in (tools["charger_state"].description or "")
    assert "one more is an error." in (tools["start_scenario_run"].description or "")


@pytest.mark.django_db(transaction=True)
async def test_change_charger_takes_the_force_its_description_and_its_409_offer(settings):
    """QA: the tool's description and its refusal of a rename into another shard mid-session
    said "?force=true renames it anyway", and `force` was "Not an argument of this tool"."""
    settings.CHARGESIM_SHARDS = 2
    charger = await sync_to_async(make_charger)("TO-RENAME")
    await sync_to_async(make_open_transaction)(charger, connector_id=1, transaction_id=77)
    _, other = _other_shard("TO-RENAME")
    admin = await sync_to_async(make_superuser)()
    rename = {"charge_point_id": "TO-RENAME", "changes": {"charge_point_id": other}}
    token = CALLER.set(Caller(user=admin))
    try:
        with pytest.raises(ToolError) as refused:
            await build().call_tool("change_charger", {**rename, "wait": False})
        result = await build().call_tool("change_charger", {**rename, "wait": False, "force": True})
    finally:
        CALLER.reset(token)
    assert "has transaction 77 in progress" in str(refused.value)
    assert "(With force: true it is renamed anyway.)" in str(refused.value)
    assert "?force" not in str(refused.value)
    assert isinstance(result, CallToolResult)
    assert not result.is_error and result.structured_content is not None, result.content
    written = result.structured_content.get("result", result.structured_content)
    assert written["charger"]["charge_point_id"] == other


def test_a_refusal_names_every_problem_of_the_call():
    text = refusal_of("list_chargers", {"limit": "5", "offset": -1, "limt": 3})
    assert "\nlimit: Input should be a valid integer" in text
    assert "\noffset: Input should be greater than or equal to 0" in text
    assert "\nlimt: Not an argument of this tool: did you mean 'limit'?" in text
