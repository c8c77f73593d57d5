"""A step's title: what it does or checks, in a few words, from its kind and arguments
(`expect StartTransaction answered Accepted within 15 s` rather than `expect`).

It names the step's JUnit testcase (`steps[i] <title>`), which is what a CI list
(GitLab, Jenkins) shows of a test, and CI keeps each test's history by that name: a title
is made from the step as written in the file (its `${...}` runtime variables left as
they are), never from what a run drew or met, so that it is the same in every run. The
values of a run's secret variables are hidden from it as from every text a run keeps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from scenarios.texts import shown_url

# A title is a name in a list, not a report: longer ones are cut, with an ellipsis.
MAX_CHARS = 120
# A payload a step matches is shown as its values, by name, up to this many characters.
PAYLOAD_CHARS = 64


def step_title(kind: str, args: dict[str, Any]) -> str:
    """`kind` and what its arguments say that matters to a reader of a CI list."""
    describe = TITLES.get(kind)
    parts = [kind, describe(args) if describe is not None else ""]
    return _cut(" ".join(part for part in parts if part))


def _cut(text: str, limit: int = MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _seconds(value: Any) -> str:
    """A duration as written: a number is seconds, a string ("500ms", "2m") says its unit."""
    return f"{value} s" if isinstance(value, int | float) else str(value)


def _connector(args: dict[str, Any]) -> str:
    return f"on connector {args['connector']}" if "connector" in args else ""


def _until(args: dict[str, Any]) -> str:
    return f"until {args['wait']}" if "wait" in args else ""


def _payload(args: dict[str, Any]) -> str:
    """The values a payload names, each after its own key, whole ones only: compact JSON
    cut at 40 characters stopped mid-key (`{"connectorId":0,"csChargingProfiles":{…`), and
    a nested profile's purpose, what the step is about, never showed."""
    if "payload" not in args:
        return ""
    shown = ""
    for key, value in _leaves(args["payload"]):
        text = _scalar(value) if key is None else f"{key} {_scalar(value)}"
        longer = f"{shown}, {text}" if shown else text
        if len(longer) > PAYLOAD_CHARS:
            shown = f"{shown}, …" if shown else _cut(text, PAYLOAD_CHARS)
            break
        shown = longer
    return f"with {shown or '{}'}"


def _leaves(value: Any, key: str | None = None) -> list[tuple[str | None, Any]]:
    """A payload's values that are not objects or arrays, in the order written, each with
    the key it is under (an array's items with the array's); empty ones as themselves."""
    if isinstance(value, dict) and value:
        return [leaf for name, item in value.items() for leaf in _leaves(item, str(name))]
    if isinstance(value, list) and value:
        return [leaf for item in value for leaf in _leaves(item, key)]
    return [(key, value)]


def _scalar(value: Any) -> str:
    """A value as written in the file: a string bare (unless empty), others as JSON."""
    if isinstance(value, str) and value:
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _within(args: dict[str, Any]) -> str:
    return f"within {_seconds(args['within'])}" if "within" in args else ""


def _joined(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _local_action(args: dict[str, Any]) -> str:
    """plug_in, stop, unplug, clear_fault, reboot, connect, disconnect."""
    extras = [f"{key} {args[key]}" for key in ("soc", "target_soc") if key in args]
    return _joined(_connector(args), ", ".join(extras), _until(args))


def _present_id_tag(args: dict[str, Any]) -> str:
    expected = f"expecting {args['expect']}" if "expect" in args else ""
    return _joined(str(args.get("id_tag", "")), _connector(args), _until(args), expected)


def _fault(args: dict[str, Any]) -> str:
    return _joined(str(args.get("error_code", "")), _connector(args), _until(args))


def _status(args: dict[str, Any]) -> str:
    """A status a wait or an expect names: the charger's boot, or a connector's (1 unless
    said), as the charger has it."""
    if args["status"] == "Accepted":
        return "boot Accepted"
    return f"connector {args.get('connector', 1)} status {args['status']}"


def _wait(args: dict[str, Any]) -> str:
    if "status" in args:
        return f"for {_status(args)}"
    if "csms_call" in args:
        return _joined(f"for the CSMS's {args['csms_call']}", _payload(args))
    if "seconds" in args:
        return _seconds(args["seconds"])
    return ""


def _expect(args: dict[str, Any]) -> str:
    if "answer" in args:
        said = "a CALLERROR" if args.get("call_error") else str(args.get("status", ""))
        return _joined(f"{args['answer']} answered", said, _payload(args), _within(args))
    if "csms_call" in args:
        return _joined(f"the CSMS's {args['csms_call']}", _payload(args), _within(args))
    if "no_csms_call" in args:
        return _joined(f"no {args['no_csms_call']} from the CSMS", _payload(args), _within(args))
    if "heartbeat_interval_at_least" in args:
        return f"heartbeat interval at least {_seconds(args['heartbeat_interval_at_least'])}"
    if "answers_within" in args:
        return f"every CALL answered within {_seconds(args['answers_within'])}"
    if "response_time" in args:
        return _response_time(args["response_time"])
    if "connection_kept" in args:
        return "connection kept" if args["connection_kept"] else "connection not kept"
    if "status" in args:
        return _status(args)
    return ""


def _response_time(spec: Any) -> str:
    if not isinstance(spec, dict):
        return "response time"
    bounds = [
        f"{key} ≤ {_seconds(value)}"
        for key, value in spec.items()
        if key not in ("action", "fleet")
    ]
    of = f"of {spec['action']}" if "action" in spec else ""
    fleet = "across the run" if spec.get("fleet") else ""
    return _joined("response time", ", ".join(bounds), of, fleet)


def _override(args: dict[str, Any]) -> str:
    action = str(args.get("action", ""))
    if args.get("clear"):
        return f"{action} cleared"
    if "status" in args:
        answer = f"answered {args['status']}"
    elif "call_error" in args:
        answer = f"answered CALLERROR {args['call_error']}"
    elif "delay" in args:
        answer = f"answered after {_seconds(args['delay'])}"
    elif args.get("no_answer"):
        answer = "not answered"
    else:
        answer = ""
    mode = "every time" if args.get("every") else "next time" if args.get("next") else ""
    return _joined(action, answer, mode)


def _network(args: dict[str, Any]) -> str:
    if args.get("clear"):
        return "cleared"
    if "cut" in args:
        return f"cut for {_seconds(args['cut'])}"
    if "close_code" in args:
        return f"closed with code {args['close_code']}"
    conditions = [
        f"{name} {args[key]}{unit}"
        for key, name, unit in (
            ("latency_ms", "latency", " ms"),
            ("jitter_ms", "jitter", " ms"),
            ("drop_rate", "drop rate", ""),
        )
        if key in args
    ]
    return ", ".join(conditions)


def _close(args: dict[str, Any]) -> str:
    return f"with code {args['code']}" if "code" in args else ""


def _clock_skew(args: dict[str, Any]) -> str:
    return _seconds(args["seconds"]) if "seconds" in args else ""


def _trigger(args: dict[str, Any]) -> str:
    # As a verdict's message shows the URL: without a password nor a secret query value.
    expected = f"expecting {args['expect_status']}" if "expect_status" in args else ""
    return _joined(str(args.get("http", "POST")), shown_url(str(args.get("url", ""))), expected)


def _traffic(args: dict[str, Any]) -> str:
    if args.get("stop"):
        return "stop"
    parts = ["start"]
    if "duration" in args:
        parts.append(f"for {_seconds(args['duration'])}")
    if "speed" in args:
        parts.append(f"at speed {args['speed']}")
    if args.get("wait"):
        parts.append("until it is over")
    return " ".join(parts)


# Kind -> what its arguments say; each kind of `scenarios.steps.STEPS` has one (a test
# checks it), so that no testcase is named by its kind alone.
TITLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "plug_in": _local_action,
    "present_id_tag": _present_id_tag,
    "stop": _local_action,
    "unplug": _local_action,
    "fault": _fault,
    "clear_fault": _local_action,
    "reboot": _local_action,
    "connect": _local_action,
    "disconnect": _local_action,
    "wait": _wait,
    "expect": _expect,
    "override": _override,
    "network": _network,
    "close": _close,
    "clock_skew": _clock_skew,
    "trigger": _trigger,
    "traffic": _traffic,
}
