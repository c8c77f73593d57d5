"""A stored scenario run: what ran (the file's text, seed, variables), its verdicts and
timings (`result`, the JSON of docs/scenarios.md), and the OCPP frames of its chargers."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import orjson
import yaml
from django.db import models, transaction
from django.utils import timezone

from chargers.deadlocks import retrying_races
from chargers.models import Charger
from fleet_io.fleet_changes import notify_fleet_change
from locations.models import Location
from scenarios.texts import hiding, written_secrets

# Frames kept per run; beyond this they are counted, not stored.
MAX_FRAMES = 100_000
# A run started through the API or the dashboard saves its progress every second; one
# whose last save is older than this lost its process (stopped, killed) and is an error.
STALE_SECONDS = 30
ACTIVE = ("queued", "running")
# Where a template's chargers go when it names no location; made when missing.
DEFAULT_LOCATION = "Scenarios"


class ScenarioRunQuerySet(models.QuerySet["ScenarioRun"]):
    def active(self) -> ScenarioRunQuerySet:
        """Runs that are waiting to start or running."""
        return self.filter(status__in=ACTIVE)

    def mark_stale(self) -> int:
        """Store as errors the running runs whose process stopped saving their progress."""
        cutoff = timezone.now() - timedelta(seconds=STALE_SECONDS)
        stale = self.filter(status="running", heartbeat__lt=cutoff)
        # Read first: every poll of a run calls this, and a write would take SQLite's lock.
        if not stale.exists():
            return 0
        with transaction.atomic():
            results = list(stale.values_list("result", flat=True))
            marked = stale.update(
                status="error",
                message="the process running it stopped before it finished",
                finished=timezone.now(),
            )
            # Its temporary chargers (named in the progress it saved) went with the process
            # that would have deleted them: deleted here, or they would stay in the fleet
            # and connect to the CSMS at every start.
            temporary = [
                str(charger.get("charge_point_id"))
                for result in results
                for charger in (result or {}).get("chargers") or ()
                if charger.get("temporary")
            ]
            delete_chargers(
                Charger.objects.filter(charge_point_id__in=temporary).values_list(
                    "pk", "charge_point_id"
                )
            )
            if temporary:
                # And the location such chargers went to, as the run would have after them.
                delete_default_location()
        return marked


def delete_chargers(chargers: Iterable[tuple[int, str]]) -> None:
    """Delete a run's temporary chargers, (pk, charge point id), telling the workers."""
    chosen = list(chargers)
    if not chosen:
        return

    def delete() -> None:
        notify_fleet_change(chosen)
        Charger.objects.filter(pk__in=[pk for pk, _ in chosen]).delete()

    retrying_races(delete)


def delete_default_location(besides: int | None = None) -> bool:
    """Delete the location runs make for template chargers once none is left in it (after
    the run `besides` deleted its own), so that it does not stay in the operator's lists
    and filters as a site of no chargers. Not while another run is active (it may be about
    to put its chargers there), nor once someone set it up (a grid limit, an address, an
    arrival profile...): it is theirs then."""
    others = ScenarioRun.objects.active()
    if besides is not None:
        others = others.exclude(pk=besides)
    with transaction.atomic():
        if others.exists():
            return False
        return Location.objects.delete_if_unused(DEFAULT_LOCATION)


def run_verdict(message: str, charger_statuses: Iterable[str]) -> str:
    """A finished run's status: `error` when something could not run (the run's own
    `message`: a setup that failed, a run cut short; or a charger in error: it did not
    connect, a step errored), even if a check failed too, since the checks that did not
    run may have failed as well; `failed` when a check failed and everything ran; else
    `passed`. `runscenario`'s exit code follows it (`scenarios.session.exit_code`)."""
    statuses = set(charger_statuses)
    if message or ScenarioRun.Status.ERROR in statuses:
        return ScenarioRun.Status.ERROR
    if ScenarioRun.Status.FAILED in statuses:
        return ScenarioRun.Status.FAILED
    return ScenarioRun.Status.PASSED


class ScenarioRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        PASSED = "passed"
        FAILED = "failed"
        ERROR = "error"

    name = models.CharField(max_length=100)
    file = models.CharField(max_length=255, blank=True, help_text="The file it was read from.")
    source = models.TextField(help_text="The scenario's YAML, as run.")
    seed = models.BigIntegerField()
    variables = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    message = models.TextField(blank=True, help_text="Why the run errored, if it did.")
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    # gzip-compressed JSON lines, one stream event (a frame or a connection event) a line.
    frames = models.BinaryField(default=b"", blank=True, editable=False)
    frame_count = models.PositiveIntegerField(default=0)
    frames_dropped = models.PositiveIntegerField(default=0)
    # Runs started through the API or the dashboard (runscenario's leave these empty).
    csms_url = models.CharField(
        max_length=500, blank=True, help_text="The CSMS of the template's chargers."
    )
    heartbeat = models.DateTimeField(
        null=True, blank=True, help_text="The last save of the run's progress."
    )
    cancel_requested = models.BooleanField(default=False)

    objects = ScenarioRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk} ({self.status})"

    def shown_source(self) -> str:
        """The scenario's text as pages and downloads show it: the values of its secret
        variables (by name: its own `variables:` and those the run was given) hidden, and
        the secrets it writes out in place (`written_secrets`)."""
        declared: dict[str, Any] = {}
        try:
            data = yaml.safe_load(self.source)
        except yaml.YAMLError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("variables"), dict):
            declared = {str(k): v for k, v in data["variables"].items()}
        # Each hidden on its own: the run's variables, once hidden (a run of runscenario
        # keeps them so from its start), would otherwise stand for the file's values of
        # the same names, and the text showed those values.
        text = hiding(written_secrets(data))(self.source)
        return str(hiding(self.variables or {})(hiding(declared)(text)))

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started).total_seconds()

    def charger_counts(self) -> dict[str, int]:
        """Chargers by verdict; while the run goes on, none has passed yet."""
        chargers = (self.result or {}).get("chargers") or []
        counts = {"passed": 0, "failed": 0, "error": 0, "total": len(chargers)}
        for charger in chargers:
            status = charger.get("status")
            if status == "passed" and self.status in ACTIVE:
                continue
            if status in counts:
                counts[status] += 1
        return counts

    def store_frames(self, events: Iterable[dict[str, Any]], dropped: int = 0) -> None:
        """Keep the run's frames (at most MAX_FRAMES; the rest are counted as dropped)."""
        lines: list[bytes] = []
        for event in events:
            if len(lines) >= MAX_FRAMES:
                dropped += 1
                continue
            lines.append(orjson.dumps(event))
        self.frames = gzip.compress(b"\n".join(lines) + (b"\n" if lines else b""))
        self.frame_count = len(lines)
        self.frames_dropped = dropped

    def frame_lines(self) -> Iterator[bytes]:
        """The stored frames as JSON lines (for a download)."""
        if not self.frames:
            return
        for line in gzip.decompress(bytes(self.frames)).splitlines():
            if line:
                yield line + b"\n"

    def frame_events(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.frame_lines()]
