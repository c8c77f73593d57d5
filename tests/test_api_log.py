"""The message log through the API: a charger's log paged by time, its JSON Lines
download, the fleet's export; who may read them; no secret in any of them."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from ocpp.v16 import call
from openapi_spec_validator import validate

from chargers.models import FrameLogEntry, FrameLogRow
from simulator.core.charge_point import BootState
from simulator.runtime.lifecycle import RunOptions, Simulator
from tests.api_client import TokenClient, bearer, user_with_token
from tests.api_streams import close_request_connections  # noqa: F401  (a fixture, found by name)
from tests.cast import make_charger, make_location
from tests.engine import loaded, wait_until

pytestmark = pytest.mark.django_db

T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z
SECRET = "bad5ec2e7bad5ec2e7bad5ec2e7bad5ec2e7ba42"  # 20 bytes in hex: a key it takes


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def log_rows(pk: int, ats: list[float], prefix: str = "m", answered: bool = False) -> None:
    """Heartbeat CALLs `<prefix><n>` at these times; with `answered`, the even ones with
    their answer (0.25 s later) in the same row, as the engine stores an answer that came
    in the same batch."""
    rows: list[FrameLogRow] = []
    for n, at in enumerate(ats):
        call = f'[2,"{prefix}{n}","Heartbeat",{{}}]'
        answer = f'[3,"{prefix}{n}",{{"currentTime":"2026-01-01T00:00:00Z"}}]'
        paired = answered and n % 2 == 0
        rows.append(
            (
                *(pk, at, "frame", "out", f"{prefix}{n}", "Heartbeat", len(call), call),
                *((at + 0.25, len(answer), answer) if paired else (None, None, "")),
            )
        )
    FrameLogEntry.objects.add(rows)


@pytest.fixture
def fleet(db: None) -> dict[str, Any]:
    """LOG-A: 10 CALLs one second apart (the last two at one time), the even ones answered
    (15 entries); LOG-B at another site: 10 CALLs half a second later, not answered."""
    north, south = make_location("North"), make_location("South")
    one = make_charger("LOG-A", location=north, evses=1)
    two = make_charger("LOG-B", location=south, evses=1)
    ats = [T0 + n for n in range(9)] + [T0 + 8]  # a tie: the last two share a time
    log_rows(one.pk, ats, "a", answered=True)
    log_rows(two.pk, [T0 + n + 0.5 for n in range(10)], "b")
    _, token = user_with_token("reader", "view_charger")
    return {"north": north, "south": south, "one": one, "two": two, "token": token}


def ids(items: list[dict[str, Any]]) -> list[str]:
    """Each entry as its message id and ">" (sent by the charger) or "<" (received)."""
    return [item["message_id"] + (">" if item["direction"] == "out" else "<") for item in items]


def answered(prefix: str, numbers: range | list[int]) -> list[str]:
    """The entries of those CALLs of the fixture's LOG-A, oldest first: an even one's answer
    right after it (it follows its CALL even when the next CALL is older, as a9 is)."""
    return [
        e
        for n in numbers
        for e in ([f"{prefix}{n}>", f"{prefix}{n}<"] if n % 2 == 0 else [f"{prefix}{n}>"])
    ]


# -- one charger's log, paged --------------------------------------------------------------


def test_a_page_is_newest_first_and_the_cursor_walks_the_whole_log(fleet):
    api = TokenClient(fleet["token"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = api.get("/api/v1/chargers/LOG-A/log", **query)
        assert response.status_code == 200, response.content
        body = response.json()
        assert len(body["items"]) <= 2
        seen += ids(body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 8  # 15 entries, 2 a page: some pages end between a CALL and its answer
    # Newest first; of the two logged at the same time, the later id first; an answer
    # before its CALL.
    assert seen == list(reversed(answered("a", range(10))))
    newest = api.get("/api/v1/chargers/LOG-A/log", limit=3).json()["items"]
    call = '[2,"a9","Heartbeat",{}]'
    assert newest[0] == {
        "id": newest[0]["id"],
        "at": iso(T0 + 8),
        "charge_point_id": "LOG-A",
        "kind": "frame",
        "direction": "out",
        "message_id": "a9",
        "action": "Heartbeat",
        "payload": call,
        "size": len(call),
        "truncated": False,
    }
    answer = newest[1]
    assert (answer["message_id"], answer["direction"], answer["action"]) == (
        "a8",
        "in",
        "Heartbeat",
    )
    assert answer["at"] == iso(T0 + 8.25)
    assert json.loads(answer["payload"]) == [3, "a8", {"currentTime": "2026-01-01T00:00:00Z"}]
    assert newest[2]["id"] == answer["id"] - 1  # the CALL it answers
    assert len({item["id"] for item in newest}) == 3


def test_a_window_backwards_says_how_its_times_were_read(fleet):
    """`until=4` is Unix seconds, 1970: the 422 said only "`until` must be after `since`",
    and the caller did not see why."""
    api = TokenClient(fleet["token"])
    response = api.get("/api/v1/chargers/LOG-A/log", since="2020-01-01", until="4")
    assert response.status_code == 422, response.content
    message = response.json()["errors"][0]["message"]
    assert "read as since 2020-01-01T00:00:00+00:00, until 1970-01-01T00:00:04+00:00" in message
    # Unix seconds are a time too.
    epoch = api.get("/api/v1/chargers/LOG-A/log", order="asc", since=str(T0 + 7)).json()
    assert ids(epoch["items"]) == answered("a", [7, 8, 9])


def test_oldest_first_and_a_time_window(fleet):
    api = TokenClient(fleet["token"])
    response = api.get(
        "/api/v1/chargers/LOG-A/log", order="asc", since=iso(T0 + 2), until=iso(T0 + 5)
    )
    assert ids(response.json()["items"]) == answered("a", [2, 3, 4])
    assert response.json()["next_cursor"] is None
    # A time without a zone is UTC.
    naive = datetime.fromtimestamp(T0 + 7, UTC).replace(tzinfo=None).isoformat()
    later = api.get("/api/v1/chargers/LOG-A/log", order="asc", since=naive).json()["items"]
    assert ids(later) == answered("a", [7, 8, 9])
    page = api.get("/api/v1/chargers/LOG-A/log", order="asc", limit=2, since=iso(T0 + 6)).json()
    rest = api.get(
        "/api/v1/chargers/LOG-A/log",
        order="asc",
        limit=2,
        since=iso(T0 + 6),
        cursor=page["next_cursor"],
    ).json()
    assert ids(page["items"]) + ids(rest["items"]) == ["a6>", "a6<", "a7>", "a8>"]


def test_rows_logged_after_a_page_do_not_shift_the_next_one(fleet):
    api = TokenClient(fleet["token"])
    page = api.get("/api/v1/chargers/LOG-A/log", limit=4).json()
    log_rows(fleet["one"].pk, [T0 + 100, T0 + 101], "new")
    rest = api.get("/api/v1/chargers/LOG-A/log", limit=4, cursor=page["next_cursor"]).json()
    assert ids(page["items"]) == ["a9>", "a8<", "a8>", "a7>"]
    assert ids(rest["items"]) == ["a6<", "a6>", "a5>", "a4<"]


def forged(raw: str) -> str:
    """A cursor made by hand, as a caller could (they are base64 of plain text)."""
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        # Forged: a row id past the databases' 64-bit integers, a part no row has, a time
        # that is not a number.
        # LOG-A's window ({scope}) otherwise, as the log hands them out.
        ({"cursor": f"desc:1.0:{2**63}:0:{{scope}}"}, "cursor"),
        ({"cursor": "desc:1.0:5:7:{scope}"}, "cursor"),
        ({"cursor": "desc:nan:5:0:{scope}"}, "cursor"),
        ({"cursor": "desc:1.0:5:0"}, "cursor"),  # as they were before they named a window
        ({"since": iso(T0 + 5), "until": iso(T0 + 5)}, "until"),
    ],
)
def test_a_bad_query_is_a_422_naming_the_field(fleet, query, field):
    if "cursor" in query:
        scope = f"{fleet['one'].pk}:None:None"
        query = {"cursor": forged(query["cursor"].replace("{scope}", scope))}
        good = forged(f"desc:1.0:5:0:{scope}")
        ok = TokenClient(fleet["token"]).get("/api/v1/chargers/LOG-A/log", cursor=good)
        assert ok.status_code == 200, ok.content  # the same with nothing forged
    response = TokenClient(fleet["token"]).get("/api/v1/chargers/LOG-A/log", **query)
    assert response.status_code == 422, response.content
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_unix_seconds_are_seconds_however_large(fleet):
    """QA: pydantic reads a number above 2e10 as milliseconds: `since=253402300799` (the
    last second of the year 9999, as the error text offers) answered the whole log."""
    api = TokenClient(fleet["token"])
    assert api.get("/api/v1/chargers/LOG-A/log", since="253402300799").json()["items"] == []
    assert api.get("/api/v1/chargers/LOG-A/log", until="100000000000").json()["items"]


@pytest.mark.parametrize(
    "since", ["1e20", "nan", "inf", "yesterday", "99999999999999999", "300000000000"]
)
def test_a_time_that_cannot_be_read_is_refused_saying_what_a_time_is(fleet, since):
    """pydantic said "Input should be a valid datetime or date, input is too short"."""
    response = TokenClient(fleet["token"]).get("/api/v1/chargers/LOG-A/log", since=since)
    assert response.status_code == 422, response.content
    assert response.json()["errors"] == [
        {
            "field": "since",
            "message": "Enter a time: ISO 8601 (2026-12-02T10:00:00Z; UTC when it has no zone) "
            "or Unix seconds (1796205600), up to the year 9999.",
            "row": None,
        }
    ]


def test_a_cursor_of_the_other_order_is_refused(fleet):
    api = TokenClient(fleet["token"])
    cursor = api.get("/api/v1/chargers/LOG-A/log", limit=2).json()["next_cursor"]
    response = api.get("/api/v1/chargers/LOG-A/log", limit=2, order="asc", cursor=cursor)
    assert response.status_code == 422
    assert "order=desc" in response.json()["errors"][0]["message"]


def test_a_cursor_of_another_chargers_log_or_of_other_times_is_refused(fleet):
    """QA: a cursor taken from LOG-A's log, used on LOG-B's, paged LOG-B's from LOG-A's
    position without a word; so did one used with other since/until."""
    api = TokenClient(fleet["token"])
    cursor = api.get("/api/v1/chargers/LOG-A/log", limit=2).json()["next_cursor"]
    other = api.get("/api/v1/chargers/LOG-B/log", limit=2, cursor=cursor)
    assert other.status_code == 422, other.content
    assert other.json()["errors"] == [
        {
            "field": "cursor",
            "message": "The cursor is from another charger's log: a cursor continues only "
            "the log it came from.",
            "row": None,
        }
    ]
    since = iso(T0 + 2)
    windowed = api.get("/api/v1/chargers/LOG-A/log", limit=2, since=since).json()
    for query in ({}, {"since": iso(T0 + 3)}, {"since": since, "until": iso(T0 + 9)}):
        moved = api.get(
            "/api/v1/chargers/LOG-A/log", limit=2, cursor=windowed["next_cursor"], **query
        )
        assert moved.status_code == 422, (query, moved.content)
        assert moved.json()["errors"][0]["message"] == (
            "The cursor is for other since/until: send the ones of the page it came from."
        )
    # With its own window it goes on, a time given as another text of the same moment too.
    rest = api.get(
        "/api/v1/chargers/LOG-A/log",
        limit=2,
        since=str(T0 + 2),
        cursor=windowed["next_cursor"],
    )
    assert rest.status_code == 200, rest.content
    assert ids(windowed["items"]) + ids(rest.json()["items"]) == ["a9>", "a8<", "a8>", "a7>"]


def test_an_entrys_shown_time_selects_it_as_since_and_leaves_it_out_as_until(fleet):
    """QA: stored times are finer than the microseconds shown, and the shown time was the
    nearest microsecond: for one stored just before it, `since=<its at>` left the entry
    out and `until=<its at>` took it in. Shown is the latest microsecond at or before it."""
    charger = make_charger("LOG-FINE", location=fleet["north"], evses=1)
    # Each a little before a microsecond (or a second) that the nearest would show.
    ats = [T0 + 0.1234567, T0 + 1.9999996, T0 + 2.5000004, T0 + 3.0000009]
    log_rows(charger.pk, ats, "f")
    api = TokenClient(fleet["token"])
    path = "/api/v1/chargers/LOG-FINE/log"
    shown = {item["message_id"]: item["at"] for item in api.get(path, order="asc").json()["items"]}
    assert shown["f0"] == "2026-05-28T20:26:40.123456Z"
    assert shown["f1"] == "2026-05-28T20:26:41.999999Z"
    for n in range(len(ats)):
        at = shown[f"f{n}"]
        since = api.get(path, order="asc", since=at).json()["items"]
        assert [item["message_id"] for item in since] == [f"f{m}" for m in range(n, len(ats))]
        until = api.get(path, order="asc", until=at).json()["items"]
        assert [item["message_id"] for item in until] == [f"f{m}" for m in range(n)]
        after = datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%f%z") + timedelta(microseconds=1)
        through = api.get(path, order="asc", until=after.isoformat()).json()["items"]
        assert through[-1]["message_id"] == f"f{n}"


def test_an_unknown_charger_is_404(fleet):
    response = TokenClient(fleet["token"]).get("/api/v1/chargers/NOPE/log")
    assert response.status_code == 404
    assert response.json()["detail"] == "No charger 'NOPE'."


# -- who may read it ------------------------------------------------------------------------

PATHS = [
    "/api/v1/chargers/LOG-A/log",
    "/api/v1/chargers/LOG-A/log.jsonl",
    f"/api/v1/log.jsonl?since={iso(T0)}",
    "/api/v1/events",
]


@pytest.mark.parametrize("path", PATHS)
def test_anonymous_callers_are_401(fleet, client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert set(response.json()) == {"detail", "errors"}


@pytest.mark.parametrize("path", PATHS)
def test_callers_without_the_view_permission_are_403(fleet, client, path):
    _, token = user_with_token("nobody", "view_location")
    response = client.get(path, headers=bearer(token))
    assert response.status_code == 403
    assert "chargers.view_charger" in response.json()["detail"]


def test_the_change_permission_may_read_it_as_on_the_dashboard(fleet, client):
    _, token = user_with_token("driver", "change_charger")
    response = client.get("/api/v1/chargers/LOG-A/log", headers=bearer(token))
    assert response.status_code == 200


def test_the_browser_session_may_read_it(fleet, client):
    from tests.cast import make_user

    client.force_login(make_user("viewer", "view_charger"))
    assert client.get("/api/v1/chargers/LOG-A/log").status_code == 200


# -- downloads (streamed: read with the async client, as an ASGI server serves them) ----------


async def download(token: str, path: str, **query: Any) -> tuple[Any, list[dict[str, Any]]]:
    response = await AsyncClient().get(path, query, headers=bearer(token))
    if not isinstance(response, StreamingHttpResponse):
        return response, []
    body = b"".join([chunk async for chunk in response.streaming_content])
    lines = body.decode().splitlines()
    return response, [json.loads(line) for line in lines]


@pytest.mark.django_db(transaction=True)
async def test_the_jsonl_download_holds_the_whole_log_oldest_first(fleet, monkeypatch):
    from chargers import message_log

    # Several reads, as for a long log, some ending between a CALL and its answer.
    monkeypatch.setattr(message_log, "STREAM_CHUNK", 2)
    response, lines = await download(fleet["token"], "/api/v1/chargers/LOG-A/log.jsonl")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == 'attachment; filename="LOG-A-log.jsonl"'
    assert ids(lines) == answered("a", range(10))
    assert {line["charge_point_id"] for line in lines} == {"LOG-A"}
    _, window = await download(
        fleet["token"], "/api/v1/chargers/LOG-A/log.jsonl", since=iso(T0 + 8)
    )
    assert ids(window) == ["a8>", "a8<", "a9>"]


@pytest.mark.django_db(transaction=True)
async def test_the_fleet_export_covers_a_time_range_of_every_charger(fleet):
    token = fleet["token"]
    response, lines = await download(
        token, "/api/v1/log.jsonl", since=iso(T0 + 3), until=iso(T0 + 5)
    )
    assert response.status_code == 200
    assert ids(lines) == ["a3>", "b3>", "a4>", "a4<", "b4>"]
    _, south = await download(token, "/api/v1/log.jsonl", since=iso(T0), location=fleet["south"].pk)
    assert {line["charge_point_id"] for line in south} == {"LOG-B"} and len(south) == 10
    _, both = await download(
        token, "/api/v1/log.jsonl", since=iso(T0 + 8), charger=["LOG-B", "LOG-A"]
    )
    assert ids(both) == ["a8>", "a8<", "a9>", "b8>", "b9>"]
    missing, _ = await download(token, "/api/v1/log.jsonl", since=iso(T0), charger="NOPE")
    assert missing.status_code == 404
    nowhere, _ = await download(token, "/api/v1/log.jsonl", since=iso(T0), location=99999)
    assert nowhere.status_code == 404
    assert nowhere.json()["detail"] == "No location 99999."
    no_since, _ = await download(token, "/api/v1/log.jsonl")
    assert no_since.status_code == 422
    assert no_since.json()["errors"][0]["field"] == "since"


@pytest.mark.django_db(transaction=True)
async def test_entries_of_a_deleted_charger_are_not_exported(fleet):
    gone = await database_sync_to_async(make_charger)("LOG-GONE", evses=1)
    await database_sync_to_async(log_rows)(gone.pk, [T0 + 1.25], "g")
    pk = gone.pk
    await database_sync_to_async(gone.delete)()
    await database_sync_to_async(log_rows)(pk, [T0 + 1.75], "late")  # written after the delete
    _, lines = await download(fleet["token"], "/api/v1/log.jsonl", since=iso(T0))
    assert not [line for line in lines if line["message_id"].startswith(("g", "late"))]
    assert len(lines) == 25


def test_a_renamed_chargers_log_keeps_its_frames_under_its_current_id(fleet, client):
    """QA: a renamed charger's frames sent under its old id were listed under its new one,
    and the old id was a 404, unexplained: the log is per charger, as its documentation
    now says (a `connected` event's url holds the id used on the wire)."""
    fleet["one"].charge_point_id = "LOG-RENAMED"
    fleet["one"].save(update_fields=["charge_point_id"])
    api = TokenClient(fleet["token"])
    items = api.get("/api/v1/chargers/LOG-RENAMED/log?limit=100").json()["items"]
    assert len(items) == 15 and {item["charge_point_id"] for item in items} == {"LOG-RENAMED"}
    assert api.get("/api/v1/chargers/LOG-A/log").status_code == 404
    spec = client.get("/api/v1/openapi.json", headers=bearer(fleet["token"])).json()
    described = spec["components"]["schemas"]["LogEntryOut"]["properties"]["charge_point_id"]
    assert "renamed" in described["description"] and "`url`" in described["description"]


def test_the_openapi_document_describes_the_log_and_validates(fleet, client):
    response = client.get("/api/v1/openapi.json", headers=bearer(fleet["token"]))
    spec = response.json()
    validate(spec)
    paths = spec["paths"]
    page = paths["/api/v1/chargers/{charge_point_id}/log"]["get"]
    assert page["responses"]["200"]["content"]["application/json"]
    assert {"401", "403", "404", "422"} <= set(page["responses"])
    download = paths["/api/v1/chargers/{charge_point_id}/log.jsonl"]["get"]
    assert "application/x-ndjson" in download["responses"]["200"]["content"]
    assert "text/event-stream" in paths["/api/v1/events"]["get"]["responses"]["200"]["content"]
    assert "LogEntryOut" in spec["components"]["schemas"]
    # A CI job deleting its charger at teardown, then fetching the log, got a 404 unwarned.
    delete = paths["/api/v1/chargers/{charge_point_id}"]["delete"]["description"]
    assert "stored message log" in delete and "log.jsonl` first" in delete


# -- no secret ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_an_authorization_key_set_by_the_csms_is_in_no_page_or_download(csms):
    await database_sync_to_async(make_charger)("LOG-SECRET", evses=1, csms_url=csms.url)
    _, token = await database_sync_to_async(user_with_token)("reader", "view_charger")
    service = Simulator(
        RunOptions(tick_seconds=0.1, checkpoint_seconds=0.05, only_ids=["LOG-SECRET"])
    )
    await service.start()
    try:
        charger = loaded(service, "LOG-SECRET")
        await wait_until(lambda: charger.boot is BootState.ACCEPTED, message="boot")
        answer = await csms.call(
            "LOG-SECRET", call.ChangeConfiguration(key="AuthorizationKey", value=SECRET)
        )
        assert answer.status == "Accepted"
        await service.checkpoint()
    finally:
        await service.stop()
    client = AsyncClient()
    page = await client.get(
        "/api/v1/chargers/LOG-SECRET/log", {"limit": 1000}, headers=bearer(token)
    )
    assert page.status_code == 200
    assert SECRET not in page.content.decode()
    change = [i for i in page.json()["items"] if i["action"] == "ChangeConfiguration"]
    assert [json.loads(i["payload"])[3] for i in change if i["direction"] == "in"] == [
        {"key": "AuthorizationKey", "value": "********"}
    ]
    _, lines = await download(token, "/api/v1/chargers/LOG-SECRET/log.jsonl")
    assert lines and SECRET not in json.dumps(lines)
    _, export = await download(token, "/api/v1/log.jsonl", since="2000-01-01T00:00:00Z")
    assert export and SECRET not in json.dumps(export)
