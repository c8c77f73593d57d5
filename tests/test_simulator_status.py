"""The status line's counts: one pass over the fleet that agrees with `progress()`."""

from __future__ import annotations

import itertools

from simulator.core.charge_point import BootState
from simulator.core.evse import ConnectorStatus
from simulator.core.link import LinkState
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.engine import runtime_charger


def test_the_status_counts_match_progress_and_the_connectors_for_every_mix_of_states():
    service = Simulator(RunOptions())
    states = itertools.product(
        list(LinkState),
        [BootState.ACCEPTED, BootState.PENDING],
        ["", "refused"],  # link_error
        [False, True],  # has a connection task
        [
            (ConnectorStatus.AVAILABLE, ConnectorStatus.AVAILABLE),
            (ConnectorStatus.CHARGING, ConnectorStatus.AVAILABLE),
            (ConnectorStatus.CHARGING, ConnectorStatus.CHARGING),
            (ConnectorStatus.SUSPENDED_EV, ConnectorStatus.CHARGING),
        ],
    )
    expected_charging = 0
    for n, (link, boot, error, connecting, statuses) in enumerate(states):
        charger = runtime_charger(f"CP-{n}", "ws://127.0.0.1:1/ocpp", evses=2)
        charger.link, charger.boot, charger.link_error = link, boot, error
        for evse, connector_status in zip(charger.evses, statuses, strict=True):
            evse.status = connector_status
        expected_charging += ConnectorStatus.CHARGING in statuses
        service.store.add(charger)
        if connecting:
            service.connections[charger.id] = None  # type: ignore[assignment]  # only counted

    status = service.status()
    progress = service.progress()

    assert (status.accepted, status.connecting, status.failing) == (
        progress["accepted"],
        progress["connecting"],
        progress["failing"],
    )
    assert status.accepted > 0 and status.connecting > 0 and status.failing > 0
    assert status.charging == expected_charging > 0
    assert status.wanted == len(service.connections)


def test_until_the_fleet_is_read_the_status_line_says_it_is_loading():
    service = Simulator(RunOptions())
    assert service.status().text() == "fleet: loading the chargers..."
    service.fleet_loaded = True  # what `start` sets once the chargers are read
    assert service.status().text().startswith("fleet: 0/0 accepted, 0 connecting")
