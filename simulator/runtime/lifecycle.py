"""The simulator process: one lifecycle, modelled on uvicorn's `Server`.

`Simulator.run()` prepares the database, then runs `serve()` (on Daphne's loop when the
web interface is on, so the admin and dashboard share the engine's event loop):

1. startup: the status line (`fleet_status`), the built-in CSMS (--demo), the fleet loaded
   and connected, the meter engine, checkpoints, event publishing, the command server, the
   demo driver;
2. the main loop: wait until asked to stop;
3. shutdown, bounded by ONE timeout (`RunOptions.stop_timeout`): the messages the
   chargers hold are answered first (`draining`, a short bounded wait), then every task the
   simulator started is cancelled and awaited together, then the final checkpoint is
   written, then the CSMS and the web server stop; the last line says how many chargers'
   state that checkpoint saved.

The first SIGINT/SIGTERM starts that graceful stop. A second one skips the waiting for
answers, tasks and connections to end, but still writes the final checkpoint: nothing ever
exits past the final save. Every task is started through `spawn()`, so the simulator owns it and
cancels it.

Tests and benchmarks drive the same class without a process: `start()` and `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from chargers.orm_threads import in_thread
from simulator.contract import builtin_csms, engine_here, loop_tasks
from simulator.core import revision
from simulator.core.charge_point import BootState, Charger, Fanout, LinkState, Listener
from simulator.core.transfer import Transfers
from simulator.ocpp16.client import run_connection
from simulator.ocpp16.metrics import calls_total
from simulator.runtime import gc_policy, metrics
from simulator.runtime.commands import CommandServer
from simulator.runtime.conditions import Conditions
from simulator.runtime.connect_ramp import ConnectRamp
from simulator.runtime.draining import drain
from simulator.runtime.events import EventPublisher
from simulator.runtime.fleet_status import (
    FleetStatus,
    LiveStatus,
    MessageRate,
    PlainStatus,
    rate_window,
)
from simulator.runtime.frame_log import FrameLogPolicy
from simulator.runtime.live_fleet import FleetReloader
from simulator.runtime.load_management import SiteController
from simulator.runtime.load_progress import LoadProgress
from simulator.runtime.meter_engine import MeterEngine
from simulator.runtime.outage import Outage
from simulator.runtime.persistence import Batch, Checkpointer, load_fleet, load_sites
from simulator.runtime.store import Store
from simulator.runtime.tally import Tally
from simulator.runtime.transfers import FileTransfers, LogJournal
from simulator.runtime.worker_lock import WorkerLock, WorkerLockError

if TYPE_CHECKING:
    from simulator.contract.traffic import ProfileDict
    from simulator.csms import CentralSystem
    from simulator.csms.control import ControlServer
    from simulator.csms.files import FileServer
    from simulator.runtime.traffic import TrafficDriver

log = logging.getLogger(__name__)

# How often a worker makes sure it still holds its shard's lock (`WorkerLock.check`).
LOCK_CHECK_SECONDS = 2.0

# The share of the stop timeout that waiting for tasks and connections to end may use: the
# rest is kept for the final checkpoint, which a slow CSMS must never crowd out.
WAIT_SHARE = 0.5
# The part of that share that letting the messages in progress be answered may use first
# (`draining`): a central system that answers at all answers well within it.
DRAIN_SHARE = 0.2
# The part that the scenario runs this process hosts may use, before that, to clean up.
RUNS_SHARE = 0.2
# Chargers replaced one at a time (a power cycle, a small edit, retired) leave their last
# connection frozen, garbage the collector does not see (`gc_policy`); once they add up to
# this share of the fleet, one full collection frees it (`Simulator._keep_frozen`). A large
# change's batches are bounded by what the freezes hold instead (`gc_policy.freeze_batch`).
REPLACED_SHARE = 1.0
REFREEZE_CHECK_SECONDS = 5.0
# The longest the background traffic waits for the fleet's first boots (a connect ramp
# of a large fleet may take longer: the arrivals then start meanwhile).
TRAFFIC_BOOT_WAIT_SECONDS = 60.0
_NOT_YET_BOOTED = frozenset({BootState.NONE, BootState.PENDING})
# At the web server's stop, how long the last chunks of the streamed answers it ended have
# to leave before the reactor stops (loopback or a LAN: a moment).
END_STREAMS_SECONDS = 0.2


class StartError(Exception):
    """What keeps the simulator from starting (a port in use), in words for the command
    line."""


def _cannot_listen(option: str, port: int, exc: OSError) -> StartError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return StartError(f"{option} {port}: cannot listen on 127.0.0.1:{port} ({reason})")


@dataclass
class RunOptions:
    # The process (runsimulator)
    host: str = "127.0.0.1"
    port: int = 8000
    web: bool = True
    demo: bool = False
    demo_chargers: int = 10
    demo_share: float = 0.5  # deprecated driver of --demo (--traffic replaces it)
    traffic: bool = False  # background traffic at every site (runtime.traffic)
    traffic_seed: int = 0
    traffic_speed: float = 1.0  # simulated seconds per real second
    traffic_start: float | None = None  # simulated epoch time it starts at; None: now
    traffic_duration: float | None = None  # simulated seconds of arrivals; None: no end
    demo_operations: bool = True  # the built-in CSMS reserves, sends lists, updates firmware
    csms_url: str | None = None
    csms_port: int = 9000
    # The built-in CSMS's control endpoint on loopback: None next to csms_port (or any free
    # port when that one is taken), 0 any free port, -1 none
    csms_control_port: int | None = None
    # Its file server (firmware, diagnostics) on loopback, with demo_operations: 0 any free port
    csms_files_port: int = 0
    migrate: bool = True
    gc_tuning: bool = False
    metrics_port: int | None = None  # serve this worker's metrics on it (--metrics-port)
    metrics_bind: str = "127.0.0.1"
    live_status: bool = False  # a self-updating status line (stdout is a terminal)
    status_seconds: float = 10.0  # otherwise a plain status line at least this often
    # The engine
    shard: int = 0
    shards: int = 1
    only_ids: list[str] | None = None
    tick_seconds: float = 1.0
    checkpoint_seconds: float = 1.0
    reconnect_cap: float = 60.0
    # Chargers a mass connect starts connecting per second (`connect_ramp`); 0: all at once
    connect_rate: float = 0.0
    stop_timeout: float = 10.0
    reconcile_seconds: float = 3.0  # how often fleet edits without a message are looked for
    frame_log: FrameLogPolicy = field(default_factory=FrameLogPolicy)  # the stored message log

    @classmethod
    def from_settings(cls, **given: Any) -> RunOptions:
        """Options for the process: the engine's timings from the settings (an option given
        wins, as --connect-rate over CHARGESIM_CONNECT_RATE), the rest given."""
        from_settings: dict[str, Any] = {
            "tick_seconds": settings.CHARGESIM_TICK_SECONDS,
            "checkpoint_seconds": settings.CHARGESIM_CHECKPOINT_SECONDS,
            "reconnect_cap": settings.CHARGESIM_RECONNECT_CAP_SECONDS,
            "connect_rate": settings.CHARGESIM_CONNECT_RATE,
            "gc_tuning": settings.CHARGESIM_GC_TUNING,
            "frame_log": FrameLogPolicy.from_settings(),
        }
        return cls(**(from_settings | given))


class Simulator:
    def __init__(
        self,
        options: RunOptions | None = None,
        *,
        listener: Listener | None = None,
        write: Callable[[str], object] | None = None,
    ) -> None:
        self.options = options = options or RunOptions()
        self.shard = options.shard
        self.shards = options.shards
        self._write = write or sys.stdout.write
        self.status_display: LiveStatus | PlainStatus = (
            LiveStatus(sys.stdout)
            if options.live_status
            else PlainStatus(self._write, every=options.status_seconds)
        )
        self._message_rate = MessageRate(
            calls_total, window=rate_window(options.live_status, options.status_seconds)
        )
        self._last_minute = MessageRate(calls_total, window=60.0)
        # How many chargers' state the final checkpoint wrote (None until it has run).
        self.saved_at_stop: int | None = None
        self.store = Store()
        # The dashboard's publisher (if the listener is one), and the actions that wait for
        # a condition: both hear every change the chargers report, after the checkpoints.
        self.publisher = listener if isinstance(listener, EventPublisher) else None
        self._layer: Any = None  # the channel layer, once `start` has one
        self.conditions = Conditions(self.store)
        self.checkpointer = Checkpointer(
            downstream=self.conditions if listener is None else Fanout(listener, self.conditions),
            log_policy=options.frame_log,
        )
        self.sites = SiteController()  # site load management (issue 18)
        self.engine = MeterEngine(self.store, options.tick_seconds, sites=self.sites)
        # Firmware downloads and diagnostics uploads; a diagnostics file holds the
        # charger's log lines (kept from `start()` on) and its frames (the dashboard's log).
        self.log_journal = LogJournal()
        publisher = listener if isinstance(listener, EventPublisher) else None
        self.transfers: Transfers = FileTransfers(
            frames=(lambda cp_id: publisher.frames.get(cp_id, ())) if publisher else None,
            log_journal=self.log_journal,
        )
        self.reloader = FleetReloader(self)
        if self.shards > 1:
            # A charger may move to another shard's worker (renamed), which takes it on once
            # this one lets it go, or after a wait if this one stalls: then this one must
            # write nothing more of it (`Checkpointer.fenced`).
            self.checkpointer.fenced = True
            self.checkpointer.on_lost = self.reloader.drop_lost
        self.connections: dict[str, asyncio.Task[None]] = {}
        # Every mass connect of this worker takes its turns here: they share one rate.
        self.ramp = ConnectRamp(options.connect_rate)
        # The fleet pages' and the status line's counts, in one pass kept until a change.
        self.tally = Tally(self.store, self.sites, self.connections)
        self.csms: CentralSystem | None = None
        self.files: FileServer | None = None  # the built-in CSMS's file server (--demo)
        self.csms_control: ControlServer | None = None  # and its control endpoint
        self.traffic: TrafficDriver | None = None  # background traffic (--traffic)
        self.should_exit = False
        self.force_exit = False
        self._exit = asyncio.Event()
        self._force = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # The simulated drivers' tasks among them (`spawn(driver=True)`): a stop halts these
        # before it waits for the messages in progress.
        self._drivers: set[asyncio.Task[None]] = set()
        self._stopping = False
        # What the gc policy counts of the chargers `reloader` replaced (`_bound_frozen`):
        # those a large change's batches replaced, as many when the freezes were last
        # counted, and those replaced one at a time when a full collection last freed them.
        self._batched = 0
        self._batched_checked = 0
        self._alone_collected = 0
        # Until `start` has read the fleet, the status line says so instead of "0/0",
        # and how far the read has got.
        self.fleet_loaded = False
        self.load_progress = LoadProgress()
        self._stop_web: Callable[[], None] | None = None
        self.start_error: StartError | None = None
        self._failed_batch: Batch | None = None
        # The checkpoint loop's failures: the first in full, then a line a minute.
        self.checkpoint_outage = Outage("checkpoint", log, level=logging.ERROR)
        self.worker_lock: WorkerLock | None = None  # held while `run()` runs
        self.lock_lost = False  # another process took this shard's lock: no final save
        self._checkpoint_lock = asyncio.Lock()
        # One writer thread for every checkpoint: batches stay in order and the thread
        # keeps its database connection.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")

    @classmethod
    def for_process(cls, options: RunOptions, write: Callable[[str], object]) -> Simulator:
        """The simulator `runsimulator` runs: events published as the settings say."""
        publisher = EventPublisher(
            rate=settings.CHARGESIM_EVENTS_PER_SECOND,
            log_limit=settings.CHARGESIM_MESSAGE_LOG_LIMIT,
            log_bytes=settings.CHARGESIM_MESSAGE_LOG_BYTES,
        )
        return cls(options, listener=publisher, write=write)

    @property
    def only_ids(self) -> list[str] | None:
        return self.options.only_ids

    def say(self, text: str) -> None:
        self.status_display.write(text)
        with contextlib.suppress(AttributeError, ValueError):
            sys.stdout.flush()

    # -- the process ---------------------------------------------------------------------------

    def run(self) -> None:
        """Prepare the database, then serve until a signal; returns once all is saved.
        With a metrics port, its server runs first (a port in use stops the start at once:
        `metrics.MetricsServerError`) and last; a web or built-in CSMS port in use stops
        it after the preparation (`StartError`)."""
        # Before the database is written to: another process running this shard of it
        # would have its transactions ended and its chargers connected twice.
        lock = WorkerLock(self.shard, self.shards)
        try:
            lock.acquire()
        except WorkerLockError as exc:
            raise StartError(str(exc)) from None
        self.worker_lock = lock
        try:
            self._run_locked()
        finally:
            self.worker_lock = None
            lock.release()

    def _run_locked(self) -> None:
        stop_metrics = None
        if self.options.metrics_port is not None:
            stop_metrics = metrics.serve_http(self.options.metrics_port, self.options.metrics_bind)
            self.say(
                f"Metrics on http://{self.options.metrics_bind}:{self.options.metrics_port}"
                "/metrics\n"
            )
        try:
            if self.options.web:
                # Before the migration and the seeding: a port in use is said at once, not
                # after a first start's minute of database work that then stops.
                self._check_web_port()
            self.prepare()
            if self.options.web:
                self._serve_with_web()
            else:
                asyncio.run(self.serve())
                if self.start_error is not None:
                    raise self.start_error
        finally:
            if stop_metrics is not None:
                stop_metrics()

    def _check_web_port(self) -> None:
        """StartError if the web port cannot be listened on now (as Daphne will, with
        SO_REUSEADDR: a port a stopped server left in TIME_WAIT is not refused)."""
        host, port = self.options.host, self.options.port
        try:
            with socket.create_server((host, port)):
                pass
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartError(f"--port {port}: cannot listen on {host}:{port} ({reason})") from None

    def prepare(self) -> None:
        """Synchronous preparation, before any loop runs: migrate, seed, the admin account."""
        from django.core.management import call_command

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
        from django.contrib.auth import get_user_model

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

    def _serve_with_web(self) -> None:
        """Daphne drives the loop (Twisted's asyncio reactor); `serve()` runs on it as soon
        as the web server listens, and stops it as the last step of its shutdown."""
        from channels.routing import get_default_application
        from daphne.server import Server  # installs Twisted's asyncio reactor

        class WebServer(Server):
            # Why the port could not be listened on; Daphne itself only logs it and
            # returns from run() as if the server had stopped.
            listen_failure: str | None = None

            def listen_error(self, failure: Any) -> None:
                self.listen_failure = failure.getErrorMessage()
                self.stop()

            def stop(self) -> None:
                """Daphne's stop drops every connection at once: a streamed answer (the
                API's event stream, an export) ended without its last chunk, which a
                client reads as a broken transfer. Such answers are ended first, and the
                reactor stops once their last chunks are on their way."""
                from daphne.http_protocol import WebRequest
                from twisted.internet import reactor

                ended = 0
                for protocol in list(getattr(self, "connections", ())):
                    if (
                        isinstance(protocol, WebRequest)
                        and protocol._response_started
                        and not protocol.finished
                    ):
                        protocol.finish()
                        ended += 1
                if ended and reactor.running:
                    # The reactor runs on this asyncio loop (Twisted's asyncio reactor).
                    asyncio.get_event_loop().call_later(END_STREAMS_SECONDS, Server.stop, self)
                else:
                    Server.stop(self)

        def ready() -> None:
            # Called, once the port listens, before the reactor runs its loop: the loop
            # Twisted installed.
            self.say(
                f"Admin and dashboard on http://{self.options.host}:{self.options.port}/ "
                "(Ctrl-C to stop)\n"
            )
            self.spawn(self.serve(), "simulator", asyncio.get_event_loop())

        endpoint = f"tcp:port={self.options.port}:interface={self.options.host}"
        server = WebServer(
            get_default_application(),  # settings.ASGI_APPLICATION, as Channels finds it
            endpoints=[endpoint],
            signal_handlers=False,
            ready_callable=ready,
        )
        self._stop_web = server.stop
        server.run()
        if server.listen_failure is not None:
            reason = server.listen_failure.removeprefix("Couldn't listen on ").rstrip(".")
            raise StartError(f"--port {self.options.port}: cannot listen on {reason}")
        if self.start_error is not None:
            raise self.start_error

    async def serve(self) -> None:
        installed = self._install_signals()
        try:
            await self.startup()
            if not self.should_exit:
                await self.main_loop()
        except StartError as exc:
            self.start_error = exc  # run() raises it once all is stopped
        finally:
            self.say("\nStopping: saving state and closing connections...\n")
            await self.stop()
            self.say(self._stopped_text())
            loop = asyncio.get_running_loop()
            for signum in installed:
                loop.remove_signal_handler(signum)
            if self._stop_web is not None:
                self._stop_web()

    def _stopped_text(self) -> str:
        if self.saved_at_stop is None:
            return "Stopped: the final checkpoint failed, see the log above.\n"
        n = self.saved_at_stop
        return f"Stopped: {n} charger{'' if n == 1 else 's'} saved.\n"

    async def startup(self) -> None:
        self.spawn(self.status_display.run(self.status), "status")
        if self.worker_lock is not None:
            self.spawn(self._keep_worker_lock(self.worker_lock), "worker-lock")
        if self.options.demo:
            await self._start_demo_fleet()
        if self.options.gc_tuning:
            gc_policy.before_load()
        await self.start(channels=True)
        if self.options.gc_tuning:
            gc_policy.fleet_loaded()
            self.reloader.on_batch_up = self._freeze_batch
            self.spawn(self._keep_frozen(), "gc-freeze")
        if self.options.traffic:
            self.spawn(self.run_traffic(), "traffic", driver=True)
        if self.options.demo:
            self.spawn(self._demo(), "demo-driver", driver=True)

    async def run_traffic(self) -> None:
        """Background traffic at every site this worker runs, each by its arrival profile
        (the default one where a site has none)."""
        from simulator.runtime.traffic import load_profiles, load_site_connectors

        driver = await self.traffic_driver()
        profiles = await in_thread(load_profiles)()
        sites = [pk for pk in driver.locations() if pk in profiles]
        start = self.options.traffic_start
        since = (
            ""
            if start is None
            else f", from {datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M} UTC"
        )
        self.say(
            f"Background traffic at {len(sites)} site{'' if len(sites) == 1 else 's'} "
            f"(seed {self.options.traffic_seed}, {self.options.traffic_speed:g}x time{since})\n"
        )

        async def reload() -> Mapping[int, ProfileDict | None]:
            if self.shards > 1:
                # Each worker's share of a site is its connectors over the site's: counted
                # again as chargers are added, moved or disabled (a site made since the
                # start, unknown, would get its whole rate from every worker).
                driver.site_connectors = await in_thread(load_site_connectors)()
            return await in_thread(load_profiles)()

        # Drivers arriving before their site's chargers booted were turned away (QA14): the
        # arrivals start once the fleet's first connections are through (the status line
        # shows the tally, at 0, meanwhile).
        await self._first_boots(TRAFFIC_BOOT_WAIT_SECONDS)
        await driver.run(profiles, reload=reload, every=max(self.options.reconcile_seconds, 1.0))

    async def _first_boots(self, timeout: float) -> None:
        """Wait, at most `timeout` seconds, until every charger that connects by itself (to
        a CSMS it has) is Accepted, or has failed: Rejected, or its connection failed (a
        CSMS keeping it Pending takes the whole timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and any(
            charger.boot in _NOT_YET_BOOTED
            and not charger.link_error
            and charger.spec.auto_connect
            and charger.spec.csms_url  # one without a CSMS never connects
            for charger in self.store
        ):
            await asyncio.sleep(0.2)

    async def traffic_driver(self) -> TrafficDriver:
        """The worker's traffic driver, made on first use (by --traffic, or by a traffic
        command from a scenario on a worker started without it)."""
        from simulator.runtime.persistence import load_vehicles
        from simulator.runtime.traffic import TrafficDriver, load_site_connectors

        if self.traffic is None:
            vehicles = await in_thread(load_vehicles)()
            connectors = await in_thread(load_site_connectors)()
            if self.traffic is None:  # nobody made it while the catalogue loaded
                self.traffic = TrafficDriver(
                    self.store,
                    vehicles,
                    seed=self.options.traffic_seed,
                    speed=self.options.traffic_speed,
                    start=self.options.traffic_start,
                    duration=self.options.traffic_duration,
                    site_connectors=connectors if self.shards > 1 else None,
                    shard=(self.shard, self.shards),
                )
        return self.traffic

    async def _demo(self) -> None:
        """The simulated drivers start their sessions (unless background traffic replaces
        them); then the built-in CSMS shows its operations on the fleet (on connectors the
        drivers left free)."""
        from simulator.runtime.demo import drive_demo

        await drive_demo(self.store, 0.0 if self.options.traffic else self.options.demo_share)
        if self.csms is not None and self.files is not None and self.options.demo_operations:
            from simulator.csms.showcase import showcase

            ids = [f"DEMO-{n:04d}" for n in range(1, self.options.demo_chargers + 1)]
            await showcase(self.csms, self.files, ids)

    async def _keep_worker_lock(self, lock: WorkerLock) -> None:
        """Take the shard's lock again whenever it was lost with its database session; if
        another worker took it meanwhile, that one runs these chargers now (it ended their
        open transactions as after a power loss): stop at once, writing nothing more."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(LOCK_CHECK_SECONDS)
            try:
                await loop.run_in_executor(None, lock.check)
            except WorkerLockError as exc:
                log.error("worker lock lost to another process; stopping: %s", exc)
                self.say(f"\nStopping: the lock of this shard was lost. {exc}\n")
                self.lock_lost = True
                self.handle_exit()
                self.handle_exit()  # the second time: no waiting for connections to end
                return

    async def main_loop(self) -> None:
        await self._exit.wait()

    def handle_exit(self) -> None:
        """SIGINT/SIGTERM: the first asks for a graceful stop, the second skips the waiting
        (the final checkpoint is still written)."""
        if self.should_exit:
            if not self.force_exit:
                self.say("\nStopping now: not waiting for connections; saving state...\n")
            self.force_exit = True
            self._force.set()
        self.should_exit = True
        self._exit.set()

    def request_stop(self) -> None:
        self.should_exit = True
        self._exit.set()

    def _install_signals(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(signum, self.handle_exit)
                installed.append(signum)
        return installed

    async def _start_demo_fleet(self) -> None:
        from simulator.runtime.demo import ensure_demo_fleet

        url = self.options.csms_url
        if url is None:
            from simulator.csms import CentralSystem
            from simulator.csms.files import FileServer
            from simulator.csms.server import restart_safe_first_id
            from simulator.csms.showcase import answer_demo_tags

            self.csms = CentralSystem(keep_log=False, first_transaction_id=restart_safe_first_id())
            answer_demo_tags(self.csms)  # before the control endpoint takes it as its default
            try:
                await self.csms.start(host="127.0.0.1", port=self.options.csms_port)
            except OSError as exc:
                raise _cannot_listen("--csms-port", self.options.csms_port, exc) from None
            url = f"{self.csms.url}/ocpp"
            self.say(f"Built-in CSMS listening on {url}\n")
            wanted = self.options.csms_control_port
            if wanted is None or wanted >= 0:
                from simulator.csms.control import ControlServer, default_port

                self.csms_control = ControlServer(self.csms)
                try:
                    await self.csms_control.start(
                        "127.0.0.1",
                        default_port(self.csms.port) if wanted is None else wanted,
                        or_any=wanted is None,
                    )
                except OSError as exc:
                    # Only a port given explicitly: the default one falls back to any port.
                    raise _cannot_listen("--csms-control-port", wanted or 0, exc) from None
                self.say(
                    f"Its control endpoint (scenarios' csms_control) on {self.csms_control.url}\n"
                )
            builtin_csms.announce(
                builtin_csms.BuiltinCsms(
                    url, self.csms_control.url if self.csms_control is not None else None
                )
            )
            if self.options.demo_operations:
                self.files = FileServer()
                try:
                    self.files.start(host="127.0.0.1", port=self.options.csms_files_port)
                except OSError as exc:
                    self.files = None
                    raise _cannot_listen(
                        "--csms-files-port", self.options.csms_files_port, exc
                    ) from None
                self.say(f"Its file server (firmware, diagnostics) on {self.files.url}\n")
        made = await in_thread(ensure_demo_fleet, thread_sensitive=True)(
            self.options.demo_chargers, url
        )
        count = self.options.demo_chargers
        self.say(f"Demo fleet: {count} charger{'' if count == 1 else 's'} ({made} new) -> {url}\n")

    async def _keep_frozen(self, patience: float = 120.0) -> None:
        """Freeze the connected fleet once it is up (`_freeze_when_up`); then, whenever no
        fleet edit runs, bound what the replaced chargers left frozen (`_bound_frozen`)."""
        await self._freeze_when_up(patience)
        while True:
            await asyncio.sleep(REFREEZE_CHECK_SECONDS)
            if not self.reloader.busy():
                self._bound_frozen()

    def _bound_frozen(self) -> None:
        """Each charger replaced (rebooted, retired) is freed by reference counting
        (`Charger.dispose`) but leaves its last connection frozen, a reference cycle the
        collector does not see. One full collection frees that (`gc_policy.collect_frozen`)
        once the chargers replaced one at a time add up to `REPLACED_SHARE` of the fleet,
        or, after a large change's batches (frozen in turn, `_freeze_batch`), once what
        the freezes hold has grown by `gc_policy.GROWTH_SHARE`."""
        alone = self.reloader.replaced - self._batched - self._alone_collected
        if alone >= max(1.0, REPLACED_SHARE * len(self.store)):
            gc_policy.collect_frozen(f"{alone} chargers replaced one at a time")
        elif self._batched > self._batched_checked and gc_policy.frozen_grown():
            gc_policy.collect_frozen(f"{self._batched - self._batched_checked} rebooted")
        else:
            self._batched_checked = self._batched
            return
        self._alone_collected = self.reloader.replaced - self._batched
        self._batched_checked = self._batched

    def _freeze_batch(self, replaced: int, loaded: int) -> None:
        """A batch of a large fleet change has booted, `replaced` chargers rebooted and
        `loaded` new ones loaded: freeze what it built (`gc_policy.freeze_batch`);
        `_bound_frozen` bounds what the replaced ones left once the change is applied. No
        thaw: they are freed already (`Charger.dispose`). Thawing to free them cost a full
        collection of the whole heap every tenth of the fleet, a pause of the event loop of
        0.6-2 s at 1,000 chargers and 0.9-8.7 s at 5,000 (bench/RESULTS.md, sessions 36 and
        37). A batch of new chargers alone (a large import's) grows the fleet: what it
        froze is the fleet's, not garbage for `_bound_frozen` to count."""
        self._batched += replaced
        gc_policy.freeze_batch(grows_fleet=loaded > 0 and not replaced)

    async def _freeze_when_up(self, patience: float) -> None:
        """Once every charger with a connection is accepted (or after `patience` seconds),
        take the connections out of the garbage collector's sight too."""
        await self._until_up(patience)
        gc_policy.fleet_up()

    async def _until_up(self, patience: float) -> None:
        """Until every charger with a connection is accepted, `patience` seconds at most
        once the connect ramp has started every first connect (a slow ramp of a large fleet
        outlasts the patience: frozen halfway, the rest of the fleet would stay in the
        collector's sight). Reconnects do not count: chargers whose CSMS is away retry in
        the ramp for as long as it is, and would hold the freeze off as long."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        wanted = len(self.connections)
        while self.progress()["accepted"] < wanted:
            if self.ramp.first_connects():
                deadline = loop.time() + patience
            elif loop.time() >= deadline:
                return
            await asyncio.sleep(1.0)

    # -- the engine ----------------------------------------------------------------------------

    def spawn(
        self,
        coro: Coroutine[Any, Any, None],
        name: str,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        driver: bool = False,
    ) -> asyncio.Task[None]:
        """Start a task the simulator owns: `stop()` cancels it and waits for it. A
        `driver` task acts as the simulated drivers do (plugs in, starts and ends sessions):
        a stop halts it first, before it lets the messages in progress be answered."""
        task = (loop or asyncio.get_running_loop()).create_task(coro, name=name)
        self._tasks.add(task)
        if driver:
            self._drivers.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _say_unloaded_only_ids(self, chargers: list[Charger]) -> None:
        """An --only id that loaded nothing (a typo, a disabled charger, another shard's) is
        said, not dropped in silence: the user meant it to run."""
        loaded = {charger.spec.charge_point_id for charger in chargers}
        missing = [cp_id for cp_id in self.options.only_ids or () if cp_id not in loaded]
        if missing:
            log.warning(
                "--only: no enabled charger of shard %d/%d has the id %s: not loaded",
                self.shard,
                self.shards,
                ", ".join(missing),
            )

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._drivers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def start(self, *, connect: bool = True, channels: bool = False) -> None:
        """Load the fleet, connect the auto-connect chargers, run the meter engine and the
        checkpoints, and follow fleet edits; with `channels`, publish events and answer
        dashboard commands (and fleet.changed messages) too."""
        await self.reloader.prime()  # before loading: a change saved meanwhile is re-applied
        logging.getLogger("simulator").addHandler(self.log_journal)
        chargers = await in_thread(load_fleet)(
            self.checkpointer,
            shard=self.shard,
            shards=self.shards,
            ids=self.options.only_ids,
            transfers=self.transfers,
            progress=self.load_progress,
        )
        for charger in chargers:
            self.store.add(charger)
        self.sites.use(await in_thread(load_sites)())
        metrics.FLEET.attach(self.store, asyncio.get_running_loop())
        engine_here.announce(self.store, asyncio.get_running_loop())
        n = len(chargers)
        log.info(
            "loaded %d charger%s (shard %d/%d)", n, "" if n == 1 else "s", self.shard, self.shards
        )
        self._say_unloaded_only_ids(chargers)
        if connect:
            for charger in chargers:
                if charger.spec.auto_connect and charger.spec.csms_url:
                    self.connect(charger, paced=True)
        self.fleet_loaded = True
        self.spawn(self.engine.run(), "meter-engine")
        self.spawn(self._checkpoint_loop(), "checkpoints")
        self.spawn(self.reloader.run(self.options.reconcile_seconds), "fleet-reloader")
        if channels:
            from channels.layers import get_channel_layer

            layer = get_channel_layer()
            if layer is not None:
                self._layer = layer
                if self.publisher is not None:
                    self.spawn(self.publisher.run(layer), "events")
                self.spawn(CommandServer(self, layer).run(), "commands")

    def connect(self, charger: Charger, *, paced: bool = False) -> None:
        """Keep the charger connected from now on. `paced`: one of many connected at once
        (the fleet at start-up, a large import, a bulk connect): it waits for its turn in
        the connect ramp first, its task counted meanwhile as connecting. One charger a
        person connects is not paced: it never waits behind a ramp of thousands."""
        task = self.connections.get(charger.id)
        if task is not None and not task.done():
            return
        if not charger.spec.csms_url:
            raise ValueError(f"{charger.id} has no CSMS URL")
        runner = (
            self._connect_in_turn(charger)
            if paced and self.ramp.paces
            else self._keep_connected(charger)
        )
        self.connections[charger.id] = asyncio.create_task(runner, name=f"ocpp:{charger.id}")
        revision.FLEET.bump()  # the status line counts the chargers with a connection task

    async def _connect_in_turn(self, charger: Charger) -> None:
        # Cancelled while waiting (disconnected, disabled, deleted, a stop): never connects.
        await self.ramp.turn(charger.id)
        await self._keep_connected(charger)

    async def _keep_connected(self, charger: Charger) -> None:
        # Its reconnects (after its CSMS's outage, a reset, a network cut) are not a
        # person's connect: each takes its turn in the ramp, as the fleet's start-up does.
        turn = partial(self.ramp.turn, charger.id, reconnect=True) if self.ramp.paces else None
        await run_connection(charger, reconnect_cap=self.options.reconnect_cap, turn=turn)

    async def disconnect(self, charger: Charger) -> None:
        task = self.connections.pop(charger.id, None)
        revision.FLEET.bump()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        charger.detach()

    async def checkpoint(self, *, full: bool = True) -> None:
        """Write what changed; a batch that fails is written again before anything newer.
        One checkpoint at a time: batches must reach the database in the order taken."""
        await self._checkpoint(full=full)

    async def _checkpoint(self, *, full: bool) -> Batch | None:
        """`checkpoint()`, returning its batch if it had anything to write."""
        async with self._checkpoint_lock:
            if self._failed_batch is not None:
                batch, self._failed_batch = self._failed_batch, None
                await self._write_batch(batch)
            batch = self.checkpointer.take(full=full)
            if batch:
                await self._write_batch(batch)
                return batch
            return None

    async def _write_batch(self, batch: Batch) -> None:
        # The write runs in a thread that a cancellation cannot stop: shield it, and on
        # cancellation wait for the thread so that the batch is known written (or failed)
        # before anything else is written.
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._writer, Checkpointer.write, batch)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await future
            self._settle(batch, future)
            raise
        except Exception:
            self._failed_batch = batch
            raise
        self.checkpointer.written(batch)

    def _settle(self, batch: Batch, future: asyncio.Future[None]) -> None:
        if future.done() and not future.cancelled() and future.exception() is None:
            self.checkpointer.written(batch)
        else:
            self._failed_batch = batch

    async def _checkpoint_loop(self) -> None:
        """Group commit: flush transaction messages at once (with their chargers' registers),
        and everything else every `checkpoint_seconds`."""
        urgent = self.checkpointer.urgent
        every = self.options.checkpoint_seconds
        loop = asyncio.get_running_loop()
        next_full = loop.time() + every
        next_prune = loop.time()
        failing = self.checkpoint_outage
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(urgent.wait(), max(next_full - loop.time(), 0.0))
            urgent.clear()
            full = loop.time() >= next_full
            if full:
                next_full = loop.time() + every
            try:
                # Only a round that reached the database ends an outage: one with nothing
                # to write says nothing about it.
                reached = self._failed_batch is not None
                reached = await self._checkpoint(full=full) is not None or reached
                if full and loop.time() >= next_prune:
                    next_prune = loop.time() + await self._prune_log()
                    reached = True
                if reached:
                    failing.recovered(loop.time())
            except Exception as exc:
                failing.failed(exc, loop.time())
                self.checkpointer.trim_frames()
                await asyncio.sleep(min(every, 1.0))

    async def _prune_log(self) -> float:
        """One step of the message log's retention, in the writer thread between batches;
        the seconds until the next one (none: more is due at once)."""
        policy = self.options.frame_log
        loop = asyncio.get_running_loop()
        async with self._checkpoint_lock:
            deleted = await loop.run_in_executor(self._writer, Checkpointer.prune_log, policy)
        if deleted:
            log.debug("message log: %d old entries pruned", deleted)
        return 0.0 if deleted >= policy.prune_batch else policy.prune_seconds

    def progress(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for charger in self.store:
            if charger.boot is BootState.ACCEPTED and charger.link is LinkState.ONLINE:
                counts["accepted"] += 1
            elif charger.link is LinkState.ONLINE:
                counts[f"boot {charger.boot.value.lower()}"] += 1
            elif charger.link_error:
                counts["failing"] += 1
            elif charger.id in self.connections:
                counts["connecting"] += 1
            else:
                counts["idle"] += 1
        return counts

    def status(self) -> FleetStatus:
        """The figures of the terminal's status line: the fleet's counts (`Tally`, kept
        while nothing they count changes) with the message rate and traffic of now."""
        counts = self.tally.counts()
        # Chargers a reboot has taken down are neither in the store nor connected until
        # each is built afresh: still the fleet's, on their way back. One still in the
        # connections (its close not begun when the line is read) is counted there.
        connections = self.connections
        down = sum(1 for cp_id in self.reloader.down if cp_id not in connections)
        return FleetStatus(
            wanted=len(self.connections) + down,
            accepted=counts.accepted,
            connecting=counts.connecting + down,
            failing=counts.failing,
            charging=counts.charging,
            pending=counts.pending,
            rejected=counts.rejected,
            messages_per_second=self._message_rate.sample(),
            messages_last_minute=self._last_minute.count(),
            traffic=None if self.traffic is None else self.traffic.totals().text(),
            loading=not self.fleet_loaded,
            load_progress="" if self.fleet_loaded else self.load_progress.text(),
            reboots=self.reloader.reboot_progress(),
            loads=self.reloader.load_progress(),
            ramp=self.ramp.progress(),
            ramp_rate=self.ramp.rate,
            ramp_retrying=self.ramp.retrying(),
        )

    # -- shutdown ------------------------------------------------------------------------------

    async def stop(self, timeout: float | None = None) -> None:
        """Cancel every task and connection, save the state, stop the CSMS: all within one
        `timeout` (the options' by default).

        The messages in progress are answered first, within `DRAIN_SHARE` of the timeout;
        then tasks and connections end together, in one wait that may use what is left of
        `WAIT_SHARE` of it (none of either after a second signal); the final checkpoint
        always follows, within what is left. A write already in the database's hands is
        waited for (it cannot be interrupted; the database's own lock timeout bounds it).
        """
        if self._stopping:
            return
        self._stopping = True
        # At once: the chargers still waiting in the connect ramp stay offline (a stop
        # otherwise went on connecting them while it let the messages be answered).
        releaser = self.ramp.close()
        loop = asyncio.get_running_loop()
        timeout = self.options.stop_timeout if timeout is None else timeout
        started = loop.time()
        deadline = started + timeout
        # The scenario runs started here (embedded: through the API) end first, while the
        # engine still answers them: each stops its temporary chargers' sessions, waits for
        # the CSMS's answers, deletes them and stores itself. Cancelled with the engine's
        # tasks, a run spent the wait asking an engine that no longer answered, and was cut
        # off stored as running, its chargers left in the fleet. One still going is
        # cancelled again below, which skips its waiting but not its deleting.
        runs = loop_tasks.running(loop)
        for task in runs:
            task.cancel()
        await self._wait_unless_forced(runs, started + timeout * RUNS_SHARE)
        answered_by = loop.time() + timeout * DRAIN_SHARE
        # No batch of a large fleet change starts during the stop (one going down ends).
        await self.reloader.halt(0.0 if self.force_exit else answered_by - loop.time())
        if not self.force_exit:
            await self._stop_drivers(answered_by)
            await self._finish_in_progress(max(answered_by - loop.time(), 0.0))
        ending = [t for t in self._tasks if t is not asyncio.current_task()]
        ending += loop_tasks.running(loop)  # the web side's, in embedded mode
        ending += self.connections.values()
        ending += self.reloader.tasks()
        if releaser is not None:
            ending.append(releaser)
        if self.traffic is not None:
            ending += self.traffic.tasks()
        for task in ending:
            task.cancel()
        # What a charger holds when the stop begins is what is saved: a timer due during
        # the wait (a reservation's expiry, a job's step) would change it with no link to
        # say so, and a slow write could let it run. What falls due is done at the next start.
        for charger in self.store:
            charger.cancel_timers()
        left = await self._wait_unless_forced(ending, started + timeout * WAIT_SHARE)
        if left:
            names = sorted(task.get_name() for task in left)
            log.warning(
                "%d tasks still ending after the wait; not waiting longer: %s%s",
                len(left),
                ", ".join(names[:10]),
                ", ..." if len(names) > 10 else "",
            )
        await self._say_stopping(deadline)
        for charger in self.store:
            charger.cancel_timers()
            if charger.transactions:
                # Metered only at its events (a sample, a status change): the register as of
                # the last tick is what the next start's StopTransaction(PowerLoss) reports.
                charger.settle_meter()
        self.checkpointer.mark_all(self.store)
        try:
            if self.lock_lost:
                # Another worker runs this shard from what it read at its start: a write of
                # ours now (an open transaction it has ended) would undo its own.
                raise RuntimeError("the shard's lock was taken by another worker")
            final = await asyncio.wait_for(
                self._checkpoint(full=True), max(deadline - loop.time(), 0.1)
            )
        except Exception:
            log.exception("final checkpoint failed")
        else:
            # Chargers whose registers and statuses that write carried (every loaded one
            # with a database row: mark_all made them all due).
            self.saved_at_stop = len({row[0] for row in final.evses}) if final else 0
        builtin_csms.announce(None)
        if self.csms_control is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.csms_control.stop(), max(deadline - loop.time(), 0.1))
        if self.csms is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.csms.stop(), max(deadline - loop.time(), 0.1))
        if self.files is not None:
            self.files.stop()
        with contextlib.suppress(Exception):  # bounded: a write may still hold the thread
            closing = loop.run_in_executor(self._writer, Checkpointer.close)
            await asyncio.wait_for(closing, max(deadline - loop.time(), 0.1))
        self._writer.shutdown(wait=False)
        metrics.FLEET.detach(self.store)
        engine_here.announce(self.store, None)
        logging.getLogger("simulator").removeHandler(self.log_journal)

    async def _say_stopping(self, deadline: float) -> None:
        """The API's event streams get what this worker still holds for them, and hear that
        its events stop here (a stream otherwise went quiet without a word). At most a
        second: the final checkpoint comes first."""
        stream = self.publisher.stream if self.publisher is not None else None
        if self._layer is None or stream is None or not stream.subscriptions:
            return
        within = min(1.0, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(stream.flush(self._layer, stopping=True), max(within, 0.1))
        except Exception as exc:  # the layer away or slow: the streams see `restarted` later
            log.info("stop: the event streams were not told (%s)", type(exc).__name__)

    async def _stop_drivers(self, until: float) -> None:
        """The simulated drivers act no more once a stop begins, so that what the chargers
        hold when the wait for answers starts is all there is to wait for (a driver leaving
        during it would leave a StopTransaction unsent)."""
        drivers = list(self._drivers)
        if self.traffic is not None:
            drivers += self.traffic.tasks()
        for task in drivers:
            task.cancel()
        if drivers:
            loop = asyncio.get_running_loop()
            await asyncio.wait(drivers, timeout=max(until - loop.time(), 0.0))

    async def _finish_in_progress(self, within: float) -> None:
        """Let the messages the chargers hold at the stop be answered before their
        connections close (`draining`), for at most `within` seconds."""
        drained = await drain(self.store, within, self._force)
        if drained.left:
            names = drained.chargers_left
            log.warning(
                "stop: %d of %d messages in progress not answered within %.1f s (%s%s); "
                "transaction messages among them stay in the outbox for the next start",
                drained.left,
                drained.waited_for,
                within,
                ", ".join(names[:10]),
                ", ..." if len(names) > 10 else "",
            )
        elif drained.finished:
            log.info("stop: the %d messages in progress were answered", drained.finished)

    async def _wait_unless_forced(
        self, tasks: list[asyncio.Task[None]], until: float
    ) -> set[asyncio.Task[Any]]:
        """Wait for `tasks` until `until` or a second signal; return those still running."""
        pending: set[asyncio.Task[Any]] = {t for t in tasks if not t.done()}
        if not pending or self.force_exit:
            return pending
        loop = asyncio.get_running_loop()
        forced: asyncio.Task[Any] = loop.create_task(self._force.wait(), name="force-exit")
        try:
            while pending and not forced.done():
                left = until - loop.time()
                if left <= 0:
                    break
                _done, pending = await asyncio.wait(
                    pending | {forced}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(forced)
        finally:
            forced.cancel()
            await asyncio.gather(forced, return_exceptions=True)
        return pending
