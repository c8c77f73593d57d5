"""The web side's engine client against real engine workers on the in-memory channel layer,
their chargers connected to the built-in CSMS over real sockets: one charger's actions and
state (with wait_for), the fleet summary, bulk actions, and what happens without a worker."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from ocpp.v16 import call

from chargers.engine_client import (
    ERROR_NO_WORKER,
    ERROR_WORKER_GONE,
    NO_WORKER,
    EngineClient,
    NoWorker,
    WorkerGone,
)
from chargers.models import Charger as ChargerRow
from locations.models import Location
from scripts.reachable import reachable
from simulator import contract
from simulator.core.charge_point import BootState
from simulator.core.link import LinkState
from simulator.csms import CentralSystem
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.cast import make_charger, make_location, make_vehicle
from tests.engine import loaded, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("flushed_layer")]


def wait(condition: str, timeout: float = 5.0) -> contract.WaitFor:
    return contract.WaitFor(condition=condition, timeout=timeout)


async def start_worker(ids: list[str], shard: int = 0, shards: int = 1) -> Simulator:
    options = RunOptions(
        shard=shard,
        shards=shards,
        only_ids=ids,
        tick_seconds=0.1,
        checkpoint_seconds=0.1,
        reconnect_cap=0.5,
    )
    service = Simulator(options)
    await service.start(channels=True)
    return service


async def booted(service: Simulator, *cp_ids: str) -> None:
    for cp_id in cp_ids:
        charger = loaded(service, cp_id)
        await wait_until(
            lambda c=charger: c.boot is BootState.ACCEPTED and c.link is LinkState.ONLINE,
            message=f"{cp_id} boot",
        )


@pytest.fixture
async def rows(csms: CentralSystem) -> dict[str, ChargerRow]:
    await database_sync_to_async(make_vehicle)()
    site = await database_sync_to_async(make_location)("Client Site")
    made = {}
    for cp_id, evses in (("CL-1", 2), ("CL-2", 1)):
        made[cp_id] = await database_sync_to_async(make_charger)(
            cp_id, evses=evses, csms_url=csms.url, location=site
        )
    made["CL-OFF"] = await database_sync_to_async(make_charger)(
        "CL-OFF", evses=1, csms_url=csms.url, enabled=False, location=site
    )
    return made


@pytest.fixture
async def worker(rows: dict[str, ChargerRow]) -> AsyncIterator[Simulator]:
    service = await start_worker(["CL-1", "CL-2", "CL-OFF"])
    await booted(service, "CL-1", "CL-2")
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture
def client() -> EngineClient:
    return EngineClient(ack_seconds=2.0, result_seconds=10.0)


# -- one charger ---------------------------------------------------------------------------


async def test_plug_in_and_an_id_tag_with_wait_for_charging_start_a_transaction_at_the_csms(
    worker, rows, client, csms
):
    row = rows["CL-1"]
    plugged = await client.command(row.pk, "CL-1", "plug_in", {"soc": 30, "target_soc": 90})
    assert plugged["ok"], plugged["message"]
    assert plugged["charger"]["evses"][0]["status"] == "Preparing"
    assert plugged["charger"]["evses"][0]["soc"] == 30.0

    started = await client.command(
        row.pk, "CL-1", "present_id_tag", {"id_tag": "TAG-1"}, wait_for=wait("Charging")
    )
    assert started["ok"], started["message"]
    assert started["wait"]["met"] is True
    assert started["wait"]["status"] == "Charging"
    assert started["charger"]["evses"][0]["id_tag"] == "TAG-1"
    entry = await csms.wait_for("CL-1", "StartTransaction", message_type=2)
    assert entry.payload["idTag"] == "TAG-1"

    stopped = await client.command(row.pk, "CL-1", "stop", {}, wait_for=wait("Finishing"))
    assert stopped["wait"]["met"] is True
    stop = await csms.wait_for("CL-1", "StopTransaction", message_type=2)
    assert stop.payload["reason"] == "Local"


async def test_a_refused_action_says_why_and_a_bad_argument_is_told_apart(worker, rows, client):
    pk = rows["CL-2"].pk
    refused = await client.command(pk, "CL-2", "stop")
    assert refused["ok"] is False
    assert refused["error"] == contract.ERROR_REFUSED
    assert refused["message"] == "connector 1 has no transaction"
    bad = await client.command(pk, "CL-2", "plug_in", {"soc": 150})
    assert (bad["ok"], bad["error"]) == (False, contract.ERROR_INVALID)
    assert bad["message"] == "soc must be within 0 and 100"
    no_connector = await client.command(pk, "CL-2", "unplug", {"connector_id": 2})
    assert no_connector["error"] == contract.ERROR_INVALID
    assert "no connector 2" in no_connector["message"]
    unknown = await client.command(pk, "CL-2", "explode")
    assert unknown["error"] == contract.ERROR_INVALID


async def test_a_bad_wait_for_is_refused_before_the_action_runs(worker, rows, client):
    pk = rows["CL-2"].pk
    bad_ones: list[Any] = [  # deliberately not WaitFor: values from outside
        {"condition": "Sleeping", "timeout": 5},
        {"condition": "Charging", "timeout": contract.WAIT_TIMEOUT_MAX + 1},
        {"condition": "Charging", "timeout": "soon"},
        ["Charging", 5],
    ]
    for bad in bad_ones:
        result = await client.command(pk, "CL-2", "plug_in", {}, wait_for=bad)
        assert (result["ok"], result["error"]) == (False, contract.ERROR_INVALID), bad
        assert "wait_for" in result["message"] or "timeout" in result["message"]
    assert loaded(worker, "CL-2").evses[0].battery is None  # nothing was plugged in


async def test_a_wait_that_times_out_says_so_with_the_current_status(worker, rows, client):
    result = await client.command(
        rows["CL-2"].pk, "CL-2", "plug_in", {}, wait_for=wait("Charging", 0.3)
    )
    assert result["ok"] is True
    assert result["wait"]["met"] is False
    assert result["wait"]["status"] == "Preparing"
    assert result["wait"]["waited"] >= 0.3


async def test_a_state_request_with_wait_for_is_answered_when_the_status_changes(
    worker, rows, client
):
    pk = rows["CL-2"].pk
    waiting = asyncio.create_task(client.state(pk, "CL-2", wait_for=wait("Faulted")))
    await wait_until(lambda: len(worker.conditions) == 1, message="the wait to register")
    assert not waiting.done()
    fault = await client.command(pk, "CL-2", "inject_fault", {"error_code": "GroundFailure"})
    assert fault["ok"], fault["message"]
    answered = await asyncio.wait_for(waiting, 5)
    assert answered["wait"]["met"] is True
    assert answered["charger"]["evses"][0]["error_code"] == "GroundFailure"
    assert len(worker.conditions) == 0


async def test_pause_and_resume_ev_move_the_connector_between_suspended_ev_and_charging(
    worker, rows, client
):
    pk = rows["CL-2"].pk
    await client.command(pk, "CL-2", "plug_in", {"soc": 20})
    await client.command(pk, "CL-2", "present_id_tag", {"id_tag": "T"}, wait_for=wait("Charging"))
    paused = await client.command(pk, "CL-2", "pause_ev", wait_for=wait("SuspendedEV"))
    assert paused["wait"]["met"] is True
    assert paused["charger"]["evses"][0]["power_w"] == 0.0
    resumed = await client.command(pk, "CL-2", "resume_ev", wait_for=wait("Charging"))
    assert resumed["wait"]["met"] is True
    again = await client.command(pk, "CL-2", "resume_ev")
    assert again["message"] == "the EV on connector 1 is not paused"


async def test_reboot_ends_a_session_as_a_power_loss_boots_again_and_resumes_it(
    worker, rows, client, csms
):
    pk = rows["CL-2"].pk
    await client.command(pk, "CL-2", "plug_in", {})
    await client.command(pk, "CL-2", "present_id_tag", {"id_tag": "T"}, wait_for=wait("Charging"))
    await csms.wait_for("CL-2", "StartTransaction", direction="out", message_type=3)
    boots = csms.counts["BootNotification"]
    before = loaded(worker, "CL-2")

    rebooted = await client.command(pk, "CL-2", "reboot", wait_for=wait("Accepted"))
    assert rebooted["ok"], rebooted["message"]
    assert rebooted["wait"]["met"] is True
    assert loaded(worker, "CL-2") is not before
    assert csms.counts["BootNotification"] == boots + 1
    stop = await csms.wait_for("CL-2", "StopTransaction", message_type=2)
    assert stop.payload["reason"] == "PowerLoss"
    # The car stays plugged in, and its session starts again with its idTag.
    assert rebooted["charger"]["evses"][0]["status"] in ("Preparing", "Charging")
    again = await csms.wait_for(
        "CL-2", "StartTransaction", message_type=2, after=csms.log.index(stop) + 1
    )
    assert again.payload["idTag"] == "T"


async def test_a_wait_for_accepted_after_a_reset_is_met_by_the_boot_after_it(
    worker, rows, client, csms
):
    # The charger answers a Reset, then stays online (and its boot Accepted) for a grace:
    # a scenario's `wait: {status: Accepted}` after a trigger that made the CSMS reset it
    # passed there and then, before the charger went down.
    boots = csms.counts["BootNotification"]
    answer = await csms.call("CL-2", call.Reset(type="Soft"))
    assert answer.status == "Accepted"
    state = await client.state(rows["CL-2"].pk, "CL-2", wait_for=wait("Accepted"))
    assert state["wait"]["met"] is True
    assert csms.counts["BootNotification"] == boots + 1


async def test_a_charger_this_worker_does_not_run_is_reported_not_running(worker, rows, client):
    result = await client.command(rows["CL-OFF"].pk, "CL-OFF", "connect")
    assert (result["ok"], result["error"]) == (False, contract.ERROR_NOT_RUNNING)
    assert result["message"] == f"charger #{rows['CL-OFF'].pk} is disabled"
    assert "charger" not in result


async def test_without_a_worker_the_client_says_no_worker_answered(rows):
    client = EngineClient(ack_seconds=0.2)
    with pytest.raises(NoWorker, match=re.escape(NO_WORKER)):
        await client.command(rows["CL-1"].pk, "CL-1", "connect")
    overview = await client.summary()
    assert (overview.answered, overview.missing) == ([], [0])


async def worker_gone(shard: int = 0) -> None:
    """The worker of `shard` goes away as far as its callers can tell (killed, or paused):
    nothing sent to the shard reaches it any more."""
    layer = get_channel_layer()
    group = contract.engine_group(shard)
    for channel in list(layer.groups.get(group, {})):
        await layer.group_discard(group, channel)


async def test_a_worker_that_stops_answering_during_a_wait_is_known_before_the_timeout(
    worker, rows
):
    """A worker killed while an API call waited for Charging (timeout 10): the caller was
    told "the simulator did not finish in time" (504) only 70 s later, and not whether the
    car had been plugged in."""
    client = EngineClient(ack_seconds=1.0, result_seconds=10.0, probe_seconds=0.5)
    pk = rows["CL-2"].pk
    waiting = asyncio.create_task(
        client.command(pk, "CL-2", "plug_in", {}, wait_for=wait("Charging", 30))
    )
    await wait_until(lambda: len(worker.conditions) == 1, message="the wait to register")
    await worker_gone()
    with pytest.raises(WorkerGone) as gone:
        await asyncio.wait_for(waiting, 10)
    said = str(gone.value)
    assert said.startswith("the worker of shard 0 stopped answering before it answered;"), said
    assert "the action was carried out (" in said and "read the charger's state" in said


async def test_a_worker_restarted_during_a_wait_is_known_by_its_new_start_time(worker, rows):
    """The restarted worker answers the shard's questions, but knows nothing of the wait."""
    import time

    layer = get_channel_layer()
    client = EngineClient(ack_seconds=1.0, result_seconds=10.0, probe_seconds=0.5)
    waiting = asyncio.create_task(client.state(rows["CL-2"].pk, "CL-2", wait_for=wait("Charging")))
    await wait_until(lambda: len(worker.conditions) == 1, message="the wait to register")
    await worker_gone()
    restarted = await layer.new_channel()
    await layer.group_add(contract.engine_group(0), restarted)
    question = await asyncio.wait_for(layer.receive(restarted), 5)
    assert question["command"] == contract.SUMMARY
    counts = contract.FleetCounts(chargers=0, statuses={}, links={}, power_w=0.0)
    answer = contract.shard_summary(
        question["request_id"], 0, 1, counts, {}, time.time(), started=time.time()
    )
    await layer.send(question["reply_channel"], answer)
    with pytest.raises(WorkerGone) as gone:
        await asyncio.wait_for(waiting, 5)
    assert str(gone.value) == (
        "the worker of shard 0 restarted before it answered: ask for the charger's state again"
    )


async def test_the_waits_on_one_worker_share_one_question_per_interval(worker, rows):
    """Each waiting call asked its worker every 5 s on its own whether it was still there:
    1,000 open waits were some 200 summaries a second for one worker to make."""
    layer = get_channel_layer()
    asked = await layer.new_channel()  # hears what the worker of shard 0 is sent
    await layer.group_add(contract.engine_group(0), asked)
    every = 0.5
    client = EngineClient(ack_seconds=1.0, result_seconds=10.0, probe_seconds=every)
    pk = rows["CL-2"].pk
    waits = [
        asyncio.create_task(client.state(pk, "CL-2", wait_for=wait("Faulted", 30)))
        for _ in range(50)
    ]
    try:
        await wait_until(lambda: len(worker.conditions) == 50, message="the waits to register")

        async def next_question() -> dict[str, Any]:
            while True:
                message = await asyncio.wait_for(layer.receive(asked), 5)
                if message.get("command") == contract.SUMMARY:
                    return message

        await next_question()
        # The questions of the next three intervals (a slow loop only makes them fewer).
        loop = asyncio.get_running_loop()
        end = loop.time() + 3 * every
        questions = []
        while (left := end - loop.time()) > 0:
            try:
                questions.append(await asyncio.wait_for(next_question(), left))
            except TimeoutError:
                break
        assert len(questions) <= 4, f"{len(questions)} questions for 50 waits"
        assert not any(w.done() for w in waits)  # the worker still runs: nobody was told else
    finally:
        for waiting in waits:
            waiting.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


# -- the fleet ---------------------------------------------------------------------------------


async def test_the_fleet_summary_adds_up_the_shard_with_its_locations(worker, rows, client):
    await client.command(rows["CL-2"].pk, "CL-2", "inject_fault", {})
    overview = await client.summary()
    assert (overview.answered, overview.missing) == ([0], [])
    assert overview.counts["chargers"] == 2
    assert overview.counts["statuses"] == {"Available": 2, "Faulted": 1}
    assert overview.counts["links"] == {"online": 2}
    site = rows["CL-1"].location_id
    assert overview.locations[site]["chargers"] == 2


async def test_a_bulk_by_location_and_status_plugs_in_every_available_connector(
    worker, rows, client
):
    await client.command(rows["CL-1"].pk, "CL-1", "inject_fault", {"connector_id": 2})
    outcome = await client.bulk(
        "plug_in",
        {"soc": 40},
        location_id=rows["CL-1"].location_id,
        status="Available",
        wait_for=wait("Preparing"),
    )
    assert (outcome.missing, outcome.unfinished, outcome.refused) == ([], [], [])
    done = sorted((r["charge_point_id"], r["connector_id"], r["ok"]) for r in outcome.results)
    assert done == [("CL-1", 1, True), ("CL-2", 1, True)]  # CL-1/2 is Faulted: not chosen
    assert all(r["wait"]["met"] and r["status"] == "Preparing" for r in outcome.results)


async def test_a_bulk_by_ids_answers_for_every_listed_charger_even_one_not_running(
    worker, rows, client
):
    listed = {row.pk: cp_id for cp_id, row in rows.items()}
    outcome = await client.bulk("cut_network", {"seconds": 1}, chargers=listed)
    by_id = {r["charger_id"]: r for r in outcome.results}
    assert set(by_id) == set(listed)
    assert by_id[rows["CL-1"].pk]["ok"] and by_id[rows["CL-2"].pk]["ok"]
    assert by_id[rows["CL-OFF"].pk]["error"] == contract.ERROR_NOT_RUNNING
    skipped = await client.bulk("unplug", {}, chargers=listed, status="Charging")
    assert {r["error"] for r in skipped.results} == {
        contract.ERROR_SKIPPED,
        contract.ERROR_NOT_RUNNING,
    }


async def test_a_bulk_the_workers_refuse_as_a_whole_says_why(worker, client):
    outcome = await client.bulk("plug_in", {}, status="Sleeping")
    assert outcome.results == []
    assert outcome.refused == ["'Sleeping' is not a connector status"]
    nothing = await client.bulk("plug_in", {})
    assert nothing.refused == [
        "choose the chargers: ids, a location, a connector status or every charger"
    ]


# -- two shards --------------------------------------------------------------------------------


def ids_on_both_shards(prefix: str) -> dict[int, list[str]]:
    """Two charge point ids for each of 2 shards."""
    found: dict[int, list[str]] = {0: [], 1: []}
    n = 0
    while min(len(ids) for ids in found.values()) < 2:
        cp_id = f"{prefix}{n}"
        shard = contract.shard_of(cp_id, 2)
        if len(found[shard]) < 2:
            found[shard].append(cp_id)
        n += 1
    return found


def pk_map(cp_ids: list[str]) -> dict[int, str]:
    rows = ChargerRow.objects.filter(charge_point_id__in=cp_ids)
    return dict(rows.values_list("pk", "charge_point_id"))


def fleet_on_both_shards(
    prefix: str, csms_url: str, site_name: str
) -> tuple[Location, dict[int, list[str]], dict[int, str]]:
    """A site with two chargers on each of 2 shards (and a vehicle model to plug in): the
    site, the ids by shard, and each charger's pk with its id."""
    by_shard = ids_on_both_shards(prefix)
    site = make_location(site_name)
    make_vehicle()
    every = [cp_id for ids in by_shard.values() for cp_id in ids]
    for cp_id in every:
        make_charger(cp_id, evses=1, csms_url=csms_url, location=site)
    return site, by_shard, pk_map(every)


async def test_a_bulk_action_gets_a_result_per_charger_from_both_shards(csms, settings):
    settings.CHARGESIM_SHARDS = 2
    site, by_shard, pks = await database_sync_to_async(fleet_on_both_shards)(
        "SHARD-", csms.url, "Two Shards"
    )
    every = list(pks.values())
    workers = [await start_worker(by_shard[shard], shard, 2) for shard in (0, 1)]
    try:
        for shard, service in enumerate(workers):
            await booted(service, *by_shard[shard])
        client = EngineClient(ack_seconds=2.0)
        outcome = await client.bulk(
            "plug_in", {"soc": 50}, location_id=site.pk, wait_for=wait("Preparing")
        )
        assert sorted(str(r["charge_point_id"]) for r in outcome.results) == sorted(every)
        assert all(r["ok"] and r["wait"]["met"] for r in outcome.results)
        overview = await client.summary()
        assert overview.answered == [0, 1]
        assert overview.counts["statuses"] == {"Preparing": 4}

        await workers[1].stop()  # shard 1 has no worker now
        listed = await client.bulk("unplug", {}, chargers=pks, known=pks)
        results = {r["charge_point_id"]: r for r in listed.results}
        assert listed.missing == [1]
        assert set(results) == set(every)
        assert all(results[cp_id]["ok"] for cp_id in by_shard[0])
        for cp_id in by_shard[1]:
            assert (results[cp_id]["error"], results[cp_id]["message"]) == (
                ERROR_NO_WORKER,
                NO_WORKER,
            )
    finally:
        for service in workers:
            await service.stop()


async def test_a_sites_history_is_added_up_over_the_workers_that_run_its_chargers(csms, settings):
    """A site split over two workers: each keeps its own chargers' part of the site's power;
    the location page asks both and gets one history, step by step the sum of the parts,
    as its live power is the sum of the workers' summaries."""
    import math
    import time

    from simulator.runtime.site_history import STEP_S, SiteHistory

    settings.CHARGESIM_SHARDS = 2
    site, by_shard, _ = await database_sync_to_async(fleet_on_both_shards)(
        "HIST-", csms.url, "Split Site"
    )
    workers = [await start_worker(by_shard[shard], shard, 2) for shard in (0, 1)]
    try:
        # Two minutes ago, each worker's part drew its own power (the chargers here are
        # idle: what they draw now is nothing), sampled as its summary loop does.
        first = (math.floor(time.time() / STEP_S) - 12) * STEP_S
        for service, watts in zip(workers, (1000.0, 2500.0), strict=True):
            history = service.sites.history = SiteHistory()  # nothing sampled of now yet
            for second in range(25):  # two steps whole, the third closed by the next sample
                counts = service.tally.counts().locations[site.pk]
                history.record(first + second, {site.pk: {**counts, "power_w": watts}})
        client = EngineClient(ack_seconds=2.0)
        overview = await client.summary(history=site.pk)
        assert overview.answered == [0, 1]
        assert overview.history is not None
        assert overview.history[:2] == [
            [first + STEP_S, 3500.0, None],
            [first + 2 * STEP_S, 3500.0, None],
        ]
        assert "history" not in (await client.summary()).answers[0]  # asked only for a site
    finally:
        for service in workers:
            await service.stop()


async def test_a_bulk_wait_names_the_chargers_of_a_worker_that_went_away_and_keeps_the_rest(
    csms, settings
):
    """A worker stopped while a bulk action waited for Charging: the caller heard nothing
    until the wait's timeout and a minute more, then only "did not finish in time" for
    every charger of that shard. Now its chargers are named within seconds, and the other
    shard's results come as they are."""
    settings.CHARGESIM_SHARDS = 2
    site, by_shard, pks = await database_sync_to_async(fleet_on_both_shards)(
        "GONE-", csms.url, "Gone Site"
    )
    every = list(pks.values())
    workers = [await start_worker(by_shard[shard], shard, 2) for shard in (0, 1)]
    try:
        for shard, service in enumerate(workers):
            await booted(service, *by_shard[shard])
        client = EngineClient(ack_seconds=1.0, result_seconds=30.0, probe_seconds=0.5)
        bulk = asyncio.create_task(
            client.bulk("plug_in", {}, location_id=site.pk, wait_for=wait("Charging", 3), known=pks)
        )
        await wait_until(lambda: len(workers[1].conditions) == 2, message="shard 1's waits")
        await workers[1].stop()  # as far as its callers can tell, a worker killed
        outcome = await asyncio.wait_for(bulk, 15)
        assert list(outcome.gone) == [1]
        assert (outcome.missing, outcome.unfinished) == ([], [])
        results = {r["charge_point_id"]: r for r in outcome.results}
        assert set(results) == set(every)
        for cp_id in by_shard[0]:  # the wait ran out: a result all the same
            assert results[cp_id]["ok"] and results[cp_id]["wait"]["met"] is False
        for cp_id in by_shard[1]:
            assert (results[cp_id]["ok"], results[cp_id]["error"]) == (False, ERROR_WORKER_GONE)
            assert results[cp_id]["message"] == (
                "the worker of shard 1 stopped answering before it answered; the action may "
                "or may not have been carried out: read the charger's state"
            )
    finally:
        for service in workers:
            await service.stop()


async def test_a_channel_layer_that_cannot_be_reached_is_an_engine_error_saying_so():
    """Redis away: the API answered a bare 500 with a traceback in the web log. Now every
    caller gets the EngineError it already answers 503 with, naming the layer."""
    import socket

    from channels_redis.core import RedisChannelLayer

    from chargers.engine_client import LayerDown

    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"])
    client = EngineClient(layer, shards=1, ack_seconds=0.5, result_seconds=0.5)
    with pytest.raises(LayerDown) as down:
        await client.summary()
    assert str(down.value).startswith("The channel layer (Redis) cannot be reached (")
    assert "the simulator workers cannot be asked until it is back" in str(down.value)


async def test_a_command_read_after_its_sender_gave_up_is_not_carried_out(worker, rows):
    """A worker paused past the API's wait: the API answered 503 "No simulator worker is
    running", and the worker, once it ran again, unplugged the car all the same (a script
    that retried got it done twice)."""
    import time
    import uuid

    layer = get_channel_layer()
    pk = rows["CL-2"].pk
    reply = await layer.new_channel()

    async def send(expires: float) -> str:
        request_id = uuid.uuid4().hex
        message = contract.engine_command(
            "plug_in", pk, {"soc": 30}, reply, request_id, expires=expires
        )
        await layer.group_send(contract.engine_group(0), message)
        return request_id

    await send(time.time() - 2 * contract.CLOCK_SKEW_SECONDS)  # given up on already
    fresh = await send(time.time() + 5.0)
    # The worker reads in order: the first answer it sends is the second command's.
    ack = await asyncio.wait_for(layer.receive(reply), 10)
    assert (ack["type"], ack["request_id"]) == (contract.EVENT_COMMAND_ACK, fresh)
    result = await asyncio.wait_for(layer.receive(reply), 10)
    assert result["request_id"] == fresh and result["ok"], result
    assert loaded(worker, "CL-2").evse(1).battery is not None  # plugged in once


async def test_the_client_waits_for_the_ack_exactly_as_long_as_a_worker_would_take_the_command():
    """QA (scaled out, Redis paused 5 s): an action waited 9 s for its 503 "No simulator
    worker answered ... within 4 s", and the worker, which read the command while the API
    still waited, dropped it as given up on. The client stamped the command's expiry before
    the send and counted its own wait from after it: a slow send (Redis paused, the sends
    queued) made the worker drop commands the caller still waited for, and a fast one left
    the clock-skew second in which a worker carried out a command the caller had been
    answered 503 for. Both now end at the same moment, counted from before the send."""
    import time

    layer = get_channel_layer()
    inbox = await layer.new_channel()
    await layer.group_add(contract.engine_group(0), inbox)  # a worker that reads late
    client = EngineClient(layer, shards=1, ack_seconds=0.2)
    with pytest.raises(NoWorker):
        await client.command(1, "CP-A", "unplug")
    single = await asyncio.wait_for(layer.receive(inbox), 5)
    # Read as soon as the caller was answered: too late to be carried out.
    assert contract.expired(single, time.time())

    outcome = await client.bulk("unplug", chargers={1: "CP-A"})
    assert outcome.missing == [0]
    bulk = await asyncio.wait_for(layer.receive(inbox), 5)
    assert contract.expired(bulk, time.time())


REDIS_URL = "redis://127.0.0.1:6379"


@pytest.mark.skipif(not reachable(REDIS_URL), reason=f"no Redis at {REDIS_URL}")
async def test_a_worker_started_while_redis_was_away_answers_once_it_is_back(rows):
    """The command server joined its group before its retry loop: a worker started while
    Redis could not be reached lost that task at once, and answered no command (503 "No
    simulator worker is running") after Redis came back, while its log looked healthy."""
    from channels_redis.core import RedisChannelLayer

    from simulator.runtime.commands import CommandServer
    from tests.process import free_port, redis_database

    url = redis_database(REDIS_URL)
    database = url.rsplit("/", 1)[1]
    port = free_port()  # Redis behind a relay on this port, not listening yet

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", 6379)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    service = Simulator(RunOptions(only_ids=["CP-A"], tick_seconds=0.1, checkpoint_seconds=0.1))
    await service.start(channels=False)
    worker_layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{port}/{database}"])
    service.spawn(CommandServer(service, worker_layer).run(), "commands")
    client = EngineClient(RedisChannelLayer(hosts=[url]), shards=1, ack_seconds=1.0)
    server = None
    try:
        # Nobody answers: the worker cannot reach Redis.
        assert (await client.summary()).missing == [0]
        await asyncio.sleep(0.5)  # a few of its attempts fail
        server = await asyncio.start_server(relay, "127.0.0.1", port)
        for _ in range(60):  # its retries back off to 5 s at most: a few tries suffice
            if (await client.summary()).missing == []:
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail("the worker never answered after Redis came back")
    finally:
        if server is not None:
            server.close()
        await service.stop()


async def test_a_summary_from_workers_of_another_shard_count_says_so(worker, rows):
    """A web process with CHARGESIM_SHARDS=1 beside workers of --shard K/2 showed half the
    fleet as the whole (no shard missing), without a word."""
    from chargers.engine_client import EngineError

    client = EngineClient(shards=2, ack_seconds=1.0)  # the worker runs shard 0 of 1
    with pytest.raises(EngineError) as refused:
        await client.summary()
    assert str(refused.value) == (
        "The simulator workers run as --shard K/1, but CHARGESIM_SHARDS is 2 here: set it "
        "to the workers' N on every web process"
    )
