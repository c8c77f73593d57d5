"""Our JUnit reports as a strict CI reader takes them: valid against Jenkins xUnit's
junit-10.xsd (tests/schemas/junit-10.xsd, the schema the xUnit plugin validates a JUnit
report against before it reads it), and with counts that add up to the testcases, which
Jenkins' junit plugin, GitLab and the GitHub reporters count themselves. Every test that
reads a report reads it through `valid_junit`, so that every kind of report the suite
makes is checked."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import xmlschema

SCHEMA = xmlschema.XMLSchema10(Path(__file__).parent / "schemas" / "junit-10.xsd")

# A suite's count and the testcase child that counts for it (`tests`: any testcase).
COUNTED = {"failures": "failure", "errors": "error", "skipped": "skipped"}


def valid_junit(report: bytes | Path) -> ET.Element:
    """The report's root (<testsuites>), once it validates and its counts add up."""
    root = ET.fromstring(report.read_bytes() if isinstance(report, Path) else report)
    problems = [f"{error.path}: {error.reason}" for error in SCHEMA.iter_errors(root)]
    assert not problems, "not valid against junit-10.xsd: " + "; ".join(problems)
    totals = dict.fromkeys(("tests", "failures", "errors"), 0)
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        counted = {"tests": len(cases)} | {
            key: sum(case.find(tag) is not None for case in cases) for key, tag in COUNTED.items()
        }
        said = {key: int(suite.get(key, "0")) for key in counted}
        assert said == counted, f"suite {suite.get('name')!r} says {said}, has {counted}"
        for key in totals:
            totals[key] += counted[key]
    said = {key: int(root.get(key, "0")) for key in totals}
    assert said == totals, f"<testsuites> says {said}, its suites have {totals}"
    # The report's duration: its suites' added up (each written to the millisecond).
    suites = list(root.iter("testsuite"))
    seconds = sum(float(suite.get("time", "0")) for suite in suites)
    assert root.get("time") is not None, "<testsuites> has no time"
    assert abs(float(root.get("time", "0")) - seconds) <= 0.001 * max(len(suites), 1)
    return root
