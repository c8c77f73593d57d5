"""Answer overrides: a charger answers the CSMS's CALLs of an action as a rule says, set by
the drive command `set_answer_override`, against the built-in CSMS over real sockets."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from simulator.contract import overrides
from simulator.core.answer_overrides import AnswerOverrides, Override
from simulator.core.charge_point import Charger
from simulator.core.evse import ConnectorStatus
from simulator.csms import CALLERROR, CALLRESULT, CentralSystem, LogEntry
from simulator.ocpp16.client import ChargePointClient
from simulator.runtime.commands import CommandServer, InvalidArgument
from simulator.runtime.store import Store
from tests import ocpp_schemas
from tests.engine import connected, runtime_charger

PK = 41


def command_server(charger: Charger) -> CommandServer:
    """The worker's real command code over a store that holds only this charger."""
    store = Store()
    store.add(charger)
    service = SimpleNamespace(store=store, connections={charger.id: None}, shard=0, shards=1)
    return CommandServer(service, layer=None)


async def send(csms: CentralSystem, cp_id: str, action: str, payload: dict[str, Any]) -> str:
    unique_id = uuid.uuid4().hex
    await csms.send_raw(cp_id, orjson.dumps([2, unique_id, action, payload]).decode())
    return unique_id


async def answer_to(csms: CentralSystem, cp_id: str, unique_id: str) -> LogEntry:
    return await csms.wait_for(cp_id, direction="in", unique_id=unique_id)


def answered(csms: CentralSystem, cp_id: str, unique_id: str) -> bool:
    return any(
        e.cp_id == cp_id and e.direction == "in" and e.unique_id == unique_id for e in csms.log
    )


def preparing(csms: CentralSystem, cp_id: str, connector_id: int) -> bool:
    return any(
        e.cp_id == cp_id
        and e.direction == "in"
        and e.action == "StatusNotification"
        and e.payload.get("connectorId") == connector_id
        and e.payload.get("status") == "Preparing"
        for e in csms.log
    )


def sent_at(csms: CentralSystem, unique_id: str) -> LogEntry:
    return next(e for e in csms.log if e.direction == "out" and e.unique_id == unique_id)


KINDS: dict[str, dict[str, Any]] = {
    "status": {"status": "Rejected"},
    "call_error": {"call_error": "NotSupported", "description": "not on this charger"},
    "delay": {"delay": 0.6},
    "no_answer": {"no_answer": True},
}


async def remote_start(csms: CentralSystem, cp_id: str, connector_id: int) -> tuple[str, str]:
    """A RemoteStartTransaction, then a ClearCache as a probe: CALLs are handled in order,
    so once the probe is answered the RemoteStart has been answered if it ever will be."""
    start = await send(
        csms, cp_id, "RemoteStartTransaction", {"idTag": "T1", "connectorId": connector_id}
    )
    probe = await send(csms, cp_id, "ClearCache", {})
    await answer_to(csms, cp_id, probe)
    return start, probe


def check_overridden(csms: CentralSystem, cp_id: str, kind: str, start: str) -> None:
    if kind == "no_answer":
        assert not answered(csms, cp_id, start)
        return
    answer = next(e for e in csms.log if e.direction == "in" and e.unique_id == start)
    if kind == "status":
        assert answer.message_type == CALLRESULT and answer.payload == {"status": "Rejected"}
    elif kind == "call_error":
        assert answer.message_type == CALLERROR
        assert answer.error_code == "NotSupported"
        assert answer.payload["errorDescription"] == "not on this charger"
    else:  # delay: the normal answer, late (by the CSMS's own record of both frames)
        assert answer.message_type == CALLRESULT and answer.payload == {"status": "Accepted"}
        late = (answer.at - sent_at(csms, start).at).total_seconds()
        assert late >= 0.6


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_next_rule_answers_one_call_then_the_charger_answers_normally(csms, kind):
    cp_id = f"AO-NEXT-{kind}"
    charger = runtime_charger(cp_id, csms.url, evses=3, db_id=PK)
    server = command_server(charger)
    async with connected(charger):
        rule = {"action": "RemoteStartTransaction", "mode": "next", **KINDS[kind]}
        text = await server.execute(PK, "set_answer_override", rule)
        assert "RemoteStartTransaction" in text
        start, _ = await remote_start(csms, cp_id, 1)
        check_overridden(csms, cp_id, kind, start)
        assert charger.impairments.answers.rules() == []  # used up
        again, _ = await remote_start(csms, cp_id, 2)
        answer = await answer_to(csms, cp_id, again)
        assert answer.message_type == CALLRESULT and answer.payload == {"status": "Accepted"}
        await csms.wait_for(
            cp_id,
            "StatusNotification",
            predicate=lambda e: (
                e.payload["connectorId"] == 2 and e.payload["status"] == "Preparing"
            ),
        )
        # Only a delayed answer lets the handler run: the others started nothing.
        assert preparing(csms, cp_id, 1) is (kind == "delay")
        expected = ConnectorStatus.PREPARING if kind == "delay" else ConnectorStatus.AVAILABLE
        assert charger.evse(1).status is expected


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_an_every_rule_answers_each_call_until_cleared(csms, kind):
    cp_id = f"AO-EVERY-{kind}"
    charger = runtime_charger(cp_id, csms.url, evses=3, db_id=PK)
    server = command_server(charger)
    async with connected(charger):
        rule = {"action": "RemoteStartTransaction", "mode": "every", **KINDS[kind]}
        await server.execute(PK, "set_answer_override", {"rule": rule})
        for connector_id in (1, 2):
            start, _ = await remote_start(csms, cp_id, connector_id)
            check_overridden(csms, cp_id, kind, start)
        text = await server.execute(PK, "set_answer_override", {"clear": True})
        assert text.startswith("1 answer override")
        start, _ = await remote_start(csms, cp_id, 3)
        answer = await answer_to(csms, cp_id, start)
        assert answer.payload == {"status": "Accepted"}
        await csms.wait_for(
            cp_id,
            "StatusNotification",
            predicate=lambda e: (
                e.payload["connectorId"] == 3 and e.payload["status"] == "Preparing"
            ),
        )
        for connector_id in (1, 2):
            assert preparing(csms, cp_id, connector_id) is (kind == "delay")


async def test_an_override_of_one_action_leaves_the_others_alone(csms):
    charger = runtime_charger("AO-OTHER", csms.url, evses=1, db_id=PK)
    server = command_server(charger)
    async with connected(charger):
        await server.execute(
            PK, "set_answer_override", {"action": "Reset", "mode": "every", "status": "Rejected"}
        )
        _, probe = await remote_start(csms, "AO-OTHER", 1)
        assert (await answer_to(csms, "AO-OTHER", probe)).payload == {"status": "Accepted"}
        reset = await send(csms, "AO-OTHER", "Reset", {"type": "Soft"})
        assert (await answer_to(csms, "AO-OTHER", reset)).payload == {"status": "Rejected"}
        assert charger.online  # a Rejected Reset does not reboot


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"action": "RemoteStartTransaction", "status": "Maybe"},
            "status 'Maybe' is not valid in a RemoteStartTransaction answer "
            "(one of Accepted, Rejected)",
        ),
        ({"action": "Heartbeat", "status": "Accepted"}, "is not a CALL the CSMS sends"),
        (
            {"action": "GetConfiguration", "status": "Accepted"},
            "the answer to GetConfiguration has no status",
        ),
        ({"action": "Reset", "call_error": "Oops"}, "not an OCPP 1.6 CALLERROR code"),
        (
            {"action": "Reset", "call_error": "InternalError", "description": "a\x00"},
            "description holds a NUL character (U+0000)",
        ),
        ({"action": "Reset", "delay": -1}, "delay must be within"),
        ({"action": "Reset", "no_answer": False}, "no_answer must be true"),
        ({"action": "Reset", "mode": "always", "no_answer": True}, "must be next or every"),
        ({"action": "Reset"}, "exactly one of status, call_error, delay, no_answer"),
        ({"action": "Reset", "status": "Rejected", "delay": 1}, "exactly one of"),
        ({"action": "Reset", "statsu": "Rejected"}, "unknown key(s) statsu"),
        ({"clear": "yes"}, "clear must be true"),
    ],
)
async def test_a_bad_rule_is_refused_with_a_clear_message(args, message):
    charger = runtime_charger("AO-BAD", "ws://127.0.0.1:9/", evses=1, db_id=PK)
    with pytest.raises(InvalidArgument) as refused:
        await command_server(charger).execute(PK, "set_answer_override", args)
    assert message in str(refused.value)
    assert not charger.impairments.answers


def test_next_rules_go_first_in_order_then_the_newest_every_rule_then_the_stored_ones():
    answers = AnswerOverrides()
    stored = overrides.check_rule({"action": "Reset", "mode": "every", "status": "Accepted"})
    answers.use_stored([Override.from_rule(stored)])
    answers.add({"action": "Reset", "mode": "every", "status": "Rejected"})
    answers.add({"action": "Reset", "mode": "next", "call_error": "InternalError"})
    answers.add({"action": "Reset", "mode": "next", "no_answer": True})
    picked = [answers.take("Reset") for _ in range(4)]
    assert [p.call_error if p else None for p in picked[:1]] == ["InternalError"]
    assert picked[1] is not None and picked[1].no_answer
    assert picked[2] is not None and picked[2].status == "Rejected"
    answers.clear()
    assert (answers.take("Reset") or Override("x", True)).status == "Accepted"  # stored stay
    assert answers.take("ClearCache") is None


def test_the_status_table_matches_the_ocpp_packages_answer_schemas():
    """ANSWER_STATUSES is written out (the contract imports no protocol library): it must
    be the `status` enum of each action's answer schema, and list every CSMS-sent CALL."""
    for action, statuses in overrides.ANSWER_STATUSES.items():
        assert (ocpp_schemas.answer_statuses(action) or ()) == statuses, action
        if statuses:  # {"status": X} is a whole answer
            assert ocpp_schemas.schema(f"{action}Response").get("required") == ["status"], action
    handled = {
        member._on_action
        for name in dir(ChargePointClient)
        if hasattr(member := getattr(ChargePointClient, name), "_on_action")
    }
    assert set(overrides.ANSWER_STATUSES) == handled


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"action": "RemoteStartTransaction", "status": "Maybe"}, "status"),
        ({"action": "Heartbeat", "status": "Accepted"}, "action"),
        ({"action": "Reset", "call_error": "Oops"}, "call_error"),
        ({"action": "Reset", "delay": -1}, "delay"),
        ({"action": "Reset", "mode": "always", "no_answer": True}, "mode"),
        ({"action": "Reset"}, None),  # no one field is wrong
    ],
)
async def test_a_bad_rule_names_its_field(args, field):
    """The API's 422 said `field: null` for a bad status (README: errors are named)."""
    charger = runtime_charger("AO-FIELD", "ws://127.0.0.1:9/", evses=1, db_id=PK)
    with pytest.raises(InvalidArgument) as refused:
        await command_server(charger).execute(PK, "set_answer_override", args)
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("mode", "said"),
    [("next", "answers the next Reset"), ("every", "answers every Reset")],
)
async def test_the_answer_says_which_calls_the_rule_answers(mode, said):
    """It said "answers the every RemoteStartTransaction"."""
    charger = runtime_charger("AO-SAID", "ws://127.0.0.1:9/", evses=1, db_id=PK)
    rule = {"action": "Reset", "mode": mode, "status": "Rejected"}
    text = await command_server(charger).execute(PK, "set_answer_override", rule)
    assert text == f"AO-SAID {said} with status Rejected"
