"""Import jobs through the API: upload a file, follow the job, read its problems by row and
column, confirm a check or cancel a job; the admin's import machinery (fleet_io) runs it."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from chargers.models import Charger
from fleet_io import file_formats
from fleet_io.models import ImportJob
from locations.models import Location
from tests.api_client import TokenClient, user_with_token
from tests.cast import make_charger, make_location
from tests.process import ManagePy, free_port, run_manage, wait_for_port
from tests.test_import_chargers import exported_rows
from tests.test_import_jobs import (  # noqa: F401
    CHARGER_IMPORT,
    fleet_csv,
    jobs_run_inline,
    run_until_row_60,
)
from tests.test_import_jobs import upload as admin_upload

pytestmark = pytest.mark.django_db

V1 = "/api/v1"
IMPORTS = f"{V1}/imports"


@pytest.fixture
def importer() -> TokenClient:
    _, token = user_with_token("importer", *CHARGER_IMPORT, "add_location", "change_location")
    return TokenClient(token)


def upload(api: TokenClient, data: bytes, name: str = "fleet.csv", **fields: Any) -> Any:
    return api.upload(
        IMPORTS,
        file=SimpleUploadedFile(name, data),
        resource=fields.pop("resource", "chargers"),
        **fields,
    )


def test_every_import_endpoint_refuses_anonymous_callers(client, depot):
    job = ImportJob.objects.create(
        resource="chargers", file_name="f.csv", file_format="csv", data=b""
    )
    for method, path in [
        ("post", IMPORTS),
        ("get", IMPORTS),
        ("get", f"{IMPORTS}/{job.pk}"),
        ("get", f"{IMPORTS}/{job.pk}/errors"),
        ("post", f"{IMPORTS}/{job.pk}/confirm"),
        ("delete", f"{IMPORTS}/{job.pk}"),
    ]:
        response = getattr(client, method)(path)
        assert response.status_code == 401, (method, path)
        assert set(response.json()) == {"detail", "errors"}


def test_an_upload_needs_the_permissions_of_everything_the_import_writes(depot):
    _, token = user_with_token("half", "add_charger", "change_charger")
    response = upload(TokenClient(token), fleet_csv(1))
    assert response.status_code == 403
    assert "'chargers.delete_evse'" in response.json()["detail"]
    assert not ImportJob.objects.exists()


@pytest.mark.usefixtures("jobs_run_inline")
def test_a_checked_file_is_imported_on_confirmation(
    importer, depot, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(importer, fleet_csv(3))
    assert response.status_code == 202, response.content
    check = response.json()
    assert (check["dry_run"], check["resource"], check["format"]) == (True, "chargers", "csv")
    followed = importer.get(f"{IMPORTS}/{check['id']}").json()
    assert followed | {"queued_at": None, "started_at": None, "finished_at": None} == {
        **check,
        "status": "done",
        "finished": True,
        "ok": True,
        "confirmable": True,
        "done": 3,
        "total": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
        "problems": 0,
        "queued_at": None,
        "started_at": None,
        "finished_at": None,
    }
    assert not Charger.objects.exists()  # a check writes nothing

    with django_capture_on_commit_callbacks(execute=True):
        confirmed = importer.post(f"{IMPORTS}/{check['id']}/confirm")
    assert confirmed.status_code == 202, confirmed.content
    job = importer.get(f"{IMPORTS}/{confirmed.json()['id']}").json()
    assert (job["dry_run"], job["status"], job["created"]) == (False, "done", 3)
    assert sorted(Charger.objects.values_list("charge_point_id", flat=True)) == [
        "CP-001",
        "CP-002",
        "CP-003",
    ]
    listed = importer.get(IMPORTS).json()
    assert [j["id"] for j in listed["items"]] == [job["id"], check["id"]]  # newest first


@pytest.mark.usefixtures("jobs_run_inline")
def test_problems_are_read_by_row_and_column_in_pages(
    importer, depot, django_capture_on_commit_callbacks
):
    data = (
        fleet_csv(2)
        + b"\nCP-003,Nowhere,AC,22,Type2:22\nCP-004,Depot,AB,22,Type2:22\nCP-001,Depot,AC,22,Type2:22\n"
    )
    with django_capture_on_commit_callbacks(execute=True):
        job = upload(importer, data).json()
    state = importer.get(f"{IMPORTS}/{job['id']}").json()
    assert (state["ok"], state["problems"], state["failed"], state["created"]) == (False, 3, 3, 0)
    problems = importer.get(f"{IMPORTS}/{job['id']}/errors").json()
    assert problems["count"] == 3
    assert problems["items"][0] == {
        "row": 4,  # as a spreadsheet shows the file: its header is row 1
        "column": "location",
        "message": "No location named 'Nowhere'.",
    }
    assert (problems["items"][1]["row"], problems["items"][1]["column"]) == (5, "power_type")
    assert problems["items"][2]["row"] == 6
    assert "already on row 2" in problems["items"][2]["message"]
    second = importer.get(f"{IMPORTS}/{job['id']}/errors", limit=1, offset=1).json()
    assert second["items"] == [problems["items"][1]]

    refused = importer.post(f"{IMPORTS}/{job['id']}/confirm")
    assert refused.status_code == 409
    assert "has problems" in refused.json()["detail"]
    assert not Charger.objects.exists()


@pytest.mark.usefixtures("jobs_run_inline")
def test_a_file_problem_has_no_row(importer, depot, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = upload(importer, "charge_point_id\nCP-1\n".encode("utf-16")).json()
    problems = importer.get(f"{IMPORTS}/{job['id']}/errors").json()["items"]
    assert problems[0]["row"] is None and problems[0]["column"] is None
    assert problems[0]["message"].startswith("The file is not UTF-8")


@pytest.mark.usefixtures("jobs_run_inline")
def test_json_and_xlsx_files_and_an_import_without_a_check(
    importer, depot, django_capture_on_commit_callbacks
):
    json_rows = b'[{"name": "Hub", "city": "Bonn", "country": "DE", "time_zone": "Europe/Berlin"}]'
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["name", "city", "grid_limit_kw"])
    sheet.append(["Garage", "Köln", 150])
    xlsx = io.BytesIO()
    book.save(xlsx)
    with django_capture_on_commit_callbacks(execute=True):
        from_json = upload(importer, json_rows, "sites.json", resource="locations", dry_run="false")
        from_xlsx = upload(
            importer, xlsx.getvalue(), "sites", resource="locations", format="xlsx", dry_run="false"
        )
    assert from_json.json()["format"] == "json"
    assert from_xlsx.json()["format"] == "xlsx"
    for job in (from_json.json(), from_xlsx.json()):
        assert importer.get(f"{IMPORTS}/{job['id']}").json()["created"] == 1
    assert Location.objects.get(name="Garage").grid_limit_kw == 150
    assert Location.objects.get(name="Hub").city == "Bonn"


@pytest.mark.usefixtures("jobs_run_inline")
def test_the_preview_the_check_and_the_import_count_unchanged_rows_alike(
    importer, depot, admin_client_logged_in, django_capture_on_commit_callbacks
):
    """QA: a re-imported export said "updated" of every row. The admin's preview (a row by
    row diff) and the background jobs (counts only) must say the same of the same file."""
    chargers = [make_charger(f"CP-{n}", location=depot) for n in range(1, 4)]
    data = exported_rows((1, "vendor", "Acme"))
    before = {c.pk: c.updated for c in chargers}
    preview = admin_upload(admin_client_logged_in, data)
    totals = preview.context["result"].totals
    assert (totals["new"], totals["update"], totals["skip"]) == (0, 1, 2)
    with django_capture_on_commit_callbacks(execute=True):
        check = upload(importer, data).json()
    checked = importer.get(f"{IMPORTS}/{check['id']}").json()
    assert (checked["created"], checked["updated"], checked["unchanged"]) == (0, 1, 2)
    with django_capture_on_commit_callbacks(execute=True):
        confirmed = importer.post(f"{IMPORTS}/{check['id']}/confirm").json()
    job = importer.get(f"{IMPORTS}/{confirmed['id']}").json()
    assert (job["status"], job["created"], job["updated"], job["unchanged"]) == ("done", 0, 1, 2)
    after = dict(Charger.objects.values_list("pk", "updated"))
    assert [pk for pk in before if after[pk] != before[pk]] == [chargers[1].pk]


def workbook(*rows: list[Any]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.mark.usefixtures("jobs_run_inline")
@pytest.mark.parametrize(
    ("name", "data", "where"),
    [
        ("fleet.csv", b"charge_point_id,location\r\n\r\n", "it has only its header line"),
        ("fleet.json", b"[ ]", "its list is empty ([])"),
        (
            "fleet.xlsx",
            workbook(["charge_point_id", "location"]),
            "its sheet has only its header row",
        ),
    ],
    ids=["csv", "json", "xlsx"],
)
def test_a_file_without_rows_is_the_same_problem_in_every_format(
    importer, depot, django_capture_on_commit_callbacks, name, data, where
):
    """QA: a header-only CSV was a check that found nothing wrong ("ready to import", 0
    rows), an empty JSON list a missing charge_point_id column."""
    with django_capture_on_commit_callbacks(execute=True):
        job = upload(importer, data, name).json()
    state = importer.get(f"{IMPORTS}/{job['id']}").json()
    assert (state["status"], state["ok"], state["problems"]) == ("done", False, 1)
    problems = importer.get(f"{IMPORTS}/{job['id']}/errors").json()["items"]
    assert problems == [
        {"row": None, "column": None, "message": f"The file has no rows to import: {where}."}
    ]


def test_a_bad_upload_names_the_field(importer, depot, monkeypatch):
    no_format = upload(importer, fleet_csv(1), "fleet.txt")
    assert no_format.status_code == 422
    assert [e["field"] for e in no_format.json()["errors"]] == ["format"]
    unknown = upload(importer, fleet_csv(1), resource="transactions")
    assert [e["field"] for e in unknown.json()["errors"]] == ["resource"]
    missing = importer.upload(IMPORTS, resource="chargers")
    assert [e["field"] for e in missing.json()["errors"]] == ["file"]
    assert not ImportJob.objects.exists()


def test_a_file_over_the_upload_limit_is_a_413_worded_as_any_body_over_a_limit(
    importer, depot, monkeypatch
):
    """QA: a file over MAX_FILE_BYTES was a 422, as if its content were wrong, where a body
    over Django's limit is a 413: both are 413, in one wording."""
    monkeypatch.setattr(file_formats, "MAX_FILE_BYTES", 10)
    too_big = upload(importer, fleet_csv(1))
    assert too_big.status_code == 413, too_big.content
    text = "The file is larger than the 10 bytes accepted (MAX_FILE_BYTES): split it into smaller files."
    assert too_big.json() == {
        "detail": text,
        "errors": [{"field": "file", "message": text, "row": None}],
    }
    assert not ImportJob.objects.exists()
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = importer.post("/api/v1/locations", {"name": "x" * (limit + 1)})
    assert body.status_code == 413, body.content
    assert body.json()["detail"] == f"The request body is larger than the {limit:,} bytes accepted."


def test_a_form_field_the_upload_does_not_take_is_refused_not_ignored(importer, depot):
    """QA: `dryrun=false` (for `dry_run`) was ignored, and what was meant as an import was
    queued as a check (202), its rows never written."""
    typo = upload(importer, fleet_csv(1), dryrun="false")
    assert typo.status_code == 422, typo.content
    [error] = typo.json()["errors"]
    assert error["field"] == "dryrun"
    assert "did you mean 'dry_run'?" in error["message"]
    other_file = importer.upload(
        IMPORTS,
        file=SimpleUploadedFile("a.csv", fleet_csv(1)),
        resource="chargers",
        attachment=SimpleUploadedFile("b.csv", b"x"),
    )
    assert [e["field"] for e in other_file.json()["errors"]] == ["attachment"]
    assert not ImportJob.objects.exists()


def test_someone_elses_job_is_not_found_but_a_superuser_sees_it(importer, depot):
    job = ImportJob.objects.create(
        resource="chargers", file_name="f.csv", file_format="csv", data=b"x"
    )  # nobody's
    assert importer.get(f"{IMPORTS}/{job.pk}").status_code == 404
    assert importer.delete(f"{IMPORTS}/{job.pk}").status_code == 404
    assert importer.get(IMPORTS).json()["count"] == 0
    _, token = user_with_token("boss", is_superuser=True)
    assert TokenClient(token).get(f"{IMPORTS}/{job.pk}").status_code == 200


def test_a_queued_or_finished_job_is_cancelled_but_a_running_one_is_not(importer, depot):
    queued = upload(importer, fleet_csv(1)).json()  # not committed: it stays queued
    assert importer.delete(f"{IMPORTS}/{queued['id']}").status_code == 204
    assert not ImportJob.objects.filter(pk=queued["id"]).exists()
    ImportJob.objects.run_queued(queued["id"])  # a worker that comes late finds nothing
    assert not Charger.objects.exists()

    running = upload(importer, fleet_csv(1)).json()
    assert ImportJob.objects.claim(running["id"])
    refused = importer.delete(f"{IMPORTS}/{running['id']}")
    assert refused.status_code == 409
    assert "running" in refused.json()["detail"]

    ImportJob.objects.filter(pk=running["id"]).update(status="done")
    assert importer.delete(f"{IMPORTS}/{running['id']}").status_code == 204


@pytest.mark.usefixtures("jobs_run_inline")
def test_a_check_is_confirmed_once_and_gives_its_file_to_the_import(
    importer, depot, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        check = upload(importer, fleet_csv(1)).json()
    with django_capture_on_commit_callbacks(execute=True):
        first = importer.post(f"{IMPORTS}/{check['id']}/confirm")
    assert first.status_code == 202, first.content
    assert Charger.objects.filter(charge_point_id="CP-001").update(vendor="Changed since") == 1
    # A second confirmation would import the file again and undo the change: refused.
    with django_capture_on_commit_callbacks(execute=True):
        again = importer.post(f"{IMPORTS}/{check['id']}/confirm")
    assert again.status_code == 409, again.content
    assert f"into import job {first.json()['id']}" in again.json()["detail"]
    assert Charger.objects.get(charge_point_id="CP-001").vendor == "Changed since"
    assert ImportJob.objects.count() == 2
    followed = importer.get(f"{IMPORTS}/{check['id']}").json()
    assert followed["confirmed_as"] == first.json()["id"]
    # The check holds the file no longer (it may hold AuthorizationKeys).
    assert bytes(ImportJob.objects.get(pk=check["id"]).data) == b""
    # Its import deleted, the check stays confirmed.
    assert importer.delete(f"{IMPORTS}/{first.json()['id']}").status_code == 204
    assert importer.post(f"{IMPORTS}/{check['id']}/confirm").status_code == 409
    assert importer.get(f"{IMPORTS}/{check['id']}").json()["confirmed_as"] is None


@pytest.mark.usefixtures("jobs_run_inline")
def test_a_check_not_confirmed_within_a_day_lets_its_file_go(
    importer, depot, django_capture_on_commit_callbacks
):
    """A check nobody confirmed kept its file, and every AuthorizationKey in it, for good."""
    from datetime import timedelta

    from django.utils import timezone

    from fleet_io.models import CHECK_KEPT_SECONDS

    with django_capture_on_commit_callbacks(execute=True):
        check = upload(importer, fleet_csv(1)).json()
        fresh = upload(importer, fleet_csv(1)).json()
    assert importer.get(f"{IMPORTS}/{check['id']}").json()["confirmable"] is True
    long_ago = timezone.now() - timedelta(seconds=CHECK_KEPT_SECONDS + 60)
    ImportJob.objects.filter(pk=check["id"]).update(finished=long_ago)
    followed = importer.get(f"{IMPORTS}/{check['id']}").json()  # any read lets it go
    assert followed["confirmable"] is False and followed["ok"] is True
    assert bytes(ImportJob.objects.get(pk=check["id"]).data) == b""
    assert bytes(ImportJob.objects.get(pk=fresh["id"]).data) != b""  # a day not yet passed
    refused = importer.post(f"{IMPORTS}/{check['id']}/confirm")
    assert refused.status_code == 409, refused.content
    assert "not confirmed within 24 hours" in refused.json()["detail"]
    assert "upload the file again" in refused.json()["detail"]
    assert not Charger.objects.filter(charge_point_id="CP-001").exists()


def test_a_job_running_when_asked_is_not_deleted_though_it_ends_meanwhile(
    importer, depot, monkeypatch
):
    """On SQLite the DELETE waits for the import's write lock, so the job may be done by the
    time it runs: still 409, as it was running when asked (not a 204 for an import that went
    through, with its record deleted)."""
    from api.routers import imports as router_module

    job = ImportJob.objects.create(
        resource="chargers", file_name="f.csv", file_format="csv", data=b"", status="done"
    )
    seen_running = ImportJob.objects.get(pk=job.pk)
    seen_running.status = ImportJob.Status.RUNNING  # as read before the import committed
    monkeypatch.setattr(router_module, "_own", lambda request, job_id: seen_running)
    refused = importer.delete(f"{IMPORTS}/{job.pk}")
    assert refused.status_code == 409, refused.content
    assert ImportJob.objects.filter(pk=job.pk).exists()


@pytest.mark.usefixtures("jobs_run_inline")
def test_an_import_cannot_be_confirmed_again(importer, depot, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = upload(importer, fleet_csv(1), dry_run="false").json()
    refused = importer.post(f"{IMPORTS}/{job['id']}/confirm")
    assert refused.status_code == 409
    assert "not a check" in refused.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_an_embedded_job_runs_in_a_thread_of_the_web_process_and_is_followed():
    """No stand-ins: the job is dispatched after commit to a thread, as `runsimulator` runs it."""
    make_location("Depot")
    _, token = user_with_token("importer", *CHARGER_IMPORT)
    api = TokenClient(token)
    job = upload(api, fleet_csv(300), dry_run="false").json()
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = api.get(f"{IMPORTS}/{job['id']}").json()
        seen.append((state["status"], state["done"]))
        if state["finished"]:
            break
        time.sleep(0.05)
    assert state["status"] == "done", state
    assert (state["created"], state["done"], state["total"]) == (300, 300, 300)
    assert Charger.objects.count() == 300
    assert [done for _, done in seen] == sorted(done for _, done in seen)


def test_a_job_whose_process_was_lost_is_failed_and_can_be_deleted(importer, depot):
    """A Celery worker killed mid-import left its job "running" for good: GET said so
    forever and DELETE was 409. A running job that stopped saying it is alive (in the
    cache, every BEAT_SECONDS) for LOST_SECONDS is failed by the next reader."""
    from datetime import timedelta

    from django.utils import timezone

    from fleet_io.models import LOST_SECONDS

    job = upload(importer, fleet_csv(1)).json()
    assert ImportJob.objects.claim(job["id"])
    url = f"{IMPORTS}/{job['id']}"
    assert importer.get(url).json()["status"] == "running"  # just started: not lost
    long_ago = timezone.now() - timedelta(seconds=LOST_SECONDS + 1)
    ImportJob.objects.filter(pk=job["id"]).update(started=long_ago)
    lost = importer.get(url).json()
    assert lost["status"] == "failed"
    assert [p["message"] for p in importer.get(f"{url}/errors").json()["items"]] == [
        "The check stopped: the process running it ended before it finished (killed or "
        "lost). Upload the file again to check it."
    ]
    assert ImportJob.objects.get(pk=job["id"]).data == b""  # the file may hold secrets
    assert importer.delete(url).status_code == 204
    assert not Charger.objects.exists()


def test_a_job_killed_midway_says_how_far_it_got(importer, depot, monkeypatch):
    job = upload(importer, fleet_csv(100)).json()
    run_until_row_60(monkeypatch, ImportJob.objects.get(pk=job["id"]), SystemExit)
    state = importer.get(f"{IMPORTS}/{job['id']}").json()
    assert (state["status"], state["done"], state["total"]) == ("failed", 60, 100)
    assert (state["finished"], state["ok"]) == (True, False)


@pytest.mark.django_db(transaction=True)
def test_a_job_that_runs_longer_than_the_lost_limit_is_not_failed(depot, monkeypatch):
    """Its heartbeat keeps it alive however long the import takes."""
    import threading

    from django.db import connections

    from fleet_io import models

    monkeypatch.setattr(models, "BEAT_SECONDS", 0.05)
    monkeypatch.setattr(models, "LOST_SECONDS", 0.3)
    job = ImportJob.objects.create(
        resource="chargers", file_name="f.csv", file_format="csv", data=fleet_csv(2)
    )
    assert ImportJob.objects.claim(job.pk)
    importing, release = threading.Event(), threading.Event()
    slow_import = models.ImportJob._run

    def run_slowly(self: ImportJob) -> None:
        importing.set()
        release.wait(10)
        slow_import(self)

    monkeypatch.setattr(models.ImportJob, "_run", run_slowly)

    def run() -> None:
        try:
            ImportJob.objects.get(pk=job.pk).run()
        finally:
            connections.close_all()  # this thread's

    runner = threading.Thread(target=run)
    runner.start()
    try:
        assert importing.wait(10)
        time.sleep(0.6)  # twice the lost limit, in the middle of the import
        assert ImportJob.objects.mark_lost() == 0
    finally:
        release.set()
        runner.join(10)
    assert ImportJob.objects.get(pk=job.pk).status == "done"


@pytest.mark.django_db(transaction=True)
def test_a_job_lost_after_its_commit_is_done_not_failed_as_having_imported_nothing(monkeypatch):
    """After its commit an import waits for the workers' answers; a process lost then
    (a worker killed, a web process stopped) left the job "running", and the next reader
    failed it: "nothing was imported", its 5 chargers imported. The job's outcome is now
    committed with its rows."""
    from datetime import timedelta

    from django.utils import timezone

    from fleet_io import fleet_changes, models
    from fleet_io.models import LOST_SECONDS

    make_location("Depot")
    user, token = user_with_token("importer", *CHARGER_IMPORT)
    job = ImportJob.objects.create(
        resource="chargers",
        file_name="f.csv",
        file_format="csv",
        data=fleet_csv(5),
        created_by=user,
    )

    def process_ends(batch: Any) -> Any:  # as the commit tells the workers
        raise SystemExit("the worker process was stopped")

    monkeypatch.setattr(fleet_changes, "send", process_ends)
    with pytest.raises(SystemExit):
        ImportJob.objects.run_queued(job.pk)
    assert Charger.objects.count() == 5  # committed before the process ended
    long_ago = timezone.now() - timedelta(seconds=LOST_SECONDS + 1)
    ImportJob.objects.filter(pk=job.pk).update(started=long_ago)
    state = TokenClient(token).get(f"{IMPORTS}/{job.pk}").json()
    assert (state["status"], state["finished"], state["ok"]) == ("done", True, True)
    assert (state["created"], state["done"], state["total"], state["problems"]) == (5, 5, 5, 0)
    assert state["running_chargers"] == {"outcomes": [], "notes": [models.UNANSWERED_NOTE]}
    assert ImportJob.objects.get(pk=job.pk).data == b""  # imported: its file let go


EMBEDDED_SETUP = """
from api.models import ApiToken
from tests.cast import make_location, make_user
make_location("Depot")
user = make_user("importer", {permissions})
print(ApiToken.objects.issue(user, "import test")[1])
"""

AGE_THE_JOB = """
from datetime import timedelta
from django.utils import timezone
from fleet_io.job_cache import job_cache
from fleet_io.models import LOST_SECONDS, ImportJob
job = ImportJob.objects.get(pk={pk})
print(job.status)
# What LOST_SECONDS after the kill brings: its last heartbeat expired, its start long ago.
job_cache().delete(job.alive_key)
ImportJob.objects.filter(pk=job.pk).update(started=timezone.now() - timedelta(seconds=LOST_SECONDS + 1))
"""


def embedded_site(var_dir: Path) -> tuple[Any, str]:
    port = free_port()
    site = ManagePy(var_dir, "runsimulator", "--no-migrate", "--port", str(port))
    try:
        wait_for_port(port, 60.0, site.proc)
    except BaseException:
        site.stop()
        raise
    return site, f"127.0.0.1:{port}"


@pytest.mark.slow
@pytest.mark.django_db  # the test's own database stays empty: the processes have their own
def test_an_embedded_import_killed_with_its_process_says_how_far_it_got(tmp_path):
    """QA: `runsimulator` killed mid-import (the job runs in a thread of it) and started
    again: the job said `done: 0`, its progress gone with the process's memory."""
    from tests.test_api_scaled_out import http, multipart

    assert run_manage(tmp_path, "migrate", "--verbosity", "0").returncode == 0
    permissions = [*CHARGER_IMPORT, "view_charger"]
    setup = EMBEDDED_SETUP.format(permissions=", ".join(repr(p) for p in permissions))
    made = run_manage(tmp_path, "shell", "-c", setup)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    rows = 5000
    site, host = embedded_site(tmp_path)
    try:
        body, kind = multipart(
            {"resource": "chargers", "dry_run": "false"}, "f.csv", fleet_csv(rows)
        )
        job = http(host, token, "POST", IMPORTS, body, kind)
        deadline = time.monotonic() + 120
        while (state := http(host, token, "GET", f"{IMPORTS}/{job['id']}"))["done"] == 0:
            assert not state["finished"] and time.monotonic() < deadline, state
            time.sleep(0.05)
        assert not state["finished"] and state["done"] < rows, state  # killed midway
        site.signal(signal.SIGKILL)
        site.wait()
    finally:
        site.stop()
    aged = run_manage(tmp_path, "shell", "-c", AGE_THE_JOB.format(pk=job["id"]))
    assert aged.returncode == 0, aged.stderr
    assert aged.stdout.split()[-1] == "running"  # as the killed process left it
    site, host = embedded_site(tmp_path)
    try:
        after = http(host, token, "GET", f"{IMPORTS}/{job['id']}")
        problems = http(host, token, "GET", f"{IMPORTS}/{job['id']}/errors")["items"]
        chargers = http(host, token, "GET", f"{V1}/chargers?limit=1")["count"]
    finally:
        site.stop()
    assert (after["status"], after["finished"], after["total"]) == ("failed", True, rows)
    assert state["done"] <= after["done"] < rows, (state, after)
    assert [p["message"] for p in problems] == [
        f"The import stopped at row {after['done']:,} of {rows:,}: the process running it "
        "ended before it finished (killed or lost); nothing was imported, as an import is "
        "all or nothing. Upload the file again."
    ]
    assert chargers == 0  # all or nothing


@pytest.fixture
def redis_away(settings):
    """Scaled out with Redis down: Celery's broker and the cache cannot be reached."""
    from chargesim_site.celery import app

    away = f"redis://127.0.0.1:{free_port()}/0"
    saved = app.conf.broker_url, app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": away}
    }
    app.conf.broker_url, app.conf.task_always_eager = away, False
    app._pool = app.amqp._producer_pool = None  # connect anew, to the broker set here
    yield
    app.conf.broker_url, app.conf.task_always_eager = saved
    app._pool = app.amqp._producer_pool = None


@pytest.mark.django_db(transaction=True)
def test_with_redis_away_an_upload_fails_saying_so_and_the_jobs_still_answer(
    importer, depot, redis_away
):
    """QA (scaled out, Redis away): POST /imports answered 500 with kombu's traceback in the
    web log, and left a job "queued" that nothing would ever run; GET /imports answered 500
    too (every job's progress is read from the cache, Redis), also once it was back for as
    long as such a job was listed."""
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.utils import timezone

    response = upload(importer, fleet_csv(3), dry_run="false")
    assert response.status_code == 202, response.content
    job = response.json()
    assert (job["status"], job["finished"], job["ok"]) == ("failed", True, False)
    problem = importer.get(f"{IMPORTS}/{job['id']}/errors").json()["items"][0]["message"]
    assert problem.startswith(
        "The job could not be handed to a background worker: the broker (Redis) cannot be "
        "reached (OperationalError: "
    ), problem
    assert problem.endswith("Upload the file again once Redis is back.")
    assert Charger.objects.count() == 0
    # One running on a Celery worker meanwhile, its heartbeat out of reach: not lost.
    running = ImportJob.objects.create(
        resource="chargers",
        file_name="f.csv",
        file_format="csv",
        data=fleet_csv(3),
        status=ImportJob.Status.RUNNING,
        started=timezone.now() - timedelta(minutes=5),
        total_rows=3,
        created_by=User.objects.get(username="importer"),
    )
    listed = importer.get(IMPORTS)
    assert listed.status_code == 200, listed.content
    statuses = {item["id"]: (item["status"], item["done"]) for item in listed.json()["items"]}
    assert statuses == {job["id"]: ("failed", 0), running.pk: ("running", 0)}
