"""`python manage.py runcsms --host 127.0.0.1 --port 9000`: the built-in CSMS in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from simulator.csms.run import (
    CannotListen,
    add_arguments,
    build,
    build_control,
    configure_logging,
    run_until_stopped,
)


class Command(BaseCommand):
    help = "Run ChargeSim's built-in OCPP 1.6J central system; every frame is logged."

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        configure_logging(options["verbosity"])
        try:
            csms = build(options)
            control = build_control(options, csms)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        # The server is plain asyncio; Django is only the launcher here.
        with contextlib.suppress(KeyboardInterrupt):
            try:
                asyncio.run(run_until_stopped(csms, options["host"], options["port"], control))
            except CannotListen as exc:
                raise CommandError(str(exc)) from None
