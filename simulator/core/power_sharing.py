"""A charger's rated power shared by its connectors, and other caps in watts on top of profiles.

The rated power of a charger (a DC power cabinet, an AC charger on one supply) caps the SUM of
its connectors, whatever each connector could do alone. Two policies share it:

* ``equal``: water-filling (``smart_charging.distribute``): equal shares, and what one connector
  does not use goes to the others;
* ``first``: first come, first served: the connector whose transaction started first gets what
  it wants, the next one gets what is left, and so on.

The caps computed here are applied like one more profile limit, in watts (``capped``), so
Power.Offered and Current.Offered report them and the physics obeys them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from simulator.core.smart_charging import Limit, distribute, distribute_above, watts_to_amps

EQUAL: Final = "equal"
FIRST: Final = "first"
POLICIES: Final = (EQUAL, FIRST)


def first_come(
    total: float,
    wants: Mapping[int, float],
    order: Sequence[int],
    floors: Mapping[int, float] | None = None,
) -> dict[int, float]:
    """``total`` handed out in ``order`` (earliest transaction first): each takes what it
    wants from what is left. Connectors missing from ``order`` come last, by id. With
    ``floors``, what is left is no share for a connector below its floor (or what it wants,
    if that is less): it gets 0, and a later one may still fit."""
    remaining = max(0.0, total)
    ranked = [c for c in order if c in wants]
    ranked += sorted(c for c in wants if c not in set(ranked))
    shares: dict[int, float] = {}
    for connector in ranked:
        want = max(0.0, wants[connector])
        given = min(want, remaining)
        if floors is not None and given < min(floors.get(connector, 0.0), want) - 1e-6:
            given = 0.0
        shares[connector] = given
        remaining -= given
    return {connector: shares[connector] for connector in wants}


def share(
    total: float,
    wants: Mapping[int, float],
    policy: str,
    order: Sequence[int] = (),
    floors: Mapping[int, float] | None = None,
) -> dict[int, float]:
    """Each connector's share of ``total`` under ``policy``; the shares never add up to more
    than ``total`` and no connector gets more than it wants. ``floors``: the least each
    connector can be given (an AC charger's 6 A per phase), else 0: with them, those whose
    sessions started last (``order``) get 0 rather than a share below their floor."""
    if sum(wants.values()) <= total:  # enough for everyone, whatever the policy
        return {connector: max(0.0, want) for connector, want in wants.items()}
    if policy == FIRST:
        return first_come(total, wants, order, floors)
    if policy == EQUAL:
        if floors:
            return distribute_above(total, wants, floors, order)[0]
        return distribute(total, wants)
    raise ValueError(f"power sharing policy must be one of {', '.join(POLICIES)}, got {policy!r}")


def capped(limit: Limit, watts: float, voltage: float) -> Limit:
    """``limit`` with one more cap in watts: the stricter wins, in both units."""
    if watts >= limit.watts and limit.amp_cap is None:
        return limit
    # (With an amp cap, ``watts`` converts it over the nominal supply, which is not what
    # the car draws under it on fewer phases or on DC: the watt cap is kept beside it.)
    cap = max(0.0, watts)
    # Built directly: dataclasses.replace costs several times more, once per connector
    # and tick.
    return Limit(
        amps=min(limit.amps, watts_to_amps(cap, limit.phases, voltage)),
        watts=min(limit.watts, cap),
        phases=limit.phases,
        min_amps=limit.min_amps,
        profile_ids=limit.profile_ids,
        amp_cap=limit.amp_cap,
        watt_cap=cap if limit.watt_cap is None else min(limit.watt_cap, cap),
        least_a=limit.least_a,
        least_w=limit.least_w,
    )
