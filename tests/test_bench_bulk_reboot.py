"""The bulk reboot benchmarks run end to end (correctness only: timings are not asserted)."""

from __future__ import annotations

import pytest

from tests.bench_runs import bench_figures


@pytest.mark.slow
def test_a_bulk_reboot_through_the_api_reboots_every_charger_once():
    figures = bench_figures("bulk_reboot.py", "--chargers", "20", "--settle", "0.5")
    assert figures["status"] == 200
    assert figures["results"] == {"reboots now (1 connector)": 20}
    assert figures["ping_errors"] == 0
    assert figures["worker_log"] == {}


@pytest.mark.slow
def test_the_power_cycles_in_process_load_their_chargers_a_batch_at_a_time():
    figures = bench_figures("power_cycle_stalls.py", "--chargers", "20")
    assert figures["loads"] == 1  # 20 chargers: one batch
