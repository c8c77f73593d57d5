"""GetLog / LogStatusNotification (OCPP 1.6 security whitepaper, edition 3): the charger
uploads its security log or its diagnostics log to real HTTP and FTP servers on loopback,
through the same transfer path as GetDiagnostics, reporting each step with the requestId."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from ocpp.v16 import call

from simulator.core.logs import JOB
from simulator.ocpp16.schema_check import load_validator
from tests.engine import connected, runtime_charger, wait_until
from tests.file_servers import ftp_server


async def statuses(csms, cp_id, count, timeout=10.0):
    await wait_until(
        lambda: len(csms.log_statuses.get(cp_id, [])) >= count,
        timeout=timeout,
        message=f"{count} LogStatusNotifications from {cp_id}",
    )
    return [(s["status"], s.get("requestId")) for s in csms.log_statuses[cp_id]]


async def test_the_security_log_is_put_over_http_with_the_chargers_events(csms, files):
    charger = runtime_charger("GL-1", csms.url, evses=1)
    async with connected(charger):
        charger.security_event("ResetOrReboot", "a test reboot")
        status, name, request_id = await csms.get_log(
            "GL-1", f"{files.url}/logs/", log_type="SecurityLog", request_id=41
        )
        assert status == "Accepted" and request_id == 41
        assert name is not None and name.startswith("GL-1-securitylog-")
        assert await statuses(csms, "GL-1", 2) == [("Uploading", 41), ("Uploaded", 41)]
    assert files.requests == [("PUT", f"logs/{name}")]
    document = json.loads(files.received[name])
    assert document["logType"] == "SecurityLog" and document["requestId"] == 41
    [event] = document["events"]
    assert event["type"] == "ResetOrReboot" and event["techInfo"] == "a test reboot"
    assert event["critical"] is True
    validate = load_validator("LogStatusNotification")
    for payload in csms.log_statuses["GL-1"]:
        validate(payload)


async def test_the_window_chooses_which_security_events_go_in(csms, files):
    charger = runtime_charger("GL-2", csms.url, evses=1)
    async with connected(charger):
        charger.security_event("ResetOrReboot", "old")
        now = datetime.now(UTC)
        _status, name, _id = await csms.get_log(
            "GL-2", f"{files.url}/w/", oldest=now + timedelta(hours=1)
        )
        await statuses(csms, "GL-2", 2)
        _status, everything, _id = await csms.get_log(
            "GL-2", f"{files.url}/w/", latest=now + timedelta(hours=1)
        )
        await statuses(csms, "GL-2", 4)
    assert json.loads(files.received[name])["events"] == []
    assert [e["techInfo"] for e in json.loads(files.received[everything])["events"]] == ["old"]


async def test_the_diagnostics_log_is_stored_over_ftp(csms, tmp_path):
    (tmp_path / "logs").mkdir()
    charger = runtime_charger("GL-3", csms.url, evses=1)
    with ftp_server(tmp_path) as ftp:
        async with connected(charger):
            status, name, request_id = await csms.get_log(
                "GL-3", ftp.url("logs/"), log_type="DiagnosticsLog"
            )
            assert status == "Accepted" and name.startswith("GL-3-diagnosticslog-")
            assert await statuses(csms, "GL-3", 2) == [
                ("Uploading", request_id),
                ("Uploaded", request_id),
            ]
    document = json.loads((tmp_path / "logs" / name).read_bytes())
    assert document["chargePointId"] == "GL-3" and "configuration" in document


async def test_a_failing_upload_is_retried_then_upload_failure(csms, files):
    files.failures["down/"] = 10
    charger = runtime_charger("GL-4", csms.url, evses=1)
    async with connected(charger):
        _status, name, rid = await csms.get_log(
            "GL-4", f"{files.url}/down/", retries=2, retry_interval=0
        )
        assert await statuses(csms, "GL-4", 2) == [("Uploading", rid), ("UploadFailure", rid)]
    assert files.requests == [("PUT", f"down/{name}")] * 3


async def test_refused_credentials_are_permission_denied(csms, files):
    files.credentials = ("collector", "the-password")
    charger = runtime_charger("GL-5", csms.url, evses=1)
    async with connected(charger):
        _s, _n, rid = await csms.get_log("GL-5", f"{files.url}/in/", retries=0)
        assert await statuses(csms, "GL-5", 2) == [("Uploading", rid), ("PermissionDenied", rid)]


async def test_a_server_that_takes_no_uploads_is_not_supported_operation(csms, files):
    files.refuse_uploads = 405
    charger = runtime_charger("GL-6", csms.url, evses=1)
    async with connected(charger):
        _s, _n, rid = await csms.get_log("GL-6", f"{files.url}/in/", retries=0)
        assert (await statuses(csms, "GL-6", 2))[1] == ("NotSupportedOperation", rid)
        files.refuse_uploads = 400
        _s, _n, rid = await csms.get_log("GL-6", f"{files.url}/in/", retries=0)
        assert (await statuses(csms, "GL-6", 4))[3] == ("BadMessage", rid)


async def test_a_new_get_log_cancels_the_running_one_and_ends_its_upload(csms, files):
    """AcceptedCanceled names no requestId: the cancelled upload's Uploading gets its end,
    UploadFailure (the whitepaper's UploadLogStatusEnumType has no Canceled), before the
    new request's Uploading; a CSMS tracking the older request learns it is over."""
    files.failures["slow/"] = 100
    charger = runtime_charger("GL-7", csms.url, evses=1)
    async with connected(charger):
        first, _name, _rid = await csms.get_log(
            "GL-7", f"{files.url}/slow/", request_id=98, retries=5, retry_interval=60
        )
        assert first == "Accepted"
        await statuses(csms, "GL-7", 1)  # Uploading, then waiting a minute to retry
        second, name, _rid = await csms.get_log("GL-7", f"{files.url}/fast/", request_id=99)
        assert second == "AcceptedCanceled"
        got = await statuses(csms, "GL-7", 4)
        await wait_until(lambda: JOB not in charger.jobs, message="the job to end")
    assert got == [("Uploading", 98), ("UploadFailure", 98), ("Uploading", 99), ("Uploaded", 99)]
    assert name in files.received
    # Every notification is one the whitepaper's schema allows.
    validate = load_validator("LogStatusNotification")
    for status in csms.log_statuses["GL-7"]:
        validate(status)


async def test_a_location_it_cannot_upload_to_is_rejected(csms):
    charger = runtime_charger("GL-8", csms.url, evses=1)
    async with connected(charger):
        status, name, _rid = await csms.get_log("GL-8", "mailto:ops@example.com")
        assert (status, name) == ("Rejected", None)
        upside_down = await csms.call(
            "GL-8",
            call.GetLog(
                log={
                    "remoteLocation": "http://127.0.0.1:9/",
                    "oldestTimestamp": "2026-12-02T05:00:00Z",
                    "latestTimestamp": "2026-12-02T04:00:00Z",
                },
                log_type="SecurityLog",
                request_id=1,
            ),
        )
        assert upside_down.status == "Rejected"
    assert "GL-8" not in csms.log_statuses


async def test_a_malformed_get_log_gets_a_call_error_and_the_charger_keeps_running(csms):
    charger = runtime_charger("GL-9", csms.url, evses=1)
    async with connected(charger):
        await csms.send_raw(
            "GL-9", '[2, "bad-log", "GetLog", {"logType": "Everything", "requestId": 1}]'
        )
        entry = await csms.wait_for("GL-9", unique_id="bad-log", message_type=4)
        assert entry.payload["errorCode"] != "InternalError"
        assert charger.online
        assert [event.kind for event in charger.security_log] == ["InvalidMessages"]
        status, _name, _rid = await csms.get_log("GL-9", "mailto:x")
        assert status == "Rejected"


async def test_an_ftp_login_refused_is_permission_denied_and_the_password_never_shows(
    csms, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    (tmp_path / "logs").mkdir()
    charger = runtime_charger("GL-10", csms.url, evses=1)
    with ftp_server(tmp_path) as ftp:
        async with connected(charger):
            location = ftp.url("logs/", password="not-the-password")
            _s, _n, rid = await csms.get_log("GL-10", location, retries=0)
            assert await statuses(csms, "GL-10", 2) == [
                ("Uploading", rid),
                ("PermissionDenied", rid),
            ]
    assert list((tmp_path / "logs").iterdir()) == []
    assert "GL-10: log upload 1/1 failed" in caplog.text  # the line is there, the secret not
    assert "not-the-password" not in caplog.text
