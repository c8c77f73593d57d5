"""Django's `migrate`, with one clear line when the database cannot be reached.

`make run` and every set-up guide run it first: with DATABASE_URL pointing at a server
that is down, Django's own command prints forty lines of psycopg traceback (and the URL's
host) where one line naming the database, without its password, says what to check.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import migrate

from fleet_io.management.database import check_database


class Command(migrate.Command):
    def handle(self, *args: Any, **options: Any) -> None:
        check_database(migrated=False, alias=options["database"])
        super().handle(*args, **options)
