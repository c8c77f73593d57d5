"""`runscenario` with REDIS_URL: it starts no engine of its own but drives the running
workers (two shards, as processes), for existing chargers and for temporary ones that the
workers load when the run creates them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.process import ROOT
from tests.test_scaled_out import database, deploy  # noqa: F401
from tests.test_scaled_out import pytestmark as scaled_out

pytestmark = scaled_out

SCENARIO = """\
name: {name}
description: A session on chargers of both shards, run by the running workers.
chargers: {chargers}
steps:
  - reboot: {{wait: Accepted}}
  - expect: {{answer: BootNotification, status: Accepted}}
  - plug_in: {{}}
  - present_id_tag: {{id_tag: SCALED-1}}
  - wait: {{status: Charging, timeout: 30}}
  - expect: {{answer: StartTransaction, status: Accepted}}
"""


def test_runscenario_drives_the_running_workers(tmp_path: Path, database: str) -> None:  # noqa: F811
    with deploy(tmp_path, database, web=False) as running:
        csms_url = running.shell(
            "from chargers.models import Charger; print(Charger.objects.first().csms_url)"
        ).split()[-1]
        existing = tmp_path / "existing.yaml"
        existing.write_text(SCENARIO.format(name="existing", chargers='{pattern: "SCALE-*"}'))
        temporary = tmp_path / "temporary.yaml"
        temporary.write_text(SCENARIO.format(name="temporary", chargers="{template: {count: 4}}"))
        report = tmp_path / "report.json"
        done = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "runscenario",
                str(existing),
                str(temporary),
                "--csms-url",
                csms_url,
                "--json",
                str(report),
            ],
            cwd=ROOT,
            env=running.env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        results = json.loads(report.read_text())
        assert [r["status"] for r in results] == ["passed", "passed"]
        assert sorted(c["charge_point_id"] for c in results[0]["chargers"]) == sorted(
            running.by_shard.values()
        )
        assert len(results[1]["chargers"]) == 4
        # No engine of its own: nothing said it loaded chargers.
        assert "loaded" not in done.stderr
        left = running.shell(
            "from chargers.models import Charger; "
            "print(Charger.objects.filter(charge_point_id__startswith='SCN-').count())"
        )
        assert left.split()[-1] == "0"
