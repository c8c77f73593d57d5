"""A charging session's power, state of charge and energy over time, in bounded memory.

The dashboard draws a charger's whole session, also when the page is opened (or reloaded)
an hour into it, so the engine keeps the series itself. It holds at most `capacity`
points whatever the session's length: when full, neighbouring points are merged in pairs
(power averaged, SoC and energy as at the later point) and the spacing between kept
points doubles. A 240-point series thus covers 4 minutes at 1 s resolution, 8 hours at
2 minutes. The values are float32, times as seconds since the start: about 4 KB a
connector at fleet scale.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

CAPACITY = 240
# The first resolution: at most a point a second (the meter ticks about once a second).
FIRST_STEP_S = 1.0
_WIDTH = 4  # offset s, power W, SoC % (NaN: unknown), energy Wh since the start
_NAN = float("nan")


@dataclass
class SessionSeries:
    started_at: float  # epoch seconds
    start_wh: float = 0.0  # the register at the start: energy is counted from here
    capacity: int = CAPACITY
    ended_at: float | None = None
    step_s: float = FIRST_STEP_S
    # offset, power, soc, energy; flat, `_WIDTH` values a point
    _values: array[float] = field(default_factory=lambda: array("f"))
    # Power samples since the last kept point, averaged into the next one.
    _power_sum: float = 0.0
    _power_n: int = 0

    def __post_init__(self) -> None:
        if self.capacity < 2:
            raise ValueError("a session series needs room for at least 2 points")

    def __len__(self) -> int:
        return len(self._values) // _WIDTH

    def record(
        self,
        at: float,
        power_w: float,
        soc: float | None,
        register_wh: float,
        *,
        last: bool = False,
    ) -> None:
        """A reading at `at` (epoch s) of the connector's register. Kept as a point when `step_s` has passed since the
        last kept one (or when `last`); otherwise its power goes into the next point's
        average, so a short peak between points still counts."""
        if self.ended_at is not None:
            return
        self._power_sum += power_w
        self._power_n += 1
        offset = at - self.started_at  # max(.., 0.0) as its comparison: on every visit
        if offset < 0.0:
            offset = 0.0
        size = len(self._values)  # not len(self): a call, on every visit of the meter
        if size and not last and offset - self._values[size - _WIDTH] < self.step_s:
            return
        power = self._power_sum / self._power_n
        self._power_sum, self._power_n = 0.0, 0
        energy = register_wh - self.start_wh
        if energy < 0.0:
            energy = 0.0
        self._values.extend((offset, power, _NAN if soc is None else soc, energy))
        if len(self) > self.capacity:
            self._halve()
        if last:
            self.ended_at = at

    def end(self, at: float, soc: float | None, register_wh: float) -> None:
        """The session is over: a last point (no power flows now), then no more."""
        self.record(at, 0.0, soc, register_wh, last=True)

    def _halve(self) -> None:
        """Merge neighbours in pairs: half the points, twice the spacing. The first point
        (the start) stays, and so does an odd newest one."""
        v = self._values
        merged = array("f", v[:_WIDTH])
        n = len(self)
        for i in range(1, n - 1, 2):
            a, b = i * _WIDTH, (i + 1) * _WIDTH
            merged.extend((v[b], (v[a + 1] + v[b + 1]) / 2, v[b + 2], v[b + 3]))
        if n % 2 == 0:
            merged.extend(v[(n - 1) * _WIDTH : n * _WIDTH])
        self._values = merged
        self.step_s *= 2

    def points(self) -> list[list[float | None]]:
        """[epoch s, power W, SoC % or None, energy Wh since the start], oldest first,
        rounded as the dashboard shows them."""
        v = self._values
        out: list[list[float | None]] = []
        for i in range(0, len(v), _WIDTH):
            soc = v[i + 2]
            out.append(
                [
                    round(self.started_at + v[i], 1),
                    round(v[i + 1], 1),
                    None if soc != soc else round(soc, 1),  # NaN: no SoC known
                    round(v[i + 3], 1),
                ]
            )
        return out
