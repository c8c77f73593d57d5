"""Texts a scenario run keeps (its verdicts' messages) made safe to store and to export."""

from __future__ import annotations

import re
from typing import Any

# Control characters other than tab and line breaks: PostgreSQL stores no NUL (in text or
# jsonb), and XML 1.0 (the JUnit file) allows none of them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def storable(value: Any) -> Any:
    """`value` (JSON-like) with each control character in its strings shown as its escape
    (NUL as the four characters \\x00): a verdict's message may quote what a CSMS sent,
    and the run's row and its JUnit file must hold whatever that was."""
    if isinstance(value, str):
        return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value
