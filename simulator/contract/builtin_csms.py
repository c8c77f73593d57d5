"""The built-in CSMS of this process (`runsimulator --demo`), as the web side may need it.

In the embedded mode a scenario started through the API or the dashboard runs in the same
process as the built-in CSMS: its template chargers connect to it, and the library's
`${csms_control}` is its control endpoint, unless the caller says otherwise. The lifecycle
that starts the CSMS sets these and clears them when it stops; None elsewhere (a Celery
worker, a process without --demo).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BuiltinCsms:
    url: str  # ws://127.0.0.1:PORT/ocpp
    control_url: str | None  # http://127.0.0.1:PORT, or None without a control endpoint


_running: BuiltinCsms | None = None


def running() -> BuiltinCsms | None:
    return _running


def announce(csms: BuiltinCsms | None) -> None:
    """Called by the lifecycle only: the built-in CSMS now serving (None: stopped)."""
    global _running
    _running = csms
