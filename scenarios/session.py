"""Running scenario files one after another (what `runscenario` does), and its exit code.

Every file is read and checked before anything runs: one bad file stops the whole
session with exit code 2 and every problem of every file. Then each scenario runs (see
`runner`), and the session's exit code says how they ended (`exit_code`): pytest's
numbers where they mean the same, and JUnit's line between a failure (the CSMS did not
do what a check expected) and an error (something could not run, so the verdict is not
whole).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from chargers.engine_client import EngineClient
from scenarios import format
from scenarios.junit import junit_xml
from scenarios.models import ScenarioRun
from scenarios.runner import EngineHost, Options, Progress, Runner

# 0: every check held. 1: the CSMS failed a check, and everything ran. 2: nothing ran (a
# bad file or option; the command's own checks). 3: something could not run (a run or a
# step in error, or the command failed), whether or not a check failed too.
EXIT_PASSED, EXIT_FAILED, EXIT_BAD_FILE, EXIT_ERROR = 0, 1, 2, 3
# Closes of connections a summary lists; the rest are counted.
SHOWN_CLOSES = 10
# How long a worker may take to acknowledge a request: longer than an API call's, since a
# scenario across a thousand chargers sends a burst of them to a worker that is busy with
# those same chargers (and this process reads its replies one at a time).
ACK_SECONDS = 15.0


def load_files(
    paths: Sequence[str | Path], variables: Mapping[str, Any]
) -> tuple[list[format.Scenario], list[format.FormatError]]:
    """Every file checked; the scenarios, or every problem found."""
    scenarios: list[format.Scenario] = []
    errors: list[format.FormatError] = []
    for path in paths:
        try:
            # Named as given (scenarios/smoke.yaml, not smoke.yaml): an editor opens it from
            # the message, and two files of one name in two folders stay apart.
            scenarios.append(format.load(path, variables, shown=str(path)))
        except format.ScenarioError as exc:
            errors += exc.errors
    return scenarios, errors


@dataclass
class Session:
    scenarios: list[format.Scenario]
    options: Options
    host_for: Callable[[], EngineHost]  # a fresh host per scenario
    progress: Progress

    async def run(self, client: EngineClient | None = None) -> list[ScenarioRun]:
        client = client or EngineClient(ack_seconds=ACK_SECONDS)
        runs = []
        for scenario in self.scenarios:
            self.progress(f"{scenario.name} ({scenario.file}): running")
            runner = Runner(
                scenario,
                client=client,
                host=self.host_for(),
                options=self.options,
                progress=self.progress,
            )
            run = await runner.execute()
            self.progress(summary(run))
            runs.append(run)
        return runs


def summary(run: ScenarioRun) -> str:
    result = run.result
    chargers = result.get("chargers") or []
    steps = [step for charger in chargers for step in charger.get("steps") or ()]
    counts = {
        status: sum(1 for step in steps if step.get("status") == status)
        for status in ("passed", "failed", "error", "skipped")
    }
    shown = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    text = (
        f"{run.name}: {str(run.status).upper()} — {len(chargers)} charger"
        f"{'' if len(chargers) == 1 else 's'}, {len(steps)} steps ({shown or 'none'}), "
        f"seed {run.seed}, {result.get('duration', 0):.1f} s, run #{run.pk}"
    )
    if run.message:
        text += f"\n  {run.message}"
    for charger in chargers:
        if charger.get("status") != "passed" and charger.get("message"):
            text += f"\n  {charger['message']}"
    # Closes of the chargers' connections that were not the scenario's doing, passed or not.
    closes = [
        f"{charger['charge_point_id']}: {close.get('message', '')}"
        for charger in chargers
        for close in charger.get("disconnects") or ()
    ]
    for line in closes[:SHOWN_CLOSES]:
        text += f"\n  {line}"
    if len(closes) > SHOWN_CLOSES:
        text += f"\n  ... and {len(closes) - SHOWN_CLOSES} more closes (the --json report has them)"
    return text


def exit_code(runs: Sequence[ScenarioRun]) -> int:
    """An error anywhere wins over a failure, as it does within a run (`run_verdict`):
    exit 1 promises that everything ran, so that a CI job can tell a CSMS that failed
    its checks from a run that could not judge it (a CSMS not reached, a setup that
    failed), which is someone else's to fix."""
    statuses = {run.status for run in runs}
    if ScenarioRun.Status.ERROR in statuses:
        return EXIT_ERROR
    if ScenarioRun.Status.FAILED in statuses:
        return EXIT_FAILED
    return EXIT_PASSED


def tally(runs: Sequence[ScenarioRun]) -> str:
    """The session's last line: how many scenarios passed, failed and were in error."""
    count = {status: sum(run.status == status for run in runs) for status in ScenarioRun.Status}
    text = f"{count[ScenarioRun.Status.PASSED]} of {len(runs)} scenarios passed"
    if count[ScenarioRun.Status.FAILED]:
        text += f", {count[ScenarioRun.Status.FAILED]} failed"
    if count[ScenarioRun.Status.ERROR]:
        text += f", {count[ScenarioRun.Status.ERROR]} in error"
    return f"{text} (exit code {exit_code(runs)})."


def unwritable(path: str | None) -> str:
    """Why a report could not be written at `path` ("" if it can, or none is asked for)."""
    if not path:
        return ""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        return "is a directory"
    if not folder.is_dir():
        return f"its folder {folder} does not exist"
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        return "cannot be written (permissions)"
    return ""


def clashing_report(junit: str | None, json_path: str | None, files: Sequence[str]) -> str:
    """Why the reports cannot go where they are asked to ("" if they can): both at one path
    (the JSON was written over the JUnit XML, and a CI step published it as XML), or at a
    scenario file's (removed as an earlier report before it was read: the file was lost)."""

    def where(path: str) -> Path:
        return Path(path).resolve()

    if junit and json_path and where(junit) == where(json_path):
        return f"--junit and --json name one file, {junit}: give each report its own path"
    for option, path in (("junit", junit), ("json", json_path)):
        if not path:
            continue
        for file in files:
            if where(file) == where(path):
                return (
                    f"--{option} {path} is a scenario file given to run: a report there "
                    "would replace it"
                )
    return ""


def remove_report(path: str | None) -> None:
    """Remove a report an earlier invocation left at `path`: a run that writes none (it
    was interrupted, or nothing could run) must not leave the old verdicts to a CI step
    that publishes the report whatever happened."""
    if path:
        Path(path).unlink(missing_ok=True)


def write_reports(runs: Sequence[ScenarioRun], *, junit: str | None, json_path: str | None) -> None:
    results = [run.result for run in runs]
    if junit:
        Path(junit).write_bytes(junit_xml(results))
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
