"""Charge point ids in a run: those of a template's chargers, `{prefix}-R{run}.{token}-{n}`,
and the existing chargers a scenario names.

The run's id keeps apart the runs of one database; the token, drawn for the run, those of
CI jobs with databases of their own against one CSMS (both have a run 1, and their chargers
took each other's connections and per-charger behaviour). Four characters of 36 keep the
id short (SCN-R12.k3x9-1) and make a clash of two runs one in 1.7 million.

Charge point ids are unique regardless of letter case (chargers migration 0021: a CSMS may
match them so), so a stored charger can stand in the way of an id that differs from its
own only by case (a user's SCN-R12.K3X9-1): the run then draws another token, as it would
for any other clash, rather than meet the database's unique index."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import TypeVar

from django.db import IntegrityError, transaction

from chargers.models import Charger

T = TypeVar("T")

RUN_TOKEN_CHARS = 4
_RUN_TOKEN_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# How many tokens a run tries before it gives up: a clash of a random token is rare, five
# in a row means the ids are not random (or the fleet holds most of them).
TOKEN_DRAWS = 5


def draw_token() -> str:
    return "".join(secrets.choice(_RUN_TOKEN_ALPHABET) for _ in range(RUN_TOKEN_CHARS))


def template_ids(prefix: str, run_pk: int, token: str, count: int) -> list[str]:
    return [f"{prefix}-R{run_pk}.{token}-{n}" for n in range(1, count + 1)]


class NoFreeIds(Exception):
    """Every token drawn for a template's chargers clashed with stored chargers."""


def claim(
    prefix: str, run_pk: int, token: str, count: int, insert: Callable[[list[str]], T]
) -> tuple[str, T]:
    """`insert(ids)` for the first token (`token`, then fresh ones) whose ids are free, in
    a transaction of its own (a savepoint inside another): (the token used, what `insert`
    returned). An id taken between the look-up and the insert rolls the insert back and
    draws the next token; NoFreeIds names the last clash after TOKEN_DRAWS tokens."""
    clash = ""
    for draw in range(TOKEN_DRAWS):
        if draw:
            token = draw_token()
        ids = template_ids(prefix, run_pk, token, count)
        # Looked up first: the usual clash costs no failed insert, and is said the same.
        found = first_clash(ids)
        if found is not None:
            clash = found
            continue
        try:
            with transaction.atomic():
                return token, insert(ids)
        except IntegrityError:
            # Only a clash of ids is ours to get round; the row now in the way is
            # committed (the index waited for its writer), so the look-up sees it.
            found = first_clash(ids)
            if found is None:
                raise
            clash = f"{found} (stored meanwhile)"
    raise NoFreeIds(
        f"no free id for the template's chargers in {TOKEN_DRAWS} tokens drawn: {clash}"
    )


def first_clash(ids: Sequence[str]) -> str | None:
    """What stands in the way of these ids: a stored charger of the same id, or of one
    that differs only by letter case; None when they are all free."""
    twins = Charger.objects.case_twins(ids)
    for cp_id in ids:
        stored = twins.get(cp_id.lower())
        if stored == cp_id:
            return f"{cp_id} exists already"
        if stored is not None:
            return (
                f"{stored} exists, whose id differs from {cp_id} only in letter case "
                "(charge point ids are unique regardless of case)"
            )
    return None


def case_hint(missing: Sequence[str]) -> str:
    """For ids a scenario names that no charger has: the stored ids that differ from them
    only by letter case (unique regardless of case, so the one meant), or nothing."""
    twins = Charger.objects.case_twins(missing)
    said = [
        f"{twins[cp_id.lower()]}, not {cp_id}"
        for cp_id in missing
        # A disabled charger of that very id is no matter of case.
        if twins.get(cp_id.lower(), cp_id) != cp_id
    ]
    if not said:
        return ""
    return f" (charge point ids are written as stored: {'; '.join(said)})"
