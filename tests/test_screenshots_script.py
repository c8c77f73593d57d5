"""`scripts/screenshots.py --help`: what each option is and its default."""

from __future__ import annotations

import subprocess
import sys

from tests.process import ROOT


def test_the_help_says_what_each_option_is_and_its_default() -> None:
    """QA: the README sends a new user to `scripts/screenshots.py --password …`; its help
    listed bare options, so a demo on another port (`--port P`) gave no hint of --url."""
    result = subprocess.run(
        [sys.executable, "scripts/screenshots.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = " ".join(result.stdout.split())  # argparse wraps the lines
    assert "the running simulator's dashboard (default: http://127.0.0.1:8000" in text
    assert "the account to log in as (default: admin)" in text
    assert "var/admin-credentials.txt" in text
    assert "page width in pixels (default: 1400)" in text
    assert "(default: docs/screenshots/)" in text
