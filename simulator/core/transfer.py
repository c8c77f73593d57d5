"""Files a charge point moves: firmware it downloads, diagnostics it uploads.

The core decides when and what (the firmware and diagnostics state machines in
`firmware`); moving the bytes is I/O, so the runtime injects a `Transfers` into each
`Charger` (HTTP(S) and FTP clients that do not block the event loop). This module holds
the vocabulary both sides share: the statuses the charger reports, the failure modes an
operator can choose per charger, and the interface.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol


class FirmwareStatus(StrEnum):
    """Where a firmware update stands (reported as it changes; Idle only when asked)."""

    IDLE = "Idle"
    DOWNLOADING = "Downloading"
    DOWNLOADED = "Downloaded"
    DOWNLOAD_FAILED = "DownloadFailed"
    INSTALLING = "Installing"
    INSTALLED = "Installed"
    INSTALLATION_FAILED = "InstallationFailed"
    # Signed updates only (SignedFirmwareStatusNotification, security whitepaper)
    DOWNLOAD_SCHEDULED = "DownloadScheduled"
    SIGNATURE_VERIFIED = "SignatureVerified"
    INVALID_SIGNATURE = "InvalidSignature"
    INSTALL_SCHEDULED = "InstallScheduled"
    # Installed and about to reboot into it (the whitepaper lets a charger skip it; a real
    # one that can say it does, and a CSMS then knows the reboot is expected).
    INSTALL_REBOOTING = "InstallRebooting"


FIRMWARE_BUSY = frozenset(
    {
        FirmwareStatus.DOWNLOADING,
        FirmwareStatus.DOWNLOADED,
        FirmwareStatus.INSTALLING,
        FirmwareStatus.DOWNLOAD_SCHEDULED,
        FirmwareStatus.SIGNATURE_VERIFIED,
        FirmwareStatus.INSTALL_SCHEDULED,
        FirmwareStatus.INSTALL_REBOOTING,
    }
)


class DiagnosticsStatus(StrEnum):
    IDLE = "Idle"
    UPLOADING = "Uploading"
    UPLOADED = "Uploaded"
    UPLOAD_FAILED = "UploadFailed"


class LogStatus(StrEnum):
    """Where a GetLog upload stands (the whitepaper's UploadLogStatusEnumType)."""

    IDLE = "Idle"  # only when the Central System asks (ExtendedTriggerMessage)
    UPLOADING = "Uploading"
    UPLOADED = "Uploaded"
    UPLOAD_FAILURE = "UploadFailure"
    BAD_MESSAGE = "BadMessage"  # the server found the request malformed (HTTP 400)
    NOT_SUPPORTED_OPERATION = "NotSupportedOperation"  # it does not take uploads (405, 501)
    PERMISSION_DENIED = "PermissionDenied"  # it refused our credentials (401, 403, FTP 530)


class FirmwareFailure(StrEnum):
    """A failure an operator makes a charger simulate on every firmware update."""

    NONE = ""
    DOWNLOAD_FAILED = "DownloadFailed"  # every download attempt fails
    INSTALLATION_FAILED = "InstallationFailed"  # downloads, then fails to install
    # Signed updates (security whitepaper): the image's checksum comes out wrong, so its
    # signature never verifies (InvalidSignature); unsigned updates are not affected.
    INVALID_SIGNATURE = "InvalidSignature"


class TransferFailed(Exception):
    """A download or upload did not succeed; the message says why, without credentials.
    `status`: the server's answer when it gave one (an HTTP status, an FTP reply code)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Transfers(Protocol):
    """What the runtime gives the core to move files (`runtime.transfers.FileTransfers`)."""

    async def download(self, url: str, *, ca_bundle: str = "") -> bytes:
        """The file at an http(s):// or ftp:// URL; raises TransferFailed."""
        ...

    async def upload(
        self, url: str, file_name: str, data: bytes, *, method: str = "PUT", ca_bundle: str = ""
    ) -> None:
        """Store `data` as `file_name` at an http(s):// (PUT or POST) or ftp:// URL;
        raises TransferFailed."""
        ...

    def journal(
        self, charge_point_id: str, start: float | None, stop: float | None
    ) -> dict[str, Any]:
        """What the process recorded about a charger between two instants (epoch seconds;
        None: unbounded): its recent log lines and OCPP frames, for a diagnostics file."""
        ...
