"""The scenario runner (scenarios/runner.py, scenarios/steps.py) against the built-in CSMS:
every step kind, verdicts that name the step, skipped steps after a failure, the stored
run with its frames, temporary chargers made and removed, existing chargers found by id,
pattern and location, and the seed that governs the spread.

The engine runs in this process (runscenario's `InProcessEngine`, the same one the command
uses) on the in-memory channel layer; its chargers talk to the CSMS over real sockets."""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from ocpp.v16 import call

from chargers.engine_client import EngineClient
from chargers.models import Charger
from locations.models import Location
from scenarios.format import parse
from scenarios.junit import junit_xml
from scenarios.models import ScenarioRun
from scenarios.runner import Options, Runner, RunningWorkers
from scenarios.session import summary
from scenarios.steps import STEPS, StepContext, Target
from scenarios.texts import one_line
from simulator import contract
from simulator.csms import CentralSystem
from simulator.csms.control import ControlServer
from simulator.management.commands.runscenario import InProcessEngine
from simulator.runtime.events import EventPublisher
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.cast import make_charger, make_location, make_vehicle
from tests.junit_reports import valid_junit
from tests.test_engine_client import booted

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.usefixtures("flushed_layer"),
]


async def run_scenario(
    text: str,
    csms: CentralSystem,
    *,
    seed: int | None = None,
    csms_control: str | None = None,
    host: Any = None,
) -> tuple[ScenarioRun, list[str]]:
    lines: list[str] = []
    runner = Runner(
        parse(textwrap.dedent(text), file="test.yaml"),
        client=EngineClient(),
        host=host if host is not None else InProcessEngine(),
        options=Options(
            csms_url=csms.url, csms_control=csms_control, seed=seed, settle_seconds=0.3
        ),
        progress=lines.append,
    )
    return await runner.execute(), lines


def verdicts(run: ScenarioRun) -> list[list[tuple[str, str]]]:
    return [
        [(step["kind"], step["status"]) for step in charger["steps"]]
        for charger in run.result["chargers"]
    ]


def passed_all(run: ScenarioRun) -> None:
    problems = [
        step["message"]
        for charger in run.result["chargers"]
        for step in charger["steps"]
        if step["status"] != "passed"
    ]
    assert run.status == "passed", problems or run.message


SESSION = """\
name: session
description: A whole session and the charger's own troubles, on a template charger.
variables: {id_tag: DRIVER-1}
chargers:
  template: {count: 1, connectors: 2}
steps:
  - expect: {status: Accepted}
  - expect: {heartbeat_interval_at_least: 60}
  - plug_in: {connector: 1, soc: 30, target_soc: 90}
  - present_id_tag: {id_tag: "${id_tag}"}
  - wait: {status: Charging, timeout: 20}
  - expect: {answer: StartTransaction, status: Accepted}
  - expect: {answer: Authorize, payload: {idTagInfo: {status: Accepted}}}
  - expect: {status: Charging, connector: 1}
  - expect: {answers_within: 10}
  - stop: {connector: 1}
  - wait: {status: Finishing}
  - expect: {answer: StopTransaction}
  - unplug: {connector: 1}
  - wait: {status: Available}
  - fault: {connector: 2, error_code: GroundFailure, wait: Faulted}
  - clear_fault: {connector: 2, wait: Available}
  - reboot: {wait: Accepted, timeout: 30}
  - expect: {answer: BootNotification, status: Accepted}
  - disconnect: {}
  - connect: {wait: Accepted}
  - network: {cut: 1}
  - wait: {seconds: 1.5}
  - wait: {status: Accepted, timeout: 60}
  - expect: {no_csms_call: Reset, within: 0.5}
  - expect: {connection_kept: true}
"""


async def test_local_actions_waits_and_expectations_pass_against_the_builtin_csms(
    csms: CentralSystem,
) -> None:
    run, lines = await run_scenario(SESSION, csms, seed=3)
    passed_all(run)
    (charger,) = run.result["chargers"]
    assert charger["temporary"] is True
    assert len(charger["steps"]) == 25
    # Its own disconnect, reboot and network cut are the scenario's doing: nothing to report.
    assert charger["disconnects"] == []
    assert all(step["duration"] >= 0 for step in charger["steps"])
    # The CSMS saw what the steps did ...
    cp_id = charger["charge_point_id"]
    # The run's id and a token of its own: another database's run of the same id, against
    # the same CSMS, makes other chargers.
    assert re.fullmatch(rf"SCN-R{run.pk}\.[0-9a-z]{{4}}-1", cp_id), cp_id
    assert csms.counts["StartTransaction"] == 1
    assert csms.counts["StopTransaction"] == 1
    assert csms.counts["BootNotification"] >= 2  # connect and reboot (a reconnect need not boot)
    # ... and the run kept the frames, its boot first.
    stored = await database_sync_to_async(ScenarioRun.objects.get)(pk=run.pk)
    frames = [e for e in stored.frame_events() if e["kind"] == "frame"]
    assert stored.frame_count == len(stored.frame_events()) > 0
    assert frames[0]["data"]["action"] == "BootNotification"
    assert {f["data"]["action"] for f in frames} >= {"StartTransaction", "StopTransaction"}
    assert run.result["seed"] == 3
    # A line per step done, and the temporary charger is gone.
    assert len(lines) == 25 and lines[0].startswith(f"session {cp_id} steps[0] expect: passed")
    assert not await database_sync_to_async(Charger.objects.filter(charge_point_id=cp_id).exists)()


async def test_a_failing_expectation_names_the_step_and_skips_the_rest(
    csms: CentralSystem,
) -> None:
    run, lines = await run_scenario(
        """\
        name: blocked
        description: x
        chargers: {template: {count: 2}}
        steps:
          - plug_in: {}
          - present_id_tag: {id_tag: STOLEN}
          - expect: {answer: Authorize, status: Blocked, within: 10}
          - wait: {status: Charging}
        """,
        csms,
    )
    assert run.status == "failed"
    assert (
        verdicts(run)
        == [
            [
                ("plug_in", "passed"),
                ("present_id_tag", "passed"),
                ("expect", "failed"),
                ("wait", "skipped"),
            ]
        ]
        * 2
    )
    for charger in run.result["chargers"]:
        cp_id = charger["charge_point_id"]
        failed = charger["steps"][2]
        assert failed["message"] == (
            f"steps[2] expect on {cp_id}: the answer to Authorize was Accepted, expected Blocked"
        )
        assert charger["status"] == "failed" and charger["message"] == failed["message"]
        assert charger["steps"][3]["message"] == f"skipped after: {failed['message']}"
    assert sum(": failed" in line for line in lines) == 2


async def test_a_verdict_quoting_a_hostile_csms_is_stored_and_exported(
    csms: CentralSystem,
) -> None:
    # The CSMS answers Authorize with a CALLERROR whose code holds a NUL and a BEL. The
    # verdict quotes the code; before, PostgreSQL refused the run's final save (the run was
    # left "running") and the JUnit file was not XML. Now both show the escapes.
    csms.fail_actions["Authorize"] = "Internal\x00Err\x07or\x1b[31m"
    run, lines = await run_scenario(
        """\
        name: hostile
        description: x
        chargers:
          template:
            count: 1
            configuration: {LocalAuthorizeOffline: true, AllowOfflineTxForUnknownId: true}
        steps:
          - plug_in: {}
          - present_id_tag: {id_tag: T1}
          - expect: {answer: Authorize, status: Accepted, within: 10}
        """,
        csms,
    )
    stored = await database_sync_to_async(ScenarioRun.objects.get)(pk=run.pk)
    assert stored.status == "failed"
    message = stored.result["chargers"][0]["steps"][2]["message"]
    assert message.endswith(
        r"the CSMS answered Authorize with CALLERROR Internal\x00Err\x07or\x1b[31m"
    )
    suite = valid_junit(junit_xml([stored.result]))
    failure = suite.find("testsuite/testcase/failure")
    assert failure is not None and failure.get("message") == message
    # The command's line per step shows the escapes too: no ANSI escape reaches a terminal.
    assert lines[-1].endswith(message)
    assert not any(char in line for line in lines for char in "\x00\x07\x1b")


def test_a_progress_line_is_one_line_of_text() -> None:
    assert one_line("a\x1b[2Kb\rc\nd\te") == r"a\x1b[2Kb\rc\nd" + "\te"


@pytest.mark.csms(boot_interval=30)
async def test_a_heartbeat_interval_below_the_minimum_fails(csms: CentralSystem) -> None:
    run, _ = await run_scenario(
        """\
        name: heartbeat
        description: x
        chargers: {template: {count: 1}}
        steps:
          - expect: {heartbeat_interval_at_least: 60}
        """,
        csms,
    )
    assert run.status == "failed"
    message = run.result["chargers"][0]["steps"][0]["message"]
    assert message.endswith(
        "the heartbeat interval is 30 s (from BootNotification), expected at least 60 s"
    )


async def test_unanswered_calls_fail_answers_within(csms: CentralSystem) -> None:
    run, _ = await run_scenario(
        """\
        name: silent
        description: x
        chargers: {template: {count: 1}}
        steps:
          - expect: {answers_within: 5}
          - trigger: {http: GET, url: "${csms_control}/silence"}
          - plug_in: {}
          - wait: {seconds: 1.5}
          - expect: {answers_within: 1}
          - expect: {answer: StatusNotification, within: 0.5}
        """,
        csms,
        csms_control=await _hooks(csms),
    )
    steps = run.result["chargers"][0]["steps"]
    assert [s["status"] for s in steps] == ["passed"] * 4 + ["failed", "skipped"]
    assert "the CSMS did not answer StatusNotification" in steps[4]["message"]


class _Hooks(http.server.BaseHTTPRequestHandler):
    """A CSMS's test hooks: GET /silence stops answering; POST /start/<cp> sends a
    RemoteStartTransaction with the body's idTag."""

    csms: CentralSystem
    loop: asyncio.AbstractEventLoop

    def do_GET(self) -> None:
        if self.path == "/silence":
            self.csms.respond = False
            self._answer(200)
        else:
            self._answer(404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cp_id = self.path.rsplit("/", 1)[-1]
        request = call.RemoteStartTransaction(id_tag=body["idTag"], connector_id=1)
        asyncio.run_coroutine_threadsafe(self.csms.call(cp_id, request), self.loop)
        self._answer(202)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


_servers: list[http.server.ThreadingHTTPServer] = []


async def _hooks(csms: CentralSystem) -> str:
    handler = type("Hooks", (_Hooks,), {"csms": csms, "loop": asyncio.get_running_loop()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _servers.append(server)
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(autouse=True)
def stop_hook_servers() -> Iterator[None]:
    yield
    while _servers:
        server = _servers.pop()
        server.shutdown()
        server.server_close()


async def test_a_trigger_makes_the_csms_call_and_waits_and_expectations_see_it(
    csms: CentralSystem,
) -> None:
    run, _ = await run_scenario(
        """\
        name: remote-start
        description: x
        chargers: {template: {count: 1}}
        steps:
          - plug_in: {}
          - trigger: {url: "${csms_control}/start/${charge_point_id}", body: {idTag: R-1}, expect_status: 202}
          - expect: {csms_call: RemoteStartTransaction, payload: {idTag: R-1}, within: 10}
          - wait: {status: Charging, timeout: 20}
          - expect: {answer: StartTransaction, status: Accepted}
          - trigger: {url: "${csms_control}/start/${charge_point_id}", body: {idTag: R-2}, expect_status: 202}
          - wait: {csms_call: RemoteStartTransaction, payload: {idTag: R-2}, timeout: 10}
          - expect: {csms_call: RemoteStartTransaction, payload: {idTag: NOBODY}, within: 0.5}
        """,
        csms,
        csms_control=await _hooks(csms),
    )
    steps = run.result["chargers"][0]["steps"]
    assert [s["status"] for s in steps] == ["passed"] * 7 + ["failed"]
    # What it did send of that action in the step's window (from the previous step's start:
    # R-2 falls in it or not, by a few ms) is quoted: the failure then says what differed.
    message = steps[7]["message"]
    assert 'the CSMS sent no RemoteStartTransaction matching {"idTag": "NOBODY"} within 0.5 s' in (
        message
    )
    assert message.endswith(
        (" 0.5 s", ' (it sent 1; the last: {"connectorId": 1, "idTag": "R-2"})')
    )


def test_a_payload_that_did_not_match_is_quoted_from_what_the_csms_sent() -> None:
    from types import SimpleNamespace

    from scenarios.steps import _sent_instead
    from scenarios.watch import CALL, Frame

    def call(at: float, action: str, payload: Any, direction: str = "in") -> Frame:
        return Frame(at, direction, CALL, f"m{at}", action, payload)

    frames = [
        call(1.0, "RemoteStartTransaction", {"idTag": "BEFORE"}),  # before the window
        call(5.0, "RemoteStartTransaction", {"idTag": "AAA"}),
        call(6.0, "Reset", {"type": "Soft"}),
        call(7.0, "RemoteStartTransaction", {"idTag": "x" * 400}),
    ]
    ctx = SimpleNamespace(
        watch=SimpleNamespace(frames={7: frames}),
        target=SimpleNamespace(pk=7),
        hide=lambda value: value,  # the run's hiding of secrets: none here
    )
    ctx.since = 2.0
    args = {"csms_call": "RemoteStartTransaction", "payload": {"idTag": "BBB"}}
    shown = _sent_instead(ctx, "RemoteStartTransaction", args)  # type: ignore[arg-type]
    assert shown.startswith(' (it sent 2; the last: {"idTag": "xxx')
    assert shown.endswith("…)") and len(shown) < 340
    ctx.watch.frames = {7: frames[:3]}
    assert _sent_instead(ctx, "RemoteStartTransaction", args) == (  # type: ignore[arg-type]
        ' (it sent 1; the last: {"idTag": "AAA"})'
    )
    assert _sent_instead(ctx, "Reset", {"csms_call": "Reset"}) == ""  # type: ignore[arg-type]


async def test_a_trigger_that_answers_badly_fails_and_one_unreachable_errors(
    csms: CentralSystem,
) -> None:
    run, _ = await run_scenario(
        """\
        name: hooks
        description: x
        chargers: {template: {count: 1}}
        steps:
          - trigger: {http: GET, url: "${csms_control}/nothing-here"}
        """,
        csms,
        csms_control=await _hooks(csms),
    )
    step = run.result["chargers"][0]["steps"][0]
    assert step["status"] == "failed" and step["message"].endswith("/nothing-here answered 404")

    run, _ = await run_scenario(
        """\
        name: hooks
        description: x
        chargers: {template: {count: 1}}
        steps:
          - trigger: {http: GET, url: "http://hook:URLPASS@127.0.0.1:9/closed?token=QUERYSECRET"}
        """,
        csms,
    )
    step = run.result["chargers"][0]["steps"][0]
    # A URL's credentials never reach a verdict's text (kept, shown, in the JUnit).
    shown = "GET http://hook:********@127.0.0.1:9/closed?token=******** failed"
    assert step["status"] == "error" and shown in step["message"], step
    assert "URLPASS" not in str(run.result) and "QUERYSECRET" not in str(run.result)
    assert run.status == "error"


@pytest.fixture
async def fleet(csms: CentralSystem) -> AsyncIterator[Simulator]:
    """Existing chargers on a running worker (the scaled-out case: RunningWorkers)."""
    await database_sync_to_async(make_vehicle)()
    depot = await database_sync_to_async(make_location)("Scenario Depot")
    other = await database_sync_to_async(make_location)("Elsewhere")
    for cp_id, location in (("PAT-1", depot), ("PAT-2", depot), ("OTHER-1", other)):
        await database_sync_to_async(make_charger)(
            cp_id, evses=1, csms_url=csms.url, location=location
        )
    service = Simulator(
        RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5),
        listener=EventPublisher(rate=20),
    )
    await service.start(channels=True)
    await booted(service, "PAT-1", "PAT-2", "OTHER-1")
    try:
        yield service
    finally:
        await service.stop()


@pytest.mark.parametrize(
    ("chargers", "expected"),
    [
        ("{ids: [OTHER-1, PAT-2]}", ["OTHER-1", "PAT-2"]),
        ('{pattern: "PAT-*"}', ["PAT-1", "PAT-2"]),
        ('{location: "Scenario Depot"}', ["PAT-1", "PAT-2"]),
    ],
)
async def test_existing_chargers_by_ids_pattern_and_location(
    fleet: Simulator, csms: CentralSystem, chargers: str, expected: list[str]
) -> None:
    run, _ = await run_scenario(
        f"""\
        name: existing
        description: x
        chargers: {chargers}
        steps:
          - reboot: {{wait: Accepted}}
          - expect: {{answer: BootNotification, status: Accepted}}
          - expect: {{status: Available}}
        """,
        csms,
        host=RunningWorkers(),
    )
    passed_all(run)
    assert [c["charge_point_id"] for c in run.result["chargers"]] == expected
    assert all(not c["temporary"] for c in run.result["chargers"])
    # Existing chargers stay.
    assert await database_sync_to_async(
        Charger.objects.filter(charge_point_id__in=expected).count
    )() == len(expected)


@pytest.mark.parametrize(
    ("chargers", "message"),
    [
        ("{ids: [PAT-1, NOPE-9]}", "no enabled charger with the id NOPE-9"),
        ('{pattern: "ZZ*"}', "no enabled charger's id matches 'ZZ*'"),
        ('{location: "Atlantis"}', "no location named 'Atlantis'"),
    ],
)
async def test_chargers_that_cannot_be_found_error_the_run(
    fleet: Simulator, csms: CentralSystem, chargers: str, message: str
) -> None:
    run, _ = await run_scenario(
        f"""\
        name: missing
        description: x
        chargers: {chargers}
        steps:
          - wait: {{seconds: 0}}
        """,
        csms,
        host=RunningWorkers(),
    )
    assert run.status == "error"
    assert run.message == message
    assert run.result["chargers"] == []


async def test_a_setup_that_failed_has_its_time_in_the_json_and_the_junit(
    csms: CentralSystem,
) -> None:
    """No worker runs the charger: the setup waits for one (the engine's ack) and fails.
    Its testcase had a time of 0 whatever the wait; it has the setup's, as measured."""
    await database_sync_to_async(make_charger)("LONELY-1", csms_url=csms.url)
    runner = Runner(
        parse(NO_WORKER),
        client=EngineClient(ack_seconds=0.2),
        host=RunningWorkers(),
        options=Options(settle_seconds=0.3),
    )
    run = await runner.execute()
    assert run.status == "error" and run.message.startswith("the engine: "), run.message
    setup = run.result["setup_duration"]
    assert 0 < setup <= run.result["duration"]  # the wait for the ack is in it
    [case] = valid_junit(junit_xml([run.result])).iter("testcase")
    assert case.get("name") == "setup" and case.find("error") is not None
    assert case.get("time") == f"{setup:.3f}"


NO_WORKER = """\
name: no-worker
description: x
chargers: {ids: [LONELY-1]}
steps:
  - wait: {seconds: 0}
"""


SPREAD = """\
name: spread
description: x
chargers: {template: {count: 3, connect: false}}
spread: 0.4s
steps:
  - wait: {seconds: 0}
"""


async def test_the_seed_governs_the_spread(csms: CentralSystem) -> None:
    def delays(run: ScenarioRun) -> list[float]:
        return [c["start_delay"] for c in run.result["chargers"]]

    first, _ = await run_scenario(SPREAD, csms, seed=11)
    again, _ = await run_scenario(SPREAD, csms, seed=11)
    other, _ = await run_scenario(SPREAD, csms, seed=12)
    assert delays(first) == delays(again)
    assert delays(first) != delays(other)
    assert all(0 <= d <= 0.4 for d in delays(first))
    assert len(set(delays(first))) == 3
    passed_all(first)


# -- the engine commands of the other branches, with a stand-in engine ------------------------


class FakeClient:
    """Answers every command as a worker that knows it would, or as one that does not."""

    def __init__(self, known: bool) -> None:
        self.known = known
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def command(
        self, pk: int, cp_id: str, command: str, args: Any, *, wait_for: Any = None
    ) -> contract.CommandResult:
        self.sent.append((command, dict(args)))
        if self.known:
            return contract.command_result("r", pk, command, True, f"{command} done")
        return contract.command_result(
            "r", pk, command, False, f"unknown command {command!r}", error=contract.ERROR_INVALID
        )


def _context(client: FakeClient) -> StepContext:
    import random

    return StepContext(
        client,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        Target(1, "CP-1", "ws://x"),
        random.Random(1),
        0.0,
        0.0,
        0.0,
    )


@pytest.mark.parametrize(
    ("kind", "args", "command", "sent"),
    [
        (
            "override",
            {"action": "RemoteStartTransaction", "next": True, "status": "Rejected"},
            "set_answer_override",
            {"action": "RemoteStartTransaction", "mode": "next", "status": "Rejected"},
        ),
        (
            "override",
            {"action": "Reset", "every": True, "delay": "3s"},
            "set_answer_override",
            {"action": "Reset", "mode": "every", "delay": 3.0},
        ),
        (
            "override",
            {"action": "Reset", "clear": True},
            "set_answer_override",
            {"action": "Reset", "clear": True},
        ),
        ("network", {"cut": "10s"}, "cut_network", {"seconds": 10.0}),
        (
            "network",
            {"clear": True},
            "set_network",
            {"latency_ms": 0, "jitter_ms": 0, "drop_rate": 0},
        ),
        ("network", {"close_code": 1011}, "close_connection", {"code": 1011}),
        ("close", {}, "close_connection", {"code": 1000}),
        ("clock_skew", {"seconds": -300}, "set_clock_skew", {"seconds": -300.0}),
    ],
)
@pytest.mark.django_db(transaction=False)
async def test_fault_steps_send_their_engine_commands(
    kind: str, args: dict[str, Any], command: str, sent: dict[str, Any]
) -> None:
    client = FakeClient(known=True)
    assert await STEPS[kind](_context(client), args) == f"{command} done"
    assert client.sent == [(command, sent)]


@pytest.mark.django_db(transaction=False)
async def test_network_conditions_carry_a_seed_from_the_run() -> None:
    client = FakeClient(known=True)
    await STEPS["network"](_context(client), {"latency_ms": 200, "jitter_ms": 50, "drop_rate": 0.1})
    ((command, sent),) = client.sent
    assert command == "set_network"
    seed = sent.pop("seed")
    assert sent == {"latency_ms": 200, "jitter_ms": 50, "drop_rate": 0.1}
    client.sent.clear()
    await STEPS["network"](_context(client), {"latency_ms": 200})
    assert client.sent[0][1]["seed"] == seed  # the same run seed, the same draw


@pytest.mark.django_db(transaction=False)
async def test_a_worker_that_does_not_know_the_command_errors_the_step_with_its_message() -> None:
    # (An older worker of a scaled-out fleet: not the CSMS failing a check, so an error.)
    from scenarios.steps import StepError

    with pytest.raises(StepError, match="unknown command 'set_clock_skew'"):
        await STEPS["clock_skew"](_context(FakeClient(known=False)), {"seconds": 5})


async def test_an_unanswered_call_fails_an_answer_expectation(csms: CentralSystem) -> None:
    run, _ = await run_scenario(
        """\
        name: silent
        description: x
        chargers: {template: {count: 1}}
        steps:
          # The firmware's startup, reported after the boot, answered before the silence: a
          # CALL left unanswered would hold up the StatusNotification (one CALL at a time).
          - expect: {answer: SecurityEventNotification, within: 5}
          - trigger: {http: GET, url: "${csms_control}/silence"}
          - plug_in: {}
          - expect: {answer: StatusNotification, within: 1}
        """,
        csms,
        csms_control=await _hooks(csms),
    )
    step = run.result["chargers"][0]["steps"][3]
    assert step["status"] == "failed"
    assert step["message"].endswith("the CSMS did not answer StatusNotification within 1 s")


async def test_an_interrupted_run_is_stored_as_such_and_cleans_up(csms: CentralSystem) -> None:
    runner = Runner(
        parse(
            "name: long\ndescription: x\nchargers: {template: {count: 1}}\n"
            "steps:\n  - wait: {seconds: 60}\n"
        ),
        client=EngineClient(),
        host=InProcessEngine(),
        options=Options(csms_url=csms.url, settle_seconds=0.3),
    )
    task = asyncio.create_task(runner.execute())
    await asyncio.sleep(0)
    while runner.watch is None or not runner.chargers:
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    run = await database_sync_to_async(ScenarioRun.objects.get)()
    assert (run.status, run.message) == ("error", "interrupted before it finished")
    assert not await database_sync_to_async(
        Charger.objects.filter(charge_point_id__startswith="SCN-").exists
    )()


SESSION_LEFT_RUNNING = """\
name: left-running
description: A session that the scenario leaves running.
chargers: {template: {count: 1, connectors: 2}}
steps:
  - plug_in: {connector: 2, wait: Preparing}
  - present_id_tag: {connector: 2, id_tag: STAYS, wait: Charging}
"""


def stopped_as(csms: CentralSystem) -> list[tuple[int, str | None]]:
    return [(tx.connector_id, tx.reason) for tx in csms.transactions.values()]


async def test_a_session_left_running_is_stopped_before_its_charger_goes(
    csms: CentralSystem,
) -> None:
    run, _ = await run_scenario(SESSION_LEFT_RUNNING, csms)
    passed_all(run)
    # Ended as a charger taken out of service ends it, and answered before it was deleted:
    # the CSMS holds no transaction open for a charger that is gone.
    assert stopped_as(csms) == [(2, "Other")]
    assert all(tx.stop_timestamp is not None for tx in csms.transactions.values())


async def test_a_run_cancelled_mid_session_stops_the_session_too(csms: CentralSystem) -> None:
    runner = Runner(
        parse(SESSION_LEFT_RUNNING + "  - wait: {seconds: 60}\n"),
        client=EngineClient(),
        host=InProcessEngine(),
        options=Options(csms_url=csms.url, settle_seconds=0.3),
    )
    task = asyncio.create_task(runner.execute())
    while not runner.chargers or len(runner.chargers[0].steps) < 2:
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped_as(csms) == [(2, "Other")]
    assert not await database_sync_to_async(
        Charger.objects.filter(charge_point_id__startswith="SCN-").exists
    )()


BRIEF = """\
name: brief
description: One template charger at the default location boots.
chargers:
  template: {count: 1}
steps:
  - expect: {status: Accepted}
"""


def default_location_exists() -> bool:
    return Location.objects.filter(name="Scenarios").exists()


async def test_the_default_location_a_run_made_goes_with_its_chargers(csms: CentralSystem) -> None:
    """It is not left in the locations list and filters as a site of 0 chargers."""
    run, _ = await run_scenario(BRIEF, csms)

    passed_all(run)
    assert not await database_sync_to_async(default_location_exists)()


def set_up_default_location() -> None:
    make_location("Scenarios", grid_limit_kw=50)


def another_run_is_active() -> None:
    make_location("Scenarios", city="", country="", time_zone="UTC")  # as a run makes it
    ScenarioRun.objects.create(name="other", source="", seed=1, status="running")


@pytest.mark.parametrize("before", [set_up_default_location, another_run_is_active])
async def test_the_default_location_stays_when_set_up_or_another_run_may_use_it(
    csms: CentralSystem, before: Any
) -> None:
    await database_sync_to_async(before)()

    run, _ = await run_scenario(BRIEF, csms)

    passed_all(run)
    assert await database_sync_to_async(default_location_exists)()
    assert not await database_sync_to_async(Charger.objects.exists)()


async def test_a_templates_hardware_location_and_vehicle_and_a_charger_that_starts_offline(
    csms: CentralSystem,
) -> None:
    await database_sync_to_async(make_location)("Template Site")
    vehicle = await database_sync_to_async(make_vehicle)(1)
    run, _ = await run_scenario(
        f"""\
        name: template
        description: x
        chargers:
          template:
            count: 1
            prefix: TPL
            power_type: DC
            max_power_kw: 150
            location: Template Site
            vehicle: "{vehicle.make} {vehicle.model}"
            vendor: Acme
            model: Fast 150
            connect: false
            configuration: {{MeterValueSampleInterval: 5}}
        steps:
          - expect: {{answers_within: 1}}
          - connect: {{wait: Accepted}}
          - expect: {{answer: BootNotification, status: Accepted}}
          - plug_in: {{wait: Preparing}}
        """,
        csms,
    )
    passed_all(run)
    (charger,) = run.result["chargers"]
    boot = csms.boot_info[charger["charge_point_id"]]
    assert (boot["chargePointVendor"], boot["chargePointModel"]) == ("Acme", "Fast 150")
    assert re.fullmatch(rf"TPL-R{run.pk}\.[0-9a-z]{{4}}-1", charger["charge_point_id"])


class _BasicPasswords(dict[str, str]):
    """The built-in CSMS's HTTP Basic passwords (profile 1): one for every charger."""

    def __init__(self, password: str) -> None:
        super().__init__()
        self.password = password

    def get(self, cp_id: str, default: Any = None) -> Any:
        return self.password

    def __contains__(self, cp_id: object) -> bool:
        return True


@pytest.mark.parametrize(
    ("given", "connects"),
    [("00112233445566778899aabbccddeeff", True), ("ffeeddccbbaa99887766554433221100", False)],
)
async def test_a_template_on_security_profile_1_connects_with_its_key(
    csms: CentralSystem, given: str, connects: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CSMS that asks every charger for HTTP Basic credentials: a template could set
    # neither the profile nor the key, so no scenario could run against it.
    from scenarios import runner as runner_module

    monkeypatch.setattr(runner_module, "CONNECT_SECONDS", 3.0)  # the refused one's wait
    csms.passwords = _BasicPasswords("00112233445566778899aabbccddeeff")
    run, _ = await run_scenario(
        f"""\
        name: basic-auth
        description: x
        variables: {{csms_password: "{given}"}}
        chargers:
          template: {{count: 1, security_profile: 1, authorization_key: "${{csms_password}}"}}
        steps:
          - expect: {{status: Accepted}}
        """,
        csms,
    )
    if connects:
        passed_all(run)
    else:
        (charger,) = run.result["chargers"]
        assert charger["status"] == "error"
        assert "invalid password" in charger["message"] or "401" in charger["message"]
    assert given not in json.dumps(run.result)
    assert not await database_sync_to_async(Charger.objects.exists)()  # deleted after


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ('{count: 1, location: "Nowhere"}', "no location named 'Nowhere'"),
        ('{count: 1, vehicle: "Flying Car"}', "no vehicle model named 'Flying Car'"),
    ],
)
async def test_a_template_naming_what_does_not_exist_errors_the_run(
    csms: CentralSystem, template: str, message: str
) -> None:
    run, _ = await run_scenario(
        f"name: t\ndescription: x\nchargers: {{template: {template}}}\nsteps:\n  - wait: {{seconds: 0}}\n",
        csms,
    )
    assert (run.status, run.message) == ("error", message)


async def test_a_runtime_variable_without_a_value_errors_the_step(csms: CentralSystem) -> None:
    run, _ = await run_scenario(
        """\
        name: hooks
        description: x
        chargers: {template: {count: 1}}
        steps:
          - trigger: {url: "${csms_control}/behaviour"}
        """,
        csms,
    )
    step = run.result["chargers"][0]["steps"][0]
    assert step["status"] == "error"
    assert step["message"].endswith(
        "${csms_control} has no value in this run (runscenario --var csms_control=URL, or "
        "--builtin-csms)"
    )


async def test_a_template_without_a_csms_errors_the_run() -> None:
    runner = Runner(
        parse("name: t\ndescription: x\nchargers: {template: {count: 1}}\nsteps:\n  - reboot:\n"),
        client=EngineClient(),
        host=InProcessEngine(),
    )
    run = await runner.execute()
    assert run.status == "error"
    assert run.message.startswith("the template's chargers need a CSMS")


@pytest.mark.skipif(
    "set_answer_override" not in contract.DRIVE_COMMANDS,
    reason="the engine has no fault injection commands yet (their own branch)",
)
async def test_fault_steps_against_the_engine_that_has_them(csms: CentralSystem) -> None:
    run, _ = await run_scenario(
        """\
        name: faults
        description: x
        chargers: {template: {count: 1}}
        steps:
          - override: {action: RemoteStartTransaction, next: true, status: Rejected}
          - trigger: {url: "${csms_control}/start/${charge_point_id}", body: {idTag: R-1}, expect_status: 202}
          - wait: {csms_call: RemoteStartTransaction, timeout: 10}
          - wait: {seconds: 1}
          - expect: {status: Available}
          - override: {action: Reset, clear: true}
          - network: {latency_ms: 50, jitter_ms: 10, drop_rate: 0}
          - network: {clear: true}
          - clock_skew: {seconds: -300}
          - close: {code: 1011}
          - wait: {status: Accepted, timeout: 60}
          - network: {close_code: 4000}
          - wait: {status: Accepted, timeout: 60}
          - expect: {connection_kept: true}
        """,
        csms,
        seed=3,
        csms_control=await _hooks(csms),
    )
    passed_all(run)


@pytest.mark.parametrize(
    "args",
    [
        {
            "csms_call": "ChangeConfiguration",
            "payload": {"key": "AuthorizationKey", "value": "KEY-4242"},
        },
        {"no_csms_call": "ChangeConfiguration", "payload": {"AuthorizationKey": "KEY-4242"}},
    ],
)
async def test_an_expected_write_only_value_is_an_error_that_does_not_echo_it(args):
    """Every record of a frame hides an AuthorizationKey's value, the frames a scenario
    checks included: matching it would fail a CSMS that sent it, and the failure would
    print the key. The step is an error instead, which names the key, not its value."""
    from scenarios.steps import StepError, expect

    with pytest.raises(StepError) as raised:
        await expect(None, {**args, "within": 0.1})  # type: ignore[arg-type]  # never read
    assert "AuthorizationKey" in str(raised.value)
    assert "KEY-4242" not in str(raised.value)


async def test_a_charger_that_cannot_connect_says_why_and_where(
    csms: CentralSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CSMS that is down (or a wrong URL): the verdict names the URL and the reason of
    the last attempt, not only "offline"."""
    from scenarios import runner as runner_module

    monkeypatch.setattr(runner_module, "CONNECT_SECONDS", 3.0)
    run, _ = await run_scenario(
        """\
        name: down
        description: x
        chargers: {template: {count: 1, csms_url: "ws://127.0.0.1:9/ocpp"}}
        steps:
          - plug_in: {}
        """,
        csms,
    )
    charger = run.result["chargers"][0]
    assert charger["status"] == "error"
    assert "did not connect" in charger["message"]
    assert charger["message"].endswith(
        "(it is offline; its last attempt to connect to ws://127.0.0.1:9/ocpp: connection refused)"
    ), charger
    # The time the run spent on it (its attempt to connect), in the JSON and the JUnit, as
    # a step's testcase has the step's: not 0. Read on the runner's own stamps: the whole
    # connect wait (CONNECT_SECONDS) is in it, and it is a part of the run's duration; how
    # long the host took is not the test's business.
    assert 3.0 <= charger["duration"] <= run.result["duration"], (charger, run.result)
    suite = valid_junit(junit_xml([run.result]))
    [case] = [case for case in suite.iter("testcase") if case.get("name") == "charger"]
    assert float(case.get("time", "0")) == charger["duration"]


async def test_an_argument_a_runtime_variable_made_invalid_errors_the_step(
    csms: CentralSystem,
) -> None:
    """The scenario's mistake, not the CSMS's: an error, not a failure of the CSMS."""
    run, _ = await run_scenario(
        """\
        name: long-tags
        description: x
        chargers: {template: {count: 1, prefix: VERYLONGPREFIX}}
        steps:
          - plug_in: {}
          - present_id_tag: {id_tag: "TAG-${charge_point_id}"}
        """,
        csms,
    )
    step = run.result["chargers"][0]["steps"][1]
    assert step["status"] == "error", step
    assert "20 characters" in step["message"]
    assert run.status == "error"


DROPPED = """\
name: dropped
description: The CSMS drops the connection in the middle of a session.
chargers: {template: {count: 1}}
steps:
  - plug_in: {wait: Preparing}
  - present_id_tag: {id_tag: TAG-1, wait: Charging}
  - wait: {seconds: 2}
  - stop: {wait: Finishing, timeout: 10}
  - expect: {connection_kept: true}
"""


async def test_a_connection_the_csms_closes_mid_session_is_reported_and_can_be_expected(
    csms: CentralSystem,
) -> None:
    """The charger reconnects and the session ends well, so every step that does not judge
    the connection passes, as before; but the report says the CSMS closed it (the step's
    line, the JSON, the JUnit's system-out, the summary), and `connection_kept` fails on
    it. A run with such a close passed without a word."""
    lines: list[str] = []
    runner = Runner(
        parse(DROPPED),
        client=EngineClient(),
        host=InProcessEngine(),
        options=Options(csms_url=csms.url, settle_seconds=0.3),
        progress=lines.append,
    )
    task = asyncio.create_task(runner.execute())
    while not runner.chargers or len(runner.chargers[0].steps) < 2:
        await asyncio.sleep(0.02)
    cp_id = runner.chargers[0].target.charge_point_id
    await csms.disconnect(cp_id, code=1011, reason="worker restarted")
    run = await task

    [charger] = run.result["chargers"]
    assert [s["status"] for s in charger["steps"]] == ["passed"] * 4 + ["failed"], charger
    said = re.compile(
        r'the CSMS closed the connection \d+\.\d s into the run \(code 1011, "worker restarted"\)'
    )
    [close] = charger["disconnects"]
    assert (close["by"], close["code"], close["reason"], close["step"]) == (
        "csms",
        1011,
        "worker restarted",
        2,
    )
    assert said.fullmatch(close["message"]), close
    wait = charger["steps"][2]
    assert wait["notes"] == [close["message"]]
    assert wait["started"] <= close["at"] <= wait["started"] + wait["duration"]
    assert "notes" not in charger["steps"][3]
    assert charger["steps"][4]["message"].endswith(close["message"])
    # The command's line of the step it happened in, and its summary.
    [line] = [line for line in lines if " steps[2] wait: " in line]
    assert line.endswith(f"passed ({wait['duration']:.2f} s); {close['message']}"), line
    assert f"{cp_id}: {close['message']}" in summary(run)
    # The JUnit: the step's testcase passed, and says it in its system-out.
    suite = valid_junit(junit_xml([run.result]))
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    out = cases["steps[2] wait 2 s"].find("system-out")
    assert out is not None and out.text == close["message"]
    assert cases["steps[2] wait 2 s"].find("failure") is None
    assert cases["steps[3] stop until Finishing"].find("system-out") is None


def test_a_connection_the_charger_failed_for_a_csms_frame_is_reported_as_such() -> None:
    """The charger fails the link for a frame over the size limit (1009), text that is not
    UTF-8 (1007) or a protocol error (1002): the CSMS's doing, not the scenario's."""
    from scenarios.watch import LinkEvent, close_said, closes_not_ours

    detail = {
        "code": 1006,
        "reason": "",
        "summary": "failed by the charger with 1009: frame with 1126519 bytes exceeds limit",
        "by": "failed",
        "sent_code": 1009,
        "sent_reason": "frame with 1126519 bytes exceeds limit",
    }
    link = LinkEvent(at=12.5, event="closed", detail=detail)
    assert closes_not_ours([link]) == [link]
    assert close_said(link, run_started=10.0) == (
        "the charger failed the connection 2.5 s into the run for a frame the CSMS sent (code "
        '1009, "frame with 1126519 bytes exceeds limit")'
    )
    del detail["by"]  # a worker that does not say: from its summary
    assert closes_not_ours([link]) == [link]


async def test_a_charger_not_online_and_accepted_says_what_was_expected(
    csms: CentralSystem,
) -> None:
    """`expect: {status: Accepted}` on a charger that is offline said only "the charger is
    offline, boot None": what came, not what was expected, as every other expectation's
    failure says ("connector 1 is Available, expected Charging")."""
    run, _ = await run_scenario(
        """\
        name: offline
        description: x
        chargers:
          template: {count: 1, connect: false}
        steps:
          - expect: {status: Accepted}
        """,
        csms,
    )

    step = run.result["chargers"][0]["steps"][0]
    assert (step["status"], step["message"]) == (
        "failed",
        f"steps[0] expect on {run.result['chargers'][0]['charge_point_id']}: the charger is "
        "offline, no boot yet, expected it online with its boot Accepted",
    )


async def test_a_trigger_the_hook_refuses_says_what_the_hook_answered(
    csms: CentralSystem, csms_control: ControlServer
) -> None:
    """A hook's refusal said only "answered 400": why (the built-in CSMS's control names
    the payload's problem, another CSMS's API its own) was read and thrown away, and the
    scenario's author was left to guess."""
    run, _ = await run_scenario(
        """\
        name: refused-hook
        description: x
        chargers: {template: {count: 1}}
        steps:
          - trigger:
              url: "${csms_control}/chargers/${charge_point_id}/DataTransfer"
              body: {vendorId: QA, data: "${charger_id}"}
        """,
        csms,
        csms_control=csms_control.url,
    )
    step = run.result["chargers"][0]["steps"][0]
    assert step["status"] == "failed"
    assert step["message"].endswith(
        "/DataTransfer answered 400: "
        '{"error":"DataTransfer payload refused: '
        f"{run.result['chargers'][0]['charger_id']} is not of type 'string'\"}}"
    )


async def test_a_hooks_answer_quoting_a_long_secret_shows_none_of_it(
    csms: CentralSystem, csms_control: ControlServer
) -> None:
    """The start of a refusing hook's answer is quoted: a secret the answer quotes must be
    hidden before it is cut to length, or the part that fits escapes the hiding."""
    secret = "SECRETV" + "x" * 400
    run, _ = await run_scenario(
        f"""\
        name: long-secret
        description: x
        variables: {{auth_vendor: {secret}}}
        chargers: {{template: {{count: 1}}}}
        steps:
          - trigger:
              url: "${{csms_control}}/chargers/${{charge_point_id}}/DataTransfer"
              body: {{vendorId: "${{auth_vendor}}"}}
        """,
        csms,
        csms_control=csms_control.url,
    )
    step = run.result["chargers"][0]["steps"][0]
    assert step["status"] == "failed"
    assert "answered 400: " in step["message"] and "********" in step["message"]
    assert "SECRETV" not in step["message"]


async def test_a_hooks_answer_quoting_a_secret_the_file_writes_out_shows_none_of_it(
    csms: CentralSystem, csms_control: ControlServer
) -> None:
    """QA: only secret variables were hidden in a refusing hook's answer: a secret written
    in the file itself (a member named as one) came back in the verdict as the hook quoted
    it."""
    run, _ = await run_scenario(
        """\
        name: written-secret
        description: x
        chargers: {template: {count: 1}}
        steps:
          - trigger:
              url: "${csms_control}/chargers/${charge_point_id}/DataTransfer"
              body: {vendorId: x, data: {token: LITERAL-TOKEN-1234}}
        """,
        csms,
        csms_control=csms_control.url,
    )
    step = run.result["chargers"][0]["steps"][0]
    assert step["status"] == "failed"
    assert "answered 400: " in step["message"] and "'token': '********'" in step["message"]
    assert "LITERAL-TOKEN-1234" not in str(run.result)


async def test_a_csms_call_that_did_not_match_shows_none_of_a_long_secret_it_carried(
    csms: CentralSystem, csms_control: ControlServer
) -> None:
    """A failed `csms_call` quotes the start of the payload the CSMS sent instead: a secret
    it carried must be hidden before the quote is cut to length, or the part that fits
    escapes the run's hiding of the whole message."""
    secret = "SECRETV" + "x" * 400
    run, _ = await run_scenario(
        f"""\
        name: long-secret-call
        description: x
        variables: {{auth_data: {secret}}}
        chargers: {{template: {{count: 1}}}}
        steps:
          - trigger:
              url: "${{csms_control}}/chargers/${{charge_point_id}}/DataTransfer"
              body: {{vendorId: QA, data: "${{auth_data}}"}}
          - expect: {{csms_call: DataTransfer, payload: {{data: other}}, within: 1}}
        """,
        csms,
        csms_control=csms_control.url,
    )
    step = run.result["chargers"][0]["steps"][1]
    assert step["status"] == "failed"
    assert "the last: " in step["message"] and "********" in step["message"]
    assert "SECRETV" not in step["message"]
