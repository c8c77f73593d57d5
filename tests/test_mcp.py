"""The MCP server, from the SDK's own client: over stdio (`manage.py mcp` as a subprocess)
and over streamable HTTP (`/mcp` of a real `runsimulator` with a token), against a running
simulator whose demo charger is connected to the built-in CSMS."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.api_client import bearer
from tests.process import ROOT, ManagePy, free_port, run_manage, wait_for_port

pytestmark = pytest.mark.slow

USERS = """
from django.contrib.auth.models import Permission, User
watcher = User.objects.create_user("watcher", password="pw-watcher-1")
"""


@dataclass
class Site:
    var_dir: Path
    url: str  # http://127.0.0.1:PORT
    admin_token: str
    watcher_token: str
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
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    request = urllib.request.Request(
        f"{site.url}/mcp",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, json.loads(refused.read())


async def test_stdio_lists_the_tools_and_answers_a_call(site):
    async with stdio_client(site, "admin") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "whoami" in names
        result = await client.call_tool("whoami", {})
        assert not result.is_error, result.content
        assert result.structured_content is not None
        assert result.structured_content["username"] == "admin"


async def test_http_lists_the_tools_and_answers_a_call_with_a_token(site):
    async with http_client(site, site.admin_token) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "whoami" in names
        result = await client.call_tool("whoami", {})
        assert not result.is_error, result.content
        assert result.structured_content is not None
        assert result.structured_content["username"] == "admin"
        assert result.structured_content["via"] == "token"
    assert site.admin_token not in site.process.output  # never logged


def test_http_refuses_anonymous_callers_bad_tokens_and_users_without_view_charger(site):
    status, body = post_mcp(site, {})
    assert status == 401 and "Bearer" in str(body["detail"])
    status, body = post_mcp(site, bearer("not-a-token"))
    assert status == 401 and body["detail"] == "The API token is not valid or was revoked."
    status, body = post_mcp(site, bearer(site.watcher_token))
    assert status == 403 and "chargers.view_charger" in str(body["detail"])


def test_stdio_refuses_an_unknown_user(site):
    result = run_manage(site.var_dir, "mcp", "--user", "nobody")
    assert result.returncode != 0
    assert "No user 'nobody'." in result.stderr
