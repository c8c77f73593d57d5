from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from chargers.validators import validate_csms_url
from fleet_io.management.database import check_database, upkeep_warnings
from scenarios.models import ScenarioRun
from simulator.core.clock import parse_iso
from simulator.runtime.lifecycle import RunOptions, Simulator, StartError
from simulator.runtime.metrics import MetricsServerError

log = logging.getLogger(__name__)

DEMO_CSMS_PORT = 9000
# The highest --connect-rate (as CHARGESIM_CONNECT_RATE's): beyond, it is all at once anyway.
MAX_CONNECT_RATE = 100_000
# Options of the built-in CSMS that --demo starts (--csms-url has its own message).
_BUILTIN_CSMS = ("csms_port", "csms_control_port", "csms_files_port", "no_demo_operations")


def _loopback(host: str) -> bool:
    """Whether the web interface listens on this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: whatever it resolves to may be reachable
        return False


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/", 1))
    except ValueError:
        raise CommandError(f"--shard {text!r}: use K/N, e.g. 0/2 for the first of two.") from None
    if n < 1 or not 0 <= k < n:
        raise CommandError(f"--shard {text!r}: K must be within 0..N-1 and N at least 1.")
    return k, n


def _shard_values_joined(argv: list[str]) -> list[str]:
    """`--shard -1/2` as `--shard=-1/2`: argparse takes a value that starts with "-" for
    an option unless it is a plain negative number, and would say only "expected one
    argument"; joined, the value reaches `parse_shard`, which says what is wrong with it."""
    out: list[str] = []
    values = iter(argv)
    for arg in values:
        if arg == "--shard":
            value = next(values, None)
            if value is not None and _NEGATIVE_START.match(value):
                out.append(f"--shard={value}")
                continue
            out.append(arg)
            if value is not None:
                out.append(value)
            continue
        if arg == "--":  # the rest is positional: as given
            out.append(arg)
            out.extend(values)
            break
        out.append(arg)
    return out


_NEGATIVE_START = re.compile(r"-[0-9]")


class Command(BaseCommand):
    help = (
        "Run the charge-point simulator: migrate, load the fleet, connect the auto-connect "
        "chargers, tick the meter engine, and (unless --no-web) serve the admin and dashboard "
        "with Daphne on the same event loop."
    )

    def run_from_argv(self, argv: list[str]) -> None:
        super().run_from_argv([*argv[:2], *_shard_values_joined(argv[2:])])

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="web interface (default %(default)s)"
        )
        parser.add_argument("--port", type=int, default=8000, help="web port (default %(default)s)")
        parser.add_argument("--no-web", action="store_true", help="run the engine alone")
        parser.add_argument(
            "--demo",
            action="store_true",
            help="start the built-in CSMS and a demo fleet pointed at it",
        )
        parser.add_argument(
            "--demo-chargers",
            type=int,
            default=10,
            metavar="N",
            help="size of the demo fleet (default %(default)s)",
        )
        parser.add_argument(
            "--demo-share",
            type=float,
            default=None,
            metavar="F",
            help="deprecated, use --traffic: with --demo, a driver starts a session that never "
            "ends on this share of the demo connectors (0 to 1, default 0.5; the cars a restart "
            "plugs back in count towards it); ignored with --traffic",
        )
        parser.add_argument(
            "--traffic",
            action="store_true",
            help="background traffic: drivers arrive at every site by its arrival profile "
            "(admin: Arrival profiles; a site without one gets the default public AC "
            "profile), plug in, charge, and leave after their dwell",
        )
        parser.add_argument(
            "--traffic-seed",
            type=int,
            default=0,
            metavar="N",
            help="seed of the traffic's randomness: the same seed, the same arrivals "
            "(default %(default)s)",
        )
        parser.add_argument(
            "--traffic-speed",
            type=float,
            default=1.0,
            metavar="X",
            help="simulated time per real time for the traffic, e.g. 60: an hour of "
            "arrivals and dwell a minute (default %(default)s)",
        )
        parser.add_argument(
            "--traffic-start",
            default=None,
            metavar="WHEN",
            help="the simulated date and time the traffic starts at, e.g. 2026-06-01T07:00 "
            "(UTC unless it gives a zone): with --traffic-seed, the same arrivals at the "
            "same simulated times whenever the run starts; default: now",
        )
        parser.add_argument(
            "--traffic-hours",
            type=float,
            default=None,
            metavar="H",
            help="stop the arrivals after H simulated hours (the drivers there finish their "
            "dwell); default: no end",
        )
        parser.add_argument(
            "--no-demo-operations",
            action="store_true",
            help="with --demo: the built-in CSMS does not send local lists, reserve a "
            "connector, ask for diagnostics or update a charger's firmware",
        )
        parser.add_argument(
            "--csms-url",
            help="with --demo: point the demo fleet at this CSMS instead of the built-in one, "
            "which then does not start (nor its control endpoint, file server and demo "
            "operations); your CSMS should accept the drivers' idTags DEMO0001..DEMO0020",
        )
        parser.add_argument(
            "--csms-port",
            type=int,
            help=f"port of the built-in CSMS with --demo (default {DEMO_CSMS_PORT})",
        )
        parser.add_argument(
            "--csms-control-port",
            type=int,
            help="with --demo: port of the built-in CSMS's control endpoint on 127.0.0.1 "
            "(scenarios' ${csms_control}; 0 = any free port; -1 = none; default: "
            "--csms-port + 1, or any free port when that one is taken)",
        )
        parser.add_argument(
            "--csms-files-port",
            type=int,
            help="with --demo: port of the built-in CSMS's file server (firmware to download, "
            "diagnostics to upload) on 127.0.0.1 (default 0 = any free port)",
        )
        parser.add_argument(
            "--shard",
            default="0/1",
            metavar="K/N",
            help="run only the chargers of shard K of N (stable hash of the id)",
        )
        parser.add_argument("--no-migrate", action="store_true", help="do not migrate first")
        parser.add_argument(
            "--only", nargs="+", metavar="CP_ID", help="load only these charge point ids"
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            metavar="PORT",
            help="serve this worker's Prometheus metrics on http://BIND:PORT/metrics "
            "(no authentication: keep it on a private address); each worker of a "
            "scaled-out fleet serves its own",
        )
        parser.add_argument(
            "--metrics-bind",
            default="127.0.0.1",
            metavar="ADDRESS",
            help="address for --metrics-port (default %(default)s; 0.0.0.0 for every interface)",
        )
        parser.add_argument(
            "--connect-rate",
            type=float,
            default=None,
            metavar="N",
            help="start connecting at most N chargers a second when many connect at once (the "
            "fleet at start-up, a large import of new chargers, a bulk connect or reboot, the "
            "reconnects after your CSMS was away), so that your "
            "CSMS does not get every WebSocket handshake and BootNotification in the same "
            "second; per worker (a scaled-out fleet of K workers connects up to K x N a "
            "second); 0 = all at once (default: CHARGESIM_CONNECT_RATE, else 0)",
        )

        parser.add_argument(
            "--status-every",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="when the output is not a terminal, print the fleet's status line at least "
            "this often (default %(default)s); on a terminal it is redrawn in place",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        shard, shards = parse_shard(options["shard"])
        if options["demo_chargers"] < 0:
            raise CommandError("--demo-chargers must be 0 or more.")
        demo_share = options["demo_share"]
        if demo_share is not None:
            if not 0 <= demo_share <= 1:
                raise CommandError("--demo-share must be within 0 and 1.")
            self.stderr.write(
                "--demo-share is deprecated: --traffic simulates drivers arriving and "
                "leaving at every site"
                + (" (ignored with --traffic)." if options["traffic"] else ".")
            )
        if not options["traffic_speed"] > 0:
            raise CommandError("--traffic-speed must be more than 0 (e.g. 60: an hour a minute).")
        hours = options["traffic_hours"]
        if hours is not None and not hours > 0:
            raise CommandError("--traffic-hours must be more than 0.")
        traffic_start = None
        if options["traffic_start"] is not None:
            try:
                traffic_start = parse_iso(options["traffic_start"]).timestamp()
            except ValueError:
                raise CommandError(
                    f"--traffic-start: {options['traffic_start']!r} is not a date and time "
                    "(e.g. 2026-06-01T07:00, UTC unless it gives a zone)."
                ) from None
        if options["csms_url"] and not options["csms_url"].startswith(("ws://", "wss://")):
            raise CommandError("--csms-url must start with ws:// or wss://.")
        if options["csms_url"] and not options["demo"]:
            self.stderr.write(
                "--csms-url applies to the demo fleet only (--demo): ignored; your chargers "
                "use the CSMS URL each one has in the admin."
            )
        # Said, not dropped in silence: a user who gave one meant it to do something.
        ignored = [
            f"--{name.replace('_', '-')}"
            for name in _BUILTIN_CSMS
            if options[name] is not None and options[name] is not False  # 0 is a port
        ]
        if ignored and not options["demo"]:
            self.stderr.write(
                f"{' and '.join(ignored)} concern{'s' if len(ignored) == 1 else ''} the "
                "built-in CSMS that --demo starts: ignored without --demo."
            )
        elif ignored and options["csms_url"]:
            self.stderr.write(
                f"{' and '.join(ignored)} concern{'s' if len(ignored) == 1 else ''} the "
                "built-in CSMS, which does not start when --csms-url points the demo fleet "
                "at another: ignored."
            )
        if options["csms_port"] is None:
            options["csms_port"] = DEMO_CSMS_PORT
        if options["csms_url"]:
            # The demo chargers get it as their CSMS URL: the admin's rules, before any write.
            try:
                validate_csms_url(options["csms_url"])
            except ValidationError as exc:
                raise CommandError(f"--csms-url: {' '.join(exc.messages)}") from None
        connect_rate = options["connect_rate"]
        if connect_rate is not None and not 0 <= connect_rate <= MAX_CONNECT_RATE:  # NaN too
            raise CommandError(
                f"--connect-rate must be within 0 and {MAX_CONNECT_RATE:,} chargers a second "
                "(0 = all at once)."
            )
        if not options["status_every"] > 0:
            raise CommandError("--status-every must be more than 0 seconds.")
        if settings.DEBUG and not options["no_web"] and not _loopback(options["host"]):
            self.stderr.write(
                f"DEBUG is on: an error page shows code and settings to anyone who reaches "
                f"http://{options['host']}:{options['port']}/. To serve beyond this machine, "
                "set DEBUG=false and a SECRET_KEY (README, Settings)."
            )
        for option in ("port", "csms_port"):
            if not 1 <= options[option] <= 65535:
                raise CommandError(f"--{option.replace('_', '-')} must be within 1 and 65535.")
        control_port = options["csms_control_port"]
        if control_port is not None and not -1 <= control_port <= 65535:
            raise CommandError("--csms-control-port must be within -1 and 65535.")
        files_port = options["csms_files_port"]
        if files_port is not None and not 0 <= files_port <= 65535:
            raise CommandError("--csms-files-port must be within 0 and 65535.")
        if files_port is not None and options["demo"] and options["no_demo_operations"]:
            self.stderr.write(
                "--csms-files-port: the file server serves the demo operations: ignored "
                "with --no-demo-operations."
            )
        metrics_port = options["metrics_port"]
        if metrics_port is not None and not 1 <= metrics_port <= 65535:
            raise CommandError("--metrics-port must be within 1 and 65535.")
        run = RunOptions.from_settings(
            host=options["host"],
            port=options["port"],
            web=not options["no_web"],
            demo=options["demo"],
            demo_chargers=options["demo_chargers"],
            demo_share=0.5 if demo_share is None else demo_share,
            traffic=options["traffic"],
            traffic_seed=options["traffic_seed"],
            traffic_speed=options["traffic_speed"],
            traffic_start=traffic_start,
            traffic_duration=None if hours is None else hours * 3600.0,
            demo_operations=not options["no_demo_operations"],
            csms_url=options["csms_url"],
            csms_port=options["csms_port"],
            csms_control_port=control_port,
            csms_files_port=files_port or 0,
            shard=shard,
            shards=shards,
            migrate=not options["no_migrate"],
            only_ids=options["only"],
            metrics_port=metrics_port,
            metrics_bind=options["metrics_bind"],
            live_status=self.stdout.isatty(),
            status_seconds=options["status_every"],
            **({} if connect_rate is None else {"connect_rate": connect_rate}),
        )
        # (Migrating is the default: only --no-migrate can meet a database left behind.)
        check_database(migrated=options["no_migrate"], or_else="leave out --no-migrate")
        for warning in upkeep_warnings():
            self.stderr.write(warning)
        _mark_lost_scenario_runs()
        simulator = Simulator.for_process(
            run, write=lambda text: self.stdout.write(text, ending="")
        )
        try:
            simulator.run()
        except (MetricsServerError, StartError) as exc:
            raise CommandError(str(exc)) from None


def _mark_lost_scenario_runs() -> None:
    """Before the fleet is loaded: a scenario run whose process was killed is stored as an
    error and its temporary chargers deleted, or they would be loaded and connect now."""
    try:
        lost = ScenarioRun.objects.mark_stale()
    except DatabaseError:  # a database not migrated yet has no run to mark
        return
    if lost:
        log.info("%d scenario run(s) whose process stopped marked as errors", lost)
