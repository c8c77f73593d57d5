"""The meter engine's sampling schedule: one MeterValues per MeterValueSampleInterval."""

from __future__ import annotations

import random

import pytest

from simulator.meter_engine import MeterEngine
from tests.engine import COMPACT, runtime_charger


def charging(interval: str):
    charger = runtime_charger("CP-SAMPLE", "ws://127.0.0.1:1", evses=1)
    charger.config["MeterValueSampleInterval"] = interval
    charger.plug_in(1, COMPACT, soc=30)
    charger.start_transaction(1, "TAG")
    return charger


def meter_values(charger) -> list:
    return [item for item in charger.queue if item.action == "MeterValues"]


@pytest.mark.parametrize("seed", range(5))
def test_sampling_at_the_tick_rate_loses_no_sample_to_tick_jitter(seed: int) -> None:
    # A tick wakes up a few ms early or late; a sample due "now" must not wait a whole
    # tick and then resynchronise (the CSMS would see 2 s gaps at 1 s sampling).
    charger = charging("1")
    engine = MeterEngine([charger], tick_seconds=1.0)
    due = charger.next_sample[1]
    rng = random.Random(seed)
    for k in range(60):
        engine.tick(now=due + k + rng.uniform(-0.004, 0.004))
    assert len(meter_values(charger)) == 60


def test_a_longer_interval_samples_once_per_interval() -> None:
    charger = charging("15")
    engine = MeterEngine([charger], tick_seconds=1.0)
    due = charger.next_sample[1]
    for k in range(120):
        engine.tick(now=due + k + 0.001)
    assert len(meter_values(charger)) == 8  # at 0, 15, ..., 105 s


def test_an_engine_that_fell_behind_resynchronises_instead_of_bursting() -> None:
    charger = charging("1")
    engine = MeterEngine([charger], tick_seconds=1.0)
    due = charger.next_sample[1]
    engine.tick(now=due)
    engine.tick(now=due + 10)  # the process stalled for 10 s
    engine.tick(now=due + 11)
    assert len(meter_values(charger)) == 3
