"""The connect ramp (simulator/runtime/connect_ramp.py): a worker with a connect rate starts
its chargers' connections at most that many a second, against the built-in CSMS on
loopback. What is asserted of the spacing comes from the ramp's own release instants and the
CSMS's accept instants on the same clock, never from how fast the host is."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from websockets.asyncio.server import ServerConnection

from chargers.engine_client import EngineClient
from chargers.models import Charger as ChargerRow
from simulator.core.charge_point import BootState, LinkState
from simulator.csms import CentralSystem
from simulator.csms.handlers import Central, CSMSConnection
from simulator.runtime.connect_ramp import CATCH_UP_SECONDS, ConnectRamp
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.cast import make_charger
from tests.engine import wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.usefixtures("flushed_layer"),
]

# A float's rounding of k intervals, not a tolerance of the schedule.
EPSILON = 1e-6


@pytest.fixture
async def accepted_at(csms: CentralSystem) -> AsyncIterator[dict[str, float]]:
    """cp id -> the CSMS's clock (time.monotonic, the ramp's too) when it accepted the
    charger's first WebSocket connection."""
    seen: dict[str, float] = {}

    class Recording(CSMSConnection):
        def __init__(self, cp_id: str, connection: ServerConnection, csms: Central) -> None:
            seen.setdefault(cp_id, time.monotonic())
            super().__init__(cp_id, connection, csms)

    csms.connection_class = Recording
    yield seen


def fleet(count: int, url: str, *, auto_connect: bool = True) -> list[str]:
    ids = [f"RAMP-{n:02d}" for n in range(1, count + 1)]
    for cp_id in ids:
        make_charger(cp_id, evses=1, csms_url=url, auto_connect=auto_connect)
    return ids


def pks(ids: list[str]) -> dict[int, str]:
    return dict(
        ChargerRow.objects.filter(charge_point_id__in=ids).values_list("pk", "charge_point_id")
    )


def worker(rate: float) -> Simulator:
    return Simulator(
        RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5, connect_rate=rate),
        write=lambda _text: None,
    )


def all_accepted(simulator: Simulator, count: int) -> bool:
    return simulator.progress()["accepted"] == count


async def test_the_csms_sees_the_fleet_connect_in_order_at_the_rate(csms, accepted_at):
    rate, count = 8.0, 8
    ids = await sync_to_async(fleet)(count, csms.url)
    simulator = worker(rate)
    await simulator.start()
    try:
        await wait_until(lambda: all_accepted(simulator, count), timeout=60, message="the fleet")
        released = list(simulator.ramp.released)
    finally:
        await simulator.stop()
    # In the fleet's order, each charger once.
    assert [name for name, _ in released] == ids
    first = released[0][1]
    for k, (name, at) in enumerate(released):
        # The ramp's schedule: the k-th no earlier than k intervals after the first...
        assert at - first >= k / rate - EPSILON, (k, at - first)
        # ...and the CSMS accepted none before the ramp let it start.
        assert accepted_at[name] >= at
    # So the CSMS's accepts are spread over at least the ramp's (count - 1) intervals,
    # which all at once (the old start-up) never were.
    assert accepted_at[ids[-1]] - first >= (count - 1) / rate - EPSILON
    # At each release, the CSMS had seen only chargers released before it.
    for k, (_, at) in enumerate(released):
        seen_before = {cp_id for cp_id, when in accepted_at.items() if when < at}
        assert seen_before <= set(ids[:k])


async def test_new_chargers_of_an_import_take_their_turns_in_the_ramp(csms, accepted_at):
    simulator = worker(4.0)
    await simulator.start()
    try:
        ids = await sync_to_async(fleet)(4, csms.url)
        await simulator.reloader.reconcile()  # the import's fleet.changed, or a lost one's
        await wait_until(lambda: all_accepted(simulator, 4), timeout=60, message="the import")
    finally:
        await simulator.stop()
    released = list(simulator.ramp.released)
    assert [name for name, _ in released] == ids
    first = released[0][1]
    for k, (name, at) in enumerate(released):
        assert at - first >= k / 4.0 - EPSILON
        assert accepted_at[name] >= at


async def test_a_rate_of_0_connects_the_whole_fleet_at_once(csms, accepted_at):
    ids = await sync_to_async(fleet)(5, csms.url)
    simulator = worker(0)
    await simulator.start()
    try:
        # Every connection task runs run_connection itself from the start: none waits.
        assert len(simulator.connections) == 5
        await wait_until(lambda: all_accepted(simulator, 5), timeout=60, message="the fleet")
        assert simulator.ramp.progress() is None
        assert list(simulator.ramp.released) == []
        assert simulator.status().ramp is None
        assert "connect ramp" not in simulator.status().text()
    finally:
        await simulator.stop()
    assert set(accepted_at) == set(ids)


async def test_a_stop_during_the_ramp_connects_none_of_the_rest(csms, accepted_at):
    # One charger every 2 s: the ramp lasts 8 s at least, the stop comes after the first.
    ids = await sync_to_async(fleet)(5, csms.url)
    simulator = worker(0.5)
    await simulator.start()
    stopped = False
    try:
        await wait_until(lambda: simulator.ramp.released, timeout=30, message="a release")
        status = simulator.status()
        assert status.ramp is not None and status.ramp[1] == 5
        # The status line says why chargers are still offline.
        assert re.search(
            r"connect ramp: [1-4]/5 chargers started connecting \(0.5/s\)", (status.text())
        )
        assert status.wanted == 5  # waiting ones count as connecting
        await simulator.stop()
        stopped = True
        released = [name for name, _ in simulator.ramp.released]
    finally:
        if not stopped:
            await simulator.stop()
    assert 1 <= len(released) < 5
    assert released == ids[: len(released)]
    # Nothing is left to connect the rest, and the CSMS saw none of them.
    assert all(task.done() for task in simulator.connections.values())
    assert set(accepted_at) <= set(released)
    # The final checkpoint saved every charger, those never connected too.
    assert simulator.saved_at_stop == 5


def retire(deleted: str, disabled: str) -> None:
    ChargerRow.objects.filter(charge_point_id=deleted).delete()
    # As an edit saves it: a new version, which the reconciliation looks for.
    ChargerRow.objects.filter(charge_point_id=disabled).update(
        enabled=False, updated=timezone.now()
    )


async def test_a_charger_deleted_or_disabled_in_the_ramp_never_connects(csms, accepted_at):
    # One charger every 4 s: the third's turn comes 8 s after the first's.
    ids = await sync_to_async(fleet)(4, csms.url)
    simulator = worker(0.25)
    await simulator.start()
    try:
        await wait_until(lambda: simulator.ramp.released, timeout=30, message="a release")
        # The last two are still waiting for their turns.
        assert simulator.ramp.waiting(ids[3]) and simulator.ramp.waiting(ids[2])
        await sync_to_async(retire)(deleted=ids[3], disabled=ids[2])
        await simulator.reloader.reconcile()
        await wait_until(
            lambda: ids[2] not in simulator.connections and ids[3] not in simulator.connections,
            timeout=30,
            message="the retired chargers' connections gone",
        )
        # The ramp goes on with the others and ends: nothing is left to connect them.
        await wait_until(
            lambda: simulator.ramp.progress() is None, timeout=60, message="the ramp's end"
        )
        charger = simulator.store.get(ids[1])
        assert charger is not None
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, timeout=60, message="boot")
    finally:
        await simulator.stop()
    assert [name for name, _ in simulator.ramp.released] == ids[:2]
    assert set(accepted_at) == set(ids[:2])


async def test_a_bulk_connect_takes_turns_and_one_charger_asked_for_goes_first(csms, accepted_at):
    # Not connected at start-up; one charger every 4 s once asked to.
    ids = await sync_to_async(fleet)(3, csms.url, auto_connect=False)
    by_pk = await sync_to_async(pks)(ids)
    simulator = worker(0.25)
    await simulator.start(channels=True)
    try:
        client = await commands()
        outcome = await client.bulk("connect", chargers=by_pk)
        assert sorted(r["message"] for r in outcome.results) == [
            f"{cp_id} connects to {csms.url} in its turn of the connect ramp "
            "(0.25 chargers a second)"
            for cp_id in ids
        ]
        await wait_until(lambda: simulator.ramp.released, timeout=30, message="a release")
        assert simulator.ramp.waiting(ids[2])
        # A person asks for the last one: it connects now, not 8 s from now in the ramp.
        pk = next(pk for pk, cp_id in by_pk.items() if cp_id == ids[2])
        result = await client.command(pk, ids[2], "connect")
        assert result["message"] == (
            f"{ids[2]} was waiting for its turn in the connect ramp: connecting now to {csms.url}"
        )
        charger = simulator.store.get(ids[2])
        assert charger is not None
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, timeout=60, message="boot")
        assert ids[2] not in [name for name, _ in simulator.ramp.released]
        # The ramp goes on with the others alone.
        await wait_until(
            lambda: simulator.ramp.progress() is None, timeout=60, message="the ramp's end"
        )
    finally:
        await simulator.stop()
    assert [name for name, _ in simulator.ramp.released] == ids[:2]
    assert set(accepted_at) == set(ids)


async def test_the_fleet_is_frozen_once_up_only_after_the_ramp(csms, accepted_at):
    """The collector's freeze waits for the fleet to be up, a patience at most: a ramp
    that outlasts the patience is waited for first, or half the fleet stays unfrozen."""
    ids = await sync_to_async(fleet)(3, csms.url)
    simulator = worker(0.5)  # 4 s of ramp at least
    await simulator.start()
    try:
        await simulator._until_up(patience=0.1)
        assert simulator.ramp.progress() is None
        assert [name for name, _ in simulator.ramp.released] == ids
    finally:
        await simulator.stop()


# -- reconnects and bulk reboots ---------------------------------------------------------------


def recording(into: list[tuple[str, float]]) -> type[CSMSConnection]:
    """A CSMS connection class that notes (cp id, time.monotonic) of every connection the
    CSMS accepts, reconnects too."""

    class Recording(CSMSConnection):
        def __init__(self, cp_id: str, connection: ServerConnection, csms: Central) -> None:
            into.append((cp_id, time.monotonic()))
            super().__init__(cp_id, connection, csms)

    return Recording


async def up_by_hand(simulator: Simulator, ids: list[str]) -> None:
    """Connected as a person connects each of them (at once, none of them paced), and
    accepted."""
    for cp_id in ids:
        charger = simulator.store.get(cp_id)
        assert charger is not None
        simulator.connect(charger)
    await wait_until(lambda: all_accepted(simulator, len(ids)), timeout=60, message="the fleet")


async def commands() -> EngineClient:
    """A client of the worker's commands, once its command server has joined its group
    (it answers a summary then)."""
    client = EngineClient()
    while (await client.summary()).missing:
        await asyncio.sleep(0.05)
    return client


def most_in_a_window(instants: list[float], window: float) -> int:
    """The most of `instants` within any `window` seconds."""
    ordered = sorted(instants)
    return max((bisect_left(ordered, at + window) - k for k, at in enumerate(ordered)), default=0)


def allowance(rate: float, window: float) -> int:
    """The most the ramp lets start within any `window` seconds: the rate's share, the one
    due as the window opens, and what it may make up at once after a busy loop."""
    return math.floor((window + CATCH_UP_SECONDS) * rate) + 1


def without_a_turn(
    accepts: list[tuple[str, float]], released: list[tuple[str, float]], since: float
) -> list[str]:
    """The chargers whose accepted connection had no turn of theirs in the ramp before it
    (since `since`)."""
    return [
        cp_id
        for cp_id, at in accepts
        if not any(name == cp_id and since <= turn <= at for name, turn in released)
    ]


def ramp_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "simulator.runtime.connect_ramp"]


async def test_reconnects_after_a_csms_outage_reach_it_at_the_rate(csms, caplog):
    rate, count = 2.0, 10
    ids = await sync_to_async(fleet)(count, csms.url, auto_connect=False)
    simulator = worker(rate)
    await simulator.start()
    back = CentralSystem()
    accepts: list[tuple[str, float]] = []
    back.connection_class = recording(accepts)
    shown: list[str] = []  # the status lines of the storm that told of the ramp

    def noting(predicate: Callable[[], bool]) -> Callable[[], bool]:
        def note() -> bool:
            text = simulator.status().text()
            if "connect ramp" in text:
                shown.append(text)
            return predicate()

        return note

    try:
        await up_by_hand(simulator, ids)
        assert list(simulator.ramp.released) == []  # connected by hand: no turn taken
        port = csms.port
        with caplog.at_level(logging.INFO, logger="simulator.runtime.connect_ramp"):
            went = time.monotonic()
            await csms.stop()  # the CSMS goes away: each charger retries on its backoff...
            await wait_until(
                # Failing to reconnect, not just closed by the CSMS as it went away (which
                # is the link's error too, until the charger tries again).
                noting(
                    lambda: (
                        simulator.progress()["failing"] == count
                        and not any(c.link_error.startswith("closed") for c in simulator.store)
                    )
                ),
                timeout=60,
                message="every charger failing to reconnect",
            )
            await back.start(host="127.0.0.1", port=port)  # ... and it comes back
            await wait_until(
                noting(lambda: all_accepted(simulator, count)),
                timeout=60,
                message="the fleet reconnected",
            )
            await wait_until(
                lambda: simulator.ramp.progress() is None, timeout=60, message="the ramp's end"
            )
    finally:
        await simulator.stop()
        await back.stop()
    assert sorted(cp_id for cp_id, _ in accepts) == sorted(ids)  # each once
    # The CSMS accepted no more in any second than the rate allows (all at once before)...
    assert most_in_a_window([at for _, at in accepts], 1.0) <= allowance(rate, 1.0)
    # ...each after a turn of its charger in the ramp.
    assert without_a_turn(accepts, list(simulator.ramp.released), since=went) == []
    # The status line and the log told of the storm: a charger counts once, however many
    # turns it took while the CSMS was away.
    assert any(
        re.search(r"connect ramp: \d+/10 chargers started connecting, \d+ waiting to retry", t)
        for t in shown
    )
    lines = ramp_lines(caplog)
    assert any(
        re.fullmatch(
            r"connect ramp: chargers reconnect at most 2 a second \(\d+ waiting so far\)", m
        )
        for m in lines
    )
    assert any(
        re.fullmatch(
            r"connect ramp: \d+ chargers started connecting in [\d.]+ s( \(\d+ attempts\))?", m
        )
        for m in lines
    )


async def test_a_charger_connected_by_hand_in_a_reconnect_storm_goes_first(csms):
    rate, count = 0.5, 4  # one charger every 2 s: the last one's turn is 6 s away
    ids = await sync_to_async(fleet)(count, csms.url, auto_connect=False)
    by_pk = await sync_to_async(pks)(ids)
    simulator = worker(rate)
    await simulator.start(channels=True)
    back = CentralSystem()
    accepts: list[tuple[str, float]] = []
    back.connection_class = recording(accepts)
    try:
        await up_by_hand(simulator, ids)
        client = await commands()
        port = csms.port
        await csms.stop()
        await back.start(host="127.0.0.1", port=port)
        # Back already, but the chargers reconnect in their turns: a person asks for the
        # last one waiting (its turn 2 s away at least), say after bringing the CSMS back.
        await wait_until(
            lambda: sum(simulator.ramp.waiting(cp_id) for cp_id in ids) >= 2,
            timeout=10,
            message="chargers waiting for their turns to reconnect",
        )
        cp_id = simulator.ramp.in_turn_order()[-1]
        pk = next(pk for pk, name in by_pk.items() if name == cp_id)
        asked = time.monotonic()
        result = await client.command(pk, cp_id, "connect")
        assert result["message"] == (
            f"{cp_id} was waiting for its turn in the connect ramp: connecting now to {csms.url}"
        )
        charger = simulator.store.get(cp_id)
        assert charger is not None
        await wait_until(lambda: charger.link is LinkState.ONLINE, timeout=60, message="online")
    finally:
        await simulator.stop()
        await back.stop()
    # It went now, not in a turn of the ramp.
    assert [at >= asked for name, at in accepts if name == cp_id] == [True]
    assert [at for name, at in simulator.ramp.released if name == cp_id and at >= asked] == []


REBOOTED = (
    "{} reboots now (1 connector); it reconnects in its turn of the connect ramp "
    "(2 chargers a second)"
)


@pytest.mark.parametrize(
    ("action", "args", "said"),
    [("reboot", {}, REBOOTED), ("cut_network", {"seconds": 1}, "network of {} cut for 1 s")],
    ids=["reboot", "cut_network"],
)
async def test_bulk_actions_that_reconnect_the_chargers_do_it_in_turns_of_the_ramp(
    csms, action, args, said
):
    """The API's bulk actions (the MCP tool's and the dashboard's too): a reboot, and a
    network cut whose chargers all come back as it ends."""
    rate, count = 2.0, 8
    accepts: list[tuple[str, float]] = []
    csms.connection_class = recording(accepts)
    ids = await sync_to_async(fleet)(count, csms.url, auto_connect=False)
    by_pk = await sync_to_async(pks)(ids)
    simulator = worker(rate)
    await simulator.start(channels=True)
    try:
        await up_by_hand(simulator, ids)
        client = await commands()
        before = len(accepts)
        asked = time.monotonic()
        outcome = await client.bulk(action, args, chargers=by_pk)
        await wait_until(
            lambda: len(accepts) == before + count and all_accepted(simulator, count),
            timeout=60,
            message="the fleet back",
        )
    finally:
        await simulator.stop()
    back = accepts[before:]
    assert sorted(cp_id for cp_id, _ in back) == sorted(ids)
    assert most_in_a_window([at for _, at in back], 1.0) <= allowance(rate, 1.0)
    assert without_a_turn(back, list(simulator.ramp.released), since=asked) == []
    assert sorted(r["message"] for r in outcome.results) == [said.format(cp_id) for cp_id in ids]


async def test_reconnects_in_the_ramp_do_not_hold_off_the_freeze(csms):
    """While the CSMS is away, the chargers' retries keep a slow ramp busy for as long: the
    freeze waits for the first connects only, then its patience, as before."""
    ids = await sync_to_async(fleet)(4, csms.url, auto_connect=False)
    simulator = worker(0.5)  # 4 chargers retrying every 0.5 s at most: never an empty queue
    await simulator.start()
    try:
        await up_by_hand(simulator, ids)
        await csms.stop()
        await wait_until(
            lambda: sum(simulator.ramp.waiting(cp_id) for cp_id in ids) >= 2,
            timeout=30,
            message="reconnects waiting for their turns",
        )
        await asyncio.wait_for(simulator._until_up(patience=0.1), timeout=30)
        assert simulator.ramp.progress() is not None  # still busy with the retries
    finally:
        await simulator.stop()


async def test_the_turn_order_lists_the_waiting_and_not_the_cancelled():
    ramp = ConnectRamp(rate=0.5)  # a turn every 2 s: only the first goes during the test
    turns = {name: asyncio.create_task(ramp.turn(name)) for name in ("A", "B", "C")}
    try:
        await wait_until(lambda: turns["A"].done(), timeout=10, message="A's turn")
        assert ramp.in_turn_order() == ["B", "C"]
        turns["B"].cancel()
        await asyncio.gather(turns["B"], return_exceptions=True)
        assert ramp.in_turn_order() == ["C"]
        assert ramp.waiting("C") and not ramp.waiting("B")
    finally:
        releaser = ramp.close()
        for task in turns.values():
            task.cancel()
        await asyncio.gather(
            *turns.values(), *([releaser] if releaser else []), return_exceptions=True
        )
