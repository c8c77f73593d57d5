"""The fleet's figures on the terminal while `runsimulator` runs (issue 19).

On a terminal, one status line (two with --traffic) kept at the bottom and redrawn in
place (rich's `Live`), with log lines and messages printed above it, never into it.
Otherwise (a log file, a pipe, a container's log) plain lines: one when the chargers' links
change (at most one per poll) and one every `every` seconds whatever happens, so a log
shows the figures over time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.text import Text

from simulator.runtime.connect_ramp import progress_text
from simulator.runtime.log_lines import OneLineFormatter


@dataclass(frozen=True, slots=True)
class FleetStatus:
    wanted: int  # chargers the simulator keeps connected
    accepted: int  # online, their BootNotification accepted
    connecting: int
    failing: int  # the last attempt failed; retrying
    charging: int  # chargers with a connector in Charging
    messages_per_second: float
    # The CALLs of the last minute: a fleet whose MeterValues go out a minute apart (the
    # demo's) reads "0.0 msg/s" between its bursts, as if nothing were sent.
    messages_last_minute: int | None = None
    traffic: str | None = None  # background traffic's tally (--traffic)
    # The fleet is still being read from the database: no figure is known yet. Said as
    # such, not as "0/0 accepted", which a script waiting for "N/N accepted" would take
    # for a fleet that is up.
    loading: bool = False
    load_progress: str = ""  # how far the read has got (`LoadProgress.text`), while loading
    # A large fleet change rebooting in batches: (chargers rebooted, of how many); and
    # loading its new chargers in batches: (loaded, of how many).
    reboots: tuple[int, int] | None = None
    loads: tuple[int, int] | None = None
    # The connect ramp under way (`connect_ramp`): (chargers started, of how many) and its
    # rate, so that a user sees why chargers are still offline.
    ramp: tuple[int, int] | None = None
    ramp_rate: float = 0.0
    ramp_retrying: int = 0  # of its chargers, those waiting for a turn again
    # Online chargers whose boot the CSMS answered Pending or Rejected (`Counts.pending`).
    pending: int = 0
    rejected: int = 0

    @property
    def links(self) -> tuple[object, ...]:
        return (
            self.wanted,
            self.accepted,
            self.connecting,
            self.failing,
            self.loading,
            self.load_progress,
            self.reboots,
            self.loads,
            self.ramp,
            self.ramp_retrying,
            self.pending,
            self.rejected,
        )

    def text(self) -> str:
        # "fleet: N/M accepted" is what scripts and tests wait for: keep it first.
        return "; ".join(self.lines())

    def lines(self) -> list[str]:
        """The figures, and the traffic's tally apart: on a terminal each gets a line of
        its own (together they are wider than most terminals)."""
        if self.loading:
            return [f"fleet: loading the chargers...{self.load_progress}"]
        fleet = (
            f"fleet: {self.accepted}/{self.wanted} accepted, {self.connecting} connecting, "
            f"{self.failing} failing, {self.charging} charging, "
            f"{self.messages_per_second:.1f} msg/s"
        )
        if self.messages_last_minute is not None:
            fleet += f", {self.messages_last_minute:,} msg/min"
        lines = [fleet]
        if self.pending or self.rejected:
            answers = [
                f"{count:,} {status}"
                for count, status in ((self.pending, "Pending"), (self.rejected, "Rejected"))
                if count
            ]
            lines.append(
                f"not accepted: {', '.join(answers)} (online; the CSMS answered their "
                "BootNotification so, and they retry at its interval)"
            )
        if self.ramp is not None:
            progress = progress_text(*self.ramp, self.ramp_retrying)
            lines.append(f"connect ramp: {progress} ({self.ramp_rate:g}/s)")
        change = []
        if self.reboots is not None:
            change.append(f"{self.reboots[0]:,}/{self.reboots[1]:,} chargers rebooted")
        if self.loads is not None:
            change.append(f"{self.loads[0]:,}/{self.loads[1]:,} new chargers loaded")
        if change:
            lines.append(f"fleet change: {', '.join(change)}")
        if self.traffic is not None:
            lines.append(f"traffic: {self.traffic}")
        return lines


def rate_window(live: bool, every: float) -> float:
    """The seconds the shown message rate averages over. A line redrawn twice a second
    shows the last 5 s. A plain line written every `every` s covers the time since the line
    before: with 5 s, a fleet whose MeterValues all go out in one burst a minute (sampled
    from their common boot) read "0.0 msg/s" in every line, each burst between two."""
    return 5.0 if live else max(5.0, every)


class MessageRate:
    """Messages per second over the last `window` seconds, from a running total; and how
    many that is (`count`)."""

    def __init__(
        self,
        total: Callable[[], int],
        window: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._total = total
        self._window = window
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self) -> float:
        now, total, then, before = self._span()
        return (total - before) / (now - then) if now > then else 0.0

    def count(self) -> int:
        """The messages since the oldest sample kept: those of the last `window` seconds
        (to within one sample's interval), or all of them while the first window runs."""
        _, total, _, before = self._span()
        return total - before

    def _span(self) -> tuple[float, int, float, int]:
        now, total = self._clock(), self._total()
        samples = self._samples
        samples.append((now, total))
        while len(samples) > 2 and now - samples[1][0] >= self._window:
            samples.popleft()
        then, before = samples[0]
        return now, total, then, before


def fold(line: str, width: int) -> list[str]:
    """`line` in rows of at most `width`, broken after its commas (continued indented): a
    line cut to the terminal's width lost its end, on 80 columns "128 msg/…" for the
    minute's count. A part longer than a row on its own is left for the cut."""
    if len(line) <= width:
        return [line]
    rows: list[str] = []
    row = ""
    for part in line.split(", "):
        piece = part if not row else f"{row}, {part}"
        if row and len(piece) + 1 > width:  # + 1: the comma the row ends with
            rows.append(row + ",")
            row = "  " + part
        else:
            row = piece
    rows.append(row)
    return rows


class PlainStatus:
    """Status lines for output that is not a terminal."""

    def __init__(self, write: Callable[[str], object], every: float = 10.0) -> None:
        self._write = write
        self.every = every

    def write(self, text: str) -> None:
        self._write(text)

    async def run(self, read: Callable[[], FleetStatus], poll: float = 1.0) -> None:
        loop = asyncio.get_running_loop()
        shown: tuple[object, ...] | None = None
        shown_at = -math.inf
        while True:
            status = read()
            now = loop.time()
            if status.links != shown or now - shown_at >= self.every:
                # Dated as the log lines are (local time): a log file's lines line up.
                self._write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {status.text()}\n")
                shown, shown_at = status.links, now
            await asyncio.sleep(poll)


class LiveStatus:
    """The status line on a terminal, redrawn in place; log records go through rich and
    print above it (a plain StreamHandler would write across it)."""

    def __init__(self, file: TextIO) -> None:
        self.console = Console(file=file)
        self._live: Live | None = None

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if line.strip():
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    async def run(self, read: Callable[[], FleetStatus], poll: float = 0.5) -> None:
        root = logging.getLogger()
        replaced = [
            h
            for h in root.handlers
            if type(h) is logging.StreamHandler  # the console handler, not files or tests'
        ]
        handler = RichHandler(
            console=self.console, show_path=False, markup=False, rich_tracebacks=False
        )
        handler.setFormatter(OneLineFormatter("%(name)s: %(message)s"))
        if replaced:
            handler.setLevel(replaced[0].level)
        live = Live(
            console=self.console, auto_refresh=False, redirect_stdout=True, redirect_stderr=True
        )
        for old in replaced:
            root.removeHandler(old)
        root.addHandler(handler)
        live.start()
        try:
            while True:
                # Read each time: a terminal resized meanwhile gets lines of its new width.
                width = self.console.width
                shown = "\n".join(part for line in read().lines() for part in fold(line, width))
                live.update(Text(shown, no_wrap=True, overflow="ellipsis"), refresh=True)
                await asyncio.sleep(poll)
        finally:
            live.stop()
            root.removeHandler(handler)
            for old in replaced:
                root.addHandler(old)
