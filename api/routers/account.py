"""Who the API thinks the caller is: the first call a new script makes."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from ninja import Field, Router, Schema

from api.auth import caller
from api.errors import AUTH_ERRORS

router = Router(tags=["account"])


class TokenOut(Schema):
    name: str
    prefix: str
    expires: datetime | None = Field(
        description="From when the token is refused (null: never), so that a pipeline can "
        "renew it in time."
    )


class WhoAmI(Schema):
    username: str
    via: str
    token: TokenOut | None
    is_superuser: bool
    permissions: list[str]


@router.get(
    "/whoami",
    response={200: WhoAmI, **AUTH_ERRORS},
    summary="Who am I",
    description="The authenticated user, how they authenticated (token or session), and "
    "their permissions. Needs no permission.",
)
def whoami(request: HttpRequest) -> WhoAmI:
    who = caller(request)
    token = who.token
    return WhoAmI(
        username=who.user.get_username(),
        via=who.via,
        token=None
        if token is None
        else TokenOut(name=token.name, prefix=token.prefix, expires=token.expires),
        is_superuser=who.user.is_superuser,
        permissions=sorted(who.user.get_all_permissions()),
    )
