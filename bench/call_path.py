"""The CPU cost of one charger CALL on the send path, in one process, without sockets.

    .venv/bin/python bench/call_path.py [N] [--stored-log] [--durable] [--socket]   (N: 20000)

One runtime charger (1 EVSE, in a transaction, the dashboard's frame log on) is attached to
a real `ChargePointClient` whose connection writes nothing (`send_now` takes the frame);
each CALL is a transaction MeterValues built by the core, queued in the outbox, checked
and framed by the client, and answered at once with a CALLRESULT fed to the client as the
connection would (`on_text_frame`): schema and range checks, the frame log, the metrics,
the outbox's settle. Prints the CPU time (process_time) per CALL of each of 9 rounds and
their median.

`--socket` feeds each answer as the socket would: a server's text frame handed to a real
`OcppConnection`'s `data_received` (an open websockets protocol, a transport that writes
nothing), so the framing (`take_text_frames`, `_between_frames`) is measured too.

`--stored-log` puts a `Checkpointer` (the stored message log on) in front of the dashboard's
log, as the worker chains its listeners, and takes its frames every 1,000 CALLs as a full
checkpoint would (writing them is the writer thread's part: `bench/message_log.py`).

`--durable` makes each MeterValues a durable outbox message, as in the worker: 200 are
queued, the `Checkpointer` takes them as one batch, the writer's rows are made
(`OutboxMessage.objects.add` / `remove` without the SQL statement: `execute_rows` and
`execute_values` do nothing here, `bench/message_log.py` measures writing), and the batch
is settled (`written`), which sends the first; each answer sends the next.

Like `steady_state.py`, nothing else shares the measurement (no CSMS, no event loop work
besides this), so two commits compare within a few per cent on a busy machine where
`fleet.py`'s CALLs per CPU-second swing by a third from run to run: run it from each
checkout (the working directory is the code measured).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path.cwd()
BATCH = 200  # --durable: MeterValues per group commit (a tick's worth of a fleet's)
MEASURANDS = ["Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage"]


async def measure(
    count: int, stored_log: bool, durable: bool = False, socket: bool = False
) -> list[float]:
    sys.path.insert(0, str(ROOT))
    listener: Any
    # Django's apps for every run: the client's imports read models now, not only the
    # stored log's and the durable outbox's.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")
    import django

    django.setup()
    if stored_log or durable:
        from simulator.runtime.persistence import Checkpointer
    from websockets.client import ClientProtocol
    from websockets.protocol import OPEN
    from websockets.server import ServerProtocol
    from websockets.uri import parse_uri

    from simulator.core.charge_point import BootState
    from simulator.core.protocol import SampleContext
    from simulator.ocpp16.client import ChargePointClient, OcppConnection
    from simulator.runtime.events import EventPublisher
    from tests.engine import COMPACT, runtime_charger

    class Sink(OcppConnection):
        """A connection without a socket: every frame is written at once."""

        def __init__(self) -> None:
            pass

        def send_now(self, text: str) -> bool:
            return True

    class Framed(Sink):
        """An open connection whose frames come through `data_received` (the socket's
        chunks) and whose writes go nowhere."""

        def __init__(self) -> None:
            protocol = ClientProtocol(parse_uri("ws://127.0.0.1:1/ocpp"), max_size=2**20)
            request = protocol.connect()
            protocol.send_request(request)
            protocol.receive_data(ServerProtocol().accept(request).serialize())
            assert protocol.state is OPEN
            protocol.events_received()
            protocol.data_to_send()
            OcppConnection.__init__(self, protocol)
            self.connection_made(Transport())

    def server_frame(text: bytes) -> bytes:
        """A server's text frame (unmasked), built cheaply: the bench measures reading it."""
        if len(text) < 126:
            return bytes((0x81, len(text))) + text
        return bytes((0x81, 126, len(text) >> 8, len(text) & 0xFF)) + text

    class Transport(asyncio.Transport):
        def write(self, data: Any) -> None:
            pass

        def set_write_buffer_limits(self, high: Any = None, low: Any = None) -> None:
            pass

    checkpointer = None
    listener = EventPublisher()
    if stored_log or durable:
        listener = checkpointer = Checkpointer(downstream=listener)
        if not stored_log:
            checkpointer._frames = None  # the stored message log off
    charger = runtime_charger("BENCH-1", "ws://127.0.0.1:1/ocpp", evses=1, listener=listener)
    if stored_log or durable:
        charger.spec.db_id = 1  # a charger from the database: its frames are stored
    manager: Any = None
    if durable:
        import chargers.models
        from chargers.models import OutboxMessage

        chargers.models.execute_rows = lambda sql, rows, types: None
        chargers.models.execute_values = lambda sql, values, types: None
        manager = OutboxMessage.objects
    connection = Framed() if socket else Sink()
    client = ChargePointClient(charger, connection, timeout=30)
    if socket:
        connection.text_sink = client.on_text_frame
    charger.attach(client)
    charger.boot = BootState.ACCEPTED

    def answer(payload: str) -> None:
        (unique_id,) = client._pending
        text = f'[3,"{unique_id}",{payload}]'.encode()
        if socket:
            connection.data_received(server_frame(text))
        else:
            client.on_text_frame(text)

    answers = {"StartTransaction": '{"transactionId": 1, "idTagInfo": {"status": "Accepted"}}'}
    charger.plug_in(1, COMPACT, soc=20)
    charger.start_transaction(1, "TAG")
    while client._pending:  # the status notifications and the start, in their order
        (action, _done, _deadline) = next(iter(client._pending.values()))
        answer(answers.get(action, "{}"))
    stamp = "2026-01-01T00:00:00.000Z"

    if durable:
        assert checkpointer is not None
        charger.queue.sink = checkpointer.sink_for(charger)

    def one_round() -> float:
        started = time.process_time()
        if manager is not None:
            assert checkpointer is not None
            for _ in range(count // BATCH):
                for _ in range(BATCH):
                    charger.send_meter_values(1, SampleContext.PERIODIC, MEASURANDS, stamp)
                # The group commit: take, make the rows, settle (which sends the first).
                batch = checkpointer.take(full=False)
                manager.add(batch.outbox_new)
                manager.remove(batch.outbox_gone)
                checkpointer.written(batch)
                for _ in range(BATCH):
                    answer("{}")
            return (time.process_time() - started) / count * 1e6
        for n in range(count):
            charger.send_meter_values(1, SampleContext.PERIODIC, MEASURANDS, stamp)
            answer("{}")
            if checkpointer is not None and n % 1000 == 999:
                checkpointer.take(full=True)
        return (time.process_time() - started) / count * 1e6

    one_round()  # warm-up
    rounds = [one_round() for _ in range(9)]
    assert not charger.queue, "every CALL was answered"
    return rounds


def main(argv: Any = None) -> None:
    args = sys.argv[1:]
    stored_log = "--stored-log" in args
    durable = "--durable" in args
    socket = "--socket" in args
    args = [a for a in args if a not in ("--stored-log", "--durable", "--socket")]
    count = int(args[0]) if args else 20_000
    count = count - count % BATCH if durable else count
    rounds = asyncio.run(measure(count, stored_log, durable, socket))
    print(
        f"one MeterValues CALL and its answer: median {statistics.median(rounds):.2f} µs CPU "
        f"({', '.join(f'{r:.2f}' for r in rounds)})"
    )


if __name__ == "__main__":
    main()
