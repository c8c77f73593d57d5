"""What a Central System may ask a charge point to send now: TriggerMessage (OCPP 1.6
Remote Trigger) and ExtendedTriggerMessage (the 1.6 security whitepaper, edition 3).

Each trigger names the `Charger` method that sends its message; the charger answers first
(Accepted, Rejected or NotImplemented) and sends the message once the answer is out. A
trigger missing from a table is answered NotImplemented: adding a trigger is adding its
method and one line here.
"""

from __future__ import annotations

import inspect
import logging

from simulator.core.charge_point import Charger
from simulator.core.link import BootState

log = logging.getLogger(__name__)

# Triggers that name a connector (the method takes `connector_id`, None when not given).
_PER_CONNECTOR = frozenset({"MeterValues", "StatusNotification"})

TRIGGERS: dict[str, str] = {
    "BootNotification": "trigger_boot",
    "DiagnosticsStatusNotification": "trigger_diagnostics_status",
    "FirmwareStatusNotification": "trigger_firmware_status",
    "Heartbeat": "trigger_heartbeat",
    "MeterValues": "trigger_meter_values",
    "StatusNotification": "trigger_status",
}

EXTENDED_TRIGGERS: dict[str, str] = {
    "BootNotification": "trigger_boot",
    "LogStatusNotification": "trigger_log_status",
    # The whitepaper: "To trigger a SignedFirmwareStatusNotification".
    "FirmwareStatusNotification": "trigger_signed_firmware_status",
    "Heartbeat": "trigger_heartbeat",
    "MeterValues": "trigger_meter_values",
    "StatusNotification": "trigger_status",
    "SignChargePointCertificate": "request_certificate",
}


def answer(
    charger: Charger, table: dict[str, str], requested: str, connector_id: int | None
) -> str:
    """Accepted, Rejected (a connector it does not have; BootNotification when the charger
    is set to refuse it and already Accepted; any message while the charger may not send
    it, as when its BootNotification has no answer yet) or NotImplemented (a message it
    cannot be asked for)."""
    if requested not in table:
        return "NotImplemented"
    if not charger.may_send_triggered:
        # Accepted means "will be sent" (1.6 section 5.17): a charger not registered with
        # its CSMS (no boot answered Accepted or Pending, or one awaiting its answer) sends
        # nothing but BootNotifications, and the message would be dropped.
        if charger.boot_unanswered:
            why = "awaits its answer"
        else:
            why = "was rejected" if charger.boot is BootState.REJECTED else "had no answer"
        log.info("%s: trigger of %s rejected: its BootNotification %s", charger.id, requested, why)
        return "Rejected"
    if connector_id is not None and not 0 <= connector_id <= len(charger.evses):
        return "Rejected"
    if (
        requested == "BootNotification"
        and charger.spec.reject_triggered_boot
        # The errata's advice is for a charger already registered: while Pending, a
        # triggered BootNotification is how the CSMS ends its provisioning.
        and charger.boot is BootState.ACCEPTED
    ):
        return "Rejected"
    return "Accepted"


async def send(
    charger: Charger, table: dict[str, str], requested: str, connector_id: int | None
) -> None:
    """Send the triggered message (after the answer went out)."""
    method = getattr(charger, table[requested])
    result = method(connector_id) if requested in _PER_CONNECTOR else method()
    if inspect.isawaitable(result):
        await result
