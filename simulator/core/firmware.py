"""Firmware updates and diagnostics uploads, as a charge point runs them.

Plain Python: the bytes move through the charger's injected `transfer.Transfers`, time
passes on its injected clock. OCPP 1.6 sections 3.11 / 3.15 and 5.9 / 5.19:

UpdateFirmware
    Wait until retrieveDate, then download (1 + `retries` attempts, `retry_interval`
    seconds apart), reporting Downloading, then Downloaded or DownloadFailed. Install once
    no transaction is going on (Installing, or InstallationFailed), then reboot into it:
    the next BootNotification carries the new firmwareVersion, and once it is accepted the
    new firmware reports Installed (and the FirmwareUpdated security event), as a real
    charger can only after running the new image. The version is read
    from the image (a first line ``ChargeSim firmware <version>``), else from the file
    name (``chargesim-2.1.0.bin``), else it is the old one with the image's digest; an
    empty file cannot be installed. An operator may make a charger fail on purpose
    (`FirmwareFailure`): every download fails, or the installation does.

GetDiagnostics
    The charger answers with the file name at once, then writes a diagnostics file (its
    identity, configuration and connectors, and the log lines and OCPP frames the process
    kept between startTime and stopTime) and uploads it (1 + `retries` attempts),
    reporting Uploading, then Uploaded or UploadFailed.

Each job is one task the charger owns (`Charger.start_job`); a new request of the same kind
replaces a job still running, except an update already installing, and closes the older
one's open status first (a download as DownloadFailed, an image waiting to install as
InstallationFailed, an upload as UploadFailed). A signed update also answers
AcceptedCanceled, and the one it replaces ends under its own requestId
(`Charger._replace_job`: the whitepaper's FirmwareStatusEnumType has no Canceled).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from cryptography import x509

from simulator.contract.url_login import without_login
from simulator.core.certificates import verify_signature
from simulator.core.charge_point import Charger
from simulator.core.clock import now_iso
from simulator.core.protocol import StopReason
from simulator.core.timers import sleep
from simulator.core.transfer import (
    DiagnosticsStatus,
    FirmwareFailure,
    FirmwareStatus,
    TransferFailed,
)

log = logging.getLogger(__name__)

# A signed update due sooner than this is not reported as scheduled (a retrieveDateTime of
# "now" arrives a few milliseconds ahead of the charger's synchronised clock).
SCHEDULED_AFTER = 1.0
# When the central system leaves them out, the charger decides (1.6 says so).
DEFAULT_RETRIES = 2
DEFAULT_RETRY_INTERVAL = 30
# While a transaction is going on, how often the charger looks whether it may install.
IDLE_POLL_SECONDS = 1.0

_HEADER = re.compile(rb"\AChargeSim firmware ([\x21-\x7e]{1,50})\s*(?:\n|\Z)", re.IGNORECASE)
_VERSION_IN_NAME = re.compile(r"(\d+(?:\.\d+)+(?:[-+][0-9A-Za-z.]+)?)")
_MAX_VERSION = 50  # BootNotification's firmwareVersion is a CiString50
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class FirmwareSignature:
    """What a SignedUpdateFirmware adds: the image's signature and the certificate (already
    checked against an installed ManufacturerRootCertificate) whose key made it."""

    certificate: x509.Certificate
    signature: bytes
    request_id: int
    install_at: float | None = None  # installDateTime, epoch seconds


@dataclass(frozen=True, slots=True)
class FirmwareRequest:
    location: str
    retrieve_at: float  # epoch seconds on the charger's clock
    retries: int = DEFAULT_RETRIES
    retry_interval: int = DEFAULT_RETRY_INTERVAL
    signed: FirmwareSignature | None = None  # a SignedUpdateFirmware


@dataclass(frozen=True, slots=True)
class DiagnosticsRequest:
    location: str
    file_name: str
    start: float | None = None  # epoch seconds
    stop: float | None = None
    retries: int = DEFAULT_RETRIES
    retry_interval: int = DEFAULT_RETRY_INTERVAL


def firmware_version_of(data: bytes, location: str, current: str) -> str | None:
    """The version an image installs, or None when it cannot be installed (empty)."""
    if not data:
        return None
    header = _HEADER.match(data[:200])
    if header is not None:
        return header.group(1).decode("ascii")
    name = unquote(urlsplit(location).path.rpartition("/")[2])
    found = _VERSION_IN_NAME.search(name)
    if found is not None:
        return found.group(1)[:_MAX_VERSION]
    digest = hashlib.sha256(data).hexdigest()[:8]
    return f"{current[: _MAX_VERSION - 9]}+{digest}"


def diagnostics_file_name(charger: Charger) -> str:
    now = charger.now()  # to the millisecond: two requests in one second get two files
    stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"
    return f"{charger.id}-diagnostics-{stamp}.json"


async def update_firmware(charger: Charger, request: FirmwareRequest) -> None:
    """The whole UpdateFirmware procedure; ends with a reboot when it succeeds.

    A SignedUpdateFirmware (`request.signed`) runs the same steps, reported in
    SignedFirmwareStatusNotification, with two more: once downloaded, the image's signature
    is checked with the signing certificate's key (SignatureVerified, or InvalidSignature
    and the security event InvalidFirmwareSignature, and the update ends there), and it is
    installed no earlier than its installDateTime."""
    signed = request.signed

    async def report(status: FirmwareStatus) -> None:
        if signed is None:
            await charger.report_firmware(status)
        else:
            await charger.report_signed_firmware(status, signed.request_id)

    try:
        await _update_firmware(charger, request, report)
    finally:
        # Replaced or cancelled mid-wait (a new request, a reboot): it waits for nothing
        # any more. Not published from here: a charger a reboot replaced must not publish.
        charger.firmware_waiting = None


async def _update_firmware(
    charger: Charger,
    request: FirmwareRequest,
    report: Callable[[FirmwareStatus], Awaitable[None]],
) -> None:
    transfers = charger.transfers
    signed = request.signed
    delay = request.retrieve_at - charger.wall_time()
    if delay >= SCHEDULED_AFTER and signed is not None:
        await report(FirmwareStatus.DOWNLOAD_SCHEDULED)
    if delay > 0:
        log.info("%s: firmware download in %.0f s (retrieveDate)", charger.id, delay)
        charger.firmware_waits("the download starts at its retrieveDate", request.retrieve_at)
        await charger.sleep_until(request.retrieve_at)
        charger.firmware_waits(None)
    try:
        failure = FirmwareFailure(charger.spec.firmware_failure or "")
    except ValueError:  # a value no form let through: nothing to simulate
        failure = FirmwareFailure.NONE

    async def download() -> bytes:
        if failure is FirmwareFailure.DOWNLOAD_FAILED:
            raise TransferFailed("the charger is set to fail every firmware download")
        if transfers is None:
            raise TransferFailed("this charger cannot download files")
        return await transfers.download(request.location, ca_bundle=charger.spec.ca_bundle_path)

    await report(FirmwareStatus.DOWNLOADING)
    data = await attempts(
        charger, "firmware download", download, request.retries, request.retry_interval
    )
    if data is None:
        await report(FirmwareStatus.DOWNLOAD_FAILED)
        return
    await report(FirmwareStatus.DOWNLOADED)
    if signed is not None:
        wrong_checksum = failure is FirmwareFailure.INVALID_SIGNATURE
        if wrong_checksum or not verify_signature(signed.certificate, signed.signature, data):
            log.info("%s: the firmware's signature does not verify", charger.id)
            # The location without its login or query (a signed URL's signature is one):
            # the event goes to the CSMS, the log, the security log's uploads and the pages.
            charger.security_event(
                "InvalidFirmwareSignature",
                without_login(request.location).partition("?")[0][:200],
            )
            await report(FirmwareStatus.INVALID_SIGNATURE)
            return
        await report(FirmwareStatus.SIGNATURE_VERIFIED)
        wait = (signed.install_at or 0.0) - charger.wall_time()
        if wait >= SCHEDULED_AFTER:
            await report(FirmwareStatus.INSTALL_SCHEDULED)
        if wait > 0:
            charger.firmware_waits(
                "the installation starts at its installDateTime", signed.install_at or 0.0
            )
            await charger.sleep_until(signed.install_at or 0.0)
            charger.firmware_waits(None)
    waiting_for: list[int] = []
    while charger.transactions:  # never during a session: install once it is over
        if sorted(charger.transactions) != waiting_for:
            waiting_for = sorted(charger.transactions)
            which = ", ".join(map(str, waiting_for))
            charger.firmware_waits(
                f"the installation starts once the transaction on connector "
                f"{which} ends (never during a session)"
                if len(waiting_for) == 1
                else f"the installation starts once the transactions on connectors "
                f"{which} end (never during a session)"
            )
        await sleep(charger.clock, IDLE_POLL_SECONDS)
    if waiting_for:
        charger.firmware_waits(None)
    await report(FirmwareStatus.INSTALLING)
    version = firmware_version_of(data, request.location, charger.spec.firmware_version)
    if failure is FirmwareFailure.INSTALLATION_FAILED or version is None:
        why = "set to fail" if version is not None else "the image is empty"
        log.info("%s: firmware installation failed (%s)", charger.id, why)
        await report(FirmwareStatus.INSTALLATION_FAILED)
        return
    log.info("%s: firmware %s installed; rebooting into it", charger.id, version)
    if signed is not None:
        await report(FirmwareStatus.INSTALL_REBOOTING)
    # A session begun while it was installing ends with the reboot; its StopTransaction
    # goes out first if the CSMS is there (`Charger.restart`; it is durable anyway).
    for connector_id in list(charger.transactions):
        charger.stop_transaction(connector_id, StopReason.REBOOT)
    # Installed is said by the new firmware, after the reboot's BootNotification.
    await charger.install_firmware(version, None if signed is None else signed.request_id)


def diagnostics_file(charger: Charger, start: float | None, stop: float | None) -> bytes:
    """The diagnostics file: who the charger is, its state now, and what the process
    recorded of it between `start` and `stop` (its log lines and OCPP frames)."""

    def stamp(moment: float | None) -> str | None:
        return None if moment is None else now_iso(datetime.fromtimestamp(moment, UTC))

    spec = charger.spec
    journal = (
        charger.transfers.journal(charger.id, start, stop) if charger.transfers is not None else {}
    )
    document = {
        "chargePointId": charger.id,
        "generatedAt": now_iso(charger.now()),
        "window": {"startTime": stamp(start), "stopTime": stamp(stop)},
        "identity": {
            "vendor": spec.vendor,
            "model": spec.model,
            "serialNumber": spec.serial_number,
            "firmwareVersion": spec.firmware_version,
        },
        "boot": str(charger.boot),
        "link": str(charger.link),
        "connectors": [
            {
                "connectorId": evse.connector_id,
                "status": str(evse.status),
                "errorCode": evse.error_code,
                "registerWh": int(evse.register_wh),
                "transactionId": evse.transaction_id,
            }
            for evse in charger.evses
        ],
        # The configuration holds no secret: the AuthorizationKey lives on the spec.
        "configuration": dict(sorted(charger.config.items())),
        "localListVersion": charger.local_list.reported_version,
        "reservations": charger.reservations.records(),
        **journal,
    }
    return json.dumps(document, indent=1).encode()


async def upload_diagnostics(charger: Charger, request: DiagnosticsRequest) -> None:
    """Write the diagnostics file and upload it; Uploading, then Uploaded or UploadFailed."""
    data = diagnostics_file(charger, request.start, request.stop)

    async def upload() -> bool:
        await upload_file(charger, request.location, request.file_name, data)
        return True

    await charger.report_diagnostics(DiagnosticsStatus.UPLOADING)
    done = await attempts(
        charger, "diagnostics upload", upload, request.retries, request.retry_interval
    )
    status = DiagnosticsStatus.UPLOAD_FAILED if done is None else DiagnosticsStatus.UPLOADED
    await charger.report_diagnostics(status)


async def upload_file(charger: Charger, location: str, file_name: str, data: bytes) -> None:
    """One upload of a file the charger wrote (diagnostics, a log) to where the central
    system asked, the charger's way (its HTTP method, its CA bundle); TransferFailed if not."""
    transfers = charger.transfers
    if transfers is None:
        raise TransferFailed("this charger cannot upload files")
    await transfers.upload(
        location,
        file_name,
        data,
        method=charger.spec.diagnostics_upload_method,
        ca_bundle=charger.spec.ca_bundle_path,
    )


async def attempts(
    charger: Charger,
    what: str,
    transfer: Callable[[], Awaitable[_T]],
    retries: int,
    interval: int,
) -> _T | None:
    """Try a transfer 1 + `retries` times, `interval` seconds apart (on the charger's
    clock); its result, or None when every attempt failed."""
    attempts = 1 + max(retries, 0)
    for attempt in range(1, attempts + 1):
        try:
            return await transfer()
        except TransferFailed as exc:
            log.info("%s: %s %d/%d failed: %s", charger.id, what, attempt, attempts, exc)
            if attempt < attempts:
                await sleep(charger.clock, interval)
    return None
