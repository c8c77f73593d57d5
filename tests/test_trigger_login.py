"""A `trigger` step's URL with a login in it (http://user:pw@host/), against a real HTTP
server that wants that login: it failed with "Name or service not known", urllib taking
"user:pw@127.0.0.1" for the host name, though the docs show such URLs (password hidden)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scenarios.steps import StepError, _http
from simulator.csms.files import FileServer


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as files:
        files.credentials = ("ops", "p@ss:word")
        files.publish("hook", b"ok")
        yield files


def test_the_login_in_a_trigger_url_is_sent_as_basic_auth(server):
    host = server.url.removeprefix("http://")
    assert _http("GET", f"http://ops:p%40ss%3Aword@{host}/hook", None, {}, 5)[0] == 200
    assert _http("GET", f"http://ops:wrong@{host}/hook", None, {}, 5)[0] == 401
    assert _http("GET", f"{server.url}/hook", None, {}, 5)[0] == 401  # no login: refused


def test_a_header_the_step_gives_wins_over_the_urls_login(server):
    host = server.url.removeprefix("http://")
    given = {"Authorization": "Basic b3BzOndyb25n"}  # ops:wrong
    assert _http("GET", f"http://ops:p%40ss%3Aword@{host}/hook", None, given, 5)[0] == 401


def test_an_unreachable_trigger_url_hides_its_password(server):
    with pytest.raises(StepError) as failed:
        _http("GET", "http://ops:secret@127.0.0.1:9/hook", None, {}, 5)
    assert "secret" not in str(failed.value)
