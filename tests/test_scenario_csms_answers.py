"""Scenario verdicts on what the CSMS answered: an answer the charger refused (it breaks the
OCPP 1.6 schema), a CALLERROR or no answer at all is no answer a step may pass on
(scenarios/steps.py), and the charger's own refusal of a tag it asked the CSMS about is
not "the charger's local authorization".

The built-in CSMS answers the charger's CALLs over real sockets; `ScriptedAnswers` makes
it answer some actions with frames written here (or not at all), as a broken CSMS does."""

from __future__ import annotations

import asyncio
import re
import textwrap
from typing import Any, ClassVar

import orjson
import pytest

from chargers.engine_client import EngineClient
from scenarios.format import parse
from scenarios.models import ScenarioRun
from scenarios.runner import Options, Runner
from scenarios.steps import not_sent_because
from scenarios.watch import CALL as CALL_FRAME
from scenarios.watch import Frame, LinkEvent
from simulator.csms import CALL, CentralSystem, CSMSConnection
from simulator.management.commands.runscenario import InProcessEngine
from tests.broken_csms import ClosesInsteadOfAnswering

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.usefixtures("flushed_layer"),
]


class ScriptedAnswers(CSMSConnection):
    """Answers the CALLs of the actions in `answers` with that frame (`{id}`: the CALL's
    unique id, as JSON), or not at all (None); every other CALL as the built-in CSMS does."""

    answers: ClassVar[dict[str, str | None]] = {}

    async def _route_call(self, raw: str, unique_id: str | None, action: str, payload: Any) -> None:
        if action not in self.answers:
            await super()._route_call(raw, unique_id, action, payload)
            return
        self.csms.counts[action] += 1
        self.csms._record(self, "in", CALL, unique_id, action, payload, raw)
        frame = self.answers[action]
        if frame is not None:
            await self._send(frame.replace("{id}", orjson.dumps(unique_id).decode()))


def answering(csms: CentralSystem, answers: dict[str, str | None]) -> None:
    """The CSMS answers these actions so from the next connection on."""
    csms.connection_class = type("Scripted", (ScriptedAnswers,), {"answers": answers})


async def run_scenario(text: str, csms: CentralSystem) -> ScenarioRun:
    runner = Runner(
        parse(textwrap.dedent(text), file="test.yaml"),
        client=EngineClient(),
        host=InProcessEngine(),
        options=Options(csms_url=csms.url, seed=7, settle_seconds=0.3),
    )
    return await runner.execute()


def steps_of(run: ScenarioRun) -> list[tuple[str, str]]:
    [charger] = run.result["chargers"]
    return [(s["status"], s["message"]) for s in charger["steps"]]


REFUSED = """\
name: refused
description: x
chargers: {template: {count: 1}}
steps:
  - plug_in: {wait: Preparing}
  - present_id_tag: {id_tag: BADTAG, expect: refused, timeout: 3}
"""


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            '[4,{id},"InternalError","down",{}]',
            "the CSMS answered Authorize with CALLERROR InternalError",
        ),
        (
            "[3,{id},{}]",
            "the CSMS's answer to Authorize breaks the OCPP 1.6 schema: idTagInfo: "
            "required property missing",
        ),
        ('[3,"not-the-id",{"idTagInfo":{"status":"Invalid"}}]', "the CSMS did not answer"),
        ("[3,{id},{", "the CSMS did not answer"),
        (None, "the CSMS did not answer the charger's Authorize of idTag BADTAG within 3 s"),
    ],
    ids=["callerror", "schema", "unknown-id", "malformed", "silent"],
)
async def test_a_tag_the_csms_did_not_answer_for_is_not_refused(
    csms: CentralSystem, answer: str | None, said: str
) -> None:
    answering(csms, {"Authorize": answer})
    run = await run_scenario(REFUSED, csms)
    [_, (status, message)] = steps_of(run)
    assert status == "failed", message
    assert said in message
    assert "local authorization" not in message


@pytest.mark.parametrize(
    ("answer", "which"),
    [
        ("[3,{id},{", r"is not JSON \(unexpected end of data at character \d+\)"),
        ("{}", r"is a JSON object, not an OCPP-J array"),
        ("[5,{id},{}]", r"has the unknown message type 5"),
        ("[3,{id}]", r"is a CALLRESULT of 2 elements \(3 expected\)"),
        # Nothing of the frame is quoted: no control character reaches a verdict.
        (
            "\x07\x1b[31m",
            r"is not JSON \(unexpected character, expected a JSON value at character 0\)",
        ),
    ],
    ids=["not-json", "object", "unknown-type", "short", "control-characters"],
)
async def test_a_malformed_answer_is_said_as_such_not_as_silence(
    csms: CentralSystem, answer: str, which: str
) -> None:
    answering(csms, {"Authorize": answer})
    run = await run_scenario(REFUSED, csms)
    [_, (status, message)] = steps_of(run)
    assert status == "failed", message
    assert re.search(
        "the CSMS did not answer the charger's Authorize of idTag BADTAG within 3 s: the CSMS "
        rf"sent a malformed frame \d+\.\d\d s after the CALL, which {which}$",
        message,
    ), message


async def test_an_answer_too_short_to_read_is_no_answer_to_pass_on(csms: CentralSystem) -> None:
    """[3, id] has no payload: the charger ignored it, and its Heartbeat went unanswered.
    The run's watch took it for an answer, and `expect: answer` passed on it."""
    csms.boot_interval = 1  # a Heartbeat a second
    answering(csms, {"Heartbeat": "[3,{id}]"})
    run = await run_scenario(
        """\
        name: heartbeat
        description: x
        chargers: {template: {count: 1}}
        steps:
          - wait: {seconds: 1.5}
          - expect: {answer: Heartbeat, within: 1}
        """,
        csms,
    )
    status, message = steps_of(run)[-1]
    assert status == "failed", message
    assert re.search(
        r"the CSMS did not answer Heartbeat within 1 s: the CSMS sent a malformed frame "
        r"\d+\.\d\d s after the CALL, which is a CALLRESULT of 2 elements \(3 expected\)$",
        message,
    ), message


def offline_tag(step: str) -> str:
    """A scenario presenting an unknown tag to its charger, offline: `step` its arguments."""
    return f"""\
        name: offline-refusal
        description: x
        chargers: {{template: {{count: 1}}}}
        steps:
          - plug_in: {{wait: Preparing}}
          - disconnect: {{}}
          - present_id_tag: {step}
        """


async def test_a_tag_the_charger_refuses_without_asking_is_a_local_refusal(
    csms: CentralSystem,
) -> None:
    run = await run_scenario(offline_tag("{id_tag: NOBODY, expect: refused, timeout: 5}"), csms)
    assert steps_of(run)[-1] == (
        "passed",
        "idTag NOBODY refused: Invalid (the charger's local authorization)",
    )


async def test_a_tag_refused_offline_says_once_that_the_charger_decided_alone(
    csms: CentralSystem,
) -> None:
    """QA: the step said it twice: the worker's "not connected to its CSMS, so it decided
    alone (...)", then its own "the charger refused it without asking the CSMS (...)"."""
    run = await run_scenario(offline_tag("{id_tag: NOBODY}"), csms)
    status, message = steps_of(run)[-1]
    assert status == "failed"
    assert ": idTag NOBODY was not accepted (Invalid): the charger is not connected" in message
    assert "decided alone" in message
    assert "without asking the CSMS" not in message


async def test_the_charger_id_alone_is_an_id_tag_of_its_digits(csms: CentralSystem) -> None:
    """QA: `${charger_id}` alone is a number, and the worker took a number for no idTag at
    all: "an idTag has 1 to 20 characters"."""
    run = await run_scenario(
        """\
        name: number-tag
        description: x
        chargers: {template: {count: 1}}
        steps:
          - plug_in: {wait: Preparing}
          - present_id_tag: {id_tag: "${charger_id}", wait: Charging}
        """,
        csms,
    )
    status, message = steps_of(run)[-1]
    assert status == "passed", message
    starts = [e for e in csms.log if e.action == "StartTransaction" and e.message_type == 2]
    assert [e.payload["idTag"] for e in starts] == [str(run.result["chargers"][0]["charger_id"])]


async def test_a_tag_refused_for_want_of_an_answer_says_what_the_csms_did(
    csms: CentralSystem,
) -> None:
    answering(csms, {"Authorize": '[4,{id},"InternalError","down",{}]'})
    run = await run_scenario(
        """\
        name: plain
        description: x
        chargers: {template: {count: 1}}
        steps:
          - plug_in: {wait: Preparing}
          - present_id_tag: {id_tag: TAG1}
        """,
        csms,
    )
    status, message = steps_of(run)[-1]
    assert status == "failed"
    assert message.endswith(
        "idTag TAG1 was not accepted: the CSMS answered Authorize with CALLERROR InternalError "
        "(the charger then refused it itself: Invalid)"
    )


async def test_answers_the_charger_refused_fail_the_steps_that_judge_answers(
    csms: CentralSystem,
) -> None:
    csms.boot_interval = 1  # a Heartbeat a second
    answering(csms, {"Heartbeat": '[3,{id},{"currentTime":123}]'})
    heartbeat = "the CSMS's answer to Heartbeat breaks the OCPP 1.6 schema: currentTime: 123"
    for step in (
        "expect: {answer: Heartbeat}",
        "expect: {answers_within: 5}",
        # Not an answer to time either: the one Heartbeat got none, whatever its speed.
        "expect: {response_time: {max: 5, action: Heartbeat}}",
    ):
        run = await run_scenario(
            f"""\
            name: heartbeat
            description: x
            chargers: {{template: {{count: 1}}}}
            steps:
              - wait: {{seconds: 2.5}}
              - {step}
            """,
            csms,
        )
        status, message = steps_of(run)[-1]
        assert status == "failed", message
        assert heartbeat in message

    answering(
        csms,
        {"StartTransaction": '[3,{id},{"transactionId":"abc","idTagInfo":{"status":"Accepted"}}]'},
    )
    run = await run_scenario(
        """\
        name: start
        description: x
        chargers: {template: {count: 1}}
        steps:
          - plug_in: {wait: Preparing}
          - present_id_tag: {id_tag: TAG1}
          - expect: {answer: StartTransaction, status: Accepted}
        """,
        csms,
    )
    status, message = steps_of(run)[-1]
    assert status == "failed", message
    assert (
        "the CSMS's answer to StartTransaction breaks the OCPP 1.6 schema: transactionId" in message
    )


async def test_a_boot_answer_the_charger_refused_fails_the_heartbeat_interval(
    csms: CentralSystem,
) -> None:
    answering(
        csms,
        {
            "BootNotification": (
                '[3,{id},{"currentTime":"not a date","interval":"300","status":"Accepted"}]'
            )
        },
    )
    run = await run_scenario(
        """\
        name: boot
        description: x
        chargers: {template: {count: 1, connect: false}}
        steps:
          - connect: {}
          - wait: {seconds: 1.5}
          - expect: {heartbeat_interval_at_least: 60}
        """,
        csms,
    )
    status, message = steps_of(run)[-1]
    assert status == "failed", message
    assert "the CSMS's answer to BootNotification breaks the OCPP 1.6 schema: interval" in message


BOOT = """\
name: boot
description: x
chargers: {template: {count: 1, connect: false}}
steps:
  - connect: {wait: Accepted, timeout: 3}
"""


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            '[3,{id},{"currentTime":"2026-01-01T00:00:00Z","interval":"sixty","status":"Accepted"}]',
            "the CSMS's answer to BootNotification breaks the OCPP 1.6 schema: interval: 'sixty'",
        ),
        ('[4,{id},"InternalError","down",{}]', "the CSMS answered BootNotification with CALLERROR"),
        (None, "the CSMS did not answer its BootNotification"),
        (
            '[3,{id},{"currentTime":"2026-01-01T00:00:00Z","interval":300,"status":"Rejected"}]',
            "the CSMS answered its BootNotification Rejected",
        ),
    ],
    ids=["schema", "callerror", "silent", "rejected"],
)
async def test_a_boot_that_was_not_accepted_says_what_the_csms_answered(
    csms: CentralSystem, answer: str | None, said: str
) -> None:
    answering(csms, {"BootNotification": answer})
    run = await run_scenario(BOOT, csms)
    [(status, message)] = steps_of(run)
    assert status == "failed"
    assert f"boot Accepted did not happen within 3.0 s ({said}" in message


STOP_EXPECTED = """\
name: stop
description: x
chargers: {template: {count: 1, configuration: {MeterValueSampleInterval: 1}}}
steps:
  - plug_in: {wait: Preparing}
  - present_id_tag: {id_tag: TAG1, wait: Charging}
  - wait: {seconds: 1.5}
  - stop: {}
  - expect: {answer: StopTransaction, within: 2}
"""


async def test_a_stop_held_behind_a_meter_values_the_csms_refused_says_why(
    csms: CentralSystem,
) -> None:
    """The charger sends its transaction messages in order: a MeterValues the CSMS answered
    with a CALLERROR is retried (in 20 s) before the StopTransaction goes. "The charger
    sent no StopTransaction" alone blamed the charger."""
    csms.fail_actions["MeterValues"] = "InternalError"
    run = await run_scenario(STOP_EXPECTED, csms)
    status, message = steps_of(run)[-1]
    assert status == "failed", message
    assert re.search(
        r"the charger sent no StopTransaction during the run \(within 2 s\): the CSMS answered "
        r"the charger's MeterValues with CALLERROR InternalError: MeterValues refused by test "
        r"configuration \(sent \d+\.\d s into the run\), and the charger sends its transaction "
        r"messages in order: it retries that MeterValues first \(TransactionMessageAttempts, "
        r"TransactionMessageRetryInterval\)$",
        message,
    ), message


async def test_a_stop_held_while_the_charger_is_offline_says_why(csms: CentralSystem) -> None:
    run = await run_scenario(
        STOP_EXPECTED.replace("  - stop: {}\n", "  - disconnect: {}\n  - stop: {}\n"), csms
    )
    status, message = steps_of(run)[-1]
    assert status == "failed", message
    assert re.search(
        r"the charger sent no StopTransaction during the run \(within 2 s\): the charger has "
        r"been offline since \d+\.\d s into the run \(",
        message,
    ), message


def test_a_call_whose_wait_the_link_ended_holds_nothing_back() -> None:
    """One CALL at a time: an unanswered one holds the next back, until the link goes
    down (its wait ends; a transaction message goes again after the reconnect)."""
    heartbeat = Frame(10.0, "out", CALL_FRAME, "a", "Heartbeat", {})
    closed = LinkEvent(11.0, "closed", {"by": "csms", "code": 1011, "reason": "bye"})
    connected = LinkEvent(12.0, "connected", {})
    assert not_sent_because([heartbeat], [], "StatusNotification", 0.0) == (
        ": the charger sends one CALL at a time, and the CSMS did not answer its Heartbeat "
        "sent 10.0 s into the run"
    )
    assert not_sent_because([heartbeat], [closed], "StatusNotification", 0.0) == (
        ": the charger has been offline since 11.0 s into the run (the CSMS closed the "
        'connection (code 1011, "bye"))'
    )
    assert not_sent_because([heartbeat], [closed, connected], "StatusNotification", 0.0) == ""


def test_a_csms_callerror_quoted_for_a_held_message_hides_a_long_secret_whole() -> None:
    """QA: the CALLERROR description that holds a transaction message back was cut to its
    quote's length before the run hid its secrets: the part of a long secret that fit
    escaped the hiding of the whole message."""
    from scenarios.texts import hiding
    from scenarios.watch import CALLERROR as CALLERROR_FRAME

    secret = "SECRETV" + "x" * 400
    start = Frame(10.0, "out", CALL_FRAME, "s1", "StartTransaction", {"idTag": "T"})
    refused = Frame(
        10.1, "in", CALLERROR_FRAME, "s1", "StartTransaction", ["InternalError", secret]
    )
    why = not_sent_because(
        [start, refused], [], "MeterValues", 0.0, hiding({"auth_secret": secret})
    )
    assert "CALLERROR InternalError: " in why
    assert "SECRETV" not in why


DROPPED = """\
name: dropped
description: x
chargers:
  template: {count: 1, connectors: 1, configuration: {MeterValueSampleInterval: "1"}}
steps:
  - plug_in: {wait: Preparing}
  - present_id_tag: {id_tag: TAG-1, wait: Charging}
  - wait: {seconds: 3}
"""
# The CALL the CSMS closed the connection on, as a verdict says it.
DROPPED_SAID = (
    r"MeterValues sent \d+\.\d s into the run(?: was not answered)?: the CSMS closed the "
    r'connection \d\.\d\d s later \(code 1011, "going away"\)'
)


@pytest.mark.parametrize(
    "expect", ["{answers_within: 5}", "{response_time: {max: 5}}"], ids=["within", "time"]
)
async def test_a_call_the_csms_closed_the_connection_on_was_not_answered(
    csms: CentralSystem, expect: str
) -> None:
    """A CSMS that drops the socket instead of answering passed `answers_within` and
    `response_time`: the CALL was left out as one the link going down cut off."""
    csms.connection_class = type("Closing", (ClosesInsteadOfAnswering,), {"closed": []})
    run = await run_scenario(DROPPED + f"  - expect: {expect}\n", csms)
    *passed, (status, message) = steps_of(run)
    assert [verdict for verdict, _ in passed] == ["passed"] * 3, passed
    assert status == "failed", message
    assert re.search(DROPPED_SAID, message), message


async def test_a_tag_accepted_with_no_vehicle_plugged_in_fails_a_refusal_at_once(
    csms: CentralSystem,
) -> None:
    """QA16: with no vehicle plugged in no StartTransaction follows the Authorize, so its
    answer is the CSMS's word on the tag. The step waited for a StartTransaction that could
    not come and failed only at its timeout (30 s by default; 300 s here, which the test
    would not outlast)."""
    text = """\
        name: accepted
        description: x
        chargers: {template: {count: 1}}
        steps:
          - present_id_tag: {id_tag: GOODTAG, expect: refused, timeout: 300}
        """
    run = await asyncio.wait_for(run_scenario(text, csms), 120)
    [(status, message)] = steps_of(run)
    assert status == "failed", message
    assert message.endswith("the CSMS accepted idTag GOODTAG (Authorize), expected it refused")
