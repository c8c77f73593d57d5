"""Issue 16's "a deliberately broken CSMS handler fails the case aimed at it": each kind of
tests/broken_csms.py, run as a process, fails the library case it names under
`runscenario`, and the same case passes against the built-in CSMS as it is.

The runner lives on its own branch (scen-core); until it is in the tree these skip."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.management import call_command

from tests.broken_csms import KINDS
from tests.process import ROOT

pytest.importorskip("scenarios.session", reason="the scenario runner is not in this tree yet")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LIBRARY = ROOT / "scenarios" / "library"


def runscenario(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("runscenario", *args, stdout=out, stderr=err)
    code = exited.value.code
    assert isinstance(code, int)
    return code, out.getvalue() + err.getvalue()


@contextmanager
def broken_csms_process(kind: str) -> Iterator[tuple[str, str]]:
    """`python -m tests.broken_csms KIND`: its CSMS URL and its control endpoint's."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.broken_csms", kind],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        # A process that never prints fails the test through pytest-timeout.
        text = process.stdout.readline() + process.stdout.readline()
        ws = re.search(r"listening on (ws://\S+?)/<", text)
        control = re.search(r"control on (http://\S+)", text)
        assert ws and control, text
        yield ws.group(1), control.group(1)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_broken_csms_fails_the_case_aimed_at_it(kind: str) -> None:
    case = KINDS[kind][1][0]
    path = str(LIBRARY / f"{case}.yaml")
    with broken_csms_process(kind) as (ws_url, control_url):
        code, out = runscenario(path, "--csms-url", ws_url, "--var", f"csms_control={control_url}")
    assert code == 1, out
    assert f"{case}: FAILED" in out, out
    code, out = runscenario(path, "--builtin-csms")
    assert code == 0, out
    assert f"{case}: PASSED" in out, out
