"""Import jobs: a fleet file (CSV, JSON or XLSX) uploaded, checked, followed and confirmed.

The same machinery as the admin's import (fleet_io): the file becomes an `ImportJob` that
runs in the background (a thread of the web process in embedded mode, a Celery worker when
scaled out: `fleet_io.jobs`), all or nothing, with the same per-row problems. By default an
upload is a check (a dry run, as the admin's preview); confirming a check that found no
problems imports the file, as the admin's "Confirm import" does. A job is its owner's (or a
superuser's): anyone else gets a 404, as if it did not exist.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePath
from typing import Any, Literal

from django.db import transaction
from django.http import Http404, HttpRequest
from ninja import Field, File, Form, Router, Schema, UploadedFile
from ninja.pagination import paginate
from ninja.responses import Status

from api.auth import caller
from api.errors import (
    READ_ERRORS,
    WRITE_ERRORS,
    ApiError,
    ErrorBody,
    ErrorItem,
    too_large_text,
)
from api.pagination import Paged
from api.query_params import did_you_mean, path_id
from fleet_io import file_formats, jobs, registry
from fleet_io.file_formats import FORMATS_BY_NAME, MAX_FILE_BYTES
from fleet_io.models import ImportJob, NotConfirmable
from fleet_io.resource import Problem

router = Router(tags=["import jobs"])

CONFLICT = {**READ_ERRORS, 409: ErrorBody}
Resource = Literal["locations", "vehicles", "chargers"]
Format = Literal["csv", "json", "xlsx"]
# ImportJob.Status's values (a test holds them equal).
JobStatus = Literal["queued", "running", "done", "failed"]


class ImportUpload(Schema):
    resource: Resource = Field(description="What the file holds (docs/import-formats.md).")
    format: Format | None = Field(
        None, description="The file's format; empty: from the file name's extension."
    )
    dry_run: bool = Field(
        True,
        description="true (the default): check the file and count what would change, "
        "writing nothing; confirm the check to import it. false: import at once (still all "
        "or nothing).",
    )


class OutcomeCountOut(Schema):
    outcome: str = Field(
        description="What the running chargers did, as a worker says it: 'reboots now (2 "
        "connectors)', 'applied live', 'loaded, connecting', 'takes effect when its "
        "session ends'..."
    )
    count: int = Field(description="How many chargers did so.")
    chargers: list[str] = Field(
        description="The charge point ids of the first of them (up to 5, in order)."
    )


class RunningChargersOut(Schema):
    outcomes: list[OutcomeCountOut] = Field(description="By outcome, the most frequent first.")
    notes: list[str] = Field(
        description="What else the workers said: none running (the rows are saved and taken "
        "when one starts), some still applying the change, some not answering."
    )


class ImportJobOut(Schema):
    id: int
    resource: str
    file_name: str
    format: str = Field(alias="file_format")
    dry_run: bool = Field(description="A check: it writes nothing; confirm it to import.")
    status: JobStatus = Field(description="queued, running, done or failed.")
    finished: bool
    ok: bool = Field(description="Finished with no problems (a check can then be confirmed).")
    confirmable: bool = Field(
        description="A check that can be confirmed now: finished with no problems, not "
        "confirmed yet, and its file still kept (for 24 hours after the check)."
    )
    done: int = Field(description="Rows read so far (a failed job: when it stopped).")
    total: int = Field(description="Rows in the file (once read).")
    created: int = Field(alias="created_count", description="Rows that create (or created).")
    updated: int = Field(alias="updated_count", description="Rows that update (or updated).")
    unchanged: int = Field(
        alias="unchanged_count",
        description="Rows naming a stored object that they leave as it is: not written, and "
        "no running charger is told (a re-imported export is all unchanged).",
    )
    failed: int = Field(alias="failed_count", description="Rows with problems.")
    problems: int = Field(alias="problem_count", description="Problems found (all rows).")
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    note: str = Field(
        description="Queued for a while with Redis set: that no background (Celery) worker "
        "has taken it, and how to start one; empty otherwise."
    )
    confirmed_as: int | None = Field(
        alias="confirmed_as_id",
        description="A confirmed check: the id of the import it became (null otherwise, or "
        "once that job is deleted).",
    )
    running_chargers: RunningChargersOut | None = Field(
        description="An import that finished: what the simulator workers did with its rows "
        "(the running chargers reboot, reconnect, apply the change live, or wait for their "
        "session to end), counted by outcome. Null for a check, a failed import, or an "
        "import whose commit told no worker anything; an import whose process ended while "
        "it waited for the answers (its rows imported) has only a note saying so."
    )

    # Resolvers, not aliases: "finished" and "created" name other fields here.
    @staticmethod
    def resolve_queued_at(job: ImportJob) -> datetime:
        return job.created

    @staticmethod
    def resolve_started_at(job: ImportJob) -> datetime | None:
        return job.started

    @staticmethod
    def resolve_finished_at(job: ImportJob) -> datetime | None:
        return job.finished

    @staticmethod
    def resolve_note(job: ImportJob) -> str:
        return job.waiting_note()

    @staticmethod
    def resolve_confirmable(job: ImportJob) -> bool:
        return job.confirmable

    @staticmethod
    def resolve_finished(job: ImportJob) -> bool:
        return job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED)

    @staticmethod
    def resolve_ok(job: ImportJob) -> bool:
        return job.finished_ok

    @staticmethod
    def resolve_done(job: ImportJob) -> int:
        return job.progress()[0]

    @staticmethod
    def resolve_total(job: ImportJob) -> int:
        return job.progress()[1]


class ImportProblemOut(Schema):
    row: int | None = Field(
        description="The row as a spreadsheet shows the file (the header is row 1, blank "
        "rows keep their numbers; a JSON file's Nth object is row N), or null for the file "
        "as a whole."
    )
    column: str | None = Field(description="The column, or null for the row as a whole.")
    message: str


def _own(request: HttpRequest, job_id: int) -> ImportJob:
    job = ImportJob.objects.visible_to(caller(request).user).defer("data").filter(pk=job_id)
    found = job.first()
    if found is None:
        raise Http404(f"No import job {job_id}.")
    return found


def _may_import(request: HttpRequest, resource: str) -> None:
    user = caller(request).user
    if not registry.may_import(user, resource):
        needed = ", ".join(f"'{p}'" for p in registry.get(resource).permissions)
        raise ApiError(403, f"Importing {resource} needs the permissions {needed}.")


def _format(options: ImportUpload, name: str) -> str:
    if options.format:
        return options.format
    suffix = PurePath(name).suffix.lower().lstrip(".")
    if suffix in FORMATS_BY_NAME:
        return suffix
    raise ApiError(
        422,
        "The request is not valid.",
        [ErrorItem(field="format", message=f"Say the format of {name!r}: csv, json or xlsx.")],
    )


# The upload's form fields and its file's, as a caller spells them.
_FORM_FIELDS = frozenset(ImportUpload.model_fields)
_FILE_FIELDS = frozenset({"file"})


def _refuse_unknown_fields(request: HttpRequest) -> None:
    """A form field the upload does not take is refused, not ignored: `dryrun=false`
    (for `dry_run`) made a check of what was meant as an import, answered 202."""
    errors = [
        ErrorItem(field=name, message=f"Not a field of this upload: {did_you_mean(name, known)}")
        for names, known in ((request.POST, _FORM_FIELDS), (request.FILES, _FILE_FIELDS))
        for name in names
        if name not in known
    ]
    if errors:
        raise ApiError(422, "The request is not valid.", errors)


def _queue(request: HttpRequest, **fields: Any) -> ImportJob:
    with transaction.atomic():
        job = ImportJob.objects.create(created_by_id=caller(request).user.pk, **fields)
        jobs.start(job)  # after commit: in a thread (embedded) or on Celery (scaled out)
    job.refresh_from_db()  # failed already if no background worker could be given it
    return job


@router.post(
    "/imports",
    response={202: ImportJobOut, **WRITE_ERRORS},
    summary="Upload a fleet file",
    description="multipart/form-data with the file (`file`) and what it holds (`resource`). "
    "The job runs in the background: follow it with GET /imports/{id}. At most "
    f"{MAX_FILE_BYTES // 1024 // 1024} MiB. Needs the permissions the admin's import of "
    "the resource needs (add and change of every model it writes).",
)
def upload_import(
    request: HttpRequest, file: File[UploadedFile], options: Form[ImportUpload]
) -> Any:
    _refuse_unknown_fields(request)
    _may_import(request, options.resource)
    name = file.name or "upload"
    file_format = _format(options, name)
    limit = file_formats.MAX_FILE_BYTES
    if (file.size or 0) > limit:
        # A 413 as for any body over a limit (it was a 422, as if the content were wrong).
        text = too_large_text(limit, "file", " (MAX_FILE_BYTES): split it into smaller files")
        raise ApiError(413, text, [ErrorItem(field="file", message=text)])
    job = _queue(
        request,
        resource=options.resource,
        file_name=name[:255],
        file_format=file_format,
        data=b"".join(file.chunks()),
        dry_run=options.dry_run,
    )
    return Status(202, job)


@router.get(
    "/imports",
    response={200: list[ImportJobOut], **READ_ERRORS},
    summary="List my import jobs",
    description="Newest first, paged (`limit`, `offset`); a superuser sees everyone's.",
)
@paginate(Paged)
def list_imports(request: HttpRequest) -> Any:
    return ImportJob.objects.visible_to(caller(request).user).defer("data")


@router.get(
    "/imports/{job_id}",
    response={200: ImportJobOut, **READ_ERRORS},
    summary="Follow an import job",
    description="Its status and progress (rows done of total), then its counts. Poll it "
    "until `finished`.",
)
def get_import(request: HttpRequest, job_id: int = path_id()) -> Any:
    return _own(request, job_id)


@router.get(
    "/imports/{job_id}/errors",
    response={200: list[ImportProblemOut], **READ_ERRORS},
    summary="Read an import job's problems",
    description="Each with its row and column, as the admin's import lists them; paged "
    "(`limit`, `offset`). The first 1,000 are kept (`problems` in the job counts all).",
)
@paginate(Paged)
def import_errors(request: HttpRequest, job_id: int = path_id()) -> Any:
    job = _own(request, job_id)
    return [Problem.parse(text) for text in job.problems]


@router.post(
    "/imports/{job_id}/confirm",
    response={202: ImportJobOut, **CONFLICT},
    summary="Confirm a check: import the file",
    description="A check (`dry_run`) that finished with no problems becomes an import of the "
    "same file (a new job, answered here), once: a check confirmed already is refused (409), "
    "and `confirmed_as` names the import it became. Needs the import permissions.",
)
def confirm_import(request: HttpRequest, job_id: int = path_id()) -> Any:
    checked = _own(request, job_id)
    _may_import(request, checked.resource)
    try:
        job = jobs.confirm(checked, caller(request).user.pk)
    except NotConfirmable as exc:
        raise ApiError(409, str(exc)) from None
    return Status(202, job)


@router.delete(
    "/imports/{job_id}",
    response={204: None, **CONFLICT},
    summary="Cancel or discard an import job",
    description="A queued job is cancelled before it starts; a finished one (e.g. a check "
    "you will not confirm) is discarded with its stored file. A running job cannot be "
    "stopped (409): an import is all or nothing, so wait for it.",
)
def delete_import(request: HttpRequest, job_id: int = path_id()) -> Any:
    job = _own(request, job_id)
    # Running when asked: refused, even if it ends while the DELETE waits for the database
    # (SQLite's writer lock is the import's until it commits): a 204 would say the import
    # was cancelled when it went through, and would delete the record saying so.
    if job.status == ImportJob.Status.RUNNING:
        raise ApiError(409, f"Import job {job_id} is running; it cannot be stopped.")
    # Not while running: a worker may claim a queued job at any moment, hence the status
    # in the DELETE itself.
    deleted, _ = (
        ImportJob.objects.filter(pk=job.pk).exclude(status=ImportJob.Status.RUNNING).delete()
    )
    if not deleted:
        raise ApiError(409, f"Import job {job_id} is running; it cannot be stopped.")
    return Status(204, None)
