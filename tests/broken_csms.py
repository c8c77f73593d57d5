"""A deliberately broken built-in CSMS: one handler wrong, the rest as usual (a test double).

Issue 16 wants a broken CSMS handler to fail the library case aimed at it. Each kind below
breaks one handler the way real CSMSs get it wrong, and names the library cases
(`scenarios/library/<name>.yaml`) that must fail against it:

- ``start-transaction-invalid``: StartTransaction is answered Invalid for every idTag
  (a CSMS that looks the tag up in the wrong table);
- ``silent-heartbeat``: Heartbeat is never answered (a CSMS whose handler swallows it);
- ``zero-heartbeat-interval``: every BootNotification answer has an interval of 0 (a
  CSMS that sends an unset setting), Pending and Rejected ones too;
- ``closes-instead-of-answering``: the first MeterValues is answered by closing the
  connection (a CSMS whose handler crashes and takes the socket with it).

`python -m tests.broken_csms KIND [--port P] [--control-port C]` serves one, with its
control endpoint, until Ctrl-C; it prints both URLs, for
`runscenario --csms-url WS --var csms_control=HTTP scenarios/library/CASE.yaml`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action

from simulator.csms import CALL, CentralSystem, CSMSConnection
from simulator.csms.control import ControlServer
from simulator.csms.run import Control, run_until_stopped
from tests.process import ROOT


class InvalidStart(CSMSConnection):
    @on(Action.start_transaction)
    def on_start_transaction(self, **fields: Any) -> call_result.StartTransaction:
        answer = super().on_start_transaction(**fields)
        return call_result.StartTransaction(
            transaction_id=answer.transaction_id, id_tag_info=IdTagInfo(status="Invalid")
        )


class SilentHeartbeat(CSMSConnection):
    async def _route_call(self, raw: str, unique_id: str | None, action: str, payload: Any) -> None:
        if action != "Heartbeat":
            await super()._route_call(raw, unique_id, action, payload)
            return
        # Seen and logged like any CALL, then dropped: the charger waits for an answer.
        self.csms.counts[action] += 1
        self.csms._record(self, "in", CALL, unique_id, action, payload, raw)


class ZeroHeartbeatInterval(CSMSConnection):
    @on(Action.boot_notification)
    def on_boot_notification(self, **fields: Any) -> call_result.BootNotification:
        answer = super().on_boot_notification(**fields)
        return call_result.BootNotification(
            current_time=answer.current_time, interval=0, status=answer.status
        )


class ClosesInsteadOfAnswering(CSMSConnection):
    """Closes the connection instead of answering the first MeterValues (of the process:
    the charger reconnects and sends it again, and that and the rest are answered)."""

    closed: ClassVar[list[str]] = []  # the unique id of the CALL it closed on

    async def _route_call(self, raw: str, unique_id: str | None, action: str, payload: Any) -> None:
        if action != "MeterValues" or self.closed:
            await super()._route_call(raw, unique_id, action, payload)
            return
        self.closed.append(str(unique_id))
        self.csms.counts[action] += 1
        self.csms._record(self, "in", CALL, unique_id, action, payload, raw)
        await self.websocket.close(1011, "going away")


# kind -> (connection class, the library cases it must fail)
KINDS: dict[str, tuple[type[CSMSConnection], tuple[str, ...]]] = {
    "start-transaction-invalid": (InvalidStart, ("auth-accepted-tag-charges",)),
    "silent-heartbeat": (SilentHeartbeat, ("heartbeat-answered",)),
    "zero-heartbeat-interval": (
        ZeroHeartbeatInterval,
        ("boot-heartbeat-interval", "boot-pending-then-accepted", "boot-rejected"),
    ),
    "closes-instead-of-answering": (ClosesInsteadOfAnswering, ("meter-values-answered",)),
}


def broken_csms(kind: str, **options: Any) -> CentralSystem:
    """A CentralSystem (not started) with that kind's handler broken."""
    try:
        connection_class = KINDS[kind][0]
    except KeyError:
        raise ValueError(f"no broken kind {kind!r}; kinds: {', '.join(KINDS)}") from None
    csms = CentralSystem(**options)
    csms.connection_class = connection_class
    return csms


@contextlib.asynccontextmanager
async def running_broken_csms(
    kind: str, **options: Any
) -> AsyncIterator[tuple[CentralSystem, ControlServer]]:
    """That broken CSMS and its control endpoint on free loopback ports."""
    csms = broken_csms(kind, **options)
    await csms.start(host="127.0.0.1", port=0)
    control = ControlServer(csms)
    try:
        await control.start(host="127.0.0.1", port=0)
        yield csms, control
    finally:
        await control.stop()
        await csms.stop()


@contextlib.contextmanager
def broken_csms_process(kind: str) -> Iterator[tuple[str, str]]:
    """`python -m tests.broken_csms KIND`: its CSMS URL and its control endpoint's."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.broken_csms", kind],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        # A process that never prints fails the test through pytest-timeout.
        text = process.stdout.readline() + process.stdout.readline()
        ws = re.search(r"listening on (ws://\S+?)/<", text)
        control = re.search(r"control on (http://\S+)", text)
        assert ws and control, text
        yield ws.group(1), control.group(1)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.broken_csms")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    args = parser.parse_args(argv)
    csms = broken_csms(args.kind, keep_log=False)
    control = Control(ControlServer(csms), "127.0.0.1", args.control_port, or_any=False)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_until_stopped(csms, "127.0.0.1", args.port, control))
    return 0


if __name__ == "__main__":
    sys.exit(main())
