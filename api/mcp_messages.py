"""The MCP transports' JSON-RPC messages, each key of an object once.

The SDK reads a message as any JSON parser does: a key given twice keeps its last value,
so `{"name": "plug_in", ..., "name": "stop"}` ran stop, and a client whose request was
assembled from two sources never learnt which of its values was used. The REST API
refuses such a body with a 422 naming the key (`api.request_bodies`); both transports,
streamable HTTP (`api.mcp_http`) and stdio (`CheckedLines`), answer such a message with
a JSON-RPC error naming it (`duplicate_key_error`) before the SDK reads it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

import anyio
from mcp.shared.message import SessionMessage
from mcp.types import INVALID_PARAMS, INVALID_REQUEST, ErrorData, JSONRPCError

from api.request_bodies import Pairs, duplicate_keys, load_pairs


def duplicate_key_error(text: bytes | str) -> JSONRPCError | None:
    """The error answering a message that gives a key twice in one of its objects, naming
    every such key by its path (`params.arguments.limit`); None for any other message,
    including a text that is not JSON or not one object (the SDK refuses those)."""
    try:
        tree = load_pairs(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(tree, Pairs):
        return None
    twice = duplicate_keys(tree)
    if not twice:
        return None
    named = ", ".join(
        f"{'.'.join(str(part) for part in path)} ({times} times)" for path, times in twice.items()
    )
    # Not -32700, a parse error: the text is JSON (RFC 8259 lets a name repeat, leaving
    # only what it means undefined), and the SDK keeps -32700 for a text its parser cannot
    # read. A key twice in the envelope itself (two "method"s, two "id"s) leaves no one
    # Request object: -32600, Invalid Request, as JSON-RPC 2.0 names that. A key twice
    # only inside "params" leaves the request readable but its parameters ambiguous:
    # -32602, Invalid params, which the SDK answers too for a message whose params it
    # cannot validate, and MCP for a tool's arguments that are not valid.
    in_envelope = any(len(path) == 1 for path in twice)
    code, what = (
        (INVALID_REQUEST, "Invalid request") if in_envelope else (INVALID_PARAMS, "Invalid params")
    )
    return JSONRPCError(
        jsonrpc="2.0",
        id=_request_id(tree),
        error=ErrorData(
            code=code,
            message=f"{what}: a key is given more than once in one JSON object: {named}. Give "
            "each key once (a JSON reader keeps one of the values, which one is undefined).",
        ),
    )


def _request_id(message: Pairs) -> int | str | None:
    """The message's id, for the client to match the answer to its request; None (JSON
    null, as JSON-RPC 2.0 says for an id that cannot be told) when it is given twice or
    is not an id."""
    ids = [value for key, value in message if key == "id"]
    if len(ids) == 1 and isinstance(ids[0], int | str) and not isinstance(ids[0], bool):
        return ids[0]
    return None


class _Answers(Protocol):
    async def send(self, item: SessionMessage, /) -> None: ...


class CheckedLines:
    """Standard input's lines for the SDK's stdio transport, but for a message that gives
    a key twice: that one is answered on `answers` (once `answer_to` is called: the
    transport makes that stream after it starts reading) and not passed on."""

    def __init__(self, lines: AsyncIterable[str]) -> None:
        self._lines = lines
        self._answers: _Answers | None = None
        self._ready = anyio.Event()

    def answer_to(self, answers: _Answers) -> None:
        """The transport's write stream (its stdout writer's), which takes SessionMessages."""
        self._answers = answers
        self._ready.set()

    async def __aiter__(self) -> AsyncIterator[str]:
        async for line in self._lines:
            error = duplicate_key_error(line)
            if error is None:
                yield line
                continue
            await self._ready.wait()
            assert self._answers is not None
            await self._answers.send(SessionMessage(error))
