"""The scaled-out mode on this machine's Redis and PostgreSQL: Daphne alone for the web,
two `runsimulator --no-web --shard K/2` workers, the built-in CSMS, all as subprocesses.
One browser socket drives a charger on each shard and sees both shards' events."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from scripts.reachable import reachable
from simulator import contract
from tests.pg_database import PG_URL, own_database
from tests.process import ROOT, Process, daphne, free_port, redis_database, wait_for_port
from tests.web_session import log_in

REDIS_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379")
PASSWORD = "pw-scaled-1"

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(not reachable(REDIS_URL), reason=f"no Redis at {REDIS_URL}"),
    pytest.mark.skipif(not reachable(PG_URL), reason=f"no PostgreSQL at {PG_URL}"),
]


@pytest.fixture
def database() -> Iterator[str]:
    """A PostgreSQL database of its own, dropped at the end."""
    with own_database("chargesim_scaled") as url:
        yield url


def ids_for_both_shards(prefix: str = "SCALE-") -> dict[int, str]:
    """One charge point id per shard of two (the stable hash decides)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < 2:
        cp_id = f"{prefix}{n:03d}"
        found.setdefault(contract.shard_of(cp_id, 2), cp_id)
        n += 1
    return found


@dataclass
class Deployment:
    host: str  # the web process (Daphne), or "" without one
    by_shard: dict[int, str]  # shard -> the charge point id made for it
    env: dict[str, str]  # what the processes run with (REDIS_URL, DATABASE_URL, 2 shards)
    workers: list[Process]  # worker of shard 0, of shard 1

    def shell(self, code: str) -> str:
        """Run Python in `manage.py shell` against the deployment's database and layer."""
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", textwrap.dedent(code)],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def token(self) -> str:
        """An API token of the deployment's superuser."""
        return self.shell(
            "from django.contrib.auth import get_user_model\n"
            "from api.models import ApiToken\n"
            "print(ApiToken.objects.issue(get_user_model().objects.get(), 'ci')[1])\n"
        ).split()[-1]


@contextmanager
def deploy(
    tmp_path,
    database: str,
    *,
    csms_port: int | None = None,
    web: bool = True,
    redis_url: str | None = None,
    **fields: Any,
) -> Iterator[Deployment]:
    """Two workers (and Daphne, and the CSMS as a process unless `csms_port` is given) on
    Redis (one of the tests' databases unless `redis_url` names one) and PostgreSQL, with
    one charger per shard made with `fields`."""
    web_port = free_port()
    own_csms = csms_port is None
    csms_port = free_port() if csms_port is None else csms_port
    redis_url = redis_url or redis_database(REDIS_URL)
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "CHARGESIM_SHARDS": "2",
        "CHARGESIM_VAR_DIR": str(tmp_path),
        "SECRET_KEY": "scaled-out-test-" + uuid.uuid4().hex,
        "PYTHONUNBUFFERED": "1",
    }
    by_shard = ids_for_both_shards()
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
    setup = textwrap.dedent(
        f"""
        from django.contrib.auth import get_user_model
        from locations.models import Location
        from vehicles.models import VehicleModel
        from tests.cast import make_charger
        VehicleModel.objects.seed_catalogue()
        Location.objects.seed_defaults()
        get_user_model().objects.create_superuser("admin", "admin@example.com", "{PASSWORD}")
        for cp_id in {list(by_shard.values())!r}:
            make_charger(cp_id, csms_url="ws://127.0.0.1:{csms_port}/ocpp", **{fields!r})
        """
    )
    subprocess.run([*manage, "shell", "-c", setup], cwd=ROOT, env=env, check=True)
    processes: list[Process] = []
    try:
        if own_csms:
            csms = Process(
                "csms",
                [sys.executable, "-m", "simulator.csms", "--port", str(csms_port)],
                env,
                tmp_path,
            )
            processes.append(csms)
            wait_for_port(csms_port, proc=csms.proc)
        workers = [
            Process(
                f"worker-{shard}",
                [*manage, "runsimulator", "--no-web", "--no-migrate", "--shard", f"{shard}/2"],
                env,
                tmp_path,
            )
            for shard in (0, 1)
        ]
        processes += workers
        if web:
            web_process = daphne(web_port, env, tmp_path)
            processes.append(web_process)
        for worker in workers:
            worker.wait_for_output("fleet: 1/1 accepted")
        if web:
            wait_for_port(web_port, proc=web_process.proc)
        yield Deployment(f"127.0.0.1:{web_port}" if web else "", by_shard, env, workers)
    finally:
        for process in processes:
            process.stop()


@pytest.fixture
def deployment(tmp_path, database):
    """Daphne + two workers + the CSMS on Redis and PostgreSQL; yields (web URL, ids)."""
    with deploy(tmp_path, database) as running:
        yield running.host, running.by_shard


def charger_pks(host: str, session: str) -> dict[str, int]:
    """Charge point id -> pk, as the fleet page lists them."""
    request = urllib.request.Request(f"http://{host}/", headers={"Cookie": f"sessionid={session}"})
    html = urllib.request.urlopen(request, timeout=10).read().decode()
    # A user who may change chargers also gets a selection box first (bulk actions).
    rows = re.findall(
        r'<tr data-charger="(\d+)">\s*(?:<td class="pick">.*?</td>\s*)?<td><a href="[^"]+">([^<]+)<',
        html,
    )
    return {cp_id: int(pk) for pk, cp_id in rows}


def test_a_browser_socket_drives_and_watches_chargers_on_both_shards(deployment):
    from websockets.sync.client import connect

    host, by_shard = deployment
    session = log_in(host, PASSWORD)
    pks = charger_pks(host, session)
    assert set(pks) == set(by_shard.values())

    with connect(
        f"ws://{host}/ws/fleet/",
        additional_headers={"Origin": f"http://{host}", "Cookie": f"sessionid={session}"},
        open_timeout=10,
    ) as ws:
        # The chargers seen Preparing, in whatever wait their snapshot arrived: a charger's
        # state can reach the page before the result of the command that caused it.
        preparing: set[str] = set()

        # Callable[..., bool]: the lambdas below bind loop variables as default arguments.
        def receive_until(matches: Callable[..., bool], timeout: float = 15.0) -> dict:
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the expected message did not arrive")
                message = json.loads(ws.recv(timeout=left))
                if (
                    message["type"] == "charger.state"
                    and message["charger"]["evses"][1]["status"] == "Preparing"
                ):
                    preparing.add(message["charger"]["charge_point_id"])
                if matches(message):
                    return message

        ws.send(json.dumps({"type": "watch", "chargers": list(pks.values())}))
        # The full snapshot on connect comes from each charger's own shard.
        online: set[str] = set()
        while online != set(pks):
            state = receive_until(lambda m: m["type"] == "charger.state")
            if state["charger"]["link"] == "online":
                online.add(state["charger"]["charge_point_id"])
        # Both workers' summaries reach the page, added up.
        counts = receive_until(lambda m: m["type"] == "fleet.counts" and m["shards"] == 2)
        assert counts["chargers"] == 2

        for shard, cp_id in by_shard.items():
            request_id = f"plug-{shard}"
            ws.send(
                json.dumps(
                    {
                        "type": "command",
                        "request_id": request_id,
                        "charger": pks[cp_id],
                        "command": "plug_in",
                        "args": {"connector_id": 2, "soc": 30},
                    }
                )
            )
            answer = receive_until(
                lambda m, r=request_id: m["type"] == "command.result" and m["request_id"] == r
            )
            assert answer["ok"], answer
            assert "plugged into connector 2 at 30 %" in answer["message"]

        while preparing != set(pks):
            receive_until(lambda m: m["type"] == "charger.state")


def test_an_idle_charger_page_stays_connected_in_scaled_out_mode(deployment):
    from websockets.sync.client import connect

    host, _ = deployment
    session = log_in(host, PASSWORD)
    pk = next(iter(charger_pks(host, session).values()))
    with connect(
        f"ws://{host}/ws/chargers/{pk}/",
        additional_headers={"Origin": f"http://{host}", "Cookie": f"sessionid={session}"},
        open_timeout=10,
    ) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        time.sleep(8)  # nothing happens to this charger: no message for the consumer
        ws.send(
            json.dumps({"type": "command", "request_id": "c", "charger": pk, "command": "connect"})
        )
        while True:
            message = json.loads(ws.recv(timeout=10))
            if message["type"] == "command.result":
                break
        assert message["ok"], message
        assert message["message"].endswith("is already connected")


def test_the_workers_join_again_when_redis_lost_its_data(tmp_path, database):
    """A Redis restarted without its data (flushed, failed over) forgets which channel each
    worker listens on, and the worker sees no error: every command was answered "No
    simulator worker is running" until its hourly rejoin."""
    import redis

    with deploy(tmp_path, database) as running:
        token = running.token()

        def answered(cp_id: str) -> int:
            request = urllib.request.Request(
                f"http://{running.host}/api/v1/chargers/{cp_id}/state",
                headers={"Authorization": f"Bearer {token}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        assert [answered(cp_id) for cp_id in running.by_shard.values()] == [200, 200]
        redis.Redis.from_url(running.env["REDIS_URL"]).flushdb()
        deadline = time.monotonic() + 30
        while (codes := [answered(cp_id) for cp_id in running.by_shard.values()]) != [200, 200]:
            if time.monotonic() > deadline:  # a worker that never joins again, not a speed check
                pytest.fail(f"still {codes} 30 s after the flush")
            time.sleep(0.5)


def test_an_event_stream_hears_a_worker_stop_and_its_return(tmp_path, database):
    """A worker stopped (SIGTERM, as a deploy does) left the API's event streams quiet
    without a word: a script watching could not tell a quiet fleet from a stopped shard."""
    with deploy(tmp_path, database) as running:
        token = running.token()
        connection = http.client.HTTPConnection(running.host, timeout=30)
        connection.request(
            "GET", "/api/v1/events?kind=connection", headers={"Authorization": f"Bearer {token}"}
        )
        response = connection.getresponse()
        assert response.status == 200
        events = sse_events(response)
        stopping = running.workers[0]
        try:
            assert next(events)["comment"] == "subscribed"
            stopping.signal(signal.SIGTERM)
            assert stopping.wait(60) == 0
            seen: list[dict[str, Any]] = []
            while not seen or seen[-1]["event"] != "stopped":
                seen.append(next(events))
            # What the worker still held went first: its charger's connection closing.
            closed = [e for e in seen if e["event"] == "connection"]
            assert [e["data"]["charge_point_id"] for e in closed] == [running.by_shard[0]]
            assert closed[0]["data"]["data"]["event"] == "closed"
            assert seen[-1]["data"]["shard"] == 0
            assert "stopped" in seen[-1]["data"]["detail"]
            again = Process(
                "worker-0-again",
                [
                    sys.executable,
                    "manage.py",
                    "runsimulator",
                    "--no-web",
                    "--no-migrate",
                    "--shard",
                    "0/2",
                ],
                running.env,
                tmp_path,
            )
            try:
                while (event := next(events))["event"] != "restarted":
                    pass
                assert event["data"]["shard"] == 0
            finally:
                again.stop()
        finally:
            connection.close()


def sse_events(response: Any) -> Iterator[dict[str, Any]]:
    """Server-Sent Events read from an HTTP response, each as its fields (`data` parsed),
    or {"comment": text} for a comment (keep-alives skipped)."""
    fields: dict[str, Any] = {}
    while line := response.fp.readline():
        text = line.decode().rstrip("\r\n")
        if not text:
            if "event" in fields:  # not the `retry` block
                yield fields
            fields = {}
        elif text.startswith(":"):
            if text != ": keep-alive":
                yield {"comment": text[1:].strip()}
        else:
            name, _, value = text.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value
    raise AssertionError("the stream ended")


@pytest.fixture
async def live(tmp_path, database, csms) -> AsyncIterator[Deployment]:
    """Two workers against the test's own CSMS (in this process, so the test reads what it
    saw); their chargers start a session on RemoteStartTransaction. No web process."""
    stack = deploy(
        tmp_path, database, csms_port=csms.port, web=False, simulate_ev_on_remote_start=True
    )
    # In a thread: the CSMS on this loop must answer the workers while they boot.
    running = await asyncio.to_thread(stack.__enter__)
    try:
        yield running
    finally:
        await asyncio.to_thread(stack.__exit__, None, None, None)


async def saved(running: Deployment, write: str, chargers: str) -> dict[int, list[Any]]:
    """Run `write` in a committed transaction in another process, with the web side's
    `notify_fleet_change(chargers)`, as an admin save does; each shard's answered outcomes."""
    code = "\n".join(
        [
            "import json",
            "from django.db import transaction",
            "from chargers.models import Charger, ConfigurationKey",
            "from fleet_io.fleet_changes import notify_fleet_change",
            "answers = []",
            "with transaction.atomic():",
            *(f"    {line}" for line in textwrap.dedent(write).strip().splitlines()),
            f"    notify_fleet_change({chargers}, report=lambda a: answers.extend(a.answers))",
            "print(json.dumps(answers))",
        ]
    )
    output = await asyncio.to_thread(running.shell, code)
    answers = json.loads(output.strip().splitlines()[-1])
    return {answer["shard"]: answer["outcomes"] for answer in answers}


def pk_of(running: Deployment, cp_id: str) -> int:
    code = f"from chargers.models import Charger; print(Charger.objects.get(charge_point_id={cp_id!r}).pk)"
    return int(running.shell(code).split()[-1])


async def test_fleet_changes_reach_the_worker_of_the_shard_that_owns_each_charger(
    live, csms, tmp_path
):
    from ocpp.v16 import call

    first, second = live.by_shard[0], live.by_shard[1]

    # New chargers, one per shard, through the import command: each boots once (two
    # workers loading the same charger would connect it twice).
    new = ids_for_both_shards("SCALE-NEW-")
    location = live.shell(
        "from locations.models import Location; print(Location.objects.first().name)"
    ).splitlines()[-1]  # after what `shell` says of its automatic imports
    path = tmp_path / "new.csv"
    path.write_text(
        "charge_point_id,location,evses,csms_url\n"
        + "".join(
            f"{cp_id},{location},1*Type2:22,ws://127.0.0.1:{csms.port}/ocpp\n"
            for cp_id in new.values()
        )
    )
    imported = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "manage.py", "import", "chargers.resources.ChargerResource", str(path)],
        cwd=ROOT,
        env=live.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
    for cp_id in new.values():
        await csms.wait_for(cp_id, "BootNotification", timeout=20)
        await csms.wait_for(cp_id, "StatusNotification", timeout=20)

    # A configuration key edited on a charging charger of shard 0: only shard 0 answers,
    # and MeterValues come at the new interval.
    await csms.call(first, call.RemoteStartTransaction(id_tag="TAG-1", connector_id=1))
    await csms.wait_for(first, "StartTransaction", direction="out", message_type=3, timeout=20)
    pk = await asyncio.to_thread(pk_of, live, first)
    mark = len(csms.log)
    outcomes = await saved(
        live,
        f"""
        ConfigurationKey.objects.filter(
            charger_id={pk}, key="MeterValueSampleInterval"
        ).update(value="1")
        """,
        f"[({pk}, {first!r})]",
    )
    assert outcomes == {
        0: [{"charger_id": pk, "charge_point_id": first, "outcome": "applied live"}]
    }
    sample = await csms.wait_for(first, "MeterValues", after=mark, timeout=10)
    await csms.wait_for(first, "MeterValues", after=csms.log.index(sample) + 1, timeout=10)

    # A new charge point id that belongs to the other shard: shard 1 lets it go, shard 0
    # loads it, and it boots under the new id.
    moved = next(f"MOVED-{n}" for n in range(1000) if contract.shard_of(f"MOVED-{n}", 2) == 0)
    pk = await asyncio.to_thread(pk_of, live, second)
    outcomes = await saved(
        live,
        f"Charger.objects.filter(pk={pk}).update(charge_point_id={moved!r})",
        f"[({pk}, {second!r}), ({pk}, {moved!r})]",
    )
    assert outcomes == {
        0: [{"charger_id": pk, "charge_point_id": moved, "outcome": "loaded, connecting"}],
        1: [{"charger_id": pk, "charge_point_id": moved, "outcome": "stopped: moved to shard 0"}],
    }
    await csms.wait_disconnected(second, timeout=10)
    await csms.wait_for(moved, "BootNotification", timeout=20)

    for cp_id in [*new.values(), moved]:
        assert csms.connects[cp_id] == 1, f"{cp_id} connected {csms.connects[cp_id]} times"


async def test_a_charger_moved_to_the_other_shard_mid_session_ends_its_session_once(live, csms):
    """A charger renamed so that its new identity belongs to the other shard while a
    session runs: the worker that had it ends the session (reason Other) and lets it go,
    the other loads it. The transaction ends once: one StopTransaction (a retransmission of
    the same one allowed), never a second one with another reason and a lower register."""
    from ocpp.v16 import call

    second = live.by_shard[1]
    await csms.call(second, call.RemoteStartTransaction(id_tag="TAG-M", connector_id=1))
    await csms.wait_for(second, "StartTransaction", direction="out", message_type=3, timeout=20)
    await asyncio.sleep(2.0)  # charging: its register moves on past meterStart
    moved = next(f"MOVED-{n}" for n in range(1000) if contract.shard_of(f"MOVED-{n}", 2) == 0)
    pk = await asyncio.to_thread(pk_of, live, second)
    # Only the new shard hears of it at once: the old one's message was lost (the layer
    # drops messages over capacity), so its worker sees the move at its reconciliation.
    await saved(
        live,
        f"""
        charger = Charger.objects.get(pk={pk})
        charger.charge_point_id = {moved!r}
        charger.save()
        """,
        f"[({pk}, {moved!r})]",
    )
    await csms.wait_disconnected(second, timeout=20)
    await csms.wait_for(moved, "BootNotification", timeout=30)
    await asyncio.sleep(3.0)  # whatever the new worker would still send
    stops = [
        e
        for e in csms.log
        if e.direction == "in" and e.message_type == 2 and e.action == "StopTransaction"
    ]
    assert stops, csms.describe(moved)
    assert len({e.payload["transactionId"] for e in stops}) == 1
    sent = [(e.cp_id, e.payload["reason"], e.payload["meterStop"]) for e in stops]
    assert len({json.dumps(e.payload, sort_keys=True) for e in stops}) == 1, sent
    assert stops[0].payload["reason"] == "Other"


async def test_a_worker_stalled_past_the_hand_over_sends_nothing_more_of_its_charger(live, csms):
    """QA: the worker running a charger in a session stalled (SIGSTOP) while the charger
    was renamed to the other shard; the other worker took it on after its wait (ending the
    session, PowerLoss, under the new identity). The stalled worker, running again, stored
    a MeterValues and a StopTransaction of that session, and the other worker sent them at
    its next start: the transaction stopped twice, its energy counted twice."""
    from ocpp.v16 import call

    second = live.by_shard[1]
    await csms.call(second, call.RemoteStartTransaction(id_tag="TAG-S", connector_id=1))
    await csms.wait_for(second, "StartTransaction", direction="out", message_type=3, timeout=20)
    await asyncio.sleep(2.0)  # charging: its register moves on past meterStart
    moved = next(f"STALL-{n}" for n in range(1000) if contract.shard_of(f"STALL-{n}", 2) == 0)
    pk = await asyncio.to_thread(pk_of, live, second)
    stalled = live.workers[1]
    stalled.signal(signal.SIGSTOP)
    try:
        rename = f"charger = Charger.objects.get(pk={pk})\ncharger.charge_point_id = {moved!r}\ncharger.save()"
        await saved(live, rename, f"[({pk}, {moved!r})]")
        # The other worker waits out the hand-over, then takes it on: PowerLoss.
        await csms.wait_for(moved, "StopTransaction", timeout=60)
    finally:
        stalled.signal(signal.SIGCONT)
    await asyncio.to_thread(stalled.wait_for_output, "another worker runs it now", 30)
    # Whatever the stalled worker stored now goes out at the other worker's next start.
    taker = live.workers[0]
    taker.signal(signal.SIGTERM)
    assert await asyncio.to_thread(taker.wait, 60) == 0
    again = Process(
        "worker-0-again",
        [sys.executable, "manage.py", "runsimulator", "--no-web", "--no-migrate", "--shard", "0/2"],
        live.env,
        taker.log_path.parent,
    )
    try:
        await asyncio.to_thread(again.wait_for_output, "fleet: 2/2 accepted")
        await asyncio.sleep(3.0)  # what it would send from its outbox
    finally:
        again.stop()
    calls = [e for e in csms.log if e.direction == "in" and e.message_type == 2]
    stops = Counter(e.payload["transactionId"] for e in calls if e.action == "StopTransaction")
    assert stops and set(stops.values()) == {1}, csms.describe(moved)
    for tx, _ in stops.items():
        stop_at = next(
            i
            for i, e in enumerate(calls)
            if e.action == "StopTransaction" and e.payload["transactionId"] == tx
        )
        late = [
            e
            for e in calls[stop_at:]
            if e.action == "MeterValues" and e.payload.get("transactionId") == tx
        ]
        assert late == [], late


async def test_a_charger_renamed_to_the_other_shard_is_let_go_without_a_stall_warning(live, csms):
    """QA: an idle charger renamed in the admin so that it belongs to the other shard, both
    workers answering. The worker that let it go wrote its last rows (offline) after the
    other had loaded it, and logged "checkpoint: X run by another worker now (it took them
    on while this one did not answer)": a stall that never happened, on every such rename."""
    second = live.by_shard[1]
    moved = next(f"MOVED-{n}" for n in range(1000) if contract.shard_of(f"MOVED-{n}", 2) == 0)
    pk = await asyncio.to_thread(pk_of, live, second)
    rename = f"charger = Charger.objects.get(pk={pk})\ncharger.charge_point_id = {moved!r}\ncharger.save()"
    outcomes = await saved(live, rename, f"[({pk}, {second!r}), ({pk}, {moved!r})]")
    assert outcomes[1] == [
        {"charger_id": pk, "charge_point_id": moved, "outcome": "stopped: moved to shard 0"}
    ]
    await csms.wait_disconnected(second, timeout=20)
    await csms.wait_for(moved, "BootNotification", timeout=30)
    await asyncio.sleep(3.0)  # the next checkpoints of the worker that let it go (every 1 s)
    assert "run by another worker" not in live.workers[1].output
    assert "another worker runs it now" not in live.workers[1].output
