"""The MCP server, from the SDK's own client: over stdio (`manage.py mcp` as a subprocess)
and over streamable HTTP (`/mcp` of a real `runsimulator` with a token), against a running
simulator whose demo charger is connected to the built-in CSMS. The tools run the REST
endpoints' own functions, so their answers are the API's (same fields, same refusals)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR

from tests.api_client import bearer
from tests.process import ROOT, ManagePy, free_port, run_manage, wait_for_port

pytestmark = pytest.mark.slow

USERS = """
from django.contrib.auth.models import Permission, User
User.objects.create_user("watcher", password="pw-watcher-1")
viewer = User.objects.create_user("viewer", password="pw-viewer-1")
viewer.user_permissions.add(*Permission.objects.filter(codename="view_charger"))
"""
CHARGER = "DEMO-0001"
TOOLS = {
    "whoami",
    "list_locations",
    "get_location",
    "create_location",
    "list_vehicle_models",
    "get_vehicle_model",
    "create_vehicle_model",
    "list_chargers",
    "get_charger",
    "create_charger",
    "create_chargers",
    "change_charger",
    "charger_state",
    "fleet_summary",
    "connect",
    "disconnect",
    "reboot",
    "plug_in",
    "present_id_tag",
    "stop",
    "unplug",
    "pause_ev",
    "resume_ev",
    "inject_fault",
    "clear_fault",
    "cut_network",
    "request_certificate",
    "set_answer_override",
    "set_network",
    "close_connection",
    "set_clock_skew",
    "bulk_action",
    "charger_log",
    "start_scenario_run",
    "get_scenario_run",
    "list_scenario_runs",
    "cancel_scenario_run",
}


@dataclass
class Site:
    var_dir: Path
    url: str  # http://127.0.0.1:PORT
    admin_token: str
    watcher_token: str
    viewer_token: str
    process: ManagePy


def token_for(var_dir: Path, username: str) -> str:
    created = run_manage(var_dir, "apitoken", "create", "--user", username, "--name", "mcp")
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    var_dir = tmp_path_factory.mktemp("mcp-site")
    port, csms_port = free_port(), free_port()
    process = ManagePy(
        var_dir,
        "runsimulator",
        "--demo",
        "--demo-chargers",
        "1",
        "--demo-share",
        "0",
        "--no-demo-operations",
        "--port",
        str(port),
        "--csms-port",
        str(csms_port),
    )
    try:
        wait_for_port(port, proc=process.proc)
        process.wait_for_output("fleet: 1/1 accepted")
        made = run_manage(var_dir, "shell", "-c", USERS)
        assert made.returncode == 0, made.stderr
        yield Site(
            var_dir,
            f"http://127.0.0.1:{port}",
            token_for(var_dir, "admin"),
            token_for(var_dir, "watcher"),
            token_for(var_dir, "viewer"),
            process,
        )
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0
        for unclean in ("Traceback", "Task was destroyed", "never awaited"):
            assert unclean not in process.output, process.output[-3000:]
    finally:
        process.stop()


@contextlib.asynccontextmanager
async def http_client(site: Site, token: str) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP with the token's header; the HTTP client is
    ours, so ours to close (the transport leaves a given one open)."""
    async with (
        create_mcp_http_client(headers=bearer(token)) as http,
        Client(streamable_http_client(f"{site.url}/mcp", http_client=http)) as client,
    ):
        yield client


def stdio_client(site: Site, user: str) -> Client:
    command = StdioServerParameters(
        command=sys.executable,
        args=["manage.py", "mcp", "--user", user],
        cwd=ROOT,
        env={"CHARGESIM_VAR_DIR": str(site.var_dir)},
    )
    return Client(command)


def post_mcp(site: Site, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    status, body, _ = post_mcp_answer(site, headers)
    return status, body


def post_mcp_answer(
    site: Site, headers: dict[str, str], text: str | None = None
) -> tuple[int, dict[str, object], Any]:
    """`post_mcp` (of a tools/list call, or of `text` as it is), with the answer's headers."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    request = urllib.request.Request(
        f"{site.url}/mcp",
        data=(json.dumps(body) if text is None else text).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read()), answer.headers
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, json.loads(refused.read()), refused.headers


def structured(result) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def error_text(result) -> str:
    assert result.is_error
    return " ".join(block.text for block in result.content)


async def test_stdio_lists_the_tools_and_answers_a_call(site):
    async with stdio_client(site, "admin") as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
        me = structured(await client.call_tool("whoami", {}))
        assert me["username"] == "admin"
        page = structured(await client.call_tool("list_chargers", {"limit": 5}))
        assert page["count"] == 1 and page["items"][0]["charge_point_id"] == CHARGER
        assert "authorization_key" not in page["items"][0]
        # This process runs no engine and the default channel layer is its own: said so,
        # with what to use instead (QA: "No simulator worker is running" beside a running
        # simulator said nothing a user could do).
        state = error_text(await client.call_tool("charger_state", {"charge_point_id": CHARGER}))
        assert "No simulator worker can be reached from this process" in state
        assert "in memory (REDIS_URL is not set)" in state
        assert "/mcp of the process that runs `python manage.py runsimulator`" in state
        # Arguments the SDK refuses are worded as the API's 422, not in pydantic's words.
        wrong = error_text(await client.call_tool("list_chargers", {"limit": "ten", "offset": -1}))
        assert wrong.startswith("Error executing tool list_chargers: The request is not valid.")
        assert "\nlimit: Input should be a valid integer" in wrong
        assert "\noffset: Input should be greater than or equal to 0" in wrong
        assert "pydantic" not in wrong and "type=" not in wrong
        missing = error_text(await client.call_tool("get_location", {}))
        assert missing.endswith("The request is not valid.\nlocation_id: Field required")


async def test_http_drives_a_session_with_wait_for_and_reads_state_summary_and_log(site):
    async with http_client(site, site.admin_token) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        assert "wait_for" in tools["plug_in"].input_schema["properties"]
        me = structured(await client.call_tool("whoami", {}))
        assert me["username"] == "admin" and me["via"] == "token"

        plugged = structured(
            await client.call_tool(
                "plug_in",
                {"charge_point_id": CHARGER, "soc": 30, "wait_for": "Preparing", "timeout": 10},
            )
        )
        assert plugged["wait"]["met"] is True
        started = structured(
            await client.call_tool(
                "present_id_tag",
                {"charge_point_id": CHARGER, "id_tag": "MCP-1", "wait_for": "Charging"},
            )
        )
        assert started["wait"] == {**started["wait"], "met": True, "status": "Charging"}
        evse = started["charger"]["evses"][0]
        assert evse["id_tag"] == "MCP-1" and evse["status"] == "Charging"

        state = structured(await client.call_tool("charger_state", {"charge_point_id": CHARGER}))
        assert state["charger"]["evses"][0]["status"] == "Charging"
        summary = structured(await client.call_tool("fleet_summary", {}))
        assert summary["chargers"] == 1 and summary["statuses"]["Charging"] == 1

        stopped = structured(
            await client.call_tool(
                "stop", {"charge_point_id": CHARGER, "wait_for": "Finishing", "timeout": 10}
            )
        )
        assert stopped["wait"]["met"] is True

        refused = await client.call_tool("stop", {"charge_point_id": CHARGER})
        assert "no transaction" in error_text(refused).lower()
        no_connector = await client.call_tool(
            "plug_in", {"charge_point_id": CHARGER, "connector_id": 9}
        )
        # Said once: the engine's refusal is both the body's detail and its one item.
        assert error_text(no_connector).endswith(f"connector_id: {CHARGER} has no connector 9")
        assert error_text(no_connector).count("has no connector") == 1
        unknown = await client.call_tool("charger_state", {"charge_point_id": "NOPE"})
        assert "No charger 'NOPE'." in error_text(unknown)

        # The stored message log holds the session (written with the checkpoints).
        async def actions() -> set[str]:
            page = structured(
                await client.call_tool("charger_log", {"charge_point_id": CHARGER, "limit": 200})
            )
            return {item["action"] for item in page["items"]}

        for _ in range(50):
            if {"StartTransaction", "StopTransaction"} <= await actions():
                break
            await asyncio.sleep(0.2)
        assert {"StartTransaction", "StopTransaction", "Authorize"} <= await actions()

        resource = await client.read_resource(f"chargesim://chargers/{CHARGER}/state")
        text = resource.contents[0].text  # type: ignore[union-attr]
        assert json.loads(text)["charger"]["charge_point_id"] == CHARGER
    assert site.admin_token not in site.process.output  # never logged


async def test_http_a_charger_that_does_not_exist_is_the_callers_mistake_naming_it(site):
    """A resource of an unknown charger answered JSON-RPC -32603, an internal error; it is
    -32602 (invalid params, the SDK's "not found") naming the charger, and a tool's call is
    a tool error (isError) naming it, as every other refusal of a tool."""
    async with http_client(site, site.admin_token) as client:
        for uri in ("chargesim://chargers/NOPE/state", "chargesim://chargers/NOPE/log"):
            with pytest.raises(MCPError) as refused:
                await client.read_resource(uri)
            assert refused.value.code == INVALID_PARAMS, uri
            assert refused.value.message == "No charger 'NOPE'.", uri
        for tool in ("get_charger", "charger_log", "charger_state", "inject_fault"):
            answer = await client.call_tool(tool, {"charge_point_id": "NOPE"})
            assert error_text(answer).endswith("No charger 'NOPE'."), tool


async def test_http_creates_a_charger_that_connects_without_a_restart(site):
    async with http_client(site, site.admin_token) as client:
        location = structured(await client.call_tool("list_locations", {}))["items"][0]["id"]
        url = structured(await client.call_tool("get_charger", {"charge_point_id": CHARGER}))
        made = structured(
            await client.call_tool(
                "create_charger",
                {
                    "charger": {
                        "charge_point_id": "MCP-NEW-1",
                        "location": location,
                        "csms_url": url["csms_url"],
                    }
                },
            )
        )
        assert made["charger"]["charge_point_id"] == "MCP-NEW-1"
        online = structured(
            await client.call_tool(
                "charger_state",
                {"charge_point_id": "MCP-NEW-1", "wait_for": "Accepted", "timeout": 20},
            )
        )
        assert online["wait"]["met"] is True and online["charger"]["boot"] == "Accepted"
        plugged = structured(
            await client.call_tool(
                "bulk_action",
                {
                    "action": "plug_in",
                    "filter": {"charge_point_ids": ["MCP-NEW-1", "GHOST"]},
                    "args": {"soc": 50},
                    "wait_for": "Preparing",
                    "timeout": 10,
                },
            )
        )
        results = {item["charge_point_id"]: item for item in plugged["results"]}
        assert results["MCP-NEW-1"]["ok"] and results["MCP-NEW-1"]["status"] == "Preparing"
        assert results["GHOST"]["error"] == "not_found"
        bad = await client.call_tool(
            "bulk_action",
            {
                "action": "plug_in",
                "filter": {"charge_point_ids": ["MCP-NEW-1"]},
                "args": {"soc": 500},
            },
        )
        assert "soc" in error_text(bad)
        again = await client.call_tool(
            "create_charger",
            {"charger": {"charge_point_id": "MCP-NEW-1", "location": location}},
        )
        assert "charge_point_id" in error_text(again)  # the admin form's uniqueness message


SCENARIO = """\
name: mcp-run
description: A template charger boots and plugs in, started over MCP.
chargers: {template: {count: 1}}
steps:
  - expect: {status: Accepted}
  - plug_in: {connector: 1}
"""


async def test_http_starts_a_scenario_run_and_follows_it_to_its_verdict(site):
    async with http_client(site, site.admin_token) as client:
        charger = structured(await client.call_tool("get_charger", {"charge_point_id": CHARGER}))
        run = {"source": SCENARIO, "csms_url": charger["csms_url"], "seed": 3}
        started = structured(await client.call_tool("start_scenario_run", {"run": run}))
        assert started["status"] == "queued" and started["seed"] == 3
        for _ in range(300):
            got = structured(await client.call_tool("get_scenario_run", {"run_id": started["id"]}))
            if got["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.2)
        assert got["status"] == "passed", got
        assert [s["status"] for s in got["result"]["chargers"][0]["steps"]] == ["passed"] * 2
        listed = structured(
            await client.call_tool("list_scenario_runs", {"filters": {"name": "mcp-run"}})
        )
        assert [r["id"] for r in listed["items"]] == [started["id"]]
        for statuses, found in ((["passed"], [started["id"]]), (["failed", "error"], [])):
            chosen = {"name": "mcp-run", "status": statuses}
            listed = structured(await client.call_tool("list_scenario_runs", {"filters": chosen}))
            assert [r["id"] for r in listed["items"]] == found, statuses
        finished = await client.call_tool("cancel_scenario_run", {"run_id": started["id"]})
        assert "has finished (passed)" in error_text(finished)
        bad = SCENARIO.replace("plug_in", "plug_it")
        refused = await client.call_tool("start_scenario_run", {"run": {"source": bad}})
        assert "line 6, column 5: steps[1].plug_it" in error_text(refused)


async def test_a_viewer_reads_but_may_not_drive_a_charger(site):
    async with http_client(site, site.viewer_token) as client:
        state = structured(await client.call_tool("charger_state", {"charge_point_id": CHARGER}))
        assert state["charger"]["charge_point_id"] == CHARGER
        refused = await client.call_tool("plug_in", {"charge_point_id": CHARGER})
        assert "chargers.change_charger" in error_text(refused)


def test_http_refuses_anonymous_callers_bad_tokens_and_users_without_view_charger(site):
    status, body = post_mcp(site, {})
    assert status == 401 and "Bearer" in str(body["detail"])
    status, body, headers = post_mcp_answer(site, bearer("not-a-token"))
    assert status == 401 and body["detail"] == "The API token is not valid or was revoked."
    assert headers["WWW-Authenticate"] == 'Bearer realm="ChargeSim API", error="invalid_token"'
    assert post_mcp_answer(site, {})[2]["WWW-Authenticate"] == 'Bearer realm="ChargeSim API"'
    status, body = post_mcp(site, bearer(site.watcher_token))
    assert status == 403 and "chargers.view_charger" in str(body["detail"])


def test_http_answers_a_get_405_at_once_instead_of_holding_it_open(site):
    """A client may GET /mcp for the server's own messages; a stateless server has none,
    and the SDK held the request open with no answer at all."""
    request = urllib.request.Request(
        f"{site.url}/mcp",
        headers={"Accept": "text/event-stream", **bearer(site.admin_token)},
        method="GET",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10).close()
    with refused.value as answer:
        assert answer.code == 405
        assert answer.headers["Allow"] == "POST"
        assert "stateless" in json.loads(answer.read())["detail"]


def test_http_refuses_another_path_method_or_body_type_in_the_apis_error_body(site):
    """QA: the SDK's own answers were a bare text 404 ("Not Found") for /mcp/x, a JSON-RPC
    error 405 without an Allow header for DELETE, a bare text 400 ("Invalid Content-Type
    header") for a body that is not JSON."""
    token = bearer(site.admin_token)
    for method, path, content_type, status, says in (
        ("POST", "/mcp/tools", "application/json", 404, "No MCP endpoint at /mcp/tools"),
        ("DELETE", "/mcp", "application/json", 405, "DELETE is not allowed here; use POST"),
        ("PUT", "/mcp", "application/json", 405, "PUT is not allowed here; use POST"),
        ("POST", "/mcp", "text/plain", 415, "The body must be JSON"),
    ):
        request = urllib.request.Request(
            f"{site.url}{path}",
            data=b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}',
            headers={"Content-Type": content_type, **token},
            method=method,
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        answer = refused.value
        with answer:
            body = json.loads(answer.read())
        assert answer.code == status, (method, path, body)
        assert answer.headers["Content-Type"] == "application/json"
        assert says in body["detail"] and body["errors"] == [], body
        if status == 405:
            assert answer.headers["Allow"] == "POST"
    # Without a Content-Type, read as JSON, as the REST API reads a body without one.
    headers = {"Content-Type": "", "Accept": "application/json", **token}
    status, listed, _ = post_mcp_answer(site, headers)
    assert status == 200 and "tools" in listed["result"], listed  # type: ignore[operator]


def test_http_refuses_an_unknown_protocol_version_saying_which_it_speaks(site):
    """QA13: MCP-Protocol-Version 1999-01-01 got the SDK's unrelated answer. The spec asks
    for a 400; it names the header, the value and the versions this server speaks."""
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "1999-01-01",
        **bearer(site.admin_token),
    }
    status, body, answer = post_mcp_answer(site, headers)
    assert status == 400, body
    assert answer["Content-Type"] == "application/json"
    detail = str(body["detail"])
    assert "MCP-Protocol-Version '1999-01-01'" in detail and "2025-06-18" in detail, detail
    # A version it speaks is served.
    status, listed, _ = post_mcp_answer(site, {**headers, "MCP-Protocol-Version": "2025-06-18"})
    assert status == 200 and "tools" in listed["result"], listed  # type: ignore[operator]


def test_http_refuses_a_body_over_the_limit_before_reading_it_all(site):
    """DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default), as the API: 413 in its error body,
    whether the client says the length or sends it in chunks; a small call still works."""
    big = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"x": "a" * 3_000_000}}
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        **bearer(site.admin_token),
    }
    for sent in (big, iter([big[:1_000_000], big[1_000_000:]])):  # sized, then chunked
        request = urllib.request.Request(
            f"{site.url}/mcp", data=sent, headers=headers, method="POST"
        )
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as refused:
            with refused:
                status, body = refused.code, json.loads(refused.read())
        else:
            pytest.fail("a body over the limit was accepted")
        assert status == 413
        assert body["detail"] == "The request body is larger than the 2,621,440 bytes accepted."
    small = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})
    request = urllib.request.Request(
        f"{site.url}/mcp", data=small.encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
        assert "plug_in" in {tool["name"] for tool in json.loads(answer.read())["result"]["tools"]}


# JSON-RPC messages that give a key twice in one object, each with the error's code, id
# and the keys it must name. The location a last-wins reading would create ("Twice B")
# must not be created.
TWICE_NAMED = [
    (
        '{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": '
        '"create_location", "arguments": {"location": {"name": "Twice A", "name": "Twice B"}}}}',
        INVALID_PARAMS,
        7,
        "params.arguments.location.name (2 times)",
    ),
    (
        '{"jsonrpc": "2.0", "id": "eight", "method": "tools/call", "params": {"name": "whoami", '
        '"name": "create_location", "arguments": {}, "arguments": {"location": {"name": '
        '"Twice B"}}}}',
        INVALID_PARAMS,
        "eight",
        "params.name (2 times), params.arguments (2 times)",
    ),
    (
        '{"jsonrpc": "2.0", "id": 9, "method": "tools/list", "method": "tools/call", "params": '
        '{"name": "create_location", "arguments": {"location": {"name": "Twice B"}}}}',
        INVALID_REQUEST,
        9,
        "method (2 times)",
    ),
    (  # which id to answer cannot be told: null, as JSON-RPC 2.0 says
        '{"jsonrpc": "2.0", "id": 10, "id": 11, "method": "tools/list", "params": {}}',
        INVALID_REQUEST,
        None,
        "id (2 times)",
    ),
]


def assert_refused_naming_the_keys(answer: dict[str, Any], code: int, id: Any, named: str):
    assert answer["jsonrpc"] == "2.0" and answer["id"] == id and "result" not in answer
    error = answer["error"]
    assert error["code"] == code
    assert (
        f"a key is given more than once in one JSON object: {named}. Give each key once"
        in (error["message"])
    )


async def assert_no_location_twice_b(site: Site) -> None:
    async with http_client(site, site.admin_token) as client:
        page = structured(await client.call_tool("list_locations", {"filters": {"q": "Twice B"}}))
        assert page["count"] == 0


async def test_http_refuses_a_message_that_gives_a_key_twice_naming_it(site):
    """As the REST API refuses such a body (422): the SDK read the message last-wins, and
    ran a tool the caller may not have meant with arguments it may not have meant."""
    headers = {"Accept": "application/json, text/event-stream", **bearer(site.admin_token)}
    for text, code, id, named in TWICE_NAMED:
        status, answer, answer_headers = post_mcp_answer(site, headers, text)
        assert status == 400, (text, answer)
        assert answer_headers["Content-Type"] == "application/json"
        assert_refused_naming_the_keys(answer, code, id, named)
    await assert_no_location_twice_b(site)
    # The same call with each key once is run.
    text = TWICE_NAMED[0][0].replace('"name": "Twice A", ', "")
    status, answer, _ = post_mcp_answer(site, headers, text.replace("Twice B", "Twice C"))
    result: Any = answer.get("result")
    assert status == 200 and answer["id"] == 7 and not result["isError"], answer


@contextlib.asynccontextmanager
async def stdio_session(site: Site) -> AsyncIterator[Any]:
    """`manage.py mcp` over its standard input and output, initialized: yields a function
    that writes one line and reads the next line it answers."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        "mcp",
        "--user",
        "admin",
        cwd=ROOT,
        env={**os.environ, "CHARGESIM_VAR_DIR": str(site.var_dir)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        limit=2**24,  # a line is a whole answer: the tool list is hundreds of kB
    )
    assert process.stdin is not None and process.stdout is not None

    async def answer_to(line: str) -> dict[str, Any]:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(line.encode() + b"\n")
        await process.stdin.drain()
        return json.loads(await asyncio.wait_for(process.stdout.readline(), 60))

    try:
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        }
        assert "result" in await answer_to(json.dumps(initialize))
        process.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        yield answer_to
    finally:
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_stdio_refuses_a_message_that_gives_a_key_twice_naming_it(site):
    """The stdio transport answers such a line with the error and reads on: the next
    message, each key once, is answered as ever."""
    async with stdio_session(site) as answer_to:
        for text, code, id, named in TWICE_NAMED:
            assert_refused_naming_the_keys(await answer_to(text), code, id, named)
        listed = await answer_to('{"jsonrpc": "2.0", "id": 12, "method": "tools/list"}')
        assert listed["id"] == 12 and "plug_in" in {t["name"] for t in listed["result"]["tools"]}
    await assert_no_location_twice_b(site)


# Texts that are not one JSON-RPC message: the error's code, the id it answers, and what
# its message says.
NOT_MESSAGES = [
    ("tools/list please", PARSE_ERROR, None, "Parse error: the message is not JSON ("),
    ('{"jsonrpc": "2.0", "id": 21, "method": "tools/list"', PARSE_ERROR, None, "not JSON"),
    (
        '[{"jsonrpc": "2.0", "id": 22, "method": "tools/list"}]',
        INVALID_REQUEST,
        None,
        "one JSON object",
    ),
    (
        '{"jsonrpc": "1.0", "id": 23, "method": "tools/list"}',
        INVALID_REQUEST,
        23,
        "not a JSON-RPC 2.0 request: jsonrpc: Input should be '2.0'",
    ),
    (
        '{"jsonrpc": "2.0", "id": "q", "method": "tools/list", "params": [1]}',
        INVALID_REQUEST,
        "q",
        "not a JSON-RPC 2.0 request: params: Input should be an object",
    ),
    ('{"jsonrpc": "2.0", "id": 24}', INVALID_REQUEST, 24, 'gives a "method"'),
]


def assert_refused_saying(answer: dict[str, Any], code: int, id: Any, says: str) -> None:
    assert answer["jsonrpc"] == "2.0" and answer["id"] == id and "result" not in answer
    assert answer["error"]["code"] == code and says in answer["error"]["message"], answer


async def test_stdio_answers_a_line_that_is_not_a_message_and_reads_on(site):
    """JSON-RPC 2.0's parse error and invalid request: the SDK's stdio transport dropped
    such a line without a word, and its client waited for an answer that never came. A
    blank line is no message and gets no answer."""
    async with stdio_session(site) as answer_to:
        for text, code, id, says in NOT_MESSAGES:
            assert_refused_saying(await answer_to(text), code, id, says)
        listed = await answer_to('\n{"jsonrpc": "2.0", "id": 25, "method": "tools/list"}')
        assert listed["id"] == 25 and "plug_in" in {t["name"] for t in listed["result"]["tools"]}


async def test_http_answers_a_body_that_is_not_a_message_as_stdio_does(site):
    headers = {"Accept": "application/json, text/event-stream", **bearer(site.admin_token)}
    for text, code, id, says in NOT_MESSAGES:
        status, answer, _ = post_mcp_answer(site, headers, text)
        assert status == 400, (text, answer)
        assert_refused_saying(answer, code, id, says)


# Requests of an MCP method with params it does not take: the id they are answered with and
# what the -32602 says (the SDK's own said "Invalid request parameters" and nothing else).
BAD_PARAMS = [
    (
        '{"jsonrpc": "2.0", "id": 31, "method": "tools/call", "params": {"arguments": {}}}',
        31,
        "Invalid params of tools/call: params.name: Field required",
    ),
    (
        '{"jsonrpc": "2.0", "id": 32, "method": "tools/call", '
        '"params": {"name": "get_charger", "arguments": "DEMO-0001"}}',
        32,
        "params.arguments: Input should be a valid dictionary",
    ),
    (
        '{"jsonrpc": "2.0", "id": 33, "method": "resources/read", "params": {}}',
        33,
        "Invalid params of resources/read: params.uri: Field required",
    ),
]


async def test_stdio_says_which_params_of_a_request_are_wrong(site):
    async with stdio_session(site) as answer_to:
        for text, id, says in BAD_PARAMS:
            assert_refused_saying(await answer_to(text), INVALID_PARAMS, id, says)
        listed = await answer_to('{"jsonrpc": "2.0", "id": 34, "method": "tools/list"}')
        assert listed["id"] == 34 and "plug_in" in {t["name"] for t in listed["result"]["tools"]}


async def test_http_says_which_params_of_a_request_are_wrong_as_stdio_does(site):
    headers = {"Accept": "application/json, text/event-stream", **bearer(site.admin_token)}
    for text, id, says in BAD_PARAMS:
        status, answer, _ = post_mcp_answer(site, headers, text)
        assert status == 400, (text, answer)
        assert_refused_saying(answer, INVALID_PARAMS, id, says)


def test_stdio_answers_every_request_piped_in_before_its_input_ends(site):
    """A script that pipes its requests in closes standard input after the last one: each
    is still answered with its result (the SDK answered those still running "Connection
    closed"), and the server exits once they are."""
    initialize = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "pipe", "version": "1"},
    }
    calls = {
        2: ("whoami", {}),
        3: ("list_chargers", {"limit": 5}),
        4: ("get_charger", {"charge_point_id": CHARGER}),
    }
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        *(
            {
                "jsonrpc": "2.0",
                "id": id,
                "method": "tools/call",
                "params": {"name": n, "arguments": a},
            }
            for id, (n, a) in calls.items()
        ),
    ]
    answers, done = stdio_answers(site, lines)
    assert sorted(answers) == [1, 2, 3, 4], done.stdout[-2000:]
    for id in calls:
        assert "error" not in answers[id], answers[id]
        assert not answers[id]["result"]["isError"], answers[id]
    assert answers[2]["result"]["structuredContent"]["username"] == "admin"
    listed = answers[3]["result"]["structuredContent"]["items"]
    assert CHARGER in {item["charge_point_id"] for item in listed}
    assert answers[4]["result"]["structuredContent"]["charge_point_id"] == CHARGER


def test_stdio_says_a_request_before_the_handshake_needs_initialize_first(site):
    """The SDK answered it "Invalid request parameters", which a script piping its calls in
    without the handshake could not act on."""
    initialize = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "pipe", "version": "1"},
    }
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 2, "method": "ping"},
        {"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": initialize},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/list"},
    ]
    answers, _done = stdio_answers(site, lines)
    assert_refused_saying(answers[1], INVALID_PARAMS, 1, 'send an "initialize" request first')
    assert answers[2]["result"] == {}
    assert "plug_in" in {t["name"] for t in answers[4]["result"]["tools"]}


def test_stdio_refuses_an_unknown_user(site):
    result = run_manage(site.var_dir, "mcp", "--user", "nobody")
    assert result.returncode != 0
    assert "No user 'nobody'." in result.stderr


def api_get(site: Site, path: str) -> Any:
    request = urllib.request.Request(f"{site.url}/api/v1{path}", headers=bearer(site.admin_token))
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


async def test_http_tools_answer_the_apis_json_times_included(site):
    """QA: a tool dumped its answer with pydantic's JSON mode, the endpoint with ninja's
    renderer: a charger's `created` and a scenario run's `created`, `started`, `finished`
    came to the microsecond from the tool and to the millisecond from the API."""
    async with http_client(site, site.admin_token) as client:
        charger = structured(await client.call_tool("get_charger", {"charge_point_id": CHARGER}))
        assert charger == api_get(site, f"/chargers/{CHARGER}")
        listed = structured(await client.call_tool("list_chargers", {"limit": 5}))
        assert listed == api_get(site, "/chargers?limit=5")
        source = SCENARIO.replace("name: mcp-run", "name: mcp-times")
        run = {"source": source, "csms_url": charger["csms_url"], "seed": 5}
        started = structured(await client.call_tool("start_scenario_run", {"run": run}))
        for _ in range(300):
            got = structured(await client.call_tool("get_scenario_run", {"run_id": started["id"]}))
            if got["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.2)
        assert got["finished"] is not None
        assert got == api_get(site, f"/scenarios/runs/{started['id']}")
        runs = structured(await client.call_tool("list_scenario_runs", {"limit": 5}))
        assert runs == api_get(site, "/scenarios/runs?limit=5")


def stdio_answers(site: Any, lines: list[Any]) -> tuple[dict[Any, Any], Any]:
    """`manage.py mcp` as admin, fed `lines` on stdin: its answers by id, and the run."""
    done = subprocess.run(
        [sys.executable, "manage.py", "mcp", "--user", "admin"],
        cwd=ROOT,
        env={**os.environ, "CHARGESIM_VAR_DIR": str(site.var_dir)},
        input="".join(json.dumps(line) + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,  # a guard against a server that never ends, not a speed limit
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answers = {answer["id"]: answer for answer in map(json.loads, done.stdout.splitlines())}
    return answers, done
