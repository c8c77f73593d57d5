"""The EVSE (one connector) state machine and its meter state, plain Python.

Statuses and legal transitions are exactly those of OCPP 1.6 (spec table plus errata):
an illegal transition raises and is never sent to the central system. The physics lives
in ``simulator.core.battery``; the EVSE decides what its status is given what flows.

Who reports a status change: ``transition()`` returns True when its caller must send a
StatusNotification; a change the EVSE makes by itself during ``apply()`` (e.g. Charging →
SuspendedEV when the battery reaches its target) raises ``status_changed`` instead, which
the runtime collects with ``take_status_change()``.
"""

from __future__ import annotations

from dataclasses import dataclass

# One definition of the statuses, shared with the dashboard (simulator.contract).
from simulator.contract import FAULT_CODES, ConnectorStatus
from simulator.core.battery import Battery, OperatingPoint, step

S = ConnectorStatus

LEGAL_TRANSITIONS: dict[ConnectorStatus, frozenset[ConnectorStatus]] = {
    S.AVAILABLE: frozenset(
        {
            S.PREPARING,
            S.CHARGING,
            S.SUSPENDED_EV,
            S.SUSPENDED_EVSE,
            S.RESERVED,
            S.UNAVAILABLE,
            S.FAULTED,
        }
    ),
    S.PREPARING: frozenset(
        {S.AVAILABLE, S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE, S.FINISHING, S.FAULTED}
    ),
    S.CHARGING: frozenset(
        {S.AVAILABLE, S.SUSPENDED_EV, S.SUSPENDED_EVSE, S.FINISHING, S.UNAVAILABLE, S.FAULTED}
    ),
    S.SUSPENDED_EV: frozenset(
        {S.AVAILABLE, S.CHARGING, S.SUSPENDED_EVSE, S.FINISHING, S.UNAVAILABLE, S.FAULTED}
    ),
    S.SUSPENDED_EVSE: frozenset(
        {S.AVAILABLE, S.CHARGING, S.SUSPENDED_EV, S.FINISHING, S.UNAVAILABLE, S.FAULTED}
    ),
    S.FINISHING: frozenset({S.AVAILABLE, S.PREPARING, S.UNAVAILABLE, S.FAULTED}),
    S.RESERVED: frozenset({S.AVAILABLE, S.PREPARING, S.UNAVAILABLE, S.FAULTED}),
    S.UNAVAILABLE: frozenset(
        {S.AVAILABLE, S.PREPARING, S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE, S.FAULTED}
    ),
    S.FAULTED: frozenset(set(S) - {S.FAULTED}),
}

# Connector 0 stands for the whole charge point and has no session states.
CONNECTOR0_STATUSES = frozenset({S.AVAILABLE, S.UNAVAILABLE, S.FAULTED})

# ChargePointErrorCode of OCPP 1.6 (StatusNotification.errorCode).
ERROR_CODES = frozenset({"NoError", *FAULT_CODES})

# The statuses in which energy may flow; apply() moves between them by itself.
_SESSION = frozenset({S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE})


class IllegalTransition(Exception):
    def __init__(self, connector_id: int, frm: ConnectorStatus, to: ConnectorStatus) -> None:
        super().__init__(
            f"connector {connector_id}: {frm} -> {to} is not a legal OCPP 1.6 transition"
        )
        self.connector_id = connector_id
        self.frm = frm
        self.to = to


def is_legal(frm: ConnectorStatus, to: ConnectorStatus) -> bool:
    return to in LEGAL_TRANSITIONS[frm]


def is_legal_connector0(frm: ConnectorStatus, to: ConnectorStatus) -> bool:
    """Connector 0 moves only among Available, Unavailable and Faulted."""
    return frm in CONNECTOR0_STATUSES and to in CONNECTOR0_STATUSES and is_legal(frm, to)


@dataclass(slots=True, eq=False)
class Evse:
    """One connector (1..n): OCPP status, meter readings and the plugged vehicle, if any."""

    connector_id: int
    max_power_w: float
    status: ConnectorStatus = S.AVAILABLE
    error_code: str = "NoError"
    info: str | None = None
    vendor_error_code: str | None = None
    # Energy.Active.Import.Register; only add_energy() and apply() move it, upwards.
    register_wh: float = 0.0
    # Readings of the last tick: its effective power (0 / zeros when nothing flows).
    power_w: float = 0.0
    voltage_v: tuple[float, ...] = ()
    current_a: tuple[float, ...] = ()
    soc: float | None = None
    # transaction_id stays None until StartTransaction.conf; id_tag marks the transaction.
    transaction_id: int | None = None
    id_tag: str | None = None
    transaction_start_wh: float | None = None
    battery: Battery | None = None
    status_changed: bool = False
    db_id: int | None = None  # the database row, for checkpoints

    def __post_init__(self) -> None:
        if self.connector_id < 1:
            raise ValueError(f"connector id {self.connector_id}: EVSEs are numbered from 1")
        if self.max_power_w < 0 or self.register_wh < 0:
            raise ValueError(f"connector {self.connector_id}: negative power or register")
        self.status = ConnectorStatus(self.status)

    # -- status ------------------------------------------------------------------------------

    def transition(
        self,
        to: ConnectorStatus,
        error_code: str = "NoError",
        info: str | None = None,
        *,
        vendor_error_code: str | None = None,
    ) -> bool:
        """Move to ``to``; True when the caller must now report the status.

        False (nothing changes) when already in ``to`` with the same error code and nothing
        is left unreported; True when re-asked for a status that ``apply()`` reached by
        itself and nobody reported yet. Raises IllegalTransition (state untouched) for a
        move the OCPP 1.6 table forbids, ValueError for an unknown error code.
        """
        to = ConnectorStatus(to)
        if error_code not in ERROR_CODES:
            raise ValueError(f"connector {self.connector_id}: unknown error code {error_code!r}")
        if to is self.status and error_code == self.error_code:
            if not self.status_changed:
                return False
        elif to is not self.status and not is_legal(self.status, to):
            raise IllegalTransition(self.connector_id, self.status, to)
        self.status = to
        self.error_code = error_code
        self.info = info
        self.vendor_error_code = vendor_error_code
        self.status_changed = False
        if to not in _SESSION:
            self._idle(None)  # nothing flows outside a session status
        return True

    def take_status_change(self) -> bool:
        """True once after apply() changed the status by itself (send a StatusNotification)."""
        changed = self.status_changed
        self.status_changed = False
        return changed

    # -- predicates --------------------------------------------------------------------------

    @property
    def plugged(self) -> bool:
        return self.battery is not None

    @property
    def in_transaction(self) -> bool:
        return self.id_tag is not None

    @property
    def charging_possible(self) -> bool:
        """A vehicle that still takes energy, a transaction, and a status that lets it flow."""
        battery = self.battery
        return (
            battery is not None
            and self.id_tag is not None
            and self.status in _SESSION
            and not battery.is_full()
        )

    # -- transaction -------------------------------------------------------------------------

    def begin_transaction(self, id_tag: str) -> int:
        """Mark the transaction started; return meterStart (the register, never 0 anew)."""
        self.id_tag = id_tag
        self.transaction_id = None
        self.transaction_start_wh = self.register_wh
        return int(self.register_wh)

    def end_transaction(self) -> int:
        """Clear the transaction; return meterStop (>= meterStart)."""
        start = self.transaction_start_wh if self.transaction_start_wh is not None else 0.0
        self.id_tag = None
        self.transaction_id = None
        self.transaction_start_wh = None
        self.power_w = 0.0
        self.current_a = (0.0,) * len(self.current_a)
        return max(int(self.register_wh), int(start))

    @property
    def session_wh(self) -> float:
        """Energy metered since the transaction began (0 outside one)."""
        if self.transaction_start_wh is None:
            return 0.0
        return self.register_wh - self.transaction_start_wh

    # -- meter -------------------------------------------------------------------------------

    def add_energy(self, wh: float) -> None:
        """Energy.Active.Import.Register only ever goes up."""
        if not wh >= 0:
            raise ValueError(f"connector {self.connector_id}: negative energy {wh} Wh")
        self.register_wh += wh

    def apply(self, point: OperatingPoint | None, dt_s: float) -> float:
        """Advance one tick of ``dt_s`` seconds at this operating point; return the metered Wh.

        ``point`` is None when no vehicle is plugged. Energy flows only in Charging,
        SuspendedEV or SuspendedEVSE; among those the EVSE picks its status from the point
        (SuspendedEVSE when the EVSE side offers nothing — it wins —, SuspendedEV when the
        vehicle takes nothing, which includes a full battery, else Charging) and flags a
        change in ``status_changed``.

        ``power_w`` becomes the tick's effective power, ``wh * 3600 / dt``, so the register
        delta always equals the integral of the reported power. The tick that fills the
        battery still reports its (lower) average power in Charging; the next tick finds
        the vehicle taking nothing: power 0, SuspendedEV. Status and power never disagree.
        """
        battery = self.battery
        if battery is not None:
            self.soc = battery.soc
        if point is None or battery is None or self.status not in _SESSION:
            self._idle(point)
            if self.status is S.CHARGING:
                self._settle(S.SUSPENDED_EV)  # the vehicle is gone mid-transaction
            return 0.0
        if point.offered_w <= 0:
            self._settle(S.SUSPENDED_EVSE)
        elif point.power_w <= 0:
            self._settle(S.SUSPENDED_EV)
        else:
            self._settle(S.CHARGING)
            wh = step(battery, point, dt_s)
            self.add_energy(wh)
            self.soc = battery.soc
            # Equal to point.power_w unless the tick was cut short at the target.
            self.power_w = min(wh * 3600.0 / dt_s, point.power_w) if dt_s > 0 else point.power_w
            self.voltage_v = point.voltage_v
            scale = self.power_w / point.power_w
            self.current_a = (
                point.current_a if scale == 1.0 else tuple(a * scale for a in point.current_a)
            )
            return wh
        self._idle(point)
        return 0.0

    def _settle(self, to: ConnectorStatus) -> None:
        """A status change the EVSE makes by itself, between the session statuses."""
        if to is not self.status:
            self.status = to
            self.error_code, self.info, self.vendor_error_code = "NoError", None, None
            self.status_changed = True

    def _idle(self, point: OperatingPoint | None) -> None:
        self.power_w = 0.0
        if point is not None:
            self.voltage_v = point.voltage_v
            self.current_a = (0.0,) * len(point.current_a)
        else:
            self.current_a = (0.0,) * len(self.current_a)
