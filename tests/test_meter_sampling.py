"""The meter engine's sampling schedule: one MeterValues per MeterValueSampleInterval, and
clock-aligned samples at their boundaries."""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime

import pytest

from simulator.core.clock import now_iso, parse_iso
from simulator.runtime.meter_engine import MeterEngine
from tests.engine import COMPACT, runtime_charger
from tests.toy_protocol import FakeClock

ALIGNED = {
    "ClockAlignedDataInterval": "10",
    "MeterValuesAlignedData": "Energy.Active.Import.Register",
    "MeterValueSampleInterval": "0",
}


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


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def register_of(item) -> int:
    (value,) = item.payload["meterValue"][0]["sampledValue"]
    return int(value["value"])


def test_clock_aligned_samples_are_taken_offline_at_their_boundary_with_the_register_there():
    charger = runtime_charger("CP-ALIGN", "ws://127.0.0.1:1", evses=1, config=ALIGNED)
    charger.plug_in(1, COMPACT, soc=30)
    tx = charger.start_transaction(1, "TAG")
    assert not charger.online
    # Ticks 0.3 s past each second, from a little before a boundary after the start.
    first_boundary = math.ceil(parse_iso(tx.started_at).timestamp() / 10) * 10 + 10
    walls = [first_boundary - 4.7 + k for k in range(30)]
    engine = MeterEngine([charger], tick_seconds=1.0)
    for k, wall in enumerate(walls):
        engine.tick(now=1000.0 + k, wall=at(wall))
    clock = [i for i in charger.queue if i.action == "MeterValues"]
    boundaries = [first_boundary, first_boundary + 10, first_boundary + 20]
    assert [i.payload["meterValue"][0]["timestamp"] for i in clock] == [
        now_iso(at(b)) for b in boundaries
    ]
    assert all(i.transactional and i.tx is tx for i in clock)
    # The engine visits the charger at each boundary's tick and meters up to the boundary
    # itself: the register there is the constant power's energy since the first tick.
    power_w = charger.evse(1).power_w
    assert power_w > 0
    for item, boundary in zip(clock, boundaries, strict=True):
        expected = power_w * (boundary - walls[0]) / 3600
        assert register_of(item) == int(expected)


def test_one_chargers_failing_step_costs_only_its_own_tick(caplog) -> None:
    broken, fine = charging("1"), runtime_charger("CP-FINE", "ws://127.0.0.1:1", evses=1)
    fine.config["MeterValueSampleInterval"] = "1"
    fine.plug_in(1, COMPACT, soc=30)
    fine.start_transaction(1, "TAG")

    def explode(*_args, **_kwargs):
        raise OverflowError("date value out of range")

    broken.heartbeat_due = explode  # any failure inside the step
    engine = MeterEngine([broken, fine], tick_seconds=1.0)
    due = fine.next_sample[1]
    for k in range(5):
        engine.tick(now=due + k)
    assert len(meter_values(fine)) == 5
    logged = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(logged) == 1 and "CP-SAMPLE" in logged[0].getMessage()


@pytest.mark.parametrize("step_s", [1.2, -3.0, 25.0])
def test_a_clock_step_loses_no_boundary_after_it_and_makes_up_none_it_skipped(step_s: float):
    """The CSMS's currentTime sets the charger's clock between two ticks. A boundary that its
    new clock passes after the step (here the next tick's) is sampled; one that a step
    forward jumps over is not made up, and none is sampled twice. Boundaries are those of
    the new clock from the step on."""
    clock = FakeClock(start=1000.0, wall=time.time())
    charger = runtime_charger("CP-STEP", "ws://127.0.0.1:1", evses=1, config=ALIGNED, clock=clock)
    charger.plug_in(1, COMPACT, soc=30)
    tx = charger.start_transaction(1, "TAG")
    first = math.ceil(parse_iso(tx.started_at).timestamp() / 10) * 10 + 10
    # Ticks 0.3 s past each second of the host's clock; the step comes at first - 1.5.
    walls = [first - 4.7 + k for k in range(40)]
    engine = MeterEngine([charger], tick_seconds=1.0)
    step_at = first - 1.5
    offset = 0.0
    for k, wall in enumerate(walls):
        if wall > step_at and not offset:
            clock.advance(step_at - clock.time())
            charger._sync_clock(now_iso(at(step_at + step_s)))
            offset = charger.clock_offset
            assert offset == pytest.approx(step_s)
        clock.advance(wall - clock.time())
        engine.tick(now=1000.0 + k, wall=at(wall))
    stamps = [
        parse_iso(i.payload["meterValue"][0]["timestamp"]).timestamp()
        for i in charger.queue
        if i.action == "MeterValues"
    ]
    before = [b for b in range(first - 10, first + 40, 10) if walls[0] < b <= step_at]
    # On the new clock: from the step's instant to the last tick's.
    after = [
        b for b in range(first - 10, first + 60, 10) if step_at + offset < b <= walls[-1] + offset
    ]
    assert stamps == before + after


@pytest.mark.parametrize(
    ("old", "new", "changed_at", "next_at"),
    [
        (60, 10, 59, 59),  # shorter, and 10 s since the last sample are past: at once
        (60, 30, 20, 30),  # shorter: 30 s after the last sample
        (10, 60, 5, 60),  # longer: 60 s after the last sample, not 60 s after the change
    ],
)
def test_a_new_sample_interval_counts_from_the_last_sample(old, new, changed_at, next_at):
    """A QA run lowered it from 60 s to 10 s a second before a sample was due: the next
    one came 69 s after the last (from the change, plus the new interval)."""
    clock = FakeClock()
    charger = runtime_charger("CP-NEW-INTERVAL", "ws://127.0.0.1:1", evses=1, clock=clock)
    charger.config["MeterValueSampleInterval"] = str(old)
    charger.plug_in(1, COMPACT, soc=30)
    charger.start_transaction(1, "TAG")
    last = charger.next_sample[1]  # a sample is due old s after the start: taken there
    engine = MeterEngine([charger], tick_seconds=1.0)
    clock.advance(last - clock.monotonic())
    engine.tick(now=last)
    assert len(meter_values(charger)) == 1
    clock.advance(changed_at)
    assert charger.change_configuration("MeterValueSampleInterval", str(new)) == "Accepted"
    assert charger.next_sample[1] == last + next_at
