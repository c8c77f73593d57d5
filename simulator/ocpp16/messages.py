"""The OCPP 1.6J shapes of the messages the core sends, and how their answers read.

`Ocpp16Messages` implements `simulator.core.protocol.Messages`: the core asks it for each
outgoing message with neutral arguments and gets `(action, payload)` back in 1.6 words.
The 1.6 specifics live here: CiString lengths, measurand/unit/location/phase names and
reading contexts, the StartTransaction/StopTransaction fields, and the `-1` transaction id
of a message queued before its StartTransaction was confirmed.
"""

from __future__ import annotations

import logging
from typing import Any

from simulator.core.link import BootState
from simulator.core.local_list import Entry
from simulator.core.protocol import (
    QUANTITIES,
    AuthStatus,
    BootAnswer,
    Identity,
    IdTagAnswer,
    Measurand,
    Message,
    MeterSample,
    Payload,
    Quantity,
    Reading,
    SampleContext,
    StopReason,
    TransactionRef,
)
from simulator.core.transfer import DiagnosticsStatus, FirmwareStatus, LogStatus
from simulator.ocpp16.wire import Checked, SchemaViolation, validate_request

log = logging.getLogger(__name__)

CONTEXTS = {
    SampleContext.PERIODIC: "Sample.Periodic",
    SampleContext.CLOCK: "Sample.Clock",
    SampleContext.TRANSACTION_BEGIN: "Transaction.Begin",
    SampleContext.TRANSACTION_END: "Transaction.End",
    SampleContext.TRIGGER: "Trigger",
}
STOP_REASONS = {
    StopReason.LOCAL: "Local",
    StopReason.REMOTE: "Remote",
    StopReason.EV_DISCONNECTED: "EVDisconnected",
    StopReason.DEAUTHORIZED: "DeAuthorized",
    StopReason.POWER_LOSS: "PowerLoss",
    StopReason.SOFT_RESET: "SoftReset",
    StopReason.HARD_RESET: "HardReset",
    StopReason.UNLOCK_COMMAND: "UnlockCommand",
    StopReason.REBOOT: "Reboot",
    StopReason.OTHER: "Other",
}
AUTH_STATUSES = {str(s): s for s in AuthStatus}
BOOT_STATUSES = {str(s): s for s in (BootState.ACCEPTED, BootState.PENDING, BootState.REJECTED)}
# An unconfirmed transaction goes on the wire as -1 (1.6 has no other way to say it).
UNCONFIRMED = -1


def _template(context: str, quantity: Quantity) -> dict[str, str]:
    template = {
        "value": "",  # each SampledValue's own: set in its copy, in this place (first)
        "context": context,
        "measurand": str(quantity.measurand),
        "unit": str(quantity.unit),
        "location": str(quantity.location),
    }
    if quantity.phase is not None:
        template["phase"] = str(quantity.phase)
    return template


# Every SampledValue, precomputed per context and quantity but for its value: a
# MeterValues goes out every sample interval for every charging connector. Copying a
# small dict is about half the cost of building it key by key (`{"value": v, **fields}`),
# and setting an existing key keeps its place, so the members stay in the same order on
# the wire. Shared dicts, never mutated (each SampledValue is a copy).
_SAMPLED: dict[SampleContext, dict[Quantity, dict[str, str]]] = {
    context: {q: _template(wire, q) for q in QUANTITIES.values()}
    for context, wire in CONTEXTS.items()
}


# Whole SampledValues of readings that recur (a fleet's 230.0 V, 16.00 A, 11040.0 W: the
# readings are even the same tuples), per context: found, not copied again. Shared by the
# payloads that carry them, which no one mutates once built (as `_SAMPLED`'s). Only
# readings whose value is a str are kept: a hit needs no type check (`_sampled`).
#
# Bounded. An energy register's text differs at every sample of its connector (it recurs
# only across connectors at the same register, e.g. a fleet started together), so most of
# what fills the memo is registers: when full, those go (`_make_room`) and the readings
# that recur (voltages, currents, powers, SoCs) stay, instead of being copied again for
# every connector after each clear. Sorted out when full only, never per reading: a hit
# and a miss cost what they did.
_SHARED: dict[SampleContext, dict[Reading, dict[str, str]]] = {c: {} for c in CONTEXTS}
_SHARED_MAX = 4096
# Quantities whose readings do not recur for a connector: the first to go.
_NEVER_RECUR = frozenset(
    q for q in QUANTITIES.values() if q.measurand is Measurand.ENERGY_IMPORT_REGISTER
)


def sampled_values(context: SampleContext, readings: list[Reading]) -> list[dict[str, str]]:
    return _sampled(context, readings)[0]


def _sampled(context: SampleContext, readings: list[Reading]) -> tuple[list[dict[str, str]], bool]:
    """The readings' SampledValues, and whether every value is a str (the part of
    `meter_values`' proof that depends on the readings): a shared one's is, so only a
    reading not met before is looked at, not every reading of every sample."""
    templates = _SAMPLED[context]
    shared = _SHARED[context]
    found = shared.get
    out: list[dict[str, str]] = []
    add = out.append
    texts = True
    for reading in readings:
        sampled = found(reading)
        if sampled is None:
            value, quantity = reading
            sampled = templates[quantity].copy()
            sampled["value"] = value
            if type(value) is str:
                if len(shared) >= _SHARED_MAX:
                    _make_room(shared)
                shared[reading] = sampled
            else:
                texts = False
        add(sampled)
    return out, texts


def _make_room(shared: dict[Reading, dict[str, str]]) -> None:
    """A full `_SHARED` memo without its registers (see there); emptied if what is left
    still takes half of it (a fleet whose other readings do not recur either, e.g. DC
    tapering), so that a full memo is sorted out at most every `_SHARED_MAX / 2` misses."""
    kept = {r: s for r, s in shared.items() if r[1] not in _NEVER_RECUR}
    shared.clear()
    if len(kept) <= _SHARED_MAX // 2:
        shared.update(kept)


def _templates_check() -> bool:
    """Whether every (context, quantity) SampledValue passes the full MeterValues schema
    check, all of them in one payload (each item is checked on its own, and `value`, the
    one member a message sets, is any string): the part of `meter_values`' proof that
    does not depend on the message. Once, at import; False (never so far) would only
    mean every MeterValues is checked in full again."""
    every = [("0", quantity) for quantity in QUANTITIES.values()]
    for context in CONTEXTS:
        payload = {
            "connectorId": 0,
            "transactionId": 0,
            "meterValue": [{"timestamp": "", "sampledValue": sampled_values(context, every)}],
        }
        try:
            validate_request("MeterValues", payload)
        except SchemaViolation:
            log.exception("a %s SampledValue template fails the 1.6 schema", context)
            return False
    return True


_TEMPLATES_CHECKED = _templates_check()


def wire_id(tx: TransactionRef) -> int:
    return tx.transaction_id if tx.transaction_id is not None else UNCONFIRMED


def _id_tag_info(info: dict[str, Any]) -> IdTagAnswer:
    return IdTagAnswer(
        AUTH_STATUSES.get(info.get("status", ""), AuthStatus.INVALID),
        info.get("expiryDate"),
        info.get("parentIdTag"),
    )


class Ocpp16Messages:
    """The OCPP 1.6J adapter's message side (stateless: one instance serves all)."""

    def boot(self, identity: Identity) -> Message:
        payload: Payload = {
            "chargePointVendor": identity.vendor[:20],
            "chargePointModel": identity.model[:20],
            "firmwareVersion": identity.firmware_version[:50],
        }
        if identity.serial_number:
            payload["chargePointSerialNumber"] = identity.serial_number[:25]
        return "BootNotification", payload

    def read_boot(self, answer: Payload) -> BootAnswer:
        return BootAnswer(
            BOOT_STATUSES.get(answer["status"], BootState.REJECTED),
            int(answer.get("interval", 0)),
            answer.get("currentTime"),
        )

    def connector_status(
        self, connector_id: int, status: str, error_code: str, info: str | None, timestamp: str
    ) -> Message:
        payload: Payload = {
            "connectorId": connector_id,
            "errorCode": error_code,
            "status": str(status),
            "timestamp": timestamp,
        }
        if info:
            payload["info"] = info[:50]
        return "StatusNotification", payload

    def heartbeat(self) -> Message:
        return "Heartbeat", {}

    def read_clock(self, answer: Payload) -> str | None:
        return answer.get("currentTime")

    def authorize(self, id_tag: str) -> Message:
        return "Authorize", {"idTag": id_tag}

    def read_authorize(self, answer: Payload) -> IdTagAnswer:
        return _id_tag_info(answer["idTagInfo"])

    def transaction_started(
        self,
        tx: TransactionRef,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None,
    ) -> Message:
        payload: Payload = {
            "connectorId": connector_id,
            "idTag": id_tag,
            "meterStart": meter_start,
            "timestamp": timestamp,
        }
        if reservation_id is not None:
            payload["reservationId"] = reservation_id
        return "StartTransaction", payload

    def read_transaction_started(self, answer: Payload) -> tuple[int, IdTagAnswer]:
        # idTagInfo is required by the schema; a CSMS that leaves it out means no objection.
        info = answer.get("idTagInfo", {"status": "Accepted"})
        return int(answer["transactionId"]), _id_tag_info(info)

    def is_transaction_start(self, action: str) -> bool:
        return action == "StartTransaction"

    def ended_id_tag(self, action: str, payload: Payload) -> str | None:
        id_tag = payload.get("idTag") if action == "StopTransaction" else None
        return id_tag if isinstance(id_tag, str) and id_tag else None

    def is_periodic_sample(self, action: str, payload: Payload) -> bool:
        if action != "MeterValues":
            return False
        values = [sv for mv in payload.get("meterValue", ()) for sv in mv.get("sampledValue", ())]
        # 1.6 section 7.32: a sampledValue without a context is Sample.Periodic.
        periodic = CONTEXTS[SampleContext.PERIODIC]
        return bool(values) and all(sv.get("context", periodic) == periodic for sv in values)

    def transaction_ended(
        self,
        tx: TransactionRef,
        meter_stop: int,
        timestamp: str,
        reason: StopReason,
        id_tag: str | None,
        samples: list[MeterSample],
    ) -> Message:
        payload: Payload = {
            "meterStop": meter_stop,
            "timestamp": timestamp,
            "reason": STOP_REASONS[reason],
        }
        if id_tag:
            payload["idTag"] = id_tag
        if samples:
            payload["transactionData"] = [
                {"timestamp": s.timestamp, "sampledValue": sampled_values(s.context, s.readings)}
                for s in samples
            ]
        return "StopTransaction", payload

    def read_transaction_ended(self, answer: Payload) -> IdTagAnswer | None:
        info = answer.get("idTagInfo")  # optional: a stop may carry no idTag
        return None if info is None else _id_tag_info(info)

    def meter_values(
        self,
        connector_id: int,
        tx: TransactionRef | None,
        context: SampleContext,
        timestamp: str,
        readings: list[Reading],
    ) -> Message:
        sampled, texts = _sampled(context, readings)
        trusted = (
            texts
            and _TEMPLATES_CHECKED
            and type(connector_id) is int
            and type(timestamp) is str
            and sampled
        )
        payload: Payload
        if trusted:  # valid by construction: sent without the per-message schema check
            payload = checked = Checked(connectorId=connector_id)
            checked.text = None
        else:
            payload = {"connectorId": connector_id}
        payload["meterValue"] = [{"timestamp": timestamp, "sampledValue": sampled}]
        if tx is not None:
            tx_id = tx.transaction_id  # `wire_id(tx)` without its call (every sample)
            if tx_id is None:
                tx_id = UNCONFIRMED
            payload["transactionId"] = tx_id
            if type(tx_id) is not int and type(payload) is Checked:
                payload = dict(payload)
        return "MeterValues", payload

    def data_transfer(self, vendor_id: str, message_id: str | None, data: str | None) -> Message:
        payload: Payload = {"vendorId": vendor_id}
        if message_id is not None:
            payload["messageId"] = message_id
        if data is not None:
            payload["data"] = data
        return "DataTransfer", payload

    def security_event(self, kind: str, timestamp: str, tech_info: str | None) -> Message:
        payload: Payload = {"type": kind[:50], "timestamp": timestamp}
        if tech_info:
            payload["techInfo"] = tech_info[:255]
        return "SecurityEventNotification", payload

    def log_status(self, status: LogStatus, request_id: int | None) -> Message:
        payload: Payload = {"status": str(status)}
        if request_id is not None:
            payload["requestId"] = request_id
        return "LogStatusNotification", payload

    def diagnostics_status(self, status: DiagnosticsStatus) -> Message:
        return "DiagnosticsStatusNotification", {"status": str(status)}

    def firmware_status(self, status: FirmwareStatus) -> Message:
        return "FirmwareStatusNotification", {"status": str(status)}

    # -- security whitepaper (edition 3): certificates and signed firmware ----------------

    def sign_certificate(self, csr: str) -> Message:
        return "SignCertificate", {"csr": csr}

    def read_accepted(self, answer: Payload) -> bool:
        return bool(answer.get("status") == "Accepted")

    def signed_firmware_status(self, status: FirmwareStatus, request_id: int | None) -> Message:
        payload: Payload = {"status": str(status)}
        if request_id is not None:
            payload["requestId"] = request_id
        return "SignedFirmwareStatusNotification", payload

    def at_send(self, action: str, payload: Payload, tx: TransactionRef | None) -> Payload:
        # A transaction message queued before StartTransaction was confirmed carries the
        # real id if it is known by the time it goes out, else -1.
        if tx is not None and action != "StartTransaction":
            tx_id = tx.transaction_id  # `wire_id(tx)` without its call (every message sent)
            if tx_id is None:
                tx_id = UNCONFIRMED
            if type(payload) is Checked:
                if type(tx_id) is not int:  # no longer valid by construction: checked in full
                    return {**payload, "transactionId": tx_id}
                if payload.get("transactionId") != tx_id:
                    payload["transactionId"] = tx_id
                    payload.text = None  # the stored text is of the payload before
                return payload
            payload["transactionId"] = tx_id
        return payload


OCPP16 = Ocpp16Messages()


def read_local_list(payload: Payload) -> list[Entry]:
    """SendLocalList's entries: (idTag, what the list says of it, or None to remove it)."""
    return [
        (item["idTag"], _id_tag_info(item["idTagInfo"]) if "idTagInfo" in item else None)
        for item in payload.get("localAuthorizationList") or ()
    ]


# The CSMS-initiated actions of each optional feature profile: a charger whose
# SupportedFeatureProfiles lacks the profile answers them with CALLERROR NotSupported. (Local
# Auth List Management has answers of its own for that: NotSupported, and version -1.)
PROFILE_ACTIONS = {
    "SmartCharging": frozenset(
        {"SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule"}
    ),
    "RemoteTrigger": frozenset({"TriggerMessage"}),
    "Reservation": frozenset({"ReserveNow", "CancelReservation"}),
    "FirmwareManagement": frozenset({"UpdateFirmware", "GetDiagnostics"}),
}


def unsupported_actions(profiles: list[str]) -> frozenset[str]:
    """The actions of the optional profiles a charger does not support."""
    return frozenset().union(
        *(actions for profile, actions in PROFILE_ACTIONS.items() if profile not in profiles)
    )
