"""The API in the scaled-out mode (Redis, PostgreSQL, Daphne and Celery as processes): an
import job uploaded through the API runs on a Celery worker; a bulk action's wait names the
chargers of a worker killed meanwhile."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from typing import Any

import pytest

from tests.process import ROOT, Process, daphne, free_port, redis_database, wait_for_port
from tests.test_import_jobs import fleet_csv
from tests.test_scaled_out import REDIS_URL, database, deploy  # noqa: F401
from tests.test_scaled_out import pytestmark as scaled_out

# The scaled-out tests' needs (Redis, PostgreSQL) and marks.
pytestmark = scaled_out


V1 = "/api/v1"
IMPORTS = f"{V1}/imports"


def multipart(fields: dict[str, str], name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: text/csv\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def http(host: str, token: str, method: str, path: str, body: bytes = b"", kind: str = "") -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    if kind:
        headers["Content-Type"] = kind
    request = urllib.request.Request(f"http://{host}{path}", body or None, headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_scaled_out_a_job_runs_on_a_celery_worker(tmp_path, database):  # noqa: F811
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "REDIS_URL": redis_database(REDIS_URL),
        "CHARGESIM_VAR_DIR": str(tmp_path),
        "SECRET_KEY": "scaled-out-import-" + uuid.uuid4().hex,
        "PYTHONUNBUFFERED": "1",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
    setup = textwrap.dedent(
        """
        from django.contrib.auth import get_user_model
        from api.models import ApiToken
        from locations.models import Location
        Location.objects.create(name="Depot")
        user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-ops-1")
        print(ApiToken.objects.issue(user, "ci")[1])
        """
    )
    printed = subprocess.run(
        [*manage, "shell", "-c", setup],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    token = printed.strip().splitlines()[-1]  # after what the shell's auto-imports print
    port = free_port()
    web = daphne(port, env, tmp_path)
    celery = Process(
        "celery",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "chargesim_site",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
        ],
        env,
        tmp_path,
    )
    try:
        celery.wait_for_output("ready.")
        wait_for_port(port, proc=web.proc)
        host = f"127.0.0.1:{port}"
        body, kind = multipart(
            {"resource": "chargers", "dry_run": "false"}, "fleet.csv", fleet_csv(50)
        )
        job = http(host, token, "POST", IMPORTS, body, kind)
        deadline = time.monotonic() + 60
        while not (state := http(host, token, "GET", f"{IMPORTS}/{job['id']}"))["finished"]:
            if time.monotonic() > deadline:  # a hang fails, rather than blocking CI
                pytest.fail(f"still not done: {state}")
            time.sleep(0.2)
        assert (state["status"], state["created"]) == ("done", 50), state
        assert "chargers.run_import_job" in celery.output  # the worker ran it, not the web
        listed = http(host, token, "GET", f"{V1}/chargers?limit=1")
        assert listed["count"] == 50
        assert token not in web.output + celery.output
    finally:
        web.stop()
        celery.stop()


def test_scaled_out_a_bulk_wait_names_the_chargers_of_a_worker_killed_meanwhile(
    tmp_path,
    database,  # noqa: F811
):
    """A worker killed while a bulk action waited for Charging: the answer came only after
    the wait's timeout and a minute more, every charger of that shard "did not finish in
    time". Now the killed worker's chargers are named `worker_gone` (seconds after the
    kill: the answer waits only for the other worker's timeout), and the other worker's
    result comes as it is."""
    with deploy(tmp_path, database) as live:
        token = live.token()
        first, second = live.by_shard[0], live.by_shard[1]
        query = "wait_for=Charging&timeout=8"
        body = json.dumps({"filter": {"charge_point_ids": [first, second]}}).encode()

        def bulk() -> Any:
            path = f"{V1}/fleet/actions/plug-in?{query}"
            request = urllib.request.Request(
                f"http://{live.host}{path}",
                body,
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                method="POST",
            )
            # Well below the minute and more the answer took before.
            with urllib.request.urlopen(request, timeout=45) as response:
                return json.loads(response.read())

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(bulk)
            # Plugged in: the worker of shard 1 did the action and now waits for Charging.
            deadline = time.monotonic() + 30
            while (
                http(live.host, token, "GET", f"{V1}/chargers/{second}/state")["charger"]["evses"][
                    0
                ]["status"]
                != "Preparing"
            ):
                assert time.monotonic() < deadline and not answer.done(), "not plugged in"
                time.sleep(0.1)
            live.workers[1].signal(signal.SIGKILL)
            result = answer.result()
        assert result["gone_shards"] == [1], result
        by_id = {item["charge_point_id"]: item for item in result["results"]}
        assert by_id[first]["ok"] and by_id[first]["wait"]["met"] is False, by_id[first]
        assert (by_id[second]["ok"], by_id[second]["error"]) == (False, "worker_gone")
        assert by_id[second]["message"].startswith(
            "the worker of shard 1 stopped answering before it answered"
        ), by_id[second]
