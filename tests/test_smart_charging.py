"""Smart charging: profile rules, limit calculation and GetCompositeSchedule (OCPP 1.6)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from itertools import pairwise
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.core.smart_charging import (
    ChargingProfile,
    Electrical,
    ProfileError,
    ProfileStore,
    RateUnit,
    amps_to_watts,
    distribute,
    parse_datetime,
    parse_remote_start_profile,
    units_from_config,
    watts_to_amps,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
V = 230.0


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def make(
    profile_id: int = 1,
    *,
    stack: int = 0,
    purpose: str = "TxDefaultProfile",
    kind: str = "Absolute",
    periods: tuple[tuple[int, float], ...] = ((0, 16),),
    unit: str = "A",
    start: datetime | None = T0,
    duration: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A csChargingProfiles dict as a central system would send it."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": limit} for s, limit in periods],
    }
    if start is not None and kind != "Relative":
        schedule["startSchedule"] = iso(start)
    if duration is not None:
        schedule["duration"] = duration
    profile: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    if kind == "Recurring":
        profile["recurrencyKind"] = extra.pop("recurrency", "Daily")
    profile.update(extra)
    return profile


def install(
    store: ProfileStore, connector: int, data: dict[str, Any], tx: int | None = None
) -> str:
    return store.install(connector, ChargingProfile.from_dict(data), active_transaction_id=tx)


def at(store: ProfileStore, connector: int, moment: datetime, **kwargs: Any) -> float:
    return store.limit_at(connector, moment, **kwargs).amps


def periods_of(schedule: dict[str, Any] | None) -> list[tuple[int, float]]:
    assert schedule is not None, "no composite schedule"
    return [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]]


# --------------------------------------------------------------------------- installing


def test_tx_profile_without_transaction_is_rejected() -> None:
    store = ProfileStore(2)
    assert install(store, 1, make(purpose="TxProfile"), tx=None) == "Rejected"
    assert len(store) == 0


def test_tx_profile_with_active_transaction_is_accepted() -> None:
    store = ProfileStore(2)
    assert install(store, 1, make(purpose="TxProfile"), tx=5) == "Accepted"


def test_tx_profile_naming_another_transaction_is_rejected() -> None:
    store = ProfileStore(2)
    assert install(store, 1, make(purpose="TxProfile", transactionId=4), tx=5) == "Rejected"
    assert install(store, 1, make(purpose="TxProfile", transactionId=5), tx=5) == "Accepted"


def test_tx_profile_on_connector_0_is_rejected() -> None:
    assert install(ProfileStore(2), 0, make(purpose="TxProfile"), tx=5) == "Rejected"


def test_charge_point_max_profile_on_connector_1_is_rejected() -> None:
    store = ProfileStore(2)
    assert install(store, 1, make(purpose="ChargePointMaxProfile")) == "Rejected"
    assert install(store, 0, make(purpose="ChargePointMaxProfile")) == "Accepted"


def test_relative_charge_point_max_profile_is_rejected() -> None:
    store = ProfileStore(2)
    data = make(purpose="ChargePointMaxProfile", kind="Relative")
    assert install(store, 0, data) == "Rejected"


def test_tx_default_profile_is_accepted_on_connector_0_or_one_connector() -> None:
    store = ProfileStore(2)
    assert install(store, 0, make(1)) == "Accepted"
    assert install(store, 2, make(2)) == "Accepted"
    assert install(store, 3, make(3)) == "Rejected"  # no such connector


def test_same_id_replaces_existing_profile_even_on_another_connector() -> None:
    store = ProfileStore(2)
    install(store, 1, make(7, stack=1, periods=((0, 10),)))
    assert install(store, 2, make(7, stack=2, periods=((0, 20),))) == "Accepted"
    assert [(c, p.id, p.stack_level) for c, p in store.installed()] == [(2, 7, 2)]


def test_same_stack_level_and_purpose_replaces_on_the_same_connector_only() -> None:
    store = ProfileStore(2)
    install(store, 1, make(1, stack=3, periods=((0, 10),)))
    install(store, 2, make(2, stack=3, periods=((0, 10),)))
    assert install(store, 1, make(3, stack=3, periods=((0, 20),))) == "Accepted"
    assert sorted((c, p.id) for c, p in store.installed()) == [(1, 3), (2, 2)]
    # Same stack level but another purpose is a different slot.
    install(store, 1, make(4, stack=3, purpose="TxProfile"), tx=9)
    assert sorted((c, p.id) for c, p in store.installed()) == [(1, 3), (1, 4), (2, 2)]


def test_max_profiles_installed_rejects_but_replacement_does_not_count() -> None:
    store = ProfileStore(2, max_profiles=2)
    assert install(store, 1, make(1, stack=0)) == "Accepted"
    assert install(store, 1, make(2, stack=1)) == "Accepted"
    assert install(store, 1, make(3, stack=2)) == "Rejected"
    assert install(store, 1, make(2, stack=2)) == "Accepted"  # replaces id 2
    assert install(store, 1, make(4, stack=0)) == "Accepted"  # replaces stack 0
    assert sorted(p.id for _, p in store.installed()) == [2, 4]


def test_limits_from_configuration_reject() -> None:
    store = ProfileStore(1, max_stack_level=3, max_periods=2, allowed_units={"A"})
    assert install(store, 1, make(1, stack=4)) == "Rejected"
    assert install(store, 1, make(2, periods=((0, 1), (10, 2), (20, 3)))) == "Rejected"
    assert install(store, 1, make(3, unit="W")) == "Rejected"
    assert store.check(1, ChargingProfile.from_dict(make(1, stack=4)), active_transaction_id=None)
    assert install(store, 1, make(4, stack=3, periods=((0, 1), (10, 2)))) == "Accepted"
    assert units_from_config("Current,Power") == {"A", "W"}
    assert units_from_config("Power") == {"W"}


def test_rejected_profile_leaves_the_store_unchanged() -> None:
    store = ProfileStore(2)
    install(store, 1, make(1, stack=0))
    assert install(store, 1, make(1, purpose="TxProfile"), tx=None) == "Rejected"
    assert [p.purpose for _, p in store.installed()] == ["TxDefaultProfile"]


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["chargingSchedule"]["chargingSchedulePeriod"][0].update(startPeriod=5), "0"),
        (
            lambda p: p["chargingSchedule"]["chargingSchedulePeriod"].append(
                {"startPeriod": 0, "limit": 1}
            ),
            "greater than the previous",
        ),
        (lambda p: p["chargingSchedule"]["chargingSchedulePeriod"][0].update(limit=-1), ">= 0"),
        (lambda p: p["chargingSchedule"].update(chargingRateUnit="kW"), "one of A, W"),
        (lambda p: p["chargingSchedule"].update(chargingSchedulePeriod=[]), "empty"),
        (lambda p: p["chargingSchedule"].update(duration=0), "duration"),
        (lambda p: p.update(validFrom="yesterday"), "validFrom is not a valid ISO 8601"),
        (lambda p: p.update(validTo="2024-02-30T00:00:00Z"), "validTo"),
        (
            lambda p: p.update(validFrom="2024-03-02T00:00:00Z", validTo="2024-03-01T00:00:00Z"),
            "must be after",
        ),
        (lambda p: p.update(chargingProfileKind="Recurring"), "recurrencyKind is required"),
        (lambda p: p.update(stackLevel=-1), "stackLevel"),
        (lambda p: p.update(chargingProfileId=-1), "chargingProfileId must be >= 0"),
        (lambda p: p.update(transactionId=3), "only allowed in a TxProfile"),
        (lambda p: p.update(chargingProfilePurpose="Tx"), "chargingProfilePurpose"),
        (lambda p: p.pop("chargingSchedule"), "chargingSchedule is required"),
        (
            lambda p: p["chargingSchedule"]["chargingSchedulePeriod"][0].update(numberPhases=4),
            "numberPhases",
        ),
        (lambda p: p["chargingSchedule"]["chargingSchedulePeriod"][0].update(limit="16"), "number"),
        (lambda p: p.update(stackLevel=Decimal("1.5")), "integer"),
    ],
)
def test_invalid_profile_raises_a_clear_profile_error(change: Any, message: str) -> None:
    data = make()
    change(data)
    with pytest.raises(ProfileError, match=message):
        ChargingProfile.from_dict(data)


def test_recurring_profile_needs_start_schedule_and_periods_within_one_day() -> None:
    with pytest.raises(ProfileError, match="startSchedule is required"):
        ChargingProfile.from_dict(make(kind="Recurring", start=None))
    with pytest.raises(ProfileError, match="beyond one Daily"):
        ChargingProfile.from_dict(make(kind="Recurring", periods=((0, 1), (86400, 2))))


@pytest.mark.parametrize(("recurrency", "cycle"), [("Daily", 86_400), ("Weekly", 7 * 86_400)])
def test_a_recurring_schedule_longer_than_its_recurrence_is_refused(
    recurrency: str, cycle: int
) -> None:
    """It cannot repeat every day (week): the next instance would start before it ended."""
    ChargingProfile.from_dict(make(kind="Recurring", recurrency=recurrency, duration=cycle))
    with pytest.raises(ProfileError, match=f"longer than one {recurrency} recurrence"):
        ChargingProfile.from_dict(make(kind="Recurring", recurrency=recurrency, duration=cycle + 1))


def test_decimal_input_is_converted_to_float_and_round_trips_as_json() -> None:
    # Exactly how the ocpp library hands the payload over: floats parsed as Decimal.
    text = json.dumps(
        {
            "chargingProfileId": 3,
            "transactionId": 12,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "validFrom": "2024-03-01T10:00:00+02:00",
            "validTo": "2024-03-02T00:00:00Z",
            "chargingSchedule": {
                "duration": 3600,
                "startSchedule": "2024-03-01T08:00:00.250Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 16.1, "numberPhases": 1},
                    {"startPeriod": 600, "limit": 6.0},
                ],
                "minChargingRate": 4.2,
            },
        }
    )
    data = json.loads(text, parse_float=Decimal)
    assert isinstance(data["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"], Decimal)
    profile = ChargingProfile.from_dict(data)
    period = profile.schedule.periods[0]
    assert type(period.limit) is float and period.limit == 16.1
    assert profile.schedule.min_charging_rate == 4.2
    assert profile.valid_from == datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    out = profile.to_dict()
    assert json.loads(json.dumps(out)) == out
    assert out["validFrom"] == "2024-03-01T08:00:00Z"
    assert out["chargingSchedule"]["startSchedule"] == "2024-03-01T08:00:00.250000Z"
    assert ChargingProfile.from_dict(out) == profile


def test_date_without_offset_is_read_as_utc() -> None:
    assert parse_datetime("2024-03-01T12:00:00") == T0
    assert parse_datetime("2024-03-01T13:00:00+01:00") == T0
    assert parse_datetime("2024-03-01T12:00:00z") == T0
    with pytest.raises(ProfileError, match="ISO 8601"):
        parse_datetime(20240301)


def test_store_persists_and_loads_its_profiles() -> None:
    store = ProfileStore(2)
    install(store, 0, make(1, purpose="ChargePointMaxProfile", unit="W", periods=((0, 11000.5),)))
    install(store, 2, make(2, kind="Recurring", recurrency="Weekly", validTo=iso(T0)))
    install(store, 1, make(3, purpose="TxProfile", kind="Relative", duration=60), tx=1)
    saved = json.loads(json.dumps(store.all()))
    again = ProfileStore(2)
    again.load(saved)
    assert again.installed() == store.installed()
    assert again.all() == saved
    with pytest.raises(ProfileError):
        again.load([{"connectorId": 9, "csChargingProfiles": make()}])
    assert again.installed() == store.installed()


def test_remote_start_profile_must_be_a_tx_profile_without_transaction_id() -> None:
    assert parse_remote_start_profile(make(purpose="TxProfile")).purpose == "TxProfile"
    with pytest.raises(ProfileError, match="must be a TxProfile"):
        parse_remote_start_profile(make())
    with pytest.raises(ProfileError, match="must not have a transactionId"):
        parse_remote_start_profile(make(purpose="TxProfile", transactionId=1))


# --------------------------------------------------------------------------- clearing


def _clear_fixture() -> ProfileStore:
    store = ProfileStore(2)
    install(store, 0, make(1, stack=0, purpose="ChargePointMaxProfile"))
    install(store, 0, make(2, stack=0))
    install(store, 1, make(3, stack=1))
    install(store, 2, make(4, stack=1))
    install(store, 1, make(5, stack=1, purpose="TxProfile"), tx=8)
    return store


def ids(store: ProfileStore) -> list[int]:
    return sorted(p.id for _, p in store.installed())


def test_clear_by_id_ignores_the_other_criteria() -> None:
    store = _clear_fixture()
    assert store.clear(id=3, connector_id=2, purpose="TxProfile", stack_level=9) == "Accepted"
    assert ids(store) == [1, 2, 4, 5]
    assert store.clear(id=3, connector_id=2) == "Unknown"  # id given: no fallback to filters
    assert ids(store) == [1, 2, 4, 5]


def test_clear_filters_combine_and_connector_0_means_profiles_on_connector_0() -> None:
    store = _clear_fixture()
    assert store.clear(connector_id=1, purpose="TxDefaultProfile") == "Accepted"
    assert ids(store) == [1, 2, 4, 5]
    assert store.clear(stack_level=1, purpose="TxDefaultProfile") == "Accepted"
    assert ids(store) == [1, 2, 5]
    assert store.clear(connector_id=0, purpose="TxDefaultProfile") == "Accepted"
    assert ids(store) == [1, 5]
    assert store.clear(connector_id=2) == "Unknown"
    assert store.clear() == "Accepted"
    assert ids(store) == []
    assert store.clear() == "Unknown"


def test_transaction_end_removes_its_tx_profiles_only() -> None:
    store = _clear_fixture()
    assert store.clear_transaction(1) == 1
    assert ids(store) == [1, 2, 3, 4]
    assert store.clear_transaction(1) == 0


# --------------------------------------------------------------------------- limits


def test_without_profiles_the_physical_maximum_applies() -> None:
    store = ProfileStore(1, electrical=Electrical(max_current=20.0))
    limit = store.limit_at(1, T0)
    assert (limit.amps, limit.watts, limit.phases) == (20.0, 20.0 * V * 3, 3)


def test_higher_stack_level_wins_and_lower_applies_when_its_duration_ends() -> None:
    store = ProfileStore(1)
    install(store, 1, make(1, stack=0, periods=((0, 16),), start=T0))
    install(store, 1, make(2, stack=1, periods=((0, 6),), start=T0, duration=3600))
    assert at(store, 1, T0 - timedelta(seconds=1)) == 32.0  # neither has started
    assert at(store, 1, T0) == 6.0
    assert at(store, 1, T0 + timedelta(seconds=3599)) == 6.0
    assert at(store, 1, T0 + timedelta(seconds=3600)) == 16.0


def test_absolute_profile_starting_later_leaves_lower_stack_level_in_force_until_then() -> None:
    store = ProfileStore(1)
    install(store, 1, make(1, stack=0, periods=((0, 16),)))
    install(store, 1, make(2, stack=5, periods=((0, 8),), start=T0 + timedelta(hours=1)))
    assert at(store, 1, T0 + timedelta(minutes=59)) == 16.0
    assert at(store, 1, T0 + timedelta(hours=1)) == 8.0


def test_recurring_daily_profile_crossing_midnight() -> None:
    store = ProfileStore(1)
    night = datetime(2024, 3, 1, 22, 0, tzinfo=UTC)
    # 22:00-06:00 6 A, then 32 A until 22:00 the next day, every day.
    data = make(kind="Recurring", periods=((0, 6), (8 * 3600, 16)), start=night)
    assert install(store, 1, data) == "Accepted"
    day = timedelta(days=1)
    assert at(store, 1, night - timedelta(hours=1)) == 32.0  # recurrence not begun yet
    for n in range(3):
        assert at(store, 1, night + n * day) == 6.0
        assert at(store, 1, night + n * day + timedelta(hours=3)) == 6.0  # after midnight
        assert at(store, 1, night + n * day + timedelta(hours=7, minutes=59)) == 6.0
        assert at(store, 1, night + n * day + timedelta(hours=8)) == 16.0
        assert at(store, 1, night + n * day + timedelta(hours=23, minutes=59)) == 16.0


def test_recurring_weekly_profile_with_duration_pauses_between_recurrences() -> None:
    store = ProfileStore(1)
    install(store, 1, make(kind="Recurring", recurrency="Weekly", duration=3600))
    week = timedelta(days=7)
    assert at(store, 1, T0 + 2 * week + timedelta(minutes=30)) == 16.0
    assert at(store, 1, T0 + 2 * week + timedelta(hours=2)) == 32.0


def test_relative_profile_starts_at_transaction_start() -> None:
    store = ProfileStore(1)
    data = make(purpose="TxProfile", kind="Relative", periods=((0, 10), (1800, 20)))
    install(store, 1, data, tx=1)
    tx_start = T0 - timedelta(minutes=40)
    assert at(store, 1, T0, tx_start=tx_start) == 20.0
    assert at(store, 1, tx_start + timedelta(minutes=29), tx_start=tx_start) == 10.0
    # Without a transaction: what a transaction starting at that instant would get.
    assert at(store, 1, T0) == 10.0


def test_absolute_tx_profile_without_start_schedule_is_relative_to_transaction_start() -> None:
    store = ProfileStore(1)
    install(store, 1, make(purpose="TxProfile", periods=((0, 10), (60, 20)), start=None), tx=1)
    assert at(store, 1, T0 + timedelta(seconds=61), tx_start=T0) == 20.0


def test_charge_point_max_without_start_schedule_starts_when_installed() -> None:
    store = ProfileStore(1)
    profile = ChargingProfile.from_dict(
        make(purpose="ChargePointMaxProfile", periods=((0, 10), (60, 20)), start=None)
    )
    assert store.install(0, profile, active_transaction_id=None, now=T0) == "Accepted"
    saved = store.all()[0]["csChargingProfiles"]
    assert saved["chargingSchedule"]["startSchedule"] == "2024-03-01T12:00:00Z"
    assert at(store, 1, T0 + timedelta(seconds=30)) == 10.0
    assert at(store, 1, T0 + timedelta(hours=5)) == 20.0


def test_valid_from_and_valid_to_bound_a_profile() -> None:
    store = ProfileStore(1)
    install(store, 1, make(1, stack=0, periods=((0, 16),)))
    window: dict[str, Any] = {
        "validFrom": iso(T0 + timedelta(hours=1)),
        "validTo": iso(T0 + timedelta(hours=2)),
    }
    install(store, 1, make(2, stack=1, periods=((0, 8),), **window))
    assert at(store, 1, T0 + timedelta(minutes=59)) == 16.0
    assert at(store, 1, T0 + timedelta(hours=1)) == 8.0  # validFrom is inclusive
    assert at(store, 1, T0 + timedelta(hours=2) - timedelta(microseconds=1)) == 8.0
    assert at(store, 1, T0 + timedelta(hours=2)) == 16.0  # validTo is exclusive


def test_tx_profile_beats_tx_default_and_connector_default_beats_connector_0_default() -> None:
    store = ProfileStore(2)
    install(store, 0, make(1, stack=9, periods=((0, 30),)))
    assert at(store, 1, T0) == 30.0
    install(store, 1, make(2, stack=0, periods=((0, 20),)))
    assert at(store, 1, T0) == 20.0  # despite the lower stack level
    assert at(store, 2, T0) == 30.0
    install(store, 1, make(3, stack=0, purpose="TxProfile", periods=((0, 25),)), tx=4)
    assert at(store, 1, T0) == 25.0  # a TxProfile may also raise the TxDefault's limit
    store.clear_transaction(1)
    assert at(store, 1, T0) == 20.0


def test_charge_point_max_caps_a_connector() -> None:
    store = ProfileStore(2)
    install(store, 0, make(1, purpose="ChargePointMaxProfile", periods=((0, 10),)))
    install(store, 1, make(2, periods=((0, 16),)))
    assert at(store, 1, T0) == 10.0
    assert store.limit_at(1, T0).profile_ids == (1, 2)


def test_amps_and_watts_convert_with_number_phases() -> None:
    assert amps_to_watts(16, 3, V) == 11040.0
    assert watts_to_amps(3680, 1, V) == 16.0
    store = ProfileStore(1)
    data = make(periods=((0, 16),))
    data["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"] = 1
    install(store, 1, data)
    limit = store.limit_at(1, T0)
    assert (limit.amps, limit.watts, limit.phases) == (16.0, 3680.0, 1)
    store.clear()
    install(store, 1, make(unit="W", periods=((0, 11040),)))
    limit = store.limit_at(1, T0)
    assert (limit.amps, limit.watts, limit.phases) == (16.0, 11040.0, 3)


def test_single_phase_evse_uses_one_phase_even_if_the_profile_says_three() -> None:
    store = ProfileStore(1, electrical=Electrical(phases=1))
    data = make(unit="W", periods=((0, 7360),))
    data["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"] = 3
    install(store, 1, data)
    limit = store.limit_at(1, T0)
    assert (limit.amps, limit.watts, limit.phases) == (32.0, 7360.0, 1)


def test_mixed_units_respect_both_limits() -> None:
    store = ProfileStore(1)
    install(store, 0, make(1, purpose="ChargePointMaxProfile", unit="W", periods=((0, 6900),)))
    install(store, 1, make(2, periods=((0, 16),)))
    limit = store.limit_at(1, T0)
    assert (limit.amps, limit.watts) == (10.0, 6900.0)


def test_only_limits_set_in_amps_cap_the_current_per_phase() -> None:
    store = ProfileStore(1)
    install(store, 1, make(unit="W", periods=((0, 6900),)))
    assert store.limit_at(1, T0).amp_cap is None  # watts: a total, not a current
    install(store, 0, make(2, purpose="ChargePointMaxProfile", periods=((0, 12),)))
    install(store, 1, make(3, stack=1, periods=((0, 10),)))
    limit = store.limit_at(1, T0)
    assert limit.amp_cap == 10.0 and limit.usable_amp_cap == 10.0
    # A ChargePointMax in amps shared by two connectors caps each one's current too.
    store = ProfileStore(2)
    install(store, 0, make(1, purpose="ChargePointMaxProfile", periods=((0, 20),)))
    shares = store.allocate(T0, {1: T0, 2: T0})
    assert {c: limit.amp_cap for c, limit in shares.items()} == {1: 10.0, 2: 10.0}


def test_limit_below_min_charging_rate_is_reported_and_unusable() -> None:
    store = ProfileStore(1)
    data = make(periods=((0, 4), (60, 8)))
    data["chargingSchedule"]["minChargingRate"] = 6
    install(store, 1, data)
    low = store.limit_at(1, T0)
    assert low.amps == 4.0 and low.below_minimum
    assert (low.usable_amps, low.usable_watts) == (0.0, 0.0)
    high = store.limit_at(1, T0 + timedelta(minutes=1))
    assert not high.below_minimum and high.usable_amps == 8.0


def test_charge_point_max_is_shared_by_two_charging_connectors() -> None:
    store = ProfileStore(2)
    install(store, 0, make(1, purpose="ChargePointMaxProfile", periods=((0, 40),)))
    shares = store.allocate(T0, {1: T0, 2: T0})
    assert {c: limit.amps for c, limit in shares.items()} == {1: 20.0, 2: 20.0}
    # Connector 2's own TxProfile only lets it take 6 A: connector 1 gets the rest.
    install(store, 2, make(2, purpose="TxProfile", periods=((0, 6),)), tx=3)
    shares = store.allocate(T0, {1: T0, 2: T0})
    assert {c: limit.amps for c, limit in shares.items()} == {1: 32.0, 2: 6.0}
    # An EV that draws only 2.3 kW leaves its share to the other one, up to the cap.
    store.clear_transaction(2)
    install(store, 0, make(1, purpose="ChargePointMaxProfile", periods=((0, 30),)))
    shares = store.allocate(T0, {1: T0, 2: T0}, demand_watts={2: 2300})
    assert shares[2].amps == pytest.approx(2300 / (V * 3))
    assert shares[1].amps + shares[2].amps == pytest.approx(30.0)
    # Only one connector charging: it may use the whole cap (up to its own limit).
    assert store.allocate(T0, {1: T0})[1].amps == 30.0


def test_without_charge_point_max_each_connector_keeps_its_own_limit() -> None:
    store = ProfileStore(2)
    install(store, 0, make(1, periods=((0, 16),)))
    shares = store.allocate(T0, {1: None, 2: None})
    assert {c: limit.amps for c, limit in shares.items()} == {1: 16.0, 2: 16.0}


@settings(max_examples=200, deadline=None)
@given(
    cap=st.integers(0, 200),
    unit=st.sampled_from(["A", "W"]),
    own=st.lists(st.integers(0, 64), min_size=1, max_size=4),
    demands=st.lists(st.none() | st.integers(0, 30000), min_size=4, max_size=4),
)
def test_charge_point_max_share_sum_never_exceeds_the_cap(
    cap: int, unit: RateUnit, own: list[int], demands: list[int | None]
) -> None:
    store = ProfileStore(len(own))
    limit = cap if unit == "A" else cap * 100
    install(store, 0, make(100, purpose="ChargePointMaxProfile", unit=unit, periods=((0, limit),)))
    for connector, amps in enumerate(own, start=1):
        install(store, connector, make(connector, periods=((0, amps),)))
    demand = {c: d for c, d in enumerate(demands, start=1) if d is not None and c <= len(own)}
    shares = store.allocate(T0, dict.fromkeys(range(1, len(own) + 1), T0), demand_watts=demand)
    total = sum(share.value(unit) for share in shares.values())
    assert total <= limit * (1 + 1e-12) + 1e-9
    for connector, share in shares.items():
        assert share.amps <= own[connector - 1] + 1e-9
        assert share.amps <= store.limit_at(connector, T0).amps + 1e-9


@settings(max_examples=300, deadline=None)
@given(
    total=st.floats(0, 1e5, allow_nan=False),
    wants=st.dictionaries(st.integers(1, 8), st.floats(0, 1e5, allow_nan=False), max_size=8),
)
def test_distribute_is_fair_and_never_exceeds_the_total(
    total: float, wants: dict[int, float]
) -> None:
    shares = distribute(total, wants)
    assert shares.keys() == wants.keys()
    assert sum(shares.values()) <= total * (1 + 1e-9) + 1e-9
    for connector, share in shares.items():
        assert 0 <= share <= wants[connector]
    if sum(wants.values()) <= total:
        assert shares == wants
    else:
        # Whoever does not get its want gets the largest share: nothing is left unused.
        assert sum(shares.values()) == pytest.approx(total)
        unsatisfied = [s for c, s in shares.items() if s < wants[c]]
        assert max(shares.values()) == pytest.approx(max(unsatisfied))


# --------------------------------------------------------------------------- composite


def _response_schema() -> dict[str, Any]:
    path = resources.files("ocpp") / "v16" / "schemas" / "GetCompositeScheduleResponse.json"
    return json.loads(path.read_text(), parse_float=Decimal)


def assert_valid_response(schedule: dict[str, Any] | None) -> None:
    assert schedule is not None, "no composite schedule"
    # Validated the way the ocpp library does it (floats re-read as Decimal for multipleOf).
    payload = {"status": "Accepted", "connectorId": 1, "chargingSchedule": schedule}
    jsonschema.Draft4Validator(_response_schema()).validate(
        json.loads(json.dumps(payload), parse_float=Decimal)
    )


def test_composite_schedule_on_a_connector_merges_profiles_and_periods() -> None:
    store = ProfileStore(2)
    install(store, 0, make(1, purpose="ChargePointMaxProfile", periods=((0, 40), (3600, 20))))
    install(store, 0, make(2, periods=((0, 32),)))
    install(store, 1, make(3, periods=((0, 16), (1800, 25), (5400, 16)), duration=7200))
    schedule = store.composite_schedule(1, T0, 3 * 3600)
    assert schedule == {
        "startSchedule": "2024-03-01T12:00:00Z",
        "duration": 10800,
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 16.0},
            {"startPeriod": 1800, "limit": 25.0},
            {"startPeriod": 3600, "limit": 20.0},  # ChargePointMax drops
            {"startPeriod": 5400, "limit": 16.0},
            {"startPeriod": 7200, "limit": 20.0},  # connector default ended: 32 A on 0, cap 20
        ],
    }
    assert_valid_response(schedule)


def test_composite_schedule_on_connector_0_is_the_grid_total() -> None:
    store = ProfileStore(2)
    install(store, 0, make(1, purpose="ChargePointMaxProfile", periods=((0, 40), (3600, 20))))
    install(store, 0, make(2, periods=((0, 16),)))
    install(store, 2, make(3, periods=((0, 10),), duration=1800))
    schedule = store.composite_schedule(0, T0, 7200)
    assert periods_of(schedule) == [(0, 26.0), (1800, 32.0), (3600, 20.0)]
    assert store.grid_limit_at(T0).amps == 26.0
    assert_valid_response(schedule)


def test_composite_schedule_in_watts_with_number_phases() -> None:
    store = ProfileStore(1)
    data = make(periods=((0, 16), (600, 10)))
    data["chargingSchedule"]["chargingSchedulePeriod"][1]["numberPhases"] = 1
    install(store, 1, data)
    schedule = store.composite_schedule(1, T0, 1200, "W")
    assert schedule is not None
    assert schedule["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 11040.0},
        {"startPeriod": 600, "limit": 2300.0, "numberPhases": 1},
    ]
    amps = store.composite_schedule(1, T0, 1200, "A")
    assert amps is not None
    assert amps["chargingSchedulePeriod"][1] == {
        "startPeriod": 600,
        "limit": 10.0,
        "numberPhases": 1,
    }


def test_composite_limits_are_rounded_down_to_a_tenth() -> None:
    store = ProfileStore(1)
    install(store, 1, make(unit="W", periods=((0, 11000),)))
    schedule = store.composite_schedule(1, T0, 60, "A")
    assert periods_of(schedule) == [(0, 15.9)]  # 15.942 A
    in_watts = store.composite_schedule(1, T0, 60)
    assert in_watts is not None and in_watts["chargingRateUnit"] == "W"
    assert_valid_response(schedule)


def test_composite_schedule_with_nothing_installed_reports_the_physical_maximum() -> None:
    store = ProfileStore(2, electrical=Electrical(max_current=16.0))
    assert periods_of(store.composite_schedule(1, T0, 86400)) == [(0, 16.0)]
    assert periods_of(store.composite_schedule(0, T0, 86400)) == [(0, 32.0)]
    assert store.composite_schedule(3, T0, 60) is None  # no such connector: Rejected


def test_composite_schedule_follows_recurrence_and_relative_transaction_start() -> None:
    store = ProfileStore(1)
    night = datetime(2024, 3, 1, 22, 0, tzinfo=UTC)
    install(store, 1, make(1, kind="Recurring", periods=((0, 6), (8 * 3600, 16)), start=night))
    relative = make(2, purpose="TxProfile", kind="Relative", periods=((0, 4),), duration=3600)
    install(store, 1, relative, tx=1)
    tx_start = datetime(2024, 3, 2, 5, 30, tzinfo=UTC)
    start = datetime(2024, 3, 2, 5, 0, tzinfo=UTC)
    schedule = store.composite_schedule(1, start, 2 * 86400, tx_starts={1: tx_start})
    hours = [(s / 3600, limit) for s, limit in periods_of(schedule)]
    assert hours == [(0, 6.0), (0.5, 4.0), (1.5, 16.0), (17, 6.0), (25, 16.0), (41, 6.0)]


def test_composite_start_is_truncated_and_a_fractional_change_takes_the_lower_value() -> None:
    store = ProfileStore(1)
    install(store, 1, make(1, stack=0, periods=((0, 16),)))
    window: dict[str, Any] = {"validFrom": iso(T0 + timedelta(seconds=10.5))}
    install(store, 1, make(2, stack=1, periods=((0, 8),), **window))
    schedule = store.composite_schedule(1, T0 + timedelta(microseconds=300), 30)
    assert schedule is not None
    assert schedule["startSchedule"] == "2024-03-01T12:00:00Z"
    assert periods_of(schedule) == [(0, 16.0), (10, 8.0)]


def test_composite_schedule_of_zero_duration_has_one_period() -> None:
    store = ProfileStore(1)
    assert periods_of(store.composite_schedule(1, T0, 0)) == [(0, 32.0)]


def phased(schedule: dict[str, Any] | None) -> list[tuple[float, int | None]]:
    """(limit, numberPhases) of each period."""
    assert schedule is not None, "no composite schedule"
    return [(p["limit"], p.get("numberPhases")) for p in schedule["chargingSchedulePeriod"]]


@pytest.mark.parametrize(
    ("limit", "unit", "asked", "expected"),
    [
        # 2 kW is 8.7 A on the car's one phase; over three it read 2.8 A, under 6 A.
        (2_000, "W", "A", 8.6),
        (2_000, "W", "W", 2_000.0),
        # 16 A on one phase is 3.68 kW; it read 11,040 W.
        (16, "A", "W", 3_680.0),
        (16, "A", "A", 16.0),
        # 6 A on one phase, exactly: not 2 A.
        (1_380, "W", "A", 6.0),
    ],
)
def test_composite_schedule_converts_on_the_phases_the_car_uses(
    limit: float, unit: str, asked: str, expected: float
) -> None:
    store = ProfileStore(1)
    install(store, 1, make(unit=unit, periods=((0, limit),)))
    schedule = store.composite_schedule(1, T0, 600, asked, car_phases={1: 1})
    assert phased(schedule) == [(expected, 1)]
    assert_valid_response(schedule)


def test_composite_schedule_without_a_car_converts_on_the_evses_phases() -> None:
    store = ProfileStore(2)
    install(store, 0, make(unit="W", periods=((0, 2_000),)))
    assert phased(store.composite_schedule(1, T0, 600, "A")) == [(2.8, None)]
    # A car on the other connector changes nothing here; a three-phase car neither.
    assert phased(store.composite_schedule(1, T0, 600, "A", car_phases={2: 1})) == [(2.8, None)]
    assert phased(store.composite_schedule(1, T0, 600, "A", car_phases={1: 3})) == [(2.8, None)]


def test_composite_schedule_uses_no_more_phases_than_the_evse_or_the_profile() -> None:
    single = ProfileStore(1, electrical=Electrical(phases=1))
    install(single, 1, make(periods=((0, 16),)))
    assert phased(single.composite_schedule(1, T0, 60, "W", car_phases={1: 3})) == [(3_680.0, 1)]
    store = ProfileStore(1)
    data = make(periods=((0, 16),))
    data["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"] = 2
    install(store, 1, data)
    assert phased(store.composite_schedule(1, T0, 60, "W", car_phases={1: 3})) == [(7_360.0, 2)]
    assert phased(store.composite_schedule(1, T0, 60, "W", car_phases={1: 1})) == [(3_680.0, 1)]


def test_composite_schedule_on_connector_0_sums_each_connector_on_its_cars_phases() -> None:
    store = ProfileStore(2, electrical=Electrical(max_current=16.0))
    # Two single-phase cars: 16 A each, 7,360 W in all, 32 A on their phase.
    both = {1: 1, 2: 1}
    assert phased(store.composite_schedule(0, T0, 60, "W", car_phases=both)) == [(7_360.0, 1)]
    assert phased(store.composite_schedule(0, T0, 60, "A", car_phases=both)) == [(32.0, 1)]
    # One on three phases: the total is 14,720 W; a phase still carries up to 32 A.
    mixed = {1: 1, 2: 3}
    assert phased(store.composite_schedule(0, T0, 60, "W", car_phases=mixed)) == [(14_720.0, None)]
    assert phased(store.composite_schedule(0, T0, 60, "A", car_phases=mixed)) == [(32.0, None)]
    # No car: as before, 16 A on three phases each.
    assert phased(store.composite_schedule(0, T0, 60, "W")) == [(22_080.0, None)]


@pytest.mark.parametrize(
    ("cap", "unit", "asked", "expected"),
    [
        # 2 kW drawn by a single-phase car is 8.7 A on its phase; it read 2.8 A.
        (2_000, "W", "A", 8.6),
        # 10 A shared by single-phase cars is 2.3 kW in all; it read 6,900 W.
        (10, "A", "W", 2_300.0),
    ],
)
def test_a_charge_point_max_on_connector_0_converts_on_the_cars_phases(
    cap: float, unit: str, asked: str, expected: float
) -> None:
    store = ProfileStore(2)
    install(store, 0, make(purpose="ChargePointMaxProfile", unit=unit, periods=((0, cap),)))
    schedule = store.composite_schedule(0, T0, 60, asked, car_phases={1: 1, 2: 1})
    assert phased(schedule) == [(expected, 1)]
    without = store.composite_schedule(0, T0, 60, asked)
    assert phased(without) == [(2.8 if asked == "A" else 6_900.0, None)]


def test_a_rated_power_on_connector_0_converts_on_the_fewest_phases() -> None:
    # 3 kW rated, single-phase cars: all of it may go to one, 13 A on its phase.
    store = ProfileStore(2, rated_w=3_000.0)
    schedule = store.composite_schedule(0, T0, 60, "A", car_phases={1: 1, 2: 1})
    assert phased(schedule) == [(13.0, 1)]
    assert phased(store.composite_schedule(0, T0, 60, "A")) == [(4.3, None)]


# --------------------------------------------------------------------------- properties

MINUTE = 60
WINDOW = 2 * 86400
MAX_CURRENT = 32.0


@st.composite
def profiles(draw: st.DrawFn, connectors: int) -> list[tuple[int, dict[str, Any]]]:
    """Random profiles on whole minutes, so every limit change falls on a minute."""
    result = []
    for index in range(draw(st.integers(0, 7))):
        purpose, connector = draw(
            st.sampled_from(
                [("ChargePointMaxProfile", 0), ("TxDefaultProfile", 0)]
                + [
                    (p, c)
                    for c in range(1, connectors + 1)
                    for p in ("TxDefaultProfile", "TxProfile")
                ]
            )
        )
        kinds = ["Absolute", "Recurring"] + (
            [] if purpose == "ChargePointMaxProfile" else ["Relative"]
        )
        kind = draw(st.sampled_from(kinds))
        unit = draw(st.sampled_from(["A", "W"]))
        starts = sorted(draw(st.sets(st.integers(1, 6 * 60), max_size=3)))
        limits = draw(
            st.lists(st.integers(0, 40), min_size=len(starts) + 1, max_size=len(starts) + 1)
        )
        scale = 1 if unit == "A" else 690
        periods = tuple(
            (s * MINUTE, limit * scale) for s, limit in zip([0, *starts], limits, strict=True)
        )
        duration = draw(st.none() | st.integers(starts[-1] + 1 if starts else 1, 8 * 60))
        start: datetime | None = T0 + timedelta(minutes=draw(st.integers(-36 * 60, 36 * 60)))
        if kind == "Absolute" and purpose != "ChargePointMaxProfile" and draw(st.booleans()):
            start = None
        extra: dict[str, Any] = {}
        if draw(st.booleans()):
            extra["validFrom"] = iso(T0 + timedelta(minutes=draw(st.integers(-600, 2000))))
        if draw(st.booleans()):
            extra["validTo"] = iso(T0 + timedelta(minutes=draw(st.integers(2001, 3000))))
        data = make(
            index + 1,
            stack=draw(st.integers(0, 3)),
            purpose=purpose,
            kind=kind,
            periods=periods,
            unit=unit,
            start=start,
            duration=None if duration is None else duration * MINUTE,
            **extra,
        )
        result.append((connector, data))
    return result


def _epoch(text: str) -> int:
    return int(parse_datetime(text).timestamp())


@dataclass(slots=True, frozen=True)
class Ref:
    """One installed profile, read back from its JSON form into epoch seconds."""

    connector: int
    stack: int
    purpose: str
    kind: str
    valid_from: int | None
    valid_to: int | None
    start: int | None
    cycle: int
    duration: int | None
    periods: tuple[tuple[int, float], ...]  # (startPeriod, amps per phase)

    @classmethod
    def of(cls, connector: int, profile: dict[str, Any]) -> Ref:
        schedule = profile["chargingSchedule"]
        watts = schedule["chargingRateUnit"] == "W"
        return cls(
            connector=connector,
            stack=profile["stackLevel"],
            purpose=profile["chargingProfilePurpose"],
            kind=profile["chargingProfileKind"],
            valid_from=_epoch(profile["validFrom"]) if "validFrom" in profile else None,
            valid_to=_epoch(profile["validTo"]) if "validTo" in profile else None,
            start=_epoch(schedule["startSchedule"]) if "startSchedule" in schedule else None,
            cycle=86400 if profile.get("recurrencyKind") == "Daily" else 7 * 86400,
            duration=schedule.get("duration"),
            periods=tuple(
                (p["startPeriod"], p["limit"] / (V * 3) if watts else p["limit"])
                for p in schedule["chargingSchedulePeriod"]
            ),
        )

    def amps(self, t: int, anchor: int) -> float | None:
        """Independent reading of the profile at epoch second t: amps per phase, or None."""
        if self.valid_from is not None and t < self.valid_from:
            return None
        if self.valid_to is not None and t >= self.valid_to:
            return None
        if self.kind == "Recurring":
            assert self.start is not None
            if t < self.start:
                return None
            start = self.start + (t - self.start) // self.cycle * self.cycle
        elif self.kind == "Absolute" and self.start is not None:
            start = self.start
        else:
            start = anchor
        offset = t - start
        if offset < 0 or (self.duration is not None and offset >= self.duration):
            return None
        return [limit for s, limit in self.periods if s <= offset][-1]


def reference(store: ProfileStore) -> list[Ref]:
    return [
        Ref.of(c, p) for c, p in ((i["connectorId"], i["csChargingProfiles"]) for i in store.all())
    ]


def reference_winner(
    refs: list[Ref], connector: int, purpose: str, t: int, anchor: int
) -> float | None:
    found = [
        (ref.stack, amps)
        for ref in refs
        if ref.connector == connector
        and ref.purpose == purpose
        and (amps := ref.amps(t, anchor)) is not None
    ]
    return max(found)[1] if found else None


def reference_connector(refs: list[Ref], connector: int, t: int, anchor: int) -> float:
    tx = reference_winner(refs, connector, "TxProfile", t, anchor)
    if tx is None:
        tx = reference_winner(refs, connector, "TxDefaultProfile", t, anchor)
    if tx is None:
        tx = reference_winner(refs, 0, "TxDefaultProfile", t, anchor)
    return min(MAX_CURRENT, math.inf if tx is None else tx)


def composite_value(schedule: dict[str, Any] | None, offset: int) -> float:
    assert schedule is not None, "no composite schedule"
    return [p["limit"] for p in schedule["chargingSchedulePeriod"] if p["startPeriod"] <= offset][
        -1
    ]


def build_store(connectors: int, items: list[tuple[int, dict[str, Any]]]) -> ProfileStore:
    store = ProfileStore(
        connectors, max_profiles=100, electrical=Electrical(max_current=MAX_CURRENT)
    )
    for connector, data in items:
        status = install(store, connector, data, tx=1)
        assert status == "Accepted", store.check(
            connector, ChargingProfile.from_dict(data), active_transaction_id=1
        )
    return store


def check_schedule_shape(schedule: dict[str, Any] | None, duration: int) -> None:
    assert schedule is not None, "no composite schedule"
    periods = schedule["chargingSchedulePeriod"]
    assert periods[0]["startPeriod"] == 0
    starts = [p["startPeriod"] for p in periods]
    assert starts == sorted(set(starts)) and starts[-1] < max(duration, 1)
    pairs = [(p["limit"], p.get("numberPhases")) for p in periods]
    assert all(a != b for a, b in pairwise(pairs)), "unmerged periods"
    assert_valid_response(schedule)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=profiles(connectors=1),
    window_start=st.integers(-24 * 60, 24 * 60),
    tx_start=st.none() | st.integers(-48 * 60, 0),
)
def test_composite_equals_min_of_charge_point_max_and_tx_limits_at_every_instant(
    items: list[tuple[int, dict[str, Any]]], window_start: int, tx_start: int | None
) -> None:
    store = build_store(1, items)
    start = T0 + timedelta(minutes=window_start)
    tx = None if tx_start is None else start + timedelta(minutes=tx_start)
    schedule = store.composite_schedule(1, start, WINDOW, "A", tx_starts={1: tx} if tx else None)
    check_schedule_shape(schedule, WINDOW)
    anchor = int((tx or start).timestamp())
    refs = reference(store)
    for minute in range(WINDOW // MINUTE):
        for second in (0, 59):
            offset = minute * MINUTE + second
            t = int(start.timestamp()) + offset
            cap = reference_winner(refs, 0, "ChargePointMaxProfile", t, anchor)
            tx_limit = reference_connector(refs, 1, t, anchor)
            expected = min(math.inf if cap is None else cap, tx_limit)
            got = composite_value(schedule, offset)
            # Never above any winning profile in force; equal up to rounding down to 0.1.
            assert got <= expected + 1e-9, (offset, got, expected)
            assert got >= expected - 0.1 - 1e-9, (offset, got, expected)
            assert got == round(math.floor(expected * 10 + 1e-7) / 10, 1)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=profiles(connectors=2), window_start=st.integers(-24 * 60, 24 * 60))
def test_composite_on_connector_0_equals_the_capped_sum_of_connector_limits(
    items: list[tuple[int, dict[str, Any]]], window_start: int
) -> None:
    store = build_store(2, items)
    start = T0 + timedelta(minutes=window_start)
    schedule = store.composite_schedule(0, start, WINDOW, "A")
    check_schedule_shape(schedule, WINDOW)
    anchor = int(start.timestamp())
    refs = reference(store)
    for minute in range(0, WINDOW // MINUTE):
        for second in (0, 59):
            offset = minute * MINUTE + second
            t = anchor + offset
            cap = reference_winner(refs, 0, "ChargePointMaxProfile", t, anchor)
            total = sum(reference_connector(refs, c, t, anchor) for c in (1, 2))
            expected = min(math.inf if cap is None else cap, total)
            got = composite_value(schedule, offset)
            assert expected - 0.1 - 1e-9 <= got <= expected + 1e-9, (offset, got, expected)
