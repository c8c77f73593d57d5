"""Scenario runs through the API in the scaled-out mode (Redis, PostgreSQL, Daphne, two
engine workers and Celery as processes): the web process queues the run, a Celery worker
runs it against the running workers, and its progress and verdicts reach the API."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.process import Process
from tests.test_api_scaled_out import http
from tests.test_scaled_out import database, deploy  # noqa: F401
from tests.test_scaled_out import pytestmark as scaled_out

pytestmark = scaled_out
CELERY = [sys.executable, "-m", "celery", "-A", "chargesim_site", "worker"]

SCENARIO = """\
name: scaled-api
description: Template chargers on both shards, run by a Celery worker.
chargers: {template: {count: 4}}
steps:
  - expect: {status: Accepted}
  - plug_in: {}
  - present_id_tag: {id_tag: SCALED-API}
  - wait: {status: Charging, timeout: 30}
  - expect: {answer: StartTransaction, status: Accepted}
"""


def test_a_run_through_the_api_runs_on_a_celery_worker(tmp_path: Path, database: str) -> None:  # noqa: F811
    with deploy(tmp_path, database) as running:
        printed = running.shell(
            "from django.contrib.auth import get_user_model\n"
            "from api.models import ApiToken\n"
            "from chargers.models import Charger\n"
            "print(Charger.objects.first().csms_url)\n"
            "user = get_user_model().objects.get(username='admin')\n"
            "print(ApiToken.objects.issue(user, 'ci')[1])\n"
        )
        csms_url, token = printed.strip().splitlines()[-2:]
        celery = Process(
            "celery",
            [*CELERY, "--pool", "solo", "--loglevel", "INFO"],
            running.env,
            tmp_path,
        )
        try:
            celery.wait_for_output("ready.")
            body = json.dumps({"source": SCENARIO, "csms_url": csms_url}).encode()
            run = http(
                running.host, token, "POST", "/api/v1/scenarios/runs", body, "application/json"
            )
            assert run["status"] == "queued", run
            deadline = time.monotonic() + 120
            seen = set()
            while (
                state := http(running.host, token, "GET", f"/api/v1/scenarios/runs/{run['id']}")
            )["status"] in ("queued", "running"):
                seen.add(state["status"])
                if time.monotonic() > deadline:  # a hang fails, rather than blocking CI
                    pytest.fail(f"still not done: {state}")
                time.sleep(0.3)
            assert state["status"] == "passed", state
            assert state["chargers"] == {"passed": 4, "failed": 0, "error": 0, "total": 4}
            assert "scenarios.run_scenario" in celery.output  # the worker ran it, not the web
            assert "running" in seen
        finally:
            celery.stop()
