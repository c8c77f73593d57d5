"""`manage.py runscenario FILE...`: run scenario files against a CSMS, with verdicts.

Here (and not in the scenarios app) because it may start the engine in this process: with
the embedded settings (no REDIS_URL: the channel layer lives in memory) nothing else could
run the scenario's chargers, so each scenario gets an engine of its own that loads
exactly its chargers (no web, no demo drivers) and is stopped after it. With REDIS_URL the
running workers run them. The work is `scenarios.session`'s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import traceback
from collections.abc import Coroutine
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chargers.validators import validate_csms_url
from fleet_io.management.database import check_database
from scenarios import format as scenario_format
from scenarios.runner import Options, RunningWorkers, SetupError
from scenarios.session import (
    EXIT_BAD_FILE,
    EXIT_ERROR,
    Session,
    clashing_report,
    exit_code,
    load_files,
    remove_report,
    tally,
    unwritable,
    write_reports,
)
from simulator.runtime.events import EventPublisher
from simulator.runtime.lifecycle import RunOptions, Simulator
from simulator.runtime.worker_lock import WorkerLock, WorkerLockError

# The in-process engine publishes events at least this often: a run's checks wait for
# frames to arrive, so a faster flush makes a shorter run.
EVENTS_PER_SECOND = 20.0


# A process ended by SIGTERM exits 128 + 15, as the shell reports one killed by it.
EXIT_TERMINATED = 143
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C
ENDED_EARLY = (
    "the runs in progress are stored as errors and their chargers deleted; no report written."
)


class Terminated(Exception):
    """A signal (SIGTERM, SIGINT) ended the runs (see `Command._terminable`)."""

    def __init__(self, sent: signal.Signals) -> None:
        super().__init__(sent.name)
        self.signal = sent


class InProcessEngine:
    """The engine on this process's loop, running only the scenario's chargers."""

    def __init__(self) -> None:
        self.simulator: Simulator | None = None
        self.lock: WorkerLock | None = None

    async def start(self, charge_point_ids: list[str]) -> None:
        # A simulator running on this database would load the scenario's chargers too
        # (and this engine its): refused, as a second runsimulator is.
        lock = WorkerLock(0, 1)
        try:
            await sync_to_async(lock.acquire, thread_sensitive=False)()
        except WorkerLockError as exc:
            raise SetupError(str(exc)) from None
        self.lock = lock
        rate = max(settings.CHARGESIM_EVENTS_PER_SECOND, EVENTS_PER_SECOND)
        publisher = EventPublisher(
            rate=rate,
            log_limit=settings.CHARGESIM_MESSAGE_LOG_LIMIT,
            log_bytes=settings.CHARGESIM_MESSAGE_LOG_BYTES,
        )
        options = RunOptions.from_settings(
            web=False, demo=False, migrate=False, only_ids=list(charge_point_ids)
        )
        self.simulator = Simulator(options, listener=publisher)
        try:
            await self.simulator.start(channels=True)
        except BaseException:
            # The runner stops only a host that started: the lock is not left held.
            self.lock.release()
            self.lock = None
            raise

    async def stop(self) -> None:
        if self.simulator is not None:
            await self.simulator.stop()
            self.simulator = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def _check_free() -> None:
    """CommandError (exit 2: nothing ran) when a simulator runs on this database."""
    lock = WorkerLock(0, 1)
    try:
        lock.acquire()
    except WorkerLockError as exc:
        raise CommandError(str(exc), returncode=EXIT_BAD_FILE) from None
    lock.release()


def embedded() -> bool:
    """The channel layer is this process's memory: no worker elsewhere can be reached."""
    backend = str(settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", ""))
    return "InMemory" in backend


def _cannot_listen(option: str, port: int, exc: OSError) -> CommandError:
    """A port the built-in CSMS or its control endpoint cannot have, in one line (exit 2:
    nothing ran), as runsimulator says it."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return CommandError(
        f"{option} {port}: cannot listen on 127.0.0.1:{port} ({reason}); nothing ran.",
        returncode=EXIT_BAD_FILE,
    )


async def _start_control(csms: Any, csms_port: int, wanted: int | None) -> Any:
    """The built-in CSMS's control endpoint (the scenarios' `${csms_control}`: what their
    `trigger` steps call) on loopback: on `wanted` (0: any free port), else next to a
    CSMS port that was asked for or any free port when that one is taken; None with
    `wanted` -1."""
    if wanted is not None and wanted < 0:
        return None
    # Here, not at the top: only a run with --builtin-csms loads the CSMS.
    from simulator.csms.control import ControlServer, default_port

    server = ControlServer(csms)
    port = default_port(csms_port) if wanted is None else wanted
    try:
        await server.start("127.0.0.1", port, or_any=wanted is None)
    except OSError as exc:
        # Only a port given explicitly: the default one falls back to any free port.
        raise _cannot_listen("--csms-control-port", port, exc) from None
    return server


def unused_variables(
    variables: dict[str, Any], scenarios: list[scenario_format.Scenario]
) -> list[str]:
    """A `--var` no file declares or names (`scenarios.format.unknown_variables`)."""
    return [
        f"--var {name}: {why}"
        for name, why in scenario_format.unknown_variables(variables, scenarios)
    ]


def shared_names(scenarios: list[scenario_format.Scenario]) -> str | None:
    """Files of one invocation that name their scenario alike (a library case copied with
    its name kept, a file given twice): their JUnit testsuites and testcases would bear
    the same names, and CI, which tells tests apart by name, mixes up their verdicts."""
    files: dict[str, list[str]] = {}
    for scenario in scenarios:
        files.setdefault(scenario.name, []).append(scenario.file)
    for name, named in files.items():
        if len(named) > 1:
            return (
                f"{', '.join(named)}: each names its scenario {name}, and a report tells "
                "scenarios apart by name: give each file a name of its own; nothing ran."
            )
    return None


def settle_seconds() -> float:
    """How late a worker's events may arrive: two of its flushes, and some slack."""
    rate = settings.CHARGESIM_EVENTS_PER_SECOND
    if embedded():
        return 2.0 / max(rate, EVENTS_PER_SECOND) + 0.2
    return 2.0 / rate + 0.5


class Command(BaseCommand):
    help = (
        "Run scenario files (docs/scenarios.md) against a CSMS. Exit code: 0 every check "
        "held; 1 the CSMS failed a check and everything ran; 2 nothing ran (a bad file or "
        "option, a port taken, the database not reachable or not migrated); 3 something "
        "could not run (the CSMS not reached, a setup or a step in error, the command "
        "failed), also when a check failed too: an error wins over a failure, and the "
        "reports say which was which; 130 Ctrl-C; 143 SIGTERM."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="scenario YAML files")
        parser.add_argument(
            "--csms-url",
            help="ws:// or wss:// URL of the CSMS for the scenarios' temporary chargers",
        )
        parser.add_argument(
            "--builtin-csms",
            action="store_true",
            help="start the built-in CSMS on loopback (on --csms-port, else on any free port) "
            "for the temporary chargers",
        )
        parser.add_argument(
            "--csms-port",
            type=int,
            help="with --builtin-csms: its port on 127.0.0.1 (default: any free port)",
        )
        parser.add_argument(
            "--csms-control-port",
            type=int,
            help="with --builtin-csms: port of its control endpoint on 127.0.0.1 (scenarios' "
            "${csms_control}; 0 = any free port; -1 = none; default: --csms-port + 1, or any "
            "free port when that one is taken or without --csms-port)",
        )
        parser.add_argument("--junit", metavar="OUT.xml", help="write a JUnit XML report")
        parser.add_argument("--json", metavar="OUT.json", help="write the runs' results as JSON")
        parser.add_argument(
            "--seed", type=int, help="the seed of every scenario (overrides the files')"
        )
        parser.add_argument(
            "--var",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="set a variable (repeatable); overrides the files' own",
        )
        parser.add_argument(
            "--migrate", action="store_true", help="migrate the database first (embedded use)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["csms_url"] and options["builtin_csms"]:
            raise CommandError(
                "--csms-url and --builtin-csms do not go together.", returncode=EXIT_BAD_FILE
            )
        if options["csms_url"]:
            # The charger's own rule (scheme, host, port, no password in it), checked before
            # anything runs: a URL the chargers refuse failed the run later, as an error (1).
            try:
                validate_csms_url(options["csms_url"])
            except ValidationError as exc:
                raise CommandError(
                    f"--csms-url: {' '.join(exc.messages)}", returncode=EXIT_BAD_FILE
                ) from None
        for option in ("csms_port", "csms_control_port"):
            if options[option] is not None and not options["builtin_csms"]:
                raise CommandError(
                    f"--{option.replace('_', '-')} is the built-in CSMS's: add --builtin-csms.",
                    returncode=EXIT_BAD_FILE,
                )
        if options["csms_port"] is not None and not 1 <= options["csms_port"] <= 65535:
            raise CommandError("--csms-port must be within 1 and 65535.", returncode=EXIT_BAD_FILE)
        control_port = options["csms_control_port"]
        if control_port is not None and not -1 <= control_port <= 65535:
            raise CommandError(
                "--csms-control-port must be within -1 and 65535.", returncode=EXIT_BAD_FILE
            )
        seed = options["seed"]
        if seed is not None and not 0 <= seed < 2**63:
            raise CommandError("--seed must be within 0 and 2**63 - 1.", returncode=EXIT_BAD_FILE)
        variables: dict[str, Any] = {}
        for text in options["var"]:
            try:
                name, value = scenario_format.parse_var(text)
            except ValueError as exc:
                raise CommandError(str(exc), returncode=EXIT_BAD_FILE) from None
            variables[name] = value
        clash = clashing_report(options["junit"], options["json"], options["files"])
        if clash:
            raise CommandError(f"{clash}; nothing ran.", returncode=EXIT_BAD_FILE)
        for option in ("junit", "json"):
            # Checked before anything runs: a report that cannot be written after a long run
            # lost its verdicts (the run printed PASSED, then a traceback).
            problem = unwritable(options[option])
            if problem:
                raise CommandError(
                    f"--{option} {options[option]}: {problem}", returncode=EXIT_BAD_FILE
                )
            remove_report(options[option])
        scenarios, errors = load_files(options["files"], variables)
        if errors:
            for error in errors:
                self.stderr.write(str(error))
            self.stderr.write(
                f"{len(errors)} problem{'' if len(errors) == 1 else 's'}; nothing ran."
            )
            sys.exit(EXIT_BAD_FILE)
        if not (options["csms_url"] or options["builtin_csms"]):
            # Known before anything runs: the run used to be stored as an error, exit 1.
            homeless = [
                s.file
                for s in scenarios
                if "template" in s.chargers and not s.chargers["template"].get("csms_url")
            ]
            if homeless:
                raise CommandError(
                    f"{', '.join(homeless)}: the template's chargers need a CSMS: give the "
                    "template a csms_url, or --csms-url URL (or --builtin-csms); nothing ran.",
                    returncode=EXIT_BAD_FILE,
                )
        if not options["builtin_csms"] or options["csms_control_port"] == -1:
            # Known before anything runs: each such case connected, ran its first steps
            # and errored at its first trigger, exit 1, as if the CSMS had failed. (-1: the
            # built-in CSMS without its control endpoint.)
            hookless = [
                s.file
                for s in scenarios
                if "csms_control" in s.uses and "csms_control" not in s.variables
            ]
            if hookless:
                raise CommandError(
                    f"{', '.join(hookless)}: the steps make the CSMS act through "
                    "${csms_control}, which has no value: give --var csms_control=URL (your "
                    "CSMS's hook, docs/csms-control.md), or run against --builtin-csms; "
                    "nothing ran.",
                    returncode=EXIT_BAD_FILE,
                )
        shared = shared_names(scenarios)
        if shared:
            raise CommandError(shared, returncode=EXIT_BAD_FILE)
        unused = unused_variables(variables, scenarios)
        if unused:
            for problem in unused:
                self.stderr.write(problem)
            self.stderr.write(
                f"{len(unused)} problem{'' if len(unused) == 1 else 's'}; nothing ran."
            )
            sys.exit(EXIT_BAD_FILE)
        # Exit status 2 (nothing ran), not 1: a CI job must not read a database it could
        # not use as a CSMS that failed its checks.
        check_database(
            migrated=not options["migrate"], or_else="add --migrate", returncode=EXIT_BAD_FILE
        )
        if options["migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        if embedded():
            # Refused before anything starts or is stored (a run recorded as an error, exit
            # 1 as if the CSMS had failed): the engine's own check comes only with its run.
            _check_free()
        try:
            runs = asyncio.run(self._terminable(self._run(scenarios, options)))
            write_reports(runs, junit=options["junit"], json_path=options["json"])
        except Terminated as ended:
            if ended.signal is signal.SIGINT:
                self.stderr.write(f"Interrupted (Ctrl-C): {ENDED_EARLY}")
                sys.exit(EXIT_INTERRUPTED)
            self.stderr.write(f"Terminated (SIGTERM): {ENDED_EARLY}")
            sys.exit(EXIT_TERMINATED)
        except CommandError:
            raise  # exit 2: nothing ran (a port taken)
        except Exception as exc:
            # Python's own exit status for a traceback is 1, which a CI job reads as a CSMS
            # that failed its checks: this is the command's failure (3), said as such.
            self.stderr.write(traceback.format_exc())
            self.stderr.write(
                f"runscenario could not finish: {type(exc).__name__}: {exc} (exit code "
                f"{EXIT_ERROR}); the runs that ended are stored (admin: Scenario runs)."
            )
            sys.exit(EXIT_ERROR)
        self.stdout.write(tally(runs))
        sys.exit(exit_code(runs))

    @staticmethod
    async def _terminable(work: Coroutine[Any, Any, Any]) -> Any:
        """`work`, ended by SIGTERM or SIGINT (Ctrl-C): cancelled, so that a run in progress
        is stored as an error and its temporary chargers deleted (what a CI job's timeout or
        cancel sends; without a handler the process died at once and left both behind).
        SIGINT has a handler of its own too: a process started in the background (a CI
        job's) inherits SIGINT ignored, and Python's Ctrl-C then never came."""
        task = asyncio.ensure_future(work)
        loop = asyncio.get_running_loop()
        ended_by: list[signal.Signals] = []

        def end(sent: signal.Signals) -> None:
            ended_by.append(sent)
            task.cancel()

        for sent in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sent, end, sent)
        try:
            return await task
        except asyncio.CancelledError:
            if ended_by:
                raise Terminated(ended_by[0]) from None
            raise
        finally:
            for sent in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sent)

    async def _run(self, scenarios: list[scenario_format.Scenario], options: dict[str, Any]) -> Any:
        csms = None
        control_server: Any = None
        csms_url = options["csms_url"]
        control = None
        if options["builtin_csms"]:
            from simulator.csms import CentralSystem

            csms = CentralSystem(keep_log=False)
            port = options["csms_port"] or 0
            try:
                await csms.start(host="127.0.0.1", port=port)
            except OSError as exc:
                raise _cannot_listen("--csms-port", port, exc) from None
            csms_url = csms.url
            self.stdout.write(f"Built-in CSMS on {csms_url}")
            try:
                control_server = await _start_control(csms, port, options["csms_control_port"])
            except BaseException:
                await csms.stop()
                raise
            if control_server is not None:
                control = str(control_server.url)
                self.stdout.write(f"Its control endpoint (${{csms_control}}) on {control}")
        host_for: Any = InProcessEngine if embedded() else RunningWorkers
        session = Session(
            scenarios,
            Options(
                csms_url=csms_url,
                csms_control=control,
                seed=options["seed"],
                settle_seconds=settle_seconds(),
            ),
            host_for=host_for,
            progress=lambda text: self.stdout.write(text),
        )
        try:
            return await session.run()
        finally:
            if control_server is not None:
                await control_server.stop()
            if csms is not None:
                await csms.stop()
