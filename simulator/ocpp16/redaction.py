"""Keeping the AuthorizationKey out of every record of a frame: the message log, the pages
it is sent to, and log lines.

A CSMS sets a charger's HTTP Basic password with ChangeConfiguration(AuthorizationKey),
so that frame carries the secret in clear. Every place that records a frame's text runs
it through `redact_frame` first. The test is a substring search before any parsing: the
message log sees every frame, thousands a second, and almost none names the key.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

SECRET_KEY_NAME = "AuthorizationKey"
REDACTED = "********"
WITHHELD = f"[withheld: names {SECRET_KEY_NAME} and is not a JSON frame]"


def redact_frame(text: str) -> str:
    """The frame with every AuthorizationKey value replaced; the same string when it names
    no AuthorizationKey, and WITHHELD when it does but cannot be parsed to say where."""
    if SECRET_KEY_NAME not in text:
        return text
    try:
        return orjson.dumps(redact_value(orjson.loads(text))).decode()
    except (orjson.JSONDecodeError, RecursionError):
        # orjson parses 1,024 levels deep, more than the walk below can recurse: a hostile
        # CSMS must not turn recording its frame into an exception on the receive path.
        return WITHHELD


def redact_value(value: Any) -> Any:
    """A copy of a decoded frame (or payload) without AuthorizationKey values: the
    `value` beside `"key": "AuthorizationKey"` (ChangeConfiguration, a configuration
    entry) and any member named AuthorizationKey."""
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    names_key = value.get("key") == SECRET_KEY_NAME
    return {
        name: REDACTED
        if name == SECRET_KEY_NAME or (names_key and name == "value")
        else redact_value(item)
        for name, item in value.items()
    }


class RedactSecrets(logging.Filter):
    """A logging filter for the loggers that may log a frame (the ocpp library's, ours and
    the built-in CSMS's): a line naming AuthorizationKey keeps its text up to the frame,
    and the frame is redacted, or the whole line is withheld when no frame is found."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if SECRET_KEY_NAME not in message:
            return True
        record.msg, record.args = _redact_line(message), None
        return True


def _redact_line(message: str) -> str:
    # Our frame loggers write "<id> -> <frame>" or "<id>: send <frame>": the frame is the
    # rest of the line from its first bracket. Anything else is withheld whole.
    start = message.find("[")
    prefix = message[:start]
    if start >= 0 and not any(mark in prefix for mark in "'\"{="):
        frame = redact_frame(message[start:])
        if frame != WITHHELD:
            return prefix + frame
    return WITHHELD
