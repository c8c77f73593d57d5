"""Background traffic: the shape of a location's arrival profile and its rules, defined once.

The web side stores a profile (`locations.ArrivalProfile`) and checks it with these
functions; the engine (`simulator.core.arrivals`) builds its arrival stream from the same
dict and the same checks, and a `start_traffic` request (a scenario step) carries one. So a
profile the admin accepts is one the engine runs, with the admin's messages.

Distributions (`DistributionDict`), each of a quantity with a range:
- ``fixed``: always ``a`` (``b`` is ignored);
- ``uniform``: between ``a`` (min) and ``b`` (max), ``a <= b``;
- ``normal``: mean ``a``, standard deviation ``b >= 0``, a draw outside the quantity's
  range clipped to it (so a wide normal piles some mass on the range's ends).
Ranges: SoC and target SoC 0..100 %, dwell 1 minute..7 days. A target below the drawn
initial SoC means the EV wants nothing more (it parks: SuspendedEV at once).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, NotRequired, TypedDict

DistributionKind = Literal["fixed", "uniform", "normal"]
DISTRIBUTION_KINDS: Final[tuple[str, ...]] = ("fixed", "uniform", "normal")

HOURS: Final = 24
#: Arrivals per hour at one site; more is a typo, not a site.
MAX_ARRIVALS_PER_HOUR: Final = 10_000.0
#: idTags in one pool (a range expands to this many at most).
MAX_ID_TAGS: Final = 100_000
ID_TAG_MAX_LENGTH: Final = 20  # OCPP 1.6 IdToken: CiString20Type
MAX_VEHICLE_WEIGHT: Final = 1_000_000.0

# (low, high, unit) of each distributed quantity.
SOC_RANGE: Final = (0.0, 100.0, "%")
DWELL_RANGE: Final = (1.0, 7 * 24 * 60.0, "minutes")

# A typical public AC site (a few dozen sessions a day): quiet at night, commuters from
# 7 to 10, shoppers through the day, an evening peak when people come home.
DEFAULT_HOURLY_ARRIVALS: Final[tuple[float, ...]] = (
    0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.5, 1.2, 2.0, 2.2, 1.8, 1.5,
    1.5, 1.4, 1.4, 1.5, 1.8, 2.2, 2.0, 1.5, 1.0, 0.7, 0.5, 0.3,
)  # fmt: skip
DEFAULT_ID_TAGS: Final = "TRAFFIC0001..TRAFFIC0200"


class DistributionDict(TypedDict):
    kind: str  # one of DISTRIBUTION_KINDS
    a: float
    b: float


class ProfileDict(TypedDict):
    """An arrival profile as the engine takes it (and a `start_traffic` request carries)."""

    hourly_arrivals: list[float]  # 24 values: arrivals per hour, 00:00..23:00 local time
    vehicle_mix: list[tuple[int, float]]  # (VehicleModel id, weight); empty: all alike
    soc: DistributionDict  # initial SoC, %
    target_soc: DistributionDict  # %
    dwell_minutes: DistributionDict
    id_tags: list[str]  # the pool, expanded
    never_unplug_share: float  # 0..1: drivers who leave the vehicle plugged in
    time_zone: NotRequired[str]  # the location's (IANA); UTC when absent


DEFAULT_SOC: Final[DistributionDict] = {"kind": "normal", "a": 35.0, "b": 15.0}
DEFAULT_TARGET_SOC: Final[DistributionDict] = {"kind": "uniform", "a": 80.0, "b": 100.0}
DEFAULT_DWELL: Final[DistributionDict] = {"kind": "normal", "a": 150.0, "b": 75.0}
DEFAULT_NEVER_UNPLUG: Final = 0.05


class ProfileError(ValueError):
    """A bad profile value; `field` names the profile field it belongs to."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{what} must be a number, not {value!r}.")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{what} must be a number, not {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, not {value!r}.")
    return number


def check_hourly(values: object) -> list[float]:
    """24 arrival rates (per hour, >= 0), one for each hour of the local day from 00:00.
    A text of 24 numbers separated by spaces or commas is taken too."""
    if isinstance(values, str):
        values = [v for v in re.split(r"[\s,;]+", values.strip().strip("[]")) if v]
    if not isinstance(values, Sequence):
        raise ValueError(f"Give {HOURS} numbers (arrivals per hour from 00:00 to 23:00).")
    if len(values) != HOURS:
        raise ValueError(
            f"Give {HOURS} numbers, one per hour of the day from 00:00 to 23:00; got {len(values)}."
        )
    rates = []
    for hour, value in enumerate(values):
        rate = _number(value, f"The rate at {hour:02d}:00")
        if not 0 <= rate <= MAX_ARRIVALS_PER_HOUR:
            raise ValueError(
                f"The rate at {hour:02d}:00 is {rate:g}; it must be within 0 and "
                f"{MAX_ARRIVALS_PER_HOUR:g} arrivals per hour."
            )
        rates.append(rate)
    return rates


def check_distribution(
    kind: object, a: object, b: object, quantity: tuple[float, float, str]
) -> DistributionDict:
    """One distribution of a quantity with range `quantity` (low, high, unit)."""
    low, high, unit = quantity
    if kind not in DISTRIBUTION_KINDS:
        raise ValueError(
            f"{kind!r} is not a distribution; use one of {', '.join(DISTRIBUTION_KINDS)}."
        )
    first = _number(a, "The first parameter")
    second = _number(b, "The second parameter") if b is not None else 0.0
    if kind == "fixed" or kind == "uniform":
        names = ("value", "") if kind == "fixed" else ("min", "max")
        for name, value in zip(names, (first, second), strict=True):
            if name and not low <= value <= high:
                raise ValueError(
                    f"The {name} {value:g} must be within {low:g} and {high:g} {unit}."
                )
        if kind == "uniform" and second < first:
            raise ValueError(f"The max {second:g} is below the min {first:g}.")
    else:
        if not low <= first <= high:
            raise ValueError(f"The mean {first:g} must be within {low:g} and {high:g} {unit}.")
        if second < 0:
            raise ValueError(f"The standard deviation {second:g} must not be negative.")
    return {"kind": str(kind), "a": first, "b": second}


def check_share(value: object) -> float:
    share = _number(value, "The share")
    if not 0 <= share <= 1:
        raise ValueError(f"The share {share:g} must be within 0 and 1 (e.g. 0.05 for 5 %).")
    return share


_RANGE = re.compile(r"^(?P<prefix>.*?)(?P<first>\d+)\.\.(?P=prefix)(?P<last>\d+)$")


def id_tag_problem(tag: str) -> str | None:
    """Why `tag` cannot be an OCPP 1.6 idTag, or None. An IdToken is a CiString20Type: at
    most 20 characters, "only printable ASCII allowed" (no control character, which no
    PostgreSQL text holds either, and no letter beyond ASCII, which a CSMS may refuse)."""
    if not 1 <= len(tag) <= ID_TAG_MAX_LENGTH:
        return f"an idTag has 1 to {ID_TAG_MAX_LENGTH} characters"
    if not all(" " <= char <= "~" for char in tag):
        return (
            "an idTag is printable ASCII (OCPP 1.6 CiString20Type): no control characters, "
            "no letters beyond ASCII"
        )
    return None


def parse_id_tags(text: str) -> list[str]:
    """The idTag pool: idTags separated by spaces, commas or new lines; ``PREFIX0001..
    PREFIX0200`` expands to the numbers between, zero-padded to the first's width."""
    tags: list[str] = []
    for token in re.split(r"[\s,;]+", text.strip()):
        if not token:
            continue
        found = _RANGE.match(token)
        if found is None:
            if ".." in token:
                raise ValueError(
                    f"{token!r} is not a range: write PREFIX0001..PREFIX0200 (the same prefix "
                    "on both sides, numbers at the end)."
                )
            tags.append(token)
        else:
            prefix, first, last = found["prefix"], int(found["first"]), int(found["last"])
            if last < first:
                raise ValueError(f"The range {token!r} counts down; put the smaller number first.")
            if len(tags) + last - first + 1 > MAX_ID_TAGS:
                raise ValueError(f"The pool would hold more than {MAX_ID_TAGS:,} idTags.")
            width = len(found["first"])
            tags.extend(f"{prefix}{n:0{width}d}" for n in range(first, last + 1))
        if len(tags) > MAX_ID_TAGS:
            raise ValueError(f"The pool would hold more than {MAX_ID_TAGS:,} idTags.")
    if not tags:
        raise ValueError("Give at least one idTag (or a range such as TAG0001..TAG0100).")
    for tag in tags:
        if len(tag) > ID_TAG_MAX_LENGTH:
            raise ValueError(
                f"The idTag {tag!r} has {len(tag)} characters; OCPP 1.6 allows at most "
                f"{ID_TAG_MAX_LENGTH}."
            )
        problem = id_tag_problem(tag)
        if problem is not None:
            raise ValueError(f"The idTag {tag!r}: {problem}.")
    return tags


def check_vehicle_mix(items: object) -> list[tuple[int, float]]:
    """(vehicle model id, weight > 0) pairs, each vehicle once; empty means all alike."""
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise ValueError("Give a list of [vehicle model id, weight] pairs.")
    mix: list[tuple[int, float]] = []
    seen: set[int] = set()
    for item in items:
        if isinstance(item, Mapping):
            item = (item.get("vehicle"), item.get("weight"))
        if not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 2:
            raise ValueError(f"{item!r} is not a [vehicle model id, weight] pair.")
        vehicle, weight = item
        if isinstance(vehicle, bool) or not isinstance(vehicle, int):
            raise ValueError(f"{vehicle!r} is not a vehicle model id.")
        share = _number(weight, f"The weight of vehicle {vehicle}")
        if not 0 < share <= MAX_VEHICLE_WEIGHT:
            raise ValueError(
                f"The weight of vehicle {vehicle} is {share:g}; it must be more than 0 (leave "
                "a vehicle out to exclude it)."
            )
        if vehicle in seen:
            raise ValueError(f"Vehicle {vehicle} appears twice in the mix.")
        seen.add(vehicle)
        mix.append((vehicle, share))
    return mix


def default_profile() -> ProfileDict:
    return {
        "hourly_arrivals": list(DEFAULT_HOURLY_ARRIVALS),
        "vehicle_mix": [],
        "soc": dict(DEFAULT_SOC),  # type: ignore[typeddict-item]  # a copy of one
        "target_soc": dict(DEFAULT_TARGET_SOC),  # type: ignore[typeddict-item]
        "dwell_minutes": dict(DEFAULT_DWELL),  # type: ignore[typeddict-item]
        "id_tags": parse_id_tags(DEFAULT_ID_TAGS),
        "never_unplug_share": DEFAULT_NEVER_UNPLUG,
    }


def check_profile(given: Mapping[str, Any]) -> ProfileDict:
    """A whole profile (e.g. a `start_traffic` override), every field checked; a field not
    given takes the default profile's. Raises `ProfileError` naming the field."""
    unknown = set(given) - set(ProfileDict.__annotations__)
    if unknown:
        name = sorted(unknown)[0]
        raise ProfileError(name, f"{name!r} is not a field of an arrival profile.")
    profile = default_profile()
    checks: dict[str, Any] = {
        "hourly_arrivals": check_hourly,
        "vehicle_mix": check_vehicle_mix,
        "soc": lambda d: _distribution(d, SOC_RANGE),
        "target_soc": lambda d: _distribution(d, SOC_RANGE),
        "dwell_minutes": lambda d: _distribution(d, DWELL_RANGE),
        "id_tags": lambda v: parse_id_tags(v if isinstance(v, str) else " ".join(map(str, v))),
        "never_unplug_share": check_share,
        "time_zone": _time_zone,
    }
    for name, value in given.items():
        try:
            profile[name] = checks[name](value)  # type: ignore[literal-required]
        except ProfileError:
            raise
        except (ValueError, TypeError) as exc:
            raise ProfileError(name, str(exc)) from None
    return profile


_DISTRIBUTION_SHAPE = (
    'a distribution is {"kind": "fixed", "a": value}, {"kind": "uniform", "a": min, '
    '"b": max} or {"kind": "normal", "a": mean, "b": standard deviation}'
)


def _distribution(value: object, quantity: tuple[float, float, str]) -> DistributionDict:
    if not isinstance(value, Mapping):
        raise ValueError(f"Give {_DISTRIBUTION_SHAPE}.")
    unknown = sorted(str(key) for key in value if key not in ("kind", "a", "b"))
    if unknown:  # {"dist": "fixed", "value": 10} said "None is not a distribution"
        raise ValueError(f"Unknown key(s) {', '.join(unknown)}: {_DISTRIBUTION_SHAPE}.")
    return check_distribution(value.get("kind"), value.get("a"), value.get("b"), quantity)


def _time_zone(value: object) -> str:
    import zoneinfo

    if not isinstance(value, str) or value not in zoneinfo.available_timezones():
        raise ValueError(f"{value!r} is not an IANA time zone (for example Europe/Berlin).")
    return value


# -- driving a site's traffic from outside (a scenario's `traffic` step, a script) ----------
#
# Sent to every shard's group (`engine_group(k)` for k < N): each worker drives the
# chargers of the site that it runs and answers on the reply channel with one
# `traffic_result` (so a caller expects N answers). `start` (re)starts the site's traffic
# for `duration` simulated seconds (None: until `stop`), with `profile` (checked by
# `check_profile`; None: the site's stored profile, or the default one); `seed` and `speed`
# default to the worker's (--traffic-seed, --traffic-speed). `stop` ends the arrivals
# (the drivers there finish their dwell and leave); `status` only reports. Every answer carries the
# site's tally since its last start, and `running`: whether the site's traffic is still going
# on at that worker (arrivals to come, or drivers still there), so that a caller can wait
# for a `start` with a duration to be over.

TRAFFIC: Final = "engine.traffic"  # web or scenario runner -> every worker
EVENT_TRAFFIC_RESULT: Final = "traffic.result"  # a worker -> the reply channel
TRAFFIC_ACTIONS: Final = ("start", "stop", "status")


class TrafficTally(TypedDict):
    arrivals: int
    started: int  # plugged in, idTag accepted
    refused: int  # idTag not accepted: unplugged and gone
    turned_away: int  # no free connector for the vehicle
    failed: int  # the charger refused an action
    left: int  # stopped and unplugged after the dwell
    stayed: int  # never-unplug drivers past their dwell, still plugged in


class TrafficCommand(TypedDict):
    type: Literal["engine.traffic"]
    action: str  # one of TRAFFIC_ACTIONS
    location_id: int
    reply_channel: str
    request_id: str
    profile: NotRequired[dict[str, Any] | None]
    duration: NotRequired[float | None]  # simulated seconds
    seed: NotRequired[int | None]
    speed: NotRequired[float | None]


class TrafficResult(TypedDict):
    type: Literal["traffic.result"]
    request_id: str | None
    shard: int
    location_id: int | None
    ok: bool
    message: str
    field: NotRequired[str]  # when a profile value was refused: its field
    tally: NotRequired[TrafficTally]
    running: NotRequired[bool]  # whether the site's traffic goes on (arrivals or drivers)


def traffic_command(
    action: str,
    location_id: int,
    reply_channel: str,
    request_id: str,
    *,
    profile: Mapping[str, Any] | None = None,
    duration: float | None = None,
    seed: int | None = None,
    speed: float | None = None,
) -> TrafficCommand:
    return {
        "type": TRAFFIC,
        "action": action,
        "location_id": location_id,
        "reply_channel": reply_channel,
        "request_id": request_id,
        "profile": None if profile is None else dict(profile),
        "duration": duration,
        "seed": seed,
        "speed": speed,
    }


def traffic_result(
    request_id: str | None,
    shard: int,
    location_id: int | None,
    ok: bool,
    message: str,
    *,
    field: str | None = None,
    tally: TrafficTally | None = None,
    running: bool | None = None,
) -> TrafficResult:
    result: TrafficResult = {
        "type": EVENT_TRAFFIC_RESULT,
        "request_id": request_id,
        "shard": shard,
        "location_id": location_id,
        "ok": ok,
        "message": message,
    }
    if field is not None:
        result["field"] = field
    if tally is not None:
        result["tally"] = tally
    if running is not None:
        result["running"] = running
    return result
