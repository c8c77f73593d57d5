"""A scenario run started through the API inside a real `runsimulator --demo` (embedded:
the run is a task on the simulator's event loop) when the simulator stops: the stop
cancels it with the simulator's own tasks, the run removes its temporary chargers and is
stored as error saying why, and the process exits cleanly."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.process import ManagePy, free_port, run_manage, wait_for_port
from tests.test_api_scaled_out import http

pytestmark = pytest.mark.slow

LONG = """\
name: long
description: Waits for a status that never comes.
chargers: {template: {count: 1}}
steps:
  - expect: {status: Accepted}
  - wait: {status: Faulted, timeout: 120}
"""


def test_a_run_going_on_when_the_simulator_stops_is_stored_as_error(tmp_path: Path) -> None:
    port, csms_port = free_port(), free_port()
    sim = ManagePy(
        tmp_path,
        *("runsimulator", "--demo", "--demo-chargers", "1", "--demo-share", "0"),
        *("--no-demo-operations", "--port", str(port), "--csms-port", str(csms_port)),
    )
    try:
        wait_for_port(port, proc=sim.proc)
        sim.wait_for_output("fleet: 1/1 accepted")
        made = run_manage(tmp_path, "apitoken", "create", "--user", "admin", "--name", "t")
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        host = f"127.0.0.1:{port}"
        body = json.dumps({"source": LONG, "csms_url": f"ws://127.0.0.1:{csms_port}/ocpp"})
        run = http(host, token, "POST", "/api/v1/scenarios/runs", body.encode(), "application/json")
        deadline = time.monotonic() + 60
        while True:
            state = http(host, token, "GET", f"/api/v1/scenarios/runs/{run['id']}")
            chargers = state["result"].get("chargers") or []
            if chargers and chargers[0]["steps"]:
                break  # the first step passed: the second waits
            if time.monotonic() > deadline:  # a hang fails, rather than blocking CI
                pytest.fail(f"still not done: {state}")
            time.sleep(0.2)
        sim.signal(signal.SIGTERM)
        assert sim.wait(60) == 0, sim.output[-3000:]
        for unclean in ("Traceback", "Task was destroyed", "never awaited"):
            assert unclean not in sim.output, sim.output[-3000:]
        stored = run_manage(
            tmp_path,
            "shell",
            "-c",
            "from scenarios.models import ScenarioRun; from chargers.models import Charger\n"
            f"run = ScenarioRun.objects.get(pk={run['id']})\n"
            "print(run.status, '|', run.message, '|', "
            "Charger.objects.filter(charge_point_id__startswith='SCN-').count())",
        )
        assert stored.returncode == 0, stored.stderr
        line = stored.stdout.strip().splitlines()[-1]
        assert line == "error | the simulator stopped before it finished | 0", line
    finally:
        sim.stop()
