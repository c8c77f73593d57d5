"""The CPU cost of one charger CALL on the send path, in one process, without sockets.

    .venv/bin/python bench/call_path.py [N]      (default 20000 CALLs a round)

One runtime charger (1 EVSE, in a transaction, the dashboard's frame log on) is attached to
a real `ChargePointClient` whose connection writes nothing (`send_now` takes the frame);
each CALL is a transaction MeterValues built by the core, queued in the outbox, checked
and framed by the client, and answered at once with a CALLRESULT fed to the client as the
connection would (`on_text_frame`): schema and range checks, the frame log, the metrics,
the outbox's settle. Prints the CPU time (process_time) per CALL of each of 9 rounds and
their median.

Like `steady_state.py`, nothing else shares the measurement (no CSMS, no event loop work
besides this), so two commits compare within a few per cent on a busy machine where
`fleet.py`'s CALLs per CPU-second swing by a third from run to run: run it from each
checkout (the working directory is the code measured).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path.cwd()
MEASURANDS = ["Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage"]


async def measure(count: int) -> list[float]:
    sys.path.insert(0, str(ROOT))
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

    charger = runtime_charger(
        "BENCH-1", "ws://127.0.0.1:1/ocpp", evses=1, listener=EventPublisher()
    )
    client = ChargePointClient(charger, Sink(), timeout=30)
    charger.attach(client)
    charger.boot = BootState.ACCEPTED

    def answer(payload: str) -> None:
        (unique_id,) = client._pending
        client.on_text_frame(f'[3,"{unique_id}",{payload}]'.encode())

    answers = {"StartTransaction": '{"transactionId": 1, "idTagInfo": {"status": "Accepted"}}'}
    charger.plug_in(1, COMPACT, soc=20)
    charger.start_transaction(1, "TAG")
    while client._pending:  # the status notifications and the start, in their order
        (action, _done, _deadline) = next(iter(client._pending.values()))
        answer(answers.get(action, "{}"))
    stamp = "2026-01-01T00:00:00.000Z"

    def one_round() -> float:
        started = time.process_time()
        for _ in range(count):
            charger.send_meter_values(1, SampleContext.PERIODIC, MEASURANDS, stamp)
            answer("{}")
        return (time.process_time() - started) / count * 1e6

    one_round()  # warm-up
    rounds = [one_round() for _ in range(9)]
    assert not charger.queue, "every CALL was answered"
    return rounds


def main(argv: Any = None) -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rounds = asyncio.run(measure(count))
    print(
        f"one MeterValues CALL and its answer: median {statistics.median(rounds):.2f} µs CPU "
        f"({', '.join(f'{r:.2f}' for r in rounds)})"
    )


if __name__ == "__main__":
    main()
