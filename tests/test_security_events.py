"""Security events (OCPP 1.6 security whitepaper, edition 3): the charger logs each one in
its security log and pushes it to the built-in CSMS with SecurityEventNotification, over a
real socket; the events a failing connection raises are sent once it works again."""

from __future__ import annotations

import logging
import re
import ssl
from datetime import UTC, datetime, timedelta

import trustme
from ocpp.v16 import call

from simulator.core.charge_point import CLOCK_STEP_REPORTED_S, Listener
from simulator.core.security_log import POWER_UP, LoggedEvent, SecurityLog
from simulator.csms import CentralSystem
from simulator.ocpp16.schema_check import load_validator
from tests.engine import connected, runtime_charger, wait_until

IMAGE = b"ChargeSim firmware 2.4.0\n" + bytes(range(256)) * 16


class Attempts(Listener):
    """Counts the charger's failed connection attempts."""

    def __init__(self) -> None:
        self.failed = 0

    def on_connection(self, charger, event, detail):
        if event == "connect_failed":
            self.failed += 1


def kinds(csms, cp_id):
    return [event["type"] for event in csms.security_events.get(cp_id, [])]


async def events(csms, cp_id, *wanted, timeout=10.0):
    """The events received once all of `wanted` have come."""
    await wait_until(
        lambda: set(wanted) <= set(kinds(csms, cp_id)),
        timeout=timeout,
        message=f"{wanted} from {cp_id} (so far {kinds(csms, cp_id)})",
    )
    return csms.security_events[cp_id]


def logged(charger):
    return [event.kind for event in charger.security_log]


async def test_a_reset_reports_reset_or_reboot_then_the_startup_of_the_firmware(csms):
    charger = runtime_charger("SE-1", csms.url, evses=1)
    async with connected(charger):
        assert kinds(csms, "SE-1") == []  # a first start of the process is not a reboot
        answer = await csms.call("SE-1", call.Reset(type="Soft"))
        assert answer.status == "Accepted"
        received = await events(csms, "SE-1", "ResetOrReboot", "StartupOfTheFirmware")
    assert [e["type"] for e in received] == ["ResetOrReboot", "StartupOfTheFirmware"]
    assert "Soft reset" in received[0]["techInfo"]
    assert "1.0.0" in received[1]["techInfo"] and "Soft reset" in received[1]["techInfo"]
    assert csms.counts["BootNotification"] == 2
    validate = load_validator("SecurityEventNotification")
    for event in received:
        validate(event)
    assert logged(charger) == ["ResetOrReboot", "StartupOfTheFirmware"]


async def test_the_startup_of_a_loaded_charger_is_not_a_line_of_the_log_at_info(csms, caplog):
    """Every charger says it at every start of the process: 10,000 lines at INFO for a
    10,000-charger fleet. It is still logged (DEBUG), kept and pushed; a reboot's is INFO."""
    caplog.set_level(logging.DEBUG, logger="simulator.core.charge_point")
    charger = runtime_charger("SE-UP", csms.url, evses=1)
    charger.startup_after = POWER_UP  # as a charger loaded from the database
    async with connected(charger):
        await events(csms, "SE-UP", "StartupOfTheFirmware")
        await csms.call("SE-UP", call.Reset(type="Soft"))
        await wait_until(lambda: logged(charger).count("StartupOfTheFirmware") == 2)
    startups = [
        (record.levelno, record.getMessage())
        for record in caplog.records
        if "StartupOfTheFirmware" in record.getMessage()
    ]
    assert [level for level, _ in startups] == [logging.DEBUG, logging.INFO], startups
    assert "after power-up" in startups[0][1] and "Soft reset" in startups[1][1]


async def test_a_firmware_update_reports_firmware_updated_and_the_reboot_into_it(csms, files):
    url = files.publish("images/chargesim.bin", IMAGE)
    charger = runtime_charger("SE-2", csms.url, evses=1, firmware_version="1.0.0")
    async with connected(charger):
        await csms.update_firmware("SE-2", url)
        received = await events(csms, "SE-2", "FirmwareUpdated")
    # The new firmware says it was updated once it runs, after the reboot into it.
    assert [e["type"] for e in received] == [
        "ResetOrReboot",
        "StartupOfTheFirmware",
        "FirmwareUpdated",
    ]
    assert received[2]["techInfo"] == "1.0.0 -> 2.4.0"
    assert "firmware 2.4.0" in received[1]["techInfo"]


async def test_a_clock_set_far_from_its_own_is_reported_and_a_small_step_is_not(csms):
    ahead = datetime.now(UTC) + timedelta(hours=2)
    csms.current_time = ahead.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    charger = runtime_charger("SE-3", csms.url, evses=1)
    async with connected(charger):
        received = await events(csms, "SE-3", "SettingSystemTime")
        # +7200 s less the time between the CSMS stamping it (whole seconds) and the boot.
        step = re.match(r"clock set \+(\d+) s", received[0]["techInfo"])
        assert step is not None and 7_190 <= int(step[1]) <= 7_201
        # A Heartbeat answer sets it again, by less than the threshold: nothing to report.
        small_step = ahead + timedelta(seconds=CLOCK_STEP_REPORTED_S / 2)
        csms.current_time = small_step.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        charger.send_heartbeat()
        await wait_until(lambda: csms.counts["Heartbeat"] >= 1, message="the heartbeat")
        await wait_until(lambda: not charger.queue, message="the queue to drain")
        assert abs((charger.now() - small_step).total_seconds()) < 5  # it was set
    assert kinds(csms, "SE-3") == ["SettingSystemTime"]


async def test_credentials_refused_with_401_are_reported_once_the_charger_gets_in(csms):
    csms.passwords = {"SE-4": "the-right-password-0"}
    attempts = Attempts()
    charger = runtime_charger(
        "SE-4",
        csms.url,
        evses=1,
        security_profile=1,
        authorization_key="a-wrong-password-00",
        listener=attempts,
    )
    async with connected(charger, booted=False):
        await wait_until(lambda: attempts.failed >= 3, message="three refused attempts")
        assert logged(charger) == ["FailedToAuthenticateAtCentralSystem"]  # once, not per try
        csms.passwords["SE-4"] = "a-wrong-password-00"  # the operator fixes the CSMS side
        received = await events(csms, "SE-4", "FailedToAuthenticateAtCentralSystem")
    assert len(received) == 1
    assert "401" in received[0]["techInfo"]
    assert "a-wrong-password-00" not in str(received)


async def test_a_central_system_certificate_not_trusted_is_logged_once(tmp_path):
    ca, other = trustme.CA(), trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = CentralSystem()
    await server.start(host="127.0.0.1", port=0, ssl=context)
    trusted = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(trusted))
    attempts = Attempts()
    try:
        charger = runtime_charger(
            "SE-5",
            server.url.replace("ws://", "wss://"),
            evses=1,
            security_profile=2,
            authorization_key="0123456789abcdef",
            ca_bundle_path=str(trusted),
            listener=attempts,
        )
        async with connected(charger, booted=False):
            await wait_until(lambda: attempts.failed >= 3, message="three refused attempts")
        assert "certificate not trusted" in charger.link_error
        assert logged(charger) == ["InvalidCentralSystemCertificate"]
        [event] = charger.security_log
        assert "certificate not trusted" in (event.tech_info or "")
        # Kept, durably, for the day the charger gets through.
        assert [item.action for item in charger.queue] == ["SecurityEventNotification"]
    finally:
        await server.stop()


async def test_changing_the_authorization_key_is_a_reconfiguration_without_the_secret(csms):
    KEY = "5ec2e75ec2e75ec2e75ec2e75ec2e75e"  # 16 bytes in hex: a key the charger takes
    charger = runtime_charger("SE-6", csms.url, evses=1)
    async with connected(charger):
        answer = await csms.call(
            "SE-6", call.ChangeConfiguration(key="AuthorizationKey", value=KEY)
        )
        assert answer.status == "Accepted"
        await csms.call(
            "SE-6", call.ChangeConfiguration(key="HeartbeatInterval", value="120")
        )  # not a security parameter
        received = await events(csms, "SE-6", "ReconfigurationOfSecurityParameters")
        await wait_until(lambda: not charger.queue, message="the queue to drain")
    assert kinds(csms, "SE-6") == ["ReconfigurationOfSecurityParameters"]
    assert received[0]["techInfo"] == "AuthorizationKey"
    leaked = KEY in str(received) or KEY in str(list(charger.security_log))
    assert not leaked, "the key reached the event"


async def test_a_lost_connection_is_reported_after_the_charger_is_back(csms):
    charger = runtime_charger("SE-7", csms.url, evses=1)
    async with connected(charger):
        charger.cut_network(0.3)
        received = await events(csms, "SE-7", "ConnectionLost")
    assert received[0]["techInfo"] == "connection lost"
    assert csms.counts["BootNotification"] == 1  # a reconnect, not a reboot


async def test_a_closed_connection_is_no_loss(csms):
    charger = runtime_charger("SE-8", csms.url, evses=1)
    async with connected(charger):
        await csms.disconnect("SE-8")
        await wait_until(lambda: csms.connects["SE-8"] == 2, message="the reconnect")
        await wait_until(lambda: not charger.queue, message="the queue to drain")
    assert kinds(csms, "SE-8") == []


async def test_a_hostile_frame_is_logged_as_invalid_messages_but_not_pushed(csms):
    charger = runtime_charger("SE-9", csms.url, evses=1)
    async with connected(charger):
        await csms.send_raw("SE-9", '[2, "bad-1", "Reset", {"type": "Sideways"}]')
        await csms.send_raw("SE-9", '[2, "ok-1", "SomethingElse", {}]')  # unknown: not hostile
        await csms.wait_for("SE-9", unique_id="ok-1", message_type=4)
        assert charger.online
    assert logged(charger) == ["InvalidMessages"]
    assert charger.security_log.last(1)[0].sent is False
    assert kinds(csms, "SE-9") == []


async def test_a_call_without_a_unique_id_is_logged_as_ignored_not_as_answered(csms):
    charger = runtime_charger("SE-10", csms.url, evses=1)
    async with connected(charger):
        await csms.send_raw("SE-10", '[2, null, "Heartbeat", {}]')  # no id to echo
        await csms.send_raw("SE-10", '[2, "ok-2", "SomethingElse", {}]')
        await csms.wait_for("SE-10", unique_id="ok-2", message_type=4)
    (event,) = charger.security_log.last(1)
    assert event.kind == "InvalidMessages"
    assert event.tech_info == "Heartbeat ignored (ProtocolError, no unique id to answer)"
    assert not [e for e in csms.log if e.cp_id == "SE-10" and e.raw.startswith("[4,null")]


async def test_a_csms_without_the_security_extensions_gets_each_event_once(csms):
    csms.fail_actions["SecurityEventNotification"] = "NotImplemented"
    charger = runtime_charger("SE-10", csms.url, evses=1)
    async with connected(charger):
        await csms.call("SE-10", call.Reset(type="Soft"))
        # Dropped at the first NotImplemented: nothing waits 20 s to be tried again, in
        # front of the transaction messages.
        await wait_until(
            lambda: csms.counts["SecurityEventNotification"] >= 2 and not charger.queue,
            message="both events tried and dropped",
        )
    assert csms.counts["SecurityEventNotification"] == 2
    assert logged(charger) == ["ResetOrReboot", "StartupOfTheFirmware"]


async def test_the_security_log_keeps_the_newest_events():
    log = SecurityLog(3)
    for n in range(5):
        log.add(LoggedEvent("ResetOrReboot", f"2026-12-02T04:0{n}:00.000Z", str(n)))
    assert [e.tech_info for e in log] == ["2", "3", "4"]
    assert [e.tech_info for e in log.last(2)] == ["4", "3"]
    window = log.between(
        datetime(2026, 12, 2, 4, 3, tzinfo=UTC), datetime(2026, 12, 2, 4, 3, tzinfo=UTC)
    )
    assert [e.tech_info for e in window] == ["3"]
