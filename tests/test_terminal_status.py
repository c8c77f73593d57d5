"""What `runsimulator` shows on its output while it runs (issue 19): a status line kept
up to date (plain lines when the output is a file, one line redrawn in place on a
terminal, with log lines above it), and a last line saying how many chargers it saved."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from simulator.csms import CentralSystem
from tests.engine import wait_until
from tests.process import ROOT, ManagePy, free_port

pytestmark = pytest.mark.slow

FIGURES = (
    r"fleet: (\d+)/(\d+) accepted, (\d+) connecting, (\d+) failing, (\d+) charging, "
    r"([\d.]+) msg/s, ([\d,]+) msg/min"
)
# The status line redrawn on a terminal.
TERMINAL = re.compile(FIGURES)
# A status line in a file or pipe, dated as the log lines are (so that a log file's lines
# line up).
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
STATUS = re.compile(STAMP + "(" + FIGURES + ")")


def status_lines(output: str) -> list[str]:
    """The status lines' figures, without their time."""
    return [m.group(1) for line in output.splitlines() if (m := STATUS.fullmatch(line))]


def checkpointed_chargers(var_dir: Path) -> list[str]:
    with sqlite3.connect(var_dir / "db.sqlite3") as db:
        rows = db.execute(
            "select distinct c.charge_point_id from chargers_evse e "
            "join chargers_charger c on c.id = e.charger_id "
            "where e.checkpointed_at is not null order by 1"
        )
        return [cp_id for (cp_id,) in rows]


async def test_plain_status_lines_follow_the_fleet_and_the_last_line_counts_the_saved(tmp_path):
    csms = CentralSystem()
    await csms.start(host="127.0.0.1", port=0)
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        *("--no-web", "--demo", "--demo-chargers", "2", "--demo-share", "1"),
        *("--csms-url", csms.url, "--status-every", "1"),
        env={"CHARGESIM_CHECKPOINT_SECONDS": "300", "CHARGESIM_RECONNECT_CAP_SECONDS": "1"},
    )

    def lines_with(text: str) -> list[str]:
        return [line for line in status_lines(sim.output) if text in line]

    try:
        # Up: both accepted, and the demo driver's sessions counted as they start.
        await wait_until(lambda: lines_with("fleet: 2/2 accepted"), 60, "2/2 accepted")
        await wait_until(lambda: lines_with("2 charging"), 60, "2 charging")
        # Periodic: more lines come while nothing changes in the links.
        seen = len(lines_with("fleet: 2/2 accepted"))
        await wait_until(lambda: len(lines_with("fleet: 2/2 accepted")) >= seen + 2, 30, "more")
        # A network cut: the CSMS goes away, and the figures say so.
        await csms.stop()
        await wait_until(lambda: lines_with("fleet: 0/2 accepted"), 60, "the drop")
        sim.signal(signal.SIGINT)
        assert await asyncio.to_thread(sim.wait, 60) == 0
    finally:
        sim.stop()
        await csms.stop()
    lines = status_lines(sim.output)
    assert len(set(lines)) >= 3, lines  # up, charging, down: the figures moved
    # Before the fleet is read the line says so: never "0/0 accepted", which a script
    # waiting for "N/N accepted" would take for a fleet that is up.
    assert any(
        re.fullmatch(STAMP + r"fleet: loading the chargers\.\.\.( .* read.*)?", line)
        for line in sim.output.splitlines()
    )
    assert not lines_with("fleet: 0/0 accepted"), lines
    assert "\r" not in sim.output  # no carriage-return tricks in a log file
    assert "Stopped: 2 chargers saved." in sim.output
    assert checkpointed_chargers(tmp_path) == ["DEMO-0001", "DEMO-0002"]


def test_the_saved_count_is_the_chargers_this_process_ran(tmp_path):
    sim = ManagePy(
        tmp_path,
        "runsimulator",
        *("--no-web", "--demo", "--demo-chargers", "3", "--only", "DEMO-0002"),
        *("--csms-url", f"ws://127.0.0.1:{free_port()}/ocpp"),
    )
    try:
        sim.wait_for_output("fleet: 0/1 accepted")
        sim.signal(signal.SIGTERM)
        assert sim.wait(60) == 0
    finally:
        sim.stop()
    assert "Stopped: 1 charger saved." in sim.output
    assert checkpointed_chargers(tmp_path) == ["DEMO-0002"]


class Terminal:
    """`manage.py runsimulator` on a pseudo-terminal of 120 x 50, its output read as a
    terminal shows it (pyte)."""

    COLUMNS, ROWS = 120, 50

    def __init__(self, var_dir: Path, *args: str, columns: int = COLUMNS) -> None:
        self.COLUMNS = columns
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.ROWS, self.COLUMNS, 0, 0))
        env = {
            **os.environ,
            "CHARGESIM_VAR_DIR": str(var_dir),
            "TERM": "xterm-256color",
            "COLUMNS": str(self.COLUMNS),
            "LINES": str(self.ROWS),
            "LOG_LEVEL": "INFO",
        }
        for name in ("DATABASE_URL", "NO_COLOR", "FORCE_COLOR"):
            env.pop(name, None)
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runsimulator", *args],
            cwd=ROOT,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self._master = master
        self.raw = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the child side is closed
                return
            if not chunk:
                return
            self.raw += chunk

    def wait_for(self, text: bytes, timeout: float = 60.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while text not in self.raw:
            assert self.proc.poll() is None, self.raw.decode(errors="replace")[-3000:]
            if time.monotonic() > deadline:  # a hang, not a speed check
                pytest.fail(f"{text!r} never came: {self.raw.decode(errors='replace')[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._reader.join(10)
        os.close(self._master)

    def screen(self) -> list[str]:
        import pyte

        screen = pyte.Screen(self.COLUMNS, self.ROWS)
        pyte.ByteStream(screen).feed(bytes(self.raw))
        return [row.rstrip() for row in screen.display if row.strip()]


def test_on_a_terminal_the_status_line_is_redrawn_in_place_below_the_log(tmp_path):
    term = Terminal(
        tmp_path,
        *("--no-web", "--demo", "--demo-chargers", "3", "--demo-share", "0"),
        *("--no-demo-operations", "--csms-port", str(free_port())),
    )
    try:
        # A log record written while the status line is up (gc_policy, once all are up).
        term.wait_for(b"the connected fleet frozen too")
        term.wait_for(b"fleet: 3/3 accepted")
        os.killpg(term.proc.pid, signal.SIGINT)
        assert term.proc.wait(60) == 0
    finally:
        term.stop()
    rows = term.screen()
    raw = term.raw.decode(errors="replace")
    # Several states were drawn (0/0 at first, 3/3 at the end) ...
    assert len(set(TERMINAL.findall(raw))) >= 2, raw[-3000:]
    # ... in one place: the screen holds one status line, the last state.
    status_rows = [row for row in rows if TERMINAL.search(row)]
    assert len(status_rows) == 1, rows
    last = TERMINAL.search(status_rows[0])
    assert last is not None and last.group(1, 2) == ("3", "3"), status_rows
    # Log lines have rows of their own, above it.
    logged = [i for i, row in enumerate(rows) if "the connected fleet frozen too" in row]
    assert len(logged) == 1 and not TERMINAL.search(rows[logged[0]]), rows
    assert "INFO" in rows[logged[0]]
    assert logged[0] < rows.index(status_rows[0])
    assert rows[-1] == "Stopped: 3 chargers saved.", rows


def test_on_a_terminal_the_traffic_tally_has_a_line_of_its_own(tmp_path):
    """With --traffic the status line was some 165 characters, cut to the terminal's width:
    on 120 columns the tally ended in "…" after "traffic: 0 arrived, 0 charging sessions"
    and the user never saw who was turned away or left."""
    term = Terminal(
        tmp_path,
        *("--no-web", "--demo", "--demo-chargers", "3", "--traffic"),
        *("--no-demo-operations", "--csms-port", str(free_port())),
    )
    try:
        term.wait_for(b"fleet: 3/3 accepted")
        os.killpg(term.proc.pid, signal.SIGINT)
        assert term.proc.wait(60) == 0
    finally:
        term.stop()
    rows = term.screen()
    status_rows = [row for row in rows if TERMINAL.search(row)]
    assert len(status_rows) == 1, rows
    assert TERMINAL.fullmatch(status_rows[0]), status_rows  # nothing cut, nothing after
    tally = rows[rows.index(status_rows[0]) + 1]
    assert re.fullmatch(
        r"traffic: \d+ arrived, \d+ charging sessions, \d+ turned away, \d+ refused, "
        r"\d+ left, \d+ stayed plugged in",
        tally,
    ), rows
    assert rows[-1] == "Stopped: 3 chargers saved.", rows


def test_on_a_narrow_terminal_the_status_line_folds_instead_of_losing_its_end(tmp_path):
    """On 80 columns (many terminals' default) the status line of the demo, 82 characters
    since the minute's count, was cut to "..., 0.0 msg/s, 128 msg/…": its end now folds
    onto the next row, broken after a comma, and nothing is cut (64 columns here, so that
    it folds whatever its figures' digits)."""
    term = Terminal(
        tmp_path,
        *("--no-web", "--demo", "--demo-chargers", "3", "--demo-share", "1"),
        *("--no-demo-operations", "--csms-port", str(free_port())),
        columns=64,
    )
    try:
        term.wait_for(b"fleet: 3/3 accepted")
        term.wait_for(b"msg/min")
        os.killpg(term.proc.pid, signal.SIGINT)
        assert term.proc.wait(60) == 0
    finally:
        term.stop()
    rows = term.screen()
    assert not [row for row in rows if "\u2026" in row], rows  # rich's ellipsis: a cut
    first = [i for i, row in enumerate(rows) if row.startswith("fleet: ")]
    assert len(first) == 1, rows
    folded = [rows[first[0]]]
    for row in rows[first[0] + 1 :]:
        if not row.startswith("  ") or "INFO" in row:
            break
        folded.append(row.strip())
    assert len(folded) >= 2 and all(len(row) <= 64 for row in folded), rows
    assert TERMINAL.fullmatch(" ".join(folded)), rows
