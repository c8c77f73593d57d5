"""The EVSE (one connector) state machine and its meter state, plain Python.

Statuses and legal transitions are exactly those of OCPP 1.6 (spec table plus errata):
an illegal transition raises and is never sent to the central system.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from simulator.battery import Battery, OperatingPoint, step


class ConnectorStatus(StrEnum):
    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


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

# Connector 0 stands for the whole charge point.
CONNECTOR0_STATUSES = frozenset({S.AVAILABLE, S.UNAVAILABLE, S.FAULTED})


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


@dataclass(slots=True, eq=False)
class Evse:
    connector_id: int
    max_power_w: float
    status: ConnectorStatus = S.AVAILABLE
    error_code: str = "NoError"
    info: str | None = None
    register_wh: float = 0.0
    power_w: float = 0.0
    voltage_v: tuple[float, ...] = ()
    current_a: tuple[float, ...] = ()
    soc: float | None = None
    transaction_id: int | None = None
    id_tag: str | None = None
    battery: Battery | None = None
    db_id: int | None = None  # the database row, for checkpoints

    def transition(
        self, to: ConnectorStatus, error_code: str = "NoError", info: str | None = None
    ) -> bool:
        """Change status; False if nothing changed, IllegalTransition if not allowed."""
        if to is self.status:
            if error_code == self.error_code and info == self.info:
                return False
            self.error_code, self.info = error_code, info
            return True
        if not is_legal(self.status, to):
            raise IllegalTransition(self.connector_id, self.status, to)
        self.status = to
        self.error_code = error_code if to is S.FAULTED else "NoError"
        self.info = info
        return True

    def add_energy(self, wh: float) -> None:
        """Energy.Active.Import.Register only ever goes up."""
        if wh < 0:
            raise ValueError(f"connector {self.connector_id}: negative energy {wh} Wh")
        self.register_wh += wh

    def apply(self, point: OperatingPoint, dt_s: float) -> float:
        """Advance one tick at this operating point; return the grid energy (Wh).

        The power reported for the tick is the energy delivered over it, so the register's
        growth always equals the integral of the reported power.
        """
        battery = self.battery
        if battery is None or dt_s <= 0:
            self.power_w = 0.0
            return 0.0
        wh = step(battery, point, dt_s)
        self.add_energy(wh)
        self.power_w = wh * 3600.0 / dt_s
        scale = self.power_w / point.power_w if point.power_w > 0 else 0.0
        self.current_a = tuple(a * scale for a in point.current_a) if self.power_w else ()
        self.voltage_v = point.voltage_v
        self.soc = battery.soc
        return wh

    @property
    def plugged(self) -> bool:
        return self.battery is not None

    @property
    def in_transaction(self) -> bool:
        return self.id_tag is not None
