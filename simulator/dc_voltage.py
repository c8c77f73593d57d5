"""The pack voltage of a DC-charged vehicle as a function of its state of charge."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.battery import VehicleSpec


def pack_voltage(spec: VehicleSpec, soc: float) -> float:
    """A Li-ion open-circuit-like curve: steep near empty, a long flat middle around the
    nominal voltage, rising again towards full.

    Built from two pieces that meet at the nominal voltage at 50 % SoC: below, a
    square-root rise from the minimum (fast at first, then flat); above, a quadratic rise to
    the maximum (flat at first, then steeper). Monotonic in SoC and always within
    [dc_min_v, dc_max_v].
    """
    low, nominal, high = spec.dc_min_v, spec.dc_nominal_v, spec.dc_max_v
    if high <= 0:
        return 0.0
    nominal = min(max(nominal, low), high)
    x = min(max(soc, 0.0), 100.0) / 100.0
    if x <= 0.5:
        value = low + (nominal - low) * math.sqrt(x / 0.5)
    else:
        value = nominal + (high - nominal) * ((x - 0.5) / 0.5) ** 2
    return min(max(value, low), high)
