"""The fleet benchmark harness runs end to end (correctness only: timings are not asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_runs import bench_figures

KEYS = [
    "chargers",
    "booted",
    "boot_seconds",
    "rss_mb",
    "rss_kib_per_charger",
    "cpu_percent",
    "msgs_per_s",
    "msgs_per_cpu_second",
    "remote_start_p50_ms",
    "remote_start_p99_ms",
]


@pytest.mark.slow
def test_it_boots_50_chargers_starts_their_transactions_and_reports_json(tmp_path):
    figures = _run_fleet(tmp_path, "--chargers", "50", "--duration", "3", "--sample-interval", "1")
    assert list(figures)[: len(KEYS)] == KEYS
    assert figures["chargers"] == 50
    assert figures["booted"] == 50
    assert figures["boot_seconds"] is not None
    assert figures["started"] == 50
    assert figures["calls_by_action"].get("MeterValues", 0) > 0
    assert figures["errors"] == 0, figures["error_details"]


def _run_fleet(tmp_path: Path, *options: str) -> dict:
    return bench_figures("fleet.py", *options, "--logs", str(tmp_path))


@pytest.mark.slow
def test_with_two_connectors_every_connector_is_started_and_boot_waits_for_both(tmp_path):
    figures = _run_fleet(
        tmp_path, "--chargers", "20", "--connectors", "2", "--duration", "3",
        "--sample-interval", "1", "--no-baseline",
    )  # fmt: skip
    assert figures["booted"] == 20
    assert figures["connectors"] == 2
    assert figures["started"] == 40  # one StartTransaction per connector
    assert figures["calls_by_action"].get("MeterValues", 0) > 0
    # Each connector's register is checked on its own: interleaved, they never "go back".
    assert figures["errors"] == 0, figures["error_details"]


@pytest.mark.slow
def test_idle_chargers_boot_and_send_no_transaction_messages(tmp_path):
    figures = _run_fleet(
        tmp_path, "--chargers", "20", "--idle", "--warmup", "1", "--duration", "3", "--no-baseline"
    )
    assert figures["booted"] == 20
    assert figures["idle"] is True
    assert "started" not in figures
    assert figures["remote_start_p50_ms"] is None
    assert not {"StartTransaction", "MeterValues"} & set(figures["calls_by_action"])
    assert figures["open_connections"] == 20
    assert figures["warmup"] == 1.0
    assert figures["errors"] == 0, figures["error_details"]
