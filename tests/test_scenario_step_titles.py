"""A step's title (`scenarios.step_titles`): what names its JUnit testcase. Every step kind
has one that says more than the kind, every built-in case's steps are told apart by
theirs, and none shows what a verdict's message would hide (a URL's password)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scenarios import format
from scenarios.step_titles import MAX_CHARS, TITLES, step_title
from scenarios.steps import STEPS
from scenarios.texts import HIDDEN

LIBRARY = sorted((Path(__file__).resolve().parent.parent / "scenarios" / "library").glob("*.yaml"))


@pytest.mark.parametrize(
    ("kind", "args", "title"),
    [
        (
            "plug_in",
            {"connector": 2, "soc": 30, "wait": "Preparing"},
            "plug_in on connector 2 soc 30 until Preparing",
        ),
        (
            "present_id_tag",
            {"id_tag": "T-1", "expect": "Blocked"},
            "present_id_tag T-1 expecting Blocked",
        ),
        ("stop", {}, "stop"),
        (
            "fault",
            {"error_code": "GroundFailure", "connector": 1},
            "fault GroundFailure on connector 1",
        ),
        ("reboot", {"wait": "Accepted"}, "reboot until Accepted"),
        ("wait", {"status": "Charging", "connector": 2}, "wait for connector 2 status Charging"),
        ("wait", {"status": "Accepted"}, "wait for boot Accepted"),
        (
            "wait",
            {"csms_call": "Reset", "payload": {"type": "Soft"}},
            "wait for the CSMS's Reset with type Soft",
        ),
        ("wait", {"seconds": "500ms"}, "wait 500ms"),
        ("expect", {"status": "Charging"}, "expect connector 1 status Charging"),
        (
            "expect",
            {"answer": "Authorize", "call_error": True},
            "expect Authorize answered a CALLERROR",
        ),
        (
            "expect",
            {"csms_call": "RemoteStartTransaction", "within": 10},
            "expect the CSMS's RemoteStartTransaction within 10 s",
        ),
        (
            "expect",
            {"no_csms_call": "Reset", "within": "5s"},
            "expect no Reset from the CSMS within 5s",
        ),
        ("expect", {"heartbeat_interval_at_least": 60}, "expect heartbeat interval at least 60 s"),
        ("expect", {"answers_within": 5}, "expect every CALL answered within 5 s"),
        ("expect", {"connection_kept": True}, "expect connection kept"),
        (
            "expect",
            {"response_time": {"p95": "1s", "action": "Heartbeat"}},
            "expect response time p95 ≤ 1s of Heartbeat",
        ),
        (
            "override",
            {"action": "Authorize", "status": "Blocked", "every": True},
            "override Authorize answered Blocked every time",
        ),
        ("override", {"action": "Heartbeat", "clear": True}, "override Heartbeat cleared"),
        ("network", {"latency_ms": 100, "drop_rate": 0.1}, "network latency 100 ms, drop rate 0.1"),
        ("network", {"cut": 10}, "network cut for 10 s"),
        ("close", {"code": 1011}, "close with code 1011"),
        ("clock_skew", {"seconds": -30}, "clock_skew -30 s"),
        ("traffic", {"duration": "1h", "speed": 60}, "traffic start for 1h at speed 60"),
        ("traffic", {"stop": True}, "traffic stop"),
    ],
)
def test_a_title_says_what_the_step_does(kind: str, args: dict[str, object], title: str) -> None:
    assert step_title(kind, args) == title


def test_every_step_kind_has_a_title_of_its_own() -> None:
    """A kind added without one would name its testcases by the kind alone again."""
    assert set(TITLES) == set(STEPS)


@pytest.mark.parametrize("path", LIBRARY, ids=lambda path: path.stem)
def test_every_step_of_a_built_in_case_says_more_than_its_kind(path: Path) -> None:
    """Only a step with nothing to say (`connect: {}`, a timeout alone) is its kind."""
    for step in format.load(path, {}).steps:
        title = step_title(step.kind, step.args)
        assert len(title) <= MAX_CHARS
        if set(step.args) - {"timeout"}:
            assert title != step.kind, (path.name, step.index)


def test_a_trigger_title_shows_no_password_nor_secret_query_value() -> None:
    title = step_title(
        "trigger",
        {"url": "https://ops:pw123@csms.example/hook?token=abc&x=1", "expect_status": 204},
    )
    assert (
        title
        == f"trigger POST https://ops:{HIDDEN}@csms.example/hook?token={HIDDEN}&x=1 expecting 204"
    )
    assert len(step_title("expect", {"csms_call": "X", "payload": {"k": "v" * 500}})) <= MAX_CHARS


def test_a_payload_shows_whole_values_by_name_nested_ones_too() -> None:
    """Cut as compact JSON at 40 characters, a profile's payload ended mid-key
    (`{"connectorId":0,"csChargingProfiles":{…`): its purpose never showed."""
    profile: dict[str, Any] = {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfilePurpose": "TxProfile",
            "chargingSchedule": {"chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]},
        },
    }
    assert step_title("expect", {"csms_call": "SetChargingProfile", "payload": profile}) == (
        "expect the CSMS's SetChargingProfile with connectorId 1, "
        "chargingProfilePurpose TxProfile, startPeriod 0, …"
    )
    del profile["csChargingProfiles"]["chargingSchedule"]
    assert step_title("wait", {"csms_call": "SetChargingProfile", "payload": profile}) == (
        "wait for the CSMS's SetChargingProfile with connectorId 1, "
        "chargingProfilePurpose TxProfile"
    )
    # Values that are no text are as JSON has them; an empty string is seen as one.
    assert step_title("expect", {"csms_call": "X", "payload": {"a": [], "b": None, "c": ""}}) == (
        'expect the CSMS\'s X with a [], b null, c ""'
    )
