"""ExtendedTriggerMessage (OCPP 1.6 security whitepaper, edition 3) against the built-in
CSMS over a real socket: the charger answers first, then sends what was asked for."""

from __future__ import annotations

from simulator.core import triggers
from simulator.core.link import BootState
from tests.engine import connected, runtime_charger, wait_until


def answer_then_message(csms, cp_id, action, mark):
    """The answer to the ExtendedTriggerMessage and the triggered CALLs after `mark`."""
    entries = csms.log[mark:]
    reply = next(
        i
        for i, e in enumerate(entries)
        if e.cp_id == cp_id and e.action == "ExtendedTriggerMessage" and e.message_type == 3
    )
    calls = [
        (i, e.payload)
        for i, e in enumerate(entries)
        if e.cp_id == cp_id and e.action == action and e.message_type == 2 and e.direction == "in"
    ]
    return reply, calls


async def triggered(csms, cp_id, requested, action=None, connector_id=None, count=1):
    mark = len(csms.log)
    status = await csms.extended_trigger(cp_id, requested, connector_id)
    assert status == "Accepted"
    action = action or requested
    await wait_until(
        lambda: len(answer_then_message(csms, cp_id, action, mark)[1]) >= count,
        message=f"the triggered {action}",
    )
    reply, calls = answer_then_message(csms, cp_id, action, mark)
    assert all(reply < index for index, _payload in calls)  # the answer goes first
    return [payload for _index, payload in calls]


async def test_each_message_is_sent_after_the_answer(csms):
    charger = runtime_charger("ET-1", csms.url, evses=2)
    async with connected(charger):
        await wait_until(lambda: not charger.queue, message="the boot's messages")
        [boot] = await triggered(csms, "ET-1", "BootNotification")
        assert boot["chargePointVendor"] == "ChargeSim"
        await triggered(csms, "ET-1", "Heartbeat")
        # The whitepaper: it triggers a SignedFirmwareStatusNotification.
        [firmware] = await triggered(
            csms, "ET-1", "FirmwareStatusNotification", "SignedFirmwareStatusNotification"
        )
        assert firmware == {"status": "Idle"}  # no update running: no requestId
        [idle] = await triggered(csms, "ET-1", "LogStatusNotification")
        assert idle == {"status": "Idle"}  # no upload: no requestId either
        [meter] = await triggered(csms, "ET-1", "MeterValues", connector_id=2)
        assert meter["connectorId"] == 2
        contexts = {v["context"] for v in meter["meterValue"][0]["sampledValue"]}
        assert contexts == {"Trigger"}
        [one] = await triggered(csms, "ET-1", "StatusNotification", connector_id=1)
        assert one["connectorId"] == 1
        every = await triggered(csms, "ET-1", "StatusNotification", count=3)
        assert sorted(s["connectorId"] for s in every) == [0, 1, 2]


async def test_sign_charge_point_certificate_sends_a_csr_after_the_answer(csms):
    charger = runtime_charger("ET-5", csms.url, evses=1, serial_number="SN-ET-5")
    async with connected(charger):
        await wait_until(lambda: not charger.queue, message="the boot's messages")
        [request] = await triggered(csms, "ET-5", "SignChargePointCertificate", "SignCertificate")
        assert request["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
        # The built-in CSMS signs it: the charger now has its own certificate.
        await wait_until(lambda: charger.certificates.chain_pem, message="CertificateSigned")


async def test_a_triggered_log_status_names_the_upload_in_progress(csms, files):
    files.failures["busy/"] = 100
    charger = runtime_charger("ET-2", csms.url, evses=1)
    async with connected(charger):
        await csms.get_log("ET-2", f"{files.url}/busy/", request_id=7, retry_interval=60)
        await wait_until(lambda: csms.log_statuses.get("ET-2"), message="Uploading")
        [status] = await triggered(csms, "ET-2", "LogStatusNotification")
    assert status == {"status": "Uploading", "requestId": 7}


async def test_a_connector_it_does_not_have_or_a_refused_boot_is_rejected(csms):
    charger = runtime_charger("ET-3", csms.url, evses=1, reject_triggered_boot=True)
    async with connected(charger):
        bad = await csms.extended_trigger("ET-3", "StatusNotification", connector_id=9)
        boot = await csms.extended_trigger("ET-3", "BootNotification")
        mark = len(csms.log)
        await csms.extended_trigger("ET-3", "Heartbeat")
        await wait_until(
            lambda: any(e.action == "Heartbeat" for e in csms.log[mark:]), message="heartbeat"
        )
    assert (bad, boot) == ("Rejected", "Rejected")
    assert csms.counts["BootNotification"] == 1


async def test_a_message_missing_from_the_table_is_not_implemented():
    charger = runtime_charger("ET-4", "ws://127.0.0.1:9", evses=1)
    assert triggers.answer(charger, {}, "Heartbeat", None) == "NotImplemented"
    # Not registered yet (no boot answered): it would not be sent, so not Accepted.
    assert triggers.answer(charger, triggers.EXTENDED_TRIGGERS, "Heartbeat", None) == "Rejected"
    charger.boot = BootState.ACCEPTED
    assert triggers.answer(charger, triggers.EXTENDED_TRIGGERS, "Heartbeat", None) == "Accepted"
    # TriggerMessage and ExtendedTriggerMessage each have their own list.
    assert "DiagnosticsStatusNotification" not in triggers.EXTENDED_TRIGGERS
    assert "LogStatusNotification" not in triggers.TRIGGERS
