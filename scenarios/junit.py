"""JUnit XML of scenario runs, for CI: one <testsuite> per scenario file, one <testcase>
per charger x step (classname "scenario.charger", the charger's id without the run's, name
"steps[i] title", the step's `scenarios.step_titles` title; each charger's full id in the
suite's properties). A failed step
carries <failure>, an errored one <error>, a skipped one <skipped>; a run that could not
set up its chargers is one errored testcase named "setup" (its time: how long the setup
went on before it failed), one cut short after it (cancelled, interrupted) one named
"run", and a charger in error whose
steps say nothing of it (it never connected: all skipped) one named "charger". A close
of a charger's connection that was not the scenario's doing is in the <system-out> of the
step it happened in (the suite's, before the charger's first step). The report of a stored
run that has not finished (`stored_run_junit`) starts with an errored testcase named
"unfinished": it holds only the steps done so far, and a CI job that fetched it too early
must not publish it as a pass. Valid against Jenkins xUnit's junit-10.xsd, the strictest
schema a CI reader holds it to (docs/scenarios.md says why that one)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from scenarios.models import ACTIVE, ScenarioRun
from scenarios.texts import storable


def stored_run_junit(run: ScenarioRun) -> bytes:
    """The report of a stored run (API, admin, dashboard), finished or not."""
    # A run still queued, or one that ended before it ran (cancelled while queued, a source
    # that no longer parses), has no result: its name, file, start and message are the
    # row's. Without the message, such a run's report had no testcase at all: no error.
    result = run.result or {
        "scenario": run.name,
        "run": run.pk,
        "seed": run.seed,
        "message": run.message,
    }
    result = {"file": run.file, **result}
    if "started" not in result and run.started is not None:
        result["started"] = run.started
    if run.status in ACTIVE:
        result = {
            **result,
            "unfinished": (
                f"Scenario run {run.pk} has not finished ({run.status}): this report holds "
                "only the steps done so far, not its verdict. Fetch it once GET "
                f"/api/v1/scenarios/runs/{run.pk} says passed, failed or error."
            ),
        }
    return junit_xml([result])


def junit_xml(results: Iterable[dict[str, Any]]) -> bytes:
    suites = ET.Element("testsuites", name="scenarios")
    # No `skipped` here: Jenkins xUnit's junit-10.xsd (and Ant's JUnit.xsd) allow it on a
    # <testsuite> only, and a strict validator refused the whole report for it. Each
    # suite keeps its own, and the CI readers (docs/scenarios.md) count the testcases.
    totals = {"tests": 0, "failures": 0, "errors": 0}
    # The suites' times added up: a reader that shows the report's duration takes the
    # root's (without it, a report of runs that took minutes read as 0 s in some).
    seconds = 0.0
    for result in results:
        # A result stored before its texts were made storable may hold what XML cannot.
        suite = _suite(storable(result))
        suites.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        seconds += float(suite.get("time", "0"))
    for key, value in totals.items():
        suites.set(key, str(value))
    suites.set("time", f"{seconds:.3f}")
    ET.indent(suites)
    xml: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return xml


def _suite(result: dict[str, Any]) -> ET.Element:
    name = str(result.get("scenario", "scenario"))
    suite = ET.Element("testsuite", name=name)
    # Left out when unknown (a run that has not started): an empty one is no dateTime, and
    # the JUnit schemas make both optional (Jenkins xUnit's junit-10.xsd) or have no `file`.
    if result.get("file"):
        suite.set("file", str(result["file"]))
    timestamp = _timestamp(result.get("started"))
    if timestamp:
        suite.set("timestamp", timestamp)
    suite.set("time", f"{float(result.get('duration') or 0):.3f}")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="seed", value=str(result.get("seed", "")))
    ET.SubElement(props, "property", name="run", value=str(result.get("run", "")))
    for charger in result.get("chargers") or ():
        cp_id = str(charger.get("charge_point_id"))
        ET.SubElement(props, "property", name="charge_point_id", value=cp_id)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    unplaced: list[str] = []
    if result.get("unfinished"):
        case = ET.SubElement(suite, "testcase", classname=name, name="unfinished", time="0.000")
        _judged(case, "error", str(result["unfinished"]))
        counts["tests"] += 1
        counts["errors"] += 1
    if result.get("message"):
        # Chargers in the result: the setup was done, and the run was cut short later
        # (cancelled, interrupted, its engine failed): "setup" would point at the wrong part.
        case = ET.SubElement(
            suite,
            "testcase",
            classname=name,
            name="run" if result.get("chargers") else "setup",
            time=f"{float(result.get('setup_duration') or 0):.3f}",
        )
        _judged(case, "error", str(result["message"]))
        counts["tests"] += 1
        counts["errors"] += 1
    for charger in result.get("chargers") or ():
        cp_id = str(charger.get("charge_point_id"))
        # A template's chargers are named "{prefix}-R{run}.{token}-{n}" (before the token,
        # "{prefix}-R{run}-{n}"): without the run's part the classname is the same test in
        # every run (CI keeps each test's history by name).
        run = result.get("run")
        stable = re.sub(rf"-R{run}(\.[0-9a-z]+)?-", "-", cp_id, count=1) if run else cp_id
        classname = f"{name}.{stable}"
        steps = charger.get("steps") or ()
        if charger.get("status") == "error" and not any(
            step.get("status") in ("failed", "error") for step in steps
        ):
            # An error of the charger itself (it never connected, say) leaves its steps
            # skipped: said by a testcase of its own, or CI would read the run as green.
            # Its time is the charger's: from the start of its case to its verdict (the
            # minute it tried to connect), as a step's testcase has the step's.
            case = ET.SubElement(
                suite,
                "testcase",
                classname=classname,
                name="charger",
                time=f"{float(charger.get('duration') or 0):.3f}",
            )
            _judged(case, "error", str(charger.get("message", "")))
            counts["tests"] += 1
            counts["errors"] += 1
        for step in steps:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=classname,
                # What the step does or checks (a result stored before steps had titles:
                # its kind), after its index, which keeps it unique in the charger's case.
                name=f"steps[{step.get('index')}] {step.get('title') or step.get('kind')}",
                time=f"{float(step.get('duration') or 0):.3f}",
            )
            counts["tests"] += 1
            status = step.get("status")
            message = str(step.get("message", ""))
            if status == "failed":
                _judged(case, "failure", message)
                counts["failures"] += 1
            elif status == "error":
                _judged(case, "error", message)
                counts["errors"] += 1
            elif status == "skipped":
                ET.SubElement(case, "skipped", message=message)
                counts["skipped"] += 1
            if step.get("notes"):
                # What happened meanwhile that the step did not judge: a connection the
                # CSMS closed, say.
                ET.SubElement(case, "system-out").text = "\n".join(map(str, step["notes"]))
        for disconnect in charger.get("disconnects") or ():
            if disconnect.get("step") is None:  # before its first step: said by the suite
                unplaced.append(f"{cp_id}: {disconnect.get('message', '')}")
    if unplaced:
        ET.SubElement(suite, "system-out").text = "\n".join(unplaced)
    for key, value in counts.items():
        suite.set(key, str(value))
    return suite


def _timestamp(started: Any) -> str:
    """A result's `started` (UTC, ISO 8601; or the row's, a datetime) as the JUnit schema (Ant's, Windy Road's
    JUnit.xsd) writes a suite's timestamp: to the second, without a zone (it is UTC);
    "" when there is none, or none that parses."""
    if isinstance(started, datetime):
        when = started
    elif not started:
        return ""
    else:
        try:
            when = datetime.fromisoformat(str(started).replace("Z", "+00:00"))
        except ValueError:
            return ""
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def _judged(case: ET.Element, tag: str, message: str) -> None:
    """A <failure> or <error> with its message as the attribute and as the text: Jenkins
    shows the attribute, GitLab only the text."""
    ET.SubElement(case, tag, message=message).text = message
