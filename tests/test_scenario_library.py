"""The built-in scenario library (scenarios/library/*.yaml) run by the runner: every case
passes against the built-in CSMS, and a deliberately broken CSMS handler (the test double
tests/broken_csms.py) fails the cases aimed at it.

The library, the CSMS's control endpoint (the cases' `${csms_control}`) and the test
double come from the library's own branch; until they are in the tree these tests skip."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from chargers.engine_client import EngineClient
from scenarios.format import load
from scenarios.models import ScenarioRun
from scenarios.runner import Options, Runner
from simulator.csms import CentralSystem
from simulator.management.commands.runscenario import InProcessEngine

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.usefixtures("flushed_layer"),
]

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "library"
CASES = sorted(LIBRARY.glob("*.yaml"))


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


CONTROL = _module("simulator.csms.control")
BROKEN = _module("tests.broken_csms")
needs_library = pytest.mark.skipif(
    not CASES or CONTROL is None, reason="the scenario library is not in this tree"
)


async def run_case(path: Path, csms: CentralSystem, control_url: str) -> ScenarioRun:
    runner = Runner(
        load(path),
        client=EngineClient(),
        host=InProcessEngine(),
        options=Options(csms_url=csms.url, csms_control=control_url, settle_seconds=0.3),
    )
    return await runner.execute()


def problems(run: ScenarioRun) -> list[str]:
    return [run.message] * bool(run.message) + [
        step["message"]
        for charger in run.result["chargers"]
        for step in charger["steps"]
        if step["status"] not in ("passed", "skipped")
    ]


@needs_library
@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
async def test_the_case_passes_against_the_builtin_csms(path: Path, csms: CentralSystem) -> None:
    control = CONTROL.ControlServer(csms)
    await control.start("127.0.0.1", 0)
    try:
        run = await run_case(path, csms, control.url)
    finally:
        await control.stop()
    assert run.status == "passed", problems(run)
    # The built-in CSMS closes no connection: the cases' own closes, disconnects, reboots
    # and network cuts are none to report.
    closes = [close for c in run.result["chargers"] for close in c["disconnects"]]
    assert closes == [], closes


BROKEN_CASES = [
    (kind, case) for kind, (_, cases) in (BROKEN.KINDS if BROKEN else {}).items() for case in cases
]


@needs_library
@pytest.mark.skipif(BROKEN is None, reason="the broken CSMS test double is not in this tree")
@pytest.mark.parametrize(("kind", "case"), BROKEN_CASES)
async def test_a_broken_csms_handler_fails_the_case_aimed_at_it(kind: str, case: str) -> None:
    async with BROKEN.running_broken_csms(kind) as (csms, control):
        run = await run_case(LIBRARY / f"{case}.yaml", csms, control.url)
    assert run.status == "failed", problems(run)
    failed = [
        step
        for charger in run.result["chargers"]
        for step in charger["steps"]
        if step["status"] == "failed"
    ]
    assert failed and all(step["message"].startswith("steps[") for step in failed)
