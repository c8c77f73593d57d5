"""Keeping the AuthorizationKey and URL passwords out of every record of a frame: the
message log, the pages it is sent to, and log lines.

A CSMS sets a charger's HTTP Basic password with ChangeConfiguration(AuthorizationKey),
so that frame carries the secret in clear; UpdateFirmware and GetDiagnostics locations
may carry one too: a password (ftp://user:password@host/) or a signed URL's query
(https://bucket/fw.bin?X-Amz-Signature=…&token=…). Every place that records a frame's text
runs it through `redact_frame` first. The tests are substring searches before any parsing:
the message log sees every frame, thousands a second, and almost none holds either.

The key's name is matched whatever its case ("authorizationkey", "AUTHORIZATIONKEY"): the
charger answers such a ChangeConfiguration NotSupported (key names are case-sensitive),
but the value the CSMS sent is the secret all the same. ASCII letters only, as the
search for `SECRET_KEY_LETTERS` finds them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

SECRET_KEY_NAME = "AuthorizationKey"
_SECRET_KEY_FOLDED = SECRET_KEY_NAME.lower()
# The name's rarest letter in OCPP frames, in both cases (the meter's units are "Wh" and
# "W", message ids lower-case hex): a text with neither cannot hold the name in any case,
# and one character is found by memchr, ten times faster than the name (whose search steps
# over JSON nearly character by character).
SECRET_KEY_LETTERS = ("K", "k")
# The name in any case of its ASCII letters: only for a text that holds one of the letters.
_SECRET_KEY_ANY_CASE = re.compile(re.escape(SECRET_KEY_NAME), re.IGNORECASE | re.ASCII)
REDACTED = "********"
WITHHELD = f"[withheld: names {SECRET_KEY_NAME} and is not a JSON frame]"
# A log line's rest after its plain words, when it may spell the name with an escape (a
# backslash is enough to be unsure) and holds no frame that can be redacted.
LINE_WITHHELD = f"[withheld: may name {SECRET_KEY_NAME} and is not a JSON frame]"

# scheme://user:PASSWORD@ (slashes possibly JSON-escaped as \/): the password goes. Read
# as urllib and ftplib read the login, which the charger uses: the user ends at the first
# ":" and may hold an "@" (an e-mail address), the password runs to the authority's last
# "@" (an unescaped "@" in it is still the password's); "/", "?" and "#" end the authority.
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*:(?:\\?/){2}[^/\\\s\":?#]*:)[^/\\\s\"?#]+@")


# The same login with an unescaped "/" in the password (ftp://u:pa/ss@host/). Such a URL is
# malformed: the "/" ends the authority, so the charger reads host "u" and fails. But the
# text is still somebody's password, so it goes too, up to an "@" before any "?", "#" or
# quote. A port ("host:21/x@y", "host:8080/") is not a password: digits then "/" are kept.
_URL_PASSWORD_WITH_SLASH = re.compile(
    r"([A-Za-z][A-Za-z0-9+.-]*:(?:\\?/){2}[^/\\\s\":?#]*:)(?!\d+\\?/)[^\s\"?#@]*?\\?/[^\s\"?#@]*@"
)


def redact_urls(text: str) -> str:
    """The text with the password of every scheme://user:password@ URL replaced."""
    if "@" not in text:
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return _URL_PASSWORD_WITH_SLASH.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)


# A query parameter that grants access: pre-signed and SAS URLs (X-Amz-Signature,
# X-Amz-Credential, X-Amz-Security-Token, X-Goog-Signature, Azure's sig), tokens and API
# keys. Matched by a part of the name, as services spell them in many ways; masking a
# harmless one in a log costs nothing, showing a signature lets anyone fetch the file.
_QUERY_SECRET = re.compile(
    r"([?&][\w.\-\[\]]*?(?:token|sig|secret|passw|pwd|credential|key|auth|session)"
    r"[\w.\-\[\]]*=)[^&#\s\"\\]+",
    re.IGNORECASE,
)


def redact_query_secrets(text: str) -> str:
    """The text with the value of every access-granting URL query parameter replaced."""
    if "?" not in text:
        return text
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


# A JSON escape: "\u0041uthorizationKey" is the name, and "\u0040" an "@", to whoever
# parses the frame, but not to a substring test. Found by its backslash first: one
# character is a memchr, a two-character search steps through the text.
_BACKSLASH = "\\"
_ESCAPE = "\\u"


def may_hold_secret(text: str) -> bool:
    """False only for a text that `redact_frame` returns unchanged: no "@", no "?", neither
    of `SECRET_KEY_LETTERS`, no backslash (five memchr for nearly every frame)."""
    return "@" in text or "?" in text or "K" in text or "k" in text or _BACKSLASH in text


def names_secret(text: str) -> bool:
    """Whether the text spells the AuthorizationKey's name, in any case."""
    return ("K" in text or "k" in text) and _SECRET_KEY_ANY_CASE.search(text) is not None


def is_secret_name(name: object) -> bool:
    """Whether `name` (a member's name, a configuration key) is AuthorizationKey in any case
    of its ASCII letters."""
    return (
        isinstance(name, str)
        and len(name) == len(SECRET_KEY_NAME)
        and name.isascii()
        and name.lower() == _SECRET_KEY_FOLDED
    )


def redact_frame(text: str) -> str:
    """The frame with every AuthorizationKey value and URL password replaced; the same
    string when it holds neither, and WITHHELD when it names an AuthorizationKey but cannot
    be parsed to say where."""
    if _BACKSLASH in text and _ESCAPE in text:
        text = _unescaped(text)
    if "@" in text:
        text = redact_urls(text)
    if "?" in text:
        text = redact_query_secrets(text)
    if not names_secret(text):
        return text
    try:
        return orjson.dumps(redact_value(orjson.loads(text))).decode()
    except (orjson.JSONDecodeError, RecursionError):
        # orjson parses 1,024 levels deep, more than the walk below can recurse: a hostile
        # CSMS must not turn recording its frame into an exception on the receive path.
        return WITHHELD


def _unescaped(text: str) -> str:
    """A frame that spells a secret's markers with JSON escapes, written without them (so
    the tests above see what a parser sees); any other text as it is."""
    try:
        plain = orjson.dumps(orjson.loads(text)).decode()
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, RecursionError):
        return text  # not JSON: nothing parses it into a configuration or a URL
    if "@" in plain or "?" in plain or names_secret(plain):
        return plain
    return text


def redact_value(value: Any) -> Any:
    """A copy of a decoded frame (or payload) without AuthorizationKey values: the
    `value` beside `"key": "AuthorizationKey"` (ChangeConfiguration, a configuration
    entry) and any member named AuthorizationKey, the names in any case."""
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    names_key = any(is_secret_name(item) for name, item in value.items() if _folded(name) == "key")
    return {
        name: REDACTED
        if is_secret_name(name) or (names_key and _folded(name) == "value")
        else redact_value(item)
        for name, item in value.items()
    }


def _folded(name: object) -> str:
    return name.lower() if isinstance(name, str) else ""


class RedactSecrets(logging.Filter):
    """A logging filter for the loggers that may log a frame (the ocpp library's, ours and
    the built-in CSMS's): a line naming AuthorizationKey keeps its text up to the frame,
    and the frame is redacted, or the whole line is withheld when no frame is found."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "@" in message or "?" in message:
            message, before = redact_query_secrets(redact_urls(message)), message
            if message != before:
                record.msg, record.args = message, None
        if _BACKSLASH not in message and not names_secret(message):
            return True
        record.msg, record.args = _redact_line(message), None
        return True


# websockets' debug lines that may hold a secret: a handshake's header ("< %s: %s": an
# Authorization header holds the charger's id and AuthorizationKey in base64) and a frame
# ("> %s": its text, which websockets cuts in the middle, so that the key's name may be cut
# out while its value is not).
_HEADER_LINES = ("< %s: %s", "> %s: %s")
_FRAME_LINES = ("< %s", "> %s")
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_DATA_OPCODES = frozenset({"TEXT", "BINARY", "CONT"})


class RedactWebSocketDebug(logging.Filter):
    """A logging filter for a websockets connection's own logger, whose debug lines show
    every header and frame: a credentials header's value and a data frame's content are
    withheld (the frame loggers have each frame, redacted as a whole)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple):
            return True
        if record.msg in _HEADER_LINES and len(args) == 2:
            if str(args[0]).lower() in _SECRET_HEADERS:
                record.args = (args[0], REDACTED)
        elif record.msg in _FRAME_LINES and len(args) == 1:
            opcode = getattr(getattr(args[0], "opcode", None), "name", None)
            if opcode in _DATA_OPCODES:
                size = len(getattr(args[0], "data", b""))
                record.args = (f"{opcode} [{size} bytes: its text is in the frame log]",)
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
    # The words before the first quote, bracket, brace or "=" (whose charger, what it did)
    # are kept when they hold neither the name nor an escape; the rest is withheld.
    cut = min((i for i in map(message.find, "['\"{=") if i >= 0), default=len(message))
    words = message[:cut]
    if _BACKSLASH in words or names_secret(words):
        return LINE_WITHHELD
    return words + LINE_WITHHELD
