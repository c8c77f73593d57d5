"""Running the CSMS as a process: shared by `manage.py runcsms` and `python -m simulator.csms`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from simulator.ocpp16.redaction import RedactSecrets

from .server import CentralSystem


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9000, help="port (0 = any free port)")
    parser.add_argument(
        "--boot-status",
        choices=("Accepted", "Pending", "Rejected"),
        default="Accepted",
        help="BootNotification answer",
    )
    parser.add_argument(
        "--interval",
        type=int,
        default=300,
        help="BootNotification interval: heartbeat interval, or retry interval if not Accepted",
    )
    parser.add_argument(
        "--password",
        action="append",
        default=[],
        metavar="CP_ID=SECRET",
        help="require HTTP Basic auth for this charge point (repeatable)",
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


def build(options: dict[str, Any]) -> CentralSystem:
    # A long-running process has nobody to read the in-memory log: frames go to the logger.
    csms = CentralSystem(
        keep_log=False,
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
    logging.getLogger("simulator.csms.websockets").setLevel(
        logging.DEBUG if verbosity >= 2 else logging.WARNING
    )


async def run_until_stopped(csms: CentralSystem, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM, then close every connection cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available off the main thread or on Windows: Ctrl-C then arrives as
        # KeyboardInterrupt, which the callers catch.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    await csms.start(host=host, port=port)
    print(f"CSMS listening on {csms.url}/<charge point id> (Ctrl-C to stop)", flush=True)
    try:
        await stop.wait()
    finally:
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
    except ValueError as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_until_stopped(csms, args.host, args.port))
    return 0
