"""Charge-point rules through the OCPP 1.6 adapter, on a fake transport and a fake clock.

No socket and no CSMS: the transport answers at once (tests/toy_protocol.py's
FakeTransport), so each rule is checked on exactly the CALLs the core made.
"""

from __future__ import annotations

import asyncio

from simulator.core.charge_point import Charger, ChargerSpec
from simulator.core.evse import Evse
from simulator.core.link import BootState, CallFailed
from simulator.core.protocol import Payload
from simulator.ocpp16.messages import OCPP16
from tests.engine import COMPACT
from tests.toy_protocol import FakeClock, FakeTransport


def csms(boot: str = "Accepted", start_fails: bool = False):
    def respond(action: str, payload: Payload) -> Payload | CallFailed:
        if action == "BootNotification":
            return {"status": boot, "interval": 60, "currentTime": "2026-01-01T00:00:00Z"}
        if action == "Authorize":
            return {"idTagInfo": {"status": "Accepted"}}
        if action == "StartTransaction":
            if start_fails:
                return CallFailed("InternalError", "try again")
            return {"transactionId": 5, "idTagInfo": {"status": "Accepted"}}
        return {}

    return respond


def charger(clock: FakeClock, **config: str) -> Charger:
    return Charger(
        ChargerSpec("RULES-1"),
        [Evse(connector_id=1, max_power_w=22_000)],
        config,
        messages=OCPP16,
        clock=clock,
    )


def statuses(transport: FakeTransport) -> list[tuple[int, str]]:
    return [(p["connectorId"], p["status"]) for a, p in transport.sent if a == "StatusNotification"]


async def test_a_rejected_charger_sends_nothing_but_its_boot_notification():
    cp = charger(FakeClock())
    transport = FakeTransport(csms(boot="Rejected"))
    cp.attach(transport)
    booting = asyncio.ensure_future(cp.boot_sequence())
    await asyncio.sleep(0)  # the BootNotification is answered; the retry waits its interval
    try:
        assert cp.boot is BootState.REJECTED
        cp.plug_in(1, COMPACT, soc=20)  # a status change: not reported
        # Authorize is not sent either: the charger decides offline (unknown idTag).
        assert await cp.present_id_tag(1, "TAG") == "Invalid"
        cp.send_heartbeat()
    finally:
        booting.cancel()
    assert transport.actions() == ["BootNotification"]


async def test_after_accepted_the_current_statuses_go_out_then_every_change_in_order():
    cp = charger(FakeClock())
    transport = FakeTransport(csms())
    cp.attach(transport)
    cp.plug_in(1, COMPACT, soc=20)  # before the boot: only the current status counts
    await cp.boot_sequence()
    assert await cp.present_id_tag(1, "TAG") == "Accepted"
    cp.stop_transaction(1)
    cp.unplug(1)
    assert transport.actions()[:2] == ["BootNotification", "StatusNotification"]
    assert statuses(transport) == [
        (0, "Available"),
        (1, "Preparing"),
        (1, "Charging"),
        (1, "Finishing"),
        (1, "Available"),
    ]
    start = next(p for a, p in transport.sent if a == "StartTransaction")
    stop = next(p for a, p in transport.sent if a == "StopTransaction")
    assert (start["connectorId"], start["idTag"], start["meterStart"]) == (1, "TAG", 0)
    assert stop["transactionId"] == 5 and stop["reason"] == "Local"


async def test_a_failed_transaction_message_is_retried_per_attempts_and_interval_then_dropped():
    clock = FakeClock()
    cp = charger(clock, TransactionMessageAttempts="3", TransactionMessageRetryInterval="5")
    transport = FakeTransport(csms(start_fails=True))
    cp.attach(transport)
    await cp.boot_sequence()
    cp.plug_in(1, COMPACT, soc=20)
    cp.start_transaction(1, "TAG")

    def starts() -> int:
        return transport.actions().count("StartTransaction")

    assert starts() == 1
    clock.advance(4.9)
    assert starts() == 1  # the first retry waits 5 s × 1
    clock.advance(0.2)
    assert starts() == 2
    clock.advance(9.8)
    assert starts() == 2  # the second waits 5 s × 2
    clock.advance(0.3)
    assert starts() == 3
    clock.advance(3600)
    assert starts() == 3  # three attempts: dropped
    assert all(item.action != "StartTransaction" for item in cp.queue)
    # A status change was not held up behind the waiting transaction message.
    assert (1, "Charging") in statuses(transport)


async def test_a_stop_whose_start_was_never_confirmed_goes_out_with_transaction_id_minus_one():
    cp = charger(FakeClock(), TransactionMessageAttempts="1")
    transport = FakeTransport(csms(start_fails=True))
    cp.attach(transport)
    await cp.boot_sequence()
    cp.plug_in(1, COMPACT, soc=20)
    transport.hold = True
    cp.start_transaction(1, "TAG")
    cp.stop_transaction(1)
    while transport.held:
        transport.release()  # StartTransaction fails once and is dropped (1 attempt)
    stop = next(p for a, p in transport.sent if a == "StopTransaction")
    assert stop["transactionId"] == -1


def test_a_changed_websocket_ping_interval_is_passed_to_the_connection():
    cp = charger(FakeClock())
    transport = FakeTransport(csms())
    cp.attach(transport)
    assert cp.change_configuration("WebSocketPingInterval", "-1") == "Rejected"
    assert cp.change_configuration("HeartbeatInterval", "30") == "Accepted"
    assert transport.keepalive_changes == 0
    assert cp.change_configuration("WebSocketPingInterval", "15") == "Accepted"
    assert transport.keepalive_changes == 1


async def test_a_heartbeat_held_up_in_the_queue_is_not_queued_twice():
    """A Heartbeat falls due while the last one still waits behind a message that waits
    for its answer: one goes when the queue moves, not two back to back."""
    clock = FakeClock()
    cp = charger(clock, HeartbeatInterval="10")
    transport = FakeTransport(csms(), hold=True)
    cp.attach(transport)
    await cp.boot_sequence()  # its statuses go out one at a time, each held for its answer
    cp.send_heartbeat()
    clock.advance(10)
    cp.send_heartbeat()  # due again: the first has not even gone
    clock.advance(10)
    cp.send_heartbeat()
    while transport.held:
        transport.release()
    assert transport.actions().count("Heartbeat") == 1
    # Answered, the next one goes as usual.
    clock.advance(10)
    cp.send_heartbeat()
    while transport.held:
        transport.release()
    assert transport.actions().count("Heartbeat") == 2
