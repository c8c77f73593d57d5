"""The pack voltage of a DC-charged vehicle as a function of its state of charge."""

from __future__ import annotations

from simulator.core.vehicle import VehicleSpec

# Shape of each half of the curve, g(t) = LINEAR * t + (1 - LINEAR) * t**POWER for t in
# [0, 1]: the linear share keeps the flat middle strictly rising, the power term makes the
# ends steep.
_LINEAR = 0.35
_POWER = 4


def pack_voltage(spec: VehicleSpec, soc: float) -> float:
    """A Li-ion open-circuit-like pack voltage in volts; 0 for a vehicle without DC voltages.

    Shape: the curve passes through ``dc_nominal_v`` at 50 % SoC and reaches ``dc_min_v`` at
    0 % and ``dc_max_v`` at 100 %. Each half is the nominal voltage plus (above 50 %) or
    minus (below) its half-span times g(t), t being the distance from 50 % scaled to 0..1
    and g(t) = 0.35 t + 0.65 t⁴. So it is flat around the middle (slope 0.35 of the average
    over the half), steep towards empty and full (slope 2.95 times the average at the ends),
    continuous, monotonic non-decreasing in SoC and always within [dc_min_v, dc_max_v]
    (SoC is clamped to 0..100, the nominal voltage to [min, max]).

    For the ID.3 figures (300 / 370 / 410 V): 318 V at 5 %, 349 V at 20 %, 370 V at 50 %,
    382 V at 80 %, 400 V at 95 %.
    """
    low, high = spec.dc_min_v, spec.dc_max_v
    if high <= 0 or low > high:
        return 0.0
    # Comparisons, not min() and max(): the meter reads this at every visit of a DC
    # connector charging (`Evse.meter`), and those builtins' calls cost more than the curve.
    if low < 0.0:
        low = 0.0
    nominal = spec.dc_nominal_v
    if nominal < low:
        nominal = low
    elif nominal > high:
        nominal = high
    if soc < 0.0:
        soc = 0.0
    elif soc > 100.0:
        soc = 100.0
    x = soc / 50.0 - 1.0  # -1 at empty, 0 at half, +1 at full
    t = x if x >= 0.0 else -x
    g = _LINEAR * t + (1.0 - _LINEAR) * t**_POWER
    value = nominal + (high - nominal) * g if x >= 0 else nominal - (nominal - low) * g
    if value < low:
        return low
    if value > high:
        return high
    return value
