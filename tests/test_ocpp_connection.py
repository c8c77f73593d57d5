"""The connection reads the CSMS's plain text frames itself only where websockets would
read exactly the same frame, and leaves everything else to websockets.

Over a real loopback WebSocket; the server's frames are fed to the client connection's
`data_received` as the socket would deliver them, cut anywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from simulator.ocpp16.client import OcppConnection, connect

ANSWER_A = b'[3,"a-1",{}]'
ANSWER_B = b'[3,"a-2",{"status":"Accepted"}]' + b" " * 200  # a 16-bit length
# "ā" is C4 81 in UTF-8: cut after C4, the rest of this CALL looks like a frame of its own
# (0x81: FIN and text, then a 40-byte length, "(", and an answer-like payload).
CALL = ('[2,"c-1","DataTransfer",{"data":"ā(' + "[3 not a frame".ljust(40) + '"}]').encode()


def server_frame(opcode: Opcode, payload: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin).serialize(mask=False)


class Answers:
    """A text sink that takes answers (as the client does) and records them."""

    def __init__(self) -> None:
        self.taken: list[bytes] = []

    def __call__(self, data: bytes) -> bool:
        if data.startswith(b"[3"):
            self.taken.append(data)
            return True
        return False


async def idle(connection: ServerConnection) -> None:
    await connection.wait_closed()


@pytest.fixture
async def client() -> AsyncIterator[OcppConnection]:
    async with serve(idle, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(
            f"ws://127.0.0.1:{port}",
            create_connection=OcppConnection,
            compression=None,  # as the charger connects (`_open`)
            max_size=1000,
        ) as connection:
            assert isinstance(connection, OcppConnection)
            yield connection


async def test_answers_cut_anywhere_reach_the_sink_and_the_rest_reaches_websockets(
    client: OcppConnection,
) -> None:
    sink = client.text_sink = Answers()
    stream = (
        server_frame(Opcode.TEXT, ANSWER_A)
        + server_frame(Opcode.TEXT, CALL)
        + server_frame(Opcode.PING, b"ka")
        + server_frame(Opcode.TEXT, ANSWER_B)
    )
    for cut in range(len(stream) + 1):
        sink.taken.clear()
        client.data_received(stream[:cut])
        client.data_received(stream[cut:])
        assert sink.taken == [ANSWER_A, ANSWER_B], cut
        assert await client.recv() == CALL.decode()
    assert client.protocol.state is State.OPEN


async def test_a_chunk_of_answers_is_read_without_websockets_parser(
    client: OcppConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = client.text_sink = Answers()
    parsed: list[bytes] = []
    receive = client.protocol.receive_data

    def parse(data: bytes) -> None:
        parsed.append(data)
        receive(data)

    monkeypatch.setattr(client.protocol, "receive_data", parse)
    client.data_received(server_frame(Opcode.TEXT, ANSWER_A) + server_frame(Opcode.TEXT, ANSWER_B))
    assert (sink.taken, parsed) == ([ANSWER_A, ANSWER_B], [])
    # Behind a frame websockets holds half of, the next chunk is all websockets' to read.
    half = server_frame(Opcode.TEXT, CALL)
    client.data_received(half[:5])
    client.data_received(half[5:] + server_frame(Opcode.TEXT, ANSWER_A))
    assert sink.taken == [ANSWER_A, ANSWER_B, ANSWER_A]
    assert parsed == [half[:5], half[5:] + server_frame(Opcode.TEXT, ANSWER_A)]
    assert await client.recv() == CALL.decode()


async def test_a_fragmented_answer_is_websockets_message(client: OcppConnection) -> None:
    sink = client.text_sink = Answers()
    client.data_received(
        server_frame(Opcode.TEXT, ANSWER_A[:4], fin=False)
        + server_frame(Opcode.CONT, ANSWER_A[4:])
        + server_frame(Opcode.TEXT, ANSWER_B)
    )
    assert sink.taken == [ANSWER_B]
    assert await client.recv() == ANSWER_A.decode()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (Frame(Opcode.TEXT, ANSWER_A).serialize(mask=True), 1002),  # a server must not mask
        (server_frame(Opcode.TEXT, b'[3,"a-1",{}]' + b" " * 1000), 1009),  # over max_size
        (bytes((0x81 | 0x40, len(ANSWER_A))) + ANSWER_A, 1002),  # RSV1 without an extension
    ],
    # Named, not shown: the masked frame's key is random, and parallel runs must collect
    # the same test ids.
    ids=["masked", "over-max-size", "rsv1"],
)
async def test_frames_websockets_refuses_still_fail_the_connection(
    client: OcppConnection, frame: bytes, code: int
) -> None:
    sink = client.text_sink = Answers()
    client.data_received(frame)
    assert sink.taken == []
    assert client.protocol.state is State.CLOSING
    assert client.protocol.close_sent is not None
    assert client.protocol.close_sent.code == code


class Counting(Answers):
    """`Answers` that also counts every frame it is offered."""

    def __init__(self) -> None:
        super().__init__()
        self.offered: list[bytes] = []

    def __call__(self, data: bytes) -> bool:
        self.offered.append(data)
        return super().__call__(data)


async def test_a_chunk_of_one_frame_the_sink_declines_is_offered_once_then_websockets(
    client: OcppConnection,
) -> None:
    # The usual chunk (one whole frame under 126 bytes) is read without the loop: a frame
    # the sink does not take reaches websockets whole, whose parser offers it once more
    # (`process_event`), as for a frame read by `take_text_frames`.
    sink = client.text_sink = Counting()
    call = b'[2,"c-2","Reset",{"type":"Soft"}]'
    client.data_received(server_frame(Opcode.TEXT, call))
    assert sink.offered == [call, call]
    assert sink.taken == []
    assert await client.recv() == call.decode()
    client.data_received(server_frame(Opcode.TEXT, ANSWER_A))
    assert sink.offered == [call, call, ANSWER_A]
    assert sink.taken == [ANSWER_A]


@pytest.mark.parametrize("size", [0, 1, 9, 12, 125, 126])
async def test_small_frames_and_chunks_of_no_or_one_byte(client: OcppConnection, size: int) -> None:
    # 125: the largest frame of a 7-bit length (read inline); 126: the first of a 16-bit one.
    sink = client.text_sink = Counting()
    if size < len(ANSWER_A):
        text = b" " * size
    else:
        text = ANSWER_A[:-1] + b" " * (size - len(ANSWER_A)) + b"]"
    assert len(text) == size
    frame = server_frame(Opcode.TEXT, text)
    client.data_received(b"")
    client.data_received(frame[:1])
    client.data_received(frame[1:])
    client.data_received(b"")
    if text.startswith(b"[3"):
        assert sink.taken == [text]
    else:  # not an answer: websockets delivers it
        assert sink.taken == []
        assert await client.recv() == text.decode()
    assert client.protocol.state is State.OPEN
    client.data_received(frame)  # and the same in one chunk
    if text.startswith(b"[3"):
        assert sink.taken == [text, text]
    else:
        assert await client.recv() == text.decode()


async def test_one_small_frame_over_a_smaller_max_size_still_fails_with_1009(
    client: OcppConnection,
) -> None:
    sink = client.text_sink = Counting()
    client.protocol.max_message_size = len(ANSWER_A) - 1
    client.data_received(server_frame(Opcode.TEXT, ANSWER_A))
    assert sink.offered == []
    assert client.protocol.state is State.CLOSING
    assert client.protocol.close_sent is not None
    assert client.protocol.close_sent.code == 1009


async def test_one_frame_of_exactly_max_size_is_taken(client: OcppConnection) -> None:
    sink = client.text_sink = Counting()
    client.protocol.max_message_size = len(ANSWER_A)
    client.data_received(server_frame(Opcode.TEXT, ANSWER_A))
    assert sink.taken == [ANSWER_A]
    assert client.protocol.state is State.OPEN


async def test_a_16_bit_length_under_126_in_a_chunk_of_128_bytes_is_read_as_such(
    client: OcppConnection,
) -> None:
    # Not the minimal length encoding, still a frame (as websockets reads it): a chunk of
    # 2 + 126 bytes whose second byte is 126 is not a 126-byte frame of a 7-bit length.
    sink = client.text_sink = Counting()
    text = ANSWER_A[:-1] + b" " * (124 - len(ANSWER_A)) + b"]"
    client.data_received(bytes((0x81, 126, 0, 124)) + text)
    assert sink.offered == sink.taken == [text]
    assert client.protocol.state is State.OPEN
