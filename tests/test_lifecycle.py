"""The simulator's process lifecycle (simulator/runtime/lifecycle.py), as a real
`runsimulator` process: startup, a graceful stop on the first signal, a stop that skips
the waiting on the second, the final checkpoint always written, every task cancelled."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
from pathlib import Path

import pytest

from simulator.csms import CentralSystem, LogEntry
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.engine import wait_until
from tests.process import ManagePy, free_port, wait_for_port

pytestmark = pytest.mark.slow

CHARGERS = ("DEMO-0001", "DEMO-0002")
# What a clean exit never prints: an unfinished task, an error, a warning.
UNCLEAN = ("Task was destroyed but it is pending", "Traceback", "Warning", "never awaited")


def evse_rows(var_dir: Path) -> list[tuple[float, str]]:
    with sqlite3.connect(var_dir / "db.sqlite3") as db:
        return list(db.execute("select register_wh, status from chargers_evse order by id"))


def on_connector_2(entry: LogEntry) -> bool:
    return bool(entry.payload["connectorId"] == 2)


def assert_clean(output: str) -> None:
    for text in UNCLEAN:
        assert text not in output, output[-3000:]


async def test_a_second_sigint_during_a_slow_shutdown_still_writes_the_final_checkpoint(
    tmp_path,
):
    csms = CentralSystem()
    await csms.start(host="127.0.0.1", port=0)
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        "--no-web",
        "--demo",
        "--demo-chargers",
        "2",
        "--demo-share",
        "1",
        "--csms-url",
        csms.url,
        # Registers are written only by the final checkpoint: the periodic one is an hour
        # away, and MeterValues (whose write carries the register) come once a minute.
        env={"CHARGESIM_CHECKPOINT_SECONDS": "300", "CHARGESIM_TICK_SECONDS": "0.2"},
    )
    try:
        for cp_id in CHARGERS:
            await csms.wait_for(cp_id, "StartTransaction", message_type=2, timeout=30)
            await csms.wait_for(
                cp_id, "StartTransaction", message_type=2, predicate=on_connector_2, timeout=30
            )
        await asyncio.sleep(1.5)  # energy flows: every register is above its start
        # From here the test blocks its own event loop, so the CSMS answers nothing, not even
        # the closing handshake: the simulator's connections take their time to close.
        sim.signal(signal.SIGINT)
        sim.wait_for_output("Stopping: saving state")
        sim.signal(signal.SIGINT)
        assert sim.wait(60) == 0
    finally:
        sim.stop()
        await csms.stop()
    assert "Stopping now: not waiting for connections" in sim.output
    assert "Stopped: 2 chargers saved." in sim.output
    assert_clean(sim.output)
    registers = [register for register, _status in evse_rows(tmp_path)]
    assert len(registers) == 4 and all(r > 0 for r in registers), registers


def test_sigterm_stops_within_the_bound_and_saves_with_a_csms_that_never_answers(tmp_path):
    """A CSMS that accepts the connection and then never answers anything (not the boot,
    not the close): one SIGTERM is enough, and the process saves and exits."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        sim = ManagePy(
            tmp_path,
            "runsimulator",
            "--no-web",
            "--demo",
            "--demo-chargers",
            "2",
            "--csms-url",
            f"ws://127.0.0.1:{port}/ocpp",
        )
        try:
            sim.wait_for_output("fleet: 0/2 accepted")
            sim.signal(signal.SIGTERM)
            assert sim.wait(60) == 0
        finally:
            sim.stop()
    assert "Stopped: 2 chargers saved." in sim.output
    assert_clean(sim.output)


def test_every_task_it_started_is_cancelled_when_it_stops(tmp_path):
    """The demo driver, the progress line, the garbage-collector freeze and the connection
    attempts are all still running when the stop comes (the CSMS never comes up)."""
    port = free_port()
    nowhere = free_port()
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        "--demo",
        "--demo-chargers",
        "2",
        "--port",
        str(port),
        "--csms-url",
        f"ws://127.0.0.1:{nowhere}/ocpp",
        env={"CHARGESIM_RECONNECT_CAP_SECONDS": "0.5"},
    )
    try:
        wait_for_port(port, proc=sim.proc)
        sim.wait_for_output("2 failing")
        sim.signal(signal.SIGINT)
        assert sim.wait(60) == 0
    finally:
        sim.stop()
    assert "Stopped: 2 chargers saved." in sim.output
    assert_clean(sim.output)


@pytest.mark.django_db(transaction=True)
async def test_every_task_it_started_has_ended_when_serve_returns():
    """In-process: no task the simulator started outlives it (a pending one would be
    destroyed with the loop). The CSMS never comes up, so the demo driver, the progress
    line and the connection attempts are all still busy when the stop comes."""
    output: list[str] = []
    simulator = Simulator(
        RunOptions(
            web=False,
            demo=True,
            demo_chargers=2,
            csms_url=f"ws://127.0.0.1:{free_port()}/ocpp",
            reconnect_cap=0.5,
            tick_seconds=0.1,
        ),
        write=output.append,
    )
    before = asyncio.all_tasks()
    serving = asyncio.create_task(simulator.serve())
    await wait_until(lambda: simulator.progress()["failing"] == 2, message="connecting", timeout=20)
    demo = [t for t in asyncio.all_tasks() if t.get_name() == "demo-driver"]
    assert demo and not demo[0].done()
    simulator.request_stop()
    await serving
    left = [
        t.get_name()
        for t in asyncio.all_tasks() - before
        if t is not asyncio.current_task() and not t.done()
    ]
    assert left == []
    assert demo[0].cancelled()
    assert "Stopped: 2 chargers saved.\n" in output


@pytest.mark.django_db(transaction=True)
async def test_a_task_that_outlasts_the_stops_wait_is_named_in_the_warning(caplog):
    """A warning of "1 tasks still ending" gives a user nothing to act on: it names them."""
    simulator = Simulator(
        RunOptions(web=False, tick_seconds=0.1, stop_timeout=1.0), write=lambda _text: None
    )
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        finally:  # outlasts its cancellation, as a close handshake with a silent peer does
            await asyncio.shield(release.wait())

    serving = asyncio.create_task(simulator.serve())
    await wait_until(
        lambda: any(t.get_name() == "checkpoints" for t in simulator._tasks),
        message="the engine started",
        timeout=20,
    )
    simulator.spawn(stubborn(), "stubborn-task")
    simulator.request_stop()
    await wait_until(lambda: "still ending" in caplog.text, message="the warning", timeout=20)
    release.set()
    await serving
    assert "1 tasks still ending after the wait; not waiting longer: stubborn-task" in caplog.text
