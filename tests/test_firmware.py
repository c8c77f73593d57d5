"""Firmware Management, UpdateFirmware (OCPP 1.6 sections 3.11, 5.19, 6.x): the charger
really downloads from HTTP(S) and FTP servers on loopback, reports its progress in
FirmwareStatusNotification and reboots into the new firmware."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from datetime import UTC, datetime, timedelta

import pytest
import trustme
from channels.db import database_sync_to_async
from ocpp.v16 import call

from chargers.models import Charger as ChargerRow
from simulator.core.firmware import firmware_version_of
from simulator.csms.files import FileServer
from simulator.runtime.events import EventPublisher
from tests.cast import make_charger
from tests.engine import COMPACT, connected, runtime_charger, wait_until
from tests.file_servers import ftp_server
from tests.timeline import StoppedDateClock, Timeline, TimelineClock, TimelineTransfers
from tests.workers import running

SUCCESS = ["Downloading", "Downloaded", "Installing", "Installed"]
IMAGE = b"ChargeSim firmware 2.4.0\n" + bytes(range(256)) * 64


def boots(csms, cp_id, after=0):
    return [
        e.payload
        for e in csms.log[after:]
        if e.cp_id == cp_id
        and e.direction == "in"
        and e.message_type == 2
        and e.action == "BootNotification"
    ]


async def finished(csms, cp_id, count, timeout=10.0):
    await wait_until(
        lambda: len(csms.firmware_statuses.get(cp_id, [])) >= count,
        timeout=timeout,
        message=f"{count} FirmwareStatusNotifications from {cp_id}",
    )
    return csms.firmware_statuses[cp_id]


async def test_an_update_over_http_is_downloaded_installed_and_booted_into(csms, files):
    url = files.publish("images/chargesim-anything.bin", IMAGE)
    charger = runtime_charger("FW-1", csms.url, evses=1, firmware_version="1.0.0")
    async with connected(charger):
        mark = len(csms.log)
        await csms.update_firmware("FW-1", url)
        assert await finished(csms, "FW-1", 4) == SUCCESS
        # Then it reboots: a new BootNotification with the version the image carries.
        await wait_until(lambda: boots(csms, "FW-1", mark), timeout=10, message="the reboot")
        assert boots(csms, "FW-1", mark)[0]["firmwareVersion"] == "2.4.0"
        assert charger.spec.firmware_version == "2.4.0"
    assert files.requests == [("GET", "images/chargesim-anything.bin")]


async def test_an_update_over_ftp_with_a_login_never_shows_the_password(csms, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "chargesim-3.1.7.bin").write_bytes(b"\x7fELF" + bytes(4096))
    publisher = EventPublisher()
    charger = runtime_charger("FW-2", csms.url, evses=1, listener=publisher)
    with ftp_server(tmp_path) as ftp:
        async with connected(charger):
            mark = len(csms.log)
            await csms.update_firmware("FW-2", ftp.url("fw/chargesim-3.1.7.bin"))
            assert await finished(csms, "FW-2", 4) == SUCCESS
            await wait_until(lambda: boots(csms, "FW-2", mark), timeout=10, message="reboot")
    # No header in the image: the version is the one in its file name.
    assert boots(csms, "FW-2", mark)[0]["firmwareVersion"] == "3.1.7"
    frames = " ".join(text for _at, _way, text in publisher.frames["FW-2"])
    assert '"UpdateFirmware"' in frames
    assert ftp.password not in frames and "charger:********@" in frames
    assert ftp.password not in caplog.text


async def test_an_ftp_login_with_a_line_break_ends_in_download_failed(csms, tmp_path):
    # ftplib refuses a command holding a line break (a ValueError, not an FTP error): the
    # update must still end, in DownloadFailed, not stay Downloading.
    charger = runtime_charger("FW-CRLF", csms.url, evses=1)
    with ftp_server(tmp_path) as ftp:
        async with connected(charger):
            url = f"ftp://charger%0D%0A:{ftp.password}@127.0.0.1:{ftp.port}/fw.bin"
            await csms.update_firmware("FW-CRLF", url, retries=0)
            assert await finished(csms, "FW-CRLF", 2) == ["Downloading", "DownloadFailed"]


async def test_a_signed_urls_signature_never_shows(csms, files, caplog):
    # Pre-signed storage URLs (S3, GCS, Azure SAS) carry their access in the query: whoever
    # reads the message log or a log line could fetch the image with it.
    caplog.set_level(logging.INFO)
    url = files.publish("chargesim-4.0.0.bin", IMAGE)
    url += "?X-Amz-Credential=AKIAS3CRET&X-Amz-Signature=5s3cret5&token=t0ks3cret&v=4"
    publisher = EventPublisher()
    charger = runtime_charger("FW-SIGNED", csms.url, evses=1, listener=publisher)
    async with connected(charger):
        await csms.update_firmware("FW-SIGNED", url)
        assert await finished(csms, "FW-SIGNED", 4) == SUCCESS
    assert files.requests == [("GET", "chargesim-4.0.0.bin")]
    frames = " ".join(text for _at, _way, text in publisher.frames["FW-SIGNED"])
    assert "X-Amz-Signature=********&token=********&v=4" in frames
    assert "S3CRET" not in frames.upper()
    assert "S3CRET" not in caplog.text.upper()


async def test_an_https_download_trusts_the_chargers_ca_bundle(csms, tmp_path):
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with FileServer(ssl_context=context) as secure:
        url = secure.publish("chargesim-5.0.0.bin", IMAGE)
        assert url.startswith("https://")
        trusting = runtime_charger("FW-3", csms.url, evses=1, ca_bundle_path=str(bundle))
        async with connected(trusting):
            await csms.update_firmware("FW-3", url, retries=0)
            assert await finished(csms, "FW-3", 4) == SUCCESS
        # Without the CA the server is not trusted: the download fails.
        doubting = runtime_charger("FW-4", csms.url, evses=1)
        async with connected(doubting):
            await csms.update_firmware("FW-4", url, retries=0)
            assert await finished(csms, "FW-4", 2) == ["Downloading", "DownloadFailed"]


async def test_a_failing_download_is_retried_retry_interval_apart(csms, files):
    """Each retry waits the retryInterval on the charger's clock (seen on its timeline,
    not timed on the host's)."""
    url = files.publish("chargesim-2.0.1.bin", IMAGE)
    files.failures["chargesim-2.0.1.bin"] = 2
    timeline = Timeline()
    charger = runtime_charger(
        "FW-5",
        csms.url,
        evses=1,
        clock=TimelineClock(timeline),
        transfers=TimelineTransfers(timeline, timeout=5.0),
    )
    async with connected(charger):
        await csms.update_firmware("FW-5", url, retries=2, retry_interval=1)
        assert await finished(csms, "FW-5", 4) == SUCCESS
    assert [path for _method, path in files.requests] == ["chargesim-2.0.1.bin"] * 3
    assert timeline.of("download", "wait 1", "waited 1") == [
        *("download", "wait 1", "waited 1") * 2,
        "download",
    ]


async def test_a_download_that_keeps_failing_ends_in_download_failed(csms, files):
    url = files.publish("chargesim-2.0.2.bin", IMAGE)
    files.failures["chargesim-2.0.2.bin"] = 10
    charger = runtime_charger("FW-6", csms.url, evses=1, firmware_version="1.0.0")
    async with connected(charger):
        mark = len(csms.log)
        await csms.update_firmware("FW-6", url, retries=1, retry_interval=0)
        assert await finished(csms, "FW-6", 2) == ["Downloading", "DownloadFailed"]
        await csms.update_firmware("FW-6", "sftp://127.0.0.1/fw.bin", retries=0)
        assert await finished(csms, "FW-6", 4) == ["Downloading", "DownloadFailed"] * 2
        # Nothing installed, no reboot.
        assert boots(csms, "FW-6", mark) == []
        assert charger.spec.firmware_version == "1.0.0"
    assert len(files.requests) == 2  # 1 + retries


async def test_the_download_waits_for_a_retrieve_date_in_the_future(csms, files):
    """The charger waits on its clock until the retrieveDate, then downloads (seen on its
    timeline; its date stands still, so the wait is exactly the 2 s to that date)."""
    url = files.publish("chargesim-2.2.0.bin", IMAGE)
    timeline = Timeline()
    charger = runtime_charger(
        "FW-7",
        csms.url,
        evses=1,
        clock=StoppedDateClock(timeline, time.time()),
        transfers=TimelineTransfers(timeline, timeout=5.0),
    )
    async with connected(charger):
        retrieve = datetime.fromtimestamp(charger.wall_time() + 2, UTC).isoformat()
        await csms.update_firmware("FW-7", url, retrieve)
        assert await finished(csms, "FW-7", 4) == SUCCESS
    assert timeline.of("download", "wait 2", "waited 2") == ["wait 2", "waited 2", "download"]
    assert len(files.requests) == 1


@pytest.mark.parametrize(
    ("failure", "expected", "requests"),
    [
        ("DownloadFailed", ["Downloading", "DownloadFailed"], 0),
        (
            "InstallationFailed",
            ["Downloading", "Downloaded", "Installing", "InstallationFailed"],
            1,
        ),
    ],
)
async def test_a_charger_can_be_set_to_fail_its_updates(csms, files, failure, expected, requests):
    url = files.publish("chargesim-9.9.9.bin", IMAGE)
    charger = runtime_charger(
        "FW-8", csms.url, evses=1, firmware_version="1.0.0", firmware_failure=failure
    )
    async with connected(charger):
        mark = len(csms.log)
        await csms.update_firmware("FW-8", url, retries=0)
        assert await finished(csms, "FW-8", len(expected)) == expected
        assert boots(csms, "FW-8", mark) == [] and charger.spec.firmware_version == "1.0.0"
    assert len(files.requests) == requests


async def test_an_empty_image_cannot_be_installed(csms, files):
    url = files.publish("chargesim-4.0.0.bin", b"")
    charger = runtime_charger("FW-9", csms.url, evses=1, firmware_version="1.0.0")
    async with connected(charger):
        await csms.update_firmware("FW-9", url)
        assert await finished(csms, "FW-9", 4) == [
            "Downloading",
            "Downloaded",
            "Installing",
            "InstallationFailed",
        ]
        assert charger.spec.firmware_version == "1.0.0"


async def test_it_installs_only_once_the_transaction_is_over(csms, files):
    url = files.publish("chargesim-6.0.0.bin", IMAGE)
    charger = runtime_charger("FW-10", csms.url, evses=1)
    async with connected(charger):
        charger.plug_in(1, COMPACT)
        assert await charger.present_id_tag(1, "T1") == "Accepted"
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="start")
        mark = len(csms.log)
        await csms.update_firmware("FW-10", url)
        assert await finished(csms, "FW-10", 2) == ["Downloading", "Downloaded"]
        # Asked now, it says where it stands (not Idle: it is busy).
        await csms.call(
            "FW-10", call.TriggerMessage(requested_message="FirmwareStatusNotification")
        )
        assert await finished(csms, "FW-10", 3) == ["Downloading", "Downloaded", "Downloaded"]
        charger.stop_transaction(1)
        statuses = await finished(csms, "FW-10", 5)
        assert statuses[3:] == ["Installing", "Installed"]
        await wait_until(lambda: boots(csms, "FW-10", mark), timeout=10, message="the reboot")
        # The session ended before the installation began; the charger rebooted into the
        # new firmware, which then said it is installed (OCPP 1.6's sequence).
        events = [
            e.payload.get("status", e.action)
            for e in csms.log[mark:]
            if e.direction == "in" and e.message_type == 2 and e.cp_id == "FW-10"
        ]
        assert events.index("StopTransaction") < events.index("Installing")
        assert events.index("Installing") < events.index("BootNotification")
        assert events.index("BootNotification") < events.index("Installed")


async def test_a_newer_update_replaces_a_download_still_retrying_and_closes_its_status(
    csms, files, caplog
):
    """QA: an update still downloading stopped, with nothing said, when a second came: the
    CSMS kept reading Downloading. It now ends as DownloadFailed before the newer one."""
    caplog.set_level(logging.INFO, logger="simulator.core")
    url = files.publish("chargesim-3.0.0.bin", IMAGE)
    files.failures["chargesim-3.0.0.bin"] = 10
    charger = runtime_charger("FW-TWICE", csms.url, evses=1)
    async with connected(charger):
        await csms.update_firmware("FW-TWICE", url, retries=5, retry_interval=600)
        await wait_until(lambda: len(files.requests) == 1, message="the first attempt")
        later = datetime.now(UTC) + timedelta(hours=1)
        await csms.update_firmware("FW-TWICE", url, later)  # waits for its retrieveDate
        assert await finished(csms, "FW-TWICE", 2) == ["Downloading", "DownloadFailed"]
        await csms.call(
            "FW-TWICE", call.TriggerMessage(requested_message="FirmwareStatusNotification")
        )
        assert await finished(csms, "FW-TWICE", 3) == ["Downloading", "DownloadFailed", "Idle"]
    assert len(files.requests) == 1
    assert (
        "FW-TWICE: the running firmware job is replaced by a newer request; it ends as "
        "DownloadFailed" in caplog.text
    )


async def test_a_newer_update_replaces_an_image_waiting_to_install(csms, files):
    first = files.publish("chargesim-6.1.0.bin", IMAGE)
    second = files.publish("chargesim-6.2.0.bin", IMAGE.replace(b"2.4.0", b"6.2.0"))
    charger = runtime_charger("FW-WAIT", csms.url, evses=1)
    async with connected(charger):
        charger.plug_in(1, COMPACT)
        assert await charger.present_id_tag(1, "T1") == "Accepted"
        await wait_until(lambda: charger.evse(1).transaction_id is not None, message="start")
        await csms.update_firmware("FW-WAIT", first)
        assert await finished(csms, "FW-WAIT", 2) == ["Downloading", "Downloaded"]
        await csms.update_firmware("FW-WAIT", second)
        statuses = await finished(csms, "FW-WAIT", 5)
        assert statuses == [
            "Downloading",
            "Downloaded",
            "InstallationFailed",  # the first image is not installed
            "Downloading",
            "Downloaded",
        ]
        charger.stop_transaction(1)
        assert (await finished(csms, "FW-WAIT", 7))[5:] == ["Installing", "Installed"]
    assert charger.spec.firmware_version == "6.2.0"


async def test_an_update_already_installing_is_not_cancelled_by_a_newer_one():
    from simulator.core.charge_point import JOB_FIRMWARE
    from simulator.core.transfer import FirmwareStatus

    charger = runtime_charger("FW-INST", "ws://127.0.0.1:1/ocpp", evses=1)
    installing = asyncio.Event()
    charger.start_job(JOB_FIRMWARE, installing.wait())
    older = charger.jobs[JOB_FIRMWARE]
    charger.firmware_status = FirmwareStatus.INSTALLING  # rebooting into its image
    assert not charger.would_cancel(JOB_FIRMWARE)
    newer = asyncio.Event()
    charger.start_job(JOB_FIRMWARE, newer.wait())
    await asyncio.sleep(0)
    assert not older.cancelled() and not older.done()
    assert charger.jobs[JOB_FIRMWARE] is not older
    installing.set()
    newer.set()
    await asyncio.gather(older, charger.jobs[JOB_FIRMWARE])


async def test_a_triggered_firmware_status_is_idle_when_nothing_is_going_on(csms):
    charger = runtime_charger("FW-11", csms.url, evses=1)
    async with connected(charger):
        answer = await csms.call(
            "FW-11", call.TriggerMessage(requested_message="FirmwareStatusNotification")
        )
        assert answer.status == "Accepted"
        assert await finished(csms, "FW-11", 1) == ["Idle"]


def test_the_version_comes_from_the_image_the_file_name_or_the_digest():
    assert firmware_version_of(b"ChargeSim firmware 7.1.0-beta.2\nrest", "http://h/x.bin", "1") == (
        "7.1.0-beta.2"
    )
    assert firmware_version_of(b"\x00\x01", "ftp://h/dir/cs_8.0.3.img", "1") == "8.0.3"
    assert firmware_version_of(b"\x00\x01", "http://h/image.bin", "1.0.0") == "1.0.0+b413f47d"
    assert firmware_version_of(b"", "http://h/chargesim-9.0.0.bin", "1.0.0") is None


@pytest.mark.django_db(transaction=True)
async def test_the_new_firmware_version_is_stored_and_boots_after_a_restart(csms, files):
    await database_sync_to_async(make_charger)(
        "FW-DB", evses=1, csms_url=csms.url, firmware_version="1.0.0"
    )
    url = files.publish("chargesim-2.5.0.bin", IMAGE)
    async with running("FW-DB"):
        mark = len(csms.log)
        await csms.update_firmware("FW-DB", url)
        assert await finished(csms, "FW-DB", 4) == SUCCESS
        await wait_until(lambda: boots(csms, "FW-DB", mark), timeout=10, message="the reboot")
    row = await database_sync_to_async(ChargerRow.objects.get)(charge_point_id="FW-DB")
    assert row.firmware_version == "2.4.0"  # the image's header names it
    mark = len(csms.log)
    async with running("FW-DB"):
        assert boots(csms, "FW-DB", mark)[0]["firmwareVersion"] == "2.4.0"
