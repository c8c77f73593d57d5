"""The chargers and locations an event stream or a log export is limited to.

Each one named must exist: a typo in a script's filter is a 404 naming it, not a stream
that stays empty for ever or an export with no lines."""

from __future__ import annotations

from django.http import Http404

from api.errors import ApiError, ErrorItem
from chargers.models import Charger
from locations.models import Location


def charger_pks(charge_point_ids: list[str]) -> list[int]:
    """The primary keys of these chargers; Http404 for the first that does not exist."""
    found = dict(
        Charger.objects.filter(charge_point_id__in=charge_point_ids).values_list(
            "charge_point_id", "pk"
        )
    )
    for cp_id in charge_point_ids:
        if cp_id not in found:
            raise Http404(f"No charger {cp_id!r}.")
    return list(found.values())


def check_locations(location_ids: list[int]) -> None:
    """Http404 for the first of these location ids that does not exist."""
    found = set(Location.objects.filter(pk__in=location_ids).values_list("pk", flat=True))
    for pk in location_ids:
        if pk not in found:
            raise Http404(f"No location {pk}.")


def check_chargers_at(charger_pks: list[int], location_ids: list[int]) -> None:
    """Both filters given select the chargers named that are at those sites: refuse (422)
    a pair that selects none, which would answer nothing for ever. (A charger moved there
    later would match; a caller who means that names the site alone.)"""
    sites = dict(
        Charger.objects.filter(pk__in=charger_pks).values_list("charge_point_id", "location_id")
    )
    if any(site in location_ids for site in sites.values()):
        return
    where = ", ".join(f"{cp_id} is at location {site}" for cp_id, site in sorted(sites.items()))
    raise ApiError(
        422,
        f"None of the chargers named is at the locations named, so nothing would match: {where}.",
        [ErrorItem(field="location", message=f"no charger named is there ({where})")],
    )
