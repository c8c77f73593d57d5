"""The worker's history of each site's power and grid limit (`runtime.site_history`), its
bounds, the summary that carries it, and how the web side adds up the workers' parts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from chargers.engine_client import add_up_history
from simulator import contract
from simulator.runtime.commands import CommandServer
from simulator.runtime.load_management import Site, SiteController
from simulator.runtime.site_history import SETTLED_S, SPAN_S, STEP_S, SiteHistory
from simulator.runtime.store import Store
from simulator.runtime.tally import Tally
from tests.engine import runtime_charger

# A moment on a step's boundary (any would do; times are Unix seconds).
T0 = 1_767_225_600.0


def counts(power_w: float, limit_w: float | None = 11_000.0) -> contract.SiteCounts:
    return contract.SiteCounts(
        power_w=power_w,
        chargers=1,
        charging=1 if power_w else 0,
        statuses={},
        links={},
        held_back=0,
        grid_limit_w=limit_w,
        load_management=False,
    )


def ends(points: list[list[float | None]]) -> list[float]:
    return [float(p[0]) for p in points if p[0] is not None]


def test_a_step_is_the_mean_of_its_samples_at_the_steps_end_with_the_limit_then():
    history = SiteHistory()
    for second, power in enumerate([1000.0, 3000.0, 2000.0, 2000.0]):
        history.record(T0 + second, {7: counts(power)})
    history.record(T0 + 10, {7: counts(0.0, limit_w=None)})  # the next step closes it
    history.record(T0 + 20, {7: counts(500.0, limit_w=None)})

    now = T0 + 20 + SETTLED_S
    assert history.points(7, now) == [[T0 + 10, 2000.0, 11_000.0], [T0 + 20, 0.0, None]]
    # A step is given out only once it ended SETTLED_S ago (every worker has closed it).
    assert history.points(7, now - 0.5) == [[T0 + 10, 2000.0, 11_000.0]]
    assert history.points(8, now) == []  # a site never sampled


def test_two_hours_of_samples_keep_the_last_hour_and_no_more_points_than_its_steps():
    history = SiteHistory()
    capacity = int(SPAN_S / STEP_S)
    for second in range(2 * 3600):
        history.record(T0 + second, {1: counts(float(second)), 2: counts(1.0)})
        series = history._sites[1]
        assert len(series.ends) == len(series.power_w) == len(series.limit_w) <= capacity
    now = T0 + 2 * 3600
    points = history.points(1, now)
    assert len(points) == capacity  # the hour, steps of 10 s (the newest, 7200, not over)
    times = ends(points)
    assert times[0] >= now - SPAN_S
    assert times == sorted(times)
    assert points[-1] == [now - STEP_S, 7184.5, 11_000.0]  # the mean of 7180..7189 s


def test_a_site_no_longer_sampled_is_forgotten_once_its_points_are_an_hour_old():
    history = SiteHistory()
    history.record(T0, {1: counts(100.0), 2: counts(200.0)})
    history.record(T0 + 1, {1: counts(100.0)})  # site 2's chargers left this worker
    history.record(T0 + 10, {1: counts(100.0)})
    assert history.points(2, T0 + 10 + SETTLED_S) == [[T0 + 10, 200.0, 11_000.0]]
    history.record(T0 + 10 + SPAN_S, {1: counts(100.0)})
    assert len(history) == 2  # its point is not yet older than the span
    history.record(T0 + 11 + SPAN_S, {1: counts(100.0)})
    assert len(history) == 1
    assert history.points(2, T0 + 11 + SPAN_S) == []


def test_a_clock_set_back_leaves_the_points_in_time_order():
    history = SiteHistory()
    history.record(T0 + 25, {1: counts(100.0)})
    history.record(T0 + 35, {1: counts(200.0)})
    history.record(T0 + 5, {1: counts(300.0)})  # the host's clock stepped back
    history.record(T0 + 45, {1: counts(400.0)})
    times = ends(history.points(1, T0 + 100))
    assert times == sorted(set(times))


def test_a_history_needs_a_positive_step_within_its_span():
    with pytest.raises(ValueError, match="positive step"):
        SiteHistory(step_s=0)
    with pytest.raises(ValueError, match="positive step"):
        SiteHistory(step_s=60, span_s=30)


def test_a_summary_asked_with_a_site_carries_that_sites_history_only_then():
    store = Store()
    store.add(runtime_charger("CP-H", "ws://x", evses=1, location_id=3))
    sites = SiteController()
    sites.use({3: Site(22_000.0, False)})
    sites.history.record(T0, {3: counts(4000.0, 22_000.0)})
    sites.history.record(T0 + 10, {3: counts(0.0, 22_000.0)})
    server = CommandServer(SimpleNamespace(tally=Tally(store, sites), shard=0, shards=1), None)

    assert "history" not in server.shard_summary("r1")
    # Asked now (well after T0): the hour before now holds none of those points.
    assert server.shard_summary("r2", history=3)["history"] == []
    sites.history.record(T0 + 20, {3: counts(0.0, 22_000.0)})
    sites.history.span_s = 1e12  # ...unless the span reaches back to them
    assert server.shard_summary("r3", history=3)["history"][:2] == [
        [T0 + 10, 4000.0, 22_000.0],
        [T0 + 20, 0.0, 22_000.0],
    ]
    assert server.shard_summary("r4", history=4)["history"] == []  # no charger there


def test_the_workers_parts_of_a_site_add_up_step_by_step():
    def part(shard: int, points: list[list[float | None]]) -> contract.ShardSummary:
        answer = contract.shard_summary(
            None,
            shard,
            2,
            contract.FleetCounts(chargers=0, statuses={}, links={}, power_w=0),
            {},
            T0,
            history=points,
        )
        return answer

    one = part(0, [[T0 + 10, 1000.0, 5000.0], [T0 + 20, 1500.0, 5000.0]])
    two = part(1, [[T0 + 20, 2000.0, 6000.0], [T0 + 30, 2500.0, None]])
    no_part = contract.shard_summary(
        None, 1, 2, contract.FleetCounts(chargers=0, statuses={}, links={}, power_w=0), {}, T0
    )
    assert add_up_history([one, two, no_part]) == [
        [T0 + 10, 1000.0, 5000.0],  # the other worker ran no charger of the site then
        [T0 + 20, 3500.0, 6000.0],  # the limit of the worker that read an edit first
        [T0 + 30, 2500.0, None],
    ]
    assert add_up_history([]) == []
