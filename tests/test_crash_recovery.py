"""A worker killed with SIGKILL mid-transaction loses no transaction message and never
winds a meter register back."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call

from scripts.reachable import reachable
from simulator.core.clock import parse_iso
from simulator.csms import CentralSystem
from tests.pg_database import PG_URL, own_database
from tests.process import ManagePy

pytestmark = pytest.mark.slow

CHARGERS = ("DEMO-0001", "DEMO-0002")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request) -> Iterator[dict[str, str]]:
    """The worker's database: its own SQLite file, or a PostgreSQL database of its own (the
    scaled-out mode's store; dropped at the end)."""
    if request.param == "sqlite":
        yield {}
        return
    if not reachable(PG_URL):
        pytest.skip(f"no PostgreSQL at {PG_URL}")
    with own_database("chargesim_crash") as url:
        yield {"DATABASE_URL": url}


def frames(csms, action):
    return [
        e for e in csms.log if e.direction == "in" and e.message_type == 2 and e.action == action
    ]


def registers_in_order(csms, cp_id):
    """Every register value the CSMS saw from one charger, per connector, in arrival order."""
    seen: dict[int, list[float]] = {}
    open_tx: dict[int, int] = {}
    for entry in csms.log:
        if entry.cp_id != cp_id or entry.direction != "in" or entry.message_type != 2:
            continue
        p = entry.payload
        if entry.action == "StartTransaction":
            seen.setdefault(p["connectorId"], []).append(float(p["meterStart"]))
        elif entry.action == "MeterValues":
            for mv in p["meterValue"]:
                for sv in mv["sampledValue"]:
                    if sv.get("measurand") == "Energy.Active.Import.Register":
                        seen.setdefault(p["connectorId"], []).append(float(sv["value"]))
        elif entry.action == "StopTransaction":
            tx = csms.transactions.get(p["transactionId"])
            connector = tx.connector_id if tx is not None else open_tx.get(p["transactionId"], 0)
            seen.setdefault(connector, []).append(float(p["meterStop"]))
    return seen


def demo_args(csms: CentralSystem, chargers: int) -> tuple[str, ...]:
    """A worker of `chargers` demo chargers (no session of their own) pointed at `csms`."""
    return (
        "runsimulator",
        "--no-web",
        "--demo",
        "--demo-chargers",
        str(chargers),
        "--demo-share",
        "0",
        "--csms-url",
        csms.url,
    )


async def kill(worker: ManagePy, csms: CentralSystem, *cp_ids: str) -> None:
    """SIGKILL: no last checkpoint, no close frame."""
    worker.signal(signal.SIGKILL)
    assert worker.wait(10) == -signal.SIGKILL
    for cp_id in cp_ids:
        await csms.wait_disconnected(cp_id, timeout=10)


async def remote_start(csms: CentralSystem, cp_id: str) -> Any:
    """A session on connector 1 (the demo charger plugs a car in for it); its start."""
    started = await csms.call(cp_id, call.RemoteStartTransaction(id_tag="TAG", connector_id=1))
    assert started.status == "Accepted"
    return await csms.wait_for(cp_id, "StartTransaction", timeout=10)


async def triggered_sample(csms: CentralSystem, cp_id: str) -> Any:
    """A MeterValues of connector 1 asked for now (TriggerMessage); the frame."""
    mark = len(csms.log)
    answer = await csms.call(
        cp_id, call.TriggerMessage(requested_message="MeterValues", connector_id=1)
    )
    assert answer.status == "Accepted"
    return await csms.wait_for(cp_id, "MeterValues", after=mark, timeout=10)


async def test_sigkill_mid_transaction_loses_no_transaction_message(tmp_path, store):
    csms = CentralSystem()
    await csms.start(host="127.0.0.1", port=0)
    args = demo_args(csms, 2)
    env = {"CHARGESIM_TICK_SECONDS": "0.2", "CHARGESIM_RECONNECT_CAP_SECONDS": "1", **store}
    first = ManagePy(tmp_path, *args, env=env)
    second = None
    try:
        for cp_id in CHARGERS:
            await csms.wait_connected(cp_id, timeout=30)
            await csms.wait_for(cp_id, "StatusNotification", timeout=10)
            for key, value in (("MeterValueSampleInterval", "1"), ("MessageTimeout", "2")):
                result = await csms.call(cp_id, call.ChangeConfiguration(key=key, value=value))
                assert result.status == "Accepted"
            started = await csms.call(
                cp_id, call.RemoteStartTransaction(id_tag="TAG", connector_id=1)
            )
            assert started.status == "Accepted"
        for cp_id in CHARGERS:
            await csms.wait_for(cp_id, "StartTransaction", timeout=10)
            await csms.wait_for(cp_id, "MeterValues", timeout=10)
        # The CSMS stops answering: transaction messages stay unconfirmed in the outbox.
        csms.respond = False
        mark = len(csms.log)
        for cp_id in CHARGERS:
            await csms.wait_for(cp_id, "MeterValues", after=mark, timeout=10)
        await asyncio.sleep(1.5)
        unanswered = [
            e
            for e in csms.log[mark:]
            if e.direction == "in" and e.message_type == 2 and e.action == "MeterValues"
        ]
        assert unanswered
        killed_at = datetime.now(UTC)
        await kill(first, csms, *CHARGERS)

        csms.respond = True
        restart = len(csms.log)
        second = ManagePy(tmp_path, *args, env=env)
        for cp_id in CHARGERS:
            stop = await csms.wait_for(cp_id, "StopTransaction", after=restart, timeout=30)
            assert stop.payload["reason"] == "PowerLoss"
            # Dated when the dead worker was last known alive (its last checkpoint, which
            # made its last MeterValues durable), not when the new one started.
            last_sample = max(
                parse_iso(e.payload["meterValue"][-1]["timestamp"])
                for e in unanswered
                if e.cp_id == cp_id
            )
            assert last_sample <= parse_iso(stop.payload["timestamp"]) <= killed_at
        after = csms.log[restart:]
        # A restart is a reboot: BootNotification first.
        for cp_id in CHARGERS:
            own = [
                e.action
                for e in after
                if e.cp_id == cp_id and e.direction == "in" and e.message_type == 2
            ]
            assert own[0] == "BootNotification"
        # The unconfirmed MeterValues were delivered again (with their transaction id), before
        # the StopTransaction of the same transaction.
        for entry in unanswered:
            resent = [
                e
                for e in after
                if e.cp_id == entry.cp_id
                and e.action == "MeterValues"
                and e.message_type == 2
                and e.payload["meterValue"] == entry.payload["meterValue"]
            ]
            assert resent, f"{entry.cp_id}: unconfirmed MeterValues was lost"
            assert resent[0].payload["transactionId"] == entry.payload["transactionId"]
        # Every transaction the CSMS opened was stopped, and no register went back.
        for tx_id, tx in csms.transactions.items():
            assert tx.meter_stop is not None, f"transaction {tx_id} never stopped"
            assert tx.meter_start is not None, f"transaction {tx_id} never started"
            assert tx.meter_stop >= tx.meter_start
        for cp_id in CHARGERS:
            for connector, values in registers_in_order(csms, cp_id).items():
                assert values == sorted(values), f"{cp_id}#{connector} went back: {values}"
    finally:
        first.stop()
        if second is not None:
            second.stop()
        await csms.stop()


def energy_register(payload):
    for mv in payload["meterValue"]:
        for sv in mv["sampledValue"]:
            if sv.get("measurand", "Energy.Active.Import.Register") == (
                "Energy.Active.Import.Register"
            ):
                return float(sv["value"])
    raise AssertionError(f"no register in {payload}")


async def test_a_register_sent_in_a_triggered_sample_is_never_wound_back_by_a_kill(tmp_path, store):
    """A triggered MeterValues is not a transaction message, but the CSMS has the register
    it carries: a worker killed just after sending it must not stop the transaction
    (PowerLoss, on the restart) with a meterStop below that register."""
    csms = CentralSystem()
    await csms.start(host="127.0.0.1", port=0)
    cp_id = CHARGERS[0]
    args = demo_args(csms, 1)
    # Periodic checkpoints far apart (a setting a large fleet may use): between two of them
    # the register a triggered sample reads is the live one, above the stored one.
    env = {
        "CHARGESIM_TICK_SECONDS": "0.2",
        "CHARGESIM_RECONNECT_CAP_SECONDS": "1",
        "CHARGESIM_CHECKPOINT_SECONDS": "120",
        **store,
    }
    first = ManagePy(tmp_path, *args, env=env)
    second = None
    try:
        await csms.wait_connected(cp_id, timeout=30)
        await csms.wait_for(cp_id, "StatusNotification", timeout=10)
        result = await csms.call(
            cp_id, call.ChangeConfiguration(key="MeterValueSampleInterval", value="0")
        )
        assert result.status == "Accepted"
        start = await remote_start(csms, cp_id)
        meter_start = float(start.payload["meterStart"])
        # Charge until the live register is well past meterStart (what the StartTransaction's
        # batch stored), then ask for a sample of it.
        sent = meter_start
        for _ in range(40):
            await asyncio.sleep(0.5)
            sent = energy_register((await triggered_sample(csms, cp_id)).payload)
            if sent >= meter_start + 2:
                break
        assert sent >= meter_start + 2, "the vehicle did not charge"
        await kill(first, csms, cp_id)

        restart = len(csms.log)
        second = ManagePy(tmp_path, *args, env=env)
        stop = await csms.wait_for(cp_id, "StopTransaction", after=restart, timeout=30)
        assert stop.payload["reason"] == "PowerLoss"
        assert float(stop.payload["meterStop"]) >= sent, (
            f"meterStop {stop.payload['meterStop']} below the register {sent} sent before"
        )
    finally:
        first.stop()
        if second is not None:
            second.stop()
        await csms.stop()


async def test_a_killed_workers_stop_is_dated_when_its_register_was_true(tmp_path, store):
    """The event-driven meter moves a charging connector's register only at its events (a
    sample, a status change): between them the car draws power that no stored register
    holds. A worker killed 5 s after a sample sent a PowerLoss stop with that sample's
    register dated at the kill (the worker's last sign of life): too little energy for
    the time, as a CSMS bills it. The stop is dated when its register was true, and
    nothing the CSMS got goes back in register or time, up to the resumed session."""
    csms = CentralSystem()
    await csms.start(host="127.0.0.1", port=0)
    cp_id = CHARGERS[0]  # AC: the meter visits it only at its events
    args = demo_args(csms, 1)
    env = {"CHARGESIM_TICK_SECONDS": "0.2", "CHARGESIM_RECONNECT_CAP_SECONDS": "1", **store}
    first = ManagePy(tmp_path, *args, env=env)
    second = None
    try:
        await csms.wait_connected(cp_id, timeout=30)
        await csms.wait_for(cp_id, "StatusNotification", timeout=10)
        # No periodic or clock-aligned sample, no heartbeat: no meter event after the sample.
        for key, value in (
            ("MeterValueSampleInterval", "0"),
            ("ClockAlignedDataInterval", "0"),
            ("HeartbeatInterval", "3600"),
        ):
            result = await csms.call(cp_id, call.ChangeConfiguration(key=key, value=value))
            assert result.status == "Accepted"
        start = await remote_start(csms, cp_id)
        await asyncio.sleep(1)
        sample = await triggered_sample(csms, cp_id)
        sent = energy_register(sample.payload)
        assert sent > float(start.payload["meterStart"]), "the vehicle did not charge"
        await asyncio.sleep(5)  # charging on: nothing reads the register meanwhile
        await kill(first, csms, cp_id)

        restart = len(csms.log)
        second = ManagePy(tmp_path, *args, env=env)
        stop = await csms.wait_for(cp_id, "StopTransaction", after=restart, timeout=30)
        resumed = await csms.wait_for(cp_id, "StartTransaction", after=restart, timeout=30)
    finally:
        first.stop()
        if second is not None:
            second.stop()
        await csms.stop()
    assert stop.payload["reason"] == "PowerLoss"
    # Nothing goes back: the stop comes after the sample, in register and in time (both
    # read the host's clock, to the millisecond).
    meter_stop = float(stop.payload["meterStop"])
    stopped_at = parse_iso(stop.payload["timestamp"])
    sampled_at = parse_iso(sample.payload["meterValue"][-1]["timestamp"])
    assert meter_stop >= sent and stopped_at + timedelta(milliseconds=1) >= sampled_at
    # At the sample's power (the car at a low SoC on AC draws it steadily), the energy from
    # the sample to the stop's time is on the meter: at most the two figures' rounding to
    # whole Wh (1 each) is missing. Dated at the kill, 5 s of it (15 Wh at 11 kW) were.
    power_w = float(
        next(
            sv["value"]
            for sv in sample.payload["meterValue"][-1]["sampledValue"]
            if sv.get("measurand") == "Power.Active.Import"
        )
    )
    assert power_w > 0, "the vehicle did not charge"
    drawn_wh = power_w * (stopped_at - sampled_at).total_seconds() / 3600
    assert meter_stop - sent >= drawn_wh - 2, (
        f"meterStop {meter_stop} at {stopped_at}: {meter_stop - sent} Wh since the sample of "
        f"{sent} Wh at {sampled_at}, in which {drawn_wh:.1f} Wh were drawn at {power_w} W"
    )
    # The car charges on in a new session from that register, later.
    assert float(resumed.payload["meterStart"]) >= meter_stop
    assert parse_iso(resumed.payload["timestamp"]) >= stopped_at
