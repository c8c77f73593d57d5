"""How far the start-up's read of the fleet has got, for the status line.

Reading 10,000 chargers and restoring their sessions and outboxes takes seconds, in a
thread (`persistence.load_fleet`): 6 s on session 39's host, some 12 s on a slower one. A
status line that said only "loading the chargers..." all that time looked like a hung
start. The thread writes plain ints (one writer), the
status line reads them from the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LoadProgress:
    total: int | None = None  # enabled chargers in the database (of every shard), once counted
    read: int = 0  # of those, the rows read so far
    restoring: bool = False  # every row read; their sessions and outboxes being restored

    def text(self) -> str:
        if self.total is None:
            return ""
        if self.restoring:
            return f" {self.total:,} read, restoring their sessions"
        return f" {self.read:,}/{self.total:,} read"
