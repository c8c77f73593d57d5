"""Running the CSMS as a process: shared by `manage.py runcsms` and `python -m simulator.csms`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from simulator.ocpp16.redaction import RedactSecrets, RedactWebSocketDebug

from .control import ControlServer, default_port, is_loopback
from .server import CentralSystem, restart_safe_first_id

# The bearer token the control endpoint asks for; from the environment, so that it shows
# neither in `ps` nor in a shell's history.
TOKEN_VARIABLE = "CHARGESIM_CSMS_CONTROL_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=9000, help="port (0 = any free port; default: 9000)"
    )
    parser.add_argument(
        "--boot-status",
        choices=("Accepted", "Pending", "Rejected"),
        default="Accepted",
        help="BootNotification answer (default: Accepted)",
    )
    parser.add_argument(
        "--interval",
        type=int,
        default=300,
        help="BootNotification interval: heartbeat interval, or retry interval if not "
        "Accepted (seconds; default: 300)",
    )
    parser.add_argument(
        "--password",
        action="append",
        default=[],
        metavar="CP_ID=SECRET",
        help="require HTTP Basic auth for this charge point (repeatable); an AuthorizationKey"
        " this CSMS sets and the charger accepts replaces it",
    )
    parser.add_argument(
        "--require-known",
        action="store_true",
        help="refuse (HTTP 404) charge point ids not given with --password",
    )
    parser.add_argument(
        "--no-validate",
        action="store_true",
        help="skip JSON schema checks (benchmarks: keep the CSMS from being the bottleneck)",
    )
    parser.add_argument(
        "--control-port",
        type=int,
        help="port of the HTTP control endpoint that makes the CSMS act and sets how it "
        "answers (scenarios' ${csms_control}; 0 = any free port; default: --port + 1, or "
        "any free port when that one is taken)",
    )
    parser.add_argument(
        "--control-host",
        default="127.0.0.1",
        help="address of the control endpoint (loopback unless --control-allow-remote; "
        "default: 127.0.0.1)",
    )
    parser.add_argument(
        "--control-allow-remote",
        action="store_true",
        help=f"let the control endpoint listen beyond loopback (needs {TOKEN_VARIABLE})",
    )
    parser.add_argument("--no-control", action="store_true", help="no control endpoint")


def build(options: dict[str, Any]) -> CentralSystem:
    # A long-running process has nobody to read the in-memory log: frames go to the logger.
    csms = CentralSystem(
        keep_log=False,
        first_transaction_id=restart_safe_first_id(),
        boot_status=options["boot_status"],
        boot_interval=options["interval"],
        validate_messages=not options["no_validate"],
    )
    for item in options["password"]:
        cp_id, sep, secret = item.partition("=")
        if not sep or not cp_id:
            raise ValueError(f"--password wants CP_ID=SECRET, got {item!r}")
        csms.passwords[cp_id] = secret
    csms.require_known = options["require_known"]
    return csms


@dataclass(frozen=True)
class Control:
    """Where the control endpoint is to listen."""

    server: ControlServer
    host: str
    port: int
    or_any: bool  # the port was not asked for: take any free one if it is taken


def build_control(options: dict[str, Any], csms: CentralSystem) -> Control | None:
    """The control endpoint the options ask for (None with --no-control); ValueError when
    it would listen beyond loopback without being allowed to and without a token."""
    if options.get("no_control"):
        return None
    host = options.get("control_host", "127.0.0.1")
    allow_remote = bool(options.get("control_allow_remote"))
    token = os.environ.get(TOKEN_VARIABLE) or None
    if not is_loopback(host):
        if not allow_remote:
            raise ValueError(
                f"--control-host {host} is not loopback: add --control-allow-remote "
                f"(and set {TOKEN_VARIABLE}) to allow it"
            )
        if token is None:
            raise ValueError(f"--control-allow-remote needs a token in {TOKEN_VARIABLE}")
    server = ControlServer(csms, allow_remote=allow_remote, token=token)
    port = options.get("control_port")
    if port is None:
        return Control(server, host, default_port(int(options["port"])), or_any=True)
    if not 0 <= port <= 65535:
        raise ValueError(f"--control-port must be within 0 and 65535, got {port}")
    return Control(server, host, port, or_any=False)


def configure_logging(verbosity: int) -> None:
    """0: warnings only; 1: connections and every frame; 2+: websockets' own debug too."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    level = logging.WARNING if verbosity <= 0 else logging.INFO
    for name in ("simulator.csms", "simulator.csms.frames"):
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).addFilter(RedactSecrets())  # no AuthorizationKey in a line
    websockets = logging.getLogger("simulator.csms.websockets")
    websockets.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    # Its debug shows each charger's Basic credentials and each frame, unredacted.
    websockets.addFilter(RedactWebSocketDebug())


class CannotListen(Exception):
    """A port the CSMS or its control endpoint cannot listen on, said in one line."""

    def __init__(self, option: str, host: str, port: int, exc: OSError) -> None:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        super().__init__(f"{option} {port}: cannot listen on {host}:{port} ({reason})")


async def run_until_stopped(
    csms: CentralSystem, host: str, port: int, control: Control | None = None
) -> None:
    """Serve until SIGINT/SIGTERM, then close every connection cleanly; CannotListen when
    a port is taken (it was asyncio's traceback)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available off the main thread or on Windows: Ctrl-C then arrives as
        # KeyboardInterrupt, which the callers catch.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await csms.start(host=host, port=port)
    except OSError as exc:
        raise CannotListen("--port", host, port, exc) from None
    print(f"CSMS listening on {csms.url}/<charge point id> (Ctrl-C to stop)", flush=True)
    try:
        if control is not None:
            try:
                await control.server.start(control.host, control.port, or_any=control.or_any)
            except OSError as exc:
                raise CannotListen("--control-port", control.host, control.port, exc) from None
            print(f"CSMS control on {control.server.url} (scenarios' csms_control)", flush=True)
        await stop.wait()
    finally:
        if control is not None:
            await control.server.stop()
        await csms.stop()
        print("CSMS stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.csms", description="ChargeSim's built-in OCPP 1.6J CSMS"
    )
    add_arguments(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="do not log every frame")
    args = parser.parse_args(argv)
    configure_logging(0 if args.quiet else 1)
    try:
        csms = build(vars(args))
        control = build_control(vars(args), csms)
    except ValueError as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(run_until_stopped(csms, args.host, args.port, control))
        except CannotListen as exc:
            parser.exit(1, f"{parser.prog}: {exc}\n")
    return 0
