"""The charge point's link to its central system, as the core sees it.

The core never opens a socket: a protocol adapter's connection implements `Transport` and
is attached while it is up. Boot and link state are the charge point's own; the errors are
how a transport reports a call that did not succeed.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol


class BootState(StrEnum):
    NONE = "None"  # not booted since power-on
    PENDING = "Pending"
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class LinkState(StrEnum):
    OFFLINE = "offline"
    CONNECTING = "connecting"
    ONLINE = "online"


class CallFailed(Exception):
    """The CSMS answered a CALLERROR, or did not answer in time."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description


class LinkLost(Exception):
    """The connection went away while a call was outstanding."""


AnswerCallback = Callable[[dict[str, Any] | None, Exception | None], None]


class Transport(Protocol):
    def send_call(self, action: str, payload: dict[str, Any], done: AnswerCallback) -> None:
        """Send a CALL now; `done(result, None)` or `done(None, CallFailed | LinkLost)`
        follows exactly once (possibly before this returns)."""

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]: ...

    async def close(self) -> None: ...

    def abort(self) -> None: ...

    def keepalive_changed(self) -> None:
        """The configured interval of the connection's keepalive pings changed: apply it
        now (WebSocketPingInterval in 1.6)."""

    def answer_timeout_changed(self) -> None:
        """The configured time to wait for the answer to a CALL changed (MessageTimeout in
        1.6): apply it now, to the next CALL and to the one in flight."""
