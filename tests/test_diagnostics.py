"""Firmware Management, GetDiagnostics (OCPP 1.6 sections 3.11, 5.8): the charger writes a
diagnostics file of its recent log and frames and really uploads it to HTTP and FTP
servers on loopback, reporting Uploading, then Uploaded or UploadFailed."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from datetime import UTC, datetime, timedelta

import pytest
from ocpp.v16 import call

from simulator.runtime.events import EventPublisher
from simulator.runtime.transfers import FileTransfers, LogJournal
from tests.engine import COMPACT, connected, runtime_charger, wait_until
from tests.file_servers import ftp_server
from tests.timeline import Timeline, TimelineClock, TimelineTransfers


@pytest.fixture
def journal():
    """The process's log lines, as the simulator keeps them for diagnostics files."""
    handler = LogJournal()
    logger = logging.getLogger("simulator")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def recording_charger(cp_id, csms, journal, timeline=None, **fields):
    """A charger whose diagnostics hold its frames (the dashboard's frame log) and log;
    with a `timeline`, its uploads and the waits on its clock are noted there."""
    publisher = EventPublisher()
    options = {
        "timeout": 5.0,
        "frames": lambda charger_id: publisher.frames.get(charger_id, ()),
        "log_journal": journal,
    }
    if timeline is None:
        transfers = FileTransfers(**options)
    else:
        transfers = TimelineTransfers(timeline, **options)
        fields["clock"] = TimelineClock(timeline)
    return runtime_charger(
        cp_id, csms.url, evses=1, listener=publisher, transfers=transfers, **fields
    )


async def finished(csms, cp_id, count, timeout=10.0):
    await wait_until(
        lambda: len(csms.diagnostics_statuses.get(cp_id, [])) >= count,
        timeout=timeout,
        message=f"{count} DiagnosticsStatusNotifications from {cp_id}",
    )
    return csms.diagnostics_statuses[cp_id]


async def test_a_diagnostics_file_is_put_over_http_with_the_chargers_log_and_frames(
    csms, files, journal
):
    charger = recording_charger("DG-1", csms, journal)
    async with connected(charger):
        charger.plug_in(1, COMPACT)
        assert await charger.present_id_tag(1, "T1") == "Accepted"
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="start")
        logging.getLogger("simulator.core.charge_point").info("DG-1: a line of its own")
        name = await csms.get_diagnostics("DG-1", f"{files.url}/uploads/")
        assert name is not None and name.startswith("DG-1-diagnostics-") and name.endswith(".json")
        assert await finished(csms, "DG-1", 2) == ["Uploading", "Uploaded"]
    assert files.requests == [("PUT", f"uploads/{name}")]
    document = json.loads(files.received[name])
    assert document["chargePointId"] == "DG-1"
    assert document["connectors"][0]["status"] == "Charging"
    assert document["configuration"]["HeartbeatInterval"] == "300"
    assert "AuthorizationKey" not in document["configuration"]
    calls = [json.loads(text) for _at, way, text in document["frames"] if way == "out"]
    actions = {frame[2] for frame in calls if frame[0] == 2}
    assert {"BootNotification", "StartTransaction"} <= actions
    assert any("a line of its own" in line for _at, _level, line in document["log"])
    assert all(line.startswith("DG-1:") for _at, _level, line in document["log"])


async def test_a_charger_set_to_post_sends_a_multipart_form(csms, files, journal):
    charger = recording_charger("DG-2", csms, journal, diagnostics_upload_method="POST")
    async with connected(charger):
        name = await csms.get_diagnostics("DG-2", f"{files.url}/collect")
        assert await finished(csms, "DG-2", 2) == ["Uploading", "Uploaded"]
    assert files.requests == [("POST", "collect")]
    assert json.loads(files.received[name])["chargePointId"] == "DG-2"


async def test_a_diagnostics_file_is_stored_over_ftp_in_the_location_directory(
    csms, tmp_path, journal
):
    (tmp_path / "diag").mkdir()
    charger = recording_charger("DG-3", csms, journal)
    with ftp_server(tmp_path) as ftp:
        async with connected(charger):
            name = await csms.get_diagnostics("DG-3", ftp.url("diag/"))
            assert await finished(csms, "DG-3", 2) == ["Uploading", "Uploaded"]
    stored = tmp_path / "diag" / name
    assert json.loads(stored.read_bytes())["chargePointId"] == "DG-3"


async def test_an_ftp_login_whose_user_is_an_email_address_never_shows_its_password(
    csms, tmp_path, journal, caplog
):
    # Hosting providers' FTP logins are often e-mail addresses: the URL has two "@", and
    # the password is what lies between the user's ":" and the last one.
    caplog.set_level(logging.INFO)
    (tmp_path / "diag").mkdir()
    charger = recording_charger("DG-MAIL", csms, journal)
    with ftp_server(tmp_path, user="ops@example.com", password="hunter2-ftp") as ftp:
        async with connected(charger):
            name = await csms.get_diagnostics("DG-MAIL", ftp.url("diag/"))
            assert await finished(csms, "DG-MAIL", 2) == ["Uploading", "Uploaded"]
    uploaded = (tmp_path / "diag" / name).read_text()
    assert "GetDiagnostics" in uploaded and "ops@example.com:********@" in uploaded
    frames = " ".join(text for _at, _way, text in charger.listener.frames["DG-MAIL"])
    for text in (uploaded, frames, caplog.text):
        assert "hunter2" not in text


async def test_start_and_stop_time_choose_what_goes_in(csms, files, journal):
    charger = recording_charger("DG-4", csms, journal)
    async with connected(charger):
        await wait_until(lambda: not charger.queue, message="the boot's messages")
        await asyncio.sleep(0.05)
        since = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await csms.call("DG-4", call.DataTransfer(vendor_id="ChargeSim", message_id="echo"))
        later = await csms.get_diagnostics("DG-4", f"{files.url}/d/", start_time=since)
        await finished(csms, "DG-4", 2)
        before = await csms.get_diagnostics(
            "DG-4", f"{files.url}/e/", stop_time=since - timedelta(minutes=5)
        )
        await finished(csms, "DG-4", 4)
    recent = json.loads(files.received[later])
    assert recent["window"]["startTime"] is not None
    texts = [text for _at, _way, text in recent["frames"]]
    assert any('"DataTransfer"' in text for text in texts)
    assert not any('"BootNotification"' in text for text in texts)  # before startTime
    old = json.loads(files.received[before])
    assert old["frames"] == [] and old["log"] == []


async def test_a_failing_upload_is_retried_then_uploaded(csms, files, journal):
    files.failures["x/"] = 2  # the first two PUTs into x/ meet a 503
    charger = recording_charger("DG-5", csms, journal)
    async with connected(charger):
        name = await csms.get_diagnostics("DG-5", f"{files.url}/x/", retries=2, retry_interval=0)
        assert await finished(csms, "DG-5", 2) == ["Uploading", "Uploaded"]
    assert files.requests == [("PUT", f"x/{name}")] * 3
    assert json.loads(files.received[name])["chargePointId"] == "DG-5"


async def test_retries_and_retry_interval_then_upload_failed(csms, files, journal):
    """Each retry waits the retryInterval on the charger's clock (seen on its timeline,
    not timed on the host's)."""
    files.failures["y/"] = 10
    timeline = Timeline()
    charger = recording_charger("DG-6", csms, journal, timeline)
    async with connected(charger):
        name = await csms.get_diagnostics("DG-6", f"{files.url}/y/", retries=2, retry_interval=1)
        assert await finished(csms, "DG-6", 2) == ["Uploading", "UploadFailed"]
    assert files.requests == [("PUT", f"y/{name}")] * 3  # 1 + retries
    assert timeline.of("upload", "wait 1", "waited 1") == [
        *("upload", "wait 1", "waited 1") * 2,
        "upload",
    ]
    assert name not in files.received


async def test_an_unreachable_location_ends_in_upload_failed(csms, journal):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    charger = recording_charger("DG-7", csms, journal)
    async with connected(charger):
        await csms.get_diagnostics("DG-7", f"http://127.0.0.1:{port}/up/", retries=0)
        assert await finished(csms, "DG-7", 2) == ["Uploading", "UploadFailed"]
        # Asked afterwards, it is Idle (UploadFailed is reported once, as it happens).
        await csms.call(
            "DG-7", call.TriggerMessage(requested_message="DiagnosticsStatusNotification")
        )
        assert await finished(csms, "DG-7", 3) == ["Uploading", "UploadFailed", "Idle"]


async def test_an_ftp_location_with_a_line_break_ends_in_upload_failed(csms, tmp_path, journal):
    # %0D%0A decodes to a line break in the FTP command (ftplib refuses to send it, with
    # a ValueError): the charger must still end its upload, not stay Uploading.
    (tmp_path / "diag").mkdir()
    charger = recording_charger("DG-CRLF", csms, journal)
    with ftp_server(tmp_path) as ftp:
        async with connected(charger):
            await csms.get_diagnostics("DG-CRLF", ftp.url("diag%0D%0ADELE%20x/"), retries=0)
            assert await finished(csms, "DG-CRLF", 2) == ["Uploading", "UploadFailed"]
            await csms.call(
                "DG-CRLF", call.TriggerMessage(requested_message="DiagnosticsStatusNotification")
            )
            assert await finished(csms, "DG-CRLF", 3) == ["Uploading", "UploadFailed", "Idle"]


async def test_a_location_that_is_no_url_is_named_as_given_in_the_log(csms, journal, caplog):
    """QA: GetDiagnostics {"location":"not a url"} was logged as "unsupported location
    ://not a url": rebuilt from its URL parts, what the CSMS sent was lost."""
    caplog.set_level(logging.INFO, logger="simulator")
    charger = recording_charger("DG-NOURL", csms, journal)
    async with connected(charger):
        await csms.get_diagnostics("DG-NOURL", "not a url", retries=0)
        assert await finished(csms, "DG-NOURL", 2) == ["Uploading", "UploadFailed"]
    assert "unsupported location 'not a url': http, https or ftp only" in caplog.text
    assert "://not a url" not in caplog.text


def test_a_location_that_is_no_url_is_shown_without_what_may_be_a_login():
    from simulator.runtime.transfers import shown

    assert shown("ftp://fw:s3cret@10.0.0.1/up/") == "ftp://10.0.0.1/up/"
    assert shown("fw:s3cret@host/up") == "'host/up'"
    assert shown("") == "''"


async def test_a_newer_request_replaces_an_upload_still_retrying_and_closes_its_status(
    csms, files, journal, caplog
):
    """QA: four GetDiagnostics in a row got four Uploading and one UploadFailed: the
    earlier uploads stopped, with nothing said. Each now ends before the next begins."""
    caplog.set_level(logging.INFO, logger="simulator.core")
    files.failures["slow/"] = 10
    charger = recording_charger("DG-TWICE", csms, journal)
    async with connected(charger):
        first = await csms.get_diagnostics(
            "DG-TWICE", f"{files.url}/slow/", retries=5, retry_interval=600
        )
        await wait_until(lambda: len(files.requests) == 1, message="the first attempt")
        second = await csms.get_diagnostics("DG-TWICE", f"{files.url}/fast/", retries=0)
        assert await finished(csms, "DG-TWICE", 4) == [
            "Uploading",
            "UploadFailed",
            "Uploading",
            "Uploaded",
        ]
    assert files.requests == [("PUT", f"slow/{first}"), ("PUT", f"fast/{second}")]
    assert (
        "DG-TWICE: the running diagnostics job is replaced by a newer request; it ends as "
        "UploadFailed" in caplog.text
    )
