"""Import jobs: a fleet file imported (or checked) in the background, with progress.

A confirmed admin import, and the check of a file too large to preview row by row,
becomes an `ImportJob`. The job keeps the file's bytes in the database so that a Celery
worker on another machine can read it. Without REDIS_URL (tasks run eagerly) the job runs
in a thread of the web process instead, so the request that starts it returns at once.
Progress goes to the cache (the import's own transaction would hide it in the database);
the counts and problems are written when the job ends.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, connections, models, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

RESOURCES = {
    "locations": "locations.resources.LocationResource",
    "vehicles": "vehicles.resources.VehicleModelResource",
    "chargers": "chargers.resources.ChargerResource",
}
# What starting or confirming an import of each resource needs: the permissions of every
# model it writes. An import creates and updates rows; the charger import also reshapes
# each charger's EVSEs (deleting connectors a row no longer lists) and sets configuration
# keys (chargers.fleet.create_chargers / update_chargers).
WRITE_PERMISSIONS = {
    "locations": ("locations.add_location", "locations.change_location"),
    "vehicles": ("vehicles.add_vehiclemodel", "vehicles.change_vehiclemodel"),
    "chargers": (
        "chargers.add_charger",
        "chargers.change_charger",
        "chargers.add_evse",
        "chargers.change_evse",
        "chargers.delete_evse",
        "chargers.add_configurationkey",
        "chargers.change_configurationkey",
    ),
}
MAX_STORED_PROBLEMS = 1000


def may_import(user: Any, resource: str) -> bool:
    """Whether `user` may start or confirm an import of `resource` (a RESOURCES key)."""
    return user.has_perms(WRITE_PERMISSIONS[resource])


class ImportJobManager(models.Manager["ImportJob"]):
    def visible_to(self, user: Any) -> models.QuerySet[ImportJob]:
        """A job holds its file's rows: only the user who started it (or a superuser) sees
        it, whatever their other permissions."""
        return self.all() if user.is_superuser else self.filter(created_by_id=user.pk)

    def claim(self, pk: int) -> bool:
        """Mark a queued job running; False when another worker got it first."""
        claimed = self.filter(pk=pk, status=ImportJob.Status.QUEUED).update(
            status=ImportJob.Status.RUNNING, started=timezone.now()
        )
        return claimed == 1


class ImportJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    resource = models.CharField(max_length=20, choices=[(key, key) for key in RESOURCES])
    file_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=10)
    data = models.BinaryField()
    dry_run = models.BooleanField(
        default=False, help_text="Check the file and count what would change; write nothing."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    problem_count = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    objects = ImportJobManager()

    class Meta:
        app_label = "chargers"
        ordering = ["-created"]

    def __str__(self) -> str:
        kind = "check" if self.dry_run else "import"
        return f"{self.resource} {kind} of {self.file_name} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("chargers_import:job", args=[self.pk])

    @property
    def finished_ok(self) -> bool:
        return self.status == self.Status.DONE and not self.problem_count

    @property
    def progress_key(self) -> str:
        return f"chargesim:import-job:{self.pk}"

    def progress(self) -> tuple[int, int]:
        """(rows done, rows in total) while running; the whole file once finished."""
        if self.status in (self.Status.DONE, self.Status.FAILED):
            return self.total_rows, self.total_rows
        done, total = cache.get(self.progress_key, (0, self.total_rows))
        return done, total

    def start(self) -> None:
        """Run the job once the transaction that created it commits."""
        transaction.on_commit(partial(dispatch, self.pk))

    def run(self) -> None:
        from chargers.file_formats import FileProblem, read_dataset

        try:
            dataset = read_dataset(bytes(self.data), self.file_format)
            ImportJob.objects.filter(pk=self.pk).update(total_rows=len(dataset))
            resource = import_string(RESOURCES[self.resource])(
                progress=partial(_report_progress, self.progress_key), fast=True
            )
            result = resource.import_data(dataset, dry_run=self.dry_run)
        except FileProblem as exc:
            self._finish(self.Status.DONE, total=0, problems=[f"File: {exc}"])
            return
        except Exception as exc:
            logger.exception("Import job %s failed", self.pk)
            self._finish(self.Status.FAILED, total=0, problems=[f"The import stopped: {exc}"])
            return
        problems = [str(problem) for problem in result.problems()]
        self._finish(
            self.Status.DONE,
            total=len(dataset),
            problems=problems,
            created=0 if problems else result.totals["new"],
            updated=0 if problems else result.totals["update"],
            failed=result.failed_rows(),
        )

    def _finish(
        self,
        status: str,
        *,
        total: int,
        problems: list[str],
        created: int = 0,
        updated: int = 0,
        failed: int = 0,
    ) -> None:
        ImportJob.objects.filter(pk=self.pk).update(
            status=status,
            total_rows=total,
            created_count=created,
            updated_count=updated,
            failed_count=failed,
            problem_count=len(problems),
            problems=problems[:MAX_STORED_PROBLEMS],
            finished=timezone.now(),
        )
        cache.delete(self.progress_key)


def _report_progress(key: str, done: int, total: int) -> None:
    cache.set(key, (done, total), timeout=3600)


def run_import_job(pk: int) -> None:
    """Run a queued job (in a Celery worker or a thread); do nothing if already claimed."""
    if not ImportJob.objects.claim(pk):
        return
    ImportJob.objects.get(pk=pk).run()


def dispatch(pk: int) -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # Embedded mode: an eager task would block this request for the whole import.
        threading.Thread(target=_run_in_thread, args=(pk,), name=f"import-job-{pk}").start()
    else:
        from chargers.tasks import run_import_job_task

        run_import_job_task.delay(pk)


def _run_in_thread(pk: int) -> None:
    close_old_connections()
    try:
        run_import_job(pk)
    finally:
        connections.close_all()  # this thread's connections only
