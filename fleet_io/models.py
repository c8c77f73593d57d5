"""Import jobs: a fleet file imported (or checked) in the background, with progress.

A confirmed admin import, and the check of a file too large to preview row by row,
becomes an `ImportJob`. The job keeps the file's bytes in the database so that a Celery
worker on another machine can read it (`fleet_io.jobs` starts it). Progress goes to a
cache other processes read (`fleet_io.job_cache`: the import's own transaction would hide
it in the database); the counts and problems are written when the job ends, in the
import's own transaction: a job whose process is lost imported nothing, and one whose
rows were committed says so however it ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone

from fleet_io import registry
from fleet_io.file_formats import FileProblem, read_dataset
from fleet_io.fleet_changes import Applied, reporting, summarise, summary_lines
from fleet_io.job_cache import cache_errors, job_cache

logger = logging.getLogger(__name__)

MAX_STORED_PROBLEMS = 1000
# A running job says it is alive in the cache every BEAT_SECONDS (the cache, not its row:
# the import's own transaction holds SQLite's write lock). A running job that has not said
# so for LOST_SECONDS lost its process (a Celery worker killed, a web process stopped) and
# is failed: it stayed "running" for good, and could not be deleted.
BEAT_SECONDS = 10.0
LOST_SECONDS = 30.0
# A job queued this long with Redis (Celery) says that no worker may be running.
QUEUED_NOTE_SECONDS = 15.0
# A check that found no problem keeps its file this long for its confirmation, then lets
# it go: a file may hold AuthorizationKeys, and a check nobody confirms kept it for good.
CHECK_KEPT_SECONDS = 24 * 3600.0
# What a job found lost after its rows were committed (while it waited for the workers'
# answers) says of the running chargers.
UNANSWERED_NOTE = (
    "The process running the import ended before the simulator workers' answers were read: "
    "the rows are imported, and a running worker takes them at its next look at the database."
)


def lost_message(dry_run: bool, done: int, total: int) -> str:
    """What a job whose process was lost before its outcome was committed says."""
    where = f" at row {done:,} of {total:,}" if total else ""
    if dry_run:
        return (
            f"The check stopped{where}: the process running it ended before it finished "
            "(killed or lost). Upload the file again to check it."
        )
    return (
        f"The import stopped{where}: the process running it ended before it finished "
        "(killed or lost); nothing was imported, as an import is all or nothing. Upload "
        "the file again."
    )


def not_sent_message(why: str) -> str:
    """What a job that no background worker could be given says."""
    return (
        "The job could not be handed to a background worker: the broker (Redis) cannot be "
        f"reached ({why}). Nothing was imported. Upload the file again once Redis is back."
    )


class NotConfirmable(Exception):
    """Why a job cannot be confirmed (not a check, confirmed already, has problems)."""


class ImportJobManager(models.Manager["ImportJob"]):
    def visible_to(self, user: Any) -> models.QuerySet[ImportJob]:
        """A job holds its file's rows: only the user who started it (or a superuser) sees
        it, whatever their other permissions. Every reader of jobs comes here, so the jobs
        whose process was lost are failed here first (`mark_lost`), and the files of the
        checks that were never confirmed in time let go (`forget_unconfirmed`)."""
        self.mark_lost()
        self.forget_unconfirmed()
        return self.all() if user.is_superuser else self.filter(created_by_id=user.pk)

    def mark_lost(self) -> int:
        """End the running jobs whose process stopped saying it is alive; how many. One
        that had committed its outcome is done (its rows are imported); any other failed,
        having imported nothing."""
        cutoff = timezone.now() - timedelta(seconds=LOST_SECONDS)
        # Read first: every poll of a job comes here, and a write would take SQLite's lock.
        running = list(self.filter(status=ImportJob.Status.RUNNING, started__lt=cutoff))
        if not running:
            return 0
        try:
            alive = job_cache().get_many([job.alive_key for job in running])
        except cache_errors():
            return 0  # the cache (Redis) away: no heartbeat can be read, none is missing
        lost = [job for job in running if job.alive_key not in alive]
        ended = 0
        for job in lost:
            still_running = self.filter(pk=job.pk, status=ImportJob.Status.RUNNING)
            if job.committed is not None:
                logger.warning("Import job %s lost its process after its commit", job.pk)
                told = not job.dry_run and not job.problem_count
                ended += still_running.update(
                    status=ImportJob.Status.DONE,
                    running_chargers=(
                        {"outcomes": [], "notes": [UNANSWERED_NOTE]} if told else None
                    ),
                    finished=timezone.now(),
                )
            else:
                logger.warning("Import job %s lost its process; marked failed", job.pk)
                # The last progress it reported outlives its process (`job_cache`).
                done, total = job.progress()
                ended += still_running.update(
                    status=ImportJob.Status.FAILED,
                    data=b"",  # it may hold AuthorizationKeys, and nothing will read it now
                    problems=[lost_message(job.dry_run, done, total)],
                    problem_count=1,
                    done_rows=done,
                    finished=timezone.now(),
                )
            job_cache().delete(job.progress_key)
        return ended

    def forget_unconfirmed(self) -> int:
        """Let go the files of the checks not confirmed within CHECK_KEPT_SECONDS of their
        end (they can no longer be confirmed: `ImportJob.confirmable`)."""
        cutoff = timezone.now() - timedelta(seconds=CHECK_KEPT_SECONDS)
        # Read first, as `mark_lost`: every poll comes here, a write would take SQLite's lock.
        stale = self.filter(
            dry_run=True, confirmed__isnull=True, finished__lt=cutoff, status=ImportJob.Status.DONE
        ).exclude(data=b"")
        pks = list(stale.values_list("pk", flat=True))
        if not pks:
            return 0
        return self.filter(pk__in=pks).update(data=b"")

    def claim(self, pk: int) -> bool:
        """Mark a queued job running; False when another worker got it first."""
        claimed = self.filter(pk=pk, status=ImportJob.Status.QUEUED).update(
            status=ImportJob.Status.RUNNING, started=timezone.now()
        )
        return claimed == 1

    def run_queued(self, pk: int) -> None:
        """Run a queued job (in a Celery worker or a thread); do nothing if already claimed."""
        if self.claim(pk):
            self.get(pk=pk).run()

    def not_sent(self, pk: int, why: str) -> int:
        """Fail a queued job that could not be handed to a background worker (the broker,
        Redis, could not be reached): nothing would ever run it, and it stayed queued for
        good behind a 500."""
        logger.warning("Import job %s could not be queued for a background worker: %s", pk, why)
        return self.filter(pk=pk, status=ImportJob.Status.QUEUED).update(
            status=ImportJob.Status.FAILED,
            data=b"",  # it may hold AuthorizationKeys, and nothing will read it now
            problems=[not_sent_message(why)],
            problem_count=1,
            finished=timezone.now(),
        )


class ImportJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    resource = models.CharField(max_length=20)  # the name of a registry.Importable
    file_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=10)
    data = models.BinaryField()
    dry_run = models.BooleanField(
        default=False, help_text="Check the file and count what would change; write nothing."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total_rows = models.PositiveIntegerField(default=0)
    # How far a failed job got (rows read when it stopped): a job killed at row 1,200 of
    # 3,000 showed "3000 / 3000 rows", as if it had gone through the whole file.
    done_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    # Rows naming a stored object that they would leave as it is: not written, and no
    # running charger told (a re-imported export said "updated" of every row).
    unchanged_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    problem_count = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    # When its outcome (counts, problems) was committed, in the import's own transaction
    # and so with its rows; it is then still running while it waits for the workers'
    # answers, and a job lost in that wait is done, not failed (`mark_lost`).
    committed = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    # A check is confirmed once: the import it became (null if that job was deleted since),
    # and when. Its file went with the confirmation.
    confirmed_as = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    confirmed = models.DateTimeField(null=True, blank=True)
    # What the simulator workers did with the imported rows (`fleet_changes.FleetSummary`:
    # counts by outcome, the first chargers of each); null for a check or a failed import.
    running_chargers = models.JSONField(null=True, blank=True, default=None)

    objects = ImportJobManager()

    class Meta:
        # The table of the app that held the model first: moved without moving data.
        db_table = "chargers_importjob"
        ordering = ["-created"]

    def __str__(self) -> str:
        kind = "check" if self.dry_run else "import"
        return f"{self.resource} {kind} of {self.file_name} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("imports:job", args=[self.pk])

    def waiting_note(self, now: datetime | None = None) -> str:
        """What to say of a job queued for a while: with Redis, jobs wait for a Celery worker,
        and one queued with none running waited for ever without a word."""
        if self.status != self.Status.QUEUED or settings.CELERY_TASK_ALWAYS_EAGER:
            return ""
        waited = ((now or timezone.now()) - self.created).total_seconds()
        if waited < QUEUED_NOTE_SECONDS:
            return ""
        return (
            f"Queued for {waited:.0f} s: no background worker has taken it. Is a Celery "
            "worker running (celery -A chargesim_site worker)?"
        )

    @property
    def finished_ok(self) -> bool:
        return self.status == self.Status.DONE and not self.problem_count

    @property
    def confirmable(self) -> bool:
        """A check that found no problem, has not been confirmed yet and still keeps its
        file (CHECK_KEPT_SECONDS)."""
        return self.dry_run and self.finished_ok and self.confirmed is None and not self.file_let_go

    @property
    def file_let_go(self) -> bool:
        """A check that waited longer than CHECK_KEPT_SECONDS for its confirmation."""
        return (
            self.dry_run
            and self.finished_ok
            and self.confirmed is None
            and self.finished is not None
            and (timezone.now() - self.finished).total_seconds() > CHECK_KEPT_SECONDS
        )

    def let_go_text(self) -> str:
        hours = CHECK_KEPT_SECONDS / 3600
        return (
            f"Check {self.pk} was not confirmed within {hours:g} hours, and its file is no "
            "longer kept (it may hold AuthorizationKeys): upload the file again."
        )

    def confirmed_text(self) -> str:
        into = (
            f"import job {self.confirmed_as_id}"
            if self.confirmed_as_id is not None
            else "an import job deleted since"
        )
        return f"Check {self.pk} was confirmed already, into {into}: upload the file again."

    @property
    def progress_key(self) -> str:
        return f"chargesim:import-job:{self.pk}"

    @property
    def alive_key(self) -> str:
        return f"chargesim:import-job:{self.pk}:alive"

    def progress(self) -> tuple[int, int]:
        """(rows done, rows in total) while running; the whole file once done; how far it
        got once failed."""
        if self.status == self.Status.DONE:
            return self.total_rows, self.total_rows
        if self.status == self.Status.FAILED:
            return self.done_rows, self.total_rows
        try:
            found = job_cache().get(self.progress_key)
        except cache_errors():  # the cache (Redis) away: the list and pages still answer
            return self.done_rows, self.total_rows
        if found is not None:
            done, total = found
            return done, total
        # None reported yet, or the job ended since this row was read (its progress goes
        # when it ends): "0 / 300 rows" came between "231" and "300 / 300".
        now = ImportJob.objects.filter(pk=self.pk).only("status", "total_rows", "done_rows")
        ended = now.exclude(status__in=[self.Status.QUEUED, self.Status.RUNNING]).first()
        return ended.progress() if ended is not None else (0, self.total_rows)

    def running_lines(self) -> list[str]:
        """What the running chargers did, as the job's page says it."""
        return summary_lines(self.running_chargers) if self.running_chargers else []

    def run(self) -> None:
        with _beating(self.alive_key):
            self._run()

    def _run(self) -> None:
        total = 0
        heard: list[Applied] = []
        try:
            dataset = read_dataset(bytes(self.data), self.file_format)
            total = len(dataset)
            ImportJob.objects.filter(pk=self.pk).update(total_rows=total)
            resource = registry.get(self.resource).resource(
                progress=partial(_report_progress, self.progress_key), fast=True
            )
            # The outcome is written in the import's own transaction, committed with its
            # rows or not at all: a process lost after the commit (while it waited for the
            # workers' answers) left the job "running", and it was then failed as having
            # imported nothing, its rows imported.
            # Leaving the block commits, sends the change to the workers and waits for
            # their answers (a few seconds at most), as an admin save does.
            with reporting(heard.append), transaction.atomic():
                result = resource.import_data(dataset, dry_run=self.dry_run)
                self._save_outcome(result, total)
        except FileProblem as exc:
            self._finish(self.Status.DONE, total=0, problems=[f"File: {exc}"])
        except Exception as exc:
            logger.exception("Import job %s failed", self.pk)
            if ImportJob.objects.filter(pk=self.pk, committed__isnull=False).exists():
                self._close([])  # its rows are committed: what failed came after
            else:
                done, _ = job_cache().get(self.progress_key, (0, total))
                problems = [f"The import stopped: {exc}"]
                self._finish(self.Status.FAILED, total=total, done=done, problems=problems)
        else:
            self._close(heard)
        job_cache().delete(self.progress_key)

    def _save_outcome(self, result: Any, total: int) -> None:
        problems = [str(problem) for problem in result.problems()]
        self._finish(
            self.Status.RUNNING,  # until the workers have answered (`_close`)
            total=total,
            problems=problems,
            created=0 if problems else result.totals["new"],
            updated=0 if problems else result.totals["update"],
            unchanged=0 if problems else result.totals["skip"],
            failed=result.failed_rows(),
        )

    def _close(self, heard: list[Applied]) -> None:
        """Done, with what the workers said of its committed rows."""
        ImportJob.objects.filter(pk=self.pk).update(
            status=self.Status.DONE,
            running_chargers=summarise(heard) if heard else None,
            finished=timezone.now(),
        )

    def _finish(
        self,
        status: str,
        *,
        total: int,
        problems: list[str],
        done: int = 0,
        created: int = 0,
        updated: int = 0,
        unchanged: int = 0,
        failed: int = 0,
    ) -> None:
        # The file is kept only while it may still be imported: a check that found no
        # problem waits for its confirmation (which copies it). Any other finished job has
        # done all it will with it, and keeping it would keep every AuthorizationKey it held.
        keep = self.dry_run and status != self.Status.FAILED and not problems
        committed = status == self.Status.RUNNING
        ImportJob.objects.filter(pk=self.pk).update(
            **({} if keep else {"data": b""}),
            **({"committed": timezone.now()} if committed else {"finished": timezone.now()}),
            status=status,
            total_rows=total,
            done_rows=done,
            created_count=created,
            updated_count=updated,
            unchanged_count=unchanged,
            failed_count=failed,
            problem_count=len(problems),
            problems=problems[:MAX_STORED_PROBLEMS],
        )


def _report_progress(key: str, done: int, total: int) -> None:
    job_cache().set(key, (done, total), timeout=3600)


@contextmanager
def _beating(key: str) -> Iterator[None]:
    """Say in the cache that the job is alive, every BEAT_SECONDS while the block runs."""
    done = threading.Event()
    store = job_cache()

    def beat() -> None:
        while True:
            try:
                store.set(key, 1, timeout=LOST_SECONDS)
            except Exception:  # the cache away for a while: the next beat may reach it
                logger.warning("Import job heartbeat not saved", exc_info=True)
            if done.wait(BEAT_SECONDS):
                return

    beating = threading.Thread(target=beat, name=f"{key}-beat", daemon=True)
    beating.start()
    try:
        yield
    finally:
        done.set()
        beating.join()
        store.delete(key)
