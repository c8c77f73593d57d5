"""What `runsimulator` does: prepare the database, then run the engine (and the web server).

Embedded mode serves the admin and dashboard with Daphne on the same asyncio loop as the
engine (Twisted's asyncio reactor); `--no-web` runs the engine alone. SIGINT/SIGTERM ask for
a graceful stop (state saved, connections closed, bounded in time); a second one forces exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from simulator.runtime import gc_policy

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    web: bool = True
    demo: bool = False
    demo_chargers: int = 10
    demo_share: float = 0.5
    csms_url: str | None = None
    csms_port: int = 9000
    shard: int = 0
    shards: int = 1
    migrate: bool = True
    only_ids: list[str] | None = None
    stop_timeout: float = 10.0
    write: object = field(default=None, repr=False)


class SimulatorRunner:
    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.service = None
        self.csms = None
        self._stop: asyncio.Event | None = None  # created on the running loop
        self._signals = 0

    def say(self, text: str) -> None:
        writer = self.options.write or sys.stdout.write
        writer(text)  # type: ignore[operator]
        if hasattr(sys.stdout, "flush"):
            sys.stdout.flush()

    # -- preparation (synchronous, before any loop runs) ---------------------------------------

    def prepare(self) -> None:
        from locations.models import Location
        from vehicles.models import VehicleModel

        if self.options.migrate:
            call_command("migrate", interactive=False, verbosity=0)
        made = Location.objects.seed_defaults()
        if made:
            self.say(f"Seeded {made} default locations.\n")
        VehicleModel.objects.seed_catalogue()
        if self.options.web:
            self._ensure_admin()

    def _ensure_admin(self) -> None:
        user_model = get_user_model()
        path = Path(settings.VAR_DIR) / "admin-credentials.txt"
        if user_model.objects.filter(is_superuser=True).exists():
            if path.exists():
                self.say(f"Admin account: see {path}\n")
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "admin@localhost", password)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"user: admin\npassword: {password}\n")
        path.chmod(0o600)
        self.say(
            "Created the first admin account: user 'admin', password "
            f"'{password}' (also in {path}).\n"
        )

    # -- running -------------------------------------------------------------------------------

    def run(self) -> None:
        self.prepare()
        if self.options.web:
            self._run_with_daphne()
        else:
            asyncio.run(self._main())

    def _run_with_daphne(self) -> None:
        from daphne.server import Server  # installs Twisted's asyncio reactor

        from chargesim_site.asgi import application

        endpoint = f"tcp:port={self.options.port}:interface={self.options.host}"
        server = Server(
            application,
            endpoints=[endpoint],
            signal_handlers=False,
            ready_callable=lambda: self._on_ready(server),
        )
        self.say(
            f"Admin and dashboard on http://{self.options.host}:{self.options.port}/ "
            "(Ctrl-C to stop)\n"
        )
        server.run()

    def _on_ready(self, server) -> None:
        loop = asyncio.get_event_loop()

        async def main() -> None:
            try:
                await self._main()
            finally:
                server.stop()

        self._main_task = loop.create_task(main())

    async def _main(self) -> None:
        from simulator.runtime.events import EventPublisher
        from simulator.runtime.service import SimulatorService

        self._stop = asyncio.Event()
        self._install_signals()
        if self.options.demo:
            await self._start_demo()
        self.service = SimulatorService(
            shard=self.options.shard,
            shards=self.options.shards,
            tick_seconds=settings.CHARGESIM_TICK_SECONDS,
            checkpoint_seconds=settings.CHARGESIM_CHECKPOINT_SECONDS,
            reconnect_cap=settings.CHARGESIM_RECONNECT_CAP_SECONDS,
            listener=EventPublisher(
                rate=settings.CHARGESIM_EVENTS_PER_SECOND,
                log_limit=settings.CHARGESIM_MESSAGE_LOG_LIMIT,
                log_bytes=settings.CHARGESIM_MESSAGE_LOG_BYTES,
            ),
            only_ids=self.options.only_ids,
        )
        if settings.CHARGESIM_GC_TUNING:
            gc_policy.before_load()
        await self.service.start()
        gc_task = None
        if settings.CHARGESIM_GC_TUNING:
            gc_policy.fleet_loaded()
            gc_task = asyncio.create_task(self._freeze_when_up())
        publisher = asyncio.create_task(self.service.publisher_loop())
        self._commands_task = asyncio.create_task(self.service.command_loop())
        progress = asyncio.create_task(self.service.report_progress(self.say))
        if self.options.demo:
            from simulator.runtime.demo import drive_demo

            self._demo_task = asyncio.create_task(
                drive_demo(self.service.store, self.options.demo_share)
            )
        await self._stop.wait()
        progress.cancel()
        if gc_task is not None:
            gc_task.cancel()
        publisher.cancel()
        self.say("\nStopping: saving state and closing connections...\n")
        await self.service.stop(self.options.stop_timeout)
        if self.csms is not None:
            await self.csms.stop()
        self.say("Stopped.\n")

    async def _freeze_when_up(self, patience: float = 120.0) -> None:
        """Once every auto-connecting charger is accepted (or after `patience` seconds),
        take the connections out of the garbage collector's sight too."""
        assert self.service is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        wanted = len(self.service.connections)
        while loop.time() < deadline and self.service.progress()["accepted"] < wanted:
            await asyncio.sleep(1.0)
        gc_policy.fleet_up()

    async def _start_demo(self) -> None:
        from channels.db import database_sync_to_async

        from simulator.runtime.demo import ensure_demo_fleet

        url = self.options.csms_url
        if url is None:
            from simulator.csms import CentralSystem

            self.csms = CentralSystem(keep_log=False)
            await self.csms.start(host="127.0.0.1", port=self.options.csms_port)
            url = f"{self.csms.url}/ocpp"
            self.say(f"Built-in CSMS listening on {url}\n")
        made = await database_sync_to_async(ensure_demo_fleet)(self.options.demo_chargers, url)
        self.say(f"Demo fleet: {self.options.demo_chargers} chargers ({made} new) -> {url}\n")

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(signum, self._on_signal)

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals > 1:
            self.say("\nForced exit.\n")
            os._exit(1)
        assert self._stop is not None
        self._stop.set()

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
