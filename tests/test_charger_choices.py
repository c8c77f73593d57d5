"""The simulated driver's choices are the charger's own and reproducible: the same charger
doing the same things picks the same cars and SoCs in every run, whatever else draws
random numbers in the process."""

from __future__ import annotations

import dataclasses
import random

from simulator.core.charge_point import Charger, ChargerSpec
from simulator.core.evse import Evse
from tests.test_protocol_adapter import CAR
from tests.toy_protocol import FakeClock, Toy

CARS = [dataclasses.replace(CAR, name=f"Car {n}") for n in range(8)]


def remote_charger(charge_point_id: str) -> Charger:
    spec = ChargerSpec(charge_point_id, simulate_ev_on_remote_start=True)
    config = {"AuthorizeRemoteTxRequests": "false"}
    evses = [Evse(connector_id=1, max_power_w=11_000)]
    charger = Charger(spec, evses, config, messages=Toy(), clock=FakeClock())
    charger.use_vehicles(CARS, None)
    return charger


async def sessions(charge_point_id: str, count: int) -> list[tuple[str, float]]:
    """What the simulated driver brings to `count` remote starts in a row."""
    charger = remote_charger(charge_point_id)
    seen = []
    for _ in range(count):
        await charger.after_remote_start("TAG", 1)
        battery = charger.evses[0].battery
        assert battery is not None
        seen.append((battery.spec.name, battery.soc))
        charger.unplug(1)
    return seen


async def test_the_same_charger_makes_the_same_choices_in_every_run():
    random.seed(1)
    first = await sessions("CP-CHOICE-1", 12)
    random.seed(2)  # the process-wide generator must not matter
    second = await sessions("CP-CHOICE-1", 12)
    assert first == second
    # Choices, not a constant: several cars and SoCs come up over twelve sessions.
    assert len({name for name, _ in first}) > 1
    assert len({soc for _, soc in first}) > 1
    assert all(10 <= soc <= 40 for _, soc in first)


async def test_two_chargers_do_not_make_the_same_choices():
    assert await sessions("CP-CHOICE-1", 12) != await sessions("CP-CHOICE-2", 12)
