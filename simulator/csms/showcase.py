"""What the built-in CSMS does with the demo fleet, so that a newcomer sees Reservation,
Local Auth List Management and Firmware Management at work (issue 17).

Once each demo charger has booted (`runsimulator --demo`, unless --no-demo-operations):

- every charger gets a local authorization list (version 1: the demo drivers' idTags,
  and one Blocked);
- the last charger's last free connector is reserved for an hour for ``DEMO-RESERVED``;
- the first charger uploads its diagnostics to the CSMS's file server, and its security
  log (GetLog, the security whitepaper's), then reports its log status on request
  (ExtendedTriggerMessage);
- the second charger updates its firmware from the file server (it installs once its
  session, if any, is over, and reboots into ChargeSim firmware 1.1.0).
- every charger gets the CSMS's root certificate (InstallCertificate), and the third a
  manufacturer's root and a signed firmware update (SignedUpdateFirmware: the signature
  is verified before it installs ChargeSim firmware 1.2.0 and reboots).

All of it goes through the CSMS's ordinary operations; a charger that does not answer,
or answers with an error, is logged and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from ocpp.exceptions import OCPPError

from .certificate_authority import CertificateAuthority, FirmwareSigner
from .files import FileServer
from .server import CentralSystem

log = logging.getLogger(__name__)

# The demo's idTags: its drivers present the Accepted ones, and the CSMS answers every one
# of them as its local list says, whether a charger asks it or reads the list.
DEMO_TAGS = {f"DEMO{n:04d}": "Accepted" for n in range(1, 21)} | {"DEMO-BLOCKED": "Blocked"}
DRIVER_TAGS = tuple(tag for tag, status in DEMO_TAGS.items() if status == "Accepted")
RESERVED_TAG = "DEMO-RESERVED"
FIRMWARE_VERSION = "1.1.0"
FIRMWARE_NAME = f"chargesim-{FIRMWARE_VERSION}.bin"
FIRMWARE = f"ChargeSim firmware {FIRMWARE_VERSION}\n".encode() + b"\x00" * 4096
SIGNED_FIRMWARE_VERSION = "1.2.0"
SIGNED_FIRMWARE_NAME = f"chargesim-{SIGNED_FIRMWARE_VERSION}.bin"
SIGNED_FIRMWARE = f"ChargeSim firmware {SIGNED_FIRMWARE_VERSION}\n".encode() + b"\x00" * 4096
_FREE = ("Available", "NoError")


def answer_demo_tags(csms: CentralSystem) -> None:
    """Have the CSMS answer Authorize and StartTransaction for the demo's idTags as the
    local list it sends them says: it accepted every idTag, DEMO-BLOCKED included, while
    that list told the chargers it was Blocked."""
    csms.authorize.update(DEMO_TAGS)


async def showcase(
    csms: CentralSystem,
    files: FileServer,
    cp_ids: list[str],
    *,
    patience: float = 120.0,
) -> None:
    """Run the demo operations on these chargers as each becomes ready."""
    firmware_url = files.publish(FIRMWARE_NAME, FIRMWARE)
    manufacturer = CertificateAuthority("ChargeSim Manufacturer Root CA")
    signed = SignedImage(
        files.publish(SIGNED_FIRMWARE_NAME, SIGNED_FIRMWARE),
        manufacturer.root_pem,
        manufacturer.firmware_signer(),
    )
    await asyncio.gather(
        *(
            _one(csms, files, cp_id, index, len(cp_ids), firmware_url, patience, signed)
            for index, cp_id in enumerate(cp_ids)
        )
    )


@dataclass(frozen=True)
class SignedImage:
    url: str
    root_pem: str
    signer: FirmwareSigner


async def _one(
    csms: CentralSystem,
    files: FileServer,
    cp_id: str,
    index: int,
    count: int,
    firmware_url: str,
    patience: float,
    signed: SignedImage,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while csms.registration.get(cp_id) != "Accepted" or cp_id not in csms.connected:
        if loop.time() > deadline:
            log.info("%s: not ready for the demo operations; skipped", cp_id)
            return
        await asyncio.sleep(0.5)
    try:
        await csms.send_local_list(cp_id, 1, dict(DEMO_TAGS))
        free = [c for c, s in sorted(csms.status.get(cp_id, {}).items()) if c and s == _FREE]
        if index == count - 1 and free:
            await csms.reserve_now(cp_id, free[-1], RESERVED_TAG, timedelta(hours=1))
        if index == 0:
            await csms.get_diagnostics(cp_id, f"{files.url}/diagnostics/")
            await csms.get_log(cp_id, f"{files.url}/logs/", log_type="SecurityLog")
            await csms.extended_trigger(cp_id, "LogStatusNotification")
        # A firmware update only to a charger not running that version already: a restart
        # of the demo would otherwise reinstall it and reboot the charger every time.
        running = str(csms.boot_info.get(cp_id, {}).get("firmwareVersion", ""))
        if index == 1 and running != FIRMWARE_VERSION:
            await csms.update_firmware(cp_id, firmware_url)
        await csms.install_certificate(cp_id, csms.ca.root_pem)
        if index == 2 and running != SIGNED_FIRMWARE_VERSION:
            await csms.install_certificate(cp_id, signed.root_pem, "ManufacturerRootCertificate")
            await csms.signed_update_firmware(
                cp_id,
                signed.url,
                signed.signer.certificate_pem,
                signed.signer.sign(SIGNED_FIRMWARE),
            )
    except (OCPPError, TimeoutError, ConnectionError, KeyError) as exc:
        log.info("%s: a demo operation failed: %s", cp_id, exc)
