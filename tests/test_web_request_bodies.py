"""What reaches Django of a request's body under the real web server (Daphne, in a real
`runsimulator`): a malformed multipart body is answered by the API, in its error body,
not refused bare by the server underneath."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api_client import bearer
from tests.process import ManagePy, free_port, run_manage, wait_for_port

pytestmark = pytest.mark.slow

ADMIN = """
from django.contrib.auth.models import User
User.objects.create_superuser("bodies", password="pw-bodies-1")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    var_dir = tmp_path_factory.mktemp("bodies-site")
    port = free_port()
    process = ManagePy(var_dir, "runsimulator", "--port", str(port))
    try:
        wait_for_port(port, proc=process.proc)
        made = run_manage(var_dir, "shell", "-c", ADMIN)
        assert made.returncode == 0, made.stderr
        created = run_manage(var_dir, "apitoken", "create", "--user", "bodies", "--name", "t")
        assert created.returncode == 0, created.stderr
        yield f"http://127.0.0.1:{port}", created.stdout.strip()
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.stop()


def post(url: str, token: str, body: bytes, content_type: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": content_type, **bearer(token)}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, json.loads(refused.read() or b"null")


def test_a_malformed_multipart_body_gets_the_apis_error_body(server):
    url, token = server
    multipart = "multipart/form-data; boundary=XX"
    status, body = post(f"{url}/api/v1/imports", token, b"garbage", multipart)
    assert status == 422 and {e["field"] for e in body["errors"]} == {"file", "resource"}
    status, body = post(f"{url}/api/v1/chargers", token, b"garbage", multipart)
    assert status == 415 and "application/json" in body["detail"]
