"""Admin import through preview, confirmation and a background job; the fleet generator."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from chargers.models import Charger, ConfigurationKey
from chargers.resources import ChargerResource
from fleet_io import jobs
from fleet_io.file_formats import read_dataset
from fleet_io.import_admin import FleetImportExportAdmin
from fleet_io.models import CHECK_KEPT_SECONDS, ImportJob
from tests.cast import make_charger, make_location, make_user

pytestmark = pytest.mark.django_db

IMPORT_URL = reverse("admin:chargers_charger_import")
CSV_FORMAT = "0"  # the admin's first format: fleet_io.file_formats.CSV


def fleet_csv(count: int, location: str = "Depot") -> bytes:
    rows = [f"CP-{n:03d},{location},AC,22,2*Type2:11" for n in range(1, count + 1)]
    return ("charge_point_id,location,power_type,max_power_kw,evses\n" + "\n".join(rows)).encode()


@pytest.fixture
def jobs_run_inline(monkeypatch):
    """Run dispatched jobs in the test's thread (a thread would not see its transaction)."""
    monkeypatch.setattr(jobs, "dispatch", ImportJob.objects.run_queued)


def upload(client, data: bytes, name: str = "fleet.csv"):
    return client.post(
        IMPORT_URL,
        {"format": CSV_FORMAT, "import_file": SimpleUploadedFile(name, data), "resource": "0"},
    )


def test_a_small_file_is_previewed_then_imported_by_a_background_job(
    admin_client_logged_in, depot, jobs_run_inline, django_capture_on_commit_callbacks
):
    preview = upload(admin_client_logged_in, fleet_csv(3))
    html = preview.content.decode()
    assert preview.status_code == 200
    assert "Confirm import" in html and "CP-002" in html
    assert Charger.objects.count() == 0
    confirm = preview.context["confirm_form"]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged_in.post(
            reverse("admin:chargers_charger_process_import"),
            {**confirm.initial, "resource": "0"},
        )
    job = ImportJob.objects.get()
    assert response.url == job.get_absolute_url()
    page = admin_client_logged_in.get(response.url).content.decode()
    assert "Import finished." in page
    assert '<td id="count-created">3</td>' in page
    assert Charger.objects.count() == 3


def test_a_preview_waits_in_the_cache_not_in_a_file_and_names_nothing_else(
    admin_client_logged_in, depot, jobs_run_inline, django_capture_on_commit_callbacks, tmp_path
):
    """django-import-export's default kept a preview in the server's temp folder: one never
    confirmed stayed there with its AuthorizationKeys, and the confirmation's hidden file
    name could name any file there, which was read into the import and deleted."""
    import tempfile

    canary = Path(tempfile.gettempdir()) / f"canary-{tmp_path.name}.csv"
    canary.write_bytes(fleet_csv(1).replace(b"CP-001", b"CANARY-1"))
    try:
        preview = upload(admin_client_logged_in, fleet_csv(2))
        assert "Confirm import" in preview.content.decode()
        confirm = preview.context["confirm_form"]
        kept_as = confirm.initial["import_file_name"]
        assert not (Path(tempfile.gettempdir()) / kept_as).exists()  # no file written
        forged = {**confirm.initial, "import_file_name": canary.name, "resource": "0"}
        process = reverse("admin:chargers_charger_process_import")
        with django_capture_on_commit_callbacks(execute=True):
            refused = admin_client_logged_in.post(process, forged, follow=True)
        assert "no longer kept" in refused.content.decode()
        assert canary.exists() and not Charger.objects.filter(charge_point_id="CANARY-1").exists()
        # The real one still imports, once.
        with django_capture_on_commit_callbacks(execute=True):
            admin_client_logged_in.post(process, {**confirm.initial, "resource": "0"})
        assert Charger.objects.count() == 2
        with django_capture_on_commit_callbacks(execute=True):
            again = admin_client_logged_in.post(
                process, {**confirm.initial, "resource": "0"}, follow=True
            )
        assert "no longer kept" in again.content.decode()
        assert ImportJob.objects.count() == 1
    finally:
        canary.unlink(missing_ok=True)


def test_a_file_with_bad_rows_lists_them_all_and_offers_no_confirmation(
    admin_client_logged_in, depot
):
    data = fleet_csv(2) + b"\nCP-003,Nowhere,AC,22,Type2:22\nCP-004,Depot,AB,22,Type2:22\n"
    html = upload(admin_client_logged_in, data).content.decode()
    assert "Nothing will be imported: 2 problems" in html
    assert "No location named &#x27;Nowhere&#x27;" in html
    assert "power_type" in html
    assert "Confirm import" not in html


@pytest.mark.parametrize(
    "data",
    [
        fleet_csv(1) + b"\nCP-004,Depot,AB,22,Type2:22\n",
        fleet_csv(1, location="Düsseldorf").decode().encode("latin-1"),
    ],
    ids=["bad-row", "latin-1"],
)
def test_a_refused_upload_is_not_kept_for_a_confirmation_that_cannot_come(
    admin_client_logged_in, depot, data
):
    """QA: the library kept every upload in the preview cache for its hour, a refused one
    (AuthorizationKeys and all) too, though it offers no confirmation."""
    from django.core.cache import cache

    from fleet_io.import_admin import PreviewStorage

    refused = upload(admin_client_logged_in, data)
    assert "Confirm import" not in refused.content.decode()
    kept_as = refused.context["form"].files["import_file"].tmp_storage_name
    assert kept_as
    assert cache.get(PreviewStorage.CACHE_PREFIX + kept_as) is None
    # A preview that can be confirmed is kept for it.
    preview = upload(admin_client_logged_in, fleet_csv(1))
    kept_as = preview.context["confirm_form"].initial["import_file_name"]
    assert cache.get(PreviewStorage.CACHE_PREFIX + kept_as) is not None


def test_a_file_in_the_wrong_encoding_is_refused_with_a_reason(admin_client_logged_in, depot):
    data = fleet_csv(1, location="Düsseldorf").decode().encode("latin-1")
    html = upload(admin_client_logged_in, data).content.decode()
    assert "The file is not UTF-8 (save it as CSV UTF-8)" in html


@pytest.mark.parametrize(
    "data",
    [
        fleet_csv(1, location="Düsseldorf").decode().encode("latin-1"),
        b"charge_point_id,location,power_type,max_power_kw,evses\n",
    ],
    ids=["latin-1", "header-only"],
)
def test_a_file_that_cannot_be_read_keeps_the_list_of_columns_on_the_form(
    admin_client_logged_in, depot, data
):
    """QA: a file refused before its rows were read (wrong encoding, a header alone) left
    "This importer will import the following fields:" followed by nothing, on the page
    where the user sets out to correct the file."""
    response = upload(admin_client_logged_in, data)
    html = response.content.decode()
    assert "Nothing will be imported" not in html and "Confirm import" not in html
    [(_, columns)] = response.context["fields_list"]
    assert columns[:3] == ["charge_point_id", "location", "power_type"]
    assert "<code>charge_point_id, location, power_type," in html


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("deep.json", b"[" * 200_000 + b"]" * 200_000, "The file is not a list of rows"),
        ("broken.xlsx", b"PK\x03\x04broken", "The file is not an Excel workbook"),
        ("utf16.csv", "charge_point_id\nCP-1\n".encode("utf-16"), "it is UTF-16"),
        ("object.json", b'[{"charge_point_id": {"a": 1}}]', "The cell holds an object"),
        ("nan.csv", b"charge_point_id,location,evses\nCP-1,Depot,Type2:nan\n", "is not a number"),
    ],
    ids=["deep-json", "broken-xlsx", "utf-16", "object-cell", "nan"],
)
def test_the_admin_import_form_names_what_is_wrong_with_a_hostile_file(
    admin_client_logged_in, depot, name, data, message
):
    formats = [f().get_extension() for f in FleetImportExportAdmin.formats]
    response = admin_client_logged_in.post(
        IMPORT_URL,
        {
            "format": str(formats.index(name.rsplit(".", 1)[1])),
            "import_file": SimpleUploadedFile(name, data),
            "resource": "0",
        },
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert "Confirm import" not in response.content.decode()
    assert Charger.objects.count() == 0


def test_a_large_file_is_checked_in_the_background_then_imported_on_confirmation(
    admin_client_logged_in, depot, jobs_run_inline, django_capture_on_commit_callbacks, settings
):
    settings.CHARGESIM_IMPORT_PREVIEW_ROWS = 5
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(admin_client_logged_in, fleet_csv(20))
    check = ImportJob.objects.get()
    assert response.url == check.get_absolute_url()
    assert check.dry_run
    assert Charger.objects.count() == 0
    page = admin_client_logged_in.get(check.get_absolute_url()).content.decode()
    assert "The file is ready to import." in page
    assert '<td id="count-created">20</td>' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged_in.post(reverse("imports:job_confirm", args=[check.pk]))
    job = ImportJob.objects.exclude(pk=check.pk).get()
    assert response.url == job.get_absolute_url()
    status = admin_client_logged_in.get(reverse("imports:job_status", args=[job.pk]))
    assert status.json() | {"status": "done"} == {
        "status": "done",
        "finished": True,
        "done": 20,
        "total": 20,
        "created": 20,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
        "problems": 0,
        "note": "",
    }
    assert Charger.objects.count() == 20
    # Once imported, no job keeps the file (it may hold AuthorizationKeys).
    assert [bytes(data) for data in ImportJob.objects.values_list("data", flat=True)] == [b"", b""]

    # Confirmed once only: the check's page says into which import, offers no second
    # confirmation, and a second POST (a stale page, a double click) imports nothing.
    page = admin_client_logged_in.get(check.get_absolute_url()).content.decode()
    assert "Confirm import" not in page
    assert job.get_absolute_url() in page
    with django_capture_on_commit_callbacks(execute=True):
        again = admin_client_logged_in.post(
            reverse("imports:job_confirm", args=[check.pk]), follow=True
        )
    assert again.redirect_chain[-1][0] == check.get_absolute_url()
    assert f"was confirmed already, into import job {job.pk}" in again.content.decode()
    assert ImportJob.objects.count() == 2


def test_a_check_not_confirmed_within_a_day_says_its_file_is_no_longer_kept(
    admin_client_logged_in, depot, jobs_run_inline, django_capture_on_commit_callbacks, settings
):
    settings.CHARGESIM_IMPORT_PREVIEW_ROWS = 5
    with django_capture_on_commit_callbacks(execute=True):
        upload(admin_client_logged_in, fleet_csv(20))
    check = ImportJob.objects.get()
    long_ago = timezone.now() - timedelta(seconds=CHECK_KEPT_SECONDS + 60)
    ImportJob.objects.filter(pk=check.pk).update(finished=long_ago)
    page = admin_client_logged_in.get(check.get_absolute_url()).content.decode()
    assert "The file is ready to import." not in page and "Confirm import" not in page
    assert "was not confirmed within 24 hours" in page
    assert bytes(ImportJob.objects.get(pk=check.pk).data) == b""
    with django_capture_on_commit_callbacks(execute=True):
        again = admin_client_logged_in.post(
            reverse("imports:job_confirm", args=[check.pk]), follow=True
        )
    assert "upload the file again" in again.content.decode()
    assert Charger.objects.count() == 0 and ImportJob.objects.count() == 1


def test_a_job_with_problems_imports_nothing_and_keeps_its_report(depot):
    data = fleet_csv(3) + b"\nCP-004,Nowhere,AC,22,Type2:22\n"
    job = ImportJob.objects.create(
        resource="chargers", file_name="f.csv", file_format="csv", data=data
    )
    ImportJob.objects.run_queued(job.pk)
    job.refresh_from_db()
    assert (job.status, job.created_count, job.failed_count) == ("done", 0, 1)
    assert job.problems == ["Row 5, column location: No location named 'Nowhere'."]
    assert Charger.objects.count() == 0
    assert bytes(job.data) == b""  # nothing more will be done with it


def test_a_job_queued_with_no_celery_worker_says_so_on_its_page(
    admin_client_logged_in, depot, settings
):
    """With Redis set, a job waits for a Celery worker; with none running it stayed
    "queued" for ever, on its page and in the API, without a word of why."""
    from datetime import timedelta

    from django.utils import timezone

    settings.CELERY_TASK_ALWAYS_EAGER = False  # as with REDIS_URL set
    job = ImportJob.objects.create(
        resource="chargers", file_name="f.csv", file_format="csv", data=fleet_csv(2)
    )
    assert job.waiting_note() == ""  # just queued
    ImportJob.objects.filter(pk=job.pk).update(created=timezone.now() - timedelta(seconds=40))
    job.refresh_from_db()
    note = job.waiting_note()
    assert note.startswith("Queued for 40 s: no background worker has taken it.")
    assert "celery -A chargesim_site worker" in note
    status = admin_client_logged_in.get(reverse("imports:job_status", args=[job.pk])).json()
    assert status["note"] == note
    page = admin_client_logged_in.get(reverse("imports:job", args=[job.pk])).content.decode()
    assert "no background worker has taken it" in page
    ImportJob.objects.run_queued(job.pk)
    job.refresh_from_db()
    assert job.waiting_note() == ""  # taken


def test_a_check_without_problems_keeps_its_file_for_the_import(depot):
    job = ImportJob.objects.create(
        resource="chargers", file_name="f.csv", file_format="csv", data=fleet_csv(2), dry_run=True
    )
    ImportJob.objects.run_queued(job.pk)
    job.refresh_from_db()
    assert job.finished_ok
    assert bytes(job.data) == fleet_csv(2)


@pytest.mark.parametrize(
    ("file_format", "data", "problem"),
    [
        ("json", b"[" * 200_000 + b"]" * 200_000, "File: The file is not a list of rows"),
        ("json", b'[{"charge_point_id": "CP-1", "vendor": {"a": 1}}]', "Row 1, column vendor:"),
        ("csv", b"charge_point_id,location,evses\nCP-1,Depot,Type2:nan\n", "Row 2, column evses:"),
        ("csv", "charge_point_id\nCP-1\n".encode("utf-16"), "File: The file is not UTF-8"),
        ("xlsx", b"PK\x03\x04broken", "File: The file is not an Excel workbook"),
    ],
    ids=["deep-json", "object-cell", "nan", "utf-16", "broken-xlsx"],
)
def test_a_job_reports_a_hostile_file_as_a_problem_not_a_failure(depot, file_format, data, problem):
    job = ImportJob.objects.create(
        resource="chargers", file_name=f"f.{file_format}", file_format=file_format, data=data
    )
    ImportJob.objects.run_queued(job.pk)
    job.refresh_from_db()
    assert job.status == "done"
    assert any(p.startswith(problem) for p in job.problems), job.problems
    assert (Charger.objects.count(), ConfigurationKey.objects.count()) == (0, 0)


def test_a_job_runs_once_even_if_dispatched_twice(depot):
    job = ImportJob.objects.create(
        resource="chargers", file_name="f.csv", file_format="csv", data=fleet_csv(2)
    )
    ImportJob.objects.run_queued(job.pk)
    Charger.objects.all().delete()
    ImportJob.objects.run_queued(job.pk)
    assert Charger.objects.count() == 0


def test_an_import_reports_its_progress_up_to_the_last_row(depot):
    seen: list[tuple[int, int]] = []
    ChargerResource(progress=lambda done, total: seen.append((done, total))).import_data(
        read_dataset(fleet_csv(250), "csv")
    )
    assert seen[-1] == (250, 250)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert len(seen) > 10


def test_a_job_read_running_just_before_it_ended_says_how_far_it_got(depot):
    """A poll reads the job's row, then its progress; a job that ended in between has no
    progress left, and the poll said "0 / 300 rows" between "231" and "300 / 300" (seen
    on PostgreSQL)."""
    job = ImportJob.objects.create(
        resource="chargers", file_name="f.csv", file_format="csv", data=fleet_csv(3)
    )
    assert ImportJob.objects.claim(job.pk)
    read_while_running = ImportJob.objects.get(pk=job.pk)
    ImportJob.objects.run_queued(job.pk)  # claimed already: runs nothing
    read_while_running.run()  # as its worker does; the row read before it stays as read
    assert read_while_running.status == ImportJob.Status.RUNNING
    assert read_while_running.progress() == (3, 3)


def run_until_row_60(monkeypatch, job: ImportJob, stop: type[BaseException]) -> None:
    """Run `job` on a 100-row file until the import raises `stop` at row 60. SystemExit is
    a worker stopped mid-import: it escapes the job, which stays "running" until a reader
    finds it lost (its heartbeat ended LOST_SECONDS ago); RuntimeError, an import that
    raised."""
    from datetime import timedelta

    from django.utils import timezone

    from fleet_io import models

    report = models._report_progress

    def stopping_at_row_60(key: str, done: int, total: int) -> None:
        report(key, done, total)
        if done == 60:
            raise stop("stopped at row 60")

    monkeypatch.setattr(models, "_report_progress", stopping_at_row_60)
    if stop is SystemExit:
        with pytest.raises(SystemExit):
            ImportJob.objects.run_queued(job.pk)
        long_ago = timezone.now() - timedelta(seconds=models.LOST_SECONDS + 1)
        ImportJob.objects.filter(pk=job.pk).update(started=long_ago)
    else:
        ImportJob.objects.run_queued(job.pk)


@pytest.mark.parametrize("stop", [SystemExit, RuntimeError], ids=["killed", "raised"])
def test_a_job_that_stopped_midway_says_how_far_it_got(
    admin_client_logged_in, depot, monkeypatch, stop
):
    """A job killed at row 60 of 100 and marked failed said "100 / 100 rows", as if it had
    read the whole file."""
    job = ImportJob.objects.create(
        resource="chargers", file_name="f.csv", file_format="csv", data=fleet_csv(100)
    )
    run_until_row_60(monkeypatch, job, stop)
    state = admin_client_logged_in.get(reverse("imports:job_status", args=[job.pk])).json()
    assert (state["status"], state["done"], state["total"]) == ("failed", 60, 100)
    page = admin_client_logged_in.get(reverse("imports:job", args=[job.pk])).content.decode()
    assert "60 / 100 rows" in page
    assert Charger.objects.count() == 0


@pytest.mark.parametrize("name", ["job", "job_status"])
def test_job_pages_are_behind_staff_login(client, depot, name):
    job = ImportJob.objects.create(
        resource="chargers", file_name="f.csv", file_format="csv", data=b""
    )
    response = client.get(reverse(f"imports:{name}", args=[job.pk]))
    assert response.status_code == 302
    assert "/admin/login/" in response.url


def test_the_generator_creates_a_numbered_fleet_like_the_selected_charger(
    admin_client_logged_in, depot
):
    template = make_charger("TPL-1", location=depot, evses=2, power_type="DC", max_power_kw=150)
    ConfigurationKey.objects.filter(charger=template, key="HeartbeatInterval").update(value="42")
    elsewhere = make_location("Hub")
    changelist = reverse("admin:chargers_charger_changelist")
    form = admin_client_logged_in.post(
        changelist, {"action": "generate_fleet", "_selected_action": [template.pk]}
    )
    assert "Create a fleet like TPL-1" in form.content.decode()
    response = admin_client_logged_in.post(
        changelist,
        {
            "action": "generate_fleet",
            "_selected_action": [template.pk],
            "generate": "1",
            "first_id": "CP-0001",
            "count": "500",
            "location": elsewhere.pk,
        },
    )
    assert response.status_code == 302
    fleet = Charger.objects.filter(location=elsewhere)
    assert fleet.count() == 500
    first, last = fleet.first(), fleet.last()
    assert first is not None and last is not None
    assert {first.charge_point_id, last.charge_point_id} == {"CP-0001", "CP-0500"}
    last = fleet.get(charge_point_id="CP-0500")
    assert (last.power_type, last.max_power_kw, last.evses.count()) == ("DC", 150, 2)
    config = dict(last.configuration.values_list("key", "value"))
    assert (config["HeartbeatInterval"], config["NumberOfConnectors"]) == ("42", "2")


def test_the_generator_refuses_ids_that_exist(admin_client_logged_in, depot):
    template = make_charger("CP-0003", location=depot)
    response = admin_client_logged_in.post(
        reverse("admin:chargers_charger_changelist"),
        {
            "action": "generate_fleet",
            "_selected_action": [template.pk],
            "generate": "1",
            "first_id": "CP-0001",
            "count": "5",
            "location": depot.pk,
        },
    )
    assert "overlaps existing chargers: CP-0003" in response.content.decode()
    assert Charger.objects.count() == 1


# -- who may see and confirm a job ---------------------------------------------------------


def staff_user(django_user_model: object, name: str, *codenames: str) -> User:
    # django_user_model only keeps the call sites below as they were.
    return make_user(name, *codenames, is_staff=True)


CHARGER_IMPORT = [
    "add_charger",
    "change_charger",
    "add_evse",
    "change_evse",
    "delete_evse",
    "add_configurationkey",
    "change_configurationkey",
]


def checked_file(owner, data: bytes) -> ImportJob:
    """A dry run of `data` that `owner` started and that found no problems."""
    job = ImportJob.objects.create(
        resource="chargers",
        file_name="f.csv",
        file_format="csv",
        data=data,
        dry_run=True,
        created_by=owner,
    )
    ImportJob.objects.run_queued(job.pk)
    return job


@pytest.mark.parametrize("name", ["job", "job_status", "job_confirm"])
def test_another_staff_user_gets_not_found_for_someones_job(
    client, django_user_model, depot, jobs_run_inline, name
):
    owner = staff_user(django_user_model, "owner", *CHARGER_IMPORT)
    other = staff_user(django_user_model, "other", *CHARGER_IMPORT)
    job = checked_file(owner, fleet_csv(2))
    client.force_login(other)
    url = reverse(f"imports:{name}", args=[job.pk])
    response = client.post(url) if name == "job_confirm" else client.get(url)
    assert response.status_code == 404
    assert Charger.objects.count() == 0
    assert ImportJob.objects.count() == 1
    client.force_login(owner)
    response = client.post(url) if name == "job_confirm" else client.get(url)
    assert response.status_code in (200, 302)


def test_a_superuser_sees_every_job(admin_client_logged_in, django_user_model, depot):
    owner = staff_user(django_user_model, "owner", *CHARGER_IMPORT)
    job = checked_file(owner, fleet_csv(2))
    assert admin_client_logged_in.get(job.get_absolute_url()).status_code == 200


def test_a_staff_user_without_the_add_permission_cannot_confirm_their_own_check(
    client, django_user_model, depot, jobs_run_inline, django_capture_on_commit_callbacks
):
    viewer = staff_user(django_user_model, "viewer", "view_charger", "change_charger")
    job = checked_file(viewer, fleet_csv(2))
    client.force_login(viewer)
    page = client.get(job.get_absolute_url()).content.decode()
    assert "The file is ready to import." in page
    assert "Confirm import" not in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("imports:job_confirm", args=[job.pk]))
    assert response.status_code == 403
    assert Charger.objects.count() == 0
    assert ImportJob.objects.count() == 1


def test_the_admin_import_needs_the_permissions_of_everything_the_import_writes(
    client, django_user_model, depot, jobs_run_inline, django_capture_on_commit_callbacks
):
    no_evses = [c for c in CHARGER_IMPORT if not c.endswith("_evse")]
    half = staff_user(django_user_model, "half", "view_charger", *no_evses)
    client.force_login(half)
    assert upload(client, fleet_csv(2)).status_code == 403
    changelist = client.get(reverse("admin:chargers_charger_changelist")).content.decode()
    assert IMPORT_URL not in changelist

    full = staff_user(django_user_model, "full", "view_charger", *CHARGER_IMPORT)
    client.force_login(full)
    preview = upload(client, fleet_csv(2))
    assert preview.status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:chargers_charger_process_import"),
            {**preview.context["confirm_form"].initial, "resource": "0"},
        )
    assert Charger.objects.count() == 2
    assert ImportJob.objects.get().created_by == full


def test_the_job_list_in_the_admin_shows_a_staff_user_only_their_own_jobs(
    client, django_user_model, depot
):
    owner = staff_user(django_user_model, "owner", "view_importjob")
    other = staff_user(django_user_model, "other", "view_importjob")
    mine = checked_file(owner, fleet_csv(1))
    theirs = checked_file(other, fleet_csv(1))
    client.force_login(owner)
    listing = client.get(reverse("admin:fleet_io_importjob_changelist")).content.decode()
    assert mine.get_absolute_url() in listing
    assert theirs.get_absolute_url() not in listing
    page = client.get(reverse("admin:fleet_io_importjob_change", args=[theirs.pk]))
    assert page.status_code == 302  # the admin's "does not exist" redirect


@pytest.mark.django_db(transaction=True)
async def test_a_reimported_export_leaves_the_running_chargers_it_does_not_change_alone(csms):
    """QA: importing an unchanged export told every running charger of its row; only the
    rows that change something may reach the workers (here: a firmware version, which
    reboots that charger)."""
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer
    from django.db import connections

    from simulator.core.charge_point import BootState
    from simulator.runtime.lifecycle import RunOptions, Simulator
    from tests.engine import loaded, wait_until

    def make_fleet() -> None:
        location = make_location("Depot")
        for cp_id in ("CP-KEEP", "CP-EDIT"):
            make_charger(cp_id, location=location, csms_url=csms.url)

    def export_and_import() -> ImportJob:
        dataset = ChargerResource().export()
        rows = [dict(row) for row in dataset.dict]
        for row in rows:
            if row["charge_point_id"] == "CP-EDIT":
                row["firmware_version"] = "2.0.0"
        edited = type(dataset)(headers=dataset.headers)
        for row in rows:
            edited.append([row[h] for h in dataset.headers])
        job = ImportJob.objects.create(
            resource="chargers",
            file_name="fleet.json",
            file_format="json",
            data=edited.json.encode(),
        )
        try:
            ImportJob.objects.run_queued(job.pk)
            job.refresh_from_db()
        finally:
            connections.close_all()  # this worker thread's, as a job's own thread does
        return job

    def stamps() -> dict[str, object]:
        return dict(Charger.objects.values_list("charge_point_id", "updated"))

    def boots(cp_id: str) -> int:
        return sum(
            1
            for e in csms.log
            if e.cp_id == cp_id and e.action == "BootNotification" and e.direction == "in"
        )

    await sync_to_async(make_fleet)()
    service = Simulator(RunOptions(tick_seconds=0.1, checkpoint_seconds=0.1, reconnect_cap=0.5))
    await service.start(channels=True)
    try:
        for cp_id in ("CP-KEEP", "CP-EDIT"):
            charger = loaded(service, cp_id)
            await wait_until(lambda c=charger: c.boot is BootState.ACCEPTED, message=cp_id)
        before = await sync_to_async(stamps)()
        job = await sync_to_async(export_and_import, thread_sensitive=False)()
        assert (job.created_count, job.updated_count, job.unchanged_count) == (0, 1, 1)
        # The worker answered for the changed charger only, and did reboot it.
        assert job.running_chargers is not None
        told = [c for outcome in job.running_chargers["outcomes"] for c in outcome["chargers"]]
        assert told == ["CP-EDIT"], job.running_chargers
        await csms.wait_for(
            "CP-EDIT",
            "BootNotification",
            predicate=lambda e: e.payload.get("firmwareVersion") == "2.0.0",
        )
        assert (boots("CP-KEEP"), boots("CP-EDIT")) == (1, 2)
        after = await sync_to_async(stamps)()
        assert after["CP-KEEP"] == before["CP-KEEP"] and after["CP-EDIT"] != before["CP-EDIT"]
    finally:
        await service.stop()
        await get_channel_layer().flush()
