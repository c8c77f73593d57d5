"""A charger's EVSEs in one cell: "2*Type2:22" or "CCS2:150; CHAdeMO:50".

Each item is `[count*]connector_type:max_kW`; items are separated by ';' (or spaces) and
number the connectors from 1 in order. Checked with the Evse model's own choices and
validators, so the messages match the admin's.

Whatever writes EVSEs keeps that numbering (`numbering_problem`): OCPP 1.6 numbers a
charger's connectors 1..NumberOfConnectors, and the engine finds connector n at position
n (`simulator.core.charge_point.Charger.evse`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError

from chargers.models import Evse
from fleet_io.cells import number_text

MAX_EVSES = 99


@dataclass(frozen=True, slots=True)
class EvseSpec:
    connector_type: str
    max_power_kw: float


class LayoutError(ValueError):
    """What is wrong with an EVSE list: every problem found (`problems`), and each
    connector's type where it was readable (`connector_types`, None where not), so that
    a caller can still say which connectors do not fit the charger's power type."""

    def __init__(self, *problems: str, connector_types: Sequence[str | None] = ()) -> None:
        super().__init__(" ".join(problems))
        self.problems = list(problems)
        self.connector_types = list(connector_types)


def parse_evses(text: str) -> list[EvseSpec]:
    """The EVSEs of a cell, or a LayoutError with the problems of every item (each item's
    all: an unknown connector type and a power out of range are both said)."""
    specs: list[EvseSpec] = []
    types: list[str | None] = []
    problems: list[str] = []
    items = text.replace(",", ";").replace(";", " ").split()
    if not items:
        raise LayoutError("Give at least one EVSE, e.g. 2*Type2:22.")
    if len(items) > MAX_EVSES:
        raise LayoutError(f"{len(items)} EVSEs; a charger has at most {MAX_EVSES} (MAX_EVSES).")
    for item in items:
        count_text, star, rest = item.partition("*")
        if not star:
            count_text, rest = "1", item
        # ASCII digits only ('²'.isdigit() is true), and the total compared before the
        # specs are built: "100000000000*Type2:22" must not allocate a list of that size.
        if not (count_text.isascii() and count_text.isdigit()) or not count_text.strip("0"):
            problems.append(f"{item!r}: the count before '*' must be a whole number ≥ 1.")
            count = 1
        else:
            digits = count_text.lstrip("0")
            count = int(digits) if len(digits) <= 3 else MAX_EVSES + 1
        if len(types) + count > MAX_EVSES:
            problems.append(
                f"{item!r} makes more than {MAX_EVSES} EVSEs; a charger has at most "
                f"{MAX_EVSES} (MAX_EVSES)."
            )
            break  # the connectors after it have no number
        connector, colon, power_text = rest.partition(":")
        if not colon:
            problems.append(f"{item!r} is not of the form type:kW (e.g. Type2:22).")
            types.extend([None] * count)
            continue
        spec, found = check_evse(connector, power_text, item)
        problems += found
        types.extend([_connector_types().get(connector.lower())] * count)
        if spec is not None:
            specs.extend([spec] * count)
    if problems:
        raise LayoutError(*problems, connector_types=types)
    return specs


def check_evse(
    connector: str, power_text: str, item: str, power_type: str | None = None
) -> tuple[EvseSpec | None, list[str]]:
    """One EVSE's connector type (any letter case) and power, and, given the charger's
    power type, whether the connector fits it (`Evse.power_type_problem`): the EVSE
    (None if its type or power is wrong) and every problem found; `item` names it in a
    message (the cell's item, or what the API was sent)."""
    problems = []
    connector_type = _connector_types().get(connector.lower())
    if connector_type is None:
        problems.append(
            f"Unknown connector type {connector!r}; use one of "
            f"{', '.join(Evse.ConnectorType.values)}."
        )
    try:
        power = float(power_text)
    except ValueError:
        power = math.nan
    if not math.isfinite(power):  # float() reads "nan" and "inf"; the database does not
        problems.append(f"{item!r}: {power_text!r} is not a number of kW.")
    else:
        try:
            Evse._meta.get_field("max_power_kw").run_validators(power)
        except ValidationError as exc:
            problems.append(f"{item!r}: {' '.join(exc.messages)}")
    wrong = bool(problems)
    if connector_type is not None and power_type is not None:
        fit = Evse.power_type_problem(connector_type, power_type)
        if fit:
            problems.append(fit)
    if wrong or connector_type is None:
        return None, problems
    return EvseSpec(connector_type, power), problems


@functools.cache
def _connector_types() -> dict[str, str]:
    return {value.lower(): value for value in Evse.ConnectorType.values}


def format_evses(specs: Iterable[EvseSpec]) -> str:
    """The shortest text that parses back to the same EVSEs (runs collapse to n*)."""
    runs: list[tuple[EvseSpec, int]] = []
    for spec in specs:
        if runs and runs[-1][0] == spec:
            runs[-1] = (spec, runs[-1][1] + 1)
        else:
            runs.append((spec, 1))
    return "; ".join(
        f"{'' if n == 1 else f'{n}*'}{spec.connector_type}:{number_text(spec.max_power_kw)}"
        for spec, n in runs
    )


def power_type_problems(
    power_type: str, specs: Iterable[EvseSpec] | None, charger_pk: int | None = None
) -> list[tuple[int, str]]:
    """(connector id, why) for each EVSE whose connector type does not fit the charger's
    power type (`Evse.power_type_problem`), for a whole list: the import's cell or the
    API's `evses`; None, the EVSEs stored for `charger_pk` (kept by a write that changes
    the power type only; a new charger gets one EVSE of its power type)."""
    if specs is None:
        if charger_pk is None:
            return []
        specs = specs_of(Evse.objects.filter(charger_id=charger_pk))
    return [
        (n, problem)
        for n, spec in enumerate(specs, start=1)
        if (problem := Evse.power_type_problem(spec.connector_type, power_type))
    ]


def removal_problems(charger_pk: int | None, keep: int) -> list[str]:
    """Why a list of `keep` EVSEs may not replace the stored ones of `charger_pk`: a
    transaction in progress on a connector it removes (`Evse.deletion_refused`). A charger
    PUT or PATCH with fewer EVSEs, an import row and the admin's inline remove connectors
    as the EVSE endpoint's DELETE does, and are refused alike."""
    if charger_pk is None:
        return []
    removed = Evse.objects.filter(charger_id=charger_pk, connector_id__gt=keep)
    return [p for evse in removed.select_related("charger") if (p := evse.deletion_refused())]


def specs_of(evses: Iterable[Evse]) -> list[EvseSpec]:
    return [
        EvseSpec(e.connector_type, e.max_power_kw)
        for e in sorted(evses, key=lambda e: e.connector_id)
    ]


NUMBERING = "a charger's connectors are numbered 1..N without gaps (OCPP 1.6)"


def numbering_problem(name: str, stored: Collection[int], after: Collection[int]) -> str | None:
    """Why charger `name` may not go from connector ids `stored` to `after` (None: it may),
    said as what to do instead: no EVSE at all, or a gap in 1..N. A write that leaves the
    ids as they were passes, so that a charger stored with a gap by an earlier version can
    still be edited (and its gap closed by renumbering the connector after it)."""
    before, now = set(stored), set(after)
    if now == before:
        return None
    if not now:
        # The engine cannot run a charger without one (nor a CSMS talk to it).
        if len(before) == 1:
            return (
                f"Connector {min(before)} is {name}'s only EVSE: a charger keeps at least one "
                "(delete the charger instead)."
            )
        return (
            f"{name} would have no EVSE: a charger keeps at least one (delete the charger instead)."
        )
    if sorted(now) == list(range(1, len(now) + 1)):
        return None
    removed, added = before - now, now - before
    if removed and not added:
        first = min(removed)
        above = sorted(n for n in now if n > first)
        if above:
            return (
                f"Connector {first} is not {name}'s last: {NUMBERING}, so delete "
                f"{_connectors(above)} first."
            )
    if added and not removed:
        following = min(set(range(1, len(now) + 1)) - now)
        return f"The next connector of {name} is {following}: {NUMBERING}."
    if len(removed) == len(added) == 1:
        return f"Connector {min(removed)} of {name} cannot become {min(added)}: {NUMBERING}."
    listed = ", ".join(str(n) for n in sorted(now))
    return f"{name}'s connectors would be {listed}: {NUMBERING}."


def _connectors(ids: list[int]) -> str:
    if len(ids) == 1:
        return f"connector {ids[0]}"
    return f"connectors {', '.join(str(n) for n in ids[:-1])} and {ids[-1]}"


def next_connector_id(stored: Collection[int]) -> int:
    """The connector a new EVSE gets: N + 1 (or the first gap an earlier version left)."""
    taken = set(stored)
    return min(set(range(1, len(taken) + 2)) - taken)
