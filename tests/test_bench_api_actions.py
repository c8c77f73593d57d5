"""The API actions benchmark runs end to end (correctness only: timings are not asserted)."""

from __future__ import annotations

import pytest

from tests.bench_runs import bench_figures


@pytest.mark.slow
def test_it_drives_a_charging_fleet_through_the_api_and_reports_json(tmp_path):
    figures = bench_figures(
        "api_actions.py", "--chargers", "30", "--actions", "10", "--settle", "0.5",
        "--logs", str(tmp_path),
    )  # fmt: skip
    assert figures["errors"] == 0, figures["error_details"]
    for name in ("bulk_by_status", "bulk_resume", "bulk_by_ids", "bulk_resume_by_ids"):
        assert figures[f"{name}_results"] == 30
    assert figures["action_p50_ms"] is not None and figures["state_p99_ms"] is not None
