"""The API with its database out of reach: a 503 in the API's error body saying so, never a
500, and never Django's debug page (it showed the psycopg connection string, password and
all, to a /metrics scraper)."""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from django.test import Client

from tests.api_client import bearer
from tests.database_away import unreachable_database

PASSWORD = "pa55-never-shown"
DOWN = "The database cannot be reached or is not answering: the API cannot answer until it is back."


@pytest.fixture
def down(django_db_blocker: Any, settings: Any) -> Iterator[Client]:
    settings.DEBUG = True  # where Django's error page shows settings and local variables
    with django_db_blocker.unblock(), unreachable_database(PASSWORD):
        # As a browser or a scraper sees the answer: no exception re-raised into the test.
        yield Client(raise_request_exception=False)


def assert_database_down(response: Any) -> None:
    text = response.content.decode()
    assert PASSWORD not in text
    assert response.status_code == 503, text[:2000]
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": DOWN, "errors": []}


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/v1/chargers"),
        ("post", "/api/v1/locations"),
        ("get", "/api/v1/fleet/summary"),  # async: the token is read in a thread
        ("get", "/api/v1/openapi.json"),  # the docs' own access check
        ("get", "/metrics"),
    ],
)
def test_a_token_request_gets_a_503_saying_the_database_is_away(down, method, path):
    headers = bearer("csk_anything")  # reading the token is what meets the database
    assert_database_down(getattr(down, method)(path, headers=headers))


def test_a_browser_session_gets_the_same(down):
    down.cookies["sessionid"] = "a" * 32  # the session is read from the database
    assert_database_down(down.get("/api/v1/chargers"))
    assert_database_down(down.get("/metrics"))


def test_mcp_answers_a_503_saying_so_not_the_servers_bare_500(down):
    """/mcp reads the caller's token before anything: with the database away that raised
    out of the endpoint, and the ASGI server answered a bare 500."""
    from asgiref.sync import async_to_sync

    from api.mcp_http import McpEndpoint

    sent: list[MutableMapping[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "headers": [
            (b"host", b"127.0.0.1"),
            *[(k.lower().encode(), v.encode()) for k, v in bearer("csk_anything").items()],
        ],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async_to_sync(McpEndpoint())(scope, receive, send)
    start, body = sent
    assert start["status"] == 503
    text = body["body"].decode()
    assert PASSWORD not in text
    assert json.loads(text) == {"detail": DOWN, "errors": []}


def test_an_mcp_tool_that_meets_the_database_away_refuses_with_the_apis_words():
    from django.db import OperationalError

    from api.mcp_calls import refusal

    driver = OperationalError(f'connection to server at "127.0.0.1" failed (password {PASSWORD})')
    assert refusal(driver) == DOWN
