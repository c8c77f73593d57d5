"""CSMS-initiated operations of OCPP 1.6 Core, Smart Charging and Remote Trigger.

A mixin of the runtime `Charger`: each `on_*` method decides the answer (it runs inside the
library's reader, so it never awaits a call of its own); the matching `after_*` method does
the follow-up once the answer is sent, as a real charger does.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from simulator.core.clock import now_iso, parse_iso
from simulator.core.evse import ConnectorStatus
from simulator.core.smart_charging import (
    ChargingProfile,
    Electrical,
    ProfileError,
    ProfileStore,
    parse_remote_start_profile,
    units_from_config,
)

if TYPE_CHECKING:
    from simulator.core.charge_point import Charger

log = logging.getLogger(__name__)
Status = ConnectorStatus

OWN_VENDOR_ID = "ChargeSim"
TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StatusNotification",
    }
)


def new_profile_store(charger: Charger) -> ProfileStore:
    spec = charger.spec
    phases = spec.phases if spec.power_type == "AC" else 3
    per_evse_w = max((e.max_power_w for e in charger.evses), default=spec.max_power_w)
    return ProfileStore(
        len(charger.evses),
        electrical=Electrical(
            voltage=spec.voltage_v,
            phases=phases,
            max_current=per_evse_w / (spec.voltage_v * phases),
        ),
        max_profiles=charger.config_int("MaxChargingProfilesInstalled"),
        max_stack_level=charger.config_int("ChargeProfileMaxStackLevel"),
        max_periods=charger.config_int("ChargingScheduleMaxPeriods"),
        allowed_units=units_from_config(
            charger.config.get("ChargingScheduleAllowedChargingRateUnit", "Current,Power")
        ),
    )


class Operations:
    """Mixed into `Charger`; uses its state and helpers."""

    # -- smart charging ------------------------------------------------------------------

    def on_set_charging_profile(self: Charger, connector_id: int, profile: dict[str, Any]) -> str:
        try:
            parsed = ChargingProfile.from_dict(profile)
        except ProfileError as exc:
            log.info("%s: SetChargingProfile rejected: %s", self.id, exc)
            return "Rejected"
        tx = self.transactions.get(connector_id) if connector_id else None
        status = self.profiles.install(
            connector_id, parsed, active_transaction_id=tx.wire_id if tx is not None else None
        )
        if status == "Accepted":
            self.profiles_changed()
        return status

    def on_clear_charging_profile(
        self: Charger,
        profile_id: int | None,
        connector_id: int | None,
        purpose: str | None,
        stack_level: int | None,
    ) -> str:
        status = self.profiles.clear(
            id=profile_id, connector_id=connector_id, purpose=purpose, stack_level=stack_level
        )
        if status == "Accepted":
            self.profiles_changed()
        return status

    def on_get_composite_schedule(
        self: Charger, connector_id: int, duration: int, unit: str | None
    ) -> tuple[str, dict[str, Any] | None]:
        if not 0 <= connector_id <= len(self.evses) or duration <= 0:
            return "Rejected", None
        now = self.now().replace(microsecond=0)
        # A long window costs time (about 1.5 s for a year of daily profiles): cap it at a week.
        duration = min(duration, 7 * 86_400)
        schedule = self.profiles.composite_schedule(
            connector_id, now, duration, unit, tx_starts=self.transaction_starts()
        )
        if schedule is None:
            return "Rejected", None
        return "Accepted", schedule

    def profiles_changed(self: Charger) -> None:
        self.limits_dirty = True
        self.listener.on_profiles(self)

    def transaction_starts(self: Charger) -> dict[int, datetime]:
        starts = {}
        for connector_id, tx in self.transactions.items():
            try:
                starts[connector_id] = parse_iso(tx.started_at)
            except ValueError:
                starts[connector_id] = datetime.now(UTC)
        return starts

    def refresh_limits(self: Charger, demand_w: dict[int, float]) -> None:
        """Share the limits in force among the connectors that want power now."""
        if not len(self.profiles):
            if self.limits:
                self.limits = {}
            return
        starts = self.transaction_starts()
        charging = {c: starts.get(c) for c in demand_w}
        self.limits = self.profiles.allocate(self.now(), charging, demand_watts=demand_w)

    def accept_remote_start_profile(self: Charger, profile: dict[str, Any] | None) -> bool:
        """Validate RemoteStartTransaction's chargingProfile (a TxProfile, no transactionId)."""
        if profile is None:
            return True
        try:
            parse_remote_start_profile(profile)
        except ProfileError as exc:
            log.info("%s: RemoteStartTransaction profile rejected: %s", self.id, exc)
            return False
        return True

    def install_remote_start_profile(self: Charger, connector_id: int) -> None:
        profile = self.pending_profiles.pop(connector_id, None)
        if profile is None:
            return
        parsed = parse_remote_start_profile(profile)
        if self.profiles.install(connector_id, parsed, active_transaction_id=-1) == "Accepted":
            self.profiles_changed()

    # -- reset -------------------------------------------------------------------------------

    async def after_reset(self: Charger, kind: str) -> None:
        """Stop every transaction (reason SoftReset/HardReset), let the StopTransactions go
        out if the CSMS is there, then reboot: same identity, a new BootNotification."""
        reason = "HardReset" if kind == "Hard" else "SoftReset"
        for connector_id in list(self.transactions):
            self.stop_transaction(connector_id, reason)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while self.queue and self.online and loop.time() < deadline:
            await asyncio.sleep(0.05)
        self.reboot()

    def reboot(self: Charger) -> None:
        for evse in self.evses:
            evse.power_w = 0.0
            evse.current_a = ()
            if evse.status in (Status.FINISHING, Status.PREPARING) and evse.battery is None:
                evse.transition(Status.AVAILABLE)
        self.pending_authorizations.clear()
        self.power_cycle()
        transport = self.transport
        if transport is not None:
            self._reboot_task = asyncio.get_running_loop().create_task(transport.close())

    # -- remote trigger --------------------------------------------------------------------

    def on_trigger_message(self: Charger, requested: str, connector_id: int | None) -> str:
        if requested not in TRIGGERABLE:
            return "NotImplemented"
        if connector_id is not None and not 0 <= connector_id <= len(self.evses):
            return "Rejected"
        if requested == "BootNotification" and self.spec.reject_triggered_boot:
            return "Rejected"
        return "Accepted"

    async def after_trigger_message(
        self: Charger, requested: str, connector_id: int | None
    ) -> None:
        if requested == "BootNotification":
            await self.send_triggered_boot()
        elif requested == "Heartbeat":
            await self.send_now("Heartbeat", {})
        elif requested == "StatusNotification":
            targets = [connector_id] if connector_id is not None else range(len(self.evses) + 1)
            for target in targets:
                await self.send_now("StatusNotification", self.status_payload(target))
        elif requested == "MeterValues":
            targets = [connector_id] if connector_id else [e.connector_id for e in self.evses]
            measurands = self.config_list("MeterValuesSampledData")
            for target in targets:
                self.send_meter_values(target, "Trigger", measurands)
        elif requested == "DiagnosticsStatusNotification":
            await self.send_now("DiagnosticsStatusNotification", {"status": "Idle"})
        elif requested == "FirmwareStatusNotification":
            await self.send_now("FirmwareStatusNotification", {"status": "Idle"})

    # -- availability ----------------------------------------------------------------------

    def on_change_availability(self: Charger, connector_id: int, kind: str) -> str:
        if not 0 <= connector_id <= len(self.evses):
            return "Rejected"
        targets = [e.connector_id for e in self.evses] if connector_id == 0 else [connector_id]
        if connector_id == 0:
            self.charger_unavailable = kind == "Inoperative"
            self.connector0_status = (
                Status.UNAVAILABLE if self.charger_unavailable else (Status.AVAILABLE)
            )
            self.send_status(0)
        scheduled = False
        for target in targets:
            self.availability[target] = kind
            if kind == "Inoperative" and target in self.transactions:
                self.scheduled_availability[target] = kind
                scheduled = True
            else:
                self.scheduled_availability.pop(target, None)
                self.apply_availability(target)
        self.listener.on_availability(self)
        return "Scheduled" if scheduled else "Accepted"

    def apply_availability(self: Charger, connector_id: int) -> None:
        evse = self.evse(connector_id)
        inoperative = self.availability.get(connector_id) == "Inoperative"
        if inoperative and evse.status is not Status.UNAVAILABLE:
            if evse.status is Status.PREPARING:
                self.pending_authorizations.pop(connector_id, None)
                self.set_status(evse, Status.AVAILABLE)
            self.set_status(evse, Status.UNAVAILABLE)
        elif not inoperative and evse.status is Status.UNAVAILABLE:
            self.set_status(
                evse, Status.PREPARING if evse.battery is not None else Status.AVAILABLE
            )

    # -- unlock, cache, data transfer --------------------------------------------------------

    def on_unlock_connector(self: Charger, connector_id: int) -> str:
        if not 1 <= connector_id <= len(self.evses):
            return "NotSupported"
        if connector_id in self.transactions:
            self.stop_transaction(connector_id, "UnlockCommand")
        self.unlock_cable(connector_id)
        if self.spec.simulate_ev_on_remote_start and self.evse(connector_id).battery is not None:
            self._start_timer("driver-unplug", connector_id, 2.0, self._driver_unplugs)
        return "Unlocked"

    def on_clear_cache(self: Charger) -> str:
        self.auth_cache.clear()
        return "Accepted"

    def on_data_transfer(
        self: Charger, vendor_id: str, message_id: str | None, data: str | None
    ) -> tuple[str, str | None]:
        if vendor_id != OWN_VENDOR_ID:
            return "UnknownVendorId", None
        if message_id == "echo":
            return "Accepted", data
        return "UnknownMessageId", None

    async def data_transfer(
        self: Charger, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"vendorId": vendor_id}
        if message_id is not None:
            payload["messageId"] = message_id
        if data is not None:
            payload["data"] = data
        return await self.request("DataTransfer", payload)

    # -- sending outside the normal queue ---------------------------------------------------

    def status_payload(self: Charger, connector_id: int) -> dict[str, Any]:
        if connector_id == 0:
            status, error_code, info = self.connector0_status, "NoError", None
        else:
            evse = self.evse(connector_id)
            status, error_code, info = evse.status, evse.error_code, evse.info
        payload: dict[str, Any] = {
            "connectorId": connector_id,
            "errorCode": error_code,
            "status": str(status),
            "timestamp": now_iso(),
        }
        if info:
            payload["info"] = info[:50]
        return payload

    async def send_now(self: Charger, action: str, payload: dict[str, Any]) -> None:
        """A triggered message: through the queue once booted, directly while Pending (the
        only messages a Pending charger may send)."""
        from simulator.core.charge_point import BootState, CallFailed, LinkLost

        if self.boot is BootState.ACCEPTED:
            self.send(action, payload)
            return
        transport = self.transport
        if transport is None:
            return
        try:
            await transport.call(action, payload)
        except (CallFailed, LinkLost) as exc:
            log.info("%s: triggered %s failed: %s", self.id, action, exc)
