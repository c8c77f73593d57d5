"""GetLog, as a charge point runs it (OCPP 1.6 security whitepaper, edition 3).

Plain Python, the same path as GetDiagnostics (`firmware`): the charger answers with the
file name at once, writes the file, and uploads it through its injected
`transfer.Transfers` (1 + `retries` attempts, `retryInterval` seconds apart), reporting
LogStatusNotification Uploading, then Uploaded or, when every attempt failed, what the
last one met: PermissionDenied (the server refused our credentials), NotSupportedOperation
(it takes no uploads there), BadMessage (it found the request malformed), else
UploadFailure. Every notification carries the request's requestId.

- DiagnosticsLog: the diagnostics file of GetDiagnostics (the charger's state, and the log
  lines and OCPP frames the process kept) between oldestTimestamp and latestTimestamp.
- SecurityLog: the security events of the charger's security log in that window.

A GetLog while another upload runs cancels it and is answered AcceptedCanceled; the
cancelled upload's Uploading ends with UploadFailure and its own requestId
(`Charger._replace_job`: the whitepaper's UploadLogStatusEnumType has no Canceled).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from simulator.core.charge_point import JOB_LOG, Charger
from simulator.core.clock import now_iso, parse_iso
from simulator.core.firmware import attempts, diagnostics_file, upload_file
from simulator.core.transfer import LogStatus, TransferFailed

log = logging.getLogger(__name__)

JOB = JOB_LOG  # the charger's job name for a GetLog upload
SCHEMES = ("http://", "https://", "ftp://")


class LogType(StrEnum):
    DIAGNOSTICS = "DiagnosticsLog"
    SECURITY = "SecurityLog"


@dataclass(frozen=True, slots=True)
class LogRequest:
    log_type: LogType
    request_id: int
    location: str
    file_name: str
    oldest: datetime | None = None
    latest: datetime | None = None
    retries: int = 0
    retry_interval: int = 0


class BadRequest(ValueError):
    """A GetLog the charger answers Rejected: the reason, for its log."""


def read_request(
    charger: Charger,
    log_type: str,
    request_id: int,
    location: str,
    oldest: str | None,
    latest: str | None,
    retries: int,
    retry_interval: int,
) -> LogRequest:
    """The request as the charger will run it; raises BadRequest for one it rejects (a
    location it cannot upload to, a window that does not read as dates or is upside down)."""
    if not location.lower().startswith(SCHEMES):
        raise BadRequest("the remoteLocation is not an http(s):// or ftp:// URL")
    try:
        kind = LogType(log_type)
        start = parse_iso(oldest) if oldest else None
        stop = parse_iso(latest) if latest else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if start is not None and stop is not None and stop < start:
        raise BadRequest("latestTimestamp is before oldestTimestamp")
    now = charger.now()
    stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"
    file_name = f"{charger.id}-{kind.value.lower()}-{stamp}.json"
    return LogRequest(kind, request_id, location, file_name, start, stop, retries, retry_interval)


def log_file(charger: Charger, request: LogRequest) -> bytes:
    """The file a GetLog uploads."""
    if request.log_type is LogType.DIAGNOSTICS:
        start = request.oldest.timestamp() if request.oldest is not None else None
        stop = request.latest.timestamp() if request.latest is not None else None
        return diagnostics_file(charger, start, stop)
    document = {
        "chargePointId": charger.id,
        "logType": request.log_type.value,
        "requestId": request.request_id,
        "generatedAt": now_iso(charger.now()),
        "window": {
            "oldestTimestamp": None if request.oldest is None else now_iso(request.oldest),
            "latestTimestamp": None if request.latest is None else now_iso(request.latest),
        },
        "events": [
            event.as_dict()
            for event in charger.security_log.between(request.oldest, request.latest)
        ],
    }
    return json.dumps(document, indent=1).encode()


async def upload_log(charger: Charger, request: LogRequest) -> None:
    """Write the log file and upload it; Uploading, then Uploaded or why it failed."""
    data = log_file(charger, request)
    failures: list[TransferFailed] = []

    async def upload() -> bool:
        try:
            await upload_file(charger, request.location, request.file_name, data)
        except TransferFailed as exc:
            failures.append(exc)
            raise
        return True

    await charger.report_log(LogStatus.UPLOADING, request.request_id)
    done = await attempts(charger, "log upload", upload, request.retries, request.retry_interval)
    if done is not None:
        await charger.report_log(LogStatus.UPLOADED, request.request_id)
    else:
        await charger.report_log(failure_status(failures[-1]), request.request_id)


def failure_status(failure: TransferFailed) -> LogStatus:
    """What the last failed attempt met, in the whitepaper's words."""
    status = failure.status
    if status in (401, 403, 530):  # HTTP Unauthorized / Forbidden, FTP "not logged in"
        return LogStatus.PERMISSION_DENIED
    if status in (405, 501):  # HTTP Method Not Allowed / Not Implemented
        return LogStatus.NOT_SUPPORTED_OPERATION
    if status == 400:
        return LogStatus.BAD_MESSAGE
    return LogStatus.UPLOAD_FAILURE
