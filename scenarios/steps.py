"""The step kinds: one async handler each, in `STEPS` (kind -> handler).

A handler gets the step's context and its (checked, variable-free) arguments. It returns
a short message when the step passed, raises `StepFailed` when the CSMS (or the charger)
did not do what the step expects, and `StepError` when the step could not be carried out
at all (no worker, the engine did not answer, a hook that cannot be reached). Actions go
to the engine through `chargers.engine_client.EngineClient`, as the API's do; frames come
from the run's `Watch`.

To add a kind: a handler here (or `STEPS[kind] = handler` from another module) and its
arguments in scenarios/scenario.schema.json under `$defs.step.properties` (then
`python -m scenarios.published_schema` for docs/scenario.schema.json).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from chargers.engine_client import EngineClient, EngineError
from chargers.orm_threads import in_thread
from locations.models import Location
from scenarios.format import PERCENTILES, duration
from scenarios.texts import one_line, shown_url
from scenarios.watch import (
    CALL,
    CALLERROR,
    CALLRESULT,
    LINK_DOWN,
    Frame,
    LinkEvent,
    Watch,
    close_said,
    closes_not_ours,
    not_ours,
)
from simulator import contract
from simulator.contract import config_keys
from simulator.contract.traffic import TrafficResult
from simulator.contract.url_login import basic_login, without_login

DEFAULT_TIMEOUT = 30.0
# Answers whose status sits in idTagInfo rather than at the top.
ID_TAG_INFO_ACTIONS = frozenset({"Authorize", "StartTransaction", "StopTransaction"})
# Command errors that mean the step could not be carried out, not that it failed.
# A refusal that is not the CSMS's doing errors a step instead of failing it: the simulator
# could not do it, or the scenario asked for something invalid (an idTag that a runtime
# variable made longer than 20 characters, say).
ENGINE_ERRORS = frozenset(
    {contract.ERROR_FAILED, contract.ERROR_NOT_RUNNING, contract.ERROR_INVALID}
)


class StepFailed(Exception):
    """The expectation did not hold (the verdict `failed`)."""


class StepError(Exception):
    """The step could not be carried out (the verdict `error`)."""


@dataclass
class Target:
    """A charger the run drives."""

    pk: int
    charge_point_id: str
    csms_url: str
    temporary: bool = False
    connect_first: bool = False


def _shown_as_is(value: Any) -> Any:
    return value


@dataclass
class StepContext:
    client: EngineClient
    watch: Watch
    target: Target
    rng: random.Random  # the run's generator for this charger (from the scenario's seed)
    since: float  # Unix time: frames from here on count (the previous step's start)
    run_started: float  # Unix time
    started: float  # loop time of this step's start
    seed: int = 0  # the run's seed (a fleet step's randomness comes from it)
    location: str | None = None  # the scenario's location (its chargers'), by name
    fleet: list[Target] = field(default_factory=list)  # every charger of the run
    # The run's hiding of its secret variables' values (`texts.hiding`): the runner hides
    # every message, but a step that cuts a text to length must hide it first, or the
    # part of a secret that fits escapes.
    hide: Callable[[Any], Any] = _shown_as_is

    async def command(
        self, command: str, args: Mapping[str, Any], wait_for: contract.WaitFor | None = None
    ) -> contract.CommandResult:
        """Run an engine command on the charger; a refusal fails the step, an engine that
        cannot do it errors it."""
        try:
            result = await self.client.command(
                self.target.pk, self.target.charge_point_id, command, args, wait_for=wait_for
            )
        except EngineError as exc:
            raise StepError(str(exc)) from None
        if not result.get("ok"):
            message = result.get("message") or f"{command} was not done"
            if result.get("error") in ENGINE_ERRORS:
                raise StepError(message)
            raise StepFailed(message)
        wait = result.get("wait")
        if wait is not None and not wait.get("met"):
            # Offline: why its last attempt to connect failed (a CSMS down, a wrong URL) says
            # more than "offline" (the charger's URL holds no password: chargers refuse one).
            charger = result.get("charger")
            why = charger["link_error"] if charger and charger["link"] != "online" else None
            where = f"; its last attempt to connect to {self.target.csms_url}: {why}" if why else ""
            said = f"it is {wait.get('status')}{where}"
            if wait["condition"] == contract.ACCEPTED:
                # "it is None" said nothing: what the CSMS answered (or did not) to the
                # charger's BootNotification says why its boot was not accepted.
                said = await self._boot_answer() or said
            raise StepFailed(
                f"{_condition(wait['condition'])} did not happen within "
                f"{wait_for['timeout'] if wait_for else '?'} s ({said})"
            )
        return result

    def deadline(self, seconds: float) -> float:
        return self.started + seconds

    async def _boot_answer(self) -> str | None:
        """What the CSMS answered to the charger's latest BootNotification during the run,
        said for a boot that was not accepted; None when the charger sent none."""
        await self.watch.settle()
        frames = self.watch.frames.get(self.target.pk, [])
        boots = [
            f
            for f in frames
            if f.direction == "out" and f.message_type == CALL and f.action == "BootNotification"
        ]
        if not boots:
            return None
        answer = _answer_to(frames, boots[-1])
        if answer is None:
            return (
                f"the CSMS did not answer its BootNotification{malformed_after(frames, boots[-1])}"
            )
        fault = answer_fault("BootNotification", answer)
        if fault is not None:
            return fault
        return f"the CSMS answered its BootNotification {answer_status('BootNotification', answer.payload)}"


Handler = Callable[[StepContext, dict[str, Any]], Awaitable[str]]


def is_fleet_step(kind: str, args: Mapping[str, Any]) -> bool:
    """A step that acts on (or judges) the whole run, not one charger: the runner runs it
    once, when every charger has reached it (or stopped before it), and gives each charger
    that reached it the same verdict."""
    if kind == "traffic":
        return True
    spec = args.get("response_time") if kind == "expect" else None
    return isinstance(spec, Mapping) and bool(spec.get("fleet"))


def _condition(condition: str) -> str:
    return "boot Accepted" if condition == contract.ACCEPTED else f"status {condition}"


def _wait_for(args: Mapping[str, Any]) -> contract.WaitFor | None:
    if "wait" not in args:
        return None
    return contract.WaitFor(
        condition=str(args["wait"]), timeout=duration(args.get("timeout", DEFAULT_TIMEOUT))
    )


def _connector(args: Mapping[str, Any]) -> int:
    return int(args.get("connector", 1))


# -- local actions ----------------------------------------------------------------------------


def _action(command: str, keys: Mapping[str, str] = {}) -> Handler:
    async def handler(ctx: StepContext, args: dict[str, Any]) -> str:
        sent: dict[str, Any] = {}
        if command in contract.CONNECTOR_COMMANDS:
            sent["connector_id"] = _connector(args)
        for key, name in keys.items():
            if key in args:
                sent[name] = args[key]
        result = await ctx.command(command, sent, _wait_for(args))
        return str(result.get("message") or "done")

    return handler


# Statuses a presented idTag may be refused with (OCPP 1.6 AuthorizationStatus).
REFUSALS = frozenset({"Blocked", "Expired", "Invalid", "ConcurrentTx"})
_NOT_ACCEPTED = re.compile(r"was not accepted \((\w+)\)")


async def present_id_tag(ctx: StepContext, args: dict[str, Any]) -> str:
    """A driver presents an idTag; with `expect: refused` (or a status), the step passes
    when the CSMS refused it: its answer to the charger's Authorize, or to the
    StartTransaction of a tag the charger let start from its cache or local list."""
    if type(args.get("id_tag")) is int:
        # `${charger_id}` alone is a number (docs/scenarios.md): as an idTag, its digits.
        # Sent as a number, the worker took it for no idTag at all ("1 to 20 characters").
        args = {**args, "id_tag": str(args["id_tag"])}
    if "expect" not in args:
        return await _present_accepted(ctx, args)
    expected = str(args["expect"])
    id_tag = str(args["id_tag"])
    within = duration(args.get("timeout", DEFAULT_TIMEOUT))
    since = time.time()
    sent = {"connector_id": _connector(args), "id_tag": id_tag}
    # The charger's own word: it may wait for an Authorize longer than the step may.
    left = ctx.deadline(within) - asyncio.get_running_loop().time()
    try:
        refused_here, said = await asyncio.wait_for(_charger_refusal(ctx, sent), max(left, 0.0))
    except TimeoutError:
        await ctx.watch.settle()
        authorize = _authorize_of(ctx, id_tag, since)
        said = f" of idTag {id_tag} within {within:g} s"
        fault = _authorize_fault(ctx, authorize, said=said) if authorize else None
        raise StepFailed(
            fault or f"the charger did not decide on idTag {id_tag} within {within:g} s"
        ) from None
    outcome: tuple[str, str] | None
    if refused_here is not None:
        outcome = await _refusal_source(ctx, id_tag, since, refused_here)
    elif contract.AWAITS_VEHICLE in said:
        # No vehicle: no StartTransaction follows whose answer could still refuse the tag,
        # so the Authorize's answer is the CSMS's last word (not the step's timeout later).
        await ctx.watch.settle()
        outcome = _accepted_by_authorize(ctx, id_tag, since)
        if outcome is None and _authorize_of(ctx, id_tag, since) is None:
            raise StepFailed(
                f"the charger accepted idTag {id_tag} from its local list or cache without "
                "asking the CSMS, and with no vehicle plugged in no StartTransaction goes "
                f"whose answer could refuse it; expected it {expected}"
            )
    else:
        outcome = await ctx.watch.wait_for(
            ctx.target.pk, partial(_decided, id_tag, since), ctx.deadline(within)
        ) or _accepted_by_authorize(ctx, id_tag, since)
    if outcome is None:
        raise StepFailed(f"no answer refused or accepted idTag {id_tag} within {within:g} s")
    source, status = outcome
    if source == _FAULT:
        raise StepFailed(status)
    if status == "Accepted":
        raise StepFailed(f"the CSMS accepted idTag {id_tag} ({source}), expected it {expected}")
    if expected != "refused" and status != expected:
        raise StepFailed(f"idTag {id_tag} was refused {status} ({source}), expected {expected}")
    return f"idTag {id_tag} refused: {status} ({source})"


_present_id_tag = _action("present_id_tag", {"id_tag": "id_tag"})
# An outcome whose "source" is this is no verdict of the CSMS's on the tag: its second
# part says what the CSMS did instead (no answer, a CALLERROR, a broken answer).
_FAULT = ""
_LOCAL = "the charger's local authorization"
_NO_ANSWER = "the CSMS did not answer the charger's Authorize"


async def _present_accepted(ctx: StepContext, args: dict[str, Any]) -> str:
    """`present_id_tag` without `expect`: the tag must be accepted. A refusal says what the
    CSMS did, when the charger did not have the CSMS's word on it (the charger then
    decides offline, and "Invalid" alone would blame the tag)."""
    since = time.time()
    try:
        return await _present_id_tag(ctx, args)
    except StepFailed as exc:
        found = _NOT_ACCEPTED.search(str(exc))
        if found is None:
            raise
        id_tag = str(args["id_tag"])
        source, said = await _refusal_source(ctx, id_tag, since, found.group(1))
        if source == _FAULT:
            raise StepFailed(f"idTag {id_tag} was not accepted: {said}") from None
        if source == _LOCAL and contract.DECIDED_ALONE not in str(exc):
            raise StepFailed(
                f"{exc}: the charger refused it without asking the CSMS (its local list, "
                "cache or offline rules)"
            ) from None
        raise


async def _charger_refusal(ctx: StepContext, sent: dict[str, Any]) -> tuple[str | None, str]:
    """Present the tag: the status the charger refused it with, or None (accepted), and
    what the charger said."""
    try:
        result = await ctx.command("present_id_tag", sent)
    except StepFailed as exc:
        found = _NOT_ACCEPTED.search(str(exc))
        if found is None:
            raise  # not a refusal: e.g. the connector is faulted
        return found.group(1), str(exc)
    return None, str(result.get("message") or "")


async def _refusal_source(
    ctx: StepContext, id_tag: str, since: float, status: str
) -> tuple[str, str]:
    """Whose refusal the charger's `status` is: the CSMS's (its answer to the Authorize),
    the charger's own when it sent no Authorize (its local list, cache or offline rules),
    or, when it sent one that got no usable answer, a fault of the CSMS's (`_FAULT`): it
    then decided offline, and its "Invalid" is no word of the CSMS's on the tag."""
    await ctx.watch.settle()  # the Authorize and its answer reach the watch a flush later
    authorize = _authorize_of(ctx, id_tag, since)
    if authorize is None:
        return _LOCAL, status
    fault = _authorize_fault(ctx, authorize)
    if fault is not None:
        return _FAULT, f"{fault} (the charger then refused it itself: {status})"
    answer = _answer_to(ctx.watch.frames.get(ctx.target.pk, []), authorize)
    assert answer is not None  # no fault: a CALLRESULT the charger took
    return "Authorize", answer_status("Authorize", answer.payload) or "?"


def _authorize_of(ctx: StepContext, id_tag: str, since: float) -> Frame | None:
    """The charger's latest Authorize of `id_tag` since `since`."""
    found = None
    for frame in ctx.watch.frames.get(ctx.target.pk, []):
        if (
            frame.direction == "out"
            and frame.message_type == CALL
            and frame.action == "Authorize"
            and frame.at >= since
            and isinstance(frame.payload, dict)
            and frame.payload.get("idTag") == id_tag
        ):
            found = frame
    return found


def _answer_to(frames: list[Frame], call: Frame) -> Frame | None:
    for frame in frames:
        if (
            frame.direction == "in"
            and frame.message_id == call.message_id
            and frame.message_type in (CALLRESULT, CALLERROR)
        ):
            return frame
    return None


def malformed_after(frames: list[Frame], call: Frame) -> str:
    """What a verdict adds to "the CSMS did not answer" the charger's `call` when the CSMS
    sent a frame the charger could not read as an OCPP-J message after it (and before the
    charger's next CALL: it sends one at a time), most likely its answer: what was wrong
    with it, as the charger read it (`Frame.malformed`, which quotes none of it). "" when
    the CSMS sent none."""
    after = False
    for frame in frames:
        if frame is call:
            after = True
        elif not after:
            continue
        elif frame.direction == "out" and frame.message_type == CALL:
            break
        elif frame.direction == "in" and frame.malformed is not None:
            return (
                f": the CSMS sent a malformed frame {max(frame.at - call.at, 0.0):.2f} s after "
                f"the CALL, which {frame.malformed}"
            )
    return ""


def _authorize_fault(ctx: StepContext, authorize: Frame, *, said: str = "") -> str | None:
    """What the CSMS did instead of answering this Authorize usably (None: it did); `said`
    goes after "the CSMS did not answer the charger's Authorize"."""
    frames = ctx.watch.frames.get(ctx.target.pk, [])
    answer = _answer_to(frames, authorize)
    if answer is None:
        # Nothing with its message id came back: silence, an answer to another id, or a
        # frame that is no OCPP-J message (said).
        return f"{_NO_ANSWER}{said}{malformed_after(frames, authorize)}"
    return answer_fault("Authorize", answer)


def _decided(id_tag: str, since: float, frames: list[Frame]) -> tuple[str, str] | None:
    """After the charger accepted the tag: the CSMS's refusal in an answer to its Authorize
    or StartTransaction of the tag, or its accepting the StartTransaction; a fault
    (`_FAULT`) when such an answer is a CALLERROR or one the charger refused."""
    calls = {
        f.message_id: f
        for f in frames
        if f.direction == "out"
        and f.message_type == CALL
        and f.action in ("Authorize", "StartTransaction")
        and f.at >= since
        and isinstance(f.payload, dict)
        and f.payload.get("idTag") == id_tag
    }
    accepted: tuple[str, str] | None = None
    for frame in frames:
        call = calls.get(frame.message_id)
        if (
            call is None
            or frame.direction != "in"
            or frame.message_type
            not in (
                CALLRESULT,
                CALLERROR,
            )
        ):
            continue
        fault = answer_fault(call.action, frame)
        if fault is not None:
            return _FAULT, fault
        status = answer_status(call.action, frame.payload) or "?"
        if status != "Accepted":
            return call.action, status
        if call.action == "StartTransaction":
            accepted = (call.action, status)
    return accepted


def _accepted_by_authorize(ctx: StepContext, id_tag: str, since: float) -> tuple[str, str] | None:
    """The CSMS's accepting the tag in its answer to the Authorize, when no StartTransaction
    followed (no vehicle plugged in): the step's time is up, that is its word."""
    authorize = _authorize_of(ctx, id_tag, since)
    if authorize is None or _authorize_fault(ctx, authorize) is not None:
        return None
    answer = _answer_to(ctx.watch.frames.get(ctx.target.pk, []), authorize)
    status = answer_status("Authorize", answer.payload) if answer else None
    return ("Authorize", status) if status == "Accepted" else None


# -- waits ------------------------------------------------------------------------------------


async def wait(ctx: StepContext, args: dict[str, Any]) -> str:
    if "seconds" in args:
        seconds = duration(args["seconds"])
        await asyncio.sleep(seconds)
        return f"waited {seconds:g} s"
    timeout = duration(args.get("timeout", DEFAULT_TIMEOUT))
    if "status" in args:
        wait_for = contract.WaitFor(condition=str(args["status"]), timeout=timeout)
        connector = _connector(args)
        await ctx.command(contract.STATE, {"connector_id": connector}, wait_for)
        where = "" if args["status"] == contract.ACCEPTED else f"connector {connector} "
        return f"{where}{_condition(str(args['status']))}"
    action = str(args["csms_call"])
    frame = await _csms_call(ctx, action, args.get("payload"), timeout)
    if frame is None:
        raise StepFailed(
            f"the CSMS sent no {action}{_matching(args)} within {timeout:g} s"
            f"{_sent_instead(ctx, action, args)}"
        )
    return f"the CSMS sent {action} after {max(frame.at - ctx.since, 0):.2f} s"


def _hidden_values(payload: Any) -> list[str]:
    """The write-only configuration keys (AuthorizationKey) whose value `payload` expects.
    Every record of a frame hides such a value, the frames a scenario sees included: it
    cannot be checked, and the expectation must not be echoed in a message either."""
    found: list[str] = []
    if isinstance(payload, list):
        for item in payload:
            found += _hidden_values(item)
    elif isinstance(payload, dict):
        named = payload.get("key")
        if isinstance(named, str) and "value" in payload and _write_only(named):
            found.append(named)
        for name, item in payload.items():
            if _write_only(name):
                found.append(name)
            found += _hidden_values(item)
    return found


def _write_only(name: str) -> bool:
    spec = config_keys.KEYS.get(name)
    return spec is not None and spec.write_only


async def _csms_call(ctx: StepContext, action: str, payload: Any, within: float) -> Frame | None:
    hidden = _hidden_values(payload)
    if hidden:
        raise StepError(
            f"the payload expects the value of {hidden[0]}, which is write-only: no record of "
            "a frame holds it (the scenario's neither), so it cannot be checked; leave the "
            "value out to check that the CSMS set the key"
        )

    def found(frames: list[Frame]) -> Frame | None:
        for frame in _calls_of(ctx, action, frames):
            if payload is None or contains(frame.payload, payload):
                return frame
        return None

    result: Frame | None = await ctx.watch.wait_for(ctx.target.pk, found, ctx.deadline(within))
    return result


def _calls_of(ctx: StepContext, action: str, frames: list[Frame]) -> Iterator[Frame]:
    """The CALLs of `action` the CSMS sent the charger in the step's window."""
    for frame in frames:
        if (
            frame.at >= ctx.since
            and frame.direction == "in"
            and frame.message_type == CALL
            and frame.action == action
        ):
            yield frame


def _sent_instead(ctx: StepContext, action: str, args: Mapping[str, Any]) -> str:
    """What the CSMS did send of that action in the step's time, when a payload did not
    match: the failure then says what differed (the frames are redacted already)."""
    if args.get("payload") is None:
        return ""
    sent = list(_calls_of(ctx, action, ctx.watch.frames.get(ctx.target.pk, [])))
    if not sent:
        return ""
    # Hidden before it is cut: cut first, the part of a long secret that fits would escape
    # the run's hiding of the whole message.
    last = str(ctx.hide(json.dumps(sent[-1].payload, sort_keys=True)))
    shown = last if len(last) <= _SHOWN_PAYLOAD else last[: _SHOWN_PAYLOAD - 1] + "…"
    return f" (it sent {len(sent)}; the last: {shown})"


_SHOWN_PAYLOAD = 300  # characters of a payload quoted in a verdict


def _matching(args: Mapping[str, Any]) -> str:
    payload = args.get("payload")
    return "" if payload is None else f" matching {json.dumps(payload, sort_keys=True)}"


def contains(value: Any, expected: Any) -> bool:
    """Whether `value` holds `expected`: mappings key by key (more keys allowed), anything
    else equal."""
    if isinstance(expected, dict):
        return isinstance(value, dict) and all(
            key in value and contains(value[key], item) for key, item in expected.items()
        )
    return bool(value == expected)


# -- expectations -----------------------------------------------------------------------------


async def expect(ctx: StepContext, args: dict[str, Any]) -> str:
    within = duration(args.get("within", DEFAULT_TIMEOUT))
    if "csms_call" in args:
        action = str(args["csms_call"])
        frame = await _csms_call(ctx, action, args.get("payload"), within)
        if frame is None:
            raise StepFailed(
                f"the CSMS sent no {action}{_matching(args)} within {within:g} s"
                f"{_sent_instead(ctx, action, args)}"
            )
        return f"the CSMS sent {action} after {max(frame.at - ctx.since, 0):.2f} s"
    if "no_csms_call" in args:
        action = str(args["no_csms_call"])
        frame = await _csms_call(ctx, action, args.get("payload"), within)
        if frame is not None:
            raise StepFailed(
                f"the CSMS sent {action}{_matching(args)} "
                f"{max(frame.at - ctx.since, 0):.2f} s in, expected none for {within:g} s"
            )
        return f"no {action} for {within:g} s"
    if "answer" in args:
        return await _expect_answer(ctx, args, within)
    if "heartbeat_interval_at_least" in args:
        return await _expect_heartbeat(ctx, float(args["heartbeat_interval_at_least"]))
    if "answers_within" in args:
        return await _expect_answers_within(ctx, duration(args["answers_within"]))
    if "response_time" in args:
        return await _expect_response_time(ctx, args["response_time"])
    if "connection_kept" in args:
        return await _expect_connection_kept(ctx)
    return await _expect_status(ctx, str(args["status"]), _connector(args))


async def _expect_answer(ctx: StepContext, args: dict[str, Any], within: float) -> str:
    action = str(args["answer"])

    def answered(frames: list[Frame]) -> tuple[Frame, Frame | None] | None:
        calls = [
            f
            for f in frames
            if f.direction == "out" and f.message_type == CALL and f.action == action
        ]
        if not calls:
            return None
        call = calls[-1]
        for frame in frames:
            if (
                frame.direction == "in"
                and frame.message_id == call.message_id
                and frame.message_type in (CALLRESULT, CALLERROR)
            ):
                return call, frame
        return None

    # Settled first, so that "the latest CALL" is not one older than a CALL that was sent
    # before this step but has not reached the watch yet.
    await ctx.watch.settle()
    pair = await ctx.watch.wait_for(ctx.target.pk, answered, ctx.deadline(within))
    if pair is None:
        await ctx.watch.settle()
        pair = answered(ctx.watch.frames.get(ctx.target.pk, []))
    if pair is None:
        frames = ctx.watch.frames.get(ctx.target.pk, [])
        sent = [
            f
            for f in frames
            if f.direction == "out" and f.message_type == CALL and f.action == action
        ]
        if sent:
            raise StepFailed(
                f"the CSMS did not answer {action} within {within:g} s"
                f"{malformed_after(frames, sent[-1])}"
            )
        why = not_sent_because(
            frames, ctx.watch.links.get(ctx.target.pk, []), action, ctx.run_started, ctx.hide
        )
        raise StepFailed(f"the charger sent no {action} during the run (within {within:g} s){why}")
    _, answer = pair
    if args.get("call_error"):
        if answer.message_type != CALLERROR:
            raise StepFailed(f"the CSMS answered {action} with a CALLRESULT, expected a CALLERROR")
        return f"the CSMS answered {action} with CALLERROR {answer.payload[0]}"
    fault = answer_fault(action, answer)
    if fault is not None:
        raise StepFailed(fault)
    if "status" in args:
        status = answer_status(action, answer.payload)
        if status is None:
            where = "idTagInfo.status" if action in ID_TAG_INFO_ACTIONS else "status"
            raise StepFailed(f"the answer to {action} has no {where}, expected {args['status']}")
        if status != args["status"]:
            raise StepFailed(f"the answer to {action} was {status}, expected {args['status']}")
    if "payload" in args and not contains(answer.payload, args["payload"]):
        raise StepFailed(
            f"the answer to {action} was {json.dumps(answer.payload, sort_keys=True)}, "
            f"expected it to contain {json.dumps(args['payload'], sort_keys=True)}"
        )
    shown = answer_status(action, answer.payload)
    return f"the CSMS answered {action}" + (f" {shown}" if shown else "")


# The charger's CALLs that are transaction messages: sent in order, each retried on a
# CALLERROR or no answer (TransactionMessageAttempts) before the next goes.
TRANSACTION_ACTIONS = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})


def _is_transaction_message(call: Frame) -> bool:
    if call.action == "MeterValues":  # a clock-aligned one outside a session is not
        return isinstance(call.payload, dict) and "transactionId" in call.payload
    return call.action in TRANSACTION_ACTIONS


def not_sent_because(
    frames: list[Frame],
    links: list[LinkEvent],
    action: str,
    run_started: float,
    hide: Callable[[Any], Any] = _shown_as_is,
) -> str:
    """What a verdict adds to "the charger sent no `action`" when the run saw why the
    charger held it back ("" when it did not): it is offline; the CALL it sent last still
    waits for its answer (it sends one at a time); or, for a transaction message, the one
    before it got no good answer, and the charger retries that first (transaction messages
    go in order). The CSMS's fault then, not the charger's. `hide`: the run's hiding of
    its secrets, before a CSMS's text is cut to length (`StepContext.hide`)."""
    offline = _offline_since(links)
    if offline is not None:
        since, what = offline
        return (
            f": the charger has been offline since {max(since - run_started, 0.0):.1f} s "
            f"into the run ({what})"
        )
    calls = [f for f in frames if f.direction == "out" and f.message_type == CALL]
    if not calls:
        return ""
    last = calls[-1]
    lost = any(link.event in LINK_DOWN and link.at >= last.at for link in links)
    if _answer_to(frames, last) is None and not lost:  # (the link going down ended its wait)
        return (
            f": the charger sends one CALL at a time, and the CSMS did not answer its "
            f"{last.action} sent {max(last.at - run_started, 0.0):.1f} s into the run"
            f"{malformed_after(frames, last)}"
        )
    if action not in TRANSACTION_ACTIONS:
        return ""
    held = [c for c in calls if _is_transaction_message(c)]
    if not held:
        return ""
    before = held[-1]
    answer = _answer_to(frames, before)
    if answer is None:
        fault = f"the CSMS did not answer the charger's {before.action}"
    elif answer.message_type == CALLERROR:
        code, description = answer.payload or ("?", "")  # a CALLERROR's [code, description]
        fault = f"the CSMS answered the charger's {before.action} with CALLERROR {code}"
        # Hidden before it is cut, as a payload quoted in a verdict (`_sent_instead`).
        fault += f": {str(hide(str(description)))[:_SHOWN_PAYLOAD]}" if description else ""
    elif answer.refused is not None:
        fault = f"the CSMS's answer to the charger's {before.action} {answer.refused}"
    else:
        return ""
    sent = max(before.at - run_started, 0.0)
    return (
        f": {fault} (sent {sent:.1f} s into the run), and the charger sends its transaction "
        f"messages in order: it retries that {before.action} first "
        "(TransactionMessageAttempts, TransactionMessageRetryInterval)"
    )


def _offline_since(links: list[LinkEvent]) -> tuple[float, str] | None:
    """When the charger's link went down and has not come back since, and why (the last
    word on it: a failed attempt to connect, or how it closed); None while online."""
    since: float | None = None
    what = ""
    for link in links:
        if link.event == "connected":
            since, what = None, ""
        elif link.event in ("closed", "network_cut", "connect_failed"):
            since = link.at if since is None else since
            if link.event == "connect_failed":
                what = f"its last attempt to connect: {link.detail.get('reason', '?')}"
            elif link.event == "network_cut":
                what = "its network is cut"
            elif not what:
                what = close_said(link)
    return None if since is None else (since, what)


def answer_fault(action: str, answer: Frame) -> str | None:
    """What makes `answer` no good answer to the charger's `action` CALL, as a verdict says
    it: a CALLERROR, or a CALLRESULT the charger refused (it breaks the OCPP 1.6 schema);
    None for a CALLRESULT the charger took. A step must not pass on an answer the charger
    threw away: its call failed, whatever the answer's status seemed to say."""
    if answer.message_type == CALLERROR:
        code = answer.payload[0] if answer.payload else "?"
        return f"the CSMS answered {action} with CALLERROR {code}"
    if answer.refused is not None:
        return f"the CSMS's answer to {action} {answer.refused}"
    return None


def answer_status(action: str, payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    if action in ID_TAG_INFO_ACTIONS:
        info = payload.get("idTagInfo")
        return str(info.get("status")) if isinstance(info, dict) else None
    status = payload.get("status")
    return None if status is None else str(status)


async def _expect_heartbeat(ctx: StepContext, at_least: float) -> str:
    await ctx.watch.settle()
    interval, source, refused = heartbeat_interval(ctx.watch.frames.get(ctx.target.pk, []))
    if refused is not None:
        raise StepFailed(refused)
    if interval is None:
        raise StepFailed(
            "no BootNotification answer (nor ChangeConfiguration of HeartbeatInterval) was "
            "seen during the run: start with a reboot or a connect step"
        )
    if interval < at_least:
        raise StepFailed(
            f"the heartbeat interval is {interval:g} s (from {source}), expected at least {at_least:g} s"
        )
    return f"heartbeat interval {interval:g} s (from {source})"


def heartbeat_interval(frames: list[Frame]) -> tuple[float | None, str, str | None]:
    """The latest interval the CSMS set: a BootNotification answer's `interval`, or an
    accepted ChangeConfiguration of HeartbeatInterval; and, when the latest
    BootNotification answer came after it and the charger refused it, why (`answer_fault`)."""
    interval: float | None = None
    source = ""
    refused: str | None = None
    answers = {
        f.message_id: f for f in frames if f.direction == "out" and f.message_type == CALLRESULT
    }
    for frame in frames:
        payload = frame.payload
        if (
            frame.direction == "in"
            and frame.message_type == CALLRESULT
            and frame.action == "BootNotification"
            and frame.refused is not None
        ):
            refused = answer_fault("BootNotification", frame)
        elif (
            frame.direction == "in"
            and frame.message_type == CALLRESULT
            and frame.action == "BootNotification"
            and isinstance(payload, dict)
            and isinstance(payload.get("interval"), int | float)
        ):
            interval, source, refused = float(payload["interval"]), "BootNotification", None
        elif (
            frame.direction == "in"
            and frame.message_type == CALL
            and frame.action == "ChangeConfiguration"
            and isinstance(payload, dict)
            and payload.get("key") == "HeartbeatInterval"
        ):
            answer = answers.get(frame.message_id)
            if answer is not None and answer_status("ChangeConfiguration", answer.payload) == (
                "Accepted"
            ):
                try:
                    interval = float(payload.get("value", ""))
                except ValueError:
                    continue
                source, refused = "ChangeConfiguration", None
    return interval, source, refused


async def _expect_answers_within(ctx: StepContext, limit: float) -> str:
    await ctx.watch.settle()
    pk = ctx.target.pk
    now = time.time() - ctx.watch.settle_seconds  # what has arrived is known up to here
    return answers_within(
        ctx.watch.frames.get(pk, []),
        now,
        limit,
        ctx.watch.link_down.get(pk, ()),
        run_started=ctx.run_started,
    )


def cut_off(call: Frame, link_down: Iterable[LinkEvent], limit: float) -> LinkEvent | None:
    """The charger's link going down (closed, or a network cut) before the CSMS had `limit`
    seconds to answer this CALL, if it did: no answer can come after it (the charger sends
    a transaction message again after the reconnect, under a new id)."""
    return next((down for down in link_down if call.at <= down.at < call.at + limit), None)


def dropped_unanswered(call: Frame, down: LinkEvent | None) -> str | None:
    """Why a CALL got no answer when the link going down that cut it off was the CSMS's
    doing (`not_ours`: it closed the connection or went away instead of answering), as a
    verdict says it ("the CSMS closed the connection 0.40 s later (code ...)"); None when
    the scenario took the link down, or nothing did."""
    if down is None or not not_ours(down):
        return None
    return close_said(down, later_than=call.at)


def answers_within(
    frames: list[Frame],
    now: float,
    limit: float,
    link_down: Iterable[LinkEvent] = (),
    *,
    run_started: float = 0.0,
) -> str:
    """`answers_within`: every CALL answered within `limit` s; StepFailed for the first
    that was not. One the CSMS dropped the connection on counts as not answered; one cut
    off by the scenario's own taking the link down is left out (`cut_off`)."""
    answers = {
        f.message_id: f
        for f in frames
        if f.direction == "in" and f.message_type in (CALLRESULT, CALLERROR)
    }
    downs = list(link_down)
    calls = [f for f in frames if f.direction == "out" and f.message_type == CALL]
    slowest = 0.0
    lost = 0
    answered = 0
    waiting: list[float] = []  # the ages of CALLs younger than the bound, not answered yet
    for call in calls:
        answer = answers.get(call.message_id)
        if answer is None:
            down = cut_off(call, downs, limit)
            dropped = dropped_unanswered(call, down)
            if dropped is not None:
                raise StepFailed(
                    f"{call.action} sent {max(call.at - run_started, 0.0):.1f} s into the run "
                    f"was not answered: {dropped}{malformed_after(frames, call)}"
                )
            if now - call.at > limit:
                if down is not None:
                    lost += 1
                    continue
                raise StepFailed(
                    f"the CSMS did not answer {call.action} (sent {now - call.at:.1f} s ago) "
                    f"within {limit:g} s{malformed_after(frames, call)}"
                )
            waiting.append(now - call.at)
            continue
        if answer.refused is not None:
            raise StepFailed(str(answer_fault(call.action, answer)))
        answered += 1
        took = answer.at - call.at
        slowest = max(slowest, took)
        if took > limit:
            raise StepFailed(
                f"the CSMS answered {call.action} after {took:.2f} s, limit {limit:g} s"
            )
    if not calls:
        return "the charger sent no CALL during the run so far: none went unanswered"
    # Only what was answered is counted and timed: a CALL still within its bound may yet
    # be answered (or not), and is said apart.
    notes = [f"{lost} cut off by the link going down"] if lost else []
    if waiting:
        notes.append(f"{len(waiting)} not answered yet, sent {max(waiting):.1f} s ago")
    text = f"{answered} CALLs answered, the slowest in {slowest:.2f} s"
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _duration(seconds: float, shown: str) -> str:
    """`shown` seconds, or below 10 ms in milliseconds: a bound under a millisecond read
    "is 0.000 s, limit 1e-06 s"."""
    if seconds >= 0.01:
        return f"{shown} s"
    return f"{seconds * 1000:.3g} ms"


async def _expect_response_time(ctx: StepContext, spec: Mapping[str, Any]) -> str:
    limits = {name: duration(spec[name]) for name in PERCENTILES if name in spec}
    action = spec.get("action")
    fleet = bool(spec.get("fleet"))
    targets = ctx.fleet if fleet else [ctx.target]
    await ctx.watch.settle()
    now = time.time() - ctx.watch.settle_seconds  # what has arrived is known up to here
    timed: list[tuple[Target, Timed]] = []
    for target in targets:
        timed += (
            (target, t)
            for t in timed_calls(
                ctx.watch.frames.get(target.pk, []),
                now,
                max(limits.values()),
                action,
                ctx.watch.link_down.get(target.pk, ()),
            )
        )
    which = f"{action} " if action else ""
    whose = f"of {len(targets)} chargers " if fleet else ""
    if not timed:
        raise StepFailed(f"no {which}CALL {whose}was answered during the run: nothing to measure")
    times = sorted(t.seconds for _, t in timed)
    missing = [(target, t) for target, t in timed if math.isinf(t.seconds)]
    shown = []
    for name, limit in limits.items():
        value = percentile(times, PERCENTILES[name])
        if value > limit:
            got = (
                f"no answer ({len(missing)} of {len(times)} CALLs got no valid answer: "
                f"{_without_answer(missing, ctx.watch.frames, ctx.run_started, fleet)})"
                if math.isinf(value)
                else _duration(value, f"{value:.3f}")
            )
            raise StepFailed(
                f"the {name} response time of {len(times)} {which}CALLs {whose}is {got}, "
                f"limit {_duration(limit, f'{limit:g}')}"
            )
        shown.append(f"{name} {value:.3f} s")
    text = f"{len(times)} {which}CALLs {whose}answered: {', '.join(shown)}"
    return text + (f" ({len(missing)} got no valid answer)" if missing else "")


# CALLs without a valid answer named in a response_time failure; the rest are counted.
_LISTED_CALLS = 3


def _without_answer(
    missing: list[tuple[Target, Timed]],
    frames: Mapping[int, list[Frame]],
    run_started: float,
    fleet: bool,
) -> str:
    """Which CALLs got no valid answer, and why, as a failure says it (the first few; the
    malformed frame the CSMS sent instead of an answer, looked for only for those)."""
    said = []
    for target, t in missing[:_LISTED_CALLS]:
        whose = f" of {target.charge_point_id}" if fleet else ""
        sent = max(t.call.at - run_started, 0.0)
        why = t.why
        if t.unanswered:
            why += malformed_after(frames.get(target.pk, []), t.call)
        said.append(f"{t.call.action}{whose} sent {sent:.1f} s into the run: {why}")
    more = len(missing) - _LISTED_CALLS
    return "; ".join(said) + (f"; {more} more" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class Timed:
    """A CALL of the charger's and how long the CSMS took to answer it: `math.inf` when it
    got no valid answer, and then `why` says so."""

    call: Frame
    seconds: float
    why: str = ""
    unanswered: bool = False  # no answer at all (not one the charger refused)


def timed_calls(
    frames: list[Frame],
    now: float,
    grace: float,
    action: str | None = None,
    link_down: Iterable[LinkEvent] = (),
) -> list[Timed]:
    """Each CALL the charger sent (of `action`, or all) with the seconds to the CSMS's
    answer (CALLRESULT or CALLERROR). A CALL whose answer the charger refused (it breaks
    the OCPP 1.6 schema, `Frame.refused`) got no answer: its call failed, and no other
    answer will come for it, so it counts as infinitely slow at once, as `answers_within`
    fails on it. So does one the CSMS dropped the connection on (`dropped_unanswered`). An
    unanswered CALL counts as infinitely slow once it is older than `grace` (a younger one
    may still be answered: it is left out, and so is one the scenario's taking the link
    down cut off: `cut_off`)."""
    downs = list(link_down)
    answers = {
        f.message_id: f
        for f in frames
        if f.direction == "in" and f.message_type in (CALLRESULT, CALLERROR)
    }
    timed = []
    for frame in frames:
        if frame.direction != "out" or frame.message_type != CALL:
            continue
        if action is not None and frame.action != action:
            continue
        answer = answers.get(frame.message_id)
        if answer is not None and answer.refused is None:
            timed.append(Timed(frame, max(answer.at - frame.at, 0.0)))
        elif answer is not None:
            timed.append(Timed(frame, math.inf, str(answer_fault(frame.action, answer))))
        else:
            down = cut_off(frame, downs, grace)
            dropped = dropped_unanswered(frame, down)
            if dropped is not None:  # no answer can come: infinitely slow at once
                timed.append(Timed(frame, math.inf, dropped, unanswered=True))
            elif now - frame.at > grace and down is None:
                why = f"no answer after {now - frame.at:.1f} s"
                timed.append(Timed(frame, math.inf, why, unanswered=True))
    return timed


def response_times(
    frames: list[Frame],
    now: float,
    grace: float,
    action: str | None = None,
    link_down: Iterable[LinkEvent] = (),
) -> list[float]:
    """The seconds of `timed_calls`, in the order the CALLs were sent."""
    return [t.seconds for t in timed_calls(frames, now, grace, action, link_down)]


def percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank percentile `q` (0..100] of sorted values: the smallest value with
    at least q % of the values at or below it (so p99 of 100 values is the 99th)."""
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


async def _expect_connection_kept(ctx: StepContext) -> str:
    """No close of the charger's connection during the run so far that was not the
    scenario's own doing (a close, disconnect or reboot step, a network cut): none by the
    CSMS, none lost without a close frame, no keepalive ping left without its pong."""
    await ctx.watch.settle()
    closes = closes_not_ours(ctx.watch.links.get(ctx.target.pk, []), ctx.run_started)
    if closes:
        more = f" (and {len(closes) - 1} more after it)" if len(closes) > 1 else ""
        raise StepFailed(close_said(closes[0], ctx.run_started) + more)
    return "the connection was kept: the CSMS closed none, none was lost"


async def _expect_status(ctx: StepContext, status: str, connector: int) -> str:
    result = await ctx.command(contract.STATE, {})
    charger = result.get("charger")
    if charger is None:
        raise StepError("the engine sent no state of the charger")
    if status == contract.ACCEPTED:
        if charger["boot"] != "Accepted" or charger["link"] != "online":
            # Said as every expectation's failure is: what came, then what was expected
            # ("None" is the engine's word for no boot since power-on).
            boot = "no boot yet" if charger["boot"] == "None" else f"boot {charger['boot']}"
            raise StepFailed(
                f"the charger is {charger['link']}, {boot}, expected it online with its "
                "boot Accepted"
            )
        return "online, boot Accepted"
    for evse in charger["evses"]:
        if evse["connector_id"] == connector:
            if evse["status"] != status:
                raise StepFailed(f"connector {connector} is {evse['status']}, expected {status}")
            return f"connector {connector} is {status}"
    raise StepFailed(f"the charger has no connector {connector}")


# -- faults in the CSMS's way -----------------------------------------------------------------


async def override(ctx: StepContext, args: dict[str, Any]) -> str:
    sent: dict[str, Any] = {"action": args["action"]}
    if args.get("clear"):
        sent["clear"] = True
    else:
        sent["mode"] = "every" if args.get("every") else "next"
        for key in ("status", "call_error", "no_answer"):
            if key in args:
                sent[key] = args[key]
        if "delay" in args:
            sent["delay"] = duration(args["delay"])
    result = await ctx.command("set_answer_override", sent)
    return str(result.get("message") or "override set")


async def network(ctx: StepContext, args: dict[str, Any]) -> str:
    if "cut" in args:
        result = await ctx.command("cut_network", {"seconds": duration(args["cut"])})
    elif "close_code" in args:
        result = await ctx.command("close_connection", {"code": int(args["close_code"])})
    elif args.get("clear"):  # a clean link: no latency, no jitter, nothing dropped
        result = await ctx.command("set_network", {"latency_ms": 0, "jitter_ms": 0, "drop_rate": 0})
    else:
        sent = {k: args[k] for k in ("latency_ms", "jitter_ms", "drop_rate") if k in args}
        sent["seed"] = ctx.rng.randrange(2**31)
        result = await ctx.command("set_network", sent)
    return str(result.get("message") or "network set")


async def close(ctx: StepContext, args: dict[str, Any]) -> str:
    result = await ctx.command("close_connection", {"code": int(args.get("code", 1000))})
    return str(result.get("message") or "connection closed")


async def clock_skew(ctx: StepContext, args: dict[str, Any]) -> str:
    result = await ctx.command("set_clock_skew", {"seconds": float(args["seconds"])})
    return str(result.get("message") or "clock skewed")


# -- background traffic at the scenario's location ------------------------------------------

TRAFFIC_POLL_SECONDS = 0.5


async def traffic(ctx: StepContext, args: dict[str, Any]) -> str:
    """Start (or stop) the arrival-profile traffic of the scenario's location on every
    worker; with `wait`, until every worker's traffic there is over."""
    if ctx.location is None:
        raise StepError("the scenario has no location for its traffic (chargers: location)")
    location_id = await in_thread(_location_id, thread_sensitive=True)(ctx.location)
    where = f"traffic at {ctx.location}"
    if args.get("stop"):
        answers = await _traffic(ctx, "stop", location_id)
        return f"{where} stopped: {_tally_text(answers)}"
    started = time.time()
    answers = await _traffic(
        ctx,
        "start",
        location_id,
        profile=args.get("profile"),
        duration=duration(args["duration"]) if "duration" in args else None,
        speed=float(args["speed"]) if "speed" in args else None,
        seed=ctx.seed,
    )
    if not args.get("wait"):
        return f"{where} started ({len(answers)} workers)"
    timeout = duration(args.get("timeout", DEFAULT_TIMEOUT))
    deadline = ctx.deadline(timeout)
    loop = asyncio.get_running_loop()
    while any(a.get("running", True) for a in answers):
        if loop.time() > deadline:
            raise StepFailed(f"{where} was not over within {timeout:g} s ({_tally_text(answers)})")
        await asyncio.sleep(TRAFFIC_POLL_SECONDS)
        answers = await _traffic(ctx, "status", location_id)
    return f"{where} over after {time.time() - started:.1f} s: {_tally_text(answers)}"


def _location_id(name: str) -> int:
    found = Location.objects.filter(name=name).values_list("pk", flat=True).first()
    if found is None:
        raise StepError(f"no location named {name!r}")
    return int(found)


async def _traffic(
    ctx: StepContext, action: str, location_id: int, **kwargs: Any
) -> list[TrafficResult]:
    try:
        answers, missing = await ctx.client.traffic(action, location_id, **kwargs)
    except EngineError as exc:
        raise StepError(str(exc)) from None
    if missing:
        shards = ", ".join(str(s) for s in missing)
        raise StepError(f"no simulator worker answered the traffic {action} (shard {shards})")
    for answer in answers:
        if not answer.get("ok"):
            refused = answer.get("message") or f"traffic {action} was refused"
            field = answer.get("field")
            raise StepFailed(f"{refused} (field {field})" if field else refused)
    return answers


def _tally_text(answers: list[TrafficResult]) -> str:
    total: dict[str, int] = {}
    for answer in answers:
        tally = answer.get("tally")
        for key, count in dict(tally or {}).items():
            total[key] = total.get(key, 0) + int(str(count))
    if not total:
        return "no traffic there"
    return ", ".join(f"{count} {key.replace('_', ' ')}" for key, count in total.items())


# -- making the CSMS act ----------------------------------------------------------------------


async def trigger(ctx: StepContext, args: dict[str, Any]) -> str:
    method = str(args.get("http", "POST"))
    url = str(args["url"])
    timeout = duration(args.get("timeout", 10))
    headers = {str(k): str(v) for k, v in (args.get("headers") or {}).items()}
    data = None
    if "body" in args:
        data = json.dumps(args["body"]).encode()
        headers.setdefault("Content-Type", "application/json")
    status, body = await asyncio.to_thread(_http, method, url, data, headers, timeout)
    answer = _answer_text(ctx.hide(body))
    expected = args.get("expect_status")
    shown = shown_url(url)  # the verdict's text is kept and shown: no credentials in it
    # Why the hook refused (the built-in control names the payload's problem, a CSMS's API
    # its own): the start of its answer, on one line. The run hides secrets in messages.
    said = f": {answer}" if answer else ""
    if expected is not None and status != expected:
        raise StepFailed(f"{method} {shown} answered {status}, expected {expected}{said}")
    if expected is None and not 200 <= status < 300:
        raise StepFailed(f"{method} {shown} answered {status}{said}")
    return f"{method} {shown}: {status}"


# How much of a hook's answer a failed trigger quotes, and reads (more, so that a secret
# it quotes is read whole and hidden before the quote is cut to length).
HOOK_ANSWER_CHARS = 300
HOOK_ANSWER_READ_BYTES = 65_536


def _http(
    method: str, url: str, data: bytes | None, headers: dict[str, str], timeout: float
) -> tuple[int, str]:
    """The hook's status and the start of its answer's body."""
    if not url.startswith(("http://", "https://")):
        raise StepError(f"{shown_url(url)!r} is not an http(s) URL")
    # A login in the URL (http://user:pw@host/) as urllib cannot take it: a Basic header.
    headers = {**basic_login(url), **headers}
    request = urllib.request.Request(without_login(url), data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), _decoded(response.read(HOOK_ANSWER_READ_BYTES))
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read(HOOK_ANSWER_READ_BYTES)
        except OSError:
            body = b""
        return int(exc.code), _decoded(body)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StepError(f"{method} {shown_url(url)} failed: {reason}") from None


def _decoded(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


def _answer_text(body: str) -> str:
    """The start of a hook's answer (its secrets hidden already), on one line."""
    text = one_line(body.strip())
    if len(text) > HOOK_ANSWER_CHARS:
        text = text[: HOOK_ANSWER_CHARS - 1] + "…"
    return text


STEPS: dict[str, Handler] = {
    "plug_in": _action(
        "plug_in", {"soc": "soc", "target_soc": "target_soc", "vehicle_id": "vehicle_id"}
    ),
    "present_id_tag": present_id_tag,
    "stop": _action("stop"),
    "unplug": _action("unplug"),
    "fault": _action("inject_fault", {"error_code": "error_code", "info": "info"}),
    "clear_fault": _action("clear_fault"),
    "reboot": _action("reboot"),
    "connect": _action("connect"),
    "disconnect": _action("disconnect"),
    "wait": wait,
    "expect": expect,
    "override": override,
    "network": network,
    "close": close,
    "clock_skew": clock_skew,
    "trigger": trigger,
    "traffic": traffic,
}
