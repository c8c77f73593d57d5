"""CSMS-initiated operations of OCPP 1.6 Core, Smart Charging, Remote Trigger, Reservation,
Local Auth List Management and Firmware Management, and the certificate operations of the
1.6 security whitepaper.

Not a mixin: `Operations` wraps one `Charger` and calls its methods; it owns no state of
the charger. Each `on_*` method decides the answer (it runs inside the protocol library's
reader, so it never awaits a call of its own); the matching `after_*` method does the
follow-up once the answer is sent, as a real charger does.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from simulator.core import triggers
from simulator.core.certificates import CertificateError, CertificateUse, HashData, decode_signature
from simulator.core.charge_point import JOB_DIAGNOSTICS, JOB_FIRMWARE, Charger
from simulator.core.clock import parse_iso
from simulator.core.firmware import (
    DEFAULT_RETRIES,
    DEFAULT_RETRY_INTERVAL,
    DiagnosticsRequest,
    FirmwareRequest,
    FirmwareSignature,
    diagnostics_file_name,
    update_firmware,
    upload_diagnostics,
)
from simulator.core.local_list import Entry
from simulator.core.logs import JOB as LOG_JOB
from simulator.core.logs import BadRequest, LogRequest, read_request, upload_log
from simulator.core.protocol import StopReason
from simulator.core.smart_charging import ChargingProfile, ProfileError

log = logging.getLogger(__name__)

OWN_VENDOR_ID = "ChargeSim"
# After answering a Reset, the socket stays open this long before the reboot closes it: a
# CSMS that reads the answer a moment late must still get it (closing in the same
# millisecond lost it for one central system).
RESET_GRACE_SECONDS = 0.75


class Operations:
    """What a charger answers to its CSMS's requests, and what it does next."""

    def __init__(self, charger: Charger) -> None:
        self.charger = charger

    # -- smart charging ------------------------------------------------------------------

    def on_set_charging_profile(self, connector_id: int, profile: dict[str, Any]) -> str:
        charger = self.charger
        try:
            parsed = ChargingProfile.from_dict(profile)
        except ProfileError as exc:
            log.info("%s: SetChargingProfile rejected: %s", charger.id, exc)
            return "Rejected"
        tx = charger.transactions.get(connector_id) if connector_id else None
        active: int | None = None
        if tx is not None:
            # ProfileStore's 1.6 rule: -1 stands for a transaction not yet confirmed.
            active = tx.transaction_id if tx.transaction_id is not None else -1
        status = charger.profiles.install(connector_id, parsed, active_transaction_id=active)
        if status == "Accepted":
            charger.profiles_changed()
        return status

    def on_clear_charging_profile(
        self,
        profile_id: int | None,
        connector_id: int | None,
        purpose: str | None,
        stack_level: int | None,
    ) -> str:
        status = self.charger.profiles.clear(
            id=profile_id, connector_id=connector_id, purpose=purpose, stack_level=stack_level
        )
        if status == "Accepted":
            self.charger.profiles_changed()
        return status

    def on_get_composite_schedule(
        self, connector_id: int, duration: int, unit: str | None
    ) -> tuple[str, dict[str, Any] | None]:
        charger = self.charger
        # duration 0 is a valid request (OCPP 1.6 6.25: an integer, no minimum): the window
        # is the instant now, answered with the limit in force at it. A negative window is
        # one the charger cannot report (5.7: Rejected).
        if not 0 <= connector_id <= len(charger.evses) or duration < 0:
            return "Rejected", None
        now = charger.now().replace(microsecond=0)
        # A long window costs time (about 1.5 s for a year of daily profiles): cap it at a week.
        duration = min(duration, 7 * 86_400)
        schedule = charger.profiles.composite_schedule(
            connector_id,
            now,
            duration,
            unit,
            tx_starts=charger.transaction_starts(),
            dc_volts=charger.dc_line_volts(),
            car_phases=charger.plugged_car_phases(),
        )
        if schedule is None:
            return "Rejected", None
        return "Accepted", schedule

    # -- reset -------------------------------------------------------------------------------

    async def after_reset(self, kind: str) -> None:
        """Stop every transaction (reason SoftReset/HardReset), let the StopTransactions go
        out if the CSMS is there, then reboot: same identity, a new BootNotification."""
        charger = self.charger
        reason = StopReason.HARD_RESET if kind == "Hard" else StopReason.SOFT_RESET
        for connector_id in list(charger.transactions):
            battery = charger.evse(connector_id).battery
            if battery is not None and not battery.is_full() and not battery.paused:
                # The vehicle stays plugged in: its session starts again after the boot.
                charger.resume_after_boot_for(
                    connector_id, charger.transactions[connector_id].id_tag
                )
            charger.stop_transaction(connector_id, reason)
        # This runs once the answer has gone out: the grace counts from it.
        await charger.restart(f"{kind} reset requested by the Central System", RESET_GRACE_SECONDS)

    # -- remote trigger --------------------------------------------------------------------

    def on_trigger_message(self, requested: str, connector_id: int | None) -> str:
        return triggers.answer(self.charger, triggers.TRIGGERS, requested, connector_id)

    async def after_trigger_message(self, requested: str, connector_id: int | None) -> None:
        await triggers.send(self.charger, triggers.TRIGGERS, requested, connector_id)

    def on_extended_trigger_message(self, requested: str, connector_id: int | None) -> str:
        """ExtendedTriggerMessage (security whitepaper): as TriggerMessage, with its own
        list of messages (LogStatusNotification; no DiagnosticsStatusNotification)."""
        return triggers.answer(self.charger, triggers.EXTENDED_TRIGGERS, requested, connector_id)

    async def after_extended_trigger_message(
        self, requested: str, connector_id: int | None
    ) -> None:
        await triggers.send(self.charger, triggers.EXTENDED_TRIGGERS, requested, connector_id)

    # -- availability ----------------------------------------------------------------------

    def on_change_availability(self, connector_id: int, kind: str) -> str:
        if not 0 <= connector_id <= len(self.charger.evses):
            return "Rejected"
        return self.charger.change_availability(connector_id, kind)

    # -- unlock, cache, data transfer --------------------------------------------------------

    def on_unlock_connector(self, connector_id: int) -> str:
        charger = self.charger
        if not 1 <= connector_id <= len(charger.evses):
            return "NotSupported"
        if connector_id in charger.transactions:
            charger.stop_transaction(connector_id, StopReason.UNLOCK_COMMAND)
        charger.unlock_cable(connector_id)
        simulated_ev = charger.spec.simulate_ev_on_remote_start
        if simulated_ev and charger.evse(connector_id).battery is not None:
            charger.driver_unplugs_later(connector_id, 2.0)
        return "Unlocked"

    def on_clear_cache(self) -> str:
        self.charger.auth_cache.clear()
        return "Accepted"

    def on_data_transfer(
        self, vendor_id: str, message_id: str | None, data: str | None
    ) -> tuple[str, str | None]:
        if vendor_id != OWN_VENDOR_ID:
            return "UnknownVendorId", None
        if message_id == "echo":
            return "Accepted", data
        return "UnknownMessageId", None

    # -- reservation ---------------------------------------------------------------------

    def on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
    ) -> str:
        return self.charger.reserve_now(
            connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )

    def on_cancel_reservation(self, reservation_id: int) -> str:
        return self.charger.cancel_reservation(reservation_id)

    # -- local authorization list ------------------------------------------------------------

    def on_send_local_list(self, version: int, update_type: str, entries: list[Entry]) -> str:
        return self.charger.send_local_list(version, update_type, entries)

    def on_get_local_list_version(self) -> int:
        return self.charger.local_list_version()

    # -- firmware management ---------------------------------------------------------------

    def on_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> FirmwareRequest:
        """UpdateFirmware has no status to answer: the request as the charger will run it
        (a retrieveDate it cannot read means now)."""
        try:
            retrieve_at = parse_iso(retrieve_date).timestamp()
        except ValueError:
            retrieve_at = self.charger.wall_time()
        return FirmwareRequest(location, retrieve_at, *_retry_policy(retries, retry_interval))

    def after_update_firmware(self, request: FirmwareRequest) -> None:
        # A signed update's answer said AcceptedCanceled if it replaces one (`would_cancel`);
        # the one it replaces is closed under its own requestId all the same.
        self.charger.start_job(JOB_FIRMWARE, update_firmware(self.charger, request))

    def on_get_diagnostics(
        self,
        location: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        start_time: str | None = None,
        stop_time: str | None = None,
    ) -> DiagnosticsRequest:
        """GetDiagnostics: the file the charger will upload (its name is the answer)."""

        def moment(text: str | None) -> float | None:
            try:
                return None if text is None else parse_iso(text).timestamp()
            except ValueError:
                return None

        return DiagnosticsRequest(
            location,
            diagnostics_file_name(self.charger),
            moment(start_time),
            moment(stop_time),
            *_retry_policy(retries, retry_interval),
        )

    def after_get_diagnostics(self, request: DiagnosticsRequest) -> None:
        self.charger.start_job(JOB_DIAGNOSTICS, upload_diagnostics(self.charger, request))

    # -- the security whitepaper (edition 3): SecurityProfile, GetLog ------------------------

    async def after_change_configuration(self) -> None:
        await self.charger.security_parameters_changed()

    def on_get_log(
        self,
        log_type: str,
        request_id: int,
        location: str,
        oldest: str | None = None,
        latest: str | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> tuple[str, LogRequest | None]:
        """GetLog: Accepted, or AcceptedCanceled when it replaces an upload still running
        (cancelled in `after_get_log`), or Rejected; with the request to run."""
        charger = self.charger
        try:
            request = read_request(
                charger,
                log_type,
                request_id,
                location,
                oldest,
                latest,
                *_retry_policy(retries, retry_interval),
            )
        except BadRequest as exc:
            log.info("%s: GetLog rejected: %s", charger.id, exc)
            return "Rejected", None
        busy = charger.would_cancel(LOG_JOB)
        return ("AcceptedCanceled" if busy else "Accepted"), request

    def after_get_log(self, request: LogRequest) -> None:
        self.charger.start_job(LOG_JOB, upload_log(self.charger, request))

    # -- security whitepaper (edition 3): certificates and signed firmware -------------------

    def on_certificate_signed(self, chain: str) -> str:
        return self.charger.certificate_signed(chain)

    def on_install_certificate(self, kind: str, pem: str) -> str:
        """InstallCertificate: Accepted, Rejected (store full, AdditionalRootCertificateCheck)
        or Failed (not a valid CA certificate)."""
        charger = self.charger
        status = charger.certificates.install_root(
            CertificateUse(kind),
            pem,
            max_length=charger.config_int("CertificateStoreMaxLength"),
            additional_check=charger.config_bool("AdditionalRootCertificateCheck"),
            now=_now(charger),
        )
        if status == "Accepted":
            charger.certificates_changed()
        return status

    def on_get_installed_certificate_ids(self, kind: str) -> list[dict[str, str]]:
        """GetInstalledCertificateIds: the hash data of each (empty: NotFound)."""
        ids = self.charger.certificates.installed_ids(CertificateUse(kind))
        return [item.as_wire() for item in ids]

    def on_delete_certificate(self, hash_data: dict[str, Any]) -> str:
        """DeleteCertificate: Accepted, NotFound, or Failed for the last CSMS root while
        the connection is secured with TLS (profile 2 or 3) and for the charger's own."""
        charger = self.charger
        status = charger.certificates.delete(
            HashData.from_wire(hash_data),
            keep_last_central_root=charger.spec.security_profile >= 2,
        )
        if status == "Accepted":
            charger.certificates_changed()
        return status

    def on_signed_update_firmware(
        self,
        request_id: int,
        firmware: dict[str, Any],
        retries: int | None,
        retry_interval: int | None,
    ) -> tuple[str, FirmwareRequest | None]:
        """SignedUpdateFirmware: InvalidCertificate (and the security event
        InvalidFirmwareSigningCertificate) when no installed ManufacturerRootCertificate
        issued the signing certificate; AcceptedCanceled when it replaces an update still
        running; Accepted otherwise, with the request to run."""
        charger = self.charger
        try:
            certificate = charger.certificates.check_signing_certificate(
                firmware["signingCertificate"], _now(charger)
            )
            signature = decode_signature(firmware["signature"])
        except CertificateError as exc:
            log.info("%s: SignedUpdateFirmware: %s", charger.id, exc)
            charger.security_event("InvalidFirmwareSigningCertificate", str(exc))
            return "InvalidCertificate", None
        try:
            retrieve_at = parse_iso(firmware["retrieveDateTime"]).timestamp()
        except ValueError:
            retrieve_at = charger.wall_time()
        install_at: float | None = None
        if firmware.get("installDateTime"):
            try:
                install_at = parse_iso(firmware["installDateTime"]).timestamp()
            except ValueError:
                install_at = None
        request = FirmwareRequest(
            firmware["location"],
            retrieve_at,
            *_retry_policy(retries, retry_interval),
            signed=FirmwareSignature(certificate, signature, request_id, install_at),
        )
        busy = charger.would_cancel(JOB_FIRMWARE)
        return ("AcceptedCanceled" if busy else "Accepted"), request


def _now(charger: Charger) -> datetime:
    return datetime.fromtimestamp(charger.wall_time(), UTC)


# Any int64 passes the schema: a transfer tried 2^63 times, or retried after 2^63 s, would
# never end. A charger has its own limits.
MAX_RETRIES = 100
MAX_RETRY_INTERVAL = 86_400


def _retry_policy(retries: int | None, interval: int | None) -> tuple[int, int]:
    return (
        min(max(DEFAULT_RETRIES if retries is None else retries, 0), MAX_RETRIES),
        min(max(DEFAULT_RETRY_INTERVAL if interval is None else interval, 0), MAX_RETRY_INTERVAL),
    )
