"""Query parameters an operation does not take are refused, not ignored; so is a second
value of one that takes one.

ninja reads the parameters an operation declares and drops the rest: a misspelt filter
(`/chargers?locaton=1`) answered every charger, and a script acting on that list acted on
the whole fleet. Every operation answers 422 for a parameter it does not take, named as
`field`, with the nearest parameter it does take as a hint; one that takes none says so
(`/fleet/summary?location=3` answered the whole fleet's counts to a script that read them
as one site's).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated, Any

from django.http import HttpRequest, HttpResponse
from ninja import Path
from ninja.errors import ValidationError as NinjaValidationError
from ninja.operation import Operation
from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from scenarios.format import nearest_name

# The largest integer either database holds in a column or takes in a query (SQLite's
# INTEGER and PostgreSQL's bigint are 64-bit): a larger id, filter or offset is refused
# here as a 422 naming it; past the database it was a 500, or on SQLite an IntegrityError
# ("datatype mismatch") answered as the retryable 409, which a script retried for ever.
DB_INT_MAX = 2**63 - 1


def path_id() -> Any:
    """A row's id in a path (`/locations/{location_id}`), as a parameter's default:
    `location_id: int = path_id()` (not an Annotated alias, which a paginated view's
    wrapper could not resolve from its own module)."""
    return Path(..., ge=1, le=DB_INT_MAX)


# A location's id in a query (`?location=3`, repeated).
LocationId = Annotated[int, Field(ge=1, le=DB_INT_MAX)]

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def _unix_seconds(value: Any) -> Any:
    """A number as Unix seconds, however large: pydantic reads one above 2·10^10 as
    milliseconds, so `since=253402300799` (the year 9999, as the error text offers) was
    the year 1978, and a time past the year 9999 was read as one in the 1970s."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            # Past the year 9999 (or nan): as pydantic's own words for a time it cannot
            # read, which the API answers with what a time may be.
            raise PydanticCustomError("datetime_parsing", "not a time") from None
    return value


# A time in a query: ISO 8601 (UTC when it has no zone) or Unix seconds.
Moment = Annotated[datetime, BeforeValidator(_unix_seconds)]


def query_names(operation: Operation) -> set[str]:
    """The query parameters an operation takes, as a caller spells them (a filter schema's
    and the paging's fields included)."""
    return {
        name
        for model in operation.models
        if model.__ninja_param_source__ == "query"
        for name in model.__ninja_flatten_map__
    }


def did_you_mean(name: str, known: Collection[str], kind: str = "arguments") -> str:
    """A hint for a name that is not one of `known`: the nearest, or them all, or that
    there are none (of this `kind`: "arguments", "query parameters")."""
    if not known:
        return f"it takes no {kind}."
    near = nearest_name(name, sorted(known))
    return f"did you mean {near!r}?" if near else f"it takes {', '.join(sorted(known))}."


def unknown_message(name: str, known: Collection[str]) -> str:
    hint = did_you_mean(name, known, "query parameters")
    return f"Not a query parameter of this request: {hint}"


def refuse_unknown_query(operation: Operation) -> None:
    """Make `operation` refuse the query parameters it does not declare (422), with those
    it does that fail validation; one that declares none refuses any (the OpenAPI document
    lists a 422 for every operation). Idempotent."""
    known = query_names(operation)
    if getattr(operation, "query_checked", False):
        return
    lists = {
        name
        for model in operation.models
        if model.__ninja_param_source__ == "query"
        for name in getattr(model, "__ninja_collection_fields__", ())
    }
    get_values = operation._get_values

    def checked(
        request: HttpRequest, path_params: Any, temporal_response: HttpResponse
    ) -> dict[str, Any]:
        query = request.GET
        unknown = [
            {"loc": ("query", name), "msg": unknown_message(name, known), "type": "unknown"}
            for name in query
            if name not in known
        ]
        # ninja takes the last of a repeated one-value parameter: `?location=1&location=2`
        # answered site 2's chargers alone to a caller who asked for both (QA).
        unknown += [
            {
                "loc": ("query", name),
                "msg": f"Given {len(query.getlist(name))} times: it takes one value.",
                "type": "repeated",
            }
            for name in query
            if name in known and name not in lists and len(query.getlist(name)) > 1
        ]
        try:
            values = get_values(request, path_params, temporal_response)
        except NinjaValidationError as exc:
            raise NinjaValidationError([*unknown, *exc.errors]) from None
        if unknown:
            raise NinjaValidationError(unknown)
        return values

    operation._get_values = checked  # type: ignore[method-assign]
    operation.query_checked = True  # type: ignore[attr-defined]
