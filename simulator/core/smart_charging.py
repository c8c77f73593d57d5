"""OCPP 1.6 smart charging for one simulated charge point: profiles, limits, composite schedules.

Plain Python on purpose (no Django, no ``ocpp`` dataclasses): the message handlers hand in the
camelCase dicts exactly as they arrive (``csChargingProfiles`` of SetChargingProfile.req,
``chargingProfile`` of RemoteStartTransaction.req) and the engine asks for limits at an instant.
The ``ocpp`` library parses JSON floats as ``decimal.Decimal``; every number is converted to
``float`` (or ``int``) once, at parse time, so the rest of the code never mixes the two.

Readings of the specification (OCPP 1.6 edition 2 with errata) that the code relies on:

* A profile is *in force* at ``t`` when ``validFrom <= t < validTo`` and its schedule has started
  and not yet ended (``duration``). Per purpose the in-force profile with the highest stackLevel
  wins; when the highest one is valid but its schedule has ended (or not yet started) the next
  lower stack level applies. 1.6 does not say what follows the end of ``duration``; this
  fall-through is our reading (a schedule that has ended limits nothing).
* A TxProfile in force beats any TxDefaultProfile; a TxDefaultProfile in force on the connector
  beats the ones on connector 0. Each step falls through when nothing is in force at ``t``.
* Anchors: Absolute starts at ``startSchedule``. An Absolute profile without ``startSchedule``
  is, as the 1.6 field description says, "relative to start of charging": it behaves like a
  Relative one, except a ChargePointMaxProfile (which has no transaction), whose start is fixed
  at ``validFrom`` or, failing that, the moment it is installed (written into ``startSchedule`` so
  it survives persistence). Relative profiles start at the transaction start; without a
  transaction they describe what a transaction starting at the evaluation start would get (the
  composite window start, or the instant asked about). A Relative ChargePointMaxProfile has no
  start point at all and is Rejected (OCPP 2.0.1 K01.FR.38 says the same). Recurring profiles
  need ``startSchedule`` and repeat every 24 h / 7 days from it (exact UTC days: OCPP times are
  UTC, so no DST shifts); before ``startSchedule`` they are not in force. Their schedule
  (``duration``, every period's start) must fit in one recurrence, or it could not repeat.
* Connector limit = min(ChargePointMax, Tx or TxDefault, the EVSE's physical maximum). The
  ChargePointMax caps the *sum* over connectors; ``ProfileStore.allocate`` shares it out.
* Units: ``W = A x V x phases``; phases = the period's ``numberPhases`` (never more than the EVSE
  has) or else the EVSE's phase count. When constraints name different phase counts the smallest
  wins, so the result respects every A, W and phase constraint at once. A composite schedule
  converts over the phases a connector's car draws on when they are fewer (``car_phases``).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal, TypeVar

from simulator.core.battery import MIN_AC_AMPS
from simulator.core.clock import parse_rfc3339

Purpose = Literal["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"]
Kind = Literal["Absolute", "Relative", "Recurring"]
RecurrencyKind = Literal["Daily", "Weekly"]
RateUnit = Literal["A", "W"]
InstallStatus = Literal["Accepted", "Rejected"]
ClearStatus = Literal["Accepted", "Unknown"]

CHARGE_POINT_MAX: Final = "ChargePointMaxProfile"
TX_DEFAULT: Final = "TxDefaultProfile"
TX_PROFILE: Final = "TxProfile"
PURPOSES: Final = (CHARGE_POINT_MAX, TX_DEFAULT, TX_PROFILE)
KINDS: Final = ("Absolute", "Relative", "Recurring")
RECURRENCY_KINDS: Final = ("Daily", "Weekly")
UNITS: Final = ("A", "W")
_K = TypeVar("_K", bound=Hashable)

_CYCLES: Final = {"Daily": timedelta(days=1), "Weekly": timedelta(days=7)}
_SECOND: Final = timedelta(seconds=1)


class ProfileError(ValueError):
    """A charging profile that cannot be used; the message names the field and the reason."""


# --------------------------------------------------------------------------- parsing helpers


def _integer(value: object, path: str) -> int:
    # bool is an int subclass, but `true` is never a valid OCPP integer.
    if isinstance(value, bool):
        raise ProfileError(f"{path} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    # JSON "3.0" parses as Decimal/float; the schema's "integer" accepts it, so do we.
    if isinstance(value, (Decimal, float)) and math.isfinite(value) and value == int(value):
        return int(value)
    raise ProfileError(f"{path} must be an integer, got {value!r}")


def _number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ProfileError(f"{path} must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ProfileError(f"{path} must be a finite number, got {value!r}")
    return result


def _choice(value: object, path: str, allowed: Iterable[str]) -> Any:
    options = tuple(allowed)
    if value not in options:
        raise ProfileError(f"{path} must be one of {', '.join(options)}, got {value!r}")
    return value


def _required(data: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in data or data[key] is None:
        raise ProfileError(f"{path}{key} is required")
    return data[key]


def parse_datetime(value: object, path: str = "date-time") -> datetime:
    """ISO 8601 text (``Z`` or an offset) -> aware UTC datetime; ProfileError if unreadable.

    A string without an offset is taken as UTC, because OCPP 1.6 times are UTC by definition
    and some central systems leave the ``Z`` off.
    """
    if not isinstance(value, str):
        raise ProfileError(f"{path} must be an ISO 8601 date-time string, got {value!r}")
    text = value.strip()
    if text[-1:] == "z":  # fromisoformat (3.11) only knows the upper-case designator
        text = text[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:  # Python has no 60th second; RFC 3339 (and so a CSMS) has
            parsed = parse_rfc3339(text, offset_required=False)
        except ValueError:
            raise ProfileError(f"{path} is not a valid ISO 8601 date-time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is in year 10000 in UTC
        raise ProfileError(f"{path} lies outside the years 1-9999 in UTC: {value!r}") from None


def format_datetime(moment: datetime) -> str:
    """Aware datetime -> ISO 8601 UTC with ``Z`` (microseconds only when there are any)."""
    return _utc(moment, "moment").isoformat().replace("+00:00", "Z")


def _utc(moment: datetime, name: str) -> datetime:
    # Naive datetimes are a programming error here: guessing their zone would shift limits.
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


# --------------------------------------------------------------------------- units


def amps_to_watts(amps: float, phases: int, voltage: float) -> float:
    """Power of ``amps`` per phase on ``phases`` phases at ``voltage`` (phase to neutral)."""
    return amps * voltage * phases


def watts_to_amps(watts: float, phases: int, voltage: float) -> float:
    """Current per phase that draws ``watts`` on ``phases`` phases at ``voltage``."""
    return watts / (voltage * phases)


def units_from_config(value: str) -> frozenset[str]:
    """ChargingScheduleAllowedChargingRateUnit ("Current,Power") -> {"A", "W"}."""
    names = {part.strip() for part in value.split(",") if part.strip()}
    mapping = {"Current": "A", "Power": "W"}
    unknown = names - mapping.keys()
    if unknown:
        raise ValueError(f"unknown charging rate unit(s) {sorted(unknown)} in {value!r}")
    return frozenset(mapping[name] for name in names)


@dataclass(slots=True, frozen=True)
class Electrical:
    """What the EVSE can physically do; the limit when no profile says anything."""

    voltage: float = 230.0  # phase to neutral, V
    phases: int = 3
    max_current: float = 32.0  # per phase and per connector, A

    def __post_init__(self) -> None:
        if not (self.voltage > 0 and math.isfinite(self.voltage)):
            raise ValueError(f"voltage must be a positive number, got {self.voltage!r}")
        if self.phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, got {self.phases!r}")
        if not (self.max_current >= 0 and math.isfinite(self.max_current)):
            raise ValueError(f"max_current must be a finite number >= 0, got {self.max_current!r}")


# --------------------------------------------------------------------------- profiles


@dataclass(slots=True, frozen=True)
class SchedulePeriod:
    start_period: int  # seconds from the start of the schedule
    limit: float  # in the schedule's chargingRateUnit; per phase when "A"
    number_phases: int | None = None


def _start_of(period: SchedulePeriod) -> int:
    return period.start_period


@dataclass(slots=True, frozen=True)
class ChargingSchedule:
    charging_rate_unit: RateUnit
    periods: tuple[SchedulePeriod, ...]
    duration: int | None = None  # seconds; None = the last period holds indefinitely
    start_schedule: datetime | None = None
    min_charging_rate: float | None = None


@dataclass(slots=True, frozen=True)
class ChargingProfile:
    """One OCPP 1.6 ChargingProfile, validated on construction (``ProfileError`` if invalid)."""

    id: int
    stack_level: int
    purpose: Purpose
    kind: Kind
    schedule: ChargingSchedule
    recurrency_kind: RecurrencyKind | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: int | None = None

    def __post_init__(self) -> None:
        _validate(self)

    # ---- JSON ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChargingProfile:
        """Parse an OCPP camelCase ChargingProfile dict (Decimal numbers welcome)."""
        if not isinstance(data, Mapping):
            raise ProfileError(f"charging profile must be a JSON object, got {data!r}")
        raw_schedule = _required(data, "chargingSchedule", "")
        if not isinstance(raw_schedule, Mapping):
            raise ProfileError("chargingSchedule must be a JSON object")
        raw_periods = _required(raw_schedule, "chargingSchedulePeriod", "chargingSchedule.")
        if not isinstance(raw_periods, list | tuple):
            raise ProfileError("chargingSchedule.chargingSchedulePeriod must be a list")
        periods = []
        for index, raw in enumerate(raw_periods):
            path = f"chargingSchedule.chargingSchedulePeriod[{index}]."
            if not isinstance(raw, Mapping):
                raise ProfileError(f"{path[:-1]} must be a JSON object")
            phases = raw.get("numberPhases")
            periods.append(
                SchedulePeriod(
                    start_period=_integer(
                        _required(raw, "startPeriod", path), path + "startPeriod"
                    ),
                    limit=_number(_required(raw, "limit", path), path + "limit"),
                    number_phases=None
                    if phases is None
                    else _integer(phases, path + "numberPhases"),
                )
            )
        duration = raw_schedule.get("duration")
        start = raw_schedule.get("startSchedule")
        minimum = raw_schedule.get("minChargingRate")
        schedule = ChargingSchedule(
            charging_rate_unit=_choice(
                _required(raw_schedule, "chargingRateUnit", "chargingSchedule."),
                "chargingSchedule.chargingRateUnit",
                UNITS,
            ),
            periods=tuple(periods),
            duration=None if duration is None else _integer(duration, "chargingSchedule.duration"),
            start_schedule=None
            if start is None
            else parse_datetime(start, "chargingSchedule.startSchedule"),
            min_charging_rate=None
            if minimum is None
            else _number(minimum, "chargingSchedule.minChargingRate"),
        )
        valid_from = data.get("validFrom")
        valid_to = data.get("validTo")
        transaction_id = data.get("transactionId")
        recurrency = data.get("recurrencyKind")
        return cls(
            id=_integer(_required(data, "chargingProfileId", ""), "chargingProfileId"),
            stack_level=_integer(_required(data, "stackLevel", ""), "stackLevel"),
            purpose=_choice(
                _required(data, "chargingProfilePurpose", ""), "chargingProfilePurpose", PURPOSES
            ),
            kind=_choice(_required(data, "chargingProfileKind", ""), "chargingProfileKind", KINDS),
            schedule=schedule,
            recurrency_kind=None
            if recurrency is None
            else _choice(recurrency, "recurrencyKind", RECURRENCY_KINDS),
            valid_from=None if valid_from is None else parse_datetime(valid_from, "validFrom"),
            valid_to=None if valid_to is None else parse_datetime(valid_to, "validTo"),
            transaction_id=None
            if transaction_id is None
            else _integer(transaction_id, "transactionId"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The OCPP camelCase dict (plain ints, floats and strings: JSON-serialisable)."""
        schedule = self.schedule
        periods = []
        for period in schedule.periods:
            item: dict[str, Any] = {"startPeriod": period.start_period, "limit": period.limit}
            if period.number_phases is not None:
                item["numberPhases"] = period.number_phases
            periods.append(item)
        out_schedule: dict[str, Any] = {}
        if schedule.duration is not None:
            out_schedule["duration"] = schedule.duration
        if schedule.start_schedule is not None:
            out_schedule["startSchedule"] = format_datetime(schedule.start_schedule)
        out_schedule["chargingRateUnit"] = schedule.charging_rate_unit
        out_schedule["chargingSchedulePeriod"] = periods
        if schedule.min_charging_rate is not None:
            out_schedule["minChargingRate"] = schedule.min_charging_rate
        out: dict[str, Any] = {"chargingProfileId": self.id}
        if self.transaction_id is not None:
            out["transactionId"] = self.transaction_id
        out["stackLevel"] = self.stack_level
        out["chargingProfilePurpose"] = self.purpose
        out["chargingProfileKind"] = self.kind
        if self.recurrency_kind is not None:
            out["recurrencyKind"] = self.recurrency_kind
        if self.valid_from is not None:
            out["validFrom"] = format_datetime(self.valid_from)
        if self.valid_to is not None:
            out["validTo"] = format_datetime(self.valid_to)
        out["chargingSchedule"] = out_schedule
        return out

    # ---- time ---------------------------------------------------------------------------

    def is_valid_at(self, moment: datetime) -> bool:
        """validFrom <= moment < validTo (a missing bound is open)."""
        if self.valid_from is not None and moment < self.valid_from:
            return False
        return self.valid_to is None or moment < self.valid_to

    def _instance_start(self, moment: datetime, relative_start: datetime) -> datetime | None:
        """Start of the schedule instance governing ``moment`` (None: none has started)."""
        start = self.schedule.start_schedule
        if self.kind == "Recurring":
            assert start is not None and self.recurrency_kind is not None  # checked in _validate
            if moment < start:
                return None
            cycle = _CYCLES[self.recurrency_kind]
            return start + cycle * ((moment - start) // cycle)
        if self.kind == "Absolute" and start is not None:
            return start
        return relative_start

    def period_at(self, moment: datetime, relative_start: datetime) -> SchedulePeriod | None:
        """The period in force at ``moment``, or None when the profile is not in force then.

        ``relative_start`` anchors Relative profiles (and Absolute ones without startSchedule):
        the transaction start, or the evaluation start when there is no transaction.
        """
        if not self.is_valid_at(moment):
            return None
        start = self._instance_start(moment, relative_start)
        if start is None or moment < start:
            return None
        elapsed = moment - start
        duration = self.schedule.duration
        if duration is not None and elapsed >= timedelta(seconds=duration):
            return None
        periods = self.schedule.periods
        # The first period starts at 0 (validated), so the index is never negative.
        index = bisect_right(periods, elapsed.total_seconds(), key=_start_of) - 1
        return periods[index]

    def breakpoints(
        self, window_start: datetime, window_end: datetime, relative_start: datetime
    ) -> set[datetime]:
        """Every instant strictly inside the window at which this profile's limit may change."""
        points: set[datetime] = set()
        for bound in (self.valid_from, self.valid_to):
            if bound is not None:
                points.add(bound)
        starts: list[datetime] = []
        if self.kind == "Recurring":
            assert self.schedule.start_schedule is not None and self.recurrency_kind is not None
            first = self.schedule.start_schedule
            cycle = _CYCLES[self.recurrency_kind]
            k_first = max(0, (window_start - first) // cycle)
            k_last = (window_end - first) // cycle
            starts.extend(first + cycle * k for k in range(k_first, k_last + 1))
        elif self.kind == "Absolute" and self.schedule.start_schedule is not None:
            starts.append(self.schedule.start_schedule)
        else:
            starts.append(relative_start)
        offsets = [period.start_period for period in self.schedule.periods]
        if self.schedule.duration is not None:
            offsets.append(self.schedule.duration)
        for start in starts:
            points.update(start + timedelta(seconds=offset) for offset in offsets)
        return {point for point in points if window_start < point < window_end}


def _validate(profile: ChargingProfile) -> None:
    """Semantic checks the JSON schema cannot express; messages use the OCPP field names."""
    for name, value in (("chargingProfileId", profile.id), ("stackLevel", profile.stack_level)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProfileError(f"{name} must be an integer, got {value!r}")
    # The schema says only "integer": a negative id or stackLevel is a CSMS's slip (an
    # unset -1), not a profile to act on, and is Rejected as other invalid profiles are.
    if profile.id < 0:
        raise ProfileError(f"chargingProfileId must be >= 0, got {profile.id}")
    if profile.stack_level < 0:
        raise ProfileError(f"stackLevel must be >= 0, got {profile.stack_level}")
    _choice(profile.purpose, "chargingProfilePurpose", PURPOSES)
    _choice(profile.kind, "chargingProfileKind", KINDS)
    if profile.recurrency_kind is not None:
        _choice(profile.recurrency_kind, "recurrencyKind", RECURRENCY_KINDS)
    schedule = profile.schedule
    if profile.kind == "Recurring":
        if profile.recurrency_kind is None:
            raise ProfileError("recurrencyKind is required for a Recurring profile")
        if schedule.start_schedule is None:
            # Without it there is nothing to repeat from.
            raise ProfileError("chargingSchedule.startSchedule is required for a Recurring profile")
    for name, moment in (
        ("validFrom", profile.valid_from),
        ("validTo", profile.valid_to),
        ("chargingSchedule.startSchedule", schedule.start_schedule),
    ):
        if moment is not None and (not isinstance(moment, datetime) or moment.tzinfo is None):
            raise ProfileError(f"{name} must be a timezone-aware datetime, got {moment!r}")
    if (
        profile.valid_from is not None
        and profile.valid_to is not None
        and profile.valid_to <= profile.valid_from
    ):
        raise ProfileError(
            f"validTo ({format_datetime(profile.valid_to)}) must be after "
            f"validFrom ({format_datetime(profile.valid_from)})"
        )
    if profile.transaction_id is not None and profile.purpose != TX_PROFILE:
        raise ProfileError(f"transactionId is only allowed in a TxProfile, not {profile.purpose}")
    _choice(schedule.charging_rate_unit, "chargingSchedule.chargingRateUnit", UNITS)
    if schedule.duration is not None and schedule.duration <= 0:
        raise ProfileError(
            f"chargingSchedule.duration must be > 0 (leave it out for an open-ended schedule), "
            f"got {schedule.duration}"
        )
    if schedule.min_charging_rate is not None and not (
        math.isfinite(schedule.min_charging_rate) and schedule.min_charging_rate >= 0
    ):
        raise ProfileError(
            f"chargingSchedule.minChargingRate must be >= 0, got {schedule.min_charging_rate}"
        )
    if not schedule.periods:
        raise ProfileError("chargingSchedule.chargingSchedulePeriod must not be empty")
    _check_horizon(profile)
    kind = profile.recurrency_kind  # set for a Recurring profile (checked above)
    cycle = _CYCLES[kind] if profile.kind == "Recurring" and kind is not None else None
    if (
        cycle is not None
        and schedule.duration is not None
        and schedule.duration > cycle.total_seconds()
    ):
        # It cannot recur every day (week): each instance would still run when the next
        # starts, and the later one would silently cut it short.
        raise ProfileError(
            f"chargingSchedule.duration ({schedule.duration} s) is longer than one "
            f"{kind} recurrence ({int(cycle.total_seconds())} s)"
        )
    previous: int | None = None
    for index, period in enumerate(schedule.periods):
        path = f"chargingSchedule.chargingSchedulePeriod[{index}]"
        if index == 0 and period.start_period != 0:
            raise ProfileError(f"{path}.startPeriod must be 0, got {period.start_period}")
        if previous is not None and period.start_period <= previous:
            raise ProfileError(
                f"{path}.startPeriod must be greater than the previous one ({previous}), "
                f"got {period.start_period}"
            )
        previous = period.start_period
        if schedule.duration is not None and period.start_period >= schedule.duration:
            raise ProfileError(
                f"{path}.startPeriod ({period.start_period}) is not before the schedule's "
                f"duration ({schedule.duration}), so it would never apply"
            )
        if cycle is not None and period.start_period >= cycle.total_seconds():
            raise ProfileError(
                f"{path}.startPeriod ({period.start_period}) lies beyond one "
                f"{profile.recurrency_kind} recurrence ({int(cycle.total_seconds())} s)"
            )
        if not (math.isfinite(period.limit) and period.limit >= 0):
            raise ProfileError(f"{path}.limit must be >= 0, got {period.limit}")
        if period.number_phases is not None and period.number_phases not in (1, 2, 3):
            raise ProfileError(f"{path}.numberPhases must be 1, 2 or 3, got {period.number_phases}")


# The longest schedule offset we compute with (about 68 years): every start plus every
# offset must stay a datetime, or evaluating the profile would raise in each meter tick.
MAX_SCHEDULE_SECONDS: Final = 2**31 - 1
# Room kept below datetime.max for the evaluation window (GetCompositeSchedule: 7 days) and
# one recurrence.
_HEADROOM: Final = timedelta(days=15)


def _check_horizon(profile: ChargingProfile) -> None:
    schedule = profile.schedule
    for name, seconds in (
        ("chargingSchedule.duration", schedule.duration),
        *(
            (f"chargingSchedule.chargingSchedulePeriod[{i}].startPeriod", p.start_period)
            for i, p in enumerate(schedule.periods)
        ),
    ):
        if seconds is not None and seconds > MAX_SCHEDULE_SECONDS:
            raise ProfileError(f"{name} must be at most {MAX_SCHEDULE_SECONDS} s, got {seconds}")
    start = schedule.start_schedule
    if start is not None:
        end = max(schedule.duration or 0, schedule.periods[-1].start_period)
        try:
            start + timedelta(seconds=end) + _HEADROOM
            start - _HEADROOM
        except OverflowError:
            raise ProfileError(
                f"chargingSchedule.startSchedule ({format_datetime(start)}) is too close to "
                "the end of the calendar for its schedule to run"
            ) from None


def parse_remote_start_profile(data: Mapping[str, Any]) -> ChargingProfile:
    """RemoteStartTransaction.req ``chargingProfile``: must be a TxProfile without transactionId.

    Install the result with ``ProfileStore.install`` once the transaction is running; any
    ``active_transaction_id`` (even -1 while StartTransaction is unconfirmed) will do, as the
    profile names no transaction.
    """
    profile = ChargingProfile.from_dict(data)
    if profile.purpose != TX_PROFILE:
        raise ProfileError(
            f"RemoteStartTransaction chargingProfile must be a TxProfile, not {profile.purpose}"
        )
    if profile.transaction_id is not None:
        raise ProfileError("RemoteStartTransaction chargingProfile must not have a transactionId")
    return profile


# --------------------------------------------------------------------------- limits


@dataclass(slots=True, frozen=True)
class Limit:
    """The limit in force for a connector (or the grid), in both units.

    ``amps`` is per phase (-> Current.Offered), ``watts`` the total (-> Power.Offered).
    ``min_amps`` is the strictest minChargingRate of the winning profiles, per phase.
    ``amp_cap`` is the strictest limit set in amps (None: none was): a current per phase,
    which binds on each phase a vehicle uses however many it uses, whereas ``watts``
    converts it over the EVSE's phases (a 10 A limit is 6.9 kW on three phases, but a
    single-phase car under it still draws only 10 A, 2.3 kW). ``watt_cap`` is the
    strictest limit set in watts (None: none was). On DC the two caps are all that binds:
    an amp limit is the DC current, in watts only at the pack voltage of the moment, so
    ``watts`` (converted over the nominal AC supply) is no measure of it there.
    """

    amps: float
    watts: float
    phases: int
    min_amps: float | None = None
    profile_ids: tuple[int, ...] = ()
    amp_cap: float | None = None
    watt_cap: float | None = None
    # The strictest minChargingRate stated in amps and in watts (None: none was), for DC,
    # where `min_amps` (the watt minima converted over the nominal AC supply) is no current.
    least_a: float | None = None
    least_w: float | None = None

    @property
    def below_minimum(self) -> bool:
        """The limit is under the EV's minChargingRate.

        Policy: an EV cannot charge below its minimum rate, so it draws nothing (the engine
        should treat this like a limit of 0, i.e. SuspendedEVSE); Current.Offered and
        Power.Offered still report the limit itself, as a real EVSE reports its offer.
        """
        return self.min_amps is not None and self.amps < self.min_amps

    @property
    def usable_amps(self) -> float:
        """What the EV may actually draw per phase: 0 when below its minimum rate."""
        return 0.0 if self.below_minimum else self.amps

    @property
    def usable_watts(self) -> float:
        return 0.0 if self.below_minimum else self.watts

    @property
    def usable_amp_cap(self) -> float | None:
        """``amp_cap`` as the EV may use it: 0 when below its minimum rate."""
        if self.amp_cap is None:
            return None
        return 0.0 if self.below_minimum else self.amp_cap

    def value(self, unit: RateUnit) -> float:
        return self.amps if unit == "A" else self.watts


def _least(
    limit: Limit, unit: RateUnit, minimum: float | None
) -> tuple[float | None, float | None]:
    """`limit`'s least rates in amps and in watts with one more `minimum` in `unit`."""
    least_a, least_w = limit.least_a, limit.least_w
    if minimum is not None:
        if unit == "A":
            least_a = minimum if least_a is None else max(least_a, minimum)
        else:
            least_w = minimum if least_w is None else max(least_w, minimum)
    return least_a, least_w


def _with_share(
    limit: Limit, cap: _Constraint, share: float, amps: float, watts: float, min_amps: float | None
) -> Limit:
    """`limit` given its `share` of the ChargePointMax `cap` (in the cap's unit, a cap of
    its own), with `amps` and `watts` converted from it as the caller's supply has them."""
    unit = cap.profile.schedule.charging_rate_unit
    amp_cap, watt_cap = limit.amp_cap, limit.watt_cap
    if unit == "A":
        amps = min(amps, share)
        amp_cap = share if amp_cap is None else min(amp_cap, share)
    else:
        watts = min(watts, share)
        watt_cap = share if watt_cap is None else min(watt_cap, share)
    least_a, least_w = _least(limit, unit, cap.profile.schedule.min_charging_rate)
    return Limit(
        amps=amps,
        watts=watts,
        phases=limit.phases,
        min_amps=min_amps,
        profile_ids=(cap.profile.id, *limit.profile_ids),
        amp_cap=amp_cap,
        watt_cap=watt_cap,
        least_a=least_a,
        least_w=least_w,
    )


@dataclass(slots=True, frozen=True)
class _Constraint:
    profile: ChargingProfile
    period: SchedulePeriod


def distribute_above(
    total: float,
    wants: Mapping[_K, float],
    floors: Mapping[_K, float],
    order: Sequence[_K],
) -> tuple[dict[_K, float], list[_K]]:
    """``distribute``, with no connector given less than its floor: the shares, and the
    connectors left waiting (given 0).

    In ``order`` (the order their sessions started), a connector is admitted while ``total``
    still covers the floor of every one admitted (its floor, or what it wants if that is
    less); one that does not fit gets 0 and a later, smaller one may still fit. The admitted
    share ``total`` in equal shares; where those would leave one below its floor (floors of
    different sizes), each gets its floor and they share what is left. Keys missing from
    ``order`` come last. With every floor 0 this is ``distribute``."""
    floor = {key: min(max(0.0, floors.get(key, 0.0)), max(0.0, wants[key])) for key in wants}
    ranked = [key for key in order if key in wants]
    listed = set(ranked)
    ranked += [key for key in wants if key not in listed]
    admitted: list[_K] = []
    waiting: list[_K] = []
    covered = 0.0
    for key in ranked:
        if covered + floor[key] <= total + 1e-6:
            admitted.append(key)
            covered += floor[key]
        else:
            waiting.append(key)
    shares = distribute(total, {n: wants[key] for n, key in enumerate(admitted)})
    given = {key: shares[n] for n, key in enumerate(admitted)}
    if any(given[key] < floor[key] - 1e-6 for key in admitted):
        extra = distribute(
            total - covered, {n: wants[key] - floor[key] for n, key in enumerate(admitted)}
        )
        given = {key: floor[key] + extra[n] for n, key in enumerate(admitted)}
    return {key: given.get(key, 0.0) for key in wants}, waiting


def distribute(total: float, wants: Mapping[int, float]) -> dict[int, float]:
    """Share ``total`` among connectors: equal shares, unused share redistributed (water-filling).

    Each connector gets min(want, fair share); whatever a modest connector leaves is split among
    the ones that want more. The sum never exceeds ``total`` (up to float rounding) and no
    connector gets more than it wants, which is the max-min fair allocation.
    """
    remaining = max(0.0, total)
    shares: dict[int, float] = {}
    pending = sorted(wants.items(), key=lambda item: (item[1], item[0]))
    while pending:
        fair = remaining / len(pending)
        connector, want = pending[0]
        if max(0.0, want) <= fair:
            shares[connector] = max(0.0, want)
            remaining -= shares[connector]
            pending.pop(0)
            continue
        for connector, _ in pending:
            shares[connector] = fair
        break
    return {connector: shares[connector] for connector in wants}


def _floor_tenth(value: float) -> float:
    # The schema says multipleOf 0.1; rounding down keeps the report at or below the limit.
    # The epsilon absorbs float noise such as 15.999999999 meaning 16.
    return round(math.floor(value * 10 + 1e-7) / 10, 1)


# --------------------------------------------------------------------------- the store


@dataclass(slots=True)
class _Installed:
    connector_id: int
    profile: ChargingProfile


class ProfileStore:
    """The charging profiles installed on one charge point with ``connectors`` connectors."""

    __slots__ = (
        "_index",
        "_installed",
        "allowed_units",
        "connectors",
        "electrical",
        "max_periods",
        "max_profiles",
        "max_stack_level",
        "rated_w",
    )

    def __init__(
        self,
        connectors: int,
        *,
        electrical: Electrical | None = None,
        max_profiles: int = 10,  # MaxChargingProfilesInstalled
        max_stack_level: int = 10,  # ChargeProfileMaxStackLevel
        max_periods: int = 24,  # ChargingScheduleMaxPeriods
        allowed_units: Iterable[str] = UNITS,  # ChargingScheduleAllowedChargingRateUnit
        rated_w: float | None = None,  # the charger's rated power: caps connector 0's total
    ) -> None:
        if connectors < 1:
            raise ValueError(f"a charge point needs at least one connector, got {connectors}")
        self.connectors = connectors
        self.electrical = electrical or Electrical()
        self.max_profiles = max_profiles
        self.max_stack_level = max_stack_level
        self.max_periods = max_periods
        self.allowed_units = frozenset(allowed_units)
        self.rated_w = rated_w
        self._installed: dict[int, _Installed] = {}  # by chargingProfileId: ids are unique
        self._index: dict[tuple[int, str], list[ChargingProfile]] | None = None

    def __len__(self) -> int:
        return len(self._installed)

    # ---- installing and clearing -------------------------------------------------------

    def check(
        self, connector_id: int, profile: ChargingProfile, *, active_transaction_id: int | None
    ) -> str | None:
        """Why SetChargingProfile would be Rejected (for the log), or None if it is acceptable."""
        if not 0 <= connector_id <= self.connectors:
            return f"connector {connector_id} does not exist (0..{self.connectors})"
        if profile.purpose == CHARGE_POINT_MAX:
            if connector_id != 0:
                return "a ChargePointMaxProfile can only be set on connector 0"
            if profile.kind == "Relative":
                return "a ChargePointMaxProfile cannot be Relative: it has no transaction to start"
        elif profile.purpose == TX_PROFILE:
            if connector_id == 0:
                return "a TxProfile needs a connector > 0"
            if active_transaction_id is None:
                return f"no transaction is active on connector {connector_id}"
            if (
                profile.transaction_id is not None
                and profile.transaction_id != active_transaction_id
            ):
                return (
                    f"transactionId {profile.transaction_id} is not the active transaction "
                    f"{active_transaction_id}"
                )
        if profile.stack_level > self.max_stack_level:
            return f"stackLevel {profile.stack_level} exceeds {self.max_stack_level}"
        if len(profile.schedule.periods) > self.max_periods:
            return f"{len(profile.schedule.periods)} periods exceed {self.max_periods}"
        if profile.schedule.charging_rate_unit not in self.allowed_units:
            return f"chargingRateUnit {profile.schedule.charging_rate_unit} is not allowed"
        if (
            len(self._installed) - len(self._replaced_by(connector_id, profile))
            >= self.max_profiles
        ):
            return f"already {self.max_profiles} profiles installed"
        return None

    def install(
        self,
        connector_id: int,
        profile: ChargingProfile,
        *,
        active_transaction_id: int | None,
        now: datetime | None = None,
    ) -> InstallStatus:
        """SetChargingProfile: "Accepted" (installed, replacing same id / same stackLevel+purpose
        on that connector) or "Rejected" (nothing changes). ``now`` fixes the start of an
        Absolute ChargePointMaxProfile that has neither startSchedule nor validFrom."""
        if self.check(connector_id, profile, active_transaction_id=active_transaction_id):
            return "Rejected"
        if (
            profile.purpose == CHARGE_POINT_MAX
            and profile.kind == "Absolute"
            and profile.schedule.start_schedule is None
        ):
            start = profile.valid_from or _utc(now or datetime.now(UTC), "now")
            profile = replace(profile, schedule=replace(profile.schedule, start_schedule=start))
        for profile_id in self._replaced_by(connector_id, profile):
            del self._installed[profile_id]
        self._installed[profile.id] = _Installed(connector_id, profile)
        self._index = None
        return "Accepted"

    def _replaced_by(self, connector_id: int, profile: ChargingProfile) -> list[int]:
        return [
            profile_id
            for profile_id, entry in self._installed.items()
            if profile_id == profile.id
            or (
                entry.connector_id == connector_id
                and entry.profile.stack_level == profile.stack_level
                and entry.profile.purpose == profile.purpose
            )
        ]

    def clear(
        self,
        id: int | None = None,  # the OCPP field name, though it shadows the builtin
        connector_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> ClearStatus:
        """ClearChargingProfile: "Accepted" if anything was removed, else "Unknown".

        With ``id`` only that profile goes and the other criteria are ignored (1.6 semantics);
        otherwise every profile matching all given criteria goes (none given: all profiles).
        ``connector_id=0`` matches the profiles installed on connector 0, not all connectors.
        """
        if id is not None:
            doomed = [id] if id in self._installed else []
        else:
            doomed = [
                profile_id
                for profile_id, entry in self._installed.items()
                if (connector_id is None or entry.connector_id == connector_id)
                and (purpose is None or entry.profile.purpose == purpose)
                and (stack_level is None or entry.profile.stack_level == stack_level)
            ]
        for profile_id in doomed:
            del self._installed[profile_id]
        self._index = None
        return "Accepted" if doomed else "Unknown"

    def clear_transaction(self, connector_id: int) -> int:
        """The transaction on ``connector_id`` ended: its TxProfiles go. Returns how many."""
        doomed = [
            profile_id
            for profile_id, entry in self._installed.items()
            if entry.connector_id == connector_id and entry.profile.purpose == TX_PROFILE
        ]
        for profile_id in doomed:
            del self._installed[profile_id]
        self._index = None
        return len(doomed)

    # ---- persistence -------------------------------------------------------------------

    def all(self) -> list[dict[str, Any]]:
        """Every profile as ``{"connectorId": n, "csChargingProfiles": {...}}``, JSON-ready."""
        return [
            {"connectorId": entry.connector_id, "csChargingProfiles": entry.profile.to_dict()}
            for entry in self._installed.values()
        ]

    def installed(self) -> list[tuple[int, ChargingProfile]]:
        return [(entry.connector_id, entry.profile) for entry in self._installed.values()]

    def load(self, items: Iterable[Mapping[str, Any]]) -> None:
        """Replace the contents with what ``all()`` returned (profiles survive a reboot).

        The installation rules are not re-applied (the profiles were accepted once); a TxProfile
        whose transaction no longer runs must be dropped with ``clear_transaction``. Corrupt
        data raises ProfileError and leaves the store unchanged.
        """
        loaded: dict[int, _Installed] = {}
        for item in items:
            connector_id = _integer(_required(item, "connectorId", ""), "connectorId")
            if not 0 <= connector_id <= self.connectors:
                raise ProfileError(f"connectorId {connector_id} does not exist")
            profile = ChargingProfile.from_dict(_required(item, "csChargingProfiles", ""))
            loaded[profile.id] = _Installed(connector_id, profile)
        self._installed = loaded
        self._index = None

    # ---- evaluation --------------------------------------------------------------------

    def _candidates(self, connector_id: int, purpose: str) -> list[ChargingProfile]:
        if self._index is None:
            index: dict[tuple[int, str], list[ChargingProfile]] = {}
            for entry in self._installed.values():
                index.setdefault((entry.connector_id, entry.profile.purpose), []).append(
                    entry.profile
                )
            for profiles in index.values():
                profiles.sort(key=lambda profile: profile.stack_level, reverse=True)
            self._index = index
        return self._index.get((connector_id, purpose), [])

    def _winner(
        self, connector_id: int, purpose: str, moment: datetime, relative_start: datetime
    ) -> _Constraint | None:
        for profile in self._candidates(connector_id, purpose):  # highest stackLevel first
            period = profile.period_at(moment, relative_start)
            if period is not None:
                return _Constraint(profile, period)
        return None

    def _charge_point_max(self, moment: datetime, relative_start: datetime) -> _Constraint | None:
        return self._winner(0, CHARGE_POINT_MAX, moment, relative_start)

    def _transaction_constraint(
        self, connector_id: int, moment: datetime, relative_start: datetime
    ) -> _Constraint | None:
        return (
            self._winner(connector_id, TX_PROFILE, moment, relative_start)
            or self._winner(connector_id, TX_DEFAULT, moment, relative_start)
            or self._winner(0, TX_DEFAULT, moment, relative_start)
        )

    def _phases(self, period: SchedulePeriod) -> int:
        # An EVSE cannot use more phases than it has, whatever the profile says.
        return min(self.electrical.phases, period.number_phases or self.electrical.phases)

    def _combine(self, constraints: list[_Constraint], car_phases: int | None = None) -> Limit:
        """min of the physical maximum and every constraint, in both units at once.
        ``car_phases``: the phases the connector's car draws on, which the units convert
        over when fewer (see ``composite_schedule``)."""
        voltage = self.electrical.voltage
        phases = min([self._phases(c.period) for c in constraints] + [self.electrical.phases])
        if car_phases is not None:
            phases = max(1, min(phases, car_phases))
        amps = self.electrical.max_current
        watts = amps_to_watts(amps, phases, voltage)
        minimums: list[float] = []
        amp_cap: float | None = None
        watt_cap: float | None = None
        least_a: float | None = None
        least_w: float | None = None
        for constraint in constraints:
            limit = constraint.period.limit
            minimum = constraint.profile.schedule.min_charging_rate
            if constraint.profile.schedule.charging_rate_unit == "A":
                amps = min(amps, limit)
                amp_cap = limit if amp_cap is None else min(amp_cap, limit)
                watts = min(watts, amps_to_watts(limit, phases, voltage))
                if minimum is not None:
                    minimums.append(minimum)
                    least_a = minimum if least_a is None else max(least_a, minimum)
            else:
                watts = min(watts, limit)
                watt_cap = limit if watt_cap is None else min(watt_cap, limit)
                amps = min(amps, watts_to_amps(limit, phases, voltage))
                if minimum is not None:
                    minimums.append(watts_to_amps(minimum, phases, voltage))
                    least_w = minimum if least_w is None else max(least_w, minimum)
        return Limit(
            amps=amps,
            watts=watts,
            phases=phases,
            min_amps=max(minimums) if minimums else None,
            profile_ids=tuple(c.profile.id for c in constraints),
            amp_cap=amp_cap,
            watt_cap=watt_cap,
            least_a=least_a,
            least_w=least_w,
        )

    def _connector_limit(
        self,
        connector_id: int,
        moment: datetime,
        relative_start: datetime,
        *,
        with_cap: bool,
        car_phases: int | None = None,
    ) -> Limit:
        constraints = []
        if with_cap and (cap := self._charge_point_max(moment, relative_start)) is not None:
            constraints.append(cap)
        if (tx := self._transaction_constraint(connector_id, moment, relative_start)) is not None:
            constraints.append(tx)
        return self._combine(constraints, car_phases)

    def _grid_limit(
        self,
        moment: datetime,
        relative_starts: Mapping[int, datetime],
        default_start: datetime,
        car_phases: Mapping[int, int] | None = None,
    ) -> Limit:
        """Connector 0: what the grid connection may draw if every connector charges.

        Sum over connectors of min(Tx/TxDefault, physical), each on the phases its car
        draws on (``car_phases``; the EVSE's without a car), capped by the ChargePointMax
        and the rated power. Watts are the total. Amps are the most one phase may carry:
        the connectors' amps summed, as if every car drew on the same phases (the worst
        case), and no more than a cap in watts gives on the fewest phases a connector uses.
        ``phases`` is the most any connector uses: with every connector on the same phases
        W = A x V x phases; in a mix (a single-phase and a three-phase car) A x V x phases
        is more than the total, never less.
        """
        limits = [
            self._connector_limit(
                connector_id,
                moment,
                relative_starts.get(connector_id, default_start),
                with_cap=False,
                car_phases=(car_phases or {}).get(connector_id),
            )
            for connector_id in range(1, self.connectors + 1)
        ]
        amps = sum(limit.amps for limit in limits)
        watts = sum(limit.watts for limit in limits)
        phases = max(limit.phases for limit in limits)
        fewest = min(limit.phases for limit in limits)
        voltage = self.electrical.voltage
        ids = tuple(sorted({pid for limit in limits for pid in limit.profile_ids}))
        cap = self._charge_point_max(moment, default_start)
        if cap is not None:
            cap_phases = self._phases(cap.period)
            phases, fewest = min(phases, cap_phases), min(fewest, cap_phases)
            if cap.profile.schedule.charging_rate_unit == "A":
                cap_amps = cap.period.limit
                cap_watts = amps_to_watts(cap_amps, phases, voltage)
            else:
                cap_watts = cap.period.limit
                cap_amps = watts_to_amps(cap_watts, fewest, voltage)
            amps, watts = min(amps, cap_amps), min(watts, cap_watts)
            ids = (cap.profile.id, *ids)
        if self.rated_w is not None and watts > self.rated_w:
            # The charger's rated power caps the sum of its connectors (power sharing).
            watts = self.rated_w
            amps = min(amps, watts_to_amps(watts, fewest, voltage))
        return Limit(amps=amps, watts=watts, phases=phases, profile_ids=ids)

    def limit_at(
        self, connector_id: int, at: datetime, *, tx_start: datetime | None = None
    ) -> Limit:
        """The limit for one connector (> 0) at ``at``: min(ChargePointMax, Tx/TxDefault, max).

        The ChargePointMax counts in full here, as if this connector charged alone; use
        ``allocate`` for connectors charging at the same time. ``tx_start`` anchors Relative
        profiles; without a transaction they are anchored at ``at`` (their first period).
        """
        if not 1 <= connector_id <= self.connectors:
            raise ValueError(f"connector {connector_id} is not 1..{self.connectors}")
        moment = _utc(at, "at")
        start = moment if tx_start is None else _utc(tx_start, "tx_start")
        return self._connector_limit(connector_id, moment, start, with_cap=True)

    def next_change(
        self, at: datetime, tx_starts: Mapping[int, datetime], horizon_s: float
    ) -> datetime | None:
        """The first instant after ``at`` and before ``horizon_s`` from it at which the limit
        of a connector in ``tx_starts`` (connector -> its transaction's start) may change:
        a period of one of its profiles starts, a schedule or a profile's validity begins
        or ends, a recurring schedule starts again. None: none within the horizon. (Only
        time changes them here; an installed or cleared profile is the caller's to see.)"""
        moment = _utc(at, "at")
        end = moment + timedelta(seconds=horizon_s)
        starts = {c: _utc(t, "tx_starts") for c, t in tx_starts.items()}
        first: datetime | None = None
        for connector_id in starts:
            for target, profile in self._relevant(connector_id):
                for point in profile.breakpoints(moment, end, starts.get(target, moment)):
                    if first is None or point < first:
                        first = point
        return first

    def grid_limit_at(
        self, at: datetime, *, tx_starts: Mapping[int, datetime] | None = None
    ) -> Limit:
        """Connector 0's view: the most the whole charge point may draw at ``at``."""
        moment = _utc(at, "at")
        starts = {c: _utc(t, "tx_starts") for c, t in (tx_starts or {}).items()}
        return self._grid_limit(moment, starts, moment)

    def allocate(
        self,
        at: datetime,
        charging: Mapping[int, datetime | None],
        *,
        demand_watts: Mapping[int, float] | None = None,
        own: Mapping[int, Limit] | None = None,
        ac_minimum: bool = False,
        order: Sequence[int] = (),
        phases: Mapping[int, int] | None = None,
        dc_volts: Mapping[int, float] | None = None,
    ) -> dict[int, Limit]:
        """Limits for the connectors drawing power now, sharing the ChargePointMax.

        ``charging`` maps each connector that draws power to its transaction start. Each one
        wants min(its own Tx/TxDefault/physical limit, its EV's ``demand_watts`` if given); the
        ChargePointMax (in its own unit: per-phase amps or watts) is then shared with
        ``distribute`` (equal shares, what one leaves goes to those wanting more). The returned
        limits never add up to more than the ChargePointMax. Without a ChargePointMax in force
        each connector simply gets its own limit. Connectors not drawing power should be left
        out, or they would hold back a share they do not use. ``own``: the result of
        ``own_limits`` for the same arguments, when the caller already has it.
        ``ac_minimum``: an AC charger, which cannot offer less than `MIN_AC_AMPS`: rather
        than shares below it, the connectors whose sessions started last get 0 and the
        others at least that (``distribute_above``); ``order``, when given, is the order
        they are admitted in instead (the charger's turns). ``phases``: the phases each
        connector's car draws on, where fewer than its limit's (a single-phase car on a
        three-phase EVSE): a share converts between amps and watts over those, as the car
        draws (over the EVSE's three, 20 A were 10.6 A for a single-phase car's 7.3 kW,
        and its 6 A minimum 4.1 kW, so it waited under a cap that had room for it).
        ``dc_volts``: a DC charger's connectors' line voltages. There amps are the DC
        current: what each wants and the share it gets convert at its own voltage, and
        the share becomes its ``amp_cap`` or ``watt_cap`` alone (a cap in amps converted
        over the nominal AC supply is no DC current: 300 A shared were 108 A each).
        """
        moment = _utc(at, "at")
        if own is None:
            own = self.own_limits(moment, charging)
        cap = self._charge_point_max(moment, moment)
        if cap is None or not own:
            return dict(own)
        if dc_volts is not None:
            first = list(order) or sorted(
                charging, key=lambda c: (charging[c] is None, charging[c] or moment, c)
            )
            return self._allocate_dc(cap, own, demand_watts or {}, dc_volts, first)
        unit = cap.profile.schedule.charging_rate_unit
        voltage = self.electrical.voltage
        used = {
            c: min(limit.phases, (phases or {}).get(c, limit.phases)) for c, limit in own.items()
        }
        wants: dict[int, float] = {}
        for connector_id, limit in own.items():
            want = limit.value(unit)
            drawn_on = used[connector_id]
            if drawn_on < limit.phases:
                # The car draws its limit on its own phases: 10 A to a single-phase car is
                # 2.3 kW, not the 6.9 kW of three; counted so, it held back a share unused.
                amps = self.electrical.max_current
                if limit.amp_cap is not None:
                    amps = min(amps, limit.amp_cap)
                if limit.watt_cap is not None:
                    amps = min(amps, watts_to_amps(limit.watt_cap, drawn_on, voltage))
                want = amps if unit == "A" else amps_to_watts(amps, drawn_on, voltage)
            demand = (demand_watts or {}).get(connector_id)
            if demand is not None:
                want = min(
                    want,
                    demand if unit == "W" else watts_to_amps(demand, used[connector_id], voltage),
                )
            wants[connector_id] = want
        if ac_minimum:
            floors = {
                c: MIN_AC_AMPS if unit == "A" else amps_to_watts(MIN_AC_AMPS, used[c], voltage)
                for c in own
            }
            first = list(order) or sorted(
                charging, key=lambda c: (charging[c] is None, charging[c] or moment, c)
            )
            shares = distribute_above(cap.period.limit, wants, floors, first)[0]
        else:
            shares = distribute(cap.period.limit, wants)
        result: dict[int, Limit] = {}
        for connector_id, limit in own.items():
            share = shares[connector_id]
            drawn_on = used[connector_id]
            if unit == "A":
                watts = min(limit.watts, amps_to_watts(share, drawn_on, voltage))
                amps = limit.amps
            else:
                amps = min(limit.amps, watts_to_amps(share, drawn_on, voltage))
                watts = limit.watts
            minimum = cap.profile.schedule.min_charging_rate
            min_amps = limit.min_amps
            if minimum is not None:
                cap_min = minimum if unit == "A" else watts_to_amps(minimum, drawn_on, voltage)
                min_amps = cap_min if min_amps is None else max(min_amps, cap_min)
            result[connector_id] = _with_share(limit, cap, share, amps, watts, min_amps)
        return result

    @staticmethod
    def _allocate_dc(
        cap: _Constraint,
        own: Mapping[int, Limit],
        demand_watts: Mapping[int, float],
        dc_volts: Mapping[int, float],
        first: Sequence[int],
    ) -> dict[int, Limit]:
        """`allocate` on DC: the ChargePointMax shared in its own unit, each connector
        wanting what it draws under its own caps at its line voltage. A connector is
        given no share below its least charging rate: those `first` in the queue are
        admitted while the cap covers them, the others wait (given 0)."""
        unit = cap.profile.schedule.charging_rate_unit
        minimum = cap.profile.schedule.min_charging_rate
        wants: dict[int, float] = {}
        floors: dict[int, float] = {}
        for connector_id, limit in own.items():
            volts = dc_volts[connector_id]
            draw = demand_watts.get(connector_id, limit.watts)
            if limit.watt_cap is not None:
                draw = min(draw, limit.watt_cap)
            if limit.amp_cap is not None:
                draw = min(draw, limit.amp_cap * volts)
            least_a, least_w = _least(limit, unit, minimum)
            floor_w = max(least_w or 0.0, (least_a or 0.0) * volts)
            per_unit = 1.0 if unit == "W" else volts
            wants[connector_id] = max(0.0, draw / per_unit)
            floors[connector_id] = floor_w / per_unit
        if any(floors.values()):
            shares = distribute_above(cap.period.limit, wants, floors, first)[0]
        else:
            shares = distribute(cap.period.limit, wants)
        result: dict[int, Limit] = {}
        for connector_id, limit in own.items():
            min_amps = limit.min_amps
            if minimum is not None:
                cap_min = minimum if unit == "A" else minimum / dc_volts[connector_id]
                min_amps = cap_min if min_amps is None else max(min_amps, cap_min)
            share = shares[connector_id]
            # Both units at its line voltage: a share of 0 is no power either (a car
            # waiting for its turn), as on AC.
            volts = dc_volts[connector_id]
            amps = limit.amps if unit == "A" else min(limit.amps, share / volts)
            watts = limit.watts if unit == "W" else min(limit.watts, share * volts)
            result[connector_id] = _with_share(limit, cap, share, amps, watts, min_amps)
        return result

    def own_limits(self, at: datetime, charging: Mapping[int, datetime | None]) -> dict[int, Limit]:
        """Each connector's own limit, min(Tx/TxDefault, physical), without the ChargePointMax:
        what it would get if nothing were shared (``charging`` as for ``allocate``)."""
        moment = _utc(at, "at")
        own: dict[int, Limit] = {}
        for connector_id, tx_start in charging.items():
            if not 1 <= connector_id <= self.connectors:
                raise ValueError(f"connector {connector_id} is not 1..{self.connectors}")
            start = moment if tx_start is None else _utc(tx_start, "tx_start")
            own[connector_id] = self._connector_limit(connector_id, moment, start, with_cap=False)
        return own

    # ---- GetCompositeSchedule ----------------------------------------------------------

    def _dc_watts(self, limit: Limit, volts: float) -> float:
        """What a DC connector may draw under `limit` at `volts`: its EVSE's power, the
        caps in watts and its amp caps at that voltage."""
        electrical = self.electrical
        watts = electrical.max_current * electrical.voltage * electrical.phases
        if limit.watt_cap is not None:
            watts = min(watts, limit.watt_cap)
        if limit.amp_cap is not None:
            watts = min(watts, limit.amp_cap * volts)
        return max(0.0, watts)

    def _dc_value_at(
        self,
        connector_id: int,
        moment: datetime,
        starts: Mapping[int, datetime],
        default_start: datetime,
        unit: RateUnit,
        dc_volts: Mapping[int, float],
    ) -> float:
        """`composite_schedule`'s value at `moment` on a DC charger, in `unit`."""
        if connector_id > 0:
            volts = dc_volts[connector_id]
            anchor = starts.get(connector_id, default_start)
            limit = self._connector_limit(connector_id, moment, anchor, with_cap=True)
            watts = self._dc_watts(limit, volts)
            if self.rated_w is not None:  # alone it may have the charger's rated power
                watts = min(watts, self.rated_w)
            return watts if unit == "W" else watts / volts
        watts = amps = 0.0
        for c in range(1, self.connectors + 1):
            own = self._connector_limit(c, moment, starts.get(c, default_start), with_cap=False)
            drawn = self._dc_watts(own, dc_volts[c])
            watts += drawn
            amps += drawn / dc_volts[c]
        volts = watts / amps if amps > 0 else sum(dc_volts.values()) / max(1, len(dc_volts))
        cap = self._charge_point_max(moment, default_start)
        if cap is not None:
            if cap.profile.schedule.charging_rate_unit == "A":
                amps, watts = min(amps, cap.period.limit), min(watts, cap.period.limit * volts)
            else:
                watts, amps = min(watts, cap.period.limit), min(amps, cap.period.limit / volts)
        if self.rated_w is not None:
            watts, amps = min(watts, self.rated_w), min(amps, self.rated_w / volts)
        return watts if unit == "W" else amps

    def _relevant(self, connector_id: int) -> list[tuple[int, ChargingProfile]]:
        """(connector whose anchor applies, profile) for every profile that can shape the
        schedule of ``connector_id`` (0: every connector)."""
        targets = range(1, self.connectors + 1) if connector_id == 0 else (connector_id,)
        pairs: list[tuple[int, ChargingProfile]] = [
            (targets[0], profile) for profile in self._candidates(0, CHARGE_POINT_MAX)
        ]
        for target in targets:
            for source, purpose in ((target, TX_PROFILE), (target, TX_DEFAULT), (0, TX_DEFAULT)):
                pairs.extend((target, profile) for profile in self._candidates(source, purpose))
        return pairs

    def _composite_unit(self, connector_id: int, unit: str | None) -> RateUnit:
        if unit is not None:
            return _choice(unit, "chargingRateUnit", UNITS)
        if len(self.allowed_units) == 1:
            (only,) = self.allowed_units  # a subset of UNITS
            return "W" if only == "W" else "A"
        units = {profile.schedule.charging_rate_unit for _, profile in self._relevant(connector_id)}
        return "W" if units == {"W"} else "A"

    def composite_schedule(
        self,
        connector_id: int,
        start: datetime,
        duration_s: int,
        unit: str | None = None,
        *,
        tx_starts: Mapping[int, datetime] | None = None,
        dc_volts: Mapping[int, float] | None = None,
        car_phases: Mapping[int, int] | None = None,
    ) -> dict[str, Any] | None:
        """The GetCompositeSchedule.conf ``chargingSchedule`` for ``start .. start+duration_s``.

        Connector > 0: min(ChargePointMax, Tx/TxDefault, physical maximum) over time.
        Connector 0: the grid total (see ``grid_limit_at``), at most the rated power. The
        schedule always covers the whole window: where no profile applies, the physical
        maximum is reported, so the
        answer is Accepted even with nothing installed. Returns None only for a connector that
        does not exist (answer Rejected).

        ``unit`` None: the only allowed unit if ChargingScheduleAllowedChargingRateUnit allows
        one, else "W" when every relevant profile is in W, else "A". ``start`` is truncated to
        the whole second. ``tx_starts`` maps connectors with a transaction to its start
        (anchor of Relative profiles); others are anchored at ``start``. Limits are rounded
        down to 0.1 (the schema's multipleOf); ``numberPhases`` is given when it is not 3, the
        value a reader assumes otherwise. Equal neighbouring periods are merged.

        ``dc_volts``: on a DC charger, each connector's line voltage. Amps are DC current
        there, so a limit converts between the units at its connector's voltage (the sum's
        average for connector 0), and no numberPhases is given.

        ``car_phases``: on an AC charger, the phases the car plugged into a connector draws
        on (connectors without a car left out). Its limit converts between the units over
        those, as the car draws, never over more than the EVSE's or a profile's numberPhases
        (2 kW to a single-phase car is 8.6 A on one phase, not 2.8 A on three: under the 6 A
        a reader would take as no charging); without a car over the EVSE's phases. Connector
        0 sums the connectors so (see ``_grid_limit``).
        """
        if not 0 <= connector_id <= self.connectors:
            return None
        if isinstance(duration_s, bool) or not isinstance(duration_s, int) or duration_s < 0:
            raise ValueError(f"duration_s must be an integer >= 0, got {duration_s!r}")
        window_start = _utc(start, "start").replace(microsecond=0)
        window_end = window_start + timedelta(seconds=duration_s)
        rate_unit = self._composite_unit(connector_id, unit)
        starts = {c: _utc(t, "tx_starts") for c, t in (tx_starts or {}).items()}

        def value_at(moment: datetime) -> tuple[float, int]:
            if dc_volts is not None:  # 3 phases: none said
                value = self._dc_value_at(
                    connector_id, moment, starts, window_start, rate_unit, dc_volts
                )
                return _floor_tenth(value), 3
            if connector_id == 0:
                limit = self._grid_limit(moment, starts, window_start, car_phases)
            else:
                anchor = starts.get(connector_id, window_start)
                limit = self._connector_limit(
                    connector_id,
                    moment,
                    anchor,
                    with_cap=True,
                    car_phases=(car_phases or {}).get(connector_id),
                )
                if self.rated_w is not None and limit.watts > self.rated_w:
                    # One connector alone may have the charger's rated power, not more (an
                    # 11 kW charger's 22 kW EVSE): the same cap connector 0's total has.
                    watts = self.rated_w
                    amps = min(
                        limit.amps, watts_to_amps(watts, limit.phases, self.electrical.voltage)
                    )
                    limit = Limit(amps=amps, watts=watts, phases=limit.phases)
            return _floor_tenth(limit.value(rate_unit)), limit.phases

        changes: set[datetime] = set()
        for target, profile in self._relevant(connector_id):
            anchor = starts.get(target, window_start)
            changes |= profile.breakpoints(window_start, window_end, anchor)
        offsets = sorted((moment - window_start) / _SECOND for moment in changes)
        # Periods start at whole seconds. A change at a fractional offset x splits
        # [floor x, ceil x) off as its own period holding the lower of the values on either
        # side, so the schedule is never above the limit in force at any instant.
        grid = {0, duration_s}
        for offset in offsets:
            grid.update((math.floor(offset), math.ceil(offset)))
        edges = sorted(edge for edge in grid if 0 <= edge <= duration_s)
        periods: list[dict[str, Any]] = []
        previous: tuple[float, int] | None = None
        for first, last in zip(edges, [*edges[1:], None], strict=True):
            if last is None and first != 0:
                break  # the window end itself starts nothing (unless the window is empty)
            samples = [value_at(window_start + timedelta(seconds=first))]
            if last is not None:
                inside = offsets[bisect_right(offsets, first) : bisect_left(offsets, last)]
                samples.extend(value_at(window_start + offset * _SECOND) for offset in inside)
            current = (min(s[0] for s in samples), min(s[1] for s in samples))
            if current == previous:
                continue
            period: dict[str, Any] = {"startPeriod": first, "limit": current[0]}
            if current[1] != 3:
                period["numberPhases"] = current[1]
            periods.append(period)
            previous = current
            if last is None:
                break
        return {
            "startSchedule": format_datetime(window_start),
            "duration": duration_s,
            "chargingRateUnit": rate_unit,
            "chargingSchedulePeriod": periods,
        }
