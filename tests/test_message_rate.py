"""The message rate on `runsimulator`'s status line (simulator/runtime/fleet_status.py)."""

from __future__ import annotations

import pytest

from simulator.runtime.fleet_status import MessageRate, rate_window


def lines_shown(window: float, burst_at: float, every: int = 10) -> list[float]:
    """The rate of each plain line (one at 0 s and one `every` s later) of a fleet whose
    messages all go out in one burst between them, sampled each second as PlainStatus
    reads it."""
    now, total = [0.0], [0]
    rate = MessageRate(lambda: total[0], window=window, clock=lambda: now[0])
    shown = []
    for second in range(every + 1):
        if second - 1 < burst_at <= second:
            total[0] += 7  # seven charging chargers' MeterValues of this minute
        now[0] = float(second)
        figure = rate.sample()
        if second in (0, every):
            shown.append(figure)
    return shown


@pytest.mark.parametrize("burst_at", [0.3, 2.5, 9.7])
def test_a_plain_line_counts_the_burst_since_the_line_before(burst_at):
    """Lines every 10 s over a 5 s window missed every burst that fell in the first half of
    the interval: `make run`'s demo fleet, its samples a minute apart from one boot, read
    "0.0 msg/s" in every line while seven chargers charged."""
    assert lines_shown(rate_window(live=False, every=10.0), burst_at) == [0.0, 0.7]


def test_a_redrawn_line_shows_the_last_five_seconds():
    assert rate_window(live=True, every=10.0) == 5.0
    assert rate_window(live=False, every=1.0) == 5.0  # a line a second: not a 1 s jitter
