"""Our hot-path text frames (and keepalive pings) are exactly what websockets' own parser
expects of a client."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from simulator.ocpp16.frames import (
    client_ping_frame,
    client_pong_frame,
    client_text_frame,
    ping_payload,
)


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


@pytest.mark.parametrize("length", [0, 4, 125])
@pytest.mark.parametrize(
    ("build", "opcode"), [(client_ping_frame, Opcode.PING), (client_pong_frame, Opcode.PONG)]
)
def test_a_ping_or_pong_is_websockets_own_byte_for_byte_with_the_same_key(
    length: int, build: Any, opcode: Opcode, monkeypatch: pytest.MonkeyPatch
) -> None:
    import websockets.frames

    payload = bytes((n * 13 + 1) % 256 for n in range(length))
    raw = build(payload)
    frame = parse_as_server(raw)
    assert (frame.opcode, frame.fin, frame.data) == (opcode, True, payload)
    monkeypatch.setattr(websockets.frames.secrets, "token_bytes", lambda n: raw[2:6])
    assert raw == Frame(opcode, payload).serialize(mask=True)


def test_a_ping_carries_at_most_125_bytes_and_its_payloads_differ() -> None:
    with pytest.raises(ValueError):
        client_ping_frame(bytes(126))
    with pytest.raises(ValueError):
        client_pong_frame(bytes(126))
    payloads = {ping_payload() for _ in range(2000)}
    assert len(payloads) > 1990 and {len(p) for p in payloads} == {4}


def test_each_frame_gets_its_own_masking_key() -> None:
    # Unpredictable keys: consecutive frames (also across a refill of the pool) differ.
    keys = set()
    for _ in range(3000):
        raw = client_text_frame(b'[2,"1","Heartbeat",{}]')
        keys.add(raw[2:6])
    assert len(keys) > 2990


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 400, 65535, 65536, 70_000])
def test_the_frame_is_websockets_own_byte_for_byte_with_the_same_key(
    length: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Header and key packed at once must give exactly the frame websockets would write.
    import websockets.frames

    payload = bytes((n * 11 + 5) % 256 for n in range(length))
    raw = client_text_frame(payload)
    at = 2 if length < 126 else 4 if length < 65536 else 10
    key = raw[at : at + 4]
    monkeypatch.setattr(websockets.frames.secrets, "token_bytes", lambda n: key)
    assert raw == Frame(Opcode.TEXT, payload).serialize(mask=True)


def test_masking_keys_come_from_os_urandom_in_bulk(monkeypatch: pytest.MonkeyPatch) -> None:
    from simulator.ocpp16 import frames

    drawn: list[int] = []
    pool = bytes(range(256)) * 16

    def urandom(size: int) -> bytes:
        drawn.append(size)
        return pool[:size]

    monkeypatch.setattr(frames.os, "urandom", urandom)
    frames._keys._keys.clear()  # the next frame refills the pool from the patched source
    keys = [client_text_frame(b"x")[2:6] for _ in range(1024)]
    assert drawn == [frames._POOL_BYTES]  # one system call for 1,024 keys
    assert sorted(keys) == sorted(pool[at : at + 4] for at in range(0, len(pool), 4))
    client_text_frame(b"x")
    assert drawn == [frames._POOL_BYTES] * 2  # used up: a fresh pool, never a key again


def test_a_forked_child_does_not_reuse_the_parents_keys() -> None:
    import os

    from simulator.ocpp16 import frames

    client_text_frame(b"x")  # the pool holds keys now
    assert frames._keys._keys
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, b"1" if not frames._keys._keys else b"0")
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
