"""Fleet steps of a scenario (scenarios/steps.py `is_fleet_step`, scenarios/runner.py): the
`traffic` step that starts a location's arrival-profile traffic on every worker once for
the run, and the `response_time` expectation, per charger and fleet-wide; against the
built-in CSMS over real sockets, the engine in this process (runscenario's
`InProcessEngine`)."""

from __future__ import annotations

import math
import re
import textwrap

import pytest
from channels.db import database_sync_to_async

from chargers.engine_client import EngineClient
from scenarios.format import ScenarioError, parse
from scenarios.models import ScenarioRun
from scenarios.runner import Options, Runner
from scenarios.steps import (
    StepFailed,
    Target,
    _without_answer,
    answers_within,
    percentile,
    response_times,
    timed_calls,
)
from scenarios.watch import CALL, CALLERROR, CALLRESULT, Frame, LinkEvent
from simulator.csms import CentralSystem
from simulator.management.commands.runscenario import InProcessEngine
from simulator.runtime.traffic import SiteTraffic
from tests.cast import make_location, make_vehicle

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.usefixtures("flushed_layer"),
]


class KeptEngine(InProcessEngine):
    """The in-process engine, keeping what its traffic driver ran after it stops."""

    sites: dict[int, SiteTraffic]

    async def stop(self) -> None:
        simulator = self.simulator
        if simulator is not None and simulator.traffic is not None:
            self.sites = dict(simulator.traffic.sites)
        await super().stop()


async def run_scenario(
    text: str, csms: CentralSystem, *, seed: int = 7, host: InProcessEngine | None = None
) -> ScenarioRun:
    runner = Runner(
        parse(textwrap.dedent(text), file="test.yaml"),
        client=EngineClient(),
        host=host if host is not None else InProcessEngine(),
        options=Options(csms_url=csms.url, seed=seed, settle_seconds=0.3),
    )
    return await runner.execute()


def steps_of(run: ScenarioRun) -> list[list[tuple[str, str]]]:
    return [[(s["status"], s["message"]) for s in c["steps"]] for c in run.result["chargers"]]


# A flat, busy day: 120 arrivals an hour whatever the hour, short stays, tags of our own.
TRAFFIC = """\
name: depot-traffic
description: Background traffic at the depot while its chargers run.
chargers:
  template: {count: 2, location: Depot, connectors: 2}
steps:
  - expect: {status: Accepted}
  - traffic:
      duration: 1h
      speed: 7200
      wait: true
      timeout: 60
      profile:
        hourly_arrivals: [120, 120, 120, 120, 120, 120, 120, 120, 120, 120, 120, 120,
                          120, 120, 120, 120, 120, 120, 120, 120, 120, 120, 120, 120]
        dwell_minutes: {kind: fixed, a: 20}
        id_tags: "BG1..BG9"
  - expect: {answers_within: 10}
"""


async def test_a_traffic_step_runs_the_locations_traffic_once_with_the_runs_seed(
    csms: CentralSystem,
) -> None:
    await database_sync_to_async(make_vehicle)()
    depot = await database_sync_to_async(make_location)("Depot")
    engine = KeptEngine()
    run = await run_scenario(TRAFFIC, csms, seed=4242, host=engine)
    assert run.status == "passed", steps_of(run)
    verdicts = [c["steps"][1] for c in run.result["chargers"]]
    # Once for the run: both chargers carry the one verdict of the one start.
    assert verdicts[0]["message"] == verdicts[1]["message"]
    message = verdicts[0]["message"]
    assert message.startswith("traffic at Depot over after"), message
    arrivals = int(re.search(r"(\d+) arrivals", message).group(1))  # type: ignore[union-attr]
    assert arrivals > 0
    site = engine.sites[depot.pk]
    assert site.seed == 4242  # the scenario's seed, not the worker's
    assert site.tally.arrivals == arrivals
    assert site.tally.started >= 1
    assert {tx.id_tag for tx in csms.transactions.values()} <= {f"BG{n}" for n in range(1, 10)}


async def test_a_refused_profile_fails_the_step_with_the_engines_message_and_field(
    csms: CentralSystem,
) -> None:
    await database_sync_to_async(make_vehicle)()
    await database_sync_to_async(make_location)("Depot")
    run = await run_scenario(
        """\
        name: bad-traffic
        description: x
        chargers: {template: {count: 1, location: Depot}}
        steps:
          - traffic: {duration: 1h, profile: {hourly_arrivals: [1, 2]}}
          - expect: {status: Accepted}
        """,
        csms,
    )
    assert run.status == "failed"
    [[(status, message), (skipped, _)]] = steps_of(run)
    assert status == "failed" and skipped == "skipped"
    assert message == (
        "steps[0] traffic on the run's 1 chargers: Give 24 numbers, one per hour of the day "
        "from 00:00 to 23:00; got 2. (field hourly_arrivals)"
    )


async def test_traffic_without_a_duration_runs_until_a_stop_step(csms: CentralSystem) -> None:
    await database_sync_to_async(make_vehicle)()
    depot = await database_sync_to_async(make_location)("Depot")
    engine = KeptEngine()
    run = await run_scenario(
        """\
        name: start-stop
        description: x
        chargers: {template: {count: 1, location: Depot}}
        steps:
          - traffic: {speed: 3600, profile: {dwell_minutes: {kind: fixed, a: 5}}}
          - wait: {seconds: 1}
          - traffic: {stop: true}
        """,
        csms,
        host=engine,
    )
    assert run.status == "passed", steps_of(run)
    [[started, _, stopped]] = steps_of(run)
    assert started[1] == "traffic at Depot started (1 workers)"
    assert stopped[1].startswith("traffic at Depot stopped: "), stopped
    assert engine.sites[depot.pk].stopped.is_set()


RESPONSE_TIME = """\
name: response-times
description: The CSMS answers quickly, each charger's CALLs and the fleet's.
chargers:
  template: {count: 3}
steps:
  - plug_in: {wait: Preparing}
  - present_id_tag: {id_tag: FAST-1, wait: Charging}
  - expect: {response_time: {p50: 2, p99: 5, action: StartTransaction}}
  - expect: {response_time: {p99: 5, max: 10, fleet: true}}
  - stop: {wait: Finishing}
"""


async def test_response_time_percentiles_pass_per_charger_and_fleet_wide(
    csms: CentralSystem,
) -> None:
    run = await run_scenario(RESPONSE_TIME, csms)
    assert run.status == "passed", steps_of(run)
    per_charger = [c["steps"][2]["message"] for c in run.result["chargers"]]
    assert all(m.startswith("1 StartTransaction CALLs answered: p50 ") for m in per_charger)
    fleet = {c["steps"][3]["message"] for c in run.result["chargers"]}
    assert len(fleet) == 1  # one verdict for the fleet
    [message] = fleet
    count = int(message.split()[0])
    # Each charger sent at least a BootNotification, StatusNotifications, an Authorize and
    # a StartTransaction before this step: all three chargers' CALLs are counted.
    assert count >= 3 * 5, message
    assert "CALLs of 3 chargers answered: p99 " in message


async def test_unanswered_calls_count_as_infinitely_slow(csms: CentralSystem) -> None:
    csms.respond = False
    run = await run_scenario(
        """\
        name: silent-csms
        description: x
        chargers: {template: {count: 1, connect: false}}
        steps:
          - connect: {}
          - wait: {seconds: 1.5}
          - expect: {response_time: {p50: 0.5}}
        """,
        csms,
    )
    assert run.status == "failed"
    message = run.result["chargers"][0]["steps"][2]["message"]
    # Which CALL got no answer, when it went, and for how long it went unanswered.
    assert re.search(
        r"the p50 response time of 1 CALLs is no answer \(1 of 1 CALLs got no valid answer: "
        r"BootNotification sent \d+\.\d s into the run: no answer after \d+\.\d s\), "
        r"limit 0\.5 s$",
        message,
    ), message


async def test_a_bound_under_a_millisecond_is_said_in_milliseconds(csms: CentralSystem) -> None:
    run = await run_scenario(
        """\
        name: tight-bound
        description: x
        chargers: {template: {count: 1, connect: false}}
        steps:
          - connect: {}
          - wait: {seconds: 1}
          - expect: {response_time: {p50: 0.000001}}
        """,
        csms,
    )
    assert run.status == "failed"
    message = run.result["chargers"][0]["steps"][2]["message"]
    assert re.search(
        r"the p50 response time of \d+ CALLs is [\d.]+ (ms|s), limit 0\.001 ms$", message
    ), message


def _frame(at: float, kind: int, message_id: str, action: str = "Heartbeat") -> Frame:
    direction = "out" if kind == CALL else "in"
    return Frame(at, direction, kind, message_id, action, {})


def _cut(at: float) -> LinkEvent:
    """The scenario's network step cutting the charger's link."""
    return LinkEvent(at, "network_cut", {})


def _csms_closed(at: float) -> LinkEvent:
    detail = {"by": "csms", "code": 1011, "reason": "going away", "summary": "closed by peer"}
    return LinkEvent(at, "closed", detail)


def test_a_call_the_csms_closed_the_connection_on_was_not_answered() -> None:
    """A CSMS that drops the socket instead of answering passed `answers_within` (the
    CALL was left out as cut off) and `response_time` (not timed): it did not answer."""
    frames = [_frame(10.0, CALL, "a"), _frame(10.1, CALLRESULT, "a"), _frame(11.0, CALL, "b")]
    with pytest.raises(StepFailed) as failed:
        answers_within(frames, now=20.0, limit=5.0, link_down=[_csms_closed(11.4)], run_started=9.0)
    assert str(failed.value) == (
        "Heartbeat sent 2.0 s into the run was not answered: the CSMS closed the connection "
        '0.40 s later (code 1011, "going away")'
    )
    # Young as it is, no answer can come for it after the close.
    with pytest.raises(StepFailed, match="was not answered: the CSMS closed"):
        answers_within(frames, now=11.5, limit=5.0, link_down=[_csms_closed(11.4)])
    [_, dropped] = timed_calls(frames, now=11.5, grace=5.0, link_down=[_csms_closed(11.4)])
    assert (dropped.seconds, dropped.why) == (
        math.inf,
        'the CSMS closed the connection 0.40 s later (code 1011, "going away")',
    )


def test_response_times_pair_calls_with_answers_and_leave_out_young_unanswered_ones() -> None:
    frames = [
        _frame(10.0, CALL, "a"),
        _frame(10.5, CALLRESULT, "a"),
        _frame(11.0, CALL, "b", "Authorize"),
        _frame(14.0, CALLERROR, "b", "Authorize"),
        _frame(12.0, CALL, "c"),  # unanswered, 8 s old: infinitely slow
        _frame(19.5, CALL, "d"),  # unanswered, 0.5 s old: may still come
    ]
    assert response_times(frames, now=20.0, grace=2.0) == [0.5, 3.0, math.inf]
    assert response_times(frames, now=20.0, grace=2.0, action="Authorize") == [3.0]
    # The link went down 1 s after "c" was sent: no answer could come, it is left out. A
    # link lost long after the CALL (the CSMS had its time) leaves it infinitely slow.
    assert response_times(frames, now=20.0, grace=2.0, link_down=[_cut(13.0)]) == [0.5, 3.0]
    assert response_times(frames, now=20.0, grace=2.0, link_down=[_cut(15.0)]) == [
        0.5,
        3.0,
        math.inf,
    ]


def test_an_answer_the_charger_refused_is_no_answer_to_time() -> None:
    """The charger threw it away (it breaks the schema): its call failed, as
    `answers_within` says. No valid answer will come for that CALL: it counts as infinitely
    slow at once, young or not, and says why."""
    broken = "breaks the OCPP 1.6 schema: currentTime: 123 is not of type 'string'"
    frames = [
        _frame(10.0, CALL, "a"),
        _frame(10.5, CALLRESULT, "a"),
        _frame(19.0, CALL, "b"),
        Frame(19.1, "in", CALLRESULT, "b", "Heartbeat", {"currentTime": 123}, refused=broken),
    ]
    assert response_times(frames, now=20.0, grace=2.0) == [0.5, math.inf]
    [_, refused] = timed_calls(frames, now=20.0, grace=2.0)
    assert refused.why == f"the CSMS's answer to Heartbeat {broken}"


def test_a_call_without_an_answer_says_the_malformed_frame_the_csms_sent_instead() -> None:
    not_json = "is not JSON (unexpected end of data at character 22)"
    frames = [
        _frame(10.0, CALL, "a", "Authorize"),
        Frame(10.1, "in", None, "", "", None, malformed=not_json),
        _frame(15.0, CALL, "b"),
    ]
    missing = [(Target(7, "CP-7", "ws://x"), t) for t in timed_calls(frames, 20.0, 2.0)]
    assert _without_answer(missing, {7: frames}, 0.0, fleet=False) == (
        "Authorize sent 10.0 s into the run: no answer after 10.0 s: the CSMS sent a malformed "
        f"frame 0.10 s after the CALL, which {not_json}; "
        "Heartbeat sent 15.0 s into the run: no answer after 5.0 s"
    )


def test_answers_within_leaves_out_a_call_the_link_going_down_cut_off() -> None:
    """A CALL sent just before a network cut (the firmware's startup report, right after
    the boot) was never answered: a library case failed for it, though the CSMS could not
    have answered over a link that was down."""
    frames = [_frame(10.0, CALL, "a"), _frame(10.1, CALLRESULT, "a"), _frame(11.0, CALL, "b")]
    with pytest.raises(StepFailed, match="did not answer Heartbeat"):
        answers_within(frames, now=20.0, limit=5.0)
    assert answers_within(frames, now=20.0, limit=5.0, link_down=[_cut(11.004)]) == (
        "1 CALLs answered, the slowest in 0.10 s (1 cut off by the link going down)"
    )
    with pytest.raises(StepFailed):  # the CSMS had its 5 s before the link went
        answers_within(frames, now=20.0, limit=5.0, link_down=[_cut(17.0)])
    ordered = sorted(float(n) for n in range(1, 101))
    assert percentile(ordered, 99) == 99.0
    assert percentile(ordered, 50) == 50.0
    assert percentile(ordered, 100) == 100.0
    assert percentile([0.2, math.inf], 50) == 0.2
    assert percentile([0.2, math.inf], 99) == math.inf


@pytest.mark.parametrize(
    ("chargers", "step", "error"),
    [
        (
            "{ids: [CP-1]}",
            "traffic: {duration: 1h}",
            "steps[0].traffic: traffic runs at a location",
        ),
        (
            "{location: Depot}",
            "traffic: {wait: true}",
            "steps[0].traffic: wait: true needs a duration",
        ),
        (
            "{location: Depot}",
            "traffic: {stop: true, speed: 10}",
            "steps[0].traffic: stop goes alone, not with speed",
        ),
        (
            "{location: Depot}",
            "expect: {response_time: {action: Heartbeat}}",
            "steps[0].expect.response_time: needs at least one of: p50, p90",
        ),
        (
            "{location: Depot}",
            "expect: {response_time: {p98: 1}}",
            "steps[0].expect.response_time.p98: unknown key 'p98'",
        ),
    ],
)
def test_bad_fleet_steps_are_refused_before_the_run(chargers: str, step: str, error: str) -> None:
    text = f"name: x\ndescription: x\nchargers: {chargers}\nsteps:\n  - {step}\n"
    with pytest.raises(ScenarioError) as caught:
        parse(text, file="test.yaml")
    assert any(f"{e.path}: {e.message}".startswith(error) for e in caught.value.errors), (
        caught.value.errors
    )


async def test_a_tag_presented_locally_passes_when_refused_and_fails_when_accepted(
    csms: CentralSystem,
) -> None:
    csms.authorize["LOCAL-BAD"] = "Blocked"
    run = await run_scenario(
        """\
        name: local-refusal
        description: x
        chargers: {template: {count: 1}}
        steps:
          - plug_in: {wait: Preparing}
          - present_id_tag: {id_tag: LOCAL-BAD, expect: refused}
          - present_id_tag: {id_tag: LOCAL-BAD, expect: Blocked}
          - expect: {status: Preparing}
          - present_id_tag: {id_tag: LOCAL-BAD, expect: Invalid}
        """,
        csms,
    )
    [[_, refused, blocked, preparing, wrong]] = steps_of(run)
    assert refused == ("passed", "idTag LOCAL-BAD refused: Blocked (Authorize)")
    assert blocked == ("passed", "idTag LOCAL-BAD refused: Blocked (Authorize)")
    assert preparing[0] == "passed"
    assert wrong[0] == "failed"
    assert wrong[1].endswith("idTag LOCAL-BAD was refused Blocked (Authorize), expected Invalid")

    run = await run_scenario(
        """\
        name: local-accepted
        description: x
        chargers: {template: {count: 1}}
        steps:
          - plug_in: {wait: Preparing}
          - present_id_tag: {id_tag: LOCAL-GOOD, expect: refused}
        """,
        csms,
    )
    [[_, accepted]] = steps_of(run)
    assert accepted[0] == "failed"
    assert accepted[1].endswith(
        "the CSMS accepted idTag LOCAL-GOOD (StartTransaction), expected it refused"
    )


def test_answers_within_counts_only_the_calls_that_were_answered() -> None:
    """A CALL still waiting for its answer (younger than the bound) was counted as answered
    ("2 CALLs answered"), and a charger that sent none read "0 CALLs answered, the slowest
    in 0.00 s", as if something had been timed: each now says what it saw."""
    frames = [_frame(10.0, CALL, "a"), _frame(10.1, CALLRESULT, "a"), _frame(19.0, CALL, "b")]
    assert answers_within(frames, now=20.0, limit=5.0) == (
        "1 CALLs answered, the slowest in 0.10 s (1 not answered yet, sent 1.0 s ago)"
    )
    assert answers_within([], now=20.0, limit=5.0) == (
        "the charger sent no CALL during the run so far: none went unanswered"
    )
