"""The EVSE (one connector) state machine and its meter state, plain Python.

Statuses and legal transitions are exactly those of OCPP 1.6 (spec table plus errata):
an illegal transition raises and is never sent to the central system. The physics lives
in ``simulator.core.battery``; the EVSE decides what its status is given what flows.

Who changes a status: only the charge point (``Charger.set_status``, which reports it);
``transition()`` checks the move against the table and returns True when it must be
reported. The EVSE itself never changes its status: it meters what flows.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isfinite

# One definition of the statuses, shared with the dashboard (simulator.contract).
from simulator.contract import FAULT_CODES, ConnectorStatus
from simulator.core.battery import Battery, OperatingPoint, advance
from simulator.core.dc_voltage import pack_voltage
from simulator.core.revision import FLEET
from simulator.core.session_series import SessionSeries

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

# The statuses in which energy may flow.
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
    # Energy.Active.Import.Register; only add_energy() and meter() move it, upwards.
    register_wh: float = 0.0
    # Readings of the last tick: its effective power (0 / zeros when nothing flows).
    power_w: float = 0.0
    voltage_v: tuple[float, ...] = ()
    current_a: tuple[float, ...] = ()
    soc: float | None = None
    # The transaction as the dashboard shows it; written by the charge point only.
    transaction_id: int | None = None
    id_tag: str | None = None
    battery: Battery | None = None
    # The CSMS refused the idTag of the transaction going on (StartTransaction.conf not
    # Accepted) and StopTransactionOnInvalidId is false: the charger "SHALL only stop energy
    # delivery" (OCPP 1.6, 5.16), so nothing is offered until the transaction ends.
    deauthorized: bool = False
    db_id: int | None = None  # the database row, for checkpoints
    # The ongoing session's series, or the last one's once it ended (the dashboard's chart).
    session: SessionSeries | None = None
    # The SoC reading's text, with an interval of SoCs known to give that same text (lo, hi,
    # text): kept by `Charger.readings`, see `charge_point._soc_text`.
    soc_text: tuple[float, float, str] | None = None

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

        False (nothing changes) when already in ``to`` with the same error code. Raises
        IllegalTransition (state untouched) for a move the OCPP 1.6 table forbids,
        ValueError for an unknown error code.
        """
        to = ConnectorStatus(to)
        if error_code not in ERROR_CODES:
            raise ValueError(f"connector {self.connector_id}: unknown error code {error_code!r}")
        if to is self.status and error_code == self.error_code:
            return False
        if to is not self.status and not is_legal(self.status, to):
            raise IllegalTransition(self.connector_id, self.status, to)
        self.status = to
        FLEET.bump()
        self.error_code = error_code
        self.info = info
        self.vendor_error_code = vendor_error_code
        if to not in _SESSION:
            self._idle()  # nothing flows outside a session status
        return True

    # -- meter -------------------------------------------------------------------------------

    def add_energy(self, wh: float) -> None:
        """Energy.Active.Import.Register only ever goes up."""
        if not wh >= 0:
            raise ValueError(f"connector {self.connector_id}: negative energy {wh} Wh")
        self.register_wh += wh

    def meter(self, point: OperatingPoint, dt_s: float) -> float:
        """Let energy flow for ``dt_s`` seconds at this operating point's offer; the metered
        Wh, in closed form (``battery.advance``) however long the interval.

        ``power_w`` becomes the interval's average power, ``wh * 3600 / dt``, so the register
        delta always equals the integral of the reported power; it is the point's power
        when nothing tapers, the lower average when the battery fills inside the interval.
        Nothing flows (power 0) when no vehicle is plugged or the point offers or takes
        nothing.
        """
        battery = self.battery
        # Zeros as floats: float to float is the interpreter's fast compare (every visit).
        if battery is None or point.power_w <= 0.0:
            self.stop_flow()
            return 0.0
        wh = advance(battery, point, dt_s)
        if not wh >= 0.0:  # `add_energy`'s check, inline: this runs on every visit
            raise ValueError(f"connector {self.connector_id}: negative energy {wh} Wh")
        self.register_wh += wh
        self.soc = battery.soc
        power = wh * 3600.0 / dt_s if dt_s > 0.0 else point.power_w
        if abs(power - point.power_w) <= 1e-9 * point.power_w:
            power = point.power_w  # float dust of a constant power
        # An average never exceeds the offer's cap (`fixed_cap`, inline).
        cap = point.cap_w
        limit = cap if isfinite(cap) else point.power_w
        if limit < power:  # min(power, limit), without the builtin's call
            power = limit
        if power != self.power_w:  # on every visit of a charging connector: bump on change only
            self.power_w = power
            FLEET.bump()
        if point.pack_follows:
            # DC: the pack voltage of the SoC reached, not the point's (that of the SoC at
            # the last visit, up to a sample interval before): a sample's voltage, current
            # and SoC are of one instant, and current = power / voltage. The SoC only rises
            # while energy flows, so the voltage is above 0 as the point's was.
            volts = pack_voltage(battery.spec, battery.soc)
            self.voltage_v = (volts,)
            self.current_a = (power / volts,)
            return wh
        self.voltage_v = point.voltage_v
        scale = power / point.power_w
        self.current_a = (
            point.current_a if scale == 1.0 else tuple(a * scale for a in point.current_a)
        )
        return wh

    def show(self, point: OperatingPoint) -> None:
        """The readings of this operating point, before any energy flowed at it (a visit
        of no duration: the engine's first, or one right after a settle)."""
        if point.power_w != self.power_w:
            self.power_w = point.power_w
            FLEET.bump()
        self.voltage_v = point.voltage_v
        self.current_a = point.current_a

    def stop_flow(self) -> bool:
        """Nothing flows now; True if the power reading said otherwise."""
        flowed = self.cut_power()
        self.current_a = ()
        return flowed

    def cut_power(self) -> bool:
        """The power reading drops to 0, the currents stay as they were; True if it was not
        0 already."""
        if not self.power_w:
            return False
        self.power_w = 0.0
        FLEET.bump()
        return True

    def _idle(self) -> None:
        self.cut_power()
        self.current_a = (0.0,) * len(self.current_a)
