"""A minimal OCPP 1.6J central system for load tests: answers directly, counts, measures.

Not the built-in CSMS (`simulator.csms`): that one goes through the `ocpp` library
(dataclasses, case conversion, jsonschema) at a few hundred µs a message, which would make
the CSMS, not the simulator, the bottleneck of a fleet benchmark. This one parses each frame
once with orjson and answers BootNotification, StatusNotification, Heartbeat, MeterValues,
Authorize, StartTransaction, StopTransaction, DataTransfer and SecurityEventNotification
with fixed payloads.

Run by `bench/fleet.py` as a child process and driven over stdin/stdout, one JSON object a
line, one reply line per command:

    {"cmd": "status"}                         counters and boot progress
    {"cmd": "expect", "n": N, "connectors": 1}
                                              a charger counts as booted once its
                                              BootNotification was Accepted and connectors
                                              0..connectors reported Available; the moment
                                              the count reaches N is kept (all_booted_at)
    {"cmd": "remote_start", "spread": 1.0, "connectors": 1}
                                              RemoteStartTransaction to connectors
                                              1..connectors of every booted charger, spread
                                              evenly over `spread` seconds (each charger's
                                              connectors a spread / connectors apart); the
                                              latency is measured until the StartTransaction
                                              of that connector arrives
    {"cmd": "latencies"}                      RemoteStart -> StartTransaction percentiles
    {"cmd": "timeline"}                       charger CALLs per monotonic second
    {"cmd": "handshakes"}                     WebSocket connections accepted: the most in
                                              any 1 s window, and the first and last instant
    {"cmd": "boot_times", "prefix": "P"}      of the chargers whose id starts with P: how
                                              many connected, and the moment each booted
                                              (BootNotification Accepted, connectors
                                              Available), sorted
    {"cmd": "quit"}

Times are `time.monotonic()` (CLOCK_MONOTONIC: comparable between processes on Linux).
The first line printed is {"event": "listening", "port": P}. Binds 127.0.0.1 by default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import math
import resource
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

CALL, CALLRESULT, CALLERROR = 2, 3, 4


def now_iso() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def most_within(times: list[float], window: float) -> int:
    """The most of these sorted instants that fall within any `window` seconds."""
    most = start = 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class ChargerState:
    __slots__ = (
        "available",
        "boot_accepted",
        "booted",
        "booted_at",
        "last_register",
        "rs_sent_at",
        "rs_uids",
        "started",
        "ws",
    )

    def __init__(self) -> None:
        self.ws: ServerConnection | None = None
        self.boot_accepted = False
        self.available: set[int] = set()
        self.booted = False
        self.booted_at: float | None = None
        self.rs_uids: set[str] = set()  # our RemoteStartTransactions not yet answered
        self.rs_sent_at: dict[int, float] = {}  # by connector
        self.started: set[int] = set()  # connectors whose StartTransaction arrived
        self.last_register: dict[int, float] = {}  # by connector: a register never goes back


class LoadCSMS:
    def __init__(self, heartbeat_interval: int = 300) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.chargers: dict[str, ChargerState] = {}
        self.expect = 0
        self.expect_connectors = 1
        self.booted = 0
        self.first_connect_at: float | None = None
        self.all_booted_at: float | None = None
        self.open = 0
        self.connects = 0
        self.connect_times: list[float] = []  # each accepted connection's instant, in order
        self.calls_in = 0
        self.frames_in = 0
        self.frames_out = 0
        self.by_action: Counter[str] = Counter()
        self.per_second: Counter[int] = Counter()  # charger CALLs by monotonic second
        self.errors: Counter[str] = Counter()
        self.next_tx = itertools.count(1)
        self.rs_sent = 0
        self.rs_accepted = 0
        self.rs_rejected = 0
        self.latencies: list[float] = []
        self.started_unprompted = 0
        self._rs_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- websocket side ----------------------------------------------------------------------

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        cp_id = unquote(urlsplit(ws.request.path).path.rstrip("/").rpartition("/")[2])
        state = self.chargers.get(cp_id)
        if state is None:
            state = self.chargers[cp_id] = ChargerState()
        elif state.ws is not None:
            self.errors["replaced connection"] += 1
        if self.first_connect_at is None:
            self.first_connect_at = time.monotonic()
        state.ws = ws
        self.open += 1
        self.connects += 1
        self.connect_times.append(time.monotonic())
        try:
            async for raw in ws:
                self.frames_in += 1
                try:
                    message = orjson.loads(raw)
                    kind = message[0]
                except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
                    self.errors["malformed frame"] += 1
                    continue
                if kind == CALL:
                    await self._on_call(cp_id, state, ws, message)
                elif kind == CALLRESULT:
                    self._on_result(state, message)
                elif kind == CALLERROR:
                    self.errors[f"CALLERROR from charger: {message[2]}"] += 1
                else:
                    self.errors["malformed frame"] += 1
        except ConnectionClosed:
            pass
        finally:
            self.open -= 1
            if state.ws is ws:
                state.ws = None
                if self.all_booted_at is not None:
                    self.errors["disconnect after boot"] += 1

    async def _on_call(
        self, cp_id: str, state: ChargerState, ws: ServerConnection, message: list[Any]
    ) -> None:
        try:
            _, unique_id, action, payload = message
        except ValueError:
            self.errors["malformed CALL"] += 1
            return
        self.calls_in += 1
        self.by_action[action] += 1
        self.per_second[int(time.monotonic())] += 1
        answer: dict[str, Any]
        if action == "MeterValues":
            self._check_meter_values(state, payload)
            answer = {}
        elif action == "Heartbeat":
            answer = {"currentTime": now_iso()}
        elif action == "StatusNotification":
            answer = {}
            if payload.get("status") == "Available":
                state.available.add(payload.get("connectorId", -1))
                self._check_booted(state)
            elif payload.get("errorCode", "NoError") != "NoError":
                self.errors[f"status {payload.get('status')} {payload.get('errorCode')}"] += 1
        elif action == "StartTransaction":
            answer = {"transactionId": next(self.next_tx), "idTagInfo": {"status": "Accepted"}}
            connector = payload.get("connectorId")
            sent_at = state.rs_sent_at.get(connector)
            if sent_at is not None and connector not in state.started:
                state.started.add(connector)
                self.latencies.append(time.monotonic() - sent_at)
            else:
                self.started_unprompted += 1
        elif action == "BootNotification":
            if state.boot_accepted:
                self.errors["BootNotification again (reboot)"] += 1
            state.boot_accepted = True
            answer = {
                "status": "Accepted",
                "currentTime": now_iso(),
                "interval": self.heartbeat_interval,
            }
        elif action == "Authorize" or action == "StopTransaction":
            answer = {"idTagInfo": {"status": "Accepted"}}
        elif action == "DataTransfer":
            answer = {"status": "UnknownVendorId"}
        elif action == "SecurityEventNotification":
            # A charger reports its firmware's startup once loaded (1.6 security whitepaper).
            answer = {}
        else:
            self.errors[f"unexpected CALL {action}"] += 1
            await ws.send(orjson.dumps([CALLERROR, unique_id, "NotImplemented", "", {}]), text=True)
            self.frames_out += 1
            return
        await ws.send(orjson.dumps([CALLRESULT, unique_id, answer]), text=True)
        self.frames_out += 1

    def _check_meter_values(self, state: ChargerState, payload: dict[str, Any]) -> None:
        """Cheap sanity checks: a transaction id the CSMS gave, a register that never
        goes back."""
        if payload.get("transactionId") == -1:
            self.errors["MeterValues with transactionId -1"] += 1
        connector = payload.get("connectorId", 0)
        for value in payload.get("meterValue", ()):
            for sampled in value.get("sampledValue", ()):
                if sampled.get("measurand") == "Energy.Active.Import.Register":
                    register = float(sampled["value"])
                    if register < state.last_register.get(connector, -1.0):
                        self.errors["meter register went back"] += 1
                    state.last_register[connector] = register

    def _check_booted(self, state: ChargerState) -> None:
        if state.booted or not state.boot_accepted:
            return
        if all(c in state.available for c in range(self.expect_connectors + 1)):
            state.booted = True
            state.booted_at = time.monotonic()
            self.booted += 1
            if self.expect and self.booted >= self.expect and self.all_booted_at is None:
                self.all_booted_at = time.monotonic()

    def _on_result(self, state: ChargerState, message: list[Any]) -> None:
        if len(message) < 3 or message[1] not in state.rs_uids:
            self.errors["answer to an unknown call"] += 1
            return
        state.rs_uids.discard(message[1])
        status = message[2].get("status") if isinstance(message[2], dict) else None
        if status == "Accepted":
            self.rs_accepted += 1
        else:
            self.rs_rejected += 1
            self.errors[f"RemoteStartTransaction {status}"] += 1

    # -- experiments -------------------------------------------------------------------------

    def remote_start(self, spread: float, id_tag: str, connectors: int = 1) -> int:
        chargers = [s for s in self.chargers.values() if s.booted and s.ws is not None]
        # Connector-major: every charger's connector 1, then every connector 2, ...
        targets = [(s, c) for c in range(1, connectors + 1) for s in chargers]
        loop = asyncio.get_running_loop()
        step = spread / len(targets) if targets else 0.0
        for index, (state, connector) in enumerate(targets):
            loop.call_later(index * step, self._fire_remote_start, state, id_tag, connector)
        return len(targets)

    def _fire_remote_start(self, state: ChargerState, id_tag: str, connector: int) -> None:
        ws = state.ws
        if ws is None:
            self.errors["RemoteStart target gone"] += 1
            return
        uid = f"rs-{next(self._rs_ids)}"
        state.rs_uids.add(uid)
        frame = orjson.dumps(
            [CALL, uid, "RemoteStartTransaction", {"idTag": id_tag, "connectorId": connector}]
        )
        state.rs_sent_at[connector] = time.monotonic()
        self.rs_sent += 1
        self.frames_out += 1
        task = asyncio.ensure_future(ws.send(frame, text=True))
        self._tasks.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors["RemoteStart send failed"] += 1

    # -- control channel ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "now": time.monotonic(),
            "open": self.open,
            "connects": self.connects,
            "first_connect_at": self.first_connect_at,
            "booted": self.booted,
            "all_booted_at": self.all_booted_at,
            "calls_in": self.calls_in,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "by_action": dict(self.by_action),
            "errors": dict(self.errors),
            "rs_sent": self.rs_sent,
            "rs_accepted": self.rs_accepted,
            "rs_rejected": self.rs_rejected,
            "started": len(self.latencies),
            "started_unprompted": self.started_unprompted,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
        }

    def latency_summary(self) -> dict[str, Any]:
        values = sorted(v * 1000 for v in self.latencies)
        return {
            "n": len(values),
            "missing": self.rs_sent - len(values),
            "p50_ms": percentile(values, 50),
            "p90_ms": percentile(values, 90),
            "p99_ms": percentile(values, 99),
            "max_ms": values[-1] if values else None,
        }

    def command(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "status":
            return self.status()
        if cmd == "expect":
            self.expect = int(request["n"])
            self.expect_connectors = int(request.get("connectors", 1))
            return {"ok": True}
        if cmd == "remote_start":
            spread = float(request.get("spread", 1.0))
            connectors = int(request.get("connectors", 1))
            id_tag = request.get("id_tag", "BENCH")
            return {"scheduled": self.remote_start(spread, id_tag, connectors)}
        if cmd == "timeline":
            return {"per_second": {str(k): v for k, v in sorted(self.per_second.items())}}
        if cmd == "latencies":
            return self.latency_summary()
        if cmd == "handshakes":
            times = self.connect_times
            return {
                "n": len(times),
                "peak_per_second": most_within(times, 1.0),
                "first_at": times[0] if times else None,
                "last_at": times[-1] if times else None,
            }
        if cmd == "boot_times":
            prefix = str(request.get("prefix", ""))
            mine = [s for cp_id, s in self.chargers.items() if cp_id.startswith(prefix)]
            return {
                "connected": len(mine),
                "booted_at": sorted(s.booted_at for s in mine if s.booted_at is not None),
            }
        return {"error": f"unknown command {cmd!r}"}


def reply(data: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(data) + b"\n")
    sys.stdout.buffer.flush()


async def main_async(args: argparse.Namespace) -> None:
    csms = LoadCSMS(heartbeat_interval=args.heartbeat_interval)
    server = await serve(
        csms.handle,
        args.host,
        args.port,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        compression=None,
        # The chargers ping (WebSocketPingInterval); this CSMS only with --ping-interval, as
        # many real ones do (websockets' default is every 20 s).
        ping_interval=args.ping_interval or None,
        max_size=2**20,
        close_timeout=2,
        backlog=4096,
    )
    port = server.sockets[0].getsockname()[1]
    reply({"event": "listening", "port": port, "url": f"ws://{args.host}:{port}"})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while True:
            line = await reader.readline()
            if not line:
                break  # the parent went away
            try:
                request = orjson.loads(line)
            except orjson.JSONDecodeError:
                reply({"error": "not JSON"})
                continue
            if request.get("cmd") == "quit":
                reply({"ok": True})
                break
            reply(csms.command(request))
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument(
        "--heartbeat-interval", type=int, default=300, help="BootNotification interval (s)"
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=0.0,
        help="ping every connection every this many seconds (0: never)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
