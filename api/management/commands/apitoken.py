"""`manage.py apitoken create|revoke|list`: API tokens from the command line, as the admin's
API tokens page makes them. `create` prints the token once; only its digest is stored."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.models import ApiToken
from simulator.management.database import check_database


class Command(BaseCommand):
    help = "Create, revoke or list API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        create = actions.add_parser("create", help="Issue a token and print it (once).")
        create.add_argument("--user", required=True, help="The username the token acts as.")
        create.add_argument("--name", required=True, help="What the token is for.")
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
        row, token = ApiToken.objects.issue(user, name)
        self.stderr.write(
            f"Token {row.pk} ({row.prefix}…) for {user.get_username()}: copy it now, it is "
            "not shown again."
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
            state = f"revoked {row.revoked:%Y-%m-%d %H:%M}" if row.revoked else "active"
            used = f"{row.last_used:%Y-%m-%d %H:%M}" if row.last_used else "never"
            self.stdout.write(
                f"{row.pk}\t{row.prefix}…\t{row.user.get_username()}\t{row.name}\t{state}\t"
                f"last used {used}"
            )
