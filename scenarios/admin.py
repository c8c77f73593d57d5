"""Stored scenario runs: read-only, with downloads of the result, the frames and the file."""

from __future__ import annotations

import json
from typing import Any

import orjson
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from scenarios.junit import stored_run_junit
from scenarios.models import ScenarioRun
from scenarios.texts import shown_variables

# Verdicts shown on a run's page (the download has every one).
VERDICT_ROWS = 500


@admin.register(ScenarioRun)
class ScenarioRunAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "status", "seed", "started", "finished", "frame_count")
    list_filter = ("status", "name")
    search_fields = ("name", "file")
    fields = (
        "name",
        "file",
        "status",
        "message",
        "seed",
        "shown_variables",
        "started",
        "finished",
        "verdicts",
        "downloads",
        "frame_count",
        "frames_dropped",
        "shown_source",
    )
    readonly_fields = fields

    # A secret variable's value (by its name) never reaches a page: while the run is queued
    # or running, the row still holds it (the run needs it).
    @admin.display(description="variables")
    def shown_variables(self, run: ScenarioRun) -> str:
        return json.dumps(shown_variables(run.variables or {}), indent=2)

    @admin.display(description="source")
    def shown_source(self, run: ScenarioRun) -> str:
        return format_html("<pre>{}</pre>", run.shown_source())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="verdicts")
    def verdicts(self, run: ScenarioRun) -> str:
        """Every step's verdict, those that did not pass first; at most VERDICT_ROWS (a
        run of a thousand chargers has thousands: the result download has them all)."""
        rows = []
        for charger in run.result.get("chargers") or ():
            for step in charger.get("steps") or ():
                rows.append(
                    (
                        charger.get("charge_point_id", ""),
                        f"steps[{step.get('index')}] {step.get('kind')}",
                        step.get("status", ""),
                        f"{float(step.get('duration') or 0):.2f} s",
                        step.get("message", ""),
                    )
                )
        if not rows:
            return run.message or "-"
        rows.sort(key=lambda row: row[2] == "passed")  # stable: file order otherwise
        shown = rows[:VERDICT_ROWS]
        body = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", shown
        )
        more = len(rows) - len(shown)
        return format_html(
            "<table><tr><th>charger</th><th>step</th><th>verdict</th><th>time</th>"
            "<th>message</th></tr>{}</table>{}",
            body,
            f"{more} more in the result (JSON)." if more else "",
        )

    @admin.display(description="downloads")
    def downloads(self, run: ScenarioRun) -> str:
        links = [
            (reverse(f"admin:scenarios_scenariorun_{kind}", args=[run.pk]), label)
            for kind, label in (
                ("result", "result (JSON)"),
                ("junit", "JUnit XML"),
                ("frames", "frames (JSON lines)"),
                ("source", "scenario (YAML)"),
            )
        ]
        return format_html_join(" · ", '<a href="{}">{}</a>', links)

    def get_urls(self) -> list[URLPattern]:
        views = (
            ("result", self.result_view),
            ("junit", self.junit_view),
            ("frames", self.frames_view),
            ("source", self.source_view),
        )
        own = [
            path(
                f"<int:pk>/{kind}/",
                self.admin_site.admin_view(view),
                name=f"scenarios_scenariorun_{kind}",
            )
            for kind, view in views
        ]
        return own + super().get_urls()

    def _run(self, request: HttpRequest, pk: int) -> ScenarioRun:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        return get_object_or_404(ScenarioRun, pk=pk)

    def result_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        run = self._run(request, pk)
        body = orjson.dumps(run.result, option=orjson.OPT_INDENT_2)
        return _download(body, "application/json", f"scenario-run-{pk}.json")

    def junit_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        run = self._run(request, pk)
        return _download(stored_run_junit(run), "application/xml", f"scenario-run-{pk}.xml")

    def frames_view(self, request: HttpRequest, pk: int) -> StreamingHttpResponse:
        run = self._run(request, pk)
        response = StreamingHttpResponse(run.frame_lines(), content_type="application/x-ndjson")
        response["Content-Disposition"] = f'attachment; filename="scenario-run-{pk}-frames.jsonl"'
        return response

    def source_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        run = self._run(request, pk)
        name = run.file or f"{run.name}.yaml"
        return _download(run.shown_source().encode(), "application/yaml", name)


def _download(body: bytes, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
