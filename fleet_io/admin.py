"""Import jobs in the admin: a list of one's own jobs, each linking to its result page."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from fleet_io.models import ImportJob

_FIELDS = (
    "resource",
    "file_name",
    "file_format",
    "dry_run",
    "status",
    "total_rows",
    "created_count",
    "updated_count",
    "failed_count",
    "problem_count",
    "created_by",
    "created",
    "started",
    "finished",
)


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "status",
        "total_rows",
        "created_count",
        "updated_count",
        "failed_count",
        "created",
        "result_page",
    ]
    list_filter = ["resource", "status", "dry_run"]
    fields = _FIELDS
    readonly_fields = _FIELDS

    def get_queryset(self, request: HttpRequest) -> QuerySet[ImportJob]:
        return ImportJob.objects.visible_to(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ImportJob | None = None) -> bool:
        return False

    @admin.display(description="result")
    def result_page(self, obj: ImportJob) -> str:
        return format_html('<a href="{}">progress and result</a>', obj.get_absolute_url())
