"""Starting an import job: on Celery when there is a broker, in a thread when there is not.

Without REDIS_URL (tasks run eagerly) an eager task would hold up the request that starts
the job for the whole import, so the job runs in a thread of the web process instead.
"""

from __future__ import annotations

import threading
from functools import partial

from django.conf import settings
from django.db import close_old_connections, connections, transaction

from fleet_io.models import ImportJob
from fleet_io.tasks import run_import_job_task


def start(job: ImportJob) -> None:
    """Run the job once the transaction that created it commits."""
    transaction.on_commit(partial(dispatch, job.pk))


def dispatch(pk: int) -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        threading.Thread(target=_run_in_thread, args=(pk,), name=f"import-job-{pk}").start()
    else:
        run_import_job_task.delay(pk)


def _run_in_thread(pk: int) -> None:
    close_old_connections()
    try:
        ImportJob.objects.run_queued(pk)
    finally:
        connections.close_all()  # this thread's connections only
