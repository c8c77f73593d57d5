"""`AnswersOwed`: the stdio server's input ends for the SDK only once every request read
before its end is answered or withdrawn (a piped script's requests are not cancelled)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import anyio
from mcp.shared.message import SessionMessage
from mcp.types import ErrorData, JSONRPCError, JSONRPCNotification, JSONRPCResponse

from api.mcp_owed import AnswersOwed


def request(id: object) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id, "method": "tools/list"})


def cancel(id: object) -> str:
    params = {"requestId": id, "reason": "no longer needed"}
    return json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params})


async def lines_of(texts: list[str]) -> AsyncIterator[str]:
    for text in texts:
        yield text


async def settled() -> None:
    """Let every task run until it waits on something this test has not done yet: nothing
    here waits on I/O, so a few passes of the loop are enough."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_the_input_ends_once_each_request_read_is_answered_or_withdrawn():
    texts = [request(1), request("1"), "", '{"jsonrpc": "2.0", "method": "ping"}', request(7)]
    texts += [request(1), cancel(7)]
    owed = AnswersOwed(lines_of(texts))
    sent, received = anyio.create_memory_object_stream[SessionMessage](10)
    answers = owed.watching(sent)
    read: list[str] = []

    async def read_all() -> None:
        async for line in owed:
            read.append(line)

    reader = asyncio.create_task(read_all())
    await settled()
    assert read == texts and not reader.done()  # ids 1 (twice) and "1" are owed
    await answers.send(SessionMessage(JSONRPCResponse(jsonrpc="2.0", id=1, result={})))
    await answers.send(SessionMessage(JSONRPCNotification(jsonrpc="2.0", method="x")))
    await settled()
    assert not reader.done()  # the string id "1" is another request, and 1 came twice
    error = ErrorData(code=-32602, message="Invalid params")
    await answers.send(SessionMessage(JSONRPCError(jsonrpc="2.0", id="1", error=error)))
    await settled()
    assert not reader.done()
    await answers.send(SessionMessage(JSONRPCResponse(jsonrpc="2.0", id=1, result={})))
    async with asyncio.timeout(10):  # a guard against a wait that never ends
        await reader
    # Everything written went on to the transport, as written.
    async with sent, received:
        went = [received.receive_nowait().message for _ in range(4)]
    assert [getattr(message, "id", "-") for message in went] == [1, "-", "1", 1]


async def test_input_that_sends_no_request_ends_at_once():
    owed = AnswersOwed(lines_of([cancel(3), '{"jsonrpc": "2.0", "method": "x"}', "{", "[1]"]))
    async with asyncio.timeout(10):
        assert len([line async for line in owed]) == 4
