"""SignedUpdateFirmware / SignedFirmwareStatusNotification (OCPP 1.6 security whitepaper,
edition 3): the charger checks the signing certificate against its installed
ManufacturerRootCertificate, really downloads the image from HTTP and FTP servers on
loopback, verifies its signature, installs it and reboots into it; and each failure path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simulator.csms.certificate_authority import CertificateAuthority
from simulator.ocpp16.schema_check import load_validator
from tests.engine import connected, runtime_charger, wait_until
from tests.file_servers import ftp_server
from tests.test_certificates import security_events
from tests.test_firmware import IMAGE, boots, finished

MF_ROOT = "ManufacturerRootCertificate"
SIGNED = [
    "Downloading",
    "Downloaded",
    "SignatureVerified",
    "Installing",
    "InstallRebooting",
    "Installed",
]


@pytest.fixture(scope="module")
def manufacturer():
    return CertificateAuthority("ChargeSim Manufacturer Root")


@pytest.fixture(scope="module")
def signer(manufacturer):
    return manufacturer.firmware_signer()


async def test_a_signed_update_is_verified_installed_and_booted_into(
    csms, files, manufacturer, signer
):
    url = files.publish("signed/chargesim-anything.bin", IMAGE)
    charger = runtime_charger("SFW-1", csms.url, evses=1, firmware_version="1.0.0")
    async with connected(charger):
        assert await csms.install_certificate("SFW-1", manufacturer.root_pem, MF_ROOT) == (
            "Accepted"
        )
        mark = len(csms.log)
        status = await csms.signed_update_firmware(
            "SFW-1", url, signer.certificate_pem, signer.sign(IMAGE), request_id=7
        )
        assert status == "Accepted"
        assert await finished(csms, "SFW-1", len(SIGNED)) == SIGNED
        await wait_until(lambda: boots(csms, "SFW-1", mark), timeout=10, message="the reboot")
        assert boots(csms, "SFW-1", mark)[0]["firmwareVersion"] == "2.4.0"
    request_ids = {
        e.payload.get("requestId")
        for e in csms.log
        if e.cp_id == "SFW-1" and e.action == "SignedFirmwareStatusNotification"
        if e.message_type == 2
    }
    assert request_ids == {7}


async def test_a_signed_update_over_ftp(csms, tmp_path, manufacturer, signer):
    image = b"\x7fELF" + bytes(2048)
    (tmp_path / "chargesim-3.3.0.bin").write_bytes(image)
    charger = runtime_charger("SFW-2", csms.url, evses=1)
    with ftp_server(tmp_path) as ftp:
        async with connected(charger):
            await csms.install_certificate("SFW-2", manufacturer.root_pem, MF_ROOT)
            mark = len(csms.log)
            status = await csms.signed_update_firmware(
                "SFW-2", ftp.url("chargesim-3.3.0.bin"), signer.certificate_pem, signer.sign(image)
            )
            assert status == "Accepted"
            assert await finished(csms, "SFW-2", len(SIGNED)) == SIGNED
            await wait_until(lambda: boots(csms, "SFW-2", mark), timeout=10, message="reboot")
    assert boots(csms, "SFW-2", mark)[0]["firmwareVersion"] == "3.3.0"


async def test_a_signing_certificate_no_installed_root_issued_is_refused(
    csms, files, manufacturer, signer
):
    url = files.publish("chargesim-5.0.0.bin", IMAGE)
    impostor = CertificateAuthority("Impostor Root").firmware_signer()
    charger = runtime_charger("SFW-3", csms.url, evses=1)
    async with connected(charger):
        # No ManufacturerRootCertificate installed yet: nothing can vouch for the signer.
        answer = await csms.signed_update_firmware(
            "SFW-3", url, signer.certificate_pem, signer.sign(IMAGE)
        )
        assert answer == "InvalidCertificate"
        await csms.install_certificate("SFW-3", manufacturer.root_pem, MF_ROOT)
        answer = await csms.signed_update_firmware(
            "SFW-3", url, impostor.certificate_pem, impostor.sign(IMAGE)
        )
        assert answer == "InvalidCertificate"
        await wait_until(
            lambda: security_events(csms, "SFW-3").count("InvalidFirmwareSigningCertificate") == 2,
            message="two security events",
        )
    assert files.requests == []  # nothing downloaded
    assert "SFW-3" not in csms.firmware_statuses


async def test_a_wrong_signature_ends_in_invalid_signature(
    csms, files, manufacturer, signer, caplog
):
    """The location's password and query (a signed URL's signature) stay out of the security
    event (its techInfo, sent to the CSMS, logged, uploaded with the security log, shown on
    the page)."""
    files.credentials = ("fw", "Secret-Pw-1")
    url = files.publish("chargesim-6.0.0.bin", IMAGE).replace("://", "://fw:Secret-Pw-1@", 1)
    url += "?sig=Secret-Sig-1"
    charger = runtime_charger("SFW-4", csms.url, evses=1, firmware_version="1.0.0")
    async with connected(charger):
        await csms.install_certificate("SFW-4", manufacturer.root_pem, MF_ROOT)
        mark = len(csms.log)
        tampered = signer.sign(IMAGE + b"!")  # a signature of another image
        answer = await csms.signed_update_firmware("SFW-4", url, signer.certificate_pem, tampered)
        assert answer == "Accepted"
        assert await finished(csms, "SFW-4", 3) == ["Downloading", "Downloaded", "InvalidSignature"]
        await wait_until(
            lambda: "InvalidFirmwareSignature" in security_events(csms, "SFW-4"),
            message="the security event",
        )
        assert boots(csms, "SFW-4", mark) == [] and charger.spec.firmware_version == "1.0.0"
    (event,) = [
        e.payload
        for e in csms.log
        if e.action == "SecurityEventNotification"
        and e.message_type == 2
        and e.payload["type"] == "InvalidFirmwareSignature"
    ]
    assert event["techInfo"].endswith("/chargesim-6.0.0.bin")
    for secret in ("Secret-Pw-1", "Secret-Sig-1"):
        assert secret not in event["techInfo"]
        assert all(secret not in (e.tech_info or "") for e in charger.security_log)
        assert secret not in caplog.text


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        ("DownloadFailed", ["Downloading", "DownloadFailed"]),
        ("InstallationFailed", [*SIGNED[:4], "InstallationFailed"]),
        ("InvalidSignature", ["Downloading", "Downloaded", "InvalidSignature"]),
    ],
)
async def test_signed_updates_fail_as_the_charger_is_set_to(
    csms, files, manufacturer, signer, failure, expected
):
    url = files.publish("chargesim-7.0.0.bin", IMAGE)
    charger = runtime_charger("SFW-5", csms.url, evses=1, firmware_failure=failure)
    async with connected(charger):
        await csms.install_certificate("SFW-5", manufacturer.root_pem, MF_ROOT)
        answer = await csms.signed_update_firmware(
            "SFW-5", url, signer.certificate_pem, signer.sign(IMAGE), retries=0
        )
        assert answer == "Accepted"
        assert await finished(csms, "SFW-5", len(expected)) == expected
        assert charger.spec.firmware_version == "1.0.0"


def signed_statuses(csms, cp_id):
    """(status, requestId) of each SignedFirmwareStatusNotification the charger sent."""
    return [
        (e.payload["status"], e.payload.get("requestId"))
        for e in csms.log
        if e.cp_id == cp_id
        and e.message_type == 2
        and e.action == "SignedFirmwareStatusNotification"
    ]


FAR = "2099-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("cp_id", "older", "ended"),
    [
        # The image never arrived: the download failed.
        ("SFW-6", {"retrieve_date": FAR}, [("DownloadScheduled", 1), ("DownloadFailed", 1)]),
        (
            "SFW-6R",  # every attempt meets a 503; the next is ten minutes away
            {"retries": 5, "retry_interval": 600},
            [("Downloading", 1), ("DownloadFailed", 1)],
        ),
        # The image arrived and verified but was never installed.
        (
            "SFW-6I",
            {"install_date": FAR},
            [
                ("Downloading", 1),
                ("Downloaded", 1),
                ("SignatureVerified", 1),
                ("InstallScheduled", 1),
                ("InstallationFailed", 1),
            ],
        ),
    ],
)
async def test_a_signed_update_replacing_a_running_one_is_accepted_canceled_and_ends_it(
    csms, files, manufacturer, signer, cp_id, older, ended
):
    """AcceptedCanceled names no requestId: the cancelled update's last status gets its end
    under its own requestId (the whitepaper's FirmwareStatusEnumType has no Canceled),
    before the newer request's first status."""
    files.failures["unreachable/"] = 100
    older_url = files.publish("unreachable/chargesim-8.0.0.bin", IMAGE)
    if "retries" not in older:
        older_url = files.publish("chargesim-8.0.0.bin", IMAGE)
    url = files.publish("chargesim-8.0.1.bin", IMAGE)
    charger = runtime_charger(cp_id, csms.url, evses=1)
    async with connected(charger):
        await csms.install_certificate(cp_id, manufacturer.root_pem, MF_ROOT)
        first = await csms.signed_update_firmware(
            cp_id, older_url, signer.certificate_pem, signer.sign(IMAGE), **older
        )
        assert first == "Accepted"
        await finished(csms, cp_id, len(ended) - 1)
        now = await csms.signed_update_firmware(
            cp_id, url, signer.certificate_pem, signer.sign(IMAGE), request_id=2
        )
        assert now == "AcceptedCanceled"
        await wait_until(
            lambda: signed_statuses(csms, cp_id)[-1:] == [("Installed", 2)],
            message="the newer update installed",
        )
    assert signed_statuses(csms, cp_id) == [*ended, *((status, 2) for status in SIGNED)]
    validate = load_validator("SignedFirmwareStatusNotification")
    for status, request_id in signed_statuses(csms, cp_id):
        validate({"status": status, "requestId": request_id})


async def test_a_signed_update_installs_no_earlier_than_its_install_date(
    csms, files, manufacturer, signer
):
    url = files.publish("chargesim-8.1.0.bin", IMAGE)
    charger = runtime_charger("SFW-7", csms.url, evses=1)
    async with connected(charger):
        await csms.install_certificate("SFW-7", manufacturer.root_pem, MF_ROOT)
        install = datetime.now(UTC) + timedelta(seconds=2)
        # the install date goes on the wire to the millisecond: compare with what was sent
        install = install.replace(microsecond=install.microsecond // 1000 * 1000)
        answer = await csms.signed_update_firmware(
            "SFW-7", url, signer.certificate_pem, signer.sign(IMAGE), install_date=install
        )
        assert answer == "Accepted"
        statuses = await finished(csms, "SFW-7", 1 + len(SIGNED))
    assert statuses == [*SIGNED[:3], "InstallScheduled", *SIGNED[3:]]
    [installing] = [
        e
        for e in csms.log
        if e.cp_id == "SFW-7" and e.message_type == 2 and e.payload.get("status") == "Installing"
    ]
    assert installing.at >= install
