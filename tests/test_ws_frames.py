"""Our hot-path text frames are exactly what websockets' own parser expects of a client."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from simulator.ocpp16.frames import client_text_frame


def parse_as_server(raw: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=True)  # a server requires masked frames
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("the frame is incomplete")


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_websockets_reads_back_the_payload_of_every_length_class(length: int) -> None:
    payload = bytes((n * 7 + 3) % 256 for n in range(length))
    raw = client_text_frame(payload)
    frame = parse_as_server(raw)
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)
    header = 2 + (0 if length < 126 else 2 if length < 65536 else 8)
    assert len(raw) == header + 4 + length  # header, masking key, payload: nothing else


def test_each_frame_gets_its_own_masking_key() -> None:
    # Unpredictable keys: consecutive frames (also across a refill of the pool) differ.
    keys = set()
    for _ in range(3000):
        raw = client_text_frame(b'[2,"1","Heartbeat",{}]')
        keys.add(raw[2:6])
    assert len(keys) > 2990
