"""Scenario runs through the API (api/routers/scenarios.py, scenarios/launch.py): auth and
permissions, format errors with their line and column, paging and filters, downloads, the
concurrency limit, cancelling; and runs started through the API on the test's event loop
(the embedded mode's loop task) against a real running worker and the built-in CSMS, one
that passes with its progress saved while it runs, one that fails naming its step."""

from __future__ import annotations

import asyncio
import gzip
import json
import textwrap
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone
from openapi_spec_validator import validate

from chargers.models import Charger
from locations.models import Location
from scenarios import launch, library
from scenarios.models import DEFAULT_LOCATION, ScenarioRun
from simulator.contract import builtin_csms
from simulator.csms import CentralSystem
from simulator.runtime.events import EventPublisher
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.api_client import bearer, user_with_token
from tests.cast import make_charger, make_location, make_vehicle
from tests.junit_reports import valid_junit
from tests.test_api_live import Api, api_as

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("flushed_layer")]

RUNS = "/api/v1/scenarios/runs"

PASSING = """\
name: api-session
description: A session on a template charger, started through the API.
chargers:
  template: {count: 2}
steps:
  - expect: {status: Accepted}
  - plug_in: {connector: 1, soc: 40}
  - present_id_tag: {id_tag: API-TAG}
  - wait: {seconds: 2}
  - wait: {status: Charging, timeout: 20}
  - expect: {answer: StartTransaction, status: Accepted}
  - stop: {connector: 1}
  - wait: {status: Finishing}
"""

FAILING = """\
name: api-blocked
description: The CSMS accepts a tag this scenario expects it to block.
chargers:
  template: {count: 1}
steps:
  - plug_in: {}
  - present_id_tag: {id_tag: STOLEN}
  - expect: {answer: Authorize, status: Blocked, within: 10}
  - wait: {status: Charging}
"""

BROKEN = """\
name: broken
description: x
chargers:
  template: {count: 1}
steps:
  - plug_in: {soc: lots}
  - fly: {}
"""


@pytest.fixture
async def worker(csms: CentralSystem) -> AsyncIterator[Simulator]:
    """A running worker with no chargers yet: the runs' template chargers join it."""
    await database_sync_to_async(make_vehicle)()
    service = Simulator(
        RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5),
        listener=EventPublisher(rate=20),
    )
    await service.start(channels=True)
    try:
        yield service
    finally:
        await service.stop()


async def finished(api: Api, run_id: int, seen: list[dict[str, Any]] | None = None) -> Any:
    for _ in range(600):
        response = await api.get(f"{RUNS}/{run_id}")
        assert response.status_code == 200, response.content
        body = response.json()
        if seen is not None:
            seen.append(body)
        if body["status"] not in ("queued", "running"):
            return body
        await asyncio.sleep(0.1)
    pytest.fail(f"run {run_id} did not finish: {body}")


async def joined(chunks: Any) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def stored(**fields: Any) -> ScenarioRun:
    values: dict[str, Any] = {"name": "stored", "source": "x", "seed": 1, **fields}
    return ScenarioRun.objects.create(**values)


# -- a run through the API, against a running worker and the built-in CSMS -------------------


@pytest.mark.slow
async def test_a_run_started_through_the_api_passes_with_live_progress(
    worker: Simulator, csms: CentralSystem
) -> None:
    api = await api_as("runner", "view_charger", "change_charger")
    started = await api.post(RUNS, {"source": PASSING, "csms_url": csms.url, "seed": 7})
    assert started.status_code == 202, started.content
    body = started.json()
    assert body["status"] == "queued" and body["seed"] == 7 and body["name"] == "api-session"

    seen: list[dict[str, Any]] = []
    done = await finished(api, body["id"], seen)
    assert done["status"] == "passed", done
    assert done["chargers"] == {"passed": 2, "failed": 0, "error": 0, "total": 2}
    for charger in done["result"]["chargers"]:
        assert [s["status"] for s in charger["steps"]] == ["passed"] * 8
        assert all(s["duration"] >= 0 for s in charger["steps"])
    # While it ran, the steps done so far were there to read (the 2 s wait step holds the
    # run open across at least one progress save, which comes every second).
    partial = [
        b
        for b in seen
        if b["status"] == "running"
        and any(0 < len(c["steps"]) < 8 for c in b["result"].get("chargers", []))
    ]
    assert partial, [b["result"] for b in seen]
    assert partial[0]["result"]["steps_total"] == 8
    # Its temporary chargers are gone.
    assert not await database_sync_to_async(
        Charger.objects.filter(charge_point_id__contains=f"-R{body['id']}.").exists
    )()

    junit = await api.get(f"{RUNS}/{body['id']}/junit.xml")
    assert junit.status_code == 200 and junit["Content-Type"] == "application/xml"
    suites = valid_junit(junit.content)
    assert suites.get("tests") == "16" and suites.get("failures") == "0"
    result = await api.get(f"{RUNS}/{body['id']}/result.json")
    assert json.loads(result.content)["status"] == "passed"
    assert "attachment" in result["Content-Disposition"]
    frames = await api.get(f"{RUNS}/{body['id']}/frames.jsonl")
    assert frames.status_code == 200
    lines = [json.loads(line) for line in (await joined(frames.streaming_content)).splitlines()]
    assert lines and any(line["kind"] == "frame" for line in lines), lines[:3]
    assert any("StartTransaction" in json.dumps(line["data"]) for line in lines)


def _query_log() -> int:
    from django.db import connections

    return sum(len(conn.queries_log) for conn in connections.all(initialized_only=True))


@pytest.mark.slow
async def test_with_debug_on_a_run_leaves_no_query_log_behind(
    worker: Simulator, csms: CentralSystem, settings: Any
) -> None:
    """A run saves its progress every second, the whole result each time. With DEBUG on
    (the default), Django would keep every statement's text in the thread's query log (up
    to 9,000), which nothing outside a web request clears: for a large fleet's run, its
    result's JSON a second, in the server's or Celery worker's memory until it stops."""
    run = await database_sync_to_async(stored)(
        status="queued", source=PASSING, csms_url=csms.url, seed=7
    )
    settings.DEBUG = True
    await launch.execute_queued(run.pk)
    # The thread that ran the run's ORM calls (asgiref's one thread, out of any request).
    assert await sync_to_async(_query_log)() == 0
    settings.DEBUG = False
    done = await database_sync_to_async(ScenarioRun.objects.get)(pk=run.pk)
    assert done.status == "passed" and done.result["steps_total"] == 8, done.message


@pytest.mark.slow
async def test_a_library_case_needs_no_urls_next_to_the_built_in_csms() -> None:
    """Embedded with --demo, a run started through the API connects its template chargers
    to the built-in CSMS of the process and fills ${csms_control} with its control
    endpoint: the library's cases run as they are, with no variables."""
    await database_sync_to_async(make_vehicle)()
    service = Simulator(
        RunOptions(
            demo=True,
            demo_chargers=0,
            demo_operations=False,
            csms_port=0,
            csms_control_port=0,
            tick_seconds=0.1,
            checkpoint_seconds=0.1,
            demo_share=0,
        ),
        listener=EventPublisher(rate=20),
    )
    await service.startup()  # as runsimulator --demo: the built-in CSMS, then the engine
    try:
        api = await api_as("runner", "view_charger", "change_charger")
        started = await api.post(RUNS, {"library": "remote-start-plugged-in"})
        assert started.status_code == 202, started.content
        done = await finished(api, started.json()["id"])
        assert done["status"] == "passed", done
    finally:
        await service.stop()


@pytest.mark.slow
async def test_a_failing_run_through_the_api_names_the_step(
    worker: Simulator, csms: CentralSystem
) -> None:
    api = await api_as("runner", "view_charger", "change_charger")
    started = await api.post(RUNS, {"source": FAILING, "csms_url": csms.url})
    assert started.status_code == 202, started.content
    done = await finished(api, started.json()["id"])
    assert done["status"] == "failed"
    assert done["chargers"]["failed"] == 1
    (charger,) = done["result"]["chargers"]
    failed = charger["steps"][2]
    assert failed["status"] == "failed"
    assert failed["message"].startswith("steps[2] expect on ")
    assert "expected Blocked" in failed["message"]
    assert charger["steps"][3]["status"] == "skipped"
    listed = await api.get(RUNS, status="failed")
    assert [r["id"] for r in listed.json()["items"]] == [done["id"]]


SECRET_STEPS = """\
name: api-secrets
description: Secret variables quoted by the steps' messages.
variables: {auth_tag: SECRTAG12345, cp_password: pw-in-message-999, api_key: k-in-file}
chargers:
  template: {count: 1}
steps:
  - plug_in: {connector: 1}
  - present_id_tag: {id_tag: "${auth_tag}", wait: Charging}
  - expect: {answer: Authorize, payload: {idTagInfo: {status: "${cp_password}"}}, within: 2}
"""


@pytest.mark.slow
async def test_a_secret_variable_quoted_by_a_step_is_hidden_in_all_the_run_keeps(
    worker: Simulator, csms: CentralSystem, admin_client_logged_in: Client
) -> None:
    """The variables were hidden, but the steps' messages quoted their values: the result,
    the JUnit file, the frames, the admin's pages and the source download showed them."""
    api = await api_as("runner", "view_charger", "change_charger")
    started = await api.post(
        RUNS, {"source": SECRET_STEPS, "csms_url": csms.url, "variables": {"api_key": "k-77777"}}
    )
    assert started.status_code == 202, started.content
    run_id = started.json()["id"]
    # Queued: the row holds the values (the run needs them), the admin's page does not.
    page = await database_sync_to_async(admin_client_logged_in.get)(
        f"/admin/scenarios/scenariorun/{run_id}/change/"
    )
    done = await finished(api, run_id)
    assert done["status"] == "failed"
    messages = [step["message"] for step in done["result"]["chargers"][0]["steps"]]
    assert "********" in messages[1] and "********" in messages[2], messages
    shown = [page.content, orjson.dumps(done)]
    for kind in ("result", "junit", "frames", "source", "change"):
        response = await database_sync_to_async(admin_client_logged_in.get)(
            f"/admin/scenarios/scenariorun/{run_id}/{kind}/"
        )
        assert response.status_code == 200, kind
        shown.append(
            b"".join(response.streaming_content) if response.streaming else response.content
        )
    for body in shown:
        text = body.decode() if isinstance(body, bytes) else str(body)
        # k-in-file: the file's own value of a secret the request gives another value
        # (QA: the given value stood for it when the source was hidden, and it stayed).
        for secret in ("SECRTAG12345", "pw-in-message-999", "k-77777", "k-in-file"):
            assert secret not in text
    row = await database_sync_to_async(ScenarioRun.objects.get)(pk=run_id)
    assert "SECRTAG12345" not in row.source and "auth_tag: ********" in row.source
    assert "k-in-file" not in row.source and "api_key: ********" in row.source


@pytest.mark.slow
async def test_a_running_run_cancelled_through_the_api_is_stored_as_error(
    worker: Simulator, csms: CentralSystem
) -> None:
    api = await api_as("runner", "view_charger", "change_charger")
    source = PASSING.replace(
        "  - stop: {connector: 1}\n", "  - wait: {status: Faulted, timeout: 60}\n"
    )
    started = await api.post(RUNS, {"source": source, "csms_url": csms.url})
    assert started.status_code == 202, started.content
    run_id = started.json()["id"]
    for _ in range(300):
        body = (await api.get(f"{RUNS}/{run_id}")).json()
        if any(len(c["steps"]) >= 4 for c in body["result"].get("chargers", [])):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"the run did not get going: {body}")
    cancelled = await api.post(f"{RUNS}/{run_id}/cancel")
    assert cancelled.status_code == 202, cancelled.content
    done = await finished(api, run_id)
    assert done["status"] == "error" and done["message"] == launch.CANCELLED
    # No charger counts as passed, and every step of the scenario has its verdict: the one
    # in progress errored, the rest skipped (the JUnit counts the whole scenario).
    assert done["chargers"] == {"passed": 0, "failed": 0, "error": 2, "total": 2}
    for charger in done["result"]["chargers"]:
        assert charger["status"] == "error"
        verdicts = [step["status"] for step in charger["steps"]]
        assert len(verdicts) == 8
        cut = verdicts.index("error")
        assert set(verdicts[:cut]) == {"passed"} and set(verdicts[cut + 1 :]) <= {"skipped"}
        assert charger["steps"][cut]["message"] == launch.CANCELLED
    assert not await database_sync_to_async(
        Charger.objects.filter(charge_point_id__contains=f"-R{run_id}.").exists
    )()
    again = await api.post(f"{RUNS}/{run_id}/cancel")
    assert again.status_code == 409


# -- validation, permissions, paging, downloads (no engine needed) ---------------------------


def test_format_errors_are_a_422_with_line_column_and_path(client: Client) -> None:
    _, token = user_with_token("writer", "view_charger", "change_charger")
    response = client.post(
        RUNS, {"source": BROKEN}, content_type="application/json", headers=bearer(token)
    )
    assert response.status_code == 422, response.content
    errors = response.json()["errors"]
    assert {(e["line"], e["path"]) for e in errors} >= {
        (6, "steps[0].plug_in.soc"),
        (7, "steps[1].fly"),
    }
    assert all(e["column"] >= 1 and e["message"] and e["field"] == "source" for e in errors)
    assert not ScenarioRun.objects.exists()


def test_an_unknown_field_or_a_misspelt_variable_is_a_422_not_ignored(client: Client) -> None:
    """Both were accepted (202): the run went ahead with the file's own value, where
    `runscenario --var` refuses the same mistake."""
    _, token = user_with_token("writer", "view_charger", "change_charger")
    source = SECRET_STEPS.replace("api-secrets", "typo")

    def post(body: dict[str, Any]) -> Any:
        return client.post(RUNS, body, content_type="application/json", headers=bearer(token))

    unknown = post({"source": source, "bogus": 1})
    assert unknown.status_code == 422, unknown.content
    assert [e["field"] for e in unknown.json()["errors"]] == ["bogus"]
    misspelt = post({"source": source, "variables": {"auth_tg": "X", "csms_control": "x"}})
    assert misspelt.status_code == 422, misspelt.content
    assert misspelt.json()["errors"] == [
        {
            "field": "variables",
            "message": "auth_tg: no scenario declares or uses ${auth_tg} (did you mean auth_tag?)",
            "row": None,
        }
    ]
    assert not ScenarioRun.objects.exists()
    # (no built-in CSMS here: the template's chargers need a csms_url)
    given = {"variables": {"auth_tag": "Y"}, "csms_url": "ws://127.0.0.1:9/ocpp"}
    assert post({"source": source, **given}).status_code == 202


def test_a_nul_in_a_variable_or_the_source_is_a_422_naming_where(client: Client) -> None:
    # Before: a NUL in a given variable reached the run's row, and PostgreSQL's refusal was
    # a 500. A NUL in the YAML was a 422 at "line 1, column 1".
    _, token = user_with_token("writer", "view_charger", "change_charger")
    response = client.post(
        RUNS,
        {"source": PASSING, "variables": {"tag": "A\x00B"}},
        content_type="application/json",
        headers=bearer(token),
    )
    assert response.status_code == 422, response.content
    assert [(e["field"], e["path"], e["message"]) for e in response.json()["errors"]] == [
        ("variables", "variables.tag", "holds a NUL character (U+0000)")
    ]
    response = client.post(
        RUNS,
        {"source": PASSING.replace("API-TAG", "API\x00TAG")},
        content_type="application/json",
        headers=bearer(token),
    )
    assert response.status_code == 422, response.content
    assert [(e["field"], e["line"], e["column"]) for e in response.json()["errors"]] == [
        ("source", 8, 33)
    ]
    assert not ScenarioRun.objects.exists()


def test_source_or_library_is_needed_and_an_unknown_case_is_named(client: Client) -> None:
    _, token = user_with_token("writer", "view_charger", "change_charger")
    for body, field in (
        ({}, "source"),
        ({"source": PASSING, "library": "x"}, "source"),
        ({"library": "no-such-case"}, "library"),
        ({"source": PASSING, "csms_url": "http://x"}, "csms_url"),
    ):
        response = client.post(RUNS, body, content_type="application/json", headers=bearer(token))
        assert response.status_code == 422, (body, response.content)
        assert response.json()["errors"][0]["field"] == field
    # Both given is said as such, not as if neither was.
    both = client.post(
        RUNS,
        {"source": PASSING, "library": "boot-accepted"},
        content_type="application/json",
        headers=bearer(token),
    )
    assert both.json()["errors"][0]["message"] == (
        "Give the scenario's `source` or a `library` name, not both."
    )
    neither = client.post(RUNS, {}, content_type="application/json", headers=bearer(token))
    assert neither.json()["errors"][0]["message"] == (
        "Give the scenario's `source` or a `library` name."
    )


def test_a_runs_csms_url_is_refused_in_the_words_a_chargers_is(client: Client) -> None:
    """Not as pydantic's "String should match pattern '^(wss?://\\S+)?$'"."""
    _, token = user_with_token("writer", "view_charger", "change_charger")
    for url, message in (
        ("http://csms:9000/ocpp", "The CSMS URL must start with ws:// or wss://, not http://."),
        ("ws://csms 9000/ocpp", "The CSMS URL must not hold spaces."),
    ):
        response = client.post(
            RUNS,
            {"library": "boot-accepted", "csms_url": url},
            content_type="application/json",
            headers=bearer(token),
        )
        assert response.status_code == 422, response.content
        assert response.json()["errors"] == [{"field": "csms_url", "message": message, "row": None}]
    assert not ScenarioRun.objects.exists()


def test_reading_needs_view_and_starting_and_cancelling_need_change(client: Client) -> None:
    run = stored(status="running", heartbeat=timezone.now())
    assert client.get(RUNS).status_code == 401
    _, nobody = user_with_token("nobody")
    assert client.get(RUNS, headers=bearer(nobody)).status_code == 403
    _, viewer = user_with_token("viewer", "view_charger")
    assert client.get(RUNS, headers=bearer(viewer)).status_code == 200
    assert client.get(f"{RUNS}/{run.pk}", headers=bearer(viewer)).status_code == 200
    refused = client.post(
        RUNS, {"source": PASSING}, content_type="application/json", headers=bearer(viewer)
    )
    assert refused.status_code == 403
    assert "chargers.change_charger" in refused.json()["detail"]
    assert client.post(f"{RUNS}/{run.pk}/cancel", headers=bearer(viewer)).status_code == 403
    assert client.get(f"{RUNS}/999999", headers=bearer(viewer)).status_code == 404


def test_no_credential_reaches_a_run_shown_through_the_api(client: Client) -> None:
    _, token = user_with_token("writer", "view_charger", "change_charger")
    # A CSMS URL with a password is refused as a charger's is: it would be shown with the run.
    refused = client.post(
        RUNS,
        {"source": PASSING, "csms_url": "ws://user:URLPASSWORD@127.0.0.1:9/ocpp"},
        content_type="application/json",
        headers=bearer(token),
    )
    assert refused.status_code == 422, refused.content
    assert refused.json()["errors"][0]["field"] == "csms_url"
    assert "URLPASSWORD" not in refused.content.decode()
    assert not ScenarioRun.objects.exists()
    # A variable named as a secret is shown hidden (the run itself used the value).
    run = stored(variables={"password": "Hunter2-VARSECRET", "api_token": "tok-1", "soc": 20})
    shown = client.get(f"{RUNS}/{run.pk}", headers=bearer(token)).json()
    assert shown["variables"] == {"password": "********", "api_token": "********", "soc": 20}
    listed = client.get(RUNS, headers=bearer(token)).content.decode()
    assert "VARSECRET" not in listed and "tok-1" not in listed


def test_the_list_pages_and_filters(client: Client) -> None:
    for n in range(5):
        stored(name="a" if n % 2 else "b", status="passed" if n < 3 else "failed")
    _, token = user_with_token("viewer", "view_charger")
    page = client.get(RUNS, {"limit": 2, "offset": 1}, headers=bearer(token)).json()
    assert page["count"] == 5 and len(page["items"]) == 2
    everything = client.get(RUNS, headers=bearer(token)).json()["items"]
    assert [r["id"] for r in everything[1:3]] == [r["id"] for r in page["items"]]
    assert client.get(RUNS, {"status": "failed"}, headers=bearer(token)).json()["count"] == 2
    assert client.get(RUNS, {"name": "a"}, headers=bearer(token)).json()["count"] == 2
    assert client.get(RUNS, {"status": "nope"}, headers=bearer(token)).status_code == 422
    # Every run that did not pass, in one request: `error` is apart from `failed`.
    stored(name="c", status="error")
    stored(name="d", status="running")
    not_passed = client.get(RUNS, {"status": ["failed", "error"]}, headers=bearer(token)).json()
    assert sorted(r["name"] for r in not_passed["items"]) == ["a", "b", "c"]
    wrong = client.get(RUNS, {"status": ["failed", "nope"]}, headers=bearer(token))
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "status.1"
    assert client.get(RUNS, {"limit": 0}, headers=bearer(token)).status_code == 422


def test_downloads_of_a_stored_run(client: Client) -> None:
    result = {
        "scenario": "stored",
        "status": "failed",
        "chargers": [
            {
                "charge_point_id": "CP-1",
                "status": "failed",
                "message": "m",
                "steps": [
                    {"index": 0, "kind": "plug_in", "status": "passed", "message": ""},
                    {"index": 1, "kind": "expect", "status": "failed", "message": "boom"},
                ],
            }
        ],
    }
    run = stored(status="failed", result=result)
    events = [{"at": "t", "kind": "frame", "data": n} for n in range(2500)]
    run.store_frames(events)
    run.save()
    _, token = user_with_token("viewer", "view_charger")
    junit = client.get(f"{RUNS}/{run.pk}/junit.xml", headers=bearer(token))
    assert valid_junit(junit.content).get("failures") == "1"
    assert json.loads(
        client.get(f"{RUNS}/{run.pk}/result.json", headers=bearer(token)).content
    ) == (result)
    frames = client.get(f"{RUNS}/{run.pk}/frames.jsonl", headers=bearer(token))
    assert frames["Content-Type"] == "application/x-ndjson"
    body = async_to_sync(joined)(frames.streaming_content)  # type: ignore[attr-defined]
    assert [json.loads(line)["data"] for line in body.splitlines()] == list(range(2500))
    assert gzip.decompress(bytes(run.frames)).count(b"\n") == 2500
    detail = client.get(f"{RUNS}/{run.pk}", headers=bearer(token)).json()
    assert detail["chargers"] == {"passed": 0, "failed": 1, "error": 0, "total": 1}
    assert detail["links"]["junit"] == f"{RUNS}/{run.pk}/junit.xml"


def test_the_junit_of_a_run_not_finished_is_an_error_never_a_green_report(
    client: Client,
) -> None:
    """A CI job that fetches the report before the run has ended (it did not poll, or a
    timeout of its own ran out) must not publish a pass: the report of a queued run had
    no testcase at all, and a running run's only the steps passed so far."""
    _, token = user_with_token("viewer", "view_charger")
    queued = stored(status="queued")
    running = stored(
        status="running",
        result={
            "scenario": "stored",
            "run": 0,
            "status": "running",
            "chargers": [
                {
                    "charge_point_id": "CP-1",
                    "status": "passed",
                    "steps": [{"index": 0, "kind": "plug_in", "status": "passed"}],
                }
            ],
        },
    )
    for run, shown in ((queued, "queued"), (running, "running")):
        junit = client.get(f"{RUNS}/{run.pk}/junit.xml", headers=bearer(token))
        assert junit.status_code == 200
        suites = valid_junit(junit.content)
        assert suites.get("errors") == "1", junit.content
        (suite,) = suites.iter("testsuite")
        assert suite.get("name") == "stored"
        [case] = [c for c in suite.iter("testcase") if c.find("error") is not None]
        assert case.get("name") == "unfinished"
        error = case.find("error")
        assert error is not None
        assert error.get("message") == (
            f"Scenario run {run.pk} has not finished ({shown}): this report holds only the "
            "steps done so far, not its verdict. Fetch it once GET "
            f"/api/v1/scenarios/runs/{run.pk} says passed, failed or error."
        )
    # The steps done so far are still there.
    junit = client.get(f"{RUNS}/{running.pk}/junit.xml", headers=bearer(token))
    names = [c.get("name") for c in valid_junit(junit.content).iter("testcase")]
    assert names == ["unfinished", "steps[0] plug_in"]


def test_the_junit_of_a_run_that_never_ran_has_valid_suite_attributes_and_its_error(
    client: Client,
) -> None:
    """A queued run's suite had `file=""` and `timestamp=""` (no dateTime: a report a CI
    tool validates against the JUnit schema is refused), and one cancelled while queued
    had no testcase at all: no error, so a job publishing it showed nothing wrong."""
    _, token = user_with_token("writer", "view_charger", "change_charger")
    queued = stored(status="queued", file="smoke.yaml")
    cancelled = stored(status="queued", file="<api>")
    client.post(f"{RUNS}/{cancelled.pk}/cancel", headers=bearer(token))
    suites = {}
    for run in (queued, cancelled):
        junit = client.get(f"{RUNS}/{run.pk}/junit.xml", headers=bearer(token))
        (suites[run.pk],) = valid_junit(junit.content).iter("testsuite")
    # Neither has started: no timestamp rather than an empty one; the file is the row's.
    assert suites[queued.pk].attrib == {
        "name": "stored",
        "file": "smoke.yaml",
        "time": "0.000",
        "tests": "1",
        "failures": "0",
        "errors": "1",
        "skipped": "0",
    }
    assert "timestamp" not in suites[cancelled.pk].attrib
    (case,) = suites[cancelled.pk].iter("testcase")
    error = case.find("error")
    assert error is not None and error.text == "cancelled before it started"
    # A run that started has its start, as the JUnit schema writes a timestamp: to the
    # second, without a zone (UTC).
    started = stored(status="error", message="no location named 'X'")
    ScenarioRun.objects.filter(pk=started.pk).update(
        started=datetime(2026, 12, 2, 7, 0, 1, 500000, tzinfo=UTC)
    )
    junit = client.get(f"{RUNS}/{started.pk}/junit.xml", headers=bearer(token))
    (suite,) = valid_junit(junit.content).iter("testsuite")
    assert suite.get("timestamp") == "2026-12-02T07:00:01"


def test_the_concurrency_limit_refuses_one_more_with_a_429(client: Client, settings: Any) -> None:
    settings.CHARGESIM_SCENARIO_RUNS = 1
    stored(status="running", heartbeat=timezone.now())
    _, token = user_with_token("writer", "view_charger", "change_charger")
    response = client.post(
        RUNS,
        {"source": PASSING, "csms_url": "ws://127.0.0.1:9/ocpp"},
        content_type="application/json",
        headers=bearer(token),
    )
    assert response.status_code == 429, response.content
    assert "CHARGESIM_SCENARIO_RUNS" in response.json()["detail"]
    # When to ask again, as RFC 9110 has a 429 say it, and the document declares it.
    assert response["Retry-After"] == "10"
    spec = client.get("/api/v1/openapi.json", headers=bearer(token)).json()
    declared = spec["paths"][RUNS]["post"]["responses"]["429"]
    assert declared["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    assert ScenarioRun.objects.count() == 1


def test_a_run_whose_process_stopped_is_stored_as_error(client: Client) -> None:
    old = timezone.now() - timedelta(seconds=120)

    def progress(*chargers: tuple[str, bool]) -> dict[str, Any]:
        return {"chargers": [{"charge_point_id": c, "temporary": t} for c, t in chargers]}

    scenarios = Location.objects.create(name=DEFAULT_LOCATION)  # as a run makes it
    for cp_id in ("SCN-R1-1", "SCN-R1-2", "ALIVE-R2-1"):
        make_charger(cp_id, location=scenarios)
    make_charger("KEPT-1", location=make_location("Depot"))
    lost = stored(
        status="running",
        heartbeat=old,
        result=progress(("SCN-R1-1", True), ("SCN-R1-2", True), ("KEPT-1", False)),
    )
    alive = stored(
        status="running", heartbeat=timezone.now(), result=progress(("ALIVE-R2-1", True))
    )
    _, token = user_with_token("viewer", "view_charger")
    body = client.get(f"{RUNS}/{lost.pk}", headers=bearer(token)).json()
    assert body["status"] == "error"
    assert body["message"] == "the process running it stopped before it finished"
    assert client.get(f"{RUNS}/{alive.pk}", headers=bearer(token)).json()["status"] == "running"
    # The lost run's temporary chargers went with it (they would connect at every start); a
    # charger it only used, and the live run's, stay.
    assert sorted(Charger.objects.values_list("charge_point_id", flat=True)) == [
        "ALIVE-R2-1",
        "KEPT-1",
    ]
    # The live run may still put chargers at the default location: kept while it runs.
    assert Location.objects.filter(name=DEFAULT_LOCATION).exists()
    ScenarioRun.objects.filter(pk=alive.pk).update(heartbeat=old)
    assert client.get(f"{RUNS}/{alive.pk}", headers=bearer(token)).json()["status"] == "error"
    # Once no run is left, the location goes with its chargers, as after a run that ended.
    assert list(Charger.objects.values_list("charge_point_id", flat=True)) == ["KEPT-1"]
    assert not Location.objects.filter(name=DEFAULT_LOCATION).exists()


def test_a_queued_run_cancelled_is_stored_as_error_at_once(client: Client) -> None:
    run = stored(status="queued")
    _, token = user_with_token("writer", "view_charger", "change_charger")
    response = client.post(f"{RUNS}/{run.pk}/cancel", headers=bearer(token))
    assert response.status_code == 202
    assert response.json()["status"] == "error"
    assert response.json()["message"] == "cancelled before it started"


def test_the_schema_and_the_library(client: Client, tmp_path: Any, monkeypatch: Any) -> None:
    _, token = user_with_token("viewer", "view_charger")
    schema = client.get("/api/v1/scenarios/schema", headers=bearer(token)).json()
    assert "steps" in schema["properties"]
    monkeypatch.setattr(library, "folder", lambda: tmp_path / "missing")
    assert client.get("/api/v1/scenarios/library", headers=bearer(token)).json() == []
    (tmp_path / "boot.yaml").write_text(textwrap.dedent(PASSING))
    (tmp_path / "notes.txt").write_text("not a case")
    monkeypatch.setattr(library, "folder", lambda: tmp_path)
    cases = client.get("/api/v1/scenarios/library", headers=bearer(token)).json()
    assert cases == [
        {"name": "boot", "description": "A session on a template charger, started through the API."}
    ]
    # A case by name: its file is what runs (dispatch left out: no engine here).
    monkeypatch.setattr(launch, "dispatch", _not_started)
    writer = user_with_token("writer", "view_charger", "change_charger")[1]
    started = client.post(
        RUNS,
        # (a variable the case can take: one it does not name is a 422)
        {
            "library": "boot",
            "variables": {"csms_control": "http://127.0.0.1:9/"},
            "csms_url": "ws://127.0.0.1:9/ocpp",
        },
        content_type="application/json",
        headers=bearer(writer),
    )
    assert started.status_code == 202, started.content
    run = ScenarioRun.objects.get(pk=started.json()["id"])
    assert (run.file, run.source, run.variables) == (
        "boot.yaml",
        PASSING,
        {"csms_control": "http://127.0.0.1:9/"},
    )


def test_a_case_needing_csms_control_with_none_here_is_a_422(
    client: Client, monkeypatch: Any
) -> None:
    """No built-in CSMS runs in this process (a simulator without --demo, or scaled out):
    a library case that makes the CSMS act through ${csms_control} was queued, connected
    and errored at its first trigger; refused at once instead, saying what to give."""
    monkeypatch.setattr(launch, "dispatch", _not_started)  # no engine here
    _, token = user_with_token("writer", "view_charger", "change_charger")
    refused = client.post(
        RUNS,
        {"library": "remote-stop", "csms_url": "ws://127.0.0.1:9/ocpp"},
        content_type="application/json",
        headers=bearer(token),
    )
    assert refused.status_code == 422, refused.content
    assert refused.json()["errors"] == [
        {
            "field": "variables",
            "message": "The scenario makes the CSMS act through ${csms_control}, which has "
            "no value here: no built-in CSMS with a control endpoint runs in this simulator "
            "(runsimulator --demo starts one). Give variables.csms_control, your CSMS's hook "
            "(docs/csms-control.md).",
            "row": None,
        }
    ]
    assert not ScenarioRun.objects.exists()
    # A built-in CSMS without its control endpoint (--csms-control-port -1) gives none.
    no_control = builtin_csms.BuiltinCsms("ws://127.0.0.1:9/ocpp", None)
    monkeypatch.setattr(builtin_csms, "running", lambda: no_control)
    again = client.post(
        RUNS, {"library": "remote-stop"}, content_type="application/json", headers=bearer(token)
    )
    assert again.status_code == 422, again.content
    assert again.json()["errors"][0]["field"] == "variables"
    # Given, it is queued; a case that needs no hook needs none.
    for body in (
        {"library": "remote-stop", "variables": {"csms_control": "http://127.0.0.1:9"}},
        {"library": "boot-accepted"},
    ):
        started = client.post(
            RUNS,
            {**body, "csms_url": "ws://127.0.0.1:9/ocpp"},
            content_type="application/json",
            headers=bearer(token),
        )
        assert started.status_code == 202, started.content


def test_a_template_case_with_no_csms_here_is_a_422(client: Client, monkeypatch: Any) -> None:
    """QA: no built-in CSMS runs in this process (a simulator without --demo, or scaled
    out) and the request gives no csms_url: a template case was queued (202), then stored
    as an error whose message named runscenario's --csms-url. Refused at once instead, on
    csms_url, as `runscenario` refuses it before anything runs."""
    monkeypatch.setattr(launch, "dispatch", _not_started)  # no engine here
    _, token = user_with_token("writer", "view_charger", "change_charger")
    refused = client.post(
        RUNS, {"library": "boot-accepted"}, content_type="application/json", headers=bearer(token)
    )
    assert refused.status_code == 422, refused.content
    assert refused.json()["errors"] == [
        {
            "field": "csms_url",
            "message": "The scenario's template chargers need a CSMS, and no built-in CSMS "
            "runs in this simulator (runsimulator --demo starts one): give csms_url, your "
            "CSMS's URL, or the template a csms_url.",
            "row": None,
        }
    ]
    assert not ScenarioRun.objects.exists()
    # A csms_url given, the template's own, or the built-in CSMS of --demo: queued.
    own = PASSING.replace("template: {", "template: {csms_url: 'ws://127.0.0.1:9/ocpp', ")
    assert own != PASSING
    for body in (
        {"library": "boot-accepted", "csms_url": "ws://127.0.0.1:9/ocpp"},
        {"source": own},
    ):
        started = client.post(RUNS, body, content_type="application/json", headers=bearer(token))
        assert started.status_code == 202, started.content
    monkeypatch.setattr(
        builtin_csms, "running", lambda: builtin_csms.BuiltinCsms("ws://127.0.0.1:9/ocpp", None)
    )
    started = client.post(
        RUNS, {"library": "boot-accepted"}, content_type="application/json", headers=bearer(token)
    )
    assert started.status_code == 202, started.content


def test_the_openapi_document_has_the_scenario_endpoints_and_validates(client: Client) -> None:
    _, token = user_with_token("ci")
    spec = client.get("/api/v1/openapi.json", headers=bearer(token)).json()
    validate(spec)
    paths = spec["paths"]
    assert {"post", "get"} <= set(paths[RUNS])
    assert {"422", "429"} <= set(paths[RUNS]["post"]["responses"])
    for tail in ("", "/cancel", "/junit.xml", "/result.json", "/frames.jsonl"):
        assert f"{RUNS}/{{run_id}}{tail}" in paths
    assert "/api/v1/scenarios/schema" in paths and "/api/v1/scenarios/library" in paths


async def _not_started(run: ScenarioRun) -> ScenarioRun:
    return run


@pytest.fixture
def redis_away(settings: Any) -> Iterator[None]:
    """Scaled out with Redis down: Celery's broker cannot be reached."""
    from chargesim_site.celery import app
    from tests.process import free_port

    away = f"redis://127.0.0.1:{free_port()}/0"
    saved = app.conf.broker_url, app.conf.result_backend, app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.broker_url, app.conf.result_backend, app.conf.task_always_eager = away, away, False
    app._pool = app.amqp._producer_pool = None  # connect anew, to the broker set here
    app.__dict__.pop("backend", None)
    yield
    app.conf.broker_url, app.conf.result_backend, app.conf.task_always_eager = saved
    app._pool = app.amqp._producer_pool = None
    app.__dict__.pop("backend", None)


@pytest.mark.usefixtures("redis_away")
def test_with_redis_away_a_run_that_cannot_be_queued_ends_saying_so(client: Client) -> None:
    """QA (scaled out, Redis away): POST /scenarios/runs held the web process's event loop
    20 s (the result backend's retries, every request of the process waiting), answered
    500, and left the run queued for good, counted against CHARGESIM_SCENARIO_RUNS."""
    _, token = user_with_token("writer", "view_charger", "change_charger")
    started = client.post(
        RUNS,
        {"source": PASSING, "csms_url": "ws://127.0.0.1:9/ocpp"},
        content_type="application/json",
        headers=bearer(token),
    )
    assert started.status_code == 202, started.content
    run = started.json()
    assert run["status"] == "error"
    assert run["message"].startswith(
        "The run could not be handed to a background worker: the broker (Redis) cannot be "
        "reached (OperationalError: "
    ), run["message"]
    stored = ScenarioRun.objects.get(pk=run["id"])
    assert (stored.status, stored.finished is not None) == ("error", True)


def test_a_run_against_another_csms_does_not_take_the_built_in_csmss_hook(
    client: Client, monkeypatch: Any
) -> None:
    """QA: under runsimulator --demo, a library case run with the csms_url of the CSMS
    under test got the built-in CSMS's control endpoint as ${csms_control}: its triggers
    asked the built-in CSMS to act on chargers connected elsewhere, each answered 409, and
    the run was stored as failed, a verdict on a CSMS that was never asked."""
    monkeypatch.setattr(launch, "dispatch", _not_started)  # no engine here
    builtin = builtin_csms.BuiltinCsms("ws://127.0.0.1:9000/ocpp", "http://127.0.0.1:9001")
    monkeypatch.setattr(builtin_csms, "running", lambda: builtin)
    _, token = user_with_token("writer", "view_charger", "change_charger")

    def post(body: dict[str, Any]) -> Any:
        return client.post(RUNS, body, content_type="application/json", headers=bearer(token))

    refused = post({"library": "remote-stop", "csms_url": "ws://127.0.0.1:9100/ocpp"})
    assert refused.status_code == 422, refused.content
    (problem,) = refused.json()["errors"]
    assert problem["field"] == "variables"
    assert problem["message"].startswith(
        "The scenario makes the CSMS act through ${csms_control}, which has no value for "
        "ws://127.0.0.1:9100/ocpp: the built-in CSMS's control endpoint makes only that "
        "CSMS act."
    )
    assert not ScenarioRun.objects.exists()
    assert launch.builtin_control("ws://127.0.0.1:9100/ocpp") is None
    # The built-in CSMS's own URL, however written, or none: its hook is the default.
    for csms_url in ("", "ws://127.0.0.1:9000/ocpp", "ws://localhost:9000/ocpp/"):
        started = post({"library": "remote-stop", "csms_url": csms_url})
        assert started.status_code == 202, (csms_url, started.content)
        assert launch.builtin_control(csms_url) == "http://127.0.0.1:9001"
