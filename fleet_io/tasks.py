"""Celery tasks of fleet import and export (run by `celery -A chargesim_site worker`)."""

from __future__ import annotations

from celery import shared_task

from fleet_io.models import ImportJob


# The name it had in the chargers app: jobs queued before an upgrade still find it.
@shared_task(name="chargers.run_import_job", ignore_result=True)
def run_import_job_task(job_id: int) -> None:
    ImportJob.objects.run_queued(job_id)
