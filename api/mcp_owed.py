"""The stdio transport's end of input: the requests read before it are answered first.

A script that pipes its requests into `manage.py mcp` (`printf '...' | manage.py mcp`)
closes standard input once it has written them. The SDK took that end as the end of the
session and cancelled every request still running: each was answered "Connection closed"
(-32000), even a `list_chargers` that reads a few rows, so a pipe never got a result.
An end of input says that no more requests come, not that those sent are withdrawn (as
`ssh host cmd < file` or `psql < file` do); so the lines end for the SDK only once every
request read has been answered, or withdrawn with `notifications/cancelled`, which the
SDK does not answer. A stop by signal still ends the server at once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType
from typing import Any, Self

import anyio
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCError, JSONRPCResponse

# An id as JSON-RPC tells ids apart: 1 and "1" are two ids.
_Key = tuple[type, int | str]


def _key(request_id: object) -> _Key | None:
    if isinstance(request_id, int | str) and not isinstance(request_id, bool):
        return (type(request_id), request_id)
    return None


class AnswersOwed:
    """Standard input's lines for the SDK, passed on as they come, that end only once the
    requests among them are answered. `watching` wraps the stream the server writes its
    answers to, for this to see them."""

    def __init__(self, lines: AsyncIterable[str]) -> None:
        self._lines = lines
        self._owed: Counter[_Key] = Counter()
        self._changed = anyio.Event()

    def watching(self, answers: Any) -> _WatchedAnswers:
        return _WatchedAnswers(answers, self)

    async def __aiter__(self) -> AsyncIterator[str]:
        async for line in self._lines:
            self._note(line)
            yield line
        while self._owed:
            await self._changed.wait()
            self._changed = anyio.Event()

    def _note(self, line: str) -> None:
        """Count a request the line sends, and let go of one it withdraws. A line that is no
        message never reaches here (`CheckedLines` answers it), nor does a key twice."""
        try:
            message = json.loads(line)
        except ValueError:  # a blank line, which the SDK skips
            return
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            return
        if "id" in message:
            key = _key(message["id"])
            if key is not None:
                self._owed[key] += 1
        elif message["method"] == "notifications/cancelled":
            params = message.get("params")
            if isinstance(params, dict):
                self.answered(params.get("requestId"))

    def answered(self, request_id: object) -> None:
        key = _key(request_id)
        if key is None or not self._owed[key]:
            return
        self._owed[key] -= 1
        if not self._owed[key]:
            del self._owed[key]
        self._changed.set()


class _WatchedAnswers:
    """The server's write stream, telling `AnswersOwed` of each answer it writes."""

    def __init__(self, stream: Any, owed: AnswersOwed) -> None:
        self._stream = stream
        self._owed = owed

    async def send(self, item: SessionMessage, /) -> None:
        await self._stream.send(item)
        if isinstance(item.message, JSONRPCResponse | JSONRPCError):
            self._owed.answered(item.message.id)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> Self:
        await self._stream.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        result: bool | None = await self._stream.__aexit__(exc_type, exc_val, exc_tb)
        return result
