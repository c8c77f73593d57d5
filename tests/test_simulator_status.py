"""The status line's counts: one pass over the fleet that agrees with `progress()`."""

from __future__ import annotations

import itertools
from dataclasses import replace
from unittest.mock import patch

import pytest
from asgiref.sync import sync_to_async

from simulator.core.charge_point import BootState
from simulator.core.evse import ConnectorStatus
from simulator.core.link import LinkState
from simulator.runtime import persistence
from simulator.runtime.lifecycle import RunOptions, Simulator
from simulator.runtime.persistence import build_charger
from tests.cast import make_charger
from tests.engine import runtime_charger, wait_until


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
    assert status.pending == progress["boot pending"] > 0


def test_until_the_fleet_is_read_the_status_line_says_it_is_loading():
    service = Simulator(RunOptions())
    assert service.status().text() == "fleet: loading the chargers..."
    service.fleet_loaded = True  # what `start` sets once the chargers are read
    assert service.status().text().startswith("fleet: 0/0 accepted, 0 connecting")


@pytest.mark.django_db
def test_while_the_fleet_is_read_the_status_line_counts_the_rows_read():
    """A start that reads 10,000 chargers said only "loading the chargers..." for ~12 s."""
    for n in range(3):
        make_charger(f"READ-{n}")
    make_charger("READ-OFF", enabled=False)  # not loaded, not counted
    service = Simulator(RunOptions())
    seen: list[str] = []

    def noting(*args, **kwargs):  # each row's build, as the thread reads it
        seen.append(service.status().text())
        return build_charger(*args, **kwargs)

    with patch.object(persistence, "build_charger", noting):
        chargers = persistence.load_fleet(progress=service.load_progress)
    assert len(chargers) == 3
    assert seen == [f"fleet: loading the chargers... {n}/3 read" for n in (1, 2, 3)]
    assert service.status().text() == (
        "fleet: loading the chargers... 3 read, restoring their sessions"
    )
    service.fleet_loaded = True
    assert service.status().text().startswith("fleet: 0/0 accepted")


@pytest.mark.django_db(transaction=True)
async def test_chargers_the_csms_answers_pending_or_rejected_are_said_so(csms):
    """A CSMS that does not know the chargers yet answers their boot Pending (or Rejected):
    the status line read "fleet: 0/2 accepted, 0 connecting, 0 failing", the two online
    chargers counted nowhere, and a first-time user could not tell what they were doing."""
    csms.boot_status = "Pending"
    for cp_id in ("CP-P1", "CP-P2"):
        await sync_to_async(make_charger)(cp_id, csms_url=csms.url)
    service = Simulator(RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1))
    await service.start()
    try:
        await wait_until(lambda: service.progress()["boot pending"] == 2, message="pending")
        status = service.status()
        assert (status.accepted, status.pending) == (0, 2)
        assert status.lines()[1] == (
            "not accepted: 2 Pending (online; the CSMS answered their BootNotification so, "
            "and they retry at its interval)"
        )
        assert status.text().startswith("fleet: 0/2 accepted, 0 connecting, 0 failing, ")
    finally:
        await service.stop()
    rejected = replace(status, pending=0, rejected=1)
    assert rejected.lines()[1].startswith("not accepted: 1 Rejected (online; ")
