"""`manage.py apitoken create|revoke|list`: API tokens from the command line, as the admin's
API tokens page makes them. `create` prints the token once; only its digest is stored."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from api.models import ApiToken
from fleet_io.management.database import check_database

_SPANS = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}


def expiry(given: str) -> datetime:
    """`--expires`: a span from now ("90d") or a moment (UTC unless it says), in the future."""
    text = given.strip()
    span = re.fullmatch(r"(\d{1,4})([dhmw])", text)
    if span:
        moment = timezone.now().replace(microsecond=0) + timedelta(
            **{_SPANS[span[2]]: int(span[1])}
        )
    else:
        try:
            parsed = parse_datetime(text)
            day = None if parsed else parse_date(text)
        except ValueError:
            parsed = day = None
        if parsed is None and day is None:
            raise argparse.ArgumentTypeError(
                f"{given!r} is neither a span (90d, 12h, 30m, 2w) nor a date or time "
                "(2027-06-30, 2027-06-30T18:00)"
            )
        if parsed is None:
            assert day is not None
            parsed = datetime.combine(day, time.min)
        moment = parsed
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    if moment <= timezone.now():
        raise argparse.ArgumentTypeError(f"{given!r} is not in the future")
    return moment


class Command(BaseCommand):
    help = "Create, revoke or list API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        create = actions.add_parser("create", help="Issue a token and print it (once).")
        create.add_argument("--user", required=True, help="The username the token acts as.")
        create.add_argument("--name", required=True, help="What the token is for.")
        create.add_argument(
            "--expires",
            metavar="WHEN",
            type=expiry,
            help="Refuse the token from then on: a time from now (90d, 12h, 30m, 2w) or a "
            "date or time (2027-06-30, 2027-06-30T18:00, UTC unless it gives a zone). "
            "Default: it never expires.",
        )
        revoke = actions.add_parser("revoke", help="Revoke a token by its id or shown prefix.")
        revoke.add_argument("token", help="The id or prefix `list` shows.")
        listing = actions.add_parser("list", help="List tokens (never the tokens themselves).")
        listing.add_argument("--user", help="Only this user's tokens.")

    def handle(self, *args: Any, **options: Any) -> None:
        check_database(migrated=True)
        getattr(self, f"_{options['action']}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        try:
            user = get_user_model().objects.get_by_natural_key(options["user"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {options['user']!r}.") from None
        name = options["name"].strip()
        if not name:
            raise CommandError("--name must not be empty.")
        row, token = ApiToken.objects.issue(user, name, expires=options["expires"])
        until = f", until {row.expires:%Y-%m-%d %H:%M} UTC" if row.expires else ""
        self.stderr.write(
            f"Token {row.pk} ({row.prefix}…) for {user.get_username()}{until}: copy it now, "
            "it is not shown again."
        )
        self.stdout.write(token)

    def _revoke(self, options: dict[str, Any]) -> None:
        given = options["token"]
        rows = (
            ApiToken.objects.filter(pk=int(given))
            if given.isdigit()
            else ApiToken.objects.filter(prefix=given.rstrip("…"))
        )
        found = list(rows[:2])
        if not found:
            raise CommandError(f"No token {given!r}.")
        if len(found) > 1:
            raise CommandError(f"{given!r} names several tokens: give the id.")
        row = found[0]
        if not row.is_active:
            raise CommandError(f"Token {row.pk} ({row.prefix}…) was already revoked.")
        row.revoke()
        self.stdout.write(f"Revoked token {row.pk} ({row.prefix}…).")

    def _list(self, options: dict[str, Any]) -> None:
        rows = ApiToken.objects.select_related("user")
        if options.get("user"):
            rows = rows.filter(user__username=options["user"])
        for row in rows:
            if row.revoked:
                state = f"revoked {row.revoked:%Y-%m-%d %H:%M}"
            elif row.expired:
                state = f"expired {row.expires:%Y-%m-%d %H:%M}"
            elif row.expires:
                state = f"active until {row.expires:%Y-%m-%d %H:%M}"
            else:
                state = "active"
            used = f"{row.last_used:%Y-%m-%d %H:%M}" if row.last_used else "never"
            self.stdout.write(
                f"{row.pk}\t{row.prefix}…\t{row.user.get_username()}\t{row.name}\t{state}\t"
                f"last used {used}"
            )
