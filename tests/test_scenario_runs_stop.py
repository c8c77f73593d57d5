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


CHARGING = """\
name: charging
description: Charges, then waits for a status that never comes.
chargers: {template: {count: 1}}
steps:
  - plug_in: {connector: 1, soc: 30, wait: Preparing}
  - present_id_tag: {connector: 1, id_tag: T-STOP}
  - wait: {status: Charging, timeout: 30}
  - wait: {status: Faulted, timeout: 120}
"""


def start_run(tmp_path: Path, port: int, source: str, **body: object) -> tuple[str, str, int]:
    """An API token, the simulator's host and the id of a run of `source` started through
    the API, once the run has passed all its steps but the last."""
    made = run_manage(tmp_path, "apitoken", "create", "--user", "admin", "--name", "t")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    host = f"127.0.0.1:{port}"
    data = json.dumps({"source": source, **body}).encode()
    run = http(host, token, "POST", "/api/v1/scenarios/runs", data, "application/json")
    steps = source.count("\n  - ") - 1
    deadline = time.monotonic() + 60
    while True:
        state = http(host, token, "GET", f"/api/v1/scenarios/runs/{run['id']}")
        chargers = state["result"].get("chargers") or []
        if chargers and len(chargers[0]["steps"]) >= steps:
            return token, host, run["id"]  # the last step waits
        if time.monotonic() > deadline:  # a hang fails, rather than blocking CI
            pytest.fail(f"still not done: {state}")
        time.sleep(0.2)


def sender(logged: str) -> str:
    """The charge point id of a frame `runcsms` logged as received."""
    return logged.split(" <- ")[0].split()[-1]


def stored(tmp_path: Path, run_id: int) -> str:
    """The run's status and message, and how many of its chargers are left."""
    done = run_manage(
        tmp_path,
        "shell",
        "-c",
        "from scenarios.models import ScenarioRun; from chargers.models import Charger\n"
        f"run = ScenarioRun.objects.get(pk={run_id})\n"
        "print(run.status, '|', run.message, '|', "
        "Charger.objects.filter(charge_point_id__startswith='SCN-').count())",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


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
        _token, _host, run_id = start_run(
            tmp_path, port, LONG, csms_url=f"ws://127.0.0.1:{csms_port}/ocpp"
        )
        sim.signal(signal.SIGTERM)
        assert sim.wait(60) == 0, sim.output[-3000:]
        for unclean in ("Traceback", "Task was destroyed", "never awaited"):
            assert unclean not in sim.output, sim.output[-3000:]
        line = stored(tmp_path, run_id)
        assert line == "error | the simulator stopped before it finished | 0", line
    finally:
        sim.stop()


def test_a_run_stopped_with_the_simulator_ends_its_sessions_at_the_csms(tmp_path: Path) -> None:
    """The run cleans up before the engine stops: its charger's transaction is stopped at
    the CSMS (a separate `runcsms`) before the charger is deleted. Cancelled with the
    engine, the run asked an engine that no longer answered, and the CSMS kept the
    transaction open for good."""
    csms_port, control_port, port = free_port(), free_port(), free_port()
    csms = ManagePy(
        tmp_path / "csms",
        *("runcsms", "--port", str(csms_port), "--control-port", str(control_port)),
    )
    sim = ManagePy(
        tmp_path,
        *("runsimulator", "--demo", "--demo-chargers", "1", "--demo-share", "0"),
        *("--no-demo-operations", "--port", str(port), "--csms-port", str(free_port())),
    )
    try:
        wait_for_port(csms_port, proc=csms.proc)
        wait_for_port(port, proc=sim.proc)
        sim.wait_for_output("fleet: 1/1 accepted")
        _token, _host, run_id = start_run(
            tmp_path,
            port,
            CHARGING,
            csms_url=f"ws://127.0.0.1:{csms_port}/ocpp",
            variables={"csms_control": f"http://127.0.0.1:{control_port}"},
        )
        started = [line for line in csms.output.splitlines() if '"StartTransaction"' in line]
        assert started and "<-" in started[0], csms.output[-3000:]
        sim.signal(signal.SIGTERM)
        assert sim.wait(60) == 0, sim.output[-3000:]
        csms.wait_for_output('"StopTransaction"', timeout=1)
        stop = next(line for line in csms.output.splitlines() if '"StopTransaction"' in line)
        assert sender(stop) == sender(started[0]), stop  # the run's charger
        assert sender(stop).startswith("SCN-"), stop
        assert stored(tmp_path, run_id) == "error | the simulator stopped before it finished | 0"
    finally:
        sim.stop()
        csms.stop()
