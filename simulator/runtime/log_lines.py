"""Log lines that stay lines: a CSMS's words (a CALLERROR's description, a property name
of its answer) are logged as they came, and a hostile CSMS could put a line break and a
forged line after them, or terminal escapes, in the worker's log."""

from __future__ import annotations

import logging
import re

# C0 controls but tab, DEL and C1 controls: a line break, a carriage return over the line,
# an escape sequence, a NUL (which ends a line for some log readers).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _escaped(found: re.Match[str]) -> str:
    character = found.group()
    return {"\n": "\\n", "\r": "\\r"}.get(character, f"\\x{ord(character):02x}")


class OneLineFormatter(logging.Formatter):
    """A formatter whose record is one line: control characters in the message are shown
    as escapes. A traceback (`exc_info`) keeps its lines, after it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return _CONTROL.sub(_escaped, super().formatMessage(record))
