"""The stored message log: every frame and connection event, redacted, bounded, never in
the way of a checkpoint. Chargers run against the built-in CSMS over loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest
from channels.db import database_sync_to_async
from ocpp.v16 import call

from chargers.models import Charger, FrameLogEntry, FrameLogRow, LoggedFrame, OutboxMessage
from simulator.core.charge_point import BootState, LinkState
from simulator.core.drops import DROPPED
from simulator.runtime import frame_log
from simulator.runtime.frame_log import FrameLogPolicy
from simulator.runtime.lifecycle import RunOptions, Simulator
from simulator.runtime.persistence import Batch, Checkpointer
from tests.cast import make_charger
from tests.engine import COMPACT, boot_reports_answered, loaded, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "5ec2e7c5ec2e7c5ec2e7c5ec2e7c5ec2"  # 16 bytes in hex: a key the charger takes


def options(*ids: str, **policy: object) -> RunOptions:
    return RunOptions(
        tick_seconds=0.1,
        checkpoint_seconds=0.05,
        reconnect_cap=0.3,
        only_ids=list(ids),
        frame_log=FrameLogPolicy(**policy),  # type: ignore[arg-type]  # keyword arguments of the dataclass
    )


async def started(*ids: str, **policy: object) -> Simulator:
    service = Simulator(options(*ids, **policy))
    await service.start()
    for cp_id in ids:
        charger = loaded(service, cp_id)
        await wait_until(lambda c=charger: c.boot is BootState.ACCEPTED, message=f"{cp_id} boot")
    return service


@database_sync_to_async
def stored(cp_id: str) -> list[LoggedFrame]:
    """The charger's stored frames and events, a CALL's answer right after it."""
    rows = FrameLogEntry.objects.filter(charger__charge_point_id=cp_id).order_by("id")
    return [frame for row in rows for frame in row.frames()]


async def stored_until(cp_id: str, predicate, message: str, timeout: float = 10.0):
    """The charger's stored log once `predicate(rows)` holds (the writer is a thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rows = await stored(cp_id)
        if predicate(rows):
            return rows
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {message}; stored: {rows}")
        await asyncio.sleep(0.05)


async def test_every_frame_both_ways_is_stored_with_its_message_id_and_action(csms):
    await database_sync_to_async(make_charger)(
        "LOG-ALL", evses=1, csms_url=f"ws://user:pw@127.0.0.1:{csms.port}/ocpp"
    )
    service = await started("LOG-ALL")
    try:
        answer = await csms.call("LOG-ALL", call.GetConfiguration(key=["HeartbeatInterval"]))
        assert answer.configuration_key
        # Its boot's StatusNotifications answered first: the CSMS logs an answer it sends,
        # and one it sent as it closed the socket never reached the charger (a busy CI).
        await boot_reports_answered(loaded(service, "LOG-ALL"))
        await csms.disconnect("LOG-ALL", code=4000, reason="test says bye")
        await csms.wait_connected("LOG-ALL")
        await csms.wait_for("LOG-ALL", "StatusNotification", after=len(csms.log))
        # A round trip last: the charger has read every frame the CSMS sent before it.
        await csms.call("LOG-ALL", call.GetConfiguration(key=["HeartbeatInterval"]))
    finally:
        await service.stop()
    rows = await stored("LOG-ALL")
    frames = [r for r in rows if r.kind == "frame"]
    # Every frame the CSMS saw is in the charger's log, in the other direction, with the
    # same message id and action (an answer's action is its CALL's).
    seen = {
        ("out" if e.direction == "in" else "in", e.unique_id, e.action or "", e.raw)
        for e in csms.log
        if e.cp_id == "LOG-ALL"
    }
    assert seen
    assert seen <= {(r.direction, r.message_id, r.action, r.payload) for r in frames}
    boot = next(r for r in frames if r.action == "BootNotification" and r.direction == "out")
    answer_row = next(r for r in frames if r.message_id == boot.message_id and r.direction == "in")
    assert answer_row.action == "BootNotification"
    assert json.loads(answer_row.payload)[0] == 3
    assert answer_row.at >= boot.at
    assert all(r.size == len(r.payload) for r in frames)  # none was cut
    # A CALL and its answer share a row (the frames of a row: parts 0 and 1).
    assert answer_row.part == 1 and boot.part == 0
    # Connection events, with the close code the CSMS sent and no credentials in the URL.
    events = [(r.action, json.loads(r.payload)) for r in rows if r.kind == "connection"]
    names = [name for name, _detail in events]
    assert names[:1] == ["connected"]
    assert "closed" in names and names.count("connected") >= 2
    connected = events[0][1]
    assert connected["url"] == f"ws://127.0.0.1:{csms.port}/ocpp/LOG-ALL"
    assert connected["subprotocol"] == "ocpp1.6"
    closed = next(detail for name, detail in events if name == "closed")
    assert closed["code"] == 4000 and closed["reason"] == "test says bye"
    assert "reconnecting" in names[names.index("closed") :]
    assert not any("user" in r.payload or "pw@" in r.payload for r in rows if r.kind != "frame")


async def test_a_charger_that_cannot_connect_logs_each_failure_and_its_backoff():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await database_sync_to_async(make_charger)(
        "LOG-DOWN", evses=1, csms_url=f"ws://127.0.0.1:{port}/ocpp"
    )
    service = Simulator(options("LOG-DOWN"))
    await service.start()
    try:
        rows = await stored_until(
            "LOG-DOWN",
            lambda rows: sum(r.action == "connect_failed" for r in rows) >= 2,
            "two failed connection attempts",
        )
    finally:
        await service.stop()
    failure = json.loads(next(r for r in rows if r.action == "connect_failed").payload)
    assert failure["reason"] == "connection refused"
    assert failure["attempt"] == 1 and 0 < failure["retry_in_seconds"] <= 0.3
    assert all(r.kind == "connection" and r.direction == "" for r in rows)


async def test_an_authorization_key_the_csms_sets_is_never_stored(csms):
    await database_sync_to_async(make_charger)("LOG-KEY", evses=1, csms_url=csms.url)
    service = await started("LOG-KEY")
    try:
        result = await csms.call(
            "LOG-KEY", call.ChangeConfiguration(key="AuthorizationKey", value=SECRET)
        )
        assert result.status == "Accepted"
        rows = await stored_until(
            "LOG-KEY",
            lambda rows: any(
                r.action == "ChangeConfiguration" and r.direction == "in" for r in rows
            ),
            "the ChangeConfiguration frame",
        )
    finally:
        await service.stop()
    rows = await stored("LOG-KEY")
    change = next(r for r in rows if r.action == "ChangeConfiguration" and r.direction == "in")
    assert json.loads(change.payload)[3] == {"key": "AuthorizationKey", "value": "********"}
    assert not any(SECRET in r.payload for r in rows)


async def test_a_key_named_in_another_case_is_never_stored_either(csms):
    """QA: ChangeConfiguration(authorizationkey) was stored with its value in clear (the
    redaction matched the exact name), though the CSMS meant it as the key (which the
    charger now takes it for: keys are CiString50, compared in any case)."""
    await database_sync_to_async(make_charger)("LOG-KEY-LC", evses=1, csms_url=csms.url)
    service = await started("LOG-KEY-LC")
    try:
        result = await csms.call(
            "LOG-KEY-LC", call.ChangeConfiguration(key="authorizationkey", value=SECRET)
        )
        assert result.status == "Accepted"
        await stored_until(
            "LOG-KEY-LC",
            lambda rows: any(
                r.action == "ChangeConfiguration" and r.direction == "in" for r in rows
            ),
            "the ChangeConfiguration frame",
        )
    finally:
        await service.stop()
    rows = await stored("LOG-KEY-LC")
    change = next(r for r in rows if r.action == "ChangeConfiguration" and r.direction == "in")
    assert json.loads(change.payload)[3] == {"key": "authorizationkey", "value": "********"}
    assert not any(SECRET in r.payload for r in rows)


async def test_a_call_with_a_numeric_id_and_its_call_error_show_the_id_as_sent(csms):
    """The CALLERROR answering `[2, 123, ...]` echoes 123, but both frames were logged with
    no message id: the log could not pair them, nor show which call of the CSMS failed."""
    await database_sync_to_async(make_charger)("LOG-NUM", evses=1, csms_url=csms.url)
    service = await started("LOG-NUM")
    try:
        await csms.send_raw("LOG-NUM", '[2, 123, "Heartbeat", {}]')
        await csms.send_raw("LOG-NUM", '[2, 4.5e1, "Heartbeat", {')  # cut short
        rows = await stored_until(
            "LOG-NUM",
            lambda rows: sum(r.payload.startswith("[4,") for r in rows) == 2,
            "the two CALLERRORs",
        )
    finally:
        await service.stop()
    numbered = [
        (r.direction, r.message_id, r.action) for r in rows if r.message_id in {"123", "4.5e1"}
    ]
    assert numbered == [
        ("in", "123", "Heartbeat"),
        ("out", "123", "Heartbeat"),
        ("in", "4.5e1", ""),
        ("out", "4.5e1", ""),
    ]


async def test_a_huge_or_hostile_frame_is_stored_cut_and_the_checkpoints_go_on(csms):
    await database_sync_to_async(make_charger)("LOG-BIG", evses=1, csms_url=csms.url)
    service = await started("LOG-BIG", payload_chars=300)
    try:
        huge = json.dumps([2, "big-1", "DataTransfer", {"vendorId": "X", "data": "é" * 5000}])
        await csms.send_raw("LOG-BIG", huge)
        await csms.wait_for("LOG-BIG", unique_id="big-1")
        await csms.send_raw("LOG-BIG", "not json \x00 with a NUL")
        long_id = "i" * 500
        await csms.send_raw("LOG-BIG", json.dumps([2, long_id, "Heartbeat\x00", {}]))
        await csms.wait_for("LOG-BIG", unique_id=long_id)
        # The log came through and so did everything after it: a transaction is stored.
        charger = loaded(service, "LOG-BIG")
        await charger.present_id_tag(1, "TAG-1")
        charger.plug_in(1, COMPACT)
        await csms.wait_for("LOG-BIG", "StartTransaction", direction="out")
        rows = await stored_until(
            "LOG-BIG",
            lambda rows: any(r.action == "StartTransaction" and r.direction == "in" for r in rows),
            "the StartTransaction answer",
        )
    finally:
        await service.stop()
    big = next(r for r in rows if r.message_id == "big-1" and r.direction == "in")
    assert big.size == len(huge) and len(big.payload) == 300
    assert big.payload == huge[:300]
    nul = next(r for r in rows if r.payload.startswith("not json"))
    assert "\x00" not in nul.payload and nul.payload == "not json \ufffd with a NUL"
    odd = next(r for r in rows if r.message_id.startswith("iii"))
    assert len(odd.message_id) == frame_log.NAME_CHARS
    assert odd.action == "Heartbeat\ufffd"
    assert await database_sync_to_async(
        Charger.objects.filter(charge_point_id="LOG-BIG", transactions__isnull=False).exists
    )()


async def test_nothing_is_stored_when_the_log_is_turned_off(csms):
    await database_sync_to_async(make_charger)("LOG-OFF", evses=1, csms_url=csms.url)
    service = await started("LOG-OFF", enabled=False)
    try:
        await csms.call("LOG-OFF", call.GetConfiguration(key=["HeartbeatInterval"]))
        await service.checkpoint()
    finally:
        await service.stop()
    assert await stored("LOG-OFF") == []


def test_the_settings_choose_the_policy(settings):
    settings.CHARGESIM_MESSAGE_LOG_STORE = False
    settings.CHARGESIM_MESSAGE_LOG_MAX_ROWS = 5_000
    settings.CHARGESIM_MESSAGE_LOG_MAX_DAYS = 0.5
    settings.CHARGESIM_MESSAGE_LOG_PAYLOAD_CHARS = 1_000
    policy = RunOptions.from_settings().frame_log
    assert policy == FrameLogPolicy(
        enabled=False, max_rows=5_000, max_age_seconds=43_200.0, payload_chars=1_000
    )


def _rows(pk: int, ats: list[float]) -> list[FrameLogRow]:
    return [
        (pk, at, "frame", "out", f"m{n}", "Heartbeat", 2, "[]", None, None, "")
        for n, at in enumerate(ats)
    ]


def test_retention_keeps_the_newest_rows_and_nothing_older_than_its_age():
    charger = make_charger("LOG-RET", evses=1)
    FrameLogEntry.objects.add(_rows(charger.pk, [1000.0 + n for n in range(50)]))
    # By count: the newest 30 stay, deleted in steps of at most 8.
    steps = []
    while deleted := FrameLogEntry.objects.prune(max_rows=30, before=0, limit=8):
        steps.append(deleted)
    assert steps == [8, 8, 4]
    ats = list(FrameLogEntry.objects.order_by("at").values_list("at", flat=True))
    assert ats == [1020.0 + n for n in range(30)]
    # By age: everything logged before 1040 goes, the rest stays.
    policy = FrameLogPolicy(max_rows=1_000, max_age_seconds=100.0, prune_batch=7)
    while frame_log.prune(policy, now=1140.0):
        pass
    ats = list(FrameLogEntry.objects.order_by("at").values_list("at", flat=True))
    assert ats == [1040.0 + n for n in range(10)]
    assert frame_log.prune(policy, now=1140.0) == 0


async def test_the_running_worker_prunes_its_log_to_the_bound(csms):
    await database_sync_to_async(make_charger)("LOG-CAP", evses=1, csms_url=csms.url)
    service = await started("LOG-CAP", max_rows=6, prune_seconds=0.01)
    rows = database_sync_to_async(FrameLogEntry.objects.count)
    try:
        # What the boot sends (the firmware's startup, durable, then the statuses) out first:
        # the GetConfiguration exchanges below are then the newest entries.
        charger = loaded(service, "LOG-CAP")
        await wait_until(
            lambda: not charger.queue and charger.outbox.in_flight is None,
            message="the boot's messages answered",
        )
        for _ in range(10):
            await csms.call("LOG-CAP", call.GetConfiguration(key=["HeartbeatInterval"]))
        last = [e for e in csms.log if e.cp_id == "LOG-CAP" and e.action == "GetConfiguration"][-1]
        frames = await stored_until(
            "LOG-CAP",
            lambda frames: frames and frames[-1].message_id == last.unique_id,
            "the newest frame stored",
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while await rows() > 6:  # pruned in the writer thread, between batches
            assert loop.time() < deadline, "the log was not pruned to 6 rows"
            await asyncio.sleep(0.05)
        frames = await stored("LOG-CAP")
    finally:
        await service.stop()
    # 10 GetConfiguration exchanges, the boot and the statuses: more than 6 rows were
    # written, and the newest 6 are kept (each a CALL and its answer).
    assert len(frames) == 12
    assert [(f.action, f.direction) for f in frames[-2:]] == [
        ("GetConfiguration", "in"),
        ("GetConfiguration", "out"),
    ]
    assert frames[-1].message_id == last.unique_id


def test_entries_the_database_refuses_are_dropped_and_the_checkpoint_is_saved(caplog):
    charger = make_charger("LOG-BAD", evses=1)
    batch = Batch(
        {},
        [],
        [(charger.pk, 1, "MeterValues", {"connectorId": 1}, "")],
        [],
        [],
        # A lone surrogate cannot be encoded for the database (nothing from a socket has
        # one; this stands for any entry the database would refuse).
        frames=[(charger.pk, 1.0, "frame", "in", "x", "Heartbeat", 3, "[\ud800]")],
    )
    unsaved = DROPPED["message_log_unsaved"]
    with caplog.at_level(logging.WARNING):
        Checkpointer.write(batch)
    assert OutboxMessage.objects.filter(charger=charger).count() == 1
    assert not FrameLogEntry.objects.exists()
    assert "message log: 1 entries not stored" in caplog.text
    assert DROPPED["message_log_unsaved"] - unsaved == 1  # and the metric says so


def test_entries_of_a_charger_deleted_meanwhile_do_not_fail_the_batch():
    charger = make_charger("LOG-GONE", evses=1)
    other = make_charger("LOG-STAYS", evses=1)
    gone = charger.pk
    charger.delete()
    batch = Batch(
        {},
        [],
        [(other.pk, 1, "MeterValues", {"connectorId": 1}, "")],
        [],
        [],
        frames=[
            (gone, 1.0, "frame", "out", "a", "Heartbeat", 3, "[2]"),
            (other.pk, 2.0, "frame", "out", "b", "Heartbeat", 3, "[2]"),
        ],
    )
    Checkpointer.write(batch)
    assert OutboxMessage.objects.filter(charger=other).count() == 1
    assert list(FrameLogEntry.objects.filter(charger=other).values_list("message_id", flat=True))
    assert FrameLogEntry.objects.count() == 2  # the orphan is pruned with the old rows


def test_a_charger_deleted_later_takes_its_log_with_it():
    charger = make_charger("LOG-DEL", evses=1)
    FrameLogEntry.objects.add(_rows(charger.pk, [1.0, 2.0]))
    charger.delete()
    assert not FrameLogEntry.objects.exists()


def test_only_chargers_from_the_database_are_logged():
    checkpointer = Checkpointer()
    charger = make_charger("LOG-LINK", evses=1)
    from simulator.runtime.persistence import build_charger

    runtime = build_charger(Charger.objects.get(pk=charger.pk), {}, checkpointer)
    assert runtime.link is LinkState.OFFLINE
    checkpointer.on_frame(runtime, "out", "[2]", "id", "Heartbeat")
    runtime.spec.db_id = None
    checkpointer.on_frame(runtime, "out", "[2]", "id2", "Heartbeat")
    batch = checkpointer.take()
    assert [f[4] for f in batch.frames] == ["id"]


def test_a_call_and_its_answer_share_a_row_and_nothing_else_is_paired():
    def entry(direction: str, message_id: str, text: str, pk: int = 1, at: float = 1.0):
        return (pk, at, "frame", direction, message_id, "X", len(text), text)

    rows = frame_log.rows(
        [
            entry("out", "1", '[2,"1","Heartbeat",{}]'),
            entry("in", "1", '[2,"1","Reset",{"type":"Soft"}]'),  # the CSMS's own id 1
            entry("out", "1", '[3,"1",{"status":"Accepted"}]', at=2.0),  # answers Reset
            entry("in", "1", '[3,"1",{"currentTime":"x"}]', at=3.0),  # answers Heartbeat
            entry("out", "2", '[2,"2","Authorize",{}]', pk=2),
            entry("in", "2", '[4,"2","InternalError","",{}]', pk=2, at=4.0),  # a CALLERROR
            entry("in", "9", '[3,"9",{}]'),  # answers a CALL of an earlier batch
            entry("out", "3", '[ 2,"3","Heartbeat",{}]'),  # written another way
            entry("in", "3", '[3,"3",{}]'),
            (1, 5.0, "connection", "", "", "closed", 2, "{}"),
        ],
        65_536,
    )
    assert [(r[3], r[4], r[7][:3], r[8], r[10][:3]) for r in rows] == [
        ("out", "1", "[2,", 3.0, "[3,"),
        ("in", "1", "[2,", 2.0, "[3,"),
        ("out", "2", "[2,", 4.0, "[4,"),
        ("in", "9", "[3,", None, ""),
        ("out", "3", "[ 2", None, ""),
        ("in", "3", "[3,", None, ""),
        ("", "", "{}", None, ""),
    ]


def _from_csms(text: str) -> frame_log.Pending:
    """A frame from the CSMS as the checkpointer records it (its id and action as found)."""
    _call, message_id, action = json.loads(text)[:3]
    return (1, 1.0, "frame", "in", message_id, action, len(text), text)


def test_a_url_password_is_not_stored_and_other_at_signs_are_kept():
    location = '[2,"1","UpdateFirmware",{"location":"ftp://fw:pa55@10.0.0.1/a.bin"}]'
    tag = '[2,"2","Authorize",{"idTag":"a@b"}]'
    stored_rows = frame_log.rows([_from_csms(location), _from_csms(tag)], 65_536)
    assert [row[7] for row in stored_rows] == [
        '[2,"1","UpdateFirmware",{"location":"ftp://fw:********@10.0.0.1/a.bin"}]',
        tag,
    ]
    assert stored_rows[0][6] == len(stored_rows[0][7])  # the size stored is the redacted one


def test_a_secret_spelled_with_json_escapes_is_not_stored():
    key = '[2,"1","ChangeConfiguration",{"key":"\\u0041uthorizationKey","value":"s3cret"}]'
    url = '[2,"2","UpdateFirmware",{"location":"ftp://fw:s3cret\\u0040host/a.bin"}]'
    stored_rows = frame_log.rows([_from_csms(key), _from_csms(url)], 65_536)
    assert len(stored_rows) == 2
    assert all("s3cret" not in row[7] for row in stored_rows)
