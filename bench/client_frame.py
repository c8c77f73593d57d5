"""The CPU cost of framing one charge point text frame (`frames.client_text_frame`: header,
masking key, masked payload), which `bench/call_path.py` leaves out (its connection takes
the text as is).

    .venv/bin/python bench/client_frame.py [N]   (N: 200000)

A MeterValues CALL of about 400 bytes framed N times; prints the time per frame. For a
deterministic figure, run it under callgrind for two N and take the difference:
    PYTHONHASHSEED=0 valgrind --tool=callgrind .venv/bin/python bench/client_frame.py 10000
    (and 30000): per frame = (Ir(30000) - Ir(10000)) / 20000.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

from simulator.ocpp16.frames import client_text_frame

_VALUE = b'{"value":"1234.5","context":"Sample.Periodic","measurand":"Energy.Active.Import.Register","unit":"Wh"},'
PAYLOAD = (
    b'[2,"1234abcd5678-1","MeterValues",{"connectorId":1,"transactionId":1,"meterValue":'
    b'[{"timestamp":"2026-01-01T00:00:00.000Z","sampledValue":[' + _VALUE * 3 + b"{}]}]}]"
)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    frame = client_text_frame
    started = time.process_time()
    for _ in range(count):
        frame(PAYLOAD)
    per_frame = (time.process_time() - started) / count * 1e9
    print(f"{len(PAYLOAD)}-byte payload: {per_frame:.0f} ns CPU per frame")


if __name__ == "__main__":
    main()
