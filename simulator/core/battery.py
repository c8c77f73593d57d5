"""The vehicle side of a charging session: what the EV can take, and its state of charge.

AC: power = min(EVSE max, the vehicle's on-board charger, the charging-profile limit, and
the battery's own taper near full), over the phases both sides have, at the charger's
voltage. DC: the vehicle's charging curve gives the power it accepts at its SoC (taper),
the pack voltage follows its SoC, current = P / V. SoC integrates the energy that reaches
the battery (metered energy × efficiency).

Plain Python, no Django: this runs once per EVSE per tick for fleets of 10,000+ EVSEs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from math import isfinite
from typing import Any

from simulator.core.dc_voltage import pack_voltage
from simulator.core.vehicle import VehicleSpec

# SoC (percent) closer than this to the target counts as full: float dust must not keep
# a session in Charging for another tick.
FULL_EPSILON = 1e-6


@dataclass(slots=True, eq=False)
class Battery:
    """The plugged vehicle's battery; SoC in percent, only ever rising towards the target."""

    spec: VehicleSpec
    soc: float
    target_soc: float = 100.0
    # The EV stopped drawing power on its own (a timer in the car, the driver's app): the
    # connector shows SuspendedEV until it resumes. The physics does not read it: the
    # charge point keeps a paused EV out of the session statuses in which energy flows.
    paused: bool = False
    # Who brought it: the traffic driver's arrival (None: a person, the API or a
    # scenario plugged it in). A power cycle plugs a new Battery into a new charger and
    # carries this over, so that the driver who brought the car still takes it away.
    brought_by: object = field(default=None, repr=False, kw_only=True)
    # The idTag of a session a power loss ended while this car was charging, to start again
    # once the charger's boot is accepted: stored with the car, so that a restart before
    # that boot (a CSMS out of reach) does not forget it.
    resume_id_tag: str | None = field(default=None, kw_only=True)
    # The curve piece `advance` last charged on and what holds on it, kept while the SoC
    # stays on it at the same offer (see `_piece_at`); the meter's, not a setting.
    piece: _Piece | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.soc <= 100 or not 0 <= self.target_soc <= 100:
            raise ValueError(
                f"{self.spec.name}: SoC {self.soc} % and target {self.target_soc} % "
                "must be within 0–100"
            )

    def is_full(self) -> bool:
        return self.soc >= self.target_soc - FULL_EPSILON

    def record(self, register_wh: float) -> dict[str, Any]:
        """What a restart needs to plug this vehicle back in: its model as the physics sees
        it (not a catalogue id: the car does not change when the catalogue is edited), and
        its SoC with the EVSE's register at this moment, so that the SoC after a restart
        follows from the register then (`from_record`), without writing the SoC at every
        visit of the meter."""
        spec = self.spec
        return {
            "spec": {
                "name": spec.name,
                "capacity_kwh": spec.capacity_kwh,
                "ac_max_kw": spec.ac_max_kw,
                "ac_phases": spec.ac_phases,
                "dc_max_kw": spec.dc_max_kw,
                "dc_min_v": spec.dc_min_v,
                "dc_nominal_v": spec.dc_nominal_v,
                "dc_max_v": spec.dc_max_v,
                "curve": [list(point) for point in spec.curve],
                "efficiency": spec.efficiency,
            },
            "soc": self.soc,
            "register_wh": register_wh,
            "target_soc": self.target_soc,
            "paused": self.paused,
            "resume_id_tag": self.resume_id_tag,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], register_wh: float) -> Battery:
        """The vehicle of a `record`, its SoC moved on by the energy metered since (never
        past its target). Raises ValueError (or KeyError, TypeError) for a bad record."""
        fields = dict(record["spec"])
        fields["curve"] = tuple((float(soc), float(kw)) for soc, kw in fields["curve"])
        battery = cls(VehicleSpec(**fields), float(record["soc"]), float(record["target_soc"]))
        since = float(register_wh) - float(record["register_wh"])
        if since > 0:
            battery.accept(since)
        battery.paused = bool(record.get("paused", False))
        resume = record.get("resume_id_tag")
        battery.resume_id_tag = str(resume) if resume else None
        return battery

    def energy_to_target_wh(self) -> float:
        """Metered (grid-side) energy still needed to reach the target SoC."""
        missing_wh = max(self.target_soc - self.soc, 0.0) * self.spec.capacity_kwh * 10.0
        return missing_wh / self.spec.efficiency

    def accept(self, grid_wh: float) -> None:
        """Store metered energy (times the efficiency); stops at the target, never goes down."""
        if grid_wh < 0:
            raise ValueError(f"{self.spec.name}: cannot take back {-grid_wh} Wh")
        gained = grid_wh * self.spec.efficiency / (self.spec.capacity_kwh * 10.0)
        # max(): a battery plugged in above its target keeps its SoC.
        self.soc = max(self.soc, min(self.soc + gained, self.target_soc))


@dataclass(slots=True)
class OperatingPoint:
    """What flows at this instant: total power, per-phase (AC) or pack (DC) voltage and
    current, and what the EVSE side offers (``min(EVSE max, limit)``; ``offered_w <= 0``
    means the EVSE suspends, ``power_w <= 0 < offered_w`` means the EV does)."""

    power_w: float
    voltage_v: tuple[float, ...]
    current_a: tuple[float, ...]
    phases: int
    offered_w: float = math.inf
    # The SoC-independent part of the power: min(what the EVSE offers, the vehicle's
    # maximum); the power is min(cap_w, the curve at the SoC) while `tapers`, else cap_w.
    # `advance` integrates that in closed form.
    cap_w: float = math.inf
    tapers: bool = False
    # A DC point whose power does not come from a current limit: its voltage is the pack's,
    # which follows the SoC, so the meter reads it again at the SoC the energy brought the
    # pack to, and the current as the power over it (`Evse.meter`). Under a binding amp
    # limit the current is the limit, at the voltage of the point (revisited within
    # `DC_AMP_REVISIT_S`).
    pack_follows: bool = False


# The least current an AC charger can offer on a phase: IEC 61851-1's control pilot signals
# 6 A at its lowest duty cycle. An offer below it is no offer: the car does not charge.
MIN_AC_AMPS = 6.0

# How long the meter may hold a DC point under an amp limit before computing it again. Its
# power is the current at the pack voltage, which rises with the SoC; held fixed, it falls
# behind by half the voltage's rise over the interval. In 5 s a car gains at most ~0.5 % of
# SoC (200 kW into 50 kWh), on which the steepest part of `pack_voltage` rises ~1 %.
DC_AMP_REVISIT_S = 5.0


def _offered(evse_max_w: float, limit_w: float | None) -> float:
    offered = evse_max_w if limit_w is None else min(evse_max_w, limit_w)
    return max(offered, 0.0)


def ac_operating_point(
    battery: Battery,
    evse_max_w: float,
    limit_w: float | None,
    charger_phases: int,
    voltage_v: float,
    limit_a: float | None = None,
    limit_phases: int | None = None,
) -> OperatingPoint:
    """AC charging over min(vehicle phases, charger phases) at ``voltage_v`` (line-to-neutral).

    Both maxima are per-phase current limits in reality, so a 3-phase vehicle on a 1-phase
    charger gets a third of its on-board charger power, and a 3-phase EVSE feeding a 1-phase
    vehicle a third of its own; never more than the plain minimum. Near full the vehicle's
    curve tapers the power when it is below the AC maximum.

    ``limit_a`` is a charging profile's limit in amps: per phase, on each phase the vehicle
    uses (``limit_w`` is the total power, e.g. a limit in watts). An offer below
    `MIN_AC_AMPS` on each phase the vehicle uses is none (``offered_w`` 0): the EVSE
    suspends. ``limit_phases``: the profile's numberPhases, the phases it lets the vehicle
    use (a three-phase car limited to one draws on one, within the EVSE's rating of it).
    """
    spec = battery.spec
    charger_phases = max(1, charger_phases)
    phases = max(1, min(spec.ac_phases, charger_phases))
    if limit_phases is not None and limit_phases < phases:
        phases = max(1, limit_phases)
    voltages = (voltage_v,) * phases
    if phases < charger_phases:
        evse_max_w *= phases / charger_phases
    if limit_a is not None:
        amp_w = limit_a * voltage_v * phases
        limit_w = amp_w if limit_w is None else min(limit_w, amp_w)
    offered = _offered(evse_max_w, limit_w)
    if offered < MIN_AC_AMPS * voltage_v * phases - 1e-6:
        offered = 0.0  # below what the control pilot can signal: the EVSE offers nothing
    if battery.is_full() or voltage_v <= 0:
        return OperatingPoint(0.0, voltages, (0.0,) * phases, phases, offered)
    vehicle_w = spec.ac_max_kw * 1000
    if phases < spec.ac_phases:
        vehicle_w *= phases / spec.ac_phases
    cap = max(min(offered, vehicle_w), 0.0)
    tapers = bool(spec.curve)
    power = min(cap, spec.curve_max_kw(battery.soc) * 1000) if tapers else cap
    amps = power / (voltage_v * phases)
    return OperatingPoint(power, voltages, (amps,) * phases, phases, offered, cap, tapers)


def ac_point_holds_below(battery: Battery, point: OperatingPoint) -> float:
    """The SoC (%) below which `ac_operating_point` gives this same point again, exactly,
    for this battery at the same offer (-inf: its power follows the SoC now).

    While the cap binds (the EVSE's offer or the vehicle's on-board charger, not its
    curve) an AC point does not depend on the SoC: it holds until the battery is full or
    its curve may fall below the cap. The meter reuses it meanwhile: at 1 s sampling a
    charging connector is visited every second, and most of an AC session is at its cap.
    (A DC point never holds: its voltage follows the SoC.)"""
    if point.power_w <= 0 or point.power_w != point.cap_w:
        return -math.inf
    holds = battery.target_soc - FULL_EPSILON  # `is_full` from there on
    if point.tapers:
        holds = min(holds, battery.spec.curve_holds_below(battery.soc, point.cap_w))
    return holds


def dc_operating_point(
    battery: Battery,
    evse_max_w: float,
    limit_w: float | None,
    limit_a: float | None = None,
    min_a: float | None = None,
    min_w: float | None = None,
) -> OperatingPoint:
    """DC charging: min(EVSE max, vehicle DC max, curve at this SoC, limit) at the pack voltage.

    ``limit_a``, a limit in amps, is the DC current: its power is that current at the pack
    voltage of the moment, so it follows the SoC (the meter revisits such a connector
    often enough to follow it: `DC_AMP_REVISIT_S`). ``min_a`` and ``min_w``: the profiles'
    least charging rates in amps (a DC current too) and in watts; an offer below either is
    none (the car cannot charge on it)."""
    spec = battery.spec
    volts = pack_voltage(spec, battery.soc)
    if limit_a is not None and volts > 0:
        amp_w = limit_a * volts
        limit_w = amp_w if limit_w is None else min(limit_w, amp_w)
    offered = _offered(evse_max_w, limit_w)
    if (min_a is not None and volts > 0 and offered < min_a * volts - 1e-6) or (
        min_w is not None and offered < min_w - 1e-6
    ):
        offered = 0.0
    if battery.is_full() or spec.dc_max_kw <= 0 or volts <= 0:
        return OperatingPoint(0.0, (volts,), (0.0,), 1, offered)
    cap = max(min(offered, spec.dc_max_kw * 1000), 0.0)
    power = min(cap, spec.curve_max_kw(battery.soc) * 1000)
    amp_bound = limit_a is not None and power >= limit_a * volts - 1e-6
    return OperatingPoint(
        power, (volts,), (power / volts,), 1, offered, cap, True, pack_follows=not amp_bound
    )


def step(battery: Battery, point: OperatingPoint, dt_s: float) -> float:
    """Deliver one tick at this operating point into the battery; return the metered Wh.

    The energy is ``power * dt / 3600`` Wh, capped at what the target still needs so that
    the SoC lands exactly on the target instead of past it. The power to report for the
    tick is therefore ``wh * 3600 / dt``: the operating point's power, except on the last
    tick before full, where it is that tick's lower average. Reported that way, the
    register delta always equals the integral of the reported power (``Evse.apply`` does
    this).
    """
    if point.power_w <= 0 or dt_s <= 0 or battery.is_full():
        return 0.0
    wh = point.power_w * dt_s / 3600.0
    needed = battery.energy_to_target_wh()
    if wh < needed:
        battery.accept(wh)
        return wh
    battery.soc = max(battery.soc, battery.target_soc)
    return needed


# -- the closed form: what flows between two events ------------------------------------------
#
# Between two events (a sample, a limit or state change, the target SoC) the offer is fixed,
# so the power depends on the SoC alone: P(s) = min(cap, curve(s)), the curve piecewise
# linear. The SoC rises at dS/dt = k·P(s), k = efficiency / (capacity · 36,000) (% per W·s):
# linearly where the cap (or a flat piece of the curve) binds, exponentially where a sloped
# piece binds (dP/dt = m·k·P). `_walk` goes piece by piece (curve breakpoints, the crossing
# of curve and cap, the target), so one call covers hours exactly, however many ticks.


# A curve's pieces, (upper end %, p0 W, s0 %, slope W per %) per pair of points (the power
# on a piece is p0 + slope·(s − s0); beyond the ends the curve is flat), with its first
# point (% and W) and last power (W): computed once per curve (a vehicle model's, shared
# by its EVs), not on every visit of the meter.
_Pieces = tuple[float, float, tuple[tuple[float, float, float, float], ...], float]
# Keyed by the curve's id; each entry holds its curve, so that id is not reused meanwhile.
_PIECES: dict[int, tuple[tuple[tuple[float, float], ...], _Pieces]] = {}
_PIECES_MAX = 1024
_UNTAPERED = ((0.0, math.inf),)  # a point that does not taper: its cap throughout


def _pieces_of(curve: tuple[tuple[float, float], ...]) -> _Pieces:
    # The SoC ends as floats, the same values (a curve may be written with ints): `_walk`
    # compares the SoC with them, and float to float is the interpreter's fast compare.
    return (
        float(curve[0][0]),
        curve[0][1] * 1000.0,
        tuple(
            (float(s1), p0 * 1000.0, float(s0), (p1 - p0) * 1000.0 / (s1 - s0))
            for (s0, p0), (s1, p1) in itertools.pairwise(curve)
        ),
        curve[-1][1] * 1000.0,
    )


def _curve_pieces(curve: tuple[tuple[float, float], ...]) -> _Pieces:
    """`_pieces_of(curve)`, kept per curve object (bounded)."""
    entry = _PIECES.get(id(curve))
    if entry is not None and entry[0] is curve:
        return entry[1]
    pieces = _pieces_of(curve)
    if len(_PIECES) >= _PIECES_MAX:
        _PIECES.clear()
    _PIECES[id(curve)] = (curve, pieces)
    return pieces


def _curve_for(spec: VehicleSpec, tapers: bool) -> _Pieces:
    """The pieces the vehicle charges along at an offer that tapers or not (`_pieces_of`)."""
    if not tapers:
        return _curve_pieces(_UNTAPERED)
    if spec.curve:
        return _curve_pieces(spec.curve)
    return _pieces_of(((0.0, spec.dc_max_kw),))  # a DC vehicle without a curve: its maximum


def _piece_from(
    curve: _Pieces, s: float, target: float, cap_w: float
) -> tuple[float, float, float, float]:
    """The piece of `curve` that holds the SoC `s` (beyond the ends the curve is flat), as
    (where charging on it ends %: its end, the target or where it meets the cap; p0 W, s0 %,
    slope W per %)."""
    first_s, first_w, pieces, last_w = curve
    if s < first_s:
        hi, p0, s0, slope = first_s, first_w, s, 0.0
    else:
        for piece in pieces:
            if s < piece[0]:
                hi, p0, s0, slope = piece
                break
        else:
            hi, p0, s0, slope = math.inf, last_w, s, 0.0
    end = target if target < hi else hi  # min(hi, target), without the builtin's call
    if slope:
        crossing = s0 + (cap_w - p0) / slope  # where the curve meets the cap
        if s < crossing < end:
            end = crossing
    return end, p0, s0, slope


def _walk(
    spec: VehicleSpec, soc: float, target: float, cap_w: float, tapers: bool, budget_s: float
) -> tuple[float, float]:
    """Charge from `soc` towards `target` for at most `budget_s` seconds at the fixed offer:
    (the SoC reached, the seconds that took). The seconds are `budget_s` when the target is
    not reached within it, and infinite when it is never reached."""
    k = spec.efficiency / (spec.capacity_kwh * 36_000.0)
    curve = _curve_for(spec, tapers)
    s, elapsed = soc, 0.0
    for _ in range(4 * (len(spec.curve) if tapers and spec.curve else 1) + 8):  # bounded
        if s >= target - FULL_EPSILON or elapsed >= budget_s:
            break
        end, p0, s0, slope = _piece_from(curve, s, target, cap_w)
        left = budget_s - elapsed
        mid = (s + end) / 2
        if p0 + slope * (mid - s0) >= cap_w or not slope:
            # % per second, constant on this piece: the cap, or a flat piece of the curve
            rate = k * (min(cap_w, p0) if not slope else cap_w)
            if rate <= 0.0:
                return s, math.inf
            seconds = (end - s) / rate
            if seconds > left:
                return s + rate * left, budget_s
        else:
            start_w, end_w = p0 + slope * (s - s0), p0 + slope * (end - s0)
            if start_w <= 0.0:
                return s, math.inf
            # The curve falls to zero at `end`: approached, never reached. log1p and expm1,
            # not log of a ratio and exp minus 1: on a nearly flat piece the ratio is 1 plus
            # a few ulps, and the plain forms lost six digits (advancing in pieces then
            # disagreed with advancing at once). A curve that falls to 0 kW at `end` can
            # leave `end_w` a few ulps above zero and the ratio a few below -1: zero too.
            ratio = slope * (end - s) / start_w
            seconds = math.log1p(ratio) / (slope * k) if end_w > 0.0 and ratio > -1.0 else math.inf
            if seconds > left:
                if math.isinf(left):
                    return s, math.inf
                return s + start_w * math.expm1(slope * k * left) / slope, budget_s
        s, elapsed = end, elapsed + seconds
    return s, elapsed


# The piece `_walk` starts on from a SoC: (spec, target, cap W, tapers, lo %, end %, p0 W,
# s0 %, slope W per %, k % per W·s). Its end, p0, s0, slope and k are those `_walk` finds
# for every SoC in [lo, end) at the same spec, target, cap and tapering (the pieces are
# searched in order, and `end`, the piece's end, the target or where the curve meets the
# cap, does not depend on where on the piece the SoC is).
_Piece = tuple[VehicleSpec, float, float, bool, float, float, float, float, float, float]


def _piece_at(spec: VehicleSpec, soc: float, target: float, cap_w: float, tapers: bool) -> _Piece:
    """`_walk`'s first piece from `soc` (< target), found as `_walk` finds it."""
    k = spec.efficiency / (spec.capacity_kwh * 36_000.0)
    end, p0, s0, slope = _piece_from(_curve_for(spec, tapers), soc, target, cap_w)
    return (spec, target, cap_w, tapers, soc, end, p0, s0, slope, k)


def fixed_cap(point: OperatingPoint) -> float:
    """The most this point's offer lets flow at any SoC (W). A point made without a cap
    (by hand, in a test) is a constant power."""
    return point.cap_w if math.isfinite(point.cap_w) else point.power_w


def advance(battery: Battery, point: OperatingPoint, dt_s: float) -> float:
    """Charge for `dt_s` seconds at this point's offer, in closed form; the metered Wh.

    Exact for any `dt_s` (the power follows the curve as the SoC rises), stopping at the
    target. `step` is the Euler integration (the power at the start of each step) that
    this replaced; property tests keep the two within 0.5 % at 1 s steps.
    """
    spec, start, target = battery.spec, battery.soc, battery.target_soc
    # `is_full` and `fixed_cap`, inline: this runs on every visit of a charging connector
    # (and zeros as floats: float to float is the interpreter's fast compare).
    if point.power_w <= 0.0 or dt_s <= 0.0 or start >= target - FULL_EPSILON:
        return 0.0
    cap = point.cap_w
    cap_w = cap if isfinite(cap) else point.power_w
    tapers = point.tapers
    # `_walk`'s first pass, on the piece kept from the last visit: at 1 s sampling a
    # charging connector is visited every second and stays on one piece of its curve for
    # minutes, so its search (and the curve's look-up) is skipped. The same operations in
    # the same order as `_walk`'s, so the same SoC to the bit; a step that leaves the
    # piece goes through `_walk` itself.
    piece = battery.piece
    if (
        piece is None
        or piece[0] is not spec
        or piece[1] != target
        or piece[2] != cap_w
        or piece[3] is not tapers
        or not piece[4] <= start < piece[5]
    ):
        piece = battery.piece = _piece_at(spec, start, target, cap_w, tapers)
    end, p0, s0, slope, k = piece[5:]
    soc: float | None = None  # None: the step leaves the piece (`_walk` goes on)
    if p0 + slope * ((start + end) / 2 - s0) >= cap_w or not slope:
        rate = k * (min(cap_w, p0) if not slope else cap_w)
        if rate <= 0.0:
            soc = start
        elif (end - start) / rate > dt_s:
            soc = start + rate * dt_s
    else:
        start_w, end_w = p0 + slope * (start - s0), p0 + slope * (end - s0)
        if start_w <= 0.0:
            soc = start
        else:
            ratio = slope * (end - start) / start_w  # as in `_walk`: -1 or below is 0 kW
            seconds = math.log1p(ratio) / (slope * k) if end_w > 0.0 and ratio > -1.0 else math.inf
            if seconds > dt_s:
                if math.isinf(dt_s):
                    soc = start
                else:
                    soc = start + start_w * math.expm1(slope * k * dt_s) / slope
    if soc is None:
        soc, _ = _walk(spec, start, target, cap_w, tapers, dt_s)
    if soc >= target - FULL_EPSILON:
        needed = battery.energy_to_target_wh()
        battery.soc = max(start, battery.target_soc)
        return needed
    battery.soc = soc if soc > start else start  # max(start, soc), without the call
    return (battery.soc - start) * spec.capacity_kwh * 10.0 / spec.efficiency


def seconds_to_target(battery: Battery, point: OperatingPoint) -> float:
    """How long until the battery reaches its target at this point's offer (infinite if
    it never does: nothing offered, or a curve that falls to zero before it)."""
    if battery.is_full():
        return 0.0
    if point.power_w <= 0:
        return math.inf
    spec = battery.spec
    soc, seconds = _walk(
        spec, battery.soc, battery.target_soc, fixed_cap(point), point.tapers, math.inf
    )
    return seconds if soc >= battery.target_soc - FULL_EPSILON else math.inf


def seconds_until_tapering(battery: Battery, point: OperatingPoint, free_cap_w: float) -> float:
    """How long, charging at `point`, until the vehicle's curve falls below `free_cap_w`
    (what it would draw without a limit): until then its demand is constant (0: it tapers
    now; infinite: never before the target). The meter shares a charger's power again then."""
    if battery.is_full() or not point.tapers:
        return math.inf
    spec = battery.spec
    curve = spec.curve or ((0.0, spec.dc_max_kw),)
    soc = battery.soc
    binds = math.inf  # the lowest SoC >= soc where the curve is below free_cap_w
    if spec.curve_max_kw(soc) * 1000 < free_cap_w:
        return 0.0
    for (s0, p0), (s1, p1) in itertools.pairwise(curve):
        if s1 <= soc or p1 * 1000 >= free_cap_w:
            continue
        # Falls below the cap inside this piece (it starts at or above it beyond `soc`).
        crossing = (
            s0 + (free_cap_w - p0 * 1000) * (s1 - s0) / ((p1 - p0) * 1000) if p1 != p0 else s0
        )
        binds = max(crossing, soc)
        break
    if binds >= battery.target_soc - FULL_EPSILON:
        return math.inf
    reached, seconds = _walk(spec, soc, binds, fixed_cap(point), point.tapers, math.inf)
    return seconds if reached >= binds - FULL_EPSILON else math.inf
