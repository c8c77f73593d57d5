"""Each status the API answers goes out with its reason phrase (chargesim_site/
daphne_reasons.py), on a real Daphne over a real socket."""

from __future__ import annotations

import http.client

import pytest

from tests.process import daphne_app

APP = "tests.status_app:application"


@pytest.fixture
def server():
    with daphne_app(APP) as port:
        yield port


def test_every_status_the_api_answers_has_its_reason_phrase(server):
    """QA: 422 and 429 went out as "Unknown Status" (Twisted's table lacks them), and a
    client's raise_for_status() said "422 Client Error: Unknown Status"."""
    expected = {
        200: "OK",
        409: "Conflict",
        415: "Unsupported Media Type",
        422: "Unprocessable Entity",
        429: "Too Many Requests",
    }
    for code, phrase in expected.items():
        connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        try:
            connection.request("GET", f"/{code}")
            answer = connection.getresponse()
            answer.read()
        finally:
            connection.close()
        assert (answer.status, answer.reason) == (code, phrase)
