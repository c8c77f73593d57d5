"""Starting an import job: on Celery when there is a broker, in a thread when there is not.

Without REDIS_URL (tasks run eagerly) an eager task would hold up the request that starts
the job for the whole import, so the job runs in a thread of the web process instead.
"""

from __future__ import annotations

from functools import partial

from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from fleet_io.from_thread import start_thread
from fleet_io.models import ImportJob, NotConfirmable
from fleet_io.tasks import run_import_job_task
from simulator.contract.failures import brief


def start(job: ImportJob) -> None:
    """Run the job once the transaction that created it commits."""
    transaction.on_commit(partial(dispatch, job.pk))


def confirm(check: ImportJob, user_pk: int | None) -> ImportJob:
    """Make a check an import of its file: a new job, started after commit.

    Once only, whoever asks and however often: the check gives its file to the import (it
    may hold AuthorizationKeys, and a second import of it would undo whatever changed since).
    Raises `NotConfirmable` with the reason otherwise."""
    if not check.dry_run:
        raise NotConfirmable(
            f"Import job {check.pk} is an import, not a check: nothing to confirm."
        )
    if check.confirmed is not None:
        raise NotConfirmable(check.confirmed_text())
    if check.file_let_go:
        raise NotConfirmable(check.let_go_text())
    if not check.finished_ok:
        state = "has problems" if check.problem_count else f"is {check.status}"
        raise NotConfirmable(
            f"The check {state}: only a check that finished with no problems can be confirmed."
        )
    with transaction.atomic():
        data = ImportJob.objects.filter(pk=check.pk).values_list("data", flat=True).get()
        job = ImportJob.objects.create(
            resource=check.resource,
            file_name=check.file_name,
            file_format=check.file_format,
            data=data,
            dry_run=False,
            created_by_id=user_pk,
        )
        # Conditional: of two confirmations at once, one takes the check.
        taken = ImportJob.objects.filter(pk=check.pk, confirmed__isnull=True).update(
            data=b"", confirmed_as=job, confirmed=timezone.now()
        )
        if not taken:  # raised inside the transaction: the new job is rolled back
            check.refresh_from_db(fields=["confirmed", "confirmed_as"])
            raise NotConfirmable(check.confirmed_text())
        start(job)
    job.refresh_from_db()  # failed already if no background worker could be given it
    return job


def dispatch(pk: int) -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # Its fleet change goes out on the loop of the request that started it, which in
        # embedded mode is the simulator's (`start_thread`).
        start_thread(partial(_run_in_thread, pk), name=f"import-job-{pk}")
    else:
        try:
            run_import_job_task.delay(pk)
        except OperationalError as exc:  # kombu's: the broker (Redis) cannot be reached
            ImportJob.objects.not_sent(pk, brief(exc))


def _run_in_thread(pk: int) -> None:
    close_old_connections()
    try:
        ImportJob.objects.run_queued(pk)
    finally:
        connections.close_all()  # this thread's connections only
