"""The charge point against the built-in CSMS over real loopback WebSockets."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from ocpp.v16 import call

from simulator import contract
from simulator.core.charge_point import ActionError, BootState, Charger, LinkState, Listener
from simulator.core.evse import ConnectorStatus
from simulator.runtime.meter_engine import MeterEngine
from tests.engine import COMPACT, boot_reports_answered, connected, runtime_charger, wait_until


def actions(csms, cp_id, direction="in"):
    return [
        e.action
        for e in csms.log
        if e.cp_id == cp_id and e.direction == direction and e.message_type == 2
    ]


def statuses(csms, cp_id):
    return [
        (e.payload["connectorId"], e.payload["status"])
        for e in csms.log
        if e.cp_id == cp_id and e.direction == "in" and e.action == "StatusNotification"
    ]


async def test_it_boots_then_reports_connector_0_and_every_connector(csms):
    charger = runtime_charger("CP-BOOT", csms.url, evses=2)
    async with connected(charger):
        await wait_until(lambda: len(statuses(csms, "CP-BOOT")) == 3, message="3 statuses")
    assert actions(csms, "CP-BOOT")[0] == "BootNotification"
    assert statuses(csms, "CP-BOOT") == [(0, "Available"), (1, "Available"), (2, "Available")]
    assert charger.config["HeartbeatInterval"] == "300"
    boot = next(e for e in csms.log if e.action == "BootNotification" and e.direction == "in")
    assert boot.payload["chargePointVendor"] == "ChargeSim"


async def test_boot_pending_sends_nothing_else_until_accepted(csms):
    csms.boot_status = "Pending"
    csms.boot_interval = 1
    charger = runtime_charger("CP-PEND", csms.url, evses=1)
    async with connected(charger, booted=False):
        await wait_until(
            lambda: actions(csms, "CP-PEND").count("BootNotification") >= 2,
            message="a second BootNotification after the interval",
        )
        assert set(actions(csms, "CP-PEND")) == {"BootNotification"}
        assert charger.boot is BootState.PENDING
        # Remote start is not allowed while Pending.
        result = await csms.call("CP-PEND", call.RemoteStartTransaction(id_tag="T1"))
        assert result.status == "Rejected"
        csms.boot_status = "Accepted"
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="Accepted")
        await wait_until(lambda: len(statuses(csms, "CP-PEND")) == 2, message="statuses")
    sent = actions(csms, "CP-PEND")
    first_other = next(i for i, a in enumerate(sent) if a != "BootNotification")
    assert all(a == "BootNotification" for a in sent[:first_other])


async def test_a_triggered_boot_accepted_while_pending_reports_the_statuses_at_once(csms):
    # The usual end of provisioning a Pending charger: the CSMS configures it, then asks
    # for a BootNotification (TriggerMessage) and accepts that one. The charger is then
    # registered and reports its statuses (1.6 section 4.2), not once the Pending interval
    # it was waiting out runs out (an hour here; it sent nothing until then).
    csms.boot_status, csms.boot_interval = "Pending", 3600
    charger = runtime_charger("CP-PTRG", csms.url, evses=1)
    async with connected(charger, booted=False):
        await wait_until(lambda: charger.boot is BootState.PENDING, message="Pending")
        csms.boot_status = "Accepted"
        answer = await csms.call(
            "CP-PTRG", call.TriggerMessage(requested_message="BootNotification")
        )
        assert answer.status == "Accepted"
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="Accepted")
        await wait_until(lambda: len(statuses(csms, "CP-PTRG")) == 2, message="statuses")
    assert statuses(csms, "CP-PTRG") == [(0, "Available"), (1, "Available")]
    assert actions(csms, "CP-PTRG").count("BootNotification") == 2


async def test_a_triggered_boot_that_fails_while_accepted_changes_nothing(csms):
    # A CSMS that does not expect a BootNotification from a registered charger may answer
    # the triggered one with a CALLERROR (or not at all). The charger is still Accepted:
    # it must not run its boot sequence again (a StatusNotification for every connector).
    charger = runtime_charger("CP-TBF", csms.url, evses=2)
    async with connected(charger):
        await wait_until(lambda: len(statuses(csms, "CP-TBF")) == 3, message="3 statuses")
        await boot_reports_answered(charger)
        csms.fail_actions = {"BootNotification": "InternalError"}
        answer = await csms.call(
            "CP-TBF", call.TriggerMessage(requested_message="BootNotification")
        )
        assert answer.status == "Accepted"
        # Its failure sets the wait before another BootNotification (the boot's backoff);
        # whatever the failure then queued goes before this Heartbeat.
        await wait_until(lambda: charger.next_boot_at > 0, message="the triggered boot failed")
        await csms.call("CP-TBF", call.TriggerMessage(requested_message="Heartbeat"))
        await wait_until(lambda: "Heartbeat" in actions(csms, "CP-TBF"), message="Heartbeat")
        assert charger.boot is BootState.ACCEPTED
    assert len(statuses(csms, "CP-TBF")) == 3


async def test_a_triggered_boot_cut_off_by_a_close_is_no_error(csms, caplog):
    # A CSMS that asks for a BootNotification and closes the connection before answering
    # it (a CSMS restarting, say): the boot went unanswered on a link now gone, as any
    # triggered message may; no error and traceback in the log. The charger stays
    # registered and comes back as a reconnect does.
    caplog.set_level(logging.INFO)
    charger = runtime_charger("CP-TBX", csms.url, evses=1)
    async with connected(charger):
        await boot_reports_answered(charger)
        csms.respond = False
        answer = await csms.call(
            "CP-TBX", call.TriggerMessage(requested_message="BootNotification")
        )
        assert answer.status == "Accepted"
        await wait_until(lambda: csms.counts["BootNotification"] == 2, message="the boot")
        await csms.disconnect("CP-TBX")
        csms.respond = True
        await wait_until(
            lambda: csms.connects["CP-TBX"] == 2 and charger.link is LinkState.ONLINE,
            message="back online",
        )
        await boot_reports_answered(charger)
    assert charger.boot is BootState.ACCEPTED
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_one_boot_sequence_after_a_reconnect_while_pending(csms):
    # A triggered boot answered Pending starts a boot sequence; the CSMS then closes the
    # connection, and the new one runs its own. When the old one ended, it marked the
    # charger as not booting while the new one still was: the next triggered boot
    # answered Pending started a second sequence beside it, and once Accepted the charger
    # sent two BootNotifications at once and every status twice.
    charger = runtime_charger("CP-1SEQ", csms.url, evses=1)
    async with connected(charger):
        await wait_until(lambda: len(statuses(csms, "CP-1SEQ")) == 2, message="2 statuses")
        await boot_reports_answered(charger)
        csms.boot_status, csms.boot_interval = "Pending", 1
        trigger = call.TriggerMessage(requested_message="BootNotification")
        await csms.call("CP-1SEQ", trigger)
        await wait_until(lambda: charger.boot is BootState.PENDING, message="Pending")
        await csms.disconnect("CP-1SEQ")
        # The new connection's sequence boots once the interval has passed (Pending).
        await wait_until(lambda: csms.counts["BootNotification"] == 3, message="its boot")
        await wait_until(lambda: not charger.boot_unanswered, message="answered")
        await csms.call("CP-1SEQ", trigger)  # Pending again: no second sequence
        await wait_until(lambda: csms.counts["BootNotification"] == 4, message="triggered")
        csms.boot_status = "Accepted"
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="Accepted")
        await wait_until(lambda: len(statuses(csms, "CP-1SEQ")) >= 4, message="statuses")
        # Whatever a second sequence would send goes before this Heartbeat.
        await csms.call("CP-1SEQ", call.TriggerMessage(requested_message="Heartbeat"))
        await wait_until(lambda: "Heartbeat" in actions(csms, "CP-1SEQ"), message="Heartbeat")
    assert csms.counts["BootNotification"] == 5
    assert statuses(csms, "CP-1SEQ") == [(0, "Available"), (1, "Available")] * 2


async def test_boot_rejected_sends_and_answers_nothing(csms):
    csms.boot_status = "Rejected"
    csms.boot_interval = 60
    charger = runtime_charger("CP-REJ", csms.url, evses=1)
    async with connected(charger, booted=False):
        await wait_until(lambda: charger.boot is BootState.REJECTED, message="Rejected")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(csms.call("CP-REJ", call.GetConfiguration()), 0.5)
        await asyncio.sleep(0.2)
    assert actions(csms, "CP-REJ") == ["BootNotification"]


@pytest.mark.parametrize("status", ["Pending", "Rejected"])
async def test_a_reconnect_does_not_cut_short_the_interval_of_a_boot_not_accepted(csms, status):
    # The interval of a BootNotification not Accepted is the minimum wait before the next
    # one (1.6 section 4.2): a CSMS that closes the connection of a charger it answered
    # Pending or Rejected must not get a BootNotification as soon as it reconnects.
    csms.boot_status, csms.boot_interval = status, 60
    charger = runtime_charger("CP-REJC", csms.url, evses=1)
    async with connected(charger, booted=False):
        await wait_until(lambda: charger.boot is BootState(status), message=status)
        await csms.disconnect("CP-REJC")
        await wait_until(lambda: charger.link is not LinkState.ONLINE, message="offline")
        await csms.wait_connected("CP-REJC")
        await wait_until(lambda: charger.link is LinkState.ONLINE, message="online again")
        await asyncio.sleep(0.3)
    assert actions(csms, "CP-REJC") == ["BootNotification"]


async def test_authorize_invalid_starts_no_transaction(csms):
    csms.authorize = {"BAD": "Invalid"}
    charger = runtime_charger("CP-AUTH", csms.url, evses=1)
    async with connected(charger):
        charger.plug_in(1, COMPACT, soc=30)
        assert await charger.present_id_tag(1, "BAD") == "Invalid"
        await asyncio.sleep(0.1)
    assert "Authorize" in actions(csms, "CP-AUTH")
    assert "StartTransaction" not in actions(csms, "CP-AUTH")
    assert charger.evse(1).status is ConnectorStatus.PREPARING


async def test_remote_start_to_unplug_follows_the_status_sequence(csms):
    charger = runtime_charger("CP-RS", csms.url, evses=2)
    charger.config["MeterValueSampleInterval"] = "1"
    engine = MeterEngine([charger], tick_seconds=0.1)
    async with connected(charger):
        ticking = asyncio.create_task(engine.run())
        try:
            answer = await csms.call(
                "CP-RS", call.RemoteStartTransaction(id_tag="T1", connector_id=1)
            )
            assert answer.status == "Accepted"
            await wait_until(
                lambda: charger.evse(1).status is ConnectorStatus.PREPARING, message="Preparing"
            )
            charger.plug_in(1, COMPACT, soc=40)
            start = await csms.wait_for("CP-RS", "StartTransaction")
            assert start.payload["meterStart"] == 0
            await wait_until(
                lambda: charger.evse(1).transaction_id is not None, message="StartTransaction.conf"
            )
            tx_id = charger.evse(1).transaction_id
            meter = await csms.wait_for("CP-RS", "MeterValues", timeout=5)
            assert meter.payload["transactionId"] == tx_id
            measurands = {sv["measurand"] for sv in meter.payload["meterValue"][0]["sampledValue"]}
            assert {"Energy.Active.Import.Register", "Power.Active.Import", "SoC"} <= measurands
            assert charger.evse(1).power_w == pytest.approx(11_000, rel=0.01)
            answer = await csms.call("CP-RS", call.RemoteStopTransaction(transaction_id=tx_id))
            assert answer.status == "Accepted"
            stop = await csms.wait_for("CP-RS", "StopTransaction")
            assert stop.payload["transactionId"] == tx_id
            assert stop.payload["reason"] == "Remote"
            assert stop.payload["meterStop"] >= start.payload["meterStart"]
            assert charger.evse(1).status is ConnectorStatus.FINISHING
            charger.unplug(1)
            await wait_until(
                lambda: statuses(csms, "CP-RS")[-1] == (1, "Available"),
                message="Available after unplug",
            )
        finally:
            ticking.cancel()
    sequence = [s for c, s in statuses(csms, "CP-RS") if c == 1]
    assert sequence == ["Available", "Preparing", "Charging", "Finishing", "Available"]
    tx = csms.transactions[tx_id]
    assert tx.meter_stop >= tx.meter_start


async def test_remote_start_on_connector_0_is_rejected(csms):
    # connectorId SHALL be > 0 (1.6 section 6.33): 0 names no connector to start on, it
    # does not mean "any connector" as an absent connectorId does.
    charger = runtime_charger("CP-RS0", csms.url, evses=2)
    async with connected(charger):
        answer = await csms.call("CP-RS0", call.RemoteStartTransaction(id_tag="T1", connector_id=0))
        await asyncio.sleep(0.1)
    assert answer.status == "Rejected"
    assert not charger.pending_authorizations and not charger.transactions
    assert [charger.evse(n).status for n in (1, 2)] == [ConnectorStatus.AVAILABLE] * 2


async def test_remote_stop_of_an_unknown_transaction_is_rejected(csms):
    charger = runtime_charger("CP-RSX", csms.url, evses=1)
    async with connected(charger):
        answer = await csms.call("CP-RSX", call.RemoteStopTransaction(transaction_id=999))
    assert answer.status == "Rejected"


async def test_simulated_ev_plugs_in_on_remote_start_and_leaves_after_stop(csms):
    charger = runtime_charger("CP-SIM", csms.url, evses=1, simulate_ev_on_remote_start=True)
    async with connected(charger):
        await csms.call("CP-SIM", call.RemoteStartTransaction(id_tag="T9", connector_id=1))
        await csms.wait_for("CP-SIM", "StartTransaction")
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="tx id")
        assert charger.evse(1).battery is not None
        await csms.call(
            "CP-SIM", call.RemoteStopTransaction(transaction_id=charger.evse(1).transaction_id)
        )
        await wait_until(
            lambda: charger.evse(1).status is ConnectorStatus.AVAILABLE,
            timeout=8,
            message="the simulated driver to unplug",
        )


async def test_a_trigger_before_the_boot_is_answered_is_rejected_and_nothing_is_sent(csms):
    """A TriggerMessage while the BootNotification has no answer was Accepted, then the
    message dropped when the boot timed out: Accepted promises it will be sent."""
    csms.respond = False  # the BootNotification is never answered
    charger = runtime_charger("CP-TRIG-NB", csms.url, evses=1, config={"MessageTimeout": "1"})
    async with connected(charger, booted=False):
        await csms.wait_for("CP-TRIG-NB", "BootNotification", timeout=3)
        early = await csms.call("CP-TRIG-NB", call.TriggerMessage(requested_message="Heartbeat"))
        await wait_until(lambda: charger.next_boot_at > 0, message="the boot to time out")
        late = await csms.call(
            "CP-TRIG-NB", call.TriggerMessage(requested_message="StatusNotification")
        )
    assert (early.status, late.status) == ("Rejected", "Rejected")
    assert actions(csms, "CP-TRIG-NB") == ["BootNotification"]


async def test_get_configuration_lists_unknown_keys_and_hides_the_authorization_key(csms):
    charger = runtime_charger("CP-GC", csms.url, evses=1, authorization_key="secret-1")
    async with connected(charger):
        result = await csms.call(
            "CP-GC",
            call.GetConfiguration(key=["HeartbeatInterval", "NoSuchKey", "AuthorizationKey"]),
        )
        everything = await csms.call("CP-GC", call.GetConfiguration())
    assert result.unknown_key == ["NoSuchKey"]
    by_key = {item["key"]: item for item in result.configuration_key}
    assert by_key["HeartbeatInterval"]["value"] == "300"
    assert "value" not in by_key["AuthorizationKey"]
    assert "secret-1" not in str(everything)
    assert {"MeterValueSampleInterval", "NumberOfConnectors"} <= {
        item["key"] for item in everything.configuration_key
    }


async def test_get_configuration_answers_a_key_named_twice_once(csms):
    charger = runtime_charger("CP-GC2", csms.url, evses=1)
    async with connected(charger):
        result = await csms.call(
            "CP-GC2",
            call.GetConfiguration(
                key=["HeartbeatInterval", "NoSuchKey", "HeartbeatInterval", "NoSuchKey"]
            ),
        )
    assert [item["key"] for item in result.configuration_key] == ["HeartbeatInterval"]
    assert result.unknown_key == ["NoSuchKey"]


async def test_get_configuration_naming_more_keys_than_its_maximum_is_refused(csms):
    """1.6 (5.8) lets a charger limit the keys one GetConfiguration names to
    GetConfigurationMaxKeys: more is a field occurring more often than allowed. Naming a
    key twice does not count it twice (it is answered once)."""
    limit = {"GetConfigurationMaxKeys": "3"}
    charger = runtime_charger("CP-GCMAX", csms.url, evses=1, config=limit)
    four = ["HeartbeatInterval", "MeterValueSampleInterval", "ConnectionTimeOut", "NoSuchKey"]
    async with connected(charger):
        await csms.send_raw(
            "CP-GCMAX", json.dumps([2, "too-many", "GetConfiguration", {"key": four}])
        )
        refused = await csms.wait_for("CP-GCMAX", unique_id="too-many", timeout=3)
        within = await csms.call("CP-GCMAX", call.GetConfiguration(key=four[:3] + four[:2]))
    assert refused.message_type == 4
    assert refused.error_code == "OccurenceConstraintViolation"
    assert "GetConfigurationMaxKeys" in refused.payload["errorDescription"]
    assert [item["key"] for item in within.configuration_key] == four[:3]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("MeterValueSampleInterval", "15", "Accepted"),
        ("MeterValueSampleInterval", "fifteen", "Rejected"),
        ("NumberOfConnectors", "4", "Rejected"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Temperature", "Rejected"),
        ("NoSuchKey", "1", "NotSupported"),
        ("ConnectorPhaseRotation", "0.RST,1.TSR", "Accepted"),
        # Not a phase rotation (1.6 section 9.1: NotApplicable, Unknown, RST, ... TSR).
        ("ConnectorPhaseRotation", "banana", "Rejected"),
        ("ConnectorPhaseRotation", "1.RST,2.XYZ", "Rejected"),
    ],
)
async def test_change_configuration_answers(csms, key, value, expected):
    charger = runtime_charger("CP-CC", csms.url, evses=1)
    before = dict(charger.config)
    async with connected(charger):
        result = await csms.call("CP-CC", call.ChangeConfiguration(key=key, value=value))
    assert result.status == expected
    if expected == "Accepted":
        assert charger.config[key] == value
    else:
        assert charger.config == before


async def test_a_new_heartbeat_interval_takes_effect_at_once(csms):
    charger = runtime_charger("CP-HB", csms.url, evses=1)
    engine = MeterEngine([charger], tick_seconds=0.05)
    async with connected(charger):
        ticking = asyncio.create_task(engine.run())
        try:
            await csms.call("CP-HB", call.ChangeConfiguration(key="HeartbeatInterval", value="1"))
            await csms.wait_for("CP-HB", "Heartbeat", timeout=3)
        finally:
            ticking.cancel()


async def test_local_actions_give_clear_errors(csms):
    charger = runtime_charger("CP-ERR", csms.url, evses=1)
    async with connected(charger):
        with pytest.raises(ActionError, match="no vehicle plugged in"):
            charger.unplug(1)
        charger.plug_in(1, COMPACT, soc=50)
        with pytest.raises(ActionError, match="already plugged in"):
            charger.plug_in(1, COMPACT, soc=50)
        with pytest.raises(ActionError, match="no transaction"):
            charger.stop_transaction(1)


async def test_it_checks_the_subprotocol_and_reports_a_refusal(csms):
    csms.passwords = {"CP-PW": "right"}
    charger = runtime_charger(
        "CP-PW", csms.url, evses=1, security_profile=1, authorization_key="wrong"
    )
    async with connected(charger, booted=False):
        await wait_until(lambda: charger.link_error != "", message="a link error")
    assert charger.link_error == "CSMS rejected credentials (401)"
    assert charger.link is not LinkState.ONLINE


async def test_a_proxy_websockets_refuses_is_reported_without_its_password(
    csms, monkeypatch, caplog
):
    """QA: a proxy URL from the environment that websockets refuses (here a path after the
    port) failed every connection with its own words, which quote the URL: the proxy's
    password was the charger's link error (its page, the API, the event stream) and in
    every retry's log line."""
    from simulator.ocpp16 import client

    caplog.set_level(logging.INFO)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", "http://proxyuser:PROXY-PASS-1@127.0.0.1:9/path")
    monkeypatch.setattr(client, "_proxies", {})  # worked out once per endpoint
    charger = runtime_charger("CP-PROXY", csms.url, evses=1)
    async with connected(charger, booted=False):
        await wait_until(lambda: "proxy" in charger.link_error, message="a link error")
        error = charger.link_error
    assert "http://proxyuser:********@127.0.0.1:9/path isn't a valid proxy" in error, error
    assert "PROXY-PASS-1" not in caplog.text


async def test_a_fault_needs_an_ocpp_error_code(csms):
    charger = runtime_charger("CP-FLT", csms.url, evses=1)
    async with connected(charger):
        with pytest.raises(ActionError, match="not an OCPP 1.6 fault code"):
            charger.inject_fault(1, "Gremlins")
        charger.inject_fault(1, "GroundFailure", "test")
        status = await csms.wait_for(
            "CP-FLT", "StatusNotification", predicate=lambda e: e.payload["status"] == "Faulted"
        )
        charger.clear_fault(1)
        await csms.wait_for("CP-FLT", "StatusNotification", after=csms.log.index(status) + 1)
    assert status.payload["errorCode"] == "GroundFailure"
    assert charger.evse(1).status is ConnectorStatus.AVAILABLE


async def test_a_message_timeout_the_csms_changes_applies_to_the_next_call_at_once(csms):
    """QA: ChangeConfiguration(MessageTimeout) was Accepted but read only at the next
    connection: set to 5, an unanswered Heartbeat still timed out after 30 s."""
    from simulator.core.charge_point import CallFailed

    charger = runtime_charger("CP-TIMEOUT-SET", csms.url, evses=1)  # MessageTimeout 30
    async with connected(charger):
        await boot_reports_answered(charger)
        result = await csms.call(
            "CP-TIMEOUT-SET", call.ChangeConfiguration(key="MessageTimeout", value="1")
        )
        assert result.status == "Accepted"
        csms.respond = False
        with pytest.raises(CallFailed) as failed:
            await asyncio.wait_for(charger.request(("Heartbeat", {})), 15)
        assert failed.value.code == "Timeout"
        assert failed.value.description == "no answer to Heartbeat in 1 s"
        # A call in flight when it changes waits the new time too, from when it was sent.
        await csms.call(
            "CP-TIMEOUT-SET", call.ChangeConfiguration(key="MessageTimeout", value="30")
        )
        in_flight = asyncio.ensure_future(charger.request(("DataTransfer", {"vendorId": "x"})))
        await csms.wait_for("CP-TIMEOUT-SET", "DataTransfer")
        await csms.call("CP-TIMEOUT-SET", call.ChangeConfiguration(key="MessageTimeout", value="1"))
        with pytest.raises(CallFailed) as failed:
            await asyncio.wait_for(in_flight, 15)
        assert failed.value.description == "no answer to DataTransfer in 1 s"
        csms.respond = True


async def test_calls_the_csms_never_answers_time_out_one_after_the_other(csms):
    from simulator.core.charge_point import CallFailed

    charger = runtime_charger("CP-TIMEOUT", csms.url, evses=1)
    charger.config["MessageTimeout"] = "1"
    async with connected(charger):
        await boot_reports_answered(charger)
        csms.respond = False
        first = asyncio.ensure_future(charger.request(("Heartbeat", {})))
        second = asyncio.ensure_future(charger.request(("DataTransfer", {"vendorId": "x"})))
        for pending in (first, second):
            with pytest.raises(CallFailed) as failed:
                await asyncio.wait_for(pending, 10)
            assert failed.value.code == "Timeout"
        # Both reached the CSMS, in order, one at a time.
        assert actions(csms, "CP-TIMEOUT")[-2:] == ["Heartbeat", "DataTransfer"]
        csms.respond = True
        answer = await asyncio.wait_for(charger.request(("Heartbeat", {})), 10)
        assert "currentTime" in answer
        assert charger.online


class Connections(Listener):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_connection(self, charger: Charger, event: str, detail: dict[str, Any]) -> None:
        self.events.append((event, detail))

    def closed(self) -> list[dict[str, Any]]:
        return [detail for event, detail in self.events if event == "closed"]


_BAD_UTF8 = b'[2,"u8","DataTransfer",{"vendorId":"a\xffb"}]'
# Over the charger's 1 MiB limit (`max_size`): sent as a text frame through the CSMS.
_TOO_BIG = '[2,"big","DataTransfer",{"vendorId":"ChargeSim","data":"' + "x" * 1100 * 1024 + '"}]'


@pytest.mark.parametrize(
    ("frame", "code", "why"),
    [
        pytest.param(
            _TOO_BIG.encode(),
            1009,
            f"frame with {len(_TOO_BIG)} bytes exceeds limit of 1048576 bytes",
            id="too-big",
        ),
        pytest.param(b"\x83\x00", 1002, "invalid opcode", id="bad-opcode"),
        pytest.param(
            bytes([0x81, len(_BAD_UTF8)]) + _BAD_UTF8,
            1007,
            "invalid start byte at position 37",
            id="bad-utf8",
        ),
    ],
)
async def test_a_connection_the_charger_fails_for_a_bad_frame_says_what_it_sent(
    csms, caplog, frame, code, why
):
    """QA: the charger failed the connection as RFC 6455 requires (the CSMS got 1009, 1002,
    1007 with a reason), but its logs said only "connection lost" (1006)."""
    caplog.set_level(logging.INFO, logger="simulator.ocpp16.client")
    events = Connections()
    charger = runtime_charger("CP-FAIL", csms.url, evses=1, listener=events)
    async with connected(charger):
        if code == 1009:
            await csms.send_raw("CP-FAIL", _TOO_BIG)
        else:
            websocket = csms.connection("CP-FAIL").websocket
            websocket.transport.write(frame)
        await wait_until(lambda: events.closed(), timeout=10.0, message="the connection closed")
    (detail,) = events.closed()[:1]
    summary = f"failed by the charger with {code}: {why}"
    assert detail["summary"] == summary
    assert (detail["sent_code"], detail["sent_reason"]) == (code, why)
    assert detail["by"] == contract.CLOSED_FAILED  # a scenario reports it (the CSMS's doing)
    assert f"CP-FAIL: connection closed ({summary}); reconnecting in" in caplog.text
    assert "connection lost" not in caplog.text


async def test_a_connection_the_charger_closes_to_reboot_says_the_charger_closed_it(csms, caplog):
    """QA: after a Reset the charger closes the socket itself, but its log said "closed by
    peer (1000)": only a close through `close_with` counted as the charger's."""
    caplog.set_level(logging.INFO, logger="simulator.ocpp16.client")
    events = Connections()
    charger = runtime_charger("CP-RESET-LOG", csms.url, evses=1, listener=events)
    async with connected(charger):
        await boot_reports_answered(charger)
        answer = await csms.call("CP-RESET-LOG", call.Reset(type="Soft"))
        assert answer.status == "Accepted"
        await wait_until(lambda: events.closed(), timeout=10.0, message="the connection closed")
    detail = events.closed()[0]
    assert detail["summary"] == "closed by the charger (1000)"
    assert (detail["code"], detail["sent_code"]) == (1000, 1000)  # the CSMS answered it
    assert detail["by"] == contract.CLOSED_BY_CHARGER
    assert "CP-RESET-LOG: connection closed (closed by the charger (1000))" in caplog.text
    assert "closed by peer" not in caplog.text
