"""Paging of every list the API returns: `?limit=` (1..MAX_LIMIT, default DEFAULT_LIMIT)
and `?offset=`, answered as `{"items": [...], "count": total}`.

ninja's LimitOffsetPagination, with the limit's bounds in its input schema: a limit out of
range is a 422 naming `limit` (the OpenAPI document shows the bounds), not silently cut.
"""

from __future__ import annotations

from typing import Any

from ninja import Field, Schema
from ninja.pagination import LimitOffsetPagination

from api.query_params import DB_INT_MAX

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class Paged(LimitOffsetPagination):
    class Input(Schema):
        limit: int = Field(
            DEFAULT_LIMIT,
            ge=1,
            le=MAX_LIMIT,
            description=f"How many items to return (at most {MAX_LIMIT}).",
        )
        offset: int = Field(0, ge=0, le=DB_INT_MAX, description="How many items to skip.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_limit=MAX_LIMIT, **kwargs)
