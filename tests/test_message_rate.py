"""The message rate on `runsimulator`'s status line (simulator/runtime/fleet_status.py)."""

from __future__ import annotations

import pytest

from simulator.runtime.fleet_status import FleetStatus, MessageRate, rate_window


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


def test_the_minute_count_sees_a_burst_a_minute_in_every_line():
    """`make run`'s demo sends its MeterValues in one burst a minute: its 10 s rate read
    "0.0 msg/s" in five lines of six. The minute's count holds the burst in each line until
    it is a minute old, then the next burst's."""
    now, total = [0.0], [0]
    minute = MessageRate(lambda: total[0], window=60.0, clock=lambda: now[0])
    shown = {}
    for second in range(181):
        if second % 60 == 30:
            total[0] += 7  # seven charging chargers' MeterValues of this minute
        now[0] = float(second)
        counted = minute.count()
        if second % 10 == 0:
            shown[second] = counted
    assert shown[0] == shown[10] == shown[20] == 0  # nothing sent yet
    assert [shown[s] for s in range(30, 181, 10)] == [7] * 16  # one burst in every minute


def test_the_status_line_gives_both_rates():
    status = FleetStatus(
        wanted=10, accepted=10, connecting=0, failing=0, charging=7,
        messages_per_second=0.0, messages_last_minute=1234,
    )  # fmt: skip
    assert status.text() == (
        "fleet: 10/10 accepted, 0 connecting, 0 failing, 7 charging, 0.0 msg/s, 1,234 msg/min"
    )
