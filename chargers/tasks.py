"""Celery tasks of the chargers app (run by `celery -A chargesim_site worker`)."""

from __future__ import annotations

from celery import shared_task

from chargers.import_jobs import run_import_job


@shared_task(name="chargers.run_import_job", ignore_result=True)
def run_import_job_task(job_id: int) -> None:
    run_import_job(job_id)
