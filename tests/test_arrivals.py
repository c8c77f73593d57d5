"""The background-traffic arrival stream (simulator.core.arrivals) and the profile rules
(simulator.contract.traffic): reproducible from a seed, and matching the profile's rates and
distributions over a long simulated horizon.

Statistical tolerances: a count with Poisson (or binomial) spread must lie within 4
standard deviations of its expectation (two-sided chance of a miss under 1e-4 per check);
a sample mean within 4 standard errors. The seeds are fixed, so the runs repeat exactly;
the tolerances are what a different seed would still meet.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from simulator.contract.traffic import (
    DEFAULT_HOURLY_ARRIVALS,
    ProfileError,
    check_distribution,
    check_hourly,
    check_profile,
    check_share,
    check_vehicle_mix,
    default_profile,
    parse_id_tags,
)
from simulator.core.arrivals import Arrival, ArrivalProfile, ArrivalStream, choose

DAY = 86_400.0
START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()  # a Monday, midnight UTC


def stream(seed: int, **given: object) -> ArrivalStream:
    values: dict[str, object] = dict(default_profile())
    profile = ArrivalProfile.from_dict({**values, **given}, catalogue=[1, 2, 3])
    return ArrivalStream(profile, random.Random(seed), START)


def take(s: ArrivalStream, n: int) -> list[Arrival]:
    out = []
    for _ in range(n):
        arrival = s.next()
        assert arrival is not None
        out.append(arrival)
    return out


def within(observed: float, expected: float, sd: float, sigmas: float = 4.0) -> bool:
    return abs(observed - expected) <= sigmas * sd


# -- reproducible -------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_arrivals() -> None:
    assert take(stream(42), 300) == take(stream(42), 300)


def test_the_same_seed_gives_the_same_drivers_whenever_the_run_starts() -> None:
    # A run starts when it is started: 17 minutes later, the hours begin at other points
    # of the stream. The same drivers come in the same order; at a flat rate, after the
    # same gaps.
    flat = ArrivalProfile.from_dict({**default_profile(), "hourly_arrivals": [6.0] * 24})
    shaped = ArrivalProfile.from_dict(dict(default_profile()))
    for profile in (flat, shaped):
        runs = [take(ArrivalStream(profile, random.Random(5), START + d), 40) for d in (0, 1020)]
        assert [a.id_tag for a in runs[0]] == [a.id_tag for a in runs[1]]
        assert [a.dwell_s for a in runs[0]] == [a.dwell_s for a in runs[1]]
    early, late = (take(ArrivalStream(flat, random.Random(5), START + d), 40) for d in (0, 1020))
    assert [a.at - START for a in early] == pytest.approx([a.at - START - 1020 for a in late])


def test_another_seed_gives_other_arrivals() -> None:
    assert take(stream(42), 50) != take(stream(43), 50)


def test_until_keeps_the_arrival_past_its_end_for_the_next_call() -> None:
    whole = take(stream(5), 100)
    parts = stream(5)
    got: list[Arrival] = []
    for n in range(1, 200):
        got += parts.until(START + n * 3600.0)
        if len(got) >= 100:
            break
    assert got[:100] == whole
    assert all(a.at < b.at for a, b in itertools.pairwise(whole))


# -- rates ---------------------------------------------------------------------------------


def test_hourly_counts_match_the_profile_over_a_long_horizon() -> None:
    days = 300
    arrivals = list(stream(2026).until(START + days * DAY))
    by_hour = Counter(datetime.fromtimestamp(a.at, UTC).hour for a in arrivals)
    for hour, rate in enumerate(DEFAULT_HOURLY_ARRIVALS):
        expected = rate * days
        assert within(by_hour[hour], expected, math.sqrt(expected)), (hour, by_hour[hour])
    total = sum(DEFAULT_HOURLY_ARRIVALS) * days
    assert within(len(arrivals), total, math.sqrt(total))


def test_gaps_within_an_hour_are_exponential() -> None:
    # A flat rate of 6 an hour: the mean gap is 600 s, its standard error 600/sqrt(n).
    arrivals = list(stream(11, hourly_arrivals=[6] * 24).until(START + 60 * DAY))
    gaps = [b.at - a.at for a, b in itertools.pairwise(arrivals)]
    mean = sum(gaps) / len(gaps)
    assert within(mean, 600.0, 600.0 / math.sqrt(len(gaps)))
    # Exponential: about e^-1 of the gaps are longer than the mean.
    longer = sum(g > 600.0 for g in gaps) / len(gaps)
    p = math.exp(-1)
    assert within(longer, p, math.sqrt(p * (1 - p) / len(gaps)))


def test_hours_follow_the_sites_time_zone() -> None:
    # Only 08:00-09:00 local in Kolkata (UTC+5:30): 02:30-03:30 UTC.
    hourly = [0.0] * 24
    hourly[8] = 5.0
    arrivals = list(
        stream(3, hourly_arrivals=hourly, time_zone="Asia/Kolkata").until(START + 20 * DAY)
    )
    assert arrivals
    kolkata = ZoneInfo("Asia/Kolkata")
    assert {datetime.fromtimestamp(a.at, kolkata).hour for a in arrivals} == {8}


def test_a_profile_without_arrivals_yields_none() -> None:
    s = stream(1, hourly_arrivals=[0] * 24)
    assert s.next() is None
    assert list(s.until(START + 10 * DAY)) == []


def test_expected_arrivals_integrates_the_rate_across_a_dst_change() -> None:
    flat = ArrivalProfile.from_dict(default_profile())
    assert flat.expected_arrivals(START, START + DAY) == pytest.approx(sum(DEFAULT_HOURLY_ARRIVALS))
    berlin = ZoneInfo("Europe/Berlin")
    hourly = list(range(1, 25))
    profile = ArrivalProfile.from_dict(
        {**default_profile(), "hourly_arrivals": hourly, "time_zone": "Europe/Berlin"}
    )
    # 29 March 2026 has no 02:00 in Berlin: that hour's rate (3) is never applied.
    day_start = datetime(2026, 3, 29, tzinfo=berlin).timestamp()
    day_end = datetime(2026, 3, 30, tzinfo=berlin).timestamp()
    assert profile.expected_arrivals(day_start, day_end) == pytest.approx(sum(hourly) - 3)


# -- what each arrival draws ---------------------------------------------------------------


def test_vehicle_mix_and_never_unplug_share_match_their_weights() -> None:
    s = stream(8, vehicle_mix=[[10, 3], [20, 1]], never_unplug_share=0.2)
    arrivals = take(s, 8000)
    n = len(arrivals)
    tens = sum(a.vehicle == 10 for a in arrivals)
    assert {a.vehicle for a in arrivals} == {10, 20}
    assert within(tens, n * 0.75, math.sqrt(n * 0.75 * 0.25))
    stay = sum(a.never_unplug for a in arrivals)
    assert within(stay, n * 0.2, math.sqrt(n * 0.2 * 0.8))


def test_an_empty_mix_uses_the_catalogue_alike() -> None:
    arrivals = take(stream(9), 3000)
    counts = Counter(a.vehicle for a in arrivals)
    assert set(counts) == {1, 2, 3}
    for vehicle in (1, 2, 3):
        assert within(counts[vehicle], 1000, math.sqrt(3000 * (1 / 3) * (2 / 3)))
    empty = ArrivalStream(ArrivalProfile.from_dict(default_profile()), random.Random(1), START)
    assert take(empty, 1)[0].vehicle is None


def test_soc_target_and_dwell_follow_their_distributions() -> None:
    arrivals = take(
        stream(
            13,
            soc={"kind": "uniform", "a": 10, "b": 40},
            target_soc={"kind": "normal", "a": 90, "b": 20},
            dwell_minutes={"kind": "fixed", "a": 45, "b": 0},
        ),
        5000,
    )
    n = len(arrivals)
    socs = [a.soc for a in arrivals]
    assert min(socs) >= 10 and max(socs) <= 40
    # Uniform on [10, 40]: mean 25, sd 30/sqrt(12).
    assert within(sum(socs) / n, 25.0, 30 / math.sqrt(12) / math.sqrt(n))
    # The normal target is clipped at 100 %, and never below the initial SoC.
    assert all(a.soc <= a.target_soc <= 100 for a in arrivals)
    clipped = sum(a.target_soc == 100 for a in arrivals) / n
    p = 0.5 - 0.5 * math.erf(0.5 / math.sqrt(2))  # P(N(90, 20) > 100)
    assert within(clipped, p, math.sqrt(p * (1 - p) / n))
    assert {a.dwell_s for a in arrivals} == {45 * 60.0}


def test_id_tags_come_from_the_pool_and_cover_it() -> None:
    arrivals = take(stream(21, id_tags="A1 B2 C3..C5"), 2000)
    assert {a.id_tag for a in arrivals} == {"A1", "B2", "C3", "C4", "C5"}


def test_choose_maps_a_pick_to_each_free_connector() -> None:
    free = ["a", "b", "c"]
    assert [choose(free, p) for p in (0.0, 0.34, 0.67, 0.9999)] == [0, 1, 2, 2]


# -- the profile's rules (shared with the admin and the API) --------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1] * 23, "Give 24 numbers, one per hour of the day from 00:00 to 23:00; got 23."),
        ([1] * 23 + [-1], "The rate at 23:00 is -1; it must be within 0 and 10000"),
        ([1] * 23 + ["x"], "The rate at 23:00 must be a number, not 'x'."),
        ([1] * 23 + [float("nan")], "The rate at 23:00 must be a finite number"),
    ],
)
def test_hourly_rates_are_checked(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_hourly(value)
    assert str(caught.value).startswith(message)


def test_hourly_rates_are_read_from_text_too() -> None:
    assert check_hourly(" ".join(["0.5"] * 24)) == [0.5] * 24


@pytest.mark.parametrize(
    ("kind", "a", "b", "message"),
    [
        ("poisson", 1, 2, "'poisson' is not a distribution; use one of fixed, uniform, normal."),
        ("uniform", 50, 20, "The max 20 is below the min 50."),
        ("uniform", -5, 20, "The min -5 must be within 0 and 100 %."),
        ("normal", 50, -1, "The standard deviation -1 must not be negative."),
        ("fixed", 120, 0, "The value 120 must be within 0 and 100 %."),
    ],
)
def test_distributions_are_checked(kind: str, a: float, b: float, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_distribution(kind, a, b, (0.0, 100.0, "%"))
    assert str(caught.value) == message


def test_id_tag_pools_are_checked() -> None:
    assert parse_id_tags("T08..T11") == ["T08", "T09", "T10", "T11"]
    with pytest.raises(ValueError, match="at most 20"):
        parse_id_tags("X" * 21)
    with pytest.raises(ValueError, match="counts down"):
        parse_id_tags("T5..T1")
    with pytest.raises(ValueError, match="is not a range"):
        parse_id_tags("A1..B2")
    with pytest.raises(ValueError, match="at least one idTag"):
        parse_id_tags("  ,  ")
    with pytest.raises(ValueError, match="more than 100,000"):
        parse_id_tags("T1..T200000")


def test_shares_and_mixes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"The share 1\.5 must be within 0 and 1"):
        check_share(1.5)
    with pytest.raises(ValueError, match="must be more than 0"):
        check_vehicle_mix([[1, 0]])
    with pytest.raises(ValueError, match="appears twice"):
        check_vehicle_mix([[1, 1], {"vehicle": 1, "weight": 2}])


def test_a_whole_profile_names_the_field_of_its_error() -> None:
    with pytest.raises(ProfileError) as caught:
        check_profile({"dwell_minutes": {"kind": "uniform", "a": 0, "b": 10}})
    assert caught.value.field == "dwell_minutes"
    assert caught.value.message == "The min 0 must be within 1 and 10080 minutes."
    with pytest.raises(ProfileError) as unknown:
        check_profile({"arrivals": []})
    assert unknown.value.field == "arrivals"
    with pytest.raises(ProfileError) as zone:
        check_profile({"time_zone": "Mars/Olympus"})
    assert zone.value.field == "time_zone"


def test_a_distribution_of_another_shape_says_which_shape_it_takes() -> None:
    """{"dist": "fixed", "value": 10} was refused as "None is not a distribution"."""
    with pytest.raises(ProfileError) as caught:
        check_profile({"dwell_minutes": {"dist": "fixed", "value": 10}})
    assert caught.value.field == "dwell_minutes"
    assert caught.value.message.startswith("Unknown key(s) dist, value: a distribution is ")
    assert '{"kind": "fixed", "a": value}' in caught.value.message
