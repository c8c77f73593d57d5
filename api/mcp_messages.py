"""The MCP transports' JSON-RPC messages: each one answered, each key of an object once.

The SDK reads a message as any JSON parser does: a key given twice keeps its last value,
so `{"name": "plug_in", ..., "name": "stop"}` ran stop, and a client whose request was
assembled from two sources never learnt which of its values was used. The REST API
refuses such a body with a 422 naming the key (`api.request_bodies`); both transports,
streamable HTTP (`api.mcp_http`) and stdio (`CheckedLines`), answer such a message with
a JSON-RPC error naming it (`_duplicate_key_error`) before the SDK reads it.

A line that is not a JSON-RPC message at all the SDK's stdio transport drops without a
word (it logs it at debug level), so a client that sent one waited for an answer until its
own timeout, with nothing to say what was wrong. JSON-RPC 2.0 answers it: -32700 for a
text that is not JSON, -32600 for JSON that is not a message (`message_error`). The HTTP
transport answers the same errors, so that a client learns the same thing either way.

A request of an MCP method whose params that method does not take (tools/call without its
`name`) the SDK answers with -32602 and no word of what is wrong; both transports answer
it with -32602 naming each problem (`_params_error`). So is a request on stdio before the
session's `initialize` (`CheckedLines`), answered "send initialize first".
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Protocol, get_args

import anyio
from mcp.shared.message import SessionMessage
from mcp.types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    ClientRequest,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from pydantic import BaseModel, ValidationError

from api.request_bodies import Pairs, duplicate_keys, load_pairs


def message_error(text: bytes | str) -> JSONRPCError | None:
    """The error answering a text that is not one JSON-RPC message the SDK can take, or
    that gives a key twice (`_duplicate_key_error`); None for a message the SDK reads."""
    try:
        tree = load_pairs(text)
    except RecursionError:
        return _error(None, PARSE_ERROR, "Parse error: the JSON is nested too deeply.")
    except ValueError as exc:
        return _error(None, PARSE_ERROR, f"Parse error: the message is not JSON ({exc}).")
    if isinstance(tree, Pairs):
        twice = _duplicate_key_error(tree)
        if twice is not None:
            return twice
    try:
        jsonrpc_message_adapter.validate_json(text, by_name=False)
    except ValidationError as exc:
        unread = [error for error in exc.errors() if error["type"] == "json_invalid"]
        if unread:  # JSON to Python's reader, not to the SDK's (NaN, say)
            return _error(None, PARSE_ERROR, f"Parse error: {unread[0]['msg']}.")
        request_id = _request_id(tree) if isinstance(tree, Pairs) else None
        return _error(request_id, INVALID_REQUEST, f"Invalid request: {_shape_text(tree, exc)}")
    if isinstance(tree, Pairs):
        return _params_error(text, tree)
    return None


# Each request an MCP client sends, by its method: its params' model.
_CLIENT_REQUESTS: dict[str, type[BaseModel]] = {
    get_args(arm.model_fields["method"].annotation)[0]: arm for arm in get_args(ClientRequest)
}


def _params_error(text: bytes | str, tree: Pairs) -> JSONRPCError | None:
    """The error answering a request of an MCP method whose params that method does not
    take (tools/call without its `name`, `arguments` that are not an object), naming each
    problem; None for any other message. The SDK answers those with -32602 and the words
    "Invalid request parameters" alone, so that a client, or an agent writing its own
    JSON-RPC, could not tell what to fix."""
    keys = {key for key, _ in tree}
    if "id" not in keys:
        return None
    message: dict[str, Any] = json.loads(text)
    model = _CLIENT_REQUESTS.get(message.get("method"))  # type: ignore[arg-type]
    if model is None:  # not an MCP method: the SDK's -32601 says so
        return None
    # As the SDK reads a request: the method's own model (the one it parses params into),
    # params left out when the message has none.
    body = {key: message[key] for key in ("method", "params") if key in message}
    try:
        model.model_validate(body, by_name=False)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'params'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        ]
        return _error(
            _request_id(tree),
            INVALID_PARAMS,
            f"Invalid params of {message['method']}: {'; '.join(problems)}.",
        )
    return None


def _shape_text(tree: object, exc: ValidationError) -> str:
    """What is wrong with a JSON text that is not a JSON-RPC message, as the kind of message
    it meant to be (a request, a notification, a result, an error) and no other: pydantic
    lists every kind's complaints, mostly about fields the sender never meant to give."""
    if not isinstance(tree, Pairs):
        return "a JSON-RPC message is one JSON object ({...}), sent on one line."
    keys = {key for key, _ in tree}
    if not keys & {"method", "result", "error"}:
        return (
            'a JSON-RPC 2.0 message gives a "method" (a request or a notification), or a '
            '"result" or an "error" (an answer).'
        )
    meant: type[BaseModel]
    if "method" in keys:
        meant = JSONRPCRequest if "id" in keys else JSONRPCNotification
    else:
        meant = JSONRPCError if "error" in keys else JSONRPCResponse
    problems = [
        f"{'.'.join(str(part) for part in error['loc'][1:]) or 'the message'}: {error['msg']}"
        for error in exc.errors(include_url=False)
        if error["loc"][:1] == (meant.__name__,)
    ]
    kind = meant.__name__.removeprefix("JSONRPC").lower()
    return f"not a JSON-RPC 2.0 {kind}: {'; '.join(problems)}."


def _error(request_id: int | str | None, code: int, message: str) -> JSONRPCError:
    return JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=message))


def _duplicate_key_error(tree: Pairs) -> JSONRPCError | None:
    """The error answering a message that gives a key twice in one of its objects, naming
    every such key by its path (`params.arguments.limit`); None when each is given once."""
    twice = duplicate_keys(tree)
    if not twice:
        return None
    named = ", ".join(
        f"{'.'.join(str(part) for part in path)} ({times} times)" for path, times in twice.items()
    )
    # Not -32700, a parse error: the text is JSON (RFC 8259 lets a name repeat, leaving
    # only what it means undefined), and -32700 is for a text no JSON parser can read. A key twice in the envelope itself (two "method"s, two "id"s) leaves no one
    # Request object: -32600, Invalid Request, as JSON-RPC 2.0 names that. A key twice
    # only inside "params" leaves the request readable but its parameters ambiguous:
    # -32602, Invalid params, which the SDK answers too for a message whose params it
    # cannot validate, and MCP for a tool's arguments that are not valid.
    in_envelope = any(len(path) == 1 for path in twice)
    code, what = (
        (INVALID_REQUEST, "Invalid request") if in_envelope else (INVALID_PARAMS, "Invalid params")
    )
    return _error(
        _request_id(tree),
        code,
        f"{what}: a key is given more than once in one JSON object: {named}. Give each key "
        "once (a JSON reader keeps one of the values, which one is undefined).",
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
    """Standard input's lines for the SDK's stdio transport, but for a line that is not a
    message it can take (`message_error`): that one is answered on `answers` (once
    `answer_to` is called: the transport makes that stream after it starts reading) and not
    passed on. A blank line is passed on, and the SDK skips it: it is no message, and a
    client may send one to end its last line."""

    def __init__(self, lines: AsyncIterable[str]) -> None:
        self._lines = lines
        self._answers: _Answers | None = None
        self._ready = anyio.Event()
        self._initialized = False

    def answer_to(self, answers: _Answers) -> None:
        """The transport's write stream (its stdout writer's), which takes SessionMessages."""
        self._answers = answers
        self._ready.set()

    async def __aiter__(self) -> AsyncIterator[str]:
        async for line in self._lines:
            error = None if not line.strip() else message_error(line)
            if error is None and line.strip() and not self._initialized:
                error = self._before_initialize(line)
            if error is None:
                yield line
                continue
            await self._ready.wait()
            assert self._answers is not None
            await self._answers.send(SessionMessage(error))

    def _before_initialize(self, line: str) -> JSONRPCError | None:
        """The error answering a request sent before the session's `initialize`, which the
        SDK answers "Invalid request parameters" and nothing else (a script piping its
        calls in without the handshake could not tell why); None for the handshake itself,
        a ping, or any other message, which the SDK reads."""
        message = json.loads(line)
        method = message.get("method")
        if method in ("initialize", "notifications/initialized"):
            self._initialized = True
            return None
        if "id" not in message or method is None or method == "ping":
            return None
        return _error(
            _request_id(load_pairs(line)),
            INVALID_PARAMS,
            f"Not initialized: {method} came before the session's handshake: send an "
            '"initialize" request first, then the "notifications/initialized" notification.',
        )
