"""`manage.py mcp --user NAME`: the MCP server over stdio, for an MCP client that starts it.

Standard output carries the protocol and nothing else; logs go to standard error. The
tools act as the named user, with that user's permissions (whoever may run manage.py may
read the database anyway; a token is for the HTTP endpoint, /mcp). Live state and actions
go to the simulator workers over the channel layer: with REDIS_URL set (scaled-out mode)
they reach the workers; with the default in-memory layer only the process itself, which
runs no engine, so those tools answer that no worker can be reached from it and what to
use instead (/mcp of `runsimulator`, or REDIS_URL).
"""

from __future__ import annotations

from typing import Any

import anyio
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.auth import Caller
from api.mcp_calls import CALLER
from api.mcp_server import server
from fleet_io.management.database import check_database


class Command(BaseCommand):
    help = (
        "Serve ChargeSim's MCP tools over stdio (standard input and output), acting as "
        "--user with that user's permissions. Add it to an MCP client as the command "
        "'python manage.py mcp --user NAME'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--user", required=True, metavar="NAME", help="the user the tools act as"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        check_database(migrated=True)
        model = get_user_model()
        try:
            user = model.objects.get_by_natural_key(options["user"])
        except model.DoesNotExist:
            raise CommandError(f"No user {options['user']!r}.") from None
        if not user.is_active:
            raise CommandError(f"The user {options['user']!r} is not active.")
        CALLER.set(Caller(user=user))
        anyio.run(server().run_stdio_async)
